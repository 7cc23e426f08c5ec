//! Datasets and problems: validation, reference runs, storage. Used by the admin API and the
//! demo loader alike.
use serde::Deserialize;

use crate::cache::Scope;
use crate::db::models::{
    is_unique_violation, Dataset, NewProblem, Problem, ProblemFields, TableInfo,
};
use crate::db::{self, DbError};
use crate::error::ApiError;
use crate::grading::dataset::{self, DatasetError};
use crate::grading::sandbox::{RunSpec, SandboxError};
use crate::grading::{compare::ResultSet, run_reference};
use crate::state::AppState;

/// A problem as an admin writes it (`POST /admin/problems`, `PUT /admin/problems/{id}`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct ProblemInput {
    #[serde(flatten)]
    pub fields: ProblemFields,
    /// The settings' default when absent.
    pub time_limit_ms: Option<u32>,
}

fn unavailable(e: SandboxError) -> ApiError {
    ApiError::Unavailable {
        message: e.to_string(),
        retry_after_secs: 2,
    }
}

fn is_identifier(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// What a topic may be: problems are checked with it, and so is every topic a client names
/// before it becomes part of a cache key.
pub fn check_topic(topic: &str) -> Result<(), ApiError> {
    if is_slug(topic, 64) {
        Ok(())
    } else {
        Err(ApiError::Invalid(
            "topic must be 1-64 characters of [a-z0-9_-]".into(),
        ))
    }
}

fn is_slug(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl ProblemInput {
    fn validate(&self, state: &AppState) -> Result<(), ApiError> {
        let (f, s) = (&self.fields, &state.settings.sandbox);
        let invalid = |m: &str| Err(ApiError::Invalid(m.to_string()));
        if !is_slug(&f.slug, 64) {
            return invalid("slug must be 1-64 characters of [a-z0-9_-]");
        }
        check_topic(&f.topic)?;
        if f.title.trim().is_empty() || f.title.len() > 200 {
            return invalid("title must be 1-200 bytes");
        }
        if f.statement.trim().is_empty() || f.statement.len() > 65536 {
            return invalid("statement must be 1-65536 bytes");
        }
        if f.reference_sql.trim().is_empty() {
            return invalid("reference_sql must not be empty");
        }
        if f.reference_sql.len() > s.max_sql_bytes {
            return Err(ApiError::PayloadTooLarge(format!(
                "reference_sql exceeds {} bytes",
                s.max_sql_bytes
            )));
        }
        if !dataset::valid_name(&f.dataset) {
            return invalid("dataset is not a valid dataset name");
        }
        if let Some(t) = self.time_limit_ms {
            if t == 0 || t > s.max_time_limit_ms {
                return Err(ApiError::Invalid(format!(
                    "time_limit_ms must be 1-{}",
                    s.max_time_limit_ms
                )));
            }
        }
        if let Some(key) = &f.order_key {
            let mut seen = std::collections::HashSet::new();
            if !f.ordered || f.writeable {
                return invalid("order_key is only for ordered problems that are not writeable");
            }
            if key.is_empty() || key.iter().any(|&c| c < 1 || !seen.insert(c)) {
                return invalid("order_key must list distinct 1-based column positions");
            }
        }
        match (&f.check_table, f.writeable) {
            (None, true) => invalid("a writeable problem needs check_table"),
            (Some(_), false) => invalid("check_table is only for writeable problems"),
            (Some(table), true) => match table.split_once('.') {
                Some((schema, name)) if schema == f.dataset && is_identifier(name) => Ok(()),
                _ => invalid("check_table must be \"<dataset>.<table>\" of the problem's dataset"),
            },
            (None, false) => Ok(()),
        }
    }

    fn time_limit(&self, state: &AppState) -> u32 {
        self.time_limit_ms
            .unwrap_or(state.settings.sandbox.default_time_limit_ms)
    }
}

/// Runs a reference in the sandbox: its rows, or a 422 saying why it failed.
async fn reference_result(state: &AppState, spec: &RunSpec<'_>) -> Result<ResultSet, ApiError> {
    let mut slot = state.reference.lock().await;
    run_reference(&mut slot, spec)
        .await
        .map_err(unavailable)?
        .map_err(ApiError::Unprocessable)
}

fn to_json_rows(rs: &ResultSet) -> (serde_json::Value, serde_json::Value) {
    (
        serde_json::to_value(&rs.columns).expect("columns serialise"),
        serde_json::to_value(&rs.rows).expect("rows serialise"),
    )
}

/// Creates (`id` None) or replaces a problem after validating it and running its reference.
pub async fn save_problem(
    state: &AppState,
    id: Option<i64>,
    input: ProblemInput,
) -> Result<Problem, ApiError> {
    input.validate(state)?;
    let name = input.fields.dataset.clone();
    if !db::run(&state.pool, move |c| Dataset::exists(c, &name)).await? {
        return Err(ApiError::Unprocessable(format!(
            "unknown dataset {:?}",
            input.fields.dataset
        )));
    }
    let time_limit_ms = input.time_limit(state);
    let spec = RunSpec {
        dataset: &input.fields.dataset,
        sql: &input.fields.reference_sql,
        time_limit_ms,
        check_table: input.fields.check_table.as_deref(),
    };
    let reference = reference_result(state, &spec).await?;
    let columns = reference.columns.len();
    if let Some(&beyond) = input
        .fields
        .order_key
        .iter()
        .flatten()
        .find(|&&c| c as usize > columns)
    {
        return Err(ApiError::Unprocessable(format!(
            "order_key names column {beyond}; the reference returns {columns}"
        )));
    }
    let (expected_columns, expected_rows) = to_json_rows(&reference);
    let new = NewProblem {
        fields: input.fields,
        time_limit_ms: time_limit_ms as i32,
        expected_columns,
        expected_rows,
    };
    let saved = db::run(&state.pool, move |c| match id {
        None => Problem::create(c, &new).map(Some),
        Some(id) => Problem::update(c, id, &new),
    })
    .await;
    match saved {
        Ok(Some(problem)) => {
            state.problems.put(&problem);
            // A new or renamed topic also changes the leaderboards' topic lists.
            state
                .cache
                .invalidate(&[Scope::Problems, Scope::Leaderboards])
                .await;
            Ok(problem)
        }
        Ok(None) => Err(ApiError::NotFound("problem")),
        Err(DbError::Query(e)) if is_unique_violation(&e) => Err(ApiError::Conflict(
            "a problem with this slug already exists".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// What loading a dataset did.
pub struct LoadedDataset {
    pub replaced: bool,
    pub tables: Vec<TableInfo>,
    /// Problems on this dataset whose reference no longer runs; they keep their old result.
    pub broken_problems: Vec<String>,
}

/// Loads (or replaces) a dataset and recomputes the expected results of its problems.
pub async fn load_dataset(
    state: &AppState,
    name: &str,
    script: &str,
) -> Result<LoadedDataset, ApiError> {
    if !dataset::valid_name(name) {
        return Err(ApiError::Invalid(
            "dataset names are 1-48 characters of [a-z0-9_], starting with a letter or _, not pg_*"
                .into(),
        ));
    }
    let tables = dataset::load(&state.sandbox, name, script)
        .await
        .map_err(|e| match e {
            DatasetError::Invalid(m) => ApiError::Invalid(m),
            DatasetError::Failed(m) => {
                ApiError::Unprocessable(format!("the dataset script failed: {m}"))
            }
            DatasetError::Sandbox(e) => unavailable(e),
        })?;
    let sha = crate::auth::sha256_hex(script);
    let (owned, infos) = (name.to_string(), tables.clone());
    let replaced = db::run(&state.pool, move |c| {
        Dataset::upsert(c, &owned, &sha, &infos)
    })
    .await?;
    let owned = name.to_string();
    let problems = db::run(&state.pool, move |c| Problem::list_by_dataset(c, &owned)).await?;
    let mut broken_problems = Vec::new();
    for problem in problems {
        let spec = crate::grading::spec(&problem, &problem.fields.reference_sql);
        match reference_result(state, &spec).await {
            Ok(rs) => {
                let (columns, rows) = to_json_rows(&rs);
                db::run(&state.pool, move |c| {
                    Problem::set_expected(c, problem.id, &columns, &rows)
                })
                .await?;
            }
            Err(ApiError::Unprocessable(reason)) => {
                log::warn!(
                    "problem {} no longer validates on dataset {name}: {reason}",
                    problem.fields.slug
                );
                broken_problems.push(problem.fields.slug);
            }
            Err(e) => return Err(e),
        }
    }
    state.cache.invalidate(&[Scope::Problems]).await;
    Ok(LoadedDataset {
        replaced,
        tables,
        broken_problems,
    })
}
