//! The Postgres queue used while Redis is unavailable (crates.io-style `SKIP LOCKED` queue
//! with a claim lease).
use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use uuid::Uuid;

use super::{NewSubmission, Submission};
use crate::db::schema::fallback_submissions;
use crate::job::{Job, Outcome, Queue};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = fallback_submissions)]
pub struct FallbackSubmission {
    pub id: Uuid,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub claimed_until: Option<DateTime<Utc>>,
    pub attempts: i32,
}

/// A fallback job waiting to be claimed (never claimed, or its claim lapsed), and when it
/// became available: the order claims take them in (`fallback_submissions_available_idx`).
const WAITING: &str = "(claimed_until IS NULL OR claimed_until < $1)";
const AVAILABLE_AT: &str = "coalesce(claimed_until, created_at)";

/// The users at their limit, from the live leases alone: the future end of the available
/// index (a job's `created_at` may be ahead of this clock too, hence the filter).
/// $1: now, $2: how many to claim, $3: the limit.
const BUSY: &str = "busy AS MATERIALIZED (SELECT data->>'user_id' AS user_id \
     FROM fallback_submissions \
     WHERE coalesce(claimed_until, created_at) >= $1 AND claimed_until >= $1 \
     GROUP BY 1 HAVING count(*) >= $3)";

/// Of the first 64 waiting jobs, those of users below the limit, in order.
static CLAIM_AHEAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH {BUSY} SELECT id FROM (SELECT id, data->>'user_id' AS user_id, \
         {AVAILABLE_AT} AS at FROM fallback_submissions WHERE {WAITING} \
         ORDER BY {AVAILABLE_AT} LIMIT 64) w \
         WHERE NOT EXISTS (SELECT FROM busy WHERE busy.user_id = w.user_id) ORDER BY at"
    )
});

/// Each waiting user's first job (the users found one index probe each, in
/// `fallback_submissions_user_idx`; every job names its user), of users below the limit, in
/// order (64 at most). A user's jobs are read as a range of that index: with an equality,
/// the planner may walk the available index instead, through the flood.
static CLAIM_BY_USER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH RECURSIVE {BUSY}, users(user_id) AS ( \
           (SELECT data->>'user_id' FROM fallback_submissions \
            WHERE data->>'user_id' IS NOT NULL ORDER BY 1 LIMIT 1) \
           UNION ALL \
           SELECT (SELECT data->>'user_id' FROM fallback_submissions \
                   WHERE data->>'user_id' > users.user_id ORDER BY 1 LIMIT 1) \
           FROM users WHERE users.user_id IS NOT NULL) \
         SELECT first.id FROM users CROSS JOIN LATERAL ( \
           SELECT id, {AVAILABLE_AT} AS at FROM fallback_submissions \
           WHERE data->>'user_id' >= users.user_id AND data->>'user_id' <= users.user_id \
             AND {WAITING} \
           ORDER BY data->>'user_id', {AVAILABLE_AT} LIMIT 1) first \
         WHERE NOT EXISTS (SELECT FROM busy WHERE busy.user_id = users.user_id) \
         ORDER BY first.at LIMIT 64"
    )
});

impl FallbackSubmission {
    pub fn job(&self) -> Option<Job> {
        serde_json::from_value(self.data.clone()).ok()
    }

    /// Stores a submission and its fallback queue entry in one transaction; on a repeated
    /// `request_id` returns the earlier submission and stores nothing (`false`).
    pub fn store(conn: &mut PgConnection, job: &Job) -> QueryResult<(Submission, bool)> {
        conn.transaction(|conn| {
            let (stored, created) =
                Submission::insert_idempotent(conn, &NewSubmission::queued(job, Queue::Postgres))?;
            if created {
                diesel::insert_into(fallback_submissions::table)
                    .values((
                        fallback_submissions::id.eq(job.job_id),
                        fallback_submissions::data
                            .eq(serde_json::to_value(job).expect("job serialises")),
                        fallback_submissions::created_at.eq(job.submitted_at),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)?;
            }
            Ok((stored, created))
        })
    }

    /// Queues a job Postgres already has as a submission (Redis refused it after the insert).
    pub fn enqueue(conn: &mut PgConnection, job: &Job) -> QueryResult<usize> {
        diesel::insert_into(fallback_submissions::table)
            .values((
                fallback_submissions::id.eq(job.job_id),
                fallback_submissions::data.eq(serde_json::to_value(job).expect("job serialises")),
                fallback_submissions::created_at.eq(job.submitted_at),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
    }

    /// Claims up to `limit` unclaimed (or lapsed) jobs for `lease`, in the order they became
    /// available (a job handed back waits behind those already waiting). With `per_user`, a
    /// user's jobs are skipped while that many of theirs are claimed, so other users go first
    /// (callers take one job at a time this way: of the first 64 waiting jobs, fewer than
    /// `limit` may qualify while more would further on).
    pub fn claim(
        conn: &mut PgConnection,
        limit: i64,
        lease: chrono::Duration,
        per_user: Option<u32>,
    ) -> QueryResult<Vec<FallbackSubmission>> {
        use diesel::sql_types::{BigInt, Timestamptz};
        #[derive(QueryableByName)]
        struct Claimable {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
        }
        conn.transaction(|conn| {
            let now = Utc::now();
            // Whatever the planner estimates (the statistics of an ANALYZE from before an
            // outage), the queue is read through its indexes: a backlog of thousands is not
            // read and sorted for every claim. (A plan with a disabled step, when there is no
            // other, would look costly enough to be JIT-compiled: no JIT.) The settings end
            // with the transaction.
            conn.batch_execute("SET LOCAL enable_seqscan = off; SET LOCAL jit = off")?;
            let load = |conn: &mut PgConnection, sql: &str| {
                diesel::sql_query(sql)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(limit)
                    .bind::<BigInt, _>(i64::from(per_user.unwrap_or(0)))
                    .load::<Claimable>(conn)
                    .map(|c| c.into_iter().map(|c| c.id).collect::<Vec<Uuid>>())
            };
            let ids = if per_user.is_none() {
                load(
                    conn,
                    &format!(
                        "SELECT id FROM fallback_submissions WHERE {WAITING} \
                         ORDER BY {AVAILABLE_AT} LIMIT $2 FOR UPDATE SKIP LOCKED"
                    ),
                )?
            } else {
                // Claims take turns, or two executors could each start one more of a user's
                // jobs than the limit allows.
                diesel::sql_query(
                    "SELECT pg_advisory_xact_lock(hashtext('sqljudge.fallback.claim'))",
                )
                .execute(conn)?;
                // The first waiting jobs, in order, nearly always hold one of a user below
                // the limit; when they do not (one user's flood ahead), each waiting user's
                // first job, one index probe per user instead of a walk through the flood.
                let mut candidates = load(conn, &CLAIM_AHEAD)?;
                if candidates.is_empty() {
                    candidates = load(conn, &CLAIM_BY_USER)?;
                }
                // The first that no claim without a limit holds (one lookup, nearly always).
                let mut ids = Vec::new();
                for id in candidates {
                    if ids.len() as i64 == limit {
                        break;
                    }
                    let free = diesel::sql_query(format!(
                        "SELECT id FROM fallback_submissions WHERE {WAITING} AND id = $2 \
                         FOR UPDATE SKIP LOCKED"
                    ))
                    .bind::<Timestamptz, _>(now)
                    .bind::<diesel::sql_types::Uuid, _>(id)
                    .load::<Claimable>(conn)?;
                    ids.extend(free.into_iter().map(|c| c.id));
                }
                ids
            };
            // Locked by this transaction, and still waiting when locked (`FOR UPDATE` reads a
            // row changed meanwhile again).
            let mut claimed = diesel::update(
                fallback_submissions::table.filter(fallback_submissions::id.eq_any(&ids)),
            )
            .set((
                fallback_submissions::claimed_until.eq(now + lease),
                fallback_submissions::attempts.eq(fallback_submissions::attempts + 1),
            ))
            .returning(FallbackSubmission::as_returning())
            .get_results(conn)?;
            claimed.sort_by_key(|f| f.created_at);
            Ok(claimed)
        })
    }

    pub fn renew(conn: &mut PgConnection, id: Uuid, lease: chrono::Duration) -> QueryResult<usize> {
        diesel::update(fallback_submissions::table.find(id))
            .set(fallback_submissions::claimed_until.eq(Utc::now() + lease))
            .execute(conn)
    }

    /// Gives claims back. `counted`: the try was an attempt (the solution reached the
    /// sandbox), and the job waits behind the jobs waiting now; otherwise the failure was not
    /// the jobs', and they keep their places.
    pub fn release(conn: &mut PgConnection, ids: &[Uuid], counted: bool) -> QueryResult<usize> {
        let (available, uncounted) = if counted {
            (Some(Utc::now()), 0)
        } else {
            (None, 1)
        };
        diesel::update(fallback_submissions::table.filter(fallback_submissions::id.eq_any(ids)))
            .set((
                fallback_submissions::claimed_until.eq(available),
                fallback_submissions::attempts.eq(fallback_submissions::attempts - uncounted),
            ))
            .execute(conn)
    }

    /// Records the outcome and removes the job from the queue, atomically.
    pub fn complete(
        conn: &mut PgConnection,
        job: &Job,
        outcome: &Outcome,
    ) -> QueryResult<(Submission, bool)> {
        conn.transaction(|conn| {
            let recorded = Submission::record_result(conn, job, Queue::Postgres, outcome)?;
            diesel::delete(fallback_submissions::table.find(job.job_id)).execute(conn)?;
            Ok(recorded)
        })
    }

    /// Removes jobs recovery has handed to Redis.
    pub fn delete(conn: &mut PgConnection, ids: &[Uuid]) -> QueryResult<usize> {
        diesel::delete(fallback_submissions::table.filter(fallback_submissions::id.eq_any(ids)))
            .execute(conn)
    }

    pub fn pending(conn: &mut PgConnection) -> QueryResult<i64> {
        fallback_submissions::table.count().get_result(conn)
    }
}
