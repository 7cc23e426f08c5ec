//! `TestApp`: the real service on a free port, against the machine's PostgreSQL and Redis,
//! with its own platform database, sandbox database, sandbox roles and Redis key prefix.
use std::ffi::OsStr;
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sqljudge::config::Settings;
use sqljudge::startup::Application;
use sqljudge::state::AppState;

pub fn sleep(ms: u64) -> impl std::future::Future<Output = ()> {
    actix_web::rt::time::sleep(Duration::from_millis(ms))
}

/// The routing mode `/health` reports: `redis` or `fallback`.
pub async fn mode(app: &TestApp) -> String {
    let health: Value = app.get("/health", None).await.json().await.unwrap();
    health["mode"].as_str().unwrap().to_string()
}

/// Waits (at most 10 s) until the mode is `want`; how long that took.
pub async fn wait_mode(app: &TestApp, want: &str) -> Duration {
    let started = Instant::now();
    while mode(app).await != want {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "mode never became {want}"
        );
        sleep(20).await;
    }
    started.elapsed()
}

/// A child process that is killed when dropped.
pub struct Process(std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sqljudge package's directory (the parent of this crate's), where a second instance's
/// process finds `config/`.
const PACKAGE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Tests connect without TLS: libpq's OpenSSL, torn down at exit while another thread of the
/// test process is still inside it, crashes the process after the tests passed.
const NO_TLS: &str = "?sslmode=disable";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_token: String,
    pub state: actix_web::web::Data<AppState>,
    pub sandbox_url: String,
    /// Executors grading in the background; with none, `grade` grades in the test's own task.
    workers: usize,
    /// What the app made, dropped when the test ends (after the app's other fields).
    made: Made,
}

pub struct Options {
    pub demo: bool,
    pub workers: usize,
    /// A Redis of the test's own (default: the machine's, under a key prefix).
    pub redis_url: Option<String>,
    /// The authority of a `rediss://` Redis of the test's own.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Sandbox servers of the test's own (`sandbox.urls`, comma-separated).
    pub sandbox_urls: Option<String>,
    /// Reach the platform database through this local port (a fault-injecting proxy).
    pub platform_port: Option<u16>,
    /// Rate limits (default: high enough never to interfere).
    pub rate_limit: Option<sqljudge::config::RateLimitSettings>,
    /// Any other setting, changed last.
    pub tweak: Option<fn(&mut Settings)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            demo: true,
            workers: 2,
            redis_url: None,
            redis_ca_file: None,
            sandbox_urls: None,
            platform_port: None,
            rate_limit: None,
            tweak: None,
        }
    }
}

/// Rows in `submissions` for a set of job ids: all of them, and those with a final status.
pub struct Recorded {
    pub rows: usize,
    pub final_rows: usize,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// `SELECT count(*) AS n ...` (or any query returning a bigint `n`) on `conn`.
pub fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).unwrap().n
}

impl Drop for TestApp {
    /// The executors run on a thread of their own: stopped first, they can no longer release
    /// or record a job while `made` drops the databases and keys under them.
    fn drop(&mut self) {
        self.state.executors.stop();
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        let _ = env_logger::builder().is_test(true).try_init();
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let mut settings = Settings::load().expect("settings load");
        let server = settings
            .database
            .url
            .expose_secret()
            .rsplit_once('/')
            .expect("database URL")
            .0
            .to_string();
        if let Some(url) = options.redis_url {
            settings.redis.url = url.into();
        }
        settings.server.bind = "127.0.0.1:0".into();
        settings.server.http_workers = 2;
        settings.database.url = match options.platform_port {
            Some(port) => format!(
                "{}:{port}/sqljudge_t_{id}{NO_TLS}",
                server.rsplit_once(':').expect("server port").0
            ),
            None => format!("{server}/sqljudge_t_{id}{NO_TLS}"),
        }
        .into();
        settings.database.pool_size = 6;
        settings.sandbox.url = format!("{server}/sqljudge_ts_{id}{NO_TLS}").into();
        settings.sandbox.urls = options.sandbox_urls.map(Into::into);
        settings.sandbox.role_prefix = format!("sjt_{id}");
        settings.redis.key_prefix = format!("test:{id}:");
        settings.auth.admin_token = format!("admin-{id}").into();
        let redis_url = settings.redis.url.expose_secret().to_string();
        // From here on, a panic (a build or demo load that fails) leaves nothing behind either.
        let made = Made {
            id,
            server,
            redis_url,
        };
        settings.executor.workers = options.workers;
        // Tests that restore the sandbox call it themselves: no pass may race them.
        settings.sandbox.restore_check_secs = 0;
        settings.executor.lease_ms = 1000;
        settings.executor.reaper_interval_ms = 200;
        settings.executor.dequeue_block_secs = 0.5;
        settings.executor.resweep_after_ms = 2000;
        // A run's tests share one scheduling group (the session's): niced, a test's executors
        // would yield to every other test's threads, and the waits for verdicts would stretch
        // on a busy machine. The niceness's own test sets it.
        settings.executor.nice = sqljudge::config::Nice::NONE;
        settings.rate_limit = options
            .rate_limit
            .unwrap_or(sqljudge::config::RateLimitSettings {
                enabled: true,
                submit_per_minute: 1_000_000,
                submit_burst: 100_000,
                run_per_minute: 1_000_000,
                run_burst: 100_000,
                auth_per_minute: 1_000_000,
                auth_burst: 100_000,
            });
        settings.health.interval_ms = 200;
        settings.auth.last_seen_flush_ms = 100;
        settings.redis.ca_file = options.redis_ca_file;
        if let Some(tweak) = options.tweak {
            tweak(&mut settings);
        }
        let sandbox_url = settings.sandbox.url.expose_secret().to_string();
        let admin_token = settings.auth.admin_token.expose_secret().to_string();
        let app = Application::build(settings)
            .await
            .expect("application builds");
        let state = app.state();
        if options.demo {
            sqljudge::packs::load(&state, std::path::Path::new("demo"))
                .await
                .expect("demo loads");
        }
        let address = format!("http://127.0.0.1:{}", app.port());
        actix_web::rt::spawn(app.run_until_stopped());
        TestApp {
            address,
            client: reqwest::Client::new(),
            admin_token,
            state,
            sandbox_url,
            workers: options.workers,
            made,
        }
    }

    /// Grades what is queued, one job at a time, until nothing waits (for an app spawned with
    /// `workers: 0`, so that a test not about timing polls nothing); how many were graded.
    pub async fn run_pending_jobs(&self) -> usize {
        let executors = &self.state.executors;
        let mut slot = executors.standalone_slot();
        let mut graded = 0;
        while executors.try_execute_task(&mut slot).await {
            graded += 1;
        }
        graded
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    /// Registers `name` and returns an access token.
    pub async fn user(&self, name: &str) -> String {
        let res = self
            .post_json(
                "/auth/register",
                None,
                &json!({"username": name, "email": format!("{name}@example.org"), "password": "s3cret-pass"}),
            )
            .await;
        assert_eq!(res.status(), 201, "register {name}");
        let res = self
            .post_json(
                "/auth/login",
                None,
                &json!({"username": name, "password": "s3cret-pass"}),
            )
            .await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The id of the user a token belongs to.
    pub async fn user_id(&self, token: &str) -> i64 {
        let me: Value = self
            .get("/users/me", Some(token))
            .await
            .json()
            .await
            .unwrap();
        me["user_id"].as_i64().expect("user id")
    }

    pub async fn problem_id(&self, slug: &str) -> i64 {
        let list: Value = self.get("/problems", None).await.json().await.unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|p| p["slug"] == slug)
            .unwrap_or_else(|| panic!("no problem {slug}"))["id"]
            .as_i64()
            .unwrap()
    }

    pub async fn submit(&self, token: &str, problem_id: i64, sql: &str) -> reqwest::Response {
        self.post_json(
            "/problems/submit",
            Some(token),
            &json!({"problem_id": problem_id, "sql": sql}),
        )
        .await
    }

    /// `POST /problems/{id}/run`.
    pub async fn run(&self, token: &str, problem_id: i64, sql: &str) -> reqwest::Response {
        self.post_json(
            &format!("/problems/{problem_id}/run"),
            Some(token),
            &json!({ "sql": sql }),
        )
        .await
    }

    /// A submission's result as its submitter reads it.
    pub async fn result(&self, token: &str, job_id: &str) -> Value {
        let res = self
            .get(&format!("/problems/result/{job_id}"), Some(token))
            .await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Polls the result until it is final (or fails the test after `within`).
    pub async fn wait_final(&self, token: &str, job_id: &str, within: Duration) -> Value {
        let started = Instant::now();
        loop {
            let body = self.result(token, job_id).await;
            let status = body["status"].as_str().unwrap();
            if status != "queued" && status != "running" {
                return body;
            }
            assert!(
                started.elapsed() < within,
                "job {job_id} still {status} after {within:?}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Submits and waits for the verdict (at once when it comes from the verdict cache). With
    /// no executors it grades the queue itself, so nothing is polled.
    pub async fn grade(&self, token: &str, problem_id: i64, sql: &str) -> Value {
        let res = self.submit(token, problem_id, sql).await;
        let status = res.status().as_u16();
        let job: Value = res.json().await.unwrap();
        if status == 200 {
            assert_eq!(job["queue"], "cache", "{job}");
            return job;
        }
        assert_eq!(status, 202, "submit {sql}: {job}");
        if self.workers == 0 {
            self.run_pending_jobs().await;
            return self.result(token, job["job_id"].as_str().unwrap()).await;
        }
        self.wait_final(
            token,
            job["job_id"].as_str().unwrap(),
            Duration::from_secs(20),
        )
        .await
    }

    /// PUT an SQL script to an admin path.
    async fn put_script(&self, path: &str, script: &str) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .bearer_auth(&self.admin_token)
            .header("content-type", "application/sql")
            .body(script.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn put_dataset(&self, name: &str, script: &str) -> reqwest::Response {
        self.put_script(&format!("/admin/datasets/{name}"), script)
            .await
    }

    /// `PUT /admin/datasets/{name}/tests/{n}`: an uploaded hidden test.
    pub async fn put_test(&self, name: &str, n: &str, script: &str) -> reqwest::Response {
        self.put_script(&format!("/admin/datasets/{name}/tests/{n}"), script)
            .await
    }

    /// An app of its own (grading in the test's task, no demo set) with one dataset loaded.
    pub async fn with_dataset(name: &str, script: &str) -> TestApp {
        let app = TestApp::spawn_with(Options {
            demo: false,
            workers: 0,
            ..Default::default()
        })
        .await;
        let res = app.put_dataset(name, script).await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        app
    }

    /// Creates a problem of `base`'s fields and `extra`'s (which win); the problem object.
    pub async fn problem_of(&self, base: Value, extra: Value) -> Value {
        let mut body = base;
        body.as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        let res = self.create_problem(&body).await;
        let status = res.status();
        let created: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "{created}");
        created
    }

    /// `GET /problems/{id}`, as JSON.
    pub async fn problem(&self, id: i64) -> Value {
        self.get(&format!("/problems/{id}"), None)
            .await
            .json()
            .await
            .unwrap()
    }

    /// GET an admin path, as JSON.
    pub async fn admin_json(&self, path: &str) -> Value {
        self.get(path, Some(&self.admin_token))
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn delete_test(&self, name: &str, n: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/admin/datasets/{name}/tests/{n}")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap()
    }

    pub async fn update_problem(&self, id: i64, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/admin/problems/{id}")))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Gives problem `id` a new title, keeping the rest (its reference is `reference_sql`).
    pub async fn retitle(&self, id: i64, title: &str, reference_sql: &str) {
        let problem: Value = self
            .get(&format!("/problems/{id}"), None)
            .await
            .json()
            .await
            .unwrap();
        let res = self
            .update_problem(
                id,
                &json!({
                    "slug": problem["slug"], "title": title, "statement": problem["statement"],
                    "topic": problem["topic"], "dataset": problem["dataset"],
                    "reference_sql": reference_sql,
                }),
            )
            .await;
        assert_eq!(res.status(), 200);
    }

    pub async fn logout(&self, token: &str) -> reqwest::StatusCode {
        self.client
            .post(self.url("/auth/logout"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }

    pub async fn create_problem(&self, body: &Value) -> reqwest::Response {
        self.post_json("/admin/problems", Some(&self.admin_token), body)
            .await
    }

    /// A synchronous connection to this test's platform database.
    pub fn platform_db(&self) -> PgConnection {
        PgConnection::establish(&format!(
            "{}/sqljudge_t_{}{NO_TLS}",
            self.made.server, self.made.id
        ))
        .unwrap()
    }

    /// An admin connection to this test's sandbox database.
    pub fn sandbox_db(&self) -> PgConnection {
        PgConnection::establish(&self.sandbox_url).unwrap()
    }

    /// The environment that makes a `sqljudge serve` process a second instance of this app.
    pub fn env_for_process(&self, port: u16) -> Vec<(String, String)> {
        let s = &self.state.settings;
        [
            ("DATABASE_URL", s.database.url.expose_secret().to_string()),
            (
                "SQLJUDGE_SANDBOX_URL",
                s.sandbox.url.expose_secret().to_string(),
            ),
            (
                "SQLJUDGE_SANDBOX_URLS",
                s.sandbox
                    .urls
                    .as_ref()
                    .map_or(String::new(), |u| u.expose_secret().to_string()),
            ),
            ("REDIS_URL", s.redis.url.expose_secret().to_string()),
            (
                "SQLJUDGE_ADMIN_TOKEN",
                s.auth.admin_token.expose_secret().to_string(),
            ),
            ("SQLJUDGE_BIND", format!("127.0.0.1:{port}")),
            ("SQLJUDGE__REDIS__KEY_PREFIX", s.redis.key_prefix.clone()),
            (
                "SQLJUDGE__SANDBOX__ROLE_PREFIX",
                s.sandbox.role_prefix.clone(),
            ),
            (
                "SQLJUDGE__EXECUTOR__WORKERS",
                s.executor.workers.to_string(),
            ),
            (
                "SQLJUDGE__EXECUTOR__RUN_SLOTS",
                s.executor.run_slots.to_string(),
            ),
            (
                "SQLJUDGE__EXECUTOR__LEASE_MS",
                s.executor.lease_ms.to_string(),
            ),
            (
                "SQLJUDGE__EXECUTOR__REAPER_INTERVAL_MS",
                s.executor.reaper_interval_ms.to_string(),
            ),
            (
                "SQLJUDGE__EXECUTOR__RESWEEP_AFTER_MS",
                s.executor.resweep_after_ms.to_string(),
            ),
            (
                "SQLJUDGE__EXECUTOR__NICE",
                s.executor.nice.get().to_string(),
            ),
            (
                "SQLJUDGE__HEALTH__INTERVAL_MS",
                s.health.interval_ms.to_string(),
            ),
            ("SQLJUDGE__SERVER__HTTP_WORKERS", "2".to_string()),
            (
                "SQLJUDGE__RATE_LIMIT__SUBMIT_PER_MINUTE",
                s.rate_limit.submit_per_minute.to_string(),
            ),
            (
                "SQLJUDGE__RATE_LIMIT__SUBMIT_BURST",
                s.rate_limit.submit_burst.to_string(),
            ),
            (
                "SQLJUDGE__RATE_LIMIT__RUN_PER_MINUTE",
                s.rate_limit.run_per_minute.to_string(),
            ),
            (
                "SQLJUDGE__RATE_LIMIT__RUN_BURST",
                s.rate_limit.run_burst.to_string(),
            ),
            (
                "SQLJUDGE__RATE_LIMIT__AUTH_PER_MINUTE",
                s.rate_limit.auth_per_minute.to_string(),
            ),
            (
                "SQLJUDGE__RATE_LIMIT__AUTH_BURST",
                s.rate_limit.auth_burst.to_string(),
            ),
        ]
        .into_iter()
        .chain(
            (s.redis.ca_file.as_ref())
                .map(|p| ("SQLJUDGE__REDIS__CA_FILE", p.display().to_string())),
        )
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `sqljudge serve` (the binary `bin`: `env!("CARGO_BIN_EXE_sqljudge")` in a test or bench
    /// of the sqljudge package) as a second process of this app on `port` (its output
    /// discarded), killed when dropped, so a failing test leaves none behind.
    pub fn process(&self, bin: impl AsRef<OsStr>, port: u16) -> Process {
        self.process_logging(bin, port, "info", std::process::Stdio::null())
    }

    /// The same, logging at `level` (`RUST_LOG`) to `log`.
    pub fn process_logging(
        &self,
        bin: impl AsRef<OsStr>,
        port: u16,
        level: &str,
        log: impl Into<std::process::Stdio>,
    ) -> Process {
        self.process_with(bin, port, &[("RUST_LOG", level)], log)
    }

    /// The same, with `env` set over this app's settings (e.g. `SQLJUDGE__EXECUTOR__WORKERS`).
    pub fn process_with(
        &self,
        bin: impl AsRef<OsStr>,
        port: u16,
        env: &[(&str, &str)],
        log: impl Into<std::process::Stdio>,
    ) -> Process {
        Process(
            std::process::Command::new(bin)
                .arg("serve")
                .current_dir(PACKAGE_DIR)
                .envs(self.env_for_process(port))
                .env("RUST_LOG", "info")
                .envs(env.iter().copied())
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    /// Waits until the instance at `base` answers `/health`.
    pub async fn wait_ready(&self, base: &str) {
        let started = Instant::now();
        loop {
            if let Ok(res) = self.client.get(format!("{base}/health")).send().await {
                if res.status().is_success() {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{base} never became ready"
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most `within`) until every one of `job_ids` has a final record, and checks
    /// that none is recorded twice.
    pub async fn wait_recorded_once(&self, job_ids: &[String], within: Duration) {
        let ids: Vec<uuid::Uuid> = job_ids.iter().map(|j| j.parse().unwrap()).collect();
        let started = Instant::now();
        loop {
            let recorded = self.count_submissions(&ids);
            if recorded.final_rows == ids.len() {
                assert_eq!(recorded.rows, ids.len(), "recorded twice");
                return;
            }
            assert!(
                started.elapsed() < within,
                "{} of {} recorded",
                recorded.final_rows,
                ids.len()
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn count_submissions(&self, ids: &[uuid::Uuid]) -> Recorded {
        // One statement: a row recorded between two counts would make it look recorded twice.
        #[derive(diesel::QueryableByName)]
        struct Counts {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            rows: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            final_rows: i64,
        }
        let counts = diesel::sql_query(
            "SELECT count(*) AS rows, \
                    count(*) FILTER (WHERE status NOT IN ('queued', 'running')) AS final_rows \
             FROM submissions WHERE id = ANY($1)",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
        .get_result::<Counts>(&mut self.platform_db())
        .unwrap();
        Recorded {
            rows: counts.rows as usize,
            final_rows: counts.final_rows as usize,
        }
    }

    /// Distinct problems solved per user, recounted from Postgres.
    pub fn solved_counts(&self) -> Vec<(i64, i64)> {
        #[derive(diesel::QueryableByName)]
        struct Solved {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            user_id: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query("SELECT user_id, count(DISTINCT problem_id) AS n FROM submissions WHERE status = 'accepted' GROUP BY user_id")
            .load::<Solved>(&mut self.platform_db())
            .unwrap()
            .into_iter()
            .map(|s| (s.user_id, s.n))
            .collect()
    }

    pub fn fallback_pending(&self) -> i64 {
        diesel::sql_query("SELECT count(*) AS n FROM fallback_submissions")
            .get_result::<Count>(&mut self.platform_db())
            .unwrap()
            .n
    }

    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.made.redis_url.as_str())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("test:{}:{suffix}", self.made.id)
    }
}

/// A test app's databases, sandbox roles and Redis keys: their names, and their removal when
/// dropped.
struct Made {
    /// In every name.
    id: String,
    /// The PostgreSQL server URL without a database name.
    server: String,
    redis_url: String,
}

impl Drop for Made {
    fn drop(&mut self) {
        let (id, server, redis_url) =
            (self.id.clone(), self.server.clone(), self.redis_url.clone());
        // Own thread: this may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(mut conn) = PgConnection::establish(&format!("{server}/postgres{NO_TLS}")) {
                // The sandbox's hidden tests each have a database beside it (`<db>_u1`, `<db>_g2`).
                #[derive(diesel::QueryableByName)]
                struct Name {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    datname: String,
                }
                let tests: Vec<Name> = diesel::sql_query(format!(
                    "SELECT datname::text AS datname FROM pg_database WHERE datname LIKE 'sqljudge\\_ts\\_{id}\\_%'"
                ))
                .load(&mut conn)
                .unwrap_or_default();
                let dbs = [format!("sqljudge_t_{id}"), format!("sqljudge_ts_{id}")]
                    .into_iter()
                    .chain(tests.into_iter().map(|t| t.datname));
                for db in dbs {
                    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)")).execute(&mut conn);
                }
                // Every sandbox role (slots, umbrellas, dataset owners and groups) starts with
                // the prefix; with the database gone they hold nothing that blocks DROP ROLE.
                let _ = diesel::sql_query(format!(
                    "DO $$ DECLARE r text; BEGIN FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE 'sjt\\_{id}\\_%' \
                     LOOP EXECUTE format('DROP ROLE %I', r); END LOOP; END $$"
                ))
                .execute(&mut conn);
            }
            if let Ok(mut r) = redis::Client::open(redis_url.as_str()).and_then(|c| c.get_connection()) {
                let keys: Vec<String> = redis::cmd("KEYS").arg(format!("test:{id}:*")).query(&mut r).unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut r);
                }
            }
        })
        .join();
    }
}

/// Rows and index entries of `table` (and its indexes) that the current transaction has read
/// so far: what a statement costs in reads, as the difference of two calls around it.
pub fn rows_read(conn: &mut PgConnection, table: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Read {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
    }
    diesel::sql_query(
        "SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(oid)), 0)::bigint AS rows \
         FROM pg_class WHERE oid = $1::regclass \
         OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = $1::regclass)",
    )
    .bind::<diesel::sql_types::Text, _>(table)
    .get_result::<Read>(conn)
    .unwrap()
    .rows
}
