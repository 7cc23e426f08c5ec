//! Grading throughput with one sandbox server and with two (issue #12), each a PostgreSQL
//! cluster the bench creates (initdb + pg_ctl, as the tests do), against the machine's
//! platform PostgreSQL and Redis:
//!
//!     cargo bench --bench sandbox_pool
//!
//! For each shape, SANDBOX_POOL_JOBS (2000) distinct correct solutions of a demo problem are
//! submitted 32 at a time while the executors grade; the rate is jobs / (first submit to last
//! final verdict), with how many jobs each server graded (`/health`'s `sandboxes`).
//! On one machine the servers share its cores: the figure to read is how the rate moves with
//! a second server, not the rate itself.
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use serde_json::Value;
use sqljudge_testkit::app::{Options, TestApp};
use sqljudge_testkit::clusters::PgCluster;

const DB: &str = "sj_sandbox";

/// The rate, the gradings per server, and the service (kept by the caller to the end: one
/// dropped while the bench goes on would write to Redis again after its keys were removed).
async fn shape(
    servers: usize,
    workers: usize,
    jobs: usize,
) -> (f64, Vec<u64>, TestApp, Vec<PgCluster>) {
    let clusters: Vec<PgCluster> = (0..servers).map(|_| PgCluster::start()).collect();
    let urls: Vec<String> = clusters.iter().map(|c| c.url(DB)).collect();
    let app = TestApp::spawn_with(Options {
        workers,
        sandbox_urls: Some(urls.join(",")),
        ..Options::default()
    })
    .await;
    // Every server up to date before the clock starts.
    loop {
        let health: Value = app.get("/health", None).await.json().await.unwrap();
        if health["sandboxes"]
            .as_array()
            .is_some_and(|l| l.iter().all(|s| s["ready"] == true))
        {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let token = app.user("pool_bench").await;
    let problem = app.problem_id("uk-customers").await;
    let started = Instant::now();
    let ids: Vec<String> = stream::iter(0..jobs)
        .map(|i| {
            let (app, token) = (&app, &token);
            async move {
                let sql = format!("SELECT name FROM customers WHERE country = 'UK' AND {i} = {i}");
                let res = app.submit(token, problem, &sql).await;
                assert_eq!(res.status(), 202);
                res.json::<Value>().await.unwrap()["job_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for id in &ids {
        let result = app.wait_final(&token, id, Duration::from_secs(600)).await;
        assert_eq!(result["status"], "accepted", "{result}");
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    let health: Value = app.get("/health", None).await.json().await.unwrap();
    let graded = health["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["graded"].as_u64().unwrap())
        .collect();
    (rate, graded, app, clusters)
}

#[actix_web::main]
async fn main() {
    let jobs = std::env::var("SANDBOX_POOL_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!(
        "{jobs} jobs per shape ({} cores)",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let mut base = None;
    let mut kept = Vec::new();
    for (servers, workers) in [(1, 4), (2, 4), (2, 8)] {
        let (rate, graded, app, clusters) = shape(servers, workers, jobs).await;
        kept.push((app, clusters));
        let ratio = rate / *base.get_or_insert(rate);
        println!(
            "{servers} sandbox server(s), {workers} executors: {rate:7.1} jobs/s ({ratio:.2}x), graded per server {graded:?}"
        );
    }
}
