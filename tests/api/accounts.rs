use serde_json::{json, Value};
use sqljudge_testkit::app::{Options, TestApp};

#[actix_web::test]
async fn register_login_me_refresh_logout() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    let res = app
        .post_json(
            "/auth/register",
            None,
            &json!({"username": "ada_l", "email": "ada@example.org", "password": "analytical"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["username"], "ada_l");

    let tokens: Value = app
        .post_json(
            "/auth/login",
            None,
            &json!({"username": "ADA_L", "password": "analytical"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_i64().unwrap() > 0);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let me: Value = app
        .get("/users/me", Some(access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user_id"], created["user_id"]);
    assert_eq!(me["email"], "ada@example.org");
    assert_eq!(me["solved"], 0);

    // A refresh token works once.
    let res = app
        .post_json("/auth/refresh", None, &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    let res = app
        .post_json("/auth/refresh", None, &json!({"refresh_token": refresh}))
        .await;
    assert_eq!(res.status(), 401);

    // Logout revokes the login's access and refresh tokens.
    let new_access = rotated["access_token"].as_str().unwrap();
    assert_eq!(app.logout(new_access).await, 204);
    assert_eq!(app.get("/users/me", Some(new_access)).await.status(), 401);
    assert_eq!(app.get("/users/me", Some(access)).await.status(), 401);
    let res = app
        .post_json(
            "/auth/refresh",
            None,
            &json!({"refresh_token": rotated["refresh_token"]}),
        )
        .await;
    assert_eq!(res.status(), 401);
}

#[actix_web::test]
async fn registration_and_login_errors() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    app.user("taken_name").await;
    let cases = [
        (
            json!({"username": "taken_name", "email": "other@example.org", "password": "longenough"}),
            409,
        ),
        (
            json!({"username": "TAKEN_NAME", "email": "other@example.org", "password": "longenough"}),
            409,
        ),
        (
            json!({"username": "someone", "email": "taken_name@example.org", "password": "longenough"}),
            409,
        ),
        (
            json!({"username": "ab", "email": "x@example.org", "password": "longenough"}),
            400,
        ),
        (
            json!({"username": "bad name!", "email": "x@example.org", "password": "longenough"}),
            400,
        ),
        (
            json!({"username": "fine_name", "email": "not-an-email", "password": "longenough"}),
            400,
        ),
        (
            json!({"username": "fine_name", "email": "x@example.org", "password": "short"}),
            400,
        ),
        (
            json!({"username": "fine_name", "email": "x@example.org"}),
            400,
        ),
        (
            json!({"username": 5, "email": "x@example.org", "password": "longenough"}),
            400,
        ),
    ];
    for (body, status) in cases {
        let res = app.post_json("/auth/register", None, &body).await;
        assert_eq!(res.status(), status, "{body}");
        let err: Value = res.json().await.unwrap();
        assert!(
            err["error"]["code"].is_string() && err["error"]["message"].is_string(),
            "{err}"
        );
    }
    let res = app
        .post_json(
            "/auth/login",
            None,
            &json!({"username": "taken_name", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(res.status(), 401);
    let res = app
        .post_json(
            "/auth/login",
            None,
            &json!({"username": "nobody_here", "password": "whatever1"}),
        )
        .await;
    assert_eq!(res.status(), 401);
    for header in ["Bearer", "Basic abc", "Bearer not-a-token", ""] {
        let res = app
            .client
            .get(app.url("/users/me"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{header:?}");
        assert_eq!(
            res.json::<Value>().await.unwrap()["error"]["code"],
            "unauthorized"
        );
    }
    // The admin token is not a user account.
    assert_eq!(
        app.get("/users/me", Some(&app.admin_token)).await.status(),
        401
    );
}

#[actix_web::test]
async fn health_reports_both_backends() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["mode"], "redis");
    assert_eq!(body["redis"]["up"], true);
    assert_eq!(body["postgres"]["up"], true);
    assert_eq!(body["queue"]["pending"], 0);
    assert_eq!(body["queue"]["fallback_pending"], 0);
}
