//! Graceful shutdown: two instances under steady load, each restarted in turn with SIGTERM.
//! Nothing acknowledged is lost or recorded twice, each exits within its grace period, gradings
//! that outlast it are handed back at once, and WebSockets close with "going away".
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::RunQueryDsl;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sqljudge_testkit::app::{sleep, Options, Process, TestApp};
use sqljudge_testkit::faults::{check_invariants, free_port, LoadReport};
use tokio_tungstenite::tungstenite::Message;

const GRACE_SECS: u64 = 1;

fn start(app: &TestApp, port: u16) -> Process {
    app.process_with(
        env!("CARGO_BIN_EXE_sqljudge"),
        port,
        &[
            ("SQLJUDGE__EXECUTOR__WORKERS", "2"),
            ("SQLJUDGE__SERVER__SHUTDOWN_GRACE_SECS", "1"),
            // Far beyond the test: a job left to its lease would never finish in time.
            ("SQLJUDGE__EXECUTOR__LEASE_MS", "60000"),
        ],
        std::process::Stdio::null(),
    )
}

/// Sends SIGTERM and waits for the exit: how long it took, and whether it exited cleanly.
/// Meanwhile the instance answers `/health/ready` with 503 (for a balancer to notice).
async fn terminate(app: &TestApp, base: &str, process: &mut Process) -> (Duration, bool) {
    let started = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &process.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // The signal is handled asynchronously: the first answers may still be 200.
    loop {
        let ready = app.client.get(format!("{base}/health/ready")).send().await;
        match ready.map(|r| r.status().as_u16()) {
            Ok(503) => break,
            Ok(200) if started.elapsed() < Duration::from_millis(900) => sleep(10).await,
            other => panic!("ready while draining: {other:?}"),
        }
    }
    loop {
        if let Some(status) = process.try_wait().unwrap() {
            return (started.elapsed(), status.success());
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never exited");
        sleep(20).await;
    }
}

#[actix_web::test]
async fn rolling_restarts_lose_nothing_and_hand_back_at_once() {
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let ports = [free_port(), free_port()];
    let bases = ports.map(|p| format!("http://127.0.0.1:{p}"));
    let mut instances = [start(&app, ports[0]), start(&app, ports[1])];
    for base in &bases {
        app.wait_ready(base).await;
    }
    let problem = app.problem_id("uk-customers").await;

    // Steady load, spread over the instances that `route` allows (a load balancer's view).
    let route = Arc::new(AtomicUsize::new(2)); // 0, 1: that one only; 2: both
    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let mut clients = Vec::new();
    for c in 0..3 {
        let token = app.user(&format!("roll_{c}")).await;
        let (client, bases, route, stop, report) = (
            app.client.clone(),
            bases.clone(),
            route.clone(),
            stop.clone(),
            report.clone(),
        );
        clients.push(actix_web::rt::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let target = match route.load(Ordering::Relaxed) {
                    2 => n % 2,
                    only => only,
                };
                let sql = format!("SELECT name FROM customers WHERE country = 'UK' AND {c} < {n}");
                let sent = Instant::now();
                let res = client
                    .post(format!("{}/problems/submit", bases[target]))
                    .bearer_auth(&token)
                    .json(&json!({"problem_id": problem, "sql": sql}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let status = res.as_ref().map_or(0, |r| r.status().as_u16());
                let job = match res {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    _ => None,
                };
                {
                    let mut report = report.lock().unwrap();
                    report.samples.push((sent, sent.elapsed(), status));
                    *report.statuses.entry(status).or_default() += 1;
                    if let Some(id) = job.as_ref().and_then(|j| j["job_id"].as_str()) {
                        report.acked.push((id.to_string(), status));
                    }
                }
                sleep(15).await;
            }
        }));
    }

    // Gradings far longer than the grace period (one per user: each user's jobs take turns).
    // On a dataset of its own with no hidden test: each grading is one 3 s run.
    assert_eq!(
        app.put_dataset(
            "pace",
            "CREATE TABLE t (a integer); INSERT INTO t VALUES (1);"
        )
        .await
        .status(),
        201
    );
    let slow_problem = app
        .create_problem(&json!({
            "slug": "slow", "title": "Slowly", "statement": "The one row.",
            "topic": "basics", "dataset": "pace", "time_limit_ms": 8000, "generated_tests": 0,
            "reference_sql": "SELECT a FROM t",
        }))
        .await;
    assert_eq!(slow_problem.status(), 201);
    let slow_problem = slow_problem.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let mut slow_users = Vec::new();
    for k in 0..4 {
        slow_users.push(app.user(&format!("slow_{k}")).await);
    }
    let mut slow_jobs = Vec::new();
    let mut exits = Vec::new();
    for (i, other) in [(0usize, 1usize), (1, 0)] {
        sleep(700).await;
        let submitted = Instant::now();
        let mut round = Vec::new();
        for (k, token) in slow_users.iter().enumerate() {
            let sql =
                format!("SELECT a FROM t WHERE (SELECT pg_sleep(3)) IS NOT NULL AND {i}{k} >= 0");
            let res = app.submit(token, slow_problem, &sql).await;
            assert_eq!(res.status(), 202);
            let job: Value = res.json().await.unwrap();
            round.push((token.clone(), job["job_id"].as_str().unwrap().to_string()));
        }
        sleep(300).await;
        let mut socket = {
            let url = format!(
                "{}/ws?token={}",
                bases[i].replacen("http", "ws", 1),
                slow_users[0]
            );
            tokio_tungstenite::connect_async(url.as_str())
                .await
                .unwrap()
                .0
        };
        // The balancer stops sending here, then the orchestrator stops the instance.
        route.store(other, Ordering::Relaxed);
        sleep(200).await;
        let (took, clean) = terminate(&app, &bases[i], &mut instances[i]).await;
        exits.push(took);
        assert!(clean, "instance {i} exited with an error");
        assert!(
            took < Duration::from_secs(GRACE_SECS) + Duration::from_millis(2500),
            "instance {i} took {took:?} to stop (grace {GRACE_SECS} s)"
        );
        let mut going_away = None;
        while let Some(Ok(frame)) = socket.next().await {
            if let Message::Close(close) = frame {
                going_away = close.map(|c| u16::from(c.code));
                break;
            }
        }
        assert_eq!(
            going_away,
            Some(1001),
            "the WebSocket closes with going away"
        );
        // Handed back when the grace ended, not when a lease lapsed (a minute here): the
        // round is graded by the other instance in a few gradings' time.
        for (token, job) in &round {
            let within = Duration::from_secs(25).saturating_sub(submitted.elapsed());
            let result = app.wait_final(token, job, within).await;
            assert_eq!(result["status"], "accepted", "{result}");
        }
        slow_jobs.extend(round.into_iter().map(|(_, job)| job));
        instances[i] = start(&app, ports[i]);
        app.wait_ready(&bases[i]).await;
        let ready = app
            .client
            .get(format!("{}/health/ready", bases[i]))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        route.store(2, Ordering::Relaxed);
    }
    sleep(500).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let mut report = Arc::try_unwrap(report).unwrap().into_inner().unwrap();
    assert!(
        report.acked.len() > 50,
        "too little load: {}",
        report.acked.len()
    );
    report
        .acked
        .extend(slow_jobs.iter().map(|j| (j.clone(), 202)));
    let outcome = check_invariants(&app, &report, Duration::from_secs(30)).await;
    let worst = report.samples.iter().map(|(_, d, _)| *d).max();
    eprintln!(
        "rolling restart: sent {}, acknowledged {}, lost {}, duplicated {}, worst submit \
         {worst:?}, exits {exits:?} (grace {GRACE_SECS} s)",
        report.sent(),
        report.acked.len(),
        outcome.lost,
        outcome.duplicated
    );
    assert_eq!(
        (outcome.lost, outcome.duplicated),
        (0, 0),
        "{outcome:?} after {} acknowledged: {:?}",
        report.acked.len(),
        report.statuses
    );
}

/// A writeable grading cut short (kill -9, or abandoned at shutdown) may leave the dataset's
/// sequences advanced: `nextval()` ignores ROLLBACK. Gradings start from where the sequences
/// stood when the dataset was loaded, so the drift never turns right answers wrong.
#[actix_web::test]
async fn sequences_advanced_by_an_interrupted_grading_are_put_back() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    let script = "CREATE SCHEMA seqs; CREATE TABLE seqs.t (id serial PRIMARY KEY, v text); \
                  INSERT INTO seqs.t (v) VALUES ('a'), ('b');";
    assert_eq!(app.put_dataset("seqs", script).await.status(), 201);
    let res = app
        .create_problem(&json!({
            "slug": "add-one", "title": "Add one", "statement": "Add 'new'.", "topic": "dml",
            "dataset": "seqs", "writeable": true, "check_table": "seqs.t",
            "reference_sql": "INSERT INTO seqs.t (v) VALUES ('new')",
        }))
        .await;
    let problem: Value = res.json().await.unwrap();
    let id = problem["id"].as_i64().unwrap();
    let token = app.user("writer").await;
    let sql = "INSERT INTO seqs.t (v) VALUES ('new')";
    assert_eq!(app.grade(&token, id, sql).await["status"], "accepted");
    // What a grading that died between nextval() and its ROLLBACK leaves behind.
    let mut sandbox = app.sandbox_db();
    for _ in 0..3 {
        diesel::sql_query("SELECT nextval('seqs.t_id_seq')")
            .execute(&mut sandbox)
            .unwrap();
    }
    let again = app.grade(&token, id, &format!("{sql} RETURNING id")).await;
    assert_eq!(again["status"], "accepted", "{again}");
    let run: Value = app
        .post_json(
            &format!("/problems/{id}/run"),
            Some(&token),
            &json!({"sql": sql}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(run["rows"][2], json!(["3", "new"]), "{run}");
}
