//! Rate limits with GCRA (the generic cell rate algorithm): each key has a "theoretical arrival
//! time"; a request is allowed while it is within the burst tolerance of now. Shared by every
//! instance through one atomic Lua script in Redis (`ratelimit:{name}:{subject}`); while Redis
//! is unavailable the same algorithm runs in process, per instance.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backends::{Backend, HealthState};
use crate::config::RateLimitSettings;
use crate::error::ApiError;
use crate::redis::RedisQueue;

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub name: &'static str,
    /// Milliseconds between requests at the sustained rate.
    interval_ms: u64,
    /// How far ahead of the sustained rate a burst may go.
    tolerance_ms: u64,
}

impl Limit {
    pub fn new(name: &'static str, per_minute: u32, burst: u32) -> Limit {
        let interval_ms = 60_000 / per_minute.max(1) as u64;
        Limit {
            name,
            interval_ms,
            tolerance_ms: interval_ms * burst.saturating_sub(1) as u64,
        }
    }
}

pub struct RateLimiter {
    queue: RedisQueue,
    health: Arc<HealthState>,
    pub submit: Limit,
    pub run: Limit,
    pub auth: Limit,
    enabled: bool,
    /// Theoretical arrival times (ms since the epoch) while Redis is unavailable.
    local: Mutex<HashMap<String, u64>>,
}

const LOCAL_KEYS: usize = 100_000;

impl RateLimiter {
    pub fn new(
        queue: RedisQueue,
        health: Arc<HealthState>,
        settings: &RateLimitSettings,
    ) -> RateLimiter {
        RateLimiter {
            queue,
            health,
            submit: Limit::new("submit", settings.submit_per_minute, settings.submit_burst),
            run: Limit::new("run", settings.run_per_minute, settings.run_burst),
            auth: Limit::new("auth", settings.auth_per_minute, settings.auth_burst),
            enabled: settings.enabled,
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request of `subject` against `limit`: `Err(429)` when over it.
    pub async fn check(&self, limit: Limit, subject: &str) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let key = format!("ratelimit:{}:{subject}", limit.name);
        let wait_ms = if self.health.redis_up() {
            let verdict = self
                .queue
                .gcra(&key, limit.interval_ms, limit.tolerance_ms)
                .await;
            match verdict {
                Ok(wait) => wait,
                Err(e) => {
                    self.health.report_failure(Backend::Redis, e);
                    self.check_local(limit, key)
                }
            }
        } else {
            self.check_local(limit, key)
        };
        if wait_ms == 0 {
            Ok(())
        } else {
            Err(ApiError::RateLimited {
                retry_after_secs: wait_ms.div_ceil(1000).max(1),
            })
        }
    }

    fn check_local(&self, limit: Limit, key: String) -> u64 {
        let now = chrono::Utc::now().timestamp_millis() as u64;
        let mut local = self.local.lock().expect("limiter lock");
        if local.len() > LOCAL_KEYS {
            local.retain(|_, tat| *tat > now);
        }
        let tat = local.get(&key).copied().unwrap_or(now).max(now);
        let allow_at = tat.saturating_sub(limit.tolerance_ms);
        if now < allow_at {
            return allow_at - now;
        }
        local.insert(key, tat + limit.interval_ms);
        0
    }
}
