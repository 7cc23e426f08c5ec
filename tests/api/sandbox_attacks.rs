//! The sandbox against hostile solutions. Each attack must end in a non-accepted verdict
//! (never a 5xx, never a hung executor) and leave datasets, the platform and other gradings
//! untouched.
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqljudge_testkit::app::{count, Options, TestApp};

#[actix_web::test]
async fn hostile_solutions_are_contained() {
    let app = TestApp::spawn_with(Options {
        demo: true,
        workers: 0,
        ..Default::default()
    })
    .await;
    let token = app.user("mallory").await;
    let uk = app.problem_id("uk-customers").await;
    let attacks: &[(&str, &[&str])] = &[
        // Smuggling a second statement past a naive splitter, and transaction control.
        (
            "SELECT name FROM customers WHERE country = 'UK' /* ; */ ; DROP TABLE shop.customers",
            &["rejected"],
        ),
        ("SELECT $x$;$x$; DELETE FROM shop.customers", &["rejected"]),
        (
            "SELECT 'a\\'; DELETE FROM shop.customers; --'",
            &["rejected"],
        ),
        ("COMMIT; DROP TABLE shop.customers", &["rejected"]),
        (
            "/* /* nested */ SELECT */ DROP TABLE shop.customers",
            &["rejected"],
        ),
        ("ROLLBACK", &["rejected"]),
        (
            "DO $$ BEGIN LOOP PERFORM pg_sleep(1); END LOOP; END $$",
            &["rejected"],
        ),
        ("COPY shop.customers FROM STDIN", &["rejected"]),
        ("COPY (SELECT 1) TO PROGRAM 'id'", &["rejected"]),
        ("LISTEN leak", &["rejected"]),
        ("PREPARE p AS SELECT 1", &["rejected"]),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", &["rejected"]),
        ("SET statement_timeout = 0", &["rejected"]),
        ("RESET ROLE", &["rejected"]),
        ("SET SESSION AUTHORIZATION postgres", &["rejected"]),
        // Escaping the role, reading or disturbing other sessions.
        (
            "SELECT set_config('role', 'postgres', false)",
            &["sql_error"],
        ),
        ("SELECT query FROM pg_stat_activity", &["sql_error"]),
        // What earlier gradings on this connection left (the reset closes it all).
        (
            "SELECT statement FROM pg_prepared_statements",
            &["sql_error"],
        ),
        (
            "SELECT statement FROM pg_prepared_statement()",
            &["sql_error"],
        ),
        ("SELECT statement FROM pg_cursors", &["sql_error"]),
        ("SELECT statement FROM pg_cursor()", &["sql_error"]),
        // An earlier grading's table statistics, which a session keeps through the reset for
        // up to a second, everyone's since, and the locks of concurrent gradings.
        (
            "SELECT relname, idx_tup_fetch FROM pg_stat_user_tables",
            &["sql_error"],
        ),
        (
            "SELECT relname, heap_blks_hit FROM pg_statio_user_tables",
            &["sql_error"],
        ),
        (
            "SELECT relname, seq_scan, idx_tup_fetch FROM pg_stat_xact_user_tables",
            &["sql_error"],
        ),
        (
            "SELECT pg_stat_get_xact_tuples_returned('shop.customers'::regclass)",
            &["sql_error"],
        ),
        (
            "SELECT relation::regclass::text FROM pg_locks",
            &["sql_error"],
        ),
        ("SELECT locktype FROM pg_lock_status()", &["sql_error"]),
        // System columns: an earlier grading's rolled-back writes and row locks (the aborted
        // transaction in xmax), its dead rows (ctid).
        ("SELECT xmax::text FROM customers", &["rejected"]),
        ("SELECT \"cmin\"::text FROM customers", &["rejected"]),
        (
            "SELECT id, E''\n'\\' ' AS pad, xmax::text FROM orders --'",
            &["rejected"],
        ),
        ("SELECT xmax(c)::text FROM customers c", &["rejected"]),
        (
            "SELECT name FROM customers c WHERE c.XMIN::text <> '' /* xmin */",
            &["rejected"],
        ),
        (
            "SELECT (SELECT max(o.cmax::text) FROM orders o)",
            &["rejected"],
        ),
        ("SELECT U&\"\\0078max\"::text FROM customers", &["rejected"]),
        // What measures others' writes, and a transaction id taken in a read-only one.
        ("SELECT pg_relation_size('shop.customers')", &["sql_error"]),
        ("SELECT pg_current_wal_insert_lsn()::text", &["sql_error"]),
        ("SELECT pg_current_snapshot()::text", &["sql_error"]),
        ("SELECT pg_current_xact_id()::text", &["sql_error"]),
        ("SELECT txid_current()", &["sql_error"]),
        ("SELECT age('3'::xid)", &["sql_error"]),
        ("SELECT mxid_age('1'::xid)", &["sql_error"]),
        (
            "SELECT currtid2('customers', '(0,1)'::tid)::text",
            &["sql_error"],
        ),
        (
            "SELECT next_xid FROM pg_control_checkpoint()",
            &["sql_error"],
        ),
        ("SELECT pg_xact_status('1'::xid8)", &["sql_error"]),
        (
            "SELECT pg_isolation_test_session_is_blocked(1, ARRAY[2])",
            &["sql_error"],
        ),
        (
            "SELECT pg_stat_get_backend_activity(s) FROM pg_stat_get_backend_idset() s",
            &["sql_error"],
        ),
        (
            "SELECT pg_cancel_backend(pid) FROM pg_locks",
            &["sql_error"],
        ),
        ("SELECT pg_terminate_backend(1)", &["sql_error"]),
        ("SELECT pg_advisory_lock(42)", &["sql_error"]),
        (
            "SELECT pg_advisory_xact_lock(g) FROM generate_series(1, 100000) g",
            &["sql_error"],
        ),
        ("SELECT pg_read_file('/etc/passwd')", &["sql_error"]),
        ("SELECT rolpassword FROM pg_authid", &["sql_error"]),
        ("SELECT * FROM sqljudge.public.users", &["sql_error"]),
        // Changing data in a read-only problem, or creating objects.
        (
            "WITH gone AS (DELETE FROM customers RETURNING name) SELECT name FROM gone",
            &["rejected", "sql_error"],
        ),
        (
            "SELECT * INTO TEMP stash FROM customers",
            &["rejected", "sql_error"],
        ),
        (
            "SELECT lo_import('/etc/passwd')",
            &["rejected", "sql_error"],
        ),
        // Limits that must hold whatever the SQL does.
        (
            "SELECT set_config('statement_timeout', '0', true), pg_sleep(4)",
            &["sql_error", "time_limit_exceeded"],
        ),
        (
            "SELECT repeat('x', 50000000)::int",
            &["output_limit_exceeded"],
        ),
        (
            "SELECT repeat(md5(g::text), 1000) FROM generate_series(1, 5000) g",
            &["output_limit_exceeded"],
        ),
    ];
    let mut conn = app.sandbox_db();
    let before = count(&mut conn, "SELECT count(*) AS n FROM shop.customers");
    for (sql, allowed) in attacks {
        let started = Instant::now();
        let result = app.grade(&token, uk, sql).await;
        let status = result["status"].as_str().unwrap();
        assert!(allowed.contains(&status), "{sql} => {result}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{sql} took {:?}",
            started.elapsed()
        );
        if let Some(m) = result["message"].as_str() {
            assert!(m.len() <= 2100, "message of {} bytes for {sql}", m.len());
        }
    }
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM shop.customers"),
        before
    );

    // Session settings a solution changes do not leak into the next grading on the same
    // connection (one executor: same slot).
    let latest = app.problem_id("latest-order").await;
    let leak = app
        .grade(
            &token,
            latest,
            "SELECT set_config('DateStyle', 'German', false)",
        )
        .await;
    assert_ne!(leak["status"], "accepted", "{leak}");
    let fine = app
        .grade(&token, latest, "SELECT c.name, max(o.ordered_at) FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name")
        .await;
    assert_eq!(fine["status"], "accepted", "{fine}");

    // Sequence state survives ROLLBACK in a session; DISCARD ALL must clear it before the
    // next grading on the same write connection.
    let hire = app.problem_id("hire-jun").await;
    let insert = "INSERT INTO hr.employees (name, department_id, salary, hired_on) VALUES ('Jun', 4, 5000, '2024-09-01')";
    assert_eq!(app.grade(&token, hire, insert).await["status"], "accepted");
    let peek = app.grade(&token, hire, "SELECT lastval()").await;
    assert_eq!(peek["status"], "sql_error", "{peek}");
    assert_eq!(peek["sqlstate"], "55000");

    // Mistakes the server finds while binding and planning a statement are verdicts with
    // their own SQLSTATE: a parameter no value is bound to (not the server's failure, retried),
    // a constant that cannot be computed.
    for (sql, sqlstate) in [
        ("SELECT name FROM customers WHERE country = $1", "42P02"),
        ("SELECT name FROM customers WHERE 1/0 = 1", "22012"),
        (
            "SELECT name FROM customers WHERE id = 'x'::text::int",
            "22P02",
        ),
    ] {
        let result = app.grade(&token, uk, sql).await;
        assert_eq!(result["status"], "sql_error", "{sql} => {result}");
        assert_eq!(result["sqlstate"], sqlstate, "{sql} => {result}");
    }
}

/// A read-only run goes out in one round trip, its parse check and the statement together: a
/// text the parse check refuses must not run at all, not even its first statement. Here that
/// one would sleep for the whole (long) time limit.
#[actix_web::test]
async fn a_refused_text_is_not_run_behind_its_parse_check() {
    let app = TestApp::spawn_with(Options {
        demo: true,
        workers: 0,
        ..Default::default()
    })
    .await;
    let token = app.user("mallory").await;
    let slow = app
        .problem_of(
            json!({"slug": "slow-uk", "title": "UK", "statement": "UK customers.",
                   "topic": "basics", "dataset": "shop",
                   "reference_sql": "SELECT name FROM customers WHERE country = 'UK'"}),
            json!({"time_limit_ms": 10000}),
        )
        .await;
    let id = slow["id"].as_i64().unwrap();
    for sql in [
        "SELECT pg_sleep(9); SELECT 1",
        "SELECT pg_sleep(9) /* ; */ ; COMMIT; SELECT 1",
        "WITH s AS (SELECT pg_sleep(9)) SELECT * FROM s; ROLLBACK",
    ] {
        let started = Instant::now();
        let result = app.grade(&token, id, sql).await;
        assert_eq!(result["status"], "rejected", "{sql} => {result}");
        assert_eq!(result["message"], "exactly one SQL statement is allowed");
        // A margin of seconds: the sleep would take 9.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{sql} ran: {:?}",
            started.elapsed()
        );
    }
    // A result of a row type has the parse check look the type up after its answer, behind
    // the statement and the reset: read all the same, and the connection stays usable...
    let row_typed = "SELECT c FROM customers c WHERE country = 'UK'";
    let result = app.grade(&token, id, row_typed).await;
    assert_eq!(result["status"], "wrong_answer", "{result}");
    // ...and a flood of them stops at the row limit, not waiting for that lookup.
    let flood = "SELECT c FROM customers c, customers a, customers b, customers d, customers e, customers f";
    let result = app.grade(&token, id, flood).await;
    assert_eq!(result["status"], "output_limit_exceeded", "{result}");
    let message = result["message"].as_str().unwrap();
    assert!(message.starts_with("the result has more than"), "{result}");
    let fine = app
        .grade(
            &token,
            id,
            "SELECT name FROM customers WHERE 'UK' = country",
        )
        .await;
    assert_eq!(fine["status"], "accepted", "{fine}");
}

const STUBBORN: &str = "CREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\n\
CREATE FUNCTION stubborn() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  LOOP\n    BEGIN\n      PERFORM pg_sleep(0.05);\n    \
EXCEPTION WHEN query_canceled THEN NULL;\n    END;\n  END LOOP;\nEND $$;\n";

#[actix_web::test]
async fn a_solution_that_swallows_cancels_is_stopped_from_outside() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    assert_eq!(app.put_dataset("trap", STUBBORN).await.status(), 201);
    let res = app
        .create_problem(&json!({"slug": "trap", "title": "Trap", "statement": "One row", "topic": "basics",
                                "dataset": "trap", "reference_sql": "SELECT a FROM t", "time_limit_ms": 500}))
        .await;
    assert_eq!(res.status(), 201);
    let problem: Value = res.json().await.unwrap();
    let token = app.user("stubborn").await;
    let started = Instant::now();
    let result = app
        .grade(&token, problem["id"].as_i64().unwrap(), "SELECT stubborn()")
        .await;
    assert_eq!(result["status"], "time_limit_exceeded");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    // The backend is gone, not looping on.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let running = count(
        &mut app.sandbox_db(),
        "SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%stubborn()%' AND pid <> pg_backend_pid()",
    );
    assert_eq!(running, 0);
    // And the executor grades the next job normally.
    let ok = app
        .grade(&token, problem["id"].as_i64().unwrap(), "SELECT a FROM t")
        .await;
    assert_eq!(ok["status"], "accepted");
}
