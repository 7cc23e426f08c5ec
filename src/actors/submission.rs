//! `SubmissionActor` validates a submission, records it in Postgres (the truth, and the
//! idempotency key), and routes it to a queue.
use actix::prelude::*;
use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use super::redis_queue::{Enqueue, RedisQueueActor};
use crate::db::models::{NewSubmission, Problem, Submission};
use crate::db::{self, PgPool};
use crate::error::ApiError;
use crate::job::{Job, Status};

pub const MAX_REQUEST_ID_CHARS: usize = 128;

pub struct SubmissionActor {
    pool: PgPool,
    redis_queue: Addr<RedisQueueActor>,
    max_sql_bytes: usize,
}

impl SubmissionActor {
    pub fn new(pool: PgPool, redis_queue: Addr<RedisQueueActor>, max_sql_bytes: usize) -> Self {
        SubmissionActor {
            pool,
            redis_queue,
            max_sql_bytes,
        }
    }
}

impl Actor for SubmissionActor {
    type Context = Context<Self>;
}

impl Supervised for SubmissionActor {}

#[derive(Message)]
#[rtype(result = "Result<Accepted, ApiError>")]
pub struct Submit {
    pub user_id: i64,
    pub problem_id: i64,
    pub sql: String,
    pub request_id: Option<String>,
}

/// The acknowledgement: which queue holds the submission now.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub job_id: Uuid,
    pub status: Status,
    pub queue: String,
    pub submitted_at: DateTime<Utc>,
}

impl Submit {
    fn validate(&self, max_sql_bytes: usize) -> Result<(), ApiError> {
        if self.sql.len() > max_sql_bytes {
            return Err(ApiError::PayloadTooLarge(format!(
                "sql is {} bytes; the limit is {max_sql_bytes}",
                self.sql.len()
            )));
        }
        if self.sql.trim().is_empty() {
            return Err(ApiError::Invalid("sql must not be empty".into()));
        }
        if self.sql.contains('\0') {
            return Err(ApiError::Invalid(
                "sql must not contain NUL characters".into(),
            ));
        }
        if let Some(id) = &self.request_id {
            if id.is_empty() || id.chars().count() > MAX_REQUEST_ID_CHARS {
                return Err(ApiError::Invalid(format!(
                    "request_id must be 1 to {MAX_REQUEST_ID_CHARS} characters"
                )));
            }
        }
        Ok(())
    }
}

impl Handler<Submit> for SubmissionActor {
    type Result = ResponseFuture<Result<Accepted, ApiError>>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let (pool, redis_queue, max) = (
            self.pool.clone(),
            self.redis_queue.clone(),
            self.max_sql_bytes,
        );
        Box::pin(async move {
            msg.validate(max)?;
            let job = Job {
                job_id: Uuid::new_v4(),
                user_id: msg.user_id,
                problem_id: msg.problem_id,
                sql: msg.sql,
                request_id: msg.request_id,
                // Postgres keeps microseconds: acknowledge the time it will report.
                submitted_at: Utc::now().trunc_subsecs(6),
            };
            let record = job.clone();
            let (stored, created) = db::run(&pool, move |c| {
                if Problem::find(c, record.problem_id)?.is_none() {
                    return Err(diesel::result::Error::NotFound);
                }
                Submission::insert_idempotent(c, &NewSubmission::queued(&record, "redis"))
            })
            .await
            .map_err(|e| match ApiError::from(e) {
                ApiError::NotFound(_) => ApiError::NotFound("problem"),
                other => other,
            })?;
            if !created {
                return Ok(Accepted {
                    job_id: stored.id,
                    status: Status::parse(&stored.status).unwrap_or(Status::Queued),
                    queue: stored.queue,
                    submitted_at: stored.created_at,
                });
            }
            let queue = match redis_queue.send(Enqueue(job.clone())).await {
                Ok(Ok(())) => "redis",
                // Stored in Postgres: the re-sweep queues it once Redis answers again.
                Ok(Err(e)) => {
                    log::warn!(
                        "job {}: redis enqueue failed ({e}); kept in postgres",
                        job.job_id
                    );
                    "postgres"
                }
                Err(e) => {
                    log::warn!(
                        "job {}: queue actor unavailable ({e}); kept in postgres",
                        job.job_id
                    );
                    "postgres"
                }
            };
            Ok(Accepted {
                job_id: job.job_id,
                status: Status::Queued,
                queue: queue.into(),
                submitted_at: job.submitted_at,
            })
        })
    }
}
