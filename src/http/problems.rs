//! Public problem catalogue, submitting, and reading results.
use actix::Addr;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{self, authenticate_along, bearer, AuthUser, Principal};
use crate::actors::submission::{check_sql, CachedVerdict, SubmissionActor, Submit, SubmitError};
use crate::backends::Backend;
use crate::cache::Scope;
use crate::catalog::check_topic;
use crate::db;
use crate::db::models::{Dataset, Problem, Submission, TestCounts};
use crate::error::responses;
use crate::error::ApiError;
use crate::grading;
use crate::grading::dataset::{sample_tables, TablePreview};
use crate::grading::sandbox::{Run, SandboxError};
use crate::job::{Difficulty, Feedback, Outcome, Queue, Status, SubmissionResult};
use crate::runs::RunError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Fixed paths first: `/problems/submit` is not a problem id.
    cfg.route("/problems", web::get().to(list))
        .route("/problems/submit", web::post().to(submit))
        .route("/problems/result/{job_id}", web::get().to(result))
        .route("/problems/{id}", web::get().to(detail))
        .route("/problems/{id}/run", web::post().to(run))
        .route("/problems/{id}/dataset", web::get().to(dataset));
}

#[derive(Serialize, ToSchema)]
pub struct ProblemSummary {
    id: i64,
    slug: String,
    title: String,
    topic: String,
    dataset: String,
    ordered: bool,
    writeable: bool,
    difficulty: Difficulty,
}

impl From<&Problem> for ProblemSummary {
    fn from(p: &Problem) -> Self {
        ProblemSummary {
            id: p.id,
            slug: p.fields.slug.clone(),
            title: p.fields.title.clone(),
            topic: p.fields.topic.clone(),
            dataset: p.fields.dataset.clone(),
            ordered: p.fields.ordered,
            writeable: p.fields.writeable,
            difficulty: p.fields.difficulty,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProblemDetail {
    #[serde(flatten)]
    summary: ProblemSummary,
    statement: String,
    expected_columns: Vec<String>,
    time_limit_ms: i32,
    check_table: Option<String>,
    /// `full` or `verdict`: what results will tell.
    feedback: Feedback,
    /// The sample and how many hidden tests solutions are graded on.
    tests: TestCounts,
}

impl From<&Problem> for ProblemDetail {
    fn from(p: &Problem) -> Self {
        ProblemDetail {
            summary: p.into(),
            statement: p.fields.statement.clone(),
            expected_columns: p.expected_column_names(),
            time_limit_ms: p.time_limit_ms,
            check_table: p.fields.check_table.clone(),
            feedback: p.fields.feedback,
            tests: p.tests(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct ListQuery {
    topic: Option<String>,
}

#[utoipa::path(
    get,
    path = "/problems",
    tag = "problems",
    params(ListQuery),
    responses(
        (status = 200, description = "The catalogue (X-Cache: hit, miss or bypass)", body = [ProblemSummary]),
        responses::Invalid,
        responses::Unavailable,
    )
)]
pub(crate) async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let topic = query.into_inner().topic;
    let key = match &topic {
        None => "list".to_string(),
        Some(t) => {
            check_topic(t)?;
            format!("list:topic:{t}")
        }
    };
    // Every topic has a problem: an empty list answers a topic that does not exist, and is
    // not cached (anyone could make a key per made-up topic).
    let filtered = topic.is_some();
    state
        .cache
        .json_if(
            Scope::Problems,
            &key,
            || async {
                let problems =
                    db::run(&state.pool, move |c| Problem::list(c, topic.as_deref())).await?;
                Ok(problems
                    .iter()
                    .map(ProblemSummary::from)
                    .collect::<Vec<_>>())
            },
            |list| !(filtered && list.is_empty()),
        )
        .await
}

#[utoipa::path(
    get,
    path = "/problems/{id}",
    tag = "problems",
    params(("id" = i64, Path, description = "Problem id")),
    responses(
        (status = 200, description = "One problem", body = ProblemDetail),
        responses::NotFound,
        responses::Unavailable,
    )
)]
pub(crate) async fn detail(
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    state
        .cache
        .json(Scope::Problems, &format!("detail:{id}"), || async {
            let problem = db::run(&state.pool, move |c| Problem::find(c, id))
                .await?
                .ok_or(ApiError::NotFound("problem"))?;
            Ok(ProblemDetail::from(&problem))
        })
        .await
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct DatasetQuery {
    /// Rows shown per table, 0-100 (default 20).
    rows: Option<u32>,
}

/// The sample a problem's solutions run on, as learners read it.
#[derive(Serialize, ToSchema)]
pub(crate) struct DatasetPreview {
    /// The schema: tables are `dataset.table`, or unqualified through the search path.
    dataset: String,
    tables: Vec<TablePreview>,
}

#[utoipa::path(
    get,
    path = "/problems/{id}/dataset",
    tag = "problems",
    params(("id" = i64, Path, description = "Problem id"), DatasetQuery),
    responses(
        (status = 200, description = "The sample's tables and views: columns with their types, the first rows and the row count (hidden tests are never shown)", body = DatasetPreview),
        responses::Invalid,
        responses::NotFound,
        responses::Unavailable,
    )
)]
pub(crate) async fn dataset(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    query: web::Query<DatasetQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let rows = query.rows.unwrap_or(20);
    if rows > 100 {
        return Err(ApiError::Invalid("rows must be 0-100".into()));
    }
    let problem = db::run(&state.pool, move |c| Problem::find(c, id))
        .await?
        .ok_or(ApiError::NotFound("problem"))?;
    let name = problem.fields.dataset.clone();
    // Problems that share a dataset share its preview.
    state
        .cache
        .json(
            Scope::Problems,
            &format!("dataset:{name}:{rows}"),
            || async {
                // A few at a time: each reads the sandbox on a connection of its own.
                let _turn = PREVIEWS.acquire().await.expect("never closed");
                let lookup = name.clone();
                let counts = db::run(&state.pool, move |c| Dataset::find(c, &lookup))
                    .await?
                    .map(|d| d.table_infos())
                    .unwrap_or_default();
                let tables = sample_tables(&state.sandbox, &name, rows, &counts)
                    .await
                    .map_err(|e| {
                        log::warn!("preview of dataset {name}: {e}");
                        ApiError::Unavailable {
                            message: "the sample data cannot be read now".into(),
                            retry_after_secs: 2,
                        }
                    })?;
                Ok(DatasetPreview {
                    dataset: name.clone(),
                    tables,
                })
            },
        )
        .await
}

static PREVIEWS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

#[derive(Deserialize, ToSchema)]
pub(crate) struct SubmitBody {
    problem_id: i64,
    sql: String,
    request_id: Option<String>,
    user_id: Option<i64>,
}

/// A submit's caller and body. The caller's session and the verdict cache entry of the
/// solution (as this process knows its problem) are read in one Redis round trip, so the body
/// is read first (within `server.max_json_bytes`); a caller who is not authenticated gets 401
/// whatever the body.
pub(crate) struct SubmitRequest {
    caller: AuthUser,
    body: SubmitBody,
    verdict: Option<CachedVerdict>,
}

impl FromRequest for SubmitRequest {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (state, token) = (extract::state(req), bearer(req));
        let body = web::Json::<SubmitBody>::from_request(req, payload);
        Box::pin(async move {
            let token = token?;
            let body = body.await;
            let fingerprint = body.as_ref().ok().and_then(|b| {
                check_sql(&b.sql, state.settings.sandbox.max_sql_bytes).ok()?;
                let problem = state.problems.get(b.problem_id)?;
                let digest = grading::statement_digest(&b.sql);
                Some((grading::fingerprint_of(&problem, &digest), digest))
            });
            let key = fingerprint
                .as_ref()
                .map(|(f, _)| state.queue.keys.verdict(f));
            let (principal, read) = authenticate_along(&state, token, key.as_deref()).await?;
            Ok(SubmitRequest {
                caller: AuthUser::of(principal)?,
                body: body?.into_inner(),
                verdict: fingerprint
                    .zip(read)
                    .map(|((fingerprint, digest), json)| CachedVerdict {
                        fingerprint,
                        digest,
                        json,
                    }),
            })
        })
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::TooLarge(message) => ApiError::PayloadTooLarge(message),
            SubmitError::Invalid(message) => ApiError::Invalid(message),
            SubmitError::UnknownProblem => ApiError::NotFound("problem"),
            SubmitError::Unavailable(_) => ApiError::Unavailable {
                message: e.to_string(),
                retry_after_secs: 2,
            },
            SubmitError::Internal(ref cause) => ApiError::internal(format!("{e}: {cause}")),
        }
    }
}

#[utoipa::path(
    post,
    path = "/problems/submit",
    tag = "submissions",
    request_body = SubmitBody,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued in Redis", body = SubmitAck),
        (status = 201, description = "Redis unavailable: stored in the Postgres fallback, graded all the same", body = SubmitAck),
        (status = 200, description = "An identical solution was graded recently: its verdict, with the result fields", body = SubmitAck),
        responses::Invalid,
        responses::Unauthorized,
        responses::Forbidden,
        responses::NotFound,
        responses::TooLarge,
        responses::WrongContentType,
        responses::RateLimited,
        responses::Unavailable,
    )
)]
pub(crate) async fn submit(
    state: web::Data<AppState>,
    submissions: web::Data<Addr<SubmissionActor>>,
    request: SubmitRequest,
) -> Result<HttpResponse, ApiError> {
    let SubmitRequest {
        caller,
        body,
        verdict,
    } = request;
    state
        .limiter
        .check(state.limiter.submit, &caller.user.id.to_string())
        .await?;
    if body.user_id.is_some_and(|id| id != caller.user.id) {
        return Err(ApiError::Forbidden("user_id must be your own id".into()));
    }
    let accepted = submissions
        .send(Submit {
            user_id: caller.user.id,
            problem_id: body.problem_id,
            sql: body.sql,
            request_id: body.request_id,
            verdict,
        })
        .await
        .map_err(|e| ApiError::Unavailable {
            message: format!("submission service unavailable: {e}"),
            retry_after_secs: 1,
        })??;
    let mut response = match accepted.queue {
        Queue::Redis => HttpResponse::Accepted(),
        Queue::Cache => HttpResponse::Ok(),
        Queue::Postgres => HttpResponse::Created(),
    };
    let mut body = serde_json::to_value(SubmitAck {
        job_id: accepted.job_id,
        status: accepted.status,
        queue: accepted.queue,
        submitted_at: accepted.submitted_at,
    })
    .map_err(ApiError::internal)?;
    // A reused verdict comes with the result fields.
    if let (Some(result), Some(ack)) = (&accepted.result, body.as_object_mut()) {
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(result) {
            for (key, value) in fields {
                ack.entry(key).or_insert(value);
            }
        }
    }
    Ok(response.json(body))
}

/// The acknowledgement of a submission; a reused verdict (200) also carries the result
/// fields of `SubmissionResult`.
#[derive(Serialize, ToSchema)]
pub(crate) struct SubmitAck {
    job_id: Uuid,
    status: crate::job::Status,
    queue: Queue,
    submitted_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct RunBody {
    sql: String,
}

/// Rows a run answers with at most (API.md).
const RUN_ROWS: usize = 200;

/// What a run returned, or the verdict that stopped it.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum RunAnswer {
    Rows(RunRows),
    Stopped(RunStopped),
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum RunOk {
    Ok,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RunRows {
    status: RunOk,
    columns: Vec<String>,
    /// The first 200 rows, values as PostgreSQL's text output; for a writeable problem, the
    /// contents of `check_table` after the statement (rolled back).
    rows: Vec<Vec<Option<String>>>,
    /// Every row there was, beyond the 200 too.
    row_count: usize,
    truncated: bool,
    duration_ms: i32,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum RunStop {
    SqlError,
    TimeLimitExceeded,
    OutputLimitExceeded,
    Rejected,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RunStopped {
    status: RunStop,
    #[schema(required = true)]
    message: Option<String>,
    /// The database error's code, for `sql_error`.
    #[schema(required = true)]
    sqlstate: Option<String>,
}

impl RunAnswer {
    fn new(run: Run, duration_ms: i32) -> Result<RunAnswer, ApiError> {
        Ok(match run {
            Run::Rows(mut result) => {
                let row_count = result.rows.len();
                result.rows.truncate(RUN_ROWS);
                RunAnswer::Rows(RunRows {
                    status: RunOk::Ok,
                    columns: result.columns,
                    rows: result.rows,
                    row_count,
                    truncated: row_count > RUN_ROWS,
                    duration_ms,
                })
            }
            Run::Failed(Outcome {
                status,
                message,
                sqlstate,
                ..
            }) => RunAnswer::Stopped(RunStopped {
                status: match status {
                    Status::SqlError => RunStop::SqlError,
                    Status::TimeLimitExceeded => RunStop::TimeLimitExceeded,
                    Status::OutputLimitExceeded => RunStop::OutputLimitExceeded,
                    Status::Rejected => RunStop::Rejected,
                    other => {
                        return Err(ApiError::internal(format!(
                            "the sandbox stopped a run with {other:?}"
                        )))
                    }
                },
                message,
                sqlstate,
            }),
        })
    }
}

/// Runs a statement on the problem's sample as a submission would be graded, and answers with
/// what it returned: nothing is recorded, cached or counted.
#[utoipa::path(
    post,
    path = "/problems/{id}/run",
    tag = "submissions",
    params(("id" = i64, Path, description = "Problem id")),
    request_body = RunBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What the statement returned (`status: ok`, at most 200 rows), or the verdict that stopped it", body = RunAnswer),
        responses::Invalid,
        responses::Unauthorized,
        responses::NotFound,
        responses::TooLarge,
        responses::WrongContentType,
        responses::RateLimited,
        responses::Unavailable,
    )
)]
pub(crate) async fn run(
    state: web::Data<AppState>,
    caller: AuthUser,
    id: web::Path<i64>,
    body: web::Json<RunBody>,
) -> Result<HttpResponse, ApiError> {
    state
        .limiter
        .check(state.limiter.run, &caller.user.id.to_string())
        .await?;
    let sql = body.into_inner().sql;
    check_sql(&sql, state.settings.sandbox.max_sql_bytes)?;
    let problem = state
        .problems
        .load(&state.pool, id.into_inner(), state.health.postgres_up())
        .await?
        .ok_or(ApiError::NotFound("problem"))?;
    // A run ends within its time limit: as good a time as any to try again.
    let retry_after_secs = (problem.time_limit_ms.max(0) as u64).div_ceil(1000).max(1);
    let (run, duration_ms) = state
        .runs
        .run(caller.user.id, problem, sql)
        .await
        .map_err(|e| run_error(e, retry_after_secs))?;
    Ok(HttpResponse::Ok().json(RunAnswer::new(run, duration_ms)?))
}

fn run_error(e: RunError, retry_after_secs: u64) -> ApiError {
    let unavailable = |message: &str| ApiError::Unavailable {
        message: message.to_string(),
        retry_after_secs,
    };
    match e {
        RunError::Busy => ApiError::RateLimited { retry_after_secs },
        RunError::NoSlot => unavailable("every run slot is busy: try again"),
        // The details are the operator's, not the caller's.
        RunError::Sandbox(e) => {
            log::warn!("run: {e}");
            unavailable(match e {
                SandboxError::Interrupted(_) => {
                    "the run was interrupted by the server, not by the statement: try again"
                }
                _ => "the sandbox is unavailable: try again",
            })
        }
        RunError::Aborted(_) => ApiError::internal(e),
    }
}

/// Redis's final result first; then Postgres; then what only Redis knows (submissions
/// accepted or graded while Postgres was unreachable).
#[utoipa::path(
    get,
    path = "/problems/result/{job_id}",
    tag = "submissions",
    params(("job_id" = uuid::Uuid, Path, description = "The job id from submitting")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The submission's state or result", body = SubmissionResult),
        responses::Unauthorized,
        responses::NotFound,
        responses::Unavailable,
    )
)]
pub(crate) async fn result(
    state: web::Data<AppState>,
    caller: Principal,
    job_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let job_id = job_id.into_inner();
    let visible =
        |owner: i64| caller.is_admin || caller.user.as_ref().is_some_and(|u| u.id == owner);
    let not_found = || ApiError::NotFound("submission");
    let queue = &state.queue;
    let answer = |result: SubmissionResult| {
        if visible(result.user_id) {
            Ok(HttpResponse::Ok().json(result))
        } else {
            Err(not_found())
        }
    };
    let redis_up = state.health.redis_up();
    if redis_up {
        if let Ok(Some(mut result)) = queue
            .result(job_id)
            .await
            .map(|j| j.and_then(|j| serde_json::from_str::<SubmissionResult>(&j).ok()))
        {
            result.source = Backend::Redis;
            return answer(result);
        }
    }
    let stored = if state.health.postgres_up() {
        db::run(&state.pool, move |c| Submission::find(c, job_id)).await
    } else {
        Err(db::DbError::Task("postgres is down".into()))
    };
    let postgres_error = match stored {
        Ok(Some(stored)) => {
            let mut result = SubmissionResult::from(&stored);
            if !result.outcome.status.is_final() && redis_up {
                // Postgres says pending; Redis knows whether it is running right now.
                if let Ok(Some(p)) = queue.processing(job_id).await {
                    result.outcome.status = p.status;
                    result.source = Backend::Redis;
                }
            }
            return answer(result);
        }
        Ok(None) => None,
        Err(e) if e.is_unavailable() => Some(e),
        Err(e) => return Err(e.into()),
    };
    if redis_up {
        if let Ok(Some(p)) = queue.processing(job_id).await {
            return answer(SubmissionResult::pending(
                job_id,
                p.user_id,
                p.problem_id,
                p.submitted_at,
                p.status,
            ));
        }
        if let Ok(Some(u)) = queue.unpersisted_one(job_id).await {
            return answer(SubmissionResult::graded(&u.job, &u.outcome));
        }
    }
    Err(postgres_error.map_or_else(not_found, ApiError::from))
}
