//! Grading: run a solution in the sandbox and compare it with the problem's reference result.
pub mod compare;
pub mod counterexample;
pub mod dataset;
pub mod generated;
pub mod lexer;
pub mod mutants;
pub mod sandbox;
pub mod servers;
pub mod tls;
mod wire;

use std::time::Instant;

use compare::{compare, Order, ResultSet, Row};
use sandbox::{Run, RunSpec, SandboxError, Slot};

use crate::db::models::{Problem, ProblemFields};
use crate::job::{FailedTest, Feedback, Outcome, Status, TestData};

/// What identifies "the same solution to the same problem" for the verdict cache: the
/// problem and its version (any change to it, its dataset or its tests bumps `updated_at`),
/// and the normalised statement.
pub fn fingerprint(problem: &Problem, sql: &str) -> String {
    fingerprint_of(problem, &statement_digest(sql))
}

/// The fingerprint's part that depends on the statement alone (`statement_digest`).
pub fn fingerprint_of(problem: &Problem, digest: &str) -> String {
    format!(
        "{}:{}:{digest}",
        problem.id,
        problem.updated_at.timestamp_micros()
    )
}

/// The normalised statement's digest: the costly part of a fingerprint, the same for every
/// version of the problem.
pub fn statement_digest(sql: &str) -> String {
    crate::auth::sha256_hex(&lexer::normalize(sql))
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
fn sort_key(fields: &ProblemFields, columns: &[String]) -> Option<Vec<usize>> {
    match &fields.order_key {
        Some(key) => Some(key.iter().map(|&c| c as usize - 1).collect()),
        None => lexer::order_key(&fields.reference_sql, columns)
            .map(|key| key.into_iter().map(|c| c - 1).collect()),
    }
}

/// How a problem's results are compared (`columns`: the reference's).
pub fn order_of(fields: &ProblemFields, columns: &[String]) -> Order {
    // Table contents have no order: writeable problems compare as multisets.
    if !fields.ordered || fields.writeable {
        return Order::Any;
    }
    match sort_key(fields, columns) {
        Some(key) => Order::Key(key),
        None => Order::Exact,
    }
}

/// `sql` run as a solution of a problem with these fields, on the data of one of its tests.
pub fn spec_for<'a>(
    fields: &'a ProblemFields,
    time_limit_ms: u32,
    sql: &'a str,
    data: TestData,
) -> RunSpec<'a> {
    RunSpec {
        dataset: &fields.dataset,
        data,
        sql,
        time_limit_ms,
        check_table: fields.check_table.as_deref().filter(|_| fields.writeable),
        prelude: None,
    }
}

/// `sql` run as a solution of `problem` on its sample.
pub fn spec<'a>(problem: &'a Problem, sql: &'a str) -> RunSpec<'a> {
    spec_for(
        &problem.fields,
        problem.time_limit_ms as u32,
        sql,
        TestData::Sample,
    )
}

/// Runs `sql` as a solution of `problem`, under every rule and limit of the sandbox: what it
/// returned (for writeable problems, the check table after it) and how long it took, in ms.
/// Grading and `POST /problems/{id}/run` alike.
pub async fn execute(slot: &mut Slot, spec: &RunSpec<'_>) -> Result<(Run, i32), SandboxError> {
    let started = Instant::now();
    let run = slot.run(spec).await?;
    Ok((
        run,
        started.elapsed().as_millis().min(i32::MAX as u128) as i32,
    ))
}

/// What running a solution on a problem's tests came to.
struct Tested {
    /// The verdict on the first test it failed, or `accepted`.
    outcome: Outcome,
    /// A hidden test it failed: its index, where its data is, and the reference's result.
    hidden_failure: Option<(i16, TestData, ResultSet)>,
    /// Rows it returned on the sample, and the reference's there.
    on_sample: (Option<i32>, i32),
    duration_ms: i32,
}

/// Runs `sql` on the sample, then on each hidden test, up to the first that fails.
async fn run_tests(slot: &mut Slot, problem: &Problem, sql: &str) -> Result<Tested, SandboxError> {
    let expected = expected_of(problem);
    let order = order_of(&problem.fields, &expected.columns);
    let (run, mut duration_ms) = execute(slot, &spec(problem, sql)).await?;
    let outcome = judge(run, &expected, &order, 0);
    missing_dataset(slot, problem, &outcome, TestData::Sample).await?;
    let mut tested = Tested {
        on_sample: (outcome.rows_returned, expected.rows.len() as i32),
        outcome,
        hidden_failure: None,
        duration_ms,
    };
    if tested.outcome.status != Status::Accepted {
        return Ok(tested);
    }
    for (i, test) in problem.hidden().into_iter().enumerate() {
        let index = i as i16 + 1;
        let spec = spec_for(
            &problem.fields,
            problem.time_limit_ms as u32,
            sql,
            test.data,
        );
        let (run, ms) = execute(slot, &spec).await?;
        duration_ms = duration_ms.saturating_add(ms);
        let expected = ResultSet {
            columns: expected.columns.clone(),
            rows: test.rows,
        };
        let verdict = judge(run, &expected, &order, index);
        missing_dataset(slot, problem, &verdict, test.data).await?;
        // The statement found its tables on the sample: a test without them is being replaced
        // or removed. Retried, never a verdict.
        if matches!(verdict.sqlstate.as_deref(), Some("42P01" | "3F000")) {
            return Err(SandboxError::Interrupted(format!(
                "hidden test {index} changed while it was graded"
            )));
        }
        if verdict.status != Status::Accepted {
            tested.outcome = verdict;
            tested.hidden_failure = Some((index, test.data, expected));
            break;
        }
    }
    tested.duration_ms = duration_ms;
    Ok(tested)
}

/// A statement that found no table where the dataset itself is missing (a sandbox being
/// restored) gets no verdict: the job waits, uncounted, as when the sandbox is down.
async fn missing_dataset(
    slot: &mut Slot,
    problem: &Problem,
    outcome: &Outcome,
    data: TestData,
) -> Result<(), SandboxError> {
    if matches!(outcome.sqlstate.as_deref(), Some("42P01" | "3F000"))
        && !slot.dataset_present(&problem.fields.dataset, data).await?
    {
        return Err(SandboxError::Unavailable(format!(
            "dataset {} is not in the sandbox{}: it is being loaded again",
            problem.fields.dataset,
            if data == TestData::Sample {
                String::new()
            } else {
                format!(" (test {})", data.tag())
            }
        )));
    }
    Ok(())
}

/// Whether `sql` passes every test of `problem` (adequacy: does a mutant survive?).
pub async fn passes(slot: &mut Slot, problem: &Problem, sql: &str) -> Result<bool, SandboxError> {
    Ok(run_tests(slot, problem, sql).await?.outcome.status == Status::Accepted)
}

/// Grades `sql` as a solution of `problem`: on the sample, then on each hidden test, up to
/// the first that fails. `Err` means the sandbox itself failed and the job should be retried;
/// every verdict about the SQL is an `Ok`.
pub async fn grade(slot: &mut Slot, problem: &Problem, sql: &str) -> Result<Outcome, SandboxError> {
    let tested = run_tests(slot, problem, sql).await?;
    let mut outcome = tested.outcome;
    if let Some((index, data, expected)) = tested.hidden_failure {
        // A hidden test's rows are shown only in a counterexample: no diff, and the counts
        // are the sample's.
        outcome.diff = None;
        outcome.failed_test = Some(FailedTest { index });
        if let (Status::WrongAnswer, Feedback::Full) = (outcome.status, problem.fields.feedback) {
            let order = order_of(&problem.fields, &expected.columns);
            outcome.counterexample = counterexample::find(slot, problem, sql, data, &order).await?;
        }
        // The database's own message could quote the test's rows (`invalid input syntax for
        // type integer: "..."`): on a hidden test only its code is told.
        if outcome.status == Status::SqlError {
            outcome.message = Some(format!(
                "hidden test {index}: the statement failed there (SQLSTATE {})",
                outcome.sqlstate.as_deref().unwrap_or("unknown")
            ));
        } else if let Some(message) = &mut outcome.message {
            *message = format!("hidden test {index}: {message}");
        }
    }
    outcome.rows_returned = tested.on_sample.0;
    outcome.expected_rows = Some(tested.on_sample.1);
    outcome.duration_ms = Some(tested.duration_ms);
    Ok(outcome.shown(problem.fields.feedback))
}

/// The verdict on one test's run (`index`: the test's).
fn judge(run: Run, expected: &ResultSet, order: &Order, index: i16) -> Outcome {
    let got = match run {
        Run::Failed(outcome) => return outcome,
        Run::Rows(got) => got,
    };
    let mismatch = compare(expected, &got, order);
    Outcome {
        status: if mismatch.is_some() {
            Status::WrongAnswer
        } else {
            Status::Accepted
        },
        rows_returned: Some(got.rows.len() as i32),
        message: mismatch
            .as_ref()
            .map(|_| "the result differs from the expected one".to_string()),
        reason: mismatch.as_ref().map(|m| m.reason),
        failed_test: mismatch.as_ref().map(|_| FailedTest { index }),
        diff: mismatch.map(|m| serde_json::to_value(m.diff).expect("diff serialises")),
        ..Outcome::pending(Status::Accepted)
    }
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
