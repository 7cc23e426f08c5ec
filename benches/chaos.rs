//! Fault-injection run with figures: a steady submission load while Redis is killed, hangs
//! or answers errors, and while Postgres is cut off. Needs PostgreSQL and redis-server, like
//! the tests (it starts its own Redis and proxies):
//!
//!     cargo bench --bench chaos
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqljudge_testkit::app::{Options, TestApp};
use sqljudge_testkit::faults::{
    check_invariants, postgres_port, run_load, Mode, Proxy, RedisInstance,
};

const FAULT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy)]
enum Fault {
    KillRedis,
    HangRedis,
    RedisErrors,
    CutPostgres,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillRedis => "redis SIGKILL + restart",
            Fault::HangRedis => "redis hangs",
            Fault::RedisErrors => "redis answers OOM errors",
            Fault::CutPostgres => "postgres cut off",
        }
    }
}

/// How long until the routing state (what `/health` reports) shows `backend` as `up`.
async fn until(app: &TestApp, backend: &str, up: bool) -> Duration {
    let started = Instant::now();
    let is_up = || match backend {
        "redis" => app.state.health.redis_up(),
        _ => app.state.health.postgres_up(),
    };
    while is_up() != up {
        actix_web::rt::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

async fn scenario(fault: Fault, rounds: usize) {
    let mut redis = RedisInstance::start();
    let redis_proxy = Proxy::start(redis.port);
    let pg_proxy = Proxy::start(postgres_port());
    let app = TestApp::spawn_with(Options {
        redis_url: Some(format!("redis://127.0.0.1:{}", redis_proxy.port)),
        platform_port: Some(pg_proxy.port),
        ..Options::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = run_load(
        &app,
        &app.address,
        4,
        Duration::from_millis(10),
        stop.clone(),
    );
    let backend = if matches!(fault, Fault::CutPostgres) {
        "postgres"
    } else {
        "redis"
    };
    let faults = async {
        let mut windows = Vec::new();
        for _ in 0..rounds {
            actix_web::rt::time::sleep(Duration::from_millis(800)).await;
            let at = Instant::now();
            match fault {
                Fault::KillRedis => redis.kill(),
                Fault::HangRedis => redis_proxy.set(Mode::Hang),
                Fault::RedisErrors => redis.command(&["CONFIG", "SET", "maxmemory", "1"]),
                Fault::CutPostgres => pg_proxy.set(Mode::Refuse),
            }
            let flipped = until(&app, backend, false).await;
            actix_web::rt::time::sleep(FAULT).await;
            let restored = Instant::now();
            match fault {
                Fault::KillRedis => redis.restart(),
                Fault::HangRedis => redis_proxy.set(Mode::Forward),
                Fault::RedisErrors => redis.command(&["CONFIG", "SET", "maxmemory", "0"]),
                Fault::CutPostgres => pg_proxy.set(Mode::Forward),
            }
            let back = until(&app, backend, true).await;
            let drain_started = Instant::now();
            while app.fallback_pending() > 0 {
                actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            }
            windows.push((at, flipped, restored, back, drain_started.elapsed()));
        }
        actix_web::rt::time::sleep(Duration::from_millis(800)).await;
        stop.store(true, Ordering::Relaxed);
        windows
    };
    let (report, windows) = futures_util::join!(load, faults);
    let outcome = check_invariants(&app, &report, Duration::from_secs(60)).await;
    let count = |code: u16| report.statuses.get(&code).copied().unwrap_or(0);
    println!(
        "\n## {} ({rounds} times, {} s each)",
        fault.name(),
        FAULT.as_secs()
    );
    println!(
        "sent {}  acknowledged {} (202 redis: {}, 201 postgres: {})  503: {}  lost: {}  duplicated records: {}",
        report.sent(),
        report.acked.len(),
        count(202),
        count(201),
        count(503),
        outcome.lost,
        outcome.duplicated
    );
    for (i, (at, flipped, restored, back, drained)) in windows.iter().enumerate() {
        println!(
            "  failover {}: routing flipped after {:>4} ms; worst submit latency {:>4} ms during the fault; \
             detected back after {:>4} ms; fallback backlog drained in {:>4} ms",
            i + 1,
            flipped.as_millis(),
            report.worst_between(*at, *restored + *back).as_millis(),
            back.as_millis(),
            drained.as_millis()
        );
    }
}

#[actix_web::main]
async fn main() {
    for fault in [
        Fault::KillRedis,
        Fault::HangRedis,
        Fault::RedisErrors,
        Fault::CutPostgres,
    ] {
        scenario(fault, 3).await;
    }
}
