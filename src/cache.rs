//! Cache-aside for the read-heavy API responses (problem list and details, leaderboard pages
//! and users' public standings, queue statistics), shared by every instance through Redis.
//!
//! A write invalidates by bumping a generation counter that is part of the key, so a response
//! computed from data read before the write is stored under a generation nobody reads any more.
//! While Redis is down the cache is bypassed; when Redis returns, everything cached before is
//! dropped (the global generation moves) before the cache is used again, since writes made
//! meanwhile could not invalidate anything.
use std::future::Future;
use std::sync::Arc;

use actix_web::HttpResponse;
use serde::Serialize;

use crate::backends::{Backend, HealthState, Resync};
use crate::error::ApiError;
use crate::redis::RedisQueue;

/// What a cached response depends on; a write to it invalidates the scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The problem catalogue (problems, their datasets).
    Problems,
    /// Every leaderboard, and users' public standings (`/leaderboard/user/{id}`).
    Leaderboards,
    /// Figures shared by every instance's queue statistics (queue depths, fallback backlog,
    /// Redis memory): time-based, never invalidated.
    Stats,
}

impl Scope {
    fn name(self) -> String {
        match self {
            Scope::Problems => "problems".into(),
            Scope::Leaderboards => "leaderboards".into(),
            Scope::Stats => "stats".into(),
        }
    }
}

/// Header telling whether a response came from the cache: `hit`, `miss` or `bypass`.
pub const CACHE_HEADER: &str = "X-Cache";

#[derive(Clone)]
pub struct ResponseCache {
    queue: RedisQueue,
    health: Arc<HealthState>,
    resync: Arc<Resync>,
    ttl_secs: u64,
    stats_ttl_secs: u64,
}

impl ResponseCache {
    pub fn new(
        queue: RedisQueue,
        health: Arc<HealthState>,
        ttl_secs: u64,
        stats_ttl_secs: u64,
    ) -> ResponseCache {
        ResponseCache {
            queue,
            health,
            resync: Arc::new(Resync::default()),
            ttl_secs,
            stats_ttl_secs,
        }
    }

    /// A 200 JSON response: from the cache, or computed and then cached.
    pub async fn json<T, F, Fut>(
        &self,
        scope: Scope,
        key: &str,
        compute: F,
    ) -> Result<HttpResponse, ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.json_if(scope, key, compute, |_| true).await
    }

    /// The same, but a computed response is kept only when `keep` says so: answers to input
    /// that names nothing (an unknown topic, a page past the end) are not worth a key each.
    pub async fn json_if<T, F, Fut>(
        &self,
        scope: Scope,
        key: &str,
        compute: F,
        keep: impl FnOnce(&T) -> bool,
    ) -> Result<HttpResponse, ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let (body, cache) = self.body(scope, key, compute, keep).await?;
        Ok(HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((CACHE_HEADER, cache))
            .body(body))
    }

    /// The same, as a value to build a larger response from.
    pub async fn value<T, F, Fut>(
        &self,
        scope: Scope,
        key: &str,
        compute: F,
    ) -> Result<serde_json::Value, ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let (body, _) = self.body(scope, key, compute, |_| true).await?;
        serde_json::from_str(&body).map_err(ApiError::internal)
    }

    /// The JSON body, and where it came from (`hit`, `miss` or `bypass`).
    async fn body<T, F, Fut>(
        &self,
        scope: Scope,
        key: &str,
        compute: F,
        keep: impl FnOnce(&T) -> bool,
    ) -> Result<(String, &'static str), ApiError>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        if !self.ready() {
            return Ok((to_json(&compute().await?)?, "bypass"));
        }
        let key = bounded(key);
        let (slot, cached) = match self.queue.cached_response(&scope.name(), &key).await {
            Ok(found) => found,
            Err(e) => {
                self.health.report_failure(Backend::Redis, e);
                return Ok((to_json(&compute().await?)?, "bypass"));
            }
        };
        if let Some(body) = cached {
            return Ok((body, "hit"));
        }
        let value = compute().await?;
        let body = to_json(&value)?;
        // Not worth keeping: an answer to input that names nothing, or one computed without
        // Postgres (e.g. a leaderboard without names).
        if !keep(&value) || !self.health.postgres_up() {
            return Ok((body, "bypass"));
        }
        let ttl = match scope {
            Scope::Stats => self.stats_ttl_secs,
            _ => self.ttl_secs,
        };
        let (queue, health, stored) = (self.queue.clone(), self.health.clone(), body.clone());
        // Off the request path: the caller has its answer either way.
        actix_web::rt::spawn(async move {
            if let Err(e) = queue.store_response(&slot, &stored, ttl).await {
                health.report_failure(Backend::Redis, e);
            }
        });
        Ok((body, "miss"))
    }

    /// Called after a write that changes what these scopes' responses show.
    pub async fn invalidate(&self, scopes: &[Scope]) {
        if !self.health.redis_up() {
            return; // nothing is read from the cache until it was cleared on Redis's return
        }
        let names: Vec<String> = scopes.iter().map(|s| s.name()).collect();
        if let Err(e) = self.queue.bump_generations(Some(&names)).await {
            // Down now: the cache is cleared before it is used again.
            self.health.report_failure(Backend::Redis, e);
        }
    }

    /// Redis is up and the cache was cleared since Redis (re)appeared; starts that clearing
    /// when it is due.
    fn ready(&self) -> bool {
        if self.resync.trusted(&self.health) {
            return true;
        }
        if let Some(up_since) = self.resync.begin(&self.health) {
            let (queue, health, resync) =
                (self.queue.clone(), self.health.clone(), self.resync.clone());
            actix_web::rt::spawn(async move {
                let result = queue.bump_generations(None).await;
                if let Err(e) = &result {
                    health.report_failure(Backend::Redis, e);
                }
                resync.finish(up_since, result.is_ok());
            });
        }
        false
    }
}

/// Longest key stored as it is; a longer one (callers validate their input, so only a bug
/// gets here) is stored under its hash, so no input makes a key longer than this.
const MAX_KEY_BYTES: usize = 128;

fn bounded(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= MAX_KEY_BYTES {
        key.into()
    } else {
        format!("sha256:{}", crate::auth::sha256_hex(key)).into()
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(ApiError::internal)
}
