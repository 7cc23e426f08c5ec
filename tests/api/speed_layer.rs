//! The API response cache, sessions in Redis and activity tracking: with Redis up, with Redis
//! unreachable (a proxy the test cuts, so Redis keeps its keys), and after it returns.
use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::{json, Value};
use sqljudge_testkit::app::{sleep, wait_mode, TestApp};
use sqljudge_testkit::faults::{app_behind_redis_proxy, Mode};

const UK: &str = "SELECT name FROM customers WHERE country = 'UK'";

/// GETs `path` until the response's `X-Cache` is `want` (the store after a miss is
/// asynchronous); returns the body.
async fn get_until_cache(app: &TestApp, path: &str, want: &str) -> Value {
    let started = Instant::now();
    loop {
        let res = app.get(path, None).await;
        assert_eq!(res.status(), 200, "{path}");
        let cache = res.headers()["x-cache"].to_str().unwrap().to_string();
        let body: Value = res.json().await.unwrap();
        if cache == want {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} never answered X-Cache: {want} (last: {cache})"
        );
        sleep(20).await;
    }
}

async fn x_cache(app: &TestApp, path: &str) -> (String, Value) {
    let res = app.get(path, None).await;
    assert_eq!(res.status(), 200, "{path}");
    let cache = res.headers()["x-cache"].to_str().unwrap().to_string();
    (cache, res.json().await.unwrap())
}

fn title_in_list(list: &Value, id: i64) -> String {
    list.as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap()["title"]
        .as_str()
        .unwrap()
        .to_string()
}

#[actix_web::test]
async fn responses_are_cached_and_writes_invalidate_them() {
    let app = TestApp::spawn().await;
    let uk = app.problem_id("uk-customers").await;

    // Problems: miss, then hit; an admin edit shows at once.
    get_until_cache(&app, "/problems", "hit").await;
    get_until_cache(&app, &format!("/problems/{uk}"), "hit").await;
    app.retitle(uk, "Customers in the United Kingdom", UK).await;
    let (cache, list) = x_cache(&app, "/problems").await;
    assert_eq!(cache, "miss");
    assert_eq!(title_in_list(&list, uk), "Customers in the United Kingdom");
    let (cache, detail) = x_cache(&app, &format!("/problems/{uk}")).await;
    assert_eq!(cache, "miss");
    assert_eq!(detail["title"], "Customers in the United Kingdom");
    let topic = detail["topic"].as_str().unwrap().to_string();

    // Leaderboards and a user's standings: cached until a first solve changes them.
    let ann = app.user("cache_ann").await;
    let ann_id = app.user_id(&ann).await;
    let board = get_until_cache(&app, "/leaderboard/global?limit=5", "hit").await;
    assert_eq!(board["total"], 0);
    get_until_cache(&app, &format!("/leaderboard/topic/{topic}"), "hit").await;
    let standing = get_until_cache(&app, &format!("/leaderboard/user/{ann_id}"), "hit").await;
    assert_eq!(standing["global"]["score"], 0);
    assert_eq!(app.grade(&ann, uk, UK).await["status"], "accepted");
    let started = Instant::now();
    loop {
        let (_, board) = x_cache(&app, "/leaderboard/global?limit=5").await;
        let (_, by_topic) = x_cache(&app, &format!("/leaderboard/topic/{topic}")).await;
        let (_, standing) = x_cache(&app, &format!("/leaderboard/user/{ann_id}")).await;
        if board["total"] == 1 && by_topic["total"] == 1 && standing["global"]["score"] == 1 {
            assert_eq!(board["entries"][0]["username"], "cache_ann");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a cached leaderboard outlived the solve: {board} {by_topic} {standing}"
        );
        sleep(20).await;
    }
    // Different pages are different entries.
    let (_, second) = x_cache(&app, "/leaderboard/global?limit=5&offset=1").await;
    assert_eq!(second["entries"], json!([]));
}

#[actix_web::test]
async fn cache_is_bypassed_while_redis_is_unreachable_and_cleared_when_it_returns() {
    let (proxy, app) = app_behind_redis_proxy().await;
    let uk = app.problem_id("uk-customers").await;
    get_until_cache(&app, "/problems", "hit").await;

    proxy.set(Mode::Refuse);
    wait_mode(&app, "fallback").await;
    let (cache, _) = x_cache(&app, "/problems").await;
    assert_eq!(cache, "bypass");
    // This write cannot reach the cache; Redis keeps the old response meanwhile.
    app.retitle(uk, "Retitled during the outage", UK).await;
    let (_, list) = x_cache(&app, "/problems").await;
    assert_eq!(title_in_list(&list, uk), "Retitled during the outage");

    proxy.set(Mode::Forward);
    wait_mode(&app, "redis").await;
    let started = Instant::now();
    loop {
        let (cache, list) = x_cache(&app, "/problems").await;
        assert_eq!(
            title_in_list(&list, uk),
            "Retitled during the outage",
            "a response cached before the outage was served ({cache})"
        );
        if cache == "hit" {
            break; // the cache is in use again, with the new response
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cache never used again"
        );
        sleep(20).await;
    }
}

#[actix_web::test]
async fn sessions_live_in_redis_and_revocations_survive_an_outage() {
    let (proxy, app) = app_behind_redis_proxy().await;
    let token = app.user("sess_ann").await;
    let key = app.key(&format!("session:{}", sqljudge::auth::token_hash(&token)));
    let mut redis = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl: i64 = redis.ttl(&key).unwrap();
    let access_ttl = app.state.settings.auth.access_ttl_secs;
    assert!(
        (access_ttl - 5..=access_ttl).contains(&ttl),
        "session TTL {ttl}, access tokens live {access_ttl} s"
    );
    let session: String = redis.get(&key).unwrap();
    assert!(session.contains("sess_ann"), "{session}");
    assert_eq!(app.get("/users/me", Some(&token)).await.status(), 200);

    // Redis unreachable: Postgres authenticates, and logout works.
    proxy.set(Mode::Refuse);
    wait_mode(&app, "fallback").await;
    assert_eq!(app.get("/users/me", Some(&token)).await.status(), 200);
    assert_eq!(app.logout(&token).await, 204);
    assert_eq!(app.get("/users/me", Some(&token)).await.status(), 401);
    // Redis never heard of the logout: it still holds the session.
    assert!(redis.exists::<_, bool>(&key).unwrap());

    // Redis is back with the stale session; the revocation still holds.
    proxy.set(Mode::Forward);
    wait_mode(&app, "redis").await;
    for _ in 0..20 {
        assert_eq!(app.get("/users/me", Some(&token)).await.status(), 401);
        sleep(25).await;
    }
    assert!(
        !redis.exists::<_, bool>(&key).unwrap(),
        "the revoked session was not dropped from Redis"
    );
    // A new login works through Redis again.
    let res = app
        .post_json(
            "/auth/login",
            None,
            &json!({"username": "sess_ann", "password": "s3cret-pass"}),
        )
        .await;
    let fresh = res.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.get("/users/me", Some(&fresh)).await.status(), 200);
}

#[actix_web::test]
async fn last_seen_is_tracked_in_redis_and_postgres() {
    let (proxy, app) = app_behind_redis_proxy().await;
    let token = app.user("seen_ann").await;
    let id = app.user_id(&token).await;
    let mut redis = redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_connection()
        .unwrap();
    let last_seen = |app: &TestApp| -> Option<chrono::DateTime<chrono::Utc>> {
        use diesel::prelude::*;
        sqljudge::db::schema::users::table
            .find(id)
            .select(sqljudge::db::schema::users::last_seen_at)
            .first(&mut app.platform_db())
            .unwrap()
    };
    let started = Instant::now();
    let (in_redis, in_pg) = loop {
        let in_redis: Option<i64> = redis.zscore(app.key("users:last_seen"), id).unwrap();
        if let (Some(r), Some(p)) = (in_redis, last_seen(&app)) {
            break (r, p);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "activity not recorded"
        );
        sleep(50).await;
    };
    assert!((chrono::Utc::now().timestamp_millis() - in_redis).abs() < 10_000);
    assert_eq!(in_pg.timestamp_millis(), in_redis);
    let me: Value = app
        .get("/users/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(me["last_seen_at"].is_string(), "{me}");

    // Redis unreachable: activity still reaches Postgres.
    proxy.set(Mode::Refuse);
    wait_mode(&app, "fallback").await;
    sleep(200).await;
    assert_eq!(app.get("/users/me", Some(&token)).await.status(), 200);
    let started = Instant::now();
    while last_seen(&app).unwrap() <= in_pg {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not recorded in Postgres"
        );
        sleep(50).await;
    }
    proxy.set(Mode::Forward);
}

#[actix_web::test]
async fn client_input_never_becomes_a_cache_key_of_its_own() {
    let app = TestApp::spawn().await;
    let mut redis = app.redis();
    let mut cache_keys = || -> Vec<String> { redis.keys(app.key("cache:api:*")).unwrap() };
    // Real topics and pages are still cached.
    get_until_cache(&app, "/problems?topic=basics", "hit").await;
    get_until_cache(&app, "/leaderboard/topic/basics", "hit").await;
    get_until_cache(&app, "/leaderboard/global?limit=5", "hit").await;
    let before = cache_keys();

    // Malformed topics are refused, however long (64 kB: about the most a URI can hold).
    let huge = "a".repeat(64_000);
    for path in [
        format!("/problems?topic={huge}"),
        format!("/leaderboard/topic/{}", "b".repeat(4096)),
        "/problems?topic=Basics".to_string(),
        "/leaderboard/topic/no%20spaces".to_string(),
    ] {
        for _ in 0..if path.len() > 1024 { 100 } else { 1 } {
            let res = app.get(&path, None).await;
            assert_eq!(res.status(), 400, "{:.80}", path);
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "invalid_request");
        }
    }
    // Well-formed names of nothing are answered without a key.
    for _ in 0..3 {
        let (cache, list) = x_cache(&app, "/problems?topic=no-such-topic").await;
        assert_eq!((cache.as_str(), list), ("bypass", json!([])));
        let res = app.get("/leaderboard/topic/no-such-topic", None).await;
        assert_eq!(res.status(), 404);
    }
    for offset in [1000, 1001, i64::MAX] {
        let (cache, page) = x_cache(&app, &format!("/leaderboard/global?offset={offset}")).await;
        assert_eq!(cache, "bypass", "a page past the end");
        assert_eq!(page["entries"], json!([]));
    }
    sleep(300).await; // a store after a miss is asynchronous
    let after = cache_keys();
    let new: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert!(new.is_empty(), "new keys: {new:?}");
    assert!(after.iter().all(|k| k.len() < 256), "{after:?}");
    let used: u64 = after
        .iter()
        .map(|k| {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(k)
                .query::<Option<u64>>(&mut app.redis())
                .unwrap()
                .unwrap_or(0)
        })
        .sum();
    assert!(used < 64 * 1024, "cached responses take {used} bytes");
}
