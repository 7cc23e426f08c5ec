//! Where executors take jobs from, behind one interface (take, renew, release, complete): the
//! Redis queue while Redis is up, the Postgres fallback queue otherwise. An executor grades
//! without knowing which one a job came from, and completing a job is the one place a verdict
//! of a queued job is recorded and published.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use redis::aio::MultiplexedConnection;

use crate::actors::leaderboard::Rescore;
use crate::backends::{Backend, HealthState};
use crate::batch::Batcher;
use crate::config::ExecutorSettings;
use crate::db::models::{FallbackSubmission, Graded, Submission};
use crate::db::{self, DbError, PgPool};
use crate::events::EventBus;
use crate::job::{progress_event, Job, Outcome, Status, SubmissionResult};
use crate::redis::{Completion, RedisQueue, Unpersisted};

/// A job an executor holds, under a lease of the queue it came from.
pub struct Held {
    pub job: Job,
    /// How many times it has been taken, this time included.
    pub attempts: u32,
    from: From,
    /// What is left of publishing its `running` event (`JobSource::announce`).
    announce: Announce,
    /// Live jobs were still waiting in Redis when it was taken (see `JobSource::take_ahead`).
    pub more: bool,
}

enum Announce {
    /// Published, and this instance's connections hear it.
    Done,
    /// Published to Redis while this instance was not subscribed: for its connections still.
    Deliver,
    /// Still to publish.
    Publish,
}

enum From {
    /// The raw list item identifies it in the in-flight list.
    Redis(String),
    Postgres,
}

/// What a verdict was reached against: the problem's version and the verdict-cache key of the
/// solution there.
pub struct GradedAgainst {
    pub version: chrono::DateTime<chrono::Utc>,
    pub fingerprint: String,
}

/// What became of a verdict handed to `JobSource::complete`.
#[derive(Debug, PartialEq, Eq)]
pub enum Completed {
    /// Recorded (or handed back, to be graded again, when it could not be).
    Done,
    /// Not recorded: the problem changed since it was graded. The job is still held: grade it
    /// again on the current version.
    Stale,
}

pub struct JobSource {
    pub recorder: Recorder,
    pub queue: RedisQueue,
    pub pool: PgPool,
    pub health: Arc<HealthState>,
    pub events: Arc<EventBus>,
    pub leaderboard: Recipient<Rescore>,
    pub settings: ExecutorSettings,
}

/// An executor's own connection for the blocking take (see `RedisQueue::blocking_connection`).
#[derive(Default)]
pub struct Taker {
    /// With the generation of the Redis link it was made from.
    conn: Option<(MultiplexedConnection, u64)>,
    /// The in-flight items of jobs graded and handed over to be recorded: no longer counted
    /// against its user's limit from the next take on (see `RedisQueue::take`).
    handed: Vec<String>,
}

/// One more in a count for as long as it lives (a panic, or the future of a stopped actor
/// dropped, included).
pub struct Counted(Arc<AtomicUsize>);

impl Counted {
    pub fn new(count: &Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Taker {
    /// Leaves a handed-over job counted against its user until its record is in: moved late,
    /// its item might by then be another executor's take of the same job (handed back).
    pub fn forget_handed(&mut self) {
        self.handed.clear();
    }
}

impl Held {
    /// A live job from Redis: its verdict is recorded only against the problem's current
    /// version (`complete` says when it is not), so it may be graded on a remembered copy.
    /// Others (rejudges, fallback jobs) are graded on the problem as Postgres has it.
    pub fn checks_version(&self) -> bool {
        matches!(self.from, From::Redis(_)) && !self.job.rejudge
    }
}

impl JobSource {
    fn lease(&self) -> Duration {
        Duration::from_millis(self.settings.lease_ms)
    }

    /// Waits briefly for the next job and starts its lease: from Redis while it is up, else
    /// from the Postgres fallback queue. `None`: nothing to grade now; call again. It counts
    /// itself in `waiting` while it waits for a job to arrive, having found none to take (in
    /// Redis, until its try to take the one that arrived is answered; in the fallback queue,
    /// also after a claim that failed), not while it merely asks for one or pauses after an
    /// error reaching Redis.
    pub async fn take(&self, taker: &mut Taker, waiting: &Arc<AtomicUsize>) -> Option<Held> {
        let block = Duration::from_secs_f64(self.settings.dequeue_block_secs);
        if self.health.redis_up() {
            self.take_from_redis(taker, Some((block, waiting))).await
        } else {
            taker.forget_handed();
            self.take_from_postgres(waiting).await
        }
    }

    /// Takes a job from Redis if one is waiting there now, without waiting for one: for an
    /// executor to take its next job while it grades one (the take's round trip then overlaps
    /// the grading), when jobs are waiting anyway (`Held::more`).
    pub async fn take_ahead(&self, taker: &mut Taker) -> Option<Held> {
        if self.health.redis_up() {
            return self.take_from_redis(taker, None).await;
        }
        taker.forget_handed();
        None
    }

    async fn take_from_redis(
        &self,
        taker: &mut Taker,
        block: Option<(Duration, &Arc<AtomicUsize>)>,
    ) -> Option<Held> {
        let generation = self.queue.generation();
        let conn = match taker.conn.as_mut() {
            Some((conn, made)) if *made == generation => conn,
            _ => match (self.queue)
                .blocking_connection(Duration::from_secs_f64(self.settings.dequeue_block_secs))
                .await
            {
                Ok(conn) => &mut taker.conn.insert((conn, generation)).0,
                Err(e) => return self.pause_after(taker, e).await,
            },
        };
        let handed = std::mem::take(&mut taker.handed);
        let (per_user, lease) = (self.settings.per_user_limit.get(), self.lease());
        // The script that takes a job publishes its `running` event over the taker's connection,
        // of link `generation` (`start` over the current link): this instance's connections
        // heard it if one subscription to that link was live from just before to just after.
        let listening = std::cell::Cell::new(None);
        let heard = |before: Option<u64>, on: u64| match (before, self.events.listening(on)) {
            (Some(before), Some(after)) if before == after => Announce::Done,
            _ => Announce::Deliver,
        };
        let taken = match self
            .queue
            .take(
                conn,
                block.map(|(block, waiting)| (block, || Counted::new(waiting))),
                per_user,
                lease,
                &handed,
                || listening.set(self.events.listening(generation)),
            )
            .await
        {
            Ok(taken) => taken?,
            Err(e) => return self.pause_after(taker, e).await,
        };
        let job = match serde_json::from_str::<Job>(&taken.item) {
            Ok(job) => job,
            Err(e) => {
                log::error!(
                    "dropping a queue item that is not a job ({e}): {:.200}",
                    taken.item
                );
                let _ = self.queue.discard(&taken.item).await;
                return None;
            }
        };
        let from = From::Redis(taken.item);
        if let Some(attempts) = taken.attempts {
            return Some(Held {
                job,
                attempts,
                from,
                announce: match taken.announced {
                    true => heard(listening.get(), generation),
                    false => Announce::Publish,
                },
                more: taken.more,
            });
        }
        let on = self.queue.generation();
        let before = self.events.listening(on);
        match self.queue.start(&job, self.lease()).await {
            Ok(attempts) => Some(Held {
                job,
                attempts,
                from,
                announce: heard(before, on),
                more: taken.more,
            }),
            Err(e) => {
                log::warn!(
                    "job {}: could not lease ({e}); the reaper will requeue it",
                    job.job_id
                );
                None
            }
        }
    }

    async fn pause_after(&self, taker: &mut Taker, e: redis::RedisError) -> Option<Held> {
        log::debug!("taking a job from redis: {e}");
        taker.conn = None;
        taker.forget_handed();
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        None
    }

    async fn take_from_postgres(&self, waiting: &Arc<AtomicUsize>) -> Option<Held> {
        let lease = chrono::Duration::milliseconds(self.settings.lease_ms as i64);
        let per_user = self.settings.per_user_limit.get();
        let claimed = db::run(&self.pool, move |c| {
            FallbackSubmission::claim(c, 1, lease, Some(per_user))
        })
        .await;
        let Ok(Some(row)) = claimed.map(|mut rows| rows.pop()) else {
            let _waiting = Counted::new(waiting);
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            return None;
        };
        let Some(job) = row.job() else {
            log::error!(
                "fallback row {} holds no job; leaving it for inspection",
                row.id
            );
            return None;
        };
        self.events
            .publish(progress_event(&job, Status::Running))
            .await;
        Some(Held {
            job,
            attempts: row.attempts as u32,
            from: From::Postgres,
            announce: Announce::Done,
            more: false,
        })
    }

    /// Whether a graded job's verdict may be recorded while `taker` takes the next job: a job
    /// from Redis, which then leaves its user's count of jobs in flight with that take.
    /// (The fallback queue counts a job until its record is in.)
    pub fn hand_over(&self, held: &Held, taker: &mut Taker) -> bool {
        match &held.from {
            From::Redis(item) => {
                taker.handed.push(item.clone());
                true
            }
            From::Postgres => false,
        }
    }

    /// Publishes that a job taken is running, if its take did not (and to this instance's
    /// connections, if its take did while its subscription is down). Run beside the grading:
    /// the event goes out before the grading's first request is answered, and so before the
    /// verdict's event.
    pub async fn announce(&self, held: &Held) {
        let event = || progress_event(&held.job, Status::Running);
        match held.announce {
            Announce::Done => {}
            Announce::Deliver => self.events.deliver(&event()),
            Announce::Publish => self.events.publish(event()).await,
        }
    }

    /// Keeps the lease of a job being graded alive.
    pub async fn renew(&self, held: &Held) {
        let id = held.job.job_id;
        let renewed = match &held.from {
            From::Redis(_) => self
                .queue
                .renew(id, self.lease())
                .await
                .map_err(|e| e.to_string()),
            From::Postgres => {
                let lease = chrono::Duration::milliseconds(self.settings.lease_ms as i64);
                db::run(&self.pool, move |c| FallbackSubmission::renew(c, id, lease))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = renewed {
            log::debug!("job {id}: lease renewal failed: {e}");
        }
    }

    /// Hands a job back to its queue, and publishes that it is queued again; `counted` when the
    /// try was an attempt (see `RedisQueue::release`).
    pub async fn release(&self, held: &Held, counted: bool) {
        let job = &held.job;
        let released = match &held.from {
            From::Redis(item) => self
                .queue
                .release(item, job, counted)
                .await
                .map_err(|e| e.to_string()),
            From::Postgres => {
                // Before the row is claimable again: the next `running` comes after it. (Should
                // the release fail, the claim lapses and the job is queued all the same.)
                self.events
                    .publish(progress_event(job, Status::Queued))
                    .await;
                let id = job.job_id;
                db::run(&self.pool, move |c| {
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

    /// Records the verdict exactly once and publishes it; a verdict that depends on the SQL
    /// alone is cached under the fingerprint it was graded against. A job whose record cannot
    /// be written now is handed back (uncounted).
    pub async fn complete(
        &self,
        held: &Held,
        outcome: Outcome,
        against: Option<GradedAgainst>,
    ) -> Completed {
        let recorded = match &held.from {
            From::Postgres => self.complete_fallback(held, &outcome).await.map(Some),
            From::Redis(item) if held.job.rejudge => {
                (self.complete_rejudge(&held.job, item, &outcome).await).map(Some)
            }
            From::Redis(item) => {
                let verdict = Verdict {
                    job: held.job.clone(),
                    item: item.clone(),
                    outcome,
                    against,
                    graded_at: chrono::Utc::now(),
                };
                match self.recorder.0.submit(verdict).await {
                    Some(Recorded::Done { first_solve }) => Ok(Some(first_solve)),
                    Some(Recorded::Stale) => Ok(None),
                    Some(Recorded::Failed(e)) => Err(DbError::Task(e)),
                    None => Err(DbError::Task("the recorder stopped".into())),
                }
            }
        };
        match recorded {
            Ok(None) => return Completed::Stale,
            Ok(Some(true)) => self.leaderboard.do_send(Rescore {
                user_id: held.job.user_id,
            }),
            Ok(Some(false)) => {}
            Err(e) => {
                log::warn!(
                    "job {}: could not record ({e}); it will be graded again",
                    held.job.job_id
                );
                actix_web::rt::time::sleep(Duration::from_millis(500)).await;
                self.release(held, false).await;
            }
        }
        Completed::Done
    }

    /// The fallback queue's entry goes with the record, in one transaction.
    async fn complete_fallback(&self, held: &Held, outcome: &Outcome) -> Result<bool, DbError> {
        let (j, o) = (held.job.clone(), outcome.clone());
        let (_, first_solve) =
            db::run(&self.pool, move |c| FallbackSubmission::complete(c, &j, &o)).await?;
        let mut result = SubmissionResult::graded(&held.job, outcome);
        result.source = Backend::Postgres;
        self.events.publish_submission(&result).await;
        Ok(first_solve)
    }

    /// A rejudge changes a record Postgres holds: it waits for Postgres.
    async fn complete_rejudge(
        &self,
        job: &Job,
        item: &str,
        outcome: &Outcome,
    ) -> Result<bool, DbError> {
        let (j, o) = (job.clone(), outcome.clone());
        let changed = db::run(&self.pool, move |c| Submission::record_rejudge(c, &j, &o)).await?;
        let result = SubmissionResult::graded(job, outcome);
        if let Err(e) = self.queue.complete(item, &result).await {
            log::warn!(
                "rejudge {}: recorded, not published to Redis: {e}",
                job.job_id
            );
        }
        Ok(changed)
    }
}

/// Records live jobs' verdicts in Postgres, then publishes them through Redis, in batches: those
/// of every executor that finishes meanwhile in one transaction and one pipeline. While
/// Postgres is down the results wait in Redis and are recorded when it is back.
pub struct Recorder(Batcher<Verdict, Recorded>);

/// How long the recorder waits, after taking a verdict, for more to record with it when fewer
/// than a batch's 64 are waiting. In a drain of one-query jobs by 4 executors, batches grew from
/// about 9 verdicts to 20-50, and PostgreSQL's CPU for recording fell from 0.041 to 0.028 ms
/// a verdict (0.078 to 0.046 ms on the five-query demo problem).
const RECORD_LINGER: std::time::Duration = std::time::Duration::from_millis(3);

struct Verdict {
    job: Job,
    /// The job's in-flight list item.
    item: String,
    outcome: Outcome,
    against: Option<GradedAgainst>,
    /// When it was handed over: its grading's end.
    graded_at: chrono::DateTime<chrono::Utc>,
}

enum Recorded {
    Done {
        first_solve: bool,
    },
    /// Not recorded: graded against a version of the problem that is no longer the stored one.
    Stale,
    Failed(String),
}

impl Recorder {
    /// Starts its writer on this thread's runtime: one, so that the verdicts of the executors
    /// that finish while it writes go together in its next batch (and no two batches of this
    /// process refresh one user's standings at once).
    pub fn start(queue: RedisQueue, pool: PgPool, health: Arc<HealthState>) -> Recorder {
        Recorder(Batcher::start(
            1,
            64,
            RECORD_LINGER,
            move |verdicts: Vec<Verdict>| {
                let (queue, pool, health) = (queue.clone(), pool.clone(), health.clone());
                async move { record_all(&queue, &pool, &health, verdicts).await }
            },
        ))
    }
}

async fn record_all(
    queue: &RedisQueue,
    pool: &PgPool,
    health: &HealthState,
    verdicts: Vec<Verdict>,
) -> Vec<Recorded> {
    let recorded = match health.postgres_up() {
        true => record_graded(pool, &verdicts).await,
        false => Err(DbError::Task("postgres is down".into())),
    };
    let rows = match recorded {
        Ok(rows) => rows,
        // One verdict the database refuses must not hold back the others: one at a time.
        Err(e) if !e.is_unavailable() && verdicts.len() > 1 => {
            let mut answers = Vec::with_capacity(verdicts.len());
            for verdict in verdicts {
                let one = Box::pin(record_all(queue, pool, health, vec![verdict])).await;
                answers.extend(one);
            }
            return answers;
        }
        Err(e) if !e.is_unavailable() => return vec![Recorded::Failed(e.to_string())],
        Err(e) => {
            health.report_failure(Backend::Postgres, &e);
            let results: Vec<_> = verdicts
                .iter()
                .map(|v| {
                    let job = v.job.clone();
                    let outcome = v.outcome.clone();
                    (
                        SubmissionResult::graded(&job, &outcome),
                        Unpersisted { job, outcome },
                    )
                })
                .collect();
            let completions: Vec<_> = verdicts
                .iter()
                .zip(&results)
                .map(|(v, (result, unrecorded))| Completion {
                    item: &v.item,
                    result,
                    unrecorded: Some(unrecorded),
                    verdict: None,
                })
                .collect();
            publish(queue, &completions).await;
            return (0..verdicts.len())
                .map(|_| Recorded::Done { first_solve: false })
                .collect();
        }
    };
    let results: Vec<Option<SubmissionResult>> = rows
        .iter()
        .map(|row| {
            row.as_ref().map(|(stored, _)| SubmissionResult {
                source: Backend::Redis,
                ..SubmissionResult::from(stored)
            })
        })
        .collect();
    let completions: Vec<_> = verdicts
        .iter()
        .zip(&results)
        .filter_map(|(v, result)| {
            Some(Completion {
                item: &v.item,
                result: result.as_ref()?,
                unrecorded: None,
                verdict: (v.against.as_ref())
                    .filter(|_| v.outcome.is_reusable())
                    .map(|a| (a.fingerprint.as_str(), &v.outcome)),
            })
        })
        .collect();
    publish(queue, &completions).await;
    rows.into_iter()
        .map(|row| match row {
            Some((_, first_solve)) => Recorded::Done { first_solve },
            None => Recorded::Stale,
        })
        .collect()
}

async fn record_graded(
    pool: &PgPool,
    verdicts: &[Verdict],
) -> Result<Vec<Option<(Submission, bool)>>, DbError> {
    let graded: Vec<_> = verdicts
        .iter()
        .map(|v| Graded {
            job: v.job.clone(),
            outcome: v.outcome.clone(),
            version: v.against.as_ref().map(|a| a.version),
            at: v.graded_at,
        })
        .collect();
    db::run(pool, move |c| Submission::record_graded(c, &graded)).await
}

/// Publishes results (recorded in Postgres, or kept in Redis until it is): a failure leaves the
/// jobs in flight, and their lapsed leases have them graded again (a recorded verdict stands).
async fn publish(queue: &RedisQueue, completions: &[Completion<'_>]) {
    if completions.is_empty() {
        return;
    }
    if let Err(e) = queue.complete_all(completions).await {
        log::warn!("{} results not published to Redis: {e}", completions.len());
    }
}
