//! Leaderboards with 1,000,000 users (about 3,000,000 first solves over the demo problems),
//! in databases and under a Redis key prefix of the bench's own:
//!
//!     cargo bench --bench leaderboard            # USERS=200000 for a quicker run
//!
//! Prints the seed and rebuild times, Redis memory for the boards, and endpoint latencies for
//! pages at the top, middle and bottom of the board and for user lookups, from Redis and from
//! the Postgres fallback.
use std::time::{Duration, Instant};

use diesel::RunQueryDsl;
use sqljudge::db::models::{RankedRow, Standing};
use sqljudge_testkit::app::TestApp;

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "{name:<48} n={:<4} p50={:>8.2} ms  p95={:>8.2} ms  max={:>8.2} ms",
        samples.len(),
        ms(0.5),
        ms(0.95),
        ms(1.0)
    );
}

async fn time_get(app: &TestApp, path: &str, n: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let res = app.get(path, None).await;
        assert_eq!(res.status(), 200, "{path}");
        res.bytes().await.unwrap();
        samples.push(started.elapsed());
    }
    samples
}

fn redis_memory(app: &TestApp) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut app.redis())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[actix_web::main]
async fn main() {
    let users: i64 = std::env::var("USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let app = TestApp::spawn().await;
    let started = Instant::now();
    let mut db = app.platform_db();
    for sql in [
        format!("INSERT INTO users (username, email, password_hash) SELECT 'bench_' || g, 'bench_' || g || '@bench.local', 'x' FROM generate_series(1, {users}) g"),
        // 1 to 5 problems each, solved at spread-out times.
        "INSERT INTO submissions (id, user_id, problem_id, sql_query, status, queue, created_at, graded_at) \
         SELECT gen_random_uuid(), u.id, p.id, 'seeded', 'accepted', 'redis', now(), now() - (u.id % 100000) * interval '1 second' \
         FROM users u JOIN LATERAL (SELECT id FROM problems ORDER BY (id * 7919 + u.id) % 18 LIMIT 1 + u.id % 5) p ON true".to_string(),
        "INSERT INTO first_solves (user_id, problem_id, submission_id, solved_at) SELECT user_id, problem_id, id, graded_at FROM submissions WHERE sql_query = 'seeded'".to_string(),
        // What recording the solves one by one maintains (Standing::refresh_user), in bulk.
        "INSERT INTO standings (user_id, topic, score, reached_at, reached_sec) \
         SELECT fs.user_id, coalesce(p.topic, ''), count(*), max(fs.solved_at), extract(epoch FROM max(fs.solved_at))::bigint \
         FROM first_solves fs JOIN problems p ON p.id = fs.problem_id GROUP BY GROUPING SETS ((fs.user_id), (fs.user_id, p.topic))".to_string(),
        "ANALYZE".to_string(),
    ] {
        diesel::sql_query(sql).execute(&mut db).unwrap();
    }
    println!(
        "seeded {users} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let before = redis_memory(&app);
    let started = Instant::now();
    let standings = sqljudge::db::run(&app.state.pool, Standing::all)
        .await
        .unwrap();
    let read = started.elapsed();
    app.state.queue.replace_boards(&standings).await.unwrap();
    println!(
        "rebuild from Postgres: {} standings read in {:.2} s, boards written in {:.2} s; Redis memory +{} MiB",
        standings.len(),
        read.as_secs_f64(),
        (started.elapsed() - read).as_secs_f64(),
        (redis_memory(&app).saturating_sub(before)) / (1 << 20)
    );

    let n = 200;
    let bottom = users - 100;
    report(
        "GET /leaderboard/global?limit=100 (top)",
        time_get(&app, "/leaderboard/global?limit=100", n).await,
    );
    report(
        "GET /leaderboard/global?limit=100&offset=users/2",
        time_get(
            &app,
            &format!("/leaderboard/global?limit=100&offset={}", users / 2),
            n,
        )
        .await,
    );
    report(
        "GET /leaderboard/global?limit=100 (bottom)",
        time_get(
            &app,
            &format!("/leaderboard/global?limit=100&offset={bottom}"),
            n,
        )
        .await,
    );
    report(
        "GET /leaderboard/topic/joins?limit=100",
        time_get(&app, "/leaderboard/topic/joins?limit=100", n).await,
    );
    let some_user = users / 3;
    report(
        "GET /leaderboard/user/{id} (global + 6 topics)",
        time_get(&app, &format!("/leaderboard/user/{some_user}"), n).await,
    );

    // The Postgres fallback (Redis down): the same reads from the standings table.
    for (name, offset) in [("top", 0), ("middle", users / 2), ("bottom", bottom)] {
        let mut samples = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            sqljudge::db::run(&app.state.pool, move |c| {
                RankedRow::page(c, None, 100, offset)
            })
            .await
            .unwrap();
            samples.push(started.elapsed());
        }
        report(&format!("Postgres fallback: global page ({name})"), samples);
    }
    let mut samples = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        sqljudge::db::run(&app.state.pool, move |c| {
            RankedRow::of_user(c, None, some_user)
        })
        .await
        .unwrap();
        samples.push(started.elapsed());
    }
    report("Postgres fallback: one user's global rank", samples);
}
