//! Layered settings: `config/default.toml`, an optional `SQLJUDGE_CONFIG` file, then the
//! environment. The fixed variable names are part of the operator contract.
use secrecy::ExposeSecret;
use serde::Deserialize;

/// A setting that is or may carry a credential (a token, a password, a URL with a password):
/// `Debug` shows `[REDACTED]`, there is no `Display`, reading it takes an explicit
/// `expose_secret()`, and it is wiped from memory when dropped.
pub type Secret = secrecy::SecretString;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub sandbox: SandboxSettings,
    pub executor: ExecutorSettings,
    pub auth: AuthSettings,
    pub health: HealthSettings,
    pub rate_limit: RateLimitSettings,
    pub websocket: WebSocketSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebSocketSettings {
    pub heartbeat_ms: u64,
    pub client_timeout_ms: u64,
    pub send_timeout_ms: u64,
    /// Events a connection may fall behind by before it is closed.
    pub buffer: usize,
    pub stats_interval_ms: u64,
    /// How long a ticket from `POST /ws/ticket` may wait for its one connection.
    pub ticket_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub bind: String,
    pub http_workers: usize,
    pub max_json_bytes: usize,
    pub max_dataset_bytes: usize,
    /// After SIGTERM: how long requests and gradings under way may take to finish.
    pub shutdown_grace_secs: u64,
    /// What this process does: `all`, `api` (HTTP, no grading) or `worker` (grading; HTTP
    /// for health and metrics only).
    #[serde(default)]
    pub role: Role,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

/// The parts of the service a process runs, so that graders scale apart from the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The API and the graders.
    #[default]
    All,
    /// The API (and runs without submitting), no executors.
    Api,
    /// The executors; HTTP serves `/health*`, `/metrics` and `/queue/status` only.
    Worker,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub pool_size: u32,
    pub checkout_timeout_ms: u64,
    /// The most a submission waits on Postgres before routing around it.
    pub request_timeout_ms: u64,
    /// The same when Postgres is the only place that could keep the submission.
    pub request_timeout_alone_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    pub url: Secret,
    pub key_prefix: String,
    pub timeout_ms: u64,
    pub result_ttl_secs: u64,
    pub verdict_cache_ttl_secs: u64,
    pub api_cache_ttl_secs: u64,
    pub stats_cache_ttl_secs: u64,
    /// While Postgres is down, acknowledge submissions from Redis alone only if Redis has its
    /// append-only file on; otherwise answer 503.
    pub require_persistence: bool,
    /// `rediss://` URLs: the PEM file of the authority that signed Redis's certificate, when
    /// it is not one the system trusts.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SandboxSettings {
    pub url: Secret,
    /// Several sandbox servers, comma-separated (`SQLJUDGE_SANDBOX_URLS`); `url` when unset.
    #[serde(default)]
    pub urls: Option<Secret>,
    pub role_prefix: String,
    pub role_password: Secret,
    pub default_time_limit_ms: u32,
    pub max_time_limit_ms: u32,
    pub grace_ms: u64,
    pub max_rows: usize,
    pub max_output_bytes: usize,
    pub max_message_bytes: usize,
    pub max_sql_bytes: usize,
    /// How long a grading waits for a backend it terminated to exit before it quarantines
    /// the slot.
    pub backend_exit_wait_ms: u64,
    /// Connections to the sandbox database at most (superusers aside), and per grading role.
    pub connection_limit: u32,
    /// Seconds a grading connection may stay idle; then its server closes it.
    pub idle_connection_secs: u32,
    /// Counterexamples: searched only in hidden tests of at most this many rows, with at
    /// most this many runs and this much time (ms) per wrong answer.
    pub counterexample_max_rows: usize,
    pub counterexample_max_runs: usize,
    pub counterexample_max_ms: u64,
    /// How often (seconds) to compare what the sandbox holds with the platform's datasets and
    /// tests, and load what is missing or stale (a sandbox that came back empty). 0: only at
    /// start.
    pub restore_check_secs: u64,
}

impl SandboxSettings {
    /// The sandbox servers: those of `urls` when set, else the one of `url`.
    pub fn server_urls(&self) -> Vec<Secret> {
        let listed: Vec<Secret> = self
            .urls
            .as_ref()
            .map(|urls| {
                urls.expose_secret()
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(|u| u.to_string().into())
                    .collect()
            })
            .unwrap_or_default();
        if listed.is_empty() {
            vec![self.url.clone()]
        } else {
            listed
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExecutorSettings {
    pub workers: usize,
    pub lease_ms: u64,
    pub reaper_interval_ms: u64,
    pub resweep_after_ms: u64,
    pub max_attempts: u32,
    pub dequeue_block_secs: f64,
    /// Live jobs of one user graded at the same time, at most, while others' jobs wait (0 would
    /// grade none: refused when the settings are read).
    pub per_user_limit: std::num::NonZeroU32,
    /// An executor whose last grading took less than this takes its next job while it grades,
    /// when more jobs wait; 0: never.
    pub take_ahead_after_ms: u64,
    /// Sandbox slots of their own for `POST /problems/{id}/run`, beside the executors'.
    pub run_slots: usize,
    /// How many steps of niceness the executors' thread runs below the rest of the process.
    pub nice: Nice,
}

/// Steps of niceness any process may lower its own threads by: 0 (none) to 19 (from the normal
/// priority to the lowest). Raising one needs privileges: refused when the settings are read.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
pub struct Nice(u8);

impl Nice {
    pub const NONE: Nice = Nice(0);

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Nice {
    type Error = String;

    fn try_from(value: i64) -> Result<Nice, String> {
        match u8::try_from(value) {
            Ok(nice) if nice <= 19 => Ok(Nice(nice)),
            _ => Err(format!("a niceness is from 0 to 19, not {value}")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub admin_token: Secret,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub last_seen_flush_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub submit_per_minute: u32,
    pub submit_burst: u32,
    pub run_per_minute: u32,
    pub run_burst: u32,
    pub auth_per_minute: u32,
    pub auth_burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HealthSettings {
    pub interval_ms: u64,
}

/// Environment variables with fixed names, and the setting each one overrides.
const FIXED_ENV: [(&str, &str); 6] = [
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("SQLJUDGE_ADMIN_TOKEN", "auth.admin_token"),
    ("SQLJUDGE_BIND", "server.bind"),
    ("SQLJUDGE_SANDBOX_URL", "sandbox.url"),
    ("SQLJUDGE_SANDBOX_URLS", "sandbox.urls"),
];

impl Settings {
    /// Reads `config/default.toml` (relative to the working directory, or the directory named by
    /// `SQLJUDGE_CONFIG_DIR`), then `SQLJUDGE_CONFIG`, then the environment.
    pub fn load() -> Result<Settings, config::ConfigError> {
        let dir = std::env::var("SQLJUDGE_CONFIG_DIR").unwrap_or_else(|_| "config".into());
        let mut builder = config::Config::builder()
            .add_source(config::File::with_name(&format!("{dir}/default")));
        if let Ok(extra) = std::env::var("SQLJUDGE_CONFIG") {
            builder = builder.add_source(config::File::with_name(&extra));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("SQLJUDGE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        for (var, key) in FIXED_ENV {
            builder = builder.set_override_option(key, std::env::var(var).ok())?;
        }
        builder.build()?.try_deserialize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_nice(nice: i64) -> Result<Settings, config::ConfigError> {
        config::Config::builder()
            .add_source(config::File::with_name("config/default"))
            .set_override("executor.nice", nice)?
            .build()?
            .try_deserialize()
    }

    #[test]
    fn a_niceness_outside_0_to_19_is_refused_with_the_reason() {
        assert_eq!(with_nice(19).unwrap().executor.nice.get(), 19);
        assert_eq!(with_nice(0).unwrap().executor.nice.get(), 0);
        for bad in [-1, 20, 300] {
            let error = with_nice(bad).unwrap_err().to_string();
            assert!(
                error.contains(&format!("a niceness is from 0 to 19, not {bad}")),
                "{error}"
            );
        }
    }
}
