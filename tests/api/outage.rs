//! Redis and Postgres failing under a steady submission load, against instances and proxies
//! the tests control. Every scenario keeps the same invariants (`faults::check_invariants`).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqljudge_testkit::app::{rows_read, sleep, wait_mode, Options, TestApp};
use sqljudge_testkit::faults::{
    check_invariants, free_port, leaderboard_mismatches, postgres_port, run_load, Mode, Proxy,
    RedisInstance, SentinelSet,
};

#[actix_web::test]
async fn redis_killed_and_restarted_under_load() {
    let mut redis = RedisInstance::start();
    let app = TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        ..Options::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (app, stop) = (&app, stop.clone());
        async move { run_load(app, &app.address, 3, Duration::from_millis(15), stop).await }
    };
    let faults = async {
        for _ in 0..3 {
            sleep(700).await;
            redis.kill();
            wait_mode(&app, "fallback").await;
            sleep(700).await;
            redis.restart();
            wait_mode(&app, "redis").await;
        }
        sleep(500).await;
        stop.store(true, Ordering::Relaxed);
    };
    let (report, ()) = futures_util::join!(load, faults);
    let by_queue = |code| report.acked.iter().filter(|(_, s)| *s == code).count();
    assert!(
        by_queue(202) > 20 && by_queue(201) > 5,
        "both queues used: {:?}",
        report.statuses
    );
    let outcome = check_invariants(&app, &report, Duration::from_secs(30)).await;
    assert_eq!(outcome.lost, 0, "{outcome:?}");
    assert_eq!(outcome.duplicated, 0);
    assert_eq!(
        outcome.miscounted, 0,
        "leaderboard equals a recount from Postgres"
    );
    assert_eq!(app.fallback_pending(), 0, "the fallback queue drained");
}

#[actix_web::test]
async fn hanging_redis_costs_at_most_the_timeout_until_routing_flips() {
    let redis = RedisInstance::start();
    let proxy = Proxy::start(redis.port);
    let app = TestApp::spawn_with(Options {
        redis_url: Some(format!("redis://127.0.0.1:{}", proxy.port)),
        ..Options::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = run_load(
        &app,
        &app.address,
        3,
        Duration::from_millis(15),
        stop.clone(),
    );
    let faults = async {
        sleep(800).await;
        let hung_at = Instant::now();
        proxy.set(Mode::Hang);
        wait_mode(&app, "fallback").await;
        sleep(1500).await;
        proxy.set(Mode::Forward);
        wait_mode(&app, "redis").await;
        sleep(800).await;
        stop.store(true, Ordering::Relaxed);
        hung_at
    };
    let (report, hung_at) = futures_util::join!(load, faults);
    // Requests that met the hang before the flip waited for the Redis timeout (250 ms), no more
    // (with slack for a loaded 2-core machine).
    let worst = report.worst_between(hung_at, hung_at + Duration::from_secs(2));
    assert!(
        worst < Duration::from_millis(1000),
        "worst submit during the hang: {worst:?}"
    );
    assert!(
        report.first_status_after(hung_at, 201).is_some(),
        "fell back to Postgres"
    );
    let outcome = check_invariants(&app, &report, Duration::from_secs(30)).await;
    assert_eq!(outcome.lost, 0, "{outcome:?}");
    assert_eq!(outcome.miscounted, 0, "{outcome:?}");
}

#[actix_web::test]
async fn redis_answering_errors_is_treated_as_down() {
    let redis = RedisInstance::start();
    let app = TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        ..Options::default()
    })
    .await;
    let token = app.user("during_oom").await;
    let uk = app.problem_id("uk-customers").await;
    // Out of memory: every write is refused with an error, reads still answer.
    redis.command(&["CONFIG", "SET", "maxmemory", "1"]);
    wait_mode(&app, "fallback").await;
    let res = app
        .submit(
            &token,
            uk,
            "SELECT name FROM customers WHERE country = 'UK'",
        )
        .await;
    assert_eq!(res.status(), 201);
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["queue"], "postgres");
    // Graded from Postgres during the outage.
    let result = app
        .wait_final(
            &token,
            job["job_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(result["status"], "accepted");
    assert_eq!(result["source"], "postgres");
    let queued_during = app.submit(&token, uk, "SELECT name FROM customers").await;
    assert_eq!(queued_during.status(), 201);
    let queued_during: Value = queued_during.json().await.unwrap();

    redis.command(&["CONFIG", "SET", "maxmemory", "0"]);
    wait_mode(&app, "redis").await;
    let res = app
        .submit(
            &token,
            uk,
            "SELECT name FROM customers WHERE country = 'UK'",
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    let result = app
        .wait_final(
            &token,
            queued_during["job_id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(result["status"], "wrong_answer");
    let health: Value = app.get("/health", None).await.json().await.unwrap();
    assert_eq!(health["queue"]["fallback_pending"], 0);
    assert_eq!(
        leaderboard_mismatches(&app, Duration::from_secs(10)).await,
        0
    );
}

#[actix_web::test]
async fn postgres_cut_off_then_both_down() {
    // Only a Redis that persists may acknowledge alone (the next test shows the other case).
    let redis = RedisInstance::start_persistent();
    let redis_proxy = Proxy::start(redis.port);
    let pg_port = postgres_port();
    let pg_proxy = Proxy::start(pg_port);
    let app = TestApp::spawn_with(Options {
        redis_url: Some(format!("redis://127.0.0.1:{}", redis_proxy.port)),
        platform_port: Some(pg_proxy.port),
        ..Options::default()
    })
    .await;
    let token = app.user("steady").await;
    let uk = app.problem_id("uk-customers").await;
    let sql = "SELECT name FROM customers WHERE country = 'UK'";
    assert_eq!(app.grade(&token, uk, sql).await["status"], "accepted");

    pg_proxy.set(Mode::Refuse);
    let started = Instant::now();
    while app
        .get("/health", None)
        .await
        .json::<Value>()
        .await
        .unwrap()["postgres"]["up"]
        != false
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        sleep(20).await;
    }
    let health: Value = app.get("/health", None).await.json().await.unwrap();
    assert_eq!(health["redis"]["persistence"]["aof"], true, "{health}");
    assert_eq!(health["redis"]["persistence"]["appendfsync"], "everysec");
    // Accepted into Redis and graded; the results wait in Redis.
    let mut during = Vec::new();
    for _ in 0..5 {
        let res = app.submit(&token, uk, sql).await;
        assert_eq!(res.status(), 202);
        let job: Value = res.json().await.unwrap();
        during.push(job["job_id"].as_str().unwrap().to_string());
    }
    for job in &during {
        let result = app.wait_final(&token, job, Duration::from_secs(10)).await;
        assert_eq!(result["status"], "accepted");
    }
    // Idempotency holds without Postgres.
    let body = json!({"problem_id": uk, "sql": sql, "request_id": "pg-down-1"});
    let a: Value = app
        .post_json("/problems/submit", Some(&token), &body)
        .await
        .json()
        .await
        .unwrap();
    let b: Value = app
        .post_json("/problems/submit", Some(&token), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["job_id"], b["job_id"]);
    during.push(a["job_id"].as_str().unwrap().to_string());

    // Both cut off: 503 with Retry-After, and nothing acknowledged.
    redis_proxy.set(Mode::Refuse);
    let started = Instant::now();
    loop {
        let res = app.submit(&token, uk, sql).await;
        if res.status() == 503 {
            assert!(res.headers().contains_key("retry-after"));
            break;
        }
        assert!(res.status().is_success(), "{}", res.status());
        during.push(
            res.json::<Value>().await.unwrap()["job_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        sleep(50).await;
    }
    assert_eq!(app.get("/health", None).await.status(), 503);
    // Once routing knows, a 503 costs no wait on either backend (1.0 s before issue 12).
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let sent = Instant::now();
        assert_eq!(app.submit(&token, uk, sql).await.status(), 503);
        worst = worst.max(sent.elapsed());
    }
    eprintln!("both down: the worst of 5 submissions answered 503 in {worst:?}");
    assert!(worst < Duration::from_millis(250), "{worst:?}");

    // Both back: everything acknowledged is recorded, once.
    redis_proxy.set(Mode::Forward);
    pg_proxy.set(Mode::Forward);
    wait_mode(&app, "redis").await;
    app.wait_recorded_once(&during, Duration::from_secs(20))
        .await;
    assert_eq!(
        leaderboard_mismatches(&app, Duration::from_secs(10)).await,
        0
    );
}

#[actix_web::test]
async fn service_killed_and_restarted_under_load() {
    let app = TestApp::spawn().await;
    // A second instance as a real process on the same databases and Redis prefix, killed
    // with SIGKILL while it takes submissions, then started again.
    let port = free_port();
    let spawn = || app.process(env!("CARGO_BIN_EXE_sqljudge"), port);
    let mut process = spawn();
    let external = format!("http://127.0.0.1:{port}");
    app.wait_ready(&external).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = run_load(&app, &external, 3, Duration::from_millis(10), stop.clone());
    let faults = async {
        for _ in 0..2 {
            sleep(1000).await;
            process.kill().unwrap(); // SIGKILL
            process.wait().unwrap();
            sleep(300).await;
            process = spawn();
            app.wait_ready(&external).await;
        }
        sleep(800).await;
        stop.store(true, Ordering::Relaxed);
    };
    let (report, ()) = futures_util::join!(load, faults);
    let _ = process.kill();
    let _ = process.wait();
    assert!(report.acked.len() > 30, "{:?}", report.statuses);
    // Requests cut by the kill got no answer (status 0); none was acknowledged and lost.
    let mut report = report;
    report.statuses.remove(&0);
    // The in-process instance finishes what the dead one left (leases lapse, re-sweep).
    let outcome = check_invariants(&app, &report, Duration::from_secs(30)).await;
    assert_eq!(outcome.lost, 0, "{outcome:?}");
    assert_eq!(outcome.duplicated, 0);
    assert_eq!(outcome.miscounted, 0, "{outcome:?}");
}

/// A Postgres that hangs or refuses costs a submission at most `database.request_timeout_ms`
/// (250 ms), and only the first: routing goes around it at once. Before, a hang cost 5 s and a
/// refusal 2 s.
#[actix_web::test]
async fn a_stalled_postgres_costs_a_submission_at_most_its_timeout() {
    let pg_proxy = Proxy::start(postgres_port());
    let redis = RedisInstance::start_persistent();
    let app = TestApp::spawn_with(Options {
        platform_port: Some(pg_proxy.port),
        redis_url: Some(redis.url()),
        ..Options::default()
    })
    .await;
    let token = app.user("stalled").await;
    let uk = app.problem_id("uk-customers").await;
    let mut acked = Vec::new();
    for (round, mode) in [Mode::Hang, Mode::Refuse].into_iter().enumerate() {
        let sql = |n: usize| {
            format!("SELECT name FROM customers WHERE country = 'UK' AND {round}{n} >= 0")
        };
        assert_eq!(app.grade(&token, uk, &sql(0)).await["status"], "accepted");
        pg_proxy.set(mode);
        let mut worst = Duration::ZERO;
        for n in 1..=5 {
            let started = Instant::now();
            let res = app.submit(&token, uk, &sql(n)).await;
            worst = worst.max(started.elapsed());
            assert_eq!(res.status(), 202, "round {round}");
            let job: Value = res.json().await.unwrap();
            acked.push(job["job_id"].as_str().unwrap().to_string());
        }
        assert!(
            worst < Duration::from_millis(600),
            "round {round}: a submission took {worst:?} while Postgres stalled"
        );
        pg_proxy.set(Mode::Forward);
        let started = Instant::now();
        while app
            .get("/health", None)
            .await
            .json::<Value>()
            .await
            .unwrap()["postgres"]["up"]
            != true
        {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "postgres never back"
            );
            sleep(50).await;
        }
    }
    // Graded from Redis meanwhile; recorded once when Postgres answers again.
    app.wait_recorded_once(&acked, Duration::from_secs(30))
        .await;
}

/// An app whose Postgres is behind a proxy the test controls, on a Redis of its own without an
/// append-only file.
async fn behind_pg_proxy_with_volatile_redis() -> (RedisInstance, Proxy, TestApp) {
    let redis = RedisInstance::start();
    let pg_proxy = Proxy::start(postgres_port());
    let app = TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        platform_port: Some(pg_proxy.port),
        ..Options::default()
    })
    .await;
    (redis, pg_proxy, app)
}

/// Routing around a slow Postgres helps only where Redis can keep a submission alone. Where it
/// cannot (no append-only file), a Postgres slower than `database.request_timeout_ms` (a loaded
/// machine) is waited for, up to `database.request_timeout_alone_ms`, instead of the submission
/// being refused with 503.
#[actix_web::test]
async fn a_slow_postgres_is_waited_for_where_redis_cannot_keep_a_submission_alone() {
    let (_redis, pg_proxy, app) = behind_pg_proxy_with_volatile_redis().await;
    let token = app.user("patient").await;
    let uk = app.problem_id("uk-customers").await;
    let sql = |n: u32| format!("SELECT name FROM customers WHERE country = 'UK' AND {n} >= 0");
    assert_eq!(app.grade(&token, uk, &sql(0)).await["status"], "accepted");

    pg_proxy.set(Mode::Hang);
    let started = Instant::now();
    let stall = async {
        sleep(700).await;
        pg_proxy.set(Mode::Forward);
    };
    let slow = sql(1);
    let (res, ()) = futures_util::join!(app.submit(&token, uk, &slow), stall);
    let waited = started.elapsed();
    let status = res.status();
    let job: Value = res.json().await.unwrap();
    assert_eq!(status, 202, "{job}");
    assert!(waited >= Duration::from_millis(650), "{waited:?}");
    app.wait_recorded_once(
        &[job["job_id"].as_str().unwrap().to_string()],
        Duration::from_secs(30),
    )
    .await;
}

/// While Postgres is down a 202 would rest on Redis alone: a Redis without its append-only file
/// (it forgets everything when it restarts) gets no such acknowledgement. The submission is
/// refused with 503 and Retry-After, `/health` says why, and nothing is half accepted; when
/// Postgres answers again submissions are taken as before.
#[actix_web::test]
async fn without_postgres_a_redis_that_does_not_persist_acknowledges_nothing() {
    let (_redis, pg_proxy, app) = behind_pg_proxy_with_volatile_redis().await;
    let token = app.user("volatile").await;
    let uk = app.problem_id("uk-customers").await;
    let sql = |n: u32| format!("SELECT name FROM customers WHERE country = 'UK' AND {n} >= 0");
    assert_eq!(app.grade(&token, uk, &sql(0)).await["status"], "accepted");
    let health: Value = app.get("/health", None).await.json().await.unwrap();
    assert_eq!(health["redis"]["persistence"]["aof"], false, "{health}");

    pg_proxy.set(Mode::Refuse);
    let started = Instant::now();
    let mut early = 0;
    loop {
        let res = app.submit(&token, uk, &sql(1)).await;
        if res.status() == 503 {
            assert!(res.headers().contains_key("retry-after"));
            let body: Value = res.json().await.unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("does not persist"), "{message}");
            break;
        }
        // Before routing noticed, Postgres took it: still a durable acknowledgement.
        assert!(res.status().is_success(), "{}", res.status());
        early += 1;
        assert!(started.elapsed() < Duration::from_secs(10));
        sleep(50).await;
    }
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), 503);
    // Idempotency keys change nothing: still refused.
    let body = json!({"problem_id": uk, "sql": sql(2), "request_id": "volatile-1"});
    let res = app.post_json("/problems/submit", Some(&token), &body).await;
    assert_eq!(res.status(), 503);

    pg_proxy.set(Mode::Forward);
    let started = Instant::now();
    loop {
        let res = app.post_json("/problems/submit", Some(&token), &body).await;
        if res.status().is_success() {
            break;
        }
        assert_eq!(res.status(), 503);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never accepted again"
        );
        sleep(100).await;
    }
    // Recorded: the first, those Postgres took before routing noticed, the last. No other.
    let mine: Value = app
        .get("/users/me/submissions?limit=100", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 2 + early, "{mine}");
}

/// Redis run for failover: a master, a replica and three sentinels. The master is killed
/// under load, twice (the second time the first master, restarted meanwhile, takes over
/// again): the service follows the sentinels to each new master with every connection.
#[actix_web::test]
async fn sentinel_failover_under_load() {
    let mut set = SentinelSet::start().await;
    let app = TestApp::spawn_with(Options {
        redis_url: Some(set.url()),
        ..Options::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (app, stop) = (&app, stop.clone());
        async move { run_load(app, &app.address, 3, Duration::from_millis(15), stop).await }
    };
    let faults = async {
        let mut rounds = Vec::new();
        for _ in 0..2 {
            sleep(1000).await;
            let old = set.master_port().expect("a master");
            let killed = Instant::now();
            set.node(old).kill();
            wait_mode(&app, "fallback").await;
            set.wait_failover(old, Duration::from_secs(20)).await;
            let promoted = killed.elapsed();
            wait_mode(&app, "redis").await;
            let back = killed.elapsed();
            rounds.push((killed, promoted, back));
            // Back as an empty master; the sentinels make it a replica of the new one.
            set.node(old).restart();
            set.wait_ready(Duration::from_secs(30)).await;
        }
        sleep(1000).await;
        stop.store(true, Ordering::Relaxed);
        rounds
    };
    let (report, rounds) = futures_util::join!(load, faults);
    let outcome = check_invariants(&app, &report, Duration::from_secs(30)).await;
    for (killed, promoted, back) in &rounds {
        eprintln!(
            "failover: sentinels agreed after {promoted:?}, routing back to Redis after {back:?}, \
             worst submit latency {:?}",
            report.worst_between(*killed, *killed + *back)
        );
        assert!(
            *back < *promoted + Duration::from_secs(2),
            "routing follows the new master within seconds: {promoted:?} then {back:?}"
        );
        // A refused reconnection fails at once (about 20 ms here; 450 ms with one retry).
        let worst = report.worst_between(*killed, *killed + *back);
        assert!(worst < Duration::from_millis(400), "{worst:?}");
    }
    eprintln!(
        "sent {}, acknowledged {}, {outcome:?}, statuses {:?}",
        report.sent(),
        report.acked.len(),
        report.statuses
    );
    let last = rounds.last().unwrap().0 + rounds.last().unwrap().2;
    assert!(
        report.first_status_after(last, 202).is_some(),
        "submissions go through Redis again"
    );
    assert_eq!(outcome.lost, 0, "{outcome:?}");
    assert_eq!(outcome.duplicated, 0);
    assert_eq!(outcome.miscounted, 0);
    assert_eq!(app.fallback_pending(), 0, "the fallback queue drained");
}

/// A claim from the Postgres fallback queue never reads the whole backlog, whatever the
/// statistics (an ANALYZE from before an outage that queued thousands), nor one user's flood
/// ahead of everyone else's jobs. The claim is still the oldest available job of a user below
/// the limit.
#[actix_web::test]
async fn a_fallback_claim_reads_what_it_takes_not_the_whole_backlog() {
    use diesel::{Connection, RunQueryDsl};
    use sqljudge::db::models::FallbackSubmission;
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let mut conn = app.platform_db();
    let lease = chrono::Duration::seconds(60);
    diesel::sql_query("ANALYZE fallback_submissions")
        .execute(&mut conn)
        .unwrap();
    // The outage's backlog, seen by this transaction alone (the app's own claims see none):
    // user 99's flood of 5,000 jobs, then 5,000 jobs of 16 users, in turn. User 99's first job
    // and then those of users 0, 1 and 2 are being graded.
    conn.test_transaction::<_, diesel::result::Error, _>(|conn| {
        let jobs = |user: &str, from: &str| {
            format!(
                "INSERT INTO fallback_submissions (id, data, created_at) \
                 SELECT id, jsonb_build_object('job_id', id, 'user_id', {user}, \
                   'problem_id', 1, 'sql', 'SELECT 1', 'request_id', NULL, \
                   'submitted_at', at, 'rejudge', false), at \
                 FROM (SELECT gen_random_uuid() AS id, i, \
                       now() - interval '{from}' + i * interval '1 ms' AS at \
                       FROM generate_series(0, 4999) i) j"
            )
        };
        diesel::sql_query(jobs("99", "2 hours")).execute(conn)?;
        diesel::sql_query(jobs("i % 16", "1 hour")).execute(conn)?;
        let user = |f: &FallbackSubmission| f.data["user_id"].as_i64().unwrap();
        let mut busy = Vec::new();
        for _ in 0..4 {
            busy.extend(
                FallbackSubmission::claim(conn, 1, lease, Some(1))?
                    .iter()
                    .map(user),
            );
        }
        assert_eq!(
            busy,
            [99, 0, 1, 2],
            "the flood's first job, then the others' in turn"
        );
        // A fair claim with the statistics from before the outage, then with current ones.
        let mut fair = Vec::new();
        for analyzed in [false, true] {
            if analyzed {
                diesel::sql_query("ANALYZE fallback_submissions").execute(conn)?;
            }
            let before = rows_read(conn, "fallback_submissions");
            let claimed = FallbackSubmission::claim(conn, 1, lease, Some(1))?;
            let reads = rows_read(conn, "fallback_submissions") - before;
            fair.push((claimed.iter().map(user).collect::<Vec<_>>(), reads));
        }
        let users: Vec<_> = fair.iter().map(|(users, _)| users.clone()).collect();
        assert_eq!(
            users,
            [[3], [4]],
            "users 99 and 0-2 are at their limit, then 3 too"
        );
        let fair_reads: Vec<i64> = fair.iter().map(|(_, reads)| *reads).collect();
        let before = rows_read(conn, "fallback_submissions");
        let any = FallbackSubmission::claim(conn, 4, lease, None)?;
        let any_reads = rows_read(conn, "fallback_submissions") - before;
        assert_eq!(
            any.iter().map(user).collect::<Vec<_>>(),
            [99, 99, 99, 99],
            "without a limit, the oldest four"
        );
        assert!(
            fair_reads.iter().all(|&n| n < 300) && any_reads < 50,
            "a claim reads what it takes, not the backlog of 10,000 or the flood of 5,000: \
             {fair_reads:?} and {any_reads} rows read"
        );
        Ok(())
    });
}
