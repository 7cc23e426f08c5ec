//! `HealthMonitor` watches Redis and Postgres on a fixed interval, keeps the state `/health`
//! reports, and restarts executors that are stuck far past any time limit.
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use diesel::RunQueryDsl;
use serde::Serialize;

use super::executor::{ExecutorPool, Restart};
use crate::db::{self, PgPool};
use crate::events::EventBus;
use crate::queue::RedisQueue;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackendHealth {
    pub up: bool,
    pub latency_ms: Option<f64>,
    pub since: DateTime<Utc>,
}

impl BackendHealth {
    /// Applies a probe sent at `started`; true when the backend flipped up or down.
    fn update(&mut self, name: &str, probe: Result<f64, String>, started: DateTime<Utc>) -> bool {
        if probe.is_ok() && !self.up && self.since > started {
            // A request met a failure after this probe was sent: the success is stale.
            return false;
        }
        let up = probe.is_ok();
        let flipped = up != self.up;
        if flipped {
            let was = Utc::now() - self.since;
            self.since = Utc::now();
            match &probe {
                Ok(_) => log::warn!(
                    "{name} is up again after {} ms down",
                    was.num_milliseconds()
                ),
                Err(e) => log::error!("{name} is down: {e}"),
            }
        }
        self.up = up;
        self.latency_ms = probe.ok();
        flipped
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Redis,
    Postgres,
}

/// Sent to subscribers when a backend goes down or comes back.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct BackendChanged {
    pub backend: Backend,
    pub up: bool,
}

#[derive(Debug)]
pub struct HealthState {
    pub redis: RwLock<BackendHealth>,
    pub postgres: RwLock<BackendHealth>,
}

impl HealthState {
    /// Both assumed up until the first probe says otherwise.
    pub fn new() -> HealthState {
        let up = BackendHealth {
            up: true,
            latency_ms: None,
            since: Utc::now(),
        };
        HealthState {
            redis: RwLock::new(up.clone()),
            postgres: RwLock::new(up),
        }
    }

    pub fn redis(&self) -> BackendHealth {
        self.redis.read().expect("health lock").clone()
    }

    pub fn postgres(&self) -> BackendHealth {
        self.postgres.read().expect("health lock").clone()
    }

    pub fn redis_up(&self) -> bool {
        self.redis.read().expect("health lock").up
    }

    pub fn postgres_up(&self) -> bool {
        self.postgres.read().expect("health lock").up
    }

    /// Records a probe (or a failure a request met); true when it flipped the backend.
    pub fn record(&self, backend: Backend, probe: Result<f64, String>) -> bool {
        self.record_since(backend, probe, Utc::now())
    }

    /// Records a probe sent at `started`.
    pub fn record_since(
        &self,
        backend: Backend,
        probe: Result<f64, String>,
        started: DateTime<Utc>,
    ) -> bool {
        let lock = match backend {
            Backend::Redis => &self.redis,
            Backend::Postgres => &self.postgres,
        };
        let name = match backend {
            Backend::Redis => "redis",
            Backend::Postgres => "postgres",
        };
        lock.write()
            .expect("health lock")
            .update(name, probe, started)
    }

    /// Routing follows Redis: `redis`, or `fallback` (Postgres) while it is down.
    pub fn mode(&self) -> &'static str {
        if self.redis_up() {
            "redis"
        } else {
            "fallback"
        }
    }

    /// The `health` event of `/ws`.
    pub fn event_json(&self) -> String {
        serde_json::json!({
            "type": "health",
            "mode": self.mode(),
            "redis": self.redis(),
            "postgres": self.postgres(),
            "at": Utc::now(),
        })
        .to_string()
    }

    /// A request met a failure: route around the backend now rather than at the next probe.
    pub fn report_failure(&self, backend: Backend, error: impl std::fmt::Display) {
        self.record(backend, Err(error.to_string()));
    }
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState::new()
    }
}

/// State kept in Redis that may have gone stale while Redis was unreachable (cached responses,
/// sessions revoked meanwhile) is trusted only after a resync that ran during Redis's current
/// up-period; until then callers go to Postgres.
#[derive(Debug, Default)]
pub struct Resync {
    /// The `since` of the up-period the last successful resync ran in.
    synced_for: std::sync::Mutex<Option<DateTime<Utc>>>,
    running: std::sync::atomic::AtomicBool,
}

impl Resync {
    pub fn trusted(&self, health: &HealthState) -> bool {
        let redis = health.redis();
        redis.up && *self.synced_for.lock().expect("resync lock") == Some(redis.since)
    }

    /// When Redis is up but not resynced and no resync is under way: the up-period to resync
    /// for. The caller runs the resync and reports it with `finish`.
    pub fn begin(&self, health: &HealthState) -> Option<DateTime<Utc>> {
        let redis = health.redis();
        if !redis.up || self.trusted(health) || self.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(redis.since)
    }

    pub fn finish(&self, up_since: DateTime<Utc>, ok: bool) {
        if ok {
            *self.synced_for.lock().expect("resync lock") = Some(up_since);
        }
        self.running.store(false, Ordering::Release);
    }
}

pub struct HealthMonitor {
    pub state: Arc<HealthState>,
    pub queue: RedisQueue,
    pub pool: PgPool,
    pub executors: ExecutorPool,
    pub interval: Duration,
    /// Told when a backend flips.
    pub subscribers: Vec<Recipient<BackendChanged>>,
    /// An executor busy longer than this is stuck (the sandbox deadline is far shorter).
    pub stuck_after_ms: i64,
    /// A probe is under way: the next tick does not start another.
    pub probing: bool,
    /// Flips are announced to admin connections.
    pub events: Arc<EventBus>,
    /// The `since` of both backends when last announced: flips a request reported are
    /// announced at the next tick too.
    pub announced: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl HealthMonitor {
    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.restart_stuck_executors();
        if self.probing {
            return;
        }
        self.probing = true;
        let (queue, pool, limit) = (
            self.queue.clone(),
            self.pool.clone(),
            self.interval.max(Duration::from_millis(250)),
        );
        let started = Utc::now();
        let probe = async move {
            let redis = timed(limit, async {
                queue.probe().await.map_err(|e| e.to_string())
            })
            .await;
            let postgres = timed(limit, async {
                db::run(&pool, |c| diesel::sql_query("SELECT 1").execute(c))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await;
            (redis, postgres)
        };
        ctx.spawn(
            probe
                .into_actor(self)
                .map(move |(redis, postgres), act, _| {
                    for (backend, probe) in [(Backend::Redis, redis), (Backend::Postgres, postgres)]
                    {
                        let up = probe.is_ok();
                        // A flip either way, also back up after a request reported a failure.
                        if act.state.record_since(backend, probe, started) {
                            for subscriber in &act.subscribers {
                                subscriber.do_send(BackendChanged { backend, up });
                            }
                        }
                    }
                    let flips = Some((act.state.redis().since, act.state.postgres().since));
                    if act.announced != flips {
                        act.announced = flips;
                        act.events.local(None, act.state.event_json());
                    }
                    act.probing = false;
                }),
        );
    }

    fn restart_stuck_executors(&self) {
        let now = Utc::now().timestamp_millis();
        for (index, (addr, status)) in self
            .executors
            .executors
            .iter()
            .zip(&self.executors.status)
            .enumerate()
        {
            let since = status.busy_since_ms.load(Ordering::Relaxed);
            if since != 0 && now - since > self.stuck_after_ms {
                log::error!(
                    "executor {index} stuck for {} ms; restarting it",
                    now - since
                );
                status.busy_since_ms.store(0, Ordering::Relaxed);
                addr.do_send(Restart);
            }
        }
    }
}

/// Latency in ms of a probe, or why it failed (including not answering within `limit`).
async fn timed(
    limit: Duration,
    probe: impl std::future::Future<Output = Result<(), String>>,
) -> Result<f64, String> {
    let started = Instant::now();
    match actix_web::rt::time::timeout(limit, probe).await {
        Ok(Ok(())) => Ok(started.elapsed().as_secs_f64() * 1000.0),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

impl Actor for HealthMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
        ctx.run_interval(self.interval, Self::tick);
    }
}

impl Supervised for HealthMonitor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.probing = false;
    }
}
