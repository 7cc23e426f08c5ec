use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::Standing;
use crate::db::schema::{fallback_submissions, first_solves, submissions};
use crate::job::{Job, Outcome, Queue, Status};

const PENDING: [Status; 2] = [Status::Queued, Status::Running];

/// `PENDING` as an SQL condition whose constants stand in the text: a plan that PostgreSQL
/// caches for any parameter values (a generic one) can then still use
/// `submissions_pending_idx`, whose predicate it must prove from them.
static PENDING_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let [queued, running] = PENDING.map(|s| s.as_str());
    format!("submissions.status IN ('{queued}', '{running}')")
});

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = submissions)]
pub struct Submission {
    pub id: Uuid,
    pub user_id: i64,
    pub problem_id: i64,
    pub sql_query: String,
    #[diesel(embed)]
    pub outcome: Outcome,
    pub cached: bool,
    pub queue: Queue,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub graded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = submissions)]
pub struct NewSubmission<'a> {
    pub id: Uuid,
    pub user_id: i64,
    pub problem_id: i64,
    pub sql_query: &'a str,
    pub status: Status,
    pub queue: Queue,
    pub request_id: Option<&'a str>,
    pub created_at: DateTime<Utc>,
}

impl<'a> NewSubmission<'a> {
    pub fn queued(job: &'a Job, queue: Queue) -> NewSubmission<'a> {
        NewSubmission {
            id: job.job_id,
            user_id: job.user_id,
            problem_id: job.problem_id,
            sql_query: &job.sql,
            status: Status::Queued,
            queue,
            request_id: job.request_id.as_deref(),
            created_at: job.submitted_at,
        }
    }
}

/// `Submission::insert_new`'s statement: one array per column, so that its text is the same
/// for any number of rows and each connection prepares it once. Diesel sends a multi-row
/// `VALUES` list unprepared, and PostgreSQL parses and plans it afresh, in time that grows
/// with its rows, for every batch.
struct InsertNew<'a> {
    id: Vec<Uuid>,
    user_id: Vec<i64>,
    problem_id: Vec<i64>,
    sql_query: Vec<&'a str>,
    status: Vec<Status>,
    queue: Vec<Queue>,
    request_id: Vec<Option<&'a str>>,
    created_at: Vec<DateTime<Utc>>,
}

impl<'a> InsertNew<'a> {
    fn of(rows: &[NewSubmission<'a>]) -> Self {
        fn each<'a, T>(rows: &[NewSubmission<'a>], f: impl Fn(&NewSubmission<'a>) -> T) -> Vec<T> {
            rows.iter().map(f).collect()
        }
        InsertNew {
            id: each(rows, |r| r.id),
            user_id: each(rows, |r| r.user_id),
            problem_id: each(rows, |r| r.problem_id),
            sql_query: each(rows, |r| r.sql_query),
            status: each(rows, |r| r.status),
            queue: each(rows, |r| r.queue),
            request_id: each(rows, |r| r.request_id),
            created_at: each(rows, |r| r.created_at),
        }
    }
}

impl diesel::query_builder::QueryId for InsertNew<'_> {
    type QueryId = InsertNew<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for InsertNew<'_> {
    type SqlType = diesel::sql_types::Uuid;
}

impl RunQueryDsl<PgConnection> for InsertNew<'_> {}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for InsertNew<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Nullable, Text, Timestamptz};
        // Rows go in in the arrays' order (callers sort them: see `start_inserts`).
        out.push_sql(
            "INSERT INTO submissions (id, user_id, problem_id, sql_query, status, queue, \
             request_id, created_at) SELECT * FROM unnest(",
        );
        out.push_bind_param::<Array<diesel::sql_types::Uuid>, _>(&self.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.user_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.problem_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.sql_query)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.status)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.queue)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.request_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.created_at)?;
        out.push_sql(") ON CONFLICT DO NOTHING RETURNING id");
        Ok(())
    }
}

/// A live job's verdict, for `Submission::record_graded`.
pub struct Graded {
    pub job: Job,
    pub outcome: Outcome,
    /// The version of the problem it was graded against (`None`: whichever is stored).
    pub version: Option<DateTime<Utc>>,
    /// When its grading ended: its `graded_at`, however long it then waits for its batch.
    pub at: DateTime<Utc>,
}

impl Submission {
    /// Inserts a queued submission. When the same user already used `request_id` within 24 h
    /// (or the job id exists), returns that submission and `false` instead.
    pub fn insert_idempotent(
        conn: &mut PgConnection,
        new: &NewSubmission,
    ) -> QueryResult<(Submission, bool)> {
        conn.transaction(|conn| {
            if let Some(request_id) = new.request_id {
                // Keys are only promised for 24 h: release an older one so it can be reused.
                diesel::update(
                    submissions::table
                        .filter(submissions::user_id.eq(new.user_id))
                        .filter(submissions::request_id.eq(request_id))
                        .filter(
                            submissions::created_at.lt(Utc::now() - chrono::Duration::hours(24)),
                        ),
                )
                .set(submissions::request_id.eq(None::<String>))
                .execute(conn)?;
            }
            let inserted = diesel::insert_into(submissions::table)
                .values(new)
                .on_conflict_do_nothing()
                .returning(Submission::as_returning())
                .get_result(conn)
                .optional()?;
            if let Some(s) = inserted {
                return Ok((s, true));
            }
            let existing = match new.request_id {
                Some(request_id) => submissions::table
                    .filter(submissions::user_id.eq(new.user_id))
                    .filter(submissions::request_id.eq(request_id))
                    .select(Submission::as_select())
                    .first(conn)
                    .optional()?,
                None => None,
            };
            match existing {
                Some(s) => Ok((s, false)),
                None => submissions::table
                    .find(new.id)
                    .select(Submission::as_select())
                    .first(conn)
                    .map(|s| (s, false)),
            }
        })
    }

    /// Inserts many queued submissions in one statement (one commit); returns the ids it
    /// inserted. One left out exists already (its id, or its user's `request_id`): see
    /// `insert_idempotent`.
    pub fn insert_new(conn: &mut PgConnection, new: &[NewSubmission]) -> QueryResult<Vec<Uuid>> {
        InsertNew::of(new).load(conn)
    }

    pub fn find(conn: &mut PgConnection, id: Uuid) -> QueryResult<Option<Submission>> {
        submissions::table
            .find(id)
            .select(Submission::as_select())
            .first(conn)
            .optional()
    }

    /// Records a grading outcome exactly once. A submission that already has a final status
    /// keeps it (a duplicate delivery or a replay changes nothing); the row is created when the
    /// job was accepted while Postgres was unreachable. Returns the stored submission and
    /// whether this call recorded the user's first solve of the problem.
    pub fn record_result(
        conn: &mut PgConnection,
        job: &Job,
        queue: Queue,
        outcome: &Outcome,
    ) -> QueryResult<(Submission, bool)> {
        conn.transaction(|conn| Self::record_in(conn, job, queue, outcome))
    }

    /// Records the verdicts of live jobs in one transaction, each like `record_result`; one
    /// graded against a version of its problem (`Some`) only if that is still the stored
    /// version (else `None` for it, and nothing of it changed: grade it again).
    pub fn record_graded(
        conn: &mut PgConnection,
        graded: &[Graded],
    ) -> QueryResult<Vec<Option<(Submission, bool)>>> {
        use crate::db::schema::problems;
        conn.transaction(|conn| {
            let ids: Vec<i64> = graded.iter().map(|g| g.job.problem_id).collect();
            // Locked until the verdicts are in: a change of a problem waits for them.
            let versions: std::collections::HashMap<i64, DateTime<Utc>> = problems::table
                .filter(problems::id.eq_any(ids))
                .select((problems::id, problems::updated_at))
                .for_share()
                .load(conn)?
                .into_iter()
                .collect();
            let current = |g: &Graded| {
                (g.version).is_none_or(|v| versions.get(&g.job.problem_id) == Some(&v))
            };
            // The pending rows, nearly all of them, in one statement; the rest one by one.
            let fresh: Vec<&Graded> = graded.iter().filter(|g| current(g)).collect();
            let mut updated: std::collections::HashMap<Uuid, Submission> =
                Self::record_pending(conn, &fresh)?
                    .into_iter()
                    .map(|s| (s.id, s))
                    .collect();
            let first_solves = Self::first_solves(conn, updated.values())?;
            graded
                .iter()
                .map(|g| {
                    if !current(g) {
                        return Ok(None);
                    }
                    Ok(Some(match updated.remove(&g.job.job_id) {
                        Some(stored) => {
                            let first = first_solves.contains(&stored.id);
                            (stored, first)
                        }
                        None => Self::record_in(conn, &g.job, Queue::Redis, &g.outcome)?,
                    }))
                })
                .collect()
        })
    }

    /// Records the outcomes of submissions still pending, in one statement; returns the rows
    /// it changed (the others are recorded already, or missing).
    fn record_pending(conn: &mut PgConnection, graded: &[&Graded]) -> QueryResult<Vec<Submission>> {
        use diesel::sql_types::{Array, Int2, Int4, Jsonb, Nullable, Text, Timestamptz};
        if graded.is_empty() {
            return Ok(Vec::new());
        }
        // One array per column, in the rows' order.
        fn each<T>(graded: &[&Graded], f: impl Fn(&Outcome) -> T) -> Vec<T> {
            graded.iter().map(|g| f(&g.outcome)).collect()
        }
        // The columns by name, as diesel selects them: the statement is prepared once per
        // connection, and a `*` that a migration widens would fail it while this process runs.
        static RETURNING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            use diesel::query_builder::{QueryBuilder, QueryFragment};
            let mut sql = diesel::pg::PgQueryBuilder::default();
            QueryFragment::<diesel::pg::Pg>::to_sql(
                &Submission::as_select(),
                &mut sql,
                &diesel::pg::Pg,
            )
            .expect("a column list");
            sql.finish()
        });
        // Each row by its primary key, whatever the planner estimates. Its estimates go stale
        // in a burst: the statement's generic plan, cached per connection, was made when the
        // table was small (a scan of the table), and the statistics of the last ANALYZE say
        // pending rows are few (a scan of `submissions_pending_idx`), while thousands are
        // queued. Either plan reads the whole backlog for every batch (measured: 0.7 ms a row
        // instead of 0.04). So no scan of the table and no hash or merge join while it is
        // planned (till the transaction ends; its other statements are key lookups too), and
        // the status test wrapped in `IS TRUE` (the same on a NOT NULL column) cannot match the
        // pending index's predicate. That plan fits any batch: planned once, not per batch.
        diesel::connection::SimpleConnection::batch_execute(
            conn,
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; \
             SET LOCAL enable_mergejoin = off; SET LOCAL plan_cache_mode = force_generic_plan",
        )?;
        let update = diesel::sql_query(format!(
            "UPDATE submissions SET status = x.status, rows_returned = x.rows_returned, \
               expected_rows = x.expected_rows, duration_ms = x.duration_ms, \
               message = x.message, sqlstate = x.sqlstate, diff = x.diff, reason = x.reason, \
               failed_test = x.failed_test, counterexample = x.counterexample, \
               graded_at = x.graded_at, cached = false \
             FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) AS x(id, status, \
               rows_returned, expected_rows, duration_ms, message, sqlstate, diff, reason, \
               failed_test, counterexample, graded_at) \
             WHERE submissions.id = x.id AND ({pending}) IS TRUE \
             RETURNING {returning}",
            pending = *PENDING_SQL,
            returning = *RETURNING
        ))
        .bind::<Array<diesel::sql_types::Uuid>, _>(
            graded.iter().map(|g| g.job.job_id).collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(each(graded, |o| o.status))
        .bind::<Array<Nullable<Int4>>, _>(each(graded, |o| o.rows_returned))
        .bind::<Array<Nullable<Int4>>, _>(each(graded, |o| o.expected_rows))
        .bind::<Array<Nullable<Int4>>, _>(each(graded, |o| o.duration_ms))
        .bind::<Array<Nullable<Text>>, _>(each(graded, |o| o.message.clone()))
        .bind::<Array<Nullable<Text>>, _>(each(graded, |o| o.sqlstate.clone()))
        .bind::<Array<Nullable<Jsonb>>, _>(each(graded, |o| o.diff.clone()))
        .bind::<Array<Nullable<Text>>, _>(each(graded, |o| o.reason))
        .bind::<Array<Nullable<Int2>>, _>(each(graded, |o| o.failed_test))
        .bind::<Array<Nullable<Jsonb>>, _>(each(graded, |o| o.counterexample.clone()))
        .bind::<Array<Timestamptz>, _>(graded.iter().map(|g| g.at).collect::<Vec<_>>());
        crate::db::Prepared(update).load(conn)
    }

    /// Records the first solves among `stored` (accepted submissions whose user had not
    /// solved the problem yet), in one statement, and refreshes those users' standings;
    /// returns the submissions that were first solves.
    fn first_solves<'a>(
        conn: &mut PgConnection,
        stored: impl Iterator<Item = &'a Submission>,
    ) -> QueryResult<std::collections::HashSet<Uuid>> {
        use diesel::sql_types::{Array, BigInt, Timestamptz};
        // The earliest submission of a user's solutions is the first solve (rows go in this
        // order; the later ones conflict). One order in every transaction: two that meet wait
        // for each other, never in a cycle.
        let mut accepted: Vec<&Submission> = stored
            .filter(|s| s.outcome.status == Status::Accepted)
            .collect();
        if accepted.is_empty() {
            return Ok(Default::default());
        }
        accepted.sort_by_key(|s| (s.user_id, s.problem_id, s.created_at, s.id));
        #[derive(QueryableByName)]
        struct Solved {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            submission_id: Uuid,
            #[diesel(sql_type = BigInt)]
            user_id: i64,
        }
        let insert = diesel::sql_query(
            "INSERT INTO first_solves (user_id, problem_id, submission_id, solved_at) \
             SELECT u, p, s, t FROM unnest($1, $2, $3, $4) WITH ORDINALITY AS x(u, p, s, t, n) \
             ORDER BY n ON CONFLICT DO NOTHING RETURNING submission_id, user_id",
        )
        .bind::<Array<BigInt>, _>(accepted.iter().map(|s| s.user_id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(accepted.iter().map(|s| s.problem_id).collect::<Vec<_>>())
        .bind::<Array<diesel::sql_types::Uuid>, _>(
            accepted.iter().map(|s| s.id).collect::<Vec<_>>(),
        )
        // Solved when recorded, not when graded: a leaderboard rebuild re-applies the solves
        // recorded since shortly before its snapshot (`Standing::changed_since`), and a verdict
        // may wait for its batch much longer than that.
        .bind::<Array<Timestamptz>, _>(vec![Utc::now(); accepted.len()]);
        let solved: Vec<Solved> = crate::db::Prepared(insert).load(conn)?;
        let users: std::collections::BTreeSet<i64> = solved.iter().map(|s| s.user_id).collect();
        for user_id in users {
            Standing::refresh_user(conn, user_id)?;
        }
        Ok(solved.into_iter().map(|s| s.submission_id).collect())
    }

    /// `record_result` within the caller's transaction.
    fn record_in(
        conn: &mut PgConnection,
        job: &Job,
        queue: Queue,
        outcome: &Outcome,
    ) -> QueryResult<(Submission, bool)> {
        let update = |conn: &mut PgConnection| {
            diesel::update(
                submissions::table
                    .find(job.job_id)
                    .filter(submissions::status.eq_any(PENDING)),
            )
            .set((
                outcome,
                submissions::graded_at.eq(Utc::now()),
                submissions::cached.eq(queue == Queue::Cache),
            ))
            .returning(Submission::as_returning())
            .get_result(conn)
            .optional()
        };
        // The row is there, pending, nearly always: the insert only when it is not.
        let mut updated = update(conn)?;
        if updated.is_none()
            && diesel::insert_into(submissions::table)
                .values(NewSubmission::queued(job, queue))
                .on_conflict_do_nothing()
                .execute(conn)?
                == 1
        {
            updated = update(conn)?;
        }
        let stored = match updated {
            Some(s) => s,
            None => submissions::table
                .find(job.job_id)
                .select(Submission::as_select())
                .first(conn)?,
        };
        let first_solve = stored.outcome.status == Status::Accepted
            && diesel::insert_into(first_solves::table)
                .values((
                    first_solves::user_id.eq(stored.user_id),
                    first_solves::problem_id.eq(stored.problem_id),
                    first_solves::submission_id.eq(stored.id),
                    first_solves::solved_at.eq(stored.graded_at.unwrap_or_else(Utc::now)),
                ))
                .on_conflict_do_nothing()
                .execute(conn)?
                == 1;
        if first_solve {
            Standing::refresh_user(conn, stored.user_id)?;
        }
        Ok((stored, first_solve))
    }

    /// Records the verdict of a rejudge over the stored one, and keeps the first-solve record
    /// true to the verdicts: a submission that is no longer accepted gives its first solve to
    /// the user's earliest other accepted submission of the problem, if any. Returns whether
    /// the status changed.
    pub fn record_rejudge(
        conn: &mut PgConnection,
        job: &Job,
        outcome: &Outcome,
    ) -> QueryResult<bool> {
        conn.transaction(|conn| {
            let before: Status = submissions::table
                .find(job.job_id)
                .select(submissions::status)
                .for_update()
                .first(conn)?;
            let now = Utc::now();
            diesel::update(submissions::table.find(job.job_id))
                .set((outcome, submissions::graded_at.eq(now)))
                .execute(conn)?;
            if before == outcome.status {
                return Ok(false); // the first-solve record already agrees with this verdict
            }
            let (user, problem) = (job.user_id, job.problem_id);
            if outcome.status != Status::Accepted {
                diesel::delete(
                    first_solves::table.filter(first_solves::submission_id.eq(job.job_id)),
                )
                .execute(conn)?;
            }
            let earliest = submissions::table
                .filter(submissions::user_id.eq(user))
                .filter(submissions::problem_id.eq(problem))
                .filter(submissions::status.eq(Status::Accepted))
                .order(submissions::graded_at.asc())
                .select((submissions::id, submissions::graded_at))
                .first::<(Uuid, Option<DateTime<Utc>>)>(conn)
                .optional()?;
            if let Some((id, graded_at)) = earliest {
                diesel::insert_into(first_solves::table)
                    .values((
                        first_solves::user_id.eq(user),
                        first_solves::problem_id.eq(problem),
                        first_solves::submission_id.eq(id),
                        first_solves::solved_at.eq(graded_at.unwrap_or(now)),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)?;
            }
            Standing::refresh_user(conn, user)?;
            Ok(true)
        })
    }

    /// Every submission of a problem that has a verdict, as jobs to grade again.
    pub fn rejudge_jobs(conn: &mut PgConnection, problem_id: i64) -> QueryResult<Vec<Job>> {
        let graded: Vec<Submission> = submissions::table
            .filter(submissions::problem_id.eq(problem_id))
            .filter(diesel::dsl::not(submissions::status.eq_any(PENDING)))
            .select(Submission::as_select())
            .order(submissions::created_at)
            .load(conn)?;
        Ok(graded
            .iter()
            .map(|s| Job {
                rejudge: true,
                ..s.to_job()
            })
            .collect())
    }

    /// A user's submissions, newest first, and how many there are in all.
    pub fn list_for_user(
        conn: &mut PgConnection,
        user_id: i64,
        problem_id: Option<i64>,
        status: Option<Status>,
        limit: i64,
        offset: i64,
    ) -> QueryResult<(Vec<Submission>, i64)> {
        let filtered = || {
            let mut q = submissions::table
                .filter(submissions::user_id.eq(user_id))
                .into_boxed();
            if let Some(p) = problem_id {
                q = q.filter(submissions::problem_id.eq(p));
            }
            if let Some(s) = status {
                q = q.filter(submissions::status.eq(s));
            }
            q
        };
        let total = filtered().count().get_result(conn)?;
        let items = filtered()
            .select(Submission::as_select())
            .order((submissions::created_at.desc(), submissions::id))
            .limit(limit)
            .offset(offset)
            .load(conn)?;
        Ok((items, total))
    }

    /// Submissions still pending that were created before `cutoff`, oldest first, except
    /// those waiting in the Postgres fallback queue.
    pub fn pending_before(
        conn: &mut PgConnection,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> QueryResult<Vec<Submission>> {
        let in_fallback =
            fallback_submissions::table.filter(fallback_submissions::id.eq(submissions::id));
        submissions::table
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&PENDING_SQL))
            .filter(submissions::created_at.lt(cutoff))
            .filter(diesel::dsl::not(diesel::dsl::exists(in_fallback)))
            .select(Submission::as_select())
            .order(submissions::created_at)
            .limit(limit)
            .load(conn)
    }

    pub fn to_job(&self) -> Job {
        Job {
            job_id: self.id,
            user_id: self.user_id,
            problem_id: self.problem_id,
            sql: self.sql_query.clone(),
            request_id: self.request_id.clone(),
            submitted_at: self.created_at,
            rejudge: false,
        }
    }
}
