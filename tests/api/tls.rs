//! TLS to PostgreSQL, against clusters the tests create that accept TLS only (`hostssl`),
//! with certificates of an authority the test makes. (Redis over TLS: `live.rs`.)
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqljudge_testkit::app::{Options, TestApp};
use sqljudge_testkit::clusters::PgCluster;
use sqljudge_testkit::faults::free_port;

const DB: &str = "sj_sandbox";

/// TLS to a sandbox server that accepts TLS only (`hostssl`): every connection, admin and
/// grading, is encrypted, and the certificate is checked as `sslmode` says. Its logins give
/// their password by SCRAM, bound to the TLS channel.
#[actix_web::test]
async fn tls_to_a_sandbox_server() {
    let cluster = PgCluster::start_with_logins(true, "scram-sha-256");
    let other = PgCluster::start_tls(); // another authority
                                        // A sandbox database per service: each has roles of its own.
    let base = |n: u8| format!("postgres://postgres@127.0.0.1:{}/{DB}_{n}", cluster.port);
    let verify = |n: u8, ca: &std::path::Path| {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            base(n),
            ca.display()
        )
    };
    // Kept to the end: a service dropped while the test goes on would write to Redis again
    // after its keys were removed.
    let mut apps = Vec::new();
    for sandbox in [
        verify(1, &cluster.ca_file()),
        format!("{}?sslmode=require", base(2)),
    ] {
        let app = TestApp::spawn_with(Options {
            sandbox_urls: Some(sandbox.clone()),
            ..Options::default()
        })
        .await;
        let token = app.user("tls").await;
        let uk = app.problem_id("uk-customers").await;
        let result = app
            .grade(
                &token,
                uk,
                "SELECT name FROM customers WHERE country = 'UK'",
            )
            .await;
        assert_eq!(result["status"], "accepted", "{sandbox}: {result}");
        let run = app.run(&token, uk, "SELECT 1 AS one").await;
        assert_eq!(run.status(), 200, "{sandbox}");
        apps.push(app);
    }
    // In the clear: refused by the server. Another authority: refused by us, saying why.
    for (sandbox, why) in [
        (format!("{}?sslmode=disable", base(3)), "no encryption"),
        (verify(4, &other.ca_file()), "certificate"),
    ] {
        let mut settings = sqljudge::config::Settings::load().unwrap().sandbox;
        settings.url = sandbox.into();
        let sandbox = sqljudge::grading::sandbox::Sandbox::new(settings).unwrap();
        let err = match sandbox.bootstrap().await {
            Ok(()) => panic!("bootstrapped against {why}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(why), "{err}");
    }
}

/// The platform database over TLS (libpq's `sslmode=verify-full`), in a `sqljudge serve`
/// process: libpq's OpenSSL is torn down at exit, which a test process that still has
/// threads inside it does not survive.
#[actix_web::test]
async fn tls_to_the_platform_database() {
    let cluster = PgCluster::start_tls();
    let other = PgCluster::start_tls(); // another authority
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let platform = |ca: &std::path::Path| {
        format!(
            "postgres://postgres@127.0.0.1:{}/sqljudge_platform?sslmode=verify-full&sslrootcert={}",
            cluster.port,
            ca.display()
        )
    };
    let prefix = app.key("tls:");
    let start = |url: String, port: u16| {
        app.process_with(
            env!("CARGO_BIN_EXE_sqljudge"),
            port,
            &[
                ("DATABASE_URL", &url),
                ("SQLJUDGE__REDIS__KEY_PREFIX", &prefix),
                ("SQLJUDGE__EXECUTOR__WORKERS", "1"),
            ],
            std::process::Stdio::piped(),
        )
    };

    // Another authority: the process stops at start, saying why.
    let mut refused = start(platform(&other.ca_file()), free_port());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = refused.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(refused.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("certificate verify failed"), "{stderr}");

    // Its own authority: the database is created, migrated and used over TLS only.
    let port = free_port();
    let _process = start(platform(&cluster.ca_file()), port);
    let base = format!("http://127.0.0.1:{port}");
    app.wait_ready(&base).await;
    let admin = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&app.admin_token)
    };
    let res = admin(reqwest::Method::PUT, "/admin/datasets/tls_ds")
        .header("Content-Type", "application/sql")
        .body("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = admin(reqwest::Method::POST, "/admin/problems")
        .json(
            &json!({"slug": "tls-sum", "title": "Sum", "statement": "The sum", "topic": "basics",
                      "dataset": "tls_ds", "reference_sql": "SELECT sum(x) AS s FROM t",
                      "generated_tests": 0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let problem = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let post = |path: &str, body: Value, token: Option<&str>| {
        let req = app.client.post(format!("{base}{path}")).json(&body);
        match token {
            Some(t) => req.bearer_auth(t.to_string()),
            None => req,
        }
        .send()
    };
    let creds = json!({"username": "tls_ada", "password": "correct horse battery"});
    let registration = json!({"username": "tls_ada", "email": "ada@example.org",
                              "password": "correct horse battery"});
    assert_eq!(
        post("/auth/register", registration, None)
            .await
            .unwrap()
            .status(),
        201
    );
    let login: Value = post("/auth/login", creds, None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();
    let job: Value = post(
        "/problems/submit",
        json!({"problem_id": problem, "sql": "SELECT sum(x) AS s FROM t"}),
        Some(&token),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let job = job["job_id"].as_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        let result: Value = app
            .client
            .get(format!("{base}/problems/result/{job}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if result["status"] == "accepted" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{result}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}
