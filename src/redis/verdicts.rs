//! The verdict cache (written where a job completes: `RedisQueue::complete_all`).

use ::redis::{AsyncCommands, RedisResult};

use super::RedisQueue;

impl RedisQueue {
    pub async fn cached_verdict(
        &self,
        fingerprint: &str,
    ) -> RedisResult<Option<crate::job::Outcome>> {
        let json: Option<String> = self.conn().get(self.keys.verdict(fingerprint)).await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }
}
