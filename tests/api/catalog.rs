use serde_json::{json, Value};
use sqljudge_testkit::app::{Options, TestApp};

#[actix_web::test]
async fn demo_catalogue_is_listed_and_filtered() {
    let app = TestApp::spawn().await;
    let all: Vec<Value> = app.get("/problems", None).await.json().await.unwrap();
    assert!(all.len() >= 15);
    let topics: std::collections::BTreeSet<&str> =
        all.iter().map(|p| p["topic"].as_str().unwrap()).collect();
    assert!(topics.len() >= 4, "{topics:?}");
    assert!(all.iter().any(|p| p["ordered"] == true) && all.iter().any(|p| p["writeable"] == true));

    let joins: Vec<Value> = app
        .get("/problems?topic=joins", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(!joins.is_empty() && joins.iter().all(|p| p["topic"] == "joins"));

    let id = app.problem_id("three-cheapest").await;
    let detail: Value = app.problem(id).await;
    assert_eq!(detail["expected_columns"], json!(["name", "price"]));
    assert!(detail["statement"].as_str().unwrap().contains("cheapest"));
    assert!(
        detail.get("reference_sql").is_none(),
        "the reference must stay secret"
    );
    assert_eq!(app.get("/problems/999999", None).await.status(), 404);
    assert_eq!(app.get("/problems/nope", None).await.status(), 404);
}

const PG_DUMP: &str =
    "SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\
CREATE SCHEMA zoo;\nCREATE TABLE zoo.animals (id integer NOT NULL, name text, legs integer);\n\
COPY zoo.animals (id, name, legs) FROM stdin;\n1\tcat\t4\n2\tbird\t2\n3\t\\N\t0\n4\tcat\t4\n\\.\n\n\
ALTER TABLE ONLY zoo.animals ADD CONSTRAINT animals_pkey PRIMARY KEY (id);\n";

#[actix_web::test]
async fn datasets_load_atomically_from_pg_dump() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    let res = app.put_dataset("zoo", PG_DUMP).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["tables"], json!([{"name": "animals", "rows": 4}]));

    // Replacing answers 200.
    let res = app
        .put_dataset("zoo", &PG_DUMP.replace("4\tcat\t4\n", ""))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["tables"][0]["rows"], 3);

    // A failing script changes nothing.
    let broken = format!(
        "{}\nINSERT INTO zoo.animals VALUES (1, 'duplicate', 1);\n",
        PG_DUMP.replace("4\tcat\t4\n", "")
    );
    let res = app.put_dataset("zoo", &broken).await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"]["code"],
        "unprocessable_entity"
    );
    let list: Vec<Value> = app
        .get("/admin/datasets", Some(&app.admin_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["tables"][0]["rows"], 3);
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query("SELECT count(*) AS n FROM zoo.animals")
        .get_result(&mut app.sandbox_db())
        .unwrap();
    assert_eq!(n.n, 3);

    // A script that creates another schema, or is not SQL text, is refused.
    let res = app
        .put_dataset("zoo", "CREATE SCHEMA other; CREATE TABLE other.t (a int);")
        .await;
    assert_eq!(res.status(), 422);
    let res = app.put_dataset("Bad-Name", "CREATE TABLE t (a int);").await;
    assert_eq!(res.status(), 400);
    let res = app
        .put_dataset("zoo", "COPY zoo.animals FROM stdin;\n1\tx\t1\n")
        .await;
    assert_eq!(res.status(), 400);
    let res = app
        .put_dataset("zoo", "BEGIN; CREATE TABLE t (a int); COMMIT;")
        .await;
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .put(app.url("/admin/datasets/zoo"))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
}

#[actix_web::test]
async fn problems_are_validated_by_running_the_reference() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    assert_eq!(app.put_dataset("zoo", PG_DUMP).await.status(), 201);
    let problem = json!({"slug": "cats", "title": "Cats", "statement": "Names of cats", "topic": "basics",
                         "dataset": "zoo", "reference_sql": "SELECT name FROM animals WHERE name = 'cat'"});
    let res = app.create_problem(&problem).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["expected_row_count"], 2);
    assert_eq!(created["time_limit_ms"], 2000);

    assert_eq!(app.create_problem(&problem).await.status(), 409);
    let mut bad = problem.clone();
    bad["slug"] = json!("broken");
    bad["reference_sql"] = json!("SELECT nope FROM animals");
    let res = app.create_problem(&bad).await;
    assert_eq!(res.status(), 422);
    assert!(res.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nope"));
    bad["reference_sql"] = json!("SELECT 1");
    bad["dataset"] = json!("missing");
    assert_eq!(app.create_problem(&bad).await.status(), 422);
    bad["dataset"] = json!("zoo");
    bad["writeable"] = json!(true);
    assert_eq!(app.create_problem(&bad).await.status(), 400);
    bad["check_table"] = json!("other.animals");
    assert_eq!(app.create_problem(&bad).await.status(), 400);
    bad["writeable"] = json!(false);
    bad["check_table"] = Value::Null;
    bad["time_limit_ms"] = json!(0);
    assert_eq!(app.create_problem(&bad).await.status(), 400);

    // Only admins: a user's token is 403, none is 401.
    let user = app.user("plain_user").await;
    assert_eq!(
        app.post_json("/admin/problems", Some(&user), &problem)
            .await
            .status(),
        403
    );
    assert_eq!(
        app.post_json("/admin/problems", None, &problem)
            .await
            .status(),
        401
    );

    // Updating recomputes the expected result.
    let id = created["id"].as_i64().unwrap();
    let mut changed = problem.clone();
    changed["reference_sql"] = json!("SELECT name FROM animals");
    let res = app.update_problem(id, &changed).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["expected_row_count"], 4);
    let res = app.update_problem(424242, &changed).await;
    assert_eq!(res.status(), 404);
}
