//! Supervised actors: each file holds one actor and its messages.
//! `FallbackActor` (Postgres queue during Redis outages) and `LeaderboardActor` plug in beside
//! these: `SubmissionActor` is the one place that routes a submission.
pub mod executor;
pub mod fallback;
pub mod health;
pub mod leaderboard;
pub mod redis_queue;
pub mod submission;
