//! The PostgreSQL sandbox that runs solutions.
//!
//! Defences, each independent of the others:
//! - Solutions run in a separate database, on connections that *log in* as the dataset's own
//!   unprivileged grading role (`<prefix>_dr_<dataset>` to read, `<prefix>_dw_<dataset>` to
//!   write), a member of nothing: there is no other role to reach with `RESET ROLE`,
//!   `SET ROLE` (even from a dataset's function) or `set_config('role', ...)`, and its rights
//!   end at its schema. Datasets are loaded by a per-dataset owner login, never a superuser,
//!   and their views and functions are made to run with the caller's rights.
//! - Functions that change settings (`set_config`), run query text (`*_to_xml*`, `ts_stat`)
//!   or write large objects are revoked; per-role memory limits, and the cluster's own
//!   (`config/sandbox-postgresql.conf`), bound the rest.
//! - The leading keyword must start a query (or, for writeable problems, a DML statement), and
//!   the text reaches the server only in an extended-protocol `Parse` (`wire`), which refuses a
//!   second statement however it is hidden.
//! - Everything runs in a transaction that is always rolled back, read-only for read problems,
//!   which undoes every setting, cursor, LISTEN and temporary table of the run; cached plans, and
//!   in a writing run sequences' session state, are discarded before it; a run that did not end
//!   cleanly is followed by a full reset of the session; any doubt about a connection's state
//!   and it is thrown away, and the slot opens no other until its backend is gone.
//! - Time: `statement_timeout` inside, and a deadline outside the session that terminates the
//!   backend from an admin connection (a solution cannot catch that).
//! - Output: rows and bytes are counted as they stream, and the socket itself has a byte
//!   budget, so a gigantic value or error message cannot be buffered in our memory.
//! - Writeable problems on one dataset take turns (advisory lock) and its sequences are put
//!   back afterwards, so gradings never block or affect each other.
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use secrecy::ExposeSecret;

use super::compare::ResultSet;
use super::lexer;
use super::wire::{self, ServerError, WireError};
use crate::config::SandboxSettings;
use crate::job::{Outcome, Status, TestData};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The sandbox could not be reached before the solution was sent: trying again later
    /// costs the job nothing.
    #[error("sandbox database unavailable: {0}")]
    Unavailable(String),
    /// The run broke for a reason outside the solution after its text reached the sandbox
    /// (backend terminated, out of memory, connection lost, serialization failure): a counted
    /// attempt, never a verdict.
    #[error("grading interrupted: {0}")]
    Interrupted(String),
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
}

impl From<tokio_postgres::Error> for SandboxError {
    fn from(e: tokio_postgres::Error) -> Self {
        // A server's error says only "db error" until its message is added, and a TLS or
        // I/O error only what failed until its cause is.
        SandboxError::Unavailable(match e.as_db_error() {
            Some(db) => format!("{e}: {}", db.message()),
            None => match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            },
        })
    }
}

/// What to run: a solution or reference against a dataset's sample or one of its hidden
/// tests. `check_table` makes it writeable.
pub struct RunSpec<'a> {
    pub dataset: &'a str,
    pub data: TestData,
    pub sql: &'a str,
    pub time_limit_ms: u32,
    pub check_table: Option<&'a str>,
    /// Statements of ours (deleting rows, for a counterexample) run first in the statement's
    /// transaction, with the write role's rights; a read-only statement then runs read-only.
    pub prelude: Option<&'a str>,
}

/// The rows a statement produced (the check table's contents for writeable problems), or
/// the verdict that stopped it.
#[derive(Debug)]
pub enum Run {
    Rows(ResultSet),
    Failed(Outcome),
}

const READ_KEYWORDS: [&str; 4] = ["SELECT", "WITH", "VALUES", "TABLE"];
const WRITE_KEYWORDS: [&str; 4] = ["INSERT", "UPDATE", "DELETE", "MERGE"];
/// First key of the two-int advisory locks the sandbox takes.
pub(super) const LOCK_SPACE: i32 = 0x534a; // "SJ"

/// The sandbox's own bookkeeping (see `harden_sql`).
/// Fixed output formats on every connection: values are compared as this text, and generated
/// tests pick rows by it, so every sandbox server must render them alike whatever its own
/// configuration.
const FORMATS: &str = "-c DateStyle=ISO,MDY -c TimeZone=UTC -c IntervalStyle=postgres \
                       -c extra_float_digits=1 -c bytea_output=hex";

pub(super) const META: &str = "\"sqljudge-meta\"";

/// Records where a dataset's sequences stand now (`$1`: the dataset), for those not recorded.
fn record_sequences_sql() -> String {
    format!(
        "INSERT INTO {META}.sequences SELECT $1::text, \
           format('%I.%I', schemaname, sequencename), last_value, start_value \
         FROM pg_sequences WHERE schemaname = $1::text \
         ON CONFLICT (dataset, sequence) DO NOTHING"
    )
}

/// Sets sequences to recorded positions: `nextval()` is not undone by ROLLBACK (nor by a
/// backend that died).
async fn put_back(
    admin: &Client,
    sequences: &[(String, Option<i64>, i64)],
) -> Result<(), tokio_postgres::Error> {
    for (name, last, start) in sequences {
        admin
            .execute(
                "SELECT setval($1::text::regclass, $2, $3)",
                &[name, &last.unwrap_or(*start), &last.is_some()],
            )
            .await?;
    }
    Ok(())
}

/// Quotes an identifier for SQL text.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL text (standard_conforming_strings is on).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Creates `role` if missing and (re)sets its attributes: never privileged, and NOINHERIT,
/// so a role has no rights but its own until it switches to a group with `SET ROLE`.
fn ensure_role(sql: &mut String, role: &str, options: &str) {
    sql.push_str(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) \
         THEN CREATE ROLE {q}; END IF; END $$;\n\
         ALTER ROLE {q} WITH {options} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
         NOBYPASSRLS NOINHERIT;\n",
        lit = literal(role),
        q = quote_ident(role)
    ));
}

/// Quotes a `schema.table` name, or a bare table name.
pub fn quote_qualified(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

pub struct Sandbox {
    settings: SandboxSettings,
    admin: Config,
    /// Set when the URL's `sslmode` asks for TLS (see `tls`).
    tls: Option<super::tls::Tls>,
    host: String,
    port: u16,
    dbname: String,
    /// Bumped whenever grading roles may have been dropped and created again (start-up
    /// adoption, a failed first load): a session of a dropped role has none of the new one's
    /// rights, so idle connections opened before are closed.
    roles_changed: AtomicU64,
    /// Idle grading connections of this process's slots, least recently used first (see
    /// `take_idle`), at most `IDLE_PER_SLOT` for each slot there is.
    idle: std::sync::Mutex<Vec<SandboxConn>>,
    /// Slots there are now (`slot` counts them up, dropping one down): the pool's size.
    slots: AtomicUsize,
    /// Reachable and up to date with the platform's datasets and tests: its executors take
    /// jobs only then (see `restore::keep`).
    ready: AtomicBool,
    /// Wakes its keeper: a grading found it behind.
    stale: tokio::sync::Notify,
    /// Gradings this process finished here.
    graded: AtomicU64,
    /// A server other than the first: it grades a problem only in the version (by id, its
    /// `updated_at` in µs) its contents were last brought up to date for. None: not yet.
    secondary: bool,
    synced: std::sync::RwLock<Option<HashMap<i64, i64>>>,
}

impl Sandbox {
    pub fn new(settings: SandboxSettings) -> Result<Sandbox, SandboxError> {
        let (url, tls) = super::tls::split(settings.url.expose_secret())?;
        let admin: Config = url
            .parse()
            .map_err(|e| SandboxError::Config(format!("sandbox.url: {e}")))?;
        let host = match admin.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            _ => return Err(SandboxError::Config("sandbox.url needs a TCP host".into())),
        };
        let port = admin.get_ports().first().copied().unwrap_or(5432);
        let dbname = admin
            .get_dbname()
            .ok_or_else(|| SandboxError::Config("sandbox.url needs a database name".into()))?
            .to_string();
        let prefix_ok = settings.role_prefix.len() <= 40
            && settings
                .role_prefix
                .starts_with(|c: char| c.is_ascii_lowercase())
            && settings
                .role_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !prefix_ok {
            return Err(SandboxError::Config(
                "sandbox.role_prefix must be [a-z][a-z0-9_]*, at most 40 characters".into(),
            ));
        }
        // PostgreSQL takes idle_session_timeout up to 2^31 - 1 ms.
        if settings.idle_connection_secs > 86_400 {
            return Err(SandboxError::Config(
                "sandbox.idle_connection_secs must be at most 86400 (a day)".into(),
            ));
        }
        Ok(Sandbox {
            settings,
            admin,
            tls,
            host,
            port,
            dbname,
            roles_changed: AtomicU64::new(0),
            idle: Default::default(),
            slots: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            stale: tokio::sync::Notify::new(),
            graded: AtomicU64::new(0),
            secondary: false,
            synced: Default::default(),
        })
    }

    /// `host:port/database`, for health reports (never the credentials).
    pub fn label(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// One of several servers, not the first (see `holds`).
    pub fn into_secondary(self) -> Sandbox {
        Sandbox {
            secondary: true,
            ..self
        }
    }

    pub fn secondary(&self) -> bool {
        self.secondary
    }

    /// Records the problem versions its contents now match.
    pub fn set_synced(&self, versions: HashMap<i64, i64>) {
        *self.synced.write().expect("synced lock") = Some(versions);
    }

    /// Whether a grading of this version of a problem may run here: always on the first
    /// server (admin loads go there first), on another only once its contents were brought
    /// up to date for that version.
    pub fn holds(&self, problem: i64, version: i64) -> bool {
        !self.secondary
            || self
                .synced
                .read()
                .expect("synced lock")
                .as_ref()
                .is_some_and(|v| v.get(&problem) == Some(&version))
    }

    pub fn graded(&self) -> u64 {
        self.graded.load(Ordering::Relaxed)
    }

    pub fn count_graded(&self) {
        self.graded.fetch_add(1, Ordering::Relaxed);
    }

    /// A grading found it behind: its keeper makes a pass now rather than at its next tick.
    pub fn wake_keeper(&self) {
        self.stale.notify_one();
    }

    /// Until `wake_keeper` is called (at once if it was called since the last wait).
    pub async fn woken(&self) {
        self.stale.notified().await
    }

    /// An admin-side connection (not a grading's), over TLS when the URL asks for it.
    async fn connect(&self, config: &Config) -> Result<Client, SandboxError> {
        let connecting = async {
            Ok::<_, SandboxError>(match &self.tls {
                None => {
                    let (client, connection) = config.connect(NoTls).await?;
                    detach(client, connection)
                }
                Some(tls) => {
                    let mut config = config.clone();
                    config.ssl_mode(SslMode::Require);
                    let (client, connection) = config.connect(tls.admin.clone()).await?;
                    detach(client, connection)
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(5), connecting)
            .await
            .map_err(|_| SandboxError::Unavailable("connect timed out".into()))?
    }

    /// Whether the server accepts a connection now.
    pub async fn reachable(&self) -> bool {
        self.server_client().await.is_ok()
    }

    pub fn settings(&self) -> &SandboxSettings {
        &self.settings
    }

    pub fn database(&self) -> &str {
        &self.dbname
    }

    /// A role of one dataset: `o` its owner (loads it), `dr`/`dw` the groups gradings run as.
    /// Names longer than PostgreSQL's 63 bytes keep a prefix of the dataset name and a hash.
    fn dataset_role(&self, kind: &str, dataset: &str) -> String {
        let prefix = &self.settings.role_prefix;
        let full = format!("{prefix}_{kind}_{dataset}");
        if full.len() <= 63 {
            return full;
        }
        // '-' never occurs in a dataset name, so a shortened name is never another dataset's
        // full one.
        let hash = &crate::auth::sha256_hex(dataset)[..12];
        let keep = 63 - prefix.len() - kind.len() - 2 - 1 - hash.len();
        format!("{prefix}_{kind}_{}-{hash}", &dataset[..keep])
    }

    /// The role that owns (and loads) `dataset`.
    pub fn owner_role(&self, dataset: &str) -> String {
        self.dataset_role("o", dataset)
    }

    /// The role a grading of `dataset` logs in as.
    fn grading_role(&self, dataset: &str, writeable: bool) -> String {
        self.dataset_role(if writeable { "dw" } else { "dr" }, dataset)
    }

    /// The database that holds a test's data: the sandbox database for samples, one beside it
    /// per hidden test (`<db>_u3`, `<db>_g2`), with every dataset's schema under its own name.
    pub fn database_of(&self, data: TestData) -> String {
        match data {
            TestData::Sample => self.dbname.clone(),
            other => format!("{}_{}", self.dbname, other.tag()),
        }
    }

    /// An admin (privileged) connection to the sandbox database.
    pub async fn admin_client(&self) -> Result<Client, SandboxError> {
        self.admin_client_on(&self.dbname).await
    }

    /// An admin connection to one of the sandbox's databases. It resolves names in
    /// `pg_catalog` alone: the default path starts with a schema named after the admin's login,
    /// which a dataset of that name would own, and a function there matching a call of ours
    /// exactly (`format(text, regclass)`) would run as the superuser.
    async fn admin_client_on(&self, db: &str) -> Result<Client, SandboxError> {
        let mut config = self.admin.clone();
        config.dbname(db).options(format!(
            "{FORMATS} -c client_min_messages=warning -c search_path=pg_catalog"
        ));
        self.connect(&config).await
    }

    /// An admin connection to a test's database.
    pub async fn admin_client_for(&self, data: TestData) -> Result<Client, SandboxError> {
        self.admin_client_on(&self.database_of(data)).await
    }

    /// A connection logged in as the owner of `dataset` (see `prepare_dataset`) to the
    /// database of `data`.
    pub async fn owner_client(
        &self,
        dataset: &str,
        data: TestData,
    ) -> Result<Client, SandboxError> {
        let mut config = Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(self.database_of(data))
            .user(self.dataset_role("o", dataset))
            .application_name("sqljudge-dataset")
            .options(format!("{FORMATS} -c client_min_messages=warning"));
        self.login_password(&mut config);
        self.connect(&config).await
    }

    /// Runs `sql` in one transaction holding the sandbox's role lock: instances starting or
    /// loading datasets together must not race on CREATE ROLE.
    async fn locked(&self, client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({LOCK_SPACE}, 0);\n{sql}\nCOMMIT;"
            ))
            .await
    }

    /// Creates the sandbox database, hardens it, and brings every dataset schema already there
    /// (including those of older versions) under the per-dataset role model. Idempotent.
    pub async fn bootstrap(&self) -> Result<(), SandboxError> {
        let server = self.server_client().await?;
        create_database(&server, &self.dbname).await?;
        self.roles_changed.fetch_add(1, Ordering::SeqCst);
        let admin = self.admin_client().await?;
        let failed =
            |e: tokio_postgres::Error| SandboxError::Unavailable(format!("sandbox bootstrap: {e}"));
        self.locked(
            &admin,
            &format!("{}{}", self.legacy_sql(), self.harden_sql(&self.dbname)),
        )
        .await
        .map_err(failed)?;
        // The hidden tests' databases: every hardening applies to each (functions and their
        // rights are per database).
        let pattern = format!("{}\\_%", self.dbname.replace('_', "\\_"));
        let tests = server
            .query(
                "SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY 1",
                &[&pattern],
            )
            .await?;
        for row in tests {
            let db: String = row.get(0);
            let tag = db.trim_start_matches(&format!("{}_", self.dbname));
            if TestData::parse(tag).is_some() {
                let admin = self.admin_client_on(&db).await?;
                self.locked(&admin, &self.harden_sql(&db))
                    .await
                    .map_err(failed)?;
            }
        }
        let schemas = admin
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname !~ '^pg_' \
                 AND nspname NOT IN ('public', 'information_schema') ORDER BY 1",
                &[],
            )
            .await?;
        for row in schemas {
            let name: String = row.get(0);
            if !super::dataset::valid_name(&name) {
                continue;
            }
            let sql = format!(
                "{}{}{}",
                self.dataset_roles_sql(&name),
                self.neutralize_sql(&name),
                self.grant_sql(&name)
            );
            self.locked(&admin, &sql).await.map_err(failed)?;
        }
        Ok(())
    }

    /// The password of the logins the sandbox creates, on a connection config.
    fn login_password(&self, config: &mut Config) {
        if let Some(password) = self.role_password() {
            config.password(password);
        }
    }

    /// The password of the logins the sandbox creates, if one is set.
    fn role_password(&self) -> Option<&[u8]> {
        let password = self.settings.role_password.expose_secret();
        (!password.is_empty()).then_some(password.as_bytes())
    }

    fn password_sql(&self) -> String {
        let password = self.settings.role_password.expose_secret();
        if password.is_empty() {
            "NULL".to_string()
        } else {
            literal(password)
        }
    }

    /// A connection to the cluster's maintenance database, to create databases.
    async fn server_client(&self) -> Result<Client, SandboxError> {
        self.admin_client_on("postgres").await
    }

    /// Roles of earlier versions: groups that could read (write) every dataset, and slot
    /// logins that could switch to any dataset's group.
    fn legacy_sql(&self) -> String {
        format!(
            "DO $$ DECLARE r text; BEGIN\n\
               FOR r IN SELECT rolname FROM pg_roles WHERE rolname ~ {legacy} LOOP\n\
                 EXECUTE format('DROP OWNED BY %I', r); EXECUTE format('DROP ROLE %I', r);\n\
               END LOOP;\n\
             END $$;\n",
            legacy = literal(&format!(
                "^{}_([rw][0-9]+|read|write|readers|writers)$",
                self.settings.role_prefix
            )),
        )
    }

    /// Hardens one of the sandbox's databases (run on a connection to it).
    fn harden_sql(&self, db: &str) -> String {
        let mut sql = String::new();
        let db = quote_ident(db);
        sql.push_str(&format!(
            "ALTER DATABASE {db} CONNECTION LIMIT {limit};\n",
            limit = self.settings.connection_limit,
        ));
        // What solutions never need, caught by catalog query so that every overload goes:
        // other sessions' activity, statistics and locks (backends to signal; column statistics,
        // whose most common values and histograms would show a hidden test's rows; table
        // statistics, which a session keeps through any reset for up to a second: an earlier
        // grading's scans and rows read or changed); set_config() (settings, role); functions
        // that run query text (they would run set_config() out of sight of the keyword check);
        // large objects and WAL messages (they write even in a READ ONLY transaction); the
        // connection's prepared statements and cursors (an earlier grading's: a run's own
        // statements replace its unnamed statement and the reset closes its cursors, this is
        // the second line); what measures others' writes (sizes, a table's pages, WAL
        // positions, transaction ids, their age and fate, snapshots, the control file, who
        // blocks whom), and taking a transaction id in a READ ONLY transaction.
        sql.push_str(&format!(
            "REVOKE ALL ON DATABASE {db} FROM PUBLIC;\n\
             REVOKE ALL ON SCHEMA public FROM PUBLIC;\n\
             DO $$ DECLARE v regclass; BEGIN\n\
               FOR v IN SELECT c.oid::regclass FROM pg_class c\n\
                 JOIN pg_namespace n ON n.oid = c.relnamespace\n\
                 WHERE n.nspname = 'pg_catalog' AND c.relkind = 'v' AND (c.relname LIKE 'pg\\_stat%'\n\
                   OR c.relname IN ('pg_locks', 'pg_prepared_statements', 'pg_cursors'))\n\
               LOOP EXECUTE format('REVOKE SELECT ON %s FROM PUBLIC', v); END LOOP;\n\
             END $$;\n\
             DO $$ DECLARE f regprocedure; BEGIN\n\
               FOR f IN SELECT p.oid::regprocedure FROM pg_proc p\n\
                 JOIN pg_namespace n ON n.oid = p.pronamespace\n\
                 WHERE n.nspname = 'pg_catalog' AND (p.proname LIKE 'pg\\_advisory%'\n\
                   OR p.proname LIKE 'pg\\_try\\_advisory%'\n\
                   OR p.proname LIKE 'pg\\_stat\\_get\\_%'\n\
                   OR p.proname IN ('pg_cancel_backend', 'pg_terminate_backend',\n\
                     'pg_lock_status', 'pg_notify', 'pg_blocking_pids',\n\
                     'set_config', 'ts_stat', 'pg_logical_emit_message', 'loread', 'lowrite',\n\
                     'setseed', 'pg_prepared_statement', 'pg_cursor', 'pg_relation_size',\n\
                     'pg_table_size', 'pg_total_relation_size', 'pg_indexes_size',\n\
                     'pg_database_size', 'pg_tablespace_size', 'pg_current_wal_lsn',\n\
                     'pg_current_wal_insert_lsn', 'pg_current_wal_flush_lsn',\n\
                     'pg_current_snapshot', 'txid_current_snapshot', 'pg_xact_status',\n\
                     'txid_status', 'pg_current_xact_id', 'pg_current_xact_id_if_assigned',\n\
                     'txid_current', 'txid_current_if_assigned', 'pg_last_committed_xact',\n\
                     'pg_xact_commit_timestamp', 'pg_xact_commit_timestamp_origin',\n\
                     'pg_isolation_test_session_is_blocked', 'pg_safe_snapshot_blocking_pids',\n\
                     'pg_get_multixact_members', 'pg_control_checkpoint', 'pg_control_system',\n\
                     'pg_control_recovery', 'pg_control_init')\n\
                   OR p.oid IN (to_regprocedure('pg_catalog.age(xid)'),\n\
                     to_regprocedure('pg_catalog.mxid_age(xid)'),\n\
                     to_regprocedure('pg_catalog.currtid2(text, tid)'))\n\
                   OR p.proname LIKE '%\\_to\\_xml%'\n\
                   OR p.proname LIKE 'lo\\_%'\n\
                   OR (p.proname = 'ts_rewrite' AND p.proargtypes[1] = 'text'::regtype))\n\
               LOOP EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f); END LOOP;\n\
             END $$;\n"
        ));
        // Where each dataset's sequences stood when it was loaded: writeable gradings put them
        // back there, whatever an interrupted one (kill -9, a shutdown) left. And which script
        // each generated test was built from (in the sample's database). Not a valid
        // dataset name, so no script can create or replace it; no role but ours can read it.
        sql.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {META};\n\
             REVOKE ALL ON SCHEMA {META} FROM PUBLIC;\n\
             CREATE TABLE IF NOT EXISTS {META}.sequences (dataset text NOT NULL, \
               sequence text NOT NULL, last_value bigint, start_value bigint NOT NULL, \
               PRIMARY KEY (dataset, sequence));\n\
             CREATE TABLE IF NOT EXISTS {META}.variants (dataset text NOT NULL, \
               variant smallint NOT NULL, source text NOT NULL, PRIMARY KEY (dataset, variant));\n\
             CREATE TABLE IF NOT EXISTS {META}.loaded (dataset text NOT NULL, \
               test text NOT NULL, sha256 text NOT NULL, PRIMARY KEY (dataset, test));\n"
        ));
        sql
    }

    /// Ensures the roles of `dataset` (run as the superuser): its owner, a login with rights
    /// in the sandbox database only, and the read and write groups gradings switch to. A
    /// schema that exists with another owner (loaded by an earlier version, as the superuser)
    /// is handed to the owner with everything in it.
    fn dataset_roles_sql(&self, dataset: &str) -> String {
        let mut sql = String::new();
        let db = quote_ident(&self.dbname);
        let s = &self.settings;
        let password = self.password_sql();
        let outer_limit = s.max_time_limit_ms as u64 + s.grace_ms;
        // Another process's idle connections hold the limit's room no longer than this.
        let idle = s.idle_connection_secs;
        for writeable in [false, true] {
            let role = self.grading_role(dataset, writeable);
            let q = quote_ident(&role);
            ensure_role(
                &mut sql,
                &role,
                &format!("LOGIN CONNECTION LIMIT {}", s.connection_limit),
            );
            // Memory: small per-operation budgets (a sort or hash may use work_mem ×
            // hash_mem_multiplier, several per plan), no parallel workers (each would get its
            // own budget, outside the backend), no JIT (compilation memory and time that
            // statement_timeout sees late). Failing solutions, their text and durations stay
            // out of a shared cluster's log (it would fill the disk). A solution cannot change
            // any of them: SET is refused and set_config() revoked.
            sql.push_str(&format!(
                "ALTER ROLE {q} PASSWORD {password};\n\
                 ALTER ROLE {q} RESET ALL;\n\
                 GRANT CONNECT ON DATABASE {db} TO {q};\n\
                 ALTER ROLE {q} SET statement_timeout = '{outer_limit}ms';\n\
                 ALTER ROLE {q} SET idle_in_transaction_session_timeout = '60s';\n\
                 ALTER ROLE {q} SET idle_session_timeout = '{idle}s';\n\
                 ALTER ROLE {q} SET temp_file_limit = '256MB';\n\
                 ALTER ROLE {q} SET work_mem = '8MB';\n\
                 ALTER ROLE {q} SET hash_mem_multiplier = 1;\n\
                 ALTER ROLE {q} SET max_parallel_workers_per_gather = 0;\n\
                 ALTER ROLE {q} SET jit = off;\n\
                 ALTER ROLE {q} SET log_min_messages = fatal;\n\
                 ALTER ROLE {q} SET log_min_error_statement = panic;\n\
                 ALTER ROLE {q} SET log_min_duration_statement = -1;\n\
                 ALTER ROLE {q} SET lc_messages = 'C';\n",
            ));
        }
        let owner = self.dataset_role("o", dataset);
        let o = quote_ident(&owner);
        ensure_role(&mut sql, &owner, "LOGIN CONNECTION LIMIT 2");
        // pg_dump output starts with set_config('search_path', ...): owners may run it,
        // gradings never.
        sql.push_str(&format!(
            "ALTER ROLE {o} PASSWORD {password};\n\
             ALTER ROLE {o} RESET ALL;\n\
             ALTER ROLE {o} SET statement_timeout = '300s';\n\
             ALTER ROLE {o} SET idle_in_transaction_session_timeout = '60s';\n\
             ALTER ROLE {o} SET temp_file_limit = '1GB';\n\
             ALTER ROLE {o} SET max_parallel_workers_per_gather = 0;\n\
             ALTER ROLE {o} SET jit = off;\n\
             GRANT CONNECT, CREATE ON DATABASE {db} TO {o};\n\
             GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO {o};\n\
             DO $$ DECLARE r record; BEGIN\n\
               IF to_regnamespace({schema}) IS NULL THEN RETURN; END IF;\n\
               EXECUTE format('ALTER SCHEMA %I OWNER TO %I', {name}, {owner});\n\
               FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c\n\
                 WHERE c.relnamespace = {schema}::regnamespace AND c.relowner <> {owner}::regrole\n\
                   AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')\n\
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass\n\
                     AND d.objid = c.oid AND d.deptype IN ('a', 'i'))\n\
               LOOP EXECUTE format('ALTER TABLE %s OWNER TO %I', r.rel, {owner}); END LOOP;\n\
               FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p\n\
                 WHERE p.pronamespace = {schema}::regnamespace AND p.proowner <> {owner}::regrole\n\
               LOOP EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.f, {owner}); END LOOP;\n\
               FOR r IN SELECT t.oid::regtype AS t, t.typtype FROM pg_type t\n\
                 WHERE t.typnamespace = {schema}::regnamespace AND t.typowner <> {owner}::regrole\n\
                   AND t.typtype IN ('c', 'd', 'e', 'r') AND t.typelem = 0\n\
                   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')\n\
               LOOP EXECUTE format('ALTER %s %s OWNER TO %I',\n\
                   CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.t, {owner});\n\
               END LOOP;\n\
             END $$;\n",
            password = self.password_sql(),
            schema = literal(&quote_ident(dataset)),
            name = literal(dataset),
            owner = literal(&owner),
        ));
        sql
    }

    /// Makes the database of a hidden test ready for `dataset` to be loaded into it: created and
    /// hardened when missing, and open to the dataset's roles. Returns whether the dataset's
    /// schema was there already.
    pub async fn prepare_test(&self, dataset: &str, data: TestData) -> Result<bool, SandboxError> {
        let db = self.database_of(data);
        let failed = |e: tokio_postgres::Error| {
            SandboxError::Unavailable(format!("preparing test database {}: {e}", data.tag()))
        };
        create_database(&self.server_client().await?, &db).await?;
        // Every time, not only when this call created it: a creator that died before hardening
        // must not leave it open.
        let test = self.admin_client_on(&db).await?;
        self.locked(&test, &self.harden_sql(&db))
            .await
            .map_err(failed)?;
        let roles: Vec<String> = ["o", "dr", "dw"]
            .iter()
            .map(|kind| quote_ident(&self.dataset_role(kind, dataset)))
            .collect();
        let admin = self.admin_client().await?;
        self.locked(
            &admin,
            &format!(
                "GRANT CONNECT ON DATABASE {} TO {};\nGRANT CREATE ON DATABASE {0} TO {};",
                quote_ident(&db),
                roles.join(", "),
                roles[0]
            ),
        )
        .await
        .map_err(failed)?;
        // Rights on functions are the database's own: as in the sample's (see
        // `dataset_roles_sql`), owners may run pg_dump's set_config().
        self.locked(
            &test,
            &format!(
                "GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO {};",
                roles[0]
            ),
        )
        .await
        .map_err(failed)?;
        Ok(test
            .query_one(
                "SELECT to_regnamespace($1) IS NOT NULL",
                &[&quote_ident(dataset)],
            )
            .await?
            .get(0))
    }

    /// Removes a dataset's rows from a hidden test's database.
    pub async fn drop_test(&self, dataset: &str, data: TestData) -> Result<(), SandboxError> {
        let admin = self.admin_client_for(data).await?;
        admin
            .batch_execute(&format!(
                "SET lock_timeout = '30s'; DROP SCHEMA IF EXISTS {} CASCADE",
                quote_ident(dataset)
            ))
            .await?;
        admin
            .execute(
                &format!("DELETE FROM {META}.sequences WHERE dataset = $1"),
                &[&dataset],
            )
            .await?;
        self.admin_client()
            .await?
            .execute(
                &format!("DELETE FROM {META}.loaded WHERE dataset = $1 AND test = $2"),
                &[&dataset, &data.tag()],
            )
            .await?;
        Ok(())
    }

    /// Ensures `dataset`'s roles and hands an existing schema to its owner (superuser
    /// connection), before the dataset is loaded on the owner's own connection.
    /// Returns whether the dataset existed already.
    pub async fn prepare_dataset(&self, dataset: &str) -> Result<bool, SandboxError> {
        let admin = self.admin_client().await?;
        let existed = admin
            .query_one(
                "SELECT to_regnamespace($1) IS NOT NULL",
                &[&quote_ident(dataset)],
            )
            .await?
            .get(0);
        self.locked(&admin, &self.dataset_roles_sql(dataset))
            .await
            .map_err(|e| SandboxError::Unavailable(format!("preparing dataset roles: {e}")))?;
        Ok(existed)
    }

    /// After a load: where the dataset's sequences stand is where gradings put them back.
    pub async fn record_sequences(
        &self,
        dataset: &str,
        data: TestData,
    ) -> Result<(), SandboxError> {
        let admin = self.admin_client_for(data).await?;
        admin
            .execute(
                &format!("DELETE FROM {META}.sequences WHERE dataset = $1"),
                &[&dataset],
            )
            .await?;
        admin.execute(&record_sequences_sql(), &[&dataset]).await?;
        Ok(())
    }

    /// Records which script the sample (`test` "") or an uploaded test of `dataset` was loaded
    /// from, in the sample's database: what `restore` compares with the platform's records.
    pub async fn record_loaded(
        &self,
        dataset: &str,
        data: TestData,
        sha256: &str,
    ) -> Result<(), SandboxError> {
        self.admin_client()
            .await?
            .execute(
                &format!(
                    "INSERT INTO {META}.loaded VALUES ($1, $2, $3) \
                     ON CONFLICT (dataset, test) DO UPDATE SET sha256 = EXCLUDED.sha256"
                ),
                &[&dataset, &data.tag(), &sha256],
            )
            .await?;
        Ok(())
    }

    /// What the sandbox holds now: (dataset, test tag, script hash) of each sample and uploaded
    /// test whose schema (sample) or database (test) still exists, and each generated test
    /// whose database exists. None when the sandbox database itself is gone.
    pub async fn loaded(&self) -> Result<Option<Vec<(String, String, String)>>, SandboxError> {
        self.held(&[]).await
    }

    /// `loaded`, after adopting `platform`'s records (dataset, test tag, script hash) of what
    /// exists in a sandbox that has no record at all yet: one loaded before records were kept
    /// holds the platform's scripts, and is not loaded again for want of a record.
    pub async fn held(
        &self,
        platform: &[(String, String, String)],
    ) -> Result<Option<Vec<(String, String, String)>>, SandboxError> {
        let exists = self
            .server_client()
            .await?
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&self.dbname],
            )
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let admin = self.admin_client().await?;
        if !platform.is_empty() {
            let column = |i: usize| {
                platform
                    .iter()
                    .map(|p| [&p.0, &p.1, &p.2][i].clone())
                    .collect::<Vec<String>>()
            };
            admin
                .execute(
                    &format!(
                        "INSERT INTO {META}.loaded SELECT d, t, s FROM unnest($2::text[], $3::text[], \
                           $4::text[]) x(d, t, s) \
                         WHERE NOT EXISTS (SELECT FROM {META}.loaded) AND CASE WHEN t = '' \
                           THEN EXISTS (SELECT FROM pg_namespace WHERE nspname = d) \
                           ELSE EXISTS (SELECT FROM pg_database WHERE datname = $1 || '_' || t) END"
                    ),
                    &[&self.dbname, &column(0), &column(1), &column(2)],
                )
                .await?;
        }
        let rows = admin
            .query(
                &format!(
                    "SELECT dataset, test, sha256 FROM {META}.loaded l \
                     WHERE CASE WHEN test = '' \
                       THEN EXISTS (SELECT FROM pg_namespace WHERE nspname = l.dataset) \
                       ELSE EXISTS (SELECT FROM pg_database WHERE datname = $1 || '_' || l.test) END \
                     UNION ALL SELECT dataset, 'g' || variant, source FROM {META}.variants v \
                     WHERE EXISTS (SELECT FROM pg_database WHERE datname = $1 || '_g' || v.variant)"
                ),
                &[&self.dbname],
            )
            .await?;
        Ok(Some(
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        ))
    }

    /// An admin connection holding the catalogue lock, or None while another process holds
    /// it: a restore takes it only when free, and skips its pass otherwise.
    pub async fn restore_lock(&self) -> Result<Option<Client>, SandboxError> {
        let admin = self.admin_client().await?;
        let locked: bool = admin
            .query_one("SELECT pg_try_advisory_lock($1, 1)", &[&(LOCK_SPACE + 2)])
            .await?
            .get(0);
        Ok(locked.then_some(admin))
    }

    /// An admin connection holding the catalogue lock, waited for: a dataset or test is
    /// loaded into the sandbox and recorded in the platform under it, so that a restore never
    /// sees one without the other. (The lock ends with the connection.)
    pub async fn catalog_lock(&self) -> Result<Client, SandboxError> {
        let admin = self.admin_client().await?;
        admin
            .execute("SELECT pg_advisory_lock($1, 1)", &[&(LOCK_SPACE + 2)])
            .await?;
        Ok(admin)
    }

    /// Forgets that generated test `j` of `dataset` was built (its database is gone), so that
    /// `generated::ensure` builds it again.
    pub async fn forget_variant(&self, dataset: &str, j: i16) -> Result<(), SandboxError> {
        self.admin_client()
            .await?
            .execute(
                &format!("DELETE FROM {META}.variants WHERE dataset = $1 AND variant = $2"),
                &[&dataset, &j],
            )
            .await?;
        Ok(())
    }

    /// Drops the roles of a dataset whose first load failed, so that failed uploads leave
    /// nothing behind.
    pub async fn forget_dataset(&self, dataset: &str) {
        self.roles_changed.fetch_add(1, Ordering::SeqCst);
        let roles: Vec<String> = ["o", "dr", "dw"]
            .iter()
            .map(|kind| quote_ident(&self.dataset_role(kind, dataset)))
            .collect();
        let roles = roles.join(", ");
        let dropped = async {
            let admin = self.admin_client().await?;
            self.locked(
                &admin,
                &format!("DROP OWNED BY {roles}; DROP ROLE {roles};"),
            )
            .await
            .map_err(SandboxError::from)
        };
        if let Err(e) = dropped.await {
            log::warn!("could not drop the roles of dataset {dataset}: {e}");
        }
    }

    /// Makes sure nothing in a dataset runs with more rights than the grading role: views
    /// check privileges as the querying role, SECURITY DEFINER routines become INVOKER.
    pub fn neutralize_sql(&self, schema: &str) -> String {
        let schema = literal(&quote_ident(schema));
        format!(
            "DO $$ DECLARE r record; BEGIN\n\
               FOR r IN SELECT c.oid::regclass AS v FROM pg_class c\n\
                 WHERE c.relnamespace = {schema}::regnamespace AND c.relkind = 'v'\n\
                   AND NOT coalesce(c.reloptions @> '{{security_invoker=true}}', false)\n\
               LOOP EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', r.v); END LOOP;\n\
               FOR r IN SELECT p.oid::regprocedure AS f FROM pg_proc p\n\
                 WHERE p.pronamespace = {schema}::regnamespace AND p.prosecdef\n\
               LOOP EXECUTE format('ALTER ROUTINE %s SECURITY INVOKER', r.f); END LOOP;\n\
             END $$;\n"
        )
    }

    /// Grants a dataset's grading groups access to it, and nobody else: read for both,
    /// DML and sequences for the write group.
    pub fn grant_sql(&self, schema: &str) -> String {
        let q = quote_ident(schema);
        let (read, write) = (
            quote_ident(&self.grading_role(schema, false)),
            quote_ident(&self.grading_role(schema, true)),
        );
        format!(
            "REVOKE ALL ON SCHEMA {q} FROM PUBLIC;\n\
             GRANT USAGE ON SCHEMA {q} TO {read}, {write};\n\
             GRANT SELECT ON ALL TABLES IN SCHEMA {q} TO {read}, {write};\n\
             GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {q} TO {write};\n\
             GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {q} TO {write};\n"
        )
    }

    /// A slot: the connections one executor (or the reference runner) uses, one at a time.
    pub fn slot(self: &Arc<Self>, index: usize, state: Arc<SlotState>) -> Slot {
        self.slots.fetch_add(1, Ordering::SeqCst);
        Slot {
            sandbox: self.clone(),
            index,
            state,
            admins: Vec::new(),
            screened: None,
        }
    }

    /// An idle connection as `role` to `db` opened on this thread (which drives it), if any.
    fn take_idle(&self, role: &str, db: &str) -> Option<SandboxConn> {
        let thread = thread::current().id();
        let mut idle = lock(&self.idle);
        self.prune(&mut idle);
        loop {
            let at = idle
                .iter()
                .rposition(|c| c.role == role && c.db == db && c.thread == thread)?;
            let mut conn = idle.remove(at);
            // Only this thread can look (its runtime drives the connection).
            if !conn.conn.closed() {
                return Some(conn);
            }
        }
    }

    /// Closes idle connections that may not be used again: opened before roles changed, or
    /// idle for half of `idle_connection_secs` (the server closes them at the whole, and must
    /// not while a run starts on one). One closed otherwise is found when taken.
    fn prune(&self, idle: &mut Vec<SandboxConn>) {
        let roles = self.roles_changed.load(Ordering::SeqCst);
        let fresh = match self.settings.idle_connection_secs {
            0 => Duration::MAX,
            secs => Duration::from_millis(secs as u64 * 500),
        };
        idle.retain(|c| c.roles == roles && c.since.elapsed() < fresh);
    }

    /// Keeps a clean connection for the next run; closing the least recently used one, when
    /// there are enough, ends its backend at once (this thread's first: learners' runs, on
    /// the HTTP workers, do not push out the executors' connections). Of one role, no more
    /// are kept than `sandbox.connection_limit` leaves beside a run in every slot: alone, a
    /// process never meets a role's limit.
    fn put_idle(&self, mut conn: SandboxConn) {
        conn.since = Instant::now();
        let slots = self.slots.load(Ordering::SeqCst).max(1);
        let of_role = (self.settings.connection_limit as usize).saturating_sub(slots);
        let evicted = {
            let mut idle = lock(&self.idle);
            let (role, thread) = (conn.role.clone(), conn.thread);
            idle.push(conn);
            self.prune(&mut idle);
            let mut evicted = Vec::new();
            for here in [true, false] {
                let ours = |c: &SandboxConn| (c.thread == thread) == here;
                let same = idle.iter().filter(|c| c.role == role).count();
                let excess = same.saturating_sub(of_role);
                evicted.extend(take_oldest(&mut idle, excess, |c| {
                    c.role == role && ours(c)
                }));
                let excess = idle.len().saturating_sub(IDLE_PER_SLOT * slots);
                evicted.extend(take_oldest(&mut idle, excess, ours));
            }
            evicted
        };
        drop(evicted);
    }

    /// Opens a grading connection. Idle connections are only a cache: when a connection limit
    /// is reached (the role's, the database's or the server's, counted over every process),
    /// the older half of this process's that count against it are closed to make room, and
    /// the connection is tried again for up to `CROWDED_WAIT`, as other processes' may be
    /// closed too (their server closes them after `idle_connection_secs` at the latest).
    async fn open(&self, role: &str, db: &str, dataset: &str) -> Result<SandboxConn, SandboxError> {
        let until = Instant::now() + CROWDED_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            match self.connect_role(role, db, dataset).await {
                Ok(conn) => return Ok(conn),
                Err(Refused::Crowded(e)) if Instant::now() + pause < until => {
                    // Which limit, as PostgreSQL's message says (in English: else either).
                    let message = e.to_string();
                    let by_role = message.contains("for role");
                    let by_database = !by_role && message.contains("for database");
                    let counted = |c: &SandboxConn| match (by_role, by_database) {
                        (true, _) => c.role == role,
                        (_, true) => c.db == db,
                        _ => c.role == role || c.db == db,
                    };
                    let closed = {
                        let mut idle = lock(&self.idle);
                        // Neither a role's nor a database's, and none of ours counts against
                        // either: the server's, which all count against. (A role's or a
                        // database's limit full of other connections: none of ours helps.)
                        let all = !by_role && !by_database && !idle.iter().any(counted);
                        let which = |c: &SandboxConn| all || counted(c);
                        let n = idle.iter().filter(|c| which(c)).count();
                        take_oldest(&mut idle, n.div_ceil(2), which)
                    };
                    drop(closed);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(Refused::Crowded(e) | Refused::Other(e)) => return Err(e),
            }
        }
    }

    /// A session as `role` on `db` whose defaults are what most runs would set: `dataset`'s
    /// schema alone on the path, and the default time limit (a run with another sets its own).
    async fn connect_role(
        &self,
        role: &str,
        db: &str,
        dataset: &str,
    ) -> Result<SandboxConn, Refused> {
        let roles = self.roles_changed.load(Ordering::SeqCst);
        let budget = Arc::new(Budget::default());
        budget.reset(i64::MAX / 2);
        let login = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| SandboxError::Unavailable(e.to_string()))?;
            tcp.set_nodelay(true).ok();
            let stream = BudgetStream {
                inner: tcp,
                budget: budget.clone(),
            };
            let (io, end_point): (Box<dyn wire::Io>, _) = match &self.tls {
                None => (Box::new(stream), None),
                Some(tls) => wire::start_tls(stream, &tls.grading, &self.host)
                    .await
                    .map_err(|e| SandboxError::Unavailable(e.to_string()))?,
            };
            let t = self.settings.default_time_limit_ms;
            // Bare, as `SET search_path` shows a plain name (every dataset's is one), else
            // quoted; startup options are split at spaces, and a backslash escapes.
            let path = match super::dataset::valid_name(dataset) {
                true => dataset.to_string(),
                false => quote_ident(dataset)
                    .replace('\\', "\\\\")
                    .replace(' ', "\\ "),
            };
            let options = format!(
                "{FORMATS} -c client_min_messages=error -c search_path={path} \
                 -c statement_timeout={t} -c lock_timeout={t}"
            );
            let params = [
                ("client_encoding", "UTF8"),
                ("user", role),
                ("database", db),
                ("application_name", "sqljudge-sandbox"),
                ("options", options.as_str()),
            ];
            wire::Conn::connect(io, &params, self.role_password(), end_point)
                .await
                .map_err(|e| match e.server() {
                    Some(db) if db.code == SqlState::TOO_MANY_CONNECTIONS => {
                        Refused::Crowded(SandboxError::Unavailable(e.to_string()))
                    }
                    _ => Refused::Other(SandboxError::Unavailable(e.to_string())),
                })
        };
        let conn = tokio::time::timeout(Duration::from_secs(5), login)
            .await
            .map_err(|_| SandboxError::Unavailable("connect timed out".into()))??;
        Ok(SandboxConn {
            conn,
            budget,
            role: role.to_string(),
            db: db.to_string(),
            roles,
            thread: thread::current().id(),
            since: Instant::now(),
        })
    }
}

/// Removes the first (least recently used) `n` connections `which` picks.
fn take_oldest(
    idle: &mut Vec<SandboxConn>,
    mut n: usize,
    which: impl Fn(&SandboxConn) -> bool,
) -> Vec<SandboxConn> {
    let mut taken = Vec::new();
    let mut i = 0;
    while n > 0 && i < idle.len() {
        if which(&idle[i]) {
            taken.push(idle.remove(i));
            n -= 1;
        } else {
            i += 1;
        }
    }
    taken
}

/// Why `connect_role` opened no connection.
enum Refused {
    /// A connection limit is reached (SQLSTATE 53300): closing idle connections makes room.
    Crowded(SandboxError),
    Other(SandboxError),
}

impl From<SandboxError> for Refused {
    fn from(e: SandboxError) -> Self {
        Refused::Other(e)
    }
}

/// Creates database `db` when missing (on a connection to another one).
async fn create_database(server: &Client, db: &str) -> Result<(), SandboxError> {
    let exists = server
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await?
        .is_some();
    if exists {
        return Ok(());
    }
    match server
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(db)))
        .await
    {
        // Another instance may have created it meanwhile.
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Drives a connection in the background; its client.
fn detach(client: Client, connection: impl std::future::Future + 'static) -> Client {
    actix_web::rt::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Bytes the sandbox may still send on a connection before we cut it.
#[derive(Default)]
struct Budget {
    remaining: AtomicI64,
    exceeded: AtomicBool,
}

impl Budget {
    fn reset(&self, bytes: i64) {
        self.remaining.store(bytes, Ordering::SeqCst);
    }

    fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::SeqCst)
    }
}

/// A TCP stream that fails once the peer has sent more than the budget allows.
struct BudgetStream {
    inner: TcpStream,
    budget: Arc<Budget>,
}

impl AsyncRead for BudgetStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let n = (buf.filled().len() - before) as i64;
            if self.budget.remaining.fetch_sub(n, Ordering::SeqCst) < n {
                self.budget.exceeded.store(true, Ordering::SeqCst);
                return Poll::Ready(Err(io::Error::other("sandbox output budget exceeded")));
            }
        }
        result
    }
}

impl AsyncWrite for BudgetStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct SandboxConn {
    conn: wire::Conn,
    budget: Arc<Budget>,
    /// The dataset grading role it is logged in as.
    role: String,
    /// The database (sample or hidden test) it is connected to.
    db: String,
    /// `Sandbox::roles_changed` when it was opened.
    roles: u64,
    /// The thread whose runtime drives it.
    thread: thread::ThreadId,
    /// When it was last put back idle.
    since: Instant,
}

enum ExecError {
    /// Starting the transaction failed: the solution was not involved.
    Setup(WireError),
    /// Our prelude failed (the rows it removes break a constraint): the run says nothing.
    Prelude(WireError),
    Db(WireError),
    Output(String),
    /// The text cannot go into a message (a NUL byte; requests refuse them long before).
    Unsendable(String),
}

/// Idle grading connections kept for each slot (by role and database): a grading goes through
/// its tests one after the other, each in its own database, and the next one reuses them (the
/// default 1 sample + 3 generated + 1 uploaded tests of a dataset fit).
const IDLE_PER_SLOT: usize = 5;

/// How long a slot tries to open a connection while a connection limit is reached.
const CROWDED_WAIT: Duration = Duration::from_secs(2);

/// One executor's connections. Not shared: an executor grades one job at a time, one test
/// after the other.
pub struct Slot {
    sandbox: Arc<Sandbox>,
    index: usize,
    state: Arc<SlotState>,
    /// Privileged connections, by database: write turns, sequences, terminating backends.
    admins: Vec<(String, Client)>,
    /// The statement last found acceptable (for a writeable problem or not).
    screened: Option<(String, bool)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.sandbox.slots.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slot {
    /// Runs `spec` under all the sandbox's limits. `Err` only for infrastructure failures
    /// (the sandbox database unreachable), never for anything the SQL did.
    pub async fn run(&mut self, spec: &RunSpec<'_>) -> Result<Run, SandboxError> {
        let writeable = spec.check_table.is_some();
        // A job's tests (and a counterexample's runs) run one statement: it is screened once.
        let screened =
            (self.screened.as_ref()).is_some_and(|(sql, w)| sql == spec.sql && *w == writeable);
        if !screened {
            if let Some(rejected) = screen(spec.sql, writeable) {
                return Ok(Run::Failed(rejected));
            }
            self.screened = Some((spec.sql.to_string(), writeable));
        }
        if !writeable && spec.prelude.is_none() {
            return self.run_on_role(spec).await;
        }
        // Rows that change, even in a transaction rolled back, hold locks: one at a time.
        let db = self.sandbox.database_of(spec.data);
        let sequences = self.lock_dataset(&db, spec.dataset).await?;
        let run = self.run_on_role(spec).await;
        let restored = self.restore_and_unlock(&db, spec.dataset, &sequences).await;
        if restored.is_err() {
            self.admins.retain(|(d, _)| *d != db); // closing the session releases the lock
        }
        restored?;
        run
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// Waiting for a backend that ignores termination to exit: it would answer `Unavailable`.
    /// Whether `dataset`'s schema is in the database of `data` (a statement that found no
    /// table may have met a sandbox being restored, not a mistake of its own).
    pub async fn dataset_present(
        &mut self,
        dataset: &str,
        data: TestData,
    ) -> Result<bool, SandboxError> {
        let db = self.sandbox.database_of(data);
        Ok(self
            .admin(&db)
            .await?
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&dataset])
            .await?
            .is_some())
    }

    pub fn quarantined(&self) -> bool {
        self.state.quarantined()
    }

    /// The slot's admin connection to database `db`. It keeps the sample database's and one
    /// other (a test's, for the write turn that is under way there), no more.
    async fn admin(&mut self, db: &str) -> Result<&Client, SandboxError> {
        self.admins.retain(|(_, c)| !c.is_closed());
        let at = match self.admins.iter().position(|(d, _)| d == db) {
            Some(at) => at,
            None => {
                let sample = self.sandbox.dbname.clone();
                if db != sample {
                    self.admins.retain(|(d, _)| *d == sample);
                }
                let client = self.sandbox.admin_client_on(db).await?;
                self.admins.push((db.to_string(), client));
                self.admins.len() - 1
            }
        };
        Ok(&self.admins[at].1)
    }

    /// Takes the dataset's write turn and puts its sequences where they stood when it was
    /// loaded (datasets loaded before that was recorded: where they stand now); returns those
    /// positions, to put them back there after the run.
    async fn lock_dataset(
        &mut self,
        db: &str,
        dataset: &str,
    ) -> Result<Vec<(String, Option<i64>, i64)>, SandboxError> {
        let admin = self.admin(db).await?;
        admin
            .execute(
                "SELECT pg_advisory_lock($1, hashtext($2))",
                &[&LOCK_SPACE, &dataset],
            )
            .await?;
        admin.execute(&record_sequences_sql(), &[&dataset]).await?;
        let rows = admin
            .query(
                &format!(
                    "SELECT sequence, last_value, start_value FROM {META}.sequences \
                     WHERE dataset = $1"
                ),
                &[&dataset],
            )
            .await?;
        let sequences: Vec<_> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        put_back(admin, &sequences).await?;
        Ok(sequences)
    }

    async fn restore_and_unlock(
        &mut self,
        db: &str,
        dataset: &str,
        sequences: &[(String, Option<i64>, i64)],
    ) -> Result<(), SandboxError> {
        let admin = self.admin(db).await?;
        put_back(admin, sequences).await?;
        admin
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))",
                &[&LOCK_SPACE, &dataset],
            )
            .await?;
        Ok(())
    }

    async fn run_on_role(&mut self, spec: &RunSpec<'_>) -> Result<Run, SandboxError> {
        // Never a second backend beside one that would not die.
        if !self.settle(Some(Duration::from_secs(1))).await {
            return Err(SandboxError::Unavailable(format!(
                "slot {} is quarantined: an earlier backend is still running",
                self.index
            )));
        }
        let writes = spec.check_table.is_some() || spec.prelude.is_some();
        let settings = self.sandbox.settings.clone();
        let role = self.sandbox.grading_role(spec.dataset, writes);
        let db = self.sandbox.database_of(spec.data);
        let mut conn = match self.sandbox.take_idle(&role, &db) {
            Some(conn) => conn,
            None => self.sandbox.open(&role, &db, spec.dataset).await?,
        };
        // Room for the protocol's own bytes around the values we count ourselves.
        conn.budget
            .reset((settings.max_output_bytes * 2 + settings.max_rows * 64 + 65536) as i64);
        let deadline = Duration::from_millis(spec.time_limit_ms as u64 + settings.grace_ms);
        let mut idle = false;
        let run = execute(&mut conn.conn, spec, &settings, &mut idle);
        let result = tokio::time::timeout(deadline, run).await;
        let exceeded = conn.budget.exceeded();
        let (verdict, answered) = conclude(result, exceeded, spec, &settings);
        let clean = answered
            && (idle
                || tokio::time::timeout(Duration::from_secs(5), reset(&mut conn.conn))
                    .await
                    .unwrap_or(false));
        if clean {
            self.sandbox.put_idle(conn);
        } else {
            self.discard(conn).await;
        }
        verdict
    }

    /// Drops a connection whose state is unknown and waits for its backend to be gone. Some
    /// computations ignore cancels and terminations for minutes; a slot that went on would
    /// pile up backends until the cluster ran out of connections. The job stays in flight
    /// meanwhile, so the backend counts against its user's fair share.
    async fn discard(&mut self, conn: SandboxConn) {
        let SandboxConn {
            role,
            conn: session,
            ..
        } = conn;
        let pid = session.pid();
        // Closed first: a backend blocked writing to it (a huge error message, cut by the byte
        // budget) cannot die until its socket closes.
        drop(session);
        lock(&self.state.lingering).push((pid, role));
        self.settle(None).await;
    }

    /// Terminates what is left of this slot's earlier backends and waits (up to `wait`, or
    /// until none is left) for them to exit. True when none is left. Past
    /// `backend_exit_wait_ms`, or when the backends cannot be checked, the slot reports itself
    /// quarantined; it opens no connection until they are gone.
    pub async fn settle(&mut self, wait: Option<Duration>) -> bool {
        let started = std::time::Instant::now();
        let quarantine_after = Duration::from_millis(self.sandbox.settings.backend_exit_wait_ms);
        loop {
            if lock(&self.state.lingering).is_empty() {
                self.state.quarantined.store(false, Ordering::Relaxed);
                return true;
            }
            let backends = lock(&self.state.lingering).clone();
            // A hanging sandbox must not hang the slot: it is then as good as unreachable.
            let checked = tokio::time::timeout(Duration::from_secs(5), self.terminate(&backends))
                .await
                .unwrap_or_else(|_| Err(SandboxError::Unavailable("no answer in 5 s".into())));
            match checked {
                Ok(alive) => lock(&self.state.lingering).retain(|(p, _)| alive.contains(p)),
                Err(e) => {
                    log::warn!(
                        "sandbox slot {}: cannot check its backends: {e}",
                        self.index
                    );
                    self.admins.clear();
                    self.state.quarantined.store(true, Ordering::Relaxed);
                    return false;
                }
            }
            if lock(&self.state.lingering).is_empty() {
                continue;
            }
            if started.elapsed() >= quarantine_after && !self.state.quarantined() {
                log::warn!(
                    "sandbox slot {} quarantined: backends {backends:?} ignore termination",
                    self.index
                );
                self.state.quarantined.store(true, Ordering::Relaxed);
            }
            if wait.is_some_and(|w| started.elapsed() >= w) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signals those of `backends` (pid, role) that still exist; returns their pids. The role
    /// check keeps a recycled pid of someone else's backend safe.
    async fn terminate(&mut self, backends: &[(i32, String)]) -> Result<Vec<i32>, SandboxError> {
        let (pids, roles): (Vec<i32>, Vec<String>) = backends.iter().cloned().unzip();
        let db = self.sandbox.dbname.clone();
        let rows = self
            .admin(&db)
            .await?
            .query(
                "SELECT pid, pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity \
                 WHERE pid = ANY($1) AND usename = ANY($2) OFFSET 0) a",
                &[&pids, &roles],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a slot must remember across restarts of the executor that uses it: backends that
/// would not die.
#[derive(Default)]
pub struct SlotState {
    lingering: std::sync::Mutex<Vec<(i32, String)>>,
    quarantined: AtomicBool,
}

impl SlotState {
    /// The slot waits for an earlier backend that ignores termination and takes no job.
    pub fn quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
    }

    /// Backends of the slot are still to be seen gone: `Slot::settle` has work to do.
    pub fn lingering(&self) -> bool {
        !lock(&self.lingering).is_empty()
    }
}

/// Why a statement is refused before it reaches the sandbox: not one statement of the kind
/// the problem takes, or naming a system column.
fn screen(sql: &str, writeable: bool) -> Option<Outcome> {
    let first = lexer::leading_words(sql, 1);
    let allowed =
        |w: &str| READ_KEYWORDS.contains(&w) || (writeable && WRITE_KEYWORDS.contains(&w));
    let message = match first.first() {
        None => "the solution is empty".to_string(),
        Some(word) if !allowed(word) => {
            let expected = if writeable {
                "a query or one INSERT/UPDATE/DELETE/MERGE statement"
            } else {
                "one query (SELECT, WITH, VALUES or TABLE)"
            };
            format!("{word} statements are not allowed: submit {expected}")
        }
        Some(_) => format!(
            "{} is not allowed: the system columns xmin, xmax, cmin and cmax \
             (and Unicode-escaped names) are not available to solutions; \
             rename an alias that uses one",
            lexer::system_column(sql)?
        ),
    };
    Some(Outcome::verdict(Status::Rejected, message))
}

fn time_limit(ms: u32) -> Outcome {
    Outcome::verdict(
        Status::TimeLimitExceeded,
        format!("the statement ran longer than the time limit of {ms} ms"),
    )
}

/// What leaves a grading connection as new after a run that did not end cleanly, one statement
/// at a time. Not DISCARD ALL: it cannot run in the transaction a run's messages share. (A clean
/// run needs less; see `queue_run`.)
const RESET: [&str; 7] = [
    "ROLLBACK",
    "CLOSE ALL",
    "RESET ALL",
    "UNLISTEN *",
    "DISCARD PLANS",
    "DISCARD TEMP",
    "DISCARD SEQUENCES",
];

/// A statement of a run, in the order sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// Ours: the transaction's start, its settings, the reset after it.
    Ours,
    /// Our prelude (rows removed for a counterexample): statements of ours in one query message.
    Prelude,
    /// The solution.
    Statement,
    /// The check table, read after a writeable statement.
    Check,
}

/// The messages of a run, in one write under one `Sync`: every statement is parsed, bound and
/// executed on its own (extended protocol), so the solution's text reaches the server only in a
/// `Parse`, which refuses a second statement however it is hidden. The first error makes the
/// server skip everything else up to the `Sync`: nothing runs after a failed start, and the
/// reset, skipped too, is then sent on its own.
///
/// A run that ends cleanly ends with its ROLLBACK, which undoes in PostgreSQL itself whatever a
/// session statement did within it: settings (`SET`, `set_config(.., false)`), LISTEN, cursors
/// (`WITH HOLD` ones too), temporary tables. What is not transactional is discarded before it:
/// cached plans (PL/pgSQL keeps statements analysed under the settings of their first call, such
/// as a `DateStyle` a function's `SET` clause chose) and, in a writing run, sequences' session
/// state (`lastval()`, cached values). What else a session keeps (advisory locks, prepared
/// statements, the random seed) no solution can reach (the keyword check, the unnamed
/// statement, revoked functions), and `RESET` would not undo most of it.
///
/// The session's own defaults (`connect_role`) are the dataset's search path and, where the
/// run's time limit is `default_limit_ms`, its timeouts: then nothing is set.
fn queue_run(
    out: &mut BytesMut,
    spec: &RunSpec<'_>,
    default_limit_ms: u32,
) -> io::Result<Vec<Step>> {
    let writes = spec.check_table.is_some() || spec.prelude.is_some();
    let mode = if writes { "READ WRITE" } else { "READ ONLY" };
    let t = spec.time_limit_ms;
    let mut steps = Vec::new();
    let mut ours =
        |sql: &str, out: &mut BytesMut| queue_statement(out, sql, Step::Ours, &mut steps);
    ours(&format!("BEGIN ISOLATION LEVEL READ COMMITTED {mode}"), out)?;
    if t != default_limit_ms {
        ours(&format!("SET LOCAL statement_timeout = {t}"), out)?;
        ours(&format!("SET LOCAL lock_timeout = {t}"), out)?;
    }
    if let Some(prelude) = spec.prelude {
        frontend::query(prelude, out)?;
        steps.push(Step::Prelude);
        if spec.check_table.is_none() {
            queue_statement(out, "SET TRANSACTION READ ONLY", Step::Ours, &mut steps)?;
        }
    }
    queue_statement(out, spec.sql, Step::Statement, &mut steps)?;
    if let Some(table) = spec.check_table {
        let check = format!("SELECT * FROM {}", quote_qualified(table));
        queue_statement(out, &check, Step::Check, &mut steps)?;
    }
    // Within the transaction (they are not transactional): no second one to start and end.
    queue_statement(out, "DISCARD PLANS", Step::Ours, &mut steps)?;
    if writes {
        queue_statement(out, "DISCARD SEQUENCES", Step::Ours, &mut steps)?;
    }
    queue_statement(out, "ROLLBACK", Step::Ours, &mut steps)?;
    frontend::sync(out);
    Ok(steps)
}

/// One statement, parsed, bound and executed as the unnamed statement and portal, its rows as
/// text (described first when they are read).
fn queue_statement(
    out: &mut BytesMut,
    sql: &str,
    step: Step,
    steps: &mut Vec<Step>,
) -> io::Result<()> {
    frontend::parse("", sql, std::iter::empty(), out)?;
    frontend::bind(
        "",
        "",
        std::iter::empty(),
        std::iter::empty::<()>(),
        |(), _| Ok(postgres_protocol::IsNull::No),
        std::iter::empty(), // every column as text
        out,
    )
    .map_err(|_| io::Error::other("a statement without parameters failed to bind"))?;
    if step != Step::Ours {
        frontend::describe(b'P', "", out)?;
    }
    frontend::execute("", 0, out)?;
    steps.push(step);
    Ok(())
}

/// Runs `spec` on `conn`: what the statement returned (a writeable problem's check table
/// after it). `idle`: the connection answered everything and is as new, no reset needed.
async fn execute(
    conn: &mut wire::Conn,
    spec: &RunSpec<'_>,
    s: &SandboxSettings,
    idle: &mut bool,
) -> Result<ResultSet, ExecError> {
    let steps = match queue_run(&mut conn.output, spec, s.default_time_limit_ms) {
        Ok(steps) => steps,
        // A NUL byte: no PostgreSQL text holds one.
        Err(e) => {
            conn.output.clear();
            return Err(ExecError::Unsendable(e.to_string()));
        }
    };
    conn.send()
        .await
        .map_err(|e| ExecError::Setup(WireError::Io(e)))?;
    read_run(conn, &steps, s, idle).await
}

/// Reads the answers to a run's `steps` up to its end (`ReadyForQuery` after the `Sync`):
/// the rows of its last `Statement` or `Check`, or the first error, as the step it failed in
/// makes it. Rows and bytes are counted as they come.
async fn read_run(
    conn: &mut wire::Conn,
    steps: &[Step],
    s: &SandboxSettings,
    idle: &mut bool,
) -> Result<ResultSet, ExecError> {
    let mut at = 0;
    let (mut rows, mut kept) = (ResultSet::default(), ResultSet::default());
    let mut bytes = 0usize;
    let mut failed: Option<(usize, WireError)> = None;
    // The current step's statement parsed, and not bound yet.
    let mut binding = false;
    let broken = |what: &str| ExecError::Db(WireError::Protocol(format!("unexpected {what}")));
    loop {
        let step = steps.get(at).copied();
        let keeps = matches!(step, Some(Step::Statement | Step::Check));
        let message = match conn.next().await {
            Ok(message) => message,
            // The server's error first (a termination's), then the connection's end.
            Err(e) => match failed {
                Some((at, first)) => return Err(failure(steps, at, first)),
                None => return Err(ExecError::Db(e)),
            },
        };
        match message {
            Message::ParseComplete => binding = true,
            Message::BindComplete => binding = false,
            Message::NoData | Message::ParameterDescription(_) => {}
            Message::RowDescription(body) if keeps => {
                let mut fields = body.fields();
                rows.columns.clear();
                while let Some(field) =
                    fields.next().map_err(|e| ExecError::Db(wire::framing(e)))?
                {
                    rows.columns.push(field.name().to_string());
                }
            }
            Message::DataRow(body) if keeps => {
                if rows.rows.len() == s.max_rows {
                    return Err(ExecError::Output(format!(
                        "the result has more than {} rows",
                        s.max_rows
                    )));
                }
                let mut ranges = body.ranges();
                let mut values = Vec::with_capacity(rows.columns.len());
                while let Some(range) =
                    ranges.next().map_err(|e| ExecError::Db(wire::framing(e)))?
                {
                    values.push(match range {
                        Some(range) => {
                            let value = wire::text(&body.buffer()[range]).map_err(ExecError::Db)?;
                            bytes += value.len();
                            Some(value.to_string())
                        }
                        None => None,
                    });
                }
                if bytes > s.max_output_bytes {
                    return Err(ExecError::Output(format!(
                        "the output exceeds {} bytes",
                        s.max_output_bytes
                    )));
                }
                rows.rows.push(values);
            }
            // Our statements return none; the prelude's DELETEs neither.
            Message::RowDescription(_) | Message::DataRow(_) => {}
            Message::CommandComplete(_) | Message::EmptyQueryResponse => {
                // A query message (the prelude) may hold several: it ends at its ReadyForQuery.
                if step != Some(Step::Prelude) {
                    if keeps {
                        kept = std::mem::take(&mut rows);
                        bytes = 0;
                    }
                    at += 1;
                }
            }
            Message::ErrorResponse(body) => {
                let mut error = wire::server_error(body.fields());
                if error.server().is_none() {
                    return Err(ExecError::Db(error));
                }
                // Parameters ($1) make the solution fail to bind without values: a protocol
                // violation, which would read as the server's failure. (Bind also plans it:
                // errors of planning stay as they are.)
                if binding
                    && step == Some(Step::Statement)
                    && error
                        .server()
                        .is_some_and(|e| e.code == SqlState::PROTOCOL_VIOLATION)
                {
                    error = WireError::Server(ServerError {
                        severity: "ERROR".into(),
                        code: SqlState::UNDEFINED_PARAMETER,
                        message: "parameters ($1, $2, ...) are not available: a solution runs \
                                  without any"
                            .into(),
                    });
                }
                // Statements after a failed prelude fail as in an aborted transaction; the first
                // error says why.
                failed.get_or_insert((at, error));
                if step != Some(Step::Prelude) {
                    at = steps.len(); // skipped up to the Sync
                }
            }
            Message::ReadyForQuery(body) => {
                if step == Some(Step::Prelude) {
                    at += 1;
                    continue;
                }
                *idle = failed.is_none() && at == steps.len() && body.status() == b'I';
                break;
            }
            Message::CopyInResponse(_) | Message::CopyOutResponse(_) => return Err(broken("copy")),
            _ => return Err(broken("message")),
        }
    }
    let last_read = steps
        .iter()
        .rposition(|s| matches!(s, Step::Statement | Step::Check));
    match failed {
        None => Ok(kept),
        // The reset failed after the rows were read: they stand, the connection goes.
        Some((at, _)) if last_read.is_some_and(|last| at > last) => Ok(kept),
        Some((at, e)) => Err(failure(steps, at, e)),
    }
}

/// An error the server reported, as the step it failed in makes it.
fn failure(steps: &[Step], at: usize, e: WireError) -> ExecError {
    match steps.get(at) {
        Some(Step::Prelude) => ExecError::Prelude(e),
        Some(Step::Statement | Step::Check) => ExecError::Db(e),
        _ => ExecError::Setup(e),
    }
}

/// Sends the reset on its own (a run that failed skipped its own); true once the connection is
/// as new.
async fn reset(conn: &mut wire::Conn) -> bool {
    if frontend::query(&RESET.join("; "), &mut conn.output).is_err() || conn.send().await.is_err() {
        return false;
    }
    let mut clean = true;
    loop {
        match conn.next().await {
            Ok(Message::ReadyForQuery(body)) => return clean && body.status() == b'I',
            Ok(Message::ErrorResponse(_)) => clean = false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// What a run came to, and whether the connection is still in a known state (it answered):
/// only then is it reset and kept.
fn conclude(
    result: Result<Result<ResultSet, ExecError>, tokio::time::error::Elapsed>,
    output_exceeded: bool,
    spec: &RunSpec<'_>,
    settings: &SandboxSettings,
) -> (Result<Run, SandboxError>, bool) {
    let failed = |status, message: String| Ok(Run::Failed(Outcome::verdict(status, message)));
    match result {
        Ok(Ok(rows)) => (Ok(Run::Rows(rows)), true),
        Ok(Err(ExecError::Db(_))) if output_exceeded => (
            failed(
                Status::OutputLimitExceeded,
                format!("the output exceeds {} bytes", settings.max_output_bytes),
            ),
            false,
        ),
        Ok(Err(ExecError::Db(e))) => match e {
            WireError::Server(db) => (classify(&db, spec, settings).map(Run::Failed), true),
            // Bytes that are not text come from the statement (e.g. another client_encoding):
            // a verdict, not an outage.
            WireError::Unreadable(e) => (
                failed(
                    Status::SqlError,
                    format!("the result cannot be read as UTF-8 text ({e})"),
                ),
                false,
            ),
            e => (Err(SandboxError::Interrupted(e.to_string())), false),
        },
        Ok(Err(ExecError::Setup(e))) => (Err(SandboxError::Interrupted(e.to_string())), false),
        Ok(Err(ExecError::Prelude(e))) => (
            failed(Status::InternalError, format!("removing rows failed: {e}")),
            true,
        ),
        Ok(Err(ExecError::Output(reason))) => (failed(Status::OutputLimitExceeded, reason), false),
        Ok(Err(ExecError::Unsendable(reason))) => (
            failed(
                Status::Rejected,
                format!("the statement cannot be sent: {reason}"),
            ),
            true,
        ),
        Err(_elapsed) => (Ok(Run::Failed(time_limit(spec.time_limit_ms))), false),
    }
}

/// SQLSTATE classes that say something about the server, not about the statement: the run is
/// retried (and counted), never turned into a verdict.
fn infrastructure_failure(code: &str) -> bool {
    const CLASSES: [&str; 6] = [
        "08", // connection exception
        "53", // insufficient resources: out of memory, disk full, too many connections
        "57", // operator intervention: terminated, shutting down (57014 is handled apart)
        "58", // system error: I/O
        "XX", // internal error: corruption, cache lookup failures
        "40", // transaction rollback: serialization failures, deadlocks
    ];
    // 53400 is our own per-role temp_file_limit, which the statement exceeded: a verdict.
    (CLASSES.iter().any(|class| code.starts_with(class)) && code != "53400")
        || code == "55P03" // lock timeout: a dataset being replaced holds its tables
        || code == "72000" // snapshot too old
}

/// The verdict for an error the server reported, or `Interrupted` when the error is the
/// server's, not the statement's.
fn classify(
    db: &ServerError,
    spec: &RunSpec<'_>,
    s: &SandboxSettings,
) -> Result<Outcome, SandboxError> {
    let code = &db.code;
    if *code == SqlState::QUERY_CANCELED {
        // Only our statement_timeout makes a time-limit verdict; any other cancel (an
        // operator's pg_cancel_backend) is an interruption.
        if db.message.as_str().contains("statement timeout") {
            return Ok(time_limit(spec.time_limit_ms));
        }
        return Err(SandboxError::Interrupted(db.message.as_str().to_string()));
    }
    if infrastructure_failure(code.code()) {
        return Err(SandboxError::Interrupted(format!(
            "{} ({})",
            db.message.as_str(),
            code.code()
        )));
    }
    if *code == SqlState::SYNTAX_ERROR && db.message.as_str().contains("multiple commands") {
        return Ok(Outcome::verdict(
            Status::Rejected,
            "exactly one SQL statement is allowed",
        ));
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return Ok(Outcome::verdict(
            Status::Rejected,
            "this problem is read-only: data cannot be changed",
        ));
    }
    let mut message = db.message.as_str().to_string();
    if message.len() > s.max_message_bytes {
        let mut cut = s.max_message_bytes;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    Ok(Outcome {
        sqlstate: Some(code.code().to_string()),
        ..Outcome::verdict(Status::SqlError, message)
    })
}
