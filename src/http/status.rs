//! Operations: `GET /queue/status` (detailed statistics), `GET /metrics` (Prometheus), and the
//! periodic `stats` event of admin WebSocket connections.
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::actors::health::Backend;
use crate::cache::Scope;
use crate::db::{self, models::FallbackSubmission};
use crate::error::ApiError;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/queue/status", web::get().to(queue_status))
        .route("/metrics", web::get().to(metrics));
}

/// What every instance reports alike: computed by one of them at most once per
/// `redis.stats_cache_ttl_secs` and shared through the response cache.
#[derive(Serialize, Default)]
struct Shared {
    live_pending: Option<u64>,
    background_pending: Option<u64>,
    processing: Option<u64>,
    fallback_pending: Option<i64>,
    redis_memory_bytes: Option<u64>,
    redis_maxmemory_bytes: Option<u64>,
    active_users_5m: Option<i64>,
}

async fn shared(state: &AppState) -> Shared {
    let mut s = Shared::default();
    if state.health.redis_up() {
        match state.queue.depths().await {
            Ok((live, background, inflight)) => {
                (s.live_pending, s.background_pending, s.processing) =
                    (Some(live), Some(background), Some(inflight));
            }
            Err(e) => state.health.report_failure(Backend::Redis, e),
        }
        if let Ok((used, max)) = state.queue.memory().await {
            (s.redis_memory_bytes, s.redis_maxmemory_bytes) = (Some(used), Some(max));
        }
    }
    if state.health.postgres_up() {
        // Bounded: statistics must answer promptly while Postgres fails.
        let count = db::run(&state.pool, FallbackSubmission::pending);
        s.fallback_pending = actix_web::rt::time::timeout(Duration::from_millis(250), count)
            .await
            .ok()
            .and_then(Result::ok);
    }
    s.active_users_5m = state
        .sessions
        .active_users(Duration::from_secs(300))
        .await
        .ok();
    s
}

/// The body of `/queue/status` and of the `stats` event.
pub async fn status(state: &AppState) -> Result<serde_json::Value, ApiError> {
    let shared = state
        .cache
        .value(Scope::Stats, "shared", || async { Ok(shared(state).await) })
        .await?;
    let recent = state.stats.snapshot(300);
    let verdicts = state.stats.totals();
    let processed: u64 = verdicts.values().sum();
    let failed = verdicts.get("internal_error").copied().unwrap_or(0);
    let total = state.executors.executors.len();
    let busy = state.executors.busy();
    let (redis, postgres) = (state.health.redis(), state.health.postgres());
    let submissions = |queue: &str| state.metrics.submissions.with_label_values(&[queue]).get();
    Ok(serde_json::json!({
        "mode": state.health.mode(),
        "redis": redis,
        "postgres": postgres,
        "queues": {
            "live": {"pending": shared["live_pending"], "processing": shared["processing"]},
            "background": {"pending": shared["background_pending"]},
            "fallback": {"pending": shared["fallback_pending"]},
        },
        "processed_total": processed,
        "failed_total": failed,
        "verdicts": verdicts,
        "submissions": {
            "redis": submissions("redis"),
            "postgres": submissions("postgres"),
            "cache": submissions("cache"),
        },
        "jobs_per_second": recent.jobs_per_second,
        "latency_ms": recent.latency,
        "series": recent.series,
        "executors": {"total": total, "busy": busy, "idle": total.saturating_sub(busy)},
        "fallback": {
            "backlog": shared["fallback_pending"],
            "recovered": state.metrics.recovered.get(),
            "written": submissions("postgres"),
        },
        "redis_memory": {
            "used_bytes": shared["redis_memory_bytes"],
            "max_bytes": shared["redis_maxmemory_bytes"],
        },
        "active_users_5m": shared["active_users_5m"],
        "scope": "counters, rates and latencies are this instance's; queues, backlog and Redis memory are shared",
    }))
}

async fn queue_status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(status(&state).await?))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = &state.metrics;
    let (redis, postgres) = (state.health.redis_up(), state.health.postgres_up());
    m.backend_up
        .with_label_values(&["redis"])
        .set(i64::from(redis));
    m.backend_up
        .with_label_values(&["postgres"])
        .set(i64::from(postgres));
    let shared = shared(&state).await;
    for (queue, depth) in [
        ("live", shared.live_pending.map(|d| d as i64)),
        ("background", shared.background_pending.map(|d| d as i64)),
        ("inflight", shared.processing.map(|d| d as i64)),
        ("fallback", shared.fallback_pending),
    ] {
        // An unknown depth (its backend is down) is left out rather than reported as 0.
        match depth {
            Some(d) => m.queue_depth.with_label_values(&[queue]).set(d),
            None => {
                let _ = m.queue_depth.remove_label_values(&[queue]);
            }
        }
    }
    let pool = state.pool.state();
    m.db_connections
        .with_label_values(&["idle"])
        .set(i64::from(pool.idle_connections));
    m.db_connections
        .with_label_values(&["in_use"])
        .set(i64::from(pool.connections - pool.idle_connections));
    let (total, busy) = (state.executors.executors.len(), state.executors.busy());
    m.executors.with_label_values(&["busy"]).set(busy as i64);
    m.executors
        .with_label_values(&["idle"])
        .set(total.saturating_sub(busy) as i64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.render())
}

/// Sends admin connections a `stats` event on an interval while any connection is open.
pub fn start_stats_events(state: web::Data<AppState>, every: Duration) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(every);
        loop {
            tick.tick().await;
            if state.metrics.ws_connections.get() == 0 {
                continue;
            }
            if let Ok(mut body) = status(&state).await {
                body["type"] = "stats".into();
                body["at"] = serde_json::json!(chrono::Utc::now());
                state.events.local(None, body.to_string());
            }
        }
    });
}
