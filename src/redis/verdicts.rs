//! The verdict cache (written where a job completes: `RedisQueue::complete_all`).

use ::redis::{AsyncCommands, RedisResult};

use super::RedisQueue;

impl RedisQueue {
    pub async fn cached_verdict(
        &self,
        fingerprint: &str,
    ) -> RedisResult<Option<crate::job::Outcome>> {
        let json: Option<String> = self.conn().get(self.keys.verdict(fingerprint)).await?;
        Ok(json.as_deref().and_then(verdict))
    }
}

/// A verdict cache entry's outcome (None: one this version cannot read).
pub fn verdict(json: &str) -> Option<crate::job::Outcome> {
    serde_json::from_str(json).ok()
}
