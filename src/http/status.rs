//! Operations: `GET /queue/status` (detailed statistics), `GET /metrics` (Prometheus), and the
//! periodic `stats` event of admin WebSocket connections.
use std::time::Duration;

use actix_web::{web, HttpResponse};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::backends::{Backend, BackendHealth};
use crate::cache::Scope;
use crate::error::responses;
use crate::error::ApiError;
use crate::job::Queue;
use crate::redis::InstanceReport;
use crate::state::AppState;
use crate::stats::{Latency, Point};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/queue/status", web::get().to(queue_status))
        .route("/metrics", web::get().to(metrics));
}

/// What every instance reports alike: computed by one of them at most once per
/// `redis.stats_cache_ttl_secs` and shared through the response cache.
#[derive(Serialize, Deserialize, Default)]
struct Shared {
    live_pending: Option<u64>,
    background_pending: Option<u64>,
    processing: Option<u64>,
    fallback_pending: Option<i64>,
    redis_memory_bytes: Option<u64>,
    redis_maxmemory_bytes: Option<u64>,
    active_users_5m: Option<i64>,
    instances: Option<Vec<InstanceReport>>,
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
        // A process that missed three health ticks is gone.
        let since = chrono::Utc::now().timestamp_millis()
            - 3 * state.settings.health.interval_ms.max(1000) as i64;
        s.instances = state.queue.instances(since).await.ok();
    }
    s.fallback_pending = super::health::fallback_backlog(state).await;
    s.active_users_5m = state
        .sessions
        .active_users(Duration::from_secs(300))
        .await
        .ok();
    s
}

/// `/queue/status`, and the body of the `stats` event. Counters, rates and latencies are
/// this instance's; queue depths, the fallback backlog and Redis memory are shared (null while
/// the backend holding them is down).
#[derive(Serialize, ToSchema)]
pub(crate) struct QueueStatus {
    mode: &'static str,
    redis: BackendHealth,
    postgres: BackendHealth,
    queues: Queues,
    /// Verdicts recorded by this instance since start.
    processed_total: u64,
    /// Of those, `internal_error` (the platform, not the solution, failed).
    failed_total: u64,
    verdicts: BTreeMap<String, u64>,
    /// Accepted submissions since start, by queue: redis, postgres (fallback), cache.
    submissions: BTreeMap<String, u64>,
    /// Over the last minute.
    jobs_per_second: f64,
    /// Submit to verdict, over the last minute.
    latency_ms: Latency,
    /// The last five minutes, per second.
    series: Vec<Point>,
    executors: ExecutorCounts,
    /// This instance's sandbox slots for `POST /problems/{id}/run`.
    run_slots: RunSlotCounts,
    fallback: FallbackCounts,
    redis_memory: RedisMemory,
    active_users_5m: Option<i64>,
    /// Every live process of the deployment (this one included) with its role and executors,
    /// as they reported at their last health tick; null while Redis is down.
    instances: Option<Vec<InstanceReport>>,
    /// Executors of every live process together.
    deployment_executors: Option<ExecutorCounts>,
}

#[derive(Serialize, ToSchema)]
struct Queues {
    live: Depth,
    background: Depth,
    fallback: Depth,
}

#[derive(Serialize, ToSchema)]
struct Depth {
    pending: Option<i64>,
    /// Jobs taken by an executor (live queue only).
    #[serde(skip_serializing_if = "Option::is_none")]
    processing: Option<i64>,
}

#[derive(Serialize, ToSchema)]
struct ExecutorCounts {
    total: usize,
    busy: usize,
    idle: usize,
    /// Waiting for a sandbox backend that ignores termination to exit; they take no job.
    quarantined: usize,
}

#[derive(Serialize, ToSchema)]
struct RunSlotCounts {
    total: usize,
    busy: usize,
}

#[derive(Serialize, ToSchema)]
struct FallbackCounts {
    backlog: Option<i64>,
    /// Moved back to Redis since start.
    recovered: u64,
    /// Written to the fallback by this instance since start.
    written: u64,
}

#[derive(Serialize, ToSchema)]
struct RedisMemory {
    used_bytes: Option<u64>,
    /// 0: no limit.
    max_bytes: Option<u64>,
}

pub(crate) async fn status(state: &AppState) -> Result<QueueStatus, ApiError> {
    let shared: Shared = serde_json::from_value(
        state
            .cache
            .value(Scope::Stats, "shared", || async { Ok(shared(state).await) })
            .await?,
    )
    .map_err(ApiError::internal)?;
    let recent = state.stats.snapshot(300);
    let verdicts = state.stats.totals();
    let total = state.executors.executors.len();
    let busy = state.executors.busy();
    let submissions: BTreeMap<String, u64> = Queue::ALL
        .into_iter()
        .map(|q| {
            (
                q.as_str().to_string(),
                state
                    .metrics
                    .submissions
                    .with_label_values(&[q.as_str()])
                    .get(),
            )
        })
        .collect();
    let depth = |d: Option<u64>| d.map(|d| d as i64);
    Ok(QueueStatus {
        mode: state.health.mode(),
        redis: state.health.redis(),
        postgres: state.health.postgres(),
        queues: Queues {
            live: Depth {
                pending: depth(shared.live_pending),
                processing: depth(shared.processing),
            },
            background: Depth {
                pending: depth(shared.background_pending),
                processing: None,
            },
            fallback: Depth {
                pending: shared.fallback_pending,
                processing: None,
            },
        },
        processed_total: verdicts.values().sum(),
        failed_total: verdicts.get("internal_error").copied().unwrap_or(0),
        verdicts,
        fallback: FallbackCounts {
            backlog: shared.fallback_pending,
            recovered: state.metrics.recovered.get(),
            written: submissions["postgres"],
        },
        submissions,
        jobs_per_second: recent.jobs_per_second,
        latency_ms: recent.latency,
        series: recent.series,
        executors: ExecutorCounts {
            total,
            busy,
            idle: total.saturating_sub(busy),
            quarantined: state.executors.quarantined(),
        },
        run_slots: RunSlotCounts {
            total: state.runs.total(),
            busy: state.runs.busy(),
        },
        redis_memory: RedisMemory {
            used_bytes: shared.redis_memory_bytes,
            max_bytes: shared.redis_maxmemory_bytes,
        },
        active_users_5m: shared.active_users_5m,
        deployment_executors: shared.instances.as_ref().map(|all| {
            let total = all.iter().map(|i| i.executors).sum();
            let busy = all.iter().map(|i| i.busy).sum();
            ExecutorCounts {
                total,
                busy,
                idle: total.saturating_sub(busy),
                quarantined: all.iter().map(|i| i.quarantined).sum(),
            }
        }),
        instances: shared.instances,
    })
}

#[utoipa::path(
    get,
    path = "/queue/status",
    tag = "operations",
    responses(
        (status = 200, description = "Detailed statistics", body = QueueStatus),
        responses::Unavailable,
    )
)]
pub(crate) async fn queue_status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(status(&state).await?))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
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
    let (total, busy) = (state.runs.total(), state.runs.busy());
    m.run_slots.with_label_values(&["busy"]).set(busy as i64);
    m.run_slots
        .with_label_values(&["idle"])
        .set((total - busy) as i64);
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
            if let Ok(mut body) = status(&state).await.map(|s| serde_json::json!(s)) {
                body["type"] = "stats".into();
                body["at"] = serde_json::json!(chrono::Utc::now());
                state.events.local(None, body.to_string());
            }
        }
    });
}
