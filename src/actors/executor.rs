//! The executor pool: supervised `ExecutorActor`s, each grading one job at a time on its own
//! sandbox slot. A job is taken with BLMOVE and leased; an actor that fails (a panic while
//! grading, or a `Restart` from the watchdog) stops, its supervisor starts it afresh, and the
//! job it held is handed to another executor by the lease reaper.
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt;
use redis::aio::MultiplexedConnection;

use super::leaderboard::Rescore;
use crate::backends::{Backend, HealthState};
use crate::config::ExecutorSettings;
use crate::db::models::{FallbackSubmission, Submission};
use crate::db::{self, DbError, PgPool};
use crate::events::EventBus;
use crate::grading;
use crate::grading::sandbox::{Sandbox, SandboxError, Slot, SlotState};
use crate::job::{progress_event, Job, Outcome, Queue, Status, SubmissionResult};
use crate::metrics::Metrics;
use crate::problems::ProblemCache;
use crate::queue::{RedisQueue, Unpersisted};
use crate::stats::GradingStats;

/// What the health monitor and statistics see of one executor.
#[derive(Default)]
pub struct ExecutorStatus {
    /// Unix ms when the current job started; 0 when idle.
    pub busy_since_ms: AtomicI64,
    pub processed: AtomicU64,
    pub restarts: AtomicU64,
    /// The sandbox slot's memory of backends that would not die (outlives restarts).
    pub slot: Arc<SlotState>,
}

pub struct ExecutorDeps {
    pub leaderboard: Recipient<Rescore>,
    pub queue: RedisQueue,
    pub pool: PgPool,
    pub health: Arc<HealthState>,
    pub problems: Arc<ProblemCache>,
    pub sandbox: Arc<Sandbox>,
    pub settings: ExecutorSettings,
    pub events: Arc<EventBus>,
    pub metrics: Arc<Metrics>,
    pub stats: Arc<GradingStats>,
}

pub struct ExecutorActor {
    index: usize,
    deps: Arc<ExecutorDeps>,
    status: Arc<ExecutorStatus>,
}

/// Stops the executor (abandoning its job to the reaper); its supervisor restarts it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restart;

impl Actor for ExecutorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let work = work_loop(self.index, self.deps.clone(), self.status.clone());
        ctx.spawn(work.into_actor(self).map(|_, _, ctx| ctx.stop()));
    }
}

impl Supervised for ExecutorActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        log::warn!("executor {} restarting", self.index);
        self.status.restarts.fetch_add(1, Ordering::Relaxed);
        self.status.busy_since_ms.store(0, Ordering::Relaxed);
    }
}

impl Handler<Restart> for ExecutorActor {
    type Result = ();

    fn handle(&mut self, _: Restart, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[derive(Clone)]
pub struct ExecutorPool {
    pub executors: Vec<Addr<ExecutorActor>>,
    pub status: Vec<Arc<ExecutorStatus>>,
}

impl ExecutorPool {
    pub fn start(deps: ExecutorDeps) -> ExecutorPool {
        let deps = Arc::new(deps);
        let status: Vec<Arc<ExecutorStatus>> =
            (0..deps.settings.workers).map(|_| Arc::default()).collect();
        let executors = status
            .iter()
            .enumerate()
            .map(|(index, status)| {
                let (deps, status) = (deps.clone(), status.clone());
                Supervisor::start(move |_| ExecutorActor {
                    index,
                    deps,
                    status,
                })
            })
            .collect();
        ExecutorPool { executors, status }
    }

    pub fn busy(&self) -> usize {
        self.status
            .iter()
            .filter(|s| s.busy_since_ms.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Executors waiting for a sandbox backend that ignores termination to exit.
    pub fn quarantined(&self) -> usize {
        self.status.iter().filter(|s| s.slot.quarantined()).count()
    }
}

/// Where a job came from, which decides how it is leased and completed.
enum Source {
    /// Taken from Redis; the raw list item identifies it in the in-flight list.
    Redis(String),
    /// Claimed from the Postgres fallback queue (`attempts` counts this claim).
    Postgres { attempts: u32 },
}

/// Takes and grades jobs until the actor is stopped or a grading panics (then returns, and
/// the actor stops). Redis is the source while it is healthy; otherwise the Postgres fallback
/// queue is.
async fn work_loop(index: usize, deps: Arc<ExecutorDeps>, status: Arc<ExecutorStatus>) {
    let block = Duration::from_secs_f64(deps.settings.dequeue_block_secs);
    let lease = chrono::Duration::milliseconds(deps.settings.lease_ms as i64);
    let mut slot = deps.sandbox.slot(index, status.slot.clone());
    let mut conn: Option<MultiplexedConnection> = None;
    let per_user = deps.settings.per_user_limit;
    loop {
        // A slot whose last backend would not die takes no job until it is gone.
        if !slot.settle(Some(Duration::from_secs(1))).await {
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let (job, source) = if deps.health.redis_up() {
            let taken = match conn.as_mut() {
                Some(c) => deps.queue.take(c, block, per_user).await,
                None => match deps.queue.blocking_connection(block).await {
                    Ok(c) => {
                        conn = Some(c);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            let item = match taken {
                Ok(Some(item)) => item,
                Ok(None) => continue,
                Err(e) => {
                    log::debug!("executor {index}: redis: {e}");
                    conn = None;
                    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            match serde_json::from_str::<Job>(&item) {
                Ok(job) => (job, Source::Redis(item)),
                Err(e) => {
                    log::error!("dropping a queue item that is not a job ({e}): {item:.200}");
                    let _ = deps.queue.discard(&item).await;
                    continue;
                }
            }
        } else {
            let claimed = db::run(&deps.pool, move |c| {
                FallbackSubmission::claim(c, 1, lease, Some(per_user))
            })
            .await;
            match claimed.map(|mut v| v.pop()) {
                Ok(Some(row)) => match row.job() {
                    Some(job) => (
                        job,
                        Source::Postgres {
                            attempts: row.attempts as u32,
                        },
                    ),
                    None => {
                        log::error!(
                            "fallback row {} holds no job; leaving it for inspection",
                            row.id
                        );
                        continue;
                    }
                },
                Ok(None) | Err(_) => {
                    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        };
        status
            .busy_since_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        let handled = AssertUnwindSafe(handle(&deps, &mut slot, job, source))
            .catch_unwind()
            .await;
        status.busy_since_ms.store(0, Ordering::Relaxed);
        if handled.is_err() {
            log::error!("executor {index} panicked while grading; restarting it");
            return;
        }
        status.processed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Grades one job. Infrastructure failures hand it back; nothing is lost.
async fn handle(deps: &ExecutorDeps, slot: &mut Slot, job: Job, source: Source) {
    let lease = Duration::from_millis(deps.settings.lease_ms);
    let attempts = match &source {
        Source::Redis(_) => match deps.queue.start(&job, lease).await {
            Ok(n) => n,
            Err(e) => {
                log::warn!(
                    "job {}: could not lease ({e}); the reaper will requeue it",
                    job.job_id
                );
                return;
            }
        },
        Source::Postgres { attempts } => {
            deps.events
                .publish(progress_event(&job, Status::Running))
                .await;
            *attempts
        }
    };
    let outcome = if attempts > deps.settings.max_attempts {
        Graded::Verdict(
            Outcome::verdict(
                Status::InternalError,
                format!("grading failed {} times", attempts - 1),
            ),
            None,
        )
    } else {
        // Renew the lease while grading: if this executor dies, the lease lapses within
        // `lease_ms`, however long the problem's time limit.
        let renew = async {
            loop {
                actix_web::rt::time::sleep(lease / 3).await;
                let id = job.job_id;
                let renewed = match &source {
                    Source::Redis(_) => {
                        deps.queue.renew(id, lease).await.map_err(|e| e.to_string())
                    }
                    Source::Postgres { .. } => {
                        let lease = chrono::Duration::milliseconds(lease.as_millis() as i64);
                        db::run(&deps.pool, move |c| FallbackSubmission::renew(c, id, lease))
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }
                };
                if let Err(e) = renewed {
                    log::debug!("job {id}: lease renewal failed: {e}");
                }
            }
        };
        let grading = grade(deps, slot, &job);
        futures_util::pin_mut!(renew, grading);
        match futures_util::future::select(grading, renew).await {
            futures_util::future::Either::Left((outcome, _)) => outcome,
            futures_util::future::Either::Right((never, _)) => never,
        }
    };
    match outcome {
        Graded::Verdict(outcome, cache_key) => finish(deps, job, source, outcome, cache_key).await,
        Graded::Interrupted(reason) if attempts >= deps.settings.max_attempts => {
            let outcome = Outcome::verdict(
                Status::InternalError,
                format!("grading was interrupted {attempts} times; last: {reason}"),
            );
            finish(deps, job, source, outcome, None).await
        }
        Graded::Interrupted(reason) => {
            log::warn!(
                "job {}: attempt {attempts} interrupted: {reason}",
                job.job_id
            );
            release(deps, &job, &source, true).await;
        }
        Graded::NotRun => {
            // The sandbox or platform database is unreachable: put the job back after a pause.
            actix_web::rt::time::sleep(Duration::from_millis(500)).await;
            release(deps, &job, &source, false).await;
        }
    }
}

/// Hands a job back; `counted` when the try was an attempt (see `RedisQueue::release`).
async fn release(deps: &ExecutorDeps, job: &Job, source: &Source, counted: bool) {
    let released = match source {
        Source::Redis(item) => deps
            .queue
            .release(item, job, counted)
            .await
            .map_err(|e| e.to_string()),
        Source::Postgres { .. } => {
            let id = job.job_id;
            db::run(&deps.pool, move |c| {
                FallbackSubmission::release(c, &[id], counted)
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
    };
    if let Err(e) = released {
        log::warn!(
            "job {}: could not hand back ({e}); its lease will lapse",
            job.job_id
        );
    }
}

/// Records the outcome (exactly once) and publishes the result; a verdict that depends on the
/// SQL alone is cached under `cache_key`, that of the problem version it was graded against.
async fn finish(
    deps: &ExecutorDeps,
    job: Job,
    source: Source,
    outcome: Outcome,
    cache_key: Option<String>,
) {
    let latency_ms = (chrono::Utc::now() - job.submitted_at)
        .num_milliseconds()
        .clamp(0, i64::from(u32::MAX)) as u32;
    deps.metrics.verdict(outcome.status.as_str(), latency_ms);
    deps.stats.record(outcome.status.as_str(), latency_ms);
    let item = match source {
        Source::Postgres { .. } => {
            let (j, o) = (job.clone(), outcome.clone());
            let recorded =
                db::run(&deps.pool, move |c| FallbackSubmission::complete(c, &j, &o)).await;
            if let Ok((_, first_solve)) = recorded {
                if first_solve {
                    deps.leaderboard.do_send(Rescore {
                        user_id: job.user_id,
                    });
                }
                let mut result = SubmissionResult::graded(&job, &outcome);
                result.source = Backend::Postgres;
                deps.events.publish_submission(&result).await;
            }
            if let Err(e) = recorded {
                log::warn!(
                    "job {}: could not record ({e}); it will be graded again",
                    job.job_id
                );
                release(deps, &job, &Source::Postgres { attempts: 0 }, false).await;
            }
            return;
        }
        Source::Redis(item) => item,
    };
    if job.rejudge {
        let (j, o) = (job.clone(), outcome.clone());
        match db::run(&deps.pool, move |c| Submission::record_rejudge(c, &j, &o)).await {
            Ok(changed) => {
                if changed {
                    deps.leaderboard.do_send(Rescore {
                        user_id: job.user_id,
                    });
                }
                let result = SubmissionResult::graded(&job, &outcome);
                if let Err(e) = deps.queue.complete(&item, &result, None).await {
                    log::warn!(
                        "rejudge {}: recorded, not published to Redis: {e}",
                        job.job_id
                    );
                }
            }
            Err(e) => {
                // A rejudge changes a record Postgres holds: it waits for Postgres.
                log::warn!(
                    "rejudge {}: could not record ({e}); it will be graded again",
                    job.job_id
                );
                actix_web::rt::time::sleep(Duration::from_millis(500)).await;
                release(deps, &job, &Source::Redis(item), false).await;
            }
        }
        return;
    }
    let recorded = if deps.health.postgres_up() {
        let (j, o) = (job.clone(), outcome.clone());
        db::run(&deps.pool, move |c| {
            Submission::record_result(c, &j, Queue::Redis, &o)
        })
        .await
    } else {
        Err(DbError::Task("postgres is down".into()))
    };
    let published = match recorded {
        Ok((stored, first_solve)) => {
            if let Some(key) = cache_key.filter(|_| outcome.is_reusable()) {
                if let Err(e) = deps.queue.cache_verdict(&key, &outcome).await {
                    log::debug!("verdict not cached: {e}");
                }
            }
            if first_solve {
                deps.leaderboard.do_send(Rescore {
                    user_id: job.user_id,
                });
            }
            let mut result = SubmissionResult::from(&stored);
            result.source = Backend::Redis;
            deps.queue.complete(&item, &result, None).await
        }
        Err(e) if e.is_unavailable() => {
            // Postgres is down: the result waits in Redis and is recorded when it is back.
            deps.health.report_failure(Backend::Postgres, &e);
            let result = SubmissionResult::graded(&job, &outcome);
            deps.queue
                .complete(
                    &item,
                    &result,
                    Some(&Unpersisted {
                        job: job.clone(),
                        outcome,
                    }),
                )
                .await
        }
        Err(e) => {
            log::error!("job {}: recording failed: {e}", job.job_id);
            release(deps, &job, &Source::Redis(item), false).await;
            return;
        }
    };
    if let Err(e) = published {
        // Recorded in Postgres already: a second grading would find it final and change nothing.
        log::warn!("job {}: result not published to Redis: {e}", job.job_id);
    }
}

/// What became of one try at grading a job.
enum Graded {
    /// With the verdict-cache key of the problem version it was graded against (the problem
    /// may change while a job is graded).
    Verdict(Outcome, Option<String>),
    /// The solution never reached the sandbox (it or the platform database is unreachable).
    NotRun,
    /// The run broke after the solution reached the sandbox, for a reason outside it.
    Interrupted(String),
}

async fn grade(deps: &ExecutorDeps, slot: &mut Slot, job: &Job) -> Graded {
    let problem = match deps
        .problems
        .load(&deps.pool, job.problem_id, deps.health.postgres_up())
        .await
    {
        Ok(Some(problem)) => problem,
        Ok(None) => {
            return Graded::Verdict(
                Outcome::verdict(Status::InternalError, "the problem no longer exists"),
                None,
            );
        }
        Err(e) => {
            log::warn!("job {}: loading problem: {e}", job.job_id);
            return Graded::NotRun;
        }
    };
    match grading::grade(slot, &problem, &job.sql).await {
        Ok(outcome) => Graded::Verdict(outcome, Some(grading::fingerprint(&problem, &job.sql))),
        Err(SandboxError::Interrupted(reason)) => Graded::Interrupted(reason),
        Err(e) => {
            log::warn!("job {}: sandbox: {e}", job.job_id);
            Graded::NotRun
        }
    }
}
