//! Leaderboards in Redis sorted sets (`leaderboard:global`, `leaderboard:topic:{topic}`,
//! members `user:{id}`). A member's score encodes the number of distinct problems solved and,
//! for ties, who reached it first: `solved * 1e10 + (9_999_999_999 - reached_at_unix)`, exact
//! in an f64 up to 900,000 problems. Equal scores (same count, same second) fall back to
//! Redis's order, by member name descending; the Postgres queries use the same order.
use std::collections::HashMap;

use ::redis::{AsyncCommands, RedisResult};
use chrono::{DateTime, Utc};

use super::RedisQueue;
use crate::db::models::Standing;

const SCALE: f64 = 1e10;
const LATEST: i64 = 9_999_999_999;

fn encode(solved: i64, reached_at: DateTime<Utc>) -> f64 {
    solved as f64 * SCALE + (LATEST - reached_at.timestamp()) as f64
}

fn solved(encoded: f64) -> i64 {
    (encoded / SCALE).floor() as i64
}

fn member(user_id: i64) -> String {
    format!("user:{user_id}")
}

fn user_of(member: &str) -> Option<i64> {
    member.strip_prefix("user:")?.parse().ok()
}

impl RedisQueue {
    /// Sets one user's place on the global board and every topic board to what `standings` say:
    /// absolute values (a replay sets the same again), and off the boards where they have none.
    pub async fn set_standings(
        &self,
        user_id: i64,
        standings: &[Standing],
        topics: &[String],
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let boards = std::iter::once(None).chain(topics.iter().map(|t| Some(t.as_str())));
        for topic in boards {
            let board = self.keys.board(topic);
            match standings.iter().find(|s| s.topic.as_deref() == topic) {
                Some(s) => pipe.zadd(board, member(user_id), encode(s.score, s.reached_at)),
                None => pipe.zrem(board, member(user_id)),
            }
            .ignore();
        }
        pipe.query_async(&mut self.conn()).await
    }

    /// Replaces every board with `standings`: written beside the live boards, then swapped in.
    pub async fn replace_boards(&self, standings: &[Standing]) -> RedisResult<usize> {
        let mut boards: HashMap<String, Vec<(f64, String)>> = HashMap::new();
        for s in standings {
            boards
                .entry(self.keys.board(s.topic.as_deref()))
                .or_default()
                .push((encode(s.score, s.reached_at), member(s.user_id)));
        }
        // Always swap the global board, even to empty.
        boards.entry(self.keys.board(None)).or_default();
        let mut conn = self.conn();
        for (board, members) in &boards {
            let staging = format!("{board}:rebuilding");
            let _: () = conn.del(&staging).await?;
            for chunk in members.chunks(10_000) {
                let _: () = conn.zadd_multiple(&staging, chunk).await?;
            }
        }
        let mut swap = redis::pipe();
        swap.atomic();
        for (board, members) in &boards {
            if members.is_empty() {
                swap.del(board).ignore();
            } else {
                swap.rename(format!("{board}:rebuilding"), board).ignore();
            }
        }
        let _: () = swap.query_async(&mut conn).await?;
        Ok(boards.len())
    }

    /// A page of a board: (user id, solved) best first, and the board's size.
    pub async fn board_page(
        &self,
        topic: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> RedisResult<(Vec<(i64, i64)>, i64)> {
        let board = self.keys.board(topic);
        let (entries, total): (Vec<(String, f64)>, i64) = redis::pipe()
            // Saturating: any offset a client sends is a valid (empty) page, not an overflow.
            .zrevrange_withscores(
                &board,
                offset as isize,
                offset.saturating_add(limit - 1) as isize,
            )
            .zcard(&board)
            .query_async(&mut self.conn())
            .await?;
        let rows = entries
            .into_iter()
            .filter_map(|(m, score)| Some((user_of(&m)?, solved(score))))
            .collect();
        Ok((rows, total))
    }

    /// A user's (rank, solved) on each board named, None where they have no solve.
    pub async fn board_places(
        &self,
        user_id: i64,
        topics: &[Option<&str>],
    ) -> RedisResult<Vec<Option<(i64, i64)>>> {
        let mut pipe = redis::pipe();
        for topic in topics {
            let board = self.keys.board(*topic);
            pipe.zrevrank(&board, member(user_id))
                .zscore(&board, member(user_id));
        }
        let answers: Vec<Option<f64>> = pipe.query_async(&mut self.conn()).await?;
        Ok(answers
            .chunks(2)
            .map(|pair| match pair {
                [Some(rank), Some(score)] => Some((*rank as i64 + 1, solved(*score))),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_solved_wins_then_who_got_there_first() {
        let t = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        assert!(encode(3, t(100)) > encode(2, t(0)));
        assert!(encode(2, t(0)) > encode(2, t(1)));
        assert_eq!(solved(encode(123_456, t(5))), 123_456);
        assert_eq!(user_of(&member(42)), Some(42));
    }
}
