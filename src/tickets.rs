//! Short-lived, single-use tickets for `GET /ws?ticket=`. Browsers cannot set headers on a
//! WebSocket, and a long-lived token in a URL ends up in access logs and browser history; a
//! ticket is worth one connection within `websocket.ticket_ttl_secs`.
//!
//! Tickets live in Redis (`ws:ticket:{sha256 of the ticket}`, taken with GETDEL) so that any
//! instance can redeem them. While Redis is unavailable they are kept in this process instead:
//! such a ticket works on this instance only (a client behind a load balancer that lands
//! elsewhere gets a 401 and asks for another).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::auth::{new_token, token_hash};
use crate::backends::{Backend, HealthState};
use crate::error::ApiError;
use crate::redis::RedisQueue;

/// What a ticket stands for. A session is named by its access token's hash and looked up again
/// on redemption, so logging out also voids the tickets issued to that login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// The configured admin token.
    Admin,
    Session(String),
}

/// Tickets kept in process while Redis is unavailable, at most.
const LOCAL_TICKETS: usize = 10_000;

pub struct Tickets {
    queue: RedisQueue,
    health: Arc<HealthState>,
    ttl: Duration,
    /// By ticket hash: the grant and when it expires.
    local: Mutex<HashMap<String, (Grant, Instant)>>,
}

impl Tickets {
    pub fn new(queue: RedisQueue, health: Arc<HealthState>, ttl_secs: u64) -> Tickets {
        Tickets {
            queue,
            health,
            ttl: Duration::from_secs(ttl_secs.max(1)),
            local: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// A new ticket for `grant`.
    pub async fn issue(&self, grant: Grant) -> Result<String, ApiError> {
        let ticket = new_token();
        let hash = token_hash(&ticket);
        if self.health.redis_up() {
            let json = serde_json::to_string(&grant).map_err(ApiError::internal)?;
            match self
                .queue
                .store_ticket(&hash, &json, self.ttl.as_secs())
                .await
            {
                Ok(()) => return Ok(ticket),
                Err(e) => self.health.report_failure(Backend::Redis, e),
            }
        }
        let now = Instant::now();
        let mut local = self.local.lock().expect("tickets lock");
        if local.len() >= LOCAL_TICKETS {
            local.retain(|_, (_, expires)| *expires > now);
        }
        if local.len() >= LOCAL_TICKETS {
            return Err(ApiError::Unavailable {
                message: "too many WebSocket tickets outstanding; retry shortly".into(),
                retry_after_secs: 1,
            });
        }
        local.insert(hash, (grant, now + self.ttl));
        Ok(ticket)
    }

    /// Takes a ticket: its grant the first time within its lifetime, `None` ever after (and
    /// for anything that is not a ticket, without asking Redis).
    pub async fn redeem(&self, ticket: &str) -> Option<Grant> {
        if ticket.len() != 64 || !ticket.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let hash = token_hash(ticket);
        let local = self.local.lock().expect("tickets lock").remove(&hash);
        if let Some((grant, expires)) = local {
            return (expires > Instant::now()).then_some(grant);
        }
        if !self.health.redis_up() {
            return None;
        }
        match self.queue.take_ticket(&hash).await {
            Ok(found) => found.and_then(|json| serde_json::from_str(&json).ok()),
            Err(e) => {
                self.health.report_failure(Backend::Redis, e);
                None
            }
        }
    }
}
