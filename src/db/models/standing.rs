//! Leaderboard standings computed from the first-solve record, the source of every score.
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};

/// A user's score on one board (global when `topic` is None) and when they reached it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Standing {
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub topic: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub score: i64,
    #[diesel(sql_type = Timestamptz)]
    pub reached_at: DateTime<Utc>,
}

/// One row of a leaderboard page served from Postgres.
#[derive(Debug, Clone, QueryableByName)]
pub struct RankedRow {
    #[diesel(sql_type = BigInt)]
    pub rank: i64,
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = Text)]
    pub username: String,
    #[diesel(sql_type = BigInt)]
    pub score: i64,
    #[diesel(sql_type = BigInt)]
    pub total: i64,
}

/// Board order: more problems first; on a tie, who reached the score first; then the member
/// name descending (the order Redis gives equal scores in ZREVRANGE).
const BOARD: &str =
    "SELECT fs.user_id, p.topic, count(*) AS score, max(fs.solved_at) AS reached_at \
     FROM first_solves fs JOIN problems p ON p.id = fs.problem_id";
const ORDER: &str = "ORDER BY score DESC, reached_at ASC, 'user:' || user_id DESC";

impl Standing {
    /// Every user's global and per-topic standing (`GROUPING SETS`: one pass).
    pub fn all(conn: &mut PgConnection) -> QueryResult<Vec<Standing>> {
        diesel::sql_query(format!(
            "{BOARD} GROUP BY GROUPING SETS ((fs.user_id), (fs.user_id, p.topic))"
        ))
        .load(conn)
    }

    /// One user's global and per-topic standings.
    pub fn of_user(conn: &mut PgConnection, user_id: i64) -> QueryResult<Vec<Standing>> {
        diesel::sql_query(format!(
            "{BOARD} WHERE fs.user_id = $1 GROUP BY GROUPING SETS ((fs.user_id), (fs.user_id, p.topic))"
        ))
        .bind::<BigInt, _>(user_id)
        .load(conn)
    }

    /// Users whose standing changed at or after `since` (to re-apply after a rebuild).
    pub fn changed_since(conn: &mut PgConnection, since: DateTime<Utc>) -> QueryResult<Vec<i64>> {
        use crate::db::schema::first_solves;
        first_solves::table
            .filter(first_solves::solved_at.ge(since))
            .select(first_solves::user_id)
            .distinct()
            .load(conn)
    }
}

impl RankedRow {
    /// A page of a board (global when `topic` is None), ranked, with the board's size.
    pub fn page(
        conn: &mut PgConnection,
        topic: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> QueryResult<Vec<RankedRow>> {
        Self::ranked(conn, topic, None, limit, offset)
    }

    /// One user's row on a board, if they have solved anything there.
    pub fn of_user(
        conn: &mut PgConnection,
        topic: Option<&str>,
        user_id: i64,
    ) -> QueryResult<Option<RankedRow>> {
        Ok(Self::ranked(conn, topic, Some(user_id), 1, 0)?.pop())
    }

    fn ranked(
        conn: &mut PgConnection,
        topic: Option<&str>,
        user_id: Option<i64>,
        limit: i64,
        offset: i64,
    ) -> QueryResult<Vec<RankedRow>> {
        diesel::sql_query(format!(
            "WITH board AS ( \
               SELECT fs.user_id, count(*) AS score, max(fs.solved_at) AS reached_at \
               FROM first_solves fs JOIN problems p ON p.id = fs.problem_id \
               WHERE $1::text IS NULL OR p.topic = $1 GROUP BY fs.user_id), \
             ranked AS (SELECT *, row_number() OVER ({ORDER}) AS rank, count(*) OVER () AS total FROM board) \
             SELECT r.rank, r.user_id, u.username, r.score, r.total FROM ranked r JOIN users u ON u.id = r.user_id \
             WHERE $2::bigint IS NULL OR r.user_id = $2 \
             ORDER BY r.rank LIMIT $3 OFFSET $4"
        ))
        .bind::<Nullable<Text>, _>(topic)
        .bind::<Nullable<BigInt>, _>(user_id)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(offset)
        .load(conn)
    }
}
