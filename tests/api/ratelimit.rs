use std::time::Duration;

use serde_json::{json, Value};
use sqljudge::config::RateLimitSettings;
use sqljudge_testkit::app::{Options, TestApp};
use sqljudge_testkit::faults::RedisInstance;

async fn submit_status(
    app: &TestApp,
    token: &str,
    problem: i64,
    n: usize,
) -> (u16, Option<String>) {
    let sql = format!("SELECT name FROM customers WHERE country = 'UK' AND {n} > 0");
    let res = app.submit(token, problem, &sql).await;
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let status = res.status().as_u16();
    if status == 429 {
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    (status, retry)
}

#[actix_web::test]
async fn submissions_per_user_and_auth_per_client_are_limited_with_or_without_redis() {
    let mut redis = RedisInstance::start();
    let limits = RateLimitSettings {
        enabled: true,
        submit_per_minute: 6,
        submit_burst: 3,
        run_per_minute: 6,
        run_burst: 3,
        auth_per_minute: 6,
        auth_burst: 4,
    };
    let app = TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        rate_limit: Some(limits),
        ..Default::default()
    })
    .await;
    let ann = app.user("ann").await; // 2 auth requests
    let uk = app.problem_id("uk-customers").await;
    for n in 0..3 {
        assert!(matches!(
            submit_status(&app, &ann, uk, n).await.0,
            200 | 202
        ));
    }
    let (status, retry) = submit_status(&app, &ann, uk, 3).await;
    assert_eq!(status, 429);
    assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);

    // Per user: bob is not held back by ann (auth requests 3 and 4 of this client).
    let bob = app.user("bob").await;
    assert_eq!(submit_status(&app, &bob, uk, 100).await.0, 202);
    // Per client on /auth/*: the fifth request is over.
    let res = app
        .post_json(
            "/auth/login",
            None,
            &json!({"username": "bob", "password": "s3cret-pass"}),
        )
        .await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));

    // Redis gone: the in-process limiter takes over.
    redis.kill();
    let started = std::time::Instant::now();
    while app.state.health.redis_up() {
        assert!(started.elapsed() < Duration::from_secs(5));
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for n in 200..205 {
            v.push(submit_status(&app, &bob, uk, n).await.0);
        }
        v
    };
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
}
