//! Red-team review of issue #9 ("A judge no account can break"): regressions for what the
//! review found. Each test states what an attacker did and what must hold instead.
use serde_json::{json, Value};
use sqljudge_testkit::app::{Options, TestApp};

/// The verdict cache keys on the normalised text, so two texts that normalise the same must
/// mean the same to PostgreSQL. An unterminated `/*` comment and a vertical tab (not
/// whitespace for PostgreSQL 15's lexer) are refused by the server but were folded away by
/// `normalize`: one learner's refused text poisoned the correct answer for everyone.
#[actix_web::test]
async fn a_refused_text_never_poisons_the_verdict_of_a_valid_one() {
    let app = TestApp::spawn().await;
    let problem = app.problem_id("no-email").await;
    let (mallory, victim) = (app.user("mallory").await, app.user("victim").await);
    let good = "SELECT name FROM customers WHERE email IS NULL";
    for poison in [
        format!("{good} /* unterminated"),
        "SELECT name FROM customers WHERE\u{0b}email IS NULL".to_string(),
    ] {
        let refused = app.grade(&mallory, problem, &poison).await;
        assert_eq!(refused["status"], "sql_error", "{poison:?}: {refused}");
    }
    let graded = app.grade(&victim, problem, good).await;
    assert_eq!(graded["status"], "accepted", "{graded}");
    let good2 = "SELECT name, price FROM products WHERE stock = 0";
    let problem2 = app.problem_id("out-of-stock").await;
    let refused = app
        .grade(
            &mallory,
            problem2,
            "SELECT name, price FROM products WHERE\u{0b}stock = 0",
        )
        .await;
    assert_eq!(refused["status"], "sql_error", "{refused}");
    let graded = app.grade(&victim, problem2, good2).await;
    assert_eq!(graded["status"], "accepted", "{graded}");
}

/// A NUL character in a string field is invalid input (400), never a 500 from PostgreSQL's
/// "invalid byte sequence for encoding UTF8: 0x00".
#[actix_web::test]
async fn nul_characters_in_fields_are_400_not_500() {
    let app = TestApp::spawn().await;
    let token = app.user("nul_user").await;
    let problem = app.problem_id("no-email").await;
    let cases: Vec<(&str, Option<&str>, Value)> = vec![
        (
            "/auth/login",
            None,
            json!({"username": "ab\u{0}c", "password": "password123"}),
        ),
        (
            "/auth/register",
            None,
            json!({"username": "nul_two", "email": "a\u{0}@example.org", "password": "password123"}),
        ),
        (
            "/problems/submit",
            Some(token.as_str()),
            json!({"problem_id": problem, "sql": "SELECT 1", "request_id": "a\u{0}b"}),
        ),
    ];
    for (path, token, body) in cases {
        let res = app.post_json(path, token, &body).await;
        let status = res.status().as_u16();
        assert!(
            status < 500,
            "{path} {body}: {status} {}",
            res.text().await.unwrap()
        );
    }
}

/// `temp_file_limit` is a per-role limit the solution runs into (SQLSTATE 53400), not an
/// outage: it must be a verdict, not three counted attempts of 256 MB of temporary files each
/// ending as internal_error.
#[actix_web::test]
async fn running_into_the_temp_file_limit_is_a_verdict() {
    let app = TestApp::spawn().await;
    let problem = app.problem_id("no-email").await;
    let token = app.user("spiller").await;
    let graded = app
        .grade(
            &token,
            problem,
            "SELECT count(*)::text FROM (SELECT repeat('x', 100000) || g AS v \
             FROM generate_series(1, 3000) g ORDER BY v) s",
        )
        .await;
    assert_ne!(graded["status"], "internal_error", "{graded}");
}

/// `setseed()` changes session state that ROLLBACK, RESET ALL and the DISCARDs keep: the next
/// grading on the same connection must not see the seed an earlier solution chose.
#[actix_web::test]
async fn a_random_seed_does_not_survive_into_the_next_grading() {
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let problem = app.problem_id("no-email").await;
    let token = app.user("seeder").await;
    let mut seen = Vec::new();
    for i in 0..2 {
        let seeded = app
            .grade(
                &token,
                problem,
                &format!("SELECT setseed(0.5)::text || {i}"),
            )
            .await;
        // Refused (setseed is revoked), or at least without effect on the next grading.
        assert!(
            ["wrong_answer", "sql_error"].contains(&seeded["status"].as_str().unwrap()),
            "{seeded}"
        );
        let drawn = app
            .grade(
                &token,
                problem,
                &format!("SELECT (random() + {i} - {i})::text"),
            )
            .await;
        seen.push(drawn["diff"]["extra_rows"][0][0].clone());
    }
    assert_ne!(seen[0], seen[1], "the seed survived the reset: {seen:?}");
}

/// The reset is sent in the same message as the solution, behind it: a solution ending in a
/// line comment must not turn it into one, which would leave its transaction open (and its
/// `now()`) for the next grading on the connection (one executor: the same connection).
#[actix_web::test]
async fn a_trailing_comment_does_not_swallow_the_reset() {
    let app = TestApp::spawn_with(Options {
        workers: 1,
        ..Default::default()
    })
    .await;
    let problem = app.problem_id("no-email").await;
    let token = app.user("commenter").await;
    let mut seen = Vec::new();
    for (i, tail) in ["-- the end", "--", "-- two\n-- lines", ""]
        .iter()
        .enumerate()
    {
        let graded = app
            .grade(
                &token,
                problem,
                &format!("SELECT (now() + interval '{i} s' - interval '{i} s')::text {tail}"),
            )
            .await;
        assert_eq!(graded["status"], "wrong_answer", "{graded}");
        seen.push(graded["diff"]["extra_rows"][0][0].clone());
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for pair in seen.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "a transaction outlived its grading: {seen:?}"
        );
    }
}

/// A statement whose result has a type the connection has not looked up yet (a table's row
/// type) and that fails: the driver's lookup of the type runs after it, in the transaction it
/// aborted. The verdict is the statement's error, not the lookup's (25P02), whether or not the
/// lookup comes first; and a time limit stays a time limit.
#[actix_web::test]
async fn a_failing_statement_keeps_its_error_behind_a_type_lookup() {
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let problem = app.problem_id("no-email").await;
    let token = app.user("looker").await;
    // A new connection each time (no executor: each grading has a slot of its own).
    for (sql, status, sqlstate) in [
        ("SELECT c, 1/0 FROM customers c", "sql_error", Some("22012")),
        (
            "SELECT c, (SELECT 1/0) FROM customers c",
            "sql_error",
            Some("22012"),
        ),
        (
            "SELECT c, pg_sleep(30) FROM customers c",
            "time_limit_exceeded",
            None,
        ),
    ] {
        let graded = app.grade(&token, problem, sql).await;
        assert_eq!(graded["status"], status, "{sql}: {graded}");
        if let Some(code) = sqlstate {
            assert_eq!(graded["sqlstate"], code, "{sql}: {graded}");
        }
    }
}

/// PostgreSQL parses a message whole, and a statement behind ours sits a little deeper in
/// its parser: a text nested just deep enough to parse alone but not behind them is the
/// statement's error, a verdict, never an interrupted grading retried until it gives up.
#[actix_web::test]
async fn a_statement_nested_to_the_parsers_limit_gets_a_verdict() {
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let problem = app.problem_id("no-email").await;
    let token = app.user("nester").await;
    // Bison's stack holds 10,000 entries; alone, about 9,990 parentheses parse.
    for depth in 9_980..=10_000 {
        let sql = format!("SELECT {}1{}", "(".repeat(depth), ")".repeat(depth));
        let graded = app.grade(&token, problem, &sql).await;
        let status = graded["status"].as_str().unwrap();
        assert!(
            ["wrong_answer", "sql_error"].contains(&status),
            "depth {depth}: {}",
            graded["message"]
        );
    }
}

/// That lookup failing leaves the parse check's statement prepared on the connection, text
/// and all: the next grading there (one executor: the same connection, unless it was dropped)
/// must not find another solution's text in `pg_prepared_statements`. Gradings may not read
/// that view (`sandbox_attacks`); it is opened here to see behind that second line.
#[actix_web::test]
async fn a_failed_type_lookup_leaves_no_statement_behind() {
    let app = TestApp::spawn_with(Options {
        workers: 1,
        ..Default::default()
    })
    .await;
    diesel::connection::SimpleConnection::batch_execute(
        &mut app.sandbox_db(),
        "GRANT SELECT ON pg_catalog.pg_prepared_statements TO PUBLIC; \
         GRANT EXECUTE ON FUNCTION pg_catalog.pg_prepared_statement() TO PUBLIC",
    )
    .unwrap();
    let problem = app.problem_id("no-email").await;
    let token = app.user("peeker").await;
    let failed = app
        .grade(
            &token,
            problem,
            "SELECT c, 1/0 FROM customers c /* a secret approach */",
        )
        .await;
    assert_eq!(failed["sqlstate"], "22012", "{failed}");
    let peek = app
        .grade(
            &token,
            problem,
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%a secret' || ' approach%'",
        )
        .await;
    assert_eq!(peek["status"], "wrong_answer", "{peek}");
    assert_eq!(peek["diff"]["extra_rows"], serde_json::json!([]), "{peek}");
}

/// A grading ends with its ROLLBACK and DISCARD PLANS (and `DISCARD SEQUENCES` after a write):
/// what a session statement changes within it must be undone by PostgreSQL itself. A dataset's
/// function changes settings for the session (not `SET LOCAL`) and listens on a channel;
/// another reads a date under the `DateStyle` its caller's `SET` clause chose, and PL/pgSQL
/// keeps that statement analysed for the session. The next grading on the same connection
/// (one executor) has none of it.
#[actix_web::test]
async fn what_a_function_changes_in_the_session_ends_with_its_grading() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 1,
        ..Default::default()
    })
    .await;
    let script = "CREATE TABLE t (id int PRIMARY KEY, day date);\n\
        INSERT INTO t VALUES (1, '2020-01-02'), (2, '2020-02-01');\n\
        CREATE FUNCTION tweak() RETURNS int LANGUAGE plpgsql AS $$ BEGIN \
        SET work_mem = '64MB'; SET DateStyle = 'German'; SET search_path = pg_catalog; \
        LISTEN sqljudge_leak; RETURN 1; END $$;\n\
        CREATE FUNCTION day_of() RETURNS int LANGUAGE plpgsql AS $$ BEGIN \
        RETURN (SELECT id FROM sess.t WHERE day = '01/02/2020'); END $$;\n\
        CREATE FUNCTION dmy_day_of() RETURNS int LANGUAGE sql SET DateStyle = 'ISO, DMY' \
        AS 'SELECT sess.day_of()';\n";
    let res = app.put_dataset("sess", script).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let created = app
        .problem_of(
            json!({"slug": "sess", "title": "sess", "statement": "-", "topic": "basics",
                   "dataset": "sess", "reference_sql": "SELECT id FROM t"}),
            json!({"generated_tests": 0}),
        )
        .await;
    let problem = created["id"].as_i64().unwrap();
    let token = app.user("tweaker").await;
    let pristine = "current_setting('work_mem') = '8MB' \
        AND current_setting('DateStyle') = 'ISO, MDY' \
        AND current_schemas(false)::text = '{sess}' \
        AND NOT EXISTS (SELECT FROM pg_listening_channels()) \
        AND day_of() = 1";
    for round in 0..3 {
        // The changes hold within the grading that made them (a CASE: a WHERE's conditions
        // would be reordered by cost)...
        let tweaked = app
            .grade(
                &token,
                problem,
                &format!(
                    "SELECT CASE WHEN sess.dmy_day_of() = 2 AND sess.tweak() = 1 \
                     AND current_setting('DateStyle') LIKE 'German%' \
                     AND current_setting('work_mem') = '64MB' AND {round} >= 0 THEN id END \
                     FROM sess.t"
                ),
            )
            .await;
        assert_eq!(tweaked["status"], "accepted", "round {round}: {tweaked}");
        // ...and not in the next one on the same connection.
        let next = app
            .grade(
                &token,
                problem,
                &format!("SELECT id FROM t WHERE {pristine} AND {round} >= 0"),
            )
            .await;
        assert_eq!(next["status"], "accepted", "round {round}: {next}");
    }
    // The session's time limit is the default one; a run with another sets its own for its
    // transaction alone.
    let quick = app
        .problem_of(
            json!({"slug": "sess-quick", "title": "quick", "statement": "-", "topic": "basics",
                   "dataset": "sess", "reference_sql": "SELECT id FROM t", "time_limit_ms": 500}),
            json!({"generated_tests": 0}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    let sleepy = "SELECT id FROM t, pg_sleep(0.8)";
    for (id, status) in [
        (quick, "time_limit_exceeded"),
        (problem, "accepted"),
        (quick, "time_limit_exceeded"),
    ] {
        let graded = app.grade(&token, id, sleepy).await;
        assert_eq!(graded["status"], status, "{graded}");
    }
    let limit = "SELECT id FROM t WHERE current_setting('statement_timeout') = '2s'";
    let graded = app.grade(&token, problem, limit).await;
    assert_eq!(graded["status"], "accepted", "{graded}");
}
