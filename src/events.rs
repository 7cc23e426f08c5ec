//! Live events for `/ws`.
//!
//! Submission events travel through the Redis channel `events`, so a client connected to any
//! instance hears about a submission whichever instance accepted or graded it. The queue's own
//! Redis transactions publish them (`queued` with the enqueue, the final status with the
//! result, `running` with the script that takes and leases a job), so they are ordered as the
//! state changes are. What does not pass through Redis (the Postgres fallback, the verdict
//! cache) is published here: to Redis when it is up, else straight to this instance's
//! connections (as is the `running` event of a job it took while its subscription is down).
//! Each instance subscribes on a connection of its own that is re-established whenever it
//! drops or Redis comes back.
//! `health` and `stats` events describe one instance and go to its own admin connections only.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::backends::{Backend, HealthState};
use crate::job::{submission_event, SubmissionResult};
use crate::redis::RedisQueue;

/// An event for this instance's connections: the user it concerns (None: admins only).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub user_id: Option<i64>,
    pub json: Arc<str>,
}

#[derive(Deserialize)]
struct Addressee {
    user_id: Option<i64>,
}

const NOT_SUBSCRIBED: u64 = u64::MAX;

pub struct EventBus {
    local: broadcast::Sender<Delivery>,
    queue: RedisQueue,
    health: Arc<HealthState>,
    /// The Redis link generation whose subscription is live (`NOT_SUBSCRIBED`: none): events
    /// published to Redis come back to this instance only while it is the current one.
    subscribed: AtomicU64,
    /// Subscriptions made so far: a different count is another subscription.
    subscriptions: AtomicU64,
}

impl EventBus {
    /// `capacity` bounds what a slow connection can fall behind by before it is dropped.
    pub fn new(queue: RedisQueue, health: Arc<HealthState>, capacity: usize) -> Arc<EventBus> {
        Arc::new(EventBus {
            local: broadcast::channel(capacity.max(16)).0,
            queue,
            health,
            subscribed: AtomicU64::new(NOT_SUBSCRIBED),
            subscriptions: AtomicU64::new(0),
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Delivery> {
        self.local.subscribe()
    }

    /// A submission's new state, for whichever instance its user is connected to.
    pub async fn publish_submission(&self, result: &SubmissionResult) {
        self.publish(submission_event(result)).await;
    }

    pub async fn publish(&self, json: String) {
        if self.health.redis_up() {
            // Read first: a master that moves during the publish leaves it with the old one.
            let generation = self.queue.generation();
            match self.queue.publish_event(&json).await {
                Ok(()) if self.subscribed.load(Ordering::Acquire) == generation => return,
                Ok(()) => {} // this instance would not hear it back
                Err(e) => self.health.report_failure(Backend::Redis, e),
            }
        }
        self.deliver(&json);
    }

    /// The live subscription through which events published to Redis over a connection of
    /// link `generation` now come back to this instance's connections, if any: the same one
    /// before and after a publish means it was heard.
    pub fn listening(&self, generation: u64) -> Option<u64> {
        (self.subscribed.load(Ordering::Acquire) == generation)
            .then(|| self.subscriptions.load(Ordering::Acquire))
    }

    /// To this instance's connections only.
    pub fn local(&self, user_id: Option<i64>, json: String) {
        let _ = self.local.send(Delivery {
            user_id,
            json: json.into(),
        });
    }

    /// To this instance's connections, as its subscription would deliver it.
    pub fn deliver(&self, json: &str) {
        // No connection here to hear it (every event of every instance comes back to each).
        if self.local.receiver_count() == 0 {
            return;
        }
        // Submission events name their user; anything else is for admins.
        let user_id = serde_json::from_str::<Addressee>(json)
            .ok()
            .and_then(|a| a.user_id);
        self.local(user_id, json.to_string());
    }

    /// Keeps a subscription to the Redis channel for as long as the process runs.
    pub fn start_subscriber(self: &Arc<Self>) {
        let bus = self.clone();
        actix_web::rt::spawn(async move {
            loop {
                if let Err(e) = bus.listen().await {
                    log::debug!("event subscription: {e}");
                }
                bus.subscribed.store(NOT_SUBSCRIBED, Ordering::Release);
                actix_web::rt::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// One subscription: until its connection drops, Redis went down and came back (a
    /// connection from before an outage may be silently dead), or the master moved.
    async fn listen(&self) -> redis::RedisResult<()> {
        // Bounded: a connection that hangs while subscribing must not stall the loop for good.
        let generation = self.queue.generation();
        let subscribing = async {
            let mut pubsub = self.queue.pubsub().await?;
            pubsub.subscribe(self.queue.keys.events()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = actix_web::rt::time::timeout(Duration::from_secs(2), subscribing)
            .await
            .map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::Io, "subscribing timed out"))
            })??;
        // The up-period this connection is known to have lived through. A connection made
        // while the probe still says down is fresh, not stale: the flip up that follows must
        // not drop it (events published meanwhile would be lost).
        let redis = self.health.redis();
        let mut seen_up = redis.up.then_some(redis.since);
        self.subscriptions.fetch_add(1, Ordering::AcqRel);
        self.subscribed.store(generation, Ordering::Release);
        let mut messages = pubsub.on_message();
        let mut check = actix_web::rt::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => {
                        if let Ok(json) = message.get_payload::<String>() {
                            self.deliver(&json);
                        }
                    }
                    None => return Ok(()),
                },
                _ = check.tick() => {
                    if self.queue.generation() != generation {
                        return Ok(()); // the master moved
                    }
                    let redis = self.health.redis();
                    match (redis.up, seen_up) {
                        (true, None) => seen_up = Some(redis.since),
                        (true, Some(since)) if since != redis.since => return Ok(()),
                        (false, Some(_)) => return Ok(()),
                        _ => {}
                    }
                }
            }
        }
    }
}
