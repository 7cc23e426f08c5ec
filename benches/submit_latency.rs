//! Submit-to-verdict latency and throughput against a running sqljudge with the demo set and
//! rate limits off (it submits far faster than a person):
//!
//!     SQLJUDGE__RATE_LIMIT__ENABLED=false scripts/serve-demo &
//!     SQLJUDGE_URL=http://127.0.0.1:8080 cargo bench --bench submit_latency
//!
//! Sequential: one submission at a time, polling the result every 2 ms, so each figure is the
//! time a user waits. Concurrent: CLIENTS users submitting at once, for throughput.
use std::time::Instant;

use sqljudge_testkit::bench::{report, Bench};

const SEQUENTIAL: usize = 200;
const CLIENTS: usize = 16;
const PER_CLIENT: usize = 25;
#[tokio::main]
async fn main() {
    let bench = std::sync::Arc::new(Bench::from_env());
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let token = bench.user(&format!("bench_{run}")).await;
    let problem = bench.problem("uk-customers").await;
    for _ in 0..10 {
        bench.one(&token, problem).await; // warm up connections
    }
    let (mut acks, mut finals) = (Vec::new(), Vec::new());
    for _ in 0..SEQUENTIAL {
        let (a, f) = bench.one(&token, problem).await;
        acks.push(a);
        finals.push(f);
    }
    report("submit acknowledged (202)", acks);
    report("submit -> final status", finals);

    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let bench = bench.clone();
        let run = run.clone();
        clients.push(tokio::spawn(async move {
            let token = bench.user(&format!("bench_{run}_{c}")).await;
            let mut finals = Vec::new();
            for _ in 0..PER_CLIENT {
                finals.push(bench.one(&token, problem).await.1);
            }
            finals
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let elapsed = started.elapsed();
    report(&format!("{CLIENTS} clients, final status"), all);
    println!(
        "throughput: {} graded submissions in {:.2} s = {:.0}/s",
        CLIENTS * PER_CLIENT,
        elapsed.as_secs_f64(),
        (CLIENTS * PER_CLIENT) as f64 / elapsed.as_secs_f64()
    );
}
