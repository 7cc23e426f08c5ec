//! `HealthMonitor` watches Redis and Postgres on a fixed interval, keeps the state `/health`
//! reports, and restarts executors that are stuck far past any time limit.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakRecipient;
use chrono::{DateTime, Utc};
use diesel::RunQueryDsl;

use super::executor::{ExecutorPool, Restart};
use crate::backends::{Backend, HealthState};
use crate::db::{self, PgPool};
use crate::events::EventBus;
use crate::redis::{InstanceReport, RedisQueue};

/// Sent to subscribers when a backend goes down or comes back.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct BackendChanged {
    pub backend: Backend,
    pub up: bool,
}

/// Adds a subscriber, told at once where both backends stand (a flip announced before it
/// subscribed is not missed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<BackendChanged>);

pub struct HealthMonitor {
    pub state: Arc<HealthState>,
    pub queue: RedisQueue,
    pub pool: PgPool,
    pub executors: ExecutorPool,
    pub interval: Duration,
    /// Told when a backend flips.
    pub subscribers: Vec<Recipient<BackendChanged>>,
    /// Told too, while they live (`Subscribe`: the HTTP workers' SubmissionActors, which end
    /// with their worker).
    pub followers: Vec<WeakRecipient<BackendChanged>>,
    /// An executor busy longer than this is stuck (the sandbox deadline is far shorter).
    pub stuck_after_ms: i64,
    /// A probe is under way: the next tick does not start another.
    pub probing: bool,
    /// Flips are announced to admin connections.
    pub events: Arc<EventBus>,
    /// This process in `instances` (see `redis::instances`): its id and role.
    pub instance: (String, &'static str),
    /// The `since` of both backends when last announced: flips a request reported are
    /// announced at the next tick too.
    pub announced: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// When the sentinels (if any) were last asked for the master.
    pub followed_at: Option<Instant>,
}

/// How often the sentinels are asked for the master while it takes writes, and how long
/// asking may take once it does not.
const FOLLOW_EVERY: Duration = Duration::from_secs(5);
const FOLLOW_BUDGET: Duration = Duration::from_secs(5);

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
        let follow_due = self
            .followed_at
            .is_none_or(|at| at.elapsed() >= FOLLOW_EVERY);
        if follow_due {
            self.followed_at = Some(Instant::now());
        }
        let report = InstanceReport {
            id: self.instance.0.clone(),
            role: self.instance.1.to_string(),
            executors: self.executors.executors.len(),
            busy: self.executors.busy(),
            quarantined: self.executors.quarantined(),
            at: started.timestamp_millis(),
        };
        let probe = async move {
            // Side by side: asking the sentinels may take seconds, and must not delay noticing
            // that Postgres is back.
            let redis = async {
                let probe_redis = || {
                    timed(limit, async {
                        queue.probe().await.map_err(|e| e.to_string())
                    })
                };
                let mut redis = probe_redis().await;
                // Under Sentinel, a master that takes no writes may have been replaced, and
                // one that still does (partitioned, or back empty before the sentinels demote
                // it) is caught by asking them every few seconds anyway. Asking may take a
                // sentinel's connect timeout per unreachable sentinel: a budget of its own.
                if redis.is_err() || follow_due {
                    // While Redis works, a slow answer must not hold up the health ticks.
                    let budget = if redis.is_err() { FOLLOW_BUDGET } else { limit };
                    match actix_web::rt::time::timeout(budget, queue.follow_master()).await {
                        Ok(Ok(Some(_))) => redis = probe_redis().await,
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => log::debug!("asking the sentinels for the master: {e}"),
                        Err(_) => log::debug!("asking the sentinels for the master: timed out"),
                    }
                }
                if redis.is_ok() {
                    let _ = queue.report_instance(&report).await;
                }
                // Asked at every tick: an operator may switch AOF on or off at run time. A
                // Redis that answers but will not say (INFO refused by an ACL, a slow answer)
                // keeps the last known value; one that is down has none.
                let persistence = match redis {
                    Ok(_) => Some(
                        actix_web::rt::time::timeout(limit, queue.persistence())
                            .await
                            .ok()
                            .and_then(Result::ok),
                    ),
                    Err(_) => None,
                };
                (redis, persistence)
            };
            let postgres = timed(limit, async {
                db::run(&pool, |c| diesel::sql_query("SELECT 1").execute(c))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            let ((redis, persistence), postgres) = futures_util::join!(redis, postgres);
            (redis, postgres, persistence)
        };
        ctx.spawn(
            probe
                .into_actor(self)
                .map(move |(redis, postgres, persistence), act, _| {
                    match persistence {
                        Some(None) => {} // unknown this time: the last known value stands
                        Some(known) => act.state.set_redis_persistence(known),
                        None => act.state.set_redis_persistence(None),
                    }
                    act.state.record_since(Backend::Redis, redis, started);
                    act.state.record_since(Backend::Postgres, postgres, started);
                    act.announce();
                    act.probing = false;
                }),
        );
    }

    /// Tells subscribers and admin connections of every flip since the last tick: the probe's
    /// and those that requests reported meanwhile.
    fn announce(&mut self) {
        let (redis, postgres) = (self.state.redis(), self.state.postgres());
        let now = (redis.since, postgres.since);
        let before = self.announced.replace(now);
        if before == Some(now) {
            return;
        }
        for (backend, health, changed) in [
            (Backend::Redis, &redis, before.is_none_or(|b| b.0 != now.0)),
            (
                Backend::Postgres,
                &postgres,
                before.is_none_or(|b| b.1 != now.1),
            ),
        ] {
            if changed {
                let followers = (self.followers.iter())
                    .filter_map(|f| f.upgrade())
                    .filter(|f| f.connected());
                for subscriber in self.subscribers.iter().cloned().chain(followers) {
                    subscriber.do_send(BackendChanged {
                        backend,
                        up: health.up,
                    });
                }
            }
        }
        self.events.local(None, self.state.event_json());
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

impl Handler<Subscribe> for HealthMonitor {
    type Result = ();

    fn handle(&mut self, Subscribe(subscriber): Subscribe, _: &mut Context<Self>) {
        for (backend, up) in [
            (Backend::Redis, self.state.redis_up()),
            (Backend::Postgres, self.state.postgres_up()),
        ] {
            subscriber.do_send(BackendChanged { backend, up });
        }
        self.followers
            .retain(|f| f.upgrade().is_some_and(|f| f.connected()));
        self.followers.push(subscriber.downgrade());
    }
}

impl Supervised for HealthMonitor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.probing = false;
    }
}
