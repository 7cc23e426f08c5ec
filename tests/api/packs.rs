//! Problem packs through the command line a teacher uses: `sqljudge pack import` of a
//! pgexercises checkout, `pack export` to a `.tar.gz` and back (nothing changes), an edited pack
//! (only what changed), and packs that are refused or partly fail.
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
use sqljudge_testkit::app::{Options, TestApp};

/// A checkout in pgexercises' own layout, small: the dump as the site loads it (its database,
/// user and grants around schema `cd`, COPY blocks, the database made read-only at the end).
const CLUBDATA: &str = "--\n-- PostgreSQL database dump\n--\nCREATE DATABASE exercises;\n\
CREATE USER pgexercises with password '' VALID UNTIL 'infinity';\n\
ALTER USER pgexercises SET statement_timeout = 750;\n\
GRANT CONNECT ON DATABASE exercises TO pgexercises;\n\\c exercises\nCREATE SCHEMA cd;\n\
GRANT USAGE ON SCHEMA cd TO pgexercises;\nREVOKE ALL PRIVILEGES ON SCHEMA PUBLIC FROM pgexercises;\n\
SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\nSET search_path = cd, pg_catalog;\n\
SET default_with_oids = false;\n\
CREATE TABLE facilities (\n    facid integer NOT NULL,\n    name character varying(100) NOT NULL,\n    membercost numeric NOT NULL\n);\n\
CREATE TABLE members (\n    memid integer NOT NULL,\n    surname character varying(200) NOT NULL,\n    recommendedby integer\n);\n\
COPY facilities (facid, name, membercost) FROM stdin;\n0\tTennis Court 1\t5\n1\tTennis Court 2\t5\n2\tBadminton Court\t0\n3\tTable Tennis\t0\n4\tMassage Room 1\t35\n\\.\n\
COPY members (memid, surname, recommendedby) FROM stdin;\n0\tGUEST\t\\N\n1\tSmith\t\\N\n2\tSmith\t1\n3\tRownam\t\\N\n4\tJoplette\t1\n5\tButters\t3\n\\.\n\
ALTER TABLE ONLY facilities\n    ADD CONSTRAINT facilities_pk PRIMARY KEY (facid);\n\
ALTER TABLE ONLY members\n    ADD CONSTRAINT members_pk PRIMARY KEY (memid);\n\
ALTER TABLE ONLY members\n    ADD CONSTRAINT fk_members_recommendedby FOREIGN KEY (recommendedby) REFERENCES members(memid) ON DELETE SET NULL;\n\
CREATE INDEX \"members.recommendedby\"\n  ON cd.members\n  USING btree\n  (recommendedby);\n\
alter database exercises set default_transaction_read_only = on;\nGRANT SELECT ON ALL TABLES IN SCHEMA cd TO pgexercises;\nANALYZE;\n";

fn question(
    name: &str,
    question: &str,
    query: &str,
    sorted: bool,
    returns: Option<&str>,
) -> String {
    format!(
        "|QUESTIONNAME|\n{name}\n|QUESTION|\n{question}\n|QUERY|\n{query}\n|ANSWER|\n<p>Because.</p>\n|HINT|\nTry <c>WHERE</c>.\n|SORTED|\n{}\n|PAGEID|\n15ACAD5C-9A3E\n|WRITEABLE|\n{}\n{}",
        sorted as u8,
        returns.is_some() as u8,
        returns.map(|t| format!("|RETURNTABLE|\n{t}\n")).unwrap_or_default(),
    )
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("sqljudge-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.0.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sqljudge pack <args>` on the app's databases: exit code, stdout, stderr.
fn pack(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sqljudge"))
        .arg("pack")
        .args(args)
        .envs(app.env_for_process(0))
        .env("RUST_LOG", "warn")
        .output()
        .expect("sqljudge runs");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

/// `pack import --json`: the report's entries by item, as their change.
fn imported(app: &TestApp, args: &[&str]) -> (i32, Vec<(String, String)>) {
    let mut all = vec!["import", "--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = pack(app, &all);
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout}\n{stderr}"));
    let entries = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["item"].as_str().unwrap().to_string(),
                e["change"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (code, entries)
}

fn changed(entries: &[(String, String)]) -> Vec<(&str, &str)> {
    entries
        .iter()
        .filter(|(_, c)| c != "unchanged")
        .map(|(i, c)| (i.as_str(), c.as_str()))
        .collect()
}

/// The status `sql` is graded with.
async fn status(app: &TestApp, token: &str, problem: i64, sql: &str) -> Value {
    app.grade(token, problem, sql).await["status"].clone()
}

fn checkout() -> Dir {
    let repo = Dir::new("pgexercises");
    repo.write("database/clubdata.sql", CLUBDATA);
    repo.write(
        "questions/basic/00010000-selectall.ex",
        &question(
            "Retrieve everything from a table",
            "How can you retrieve all the information from the <c>cd.facilities</c> table?",
            "select * from cd.facilities;",
            false,
            None,
        ),
    );
    repo.write(
        "questions/basic/00020000-sorted.ex",
        &question(
            "Sort the surnames",
            "Surnames, A to Z, without repeats.",
            "select distinct surname from cd.members order by surname",
            true,
            None,
        ),
    );
    repo.write(
        "questions/updates/00040000-update.ex",
        &question(
            "Update some existing data",
            "Court 2 costs 10 per member &amp; slot.",
            "update cd.facilities\n    set membercost = 10\n    where facid = 1;",
            true,
            Some("cd.facilities"),
        ),
    );
    repo.write(
        "questions/basic/index",
        "|CATNAME|\nSimple SQL Queries\n|CATDESC|\n<p>Basics.</p>\n",
    );
    repo
}

#[actix_web::test]
async fn a_pgexercises_checkout_imports_and_an_export_imports_unchanged() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    let repo = checkout();
    let path = repo.0.to_str().unwrap();
    let (code, entries) = imported(&app, &["--from", "pgexercises", path]);
    assert_eq!(code, 0, "{entries:?}");
    assert_eq!(
        changed(&entries),
        [
            ("dataset cd", "created"),
            ("problem pgex-basic-selectall", "created"),
            ("problem pgex-basic-sorted", "created"),
            ("problem pgex-updates-update", "created"),
        ]
    );

    // The problems grade as any other: a read, an ordered read, a data change.
    let token = app.user("teacher_pack").await;
    let all = app.problem_id("pgex-basic-selectall").await;
    let detail: Value = app.problem(all).await;
    assert_eq!(detail["topic"], "basic");
    assert_eq!(detail["difficulty"], "easy");
    assert!(detail["statement"].as_str().unwrap().starts_with("How can you retrieve all the information from the `cd.facilities` table?\n\nHint: Try `WHERE`."), "{detail}");
    assert_eq!(
        status(
            &app,
            &token,
            all,
            "SELECT facid, name, membercost FROM facilities"
        )
        .await,
        "accepted"
    );
    assert_eq!(
        status(&app, &token, all, "SELECT facid, name FROM facilities").await,
        "wrong_answer"
    );
    let sorted = app.problem_id("pgex-basic-sorted").await;
    let detail: Value = app.problem(sorted).await;
    assert_eq!(detail["ordered"], true);
    let wrong = app
        .grade(
            &token,
            sorted,
            "SELECT DISTINCT surname FROM members ORDER BY surname DESC",
        )
        .await;
    assert_eq!(
        (wrong["status"].as_str(), wrong["reason"].as_str()),
        (Some("wrong_answer"), Some("order")),
        "{wrong}"
    );
    let update = app.problem_id("pgex-updates-update").await;
    assert_eq!(
        status(
            &app,
            &token,
            update,
            "UPDATE facilities SET membercost = 10 WHERE name = 'Tennis Court 2'"
        )
        .await,
        "accepted"
    );
    assert_eq!(
        status(
            &app,
            &token,
            update,
            "UPDATE facilities SET membercost = 10"
        )
        .await,
        "wrong_answer"
    );

    // Importing again, or an export of it (directory or .tar.gz), changes nothing.
    let (code, entries) = imported(&app, &["--from", "pgexercises", path]);
    assert_eq!((code, changed(&entries)), (0, vec![]));
    let out = Dir::new("export");
    let archive = out.0.join("club.tar.gz");
    let (code, stdout, stderr) = pack(&app, &["export", archive.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("1 datasets, 0 tests, 3 problems"),
        "{stdout}"
    );
    let (code, entries) = imported(&app, &[archive.to_str().unwrap()]);
    assert_eq!((code, changed(&entries), entries.len()), (0, vec![], 4));

    // An edited pack: a new hidden test and a retitled problem change, nothing else.
    let dir = out.0.join("club");
    let (code, _, stderr) = pack(&app, &["export", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let sample = std::fs::read_to_string(dir.join("datasets/cd.sql")).unwrap();
    let more = sample.replace(
        "4\tMassage Room 1\t35\n",
        "4\tMassage Room 1\t35\n5\tSquash Court\t3.5\n",
    );
    assert_ne!(more, sample);
    std::fs::create_dir_all(dir.join("tests/cd")).unwrap();
    std::fs::write(dir.join("tests/cd/1.sql"), more).unwrap();
    let problems = dir.join("problems.json");
    let mut list: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&problems).unwrap()).unwrap();
    list[0]["title"] = json!("Everything about the facilities");
    std::fs::write(&problems, serde_json::to_string(&list).unwrap()).unwrap();
    let (code, entries) = imported(&app, &[dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{entries:?}");
    assert_eq!(
        changed(&entries),
        [
            ("test cd/1", "created"),
            ("problem pgex-basic-selectall", "updated")
        ]
    );
    let detail: Value = app.problem(all).await;
    assert_eq!(detail["title"], "Everything about the facilities");
    assert_eq!(
        detail["tests"]["hidden"].as_u64().map(|n| n >= 1),
        Some(true),
        "{detail}"
    );
}

#[actix_web::test]
async fn bad_packs_are_refused_and_a_failing_problem_fails_alone() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        ..Default::default()
    })
    .await;
    let dir = Dir::new("bad-pack");
    let path = dir.0.to_str().unwrap();
    // No manifest, another format, broken JSON: refused with a message, nothing imported.
    for (manifest, why) in [
        (None, "pack.json is missing"),
        (Some(r#"{"format": 2, "name": "future"}"#), "pack format 2"),
        (Some(r#"{"format": 1,"#), "pack.json"),
    ] {
        if let Some(m) = manifest {
            dir.write("pack.json", m);
        }
        let (code, stdout, stderr) = pack(&app, &["import", path]);
        assert_ne!(code, 0, "{manifest:?}: {stdout}");
        assert!(stderr.contains(why), "{manifest:?}: {stderr}");
    }
    let (code, _, stderr) = pack(&app, &["import", "/nonexistent/pack.tar.gz"]);
    assert!(
        code != 0 && stderr.contains("/nonexistent/pack.tar.gz"),
        "{stderr}"
    );

    // One problem's reference fails: it is reported, exit 1, the rest is imported.
    dir.write("pack.json", r#"{"format": 1, "name": "mixed"}"#);
    dir.write("datasets/zoo.sql", "CREATE SCHEMA zoo; CREATE TABLE zoo.animals (name text); INSERT INTO zoo.animals VALUES ('okapi'), ('ibis');");
    dir.write("problems.json", &json!([
        {"slug": "zoo-all", "title": "All", "statement": "All animals.", "topic": "zoo", "dataset": "zoo", "reference_sql": "SELECT name FROM animals"},
        {"slug": "zoo-broken", "title": "Broken", "statement": "?", "topic": "zoo", "dataset": "zoo", "reference_sql": "SELECT nope FROM animals"},
        {"slug": "zoo-elsewhere", "title": "Elsewhere", "statement": "?", "topic": "zoo", "dataset": "nowhere", "reference_sql": "SELECT 1"},
    ]).to_string());
    let (code, entries) = imported(&app, &[path]);
    assert_eq!(code, 1);
    assert_eq!(
        changed(&entries),
        [
            ("dataset zoo", "created"),
            ("problem zoo-all", "created"),
            ("problem zoo-broken", "failed"),
            ("problem zoo-elsewhere", "failed")
        ]
    );
    let (_, stdout, _) = pack(&app, &["import", path]);
    assert!(
        stdout.contains("problem zoo-broken: failed")
            && stdout.contains("0 created, 0 updated, 2 unchanged, 2 failed"),
        "{stdout}"
    );
    let listed: Vec<Value> = app
        .get("/problems?topic=zoo", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}
