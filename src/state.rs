//! What every HTTP worker shares: the settings, the backends and the actors' addresses.
//! Built by `startup`, read by the HTTP layer and the services under it.
use std::sync::Arc;

use crate::actors::executor::ExecutorPool;
use crate::auth::Passwords;
use crate::backends::HealthState;
use crate::cache::ResponseCache;
use crate::config::Settings;
use crate::db::PgPool;
use crate::events::EventBus;
use crate::grading::sandbox::{Sandbox, Slot};
use crate::grading::servers::SandboxServers;
use crate::metrics::Metrics;
use crate::problems::ProblemCache;
use crate::ratelimit::RateLimiter;
use crate::redis::RedisQueue;
use crate::runs::RunSlots;
use crate::sessions::Sessions;
use crate::shutdown::Shutdown;
use crate::stats::GradingStats;
use crate::tickets::Tickets;

/// Shared by every HTTP worker.
pub struct AppState {
    pub settings: Settings,
    pub pool: PgPool,
    pub queue: RedisQueue,
    /// The first sandbox server: admin loads, references, previews and runs.
    pub sandbox: Arc<Sandbox>,
    /// Every sandbox server (executors are spread over them).
    pub servers: Arc<SandboxServers>,
    /// The slot reference queries run on (problem validation).
    pub reference: tokio::sync::Mutex<Slot>,
    /// The slots of `POST /problems/{id}/run`.
    pub runs: Arc<RunSlots>,
    pub health: Arc<HealthState>,
    pub executors: ExecutorPool,
    pub problems: Arc<ProblemCache>,
    pub limiter: RateLimiter,
    pub cache: ResponseCache,
    pub sessions: Arc<Sessions>,
    pub tickets: Tickets,
    pub events: Arc<EventBus>,
    pub metrics: Arc<Metrics>,
    pub stats: Arc<GradingStats>,
    pub shutdown: Arc<Shutdown>,
    pub passwords: Passwords,
}
