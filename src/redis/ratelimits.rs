//! Rate-limit state shared by every instance (see `ratelimit`).
use ::redis::{RedisResult, Script};

use super::RedisQueue;

/// Returns 0 when allowed (and records it), else the milliseconds until it would be.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000)
return 0";

impl RedisQueue {
    /// Counts a request against the GCRA limit `key` (`ratelimit:{name}:{subject}`): 0 when
    /// allowed, else the milliseconds until it would be.
    pub async fn gcra(&self, key: &str, interval_ms: u64, tolerance_ms: u64) -> RedisResult<u64> {
        Script::new(GCRA)
            .key(self.keys.rate_limit(key))
            .arg(interval_ms)
            .arg(tolerance_ms)
            .invoke_async(&mut self.conn())
            .await
    }
}
