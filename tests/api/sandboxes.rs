//! A pool of sandbox servers (`SQLJUDGE_SANDBOX_URLS`): two PostgreSQL clusters the test
//! creates. Both grade; one stopped under load pauses only its executors; a dataset changed
//! while it was down reaches it before it grades again.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqljudge_testkit::app::{sleep, Options, TestApp};
use sqljudge_testkit::clusters::PgCluster;
use sqljudge_testkit::faults::{check_invariants, run_load};

const DB: &str = "sj_sandbox";

/// `/health`'s sandbox servers.
async fn sandboxes(app: &TestApp) -> Vec<Value> {
    let health: Value = app.get("/health", None).await.json().await.unwrap();
    health["sandboxes"].as_array().cloned().unwrap_or_default()
}

/// Gradings finished on each server.
async fn graded(app: &TestApp) -> Vec<u64> {
    sandboxes(app)
        .await
        .iter()
        .map(|s| s["graded"].as_u64().unwrap())
        .collect()
}

/// Until `cond` holds on `/health`'s sandbox list (at most 20 s).
async fn wait_sandboxes(app: &TestApp, what: &str, cond: impl Fn(&[Value]) -> bool) {
    let started = Instant::now();
    loop {
        let list = sandboxes(app).await;
        if cond(&list) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: {list:?}"
        );
        sleep(100).await;
    }
}

fn script(values: &str) -> String {
    format!("CREATE TABLE t (x int); INSERT INTO t VALUES {values};")
}

/// Grades `n` distinct copies of a solution whose result depends on the data.
async fn grade_sums(app: &TestApp, token: &str, problem: i64, n: usize, tag: &str) -> Vec<String> {
    let mut statuses = Vec::new();
    let mut jobs = Vec::new();
    for i in 0..n {
        // Distinct statements (comments are normalised away), so none comes from the cache.
        let sql = format!("SELECT sum(x) + {i} - {i} AS s FROM t WHERE '{tag}' <> ''");
        let res = app.submit(token, problem, &sql).await;
        assert_eq!(res.status(), 202);
        let body: Value = res.json().await.unwrap();
        jobs.push(body["job_id"].as_str().unwrap().to_string());
    }
    for job in jobs {
        let result = app.wait_final(token, &job, Duration::from_secs(30)).await;
        statuses.push(result["status"].as_str().unwrap().to_string());
    }
    statuses
}

/// Grades batches until the server at `index` has graded one more (within 30 s: its keeper
/// may first have a dataset to bring, and the other server drains batches meanwhile, the
/// faster the fewer the seconds); each must be accepted, graded on the current rows wherever
/// it ran.
async fn until_graded_on(app: &TestApp, token: &str, problem: i64, index: usize, tag: &str) {
    let before = graded(app).await[index];
    let started = Instant::now();
    for round in 0.. {
        let statuses = grade_sums(app, token, problem, 12, &format!("{tag}{round}")).await;
        assert!(
            statuses.iter().all(|s| s == "accepted"),
            "{tag}: {statuses:?}"
        );
        if graded(app).await[index] > before {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{tag}: server {index} never graded in {round} rounds: {:?}",
            sandboxes(app).await
        );
        sleep(50).await;
    }
}

#[actix_web::test]
async fn a_pool_of_two_sandbox_servers() {
    // Their logins give passwords: by SCRAM to one, MD5 to the other.
    let (a, b) = (
        PgCluster::start_with_logins(false, "scram-sha-256"),
        PgCluster::start_with_logins(false, "md5"),
    );
    let app = TestApp::spawn_with(Options {
        workers: 4,
        sandbox_urls: Some(format!("{},{}", a.url(DB), b.url(DB))),
        ..Options::default()
    })
    .await;
    wait_sandboxes(&app, "both ready", |l| {
        l.len() == 2 && l.iter().all(|s| s["ready"] == true)
    })
    .await;
    assert_eq!(
        app.put_dataset("pool", &script("(1), (2), (3)"))
            .await
            .status(),
        201
    );
    let problem = app
        .problem_of(
            json!({"slug": "pool-sum", "title": "Sum", "statement": "The sum of x", "topic": "basics",
                   "dataset": "pool", "reference_sql": "SELECT sum(x) AS s FROM t"}),
            json!({"generated_tests": 0}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let token = app.user("pooler").await;

    // Both servers grade: executors are spread over them. The second grades the new problem
    // only once its keeper has brought the new dataset there (meanwhile it hands its jobs
    // back).
    until_graded_on(&app, &token, problem, 0, "first").await;
    until_graded_on(&app, &token, problem, 1, "second").await;

    // One stops under steady load: its executors pause, the other's grade everything.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (app, stop) = (&app, stop.clone());
        async move { run_load(app, &app.address, 3, Duration::from_millis(20), stop).await }
    };
    let fault = async {
        sleep(800).await;
        b.stop();
        wait_sandboxes(&app, "b paused", |l| {
            l[1]["ready"] == false && l[0]["ready"] == true
        })
        .await;
        // Changed while b is down: b holds the old rows when it returns.
        let res = app.put_dataset("pool", &script("(10), (20)")).await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        sleep(1500).await;
        stop.store(true, Ordering::Relaxed);
    };
    let (report, ()) = futures_util::join!(load, fault);
    let outcome = check_invariants(&app, &report, Duration::from_secs(30)).await;
    eprintln!(
        "one of two sandbox servers down: sent {}, acknowledged {}, {outcome:?}",
        report.sent(),
        report.acked.len()
    );
    assert!(report.acked.len() > 20, "{:?}", report.statuses);
    assert_eq!((outcome.lost, outcome.duplicated), (0, 0), "{outcome:?}");

    // Back with the old dataset: brought up to date before it grades again, so every
    // grading sees the new rows, on either server.
    b.start_again();
    wait_sandboxes(&app, "b back", |l| l.iter().all(|s| s["ready"] == true)).await;
    until_graded_on(&app, &token, problem, 1, "back").await;

    // Changed while both are up: the second server's keeper notices within a second, and
    // until its pass is done it grades nothing of the new version (it hands jobs back), so
    // jobs sent at once are still all judged on the new rows.
    let res = app.put_dataset("pool", &script("(5), (7)")).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let statuses = grade_sums(&app, &token, problem, 24, "changed").await;
    assert!(
        statuses.iter().all(|s| s == "accepted"),
        "no grading on the old rows: {statuses:?}"
    );
}
