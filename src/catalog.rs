//! Datasets and problems: validation, reference runs, storage. Used by the admin API and the
//! demo loader alike.
use serde::{Deserialize, Serialize};

use crate::cache::Scope;
use crate::db::models::{
    is_unique_violation, Dataset, DatasetTest, HiddenTest, NewProblem, Problem, ProblemFields,
    TableInfo,
};
use crate::db::{self, DbError};
use crate::error::ApiError;
use crate::grading::compare::{compare, ResultSet};
use crate::grading::dataset::{self, DatasetError};
use crate::grading::mutants::{self, Mutant};
use crate::grading::sandbox::{RunSpec, SandboxError};
use crate::grading::{generated, order_of, passes, run_reference, spec_for};
use crate::job::TestData;
use crate::state::AppState;

/// Hidden tests a dataset may have uploaded, numbered 1 to this.
pub const MAX_UPLOADED_TESTS: i16 = 20;

/// A problem as an admin writes it (`POST /admin/problems`, `PUT /admin/problems/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProblemInput {
    #[serde(flatten)]
    pub fields: ProblemFields,
    /// The settings' default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_limit_ms: Option<u32>,
}

fn unavailable(e: SandboxError) -> ApiError {
    ApiError::Unavailable {
        message: e.to_string(),
        retry_after_secs: 2,
    }
}

fn dataset_error(e: DatasetError) -> ApiError {
    match e {
        DatasetError::Invalid(m) => ApiError::Invalid(m),
        DatasetError::Failed(m) => ApiError::Unprocessable(format!("the script failed: {m}")),
        DatasetError::Shape(m) => ApiError::Unprocessable(m),
        DatasetError::Sandbox(e) => unavailable(e),
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
        if !(0..=10).contains(&f.generated_tests) {
            return invalid("generated_tests must be 0-10");
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

    pub fn time_limit(&self, state: &AppState) -> u32 {
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

/// The reference's results on every test of a problem with these fields: the sample's, and
/// each hidden test's (uploaded ones, then generated ones). A 422 when it fails on the sample
/// or an uploaded test; generated tests on which it fails, or whose result the sample's would
/// pass, are replaced by spares or dropped.
async fn reference_results(
    state: &AppState,
    fields: &ProblemFields,
    time_limit_ms: u32,
) -> Result<(ResultSet, Vec<HiddenTest>), ApiError> {
    let on = |data| spec_for(fields, time_limit_ms, &fields.reference_sql, data);
    let sample = reference_result(state, &on(TestData::Sample)).await?;
    let order = order_of(fields, &sample.columns);
    let name = fields.dataset.clone();
    let uploaded = db::run(&state.pool, move |c| DatasetTest::numbers(c, &name)).await?;
    let mut hidden = Vec::new();
    for n in uploaded {
        let data = TestData::Uploaded(n);
        let rows = match reference_result(state, &on(data)).await {
            Ok(rs) => rs.rows,
            Err(ApiError::Unprocessable(m)) => {
                return Err(ApiError::Unprocessable(format!("on hidden test {n}: {m}")))
            }
            Err(e) => return Err(e),
        };
        hidden.push(HiddenTest { data, rows });
    }
    if fields.generated_tests == 0 {
        return Ok((sample, hidden));
    }
    let name = fields.dataset.clone();
    let Some((script, sha)) = db::run(&state.pool, move |c| Dataset::script(c, &name)).await?
    else {
        log::warn!(
            "dataset {} was loaded before its script was kept: load it again to generate tests",
            fields.dataset
        );
        return Ok((sample, hidden));
    };
    let mut wanted = fields.generated_tests;
    for j in 1..=fields.generated_tests + generated::SPARE {
        if wanted == 0 {
            break;
        }
        match generated::ensure(&state.sandbox, &fields.dataset, j, &script, &sha).await {
            Ok(()) => {}
            // A variant that cannot be built (a trigger of the dataset refusing the rows that
            // move) is one that tells nothing: the next takes its place.
            Err(DatasetError::Failed(why)) => {
                log::warn!("dataset {}: {why}", fields.dataset);
                continue;
            }
            Err(e) => return Err(dataset_error(e)),
        }
        let data = TestData::Generated(j);
        match reference_result(state, &on(data)).await {
            Ok(rs) if compare(&sample, &rs, &order).is_some() => {
                hidden.push(HiddenTest {
                    data,
                    rows: rs.rows,
                });
                wanted -= 1;
            }
            Ok(_) | Err(ApiError::Unprocessable(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((sample, hidden))
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
    let (reference, hidden) = reference_results(state, &input.fields, time_limit_ms).await?;
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
        hidden_tests: serde_json::to_value(hidden).expect("tests serialise"),
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
    /// Problems whose reference no longer runs on a dataset loaded before scripts were kept
    /// (it cannot be put back); they keep their old results. Otherwise such a load is a 422.
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
    let owned = name.to_string();
    let previous = db::run(&state.pool, move |c| Dataset::script(c, &owned)).await?;
    let (replaced, tables) = store_dataset(state, name, script).await?;
    let broken = refresh_problems(state, name).await?;
    let Some((old, _)) = previous.filter(|_| !broken.is_empty()) else {
        // Datasets loaded before scripts were kept cannot be put back: their broken problems
        // keep their old results and are listed.
        let broken_problems = broken.into_iter().map(|(slug, _)| slug).collect();
        return Ok(LoadedDataset {
            replaced,
            tables,
            broken_problems,
        });
    };
    // A problem's reference fails on the new rows: the dataset is put back as it was, and its
    // problems' results with it.
    store_dataset(state, name, &old).await?;
    refresh_problems(state, name).await?;
    let (slug, why) = &broken[0];
    Err(ApiError::Unprocessable(format!(
        "the reference of problem {slug} fails on the new dataset: {why}"
    )))
}

/// Loads a dataset script into the sandbox and records it; whether it replaced one, and its
/// tables.
async fn store_dataset(
    state: &AppState,
    name: &str,
    script: &str,
) -> Result<(bool, Vec<TableInfo>), ApiError> {
    let _lock = state.sandbox.catalog_lock().await.map_err(unavailable)?;
    let tables = dataset::load(&state.sandbox, name, script)
        .await
        .map_err(|e| match e {
            DatasetError::Failed(m) => {
                ApiError::Unprocessable(format!("the dataset script failed: {m}"))
            }
            e => dataset_error(e),
        })?;
    let sha = crate::auth::sha256_hex(script);
    let (owned, script, infos) = (name.to_string(), script.to_string(), tables.clone());
    let replaced = db::run(&state.pool, move |c| {
        Dataset::upsert(c, &owned, &script, &sha, &infos)
    })
    .await?;
    Ok((replaced, tables))
}

/// Runs the reference of every problem on `dataset` again, on all its tests, and stores the
/// results (a new version of each). Problems whose reference fails keep their old results;
/// they are returned (slug, why).
async fn refresh_problems(
    state: &AppState,
    dataset: &str,
) -> Result<Vec<(String, String)>, ApiError> {
    let owned = dataset.to_string();
    let problems = db::run(&state.pool, move |c| Problem::list_by_dataset(c, &owned)).await?;
    let mut broken = Vec::new();
    for problem in problems {
        let limit = problem.time_limit_ms as u32;
        match reference_results(state, &problem.fields, limit).await {
            Ok((rs, hidden)) => {
                let (columns, rows) = to_json_rows(&rs);
                let hidden = serde_json::to_value(hidden).expect("tests serialise");
                let id = problem.id;
                db::run(&state.pool, move |c| {
                    Problem::set_expected(c, id, &columns, &rows, &hidden)
                })
                .await?;
                // Graded from Postgres's new version from now on.
                state.problems.forget(id);
            }
            Err(ApiError::Unprocessable(reason)) => {
                state.problems.forget(problem.id);
                log::warn!(
                    "problem {} no longer validates on dataset {dataset}: {reason}",
                    problem.fields.slug
                );
                broken.push((problem.fields.slug, reason));
            }
            Err(e) => return Err(e),
        }
    }
    state.cache.invalidate(&[Scope::Problems]).await;
    Ok(broken)
}

/// What uploading a hidden test did.
pub struct LoadedTest {
    pub replaced: bool,
    pub tables: Vec<TableInfo>,
}

fn check_test_number(n: i16) -> Result<(), ApiError> {
    if (1..=MAX_UPLOADED_TESTS).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::Invalid(format!(
            "hidden tests are numbered 1-{MAX_UPLOADED_TESTS}"
        )))
    }
}

async fn require_dataset(state: &AppState, name: &str) -> Result<(), ApiError> {
    let owned = name.to_string();
    if dataset::valid_name(name)
        && db::run(&state.pool, move |c| Dataset::exists(c, &owned)).await?
    {
        Ok(())
    } else {
        Err(ApiError::NotFound("dataset"))
    }
}

/// Loads (or replaces) uploaded hidden test `n` of a dataset. Refused (422), and the test left
/// as it was, when its tables or columns are not the sample's or a problem's reference fails
/// on it.
pub async fn put_test(
    state: &AppState,
    name: &str,
    n: i16,
    script: &str,
) -> Result<LoadedTest, ApiError> {
    check_test_number(n)?;
    require_dataset(state, name).await?;
    let owned = name.to_string();
    let previous = db::run(&state.pool, move |c| DatasetTest::script(c, &owned, n)).await?;
    let (replaced, tables) = store_test(state, name, n, script).await?;
    let broken = refresh_problems(state, name).await?;
    if let Some((slug, why)) = broken.into_iter().next() {
        // Put the test back as it was, and the problems' results with it.
        match previous {
            Some(old) => {
                store_test(state, name, n, &old).await?;
            }
            None => {
                remove_test(state, name, n).await?;
            }
        }
        refresh_problems(state, name).await?;
        return Err(ApiError::Unprocessable(format!(
            "the reference of problem {slug} fails: {why}"
        )));
    }
    Ok(LoadedTest { replaced, tables })
}

/// Loads uploaded test `n` (refused unless it has the sample's tables and columns) and
/// records it; whether it replaced one, and its tables.
async fn store_test(
    state: &AppState,
    name: &str,
    n: i16,
    script: &str,
) -> Result<(bool, Vec<TableInfo>), ApiError> {
    let _lock = state.sandbox.catalog_lock().await.map_err(unavailable)?;
    let tables = dataset::load_test(&state.sandbox, name, TestData::Uploaded(n), script, true)
        .await
        .map_err(dataset_error)?;
    let (owned, text, infos) = (name.to_string(), script.to_string(), tables.clone());
    let replaced = db::run(&state.pool, move |c| {
        DatasetTest::upsert(c, &owned, n, &text, &infos)
    })
    .await?;
    Ok((replaced, tables))
}

/// Drops uploaded test `n`'s rows and record; true when it was recorded.
async fn remove_test(state: &AppState, name: &str, n: i16) -> Result<bool, ApiError> {
    let _lock = state.sandbox.catalog_lock().await.map_err(unavailable)?;
    state
        .sandbox
        .drop_test(name, TestData::Uploaded(n))
        .await
        .map_err(unavailable)?;
    let owned = name.to_string();
    Ok(db::run(&state.pool, move |c| DatasetTest::delete(c, &owned, n)).await?)
}

/// Removes uploaded hidden test `n` of a dataset (404 when it has none).
pub async fn delete_test(state: &AppState, name: &str, n: i16) -> Result<(), ApiError> {
    check_test_number(n)?;
    require_dataset(state, name).await?;
    // The problems first forget the test, then its rows go: a grading meanwhile finds either
    // (a missing test is a retry, never a verdict).
    let owned = name.to_string();
    if !db::run(&state.pool, move |c| DatasetTest::delete(c, &owned, n)).await? {
        return Err(ApiError::NotFound("test"));
    }
    refresh_problems(state, name).await?;
    remove_test(state, name, n).await?;
    Ok(())
}

/// How well a problem's tests tell wrong queries from the reference (API.md v1.1).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Adequacy {
    /// Standard mutants of the reference that were graded.
    pub mutants: usize,
    /// Those that failed a test.
    pub killed: usize,
    /// Those every test accepts: equivalent to the reference, or a sign the tests need rows.
    pub survivors: Vec<Mutant>,
    pub duration_ms: u64,
}

/// Grades the standard mutants of a problem's reference on its tests.
pub async fn adequacy(state: &AppState, id: i64) -> Result<Adequacy, ApiError> {
    let started = std::time::Instant::now();
    let problem = db::run(&state.pool, move |c| Problem::find(c, id))
        .await?
        .ok_or(ApiError::NotFound("problem"))?;
    let mutants = mutants::mutants(&problem.fields.reference_sql).map_err(|e| {
        ApiError::Unprocessable(format!(
            "PostgreSQL's parser does not take the reference: {e}"
        ))
    })?;
    let mut slot = state.reference.lock().await;
    let mut survivors = Vec::new();
    for mutant in &mutants {
        if passes(&mut slot, &problem, &mutant.sql)
            .await
            .map_err(unavailable)?
        {
            survivors.push(mutant.clone());
        }
    }
    Ok(Adequacy {
        mutants: mutants.len(),
        killed: mutants.len() - survivors.len(),
        survivors,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
