//! `SubmissionActor` validates a submission and routes it:
//! - both backends up: a row in Postgres (the truth and the idempotency key), then Redis;
//! - Redis down (or failing on this very request): Postgres, through the `FallbackActor`;
//! - Postgres down: Redis alone carries the job until it is graded and recorded;
//! - both down: 503, and nothing was acknowledged.
//!
//! The actor owns that decision (`Routes`): it learns of flips from the HealthMonitor's
//! `BackendChanged`, and of a failure any request met (on any HTTP worker) at once, from the
//! shared health state to which each request reports what failed on it. It also owns the
//! writes of new submissions: their rows in Postgres by group commit (`Inserts`) and their
//! jobs in Redis (`Enqueues`). Each HTTP worker has its own (`Intake::start_here`).
use std::cell::Cell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, SubsecRound, Utc};
use diesel::Connection;
use uuid::Uuid;

use super::fallback::{FallbackActor, QueueFallback, StoreFallback};
use super::health::{BackendChanged, HealthMonitor, Subscribe};
use super::leaderboard::Rescore;
use crate::backends::{Backend, HealthState};
use crate::batch::Batcher;
use crate::db::models::{NewSubmission, Problem, Submission};
use crate::db::{self, DbError, PgPool};
use crate::events::EventBus;
use crate::grading;
use crate::job::{progress_event, Job, Outcome, Queue, Status, SubmissionResult};
use crate::metrics::Metrics;
use crate::problems::ProblemCache;
use crate::redis::RedisQueue;

pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// What the `SubmissionActor`s of all HTTP workers share. Each worker starts its own
/// (`start_here`), so that a submission is routed, and its writes batched and sent, on the
/// thread that took its request: no hop to another thread and back, and no wait behind
/// whatever another thread is doing (the executors grade on the main thread).
#[derive(Clone)]
pub struct Intake {
    pub leaderboard: Recipient<Rescore>,
    pub pool: PgPool,
    pub queue: RedisQueue,
    pub fallback: Addr<FallbackActor>,
    pub health: Arc<HealthState>,
    /// Tells each actor of backends going down or coming back.
    pub monitor: Addr<HealthMonitor>,
    pub problems: Arc<ProblemCache>,
    pub max_sql_bytes: usize,
    pub events: Arc<EventBus>,
    pub metrics: Arc<Metrics>,
    /// The most a submission waits on Postgres before routing around it.
    pub postgres_within: Duration,
    /// The same when Redis could not keep it alone: routing around Postgres would only refuse it.
    pub postgres_alone_within: Duration,
    /// The most it waits for its enqueue in Redis (`redis.timeout_ms`).
    pub redis_within: Duration,
    /// `redis.require_persistence`: no acknowledgement from a Redis that would forget it.
    pub require_persistence: bool,
}

impl Intake {
    /// Whether Redis may acknowledge a submission it alone keeps (`redis.require_persistence`).
    fn redis_keeps_alone(&self) -> bool {
        !self.require_persistence || self.health.redis_persists()
    }

    /// Starts a supervised `SubmissionActor` on this thread, with its own group commit and
    /// enqueuer and this thread's own Redis connection. Call it on the thread, within its
    /// runtime (an HTTP worker's app factory).
    pub fn start_here(&self) -> Addr<SubmissionActor> {
        self.queue.serve_here();
        let actor = SubmissionActor {
            intake: Rc::new(self.clone()),
            inserts: Rc::new(start_inserts(self.pool.clone())),
            enqueues: Rc::new(start_enqueues(self.queue.clone())),
            routes: Routes::from_health(&self.health),
        };
        let addr = Supervisor::start(move |_| actor);
        self.monitor.do_send(Subscribe(addr.clone().recipient()));
        addr
    }
}

/// Routes submissions (see the module's doc); one per HTTP worker, started by `Intake`.
pub struct SubmissionActor {
    intake: Rc<Intake>,
    inserts: Rc<Inserts>,
    enqueues: Rc<Enqueues>,
    /// Where submissions go now.
    routes: Routes,
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

    /// Up where both say up.
    fn and(self, other: Routes) -> Routes {
        Routes {
            redis: self.redis && other.redis,
            postgres: self.postgres && other.postgres,
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
        self.routes = Routes::from_health(&self.intake.health);
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
    /// The solution's verdict cache entry, when it was read along with the caller's session.
    pub verdict: Option<CachedVerdict>,
}

/// A verdict cache entry as read: which one (`grading::fingerprint`, of the problem as this
/// process knew it then, and its statement's part) and its JSON, if any.
#[derive(Debug)]
pub struct CachedVerdict {
    pub fingerprint: String,
    pub digest: String,
    pub json: Option<String>,
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

/// New submissions' rows, written by group commit: one INSERT (and one commit) for all those
/// that arrive while the previous one is written, each acknowledged once it is durable. Each
/// comes with the time its caller stops waiting for it.
pub type Inserts = Batcher<(Job, Instant), Written>;

/// What the group commit did with one submission.
#[derive(Debug)]
pub enum Written {
    Inserted,
    /// Left to `Submission::insert_idempotent`: a row holds its id or its user's `request_id`
    /// already (one older than 24 h is released there), or the statement was refused whole.
    Alone,
    Unavailable(String),
}

/// Starts the writer of `Inserts` on this thread's runtime: one per HTTP worker, so that the
/// platform pool is not taken by inserts as workers are added; while it waits for its
/// commit, the next batch gathers. It does not linger for more: every caller waits on its
/// INSERT, and tokio's timers work in whole milliseconds. A linger (even of 250 us) doubled the
/// rows per INSERT but cost 12-25 % of `scripts/bench`'s submit throughput where the round
/// trips, not the CPU, bound it.
pub fn start_inserts(pool: PgPool) -> Inserts {
    Batcher::start(1, 256, Duration::ZERO, move |jobs: Vec<(Job, Instant)>| {
        let pool = pool.clone();
        async move {
            let n = jobs.len();
            let ids: Vec<Uuid> = jobs.iter().map(|(j, _)| j.job_id).collect();
            let written = db::run(&pool, move |c| {
                // A caller whose time ran out while a connection was found has answered 503
                // or gone another way: its submission is not stored behind its back.
                let now = Instant::now();
                let mut rows: Vec<NewSubmission> = jobs
                    .iter()
                    .filter(|(_, until)| *until > now)
                    .map(|(j, _)| NewSubmission::queued(j, Queue::Redis))
                    .collect();
                // Keys in one order in every batch: two writers' batches that share request
                // ids wait for each other instead of deadlocking.
                rows.sort_by(|a, b| (a.user_id, a.request_id).cmp(&(b.user_id, b.request_id)));
                let inserted = match rows.is_empty() {
                    true => Vec::new(),
                    false => Submission::insert_new(c, &rows)?,
                };
                let stored: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
                Ok((inserted, stored))
            })
            .await;
            match written {
                Ok((inserted, stored)) => {
                    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
                    let stored: HashSet<Uuid> = stored.into_iter().collect();
                    ids.iter()
                        .map(|id| match (inserted.contains(id), stored.contains(id)) {
                            (true, _) => Written::Inserted,
                            (false, true) => Written::Alone,
                            (false, false) => Written::Unavailable("no connection in time".into()),
                        })
                        .collect()
                }
                Err(e) if e.is_unavailable() => (0..n)
                    .map(|_| Written::Unavailable(e.to_string()))
                    .collect(),
                Err(_) => (0..n).map(|_| Written::Alone).collect(),
            }
        }
    })
}

/// New jobs for the Redis queue: the jobs of concurrent submissions go in one atomic
/// pipeline, each caller answered when it is done.
pub type Enqueues = Batcher<Job, Result<(), String>>;

/// Starts the writer of `Enqueues` on this thread's runtime.
pub fn start_enqueues(queue: RedisQueue) -> Enqueues {
    Batcher::start(1, 256, Duration::ZERO, move |jobs: Vec<Job>| {
        let queue = queue.clone();
        async move {
            let done = queue.enqueue_all(&jobs).await.map_err(|e| e.to_string());
            vec![done; jobs.len()]
        }
    })
}

fn unavailable(what: &str) -> SubmitError {
    SubmitError::Unavailable(what.to_string())
}

/// One submission's routing: what it needs, shared with its actor, and what it learns.
struct Router {
    intake: Rc<Intake>,
    inserts: Rc<Inserts>,
    enqueues: Rc<Enqueues>,
    /// The routes when this submission arrived, less what failed on the way.
    routes: Cell<Routes>,
    /// How much longer this submission may wait on Postgres (time on Redis does not count).
    postgres_left: Cell<Duration>,
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

    /// A backend failed on this request: route around it from now on, here and (through the
    /// shared health state) everywhere.
    fn fail(&self, backend: Backend, error: impl std::fmt::Display) {
        self.intake.health.report_failure(backend, error);
        let mut routes = self.routes.get();
        routes.set(backend, false);
        self.routes.set(routes);
    }

    async fn enqueue_redis(&self, job: &Job) -> bool {
        // Within Redis's own timeout, however many enqueues wait for a hanging Redis before it
        // (one that has not been sent yet when this gives up is not sent at all).
        let enqueued = self.enqueues.submit(job.clone());
        match actix_web::rt::time::timeout(self.intake.redis_within, enqueued).await {
            Ok(Some(Ok(()))) => true,
            Ok(Some(Err(e))) => {
                self.fail(Backend::Redis, e);
                false
            }
            Err(_) => {
                let waited = self.intake.redis_within.as_millis();
                self.fail(Backend::Redis, format!("no answer within {waited} ms"));
                false
            }
            Ok(None) => {
                log::error!("the enqueuer stopped");
                false
            }
        }
    }

    async fn route(&self, job: Job, read: Option<CachedVerdict>) -> Result<Accepted, SubmitError> {
        if self.routes.get().postgres {
            match self.via_postgres(&job, read).await {
                Err(SubmitError::Unavailable(message)) => {
                    self.fail(Backend::Postgres, message);
                }
                other => return other,
            }
        }
        self.redis_only(job).await
    }

    /// Postgres records the submission first; Redis queues it, or Postgres does.
    async fn via_postgres(
        &self,
        job: &Job,
        read: Option<CachedVerdict>,
    ) -> Result<Accepted, SubmitError> {
        let problem = self
            .on_postgres(
                self.intake
                    .problems
                    .known(&self.intake.pool, job.problem_id),
            )
            .await?;
        let Some(problem) = problem else {
            return Err(SubmitError::UnknownProblem);
        };
        if !self.routes.get().redis {
            return self.store_fallback(job).await;
        }
        let fingerprint = match &read {
            Some(read) => grading::fingerprint_of(&problem, &read.digest),
            None => grading::fingerprint(&problem, &job.sql),
        };
        let cached = match read {
            // Read for the version of the problem this one holds.
            Some(read) if read.fingerprint == fingerprint => {
                Ok(read.json.as_deref().and_then(crate::redis::verdict))
            }
            _ => self.intake.queue.cached_verdict(&fingerprint).await,
        };
        if let Ok(Some(outcome)) = cached {
            if let Some(accepted) = self.record_cached(job, &problem, outcome).await? {
                return Ok(accepted);
            }
            // The problem changed since this process remembered it: grade it afresh.
            self.on_postgres(
                self.intake
                    .problems
                    .load(&self.intake.pool, job.problem_id, true),
            )
            .await?;
        }
        if let Some(existing) = self.insert(job).await? {
            return Ok(Accepted::existing(&existing));
        }
        if self.enqueue_redis(job).await {
            return Ok(Accepted::new(job, Queue::Redis));
        }
        // Redis failed on this request: the row exists, queue it in Postgres too.
        let queued = self.on_postgres(async {
            (self.intake.fallback.send(QueueFallback(job.clone())).await)
                .map_err(|e| DbError::Task(e.to_string()))?
        });
        match queued.await {
            Ok(()) => Ok(Accepted::new(job, Queue::Postgres)),
            // Still stored as queued: the re-sweep queues it once Redis answers.
            _ => Err(unavailable("neither Redis nor the Postgres queue took it")),
        }
    }

    /// Stores a new submission as queued (by group commit); `Some` when an earlier one holds its
    /// `request_id`, and nothing was stored.
    async fn insert(&self, job: &Job) -> Result<Option<Submission>, SubmitError> {
        let written = self.on_postgres(async {
            let until = Instant::now() + self.postgres_left.get();
            match self.inserts.submit((job.clone(), until)).await {
                Some(Written::Inserted) => Ok(true),
                Some(Written::Alone) => Ok(false),
                Some(Written::Unavailable(e)) => Err(DbError::Task(e)),
                None => Err(DbError::Task("the submission writer stopped".into())),
            }
        });
        if written.await? {
            return Ok(None);
        }
        let record = job.clone();
        let inserted = self.on_postgres(db::run(&self.intake.pool, move |c| {
            Submission::insert_idempotent(c, &NewSubmission::queued(&record, Queue::Redis))
        }));
        match inserted.await? {
            (_, true) => Ok(None),
            (stored, false) => Ok(Some(stored)),
        }
    }

    /// The same solution was graded recently: record the submission with that verdict now.
    /// `None` when `problem` is no longer the stored version (nothing was recorded).
    async fn record_cached(
        &self,
        job: &Job,
        problem: &Problem,
        outcome: Outcome,
    ) -> Result<Option<Accepted>, SubmitError> {
        let (record, version) = (job.clone(), problem.updated_at);
        let recorded = self
            .on_postgres(db::run(&self.intake.pool, move |c| {
                c.transaction(|c| {
                    if Problem::version_locked(c, record.problem_id)? != Some(version) {
                        return Ok(None);
                    }
                    let (stored, created) = Submission::insert_idempotent(
                        c,
                        &NewSubmission::queued(&record, Queue::Cache),
                    )?;
                    if !created {
                        return Ok(Some((stored, false, false)));
                    }
                    let (stored, first_solve) =
                        Submission::record_result(c, &record, Queue::Cache, &outcome)?;
                    Ok(Some((stored, true, first_solve)))
                })
            }))
            .await?;
        let Some((stored, created, first_solve)) = recorded else {
            return Ok(None);
        };
        if !created {
            return Ok(Some(Accepted::existing(&stored)));
        }
        if first_solve {
            self.intake.leaderboard.do_send(Rescore {
                user_id: job.user_id,
            });
        }
        let mut result = SubmissionResult::from(&stored);
        result.source = Backend::Redis;
        let json = serde_json::to_string(&result).expect("result serialises");
        let queue = self.intake.queue.clone();
        actix_web::rt::spawn(async move {
            let _ = queue.publish_result(result.job_id, &json).await;
        });
        Ok(Some(Accepted {
            status: stored.outcome.status,
            result: Some(SubmissionResult::from(&stored)),
            ..Accepted::new(job, Queue::Cache)
        }))
    }

    async fn store_fallback(&self, job: &Job) -> Result<Accepted, SubmitError> {
        let (stored, created) = self
            .on_postgres(async {
                (self.intake.fallback.send(StoreFallback(job.clone())).await)
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
        if self.intake.problems.get(job.problem_id).is_none() {
            return Err(unavailable(
                "the problem cannot be checked while the database is unreachable",
            ));
        }
        if let Some(request_id) = &job.request_id {
            if let Ok(Some(existing)) = self.intake.queue.request(job.user_id, request_id).await {
                return Ok(Accepted {
                    job_id: existing,
                    created: false,
                    ..Accepted::new(&job, Queue::Redis)
                });
            }
        }
        // Only what was acknowledged already (above) is answered without a durable store.
        if !self.intake.redis_keeps_alone() {
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
    type Result = ResponseFuture<Result<Accepted, SubmitError>>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let intake = &self.intake;
        // A failure any submission met counts at once, whatever worker it was on.
        let routes = self.routes.and(Routes::from_health(&intake.health));
        let redis_alone = routes.redis && intake.redis_keeps_alone();
        let router = Router {
            intake: intake.clone(),
            inserts: self.inserts.clone(),
            enqueues: self.enqueues.clone(),
            routes: Cell::new(routes),
            // A slow Postgres (a loaded machine) is waited for where nothing else would take it.
            postgres_left: Cell::new(match redis_alone {
                true => intake.postgres_within,
                false => intake.postgres_alone_within,
            }),
        };
        let max = intake.max_sql_bytes;
        let (events, metrics) = (intake.events.clone(), intake.metrics.clone());
        let work = async move {
            msg.validate(max)?;
            let job = Job {
                // Time-ordered: new rows go to the right edge of the primary key's index
                // instead of a random page of it (less PostgreSQL work a submission, and pages
                // that stay in memory once the table outgrows it). Only the submitter or an admin
                // can read a job by its id.
                job_id: Uuid::now_v7(),
                user_id: msg.user_id,
                problem_id: msg.problem_id,
                sql: msg.sql,
                request_id: msg.request_id,
                // Postgres keeps microseconds: acknowledge the time it will report.
                submitted_at: Utc::now().trunc_subsecs(6),
                rejudge: false,
            };
            let accepted = router.route(job.clone(), msg.verdict).await;
            if let Some(accepted) = accepted.as_ref().ok().filter(|a| a.created) {
                announce(&events, &metrics, &job, accepted).await;
            }
            accepted
        };
        // Concurrent submissions run side by side.
        Box::pin(work)
    }
}
