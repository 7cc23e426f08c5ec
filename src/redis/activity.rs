//! When users were last seen.

use ::redis::{AsyncCommands, RedisResult};

use super::RedisQueue;

impl RedisQueue {
    /// Records activity: a user's last-seen time only ever moves forward.
    pub async fn record_last_seen(&self, seen: &[(i64, i64)]) -> RedisResult<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let members: Vec<(i64, i64)> = seen.iter().map(|&(user, ms)| (ms, user)).collect();
        redis::cmd("ZADD")
            .arg(self.keys.last_seen())
            .arg("GT")
            .arg(members)
            .query_async(&mut self.conn())
            .await
    }

    /// A user's last-seen time (unix ms).
    pub async fn last_seen(&self, user_id: i64) -> RedisResult<Option<i64>> {
        self.conn().zscore(self.keys.last_seen(), user_id).await
    }

    /// Users seen since `since_ms` (unix ms).
    pub async fn active_since(&self, since_ms: i64) -> RedisResult<u64> {
        self.conn()
            .zcount(self.keys.last_seen(), since_ms, "+inf")
            .await
    }
}
