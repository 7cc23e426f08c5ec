//! What travels through the queues, and the result object of the API.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::backends::Backend;
use crate::db::models::Submission;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(diesel::AsExpression, diesel::FromSqlRow)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Status {
    Queued,
    Running,
    Accepted,
    WrongAnswer,
    SqlError,
    TimeLimitExceeded,
    OutputLimitExceeded,
    Rejected,
    InternalError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Accepted => "accepted",
            Status::WrongAnswer => "wrong_answer",
            Status::SqlError => "sql_error",
            Status::TimeLimitExceeded => "time_limit_exceeded",
            Status::OutputLimitExceeded => "output_limit_exceeded",
            Status::Rejected => "rejected",
            Status::InternalError => "internal_error",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

/// Why a result is a `wrong_answer`: the first of these that applies (API.md v1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(diesel::AsExpression, diesel::FromSqlRow)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Reason {
    /// Another number of columns.
    ColumnCount,
    /// The same rows in another order (ordered problems).
    Order,
    /// The same distinct rows, counted differently.
    Duplicates,
    /// Equal if NULL and '' were the same.
    NullVsEmpty,
    /// Equal as numbers, written differently.
    NumericFormat,
    /// Another number of rows.
    RowCount,
    /// Other values.
    Values,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ColumnCount => "column_count",
            Reason::Order => "order",
            Reason::Duplicates => "duplicates",
            Reason::NullVsEmpty => "null_vs_empty",
            Reason::NumericFormat => "numeric_format",
            Reason::RowCount => "row_count",
            Reason::Values => "values",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// What a problem's results tell the solver (API.md v1.1 `feedback`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[derive(diesel::AsExpression, diesel::FromSqlRow)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Feedback {
    /// The diff on the sample, the reason, the database's messages.
    #[default]
    Full,
    /// The status and the failed test only (contests).
    Verdict,
}

impl Feedback {
    pub fn as_str(self) -> &'static str {
        match self {
            Feedback::Full => "full",
            Feedback::Verdict => "verdict",
        }
    }

    pub fn parse(s: &str) -> Option<Feedback> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// How hard a problem is: `easy`, `medium` (the default) or `hard`.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[derive(diesel::AsExpression, diesel::FromSqlRow)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Difficulty {
    Easy,
    #[default]
    Medium,
    Hard,
}

impl Difficulty {
    pub fn as_str(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Medium => "medium",
            Difficulty::Hard => "hard",
        }
    }

    pub fn parse(s: &str) -> Option<Difficulty> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

/// The first test a solution failed (0 is the sample), stored as its index.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema, diesel::AsExpression, diesel::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::SmallInt)]
pub struct FailedTest {
    pub index: i16,
}

/// `{index, hidden}` in the API, as API.md writes it.
#[derive(Serialize, Deserialize)]
struct FailedTestJson {
    index: i16,
    hidden: bool,
}

impl Serialize for FailedTest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FailedTestJson {
            index: self.index,
            hidden: self.index > 0,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for FailedTest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        FailedTestJson::deserialize(d).map(|t| FailedTest { index: t.index })
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::SmallInt, diesel::pg::Pg> for FailedTest {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> diesel::serialize::Result {
        <i16 as diesel::serialize::ToSql<diesel::sql_types::SmallInt, diesel::pg::Pg>>::to_sql(
            &self.index,
            &mut out.reborrow(),
        )
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::SmallInt, diesel::pg::Pg> for FailedTest {
    fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
        <i16 as diesel::deserialize::FromSql<diesel::sql_types::SmallInt, diesel::pg::Pg>>::from_sql(bytes)
            .map(|index| FailedTest { index })
    }
}

/// A result row: each value as PostgreSQL's text output, or NULL.
pub type Row = Vec<Option<String>>;

/// Where a test's rows live: the sample (the problem's dataset), a hidden test uploaded for
/// the dataset (`PUT /admin/datasets/{name}/tests/{n}`) or one generated from the sample.
/// Each is a sandbox database of its own holding the dataset's schema under the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestData {
    Sample,
    Uploaded(i16),
    Generated(i16),
}

impl TestData {
    /// How it is written in stored problems and in sandbox database names: "", "u3", "g2".
    pub fn tag(self) -> String {
        match self {
            TestData::Sample => String::new(),
            TestData::Uploaded(n) => format!("u{n}"),
            TestData::Generated(n) => format!("g{n}"),
        }
    }

    pub fn parse(tag: &str) -> Option<TestData> {
        let number = |s: &str| s.parse::<i16>().ok().filter(|n| (1..=99).contains(n));
        match tag.split_at_checked(1)? {
            ("u", n) => number(n).map(TestData::Uploaded),
            ("g", n) => number(n).map(TestData::Generated),
            _ => None,
        }
    }
}

impl Serialize for TestData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.tag().serialize(s)
    }
}

impl<'de> Deserialize<'de> for TestData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let tag = String::deserialize(d)?;
        if tag.is_empty() {
            return Ok(TestData::Sample);
        }
        TestData::parse(&tag)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown test {tag:?}")))
    }
}

/// Where a submission was queued: Redis (202), the Postgres fallback (201) or nowhere, its
/// verdict reused from the cache (200). Stored with the submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[derive(diesel::AsExpression, diesel::FromSqlRow)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Queue {
    Redis,
    Postgres,
    Cache,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Redis, Queue::Postgres, Queue::Cache];

    pub fn as_str(self) -> &'static str {
        match self {
            Queue::Redis => "redis",
            Queue::Postgres => "postgres",
            Queue::Cache => "cache",
        }
    }

    pub fn parse(s: &str) -> Option<Queue> {
        Queue::ALL.into_iter().find(|q| q.as_str() == s)
    }
}

/// A submission as queued: self-contained, so it can be graded from Redis alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Job {
    pub job_id: Uuid,
    pub user_id: i64,
    pub problem_id: i64,
    pub sql: String,
    pub request_id: Option<String>,
    pub submitted_at: DateTime<Utc>,
    /// Grading again a submission that already has a verdict (low priority).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rejudge: bool,
}

/// What grading concluded about one solution: the verdict fields of a submission's record and
/// of the API's result object.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    diesel::Queryable,
    diesel::QueryableByName,
    diesel::Selectable,
    diesel::AsChangeset,
)]
#[diesel(table_name = crate::db::schema::submissions, treat_none_as_null = true)]
pub struct Outcome {
    pub status: Status,
    pub rows_returned: Option<i32>,
    pub expected_rows: Option<i32>,
    pub duration_ms: Option<i32>,
    pub message: Option<String>,
    pub sqlstate: Option<String>,
    pub diff: Option<serde_json::Value>,
    /// For `wrong_answer`: why.
    #[serde(default)]
    pub reason: Option<Reason>,
    /// The first failing test when results were compared and differ.
    #[serde(default)]
    pub failed_test: Option<FailedTest>,
    /// For `wrong_answer` on a hidden test: a small subset of its rows on which the solution
    /// and the reference still differ, with both results (API.md v1.1).
    #[serde(default)]
    pub counterexample: Option<serde_json::Value>,
}

impl Outcome {
    /// Verdicts that depend on the SQL alone, not on load or luck, and can be reused.
    pub fn is_reusable(&self) -> bool {
        matches!(
            self.status,
            Status::Accepted
                | Status::WrongAnswer
                | Status::SqlError
                | Status::OutputLimitExceeded
                | Status::Rejected
        )
    }

    pub fn verdict(status: Status, message: impl Into<String>) -> Outcome {
        Outcome {
            status,
            rows_returned: None,
            expected_rows: None,
            duration_ms: Some(0),
            message: Some(message.into()),
            sqlstate: None,
            diff: None,
            reason: None,
            failed_test: None,
            counterexample: None,
        }
    }
}

/// The result object of `GET /problems/result/{job_id}` (API.md), also cached in Redis.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmissionResult {
    pub job_id: Uuid,
    pub user_id: i64,
    pub problem_id: i64,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub source: Backend,
    pub submitted_at: DateTime<Utc>,
    pub graded_at: Option<DateTime<Utc>>,
}

impl Outcome {
    /// What `feedback` lets the solver see: with `verdict`, the status and the failed test
    /// (and the time taken) alone.
    pub fn shown(self, feedback: Feedback) -> Outcome {
        match feedback {
            Feedback::Full => self,
            Feedback::Verdict => Outcome {
                status: self.status,
                duration_ms: self.duration_ms,
                failed_test: self.failed_test,
                ..Outcome::pending(self.status)
            },
        }
    }

    /// No verdict yet: queued or running.
    pub fn pending(status: Status) -> Outcome {
        Outcome {
            status,
            rows_returned: None,
            expected_rows: None,
            duration_ms: None,
            message: None,
            sqlstate: None,
            diff: None,
            reason: None,
            failed_test: None,
            counterexample: None,
        }
    }
}

impl SubmissionResult {
    /// A not-yet-graded submission.
    pub fn pending(
        job_id: Uuid,
        user_id: i64,
        problem_id: i64,
        submitted_at: DateTime<Utc>,
        status: Status,
    ) -> SubmissionResult {
        SubmissionResult {
            job_id,
            user_id,
            problem_id,
            outcome: Outcome::pending(status),
            source: Backend::Redis,
            submitted_at,
            graded_at: None,
        }
    }

    /// A graded job not (yet) recorded in Postgres.
    pub fn graded(job: &Job, outcome: &Outcome) -> SubmissionResult {
        SubmissionResult {
            job_id: job.job_id,
            user_id: job.user_id,
            problem_id: job.problem_id,
            outcome: outcome.clone(),
            source: Backend::Redis,
            submitted_at: job.submitted_at,
            graded_at: Some(chrono::Utc::now()),
        }
    }
}

impl From<&Submission> for SubmissionResult {
    fn from(s: &Submission) -> Self {
        SubmissionResult {
            job_id: s.id,
            user_id: s.user_id,
            problem_id: s.problem_id,
            outcome: s.outcome.clone(),
            source: Backend::Postgres,
            submitted_at: s.created_at,
            graded_at: s.graded_at,
        }
    }
}

/// `{"type": "submission", ...the result object}`.
pub fn submission_event(result: &SubmissionResult) -> String {
    #[derive(Serialize)]
    struct Tagged<'a> {
        r#type: &'static str,
        #[serde(flatten)]
        result: &'a SubmissionResult,
    }
    serde_json::to_string(&Tagged {
        r#type: "submission",
        result,
    })
    .expect("event serialises")
}

/// The event of a job reaching `queued` or `running`.
pub fn progress_event(job: &Job, status: Status) -> String {
    submission_event(&SubmissionResult::pending(
        job.job_id,
        job.user_id,
        job.problem_id,
        job.submitted_at,
        status,
    ))
}

/// `Status` and `Queue` are stored as their names (text columns).
macro_rules! text_column {
    ($ty:ty) => {
        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $ty {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                use std::io::Write;
                out.write_all(self.as_str().as_bytes())?;
                Ok(diesel::serialize::IsNull::No)
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $ty {
            fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = std::str::from_utf8(bytes.as_bytes())?;
                <$ty>::parse(text)
                    .ok_or_else(|| format!("unknown {}: {text}", stringify!($ty)).into())
            }
        }
    };
}

text_column!(Status);
text_column!(Queue);
text_column!(Reason);
text_column!(Feedback);
text_column!(Difficulty);
