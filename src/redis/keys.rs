//! The names of every key, under the configured prefix.
use uuid::Uuid;

use crate::job::Job;

#[derive(Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn queue(&self) -> String {
        format!("{}problems:queue", self.prefix)
    }
    /// A user's parked live jobs (see the module's header).
    pub fn parked(&self, user_id: &str) -> String {
        format!("{}problems:parked:{user_id}", self.prefix)
    }
    pub fn parked_users(&self) -> String {
        format!("{}problems:parked_users", self.prefix)
    }
    /// Background work (rejudges): taken only when `queue` is empty.
    pub fn queue_low(&self) -> String {
        format!("{}problems:queue:low", self.prefix)
    }
    /// The queue a job waits in: rejudges in the background one.
    pub fn queue_for(&self, job: &Job) -> String {
        if job.rejudge {
            self.queue_low()
        } else {
            self.queue()
        }
    }
    pub fn inflight(&self) -> String {
        format!("{}problems:inflight", self.prefix)
    }
    /// How many live jobs each user has in `inflight` (hash user id -> count), kept by the
    /// scripts that move jobs in and out of it.
    pub fn inflight_users(&self) -> String {
        format!("{}problems:inflight_users", self.prefix)
    }
    /// In-flight jobs graded and being recorded: leased still, no longer counted per user.
    pub fn recording(&self) -> String {
        format!("{}problems:recording", self.prefix)
    }
    pub fn processing(&self, id: Uuid) -> String {
        format!("{}{id}", self.processing_prefix())
    }
    /// `processing(id)` without the id (for scripts that read it from the job).
    pub fn processing_prefix(&self) -> String {
        format!("{}problems:processing:", self.prefix)
    }
    pub fn result(&self, id: Uuid) -> String {
        format!("{}problems:result:{id}", self.prefix)
    }
    pub fn lease(&self, id: Uuid) -> String {
        format!("{}{id}", self.lease_prefix())
    }
    /// `lease(id)` without the id.
    pub fn lease_prefix(&self) -> String {
        format!("{}problems:lease:", self.prefix)
    }
    pub fn unpersisted(&self) -> String {
        format!("{}problems:unpersisted", self.prefix)
    }
    pub fn request(&self, user_id: i64, request_id: &str) -> String {
        format!("{}problems:request:{user_id}:{request_id}", self.prefix)
    }
    pub fn session(&self, token_hash: &str) -> String {
        format!("{}session:{token_hash}", self.prefix)
    }
    /// A WebSocket ticket, by the SHA-256 of the ticket (see `tickets`).
    pub fn ws_ticket(&self, ticket_hash: &str) -> String {
        format!("{}ws:ticket:{ticket_hash}", self.prefix)
    }
    /// Invalidates every cached API response when incremented.
    pub fn api_generation(&self) -> String {
        format!("{}cache:api:gen", self.prefix)
    }
    /// Invalidates the cached API responses of one scope when incremented.
    pub fn api_scope_generation(&self, scope: &str) -> String {
        format!("{}cache:api:gen:{scope}", self.prefix)
    }
    /// The pub/sub channel of submission events.
    pub fn events(&self) -> String {
        format!("{}events", self.prefix)
    }
    pub fn instances(&self) -> String {
        format!("{}instances", self.prefix)
    }
    pub fn last_seen(&self) -> String {
        format!("{}users:last_seen", self.prefix)
    }
    /// A reusable verdict, by `grading::fingerprint`.
    pub fn verdict(&self, fingerprint: &str) -> String {
        format!("{}cache:verdict:{fingerprint}", self.prefix)
    }
    /// A rate limit's state: `ratelimit:{name}:{subject}`.
    pub fn rate_limit(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
    /// `leaderboard:global`, or `leaderboard:topic:{topic}`.
    pub fn board(&self, topic: Option<&str>) -> String {
        match topic {
            None => format!("{}leaderboard:global", self.prefix),
            Some(t) => format!("{}leaderboard:topic:{t}", self.prefix),
        }
    }
}
