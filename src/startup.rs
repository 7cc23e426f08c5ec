//! Builds the application: databases, sandbox, Redis, the actors and the HTTP server, on the
//! configured address (port 0 picks a free port, which the tests use).
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, Logger};
use actix_web::{web, App, HttpServer};

use crate::actors::executor::{ExecutorDeps, ExecutorPool};
use crate::actors::fallback::FallbackActor;
use crate::actors::health::HealthMonitor;
use crate::actors::leaderboard::LeaderboardActor;
use crate::actors::redis_queue::RedisQueueActor;
use crate::actors::submission::Intake;
use crate::auth::Passwords;
use crate::backends::HealthState;
use crate::cache::ResponseCache;
use crate::config::{DatabaseSettings, Role, Settings};
use crate::db::models::Problem;
use crate::db::{self, PgPool};
use crate::events::EventBus;
use crate::grading::servers::SandboxServers;
use crate::http;
use crate::jobs::{JobSource, Recorder};
use crate::metrics::Metrics;
use crate::problems::ProblemCache;
use crate::ratelimit::RateLimiter;
use crate::redis::RedisQueue;
use crate::restore;
use crate::runs::RunSlots;
use crate::sessions::Sessions;
use crate::shutdown::Shutdown;
use crate::state::AppState;
use crate::stats::GradingStats;
use crate::tickets::Tickets;
use secrecy::ExposeSecret;

pub type StartupError = Box<dyn std::error::Error + Send + Sync>;

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

/// Creates the platform database if needed, migrates it and returns a pool.
pub async fn prepare_platform_db(settings: &DatabaseSettings) -> Result<PgPool, StartupError> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || {
        db::ensure_database(settings.url.expose_secret())?;
        let pool = db::pool(
            settings.url.expose_secret(),
            settings.pool_size,
            Duration::from_millis(settings.checkout_timeout_ms),
        )?;
        let mut conn = pool.get()?;
        let applied = db::run_migrations(&mut conn)?;
        if applied > 0 {
            log::info!("applied {applied} migration(s)");
        }
        Ok(pool)
    })
    .await?
}

impl Application {
    pub async fn build(mut settings: Settings) -> Result<Application, StartupError> {
        match settings.server.role {
            Role::All => {}
            Role::Api => settings.executor.workers = 0,
            Role::Worker => settings.executor.run_slots = 0,
        }
        let pool = prepare_platform_db(&settings.database).await?;
        let servers = Arc::new(SandboxServers::new(&settings.sandbox)?);
        let sandbox = servers.primary().clone();
        // The first server must be there (admin loads go to it first); the others may come
        // later: their keepers bootstrap them and bring them up to date.
        sandbox.bootstrap().await?;
        // Before any executor starts: a sandbox that lost its datasets gets them back first.
        match restore::restore(&pool, &sandbox).await {
            Ok(Some(r)) if r.any() => log::warn!("sandbox restored: {r:?}"),
            Ok(_) => {}
            Err(e) => log::warn!("sandbox not restored at start: {e}"),
        }
        sandbox.set_ready(true);
        for server in servers.all() {
            restore::keep(
                pool.clone(),
                server.clone(),
                Duration::from_secs(settings.sandbox.restore_check_secs),
            );
        }
        let queue = RedisQueue::connect(&settings.redis).await?;

        let health = Arc::new(HealthState::new());
        let problems = Arc::new(ProblemCache::default());
        for problem in db::run(&pool, |c| Problem::list(c, None)).await? {
            problems.put(&problem);
        }
        let metrics = Arc::new(Metrics::new());
        let stats = Arc::new(GradingStats::default());
        let events = EventBus::new(queue.clone(), health.clone(), settings.websocket.buffer);
        events.start_subscriber();
        let cache = ResponseCache::new(
            queue.clone(),
            health.clone(),
            settings.redis.api_cache_ttl_secs,
            settings.redis.stats_cache_ttl_secs,
        );
        let sessions = Sessions::new(
            queue.clone(),
            pool.clone(),
            health.clone(),
            Duration::from_millis(settings.database.request_timeout_ms),
        );
        sessions.start_flushing(Duration::from_millis(settings.auth.last_seen_flush_ms));

        let leaderboard = {
            let actor = LeaderboardActor {
                queue: queue.clone(),
                pool: pool.clone(),
                health: health.clone(),
                cache: cache.clone(),
                rebuilding: false,
                again: false,
            };
            Supervisor::start(move |_| actor)
        };
        let redis_queue = {
            let actor = RedisQueueActor::new(
                queue.clone(),
                pool.clone(),
                settings.executor.clone(),
                health.clone(),
                leaderboard.clone().recipient(),
            );
            Supervisor::start(move |_| actor)
        };
        let fallback = {
            let actor = FallbackActor::new(
                queue.clone(),
                pool.clone(),
                health.clone(),
                metrics.recovered.clone(),
            );
            Supervisor::start(move |_| actor)
        };
        let shutdown = Arc::new(Shutdown::new(Duration::from_secs(
            settings.server.shutdown_grace_secs,
        )));
        let executors = ExecutorPool::start(ExecutorDeps {
            jobs: JobSource {
                recorder: Recorder::start(queue.clone(), pool.clone(), health.clone()),
                queue: queue.clone(),
                pool: pool.clone(),
                health: health.clone(),
                events: events.clone(),
                leaderboard: leaderboard.clone().recipient(),
                settings: settings.executor.clone(),
            },
            problems: problems.clone(),
            servers: servers.clone(),
            metrics: metrics.clone(),
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        })?;
        let monitor = {
            let monitor = HealthMonitor {
                state: health.clone(),
                queue: queue.clone(),
                pool: pool.clone(),
                executors: executors.clone(),
                interval: Duration::from_millis(settings.health.interval_ms),
                // The HTTP workers' SubmissionActors subscribe as they start.
                subscribers: vec![
                    redis_queue.clone().recipient(),
                    fallback.clone().recipient(),
                    leaderboard.clone().recipient(),
                ],
                followers: Vec::new(),
                // Far beyond any grading: the sandbox deadline has long passed by then.
                stuck_after_ms: ((settings.sandbox.max_time_limit_ms as u64
                    + settings.sandbox.grace_ms)
                    * 3
                    + 10_000) as i64,
                probing: false,
                events: events.clone(),
                announced: Some((health.redis().since, health.postgres().since)),
                followed_at: None,
                instance: (
                    uuid::Uuid::new_v4().to_string(),
                    settings.server.role.as_str(),
                ),
            };
            Supervisor::start(move |_| monitor)
        };
        let intake = Intake {
            leaderboard: leaderboard.clone().recipient(),
            pool: pool.clone(),
            queue: queue.clone(),
            fallback: fallback.clone(),
            health: health.clone(),
            monitor,
            problems: problems.clone(),
            max_sql_bytes: settings.sandbox.max_sql_bytes,
            events: events.clone(),
            metrics: metrics.clone(),
            postgres_within: Duration::from_millis(settings.database.request_timeout_ms),
            postgres_alone_within: Duration::from_millis(
                settings.database.request_timeout_alone_ms,
            ),
            redis_within: Duration::from_millis(settings.redis.timeout_ms),
            require_persistence: settings.redis.require_persistence,
        };
        let listener = TcpListener::bind(&settings.server.bind)?;
        let port = listener.local_addr()?.port();
        let limiter = RateLimiter::new(queue.clone(), health.clone(), &settings.rate_limit);
        let tickets = Tickets::new(
            queue.clone(),
            health.clone(),
            settings.websocket.ticket_ttl_secs,
        );
        // Slot indexes: the executors' 0..workers, then the reference runner's, then runs'.
        let state = web::Data::new(AppState {
            limiter,
            reference: tokio::sync::Mutex::new(
                sandbox.slot(settings.executor.workers, Default::default()),
            ),
            runs: Arc::new(RunSlots::new(
                &sandbox,
                settings.executor.workers + 1,
                settings.executor.run_slots,
            )),
            settings,
            pool,
            queue,
            sandbox,
            servers,
            health,
            executors,
            problems,
            cache,
            sessions,
            tickets,
            events,
            metrics,
            stats,
            shutdown,
            // One thread a core: hashing is CPU-bound, more would only hold more memory.
            passwords: Passwords::new(std::thread::available_parallelism().map_or(2, usize::from))?,
        });
        http::status::start_stats_events(
            state.clone(),
            Duration::from_millis(state.settings.websocket.stats_interval_ms),
        );
        let max_json = state.settings.server.max_json_bytes;
        let role = state.settings.server.role;
        let workers = state.settings.server.http_workers;
        let data = state.clone();
        let mut server = HttpServer::new(move || {
            // Each worker routes the submissions it takes on its own thread.
            let submissions = match role {
                Role::Worker => None,
                Role::All | Role::Api => Some(web::Data::new(intake.start_here())),
            };
            App::new()
                .wrap(ErrorHandlers::new().default_handler(http::json_errors))
                .wrap(actix_web::middleware::from_fn(http::count_requests))
                .wrap(actix_web::middleware::from_fn(http::screen_json))
                // Never `%r`: its query string can carry a token or ticket.
                .wrap(
                    Logger::new("%{request}xi %s %Dms")
                        .custom_request_replace("request", http::log_request),
                )
                .app_data(data.clone())
                .configure(|cfg| match submissions {
                    None => http::worker_routes(cfg),
                    Some(submissions) => {
                        cfg.app_data(submissions);
                        http::routes(cfg, max_json)
                    }
                })
        })
        .listen(listener)?
        // Signals are ours (`run_until_stopped`): gradings must stop before HTTP is gone.
        .disable_signals()
        .shutdown_timeout(HTTP_STOP_SECS);
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Application {
            port,
            server: server.run(),
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully (see `shutdown`): HTTP keeps
    /// answering (`/health/ready` with 503, for the load balancer to notice) while the gradings
    /// under way finish or are handed back, then stops.
    pub async fn run_until_terminated(self) -> std::io::Result<()> {
        let (handle, state) = (self.server.handle(), self.state.clone());
        actix_web::rt::spawn(async move {
            termination().await;
            log::warn!(
                "shutting down: draining for up to {} s",
                state.shutdown.grace.as_secs()
            );
            drain(&state).await;
            handle.stop(true).await;
        });
        self.run_until_stopped().await
    }

    /// Serves until the server is stopped (no signal handlers: for tests and tools), then
    /// drains as after SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await?;
        drain(&self.state).await;
        self.state.sessions.flush_last_seen().await;
        Ok(())
    }
}

/// After the drain, how long HTTP requests under way get to finish.
const HTTP_STOP_SECS: u64 = 5;

/// SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            log::error!("cannot listen for signals; stop the process with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}

/// Lets gradings finish within the grace period and hands back the rest (at once when they
/// are done already).
async fn drain(state: &AppState) {
    state.shutdown.begin();
    let deadline = state.shutdown.deadline().expect("draining has a deadline");
    let idle = || state.executors.settled();
    while !idle() && std::time::Instant::now() < deadline {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    if !idle() {
        state.shutdown.abandon();
        // Handing back is a Redis or Postgres round trip or two.
        let handed_back = std::time::Instant::now() + Duration::from_secs(2);
        while !idle() && std::time::Instant::now() < handed_back {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
    log::info!(
        "drained ({} gradings still under way)",
        state.executors.busy()
    );
}
