//! `SubmissionActor` validates a submission and routes it:
//! - both backends up: a row in Postgres (the truth and the idempotency key), then Redis;
//! - Redis down (or failing on this very request): Postgres, through the `FallbackActor`;
//! - Postgres down: Redis alone carries the job until it is graded and recorded;
//! - both down: 503, and nothing was acknowledged.
//!
//! The actor owns that decision (`Routes`): it learns of flips from the HealthMonitor's
//! `BackendChanged` and of failures from its own requests, which it also reports to the shared
//! health state for everyone else.
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, SubsecRound, Utc};
use diesel::Connection;
use uuid::Uuid;

use super::fallback::{FallbackActor, QueueFallback, StoreFallback};
use super::health::BackendChanged;
use super::leaderboard::Rescore;
use super::redis_queue::{Enqueue, RedisQueueActor};
use crate::backends::{Backend, HealthState};
use crate::db::models::{NewSubmission, Submission};
use crate::db::{self, DbError, PgPool};
use crate::events::EventBus;
use crate::grading;
use crate::job::{progress_event, Job, Outcome, Queue, Status, SubmissionResult};
use crate::metrics::Metrics;
use crate::problems::ProblemCache;
use crate::redis::RedisQueue;

pub const MAX_REQUEST_ID_CHARS: usize = 128;

pub struct SubmissionActor {
    pub leaderboard: Recipient<Rescore>,
    pub pool: PgPool,
    pub queue: RedisQueue,
    pub redis_queue: Addr<RedisQueueActor>,
    pub fallback: Addr<FallbackActor>,
    pub health: Arc<HealthState>,
    pub problems: Arc<ProblemCache>,
    pub max_sql_bytes: usize,
    pub events: Arc<EventBus>,
    pub metrics: Arc<Metrics>,
    /// Where submissions go now.
    pub routes: Routes,
    /// The most a submission waits on Postgres before routing around it.
    pub postgres_within: Duration,
    /// `redis.require_persistence`: no acknowledgement from a Redis that would forget it.
    pub require_persistence: bool,
}

/// Which backends the SubmissionActor sends submissions to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routes {
    pub redis: bool,
    pub postgres: bool,
}

impl Routes {
    /// What the shared health state says now (at start, before any message).
    pub fn from_health(health: &HealthState) -> Routes {
        Routes {
            redis: health.redis_up(),
            postgres: health.postgres_up(),
        }
    }

    fn set(&mut self, backend: Backend, up: bool) {
        match backend {
            Backend::Redis => self.redis = up,
            Backend::Postgres => self.postgres = up,
        }
    }
}

impl Actor for SubmissionActor {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.routes = Routes::from_health(&self.health);
    }
}

impl Handler<BackendChanged> for SubmissionActor {
    type Result = ();

    fn handle(&mut self, msg: BackendChanged, _: &mut Context<Self>) {
        self.routes.set(msg.backend, msg.up);
    }
}

impl Supervised for SubmissionActor {}

#[derive(Message)]
#[rtype(result = "Result<Accepted, SubmitError>")]
pub struct Submit {
    pub user_id: i64,
    pub problem_id: i64,
    pub sql: String,
    pub request_id: Option<String>,
}

/// The acknowledgement: which queue holds the submission now (or, from the verdict cache,
/// its result).
#[derive(Debug, Clone)]
pub struct Accepted {
    pub job_id: Uuid,
    pub status: Status,
    pub queue: Queue,
    pub submitted_at: DateTime<Utc>,
    pub result: Option<SubmissionResult>,
    /// False when an idempotent retry found an earlier submission.
    pub created: bool,
}

impl Accepted {
    fn new(job: &Job, queue: Queue) -> Accepted {
        Accepted {
            job_id: job.job_id,
            status: Status::Queued,
            queue,
            submitted_at: job.submitted_at,
            result: None,
            created: true,
        }
    }

    fn existing(s: &Submission) -> Accepted {
        Accepted {
            job_id: s.id,
            status: s.outcome.status,
            queue: s.queue,
            submitted_at: s.created_at,
            result: (s.queue == Queue::Cache).then(|| SubmissionResult::from(s)),
            created: false,
        }
    }
}

/// Why a submission was not accepted. The HTTP layer gives each its status; routing falls back
/// on `Unavailable` alone.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Invalid(String),
    #[error("problem not found")]
    UnknownProblem,
    #[error("cannot accept submissions now: {0}")]
    Unavailable(String),
    /// A failure nobody expects; it keeps its cause.
    #[error("recording the submission failed")]
    Internal(#[source] DbError),
}

impl From<DbError> for SubmitError {
    fn from(e: DbError) -> Self {
        if e.is_unavailable() {
            SubmitError::Unavailable(e.to_string())
        } else {
            SubmitError::Internal(e)
        }
    }
}

/// What a statement must be to be graded or run: not empty, within `max_sql_bytes`, no NUL.
pub fn check_sql(sql: &str, max_sql_bytes: usize) -> Result<(), SubmitError> {
    if sql.len() > max_sql_bytes {
        return Err(SubmitError::TooLarge(format!(
            "sql is {} bytes; the limit is {max_sql_bytes}",
            sql.len()
        )));
    }
    if sql.trim().is_empty() {
        return Err(SubmitError::Invalid("sql must not be empty".into()));
    }
    if sql.contains('\0') {
        return Err(SubmitError::Invalid(
            "sql must not contain NUL characters".into(),
        ));
    }
    Ok(())
}

impl Submit {
    fn validate(&self, max_sql_bytes: usize) -> Result<(), SubmitError> {
        check_sql(&self.sql, max_sql_bytes)?;
        if let Some(id) = &self.request_id {
            if id.is_empty() || id.chars().count() > MAX_REQUEST_ID_CHARS {
                return Err(SubmitError::Invalid(format!(
                    "request_id must be 1 to {MAX_REQUEST_ID_CHARS} characters"
                )));
            }
        }
        Ok(())
    }
}

fn unavailable(what: &str) -> SubmitError {
    SubmitError::Unavailable(what.to_string())
}

/// One submission's routing: what it needs, cloned out of the actor, and what it learns.
struct Router {
    leaderboard: Recipient<Rescore>,
    pool: PgPool,
    queue: RedisQueue,
    redis_queue: Addr<RedisQueueActor>,
    fallback: Addr<FallbackActor>,
    health: Arc<HealthState>,
    problems: Arc<ProblemCache>,
    /// The actor's routes when this submission arrived, less what failed on the way.
    routes: Cell<Routes>,
    /// The backends that failed on this submission, for the actor to learn of.
    failed: Cell<[bool; 2]>,
    /// How much longer this submission may wait on Postgres (time on Redis does not count).
    postgres_left: Cell<Duration>,
    require_persistence: bool,
}

impl Router {
    /// Waits for `work` on Postgres within what is left of this submission's time for it: a
    /// Postgres that hangs or refuses costs a submission `database.request_timeout_ms` at most.
    /// (Work cut short may still complete; every write here is idempotent.)
    async fn on_postgres<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        let (left, started) = (self.postgres_left.get(), Instant::now());
        let result = actix_web::rt::time::timeout(left, work).await;
        self.postgres_left
            .set(left.saturating_sub(started.elapsed()));
        result.unwrap_or(Err(DbError::Timeout(left.as_millis())))
    }

    /// A backend failed on this request: route around it from now on, here and everywhere.
    fn fail(&self, backend: Backend, error: impl std::fmt::Display) {
        self.health.report_failure(backend, error);
        let mut routes = self.routes.get();
        routes.set(backend, false);
        self.routes.set(routes);
        let mut failed = self.failed.get();
        failed[backend as usize] = true;
        self.failed.set(failed);
    }

    async fn enqueue_redis(&self, job: &Job) -> bool {
        match self.redis_queue.send(Enqueue(job.clone())).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                self.fail(Backend::Redis, e);
                false
            }
            Err(e) => {
                log::error!("RedisQueueActor unreachable: {e}");
                false
            }
        }
    }

    async fn route(&self, job: Job) -> Result<Accepted, SubmitError> {
        if self.routes.get().postgres {
            match self.via_postgres(&job).await {
                Err(SubmitError::Unavailable(message)) => {
                    self.fail(Backend::Postgres, message);
                }
                other => return other,
            }
        }
        self.redis_only(job).await
    }

    /// Postgres records the submission first; Redis queues it, or Postgres does.
    async fn via_postgres(&self, job: &Job) -> Result<Accepted, SubmitError> {
        let problem = self
            .on_postgres(self.problems.load(&self.pool, job.problem_id, true))
            .await?;
        let Some(problem) = problem else {
            return Err(SubmitError::UnknownProblem);
        };
        if !self.routes.get().redis {
            return self.store_fallback(job).await;
        }
        let fingerprint = grading::fingerprint(&problem, &job.sql);
        if let Ok(Some(outcome)) = self.queue.cached_verdict(&fingerprint).await {
            return self.record_cached(job, outcome).await;
        }
        let record = job.clone();
        let (stored, created) = self
            .on_postgres(db::run(&self.pool, move |c| {
                Submission::insert_idempotent(c, &NewSubmission::queued(&record, Queue::Redis))
            }))
            .await?;
        if !created {
            return Ok(Accepted::existing(&stored));
        }
        if self.enqueue_redis(job).await {
            return Ok(Accepted::new(job, Queue::Redis));
        }
        // Redis failed on this request: the row exists, queue it in Postgres too.
        let queued = self.on_postgres(async {
            (self.fallback.send(QueueFallback(job.clone())).await)
                .map_err(|e| DbError::Task(e.to_string()))?
        });
        match queued.await {
            Ok(()) => Ok(Accepted::new(job, Queue::Postgres)),
            // Still stored as queued: the re-sweep queues it once Redis answers.
            _ => Err(unavailable("neither Redis nor the Postgres queue took it")),
        }
    }

    /// The same solution was graded recently: record the submission with that verdict now.
    async fn record_cached(&self, job: &Job, outcome: Outcome) -> Result<Accepted, SubmitError> {
        let record = job.clone();
        let (stored, created, first_solve) = self
            .on_postgres(db::run(&self.pool, move |c| {
                c.transaction(|c| {
                    let (stored, created) = Submission::insert_idempotent(
                        c,
                        &NewSubmission::queued(&record, Queue::Cache),
                    )?;
                    if !created {
                        return Ok((stored, false, false));
                    }
                    let (stored, first_solve) =
                        Submission::record_result(c, &record, Queue::Cache, &outcome)?;
                    Ok((stored, true, first_solve))
                })
            }))
            .await?;
        if !created {
            return Ok(Accepted::existing(&stored));
        }
        if first_solve {
            self.leaderboard.do_send(Rescore {
                user_id: job.user_id,
            });
        }
        let mut result = SubmissionResult::from(&stored);
        result.source = Backend::Redis;
        let json = serde_json::to_string(&result).expect("result serialises");
        let queue = self.queue.clone();
        actix_web::rt::spawn(async move {
            let _ = queue.publish_result(result.job_id, &json).await;
        });
        Ok(Accepted {
            status: stored.outcome.status,
            result: Some(SubmissionResult::from(&stored)),
            ..Accepted::new(job, Queue::Cache)
        })
    }

    async fn store_fallback(&self, job: &Job) -> Result<Accepted, SubmitError> {
        let (stored, created) = self
            .on_postgres(async {
                (self.fallback.send(StoreFallback(job.clone())).await)
                    .map_err(|e| DbError::Task(e.to_string()))?
            })
            .await?;
        Ok(if created {
            Accepted::new(job, Queue::Postgres)
        } else {
            Accepted::existing(&stored)
        })
    }

    /// Postgres is unreachable: the job in Redis is self-contained; its record is written
    /// when it has been graded and Postgres answers again.
    async fn redis_only(&self, job: Job) -> Result<Accepted, SubmitError> {
        if !self.routes.get().redis {
            return Err(unavailable("Redis and Postgres are both unreachable"));
        }
        if self.problems.get(job.problem_id).is_none() {
            return Err(unavailable(
                "the problem cannot be checked while the database is unreachable",
            ));
        }
        if let Some(request_id) = &job.request_id {
            if let Ok(Some(existing)) = self.queue.request(job.user_id, request_id).await {
                return Ok(Accepted {
                    job_id: existing,
                    created: false,
                    ..Accepted::new(&job, Queue::Redis)
                });
            }
        }
        // Only what was acknowledged already (above) is answered without a durable store.
        if self.require_persistence && !self.health.redis_persists() {
            return Err(unavailable(
                "the database is unreachable and Redis does not persist (no append-only file, \
                 or it would not say): an acknowledgement could be lost",
            ));
        }
        if self.enqueue_redis(&job).await {
            Ok(Accepted::new(&job, Queue::Redis))
        } else {
            Err(unavailable("Redis and Postgres are both unreachable"))
        }
    }
}

/// Counts a new submission and tells `/ws` it is queued (or already graded, from the verdict
/// cache). Redis-queued jobs announce themselves in the enqueue transaction.
async fn announce(events: &EventBus, metrics: &Metrics, job: &Job, accepted: &Accepted) {
    metrics
        .submissions
        .with_label_values(&[accepted.queue.as_str()])
        .inc();
    match (accepted.queue, &accepted.result) {
        (Queue::Postgres, _) => events.publish(progress_event(job, Status::Queued)).await,
        (Queue::Cache, Some(result)) => events.publish_submission(result).await,
        _ => {}
    }
}

impl Handler<Submit> for SubmissionActor {
    type Result = ResponseActFuture<Self, Result<Accepted, SubmitError>>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let router = Router {
            leaderboard: self.leaderboard.clone(),
            pool: self.pool.clone(),
            queue: self.queue.clone(),
            redis_queue: self.redis_queue.clone(),
            fallback: self.fallback.clone(),
            health: self.health.clone(),
            problems: self.problems.clone(),
            routes: Cell::new(self.routes),
            failed: Cell::new([false; 2]),
            postgres_left: Cell::new(self.postgres_within),
            require_persistence: self.require_persistence,
        };
        let max = self.max_sql_bytes;
        let (events, metrics) = (self.events.clone(), self.metrics.clone());
        let work = async move {
            if let Err(e) = msg.validate(max) {
                return (Err(e), router.failed.get());
            }
            let job = Job {
                job_id: Uuid::new_v4(),
                user_id: msg.user_id,
                problem_id: msg.problem_id,
                sql: msg.sql,
                request_id: msg.request_id,
                // Postgres keeps microseconds: acknowledge the time it will report.
                submitted_at: Utc::now().trunc_subsecs(6),
                rejudge: false,
            };
            let accepted = router.route(job.clone()).await;
            if let Some(accepted) = accepted.as_ref().ok().filter(|a| a.created) {
                announce(&events, &metrics, &job, accepted).await;
            }
            (accepted, router.failed.get())
        };
        // Concurrent submissions run side by side; each teaches the actor what failed.
        Box::pin(work.into_actor(self).map(|(accepted, failed), act, _| {
            for backend in [Backend::Redis, Backend::Postgres] {
                if failed[backend as usize] {
                    act.routes.set(backend, false);
                }
            }
            accepted
        }))
    }
}
