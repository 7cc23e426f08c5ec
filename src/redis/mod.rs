//! Everything sqljudge keeps in Redis, one file per concern: the job queue (`queue`), results
//! (`results`), the verdict cache (`verdicts`), sessions, the API response cache
//! (`responses`), user activity, leaderboards (`leaderboards`), rate limits (`ratelimits`) and
//! the events channel. The keys (all behind `redis.key_prefix`):
//!
//! - `problems:queue` (list): jobs waiting, as JSON; LPUSH in, taken from the right.
//! - `problems:queue:low` (list): background work (rejudges), taken only when the queue is empty.
//! - `problems:inflight` (list): jobs an executor has taken and started (moved
//!   there and leased in one script).
//! - `problems:inflight_users` (hash user id -> count): each user's live jobs in the in-flight
//!   list, kept in the same scripts that move jobs in and out of it, and counted again from the
//!   list at start and on every reaper tick (whatever a script that failed half-way, or an
//!   older version, left behind).
//! - `problems:recording` (list): taken jobs graded and handed over to be recorded (moved there
//!   by their executor's next take): leased and reaped like in-flight ones, but no longer
//!   counted against their user's limit.
//! - `problems:parked:{user_id}` (list) and `problems:parked_users` (set): live jobs of users who
//!   already have `executor.per_user_limit` jobs in flight, set aside by the taker so that other
//!   users' jobs go first; a user's oldest parked job is taken before any queued job as soon
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

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, MultiplexedConnection};
use ::redis::{AsyncCommands, AsyncConnectionConfig, RedisResult};
use secrecy::ExposeSecret;

pub use instances::InstanceReport;
pub use keys::Keys;
use link::{Link, Locator};
pub use queue::{Completion, Processing, Taken};
pub use results::Unpersisted;
pub use verdicts::verdict;

use crate::backends::Persistence;
use crate::config::RedisSettings;

#[derive(Clone)]
pub struct RedisQueue {
    /// Tells this queue's connections in `OWN` from other queues' (tests run many in one
    /// process).
    id: u64,
    pub keys: Keys,
    locator: Arc<Locator>,
    /// Replaced whole when the sentinels name another master.
    link: Arc<RwLock<Arc<Link>>>,
    timeout: Duration,
    result_ttl_secs: u64,
    verdict_ttl_secs: u64,
}

thread_local! {
    /// The connections of this thread's own (see `RedisQueue::serve_here`), by queue.
    static OWN: RefCell<Vec<Own>> = const { RefCell::new(Vec::new()) };
}

struct Own {
    queue: u64,
    /// The `Link` generation `conn` was made for.
    generation: u64,
    conn: Option<ConnectionManager>,
    opening: bool,
    retry_at: Option<Instant>,
}

/// How long a thread whose own connection could not be made waits to try again.
const OWN_RETRY: Duration = Duration::from_secs(1);
/// How often a thread's own connection is used at least.
const OWN_KEEPALIVE: Duration = Duration::from_secs(15);

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
        static IDS: AtomicU64 = AtomicU64::new(0);
        Ok(RedisQueue {
            id: IDS.fetch_add(1, Ordering::Relaxed),
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

    /// This thread's own connection where it has one (`serve_here`), else the shared one.
    fn conn(&self) -> ConnectionManager {
        let link = self.link();
        self.own_conn(&link).unwrap_or_else(|| link.conn.clone())
    }

    /// Gives this thread a connection of its own to the current master, made now and again
    /// whenever the master moves: a thread that serves requests then sends and reads its
    /// commands itself, instead of handing each to the shared connection's task on the main
    /// thread and being woken by it for the reply (two thread switches a command, and the
    /// reply waits for whatever that thread is doing). Until it is made, or
    /// while it cannot be, the shared connection serves. Call it on the thread, within its
    /// runtime.
    pub fn serve_here(&self) {
        let new = OWN.with_borrow_mut(|own| {
            let new = !own.iter().any(|o| o.queue == self.id);
            if new {
                own.push(Own {
                    queue: self.id,
                    generation: u64::MAX,
                    conn: None,
                    opening: false,
                    retry_at: None,
                });
            }
            new
        });
        self.own_conn(&self.link());
        if new {
            // A quiet thread's connection could be closed while idle (Redis's `timeout`, a
            // NAT): the next submission would meet that as a Redis failure and flip routing.
            let id = self.id;
            actix_web::rt::spawn(async move {
                loop {
                    actix_web::rt::time::sleep(OWN_KEEPALIVE).await;
                    let conn = OWN.with_borrow(|own| {
                        own.iter()
                            .find(|o| o.queue == id)
                            .and_then(|o| o.conn.clone())
                    });
                    if let Some(mut conn) = conn {
                        // A failure makes it reconnect; the health monitor judges Redis.
                        let _ = ::redis::cmd("PING").query_async::<()>(&mut conn).await;
                    }
                }
            });
        }
    }

    /// The thread's own connection for `link`, if it has one; starts making it when the
    /// thread wants one and none is under way.
    fn own_conn(&self, link: &Arc<Link>) -> Option<ConnectionManager> {
        OWN.with_borrow_mut(|own| {
            let own = own.iter_mut().find(|o| o.queue == self.id)?;
            if own.generation != link.generation {
                *own = Own {
                    generation: link.generation,
                    conn: None,
                    opening: false,
                    retry_at: None,
                    ..*own
                };
            }
            if own.conn.is_some() {
                return own.conn.clone();
            }
            if !own.opening && own.retry_at.is_none_or(|at| at <= Instant::now()) {
                own.opening = true;
                let (id, generation) = (self.id, link.generation);
                let (client, timeout) = (link.client.clone(), self.timeout);
                actix_web::rt::spawn(async move {
                    let made = Link::manager(&client, timeout).await;
                    OWN.with_borrow_mut(|own| {
                        let Some(own) = own
                            .iter_mut()
                            .find(|o| o.queue == id && o.generation == generation)
                        else {
                            return;
                        };
                        own.opening = false;
                        match made {
                            Ok(conn) => own.conn = Some(conn),
                            // Redis is down: the shared connection fails the same way, and
                            // the health monitor notices; try again a little later.
                            Err(_) => own.retry_at = Some(Instant::now() + OWN_RETRY),
                        }
                    });
                });
            }
            None
        })
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
