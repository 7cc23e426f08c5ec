//! The shared view of Redis and Postgres health: whether each is up, since when, how fast,
//! and the routing mode that follows. The HealthMonitor and requests that meet a failure
//! publish to it; everything that chooses between Redis and Postgres reads it.
use std::sync::atomic::Ordering;
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// How Redis persists what it acknowledges (`GET /health`, `redis.persistence`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Persistence {
    /// The append-only file is on: a restart replays it. (RDB snapshots alone lose minutes.)
    pub aof: bool,
    /// `always`, `everysec` (up to a second of writes lost in a crash of the machine) or `no`;
    /// null where Redis refuses `CONFIG`.
    pub appendfsync: Option<String>,
}

/// Redis or Postgres; also where a result was read (`source` in API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Redis,
    Postgres,
}

#[derive(Debug)]
pub struct HealthState {
    pub redis: RwLock<BackendHealth>,
    pub postgres: RwLock<BackendHealth>,
    /// As last probed; None before the first probe or while Redis is down.
    pub redis_persistence: RwLock<Option<Persistence>>,
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
            redis_persistence: RwLock::new(None),
        }
    }

    pub fn redis_persistence(&self) -> Option<Persistence> {
        self.redis_persistence.read().expect("health lock").clone()
    }

    /// Whether what Redis acknowledged is known to outlive a Redis restart.
    pub fn redis_persists(&self) -> bool {
        self.redis_persistence().is_some_and(|p| p.aof)
    }

    pub fn set_redis_persistence(&self, persistence: Option<Persistence>) {
        *self.redis_persistence.write().expect("health lock") = persistence;
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
