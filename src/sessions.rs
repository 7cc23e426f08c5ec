//! Logged-in sessions and user activity.
//!
//! An access token's session lives in Redis (`session:{hash}`, expiring with the token), so an
//! authenticated call costs one Redis read (a submit reads its verdict cache entry along).
//! Postgres keeps every token (hashed) and decides when Redis cannot: while Redis is down, on a
//! Redis miss (a restarted Redis lost its keys), and for refresh tokens, whose single use must
//! survive anything. Logout revokes in Postgres first and then deletes the sessions from Redis;
//! a revocation Redis missed (it was down) is replayed before Redis is trusted again, so a
//! token revoked during an outage stays revoked after it.
//!
//! Activity (last seen) is noted in memory per request and flushed every few seconds to Redis
//! (`users:last_seen`) and Postgres (`users.last_seen_at`).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::backends::{Backend, HealthState, Resync};
use crate::db::models::{AuthToken, User, ACCESS};
use crate::db::{self, DbError, PgPool};
use crate::error::ApiError;
use crate::redis::RedisQueue;

/// The account behind a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&User> for Account {
    fn from(u: &User) -> Self {
        Account {
            id: u.id,
            username: u.username.clone(),
            email: u.email.clone(),
            is_admin: u.is_admin,
            created_at: u.created_at,
        }
    }
}

/// What `session:{hash}` holds for an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub account: Account,
    /// The login the token belongs to (logout ends all of its tokens).
    pub family: Uuid,
    pub expires_at: DateTime<Utc>,
}

pub struct Sessions {
    queue: RedisQueue,
    pool: PgPool,
    health: Arc<HealthState>,
    postgres_within: Duration,
    resync: Arc<Resync>,
    /// Users seen since the last flush, with when (unix ms).
    seen: Mutex<HashMap<i64, i64>>,
}

impl Sessions {
    /// `postgres_within`: how long a lookup may wait on Postgres (`database.request_timeout_ms`).
    pub fn new(
        queue: RedisQueue,
        pool: PgPool,
        health: Arc<HealthState>,
        postgres_within: Duration,
    ) -> Arc<Sessions> {
        Arc::new(Sessions {
            queue,
            pool,
            health,
            postgres_within,
            resync: Arc::new(Resync::default()),
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Puts a new access token's session into Redis. Postgres already has the token, so a
    /// Redis failure only costs the fast path.
    pub async fn store(&self, token_hash: &str, session: &Session) {
        if !self.health.redis_up() {
            return;
        }
        let ttl = (session.expires_at - Utc::now()).num_seconds().max(1) as u64;
        if let Err(e) = self.queue.cache_session(token_hash, session, ttl).await {
            self.health.report_failure(Backend::Redis, e);
        }
    }

    /// The live session of an access token, or None when the token is unknown, expired or
    /// revoked; also reads Redis key `along` in the same round trip: its value, when it was
    /// read.
    pub async fn lookup_along(
        &self,
        token_hash: &str,
        along: Option<&str>,
    ) -> Result<(Option<Session>, Option<Option<String>>), ApiError> {
        let mut read = None;
        if self.trusted() {
            let fast = match along {
                None => self.queue.session::<Session>(token_hash).await,
                Some(key) => (self.queue.session_along::<Session>(token_hash, key).await).map(
                    |(session, value)| {
                        read = Some(value);
                        session
                    },
                ),
            };
            match fast {
                Ok(Some(s)) if s.expires_at > Utc::now() => return Ok((Some(s), read)),
                // A miss may be a Redis that lost its keys: Postgres decides.
                Ok(_) => {}
                Err(e) => self.health.report_failure(Backend::Redis, e),
            }
        }
        // Not asked while known down, and waited for `database.request_timeout_ms` at most:
        // a Postgres that refuses or hangs would otherwise cost the pool's checkout timeout.
        let found = if self.health.postgres_up() {
            let lookup = token_hash.to_string();
            let asked = db::run(&self.pool, move |c| {
                AuthToken::find_active(c, &lookup, ACCESS)
            });
            let within = self.postgres_within;
            let found = actix_web::rt::time::timeout(within, asked)
                .await
                .unwrap_or(Err(DbError::Timeout(within.as_millis())));
            if let Err(e) = &found {
                if e.is_unavailable() {
                    self.health.report_failure(Backend::Postgres, e);
                }
            }
            found
        } else {
            Err(DbError::Down)
        };
        let session = match found {
            Ok(Some((token, user))) => {
                let session = Session {
                    account: Account::from(&user),
                    family: token.family,
                    expires_at: token.expires_at,
                };
                self.store(token_hash, &session).await;
                Some(session)
            }
            Ok(None) => None,
            // Postgres is down: Redis's copy is all there is.
            // A token Redis does not know may still be valid: 503, not 401.
            Err(e) if e.is_unavailable() && self.health.redis_up() => {
                match self.queue.session::<Session>(token_hash).await {
                    Ok(Some(s)) => Some(s).filter(|s| s.expires_at > Utc::now()),
                    Ok(None) | Err(_) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        Ok((session, read))
    }

    /// Ends a login: Postgres first (the record), then the Redis sessions.
    pub async fn revoke_family(&self, family: Uuid) -> Result<(), ApiError> {
        let hashes = db::run(&self.pool, move |c| AuthToken::revoke_family(c, family)).await?;
        self.drop_from_redis(&hashes).await;
        Ok(())
    }

    async fn drop_from_redis(&self, hashes: &[String]) {
        if !self.health.redis_up() {
            return; // replayed by the resync when Redis is back
        }
        if let Err(e) = self.queue.drop_sessions(hashes).await {
            self.health.report_failure(Backend::Redis, e);
        }
    }

    /// Redis answers for sessions only once revocations it may have missed were replayed in
    /// its current up-period; this starts that replay when it is due.
    fn trusted(&self) -> bool {
        if self.resync.trusted(&self.health) {
            return true;
        }
        if let Some(up_since) = self.resync.begin(&self.health) {
            let (queue, pool, health, resync) = (
                self.queue.clone(),
                self.pool.clone(),
                self.health.clone(),
                self.resync.clone(),
            );
            actix_web::rt::spawn(async move {
                let replay = async {
                    let revoked = db::run(&pool, AuthToken::revoked_unexpired)
                        .await
                        .map_err(|e| e.to_string())?;
                    for chunk in revoked.chunks(1000) {
                        queue.drop_sessions(chunk).await.map_err(|e| {
                            health.report_failure(Backend::Redis, &e);
                            e.to_string()
                        })?;
                    }
                    Ok::<usize, String>(revoked.len())
                };
                let result = replay.await;
                match &result {
                    Ok(n) if *n > 0 => log::info!("dropped {n} revoked session(s) from Redis"),
                    Ok(_) => {}
                    Err(e) => log::warn!("replaying revocations into Redis: {e}"),
                }
                resync.finish(up_since, result.is_ok());
            });
        }
        false
    }

    /// Notes that a user was active now.
    pub fn touch(&self, user_id: i64) {
        let now = Utc::now().timestamp_millis();
        self.seen.lock().expect("seen lock").insert(user_id, now);
    }

    /// Writes the activity noted since the last flush to Redis and Postgres; what Postgres
    /// could not take is kept for the next flush.
    pub async fn flush_last_seen(&self) {
        let seen: Vec<(i64, i64)> = std::mem::take(&mut *self.seen.lock().expect("seen lock"))
            .into_iter()
            .collect();
        if seen.is_empty() {
            return;
        }
        if self.health.redis_up() {
            if let Err(e) = self.queue.record_last_seen(&seen).await {
                self.health.report_failure(Backend::Redis, e);
            }
        }
        let rows: Vec<(i64, DateTime<Utc>)> =
            seen.iter().map(|&(user, ms)| (user, from_ms(ms))).collect();
        if db::run(&self.pool, move |c| User::record_last_seen(c, &rows))
            .await
            .is_err()
        {
            let mut pending = self.seen.lock().expect("seen lock");
            for (user, ms) in seen {
                let at = pending.entry(user).or_insert(ms);
                *at = (*at).max(ms);
            }
        }
    }

    /// Flushes activity on an interval, for as long as the process runs.
    pub fn start_flushing(self: &Arc<Self>, every: Duration) {
        let sessions = self.clone();
        actix_web::rt::spawn(async move {
            let mut tick = actix_web::rt::time::interval(every);
            loop {
                tick.tick().await;
                sessions.flush_last_seen().await;
            }
        });
    }

    /// When a user was last active (as of the last flush).
    pub async fn last_seen(&self, user_id: i64) -> Result<Option<DateTime<Utc>>, ApiError> {
        if self.health.redis_up() {
            match self.queue.last_seen(user_id).await {
                Ok(Some(ms)) => return Ok(Some(from_ms(ms))),
                Ok(None) => {}
                Err(e) => self.health.report_failure(Backend::Redis, e),
            }
        }
        Ok(db::run(&self.pool, move |c| User::last_seen(c, user_id)).await?)
    }

    /// Users active in the last `window`.
    pub async fn active_users(&self, window: Duration) -> Result<i64, ApiError> {
        let since = Utc::now() - chrono::Duration::from_std(window).unwrap_or_default();
        if self.health.redis_up() {
            match self.queue.active_since(since.timestamp_millis()).await {
                Ok(n) => return Ok(n as i64),
                Err(e) => self.health.report_failure(Backend::Redis, e),
            }
        }
        Ok(db::run(&self.pool, move |c| User::active_since(c, since)).await?)
    }
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}
