//! Prometheus metrics (`GET /metrics`). Counters and histograms move as things happen; gauges
//! of state that lives elsewhere (queue depths, backends, pools) are read at scrape time.
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    /// Accepted submissions, by where they went: redis, postgres (the fallback) or cache.
    pub submissions: IntCounterVec,
    /// Recorded verdicts, by status.
    pub verdicts: IntCounterVec,
    /// Submit to verdict.
    pub grading_seconds: Histogram,
    /// Fallback submissions moved back to Redis.
    pub recovered: IntCounter,
    pub ws_connections: IntGauge,
    pub queue_depth: IntGaugeVec,
    pub backend_up: IntGaugeVec,
    pub db_connections: IntGaugeVec,
    pub executors: IntGaugeVec,
    pub run_slots: IntGaugeVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new_custom(Some("sqljudge".into()), None).expect("registry");
        let latency_buckets = vec![
            0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        Metrics {
            http_requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new("http_requests_total", "HTTP requests by route and status"),
                    &["method", "route", "status"],
                )
                .expect("metric"),
            ),
            http_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("http_request_duration_seconds", "HTTP request time")
                        .buckets(latency_buckets.clone()),
                    &["route"],
                )
                .expect("metric"),
            ),
            submissions: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "submissions_total",
                        "Accepted submissions by queue (redis, postgres = fallback, cache)",
                    ),
                    &["queue"],
                )
                .expect("metric"),
            ),
            verdicts: register(
                &r,
                IntCounterVec::new(
                    Opts::new("verdicts_total", "Recorded verdicts by status"),
                    &["status"],
                )
                .expect("metric"),
            ),
            grading_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "grading_latency_seconds",
                        "Submission to verdict, graded on this instance",
                    )
                    .buckets(latency_buckets),
                )
                .expect("metric"),
            ),
            recovered: register(
                &r,
                IntCounter::new(
                    "fallback_recovered_total",
                    "Fallback submissions moved back to Redis",
                )
                .expect("metric"),
            ),
            ws_connections: register(
                &r,
                IntGauge::new("websocket_connections", "Open /ws connections").expect("metric"),
            ),
            queue_depth: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "queue_depth",
                        "Jobs by queue: live, background, inflight (Redis), fallback (Postgres)",
                    ),
                    &["queue"],
                )
                .expect("metric"),
            ),
            backend_up: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("backend_up", "1 when the backend answers probes"),
                    &["backend"],
                )
                .expect("metric"),
            ),
            db_connections: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("db_pool_connections", "Platform database pool"),
                    &["state"],
                )
                .expect("metric"),
            ),
            executors: register(
                &r,
                IntGaugeVec::new(Opts::new("executors", "Executors by state"), &["state"])
                    .expect("metric"),
            ),
            run_slots: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "run_slots",
                        "Sandbox slots of POST /problems/{id}/run by state",
                    ),
                    &["state"],
                )
                .expect("metric"),
            ),
            registry: r,
        }
    }

    /// A verdict recorded after `latency_ms` from submission.
    pub fn verdict(&self, status: &str, latency_ms: u32) {
        self.verdicts.with_label_values(&[status]).inc();
        self.grading_seconds.observe(f64::from(latency_ms) / 1000.0);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("metrics encode");
        String::from_utf8(out).expect("exposition is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
