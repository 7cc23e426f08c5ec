//! The API response cache and its generations.

use ::redis::{AsyncCommands, RedisResult, Script};

use super::RedisQueue;

/// The key a cached API response lives under at the current generations, and the response.
const CACHED_RESPONSE: &str = r"
local g = redis.call('GET', KEYS[1]) or '0'
local s = redis.call('GET', KEYS[2]) or '0'
local k = ARGV[1] .. 'cache:api:' .. g .. '.' .. s .. ':' .. ARGV[2]
return {k, redis.call('GET', k)}";

impl RedisQueue {
    /// For the API response cache: the key `key` of `scope` has at the current generations, and
    /// the response stored there.
    pub async fn cached_response(
        &self,
        scope: &str,
        key: &str,
    ) -> RedisResult<(String, Option<String>)> {
        Script::new(CACHED_RESPONSE)
            .key(self.keys.api_generation())
            .key(self.keys.api_scope_generation(scope))
            .arg(self.keys.prefix())
            .arg(format!("{scope}:{key}"))
            .invoke_async(&mut self.conn())
            .await
    }

    pub async fn store_response(&self, key: &str, body: &str, ttl_secs: u64) -> RedisResult<()> {
        self.conn().set_ex(key, body, ttl_secs.max(1)).await
    }

    /// Invalidates the cached responses of these scopes (or all of them, for `None`).
    pub async fn bump_generations(&self, scopes: Option<&[String]>) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        match scopes {
            None => {
                pipe.incr(self.keys.api_generation(), 1).ignore();
            }
            Some(scopes) => {
                for scope in scopes {
                    pipe.incr(self.keys.api_scope_generation(scope), 1).ignore();
                }
            }
        }
        pipe.query_async(&mut self.conn()).await
    }
}
