use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::schema::problems;
use crate::job::{Difficulty, Feedback, Row, TestData};

/// What an author writes about a problem, as stored and as the admin API takes and shows it
/// (the time limit aside: it has a default the settings give).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Queryable,
    Selectable,
    Insertable,
    AsChangeset,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[diesel(table_name = problems)]
#[diesel(treat_none_as_null = true)]
pub struct ProblemFields {
    pub slug: String,
    pub title: String,
    pub statement: String,
    pub topic: String,
    pub dataset: String,
    pub reference_sql: String,
    #[serde(default)]
    pub ordered: bool,
    #[serde(default)]
    pub writeable: bool,
    pub check_table: Option<String>,
    /// Ordered problems: the 1-based output columns of the sort key; rows that tie on it may
    /// come in any order. When absent, the reference's `ORDER BY` gives it.
    #[serde(default)]
    pub order_key: Option<Vec<i16>>,
    /// `full` (default) or `verdict`: what a result tells the solver.
    #[serde(default)]
    pub feedback: Feedback,
    /// How many hidden tests to derive from the sample rows (0-10).
    #[serde(default = "default_generated_tests")]
    pub generated_tests: i16,
    /// `easy`, `medium` (default) or `hard`.
    #[serde(default)]
    pub difficulty: Difficulty,
}

fn default_generated_tests() -> i16 {
    3
}

/// How many tests a problem is graded on (API.md v1.1 `tests`).
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct TestCounts {
    /// Always 1: the problem's dataset.
    pub sample: u8,
    pub hidden: usize,
}

/// The reference's result on one hidden test, as stored with the problem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HiddenTest {
    pub data: TestData,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = problems)]
pub struct Problem {
    pub id: i64,
    #[diesel(embed)]
    pub fields: ProblemFields,
    pub time_limit_ms: i32,
    pub expected_columns: serde_json::Value,
    pub expected_rows: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `[HiddenTest]`: the reference's rows on each hidden test, in grading order.
    pub hidden_tests: serde_json::Value,
}

/// A problem to create or replace: its fields, time limit and reference result.
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = problems)]
pub struct NewProblem {
    #[diesel(embed)]
    pub fields: ProblemFields,
    pub time_limit_ms: i32,
    pub expected_columns: serde_json::Value,
    pub expected_rows: serde_json::Value,
    pub hidden_tests: serde_json::Value,
}

impl Problem {
    pub fn create(conn: &mut PgConnection, new: &NewProblem) -> QueryResult<Problem> {
        diesel::insert_into(problems::table)
            .values(new)
            .returning(Problem::as_returning())
            .get_result(conn)
    }

    pub fn update(
        conn: &mut PgConnection,
        id: i64,
        new: &NewProblem,
    ) -> QueryResult<Option<Problem>> {
        diesel::update(problems::table.find(id))
            .set((new, problems::updated_at.eq(Utc::now())))
            .returning(Problem::as_returning())
            .get_result(conn)
            .optional()
    }

    /// Stores recomputed reference results (after the problem's dataset or one of its tests
    /// changed): a new version, so verdicts of the old one are not reused.
    pub fn set_expected(
        conn: &mut PgConnection,
        id: i64,
        columns: &serde_json::Value,
        rows: &serde_json::Value,
        hidden: &serde_json::Value,
    ) -> QueryResult<usize> {
        diesel::update(problems::table.find(id))
            .set((
                problems::expected_columns.eq(columns),
                problems::expected_rows.eq(rows),
                problems::hidden_tests.eq(hidden),
                problems::updated_at.eq(Utc::now()),
            ))
            .execute(conn)
    }

    /// The problems' versions (`updated_at`, which any change to a problem, its dataset or
    /// its tests moves), leaving out a problem whose dataset or tests changed after it: its
    /// expected results are from before (being refreshed, or its reference failed on them).
    pub fn versions(conn: &mut PgConnection) -> QueryResult<Vec<(i64, DateTime<Utc>)>> {
        #[derive(QueryableByName)]
        struct Version {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
            #[diesel(sql_type = diesel::sql_types::Timestamptz)]
            updated_at: DateTime<Utc>,
        }
        let versions: Vec<Version> = diesel::sql_query(
            "SELECT p.id, p.updated_at FROM problems p \
             WHERE p.updated_at >= coalesce((SELECT d.updated_at FROM datasets d \
                                             WHERE d.name = p.dataset), '-infinity') \
               AND p.updated_at >= coalesce((SELECT max(t.updated_at) FROM dataset_tests t \
                                             WHERE t.dataset = p.dataset), '-infinity')",
        )
        .load(conn)?;
        Ok(versions.into_iter().map(|v| (v.id, v.updated_at)).collect())
    }

    /// A problem's version (`updated_at`), if it exists, locked against changes until the
    /// caller's transaction ends (what it records is of that version).
    pub fn version_locked(conn: &mut PgConnection, id: i64) -> QueryResult<Option<DateTime<Utc>>> {
        problems::table
            .find(id)
            .select(problems::updated_at)
            .for_share()
            .first(conn)
            .optional()
    }

    pub fn find(conn: &mut PgConnection, id: i64) -> QueryResult<Option<Problem>> {
        problems::table
            .find(id)
            .select(Problem::as_select())
            .first(conn)
            .optional()
    }

    pub fn find_by_slug(conn: &mut PgConnection, slug: &str) -> QueryResult<Option<Problem>> {
        problems::table
            .filter(problems::slug.eq(slug))
            .select(Problem::as_select())
            .first(conn)
            .optional()
    }

    pub fn list(conn: &mut PgConnection, topic: Option<&str>) -> QueryResult<Vec<Problem>> {
        let mut query = problems::table.select(Problem::as_select()).into_boxed();
        if let Some(topic) = topic {
            query = query.filter(problems::topic.eq(topic.to_string()));
        }
        query.order(problems::id).load(conn)
    }

    /// Each problem's dataset and `hidden_tests` (which generated tests it uses).
    pub fn hidden_tests_by_dataset(
        conn: &mut PgConnection,
    ) -> QueryResult<Vec<(String, serde_json::Value)>> {
        problems::table
            .select((problems::dataset, problems::hidden_tests))
            .load(conn)
    }

    pub fn list_by_dataset(conn: &mut PgConnection, dataset: &str) -> QueryResult<Vec<Problem>> {
        problems::table
            .filter(problems::dataset.eq(dataset))
            .select(Problem::as_select())
            .order(problems::id)
            .load(conn)
    }

    pub fn topics(conn: &mut PgConnection) -> QueryResult<Vec<String>> {
        problems::table
            .select(problems::topic)
            .distinct()
            .order(problems::topic)
            .load(conn)
    }

    pub fn expected_column_names(&self) -> Vec<String> {
        serde_json::from_value(self.expected_columns.clone()).unwrap_or_default()
    }

    pub fn hidden(&self) -> Vec<HiddenTest> {
        serde_json::from_value(self.hidden_tests.clone()).unwrap_or_default()
    }

    pub fn tests(&self) -> TestCounts {
        TestCounts {
            sample: 1,
            hidden: self.hidden_tests.as_array().map_or(0, Vec::len),
        }
    }
}
