//! Roles: an `api` process answers the API and grades nothing; a `worker` process grades and
//! serves only health, metrics and statistics. Together on one platform database, Redis and
//! sandbox they do everything `all` does.
use std::time::Duration;

use serde_json::Value;
use sqljudge_testkit::app::{Options, Process, TestApp};
use sqljudge_testkit::faults::free_port;

fn start(app: &TestApp, role: &str, port: u16) -> Process {
    app.process_with(
        env!("CARGO_BIN_EXE_sqljudge"),
        port,
        &[
            ("SQLJUDGE__SERVER__ROLE", role),
            ("SQLJUDGE__EXECUTOR__WORKERS", "2"),
        ],
        std::process::Stdio::null(),
    )
}

async fn get(app: &TestApp, url: String) -> (u16, Value) {
    let res = app.client.get(url).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[actix_web::test]
async fn an_api_process_and_a_worker_process_grade_together() {
    // The test's own instance grades nothing either (no executors).
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (api_port, worker_port) = (free_port(), free_port());
    let _api = start(&app, "api", api_port);
    let api = format!("http://127.0.0.1:{api_port}");
    app.wait_ready(&api).await;
    let token = app.user("roles_ada").await;
    let uk = app.problem_id("uk-customers").await;
    let submit = |sql: &'static str| {
        let (app, api, token) = (&app, &api, &token);
        async move {
            let res = app
                .client
                .post(format!("{api}/problems/submit"))
                .bearer_auth(token)
                .json(&serde_json::json!({"problem_id": uk, "sql": sql}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 202);
            res.json::<Value>().await.unwrap()["job_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    // Without a worker, the API takes submissions and nothing grades them.
    let waiting = submit("SELECT name FROM customers WHERE country = 'UK'").await;
    let (_, status) = get(&app, format!("{api}/queue/status")).await;
    assert_eq!(status["executors"]["total"], 0, "{status}");
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.result(&token, &waiting).await["status"], "queued");

    // A worker grades what waits and what comes, and serves no API.
    let _worker = start(&app, "worker", worker_port);
    let worker = format!("http://127.0.0.1:{worker_port}");
    app.wait_ready(&worker).await;
    let next = submit("SELECT name FROM customers").await;
    let graded = app
        .wait_final(&token, &waiting, Duration::from_secs(20))
        .await;
    assert_eq!(graded["status"], "accepted");
    let graded = app.wait_final(&token, &next, Duration::from_secs(20)).await;
    assert_eq!(graded["status"], "wrong_answer");
    for path in ["/health/live", "/health/ready", "/metrics", "/queue/status"] {
        assert_eq!(get(&app, format!("{worker}{path}")).await.0, 200, "{path}");
    }
    let (_, status) = get(&app, format!("{worker}/queue/status")).await;
    assert_eq!(status["executors"]["total"], 2, "{status}");
    // The API process shows the whole deployment: its own executors (none) and everyone's.
    let started = std::time::Instant::now();
    loop {
        let (_, status) = get(&app, format!("{api}/queue/status")).await;
        let roles: Vec<&str> = status["instances"]
            .as_array()
            .map(|all| all.iter().filter_map(|i| i["role"].as_str()).collect())
            .unwrap_or_default();
        if status["deployment_executors"]["total"] == 2 && roles.contains(&"worker") {
            assert_eq!(status["executors"]["total"], 0, "{status}");
            assert!(roles.contains(&"api") && roles.contains(&"all"), "{status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{status}");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    for path in ["/problems", "/", "/admin", "/openapi.json", "/auth/login"] {
        let (code, body) = get(&app, format!("{worker}{path}")).await;
        assert_eq!(code, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}
