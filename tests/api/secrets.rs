//! No secret in a log, a URL or an error: the access log of a real process, error bodies, and
//! the settings' `Debug`.
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sqljudge::auth::token_hash;
use sqljudge::config::Settings;
use sqljudge_testkit::app::TestApp;
use sqljudge_testkit::faults::free_port;

#[test]
fn settings_debug_shows_no_secret() {
    let mut settings = Settings::load().unwrap();
    let secrets = [
        "db-pass-5f1e",
        "redis-pass-77aa",
        "sandbox-url-pass-c3",
        "role-pass-9d02",
        "admin-token-e4b1",
    ];
    settings.database.url = format!("postgres://app:{}@db:5432/sqljudge", secrets[0]).into();
    settings.redis.url = format!("redis://:{}@cache:6379/0", secrets[1]).into();
    settings.sandbox.url = format!("postgres://sb:{}@db/sandbox", secrets[2]).into();
    settings.sandbox.role_password = secrets[3].to_string().into();
    settings.auth.admin_token = secrets[4].to_string().into();
    for shown in [format!("{settings:?}"), format!("{settings:#?}")] {
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("[REDACTED]") && shown.contains("key_prefix"));
    }
    // Still usable where it is needed.
    assert_eq!(settings.auth.admin_token.expose_secret(), secrets[4]);
}

async fn ws(url: String) -> Result<(), u16> {
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[actix_web::test]
async fn no_token_ticket_or_password_reaches_the_log_or_an_error() {
    let app = TestApp::spawn().await;
    let port = free_port();
    let log_path = std::env::temp_dir().join(format!("sqljudge-secrets-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    // Debug: what an operator chasing a problem would turn on.
    let process = app.process_logging(env!("CARGO_BIN_EXE_sqljudge"), port, "debug", log);
    let base = format!("http://127.0.0.1:{port}");
    let ws_base = base.replacen("http", "ws", 1);
    app.wait_ready(&base).await;
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut req = app.client.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move { req.send().await.unwrap() }
    };
    // Every error body is checked for what the request carried.
    let refused = |res: reqwest::Response, status: u16, secret: String| async move {
        assert_eq!(res.status(), status);
        let body = res.text().await.unwrap();
        assert!(!body.contains(&secret), "{body}");
    };

    let password = "pw-8c1d-hunter2";
    let creds = json!({"username": "log_lee", "email": "lee@example.org", "password": password});
    assert_eq!(
        post("/auth/register", None, creds.clone()).await.status(),
        201
    );
    let tokens: Value = post("/auth/login", None, creds.clone())
        .await
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let wrong = json!({"username": "log_lee", "password": "pw-wrong-5e2a"});
    refused(
        post("/auth/login", None, wrong).await,
        401,
        "pw-wrong-5e2a".into(),
    )
    .await;
    // A value of the wrong type is not echoed either.
    let typed = json!({"username": "log_lee", "password": 918_273_645});
    refused(
        post("/auth/login", None, typed).await,
        400,
        "918273645".into(),
    )
    .await;
    let refreshed: Value = post("/auth/refresh", None, json!({"refresh_token": refresh}))
        .await
        .json()
        .await
        .unwrap();
    let again = post("/auth/refresh", None, json!({"refresh_token": refresh})).await;
    refused(again, 401, refresh.clone()).await;
    let access2 = refreshed["access_token"].as_str().unwrap().to_string();

    // Tokens in URLs (still accepted), tickets, and tokens where no route takes them.
    assert_eq!(ws(format!("{ws_base}/ws?token={access2}")).await, Ok(()));
    assert_eq!(
        ws(format!("{ws_base}/ws?token={}", app.admin_token)).await,
        Ok(())
    );
    let ticket: Value = post("/ws/ticket", Some(&access2), json!({}))
        .await
        .json()
        .await
        .unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_string();
    assert_eq!(ws(format!("{ws_base}/ws?ticket={ticket}")).await, Ok(()));
    assert_eq!(ws(format!("{ws_base}/ws?ticket={ticket}")).await, Err(401));
    let res = app
        .client
        .get(format!("{base}/problems?topic=basics&token={access2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(format!("{base}/nowhere?token={}", app.admin_token))
        .send()
        .await
        .unwrap();
    refused(res, 404, app.admin_token.clone()).await;
    drop(process);

    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(
        log.contains("GET /ws?…"),
        "the access log is there:\n{log:.2000}"
    );
    let mut secrets = vec![
        password.to_string(),
        "pw-wrong-5e2a".into(),
        "918273645".into(),
        app.admin_token.clone(),
    ];
    for token in [&access, &refresh, &access2, &ticket] {
        secrets.push(token.clone());
        secrets.push(token_hash(token));
    }
    for secret in secrets {
        if let Some(at) = log.find(&secret) {
            let line = log[..at].rsplit('\n').next().unwrap_or_default();
            panic!("{secret} is in the log, on the line starting {line:?}");
        }
    }
}
