//! `/openapi.json` covers every endpoint of API.md, and real responses validate against the
//! schemas it declares for them; `/docs` is served without anything from elsewhere.
use serde_json::{json, Value};
use sqljudge_testkit::app::{Options, TestApp};

/// The schema the document declares for `method path` answering `status`.
fn schema(doc: &Value, method: &str, path: &str, status: u16) -> Value {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} documents no {status} response"
    );
    let schema = response["content"]["application/json"]["schema"].clone();
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON schema"
    );
    // Resolve `#/components/...` against the document.
    json!({"allOf": [schema], "components": doc["components"]})
}

async fn check(doc: &Value, method: &str, path: &str, res: reqwest::Response) -> Value {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    let validator = jsonschema::validator_for(&schema(doc, method, path, status))
        .unwrap_or_else(|e| panic!("{method} {path} {status}: invalid schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match its schema: {errors:?}\n{body}"
    );
    body
}

#[actix_web::test]
async fn the_document_covers_the_api_and_matches_real_responses() {
    let app = TestApp::spawn().await;
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    for (method, path) in [
        ("post", "/auth/register"),
        ("post", "/auth/login"),
        ("post", "/auth/refresh"),
        ("post", "/auth/logout"),
        ("get", "/users/me"),
        ("get", "/users/me/submissions"),
        ("put", "/admin/datasets/{name}"),
        ("get", "/admin/datasets"),
        ("post", "/admin/problems"),
        ("put", "/admin/problems/{id}"),
        ("post", "/admin/problems/{id}/rejudge"),
        ("get", "/problems"),
        ("get", "/problems/{id}"),
        ("get", "/problems/{id}/dataset"),
        ("get", "/"),
        ("post", "/problems/submit"),
        ("get", "/problems/result/{job_id}"),
        ("post", "/problems/{id}/run"),
        ("get", "/leaderboard/global"),
        ("get", "/leaderboard/topic/{topic}"),
        ("get", "/leaderboard/user/{id}"),
        ("get", "/ws"),
        ("post", "/ws/ticket"),
        ("get", "/health"),
        ("get", "/health/live"),
        ("get", "/health/ready"),
        ("get", "/queue/status"),
        ("get", "/metrics"),
        ("get", "/admin"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // Real responses, successes and errors, against their declared schemas.
    let creds =
        json!({"username": "doc_gil", "email": "gil@example.org", "password": "s3cret-pass"});
    let post = |path: &'static str, body: Value| {
        let app = &app;
        async move { app.post_json(path, None, &body).await }
    };
    check(
        &doc,
        "post",
        "/auth/register",
        post("/auth/register", creds.clone()).await,
    )
    .await;
    check(
        &doc,
        "post",
        "/auth/register",
        post("/auth/register", creds.clone()).await,
    )
    .await; // 409
    let bad = json!({"username": "x"});
    check(
        &doc,
        "post",
        "/auth/register",
        post("/auth/register", bad).await,
    )
    .await; // 400
    let tokens = check(
        &doc,
        "post",
        "/auth/login",
        post("/auth/login", creds).await,
    )
    .await;
    let token = tokens["access_token"].as_str().unwrap();
    let problems = check(&doc, "get", "/problems", app.get("/problems", None).await).await;
    // The schemas constrain: a problem list is not a health report.
    let health = jsonschema::validator_for(&schema(&doc, "get", "/health", 200)).unwrap();
    assert!(!health.is_valid(&problems));
    assert!(!health.is_valid(&json!({"status": "ok", "mode": "redis"})));

    let uk = app.problem_id("uk-customers").await;
    let sql = "SELECT name FROM customers WHERE country = 'UK'";
    let ack = check(
        &doc,
        "post",
        "/problems/submit",
        app.submit(token, uk, sql).await,
    )
    .await;
    let job = ack["job_id"].as_str().unwrap().to_string();
    app.wait_final(token, &job, std::time::Duration::from_secs(20))
        .await;
    // The same solution again: 200 from the verdict cache, with the result fields.
    check(
        &doc,
        "post",
        "/problems/submit",
        app.submit(token, uk, sql).await,
    )
    .await;
    // Runs: rows, a verdict, and errors.
    for (problem, sql) in [
        (uk, sql),
        (uk, "SELECT nope"),
        (uk, "SELECT 1; SELECT 2"),
        (uk, ""),
        (99999999, "SELECT 1"),
    ] {
        check(
            &doc,
            "post",
            "/problems/{id}/run",
            app.run(token, problem, sql).await,
        )
        .await;
    }
    let unauthorised = app
        .post_json(&format!("/problems/{uk}/run"), None, &json!({"sql": sql}))
        .await;
    check(&doc, "post", "/problems/{id}/run", unauthorised).await;
    // The answer's schema constrains: rows need their fields, verdicts are those of a run.
    let answers =
        jsonschema::validator_for(&schema(&doc, "post", "/problems/{id}/run", 200)).unwrap();
    assert!(!answers.is_valid(&json!({"status": "ok", "message": "x", "sqlstate": null})));
    assert!(!answers.is_valid(&json!({"status": "accepted", "message": "x", "sqlstate": null})));
    let me = app.user_id(token).await;
    let admin = app.admin_token.as_str();
    for (template, url, token) in [
        ("/users/me", "/users/me".to_string(), Some(token)),
        ("/users/me", "/users/me".to_string(), None), // 401
        ("/problems/{id}", format!("/problems/{uk}"), None),
        ("/problems/{id}", "/problems/99999999".to_string(), None), // 404
        (
            "/problems/{id}/dataset",
            format!("/problems/{uk}/dataset?rows=3"),
            None,
        ),
        (
            "/problems/{id}/dataset",
            format!("/problems/{uk}/dataset?rows=500"),
            None,
        ), // 400
        (
            "/users/me/submissions",
            "/users/me/submissions?status=accepted".to_string(),
            Some(token),
        ),
        (
            "/problems/result/{job_id}",
            format!("/problems/result/{job}"),
            Some(token),
        ),
        (
            "/users/me/submissions",
            "/users/me/submissions".to_string(),
            Some(token),
        ),
        (
            "/leaderboard/global",
            "/leaderboard/global".to_string(),
            None,
        ),
        (
            "/leaderboard/topic/{topic}",
            "/leaderboard/topic/basics".to_string(),
            None,
        ),
        (
            "/leaderboard/user/{id}",
            format!("/leaderboard/user/{me}"),
            None,
        ),
        ("/health", "/health".to_string(), None),
        ("/health/live", "/health/live".to_string(), None),
        ("/health/ready", "/health/ready".to_string(), None),
        ("/queue/status", "/queue/status".to_string(), None),
        (
            "/admin/datasets",
            "/admin/datasets".to_string(),
            Some(admin),
        ),
        (
            "/admin/datasets",
            "/admin/datasets".to_string(),
            Some(token),
        ), // 403
    ] {
        check(&doc, "get", template, app.get(&url, token).await).await;
    }

    let problem = json!({"slug": "doc-uk", "title": "UK", "statement": "UK customers",
        "topic": "basics", "dataset": "shop", "reference_sql": sql});
    let created = check(
        &doc,
        "post",
        "/admin/problems",
        app.create_problem(&problem).await,
    )
    .await;
    let new_id = created["id"].as_i64().unwrap();
    let updated = app.update_problem(new_id, &problem).await;
    check(&doc, "put", "/admin/problems/{id}", updated).await;
    let rejudge = app
        .client
        .post(app.url(&format!("/admin/problems/{uk}/rejudge")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    check(&doc, "post", "/admin/problems/{id}/rejudge", rejudge).await;
    for token in [Some(token), Some(admin), None] {
        let mut req = app.client.post(app.url("/ws/ticket"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        check(&doc, "post", "/ws/ticket", req.send().await.unwrap()).await; // 200, 200, 401
    }
    let refresh = json!({"refresh_token": tokens["refresh_token"]});
    check(
        &doc,
        "post",
        "/auth/refresh",
        post("/auth/refresh", refresh).await,
    )
    .await;
}

#[actix_web::test]
async fn the_api_page_is_served_from_the_binary() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        ..Default::default()
    })
    .await;
    // `/docs`, as the README links it, leads to the page.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/docs"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    assert_eq!(res.headers()["location"], "/docs/");
    let res = app.get("/docs", None).await;
    assert_eq!(res.url().path(), "/docs/");
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("swagger"), "{page}");
    assert!(
        !page.contains("https://"),
        "the page loads from elsewhere:\n{page}"
    );
    let init = app
        .get("/docs/swagger-initializer.js", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}
