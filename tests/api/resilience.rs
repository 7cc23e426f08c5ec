//! Jobs survive executors that fail, duplicate deliveries and lost Redis state: every
//! acknowledged submission gets exactly one final record.
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use redis::Commands;
use serde_json::Value;
use sqljudge::actors::executor::Restart;
use sqljudge::db::models::{NewSubmission, Submission};
use sqljudge::grading::sandbox::{Run, RunSpec, Sandbox, Slot};
use sqljudge::job::{Job, Queue, TestData};
use sqljudge_testkit::app::{count, Options, TestApp};

fn rows_for(app: &TestApp, table: &str, column: &str, job_id: &str) -> i64 {
    count(
        &mut app.platform_db(),
        &format!("SELECT count(*) AS n FROM {table} WHERE {column} = '{job_id}'"),
    )
}

async fn wait_running(app: &TestApp, job_id: &str) {
    let started = Instant::now();
    loop {
        let status: Option<String> = app
            .redis()
            .hget(app.key(&format!("problems:processing:{job_id}")), "status")
            .unwrap();
        if status.as_deref() == Some("running") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "job never started"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn an_executor_killed_mid_job_is_restarted_and_the_job_graded_once() {
    let app = TestApp::spawn_with(Options {
        demo: true,
        workers: 1,
        ..Default::default()
    })
    .await;
    let token = app.user("patient").await;
    let uk = app.problem_id("uk-customers").await;
    let res = app
        .submit(
            &token,
            uk,
            "SELECT name FROM customers, pg_sleep(1) WHERE country = 'UK'",
        )
        .await;
    let job: Value = res.json().await.unwrap();
    let job_id = job["job_id"].as_str().unwrap().to_string();
    wait_running(&app, &job_id).await;
    app.state.executors.executors[0]
        .send(Restart)
        .await
        .unwrap();

    let result = app
        .wait_final(&token, &job_id, Duration::from_secs(15))
        .await;
    assert_eq!(result["status"], "accepted");
    assert_eq!(
        app.state.executors.status[0]
            .restarts
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the supervisor restarted the executor"
    );
    assert_eq!(rows_for(&app, "submissions", "id", &job_id), 1);
    assert_eq!(rows_for(&app, "first_solves", "submission_id", &job_id), 1);
    // The service goes on.
    let next = app.grade(&token, uk, "SELECT 1").await;
    assert_eq!(next["status"], "wrong_answer");
}

/// Stores a queued submission in Postgres as the submit path does, without queueing it.
async fn stored_job(app: &TestApp, token: &str, sql: &str, age: chrono::Duration) -> Job {
    let job = Job {
        job_id: uuid::Uuid::new_v4(),
        user_id: app.user_id(token).await,
        problem_id: app.problem_id("uk-customers").await,
        sql: sql.to_string(),
        request_id: None,
        submitted_at: Utc::now() - age,
        rejudge: false,
    };
    let record = job.clone();
    sqljudge::db::run(&app.state.pool, move |c| {
        Submission::insert_idempotent(c, &NewSubmission::queued(&record, Queue::Redis))
    })
    .await
    .unwrap();
    job
}

#[actix_web::test]
async fn orphaned_and_duplicated_jobs_are_graded_and_recorded_once() {
    let app = TestApp::spawn_with(Options {
        demo: true,
        workers: 2,
        ..Default::default()
    })
    .await;
    let token = app.user("orphans").await;
    let sql = "SELECT name FROM customers WHERE country = 'UK'";

    // Taken by an executor that died before it could lease the job.
    let orphan = stored_job(&app, &token, sql, chrono::Duration::zero()).await;
    let _: () = app
        .redis()
        .lpush(
            app.key("problems:inflight"),
            serde_json::to_string(&orphan).unwrap(),
        )
        .unwrap();
    // Delivered three times.
    let duplicated = stored_job(&app, &token, sql, chrono::Duration::zero()).await;
    app.state.queue.enqueue(&duplicated).await.unwrap();
    app.state.queue.enqueue(&duplicated).await.unwrap();
    app.state.queue.enqueue(&duplicated).await.unwrap();
    // Known to Postgres only (e.g. Redis lost it): the re-sweep queues it.
    let forgotten = stored_job(&app, &token, sql, chrono::Duration::minutes(5)).await;

    for job in [&orphan, &duplicated, &forgotten] {
        let id = job.job_id.to_string();
        let result = app.wait_final(&token, &id, Duration::from_secs(15)).await;
        assert_eq!(result["status"], "accepted", "{id}");
        assert_eq!(rows_for(&app, "submissions", "id", &id), 1);
    }
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let solves = count(
        &mut app.platform_db(),
        "SELECT count(*) AS n FROM first_solves",
    );
    assert_eq!(solves, 1, "one first solve whatever was replayed");
    let graded: Vec<Value> = app
        .get("/users/me/submissions", Some(&token))
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(graded.len(), 3);
    let inflight: i64 = app.redis().llen(app.key("problems:inflight")).unwrap();
    assert_eq!(inflight, 0, "nothing left in flight");
    let recording: i64 = app.redis().llen(app.key("problems:recording")).unwrap();
    assert_eq!(recording, 0, "nothing left being recorded");
}

/// Runs a query of every dataset's on `slot`, which must answer with rows.
async fn rows(slot: &mut Slot, dataset: &str, data: TestData) {
    let spec = RunSpec {
        dataset,
        data,
        sql: "SELECT 1",
        time_limit_ms: 2000,
        check_table: None,
        prelude: None,
    };
    let run = slot.run(&spec).await.expect("a connection");
    assert!(matches!(run, Run::Rows(_)), "{run:?}");
}

/// Dataset `crowd` with `tests` uploaded tests: its databases, the sample's first.
async fn crowd_dataset(app: &TestApp, tests: i16) -> Vec<TestData> {
    let script =
        "CREATE SCHEMA crowd; CREATE TABLE crowd.t (x int); INSERT INTO crowd.t VALUES (1);";
    let res = app.put_dataset("crowd", script).await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    for n in 1..=tests {
        let res = app.put_test("crowd", &n.to_string(), script).await;
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    }
    [TestData::Sample]
        .into_iter()
        .chain((1..=tests).map(TestData::Uploaded))
        .collect()
}

/// A slot does not fail for want of a connection while idle ones of its own process take the
/// room: with room for three connections (loading a dataset takes two), four slots each
/// keeping one make room in turn.
#[actix_web::test]
async fn a_slot_closes_idle_connections_to_make_room() {
    let app = TestApp::spawn_with(Options {
        workers: 0,
        tweak: Some(|s| s.sandbox.connection_limit = 3),
        ..Options::default()
    })
    .await;
    let sandbox = &app.state.sandbox;
    let mut slots = [900, 901, 902, 903].map(|index| sandbox.slot(index, Default::default()));
    for turn in [0, 1, 2, 3, 0] {
        rows(&mut slots[turn], "shop", TestData::Sample).await;
    }
}

/// Processes share the limit (`sandbox.connection_limit` counts the connections of all of
/// them): one whose next connection meets it closes some of its idle ones and tries again.
#[actix_web::test]
async fn a_process_that_meets_the_limit_closes_idle_connections_of_its_own() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        tweak: Some(|s| s.sandbox.connection_limit = 10),
        ..Options::default()
    })
    .await;
    let data = crowd_dataset(&app, 5).await;
    // Another process's sandbox (same server, roles and limit).
    let other = Arc::new(Sandbox::new(app.state.sandbox.settings().clone()).unwrap());
    let mut ours = app.state.sandbox.slot(900, Default::default());
    let mut theirs = other.slot(0, Default::default());
    // Each keeps an idle connection to five databases: ten, the limit.
    for &d in &data[..5] {
        rows(&mut ours, "crowd", d).await;
        rows(&mut theirs, "crowd", d).await;
    }
    // The sixth database: ours makes room, then theirs finds it.
    rows(&mut ours, "crowd", data[5]).await;
    rows(&mut theirs, "crowd", data[5]).await;
}

/// Another process's idle connections hold the limit's room for `idle_connection_secs` at
/// most: the sandbox server closes them, even while that process does nothing at all.
#[actix_web::test]
async fn the_idle_connections_of_another_process_make_room_in_time() {
    let app = TestApp::spawn_with(Options {
        demo: false,
        workers: 0,
        tweak: Some(|s| {
            s.sandbox.connection_limit = 4;
            s.sandbox.idle_connection_secs = 1;
        }),
        ..Options::default()
    })
    .await;
    let data = crowd_dataset(&app, 3).await;
    // Another process, sized for a larger limit: it keeps an idle connection to each of the
    // four databases, as many as the role may have.
    let mut settings = app.state.sandbox.settings().clone();
    settings.connection_limit = 10;
    let other = Arc::new(Sandbox::new(settings).unwrap());
    let mut theirs = other.slot(0, Default::default());
    for &d in &data {
        rows(&mut theirs, "crowd", d).await;
    }
    let mut ours = app.state.sandbox.slot(900, Default::default());
    rows(&mut ours, "crowd", TestData::Sample).await;
}

/// The same through the executors: four of them, which keep up to five idle connections each,
/// grade a problem in five databases with room for six connections.
#[actix_web::test]
async fn executors_make_room_under_a_connection_limit_below_their_idle_connections() {
    let app = TestApp::spawn_with(Options {
        workers: 4,
        tweak: Some(|s| s.sandbox.connection_limit = 6),
        ..Options::default()
    })
    .await;
    let problem = app.problem_id("uk-customers").await;
    let mut jobs = Vec::new();
    // Several users, so that the fair queue lets every executor grade at once.
    for u in 0..4 {
        let token = app.user(&format!("crowd{u}")).await;
        for i in 0..6 {
            // Unlike texts: the verdict cache answers none of them.
            let sql =
                format!("SELECT name FROM customers WHERE country = 'UK' AND {u}{i} = {u}{i}");
            let res = app.submit(&token, problem, &sql).await;
            assert_eq!(res.status(), 202);
            let job: Value = res.json().await.unwrap();
            jobs.push((token.clone(), job["job_id"].as_str().unwrap().to_string()));
        }
    }
    for (token, id) in &jobs {
        let result = app.wait_final(token, id, Duration::from_secs(60)).await;
        assert_eq!(result["status"], "accepted", "{result}");
    }
}

/// The name (its first 15 bytes) and niceness of each thread of this process.
fn thread_niceness() -> Vec<(String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // ended meanwhile
        };
        threads.push(name_and_niceness(&stat));
    }
    threads
}

/// A thread's name and niceness from its `/proc/.../stat`: "tid (name) state ppid ...", the
/// name possibly holding spaces and parentheses.
fn name_and_niceness(stat: &str) -> (String, i64) {
    let (head, tail) = stat.rsplit_once(')').unwrap();
    let name = head.split_once('(').unwrap().1.to_string();
    (
        name,
        tail.split_whitespace().nth(16).unwrap().parse().unwrap(),
    )
}

#[actix_web::test]
async fn executors_grade_on_a_thread_of_their_own_at_the_configured_niceness() {
    let app = TestApp::spawn_with(Options {
        workers: 2,
        tweak: Some(|s| s.executor.nice = 7.try_into().unwrap()),
        ..Default::default()
    })
    .await;
    let token = app.user("niced").await;
    let uk = app.problem_id("uk-customers").await;
    let graded = app
        .grade(
            &token,
            uk,
            "SELECT name FROM customers WHERE country = 'UK'",
        )
        .await;
    assert_eq!(graded["status"], "accepted");

    // Arbiters: the executors' thread, and the HTTP workers (this test's and others', whose
    // executors run at the test kit's 0 steps down), at the niceness of the test's own thread.
    let threads = thread_niceness();
    let base = name_and_niceness(&std::fs::read_to_string("/proc/thread-self/stat").unwrap()).1;
    let lowered = (base + 7).min(19);
    let arbiters: Vec<i64> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("actix-rt"))
        .map(|(_, nice)| *nice)
        .collect();
    assert!(
        arbiters.iter().all(|nice| [base, lowered].contains(nice)),
        "{threads:?}"
    );
    assert!(
        arbiters.iter().filter(|nice| **nice == base).count() >= 2,
        "HTTP workers keep the process's priority: {threads:?}"
    );
    if lowered > base {
        assert_eq!(
            arbiters.iter().filter(|nice| **nice == lowered).count(),
            1,
            "one thread for the executors, 7 steps down: {threads:?}"
        );
    }
}
