//! `GET /health`: backends, routing mode and queue depths; `/health/live` and `/health/ready`
//! for orchestrators.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::backends::{BackendHealth, Persistence};

use crate::db::{self, models::FallbackSubmission};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub(crate) struct HealthReport {
    /// `ok`, or `degraded` while a backend is down.
    status: &'static str,
    /// `redis`, or `fallback` while Redis is down.
    mode: &'static str,
    redis: RedisHealth,
    postgres: BackendHealth,
    queue: QueueDepths,
    executors: Executors,
    /// Each sandbox server this process grades on (`SQLJUDGE_SANDBOX_URLS`).
    sandboxes: Vec<SandboxHealth>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SandboxHealth {
    /// Its place in `SQLJUDGE_SANDBOX_URLS`, from 1 (the addresses are in the logs only).
    server: usize,
    /// Reachable and up to date with every dataset and test: its executors take jobs. While
    /// it is not, the other servers' executors grade.
    ready: bool,
    /// Gradings this process finished there since it started.
    graded: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RedisHealth {
    #[serde(flatten)]
    backend: BackendHealth,
    /// Whether Redis keeps what it acknowledged across a restart (null until probed, or while
    /// it is down). Without its append-only file, submissions are refused (503) while Postgres
    /// is down: a 202 would rest on memory alone (`redis.require_persistence`).
    persistence: Option<Persistence>,
}

/// Null where the backend holding the figure is down.
#[derive(Serialize, ToSchema)]
pub(crate) struct QueueDepths {
    pending: Option<u64>,
    background_pending: Option<u64>,
    processing: Option<u64>,
    fallback_pending: Option<i64>,
    /// Fallback submissions moved back to Redis since start.
    recovered: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Executors {
    total: usize,
    busy: usize,
    /// Waiting for a sandbox backend that ignores termination to exit; they take no job.
    quarantined: usize,
}

/// Submissions waiting in the Postgres fallback; None while Postgres is down or slow (bounded,
/// so health and statistics answer promptly while it fails).
pub(crate) async fn fallback_backlog(state: &AppState) -> Option<i64> {
    if !state.health.postgres_up() {
        return None;
    }
    let count = db::run(&state.pool, FallbackSubmission::pending);
    actix_web::rt::time::timeout(std::time::Duration::from_millis(250), count)
        .await
        .ok()
        .and_then(Result::ok)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready));
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Accepting submissions", body = HealthReport),
        (status = 503, description = "No submission can be accepted: Redis and Postgres are both down, or Postgres is and Redis does not persist", body = HealthReport),
    )
)]
pub(crate) async fn health(state: web::Data<AppState>) -> HttpResponse {
    let (redis, postgres) = (state.health.redis(), state.health.postgres());
    let (pending, background, processing) = if redis.up {
        state
            .queue
            .depths()
            .await
            .map_or((None, None, None), |(p, b, r)| (Some(p), Some(b), Some(r)))
    } else {
        (None, None, None)
    };
    let fallback_pending = fallback_backlog(&state).await;
    let persists = state.health.redis_persists() || !state.settings.redis.require_persistence;
    let accepting = postgres.up || (redis.up && persists);
    let body = HealthReport {
        status: if redis.up && postgres.up {
            "ok"
        } else {
            "degraded"
        },
        mode: state.health.mode(),
        redis: RedisHealth {
            backend: redis,
            persistence: state.health.redis_persistence(),
        },
        postgres,
        queue: QueueDepths {
            pending,
            background_pending: background,
            processing,
            fallback_pending,
            recovered: state.metrics.recovered.get(),
        },
        executors: Executors {
            total: state.executors.executors.len(),
            busy: state.executors.busy(),
            quarantined: state.executors.quarantined(),
        },
        sandboxes: state
            .servers
            .all()
            .iter()
            .enumerate()
            .map(|(i, s)| SandboxHealth {
                server: i + 1,
                ready: s.ready(),
                graded: s.graded(),
            })
            .collect(),
    };
    if accepting {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "2"))
            .json(body)
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Readiness {
    ready: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

#[utoipa::path(
    get,
    path = "/health/live",
    tag = "operations",
    responses(
        (status = 200, description = "The process is alive and answering (a liveness probe)", body = Readiness),
    )
)]
pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Readiness {
        ready: true,
        reason: None,
    })
}

#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Taking submissions: send traffic here (a readiness probe)", body = Readiness),
        (status = 503, description = "Shutting down, or neither Redis nor Postgres can take submissions", body = Readiness),
    )
)]
pub(crate) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let reason = if state.shutdown.draining() {
        Some("shutting down")
    } else if !state.health.redis_up() && !state.health.postgres_up() {
        Some("neither Redis nor Postgres is reachable")
    } else {
        None
    };
    let body = Readiness {
        ready: reason.is_none(),
        reason,
    };
    match reason {
        None => HttpResponse::Ok().json(body),
        Some(_) => HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "2"))
            .json(body),
    }
}
