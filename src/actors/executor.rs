//! The executor pool: supervised `ExecutorActor`s on a thread of their own, each grading one
//! job at a time on its own sandbox slot. Jobs come leased from the `JobSource` (Redis or the
//! Postgres fallback: the executor does not know which); an actor that fails (a panic while
//! grading, or a `Restart` from the watchdog) stops, its supervisor starts it afresh, and the
//! job it held is handed to another executor when its lease lapses. While the process shuts
//! down, executors take no new job, and hand back at once the ones whose grading outlasts the
//! grace period.
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt;

use crate::config::Nice;
use crate::grading;
use crate::grading::sandbox::{SandboxError, Slot, SlotState};
use crate::grading::servers::SandboxServers;
use crate::job::{Outcome, Status};
use crate::jobs::{Completed, Counted, GradedAgainst, Held, JobSource, Taker};
use crate::metrics::Metrics;
use crate::problems::ProblemCache;
use crate::shutdown::Shutdown;
use crate::stats::GradingStats;

/// What the health monitor and statistics see of one executor.
#[derive(Default)]
pub struct ExecutorStatus {
    /// Unix ms when the current job started; 0 when idle.
    pub busy_since_ms: AtomicI64,
    /// Verdicts handed over and not yet recorded (`RECORDING_DEPTH` at most, but a restarted
    /// executor's may outlive it).
    pub recording: Arc<AtomicUsize>,
    /// Takes ahead under way (on tasks of their own, which may outlive the wait for them).
    pub taking_ahead: Arc<AtomicUsize>,
    /// Waiting for a job, or holding one taken ahead: it must be handed back while shutting
    /// down.
    pub taking: AtomicBool,
    pub processed: AtomicU64,
    pub restarts: AtomicU64,
    /// The sandbox slot's memory of backends that would not die (outlives restarts).
    pub slot: Arc<SlotState>,
}

pub struct ExecutorDeps {
    pub jobs: JobSource,
    pub problems: Arc<ProblemCache>,
    pub servers: Arc<SandboxServers>,
    pub metrics: Arc<Metrics>,
    pub stats: Arc<GradingStats>,
    pub shutdown: Arc<Shutdown>,
}

pub struct ExecutorActor {
    index: usize,
    deps: Arc<ExecutorDeps>,
    status: Arc<ExecutorStatus>,
    /// How many of the pool's executors wait for a job to arrive, finding none to take (none
    /// takes ahead meanwhile). One merely asking for the next job of a backlog does not count:
    /// it stopped the others' takes ahead, and they then asked in turn, each grading only
    /// once its own take was answered.
    waiting: Arc<AtomicUsize>,
}

/// Stops the executor (abandoning its job to the reaper); its supervisor restarts it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Restart;

impl Actor for ExecutorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let work = work_loop(
            self.index,
            self.deps.clone(),
            self.status.clone(),
            self.waiting.clone(),
        );
        ctx.spawn(work.into_actor(self).map(|_, _, ctx| ctx.stop()));
    }
}

impl Supervised for ExecutorActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        log::warn!("executor {} restarting", self.index);
        self.status.restarts.fetch_add(1, Ordering::Relaxed);
        self.status.busy_since_ms.store(0, Ordering::Relaxed);
        self.status.taking.store(false, Ordering::Relaxed);
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
    deps: Arc<ExecutorDeps>,
    /// None with no executors.
    thread: Option<Arc<ExecutorThread>>,
}

/// The executors' own thread (an arbiter), stopped with the pool's last handle.
struct ExecutorThread(std::sync::Mutex<Option<Arbiter>>);

impl Drop for ExecutorThread {
    fn drop(&mut self) {
        if let Some(arbiter) = self.0.get_mut().expect("executor thread lock").take() {
            arbiter.stop();
        }
    }
}

impl ExecutorPool {
    /// Starts the executors on a thread of their own, `executor.nice` steps of niceness below
    /// the rest of the process: with the HTTP workers at its priority, a burst of submissions
    /// takes the CPU from grading, not the other way round (`config/default.toml`). Their
    /// gradings' tasks (takes ahead, verdicts waiting to be recorded) run there too, apart from
    /// the recorder's and the health monitor's, and they reach Redis over a connection of that
    /// thread's own: the shared one's task stays on the main thread.
    pub fn start(deps: ExecutorDeps) -> std::io::Result<ExecutorPool> {
        let deps = Arc::new(deps);
        let settings = &deps.jobs.settings;
        let status: Vec<Arc<ExecutorStatus>> =
            (0..settings.workers).map(|_| Arc::default()).collect();
        let (thread, arbiter) = match settings.workers {
            0 => (None, None),
            _ => {
                let nice = settings.nice;
                let arbiter = Arbiter::try_with_tokio_rt(move || {
                    // Threads inherit it: the runtime's blocking pool too.
                    lower_priority(nice);
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                })?;
                let queue = deps.jobs.queue.clone();
                arbiter.spawn_fn(move || queue.serve_here());
                let handle = arbiter.handle();
                let thread = ExecutorThread(Some(arbiter).into());
                (Some(Arc::new(thread)), Some(handle))
            }
        };
        let waiting = Arc::new(AtomicUsize::new(0));
        let executors = match arbiter {
            None => Vec::new(),
            Some(arbiter) => (status.iter().enumerate())
                .map(|(index, status)| {
                    let (deps, status) = (deps.clone(), status.clone());
                    let waiting = waiting.clone();
                    Supervisor::start_in_arbiter(&arbiter, move |_| ExecutorActor {
                        index,
                        deps,
                        status,
                        waiting,
                    })
                })
                .collect(),
        };
        Ok(ExecutorPool {
            executors,
            status,
            deps,
            thread,
        })
    }

    /// Stops the executors and waits for their thread to end: nothing of theirs runs after
    /// this (a test's cleanup), and the jobs they held are left to their leases.
    pub fn stop(&self) {
        let arbiter = self.thread.as_ref().and_then(|t| t.0.lock().ok()?.take());
        if let Some(arbiter) = arbiter {
            arbiter.stop();
            let _ = arbiter.join();
        }
    }

    /// Takes one job, if one is waiting (within `dequeue_block_secs`), and grades it to the
    /// end on `slot`, as an executor would: a one-step run for tests and tools with no
    /// executors of their own (`executor.workers = 0`). False when nothing was waiting.
    pub async fn try_execute_task(&self, slot: &mut Slot) -> bool {
        let waiting = Arc::default();
        let Some(held) = self.deps.jobs.take(&mut Taker::default(), &waiting).await else {
            return false;
        };
        if let Some(verdict) = handle(&self.deps, slot, held).await {
            finish(&self.deps, verdict).await;
        }
        true
    }

    /// A sandbox slot of its own for `try_execute_task`.
    pub fn standalone_slot(&self) -> Slot {
        self.deps
            .servers
            .primary()
            .slot(self.status.len(), Arc::default())
    }

    /// No executor is grading, recording a verdict, waiting for a job or holding or taking one
    /// ahead.
    pub fn settled(&self) -> bool {
        self.busy() == 0
            && !self.status.iter().any(|s| {
                s.taking.load(Ordering::Relaxed)
                    || s.recording.load(Ordering::Relaxed) > 0
                    || s.taking_ahead.load(Ordering::Relaxed) > 0
            })
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

/// Lowers the calling thread's priority by `nice` steps of niceness (Linux, where a niceness is
/// a thread's own; the kernel stops at 19).
fn lower_priority(nice: Nice) {
    if nice.get() == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: nice only changes this thread's niceness; errno is this thread's own, and
        // cleared first since -1 is also a niceness.
        let (now, errno) = unsafe {
            *libc::__errno_location() = 0;
            let now = libc::nice(nice.get().into());
            (now, *libc::__errno_location())
        };
        match (now, errno) {
            (-1, errno) if errno != 0 => log::warn!(
                "executors: niceness not lowered by {}: {}",
                nice.get(),
                std::io::Error::from_raw_os_error(errno)
            ),
            _ => log::info!("executors: grading at niceness {now}"),
        }
    }
    #[cfg(not(target_os = "linux"))]
    log::warn!("executors: niceness is lowered on Linux only; they run at the normal priority");
}

/// How many of an executor's verdicts may wait to be recorded while it grades on: enough that
/// the recorder's batches, not the executors, wait for commits. (A batch's write and the
/// recorder's linger last several gradings; at 4, a drain's batches stopped at about 9
/// verdicts and executors waited for them a fifth of the time; at 16, executors handed back
/// 3-4 % of their jobs taken ahead while they waited for room.)
const RECORDING_DEPTH: usize = 32;

/// A job taken ahead goes back to the head of the queue, for the next executor to take, when
/// it waits this long for the grading before it to end. A take ahead still unanswered this
/// long after the grading is given up (its task hands back what it takes).
const AHEAD_HOLD: Duration = Duration::from_millis(20);

/// Takes and grades jobs until the actor is stopped or a grading panics (then returns, and
/// the actor stops). The verdicts of jobs from Redis are recorded while the next jobs are
/// taken and graded (their leases renewed meanwhile), up to `RECORDING_DEPTH` at a time.
/// After short gradings (`take_ahead_after_ms`), while jobs wait (`Held::more`) and no executor
/// of the pool does, the next job is taken during the grading before it, so that the take's
/// round trip overlaps the grading.
async fn work_loop(
    index: usize,
    deps: Arc<ExecutorDeps>,
    status: Arc<ExecutorStatus>,
    waiting: Arc<AtomicUsize>,
) {
    let sandbox = deps.servers.for_executor(index);
    let mut slot = sandbox.slot(index, status.slot.clone());
    let mut taker = Taker::default();
    let mut recording = std::collections::VecDeque::new();
    let quick_below = Duration::from_millis(deps.jobs.settings.take_ahead_after_ms);
    let mut ahead: Option<Held> = None;
    let mut quick = false;
    loop {
        // Down, or not yet up to date: the other servers' executors grade meanwhile. A slot
        // whose last backend would not die takes no job until it is gone (a job taken ahead
        // goes back first: the wait may be long, and its lease is not renewed).
        if status.slot.lingering() {
            hand_back(&deps, &status, &mut ahead).await;
        }
        if deps.shutdown.draining()
            || !sandbox.ready()
            || !slot.settle(Some(Duration::from_secs(1))).await
        {
            hand_back(&deps, &status, &mut ahead).await;
            if deps.shutdown.draining() {
                return std::future::pending().await;
            }
            taker.forget_handed();
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let from_ahead = ahead.is_some();
        let held = match ahead.take() {
            Some(held) => Some(held),
            None => {
                status.taking.store(true, Ordering::Relaxed);
                let held = deps.jobs.take(&mut taker, &waiting).await;
                if let (Some(held), true) = (&held, deps.shutdown.draining()) {
                    // Taken while the shutdown began: another instance grades it.
                    deps.jobs.release(held, false).await;
                }
                held.filter(|_| !deps.shutdown.draining())
            }
        };
        if held.is_some() {
            status
                .busy_since_ms
                .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        }
        status.taking.store(false, Ordering::Relaxed);
        let Some(held) = held else {
            continue;
        };
        let take_ahead =
            quick && held.more && waiting.load(Ordering::Relaxed) == 0 && !deps.shutdown.draining();
        if from_ahead && !take_ahead {
            // No take before this grading ends: a job handed over may meanwhile be handed back
            // and taken by another executor, whose item its move to recording would take.
            taker.forget_handed();
        }
        let started = std::time::Instant::now();
        let grading = async {
            let handled = AssertUnwindSafe(handle(&deps, &mut slot, held))
                .catch_unwind()
                .await;
            quick = started.elapsed() < quick_below;
            handled
        };
        let handled = match take_ahead {
            true => {
                let (handled, next) = grade_taking_ahead(&deps, &status, &mut taker, grading).await;
                ahead = next;
                handled
            }
            false => grading.await,
        };
        let verdict = match handled {
            Ok(verdict) => verdict,
            Err(_) => {
                status.busy_since_ms.store(0, Ordering::Relaxed);
                log::error!("executor {index} panicked while grading; restarting it");
                hand_back(&deps, &status, &mut ahead).await;
                return;
            }
        };
        if let Some(verdict) = verdict {
            if deps.jobs.hand_over(&verdict.held, &mut taker) {
                // Its task renews the lease from now on, however long the wait below.
                recording.push_back(record_meanwhile(&deps, &status, verdict));
                recording.retain(|r: &actix_web::rt::task::JoinHandle<()>| !r.is_finished());
                if recording.len() > RECORDING_DEPTH {
                    hand_back(&deps, &status, &mut ahead).await;
                }
                while recording.len() > RECORDING_DEPTH {
                    let _ = recording.pop_front().expect("not empty").await;
                }
            } else if AssertUnwindSafe(finish(&deps, verdict))
                .catch_unwind()
                .await
                .is_err()
            {
                status.busy_since_ms.store(0, Ordering::Relaxed);
                log::error!("executor {index} panicked while recording; restarting it");
                hand_back(&deps, &status, &mut ahead).await;
                return;
            }
        }
        status.busy_since_ms.store(0, Ordering::Relaxed);
        status.processed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Hands a job taken ahead back, uncounted, to the head of the queue.
async fn hand_back(deps: &ExecutorDeps, status: &ExecutorStatus, ahead: &mut Option<Held>) {
    if let Some(held) = ahead.take() {
        deps.jobs.release(&held, false).await;
        status.taking.store(false, Ordering::Relaxed);
    }
}

/// Runs `grading` while taking the next job (`take_ahead`): that job, unless it was handed
/// back after waiting `AHEAD_HOLD` for the grading to end. While it is held, `status.taking`
/// is set: shutting down, it must be handed back.
async fn grade_taking_ahead<T>(
    deps: &Arc<ExecutorDeps>,
    status: &ExecutorStatus,
    taker: &mut Taker,
    grading: impl std::future::Future<Output = T>,
) -> (T, Option<Held>) {
    let (graded, mut ended) = tokio::sync::watch::channel(false);
    let grading = async move {
        let output = grading.await;
        graded.send_replace(true);
        output
    };
    let answer = take_ahead(deps.clone(), status, std::mem::take(taker));
    let ahead = async {
        let mut answer = std::pin::pin!(answer);
        // A take that hangs must not hold up the verdict, whose lease is no longer renewed.
        let answered = tokio::select! {
            answered = &mut answer => answered.ok(),
            _ = ended.wait_for(|ended| *ended) => {
                actix_web::rt::time::timeout(AHEAD_HOLD, answer).await.ok()?.ok()
            }
        };
        let (held, back) = answered?;
        *taker = back;
        let held = held?;
        status.taking.store(true, Ordering::Relaxed);
        let wait = ended.wait_for(|ended| *ended);
        if actix_web::rt::time::timeout(AHEAD_HOLD, wait).await.is_ok() {
            return Some(held);
        }
        hand_back(deps, status, &mut Some(held)).await;
        None
    };
    futures_util::join!(grading, ahead)
}

/// Takes a job ahead (`JobSource::take_ahead`) on a task of its own, which hands the job back
/// if its executor no longer waits for it (gave the take up, or stopped): a job is never left
/// taken with no one to grade it until its lease lapses.
fn take_ahead(
    deps: Arc<ExecutorDeps>,
    status: &ExecutorStatus,
    mut taker: Taker,
) -> tokio::sync::oneshot::Receiver<(Option<Held>, Taker)> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let counted = Counted::new(&status.taking_ahead);
    actix_web::rt::spawn(async move {
        let _counted = counted;
        let held = match deps.shutdown.draining() {
            true => None,
            false => deps.jobs.take_ahead(&mut taker).await,
        };
        if let Err((Some(held), _)) = answer.send((held, taker)) {
            deps.jobs.release(&held, false).await;
        }
    });
    answered
}

/// Records a verdict on a task of its own, counted in `status.recording` until it ends (a
/// panic included: the job's lease then lapses and it is graded again). A recording still
/// under way after 8 leases (40 s by default, about what the watchdog gives a grading) is
/// given up likewise.
fn record_meanwhile(
    deps: &Arc<ExecutorDeps>,
    status: &Arc<ExecutorStatus>,
    verdict: Verdict,
) -> actix_web::rt::task::JoinHandle<()> {
    let (deps, counted) = (deps.clone(), Counted::new(&status.recording));
    actix_web::rt::spawn(async move {
        let _counted = counted;
        let limit = Duration::from_millis(deps.jobs.settings.lease_ms) * 8;
        let job_id = verdict.held.job.job_id;
        if actix_web::rt::time::timeout(limit, finish(&deps, verdict))
            .await
            .is_err()
        {
            log::error!("job {job_id}: recording its verdict took over {limit:?}; given up");
        }
    })
}

/// A verdict reached on a held job, to record.
struct Verdict {
    held: Held,
    outcome: Outcome,
    against: Option<GradedAgainst>,
}

/// Grades one job under its lease: its verdict, to record. Infrastructure failures hand it
/// back (`None`); nothing is lost.
async fn handle(deps: &ExecutorDeps, slot: &mut Slot, held: Held) -> Option<Verdict> {
    let (attempts, max_attempts) = (held.attempts, deps.jobs.settings.max_attempts);
    let graded = async {
        if attempts > max_attempts {
            return Graded::Verdict(
                Outcome::verdict(
                    Status::InternalError,
                    format!("grading failed {} times", attempts - 1),
                ),
                None,
            );
        }
        tokio::select! {
            graded = grade(deps, slot, &held) => graded,
            never = keep_leased(deps, &held) => never,
            () = deps.shutdown.abandoned() => Graded::Abandoned,
        }
    };
    let ((), graded) = futures_util::join!(deps.jobs.announce(&held), graded);
    let (outcome, against) = match graded {
        Graded::Verdict(outcome, against) => (outcome, against),
        Graded::Interrupted(reason) if attempts >= max_attempts => {
            let outcome = Outcome::verdict(
                Status::InternalError,
                format!("grading was interrupted {attempts} times; last: {reason}"),
            );
            (outcome, None)
        }
        Graded::Interrupted(reason) => {
            log::warn!(
                "job {}: attempt {attempts} interrupted: {reason}",
                held.job.job_id
            );
            deps.jobs.release(&held, true).await;
            return None;
        }
        Graded::Abandoned => {
            log::warn!(
                "job {}: still grading when the shutdown's grace ended; handed back",
                held.job.job_id
            );
            deps.jobs.release(&held, false).await;
            return None;
        }
        Graded::NotRun => {
            // The sandbox or platform database is unreachable, or the server does not hold the
            // problem's data in the version remembered (or no longer at all): put the job back
            // after a pause, to be graded on the problem as Postgres has it.
            if held.checks_version() {
                deps.problems.forget(held.job.problem_id);
            }
            actix_web::rt::time::sleep(Duration::from_millis(500)).await;
            deps.jobs.release(&held, false).await;
            return None;
        }
    };
    Some(Verdict {
        held,
        outcome,
        against,
    })
}

/// Records and publishes the verdict, then counts it. One reached on a remembered copy of a
/// problem that has changed since is not recorded: the copy is forgotten and the job handed
/// back, to be graded on the new version.
async fn finish(deps: &ExecutorDeps, verdict: Verdict) {
    let Verdict {
        held,
        outcome,
        against,
    } = verdict;
    let status = outcome.status;
    let completed = tokio::select! {
        completed = deps.jobs.complete(&held, outcome, against) => completed,
        never = keep_leased(deps, &held) => never,
    };
    match completed {
        Completed::Done => {
            let latency_ms = (chrono::Utc::now() - held.job.submitted_at)
                .num_milliseconds()
                .clamp(0, i64::from(u32::MAX)) as u32;
            deps.metrics.verdict(status.as_str(), latency_ms);
            deps.stats.record(status.as_str(), latency_ms);
        }
        Completed::Stale => {
            deps.problems.forget(held.job.problem_id);
            deps.jobs.release(&held, false).await;
        }
    }
}

/// Renews the lease of a job every third of it, for as long as it is polled (raced against the
/// work on the job): if this process dies, the lease lapses within `lease_ms`, however long the
/// problem's time limit or the wait to record.
async fn keep_leased<T>(deps: &ExecutorDeps, held: &Held) -> T {
    let lease = Duration::from_millis(deps.jobs.settings.lease_ms);
    loop {
        actix_web::rt::time::sleep(lease / 3).await;
        deps.jobs.renew(held).await;
    }
}

/// What became of one try at grading a job.
enum Graded {
    /// With the problem version it was graded against (the problem may change while a job
    /// is graded, and a remembered copy may be older).
    Verdict(Outcome, Option<GradedAgainst>),
    /// The solution never reached the sandbox (it or the platform database is unreachable).
    NotRun,
    /// The run broke after the solution reached the sandbox, for a reason outside it.
    Interrupted(String),
    /// The process is shutting down and the grace period is over.
    Abandoned,
}

/// Grades a job on its problem: the copy this process remembers when the verdict is recorded
/// only against the current version (`Held::checks_version`), else the one Postgres has (or
/// the remembered one while Postgres is down).
async fn grade(deps: &ExecutorDeps, slot: &mut Slot, held: &Held) -> Graded {
    let job = &held.job;
    let (pool, id) = (&deps.jobs.pool, job.problem_id);
    let problem = match held.checks_version() {
        true => deps.problems.known(pool, id).await,
        false => {
            (deps.problems)
                .load(pool, id, deps.jobs.health.postgres_up())
                .await
        }
    };
    let problem = match problem {
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
    // Another server than the first may not yet hold this version's data: its keeper is
    // woken, and the job goes back for a server that does (the first always does).
    let version = problem.updated_at.timestamp_micros();
    if !slot.sandbox().holds(problem.id, version) {
        slot.sandbox().wake_keeper();
        return Graded::NotRun;
    }
    match grading::grade(slot, &problem, &job.sql).await {
        Ok(outcome) => {
            slot.sandbox().count_graded();
            let against = GradedAgainst {
                version: problem.updated_at,
                fingerprint: grading::fingerprint(&problem, &job.sql),
            };
            Graded::Verdict(outcome, Some(against))
        }
        Err(SandboxError::Interrupted(reason)) => Graded::Interrupted(reason),
        Err(e) => {
            log::warn!("job {}: sandbox: {e}", job.job_id);
            Graded::NotRun
        }
    }
}
