//! What hidden tests cost (issue #11), against a running sqljudge with the demo set, rate limits
//! off and the admin token known:
//!
//!     SQLJUDGE__RATE_LIMIT__ENABLED=false SQLJUDGE_ADMIN_TOKEN=bench-admin scripts/serve-demo &
//!     SQLJUDGE_ADMIN_TOKEN=bench-admin cargo bench --bench hidden_tests
//!
//! - Grading throughput, end to end (HIDDEN_JOBS submissions queued at once, until the last is
//!   final): the same problem graded on its sample alone (`generated_tests: 0`, no uploaded
//!   test) and on the sample, 3 generated tests and 1 uploaded test, on the demo's `shop` and on
//!   a dataset of pgexercises' size (31 members, 9 facilities, 4,043 bookings).
//! - Counterexamples: the grading time of a wrong answer that fails a hidden test, with
//!   `feedback: "full"` (a counterexample is searched) and `"verdict"` (none), and its size.
//! - Adequacy: the time of `GET /admin/problems/{id}/adequacy` per demo problem.
//!
//! Creates its problems (and the `bench_cd` dataset) with a slug suffix of its own.
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqljudge_testkit::bench::{is_final, Bench};

/// pgexercises' `cd` schema, with as many rows as its dump; `seed` varies the rows.
fn cd(seed: u32, extra: &str) -> String {
    format!(
        "CREATE SCHEMA bench_cd;
CREATE TABLE bench_cd.members (memid integer PRIMARY KEY, surname text NOT NULL, firstname text NOT NULL,
  recommendedby integer REFERENCES bench_cd.members, joindate timestamp NOT NULL);
CREATE TABLE bench_cd.facilities (facid integer PRIMARY KEY, name text NOT NULL, membercost numeric NOT NULL,
  guestcost numeric NOT NULL, monthlymaintenance numeric NOT NULL);
CREATE TABLE bench_cd.bookings (bookid integer PRIMARY KEY, facid integer NOT NULL REFERENCES bench_cd.facilities,
  memid integer NOT NULL REFERENCES bench_cd.members, starttime timestamp NOT NULL, slots integer NOT NULL);
INSERT INTO bench_cd.members SELECT i, 'S' || (i * {seed}) % 17, 'F' || i, CASE WHEN i > 3 THEN 1 + (i * {seed}) % (i - 1) END,
  timestamp '2012-07-01' + i * interval '3 days' FROM generate_series(0, 30) i;
INSERT INTO bench_cd.facilities SELECT i, 'Facility ' || i, i % 4, 5 + i * 3, 50 + i * 100 FROM generate_series(0, 8) i;
INSERT INTO bench_cd.bookings SELECT i, (i * {seed}) % 9, (i * 13 + {seed}) % 31,
  timestamp '2012-07-03' + i * interval '47 minutes', 1 + (i * {seed}) % 3 FROM generate_series(0, 4042) i;
{extra}"
    )
}

fn jobs() -> usize {
    std::env::var("HIDDEN_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(400)
}

async fn admin_put(bench: &Bench, admin: &str, path: &str, script: String) -> Value {
    let res = bench
        .http
        .put(format!("{}{path}", bench.url))
        .bearer_auth(admin)
        .header("content-type", "application/sql")
        .body(script)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {body}");
    body
}

async fn create(bench: &Bench, admin: &str, body: Value) -> Value {
    let res = bench
        .http
        .post(format!("{}/admin/problems", bench.url))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    let created: Value = res.json().await.unwrap();
    assert!(created["id"].is_i64(), "{created}");
    created
}

/// Queues `n` distinct correct solutions at once (`{n}` in `template` made a true condition of
/// their own); graded jobs per second until the last is final.
async fn throughput(bench: &Bench, token: &str, problem: i64, template: &str, n: usize) -> f64 {
    let started = Instant::now();
    let mut jobs = Vec::with_capacity(n);
    for i in 0..n {
        let unique = template.replace(
            "{n}",
            &format!("{i} >= 0 AND {} > 0", rand::random::<u32>() | 1),
        );
        jobs.push(bench.submit(token, problem, &unique).await);
    }
    for job in &jobs {
        let result = bench.wait_final(token, job).await;
        assert_eq!(result["status"], "accepted", "{result}");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let admin = std::env::var("SQLJUDGE_ADMIN_TOKEN").expect("SQLJUDGE_ADMIN_TOKEN");
    let bench = Bench::from_env();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let token = bench.user(&format!("ht_{run}")).await;
    let n = jobs();

    println!("grading throughput, end to end ({n} jobs each):");
    let shop = |path: &str| std::fs::read_to_string(path).expect("run from the repository");
    let cases = [
        (
            "bench_shop",
            shop("demo/datasets/shop.sql"),
            shop("demo/tests/shop/1.sql"),
            "SELECT name FROM customers WHERE country = 'UK'",
            "SELECT name FROM customers WHERE country = 'UK' AND {n}",
        ),
        (
            "bench_cd",
            cd(5, ""),
            cd(7, ""),
            "SELECT facid, sum(slots) FROM bench_cd.bookings GROUP BY facid",
            "SELECT facid, sum(slots) FROM bench_cd.bookings WHERE {n} GROUP BY facid",
        ),
    ];
    for (dataset, sample, test, reference, solution) in cases {
        // First the sample alone; then 3 generated tests and the uploaded one.
        admin_put(
            &bench,
            &admin,
            &format!("/admin/datasets/{dataset}"),
            sample,
        )
        .await;
        let mut rates = Vec::new();
        for generated in [0, 3] {
            if generated > 0 {
                let path = format!("/admin/datasets/{dataset}/tests/1");
                admin_put(&bench, &admin, &path, test.clone()).await;
            }
            let slug = format!("ht-{dataset}-{generated}-{run}").replace('_', "-");
            let problem = create(
                &bench,
                &admin,
                json!({"slug": slug, "title": "t", "statement": "s", "topic": "bench",
                       "dataset": dataset, "reference_sql": reference,
                       "generated_tests": generated}),
            )
            .await;
            let id = problem["id"].as_i64().unwrap();
            let rate = throughput(&bench, &token, id, solution, n).await;
            println!(
                "  {dataset:<10} tests {}: {rate:>8.1} jobs/s",
                problem["tests"]
            );
            rates.push(rate);
        }
        println!(
            "  {dataset:<10} 1 + 3 generated + 1 uploaded vs the sample alone: {:.2}x the jobs/s",
            rates[1] / rates[0]
        );
    }

    println!("counterexamples (a wrong answer failing uploaded test 1 of bench_cd):");
    // Members recommended by member 1: the test's recommendations differ from the sample's.
    let reference = "SELECT memid FROM bench_cd.members WHERE recommendedby = 1";
    let sample: Value = bench
        .get(&format!(
            "/problems/{}",
            create(
                &bench,
                &admin,
                json!({"slug": format!("ht-ce-full-{run}"), "title": "t", "statement": "s",
                       "topic": "bench", "dataset": "bench_cd", "reference_sql": reference,
                       "generated_tests": 0}),
            )
            .await["id"]
        ))
        .await;
    let quiet = create(
        &bench,
        &admin,
        json!({"slug": format!("ht-ce-verdict-{run}"), "title": "t", "statement": "s",
               "topic": "bench", "dataset": "bench_cd", "reference_sql": reference,
               "generated_tests": 0, "feedback": "verdict"}),
    )
    .await;
    // The sample's answer, hard-coded: right on the sample only.
    let rows = bench
        .post(
            &format!("/problems/{}/run", sample["id"]),
            Some(&token),
            &json!({"sql": reference}),
        )
        .await;
    let values: Vec<String> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("({})", r[0].as_str().unwrap()))
        .collect();
    for (name, id) in [("full", &sample["id"]), ("verdict", &quiet["id"])] {
        let mut took = Vec::new();
        let mut sizes = Vec::new();
        for i in 0..20 {
            let sql = format!(
                "SELECT memid FROM (VALUES {}) v(memid) WHERE {i} >= 0",
                values.join(", ")
            );
            let started = Instant::now();
            let job = bench.submit(&token, id.as_i64().unwrap(), &sql).await;
            let result = loop {
                let r = bench.result(&token, &job).await;
                if is_final(&r) {
                    break r;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            took.push(started.elapsed());
            assert_eq!(result["status"], "wrong_answer", "{result}");
            if let Some(tables) = result["counterexample"]["tables"].as_object() {
                sizes.push(
                    tables
                        .values()
                        .map(|t| t["rows"].as_array().unwrap().len())
                        .sum::<usize>(),
                );
            }
        }
        took.sort();
        println!(
            "  feedback {name:<8} grading p50 {:>7.1} ms  max {:>7.1} ms  counterexample rows {:?} (of 4,083)",
            took[took.len() / 2].as_secs_f64() * 1000.0,
            took[took.len() - 1].as_secs_f64() * 1000.0,
            sizes.iter().max()
        );
    }

    println!("adequacy:");
    let problems = bench.get("/problems").await;
    for p in problems.as_array().unwrap() {
        let started = Instant::now();
        let report: Value = bench
            .http
            .get(format!("{}/admin/problems/{}/adequacy", bench.url, p["id"]))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        println!(
            "  {:<28} mutants {:>3}  survivors {:>2}  {:>7.1} ms",
            p["slug"].as_str().unwrap(),
            report["mutants"],
            report["survivors"].as_array().map_or(0, Vec::len),
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
}
