//! What the HTTP benches share: a client for a running sqljudge, and percentile reports.
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Distinct but equivalent solutions to `uk-customers`: each is graded (no verdict cache hit,
/// in this run or from an earlier one).
pub fn solution() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static RUN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(rand::random::<u32>);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    format!("SELECT name FROM customers WHERE country = 'UK' AND {n} > 0 AND {run} >= 0")
}

pub struct Bench {
    pub url: String,
    pub http: reqwest::Client,
}

impl Bench {
    /// Against `SQLJUDGE_URL` (default http://127.0.0.1:8080).
    pub fn from_env() -> Bench {
        Bench {
            url: std::env::var("SQLJUDGE_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into()),
            http: reqwest::Client::new(),
        }
    }

    /// GET `path`, as JSON.
    pub async fn get(&self, path: &str) -> Value {
        let res = self.http.get(format!("{}{path}", self.url)).send().await;
        res.unwrap().json().await.unwrap()
    }

    /// POST `body` to `path` (with a token, if any); the answer as JSON.
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Value {
        let mut req = self.http.post(format!("{}{path}", self.url)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null)
    }

    pub async fn user(&self, name: &str) -> String {
        let creds = json!({"username": name, "email": format!("{name}@bench.local"), "password": "bench-password"});
        self.post("/auth/register", None, &creds).await;
        let tokens = self.post("/auth/login", None, &creds).await;
        tokens["access_token"].as_str().expect("login").to_string()
    }

    pub async fn problem(&self, slug: &str) -> i64 {
        let list = self.get("/problems").await;
        list.as_array()
            .expect("problem list")
            .iter()
            .find(|p| p["slug"] == slug)
            .expect("demo problem")["id"]
            .as_i64()
            .unwrap()
    }

    /// Submits `sql`; the job id.
    pub async fn submit(&self, token: &str, problem: i64, sql: &str) -> String {
        let body = json!({"problem_id": problem, "sql": sql});
        let ack = self.post("/problems/submit", Some(token), &body).await;
        let job = ack["job_id"].as_str().unwrap_or_else(|| {
            panic!("no job id in {ack} (rate limited? start the server with SQLJUDGE__RATE_LIMIT__ENABLED=false)")
        });
        job.to_string()
    }

    /// (acknowledged after, final after) for one `uk-customers` solution.
    pub async fn one(&self, token: &str, problem: i64) -> (Duration, Duration) {
        let started = Instant::now();
        let job = self.submit(token, problem, &solution()).await;
        let acked = started.elapsed();
        assert_eq!(self.wait_final(token, &job).await["status"], "accepted");
        (acked, started.elapsed())
    }

    /// A submission's result.
    pub async fn result(&self, token: &str, job: &str) -> Value {
        let res = self
            .http
            .get(format!("{}/problems/result/{job}", self.url))
            .bearer_auth(token)
            .send()
            .await;
        res.unwrap().json().await.unwrap()
    }

    /// Polls a submission's result every 2 ms until it is final.
    pub async fn wait_final(&self, token: &str, job: &str) -> Value {
        loop {
            let r = self.result(token, job).await;
            if is_final(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

pub fn is_final(result: &Value) -> bool {
    !matches!(result["status"].as_str(), Some("queued" | "running"))
}

pub fn report(name: &str, mut samples: Vec<Duration>) {
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
