//! `FallbackActor` owns the Postgres queue used while Redis is unavailable: it stores
//! submissions there, and when Redis is healthy again it moves what is still pending back to
//! Redis, oldest first, in batches. A job is never lost on the way: a batch is claimed, queued
//! in Redis, then deleted; if anything fails in between, the claim lapses and the job is taken
//! again (a duplicate delivery, which the idempotent record absorbs).
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use uuid::Uuid;

use super::health::BackendChanged;
use crate::backends::{Backend, HealthState};
use crate::db::models::{FallbackSubmission, Submission};
use crate::db::{self, DbError, PgPool};
use crate::job::Job;
use crate::redis::RedisQueue;

const BATCH: i64 = 200;
/// How long recovery holds a batch it is moving.
const CLAIM: chrono::Duration = chrono::Duration::seconds(30);

pub struct FallbackActor {
    queue: RedisQueue,
    pool: PgPool,
    health: Arc<HealthState>,
    pub recovered: prometheus::IntCounter,
    recovering: bool,
}

/// Stores a new submission in Postgres with its fallback queue entry.
#[derive(Message)]
#[rtype(result = "Result<(Submission, bool), DbError>")]
pub struct StoreFallback(pub Job);

/// Queues in Postgres a submission Postgres already holds (Redis refused it).
#[derive(Message)]
#[rtype(result = "Result<(), DbError>")]
pub struct QueueFallback(pub Job);

impl FallbackActor {
    pub fn new(
        queue: RedisQueue,
        pool: PgPool,
        health: Arc<HealthState>,
        recovered: prometheus::IntCounter,
    ) -> Self {
        FallbackActor {
            queue,
            pool,
            health,
            recovered,
            recovering: false,
        }
    }

    fn recover(&mut self, ctx: &mut Context<Self>) {
        if self.recovering || !self.health.redis_up() || !self.health.postgres_up() {
            return;
        }
        self.recovering = true;
        let (queue, pool, health) = (self.queue.clone(), self.pool.clone(), self.health.clone());
        let pass = async move {
            let started = Instant::now();
            let mut moved = 0usize;
            loop {
                let batch = match db::run(&pool, |c| {
                    FallbackSubmission::claim(c, BATCH, CLAIM, None)
                })
                .await
                {
                    Ok(batch) if !batch.is_empty() => batch,
                    Ok(_) => break,
                    Err(e) => {
                        log::warn!("recovery: reading the fallback queue: {e}");
                        break;
                    }
                };
                let ids: Vec<Uuid> = batch.iter().map(|f| f.id).collect();
                let jobs: Vec<Job> = batch.iter().filter_map(FallbackSubmission::job).collect();
                if let Err(e) = queue.enqueue_all(&jobs).await {
                    health.report_failure(Backend::Redis, &e);
                    let _ =
                        db::run(&pool, move |c| FallbackSubmission::release(c, &ids, false)).await;
                    break;
                }
                if let Err(e) = db::run(&pool, move |c| FallbackSubmission::delete(c, &ids)).await {
                    log::warn!("recovery: queued in Redis but not yet removed here ({e}); they will be recorded once");
                    break;
                }
                moved += jobs.len();
            }
            if moved > 0 {
                log::warn!(
                    "recovery: moved {moved} fallback submissions to Redis in {} ms",
                    started.elapsed().as_millis()
                );
            }
            moved
        };
        ctx.spawn(pass.into_actor(self).map(|moved, act, _| {
            act.recovered.inc_by(moved as u64);
            act.recovering = false;
        }));
    }
}

impl Actor for FallbackActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // What a previous run left behind, then a safety net for submissions that raced a flip.
        self.recover(ctx);
        ctx.run_interval(Duration::from_secs(2), Self::recover);
    }
}

impl Supervised for FallbackActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.recovering = false;
    }
}

impl Handler<BackendChanged> for FallbackActor {
    type Result = ();

    fn handle(&mut self, msg: BackendChanged, ctx: &mut Context<Self>) {
        if msg.up {
            self.recover(ctx);
        }
    }
}

impl Handler<StoreFallback> for FallbackActor {
    type Result = ResponseFuture<Result<(Submission, bool), DbError>>;

    fn handle(&mut self, StoreFallback(job): StoreFallback, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move { db::run(&pool, move |c| FallbackSubmission::store(c, &job)).await })
    }
}

impl Handler<QueueFallback> for FallbackActor {
    type Result = ResponseFuture<Result<(), DbError>>;

    fn handle(&mut self, QueueFallback(job): QueueFallback, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move {
            db::run(&pool, move |c| {
                FallbackSubmission::enqueue(c, &job).map(|_| ())
            })
            .await
        })
    }
}
