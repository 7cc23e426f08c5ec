//! Graceful shutdown. SIGTERM (or Ctrl-C) starts draining: HTTP stops accepting connections
//! and finishes the requests under way, executors take no new job, `/health/ready` answers 503
//! and WebSockets close with "going away". Gradings under way may finish within the grace
//! period; when it ends, those still running are abandoned and their jobs handed back at once
//! (not when their leases lapse), for another instance to grade.
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub struct Shutdown {
    /// When draining started.
    draining: watch::Sender<Option<Instant>>,
    /// Set when the grace period is over.
    abandon: watch::Sender<bool>,
    pub grace: Duration,
}

impl Shutdown {
    pub fn new(grace: Duration) -> Shutdown {
        Shutdown {
            draining: watch::Sender::new(None),
            abandon: watch::Sender::new(false),
            grace,
        }
    }

    /// Starts draining (again: no effect).
    pub fn begin(&self) {
        self.draining.send_if_modified(|since| {
            let first = since.is_none();
            since.get_or_insert_with(Instant::now);
            first
        });
    }

    pub fn draining(&self) -> bool {
        self.draining.borrow().is_some()
    }

    /// Resolves once draining has started.
    pub async fn started(&self) {
        let _ = self.draining.subscribe().wait_for(Option::is_some).await;
    }

    /// When the grace period ends (`None` while not draining).
    pub fn deadline(&self) -> Option<Instant> {
        self.draining.borrow().map(|since| since + self.grace)
    }

    /// The grace period is over: gradings still running hand their jobs back.
    pub fn abandon(&self) {
        self.abandon.send_replace(true);
    }

    /// Resolves once gradings must be abandoned.
    pub async fn abandoned(&self) {
        let _ = self.abandon.subscribe().wait_for(|a| *a).await;
    }
}
