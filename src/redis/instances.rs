//! Each process's report (role, executors), so that any instance's `/queue/status` shows the
//! whole deployment: API processes grade nothing themselves when workers run apart.

use ::redis::{AsyncCommands, RedisResult};
use serde::{Deserialize, Serialize};

use super::RedisQueue;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceReport {
    pub id: String,
    /// `all`, `api` or `worker`.
    pub role: String,
    pub executors: usize,
    pub busy: usize,
    pub quarantined: usize,
    /// When it was written (unix ms).
    pub at: i64,
}

impl RedisQueue {
    pub async fn report_instance(&self, report: &InstanceReport) -> RedisResult<()> {
        let json = serde_json::to_string(report).expect("a report serialises");
        self.conn()
            .hset(self.keys.instances(), &report.id, json)
            .await
    }

    /// The reports written since `since_ms`; older ones (a process that stopped or died) are
    /// removed.
    pub async fn instances(&self, since_ms: i64) -> RedisResult<Vec<InstanceReport>> {
        let all: Vec<(String, String)> = self.conn().hgetall(self.keys.instances()).await?;
        let (mut live, mut gone) = (Vec::new(), Vec::new());
        for (id, json) in all {
            match serde_json::from_str::<InstanceReport>(&json) {
                Ok(r) if r.at >= since_ms => live.push(r),
                _ => gone.push(id),
            }
        }
        if !gone.is_empty() {
            let _: RedisResult<()> = self.conn().hdel(self.keys.instances(), gone).await;
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }
}
