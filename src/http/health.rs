//! `GET /health`: backends, routing mode and queue depths.

use actix_web::{web, HttpResponse};

use crate::db::{self, models::FallbackSubmission};
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health));
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
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
    let fallback_pending = if postgres.up {
        // Bounded: /health must answer promptly while Postgres fails.
        let count = db::run(&state.pool, FallbackSubmission::pending);
        actix_web::rt::time::timeout(std::time::Duration::from_millis(250), count)
            .await
            .ok()
            .and_then(Result::ok)
    } else {
        None
    };
    let accepting = redis.up || postgres.up;
    let body = serde_json::json!({
        "status": if redis.up && postgres.up { "ok" } else { "degraded" },
        "mode": state.health.mode(),
        "redis": redis,
        "postgres": postgres,
        "queue": {
            "pending": pending,
            "background_pending": background,
            "processing": processing,
            "fallback_pending": fallback_pending,
            "recovered": state.metrics.recovered.get(),
        },
        "executors": {"total": state.executors.executors.len(), "busy": state.executors.busy()},
    });
    if accepting {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "2"))
            .json(body)
    }
}
