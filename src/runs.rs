//! Runs without submitting (`POST /problems/{id}/run`): a statement runs on its problem's
//! sample exactly as a submission is graded (`grading::execute`), on sandbox slots of its own,
//! so runs never take an executor from submissions. Nothing is recorded.
//!
//! Fair share among runs: `executor.run_slots` slots per instance, handed out in arrival order;
//! a user has at most one run in flight (another one meanwhile is refused, so nobody holds
//! more than one place in the line), and a run waits for a slot no longer than its problem's
//! time limit.
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::db::models::Problem;
use crate::grading;
use crate::grading::sandbox::{Run, Sandbox, SandboxError, Slot};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("you have a run in progress already")]
    Busy,
    #[error("no sandbox slot became free within the problem's time limit")]
    NoSlot,
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The run's task panicked (a bug) or was cancelled (the server stopping).
    #[error("the run was aborted: {0}")]
    Aborted(String),
}

pub struct RunSlots {
    sandbox: Arc<Sandbox>,
    /// One permit per idle slot. Tokio's semaphore is fair: waiting runs are served in turn.
    permits: Arc<Semaphore>,
    /// The slots not in use, with their index.
    idle: Mutex<Vec<(usize, Slot)>>,
    total: usize,
    /// Users with a run in flight.
    users: Mutex<HashSet<i64>>,
}

impl RunSlots {
    /// `count` slots, numbered from `first_index` (after the executors' and the reference
    /// runner's, so the sandbox's logs tell them apart).
    pub fn new(sandbox: &Arc<Sandbox>, first_index: usize, count: usize) -> RunSlots {
        let idle = (first_index..first_index + count)
            .map(|index| (index, sandbox.slot(index, Arc::default())))
            .collect();
        RunSlots {
            sandbox: sandbox.clone(),
            permits: Arc::new(Semaphore::new(count)),
            idle: Mutex::new(idle),
            total: count,
            users: Mutex::default(),
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn busy(&self) -> usize {
        self.total - self.permits.available_permits()
    }

    /// Runs `sql` on `problem`'s sample for `user_id`: what it returned and its duration (ms).
    pub async fn run(
        self: &Arc<Self>,
        user_id: i64,
        problem: Arc<Problem>,
        sql: String,
    ) -> Result<(Run, i32), RunError> {
        if !lock(&self.users).insert(user_id) {
            return Err(RunError::Busy);
        }
        let turn = Turn {
            slots: self.clone(),
            user_id,
        };
        let wait = Duration::from_millis(problem.time_limit_ms.max(0) as u64);
        let permit = tokio::time::timeout(wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| RunError::NoSlot)?
            .expect("the semaphore is never closed");
        let (index, mut slot) = {
            let mut idle = lock(&self.idle);
            // A quarantined slot would only answer that it is unavailable: another first.
            let free = idle.iter().position(|(_, s)| !s.quarantined()).unwrap_or(0);
            idle.swap_remove(free)
        };
        let mut lease = Lease {
            index,
            slot: None,
            _permit: permit,
            turn,
        };
        // A task of its own: a client that hangs up does not cut the run short, so the slot is
        // always left clean, and the user's turn lasts as long as their backend does.
        actix_web::rt::spawn(async move {
            let ran = grading::execute(&mut slot, &grading::spec(&problem, &sql)).await;
            lease.give_back(slot);
            ran
        })
        .await
        .map_err(|e| RunError::Aborted(e.to_string()))?
        .map_err(RunError::from)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A user's run in flight, until dropped.
struct Turn {
    slots: Arc<RunSlots>,
    user_id: i64,
}

impl Drop for Turn {
    fn drop(&mut self) {
        lock(&self.slots.users).remove(&self.user_id);
    }
}

/// A slot taken for one run. When dropped, the slot goes back to the idle ones (before the
/// permit and the turn are released), or a fresh one in its place if the run was cut short (a
/// panic, the runtime stopping) and its connections are in an unknown state.
struct Lease {
    index: usize,
    /// The slot, once the run ended normally.
    slot: Option<Slot>,
    _permit: OwnedSemaphorePermit,
    turn: Turn,
}

impl Lease {
    fn give_back(&mut self, slot: Slot) {
        self.slot = Some(slot);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let slots = &self.turn.slots;
        let slot = self
            .slot
            .take()
            .unwrap_or_else(|| slots.sandbox.slot(self.index, Arc::default()));
        lock(&slots.idle).push((self.index, slot));
    }
}
