use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqljudge::db::models::{NewSubmission, Submission};
use sqljudge::job::{Job, Outcome, Queue, Status};
use sqljudge_testkit::app::{Options, TestApp};

const UK: &str = "SELECT name FROM customers WHERE country = 'UK'";

async fn fix_reference(app: &TestApp, id: i64, reference: &str) {
    let detail: Value = app.problem(id).await;
    let body = json!({"slug": detail["slug"], "title": detail["title"], "statement": detail["statement"],
                      "topic": detail["topic"], "dataset": detail["dataset"], "reference_sql": reference});
    let res = app.update_problem(id, &body).await;
    assert_eq!(res.status(), 200);
}

async fn rejudge(app: &TestApp, id: i64) -> Value {
    let res = app
        .post_json(
            &format!("/admin/problems/{id}/rejudge"),
            Some(&app.admin_token),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 202);
    res.json().await.unwrap()
}

async fn wait_status(app: &TestApp, token: &str, job: &str, want: &str) {
    let started = Instant::now();
    loop {
        let r: Value = app
            .get(&format!("/problems/result/{job}"), Some(token))
            .await
            .json()
            .await
            .unwrap();
        if r["status"] == want {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{job}: {r}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn global_total(app: &TestApp) -> i64 {
    app.get("/leaderboard/global", None)
        .await
        .json::<Value>()
        .await
        .unwrap()["total"]
        .as_i64()
        .unwrap()
}

#[actix_web::test]
async fn rejudge_updates_verdicts_first_solves_and_leaderboards() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.user("ann").await, app.user("bob").await);
    let uk = app.problem_id("uk-customers").await;
    let a = app.grade(&ann, uk, UK).await;
    let b = app
        .grade(
            &bob,
            uk,
            "SELECT name, city FROM customers WHERE country = 'UK'",
        )
        .await;
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("accepted"), Some("wrong_answer"))
    );
    let started = Instant::now();
    while global_total(&app).await != 1 {
        assert!(started.elapsed() < Duration::from_secs(10));
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }

    // The problem now wants the city too: ann's verdict flips one way, bob's the other.
    fix_reference(
        &app,
        uk,
        "SELECT name, city FROM customers WHERE country = 'UK'",
    )
    .await;
    assert_eq!(rejudge(&app, uk).await["queued"], 2);
    wait_status(&app, &ann, a["job_id"].as_str().unwrap(), "wrong_answer").await;
    wait_status(&app, &bob, b["job_id"].as_str().unwrap(), "accepted").await;
    let me: Value = app.get("/users/me", Some(&ann)).await.json().await.unwrap();
    assert_eq!(me["solved"], 0);
    let me: Value = app.get("/users/me", Some(&bob)).await.json().await.unwrap();
    assert_eq!(me["solved"], 1);
    let started = Instant::now();
    loop {
        let board: Value = app
            .get("/leaderboard/global", None)
            .await
            .json()
            .await
            .unwrap();
        if board["total"] == 1 && board["entries"][0]["username"] == "bob" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{board}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.post_json(
            "/admin/problems/424242/rejudge",
            Some(&app.admin_token),
            &json!({})
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        app.post_json(
            &format!("/admin/problems/{uk}/rejudge"),
            Some(&ann),
            &json!({})
        )
        .await
        .status(),
        403
    );
}

#[actix_web::test]
async fn live_submissions_go_before_a_large_rejudge() {
    let app = TestApp::spawn_with(Options {
        workers: 1,
        ..Default::default()
    })
    .await;
    let token = app.user("busy").await;
    let (user_id, uk) = (
        app.user_id(&token).await,
        app.problem_id("uk-customers").await,
    );
    // 400 graded submissions to rejudge.
    sqljudge::db::run(&app.state.pool, move |c| {
        for i in 0..400 {
            let job = Job {
                job_id: uuid::Uuid::new_v4(),
                user_id,
                problem_id: uk,
                sql: format!("SELECT name FROM customers WHERE country = 'UK' AND {i} = {i}"),
                request_id: None,
                submitted_at: chrono::Utc::now(),
                rejudge: false,
            };
            Submission::insert_idempotent(c, &NewSubmission::queued(&job, Queue::Redis))?;
            Submission::record_result(
                c,
                &job,
                Queue::Redis,
                &Outcome::verdict(Status::Accepted, "seeded"),
            )?;
        }
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(rejudge(&app, uk).await["queued"], 400);
    let started = Instant::now();
    let live = app.grade(&token, uk, UK).await;
    let waited = started.elapsed();
    assert_eq!(live["status"], "accepted");
    let health: Value = app.get("/health", None).await.json().await.unwrap();
    let left = health["queue"]["background_pending"].as_u64().unwrap();
    assert!(
        left > 100,
        "the live job waited for the rejudge: {left} left"
    );
    assert!(waited < Duration::from_secs(2), "live job took {waited:?}");
}
