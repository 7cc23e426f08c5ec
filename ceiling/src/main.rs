//! The ceiling of `POST /problems/submit` on this machine, for `scripts/bench`: the same HTTP
//! server (actix-web, one worker per core), the same JSON body parsed (`{problem_id, sql,
//! request_id?}`, same size limit) and one `LPUSH` of a job to Redis over a multiplexed
//! connection, answered 202 with a job id. No authentication, no database, no logging: what
//! sqljudge does beyond this is what its submit path costs.
//!
//! Environment: `CEILING_BIND` (default 127.0.0.1:8090), `REDIS_URL` (redis://127.0.0.1:6379),
//! `CEILING_KEY_PREFIX` (default `ceiling:`; its list is `<prefix>queue`). The list is trimmed to
//! its newest 10,000 jobs every second so Redis's memory stays bounded; deleting the key
//! afterwards is the caller's job.
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// sqljudge's `server.max_json_bytes`.
const MAX_JSON_BYTES: usize = 524_288;
const KEEP: isize = 10_000;

#[derive(Deserialize)]
struct SubmitBody {
    problem_id: i64,
    sql: String,
    request_id: Option<String>,
}

#[derive(Serialize)]
struct Job<'a> {
    job_id: Uuid,
    problem_id: i64,
    sql: &'a str,
    request_id: Option<&'a str>,
}

struct Queue {
    conn: ConnectionManager,
    key: String,
}

async fn submit(queue: web::Data<Queue>, body: web::Json<SubmitBody>) -> HttpResponse {
    let job_id = Uuid::new_v4();
    let job = Job {
        job_id,
        problem_id: body.problem_id,
        sql: &body.sql,
        request_id: body.request_id.as_deref(),
    };
    let json = serde_json::to_string(&job).expect("a job serialises");
    let mut conn = queue.conn.clone();
    match conn.lpush::<_, _, ()>(&queue.key, json).await {
        Ok(()) => HttpResponse::Accepted()
            .json(serde_json::json!({"job_id": job_id, "status": "queued", "queue": "redis"})),
        Err(e) => HttpResponse::ServiceUnavailable().body(e.to_string()),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let bind = env("CEILING_BIND", "127.0.0.1:8090");
    let key = format!("{}queue", env("CEILING_KEY_PREFIX", "ceiling:"));
    let client = redis::Client::open(env("REDIS_URL", "redis://127.0.0.1:6379"))
        .map_err(std::io::Error::other)?;
    let conn = ConnectionManager::new(client)
        .await
        .map_err(std::io::Error::other)?;
    let mut trimmer = conn.clone();
    let trimmed = key.clone();
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let _: redis::RedisResult<()> = trimmer.ltrim(&trimmed, 0, KEEP - 1).await;
        }
    });
    let queue = web::Data::new(Queue { conn, key });
    println!("ceiling listening on {bind}");
    HttpServer::new(move || {
        App::new()
            .app_data(queue.clone())
            .app_data(web::JsonConfig::default().limit(MAX_JSON_BYTES))
            .route("/problems/submit", web::post().to(submit))
    })
    .bind(&bind)?
    .run()
    .await
}
