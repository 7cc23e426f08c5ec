//! Final results, and results graded while Postgres could not record them.

use ::redis::{AsyncCommands, RedisResult};
use uuid::Uuid;

use super::RedisQueue;
use crate::job::Job;

/// A graded job whose record could not reach Postgres yet.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Unpersisted {
    pub job: Job,
    pub outcome: crate::job::Outcome,
}

impl RedisQueue {
    pub async fn unpersisted(&self) -> RedisResult<Vec<Unpersisted>> {
        let all: std::collections::HashMap<String, String> =
            self.conn().hgetall(self.keys.unpersisted()).await?;
        Ok(all
            .values()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect())
    }

    pub async fn unpersisted_one(&self, job_id: Uuid) -> RedisResult<Option<Unpersisted>> {
        let json: Option<String> = self
            .conn()
            .hget(self.keys.unpersisted(), job_id.to_string())
            .await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    pub async fn persisted(&self, job_id: Uuid) -> RedisResult<()> {
        self.conn()
            .hdel(self.keys.unpersisted(), job_id.to_string())
            .await
    }

    /// Makes a result readable from Redis (a submission graded without a queue).
    pub async fn publish_result(&self, job_id: Uuid, result_json: &str) -> RedisResult<()> {
        self.conn()
            .set_ex(self.keys.result(job_id), result_json, self.result_ttl_secs)
            .await
    }

    pub async fn result(&self, job_id: Uuid) -> RedisResult<Option<String>> {
        self.conn().get(self.keys.result(job_id)).await
    }
}
