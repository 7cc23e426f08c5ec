use std::time::Duration;

use diesel::RunQueryDsl;
use serde_json::{json, Value};
use sqljudge_testkit::app::{rows_read, Options, TestApp};

#[actix_web::test]
async fn every_verdict_with_its_details() {
    let app = TestApp::spawn().await;
    let token = app.user("grader").await;
    let uk = app.problem_id("uk-customers").await;

    let ok = app
        .grade(
            &token,
            uk,
            "select name from customers where country = 'UK';",
        )
        .await;
    assert_eq!(ok["status"], "accepted", "{ok}");
    assert_eq!(ok["rows_returned"], 2);
    assert_eq!(ok["expected_rows"], 2);
    assert!(ok["diff"].is_null() && ok["message"].is_null());
    assert!(ok["graded_at"].is_string() && ok["duration_ms"].is_number());

    let wrong = app
        .grade(
            &token,
            uk,
            "SELECT name FROM customers WHERE country = 'USA'",
        )
        .await;
    assert_eq!(wrong["status"], "wrong_answer");
    assert_eq!(wrong["diff"]["missing_rows"], json!([["Ada"], ["Brian"]]));
    assert_eq!(wrong["diff"]["extra_rows"], json!([["Edgar"], ["Grace"]]));

    let columns = app
        .grade(
            &token,
            uk,
            "SELECT name, country FROM customers WHERE country = 'UK'",
        )
        .await;
    assert_eq!(columns["status"], "wrong_answer");
    assert_eq!(
        columns["diff"]["column_count"],
        json!({"expected": 1, "got": 2})
    );

    let error = app.grade(&token, uk, "SELECT nme FROM customers").await;
    assert_eq!(error["status"], "sql_error");
    assert_eq!(error["sqlstate"], "42703");
    assert!(error["message"].as_str().unwrap().contains("nme"));

    let slow = app
        .grade(&token, uk, "SELECT name FROM customers, pg_sleep(3)")
        .await;
    assert_eq!(slow["status"], "time_limit_exceeded");

    let rows = app
        .grade(&token, uk, "SELECT g FROM generate_series(1, 20000) g")
        .await;
    assert_eq!(rows["status"], "output_limit_exceeded");
    let bytes = app.grade(&token, uk, "SELECT repeat('x', 3000000)").await;
    assert_eq!(bytes["status"], "output_limit_exceeded");

    let two = app.grade(&token, uk, "SELECT 1; SELECT 2").await;
    assert_eq!(two["status"], "rejected");
    let write = app.grade(&token, uk, "DELETE FROM customers").await;
    assert_eq!(write["status"], "rejected");

    // Column names do not matter; values as text do.
    let renamed = app
        .grade(
            &token,
            uk,
            "SELECT name AS who FROM customers WHERE country = 'UK'",
        )
        .await;
    assert_eq!(renamed["status"], "accepted");
}

#[actix_web::test]
async fn ordered_problems_compare_order_and_unordered_ones_do_not() {
    let app = TestApp::spawn().await;
    let token = app.user("orderly").await;
    let ordered = app.problem_id("three-cheapest").await;
    let right = app
        .grade(
            &token,
            ordered,
            "SELECT name, price FROM products ORDER BY price, name LIMIT 3",
        )
        .await;
    assert_eq!(right["status"], "accepted");
    let reversed = app
        .grade(&token, ordered, "SELECT * FROM (SELECT name, price FROM products ORDER BY price, name LIMIT 3) s ORDER BY price DESC")
        .await;
    assert_eq!(reversed["status"], "wrong_answer");
    assert_eq!(reversed["diff"]["first_mismatch_at"], 0);
    assert_eq!(reversed["diff"]["missing_rows"], json!([]));

    let unordered = app.problem_id("uk-customers").await;
    let any_order = app
        .grade(
            &token,
            unordered,
            "SELECT name FROM customers WHERE country = 'UK' ORDER BY name DESC",
        )
        .await;
    assert_eq!(any_order["status"], "accepted");
}

#[actix_web::test]
async fn multisets_count_duplicates_and_null_differs_from_empty() {
    let app = TestApp::spawn().await;
    let token = app.user("dupes").await;
    let statuses = app.problem_id("orders-per-status").await;
    // Two 'delivered' groups merged into one distinct row is wrong.
    let distinct = app
        .grade(&token, statuses, "SELECT DISTINCT status, 1 FROM orders")
        .await;
    assert_eq!(distinct["status"], "wrong_answer");
    let pending = app.problem_id("pending-orders").await;
    let doubled = app
        .grade(&token, pending, "SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id, (VALUES (1), (2)) v(x) WHERE o.status = 'pending'")
        .await;
    assert_eq!(doubled["status"], "wrong_answer");
    assert_eq!(doubled["diff"]["extra_rows"].as_array().unwrap().len(), 2);

    let no_email = app.problem_id("no-email").await;
    let empty_too = app
        .grade(
            &token,
            no_email,
            "SELECT name FROM customers WHERE coalesce(email, '') = ''",
        )
        .await;
    assert_eq!(empty_too["status"], "wrong_answer");
    assert_eq!(empty_too["diff"]["extra_rows"], json!([["Grace"]]));
    let nulls = app
        .grade(
            &token,
            no_email,
            "SELECT name FROM customers WHERE email IS NULL",
        )
        .await;
    assert_eq!(nulls["status"], "accepted");
    let managers = app.problem_id("managers").await;
    let empty_for_null = app
        .grade(&token, managers, "SELECT e.name, coalesce(m.name, '') FROM hr.employees e LEFT JOIN hr.employees m ON m.id = e.manager_id")
        .await;
    assert_eq!(empty_for_null["status"], "wrong_answer");
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Snapshot {
    #[diesel(sql_type = diesel::sql_types::Text)]
    rows: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
}

fn hr_snapshot(app: &TestApp) -> Snapshot {
    diesel::sql_query(
        "SELECT (SELECT string_agg(e::text, ';' ORDER BY id) FROM hr.employees e) AS rows, \
         (SELECT last_value FROM hr.employees_id_seq) AS seq",
    )
    .get_result(&mut app.sandbox_db())
    .unwrap()
}

#[actix_web::test]
async fn writeable_problems_leave_the_dataset_unchanged_even_concurrently() {
    let app = TestApp::spawn_with(Options {
        demo: true,
        workers: 4,
        ..Default::default()
    })
    .await;
    let token = app.user("writer").await;
    let before = hr_snapshot(&app);
    let raise = app.problem_id("raise-support").await;
    let hire = app.problem_id("hire-jun").await;
    let cases = [
        (raise, "UPDATE hr.employees SET salary = salary * 1.10 WHERE department_id = 3", "accepted"),
        (raise, "UPDATE hr.employees SET salary = salary * 1.2 WHERE department_id = 3", "wrong_answer"),
        (raise, "UPDATE employees SET salary = round(salary * 1.1, 2) WHERE department_id = (SELECT id FROM departments WHERE name = 'Support')", "accepted"),
        (hire, "INSERT INTO hr.employees (name, department_id, salary, hired_on) VALUES ('Jun', 4, 5000, '2024-09-01')", "accepted"),
        // The id must come from the sequence: hard-coded, it is taken in the demo's hidden test.
        (hire, "INSERT INTO hr.employees (id, name, department_id, salary, hired_on) VALUES (10, 'Jun', 4, 5000, '2024-09-01')", "sql_error"),
        (hire, "INSERT INTO hr.employees (name, department_id, salary, hired_on) VALUES ('Jun', 1, 5000, '2024-09-01')", "wrong_answer"),
        (hire, "DELETE FROM hr.employees WHERE id = 9", "wrong_answer"),
        (hire, "TRUNCATE hr.employees", "rejected"),
    ];
    // Every case three times, all at once.
    let mut jobs = Vec::new();
    for round in 0..3 {
        for (problem, sql, expected) in cases {
            let res = app.submit(&token, problem, sql).await;
            assert!(res.status().is_success(), "{}", res.status());
            let job: Value = res.json().await.unwrap();
            jobs.push((
                job["job_id"].as_str().unwrap().to_string(),
                expected,
                sql,
                round,
            ));
        }
    }
    for (job_id, expected, sql, round) in jobs {
        let result = app
            .wait_final(&token, &job_id, Duration::from_secs(30))
            .await;
        assert_eq!(result["status"], expected, "round {round}: {sql}: {result}");
    }
    assert_eq!(
        hr_snapshot(&app),
        before,
        "the dataset (rows and sequence) is unchanged"
    );
}

#[actix_web::test]
async fn request_id_makes_submitting_idempotent() {
    let app = TestApp::spawn().await;
    let token = app.user("retrier").await;
    let other = app.user("other_user").await;
    let uk = app.problem_id("uk-customers").await;
    let body = json!({"problem_id": uk, "sql": "SELECT name FROM customers WHERE country = 'UK'", "request_id": "attempt-1"});
    let first: Value = app
        .post_json("/problems/submit", Some(&token), &body)
        .await
        .json()
        .await
        .unwrap();
    let second = app.post_json("/problems/submit", Some(&token), &body).await;
    assert!(second.status().is_success());
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["job_id"], second["job_id"]);
    // Another user's identical key is theirs alone.
    let theirs: Value = app
        .post_json("/problems/submit", Some(&other), &body)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(theirs["job_id"], first["job_id"]);
    app.wait_final(
        &token,
        first["job_id"].as_str().unwrap(),
        Duration::from_secs(10),
    )
    .await;
    let mine: Value = app
        .get("/users/me/submissions", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 1);
    let too_long = json!({"problem_id": uk, "sql": "SELECT 1", "request_id": "x".repeat(129)});
    assert_eq!(
        app.post_json("/problems/submit", Some(&token), &too_long)
            .await
            .status(),
        400
    );
}

#[actix_web::test]
async fn with_no_executors_one_step_grades_what_is_queued() {
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let token = app.user("stepper").await;
    let uk = app.problem_id("uk-customers").await;
    let solutions = [
        (
            "SELECT name FROM customers WHERE country = 'UK'",
            "accepted",
        ),
        ("SELECT name FROM customers", "wrong_answer"),
        ("SELECT nope FROM customers", "sql_error"),
    ];
    let mut jobs = Vec::new();
    for (sql, _) in solutions {
        let res = app.submit(&token, uk, sql).await;
        assert_eq!(res.status(), 202);
        let job: Value = res.json().await.unwrap();
        jobs.push(job["job_id"].as_str().unwrap().to_string());
    }
    // Nothing grades them until the test says so.
    for job in &jobs {
        assert_eq!(app.result(&token, job).await["status"], "queued");
    }
    assert_eq!(app.run_pending_jobs().await, 3);
    for (job, (sql, expected)) in jobs.iter().zip(solutions) {
        let result = app.result(&token, job).await;
        assert_eq!(result["status"], expected, "{sql}: {result}");
    }
    assert_eq!(app.run_pending_jobs().await, 0);
    // What the caller solved: their submissions filtered by status.
    let accepted: Value = app
        .get("/users/me/submissions?status=accepted", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["total"], 1, "{accepted}");
    assert_eq!(accepted["items"][0]["job_id"], jobs[0].as_str());
    let res = app
        .get("/users/me/submissions?status=solved", Some(&token))
        .await;
    assert_eq!(res.status(), 400);
}

#[actix_web::test]
async fn results_come_from_redis_then_postgres() {
    let app = TestApp::spawn().await;
    let token = app.user("reader").await;
    let intruder = app.user("intruder").await;
    let uk = app.problem_id("uk-customers").await;
    let graded = app
        .grade(
            &token,
            uk,
            "SELECT name FROM customers WHERE country = 'UK'",
        )
        .await;
    let job_id = graded["job_id"].as_str().unwrap().to_string();
    // The verdict is recorded in Postgres a moment before Redis has it: the first read may
    // come from either, the next ones from Redis.
    let started = std::time::Instant::now();
    while app.result(&token, &job_id).await["source"] != "redis" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never read from Redis"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let ttl: i64 = redis::cmd("TTL")
        .arg(app.key(&format!("problems:result:{job_id}")))
        .query(&mut app.redis())
        .unwrap();
    assert!(ttl > 0 && ttl <= 300, "result TTL {ttl}");

    let _: () = redis::cmd("DEL")
        .arg(app.key(&format!("problems:result:{job_id}")))
        .query(&mut app.redis())
        .unwrap();
    let res = app
        .get(&format!("/problems/result/{job_id}"), Some(&token))
        .await;
    let from_pg: Value = res.json().await.unwrap();
    assert_eq!(from_pg["source"], "postgres");
    for field in [
        "status",
        "rows_returned",
        "expected_rows",
        "user_id",
        "problem_id",
        "submitted_at",
        "graded_at",
    ] {
        assert_eq!(from_pg[field], graded[field], "{field}");
    }
    // Only the submitter (or an admin) sees it.
    assert_eq!(
        app.get(&format!("/problems/result/{job_id}"), Some(&intruder))
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get(
            &format!("/problems/result/{job_id}"),
            Some(&app.admin_token)
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.get(&format!("/problems/result/{job_id}"), None)
            .await
            .status(),
        401
    );

    let me: Value = app
        .get("/users/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["solved"], 1);
    let list: Value = app
        .get(
            &format!("/users/me/submissions?problem_id={uk}&limit=5"),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["job_id"], job_id.as_str());
}

#[actix_web::test]
async fn bad_submissions_get_clear_errors_and_store_nothing() {
    let app = TestApp::spawn().await;
    let token = app.user("sloppy").await;
    let uk = app.problem_id("uk-customers").await;
    let user_id = app.user_id(&token).await;
    let raw_as = |token: &str, body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/problems/submit"))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let raw = |body: &'static str, content_type: &'static str| raw_as(&token, body, content_type);
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (
            raw("{\"problem_id\": 1,", "application/json")
                .await
                .unwrap(),
            400,
            "malformed_json",
        ),
        (
            raw("{\"sql\": \"SELECT 1\"}", "application/json")
                .await
                .unwrap(),
            400,
            "invalid_request",
        ),
        (
            raw(
                "{\"problem_id\": \"one\", \"sql\": \"SELECT 1\"}",
                "application/json",
            )
            .await
            .unwrap(),
            400,
            "invalid_request",
        ),
        (
            raw("problem_id=1", "application/x-www-form-urlencoded")
                .await
                .unwrap(),
            415,
            "unsupported_media_type",
        ),
        (
            app.submit(&token, 987654, "SELECT 1").await,
            404,
            "not_found",
        ),
        (app.submit(&token, uk, "   ").await, 400, "invalid_request"),
        (
            app.submit(&token, uk, &format!("SELECT 1 -- {}", "x".repeat(70_000)))
                .await,
            413,
            "payload_too_large",
        ),
        (
            app.submit(&token, uk, &"x".repeat(600_000)).await,
            413,
            "payload_too_large",
        ),
        (
            app.post_json(
                "/problems/submit",
                Some(&token),
                &json!({"problem_id": uk, "sql": "SELECT 1", "user_id": user_id + 1}),
            )
            .await,
            403,
            "forbidden",
        ),
        (
            app.post_json(
                "/problems/submit",
                None,
                &json!({"problem_id": uk, "sql": "SELECT 1"}),
            )
            .await,
            401,
            "unauthorized",
        ),
        (
            app.post_json(
                "/problems/submit",
                Some("bogus"),
                &json!({"problem_id": uk, "sql": "SELECT 1"}),
            )
            .await,
            401,
            "unauthorized",
        ),
        // Whatever the body, an unknown token is told so first.
        (
            raw_as("bogus", "problem_id=1", "application/x-www-form-urlencoded")
                .await
                .unwrap(),
            401,
            "unauthorized",
        ),
        (
            raw_as("bogus", "{\"problem_id\": 1,", "application/json")
                .await
                .unwrap(),
            401,
            "unauthorized",
        ),
        (
            app.get("/problems/result/not-a-uuid", Some(&token)).await,
            404,
            "not_found",
        ),
        (
            app.get(
                "/problems/result/7f0f4a4e-2f6b-4c1e-9d55-2f5d1d7a0a11",
                Some(&token),
            )
            .await,
            404,
            "not_found",
        ),
        (
            app.get("/users/me/submissions?limit=0", Some(&token)).await,
            400,
            "invalid_request",
        ),
        (app.get("/no/such/route", None).await, 404, "not_found"),
    ];
    for (i, (res, status, code)) in cases.into_iter().enumerate() {
        assert_eq!(res.status().as_u16(), status, "case {i}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "case {i}: {body}");
    }
    let mine: Value = app
        .get("/users/me/submissions", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 0, "nothing was stored");
}

#[actix_web::test]
async fn identical_solutions_reuse_a_recent_verdict_until_the_problem_changes() {
    let app = TestApp::spawn().await;
    let (ann, bob, cid) = (
        app.user("ann").await,
        app.user("bob").await,
        app.user("cid").await,
    );
    let uk = app.problem_id("uk-customers").await;
    let first = app
        .submit(&ann, uk, "SELECT name FROM customers WHERE country = 'UK'")
        .await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    app.wait_final(
        &ann,
        first["job_id"].as_str().unwrap(),
        Duration::from_secs(10),
    )
    .await;

    // The same statement up to whitespace, comments and a trailing semicolon.
    let same = "SELECT name\n   FROM customers -- mine\n  WHERE country = 'UK' ;";
    let res = app.submit(&bob, uk, same).await;
    assert_eq!(res.status(), 200);
    let cached: Value = res.json().await.unwrap();
    assert_eq!(cached["queue"], "cache");
    assert_eq!(cached["status"], "accepted");
    assert_eq!(cached["rows_returned"], 2);
    assert_ne!(cached["job_id"], first["job_id"]);
    // Recorded, and counted.
    let stored: Value = app
        .get(
            &format!("/problems/result/{}", cached["job_id"].as_str().unwrap()),
            Some(&bob),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stored["status"], "accepted");
    let me: Value = app.get("/users/me", Some(&bob)).await.json().await.unwrap();
    assert_eq!(me["solved"], 1);

    // Different text inside a string literal is a different solution.
    let other = app
        .submit(&cid, uk, "SELECT name FROM customers WHERE country = 'UK '")
        .await;
    assert_eq!(other.status(), 202);

    // Changing the problem invalidates its cached verdicts.
    app.retitle(
        uk,
        "Customers in the United Kingdom",
        "SELECT name FROM customers WHERE country = 'UK'",
    )
    .await;
    let after = app
        .submit(&cid, uk, "SELECT name FROM customers WHERE country = 'UK'")
        .await;
    assert_eq!(
        after.status(),
        202,
        "graded again after the problem changed"
    );
}

/// A problem changed behind this process's back (as another instance's admin would change it)
/// is never judged on the copy this process remembers: neither by its executors nor from the
/// verdict cache.
#[actix_web::test]
async fn a_problem_changed_elsewhere_is_never_judged_on_a_remembered_copy() {
    let app = TestApp::spawn().await;
    let token = app.user("remembering").await;
    let uk = app.problem_id("uk-customers").await;
    let sql = "SELECT name FROM customers WHERE country = 'UK'";
    // Graded here: the problem is remembered, and the verdict cached under its version.
    assert_eq!(app.grade(&token, uk, sql).await["status"], "accepted");

    // Another instance's change: a new reference result, and a new version.
    let changed = diesel::sql_query(
        "UPDATE problems SET expected_rows = '[[\"Nobody\"]]', updated_at = now() WHERE id = $1",
    )
    .bind::<diesel::sql_types::BigInt, _>(uk)
    .execute(&mut app.platform_db())
    .unwrap();
    assert_eq!(changed, 1);

    // A new solution: graded on the remembered copy first, found out when recorded, graded
    // again on the new version.
    let fresh = app
        .grade(
            &token,
            uk,
            "SELECT name FROM customers WHERE country = 'UK' AND 2 > 1",
        )
        .await;
    assert_eq!(fresh["status"], "wrong_answer", "{fresh}");
    // The solution whose verdict is cached under the old version: not reused.
    let again = app.submit(&token, uk, sql).await;
    assert_eq!(again.status(), 202, "the old version's verdict was reused");
    let again: Value = again.json().await.unwrap();
    let again = app
        .wait_final(
            &token,
            again["job_id"].as_str().unwrap(),
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(again["status"], "wrong_answer", "{again}");
}

/// Submissions written together (one statement for many) still make `request_id` a key: many
/// at once with the same key make one submission, and every answer names it.
#[actix_web::test]
async fn concurrent_retries_with_one_request_id_make_one_submission() {
    let app = TestApp::spawn().await;
    let token = app.user("hasty").await;
    let uk = app.problem_id("uk-customers").await;
    let body = json!({"problem_id": uk, "sql": "SELECT name FROM customers WHERE country = 'UK'", "request_id": "burst-1"});
    let tries = (0..24).map(|_| app.post_json("/problems/submit", Some(&token), &body));
    let mut ids = std::collections::HashSet::new();
    for res in futures_util::future::join_all(tries).await {
        assert!(res.status().is_success(), "{}", res.status());
        let ack: Value = res.json().await.unwrap();
        ids.insert(ack["job_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    // Others' submissions in the same moments are their own.
    let (app, token) = (&app, &token);
    let others = (0..24).map(|i| async move {
        let sql = format!("SELECT name FROM customers WHERE country = 'UK' AND {i} >= 0");
        app.submit(token, uk, &sql).await.status()
    });
    for status in futures_util::future::join_all(others).await {
        assert_eq!(status, 202);
    }
    let mine: Value = app
        .get("/users/me/submissions?limit=100", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["total"], 25);
}

/// `n` submissions of `user_id` to `problem_id`, queued in Postgres (as the intake leaves them).
fn queued_jobs(
    conn: &mut diesel::PgConnection,
    user_id: i64,
    problem_id: i64,
    n: usize,
) -> Vec<sqljudge::job::Job> {
    use sqljudge::db::models::{NewSubmission, Submission};
    let jobs: Vec<sqljudge::job::Job> = (0..n)
        .map(|i| sqljudge::job::Job {
            job_id: uuid::Uuid::new_v4(),
            user_id,
            problem_id,
            sql: format!("SELECT {i}"),
            request_id: None,
            submitted_at: chrono::Utc::now(),
            rejudge: false,
        })
        .collect();
    let rows: Vec<_> = jobs
        .iter()
        .map(|j| NewSubmission::queued(j, sqljudge::job::Queue::Redis))
        .collect();
    Submission::insert_new(conn, &rows).unwrap();
    jobs
}

/// A job graded `wrong_answer` now.
fn wrong_answer(job: sqljudge::job::Job) -> sqljudge::db::models::Graded {
    use sqljudge::job::{Outcome, Status};
    sqljudge::db::models::Graded {
        job,
        outcome: Outcome::verdict(Status::WrongAnswer, "differs"),
        version: None,
        at: chrono::Utc::now(),
    }
}

/// The recorder's statements are prepared once per connection: a column that a migration adds
/// while the process runs (docs/operations.md: additive migrations first, processes after)
/// must not make them fail on that connection.
#[actix_web::test]
async fn verdicts_are_still_recorded_after_a_column_is_added_while_running() {
    use sqljudge::db::models::Submission;
    use sqljudge::job::{Job, Status};
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let user_id = app.user_id(&app.user("grader").await).await;
    let problem_id = app.problem_id("uk-customers").await;
    let mut conn = app.platform_db();
    let jobs = queued_jobs(&mut conn, user_id, problem_id, 2);
    let record = |conn: &mut diesel::PgConnection, job: &Job| {
        Submission::record_graded(conn, &[wrong_answer(job.clone())])
    };
    assert!(record(&mut conn, &jobs[0]).unwrap()[0].is_some());
    diesel::sql_query("ALTER TABLE submissions ADD COLUMN added_later integer")
        .execute(&mut conn)
        .unwrap();
    let recorded = record(&mut conn, &jobs[1]).unwrap();
    let (stored, first_solve) = recorded[0].as_ref().expect("recorded");
    assert_eq!(
        (stored.id, stored.outcome.status),
        (jobs[1].job_id, Status::WrongAnswer)
    );
    assert!(!first_solve);
}

/// Verdicts are recorded row by row through the primary key, however stale the planner's view
/// of a burst that queued thousands of submissions: the recording statement's plan cached on a
/// connection while the table was small, or statistics from an ANALYZE that saw few pending.
/// Each batch must not read the whole table or backlog.
#[actix_web::test]
async fn recording_verdicts_finds_rows_by_key_whatever_the_statistics_say() {
    use sqljudge::db::models::Submission;
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let user_id = app.user_id(&app.user("burst").await).await;
    let problem_id = app.problem_id("uk-customers").await;
    let mut conn = app.platform_db();
    // Queues `n` submissions and records them on `conn`, in one batch; the rows and index
    // entries of `submissions` that the recording read.
    let record = |conn: &mut diesel::PgConnection, n: usize| {
        let graded: Vec<_> = queued_jobs(conn, user_id, problem_id, n)
            .into_iter()
            .map(wrong_answer)
            .collect();
        diesel::Connection::transaction(conn, |conn| {
            let before = rows_read(conn, "submissions");
            let recorded = Submission::record_graded(conn, &graded)?;
            assert!(recorded.iter().all(Option::is_some), "all recorded");
            Ok::<_, diesel::result::Error>(rows_read(conn, "submissions") - before)
        })
        .unwrap()
    };
    let burst = |conn: &mut diesel::PgConnection, status: &str, graded: &str, n: u32| {
        diesel::sql_query(format!(
            "INSERT INTO submissions (id, user_id, problem_id, sql_query, status, queue, \
             graded_at) SELECT gen_random_uuid(), {user_id}, {problem_id}, 'SELECT 1', \
             '{status}', 'redis', {graded} FROM generate_series(1, {n})"
        ))
        .execute(conn)
        .unwrap();
    };
    let at_most = |reads: i64, case: &str| {
        assert!(
            reads < 100,
            "recording 16 verdicts read {reads} rows of submissions ({case}): by key, not the \
             table or the pending backlog"
        );
    };
    diesel::sql_query("ALTER TABLE submissions SET (autovacuum_enabled = false)")
        .execute(&mut conn)
        .unwrap();
    // The plan cached while the table is small (no ANALYZE since: it would re-plan).
    for _ in 0..8 {
        record(&mut conn, 4);
    }
    burst(&mut conn, "queued", "NULL", 5_000);
    at_most(
        record(&mut conn, 16),
        "a plan cached while the table was small",
    );
    // Statistics from a history of graded submissions with hardly any pending, then a burst;
    // on a connection that plans afresh.
    diesel::sql_query(
        "UPDATE submissions SET status = 'accepted', graded_at = now() WHERE graded_at IS NULL",
    )
    .execute(&mut conn)
    .unwrap();
    burst(&mut conn, "accepted", "now()", 20_000);
    burst(&mut conn, "queued", "NULL", 5);
    diesel::sql_query("ANALYZE submissions")
        .execute(&mut conn)
        .unwrap();
    burst(&mut conn, "queued", "NULL", 5_000);
    let mut fresh = app.platform_db();
    at_most(record(&mut fresh, 16), "statistics from before a burst");
    // The sweep for pending submissions Redis lost reads the pending index (whose entries
    // here also include the 5,000 made graded above, not vacuumed: up to about 10,000), not
    // the history of graded ones, also in a plan made for any values (which PostgreSQL may
    // cache).
    let mut sweep = app.platform_db();
    diesel::sql_query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut sweep)
        .unwrap();
    let reads = diesel::Connection::transaction(&mut sweep, |conn| {
        let before = rows_read(conn, "submissions");
        let oldest = Submission::pending_before(conn, chrono::Utc::now(), 10)?;
        assert_eq!(oldest.len(), 10);
        Ok::<_, diesel::result::Error>(rows_read(conn, "submissions") - before)
    })
    .unwrap();
    assert!(
        reads < 15_000,
        "the sweep read {reads} rows of submissions for its 10 oldest pending (5,005 pending, \
         30,000 in all)"
    );
}
