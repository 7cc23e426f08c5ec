//! How soon `/ws` reports a submission's progress, against running instances with the demo set
//! and rate limits off:
//!
//!     SQLJUDGE__RATE_LIMIT__ENABLED=false scripts/serve-demo &
//!     cargo bench --bench ws_latency
//!
//! Submits through SQLJUDGE_URL and listens on SQLJUDGE_WS_URL (default: the same instance;
//! point it at a second instance to measure the fan-out through Redis). For each of 200
//! submissions, one at a time: submit -> `queued` event, and submit -> final event, beside
//! submit -> final status by polling the result (2 ms interval) for comparison.
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use sqljudge_testkit::bench::{report, solution, Bench};
use tokio_tungstenite::tungstenite::Message;

const N: usize = 200;

#[tokio::main]
async fn main() {
    let bench = Bench::from_env();
    let ws_base = std::env::var("SQLJUDGE_WS_URL").unwrap_or_else(|_| bench.url.clone());
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let token = bench.user(&format!("ws_{run}")).await;
    let problem = bench.problem("uk-customers").await;
    let url = format!("{}/ws?token={token}", ws_base.replacen("http", "ws", 1));
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("websocket");
    for _ in 0..10 {
        bench.one(&token, problem).await; // warm up
    }
    // Drain the warm-up's events.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), socket.next()).await {}

    let (mut queued, mut finals, mut polled) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..N {
        let started = Instant::now();
        let job = bench.submit(&token, problem, &solution()).await;
        let mut got_queued = None;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("an event within 10 s")
                .expect("socket open")
                .expect("frame");
            let Message::Text(text) = frame else { continue };
            let event: Value = serde_json::from_str(&text).unwrap();
            if event["job_id"] != job.as_str() {
                continue;
            }
            match event["status"].as_str().unwrap() {
                "queued" => got_queued = Some(started.elapsed()),
                "running" => {}
                _ => {
                    finals.push(started.elapsed());
                    break;
                }
            }
        }
        queued.push(got_queued.expect("a queued event before the final one"));
        polled.push(bench.one(&token, problem).await.1);
    }
    report("submit -> queued event", queued);
    report("submit -> final event", finals);
    report("submit -> final (polling)", polled);
}
