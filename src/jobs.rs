//! Where executors take jobs from, behind one interface (take, renew, release, complete): the
//! Redis queue while Redis is up, the Postgres fallback queue otherwise. An executor grades
//! without knowing which one a job came from, and completing a job is the one place a verdict
//! of a queued job is recorded and published.
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use redis::aio::MultiplexedConnection;

use crate::actors::leaderboard::Rescore;
use crate::backends::{Backend, HealthState};
use crate::config::ExecutorSettings;
use crate::db::models::{FallbackSubmission, Submission};
use crate::db::{self, DbError, PgPool};
use crate::events::EventBus;
use crate::job::{progress_event, Job, Outcome, Queue, Status, SubmissionResult};
use crate::redis::{RedisQueue, Unpersisted};

/// A job an executor holds, under a lease of the queue it came from.
pub struct Held {
    pub job: Job,
    /// How many times it has been taken, this time included.
    pub attempts: u32,
    from: From,
}

enum From {
    /// The raw list item identifies it in the in-flight list.
    Redis(String),
    Postgres,
}

pub struct JobSource {
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
}

impl JobSource {
    fn lease(&self) -> Duration {
        Duration::from_millis(self.settings.lease_ms)
    }

    /// Waits briefly for the next job and starts its lease: from Redis while it is up, else
    /// from the Postgres fallback queue. `None`: nothing to grade now; call again.
    pub async fn take(&self, taker: &mut Taker) -> Option<Held> {
        if self.health.redis_up() {
            self.take_from_redis(taker).await
        } else {
            self.take_from_postgres().await
        }
    }

    async fn take_from_redis(&self, taker: &mut Taker) -> Option<Held> {
        let block = Duration::from_secs_f64(self.settings.dequeue_block_secs);
        let generation = self.queue.generation();
        let conn = match taker.conn.as_mut() {
            Some((conn, made)) if *made == generation => conn,
            _ => match self.queue.blocking_connection(block).await {
                Ok(conn) => &mut taker.conn.insert((conn, generation)).0,
                Err(e) => return self.pause_after(taker, e).await,
            },
        };
        let item = match self
            .queue
            .take(conn, block, self.settings.per_user_limit)
            .await
        {
            Ok(item) => item?,
            Err(e) => return self.pause_after(taker, e).await,
        };
        let job = match serde_json::from_str::<Job>(&item) {
            Ok(job) => job,
            Err(e) => {
                log::error!("dropping a queue item that is not a job ({e}): {item:.200}");
                let _ = self.queue.discard(&item).await;
                return None;
            }
        };
        match self.queue.start(&job, self.lease()).await {
            Ok(attempts) => Some(Held {
                job,
                attempts,
                from: From::Redis(item),
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
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        None
    }

    async fn take_from_postgres(&self) -> Option<Held> {
        let lease = chrono::Duration::milliseconds(self.settings.lease_ms as i64);
        let per_user = self.settings.per_user_limit;
        let claimed = db::run(&self.pool, move |c| {
            FallbackSubmission::claim(c, 1, lease, Some(per_user))
        })
        .await;
        let Ok(Some(row)) = claimed.map(|mut rows| rows.pop()) else {
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
        })
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

    /// Hands a job back to its queue; `counted` when the try was an attempt (see
    /// `RedisQueue::release`).
    pub async fn release(&self, held: &Held, counted: bool) {
        let job = &held.job;
        let released = match &held.from {
            From::Redis(item) => self
                .queue
                .release(item, job, counted)
                .await
                .map_err(|e| e.to_string()),
            From::Postgres => {
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
    /// alone is cached under `cache_key`, that of the problem version it was graded against.
    /// A job whose record cannot be written now is handed back (uncounted).
    pub async fn complete(&self, held: Held, outcome: Outcome, cache_key: Option<String>) {
        let recorded = match &held.from {
            From::Postgres => self.complete_fallback(&held, &outcome).await,
            From::Redis(item) if held.job.rejudge => {
                self.complete_rejudge(&held.job, item, &outcome).await
            }
            From::Redis(item) => {
                self.complete_live(&held.job, item, outcome, cache_key)
                    .await
            }
        };
        match recorded {
            Ok(rescore) => {
                if rescore {
                    self.leaderboard.do_send(Rescore {
                        user_id: held.job.user_id,
                    });
                }
            }
            Err(e) => {
                log::warn!(
                    "job {}: could not record ({e}); it will be graded again",
                    held.job.job_id
                );
                actix_web::rt::time::sleep(Duration::from_millis(500)).await;
                self.release(&held, false).await;
            }
        }
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
        if let Err(e) = self.queue.complete(item, &result, None).await {
            log::warn!(
                "rejudge {}: recorded, not published to Redis: {e}",
                job.job_id
            );
        }
        Ok(changed)
    }

    /// Recorded in Postgres, then published through Redis; while Postgres is down the result
    /// waits in Redis and is recorded when it is back.
    async fn complete_live(
        &self,
        job: &Job,
        item: &str,
        outcome: Outcome,
        cache_key: Option<String>,
    ) -> Result<bool, DbError> {
        let recorded = if self.health.postgres_up() {
            let (j, o) = (job.clone(), outcome.clone());
            db::run(&self.pool, move |c| {
                Submission::record_result(c, &j, Queue::Redis, &o)
            })
            .await
        } else {
            Err(DbError::Task("postgres is down".into()))
        };
        let (published, first_solve) = match recorded {
            Ok((stored, first_solve)) => {
                if let Some(key) = cache_key.filter(|_| outcome.is_reusable()) {
                    if let Err(e) = self.queue.cache_verdict(&key, &outcome).await {
                        log::debug!("verdict not cached: {e}");
                    }
                }
                let mut result = SubmissionResult::from(&stored);
                result.source = Backend::Redis;
                (self.queue.complete(item, &result, None).await, first_solve)
            }
            Err(e) if e.is_unavailable() => {
                self.health.report_failure(Backend::Postgres, &e);
                let result = SubmissionResult::graded(job, &outcome);
                let unrecorded = Unpersisted {
                    job: job.clone(),
                    outcome,
                };
                let published = self.queue.complete(item, &result, Some(&unrecorded)).await;
                (published, false)
            }
            Err(e) => return Err(e),
        };
        if let Err(e) = published {
            // Recorded in Postgres already: a second grading would find it final and change
            // nothing.
            log::warn!("job {}: result not published to Redis: {e}", job.job_id);
        }
        Ok(first_solve)
    }
}
