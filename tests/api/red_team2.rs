//! Second red-team round: regressions for what it found. Each test states what an attacker
//! did and what must hold instead.
use std::time::Duration;

use serde_json::{json, Value};
use sqljudge_testkit::app::TestApp;

/// A verdict is cached under the problem version current when grading *finishes*, not the
/// one it was graded against: a solution accepted by the old reference while an admin fixes
/// the problem is cached as accepted for the fixed problem, and everyone submitting the same
/// (now wrong) text is accepted from the cache for the next 10 minutes.
#[actix_web::test]
async fn a_verdict_graded_against_an_old_version_is_not_cached_for_the_new_one() {
    let app = TestApp::spawn().await;
    let body = |reference: &str| {
        json!({"slug": "race-cache", "title": "t", "statement": "s", "topic": "basics",
               "dataset": "hr", "reference_sql": reference})
    };
    let created = app.create_problem(&body("SELECT 1 AS x")).await;
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let (mallory, victim) = (app.user("mallory").await, app.user("victim").await);
    // Right for the old reference only, and slow enough to straddle the update.
    let sql = "SELECT 1 AS x FROM (SELECT pg_sleep(1.5)) s";
    let res = app.submit(&mallory, id, sql).await;
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    let updated = app.update_problem(id, &body("SELECT 2 AS x")).await;
    assert_eq!(updated.status(), 200);
    app.wait_final(
        &mallory,
        job["job_id"].as_str().unwrap(),
        Duration::from_secs(20),
    )
    .await;
    let graded = app.grade(&victim, id, sql).await;
    assert_eq!(graded["status"], "wrong_answer", "{graded}");
}
