//! Hidden tests (API.md v1.1): a solution is accepted only when it passes the sample and every
//! hidden test, uploaded or generated; a wrong answer on a hidden test comes with a small
//! counterexample, unless the problem gives verdicts only.
use serde_json::{json, Value};
use sqljudge_testkit::app::{Options, TestApp};

/// Members and their bookings; the sample has no member without a city.
const CLUB: &str = "CREATE SCHEMA club;
CREATE TABLE club.members (id integer PRIMARY KEY, name text NOT NULL, city text);
CREATE TABLE club.bookings (id integer PRIMARY KEY, member integer NOT NULL REFERENCES club.members, hours integer NOT NULL);
CREATE TABLE club.visits (member integer REFERENCES club.members, day date);
INSERT INTO club.members SELECT i, 'm' || i, (ARRAY['Paris', 'Rome', 'Oslo'])[1 + i % 3] FROM generate_series(1, 24) i;
INSERT INTO club.bookings SELECT i, 1 + i % 24, 1 + i % 5 FROM generate_series(1, 60) i;
INSERT INTO club.visits SELECT 1 + i % 24, date '2026-01-01' + i FROM generate_series(1, 30) i;";

/// The same tables, other rows: among them Nina, whose city is unknown.
const WITH_NINA: &str = "CREATE SCHEMA club;
CREATE TABLE club.members (id integer PRIMARY KEY, name text NOT NULL, city text);
CREATE TABLE club.bookings (id integer PRIMARY KEY, member integer NOT NULL REFERENCES club.members, hours integer NOT NULL);
CREATE TABLE club.visits (member integer REFERENCES club.members, day date);
INSERT INTO club.members SELECT i, 'h' || i, (ARRAY['Paris', 'Rome'])[1 + i % 2] FROM generate_series(1, 30) i;
INSERT INTO club.members VALUES (31, 'Nina', NULL);
INSERT INTO club.bookings SELECT i, 1 + i % 31, 2 FROM generate_series(1, 40) i;";

async fn club() -> TestApp {
    TestApp::with_dataset("club", CLUB).await
}

/// Creates a problem on `club`; the problem object.
async fn problem(app: &TestApp, slug: &str, reference: &str, extra: Value) -> Value {
    let base = json!({
        "slug": slug, "title": slug, "statement": "Members.", "topic": "hidden",
        "dataset": "club", "reference_sql": reference,
    });
    app.problem_of(base, extra).await
}

/// A 422 whose message says `why`.
async fn refused(res: reqwest::Response, why: &str) {
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(why),
        "{body}"
    );
}

/// The rows of every table of a counterexample, together.
fn rows_in(counterexample: &Value) -> Vec<Value> {
    counterexample["tables"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|t| t["rows"].as_array().unwrap().clone())
        .collect()
}

#[actix_web::test]
async fn hard_coded_answers_fail_on_generated_tests() {
    let app = club().await;
    let token = app.user("learner").await;
    let created = problem(
        &app,
        "romans",
        "SELECT name FROM club.members WHERE city = 'Rome'",
        json!({}),
    )
    .await;
    assert_eq!(created["tests"], json!({"sample": 1, "hidden": 3}));
    assert_eq!(created["generated_tests"], 3);
    let id = created["id"].as_i64().unwrap();
    let public = app.problem(id).await;
    assert_eq!(public["tests"], json!({"sample": 1, "hidden": 3}));

    let right = app
        .grade(
            &token,
            id,
            "SELECT name FROM club.members WHERE city = 'Rome'",
        )
        .await;
    assert_eq!(right["status"], "accepted", "{right}");

    // The sample's answer written out passes the sample, and nothing else.
    let names: Vec<String> = (1..=24)
        .filter(|i| i % 3 == 1)
        .map(|i| format!("('m{i}')"))
        .collect();
    let hard_coded = format!("VALUES {}", names.join(", "));
    let result = app.grade(&token, id, &hard_coded).await;
    assert_eq!(result["status"], "wrong_answer", "{result}");
    assert_eq!(result["failed_test"]["hidden"], true, "{result}");
    assert!(result["failed_test"]["index"].as_i64().unwrap() >= 1);
    assert_eq!(
        result["diff"],
        Value::Null,
        "hidden rows never come as a diff"
    );
    assert_eq!(result["rows_returned"], 8, "counts are the sample's");
    let counterexample = &result["counterexample"];
    assert!(counterexample.is_object(), "{result}");
    assert_ne!(counterexample["expected"], counterexample["got"]);
    assert_eq!(counterexample["got"]["rows"].as_array().unwrap().len(), 8);
    // The smallest data on which they differ: no Roman at all.
    assert!(rows_in(counterexample).len() <= 2, "{counterexample}");
    assert!(counterexample["tables"]["members"]["columns"] == json!(["id", "name", "city"]));

    // The same problem with no generated test cannot tell.
    let update = app
        .update_problem(
            id,
            &json!({"slug": "romans", "title": "romans", "statement": "Members.", "topic": "hidden",
                    "dataset": "club", "reference_sql": "SELECT name FROM club.members WHERE city = 'Rome'",
                    "generated_tests": 0}),
        )
        .await;
    assert_eq!(update.status(), 200);
    let result = app.grade(&token, id, &hard_coded).await;
    assert_eq!(result["status"], "accepted", "{result}");
    assert_ne!(result["queue"], "cache", "a new version is graded again");

    // A reference whose result no subset changes has no generated test that tells anything.
    let constant = problem(&app, "constant", "SELECT 1 AS one", json!({})).await;
    assert_eq!(constant["tests"], json!({"sample": 1, "hidden": 0}));
    for bad in [json!(-1), json!(11), json!("3")] {
        let res = app
            .create_problem(
                &json!({"slug": "x", "title": "x", "statement": "x", "topic": "hidden",
                "dataset": "club", "reference_sql": "SELECT 1", "generated_tests": bad}),
            )
            .await;
        assert_eq!(res.status(), 400, "generated_tests {bad}");
    }
}

#[actix_web::test]
async fn a_solution_wrong_only_on_an_uploaded_test_gets_the_row_that_tells() {
    let app = club().await;
    let token = app.user("learner").await;
    let reference = "SELECT name FROM club.members WHERE city IS DISTINCT FROM 'Paris'";
    let full = problem(&app, "not-paris", reference, json!({"generated_tests": 0})).await;
    let quiet = problem(
        &app,
        "not-paris-contest",
        reference,
        json!({"generated_tests": 0, "feedback": "verdict"}),
    )
    .await;
    let (full, quiet) = (full["id"].as_i64().unwrap(), quiet["id"].as_i64().unwrap());
    let almost = "SELECT name FROM club.members WHERE city <> 'Paris'";
    assert_eq!(app.grade(&token, full, almost).await["status"], "accepted");

    let res = app.put_test("club", "1", WITH_NINA).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["test"], 1);
    assert!(body["tables"].to_string().contains("\"rows\":31"), "{body}");

    let result = app.grade(&token, full, almost).await;
    assert_eq!(result["status"], "wrong_answer", "{result}");
    assert_ne!(
        result["queue"], "cache",
        "the verdict before the test is not reused"
    );
    assert_eq!(result["failed_test"], json!({"index": 1, "hidden": true}));
    assert_eq!(result["reason"], "row_count");
    let counterexample = &result["counterexample"];
    let members = counterexample["tables"]["members"]["rows"]
        .as_array()
        .unwrap();
    assert!(
        members.contains(&json!(["31", "Nina", null])),
        "the row that tells them apart: {counterexample}"
    );
    assert!(rows_in(counterexample).len() <= 3, "{counterexample}");
    assert!(counterexample["expected"]["rows"]
        .as_array()
        .unwrap()
        .contains(&json!(["Nina"])));
    assert!(!counterexample["got"]["rows"]
        .as_array()
        .unwrap()
        .contains(&json!(["Nina"])));
    assert_eq!(
        app.grade(&token, full, reference).await["status"],
        "accepted"
    );

    // Verdicts only: which test, nothing of its rows.
    let result = app.grade(&token, quiet, almost).await;
    assert_eq!(result["status"], "wrong_answer", "{result}");
    assert_eq!(result["failed_test"], json!({"index": 1, "hidden": true}));
    assert_eq!(result["counterexample"], Value::Null);
    assert_eq!(result["diff"], Value::Null);
}

#[actix_web::test]
async fn uploaded_tests_must_match_the_sample_and_keep_every_reference_running() {
    let app = club().await;
    let created = problem(
        &app,
        "hours",
        "SELECT 100 / count(*) AS share FROM club.members",
        json!({"generated_tests": 0}),
    )
    .await;
    let id = created["id"].as_i64().unwrap();

    let other_columns = WITH_NINA.replace("city text", "town text");
    let missing_table = WITH_NINA.replace(
        "CREATE TABLE club.visits (member integer REFERENCES club.members, day date);",
        "",
    );
    let other_type = WITH_NINA.replace("hours integer", "hours bigint");
    for (script, why) in [
        (other_columns.as_str(), "city"),
        (missing_table.as_str(), "visits"),
        (other_type.as_str(), "hours"),
    ] {
        refused(app.put_test("club", "1", script).await, why).await;
    }
    for (n, status) in [("0", 400), ("21", 400), ("x", 400)] {
        assert_eq!(
            app.put_test("club", n, WITH_NINA).await.status(),
            status,
            "test {n}"
        );
    }
    assert_eq!(app.put_test("nowhere", "1", WITH_NINA).await.status(), 404);
    assert_eq!(
        app.put_test("club", "1", "CREATE SCHEMA club; SELECT 1/0;")
            .await
            .status(),
        422
    );

    // A test on which the reference fails (no member: division by zero) is refused, and
    // what was there stays.
    assert_eq!(app.put_test("club", "2", WITH_NINA).await.status(), 201);
    let empty = "CREATE SCHEMA club;
CREATE TABLE club.members (id integer PRIMARY KEY, name text NOT NULL, city text);
CREATE TABLE club.bookings (id integer PRIMARY KEY, member integer NOT NULL REFERENCES club.members, hours integer NOT NULL);
CREATE TABLE club.visits (member integer REFERENCES club.members, day date);";
    for n in ["2", "3"] {
        refused(app.put_test("club", n, empty).await, "hours").await;
    }
    let listed = app.admin_json("/admin/datasets").await;
    let club = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "club")
        .unwrap();
    let tests = club["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 1, "{club}");
    assert_eq!(tests[0]["test"], 2);
    assert!(
        tests[0]["tables"].to_string().contains("\"rows\":31"),
        "{club}"
    );
    let detail = app.problem(id).await;
    assert_eq!(detail["tests"], json!({"sample": 1, "hidden": 1}));

    assert_eq!(app.put_test("club", "2", WITH_NINA).await.status(), 200);
    assert_eq!(app.delete_test("club", "2").await.status(), 204);
    assert_eq!(app.delete_test("club", "2").await.status(), 404);
    let detail = app.problem(id).await;
    assert_eq!(detail["tests"], json!({"sample": 1, "hidden": 0}));

    // A new sample on which the reference fails is refused as well, and the old one stays.
    refused(app.put_dataset("club", empty).await, "hours").await;
    let listed = app.admin_json("/admin/datasets").await;
    assert!(
        listed
            .to_string()
            .contains(r#"{"name":"members","rows":24}"#),
        "{listed}"
    );
    let token = app.user("after").await;
    let share = app
        .grade(&token, id, "SELECT 100 / count(*) FROM club.members")
        .await;
    assert_eq!(share["status"], "accepted", "{share}");
}

#[actix_web::test]
async fn writeable_problems_are_judged_on_every_test() {
    let app = club().await;
    let token = app.user("writer").await;
    let created = problem(
        &app,
        "move-m2",
        "UPDATE club.members SET city = 'Oslo' WHERE id = 2",
        json!({"writeable": true, "check_table": "club.members", "generated_tests": 0}),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    // On the sample, member 2 is the only one named m2; in the test nobody is.
    let by_name = "UPDATE club.members SET city = 'Oslo' WHERE name = 'm2'";
    assert_eq!(app.grade(&token, id, by_name).await["status"], "accepted");
    assert_eq!(app.put_test("club", "1", WITH_NINA).await.status(), 201);
    let result = app.grade(&token, id, by_name).await;
    assert_eq!(result["status"], "wrong_answer", "{result}");
    assert_eq!(result["failed_test"], json!({"index": 1, "hidden": true}));
    let counterexample = &result["counterexample"];
    let members = counterexample["tables"]["members"]["rows"]
        .as_array()
        .unwrap();
    assert!(members.iter().any(|m| m[0] == "2"), "{counterexample}");
    assert!(rows_in(counterexample).len() <= 2, "{counterexample}");
    assert_eq!(
        app.grade(
            &token,
            id,
            "UPDATE club.members SET city = 'Oslo' WHERE id = 2"
        )
        .await["status"],
        "accepted"
    );
    // Nothing a grading did stays in any test.
    let detail = app
        .grade(
            &token,
            id,
            "UPDATE club.members SET city = 'Oslo' WHERE id = 2",
        )
        .await;
    assert_eq!(detail["status"], "accepted");
}

#[actix_web::test]
async fn adequacy_lists_the_wrong_queries_weak_data_lets_through() {
    let app = club().await;
    let reference = "SELECT name FROM club.members WHERE city <> 'Paris' OR city IS NULL";
    let id = problem(&app, "not-paris-or-unknown", reference, json!({})).await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/admin/problems/{id}/adequacy");
    assert_eq!(app.get(&path, None).await.status(), 401);
    assert_eq!(
        app.get("/admin/problems/999999/adequacy", Some(&app.admin_token))
            .await
            .status(),
        404
    );
    let report = app.admin_json(&path).await;
    let survivors: Vec<&str> = report["survivors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["change"].as_str().unwrap())
        .collect();
    // No member without a city, and no two of the same name: nothing tells these apart.
    assert!(
        survivors.contains(&"operand 2 of an OR dropped"),
        "{report}"
    );
    assert!(survivors.contains(&"DISTINCT added"), "{report}");
    assert!(report["mutants"].as_u64().unwrap() >= 5, "{report}");
    assert_eq!(
        report["killed"].as_u64().unwrap() + survivors.len() as u64,
        report["mutants"].as_u64().unwrap()
    );
    let dropped = report["survivors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["change"] == "operand 2 of an OR dropped")
        .unwrap();
    assert!(
        dropped["sql"].as_str().unwrap().contains("OR false"),
        "{dropped}"
    );

    // A test with the rows that tell: two members named Nina, of no known city.
    let two_ninas = format!("{WITH_NINA}\nINSERT INTO club.members VALUES (32, 'Nina', NULL);");
    assert_eq!(app.put_test("club", "1", &two_ninas).await.status(), 201);
    let report = app.admin_json(&path).await;
    assert_eq!(report["survivors"], json!([]), "{report}");
}

/// The demo set's tests (generated, and `demo/tests/`) kill every standard mutant of every
/// reference except those that are the same query in other words.
#[actix_web::test]
async fn demo_problems_let_no_wrong_mutant_through() {
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    // Equivalent to their reference, whatever the rows, and why.
    let equivalent = [
        // GROUP BY status, status shown: rows are distinct already; status is NOT NULL.
        ("orders-per-status", "DISTINCT added"),
        ("orders-per-status", "COUNT(*) changed to COUNT(column)"),
        // Category names are UNIQUE; the later inner joins and WHERE drop what a LEFT JOIN adds.
        ("revenue-per-category", "DISTINCT added"),
        ("revenue-per-category", "INNER JOIN changed to LEFT JOIN"),
        // WHERE o.status = ... and HAVING sum(...) > 100 drop the rows a LEFT JOIN adds.
        ("big-spenders", "INNER JOIN changed to LEFT JOIN"),
        // GROUP BY d.name, d.name shown.
        ("average-salary", "DISTINCT added"),
        // o.id is the key; customer_id is NOT NULL and references customers.
        ("pending-orders", "DISTINCT added"),
        ("pending-orders", "INNER JOIN changed to LEFT JOIN"),
        // id is the key.
        ("running-orders", "DISTINCT added"),
    ];
    let problems: Value = app.get("/problems", None).await.json().await.unwrap();
    let problems = problems.as_array().unwrap();
    assert_eq!(problems.len(), 18);
    for problem in problems {
        let slug = problem["slug"].as_str().unwrap();
        let report = app
            .admin_json(&format!("/admin/problems/{}/adequacy", problem["id"]))
            .await;
        for survivor in report["survivors"].as_array().unwrap() {
            let change = survivor["change"].as_str().unwrap();
            assert!(
                equivalent.contains(&(slug, change)),
                "{slug}: a wrong query survives every test: {survivor}"
            );
        }
    }
}

/// What a failure on a hidden test tells is never the test's rows: not in the database's
/// messages, not through column statistics, not by a counterexample forced to be the whole test.
#[actix_web::test]
async fn hidden_rows_do_not_leak_through_errors_statistics_or_the_search() {
    let app = club().await;
    let token = app.user("prober").await;
    let reference = "SELECT name FROM club.members WHERE city IS DISTINCT FROM 'Paris'";
    let id = problem(&app, "leaks", reference, json!({"generated_tests": 0})).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.put_test("club", "1", WITH_NINA).await.status(), 201);

    // Nobody past id 30 in the sample: a cast that fails on the test's names only.
    let probe = "SELECT name FROM club.members WHERE city IS DISTINCT FROM 'Paris' \
                 AND (SELECT string_agg(name, ';') FROM club.members WHERE id > 30)::int IS NULL";
    let result = app.grade(&token, id, probe).await;
    assert_eq!(result["status"], "sql_error", "{result}");
    assert_eq!(result["sqlstate"], "22P02");
    assert_eq!(result["failed_test"], json!({"index": 1, "hidden": true}));
    assert!(!result.to_string().contains("Nina"), "{result}");

    // Column statistics hold a table's most common values.
    for sql in [
        "SELECT most_common_vals::text FROM pg_stats WHERE schemaname = 'club'",
        "SELECT count(*) FROM pg_stats_ext",
    ] {
        let result = app.grade(&token, id, sql).await;
        assert_eq!(result["status"], "sql_error", "{sql}: {result}");
        assert_eq!(result["sqlstate"], "42501", "{sql}: {result}");
    }

    // Wrong (Nina missing) and failing whenever the search removes a row (the tables' sizes
    // are then neither the sample's nor the test's): each removal then counts as a
    // difference, so the counterexample shrinks instead of showing the test.
    let evasive = "SELECT name FROM club.members WHERE city <> 'Paris' \
        AND 1 / ((SELECT count(*) FROM club.members) * 1000 \
        + (SELECT count(*) FROM club.bookings) IN (24060, 31040))::int = 1";
    let result = app.grade(&token, id, evasive).await;
    assert_eq!(result["status"], "wrong_answer", "{result}");
    let counterexample = &result["counterexample"];
    assert!(rows_in(counterexample).len() <= 3, "{counterexample}");
    assert!(
        !counterexample.to_string().contains("h17"),
        "{counterexample}"
    );
}

/// Generated tests are cut by the dataset's owner, not the superuser: a trigger that fires
/// even with foreign-key triggers off gets the owner's rights only.
#[actix_web::test]
async fn building_generated_tests_runs_nothing_of_a_dataset_as_superuser() {
    let script = "CREATE SCHEMA esc;
CREATE TABLE esc.t (a integer);
INSERT INTO esc.t SELECT generate_series(1, 40);
CREATE FUNCTION esc.grab() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER ROLE %I SUPERUSER', (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'esc'));
  RETURN OLD;
EXCEPTION WHEN insufficient_privilege THEN RETURN OLD;
END $$;
CREATE TRIGGER grab BEFORE DELETE ON esc.t FOR EACH ROW EXECUTE FUNCTION esc.grab();
ALTER TABLE esc.t ENABLE ALWAYS TRIGGER grab;";
    let app = TestApp::with_dataset("esc", script).await;
    let res = app
        .create_problem(
            &json!({"slug": "esc", "title": "t", "statement": "s", "topic": "hidden",
            "dataset": "esc", "reference_sql": "SELECT a FROM esc.t WHERE a % 2 = 0"}),
        )
        .await;
    let created: Value = res.json().await.unwrap();
    // The tests were cut: the trigger fired.
    assert_eq!(created["tests"]["hidden"], 3, "{created}");
    let owner = format!("{}_o_esc", app.state.settings.sandbox.role_prefix);
    let superuser = sqljudge_testkit::app::count(
        &mut app.sandbox_db(),
        &format!("SELECT count(*) AS n FROM pg_roles WHERE rolname = '{owner}' AND rolsuper"),
    );
    assert_eq!(
        superuser, 0,
        "the dataset's trigger made its owner a superuser"
    );
}

/// `GET /problems/{id}/dataset`: the sample's tables as learners read them (columns with types,
/// first rows, counts), never a hidden test's rows; a replaced dataset shows at once.
#[actix_web::test]
async fn the_sample_is_shown_and_no_hidden_test() {
    let app = club().await;
    let res = app.put_test("club", "1", WITH_NINA).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let id = problem(
        &app,
        "cities",
        "SELECT name FROM members WHERE city = 'Paris'",
        json!({}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let shown = |rows: &'static str| {
        let app = &app;
        async move {
            app.get(&format!("/problems/{id}/dataset{rows}"), None)
                .await
        }
    };
    let res = shown("").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["dataset"], "club");
    let names: Vec<&str> = body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bookings", "members", "visits"]);
    let members = &body["tables"][1];
    assert_eq!(members["kind"], "table");
    assert_eq!(
        members["columns"],
        json!([{"name": "id", "type": "integer"}, {"name": "name", "type": "text"}, {"name": "city", "type": "text"}])
    );
    assert_eq!(members["row_count"], 24);
    assert_eq!(
        members["rows"].as_array().unwrap().len(),
        20,
        "20 rows by default"
    );
    assert_eq!(members["rows"][0], json!(["1", "m1", "Rome"]));
    let text = body.to_string();
    assert!(
        !text.contains("Nina") && !text.contains("\"h1\""),
        "a hidden test's rows: {text}"
    );

    let one: Value = shown("?rows=1").await.json().await.unwrap();
    assert!(one["tables"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["rows"].as_array().unwrap().len() == 1));
    for bad in ["?rows=101", "?rows=-1", "?rows=many"] {
        let res = shown(bad).await;
        assert_eq!(res.status(), 400, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    assert_eq!(
        app.get("/problems/987654/dataset", None).await.status(),
        404
    );

    // Another sample (a null city, a long value, a view over the author's function): shown at
    // once, not the cached one. The view is listed, never evaluated: its function would run
    // with the preview's rights.
    let boom = "CREATE TABLE club.log (who text);
CREATE FUNCTION club.boom() RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO club.log VALUES (current_user); RETURN NEXT 'x'; END $$;
CREATE VIEW club.paris AS SELECT name FROM club.members, club.boom() WHERE city = 'Paris';";
    let res = app
        .put_dataset("club", &format!("{CLUB}\nINSERT INTO club.members VALUES (99, 'Zed', NULL), (100, repeat('y', 500), 'Rome');\n{boom}"))
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let body: Value = shown("?rows=100").await.json().await.unwrap();
    let members = &body["tables"][2];
    assert_eq!(members["row_count"], 26);
    let rows = members["rows"].as_array().unwrap();
    assert!(rows.contains(&json!(["99", "Zed", null])));
    assert!(
        rows.contains(&json!(["100", format!("{}…", "y".repeat(200)), "Rome"])),
        "{members}"
    );
    let paris = &body["tables"][3];
    assert_eq!(
        (&paris["kind"], &paris["rows"], &paris["row_count"]),
        (&json!("view"), &json!([]), &Value::Null)
    );
    assert_eq!(paris["columns"], json!([{"name": "name", "type": "text"}]));
    let mut sandbox = app.sandbox_db();
    assert_eq!(
        sqljudge_testkit::app::count(&mut sandbox, "SELECT count(*) AS n FROM club.log"),
        0
    );
}

/// A sandbox cluster that comes back empty heals itself: its datasets, uploaded tests and the
/// generated tests problems use are loaded again from the scripts the platform keeps, and
/// gradings give the verdicts they gave before. A stale record is reloaded; a current one is
/// left alone.
#[actix_web::test]
async fn an_emptied_sandbox_is_restored_from_the_platform() {
    use diesel::RunQueryDsl;
    let app = club().await;
    let res = app.put_test("club", "1", WITH_NINA).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let id = problem(
        &app,
        "not-rome",
        "SELECT name FROM members WHERE city IS DISTINCT FROM 'Rome'",
        json!({}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let token = app.user("restorer").await;
    let right = "SELECT name FROM members WHERE city IS NULL OR city <> 'Rome'";
    let wrong = "SELECT name FROM members WHERE city <> 'Rome'";
    assert_eq!(app.grade(&token, id, right).await["status"], "accepted");
    assert_eq!(
        app.grade(&token, id, wrong).await["failed_test"]["hidden"],
        true
    );
    let (state, restore) = (&app.state, sqljudge::restore::restore);
    assert_eq!(
        restore(&state.pool, &state.sandbox).await.unwrap(),
        Some(Default::default())
    );

    // The sandbox's databases are lost, all of them.
    let db = state.sandbox.database().to_string();
    let mut server = app.platform_db();
    let gone: Vec<String> = diesel::sql_query(format!(
        "SELECT datname AS name FROM pg_database WHERE datname = '{db}' OR datname LIKE '{db}\\_%'"
    ))
    .load::<Named>(&mut server)
    .unwrap()
    .into_iter()
    .map(|n| n.name)
    .collect();
    assert!(gone.len() >= 3, "{gone:?}");
    for name in &gone {
        diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .execute(&mut server)
            .unwrap();
    }
    let restored = restore(&state.pool, &state.sandbox).await.unwrap().unwrap();
    assert_eq!((restored.datasets, restored.tests), (1, 1), "{restored:?}");
    assert!(restored.generated >= 1, "{restored:?}");
    // The same verdicts (other text, so no verdict is reused from the cache).
    let graded = app.grade(&token, id, &format!("{right} AND true")).await;
    assert_eq!(graded["status"], "accepted", "{graded}");
    let graded = app.grade(&token, id, &format!("{wrong} AND true")).await;
    assert_eq!(graded["failed_test"]["hidden"], true, "{graded}");
    assert_eq!(
        restore(&state.pool, &state.sandbox).await.unwrap(),
        Some(Default::default())
    );

    // A schema lost alone: a grading meanwhile gets no verdict (no `sql_error` for a missing
    // table), it waits uncounted and is graded once the dataset is back.
    let mut sandbox = app.sandbox_db();
    diesel::sql_query("DROP SCHEMA club CASCADE")
        .execute(&mut sandbox)
        .unwrap();
    let res = app.submit(&token, id, &format!("{right} AND 1 = 1")).await;
    let job: serde_json::Value = res.json().await.unwrap();
    let job = job["job_id"].as_str().unwrap().to_string();
    let executors = &state.executors;
    assert!(
        executors
            .try_execute_task(&mut executors.standalone_slot())
            .await
    );
    assert_eq!(app.result(&token, &job).await["status"], "queued");
    let restored = restore(&state.pool, &state.sandbox).await.unwrap().unwrap();
    assert_eq!(
        (restored.datasets, restored.tests, restored.generated),
        (1, 0, 0)
    );
    assert_eq!(app.run_pending_jobs().await, 1);
    assert_eq!(app.result(&token, &job).await["status"], "accepted");

    // A record of another script is stale: that dataset alone is loaded again.
    diesel::sql_query("UPDATE \"sqljudge-meta\".loaded SET sha256 = 'x' WHERE test = ''")
        .execute(&mut sandbox)
        .unwrap();
    let restored = restore(&state.pool, &state.sandbox).await.unwrap().unwrap();
    assert_eq!(
        (restored.datasets, restored.tests, restored.generated),
        (1, 0, 0)
    );

    // A sandbox with no record at all (loaded before records were kept) adopts the
    // platform's for what it has, and loads nothing again.
    diesel::sql_query("DELETE FROM \"sqljudge-meta\".loaded")
        .execute(&mut sandbox)
        .unwrap();
    assert_eq!(
        restore(&state.pool, &state.sandbox).await.unwrap(),
        Some(Default::default())
    );
    let held = state.sandbox.loaded().await.unwrap().unwrap();
    assert!(
        held.iter().any(|(d, t, _)| d == "club" && t.is_empty()),
        "{held:?}"
    );
    assert!(
        held.iter().any(|(d, t, _)| d == "club" && t == "u1"),
        "{held:?}"
    );
}

#[derive(diesel::QueryableByName)]
struct Named {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}
