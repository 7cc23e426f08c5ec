//! `POST /problems/{id}/run`: a statement on the problem's sample under a submission's sandbox
//! rules, answered at once and recorded nowhere; its own rate limit and slots, so runs never
//! hold up submissions.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqljudge::config::RateLimitSettings;
use sqljudge_testkit::app::{count, sleep, Options, TestApp};

/// A 200 answer's body.
async fn answer(res: reqwest::Response) -> Value {
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// An error's status, code and Retry-After.
async fn error(res: reqwest::Response) -> (u16, String, Option<u64>) {
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body: Value = res.json().await.unwrap();
    let code = body["error"]["code"].as_str().unwrap().to_string();
    (status, code, retry)
}

/// Creates a problem on the shop dataset with its own time limit.
async fn problem(app: &TestApp, slug: &str, time_limit_ms: u32) -> i64 {
    let res = app
        .create_problem(
            &json!({"slug": slug, "title": slug, "statement": "Anything.",
            "topic": "basics", "dataset": "shop", "reference_sql": "SELECT 1",
            "time_limit_ms": time_limit_ms}),
        )
        .await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

#[actix_web::test]
async fn runs_answer_with_rows_or_verdicts_and_record_nothing() {
    let app = TestApp::spawn().await;
    let token = app.user("runner").await;
    let me = app.user_id(&token).await;
    let uk = app.problem_id("uk-customers").await;
    let sql = "SELECT name FROM customers WHERE country = 'UK'";

    let ok = answer(app.run(&token, uk, sql).await).await;
    assert_eq!(ok["status"], "ok", "{ok}");
    assert_eq!(ok["columns"], json!(["name"]));
    assert_eq!(ok["rows"], json!([["Ada"], ["Brian"]]));
    assert_eq!(ok["row_count"], 2);
    assert_eq!(ok["truncated"], false);
    assert!(ok["duration_ms"].as_i64().unwrap() >= 0);

    // 200 rows come back, with the count of all of them; NULL stays null.
    let many = answer(
        app.run(
            &token,
            uk,
            "SELECT g, NULL::text AS nothing, '' AS empty FROM generate_series(1, 500) g",
        )
        .await,
    )
    .await;
    assert_eq!(many["status"], "ok");
    assert_eq!(many["row_count"], 500);
    assert_eq!(many["truncated"], true);
    assert_eq!(many["rows"].as_array().unwrap().len(), 200);
    assert_eq!(many["rows"][0], json!(["1", null, ""]));
    assert_eq!(many["rows"][199][0], "200");

    // The verdicts that stop a statement, with their message and sqlstate.
    for (sql, status, sqlstate) in [
        ("SELECT nope FROM customers", "sql_error", Some("42703")),
        ("SELECT 1; SELECT 2", "rejected", None),
        ("DELETE FROM customers", "rejected", None),
        (
            "SELECT generate_series(1, 20000)",
            "output_limit_exceeded",
            None,
        ),
    ] {
        let stopped = answer(app.run(&token, uk, sql).await).await;
        assert_eq!(stopped["status"], status, "{sql}: {stopped}");
        assert!(
            !stopped["message"].as_str().unwrap().is_empty(),
            "{stopped}"
        );
        assert_eq!(stopped["sqlstate"].as_str(), sqlstate, "{stopped}");
        assert!(stopped.get("rows").is_none(), "{stopped}");
    }

    // The problem's own time limit, as for a submission.
    let quick = problem(&app, "quick", 300).await;
    let started = Instant::now();
    let slow = answer(app.run(&token, quick, "SELECT pg_sleep(5)").await).await;
    assert_eq!(slow["status"], "time_limit_exceeded", "{slow}");
    assert!(started.elapsed() < Duration::from_secs(4));

    // Writeable problems: the check table after the statement, which is rolled back (the
    // sequence too: the second run gets the same id).
    let hire = app.problem_id("hire-jun").await;
    let insert = "INSERT INTO hr.employees (name, department_id, salary, hired_on) \
                  VALUES ('Jun', 4, 5000, '2024-09-01')";
    for _ in 0..2 {
        let hired = answer(app.run(&token, hire, insert).await).await;
        assert_eq!(hired["status"], "ok", "{hired}");
        assert_eq!(
            hired["columns"],
            json!([
                "id",
                "name",
                "department_id",
                "manager_id",
                "salary",
                "hired_on"
            ])
        );
        assert_eq!(hired["row_count"], 10);
        let rows = hired["rows"].as_array().unwrap();
        assert!(
            rows.contains(&json!(["10", "Jun", "4", null, "5000.00", "2024-09-01"])),
            "{hired}"
        );
    }
    let raise = app.problem_id("raise-support").await;
    let zeroed = answer(
        app.run(
            &token,
            raise,
            "UPDATE hr.employees SET salary = 0 WHERE department_id = 3",
        )
        .await,
    )
    .await;
    let salaries = |body: &Value| -> Vec<String> {
        body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r[2] == "3")
            .map(|r| r[4].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(salaries(&zeroed), ["0.00", "0.00"], "{zeroed}");
    let unchanged = answer(app.run(&token, raise, "TABLE hr.employees").await).await;
    assert_eq!(unchanged["row_count"], 9);
    assert_eq!(salaries(&unchanged), ["4800.00", "4100.00"], "{unchanged}");
    let truncate = answer(app.run(&token, raise, "TRUNCATE hr.employees").await).await;
    assert_eq!(truncate["status"], "rejected", "{truncate}");

    // Nothing recorded, cached as a verdict or counted.
    let submissions = count(
        &mut app.platform_db(),
        "SELECT count(*) AS n FROM submissions",
    );
    assert_eq!(submissions, 0);
    let standing: Value = app
        .get(&format!("/leaderboard/user/{me}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(standing["global"]["score"], 0, "{standing}");
    assert!(standing["global"]["rank"].is_null(), "{standing}");
    let status: Value = app.get("/queue/status", None).await.json().await.unwrap();
    assert_eq!(status["processed_total"], 0, "{status}");
    assert_eq!(status["run_slots"], json!({"total": 2, "busy": 0}));
    // The solution that ran fine is graded when submitted, not answered from a cache.
    assert_eq!(app.submit(&token, uk, sql).await.status(), 202);

    // Bad requests.
    let raw = |path: String, body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url(&path))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let path = format!("/problems/{uk}/run");
    let cases = [
        (app.run(&token, uk, "  ").await, 400, "invalid_request"),
        (
            raw(
                path.clone(),
                "{\"sql\": \"SELECT 1\\u0000\"}",
                "application/json",
            )
            .await
            .unwrap(),
            400,
            "invalid_request",
        ),
        (
            raw(path.clone(), "{\"sql\": ", "application/json")
                .await
                .unwrap(),
            400,
            "malformed_json",
        ),
        (
            raw(path.clone(), "{}", "application/json").await.unwrap(),
            400,
            "invalid_request",
        ),
        (
            raw(
                path.clone(),
                "sql=SELECT+1",
                "application/x-www-form-urlencoded",
            )
            .await
            .unwrap(),
            415,
            "unsupported_media_type",
        ),
        (
            app.run(&token, uk, &format!("SELECT 1 -- {}", "x".repeat(70_000)))
                .await,
            413,
            "payload_too_large",
        ),
        (app.run(&token, 987654, "SELECT 1").await, 404, "not_found"),
        (
            app.post_json(
                "/problems/one/run",
                Some(&token),
                &json!({"sql": "SELECT 1"}),
            )
            .await,
            404,
            "not_found",
        ),
        (
            app.post_json(&path, None, &json!({"sql": "SELECT 1"}))
                .await,
            401,
            "unauthorized",
        ),
        (
            app.post_json(&path, Some("bogus"), &json!({"sql": "SELECT 1"}))
                .await,
            401,
            "unauthorized",
        ),
    ];
    for (i, (res, status, code)) in cases.into_iter().enumerate() {
        let (got, got_code, _) = error(res).await;
        assert_eq!((got, got_code.as_str()), (status, code), "case {i}");
    }
}

#[actix_web::test]
async fn runs_have_a_rate_limit_of_their_own() {
    let app = TestApp::spawn_with(Options {
        rate_limit: Some(RateLimitSettings {
            enabled: true,
            submit_per_minute: 1_000,
            submit_burst: 100,
            run_per_minute: 6,
            run_burst: 3,
            auth_per_minute: 1_000,
            auth_burst: 100,
        }),
        ..Default::default()
    })
    .await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let uk = app.problem_id("uk-customers").await;
    for n in 0..3 {
        let ok = answer(app.run(&ann, uk, &format!("SELECT {n}")).await).await;
        assert_eq!(ok["status"], "ok");
    }
    let (status, code, retry) = error(app.run(&ann, uk, "SELECT 3").await).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    assert!(retry.unwrap() >= 1);
    // Per user, and apart from submitting.
    assert_eq!(
        answer(app.run(&bob, uk, "SELECT 1").await).await["status"],
        "ok"
    );
    assert_eq!(app.submit(&ann, uk, "SELECT 1").await.status(), 202);
}

#[actix_web::test]
async fn one_run_per_user_at_a_time_and_503_when_no_slot_frees_in_time() {
    let app = TestApp::spawn_with(Options {
        tweak: Some(|s| s.executor.run_slots = 1),
        ..Default::default()
    })
    .await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let slow = problem(&app, "slow", 5000).await;
    let quick = problem(&app, "quick", 300).await;
    let long_run = app.run(&ann, slow, "SELECT pg_sleep(2)");
    let others = async {
        sleep(500).await;
        assert_eq!(app.state.runs.busy(), 1);
        // Ann's second run while her first one runs.
        let (status, code, retry) = error(app.run(&ann, quick, "SELECT 1").await).await;
        assert_eq!((status, code.as_str()), (429, "rate_limited"));
        assert!(retry.unwrap() >= 1);
        // Bob's waits for the one slot no longer than his problem's time limit.
        let started = Instant::now();
        let (status, code, retry) = error(app.run(&bob, quick, "SELECT 1").await).await;
        assert_eq!((status, code.as_str()), (503, "service_unavailable"));
        assert!(retry.unwrap() >= 1);
        assert!(started.elapsed() < Duration::from_millis(1200));
    };
    let (first, ()) = futures_util::future::join(long_run, others).await;
    assert_eq!(answer(first).await["status"], "ok");
    // The slot is free again, and so is Ann.
    assert_eq!(
        answer(app.run(&bob, quick, "SELECT 1").await).await["status"],
        "ok"
    );
    assert_eq!(
        answer(app.run(&ann, quick, "SELECT 1").await).await["status"],
        "ok"
    );
    assert_eq!(app.state.runs.busy(), 0);
}

#[actix_web::test]
async fn a_flood_of_runs_does_not_delay_submissions() {
    let app = TestApp::spawn().await;
    let uk = app.problem_id("uk-customers").await;
    let mut flooders = Vec::new();
    for n in 0..6 {
        flooders.push(app.user(&format!("flooder{n}")).await);
    }
    let learner = app.user("learner").await;
    let stop = AtomicBool::new(false);
    let (ran, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let flood = futures_util::future::join_all(flooders.iter().map(|token| async {
        while !stop.load(Ordering::Relaxed) {
            let res = app.run(token, uk, "SELECT pg_sleep(0.5)").await;
            match res.status().as_u16() {
                200 => ran.fetch_add(1, Ordering::Relaxed),
                503 => refused.fetch_add(1, Ordering::Relaxed),
                other => panic!("run answered {other}"),
            };
        }
    }));
    let probe = async {
        let started = Instant::now();
        while app.state.runs.busy() < 2 {
            assert!(started.elapsed() < Duration::from_secs(10), "no flood");
            sleep(10).await;
        }
        let (mut latencies, mut busy) = (Vec::new(), Vec::new());
        for n in 0..3 {
            let sql = format!("SELECT name FROM customers WHERE country = 'UK' AND {n} = {n}");
            let submitted = Instant::now();
            let verdict = app.grade(&learner, uk, &sql).await;
            assert_eq!(verdict["status"], "accepted", "{verdict}");
            latencies.push(submitted.elapsed());
            busy.push(app.state.runs.busy());
        }
        stop.store(true, Ordering::Relaxed);
        (latencies, busy)
    };
    let (_, (latencies, busy)) = futures_util::future::join(flood, probe).await;
    eprintln!(
        "submit to verdict during a flood of runs: {latencies:?}; run slots busy after each: \
         {busy:?}; runs: {} answered, {} refused (503)",
        ran.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    assert!(ran.load(Ordering::Relaxed) >= 2);
    for latency in latencies {
        // An executor takes it at once: a generous bound, far below what waiting behind the
        // runs would cost (6 users × 0.5 s in turn on 2 slots).
        assert!(latency < Duration::from_secs(5), "{latency:?}");
    }
}
