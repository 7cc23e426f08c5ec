//! Sessions of logged-in callers, and their single-use WebSocket tickets.

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

    /// A session and the value of one more key, in one round trip (a submit reads its
    /// solution's verdict cache entry along).
    pub async fn session_along<T: serde::de::DeserializeOwned>(
        &self,
        token_hash: &str,
        key: &str,
    ) -> RedisResult<(Option<T>, Option<String>)> {
        let (json, along): (Option<String>, Option<String>) = ::redis::cmd("MGET")
            .arg(self.keys.session(token_hash))
            .arg(key)
            .query_async(&mut self.conn())
            .await?;
        Ok((json.and_then(|j| serde_json::from_str(&j).ok()), along))
    }

    pub async fn drop_sessions(&self, token_hashes: &[String]) -> RedisResult<()> {
        let keys: Vec<String> = token_hashes.iter().map(|h| self.keys.session(h)).collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.conn().del(keys).await
    }

    /// Stores a WebSocket ticket's grant (by the ticket's hash) for `ttl_secs`.
    pub async fn store_ticket(
        &self,
        ticket_hash: &str,
        json: &str,
        ttl_secs: u64,
    ) -> RedisResult<()> {
        self.conn()
            .set_ex(self.keys.ws_ticket(ticket_hash), json, ttl_secs.max(1))
            .await
    }

    /// Takes a WebSocket ticket's grant: it is gone once read.
    pub async fn take_ticket(&self, ticket_hash: &str) -> RedisResult<Option<String>> {
        redis::cmd("GETDEL")
            .arg(self.keys.ws_ticket(ticket_hash))
            .query_async(&mut self.conn())
            .await
    }
}
