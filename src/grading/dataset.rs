//! Loading a dataset script (plain SQL or `pg_dump` output of one schema) into the sandbox,
//! atomically: one transaction on a fresh connection, so a failing script changes nothing.
//! The script runs logged in as the dataset's owner role, never as a superuser: it can create
//! and fill its own schema and nothing else (no programs, untrusted extensions, roles, other
//! datasets), and logging in as the owner leaves no privileged session to `RESET ROLE` to.
use std::io::Cursor;

use futures_util::SinkExt;
use tokio_postgres::Client;

use super::lexer::{self, ScriptPart};
use super::sandbox::{quote_ident, Sandbox, SandboxError};
use crate::db::models::TableInfo;
use crate::job::TestData;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
    /// A hidden test's tables or columns are not the sample's.
    #[error("{0}")]
    Shape(String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

const TRANSACTION_CONTROL: [&str; 9] = [
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "END",
    "ABORT",
    "START",
    "SAVEPOINT",
    "RELEASE",
    "PREPARE",
];

/// A dataset name is a schema name we create: lower-case identifier, not a system one.
pub fn valid_name(name: &str) -> bool {
    (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with("pg_")
        && !["public", "information_schema"].contains(&name)
}

/// The schema a `CREATE SCHEMA [IF NOT EXISTS] name ...` statement creates, as the server
/// would fold it.
fn created_schema(statement: &str) -> Option<String> {
    let words = lexer::leading_words(statement, 6);
    if words.len() < 3 || words[0] != "CREATE" || words[1] != "SCHEMA" {
        return None;
    }
    let raw = if words[2] == "IF" {
        words.get(5)?
    } else {
        &words[2]
    };
    Some(match raw.strip_prefix('"') {
        Some(quoted) => quoted.trim_end_matches('"').replace("\"\"", "\""),
        None => raw.to_lowercase(),
    })
}

fn preview(statement: &str) -> String {
    let first: String = statement.chars().take(120).collect();
    if first.len() < statement.len() {
        format!("{first}…")
    } else {
        first
    }
}

/// Replaces schema `name` with what `script` creates and returns its tables with row counts.
pub async fn load(
    sandbox: &Sandbox,
    name: &str,
    script: &str,
) -> Result<Vec<TableInfo>, DatasetError> {
    let parts = lexer::split_script(script).map_err(DatasetError::Invalid)?;
    if parts.is_empty() {
        return Err(DatasetError::Invalid("the dataset script is empty".into()));
    }
    let existed = sandbox.prepare_dataset(name).await?;
    let loaded = load_as_owner(sandbox, name, TestData::Sample, parts, None).await;
    if loaded.is_err() && !existed {
        sandbox.forget_dataset(name).await;
    }
    let tables = loaded?;
    sandbox.record_sequences(name, TestData::Sample).await?;
    sandbox
        .record_loaded(name, TestData::Sample, &crate::auth::sha256_hex(script))
        .await?;
    Ok(tables)
}

/// Replaces the rows of hidden test `data` of dataset `name` with what `script` creates, in
/// the test's own database. With `same_shape`, the load is refused (and changes nothing)
/// unless its tables and columns are the sample's.
pub async fn load_test(
    sandbox: &Sandbox,
    name: &str,
    data: TestData,
    script: &str,
    same_shape: bool,
) -> Result<Vec<TableInfo>, DatasetError> {
    let parts = lexer::split_script(script).map_err(DatasetError::Invalid)?;
    if parts.is_empty() {
        return Err(DatasetError::Invalid("the test script is empty".into()));
    }
    let sample = match same_shape {
        true => Some(shape(&sandbox.admin_client().await?, name).await?),
        false => None,
    };
    sandbox.prepare_test(name, data).await?;
    let tables = load_as_owner(sandbox, name, data, parts, sample).await?;
    sandbox.record_sequences(name, data).await?;
    // Generated tests are recorded by the variant they are (`generated::ensure`).
    if let TestData::Uploaded(_) = data {
        sandbox
            .record_loaded(name, data, &crate::auth::sha256_hex(script))
            .await?;
    }
    Ok(tables)
}

/// Tables (and views) of a schema with their columns and types, in order.
const SHAPE: &str = "SELECT c.relname::text, a.attname::text,       tn.nspname::text || '.' || t.typname::text || '(' || a.atttypmod || ')'     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace     JOIN pg_attribute a ON a.attrelid = c.oid JOIN pg_type t ON t.oid = a.atttypid     JOIN pg_namespace tn ON tn.oid = t.typnamespace     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition       AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, a.attnum";

async fn shape(client: &Client, name: &str) -> Result<Shape, DatasetError> {
    Ok(client
        .query(SHAPE, &[&name])
        .await
        .map_err(|e| failed("listing columns", e))?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

type Shape = Vec<(String, String, String)>;

/// Why a test's tables and columns are not the sample's, in words, if they are not.
fn shape_difference(sample: &Shape, test: &Shape) -> Option<String> {
    if sample == test {
        return None;
    }
    let tables = |cols: &Shape| {
        let mut names: Vec<String> = cols.iter().map(|c| c.0.clone()).collect();
        names.dedup();
        names
    };
    let columns = |cols: &Shape, table: &str| -> Vec<String> {
        cols.iter()
            .filter(|c| c.0 == table)
            .map(|c| format!("{} {}", c.1, c.2))
            .collect()
    };
    let (ours, theirs) = (tables(sample), tables(test));
    if ours != theirs {
        return Some(format!(
            "a hidden test must have the sample's tables {ours:?}; this one has {theirs:?}"
        ));
    }
    let table = ours
        .iter()
        .find(|t| columns(sample, t) != columns(test, t))?;
    Some(format!(
        "table {table} must have the sample's columns {:?}; this test has {:?}",
        columns(sample, table),
        columns(test, table)
    ))
}

fn failed(what: &str, e: tokio_postgres::Error) -> DatasetError {
    let detail = e
        .as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string());
    DatasetError::Failed(format!("{what}: {detail}"))
}

/// What a script can create outside its schema: schemas, and trusted extensions (they install
/// as the bootstrap superuser, into any schema) or publications (CREATE on the database allows
/// them).
const OUTSIDE: &str = "SELECT coalesce(array_agg(o ORDER BY o), '{}') FROM ( \
    SELECT 'schema ' || nspname AS o FROM pg_namespace WHERE nspname <> $1 \
    UNION ALL SELECT 'extension ' || e.extname || ' in schema ' || n.nspname \
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname <> $1 \
    UNION ALL SELECT 'publication ' || pubname FROM pg_publication) x";

/// The load itself, on the owner's own connection, in one transaction.
async fn load_as_owner(
    sandbox: &Sandbox,
    name: &str,
    data: TestData,
    parts: Vec<ScriptPart>,
    same_shape_as: Option<Shape>,
) -> Result<Vec<TableInfo>, DatasetError> {
    let client = sandbox.owner_client(name, data).await?;
    let before: Vec<String> = client
        .query_one(OUTSIDE, &[&name])
        .await
        .map_err(SandboxError::from)?
        .get(0);
    let q = quote_ident(name);
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = '30s'; DROP SCHEMA IF EXISTS {q} CASCADE; \
             CREATE SCHEMA {q}; SET search_path = {q}"
        ))
        .await
        .map_err(|e| failed("preparing the schema", e))?;
    for part in parts {
        run_part(&client, name, part).await?;
    }
    check_confined(&client, name, &before).await?;
    if let Some(sample) = same_shape_as {
        if let Some(why) = shape_difference(&sample, &shape(&client, name).await?) {
            return Err(DatasetError::Shape(why));
        }
    }
    let finish = format!(
        "{}{}",
        sandbox.neutralize_sql(name),
        sandbox.grant_sql(name)
    );
    client
        .batch_execute(&finish)
        .await
        .map_err(|e| failed("granting access", e))?;
    let tables = count_rows(&client, name).await?;
    client
        .batch_execute("COMMIT")
        .await
        .map_err(|e| failed("committing", e))?;
    Ok(tables)
}

/// Runs one statement of the script, or one `COPY ... FROM stdin` with its data.
async fn run_part(client: &Client, name: &str, part: ScriptPart) -> Result<(), DatasetError> {
    match part {
        ScriptPart::Sql(statement) => {
            let first = lexer::leading_words(&statement, 1);
            if first
                .first()
                .is_some_and(|w| TRANSACTION_CONTROL.contains(&w.as_str()))
            {
                return Err(DatasetError::Invalid(format!(
                    "transaction control is not allowed in a dataset script: {}",
                    preview(&statement)
                )));
            }
            if created_schema(&statement).as_deref() == Some(name) {
                return Ok(()); // created already, empty
            }
            client
                .batch_execute(&statement)
                .await
                .map_err(|e| failed(&preview(&statement), e))
        }
        ScriptPart::Copy { statement, data } => {
            let fail = |e| failed(&preview(&statement), e);
            let sink = client
                .copy_in::<_, Cursor<Vec<u8>>>(statement.as_str())
                .await
                .map_err(fail)?;
            futures_util::pin_mut!(sink);
            sink.send(Cursor::new(data.into_bytes()))
                .await
                .map_err(fail)?;
            sink.finish().await.map(|_| ()).map_err(fail)
        }
    }
}

/// The script kept its schema and created nothing outside it.
async fn check_confined(
    client: &Client,
    name: &str,
    before: &[String],
) -> Result<(), DatasetError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regnamespace($1) IS NOT NULL",
            &[&quote_ident(name)],
        )
        .await
        .map_err(|e| failed("listing schemas", e))?
        .get(0);
    if !exists {
        return Err(DatasetError::Failed(format!(
            "the script dropped schema {name}"
        )));
    }
    let after: Vec<String> = client
        .query_one(OUTSIDE, &[&name])
        .await
        .map_err(|e| failed("listing schemas", e))?
        .get(0);
    let others: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    if !others.is_empty() {
        return Err(DatasetError::Failed(format!(
            "a dataset is one schema named {name}, but the script also creates {others:?}"
        )));
    }
    Ok(())
}

/// A table of a dataset's sample as learners see it (`GET /problems/{id}/dataset`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TablePreview {
    pub name: String,
    /// `table` or `view`.
    pub kind: &'static str,
    pub columns: Vec<ColumnInfo>,
    /// A table's first rows, values as PostgreSQL's text output (null for NULL), each cut at
    /// `PREVIEW_CHARS` characters (then ending in `…`). A view's rows are not shown.
    pub rows: Vec<Vec<Option<String>>>,
    /// A table's rows when the dataset was loaded; null for a view.
    pub row_count: Option<i64>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ColumnInfo {
    pub name: String,
    /// The column's type as PostgreSQL writes it (`integer`, `numeric(10,2)`, ...).
    #[serde(rename = "type")]
    pub type_name: String,
}

/// Characters of a value a preview shows, at most.
pub const PREVIEW_CHARS: usize = 200;
/// Tables and views a preview lists, at most.
const PREVIEW_RELATIONS: i64 = 50;

/// The sample's tables and views with their columns, and each table's first `rows` rows.
/// Read on an admin connection, so it runs nothing the dataset's author wrote: no view is
/// evaluated (a view's functions would run with the admin's rights), a table's rows come
/// through the types' output functions (no casts, which an author may define), and row
/// counts are those recorded at load time (`counts`).
pub async fn sample_tables(
    sandbox: &Sandbox,
    name: &str,
    rows: u32,
    counts: &[TableInfo],
) -> Result<Vec<TablePreview>, SandboxError> {
    let client = sandbox.admin_client().await?;
    client.batch_execute("SET statement_timeout = '2s'").await?;
    let relations = client
        .query(
            "SELECT c.oid, c.relname::text, c.relkind IN ('v', 'm') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND (c.relkind IN ('p', 'v', 'm') \
               OR (c.relkind = 'r' AND NOT c.relispartition)) ORDER BY 2 LIMIT $2",
            &[&name, &PREVIEW_RELATIONS],
        )
        .await?;
    let mut tables = Vec::with_capacity(relations.len());
    for relation in relations {
        let oid: u32 = relation.get(0);
        let table: String = relation.get(1);
        let view: bool = relation.get(2);
        let columns = client
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[&oid],
            )
            .await?
            .iter()
            .map(|c| ColumnInfo {
                name: c.get(0),
                type_name: c.get(1),
            })
            .collect();
        let shown = if view {
            Vec::new()
        } else {
            let sql = format!(
                "SELECT * FROM {}.{} LIMIT {rows}",
                quote_ident(name),
                quote_ident(&table)
            );
            client
                .simple_query(&sql)
                .await?
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        Some((0..row.len()).map(|i| row.get(i).map(cut)).collect())
                    }
                    _ => None,
                })
                .collect()
        };
        tables.push(TablePreview {
            kind: if view { "view" } else { "table" },
            row_count: counts.iter().find(|t| t.name == table).map(|t| t.rows),
            name: table,
            columns,
            rows: shown,
        });
    }
    Ok(tables)
}

fn cut(value: &str) -> String {
    match value.char_indices().nth(PREVIEW_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

/// The dataset's tables with their row counts.
async fn count_rows(client: &Client, name: &str) -> Result<Vec<TableInfo>, DatasetError> {
    let tables = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1",
            &[&name],
        )
        .await
        .map_err(|e| failed("listing tables", e))?;
    let mut infos = Vec::with_capacity(tables.len());
    for row in tables {
        let table: String = row.get(0);
        let count = format!(
            "SELECT count(*) FROM {}.{}",
            quote_ident(name),
            quote_ident(&table)
        );
        let rows: i64 = client
            .query_one(&count, &[])
            .await
            .map_err(|e| failed("counting rows", e))?
            .get(0);
        infos.push(TableInfo { name: table, rows });
    }
    Ok(infos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_created_schemas() {
        assert!(valid_name("shop") && valid_name("hr_2"));
        assert!(
            !valid_name("Shop") && !valid_name("pg_x") && !valid_name("public") && !valid_name("")
        );
        assert_eq!(
            created_schema("CREATE SCHEMA shop").as_deref(),
            Some("shop")
        );
        assert_eq!(
            created_schema("create schema if not exists Shop").as_deref(),
            Some("shop")
        );
        assert_eq!(
            created_schema("CREATE SCHEMA \"Odd\"").as_deref(),
            Some("Odd")
        );
        assert_eq!(created_schema("CREATE TABLE x (a int)"), None);
    }
}
