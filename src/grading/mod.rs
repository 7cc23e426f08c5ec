//! Grading: run a solution in the sandbox and compare it with the problem's reference result.
pub mod compare;
pub mod dataset;
pub mod lexer;
pub mod sandbox;

use std::time::Instant;

use compare::{compare, Order, ResultSet, Row};
use sandbox::{Run, RunSpec, SandboxError, Slot};

use crate::db::models::Problem;
use crate::job::{FailedTest, Outcome, Status};

/// What identifies "the same solution to the same problem" for the verdict cache: the
/// problem and its version (any change to it or its dataset bumps `updated_at`), and the
/// normalised statement.
pub fn fingerprint(problem: &Problem, sql: &str) -> String {
    format!(
        "{}:{}:{}",
        problem.id,
        problem.updated_at.timestamp_micros(),
        crate::auth::sha256_hex(&lexer::normalize(sql))
    )
}

/// The stored reference result of a problem.
pub fn expected_of(problem: &Problem) -> ResultSet {
    ResultSet {
        columns: problem.expected_column_names(),
        rows: serde_json::from_value::<Vec<Row>>(problem.expected_rows.clone()).unwrap_or_default(),
    }
}

/// The sort key of an ordered problem's result (0-based columns): the author's `order_key`,
/// else what the reference's `ORDER BY` sorts by; `None` when neither says (then rows must come
/// in exactly the reference's order).
pub fn sort_key(problem: &Problem, columns: &[String]) -> Option<Vec<usize>> {
    match &problem.fields.order_key {
        Some(key) => Some(key.iter().map(|&c| c as usize - 1).collect()),
        None => lexer::order_key(&problem.fields.reference_sql, columns)
            .map(|key| key.into_iter().map(|c| c - 1).collect()),
    }
}

pub fn spec<'a>(problem: &'a Problem, sql: &'a str) -> RunSpec<'a> {
    RunSpec {
        dataset: &problem.fields.dataset,
        sql,
        time_limit_ms: problem.time_limit_ms as u32,
        check_table: problem
            .fields
            .check_table
            .as_deref()
            .filter(|_| problem.fields.writeable),
    }
}

/// Runs `sql` as a solution of `problem`, under every rule and limit of the sandbox: what it
/// returned (for writeable problems, the check table after it) and how long it took, in ms.
/// Grading and `POST /problems/{id}/run` alike.
pub async fn execute(
    slot: &mut Slot,
    problem: &Problem,
    sql: &str,
) -> Result<(Run, i32), SandboxError> {
    let started = Instant::now();
    let run = slot.run(&spec(problem, sql)).await?;
    Ok((
        run,
        started.elapsed().as_millis().min(i32::MAX as u128) as i32,
    ))
}

/// Grades `sql` as a solution of `problem`. `Err` means the sandbox itself failed and the job
/// should be retried; every verdict about the SQL is an `Ok`.
pub async fn grade(slot: &mut Slot, problem: &Problem, sql: &str) -> Result<Outcome, SandboxError> {
    let (run, duration_ms) = execute(slot, problem, sql).await?;
    let expected = expected_of(problem);
    let mut outcome = match run {
        Run::Failed(outcome) => outcome,
        Run::Rows(got) => {
            let key = sort_key(problem, &expected.columns);
            let order = match (&key, problem.fields.ordered && !problem.fields.writeable) {
                // Table contents have no order: writeable problems compare as multisets.
                (_, false) => Order::Any,
                (Some(key), true) => Order::Key(key),
                (None, true) => Order::Exact,
            };
            let mismatch = compare(&expected, &got, order);
            Outcome {
                status: if mismatch.is_some() {
                    Status::WrongAnswer
                } else {
                    Status::Accepted
                },
                rows_returned: Some(got.rows.len() as i32),
                expected_rows: None,
                duration_ms: Some(duration_ms),
                message: mismatch
                    .as_ref()
                    .map(|_| "the result differs from the expected one".to_string()),
                sqlstate: None,
                reason: mismatch.as_ref().map(|m| m.reason),
                failed_test: mismatch.as_ref().map(|_| FailedTest { index: 0 }),
                diff: mismatch.map(|m| serde_json::to_value(m.diff).expect("diff serialises")),
            }
        }
    };
    outcome.duration_ms = Some(duration_ms);
    outcome.expected_rows = Some(expected.rows.len() as i32);
    Ok(outcome.shown(problem.fields.feedback))
}

/// Runs a problem's reference to obtain its expected result. `Ok(Err(reason))` when the
/// reference itself fails (a 422 for the admin).
pub async fn run_reference(
    slot: &mut Slot,
    spec: &RunSpec<'_>,
) -> Result<Result<ResultSet, String>, SandboxError> {
    Ok(match slot.run(spec).await? {
        Run::Rows(rows) => Ok(rows),
        Run::Failed(outcome) => Err(format!(
            "the reference query failed ({}): {}",
            outcome.status.as_str(),
            outcome.message.unwrap_or_default()
        )),
    })
}
