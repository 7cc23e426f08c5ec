//! Live-submission latency while a large rejudge runs, against a running sqljudge with the demo
//! set and rate limits off:
//!
//!     SQLJUDGE__RATE_LIMIT__ENABLED=false SQLJUDGE_ADMIN_TOKEN=bench-admin scripts/serve-demo &
//!     SQLJUDGE_ADMIN_TOKEN=bench-admin cargo bench --bench rejudge_load
//!
//! Stores REJUDGE_SUBMISSIONS (default 10,000) submissions of `out-of-stock`, measures live
//! `uk-customers` submissions (submit -> final status, one at a time) with the queues idle, then
//! rejudges `out-of-stock` and measures the same while the rejudge drains.
use std::time::{Duration, Instant};

use serde_json::Value;
use sqljudge_testkit::bench::{report, Bench};

const LIVE: usize = 100;
const FILLERS: usize = 16;

async fn queue(bench: &Bench) -> Value {
    bench.get("/health").await["queue"].clone()
}

/// Waits until nothing is waiting or in flight, live or background.
async fn wait_idle(bench: &Bench) {
    loop {
        let q = queue(bench).await;
        if q["pending"] == 0 && q["background_pending"] == 0 && q["processing"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn live_latencies(bench: &Bench, token: &str, problem: i64) -> Vec<Duration> {
    let mut finals = Vec::new();
    for _ in 0..LIVE {
        finals.push(bench.one(token, problem).await.1);
    }
    finals
}

#[tokio::main]
async fn main() {
    let admin = std::env::var("SQLJUDGE_ADMIN_TOKEN").expect("SQLJUDGE_ADMIN_TOKEN");
    let total: usize = std::env::var("REJUDGE_SUBMISSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let bench = std::sync::Arc::new(Bench::from_env());
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let token = bench.user(&format!("rj_{run}")).await;
    let (live, bulk) = (
        bench.problem("uk-customers").await,
        bench.problem("out-of-stock").await,
    );

    let started = Instant::now();
    let mut fillers = Vec::new();
    for f in 0..FILLERS {
        let (bench, token) = (bench.clone(), token.clone());
        fillers.push(tokio::spawn(async move {
            for i in (f..total).step_by(FILLERS) {
                let sql = format!("SELECT name FROM products WHERE {i} >= 0");
                bench.submit(&token, bulk, &sql).await;
            }
        }));
    }
    for f in fillers {
        f.await.unwrap();
    }
    wait_idle(&bench).await;
    println!(
        "stored {total} submissions of out-of-stock in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for _ in 0..10 {
        bench.one(&token, live).await; // warm up
    }
    report(
        "idle: submit -> final",
        live_latencies(&bench, &token, live).await,
    );

    let rejudge = format!("/admin/problems/{bulk}/rejudge");
    let res = bench.post(&rejudge, Some(&admin), &Value::Null).await;
    let queued = res["queued"]
        .as_u64()
        .unwrap_or_else(|| panic!("rejudge: {res}"));
    let rejudge_started = Instant::now();
    let before = queue(&bench).await["background_pending"].clone();
    let during = live_latencies(&bench, &token, live).await;
    let after = queue(&bench).await["background_pending"].clone();
    report("rejudging: submit -> final", during);
    println!("rejudge of {queued}: background queue {before} before the live run, {after} after");
    wait_idle(&bench).await;
    let took = rejudge_started.elapsed().as_secs_f64();
    println!(
        "rejudge drained in {took:.1} s ({:.0} gradings/s beside the live submissions)",
        queued as f64 / took
    );
}
