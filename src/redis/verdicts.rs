//! The verdict cache.

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

    pub async fn cache_verdict(
        &self,
        fingerprint: &str,
        outcome: &crate::job::Outcome,
    ) -> RedisResult<()> {
        let json = serde_json::to_string(outcome).expect("outcome serialises");
        self.conn()
            .set_ex(self.keys.verdict(fingerprint), json, self.verdict_ttl_secs)
            .await
    }
}
