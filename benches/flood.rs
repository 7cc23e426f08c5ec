//! One account against everyone else, on a running sqljudge with the demo set and rate limits
//! off:
//!
//!     SQLJUDGE__RATE_LIMIT__ENABLED=false scripts/serve-demo &
//!     SQLJUDGE_URL=http://127.0.0.1:8080 \
//!     SQLJUDGE_SANDBOX_URL=postgres://postgres:postgres@127.0.0.1:5432/sqljudge_sandbox \
//!     cargo bench --bench flood
//!
//! 1. Flood: one account queues FLOOD slow solutions (one second each) at once; meanwhile
//!    another account submits VICTIM correct solutions, one every 200 ms. Their latencies.
//! 2. Runaway: one account submits RUNAWAY statements whose numeric long division ignores
//!    cancels and pg_terminate_backend for about a second per operation, past the time limit.
//!    Peak sandbox backends (sampled in the sandbox database) against the executors, and the
//!    backends still running once every verdict is out.
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqljudge_testkit::bench::{is_final, report, Bench};

const FLOOD: usize = 40;
const VICTIM: usize = 40;
const VICTIM_EVERY: Duration = Duration::from_millis(200);
const RUNAWAY: usize = 12;

/// How many of `jobs` have a final status.
async fn graded(bench: &Bench, token: &str, jobs: &[String]) -> usize {
    let mut n = 0;
    for job in jobs {
        n += usize::from(is_final(&bench.result(token, job).await));
    }
    n
}

/// Backends in the sandbox database that run solutions (all, and those active).
async fn sandbox_backends(db: &tokio_postgres::Client) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'sqljudge-sandbox'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::main]
async fn main() {
    let bench = Bench::from_env();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let problem = bench.problem("uk-customers").await;
    let flooder = bench.user(&format!("flooder_{run}")).await;
    let victim = bench.user(&format!("victim_{run}")).await;

    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let sql = format!(
            "SELECT name FROM customers, pg_sleep(1) WHERE country = 'UK' AND '{run}' <> '{i}'"
        );
        flood.push(bench.submit(&flooder, problem, &sql).await);
    }
    // The victim submits at a steady pace while the flood waits, each solution on its own.
    let latencies = futures_util::future::join_all((0..VICTIM).map(|i| {
        let (bench, victim) = (&bench, &victim);
        async move {
            tokio::time::sleep(VICTIM_EVERY * i as u32).await;
            bench.one(victim, problem).await.1
        }
    }))
    .await;
    let waiting = FLOOD - graded(&bench, &flooder, &flood).await;
    report(&format!("victim, {FLOOD} queued ahead"), latencies);
    println!("flood: {waiting} of {FLOOD} slow solutions still waiting when the victim was done");
    for job in &flood {
        bench.wait_final(&flooder, job).await;
    }

    let url = std::env::var("SQLJUDGE_SANDBOX_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/sqljudge_sandbox".into());
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("sandbox database");
    tokio::spawn(connection);
    let executors = bench.get("/health").await["executors"]["total"].clone();
    let mut jobs = Vec::new();
    for i in 0..RUNAWAY {
        let sql = format!(
            "SELECT greatest(a % b, a % b, a % b, a % b, a % b) IS NULL FROM (SELECT \
             repeat('9', 131000)::numeric AS a, repeat('7', {})::numeric AS b) t",
            65000 + i
        );
        jobs.push(bench.submit(&flooder, problem, &sql).await);
    }
    let done = AtomicBool::new(false);
    let sample = async {
        let (mut peak, mut quarantined) = (0, 0);
        while !done.load(Ordering::Relaxed) {
            peak = peak.max(sandbox_backends(&db).await.0);
            let health = bench.get("/health").await;
            quarantined = quarantined.max(health["executors"]["quarantined"].as_i64().unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (peak, quarantined)
    };
    let started = Instant::now();
    let verdicts = async {
        for job in &jobs {
            bench.wait_final(&flooder, job).await;
        }
        done.store(true, Ordering::Relaxed);
    };
    let ((peak, quarantined), ()) = tokio::join!(sample, verdicts);
    let left = sandbox_backends(&db).await.1;
    println!(
        "runaway: {RUNAWAY} statements in {:.1} s; peak sandbox backends {peak} with {executors} executors; \
         quarantined slots up to {quarantined}; active backends once all verdicts were out: {left}",
        started.elapsed().as_secs_f64()
    );
}
