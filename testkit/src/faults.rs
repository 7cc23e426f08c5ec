//! Fault injection for the outage tests and the chaos run (`benches/chaos.rs`): a Redis the
//! test owns, a TCP proxy that can hang or cut connections, a steady submission load, and the
//! invariants every scenario must keep.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{Options, TestApp};

/// A port for a server a test starts (and may stop and start again), below the kernel's range
/// for outgoing connections: a port in that range (what binding port 0 gives) can be taken by
/// any connection of any test while the server is not listening on it, and the server then
/// fails to start. No port is handed out twice in a run: a test's server that is down for a
/// restart leaves its port free to bind, and its data directory is named after it.
pub fn free_port() -> u16 {
    use rand::Rng;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let ports: Vec<u16> = range
        .iter()
        .flat_map(|r| r.split_whitespace().map(str::parse))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let (low, high) = match ports[..] {
        [low, high] => (low, high),
        _ => (32768, 60999),
    };
    // Below the range, else above it; a range that leaves too few ports outside: port 0's.
    let outside = match (low > 11_000, high < 64_535) {
        (true, _) => Some(10_000..=low - 1),
        (false, true) => Some(high + 1..=u16::MAX),
        (false, false) => None,
    };
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = match &outside {
            Some(ports) => rand::thread_rng().gen_range(ports.clone()),
            None => TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port(),
        };
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// The port of the PostgreSQL server the configuration points at.
pub fn postgres_port() -> u16 {
    let settings = sqljudge::config::Settings::load().unwrap();
    let url = settings.database.url.expose_secret();
    let host = url.rsplit_once('@').map_or(url, |(_, h)| h);
    let host = host
        .trim_start_matches("postgres://")
        .trim_start_matches("postgresql://");
    host.split('/')
        .next()
        .and_then(|h| h.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(5432)
}

/// A disposable redis-server on a free port, in its own directory.
pub struct RedisInstance {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
    /// With its append-only file (`appendfsync everysec`): a restart keeps what it had.
    persistent: bool,
    /// Serving TLS only, with a certificate of its own authority (`ca_file`).
    tls: bool,
    /// Any other arguments to redis-server.
    args: Vec<String>,
}

impl RedisInstance {
    /// Without persistence: a restart comes back empty.
    pub fn start() -> RedisInstance {
        RedisInstance::start_with(false)
    }

    /// With its append-only file on, as a Redis that may acknowledge alone must be.
    pub fn start_persistent() -> RedisInstance {
        RedisInstance::start_with(true)
    }

    /// TLS only (`rediss://`), its certificate signed by an authority made for it: `ca_file`.
    pub fn start_tls() -> RedisInstance {
        RedisInstance::start_as(false, true)
    }

    fn start_with(persistent: bool) -> RedisInstance {
        RedisInstance::start_as(persistent, false)
    }

    fn start_as(persistent: bool, tls: bool) -> RedisInstance {
        RedisInstance::start_args(persistent, tls, vec![])
    }

    fn start_args(persistent: bool, tls: bool, args: Vec<String>) -> RedisInstance {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sqljudge-redis-{port}"));
        // An append-only file an earlier run left on this port would be replayed.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = RedisInstance {
            port,
            dir,
            child: None,
            persistent,
            tls,
            args,
        };
        if tls {
            make_certificates(&redis.dir);
        }
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The authority that signed a TLS instance's certificate (PEM).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.join("ca.crt")
    }

    fn client(&self) -> redis::RedisResult<redis::Client> {
        if !self.tls {
            return redis::Client::open(self.url());
        }
        redis::Client::build_with_tls(
            self.url(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(self.ca_file()).unwrap()),
            },
        )
    }

    /// Starts it (again: empty, unless persistent) and waits until it answers.
    pub fn restart(&mut self) {
        let port = self.port.to_string();
        let (plain, tls) = if self.tls {
            ("0", port.as_str())
        } else {
            (port.as_str(), "0")
        };
        let file = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        let child = Command::new("redis-server")
            .args([
                "--port",
                plain,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                if self.persistent { "yes" } else { "no" },
            ])
            .args(match self.tls {
                true => vec![
                    "--tls-port".to_string(),
                    tls.to_string(),
                    "--tls-cert-file".into(),
                    file("redis.crt"),
                    "--tls-key-file".into(),
                    file("redis.key"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ],
                false => vec![],
            })
            .args(&self.args)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let started = Instant::now();
        while self.client().and_then(|c| c.get_connection()).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown, no goodbye to clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a command on the instance directly (not through any proxy).
    pub fn command(&self, args: &[&str]) {
        let mut conn = self.client().unwrap().get_connection().unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let _: redis::Value = cmd.query(&mut conn).unwrap();
    }
}

impl Drop for RedisInstance {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The name the sentinels know the master by.
pub const SENTINEL_MASTER: &str = "sqljudge";

/// Redis as operators run it for failover: a master and a replica, each a `RedisInstance`,
/// and three sentinels watching them (quorum 2, a master is down after 1 s), all on free
/// ports in directories of their own.
pub struct SentinelSet {
    /// The first master, then its replica; which one is master now: `master_port`.
    pub nodes: Vec<RedisInstance>,
    pub sentinel_ports: Vec<u16>,
    sentinels: Vec<Child>,
    dir: std::path::PathBuf,
}

impl SentinelSet {
    /// Started, and waited for until every sentinel knows the replica and the other two.
    pub async fn start() -> SentinelSet {
        let master = RedisInstance::start();
        let replica = RedisInstance::start_args(
            false,
            false,
            vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port.to_string(),
            ],
        );
        let dir = std::env::temp_dir().join(format!("sqljudge-sentinels-{}", master.port));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut set = SentinelSet {
            sentinel_ports: vec![],
            sentinels: vec![],
            dir,
            nodes: vec![master, replica],
        };
        for _ in 0..3 {
            let port = free_port();
            // Sentinels rewrite their configuration file: each has its own.
            let config = set.dir.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 4000\n",
                    dir = set.dir.display(),
                    master = set.nodes[0].port,
                ),
            )
            .unwrap();
            let child = Command::new("redis-server")
                .arg(&config)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed");
            set.sentinels.push(child);
            set.sentinel_ports.push(port);
        }
        set.wait_ready(Duration::from_secs(30)).await;
        set
    }

    /// `redis+sentinel://` naming the three sentinels.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}", hosts.join(","))
    }

    fn sentinel(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{port}"))?
            .get_connection_with_timeout(Duration::from_secs(1))
    }

    /// The master's port as the sentinel on `sentinel` names it.
    fn named_by(&self, sentinel: u16) -> Option<u16> {
        let (_, port): (String, String) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(SENTINEL_MASTER)
            .query(&mut self.sentinel(sentinel).ok()?)
            .ok()?;
        port.parse().ok()
    }

    /// The master's port as the first sentinel that answers names it.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinel_ports.iter().find_map(|&p| self.named_by(p))
    }

    /// The node with this port.
    pub fn node(&mut self, port: u16) -> &mut RedisInstance {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap()
    }

    /// Waits until every sentinel agrees on a master other than `old`; its port.
    pub async fn wait_failover(&self, old: u16, within: Duration) -> u16 {
        let started = Instant::now();
        loop {
            let named: Vec<Option<u16>> = self
                .sentinel_ports
                .iter()
                .map(|&p| self.named_by(p))
                .collect();
            if let Some(Some(new)) = named.first() {
                if *new != old && named.iter().all(|n| *n == Some(*new)) {
                    return *new;
                }
            }
            assert!(started.elapsed() < within, "no failover: {named:?}");
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every sentinel sees the master, a replica in sync and the other two
    /// sentinels: a failover can then happen.
    pub async fn wait_ready(&self, within: Duration) {
        let started = Instant::now();
        let ready = |port: u16| -> redis::RedisResult<bool> {
            let mut conn = self.sentinel(port)?;
            let master: HashMap<String, String> = redis::cmd("SENTINEL")
                .arg("master")
                .arg(SENTINEL_MASTER)
                .query(&mut conn)?;
            let replicas: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
                .arg("replicas")
                .arg(SENTINEL_MASTER)
                .query(&mut conn)?;
            Ok(master.get("flags").map(String::as_str) == Some("master")
                && master.get("num-other-sentinels").map(String::as_str) == Some("2")
                && replicas.iter().any(|r| {
                    r.get("flags").map(String::as_str) == Some("slave")
                        && r.get("master-link-status").map(String::as_str) == Some("ok")
                }))
        };
        while !self
            .sentinel_ports
            .iter()
            .all(|&p| ready(p).unwrap_or(false))
        {
            assert!(
                started.elapsed() < within,
                "the sentinels never saw a healthy master and replica"
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for child in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Accepts, keeps connections open, forwards nothing.
    Hang,
    /// Closes every connection and every new one at once.
    Refuse,
}

/// A TCP proxy on a free port in front of `upstream`, on a thread and runtime of its own.
pub struct Proxy {
    pub port: u16,
    mode: tokio::sync::watch::Sender<Mode>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, watch) = tokio::sync::watch::channel(Mode::Forward);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    if *watch.borrow() == Mode::Refuse {
                        continue; // dropped: closed at once
                    }
                    let watch = watch.clone();
                    tokio::spawn(async move {
                        let Ok(server) =
                            tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                        else {
                            return;
                        };
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(pump(cr, sw, watch.clone()), pump(sr, cw, watch));
                    });
                }
            });
        });
        Proxy { port, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Waits while the proxy hangs; false once it refuses (or is gone).
async fn may_forward(mode: &mut tokio::sync::watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            Mode::Forward => return true,
            Mode::Refuse => return false,
            Mode::Hang => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: tokio::sync::watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if !may_forward(&mut mode).await {
            return;
        }
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                if !may_forward(&mut mode).await || to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            changed = mode.changed() => if changed.is_err() { return },
        }
    }
}

/// The app on the machine's Redis through a proxy the test controls (cutting it keeps Redis's
/// keys, unlike stopping a server).
pub async fn app_behind_redis_proxy() -> (Proxy, TestApp) {
    let proxy = Proxy::start(6379);
    let app = TestApp::spawn_with(Options {
        redis_url: Some(format!("redis://127.0.0.1:{}", proxy.port)),
        ..Options::default()
    })
    .await;
    (proxy, app)
}

/// What a load run saw.
#[derive(Default, Debug)]
pub struct LoadReport {
    /// Acknowledged (2xx) submissions: job id, status code.
    pub acked: Vec<(String, u16)>,
    pub statuses: HashMap<u16, usize>,
    /// (sent at, latency, status) of every request.
    pub samples: Vec<(Instant, Duration, u16)>,
}

impl LoadReport {
    pub fn sent(&self) -> usize {
        self.samples.len()
    }

    /// The worst submit latency of requests sent in `[from, to)`.
    pub fn worst_between(&self, from: Instant, to: Instant) -> Duration {
        self.samples
            .iter()
            .filter(|(at, _, _)| *at >= from && *at < to)
            .map(|(_, d, _)| *d)
            .max()
            .unwrap_or_default()
    }

    /// When the first submission after `from` was acknowledged from the given queue.
    pub fn first_status_after(&self, from: Instant, status: u16) -> Option<Duration> {
        self.samples
            .iter()
            .filter(|(at, _, s)| *at >= from && *s == status)
            .map(|(at, d, _)| *at + *d - from)
            .min()
    }
}

/// `clients` users submitting a correct solution to the instance at `base` every `pause`
/// until `stop` is set.
pub async fn run_load(
    app: &TestApp,
    base: &str,
    clients: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> LoadReport {
    let problem = app.problem_id("uk-customers").await;
    let report = Arc::new(Mutex::new(LoadReport::default()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let token = app.user(&format!("load_{c}")).await;
        let (client, url, stop, report) = (
            app.client.clone(),
            format!("{base}/problems/submit"),
            stop.clone(),
            report.clone(),
        );
        tasks.push(actix_web::rt::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Distinct solutions, so each one is graded rather than served from the cache.
                let sql = format!("SELECT name FROM customers WHERE country = 'UK' AND {c} < {n}");
                let body =
                    json!({"problem_id": problem, "request_id": format!("c{c}-{n}"), "sql": sql});
                let sent = Instant::now();
                let res = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                let latency = sent.elapsed();
                let status = res.as_ref().map_or(0, |r| r.status().as_u16());
                let job = match res {
                    Ok(r) if r.status().is_success() => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["job_id"].as_str().map(String::from)),
                    _ => None,
                };
                {
                    let mut report = report.lock().unwrap();
                    report.samples.push((sent, latency, status));
                    *report.statuses.entry(status).or_default() += 1;
                    if let Some(job) = job {
                        report.acked.push((job, status));
                    }
                }
                actix_web::rt::time::sleep(pause).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(report).unwrap().into_inner().unwrap()
}

/// What the invariants check found.
#[derive(Debug)]
pub struct Outcome {
    pub lost: usize,
    pub duplicated: usize,
    pub drained_after: Duration,
    /// Users whose leaderboard score differs from a recount from Postgres.
    pub miscounted: usize,
}

/// Users whose global leaderboard score (as served) differs from a recount from Postgres,
/// after giving the asynchronous updates and rebuilds `within` to settle.
pub async fn leaderboard_mismatches(app: &TestApp, within: Duration) -> usize {
    let started = Instant::now();
    loop {
        let mut wrong = 0;
        for (user_id, solved) in app.solved_counts() {
            let body: Value = app
                .get(&format!("/leaderboard/user/{user_id}"), None)
                .await
                .json()
                .await
                .unwrap();
            if body["global"]["score"].as_i64() != Some(solved) {
                wrong += 1;
            }
        }
        if wrong == 0 || started.elapsed() > within {
            return wrong;
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every acknowledged job reaches a final status and has exactly one record; no 5xx but
/// deliberate 503s; the fallback queue drains.
pub async fn check_invariants(app: &TestApp, report: &LoadReport, within: Duration) -> Outcome {
    for (status, n) in &report.statuses {
        assert!(
            matches!(status, 200 | 201 | 202 | 503),
            "{n} responses with status {status} (0 = no response): {:?}",
            report.statuses
        );
    }
    let started = Instant::now();
    let mut pending: Vec<&String> = report.acked.iter().map(|(j, _)| j).collect();
    while !pending.is_empty() && started.elapsed() < within {
        let mut still = Vec::new();
        for job in pending {
            let res = app
                .get(&format!("/problems/result/{job}"), Some(&app.admin_token))
                .await;
            let status = res
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["status"].as_str().map(String::from));
            if !matches!(status.as_deref(), Some(s) if s != "queued" && s != "running") {
                still.push(job);
            }
        }
        pending = still;
        if !pending.is_empty() {
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The record, straight from Postgres.
    let ids: Vec<uuid::Uuid> = report
        .acked
        .iter()
        .map(|(j, _)| j.parse().unwrap())
        .collect();
    let recorded = app.count_submissions(&ids);
    let drain_started = Instant::now();
    while app.fallback_pending() > 0 && drain_started.elapsed() < within {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_after = drain_started.elapsed();
    Outcome {
        lost: pending.len() + ids.len().saturating_sub(recorded.final_rows),
        duplicated: recorded.rows.saturating_sub(ids.len()),
        drained_after,
        miscounted: leaderboard_mismatches(app, within).await,
    }
}

/// An authority and a certificate it signs for 127.0.0.1, in `dir` (`ca.crt`, `redis.crt`,
/// `redis.key`), made with the openssl command line.
pub fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=sqljudge test authority",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "redis.key",
        "-out",
        "redis.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}
