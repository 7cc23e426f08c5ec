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

use crate::config::ExecutorSettings;
use crate::db::models::{Problem, Submission};
use crate::db::{self, PgPool};
use crate::grading::{self, sandbox::Sandbox, sandbox::Slot};
use crate::job::{Job, Outcome, Status, SubmissionResult};
use crate::queue::RedisQueue;

/// What the health monitor and statistics see of one executor.
#[derive(Default)]
pub struct ExecutorStatus {
    /// Unix ms when the current job started; 0 when idle.
    pub busy_since_ms: AtomicI64,
    pub processed: AtomicU64,
    pub restarts: AtomicU64,
}

pub struct ExecutorDeps {
    pub queue: RedisQueue,
    pub pool: PgPool,
    pub sandbox: Arc<Sandbox>,
    pub settings: ExecutorSettings,
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
}

/// Takes and grades jobs until the actor is stopped or a grading panics (then returns, and
/// the actor stops).
async fn work_loop(index: usize, deps: Arc<ExecutorDeps>, status: Arc<ExecutorStatus>) {
    let block = Duration::from_secs_f64(deps.settings.dequeue_block_secs);
    let mut slot = deps.sandbox.slot(index);
    let mut conn: Option<MultiplexedConnection> = None;
    loop {
        let taken = match conn.as_mut() {
            Some(c) => deps.queue.take(c, block).await,
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
                actix_web::rt::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        status
            .busy_since_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        let handled = AssertUnwindSafe(handle(&deps, &mut slot, &item))
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

/// Grades one taken item. Infrastructure failures hand the job back; nothing is lost.
async fn handle(deps: &ExecutorDeps, slot: &mut Slot, item: &str) {
    let job: Job = match serde_json::from_str(item) {
        Ok(job) => job,
        Err(e) => {
            log::error!("dropping a queue item that is not a job ({e}): {item:.200}");
            let _ = deps.queue.discard(item).await;
            return;
        }
    };
    let lease = Duration::from_millis(deps.settings.lease_ms);
    let attempts = match deps.queue.start(job.job_id, lease).await {
        Ok(n) => n,
        Err(e) => {
            log::warn!(
                "job {}: could not lease ({e}); the reaper will requeue it",
                job.job_id
            );
            return;
        }
    };
    let outcome = if attempts > deps.settings.max_attempts {
        Some(Outcome::verdict(
            Status::InternalError,
            format!("grading failed {} times", attempts - 1),
        ))
    } else {
        // Renew the lease while grading: if this executor dies, the lease lapses within
        // `lease_ms`, however long the problem's time limit.
        let renew = async {
            loop {
                actix_web::rt::time::sleep(lease / 3).await;
                if let Err(e) = deps.queue.renew(job.job_id, lease).await {
                    log::debug!("job {}: lease renewal failed: {e}", job.job_id);
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
    let Some(outcome) = outcome else {
        // The sandbox or platform database failed: put the job back after a pause.
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
        if let Err(e) = deps.queue.release(item, job.job_id).await {
            log::warn!(
                "job {}: could not release ({e}); the reaper will requeue it",
                job.job_id
            );
        }
        return;
    };
    let recorded = {
        let job = job.clone();
        db::run(&deps.pool, move |c| {
            Submission::record_result(c, &job, "redis", &outcome)
        })
        .await
    };
    let stored = match recorded {
        Ok((stored, _first_solve)) => stored,
        Err(e) => {
            log::warn!(
                "job {}: could not record the result ({e}); retrying later",
                job.job_id
            );
            let _ = deps.queue.release(item, job.job_id).await;
            return;
        }
    };
    let mut result = SubmissionResult::from(&stored);
    result.source = "redis".into();
    let json = serde_json::to_string(&result).expect("result serialises");
    if let Err(e) = deps.queue.complete(item, job.job_id, &json).await {
        // Recorded in Postgres already: a second grading would find it final and change nothing.
        log::warn!(
            "job {}: result recorded but not published to Redis: {e}",
            job.job_id
        );
    }
}

/// `None` when grading could not happen for reasons outside the solution.
async fn grade(deps: &ExecutorDeps, slot: &mut Slot, job: &Job) -> Option<Outcome> {
    let problem_id = job.problem_id;
    let problem = match db::run(&deps.pool, move |c| Problem::find(c, problem_id)).await {
        Ok(Some(problem)) => problem,
        Ok(None) => {
            return Some(Outcome::verdict(
                Status::InternalError,
                "the problem no longer exists",
            ));
        }
        Err(e) => {
            log::warn!("job {}: loading problem: {e}", job.job_id);
            return None;
        }
    };
    match grading::grade(slot, &problem, &job.sql).await {
        Ok(outcome) => Some(outcome),
        Err(e) => {
            log::warn!("job {}: sandbox: {e}", job.job_id);
            None
        }
    }
}
