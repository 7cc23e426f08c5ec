//! Recent grading activity of this instance, for `/queue/status`, the dashboard's charts and
//! the `stats` events: gradings per second and submit-to-verdict latency over the last
//! minutes, kept in memory in one-second buckets.
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use chrono::Utc;
use serde::Serialize;

/// How far back the buckets reach.
const WINDOW_SECS: i64 = 600;

#[derive(Default)]
struct Bucket {
    second: i64,
    graded: u32,
    failed: u32,
    latencies_ms: Vec<u32>,
}

#[derive(Default)]
pub struct GradingStats {
    buckets: Mutex<VecDeque<Bucket>>,
    /// Verdicts since start, by status.
    totals: Mutex<BTreeMap<String, u64>>,
}

/// One second of the chart.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// Unix seconds.
    pub t: i64,
    pub graded: u32,
    pub p50_ms: Option<u32>,
    pub p95_ms: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Latency {
    pub p50_ms: Option<u32>,
    pub p95_ms: Option<u32>,
    pub p99_ms: Option<u32>,
    pub max_ms: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// Graded in the last minute, per second.
    pub jobs_per_second: f64,
    pub graded_last_minute: u64,
    /// Graded with `internal_error` (the platform failed, not the solution) in the last minute.
    pub failed_last_minute: u64,
    /// Submit-to-verdict over the last minute.
    pub latency: Latency,
    /// The last `points` seconds, oldest first, with empty seconds filled in.
    pub series: Vec<Point>,
}

impl GradingStats {
    /// A verdict was recorded `latency_ms` after submission. `internal_error` counts as
    /// failed: the platform, not the solution, could not be graded.
    pub fn record(&self, status: &str, latency_ms: u32) {
        let failed = status == "internal_error";
        *self
            .totals
            .lock()
            .expect("stats lock")
            .entry(status.to_string())
            .or_default() += 1;
        let now = Utc::now().timestamp();
        let mut buckets = self.buckets.lock().expect("stats lock");
        if buckets.back().is_none_or(|b| b.second != now) {
            buckets.push_back(Bucket {
                second: now,
                ..Bucket::default()
            });
        }
        while buckets
            .front()
            .is_some_and(|b| b.second <= now - WINDOW_SECS)
        {
            buckets.pop_front();
        }
        let bucket = buckets.back_mut().expect("just pushed");
        bucket.graded += 1;
        bucket.failed += u32::from(failed);
        bucket.latencies_ms.push(latency_ms);
    }

    /// Verdicts since start, by status.
    pub fn totals(&self) -> BTreeMap<String, u64> {
        self.totals.lock().expect("stats lock").clone()
    }

    /// The last minute's figures, and a per-second series of the last `points` seconds.
    pub fn snapshot(&self, points: i64) -> Snapshot {
        let now = Utc::now().timestamp();
        let buckets = self.buckets.lock().expect("stats lock");
        let minute: Vec<&Bucket> = buckets.iter().filter(|b| b.second > now - 60).collect();
        let graded: u64 = minute.iter().map(|b| u64::from(b.graded)).sum();
        let failed: u64 = minute.iter().map(|b| u64::from(b.failed)).sum();
        let mut latencies: Vec<u32> = minute
            .iter()
            .flat_map(|b| b.latencies_ms.iter().copied())
            .collect();
        latencies.sort_unstable();
        let points = points.clamp(1, WINDOW_SECS);
        let series = (now - points + 1..=now)
            .map(|t| match buckets.iter().find(|b| b.second == t) {
                Some(b) => {
                    let mut l = b.latencies_ms.clone();
                    l.sort_unstable();
                    Point {
                        t,
                        graded: b.graded,
                        p50_ms: percentile(&l, 0.50),
                        p95_ms: percentile(&l, 0.95),
                    }
                }
                None => Point {
                    t,
                    graded: 0,
                    p50_ms: None,
                    p95_ms: None,
                },
            })
            .collect();
        Snapshot {
            jobs_per_second: graded as f64 / 60.0,
            graded_last_minute: graded,
            failed_last_minute: failed,
            latency: Latency {
                p50_ms: percentile(&latencies, 0.50),
                p95_ms: percentile(&latencies, 0.95),
                p99_ms: percentile(&latencies, 0.99),
                max_ms: latencies.last().copied(),
            },
            series,
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), Some(50));
        assert_eq!(percentile(&v, 0.95), Some(95));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.99), Some(7));
    }

    #[test]
    fn snapshot_counts_the_last_minute() {
        let stats = GradingStats::default();
        for ms in [10, 20, 30, 40] {
            stats.record("accepted", ms);
        }
        stats.record("internal_error", 500);
        assert_eq!(stats.totals()["accepted"], 4);
        let s = stats.snapshot(5);
        assert_eq!(s.graded_last_minute, 5);
        assert_eq!(s.failed_last_minute, 1);
        assert_eq!(s.latency.p50_ms, Some(30));
        assert_eq!(s.latency.max_ms, Some(500));
        assert_eq!(s.series.len(), 5);
        assert_eq!(s.series.iter().map(|p| p.graded).sum::<u32>(), 5);
    }
}
