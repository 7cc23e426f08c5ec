//! `RedisQueueActor` keeps the Redis queue whole (new jobs come in through the
//! `SubmissionActor`s' enqueuers): it hands back jobs whose executor vanished (lease reaper),
//! counts each user's jobs in flight again (whatever a failed script or an older instance left),
//! re-queues submissions Postgres holds as pending but Redis has forgotten (e.g. after a Redis
//! restart, or a crash between the two writes of a submit), and records in Postgres the
//! results graded while Postgres was down. It sweeps on an interval and as soon as the
//! HealthMonitor says a backend came back.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use uuid::Uuid;

use super::health::BackendChanged;
use super::leaderboard::Rescore;
use crate::backends::HealthState;
use crate::config::ExecutorSettings;
use crate::db::{self, models::Submission, PgPool};
use crate::job::Queue;
use crate::redis::RedisQueue;

pub struct RedisQueueActor {
    queue: RedisQueue,
    pool: PgPool,
    settings: ExecutorSettings,
    health: Arc<HealthState>,
    leaderboard: Recipient<Rescore>,
    /// Jobs seen in flight without a lease on the last pass.
    suspects: HashSet<Uuid>,
    sweeping: bool,
}

impl RedisQueueActor {
    pub fn new(
        queue: RedisQueue,
        pool: PgPool,
        settings: ExecutorSettings,
        health: Arc<HealthState>,
        leaderboard: Recipient<Rescore>,
    ) -> Self {
        RedisQueueActor {
            queue,
            pool,
            settings,
            health,
            leaderboard,
            suspects: HashSet::new(),
            sweeping: false,
        }
    }

    /// Counts users' jobs in flight again (`RedisQueue::recount_inflight`): at start, then on
    /// every tick, even while a slow sweep is still under way.
    fn recount(&mut self, ctx: &mut Context<Self>) {
        if !self.health.redis_up() {
            return;
        }
        let queue = self.queue.clone();
        let recount = async move {
            if let Err(e) = queue.recount_inflight().await {
                log::warn!("counting users' jobs in flight: {e}");
            }
        };
        ctx.spawn(recount.into_actor(self));
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.sweeping {
            return;
        }
        self.sweeping = true;
        let (queue, pool, settings) =
            (self.queue.clone(), self.pool.clone(), self.settings.clone());
        let leaderboard = self.leaderboard.clone();
        let suspects = std::mem::take(&mut self.suspects);
        let (redis_up, postgres_up) = (self.health.redis_up(), self.health.postgres_up());
        let pass = async move {
            if !redis_up {
                return suspects;
            }
            let suspects = match reap(&queue, &suspects).await {
                Ok(next) => next,
                Err(e) => {
                    log::warn!("lease reaper: {e}");
                    suspects
                }
            };
            if postgres_up {
                if let Err(e) = persist(&queue, &pool, &leaderboard).await {
                    log::warn!("recording results kept in Redis: {e}");
                }
                if let Err(e) = resweep(&queue, &pool, &settings).await {
                    log::warn!("pending re-sweep: {e}");
                }
            }
            suspects
        };
        ctx.spawn(pass.into_actor(self).map(|suspects, act, _| {
            act.suspects = suspects;
            act.sweeping = false;
        }));
    }
}

/// Requeues jobs unleased on this pass and the previous one (a job whose id the take script
/// cannot read is briefly unleased until its executor starts it); returns this pass's new
/// suspects.
async fn reap(queue: &RedisQueue, suspects: &HashSet<Uuid>) -> redis::RedisResult<HashSet<Uuid>> {
    let mut next = HashSet::new();
    for (item, job) in queue.unleased().await? {
        if !suspects.contains(&job.job_id) {
            next.insert(job.job_id);
        } else if queue.requeue_unleased(&item, &job).await? {
            log::warn!("job {} lost its executor; queued again", job.job_id);
        }
    }
    Ok(next)
}

/// Records in Postgres what was graded while it was unreachable.
async fn persist(
    queue: &RedisQueue,
    pool: &PgPool,
    leaderboard: &Recipient<Rescore>,
) -> Result<(), String> {
    let waiting = queue.unpersisted().await.map_err(|e| e.to_string())?;
    let count = waiting.len();
    for record in waiting {
        let (id, user_id) = (record.job.job_id, record.job.user_id);
        let (_, first_solve) = db::run(pool, move |c| {
            Submission::record_result(c, &record.job, Queue::Redis, &record.outcome)
        })
        .await
        .map_err(|e| e.to_string())?;
        if first_solve {
            leaderboard.do_send(Rescore { user_id });
        }
        queue.persisted(id).await.map_err(|e| e.to_string())?;
    }
    if count > 0 {
        log::warn!("recorded {count} results graded while Postgres was unreachable");
    }
    Ok(())
}

async fn resweep(
    queue: &RedisQueue,
    pool: &PgPool,
    settings: &ExecutorSettings,
) -> Result<(), String> {
    let cutoff = Utc::now() - chrono::Duration::milliseconds(settings.resweep_after_ms as i64);
    let pending = db::run(pool, move |c| Submission::pending_before(c, cutoff, 500))
        .await
        .map_err(|e| e.to_string())?;
    let mut requeued = 0;
    for submission in pending {
        if !queue
            .knows(submission.id)
            .await
            .map_err(|e| e.to_string())?
        {
            queue
                .enqueue(&submission.to_job())
                .await
                .map_err(|e| e.to_string())?;
            requeued += 1;
        }
    }
    if requeued > 0 {
        log::warn!("re-queued {requeued} pending submissions Redis did not know");
    }
    Ok(())
}

impl Actor for RedisQueueActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.recount(ctx);
        ctx.run_interval(
            Duration::from_millis(self.settings.reaper_interval_ms),
            |act, ctx| {
                act.recount(ctx);
                act.sweep(ctx);
            },
        );
    }
}

impl Supervised for RedisQueueActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        log::warn!("RedisQueueActor restarting");
        self.sweeping = false;
    }
}

impl Handler<BackendChanged> for RedisQueueActor {
    type Result = ();

    fn handle(&mut self, msg: BackendChanged, ctx: &mut Context<Self>) {
        if msg.up {
            self.sweep(ctx);
        }
    }
}
