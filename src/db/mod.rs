//! Platform database: connection pool, migrations, and the models with their queries.
pub mod models;
pub mod schema;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel::RunQueryDsl;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Every instance that starts at once serialises on this key before migrating.
const MIGRATION_LOCK_KEY: i64 = 0x0053_514a_5544_4745; // "SQJUDGE"

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type PgConn = PooledConnection<ConnectionManager<PgConnection>>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Pool(#[from] r2d2::Error),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("database task failed: {0}")]
    Task(String),
    #[error("database did not answer within {0} ms")]
    Timeout(u128),
    /// Known to be down: not asked (routing goes around it until the health probe sees it).
    #[error("database is down")]
    Down,
}

impl DbError {
    /// The database could not be reached (as opposed to a query it refused).
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Pool(_) | DbError::Task(_) | DbError::Timeout(_) | DbError::Down => true,
            DbError::Query(Error::DatabaseError(kind, _)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
                )
            }
            DbError::Query(_) => false,
        }
    }
}

/// Runs diesel work on the blocking thread pool with a pooled connection.
pub async fn run<T, F>(pool: &PgPool, work: F) -> Result<T, DbError>
where
    T: Send + 'static,
    F: FnOnce(&mut PgConnection) -> diesel::QueryResult<T> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get()?;
        Ok(work(&mut conn)?)
    })
    .await
    .map_err(|e| DbError::Task(e.to_string()))?
}

/// `url` as libpq should take it: when every host it names is a loopback one and nothing
/// chooses TLS or another address (no `sslmode`, `host`, `hostaddr` or `service` in it or in
/// the environment), `sslmode=allow`: in the clear, and TLS only if the server insists.
/// libpq's default, `prefer`, encrypts every round trip to a server on the same machine for
/// nothing. A URL of any unusual shape is left as it is.
pub fn libpq_url(url: &str) -> String {
    let chosen_by_env = [
        "PGSSLMODE",
        "PGHOSTADDR",
        "PGHOST",
        "PGSERVICE",
        "PGSERVICEFILE",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    plain_on_loopback(url, chosen_by_env)
}

fn plain_on_loopback(url: &str, chosen_by_env: bool) -> String {
    let unchanged = || url.to_string();
    let Some((_, rest)) = url.split_once("://") else {
        return unchanged();
    };
    // [user[:password]@]host[:port][,host[:port]...][/db][?options]
    let (userinfo, after) = match rest.matches('@').count() {
        0 => ("", rest),
        1 => rest.split_once('@').expect("one @"),
        _ => return unchanged(),
    };
    if chosen_by_env || userinfo.contains(['/', '?', '#']) {
        return unchanged();
    }
    let hosts = after.split(['/', '?']).next().unwrap_or("");
    let options = after.split_once('?').map_or("", |(_, o)| o);
    let chosen = options.split('&').any(|o| {
        ["sslmode=", "host=", "hostaddr=", "service="]
            .iter()
            .any(|p| o.starts_with(p))
    });
    let loopback = |host_port: &str| {
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host_port.split(':').next().unwrap_or(""),
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    if chosen || !hosts.split(',').all(loopback) {
        return unchanged();
    }
    match after.contains('?') {
        true => format!("{url}&sslmode=allow"),
        false => format!("{url}?sslmode=allow"),
    }
}

/// A raw query (`diesel::sql_query` with its binds) whose text never changes, prepared once per
/// connection like diesel's own queries. Diesel runs a raw query unprepared, so PostgreSQL
/// parses, analyses and plans it afresh every time; the cache keys it by its text (so a text
/// that varied would grow the cache). Name its result columns: a `*` that a migration widens
/// while the process runs fails a prepared statement ("cached plan must not change result
/// type").
pub struct Prepared<Q>(pub Q);

impl<Q> diesel::query_builder::QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> diesel::query_builder::Query for Prepared<Q> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<Q> RunQueryDsl<PgConnection> for Prepared<Q> {}

impl<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>>
    diesel::query_builder::QueryFragment<diesel::pg::Pg> for Prepared<Q>
{
    fn walk_ast<'b>(
        &'b self,
        out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        self.0.walk_ast(out)
    }

    fn is_safe_to_cache_prepared(&self, _: &diesel::pg::Pg) -> diesel::QueryResult<bool> {
        Ok(true)
    }
}

pub fn pool(
    url: &str,
    size: u32,
    checkout_timeout: std::time::Duration,
) -> Result<PgPool, r2d2::Error> {
    Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(checkout_timeout)
        .build(ConnectionManager::new(libpq_url(url)))
}

/// Runs pending migrations under a session advisory lock so concurrent starts do not race.
pub fn run_migrations(
    conn: &mut PgConnection,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(conn)?;
    let applied = conn.run_pending_migrations(MIGRATIONS).map(|v| v.len());
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(conn)?;
    applied
}

/// Creates database `url` names when it does not exist, connecting to the server's
/// `postgres` database to do so.
pub fn ensure_database(url: &str) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use diesel::Connection;
    let url = libpq_url(url);
    let url = url.as_str();
    if PgConnection::establish(url).is_ok() {
        return Ok(());
    }
    // The connection options (`?sslmode=...&sslrootcert=/path`, slashes included) hold for
    // the server's `postgres` database too.
    let (path, options) = url.split_once('?').map_or((url, ""), |(p, o)| (p, o));
    let (server, name) = path
        .rsplit_once('/')
        .ok_or("the database URL names no database")?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        // Not quoted: what the URL holds there may be its credentials.
        return Err(
            "refusing to create the database: the URL's database name must be \
                    letters, digits and _"
                .into(),
        );
    }
    let query = if options.is_empty() { "" } else { "?" };
    let mut admin = PgConnection::establish(&format!("{server}/postgres{query}{options}"))?;
    match diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin) {
        Ok(_) => Ok(()),
        // Another instance created it between our check and now.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::plain_on_loopback;

    #[test]
    fn loopback_connections_go_in_the_clear_unless_told_otherwise() {
        let plain = |u: &str| plain_on_loopback(u, false).ends_with("sslmode=allow");
        assert!(!plain_on_loopback("postgres://127.0.0.1/db", true).contains("sslmode"));
        assert!(plain("postgres://u:p@127.0.0.1:5432/db"));
        assert!(plain("postgres://u:p%40x@localhost/db?application_name=a"));
        assert!(plain("postgresql://[::1]:5433/db"));
        assert!(!plain("postgres://u:p@db.example.com:5432/db"));
        assert!(!plain("postgres://u:p@10.0.0.5/db"));
        assert!(!plain("postgres://127.0.0.1/db?sslmode=require"));
        assert!(!plain(
            "postgres://u@127.0.0.1/db?sslrootcert=/a/b&sslmode=verify-full"
        ));
        assert!(!plain("postgres:///db?host=/var/run/postgresql"));
        assert!(!plain("postgres://127.0.0.1:5432,db2.example.com/db"));
        assert!(plain("postgres://127.0.0.1:5432,[::1]:5433/db"));
        assert!(!plain("postgres://localhost/db?hostaddr=10.0.0.5"));
        assert!(!plain("postgres://localhost/db?service=prod"));
        assert!(!plain("postgres://localhost:a?b@remote/db"));
        assert!(!plain("postgres://u:p@x@127.0.0.1/db"));
        assert!(plain("postgres://127.0.0.1"));
        assert_eq!(
            plain_on_loopback("postgres://127.0.0.1/db?connect_timeout=2", false),
            "postgres://127.0.0.1/db?connect_timeout=2&sslmode=allow"
        );
    }
}
