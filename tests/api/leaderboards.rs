use std::time::Duration;

use serde_json::Value;
use sqljudge_testkit::app::{Options, TestApp};
use sqljudge_testkit::faults::RedisInstance;

const UK: &str = "SELECT name FROM customers WHERE country = 'UK'";
const OUT_OF_STOCK: &str = "SELECT name, price FROM products WHERE stock = 0";
const MANAGERS: &str =
    "SELECT e.name, m.name FROM hr.employees e LEFT JOIN hr.employees m ON m.id = e.manager_id";

async fn board(app: &TestApp, path: &str) -> Value {
    let res = app.get(path, None).await;
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// Scores as (username, score) in board order, waiting for the asynchronous update.
async fn standings(app: &TestApp, path: &str, expected: &[(&str, i64)]) -> Value {
    let want: Vec<(String, i64)> = expected.iter().map(|(n, s)| (n.to_string(), *s)).collect();
    let started = std::time::Instant::now();
    loop {
        let body = board(app, path).await;
        let got: Vec<(String, i64)> = body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["username"].as_str().unwrap_or("?").to_string(),
                    e["score"].as_i64().unwrap(),
                )
            })
            .collect();
        if got == want {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path}: {got:?} != {want:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn scores_count_distinct_problems_with_deterministic_ties() {
    let mut redis = RedisInstance::start();
    let app = TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        ..Default::default()
    })
    .await;
    let (ann, bob, cid) = (
        app.user("ann").await,
        app.user("bob").await,
        app.user("cid").await,
    );
    let (uk, stock, managers) = (
        app.problem_id("uk-customers").await,
        app.problem_id("out-of-stock").await,
        app.problem_id("managers").await,
    );
    assert_eq!(app.grade(&ann, uk, UK).await["status"], "accepted");
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.grade(&bob, uk, UK).await["status"], "accepted");
    // Solving again, or failing, changes nothing.
    assert_eq!(app.grade(&bob, uk, UK).await["status"], "accepted");
    assert_eq!(
        app.grade(&cid, uk, "SELECT 1").await["status"],
        "wrong_answer"
    );
    // Equal scores: who reached the score first ranks first.
    let body = standings(&app, "/leaderboard/global", &[("ann", 1), ("bob", 1)]).await;
    assert_eq!(body["total"], 2);
    assert_eq!(body["entries"][0]["rank"], 1);
    assert_eq!(body["entries"][1]["rank"], 2);

    assert_eq!(
        app.grade(&bob, stock, OUT_OF_STOCK).await["status"],
        "accepted"
    );
    assert_eq!(
        app.grade(&bob, managers, MANAGERS).await["status"],
        "accepted"
    );
    standings(&app, "/leaderboard/global", &[("bob", 3), ("ann", 1)]).await;
    standings(&app, "/leaderboard/topic/basics", &[("bob", 2), ("ann", 1)]).await;
    standings(&app, "/leaderboard/topic/joins", &[("bob", 1)]).await;
    let paged = board(&app, "/leaderboard/global?limit=1&offset=1").await;
    assert_eq!(paged["entries"][0]["username"], "ann");
    assert_eq!(paged["entries"][0]["rank"], 2);
    assert_eq!(paged["total"], 2);

    let bob_id = app.user_id(&bob).await;
    let cid_id = app.user_id(&cid).await;
    let me = board(&app, &format!("/leaderboard/user/{bob_id}")).await;
    assert_eq!(me["global"]["rank"], 1);
    assert_eq!(me["global"]["score"], 3);
    assert_eq!(me["topics"]["basics"]["score"], 2);
    assert!(me["topics"]["window-functions"]["rank"].is_null());
    let nobody = board(&app, &format!("/leaderboard/user/{cid_id}")).await;
    assert!(nobody["global"]["rank"].is_null());
    assert_eq!(nobody["global"]["score"], 0);

    assert_eq!(
        app.get("/leaderboard/global?limit=101", None)
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get("/leaderboard/topic/no-such-topic", None)
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/leaderboard/user/987654", None).await.status(),
        404
    );

    // Redis gone: the same answers, from Postgres.
    redis.kill();
    let started = std::time::Instant::now();
    while app.state.health.redis_up() {
        assert!(started.elapsed() < Duration::from_secs(5));
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    standings(&app, "/leaderboard/global", &[("bob", 3), ("ann", 1)]).await;
    standings(&app, "/leaderboard/topic/basics", &[("bob", 2), ("ann", 1)]).await;
    let me = board(&app, &format!("/leaderboard/user/{bob_id}")).await;
    assert_eq!(me["global"]["rank"], 1);
    assert_eq!(me["topics"]["basics"]["score"], 2);

    // Back, empty: rebuilt from Postgres.
    redis.restart();
    while !app.state.health.redis_up() {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let started = std::time::Instant::now();
    loop {
        let n: i64 = redis::cmd("ZCARD")
            .arg(app.key("leaderboard:global"))
            .query(
                &mut redis::Client::open(redis.url())
                    .unwrap()
                    .get_connection()
                    .unwrap(),
            )
            .unwrap();
        if n == 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not rebuilt");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    standings(&app, "/leaderboard/global", &[("bob", 3), ("ann", 1)]).await;
}
