//! The sandbox's privilege model: solutions cannot change settings or reach functions that run
//! query text or write large objects; a solution reaches its own problem's dataset only; and
//! dataset scripts run as an unprivileged owner role, their views and functions never running
//! with more rights than the grading role.
use diesel::RunQueryDsl;
use serde_json::{json, Value};
use sqljudge_testkit::app::{count, Options, TestApp};

/// Grades each attack and asserts a permission error (SQLSTATE 42501): not accepted, and not
/// an infrastructure failure either.
async fn assert_denied(app: &TestApp, token: &str, problem: i64, attacks: &[&str]) {
    for sql in attacks {
        let result = app.grade(token, problem, sql).await;
        assert_eq!(result["status"], "sql_error", "{sql} => {result}");
        assert_eq!(result["sqlstate"], "42501", "{sql} => {result}");
    }
}

async fn problem(app: &TestApp, body: Value) -> i64 {
    let res = app.create_problem(&body).await;
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

#[actix_web::test]
async fn solutions_cannot_change_settings_or_run_hidden_sql() {
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let token = app.user("mallory").await;
    // True when the session has the settings the sandbox gives its roles: checked by the
    // reference slot now, and by the executor's connection after the attacks.
    let settings = "SELECT current_setting('work_mem') = '8MB' AND current_setting('trace_sort') = 'off' \
        AND current_setting('client_encoding') = 'UTF8' AND current_setting('hash_mem_multiplier') = '1' \
        AND current_setting('max_parallel_workers_per_gather') = '0' AND current_setting('jit') = 'off' \
        AND current_setting('DateStyle') = 'ISO, MDY' AND current_setting('log_min_error_statement') = 'panic'";
    let probe = problem(
        &app,
        json!({"slug": "probe", "title": "Probe", "statement": "t", "topic": "basics",
               "dataset": "shop", "reference_sql": settings}),
    )
    .await;
    assert_eq!(
        app.grade(&token, probe, "SELECT true").await["status"],
        "accepted"
    );
    let uk = app.problem_id("uk-customers").await;
    assert_denied(
        &app,
        &token,
        uk,
        &[
            // set_config, however it is reached.
            "SELECT set_config('work_mem', '1600MB', false)",
            "SELECT pg_catalog.set_config('trace_sort', 'on', false)",
            "SELECT \"pg_catalog\".\"set_config\"('client_encoding', 'LATIN1', false)",
            "WITH s AS (SELECT set_config('work_mem', '1600MB', false) AS v) SELECT v FROM s",
            "SELECT name FROM customers WHERE set_config('DateStyle', 'German', false) IS NOT NULL",
            "SELECT query_to_xml('SELECT set_config(''work_mem'', ''1600MB'', false)', true, false, '')",
            // Every function that runs query text.
            "SELECT query_to_xml('SELECT 1', true, false, '')",
            "SELECT query_to_xmlschema('SELECT 1', true, false, '')",
            "SELECT query_to_xml_and_xmlschema('SELECT 1', true, false, '')",
            "SELECT cursor_to_xml('c'::refcursor, 1, true, false, '')",
            "SELECT cursor_to_xmlschema('c'::refcursor, true, false, '')",
            "SELECT table_to_xml('customers', true, false, '')",
            "SELECT table_to_xmlschema('customers', true, false, '')",
            "SELECT table_to_xml_and_xmlschema('customers', true, false, '')",
            "SELECT schema_to_xml('shop', true, false, '')",
            "SELECT schema_to_xmlschema('shop', true, false, '')",
            "SELECT schema_to_xml_and_xmlschema('shop', true, false, '')",
            "SELECT database_to_xml(true, false, '')",
            "SELECT database_to_xmlschema(true, false, '')",
            "SELECT database_to_xml_and_xmlschema(true, false, '')",
            "SELECT * FROM ts_stat('SELECT to_tsvector(name) FROM customers')",
            "SELECT * FROM ts_stat('SELECT to_tsvector(name) FROM customers', 'ab')",
            "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery')",
            // Large objects write even in a READ ONLY transaction; WAL messages likewise.
            "SELECT lo_creat(-1)",
            "SELECT lo_create(0)",
            "SELECT lo_from_bytea(0, 'x')",
            "SELECT lo_put(1, 0, 'x')",
            "SELECT lo_get(1)",
            "SELECT lo_open(1, 131072)",
            "SELECT loread(0, 10)",
            "SELECT lowrite(0, 'x')",
            "SELECT lo_unlink(1)",
            "SELECT pg_logical_emit_message(false, 'x', repeat('x', 1000))",
        ],
    )
    .await;
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            "SELECT count(*) AS n FROM pg_largeobject_metadata"
        ),
        0
    );
    // The same executor connection still has every setting it started with.
    let same = app
        .grade(&token, probe, &format!("{settings} AND true"))
        .await;
    assert_eq!(same["status"], "accepted", "{same}");
    // What solutions legitimately use still works.
    let fine = app
        .grade(
            &token,
            uk,
            "SELECT name FROM customers WHERE country = current_setting('server_encoding')::text \
             OR country = 'UK'",
        )
        .await;
    assert_eq!(fine["status"], "accepted", "{fine}");
}

const VAULT: &str = "CREATE TABLE secrets (id serial PRIMARY KEY, secret text);\n\
INSERT INTO secrets (secret) VALUES ('s3cr3t');\n\
CREATE FUNCTION reveal() RETURNS text LANGUAGE sql AS 'SELECT secret FROM vault.secrets';\n\
CREATE VIEW open_secrets AS SELECT secret FROM secrets;\n";

#[actix_web::test]
async fn a_solution_reaches_only_its_own_dataset() {
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    assert_eq!(app.put_dataset("vault", VAULT).await.status(), 201);
    // A dataset name of 48 characters: its role names are shortened to 63 bytes.
    let long = "a_dataset_with_a_name_as_long_as_the_api_permits";
    assert_eq!(long.len(), 48);
    assert_eq!(
        app.put_dataset(long, "CREATE TABLE t (a int); INSERT INTO t VALUES (7);")
            .await
            .status(),
        201
    );
    let long_problem = problem(
        &app,
        json!({"slug": "long", "title": "Long", "statement": "t", "topic": "basics",
               "dataset": long, "reference_sql": "SELECT a FROM t"}),
    )
    .await;
    let token = app.user("mallory").await;
    assert_eq!(
        app.grade(&token, long_problem, "TABLE t").await["status"],
        "accepted"
    );
    let uk = app.problem_id("uk-customers").await;
    let purge = app.problem_id("purge-cancelled").await;
    let hire = app.problem_id("hire-jun").await;
    // A dataset whose own functions try to switch to another dataset's roles (statically,
    // through dynamic SQL): a grading's login role is a member of nothing, so there is nowhere
    // to switch to. A function's `SET role` clause is refused when the dataset loads (its owner
    // is a member of nothing either).
    let prefix = app.state.settings.sandbox.role_prefix.clone();
    let switch = format!(
        "CREATE TABLE t (a int); INSERT INTO t VALUES (1);\n\
         CREATE FUNCTION peek() RETURNS text LANGUAGE plpgsql AS $$ BEGIN SET LOCAL ROLE \"{prefix}_dr_vault\"; \
         RETURN (SELECT secret FROM vault.secrets LIMIT 1); END $$;\n\
         CREATE FUNCTION peek_dynamic(r text) RETURNS text LANGUAGE plpgsql AS $$ DECLARE s text; BEGIN \
         EXECUTE format('SET ROLE %I', r); EXECUTE 'SELECT secret FROM vault.secrets LIMIT 1' INTO s; RETURN s; END $$;\n\
         CREATE FUNCTION peek_reset() RETURNS text LANGUAGE plpgsql AS $$ BEGIN RESET ROLE; SET ROLE \"{prefix}_dw_hr\"; \
         RETURN (SELECT count(*) FROM hr.employees)::text; END $$;\n"
    );
    let loaded = app.put_dataset("switcher", &switch).await;
    assert_eq!(loaded.status(), 201, "{}", loaded.text().await.unwrap());
    let clause = format!(
        "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql SET role = '{prefix}_dr_vault' \
         AS $$ BEGIN RETURN (SELECT secret FROM vault.secrets LIMIT 1); END $$;"
    );
    assert_eq!(app.put_dataset("clause", &clause).await.status(), 422);
    let switcher = problem(
        &app,
        json!({"slug": "switcher", "title": "Switch", "statement": "t", "topic": "basics",
               "dataset": "switcher", "reference_sql": "SELECT a FROM t"}),
    )
    .await;
    assert_denied(
        &app,
        &token,
        switcher,
        &[
            "SELECT peek()",
            &format!("SELECT peek_dynamic('{prefix}_dr_vault')"),
            &format!("SELECT peek_dynamic('{prefix}_o_vault')"),
            &format!("SELECT peek_dynamic('{prefix}_dr_shop')"),
            "SELECT peek_reset()",
        ],
    )
    .await;
    // Reads of another dataset, however they are spelled.
    assert_denied(
        &app,
        &token,
        uk,
        &[
            "SELECT * FROM vault.secrets",
            "SELECT secret FROM \"vault\".\"secrets\"",
            "SELECT * FROM vault.open_secrets",
            "SELECT vault.reveal()",
            "SELECT * FROM hr.employees",
            "WITH x AS (SELECT * FROM vault.secrets) SELECT name FROM customers, x",
            &format!("TABLE {long}.t"),
        ],
    )
    .await;
    // Writes to another dataset from a writeable problem: rows, sequences, row locks.
    let seq_before = count(
        &mut app.sandbox_db(),
        "SELECT last_value AS n FROM hr.employees_id_seq",
    );
    assert_denied(
        &app,
        &token,
        purge,
        &[
            "SELECT setval('hr.employees_id_seq', 1000)",
            "SELECT nextval('hr.employees_id_seq')",
            "SELECT nextval('vault.secrets_id_seq')",
            "UPDATE hr.employees SET salary = 0",
            "DELETE FROM vault.secrets",
            "INSERT INTO vault.secrets (secret) VALUES ('x')",
            "SELECT * FROM hr.employees FOR UPDATE",
            "WITH gone AS (DELETE FROM hr.employees RETURNING id) DELETE FROM order_items WHERE product_id IN (SELECT id FROM gone)",
        ],
    )
    .await;
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            "SELECT last_value AS n FROM hr.employees_id_seq"
        ),
        seq_before
    );
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            "SELECT count(*) AS n FROM vault.secrets"
        ),
        1
    );
    // The other problems are intact.
    let insert = "INSERT INTO hr.employees (name, department_id, salary, hired_on) VALUES ('Jun', 4, 5000, '2024-09-01')";
    assert_eq!(app.grade(&token, hire, insert).await["status"], "accepted");
    assert_eq!(
        app.grade(
            &token,
            uk,
            "SELECT name FROM customers WHERE country = 'UK'"
        )
        .await["status"],
        "accepted"
    );
    // The roles: NOINHERIT and members of nothing; every login role has a connection limit;
    // nothing the sandbox creates is privileged; a grading role reads its own dataset only.
    let prefix = &app.state.settings.sandbox.role_prefix;
    let like = format!("'{}\\_%'", prefix.replace('_', "\\_"));
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            &format!(
                "SELECT count(*) AS n FROM pg_roles WHERE rolname LIKE {like} AND (rolinherit \
                 OR rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls OR rolreplication \
                 OR (rolcanlogin AND rolconnlimit < 1) OR length(rolname) > 63 \
                 OR oid IN (SELECT member FROM pg_auth_members))"
            )
        ),
        0
    );
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            &format!(
                "SELECT count(*) AS n FROM pg_roles r, pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace \
                 WHERE r.rolname ~ '^{prefix}_d[rw]_' AND s.nspname IN ('shop', 'hr', 'vault') AND c.relkind IN ('r', 'v', 'S') \
                 AND r.rolname NOT IN ('{prefix}_dr_' || s.nspname, '{prefix}_dw_' || s.nspname) \
                 AND has_table_privilege(r.oid, c.oid, 'SELECT')"
            )
        ),
        0
    );
}

#[actix_web::test]
async fn dataset_scripts_run_without_privileges() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    assert_eq!(
        app.put_dataset(
            "victim",
            "CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2);"
        )
        .await
        .status(),
        201
    );
    let victim = problem(
        &app,
        json!({"slug": "victim", "title": "Victim", "statement": "t", "topic": "basics",
               "dataset": "victim", "reference_sql": "SELECT a FROM t"}),
    )
    .await;
    let marker = format!("/tmp/sqljudge-pwned-{}", uuid::Uuid::new_v4().simple());
    let hostile = [
        format!("CREATE TABLE t (a int);\nCOPY (SELECT 1) TO PROGRAM 'touch {marker}';"),
        format!("CREATE TABLE t (a int);\nCOPY t FROM PROGRAM 'touch {marker}';"),
        "COPY (SELECT 1) TO '/tmp/sqljudge-pwned';".to_string(),
        "CREATE EXTENSION file_fdw;".to_string(),
        "CREATE EXTENSION dblink;".to_string(),
        "CREATE EXTENSION citext SCHEMA public;".to_string(),
        "CREATE EXTENSION citext SCHEMA victim;".to_string(),
        "ALTER ROLE CURRENT_USER SUPERUSER;".to_string(),
        "ALTER ROLE CURRENT_USER CREATEROLE;".to_string(),
        "GRANT pg_execute_server_program TO CURRENT_USER;".to_string(),
        "SET ROLE postgres;\nCREATE TABLE t (a int);".to_string(),
        "SET SESSION AUTHORIZATION postgres;\nCREATE TABLE t (a int);".to_string(),
        "RESET ROLE;\nCREATE TABLE t AS SELECT * FROM victim.t;".to_string(),
        "RESET SESSION AUTHORIZATION;\nCREATE TABLE t AS SELECT rolpassword FROM pg_authid;"
            .to_string(),
        "SELECT set_config('role', 'postgres', false);\nCREATE TABLE t AS SELECT * FROM victim.t;"
            .to_string(),
        "CREATE VIEW v AS SELECT * FROM victim.t;".to_string(),
        "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT count(*) FROM victim.t';"
            .to_string(),
        "CREATE TABLE t (a int);\nINSERT INTO victim.t VALUES (3);".to_string(),
        "DROP SCHEMA victim CASCADE;".to_string(),
        "ALTER TABLE victim.t RENAME TO gone;".to_string(),
        "CREATE SCHEMA elsewhere;".to_string(),
        "CREATE PUBLICATION leak;".to_string(),
        "SELECT lo_from_bytea(0, 'x');".to_string(),
    ];
    for script in &hostile {
        let res = app.put_dataset("evil", script).await;
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert!(
            status == 422 || status == 400,
            "{script} => {status} {body}"
        );
    }
    assert!(!std::path::Path::new(&marker).exists());
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            "SELECT count(*) AS n FROM pg_namespace WHERE nspname IN ('evil', 'elsewhere')"
        ),
        0
    );
    // Failed first loads leave no roles behind either.
    let prefix = &app.state.settings.sandbox.role_prefix;
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            &format!(
                "SELECT count(*) AS n FROM pg_roles WHERE rolname IN \
                 ('{prefix}_o_evil', '{prefix}_dr_evil', '{prefix}_dw_evil')"
            )
        ),
        0
    );
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            "SELECT count(*) AS n FROM pg_extension WHERE extname <> 'plpgsql'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            "SELECT count(*) AS n FROM pg_publication"
        ),
        0
    );
    assert_eq!(
        count(&mut app.sandbox_db(), "SELECT count(*) AS n FROM victim.t"),
        2
    );
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            "SELECT count(*) AS n FROM pg_roles WHERE rolsuper AND rolname NOT IN ('postgres', 'root')"
        ),
        0
    );
    let token = app.user("victim").await;
    assert_eq!(
        app.grade(&token, victim, "SELECT a FROM victim.t").await["status"],
        "accepted"
    );

    // What loads is neutralised: views check the grading role's privileges, SECURITY DEFINER
    // routines run as the caller, and the script ran as the dataset's owner.
    let neutral = "CREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\n\
        CREATE VIEW v AS SELECT a FROM t;\n\
        CREATE FUNCTION whoami() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text';\n\
        CREATE TABLE loaded_by AS SELECT current_user::text AS who, session_user::text AS sess;\n\
        RESET ROLE;\n";
    assert_eq!(app.put_dataset("neutral", neutral).await.status(), 201);
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            "SELECT count(*) AS n FROM pg_class WHERE oid = 'neutral.v'::regclass \
             AND reloptions @> '{security_invoker=true}'"
        ),
        1
    );
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            "SELECT count(*) AS n FROM pg_proc WHERE pronamespace = 'neutral'::regnamespace AND prosecdef"
        ),
        0
    );
    let prefix = &app.state.settings.sandbox.role_prefix;
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            &format!(
                "SELECT count(*) AS n FROM neutral.loaded_by WHERE who = '{prefix}_o_neutral' AND sess = who"
            )
        ),
        1
    );
    // The function runs as the grading group, not as the owner.
    let whoami = problem(
        &app,
        json!({"slug": "whoami", "title": "Who", "statement": "t", "topic": "basics",
               "dataset": "neutral", "reference_sql": "SELECT whoami()"}),
    )
    .await;
    let me = app
        .grade(&token, whoami, &format!("SELECT '{prefix}_dr_neutral'"))
        .await;
    assert_eq!(me["status"], "accepted", "{me}");
}

#[actix_web::test]
async fn datasets_loaded_by_earlier_versions_are_adopted() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    let script = "CREATE TABLE t (a int); INSERT INTO t VALUES (1);";
    assert_eq!(app.put_dataset("old", script).await.status(), 201);
    let old = problem(
        &app,
        // Earlier versions had no hidden tests.
        json!({"slug": "old", "title": "Old", "statement": "t", "topic": "basics",
               "dataset": "old", "reference_sql": "SELECT a FROM t", "generated_tests": 0}),
    )
    .await;
    // Back to what an earlier version left: everything owned by the superuser, a SECURITY
    // DEFINER function, and the groups that could read and write every dataset.
    let prefix = app.state.settings.sandbox.role_prefix.clone();
    let mut conn = app.sandbox_db();
    for sql in [
        format!("REASSIGN OWNED BY \"{prefix}_o_old\" TO postgres"),
        format!("DROP OWNED BY \"{prefix}_dr_old\", \"{prefix}_dw_old\""),
        format!("DROP ROLE \"{prefix}_dr_old\", \"{prefix}_dw_old\""),
        "CREATE FUNCTION old.f() RETURNS text LANGUAGE sql SECURITY DEFINER AS 'SELECT current_user::text'".to_string(),
        format!("CREATE ROLE \"{prefix}_read\" NOLOGIN"),
        format!("GRANT USAGE ON SCHEMA old TO \"{prefix}_read\""),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA old TO \"{prefix}_read\""),
        format!("CREATE ROLE \"{prefix}_r0\" LOGIN"),
        format!("GRANT \"{prefix}_read\" TO \"{prefix}_r0\""),
    ] {
        diesel::sql_query(sql).execute(&mut conn).unwrap();
    }
    app.state.sandbox.bootstrap().await.unwrap();
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            &format!(
                "SELECT count(*) AS n FROM pg_namespace WHERE nspname = 'old' AND nspowner = '{prefix}_o_old'::regrole"
            )
        ),
        1
    );
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            &format!(
                "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'old'::regnamespace AND relowner <> '{prefix}_o_old'::regrole) \
                 + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'old'::regnamespace AND (prosecdef OR proowner <> '{prefix}_o_old'::regrole)) AS n"
            )
        ),
        0
    );
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            &format!("SELECT count(*) AS n FROM pg_roles WHERE rolname IN ('{prefix}_read', '{prefix}_r0')")
        ),
        0
    );
    let token = app.user("legacy").await;
    assert_eq!(
        app.grade(&token, old, "TABLE t").await["status"],
        "accepted"
    );
    // And the owner can replace it.
    let res = app
        .put_dataset("old", "CREATE TABLE t (a int); INSERT INTO t VALUES (1);")
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

/// A dataset named after the admin's login owns the schema the default search path starts
/// with: functions there that match our admin calls more exactly than `pg_catalog`'s
/// (`format(text, regclass)` against `format(text, VARIADIC "any")`) must never be called as
/// the admin, not when the dataset is loaded (its routines are neutralized by such calls) nor
/// at a bootstrap.
#[actix_web::test]
async fn a_dataset_named_after_the_admin_runs_nothing_as_the_admin() {
    let app = TestApp::spawn_with(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    #[derive(diesel::QueryableByName)]
    struct Who {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let admin = diesel::sql_query("SELECT current_user::text AS name")
        .get_result::<Who>(&mut app.sandbox_db())
        .unwrap()
        .name;
    let mut script =
        format!("CREATE SCHEMA \"{admin}\";\nCREATE TABLE \"{admin}\".calls (who text);\n");
    // Each overload records a call made with a superuser's rights.
    for ty in [
        "regclass",
        "regprocedure",
        "regrole",
        "regnamespace",
        "text",
        "name",
    ] {
        script.push_str(&format!(
            "CREATE FUNCTION \"{admin}\".format(text, {ty}) RETURNS text LANGUAGE plpgsql AS $$\n\
             BEGIN\n\
               IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN\n\
                 INSERT INTO \"{admin}\".calls VALUES (current_user);\n\
               END IF;\n\
               RETURN pg_catalog.format($1, $2);\n\
             END $$;\n"
        ));
    }
    let res = app.put_dataset(&admin, &script).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    app.state.sandbox.bootstrap().await.unwrap();
    assert_eq!(
        count(
            &mut app.sandbox_db(),
            &format!("SELECT count(*) AS n FROM \"{admin}\".calls"),
        ),
        0,
        "a function of the dataset ran as the admin"
    );
}
