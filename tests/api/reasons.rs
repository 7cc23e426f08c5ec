//! Wrong answers say why (API.md v1.1 `reason`, `failed_test`), and ordered problems accept
//! any order among rows that tie on the sort key.
use serde_json::{json, Value};
use sqljudge_testkit::app::TestApp;

const SCORES: &str = "CREATE SCHEMA ties;
CREATE TABLE ties.scores (name text PRIMARY KEY, score integer, note text);
INSERT INTO ties.scores VALUES ('a', 1, ''), ('b', 2, NULL), ('c', 2, 'x'), ('d', 3, 'y'), ('e', 2, 'z');";

async fn with_scores() -> TestApp {
    TestApp::with_dataset("ties", SCORES).await
}

/// Creates an ordered problem on `ties`; the problem object.
async fn problem(app: &TestApp, slug: &str, reference: &str, extra: Value) -> Value {
    let base = json!({
        "slug": slug, "title": slug, "statement": "Scores.", "topic": "ordering",
        "dataset": "ties", "reference_sql": reference, "ordered": true,
    });
    app.problem_of(base, extra).await
}

#[actix_web::test]
async fn ties_on_the_sort_key_are_free_and_wrong_answers_name_their_reason() {
    let app = with_scores().await;
    let token = app.user("tie").await;
    let by_score = problem(
        &app,
        "by-score",
        "SELECT name, score FROM ties.scores ORDER BY score",
        json!({}),
    )
    .await["id"]
        .as_i64()
        .unwrap();

    // b, c and e tie on the score: any order of them is right.
    for order in ["score, name", "score, name DESC", "2, note NULLS FIRST"] {
        let sql = format!("SELECT name, score FROM ties.scores ORDER BY {order}");
        let result = app.grade(&token, by_score, &sql).await;
        assert_eq!(result["status"], "accepted", "{sql}: {result}");
        assert_eq!(result["reason"], Value::Null);
        assert_eq!(result["failed_test"], Value::Null);
    }

    // Each wrong answer names the first reason of the contract's list that applies.
    let cases = [
        ("SELECT name, score FROM ties.scores ORDER BY score DESC", "order"),
        ("SELECT name FROM ties.scores ORDER BY score", "column_count"),
        (
            "SELECT name, score FROM ties.scores UNION ALL SELECT name, score FROM ties.scores WHERE name = 'a' ORDER BY score",
            "duplicates",
        ),
        (
            "SELECT name, score::numeric(4,1) FROM ties.scores ORDER BY score",
            "numeric_format",
        ),
        (
            "SELECT name, score FROM ties.scores WHERE score > 1 ORDER BY score",
            "row_count",
        ),
        ("SELECT upper(name), score FROM ties.scores ORDER BY score", "values"),
    ];
    for (sql, reason) in cases {
        let result = app.grade(&token, by_score, sql).await;
        assert_eq!(result["status"], "wrong_answer", "{sql}: {result}");
        assert_eq!(result["reason"], reason, "{sql}: {result}");
        assert_eq!(result["failed_test"], json!({"index": 0, "hidden": false}));
    }
    let notes = problem(
        &app,
        "notes",
        "SELECT name, note FROM ties.scores ORDER BY name",
        json!({}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let result = app
        .grade(
            &token,
            notes,
            "SELECT name, coalesce(note, '') FROM ties.scores ORDER BY name",
        )
        .await;
    assert_eq!(result["reason"], "null_vs_empty", "{result}");

    // The reference orders fully, but the author says only the score matters.
    let keyed = problem(
        &app,
        "keyed",
        "SELECT name, score FROM ties.scores ORDER BY score, name",
        json!({"order_key": [2]}),
    )
    .await;
    assert_eq!(keyed["order_key"], json!([2]), "{keyed}");
    let keyed = keyed["id"].as_i64().unwrap();
    let sql = "SELECT name, score FROM ties.scores ORDER BY score, name DESC";
    assert_eq!(app.grade(&token, keyed, sql).await["status"], "accepted");
    // Without an order_key the reference's full ORDER BY is the key.
    let strict = problem(
        &app,
        "strict",
        "SELECT name, score FROM ties.scores ORDER BY score, name",
        json!({}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let result = app.grade(&token, strict, sql).await;
    assert_eq!(
        (&result["status"], &result["reason"]),
        (&json!("wrong_answer"), &json!("order"))
    );
}

#[actix_web::test]
async fn order_keys_are_validated() {
    let app = with_scores().await;
    let base = json!({
        "slug": "k", "title": "k", "statement": "s", "topic": "ordering", "dataset": "ties",
        "reference_sql": "SELECT name, score FROM ties.scores ORDER BY score", "ordered": true,
    });
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, status) in [
        (json!({"order_key": [3]}), 422),
        (json!({"order_key": [0]}), 400),
        (json!({"order_key": [1, 1]}), 400),
        (json!({"order_key": []}), 400),
        (json!({"order_key": [1], "ordered": false}), 400),
        (json!({"order_key": ["1"]}), 400),
        (json!({"order_key": [1, 2]}), 201),
    ] {
        let res = app.create_problem(&with(extra.clone())).await;
        let code = res.status().as_u16();
        let body: Value = res.json().await.unwrap();
        assert_eq!(code, status, "{extra}: {body}");
        if status != 201 {
            assert!(body["error"]["message"].is_string(), "{body}");
        }
    }
}

#[actix_web::test]
async fn verdict_feedback_tells_only_the_status_and_the_failed_test() {
    let app = with_scores().await;
    let token = app.user("contestant").await;
    let contest = problem(
        &app,
        "contest",
        "SELECT name, score FROM ties.scores ORDER BY score",
        json!({"feedback": "verdict"}),
    )
    .await;
    assert_eq!(contest["feedback"], "verdict", "{contest}");
    let id = contest["id"].as_i64().unwrap();
    let public: Value = app.problem(id).await;
    assert_eq!(public["feedback"], "verdict", "{public}");
    let wrong = app
        .grade(
            &token,
            id,
            "SELECT name, score FROM ties.scores ORDER BY score DESC",
        )
        .await;
    assert_eq!(wrong["status"], "wrong_answer", "{wrong}");
    assert_eq!(wrong["failed_test"], json!({"index": 0, "hidden": false}));
    for hidden in [
        "diff",
        "reason",
        "message",
        "rows_returned",
        "expected_rows",
        "sqlstate",
    ] {
        assert_eq!(wrong[hidden], Value::Null, "{hidden} shown: {wrong}");
    }
    let error = app
        .grade(&token, id, "SELECT secret_column FROM ties.scores")
        .await;
    assert_eq!(error["status"], "sql_error", "{error}");
    assert_eq!(
        (&error["message"], &error["sqlstate"]),
        (&Value::Null, &Value::Null)
    );
    let right = app
        .grade(
            &token,
            id,
            "SELECT name, score FROM ties.scores ORDER BY 2, 1",
        )
        .await;
    assert_eq!(right["status"], "accepted", "{right}");

    let res = app
        .create_problem(&json!({
            "slug": "bad-feedback", "title": "t", "statement": "s", "topic": "ordering",
            "dataset": "ties", "reference_sql": "SELECT 1", "feedback": "hints",
        }))
        .await;
    assert_eq!(res.status(), 400);
}

/// pgexercises' "threejoin2" (costly bookings of 2012-09-14, `ORDER BY cost DESC`) on its own
/// data: several bookings cost the same, and any order among them is right.
#[actix_web::test]
async fn pgexercises_bookings_that_cost_the_same_may_come_in_any_order() {
    let app = TestApp::with_dataset("cd", include_str!("fixtures/pgexercises-club.sql")).await;
    let select = "SELECT mems.firstname || ' ' || mems.surname AS member, facs.name AS facility, \
        CASE WHEN mems.memid = 0 THEN bks.slots * facs.guestcost ELSE bks.slots * facs.membercost END AS cost \
        FROM cd.members mems JOIN cd.bookings bks ON mems.memid = bks.memid \
        JOIN cd.facilities facs ON bks.facid = facs.facid \
        WHERE bks.starttime >= '2012-09-14' AND bks.starttime < '2012-09-15' AND ( \
          (mems.memid = 0 AND bks.slots * facs.guestcost > 30) OR \
          (mems.memid != 0 AND bks.slots * facs.membercost > 30))";
    let created = app
        .create_problem(&json!({"slug": "threejoin2", "title": "Costly bookings",
            "statement": "Bookings of 2012-09-14 costing more than $30, most expensive first.",
            "topic": "joins", "dataset": "cd", "ordered": true,
            "reference_sql": format!("{select} ORDER BY cost DESC")}))
        .await;
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_i64().unwrap();
    let token = app.user("pgx").await;

    // The data has ties on the cost, or this would prove nothing.
    let rows: Value = app
        .run(&token, id, &format!("{select} ORDER BY cost DESC"))
        .await
        .json()
        .await
        .unwrap();
    let costs: Vec<&Value> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r[2])
        .collect();
    let distinct: std::collections::HashSet<String> = costs.iter().map(|c| c.to_string()).collect();
    assert!(costs.len() >= 10 && distinct.len() < costs.len(), "{rows}");

    for tiebreak in [
        "member",
        "member DESC",
        "facility DESC, member",
        "2, 1 DESC",
    ] {
        let sql = format!("{select} ORDER BY cost DESC, {tiebreak}");
        let result = app.grade(&token, id, &sql).await;
        assert_eq!(result["status"], "accepted", "{tiebreak}: {result}");
    }
    let ascending = app
        .grade(&token, id, &format!("{select} ORDER BY cost"))
        .await;
    assert_eq!(ascending["status"], "wrong_answer", "{ascending}");
    assert_eq!(ascending["reason"], "order");
}
