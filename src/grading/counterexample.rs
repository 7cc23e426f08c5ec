//! Counterexamples (API.md v1.1): when a solution fails a hidden test, a small subset of that
//! test's rows on which it and the reference still differ. Delta debugging over the rows:
//! remove a chunk (and every row that referenced a removed one, so foreign keys hold), run
//! both statements on what is left inside a transaction that is rolled back, and keep the
//! removal when they still differ; halve the chunks when no removal keeps the difference.
use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_postgres::SimpleQueryMessage;

use super::compare::{compare, Order, ResultSet, Row};
use super::sandbox::{quote_ident, Run, SandboxError, Slot};
use crate::db::models::Problem;
use crate::job::{Status, TestData};

/// Rows shown in a counterexample, at most: its tables' together, and each result's. A search
/// that cannot get below this gives none (a counterexample is a few rows, never a test).
const SHOWN_ROWS: usize = 100;
/// Bytes of a test's values read for a search, at most.
const MAX_BYTES: usize = 8 << 20;

struct Table {
    name: String,
    columns: Vec<String>,
    /// (ctid, values) of each row.
    rows: Vec<(String, Row)>,
}

/// A foreign key between two of the tables: child columns referencing parent columns.
struct ForeignKey {
    child: usize,
    parent: usize,
    child_columns: Vec<usize>,
    parent_columns: Vec<usize>,
}

/// A test's rows, each numbered across tables.
struct TestRows {
    tables: Vec<Table>,
    keys: Vec<ForeignKey>,
    /// Table of each numbered row, and its index there.
    index: Vec<(usize, usize)>,
    /// Children before parents: the order deletions keep foreign keys valid.
    delete_order: Vec<usize>,
}

impl TestRows {
    async fn read(
        client: &tokio_postgres::Client,
        dataset: &str,
        max_rows: usize,
    ) -> Result<Option<TestRows>, tokio_postgres::Error> {
        let names: Vec<String> = client
            .query(
                "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1",
                &[&dataset],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut tables = Vec::with_capacity(names.len());
        let (mut total, mut bytes) = (0, 0);
        for name in names {
            let sql = format!(
                "SELECT ctid, * FROM {}.{} LIMIT {}",
                quote_ident(dataset),
                quote_ident(&name),
                max_rows + 1 - total
            );
            let mut table = Table {
                name,
                columns: Vec::new(),
                rows: Vec::new(),
            };
            for message in client.simple_query(&sql).await? {
                match message {
                    SimpleQueryMessage::RowDescription(columns) => {
                        table.columns = columns.iter().skip(1).map(|c| c.name().into()).collect();
                    }
                    SimpleQueryMessage::Row(row) => {
                        let values: Row = (1..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect();
                        bytes += values.iter().flatten().map(String::len).sum::<usize>();
                        table
                            .rows
                            .push((row.get(0).unwrap_or_default().to_string(), values));
                    }
                    _ => {}
                }
            }
            total += table.rows.len();
            if total > max_rows || bytes > MAX_BYTES {
                return Ok(None);
            }
            tables.push(table);
        }
        let position = |table: &str| tables.iter().position(|t| t.name == table);
        let mut keys = Vec::new();
        for r in client
            .query(
                "SELECT ch.relname::text, pa.relname::text, \
                   ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i) \
                     JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i), \
                   ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i) \
                     JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) \
                 FROM pg_constraint con JOIN pg_class ch ON ch.oid = con.conrelid \
                 JOIN pg_class pa ON pa.oid = con.confrelid \
                 WHERE con.contype = 'f' AND con.connamespace = $1::text::regnamespace",
                &[&quote_ident(dataset)],
            )
            .await?
        {
            let (child, parent) = match (position(r.get(0)), position(r.get(1))) {
                (Some(c), Some(p)) => (c, p),
                _ => continue,
            };
            let columns = |t: usize, names: Vec<String>| -> Option<Vec<usize>> {
                names
                    .iter()
                    .map(|n| tables[t].columns.iter().position(|c| c == n))
                    .collect()
            };
            if let (Some(child_columns), Some(parent_columns)) =
                (columns(child, r.get(2)), columns(parent, r.get(3)))
            {
                keys.push(ForeignKey {
                    child,
                    parent,
                    child_columns,
                    parent_columns,
                });
            }
        }
        let index = tables
            .iter()
            .enumerate()
            .flat_map(|(t, table)| (0..table.rows.len()).map(move |i| (t, i)))
            .collect();
        let delete_order = delete_order(tables.len(), &keys);
        Ok(Some(TestRows {
            tables,
            keys,
            index,
            delete_order,
        }))
    }

    /// Drops from `keep` every row that references a row not kept, until none does.
    fn close(&self, keep: &mut [bool]) {
        let offsets: Vec<usize> = self
            .tables
            .iter()
            .scan(0, |at, t| {
                let start = *at;
                *at += t.rows.len();
                Some(start)
            })
            .collect();
        loop {
            let mut changed = false;
            for key in &self.keys {
                let parents: HashSet<Vec<&Option<String>>> = self.tables[key.parent]
                    .rows
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| keep[offsets[key.parent] + i])
                    .map(|(_, (_, row))| key.parent_columns.iter().map(|&c| &row[c]).collect())
                    .collect();
                for (i, (_, row)) in self.tables[key.child].rows.iter().enumerate() {
                    let at = offsets[key.child] + i;
                    let values: Vec<&Option<String>> =
                        key.child_columns.iter().map(|&c| &row[c]).collect();
                    // MATCH SIMPLE: a key with a NULL references nothing.
                    if keep[at] && values.iter().all(|v| v.is_some()) && !parents.contains(&values)
                    {
                        keep[at] = false;
                        changed = true;
                    }
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// The statements that remove the rows not kept, children first.
    fn prelude(&self, keep: &[bool], dataset: &str) -> String {
        let mut removed: Vec<Vec<&str>> = vec![Vec::new(); self.tables.len()];
        for (n, &(t, i)) in self.index.iter().enumerate() {
            if !keep[n] {
                removed[t].push(&self.tables[t].rows[i].0);
            }
        }
        let mut sql = String::new();
        for &t in &self.delete_order {
            if removed[t].is_empty() {
                continue;
            }
            sql.push_str(&format!(
                "DELETE FROM {}.{} WHERE ctid = ANY('{{\"{}\"}}'::tid[]);\n",
                quote_ident(dataset),
                quote_ident(&self.tables[t].name),
                removed[t].join("\",\"")
            ));
        }
        sql
    }

    /// The kept rows, table by table, as the API shows them.
    fn shown(&self, keep: &[bool]) -> serde_json::Value {
        let mut tables = serde_json::Map::new();
        let mut n = 0;
        for table in &self.tables {
            let rows: Vec<&Row> = table
                .rows
                .iter()
                .filter(|_| {
                    n += 1;
                    keep[n - 1]
                })
                .map(|(_, row)| row)
                .collect();
            tables.insert(
                table.name.clone(),
                json!({"columns": table.columns, "rows": rows}),
            );
        }
        serde_json::Value::Object(tables)
    }
}

/// Tables in an order where a table comes before those it references (cycles: as they come).
fn delete_order(tables: usize, keys: &[ForeignKey]) -> Vec<usize> {
    let mut left: Vec<usize> = (0..tables).collect();
    let mut order = Vec::with_capacity(tables);
    while !left.is_empty() {
        let referenced = |t: usize| {
            keys.iter()
                .any(|k| k.parent == t && k.child != t && left.contains(&k.child))
        };
        let at = left.iter().position(|&t| !referenced(t)).unwrap_or(0);
        order.push(left.remove(at));
    }
    order
}

/// What the solution did on the counterexample's rows.
enum Got {
    Rows(ResultSet),
    /// It failed there (a database error or a limit other than time), as the sample never saw.
    Failed(crate::job::Outcome),
}

fn shown_result(rs: &ResultSet) -> serde_json::Value {
    json!({"columns": rs.columns, "rows": &rs.rows[..rs.rows.len().min(SHOWN_ROWS)]})
}

fn shown_got(got: &Got) -> serde_json::Value {
    match got {
        Got::Rows(rs) => shown_result(rs),
        // The code, not the message: that could quote rows beyond the counterexample's.
        Got::Failed(outcome) => json!({"columns": [], "rows": [], "error": {
            "status": outcome.status, "sqlstate": outcome.sqlstate}}),
    }
}

/// A small subset of hidden test `data`'s rows on which `sql` and the problem's reference
/// still differ, with both results; `None` when the test is too large to search or the
/// difference does not show again. Bounded by the sandbox's counterexample settings.
pub async fn find(
    slot: &mut Slot,
    problem: &Problem,
    sql: &str,
    data: TestData,
    order: &Order,
) -> Result<Option<serde_json::Value>, SandboxError> {
    let settings = slot.sandbox().settings().clone();
    let dataset = &problem.fields.dataset;
    let admin = slot.sandbox().admin_client_for(data).await?;
    let rows = match TestRows::read(&admin, dataset, settings.counterexample_max_rows).await {
        Ok(Some(rows)) => rows,
        Ok(None) => return Ok(None),
        Err(e) => return Err(SandboxError::from(e)),
    };
    drop(admin);
    let mut search = Search {
        slot,
        problem,
        sql,
        data,
        order,
        rows: &rows,
        runs_left: settings.counterexample_max_runs,
        started: Instant::now(),
        budget: Duration::from_millis(settings.counterexample_max_ms),
    };
    let mut keep = vec![true; rows.index.len()];
    let Some(mut found) = search.differs(&keep).await? else {
        return Ok(None);
    };
    let mut chunks = 2;
    'search: loop {
        let kept: Vec<usize> = (0..keep.len()).filter(|&n| keep[n]).collect();
        if kept.is_empty() {
            break;
        }
        let size = kept.len().div_ceil(chunks);
        for chunk in kept.chunks(size) {
            if search.runs_left < 2 || search.left_ms() < MIN_RUN_MS {
                break 'search;
            }
            let mut candidate = keep.clone();
            for &n in chunk {
                candidate[n] = false;
            }
            rows.close(&mut candidate);
            if let Some(results) = search.differs(&candidate).await? {
                keep = candidate;
                found = results;
                chunks = (chunks - 1).max(2);
                continue 'search;
            }
        }
        if chunks >= kept.len() {
            break;
        }
        chunks = (chunks * 2).min(kept.len());
    }
    if keep.iter().filter(|&&k| k).count() > SHOWN_ROWS {
        return Ok(None);
    }
    let (expected, got) = found;
    Ok(Some(json!({
        "tables": rows.shown(&keep),
        "expected": shown_result(&expected),
        "got": shown_got(&got),
    })))
}

/// A run gets at least this much of what is left of the budget, or the search ends.
const MIN_RUN_MS: u32 = 20;

struct Search<'a> {
    slot: &'a mut Slot,
    problem: &'a Problem,
    sql: &'a str,
    data: TestData,
    order: &'a Order,
    rows: &'a TestRows,
    runs_left: usize,
    started: Instant,
    budget: Duration,
}

impl Search<'_> {
    fn left_ms(&self) -> u32 {
        self.budget
            .saturating_sub(self.started.elapsed())
            .as_millis()
            .min(u32::MAX as u128) as u32
    }

    /// Runs `sql` on the kept rows, within the problem's time limit and what is left of the
    /// search's budget.
    async fn run(&mut self, sql: &str, prelude: &str) -> Result<Run, SandboxError> {
        self.runs_left = self.runs_left.saturating_sub(1);
        let limit = (self.problem.time_limit_ms as u32).min(self.left_ms().max(MIN_RUN_MS));
        let mut spec = super::spec_for(&self.problem.fields, limit, sql, self.data);
        spec.prelude = Some(prelude);
        self.slot.run(&spec).await
    }

    /// Both results on the kept rows when they differ. A solution that fails there (but for
    /// time: the budget may have cut it short) differs too, so it cannot keep rows in the
    /// counterexample by failing whenever some are removed.
    async fn differs(&mut self, keep: &[bool]) -> Result<Option<(ResultSet, Got)>, SandboxError> {
        let prelude = self.rows.prelude(keep, &self.problem.fields.dataset);
        let reference = self.problem.fields.reference_sql.clone();
        let Run::Rows(expected) = self.run(&reference, &prelude).await? else {
            return Ok(None);
        };
        Ok(match self.run(self.sql, &prelude).await? {
            Run::Rows(got) => {
                compare(&expected, &got, self.order).map(|_| (expected, Got::Rows(got)))
            }
            Run::Failed(outcome)
                if !matches!(
                    outcome.status,
                    Status::TimeLimitExceeded | Status::InternalError
                ) =>
            {
                Some((expected, Got::Failed(outcome)))
            }
            Run::Failed(_) => None,
        })
    }
}
