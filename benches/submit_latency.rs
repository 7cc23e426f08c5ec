//! Submit-to-verdict latency and throughput against a running sqljudge with the demo set and
//! rate limits off (it submits far faster than a person):
//!
//!     SQLJUDGE__RATE_LIMIT__ENABLED=false scripts/serve-demo &
//!     SQLJUDGE_URL=http://127.0.0.1:8080 cargo bench --bench submit_latency
//!
//! Sequential: one submission at a time, polling the result every 2 ms, so each figure is the
//! time a user waits. Concurrent: CLIENTS users submitting at once, for throughput.
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const SEQUENTIAL: usize = 200;
const CLIENTS: usize = 16;
const PER_CLIENT: usize = 25;
/// Distinct but equivalent solutions: each is graded (no verdict cache hit).
fn solution() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    format!("SELECT name FROM customers WHERE country = 'UK' AND {n} > 0")
}

struct Bench {
    url: String,
    http: reqwest::Client,
}

impl Bench {
    async fn user(&self, name: &str) -> String {
        let creds = json!({"username": name, "email": format!("{name}@bench.local"), "password": "bench-password"});
        self.http
            .post(format!("{}/auth/register", self.url))
            .json(&creds)
            .send()
            .await
            .unwrap();
        let tokens: Value = self
            .http
            .post(format!("{}/auth/login", self.url))
            .json(&creds)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens["access_token"].as_str().expect("login").to_string()
    }

    async fn problem(&self, slug: &str) -> i64 {
        let list: Vec<Value> = self
            .http
            .get(format!("{}/problems", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list.iter()
            .find(|p| p["slug"] == slug)
            .expect("demo problem")["id"]
            .as_i64()
            .unwrap()
    }

    /// (acknowledged after, final after)
    async fn one(&self, token: &str, problem: i64) -> (Duration, Duration) {
        let started = Instant::now();
        let ack: Value = self
            .http
            .post(format!("{}/problems/submit", self.url))
            .bearer_auth(token)
            .json(&json!({"problem_id": problem, "sql": solution()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let acked = started.elapsed();
        let job = ack["job_id"].as_str().unwrap_or_else(|| {
            panic!("no job id in {ack} (rate limited? start the server with SQLJUDGE__RATE_LIMIT__ENABLED=false)")
        });
        loop {
            let r: Value = self
                .http
                .get(format!("{}/problems/result/{job}", self.url))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let status = r["status"].as_str().unwrap();
            if status != "queued" && status != "running" {
                assert_eq!(status, "accepted");
                return (acked, started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "{name:<28} n={:<5} p50={:>7.2} ms  p95={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        samples.len(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
}

#[tokio::main]
async fn main() {
    let bench = std::sync::Arc::new(Bench {
        url: std::env::var("SQLJUDGE_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into()),
        http: reqwest::Client::new(),
    });
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
