//! `/ws` events across instances, refusal, heartbeats and slow clients; `/metrics` and
//! `/queue/status` moving with traffic.
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use sqljudge_testkit::app::{sleep, wait_mode, Options, TestApp};
use sqljudge_testkit::faults::{free_port, RedisInstance};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

const UK: &str = "SELECT name FROM customers WHERE country = 'UK'";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str, token: &str) -> Result<Socket, tungstenite::Error> {
    let mut request = format!("{}/ws", base.replacen("http", "ws", 1))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
}

/// The next JSON text frame of `type` (answering pings on the way), within `within`.
async fn next_event(socket: &mut Socket, kind: &str, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let event: Value = serde_json::from_str(&text).unwrap();
                if event["type"] == kind {
                    return Some(event);
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return None,
        }
    }
}

/// The statuses a socket hears for `job_id` until a final one.
async fn statuses_of(socket: &mut Socket, job_id: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(event) = next_event(socket, "submission", Duration::from_secs(10)).await {
        if event["job_id"] != job_id {
            continue;
        }
        let status = event["status"].as_str().unwrap().to_string();
        let last = status != "queued" && status != "running";
        if last {
            assert_eq!(
                event["rows_returned"], 2,
                "final events carry the result: {event}"
            );
        }
        seen.push(status);
        if last {
            break;
        }
    }
    seen
}

/// The take script publishes `running` itself: byte for byte the event the server builds (its
/// `queued` one, with the status changed), whatever the solution's text pretends to hold.
#[actix_web::test]
async fn the_running_event_the_take_script_publishes_is_the_servers_own() {
    let app = TestApp::spawn_with(Options {
        demo: true,
        workers: 0,
        ..Default::default()
    })
    .await;
    let token = app.user("live_script").await;
    let uk = app.problem_id("uk-customers").await;
    let mut redis = app.redis();
    redis
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut pubsub = redis.as_pubsub();
    pubsub.subscribe(app.key("events")).unwrap();
    let mut next_for = |job_id: &str| loop {
        let json: String = pubsub.get_message().unwrap().get_payload().unwrap();
        let event: Value = serde_json::from_str(&json).unwrap();
        if event["job_id"] == job_id {
            return (json, event);
        }
    };
    let sql = format!(
        r#"{UK} AND '"user_id":1,"problem_id":2,"submitted_at":"2000-01-01T00:00:00Z"' <> ''"#
    );
    let res = app.submit(&token, uk, &sql).await;
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    let job_id = job["job_id"].as_str().unwrap();
    let (queued, event) = next_for(job_id);
    assert_eq!(event["status"], "queued", "{queued}");
    assert_eq!(app.run_pending_jobs().await, 1);
    let (running, _) = next_for(job_id);
    assert_eq!(
        running,
        queued.replace(r#""status":"queued""#, r#""status":"running""#)
    );
    let (last, event) = next_for(job_id);
    assert_eq!(event["status"], "accepted", "{last}");
}

#[actix_web::test]
async fn events_reach_a_socket_on_another_instance_in_order() {
    let app = TestApp::spawn().await;
    let port = free_port();
    let mut other = app.process(env!("CARGO_BIN_EXE_sqljudge"), port);
    let other_url = format!("http://127.0.0.1:{port}");
    app.wait_ready(&other_url).await;

    let ann = app.user("live_ann").await;
    let bob = app.user("live_bob").await;
    let mut ann_socket = connect(&other_url, &ann).await.unwrap();
    let mut bob_socket = connect(&other_url, &bob).await.unwrap();
    let mut admin_socket = connect(&other_url, &app.admin_token).await.unwrap();
    let hello = next_event(&mut admin_socket, "health", Duration::from_secs(5))
        .await
        .expect("admins start with a health event");
    assert_eq!(hello["mode"], "redis");

    // Submitted through this instance; graded by whichever executor takes it.
    let uk = app.problem_id("uk-customers").await;
    for n in 0..5 {
        let sql = format!("{UK} AND {n} = {n}");
        let res = app.submit(&ann, uk, &sql).await;
        assert_eq!(res.status(), 202);
        let job: Value = res.json().await.unwrap();
        let job_id = job["job_id"].as_str().unwrap();
        assert_eq!(
            statuses_of(&mut ann_socket, job_id).await,
            ["queued", "running", "accepted"],
            "ann's own events, in order"
        );
        assert_eq!(
            statuses_of(&mut admin_socket, job_id).await,
            ["queued", "running", "accepted"],
            "admins see every submission"
        );
    }
    // Bob hears nothing of ann's submissions.
    assert!(
        next_event(&mut bob_socket, "submission", Duration::from_millis(300))
            .await
            .is_none()
    );
    // The periodic stats event reaches admins.
    let stats = next_event(&mut admin_socket, "stats", Duration::from_secs(5))
        .await
        .expect("stats event");
    assert!(stats["executors"]["total"].as_u64().unwrap() > 0, "{stats}");
    let _ = other.kill();
    let _ = other.wait();
}

/// How many connections subscribe to this app's events channel.
fn event_subscribers(app: &TestApp) -> i64 {
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(app.key("events"))
        .query(&mut app.redis())
        .unwrap();
    count
}

/// Redis sends an instance events only while it has sockets to deliver them to; a socket
/// hears every event published once its handshake is answered.
#[actix_web::test]
async fn an_instance_subscribes_to_events_while_it_has_sockets() {
    let app = TestApp::spawn().await;
    let ann = app.user("live_idle").await;
    let uk = app.problem_id("uk-customers").await;
    sleep(600).await;
    assert_eq!(event_subscribers(&app), 0, "no socket, no subscription");
    for round in 0..2 {
        let mut socket = connect(&app.address, &ann).await.unwrap();
        assert_eq!(
            event_subscribers(&app),
            1,
            "subscribed before the handshake is answered (round {round})"
        );
        let res = app
            .submit(&ann, uk, &format!("{UK} AND {round} = {round}"))
            .await;
        assert_eq!(res.status(), 202);
        let job: Value = res.json().await.unwrap();
        assert_eq!(
            statuses_of(&mut socket, job["job_id"].as_str().unwrap()).await,
            ["queued", "running", "accepted"]
        );
        drop(socket);
        let deadline = Instant::now() + Duration::from_secs(10);
        while event_subscribers(&app) > 0 {
            assert!(
                Instant::now() < deadline,
                "unsubscribed a while after the last socket closed"
            );
            sleep(100).await;
        }
    }
}

#[actix_web::test]
async fn invalid_tokens_are_refused_before_the_upgrade() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        ..Options::default()
    })
    .await;
    for token in ["", "not-a-token"] {
        match connect(&app.address, token).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401);
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(body["error"]["code"], "unauthorized");
            }
            other => panic!("expected a 401, got {:?}", other.map(|_| "a socket")),
        }
    }
    // ?token= works for browsers; a revoked token does not.
    let token = app.user("ws_carl").await;
    let url = format!("{}/ws?token={token}", app.address.replacen("http", "ws", 1));
    assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_ok());
    assert_eq!(app.logout(&token).await, 204);
    assert!(tokio_tungstenite::connect_async(url.as_str())
        .await
        .is_err());
}

async fn ws_connections(app: &TestApp) -> i64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    metric(&text, "sqljudge_websocket_connections")
}

fn metric(text: &str, series: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as i64)
}

#[actix_web::test]
async fn silent_connections_are_closed_by_the_heartbeat() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        tweak: Some(|s| {
            s.websocket.heartbeat_ms = 100;
            s.websocket.client_timeout_ms = 500;
        }),
        ..Options::default()
    })
    .await;
    let token = app.user("hb_dora").await;
    // A client that answers pings (tungstenite does so while it reads) stays connected.
    let mut live = connect(&app.address, &token).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(frame) = live.next().await {
            match frame {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(Message::Close(close)) => return Err(format!("closed: {close:?}")),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
            if pings >= 25 {
                return Ok(pings); // 2.5 s of heartbeats
            }
        }
        Err("dropped".to_string())
    });

    // A client that never reads never answers: closed after the timeout.
    let mut silent = connect(&app.address, &token).await.unwrap();
    assert_eq!(ws_connections(&app).await, 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut reason = None;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(2), silent.next()).await {
        if let Ok(Message::Close(Some(close))) = frame {
            reason = Some(close.reason.to_string());
        }
    }
    assert_eq!(reason.as_deref(), Some("heartbeat timeout"));
    assert_eq!(ws_connections(&app).await, 1);
    assert_eq!(reader.await.unwrap(), Ok(25), "the answering client stays");
}

#[actix_web::test]
async fn a_client_that_falls_behind_is_dropped_not_buffered_for() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        tweak: Some(|s| s.websocket.buffer = 16),
        ..Options::default()
    })
    .await;
    let mut socket = connect(&app.address, &app.admin_token).await.unwrap();
    next_event(&mut socket, "health", Duration::from_secs(5)).await;
    // Far more events at once than the connection may fall behind by.
    for n in 0..2000 {
        app.state
            .events
            .local(None, format!(r#"{{"type":"flood","n":{n}}}"#));
    }
    let mut received = 0;
    let mut reason = None;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
        match frame {
            Ok(Message::Text(_)) => received += 1,
            Ok(Message::Close(Some(close))) => reason = Some(close.reason.to_string()),
            _ => {}
        }
    }
    assert_eq!(reason.as_deref(), Some("client too slow"));
    assert!(received < 2000, "{received}");
}

#[actix_web::test]
async fn metrics_and_queue_status_move_with_traffic() {
    let app = TestApp::spawn().await;
    let before = app.get("/metrics", None).await;
    assert_eq!(before.status(), 200);
    assert!(before.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let before = before.text().await.unwrap();
    let accepted = r#"sqljudge_verdicts_total{status="accepted"}"#;
    let via_redis = r#"sqljudge_submissions_total{queue="redis"}"#;
    let problems_ok =
        r#"sqljudge_http_requests_total{method="GET",route="/problems",status="200"}"#;

    let token = app.user("metrics_erin").await;
    let uk = app.problem_id("uk-customers").await;
    for n in 0..3 {
        let result = app.grade(&token, uk, &format!("{UK} AND {n} < 10")).await;
        assert_eq!(result["status"], "accepted");
    }
    app.get("/problems/12345", None).await; // a 404 on a templated route
    let after = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(metric(&after, accepted) - metric(&before, accepted), 3);
    assert_eq!(metric(&after, via_redis) - metric(&before, via_redis), 3);
    assert!(metric(&after, problems_ok) > metric(&before, problems_ok));
    assert!(
        metric(
            &after,
            r#"sqljudge_http_requests_total{method="GET",route="/problems/{id}",status="404"}"#
        ) >= 1,
        "routes are labelled by pattern:\n{after}"
    );
    assert_eq!(metric(&after, r#"sqljudge_backend_up{backend="redis"}"#), 1);
    assert_eq!(
        metric(&after, r#"sqljudge_backend_up{backend="postgres"}"#),
        1
    );
    assert!(
        after.contains(r#"sqljudge_queue_depth{queue="live"} 0"#),
        "{after}"
    );
    assert!(metric(&after, "sqljudge_grading_latency_seconds_count") >= 3);
    assert!(metric(&after, r#"sqljudge_executors{state="idle"}"#) >= 1);

    let status: Value = app.get("/queue/status", None).await.json().await.unwrap();
    assert!(status["processed_total"].as_u64().unwrap() >= 3, "{status}");
    assert_eq!(status["verdicts"]["accepted"], status["processed_total"]);
    assert!(status["jobs_per_second"].as_f64().unwrap() > 0.0);
    assert!(status["latency_ms"]["p50_ms"].as_u64().is_some());
    assert_eq!(status["queues"]["live"]["pending"], 0);
    assert_eq!(status["queues"]["fallback"]["pending"], 0);
    assert!(status["redis_memory"]["used_bytes"].as_u64().unwrap() > 0);
    assert_eq!(status["executors"]["total"], 2);
    assert_eq!(status["series"].as_array().unwrap().len(), 300);
}

#[actix_web::test]
async fn events_flow_locally_during_a_redis_outage_and_across_instances_after_it() {
    use sqljudge_testkit::faults::{app_behind_redis_proxy, Mode};
    let (proxy, app) = app_behind_redis_proxy().await;
    let token = app.user("outage_fay").await;
    let uk = app.problem_id("uk-customers").await;
    let mut socket = connect(&app.address, &token).await.unwrap();
    let mut admin = connect(&app.address, &app.admin_token).await.unwrap();
    next_event(&mut admin, "health", Duration::from_secs(5)).await;

    proxy.set(Mode::Refuse);
    let flip = next_event(&mut admin, "health", Duration::from_secs(5))
        .await
        .expect("the flip is announced");
    assert_eq!(flip["mode"], "fallback");
    let res = app
        .submit(&token, uk, &format!("{UK} AND 'outage' <> ''"))
        .await;
    assert_eq!(res.status(), 201, "stored in the Postgres fallback");
    let job: Value = res.json().await.unwrap();
    let seen = statuses_of(&mut socket, job["job_id"].as_str().unwrap()).await;
    assert_eq!(
        seen.last().map(String::as_str),
        Some("accepted"),
        "{seen:?}"
    );
    assert_eq!(seen[0], "queued", "{seen:?}");

    proxy.set(Mode::Forward);
    let back = next_event(&mut admin, "health", Duration::from_secs(10))
        .await
        .expect("the return is announced");
    assert_eq!(back["mode"], "redis");
    // Started only now: during the outage it could have graded the fallback job, whose
    // events then stay on that instance.
    let port = free_port();
    let mut other = app.process(env!("CARGO_BIN_EXE_sqljudge"), port);
    let other_url = format!("http://127.0.0.1:{port}");
    app.wait_ready(&other_url).await;
    // Submitted to the other instance: it reaches this socket through the subscription
    // this instance re-established by itself. The first submission shows the subscription is
    // back (it may have been re-made while Redis settled); the next is followed step by step.
    let submit_other = |sql: String| {
        let (app, token, other_url) = (&app, &token, &other_url);
        async move {
            let started = Instant::now();
            loop {
                let res = app
                    .client
                    .post(format!("{other_url}/problems/submit"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({"problem_id": uk, "sql": sql}))
                    .send()
                    .await
                    .unwrap();
                if res.status() == 202 {
                    let job: Value = res.json().await.unwrap();
                    return job["job_id"].as_str().unwrap().to_string();
                }
                let status = res.status();
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "other instance not on Redis: {status} {}",
                    res.text().await.unwrap()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let started = Instant::now();
    for n in 0.. {
        let probe = submit_other(format!("{UK} AND 'back' <> '{n}'")).await;
        let heard = tokio::time::timeout(Duration::from_secs(2), statuses_of(&mut socket, &probe));
        if heard.await.is_ok_and(|seen| !seen.is_empty()) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the subscription did not come back"
        );
    }
    let job_id = submit_other(format!("{UK} AND 'again' <> ''")).await;
    assert_eq!(
        statuses_of(&mut socket, &job_id).await,
        ["queued", "running", "accepted"]
    );
    let _ = other.kill();
    let _ = other.wait();
}

#[actix_web::test]
async fn the_dashboard_is_served_by_the_binary_with_nothing_from_elsewhere() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        ..Options::default()
    })
    .await;
    let res = app.get("/admin", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(
        page.contains("/ws/ticket") && page.contains("/ws?ticket="),
        "the page follows /ws with a ticket"
    );
    assert!(!page.contains("?token="), "the page puts no token in a URL");
    for external in ["http://", "https://", "//cdn", "<script src", "<link"] {
        assert!(!page.contains(external), "the page refers to {external}");
    }
}

/// `POST /ws/ticket` with `token`: the ticket.
async fn ticket(base: &str, token: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("{base}/ws/ticket"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let body: Value = res.json().await.unwrap();
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    body["ticket"].as_str().unwrap().to_string()
}

async fn with_ticket(base: &str, ticket: &str) -> Result<Socket, u16> {
    let url = format!("{}/ws?ticket={ticket}", base.replacen("http", "ws", 1));
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
            Err(response.status().as_u16())
        }
        Err(e) => panic!("{e}"),
    }
}

#[actix_web::test]
async fn a_ticket_opens_one_socket_once_and_not_after_it_expires() {
    let app = TestApp::spawn_with(Options {
        tweak: Some(|s| s.websocket.ticket_ttl_secs = 1),
        ..Options::default()
    })
    .await;
    let base = &app.address;
    let eve = app.user("ticket_eve").await;
    // An admin's ticket: the dashboard's hello, then every submission.
    let admin_ticket = ticket(base, &app.admin_token).await;
    let mut admin = with_ticket(base, &admin_ticket).await.unwrap();
    assert!(next_event(&mut admin, "health", Duration::from_secs(5))
        .await
        .is_some());
    assert_eq!(with_ticket(base, &admin_ticket).await.err(), Some(401));
    // A user's ticket: their own events.
    let mut socket = with_ticket(base, &ticket(base, &eve).await).await.unwrap();
    let uk = app.problem_id("uk-customers").await;
    let job: Value = app.submit(&eve, uk, UK).await.json().await.unwrap();
    let job_id = job["job_id"].as_str().unwrap();
    assert_eq!(
        statuses_of(&mut socket, job_id).await,
        ["queued", "running", "accepted"]
    );
    assert_eq!(
        statuses_of(&mut admin, job_id).await,
        ["queued", "running", "accepted"]
    );

    // Expired, unknown, malformed: 401 before the upgrade.
    let expired = ticket(base, &eve).await;
    sleep(1500).await;
    assert_eq!(with_ticket(base, &expired).await.err(), Some(401));
    let unknown = sqljudge::auth::new_token();
    assert_eq!(with_ticket(base, &unknown).await.err(), Some(401));
    assert_eq!(with_ticket(base, "not-a-ticket").await.err(), Some(401));
    // Logging out voids the tickets of that login.
    let voided = ticket(base, &eve).await;
    assert_eq!(app.logout(&eve).await, 204);
    assert_eq!(with_ticket(base, &voided).await.err(), Some(401));
    // Redis holds a ticket's hash, not the ticket.
    let unused = ticket(base, &app.admin_token).await;
    let keys: Vec<String> =
        redis::Commands::keys(&mut app.redis(), app.key("ws:ticket:*")).unwrap();
    assert_eq!(
        keys,
        [app.key(&format!(
            "ws:ticket:{}",
            sqljudge::auth::token_hash(&unused)
        ))]
    );
    // The token in the URL still works for existing clients.
    let token = app.user("ticket_fay").await;
    let url = format!("{}/ws?token={token}", base.replacen("http", "ws", 1));
    assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_ok());
}

#[actix_web::test]
async fn tickets_work_while_redis_is_down_on_the_instance_that_issued_them() {
    let mut redis = RedisInstance::start();
    let app = TestApp::spawn_with(Options {
        demo: false,
        redis_url: Some(redis.url()),
        ..Options::default()
    })
    .await;
    redis.kill();
    wait_mode(&app, "fallback").await;
    let issued = ticket(&app.address, &app.admin_token).await;
    let mut admin = with_ticket(&app.address, &issued).await.unwrap();
    assert!(next_event(&mut admin, "health", Duration::from_secs(5))
        .await
        .is_some());
    assert_eq!(with_ticket(&app.address, &issued).await.err(), Some(401));
}

/// Redis over TLS (`rediss://`, a certificate of the test's own authority): the queue, results,
/// and events (a pub/sub connection) all go through it; a process that trusts another
/// authority refuses to start.
#[actix_web::test]
async fn redis_over_tls_carries_the_queue_results_and_events() {
    let redis = RedisInstance::start_tls();
    let app = TestApp::spawn_with(Options {
        redis_url: Some(redis.url()),
        redis_ca_file: Some(redis.ca_file()),
        ..Options::default()
    })
    .await;
    assert!(redis.url().starts_with("rediss://"));
    let token = app.user("tls_ada").await;
    let uk = app.problem_id("uk-customers").await;
    let mut socket = connect(&app.address, &token).await.unwrap();
    let res = app.submit(&token, uk, UK).await;
    assert_eq!(res.status(), 202);
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["queue"], "redis");
    let job_id = job["job_id"].as_str().unwrap();
    let seen = statuses_of(&mut socket, job_id).await;
    assert_eq!(
        seen.last().map(String::as_str),
        Some("accepted"),
        "{seen:?}"
    );
    let result = app
        .wait_final(&token, job_id, Duration::from_secs(10))
        .await;
    assert_eq!(result["source"], "redis");
    let health: Value = app.get("/health", None).await.json().await.unwrap();
    assert_eq!(
        (&health["mode"], &health["redis"]["up"]),
        (&Value::from("redis"), &Value::from(true))
    );

    // Another authority: the certificate is refused and the process does not start.
    let other = std::env::temp_dir().join(format!(
        "sqljudge-other-ca-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&other).unwrap();
    sqljudge_testkit::faults::make_certificates(&other);
    let port = free_port();
    let ca = other.join("ca.crt").display().to_string();
    let log = other.join("stderr.log");
    let mut process = app.process_with(
        env!("CARGO_BIN_EXE_sqljudge"),
        port,
        &[("SQLJUDGE__REDIS__CA_FILE", ca.as_str())],
        std::fs::File::create(&log).unwrap(),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = process.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "started with a wrong authority"
        );
        sleep(100).await;
    };
    assert!(!status.success());
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("certificate") || said.contains("Certificate"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&other);
}
