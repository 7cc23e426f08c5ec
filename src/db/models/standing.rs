//! Leaderboard standings: each user's score on every board (`topic` None is the global board)
//! and when they reached it, kept in the `standings` table in step with `first_solves`.
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};

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
    pub user_id: i64,
    #[diesel(sql_type = Text)]
    pub username: String,
    #[diesel(sql_type = BigInt)]
    pub score: i64,
}

const COLUMNS: &str = "user_id, nullif(topic, '') AS topic, score::bigint AS score, reached_at";

impl Standing {
    /// Recomputes a user's standings from their first solves (in the caller's transaction).
    pub fn refresh_user(conn: &mut PgConnection, user_id: i64) -> QueryResult<()> {
        diesel::sql_query("DELETE FROM standings WHERE user_id = $1")
            .bind::<BigInt, _>(user_id)
            .execute(conn)?;
        diesel::sql_query(
            "INSERT INTO standings (user_id, topic, score, reached_at, reached_sec) \
             SELECT fs.user_id, coalesce(p.topic, ''), count(*), max(fs.solved_at), \
                    extract(epoch FROM max(fs.solved_at))::bigint \
             FROM first_solves fs JOIN problems p ON p.id = fs.problem_id WHERE fs.user_id = $1 \
             GROUP BY GROUPING SETS ((fs.user_id), (fs.user_id, p.topic))",
        )
        .bind::<BigInt, _>(user_id)
        .execute(conn)?;
        Ok(())
    }

    /// Every standing on every board (to rebuild the Redis boards).
    pub fn all(conn: &mut PgConnection) -> QueryResult<Vec<Standing>> {
        diesel::sql_query(format!("SELECT {COLUMNS} FROM standings")).load(conn)
    }

    pub fn of_user(conn: &mut PgConnection, user_id: i64) -> QueryResult<Vec<Standing>> {
        diesel::sql_query(format!(
            "SELECT {COLUMNS} FROM standings WHERE user_id = $1"
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

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl RankedRow {
    /// A page of a board (global when `topic` is None), in board order, and the board's size.
    pub fn page(
        conn: &mut PgConnection,
        topic: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> QueryResult<(Vec<RankedRow>, i64)> {
        let topic = topic.unwrap_or("");
        // The offset walks the board index alone; only the page's rows meet `users`.
        let rows = diesel::sql_query(
            "SELECT s.user_id, u.username, s.score::bigint AS score FROM ( \
                 SELECT user_id, score, reached_sec, member FROM standings WHERE topic = $1 \
                 ORDER BY score DESC, reached_sec, member DESC LIMIT $2 OFFSET $3) s \
             JOIN users u ON u.id = s.user_id ORDER BY s.score DESC, s.reached_sec, s.member DESC",
        )
        .bind::<Text, _>(topic)
        .bind::<BigInt, _>(limit)
        .bind::<BigInt, _>(offset)
        .load(conn)?;
        let total = diesel::sql_query("SELECT count(*) AS n FROM standings WHERE topic = $1")
            .bind::<Text, _>(topic)
            .get_result::<Count>(conn)?
            .n;
        Ok((rows, total))
    }

    /// A user's (rank, score) on a board, if they have solved anything there.
    pub fn of_user(
        conn: &mut PgConnection,
        topic: Option<&str>,
        user_id: i64,
    ) -> QueryResult<Option<(i64, i64)>> {
        #[derive(QueryableByName)]
        struct Place {
            #[diesel(sql_type = BigInt)]
            rank: i64,
            #[diesel(sql_type = BigInt)]
            score: i64,
        }
        diesel::sql_query(
            "SELECT 1 + (SELECT count(*) FROM standings o WHERE o.topic = s.topic AND \
                (o.score > s.score OR (o.score = s.score AND (o.reached_sec < s.reached_sec \
                 OR (o.reached_sec = s.reached_sec AND o.member > s.member))))) AS rank, s.score::bigint AS score \
             FROM standings s WHERE s.topic = $1 AND s.user_id = $2",
        )
        .bind::<Text, _>(topic.unwrap_or(""))
        .bind::<BigInt, _>(user_id)
        .get_result::<Place>(conn)
        .optional()
        .map(|p| p.map(|p| (p.rank, p.score)))
    }
}
