//! Sessions of logged-in callers.

use ::redis::{AsyncCommands, RedisResult};

use super::RedisQueue;

impl RedisQueue {
    pub async fn cache_session<T: serde::Serialize>(
        &self,
        token_hash: &str,
        session: &T,
        ttl_secs: u64,
    ) -> RedisResult<()> {
        let json = serde_json::to_string(session).expect("session serialises");
        self.conn()
            .set_ex(self.keys.session(token_hash), json, ttl_secs.max(1))
            .await
    }

    pub async fn session<T: serde::de::DeserializeOwned>(
        &self,
        token_hash: &str,
    ) -> RedisResult<Option<T>> {
        let json: Option<String> = self.conn().get(self.keys.session(token_hash)).await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    pub async fn drop_sessions(&self, token_hashes: &[String]) -> RedisResult<()> {
        let keys: Vec<String> = token_hashes.iter().map(|h| self.keys.session(h)).collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.conn().del(keys).await
    }
}
