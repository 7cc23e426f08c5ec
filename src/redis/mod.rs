//! Everything sqljudge keeps in Redis, one file per concern: the job queue (`queue`), results
//! (`results`), the verdict cache (`verdicts`), sessions, the API response cache
//! (`responses`), user activity, leaderboards (`leaderboards`), rate limits (`ratelimits`) and
//! the events channel. The keys (all behind `redis.key_prefix`):
//!
//! - `problems:queue` (list): jobs waiting, as JSON; LPUSH in, BLMOVE out from the right.
//! - `problems:queue:low` (list): background work (rejudges), taken only when the queue is empty.
//! - `problems:inflight` (list): jobs an executor has taken (moved there atomically).
//! - `problems:recording` (list): taken jobs graded and handed over to be recorded (moved there
//!   by their executor's next take): leased and reaped like in-flight ones, but no longer
//!   counted against their user's limit.
//! - `problems:parked:{user_id}` (list) and `problems:parked_users` (set): live jobs of users who
//!   already have `executor.per_user_limit` jobs in flight, set aside by the taker so that other
//!   users' jobs go first; a user's oldest parked job returns to the head of the line as soon
//!   as one of theirs leaves the in-flight list.
//! - `problems:lease:{job_id}` (string, PX): the taker's lease; a job in flight whose lease is
//!   gone on two consecutive reaper passes is put back in the queue, behind waiting work.
//! - `problems:processing:{job_id}` (hash: status, user_id, problem_id, attempts).
//! - `problems:result:{job_id}` (final result JSON, TTL 300 s by default).
//! - `problems:unpersisted` (hash job_id -> {job, outcome}): results graded while Postgres
//!   was down, written to Postgres when it is back.
//! - `cache:verdict:{problem_id}:{version}:{sha256}` (outcome JSON, 10 min): verdict cache.
//! - `problems:request:{user_id}:{request_id}` (job id, 24 h): idempotency while Postgres is down.
//! - `session:{token_hash}` (JSON, TTL = the access token's lifetime): logged-in callers.
//! - `events` (pub/sub channel): submission events for `/ws` (see `events`).
//! - `users:last_seen` (sorted set user id -> unix ms): user activity.
//! - `instances` (hash instance id -> JSON report with its time): each process's role and
//!   executors, refreshed at every health tick; reports older than a few ticks are dropped.
//! - `leaderboard:global`, `leaderboard:topic:{topic}` (sorted sets, see `leaderboards`).
//! - `ratelimit:{name}:{subject}` (string, PX): a GCRA limit's theoretical arrival time.
//! - `ws:ticket:{sha256}` (JSON, short TTL): single-use WebSocket tickets.
//! - `cache:api:gen`, `cache:api:gen:{scope}` (counters) and
//!   `cache:api:{gen}.{scope_gen}:{scope}:{key}` (JSON, short TTL): the API response cache;
//!   bumping a generation invalidates every response under it.
//!
//! Grading is at least once; `Submission::record_result` makes the record exactly once.
mod activity;
mod instances;
mod keys;
mod leaderboards;
mod link;
mod queue;
mod ratelimits;
mod responses;
mod results;
mod sessions;
mod verdicts;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, MultiplexedConnection};
use ::redis::{AsyncCommands, AsyncConnectionConfig, RedisResult};
use secrecy::ExposeSecret;

pub use instances::InstanceReport;
pub use keys::Keys;
use link::{Link, Locator};
pub use queue::{Completion, Processing};
pub use results::Unpersisted;

use crate::backends::Persistence;
use crate::config::RedisSettings;

#[derive(Clone)]
pub struct RedisQueue {
    pub keys: Keys,
    locator: Arc<Locator>,
    /// Replaced whole when the sentinels name another master.
    link: Arc<RwLock<Arc<Link>>>,
    timeout: Duration,
    result_ttl_secs: u64,
    verdict_ttl_secs: u64,
}

impl RedisQueue {
    pub async fn connect(settings: &RedisSettings) -> RedisResult<RedisQueue> {
        let certificates = match &settings.ca_file {
            None => None,
            Some(path) => Some(::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(path).map_err(|e| {
                    ::redis::RedisError::from((
                        ::redis::ErrorKind::InvalidClientConfig,
                        "cannot read redis.ca_file",
                        format!("{}: {e}", path.display()),
                    ))
                })?),
            }),
        };
        let locator = Locator::new(settings.url.expose_secret(), certificates)?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        let link = Link::open(locator.master().await?, timeout, 0).await?;
        Ok(RedisQueue {
            keys: Keys::new(&settings.key_prefix),
            locator: Arc::new(locator),
            link: Arc::new(RwLock::new(Arc::new(link))),
            timeout,
            result_ttl_secs: settings.result_ttl_secs,
            verdict_ttl_secs: settings.verdict_cache_ttl_secs,
        })
    }

    fn link(&self) -> Arc<Link> {
        self.link.read().expect("redis link lock").clone()
    }

    fn conn(&self) -> ConnectionManager {
        self.link().conn.clone()
    }

    /// Under Sentinel: asks the sentinels which node is master, and moves every later
    /// connection there if it is another one. Called when Redis stops taking writes (a master
    /// that died or was demoted). Some(address) when the master moved.
    pub async fn follow_master(&self) -> RedisResult<Option<String>> {
        if !self.locator.follows_failover() {
            return Ok(None);
        }
        let client = self.locator.master().await?;
        let address = client.get_connection_info().addr().to_string();
        let current = self.link();
        if address == current.address() {
            return Ok(None);
        }
        let link = Arc::new(Link::open(client, self.timeout, current.generation + 1).await?);
        *self.link.write().expect("redis link lock") = link;
        log::warn!("redis: the sentinels name a new master, {address}; following it");
        Ok(Some(address))
    }

    /// Changes whenever the master moved: a connection made before must be made again.
    pub fn generation(&self) -> u64 {
        self.link().generation
    }

    /// A connection of its own for blocking commands, which must not hold up the shared one;
    /// its response timeout leaves room for the block.
    pub async fn blocking_connection(&self, block: Duration) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(block + Duration::from_secs(2)));
        self.link()
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A write, so a Redis that answers but cannot take work (LOADING, READONLY, out of
    /// memory) counts as down.
    pub async fn probe(&self) -> RedisResult<()> {
        let now = chrono::Utc::now().timestamp_millis();
        self.conn()
            .pset_ex(format!("{}health:probe", self.keys.prefix()), now, 10_000)
            .await
    }

    /// Whether Redis keeps what it acknowledged across a restart: its append-only file, and
    /// how often it is synced (`CONFIG GET appendfsync`; None where CONFIG is disabled).
    pub async fn persistence(&self) -> RedisResult<Persistence> {
        let mut conn = self.conn();
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut conn)
            .await?;
        let aof = info.lines().any(|l| l.trim() == "aof_enabled:1");
        let appendfsync = redis::cmd("CONFIG")
            .arg("GET")
            .arg("appendfsync")
            .query_async::<Vec<String>>(&mut conn)
            .await
            .ok()
            .and_then(|v| v.into_iter().nth(1));
        Ok(Persistence { aof, appendfsync })
    }

    /// Bytes Redis uses (`INFO memory`), and its `maxmemory` (0: unlimited).
    pub async fn memory(&self) -> RedisResult<(u64, u64)> {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn())
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Ok((field("used_memory"), field("maxmemory")))
    }

    /// A connection of its own for a subscription (pub/sub connections do not reconnect).
    pub async fn pubsub(&self) -> RedisResult<redis::aio::PubSub> {
        self.link().client.get_async_pubsub().await
    }

    pub async fn publish_event(&self, json: &str) -> RedisResult<()> {
        self.conn().publish(self.keys.events(), json).await
    }
}
