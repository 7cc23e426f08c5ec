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
//! drops or Redis comes back, while it has connections to deliver to: with none (for
//! `IDLE_UNSUBSCRIBE`), Redis sends it nothing, and it reads nothing. A connection starts
//! listening before its handshake is answered, and waits for the subscription then.
//! `health` and `stats` events describe one instance and go to its own admin connections only.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{broadcast, Notify};

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

/// Why a subscription ended.
enum Ended {
    /// No connection here has listened for `IDLE_UNSUBSCRIBE`.
    Idle,
    /// Its connection dropped or may be stale: subscribe again.
    Dropped,
}

/// How long the subscription outlives this instance's last connection (a page that reloads
/// finds it still live).
const IDLE_UNSUBSCRIBE: Duration = Duration::from_secs(2);

pub struct EventBus {
    local: broadcast::Sender<Delivery>,
    queue: RedisQueue,
    health: Arc<HealthState>,
    /// The Redis link generation whose subscription is live (`NOT_SUBSCRIBED`: none): events
    /// published to Redis come back to this instance only while it is the current one.
    subscribed: AtomicU64,
    /// Subscriptions made so far: a different count is another subscription.
    subscriptions: AtomicU64,
    /// A connection here started listening (the subscriber waits for one).
    wanted: Notify,
    /// Held by `subscribe` and by the subscriber ending for want of listeners: a listener
    /// comes either before that decision (which it prevents) or after it (and waits for the
    /// next subscription).
    listeners: std::sync::Mutex<()>,
    /// A subscription went live.
    live: Notify,
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
            wanted: Notify::new(),
            listeners: std::sync::Mutex::new(()),
            live: Notify::new(),
        })
    }

    /// Starts listening to this instance's events; `heard_from_now` waits until those
    /// published to Redis reach it.
    pub fn subscribe(&self) -> broadcast::Receiver<Delivery> {
        let _listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = self.local.subscribe();
        self.wanted.notify_one();
        receiver
    }

    /// Waits (up to `within`; not at all while Redis is down) until the subscription is live:
    /// from then on, every event published reaches this instance's listeners.
    pub async fn heard_from_now(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let live = self.live.notified();
            let mut live = std::pin::pin!(live);
            live.as_mut().enable();
            if !self.health.redis_up()
                || self.subscribed.load(Ordering::Acquire) == self.queue.generation()
            {
                return;
            }
            if tokio::time::timeout_at(deadline, live).await.is_err() {
                return;
            }
        }
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

    /// Keeps a subscription to the Redis channel while this instance has connections to
    /// deliver to, for as long as the process runs.
    pub fn start_subscriber(self: &Arc<Self>) {
        let bus = self.clone();
        actix_web::rt::spawn(async move {
            loop {
                if bus.local.receiver_count() == 0 {
                    bus.wanted.notified().await;
                    continue;
                }
                match bus.listen().await {
                    Ok(Ended::Idle) => continue,
                    Ok(Ended::Dropped) => {}
                    Err(e) => log::debug!("event subscription: {e}"),
                }
                bus.subscribed.store(NOT_SUBSCRIBED, Ordering::Release);
                actix_web::rt::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// One subscription: until its connection drops, Redis went down and came back (a
    /// connection from before an outage may be silently dead), the master moved, or this
    /// instance has had no connection to deliver to for `IDLE_UNSUBSCRIBE`.
    async fn listen(&self) -> redis::RedisResult<Ended> {
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
        self.live.notify_waiters();
        let mut messages = pubsub.on_message();
        let mut check = actix_web::rt::time::interval(Duration::from_millis(500));
        let mut idle_since = None;
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(message) => {
                        if let Ok(json) = message.get_payload::<String>() {
                            self.deliver(&json);
                        }
                    }
                    None => return Ok(Ended::Dropped),
                },
                _ = check.tick() => {
                    if self.queue.generation() != generation {
                        return Ok(Ended::Dropped); // the master moved
                    }
                    match self.local.receiver_count() {
                        0 if idle_since.get_or_insert_with(Instant::now).elapsed()
                            >= IDLE_UNSUBSCRIBE =>
                        {
                            let _listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
                            if self.local.receiver_count() == 0 {
                                self.subscribed.store(NOT_SUBSCRIBED, Ordering::Release);
                                return Ok(Ended::Idle);
                            }
                        }
                        0 => {}
                        _ => idle_since = None,
                    }
                    let redis = self.health.redis();
                    match (redis.up, seen_up) {
                        (true, None) => seen_up = Some(redis.since),
                        (true, Some(since)) if since != redis.since => return Ok(Ended::Dropped),
                        (false, Some(_)) => return Ok(Ended::Dropped),
                        _ => {}
                    }
                }
            }
        }
    }
}
