//! Admin API: datasets and problems.
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Admin;
use crate::catalog::{self, Adequacy, ProblemInput};
use crate::db;
use crate::db::models::{
    Dataset, DatasetTest, Problem, ProblemFields, Submission, TableInfo, TestCounts,
};
use crate::error::responses;
use crate::error::ApiError;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/datasets", web::get().to(list_datasets))
        .route("/admin/datasets/{name}", web::put().to(put_dataset))
        .route("/admin/datasets/{name}/tests/{n}", web::put().to(put_test))
        .route(
            "/admin/datasets/{name}/tests/{n}",
            web::delete().to(delete_test),
        )
        .route("/admin/problems", web::post().to(create_problem))
        .route("/admin/problems/{id}", web::put().to(update_problem))
        .route("/admin/problems/{id}/rejudge", web::post().to(rejudge))
        .route("/admin/problems/{id}/adequacy", web::get().to(adequacy));
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DatasetSummary {
    name: String,
    tables: Vec<TableInfo>,
    /// Its uploaded hidden tests.
    tests: Vec<TestSummary>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TestSummary {
    test: i16,
    tables: Vec<TableInfo>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LoadedTestBody {
    name: String,
    test: i16,
    tables: Vec<TableInfo>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LoadedDatasetBody {
    name: String,
    tables: Vec<TableInfo>,
    /// Problems whose reference no longer runs on a dataset loaded by an earlier version (it
    /// cannot be put back; they keep their old results). Otherwise such a load is a 422 and
    /// changes nothing.
    broken_problems: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Queued {
    /// Submissions queued for grading again.
    queued: usize,
}

/// The full problem, reference included, as admins see it.
#[derive(Serialize, ToSchema)]
pub(crate) struct AdminProblem {
    id: i64,
    #[serde(flatten)]
    fields: ProblemFields,
    time_limit_ms: i32,
    expected_columns: serde_json::Value,
    expected_row_count: usize,
    tests: TestCounts,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Problem> for AdminProblem {
    fn from(p: Problem) -> Self {
        AdminProblem {
            expected_row_count: p.expected_rows.as_array().map_or(0, Vec::len),
            tests: p.tests(),
            id: p.id,
            fields: p.fields,
            time_limit_ms: p.time_limit_ms,
            expected_columns: p.expected_columns,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[utoipa::path(
    get,
    path = "/admin/datasets",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Datasets and their tables", body = [DatasetSummary]),
        responses::Unauthorized,
        responses::Forbidden,
        responses::Unavailable,
    )
)]
pub(crate) async fn list_datasets(
    _: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (datasets, tests) = db::run(&state.pool, |c| {
        Ok((Dataset::list(c)?, DatasetTest::list(c)?))
    })
    .await?;
    let body: Vec<DatasetSummary> = datasets
        .iter()
        .map(|d| DatasetSummary {
            name: d.name.clone(),
            tables: d.table_infos(),
            tests: tests
                .iter()
                .filter(|t| t.dataset == d.name)
                .map(|t| TestSummary {
                    test: t.test,
                    tables: t.table_infos(),
                })
                .collect(),
            updated_at: d.updated_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(body))
}

#[utoipa::path(
    put,
    path = "/admin/datasets/{name}",
    tag = "admin",
    params(("name" = String, Path, description = "Schema name")),
    request_body(content = String, content_type = "application/sql", description = "A SQL script, or plain pg_dump output of one schema"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = LoadedDatasetBody),
        (status = 200, description = "Replaced", body = LoadedDatasetBody),
        responses::Invalid,
        responses::Unauthorized,
        responses::Forbidden,
        responses::TooLarge,
        responses::WrongContentType,
        responses::Unprocessable,
        responses::Unavailable,
    )
)]
pub(crate) async fn put_dataset(
    _: Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let script = read_script(&state, &req, payload).await?;
    let loaded = {
        let (state, name) = (state.clone(), name.clone());
        detached(async move { catalog::load_dataset(&state, &name, &script).await }).await?
    };
    let body = LoadedDatasetBody {
        name: name.into_inner(),
        tables: loaded.tables,
        broken_problems: loaded.broken_problems,
    };
    Ok(if loaded.replaced {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Created().json(body)
    })
}

/// Runs `work` on a task of its own: a client that hangs up must not cut a sandbox run short
/// (a writeable run holds its dataset's write turn, and puts sequences back, when it ends).
async fn detached<T: 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + 'static,
) -> Result<T, ApiError> {
    actix_web::rt::spawn(work)
        .await
        .map_err(|e| ApiError::Internal(format!("admin task: {e}")))?
}

/// A dataset or test script from a request body: SQL text within the size limit.
async fn read_script(
    state: &AppState,
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<String, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(
        content_type.as_deref(),
        Some("application/sql" | "text/plain")
    ) {
        return Err(ApiError::UnsupportedMediaType(
            "send the script as application/sql or text/plain".into(),
        ));
    }
    let limit = state.settings.server.max_dataset_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::Invalid(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "scripts are limited to {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::Invalid("the script is not UTF-8".into()))
}

/// The test number of a `/tests/{n}` path (400 when it is not a number).
fn test_number(raw: &str) -> Result<i16, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::Invalid("the test number must be 1-20".into()))
}

#[utoipa::path(
    put,
    path = "/admin/datasets/{name}/tests/{n}",
    tag = "admin",
    params(
        ("name" = String, Path, description = "Dataset name"),
        ("n" = i16, Path, description = "Hidden test number, 1-20"),
    ),
    request_body(content = String, content_type = "application/sql", description = "A script creating schema {name} with other rows in the sample's tables"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = LoadedTestBody),
        (status = 200, description = "Replaced", body = LoadedTestBody),
        responses::Invalid,
        responses::Unauthorized,
        responses::Forbidden,
        responses::NotFound,
        responses::TooLarge,
        responses::WrongContentType,
        responses::Unprocessable,
        responses::Unavailable,
    )
)]
pub(crate) async fn put_test(
    _: Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (name, n) = path.into_inner();
    let n = test_number(&n)?;
    let script = read_script(&state, &req, payload).await?;
    let loaded = {
        let (state, name) = (state.clone(), name.clone());
        detached(async move { catalog::put_test(&state, &name, n, &script).await }).await?
    };
    let body = LoadedTestBody {
        name,
        test: n,
        tables: loaded.tables,
    };
    Ok(if loaded.replaced {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Created().json(body)
    })
}

#[utoipa::path(
    delete,
    path = "/admin/datasets/{name}/tests/{n}",
    tag = "admin",
    params(
        ("name" = String, Path, description = "Dataset name"),
        ("n" = i16, Path, description = "Hidden test number, 1-20"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed; the dataset's problems were graded on the rest"),
        responses::Invalid,
        responses::Unauthorized,
        responses::Forbidden,
        responses::NotFound,
        responses::Unavailable,
    )
)]
pub(crate) async fn delete_test(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, n) = path.into_inner();
    let n = test_number(&n)?;
    detached(async move { catalog::delete_test(&state, &name, n).await }).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    post,
    path = "/admin/problems",
    tag = "admin",
    request_body = ProblemInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = AdminProblem),
        responses::Invalid,
        responses::Unauthorized,
        responses::Forbidden,
        responses::Conflict,
        responses::WrongContentType,
        responses::Unprocessable,
        responses::Unavailable,
    )
)]
pub(crate) async fn create_problem(
    _: Admin,
    state: web::Data<AppState>,
    body: web::Json<ProblemInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body.into_inner();
    let problem = detached(async move { catalog::save_problem(&state, None, input).await }).await?;
    Ok(HttpResponse::Created().json(AdminProblem::from(problem)))
}

#[utoipa::path(
    put,
    path = "/admin/problems/{id}",
    tag = "admin",
    params(("id" = i64, Path, description = "Problem id")),
    request_body = ProblemInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Replaced", body = AdminProblem),
        responses::Invalid,
        responses::Unauthorized,
        responses::Forbidden,
        responses::NotFound,
        responses::Conflict,
        responses::WrongContentType,
        responses::Unprocessable,
        responses::Unavailable,
    )
)]
pub(crate) async fn update_problem(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<i64>,
    body: web::Json<ProblemInput>,
) -> Result<HttpResponse, ApiError> {
    let (id, input) = (id.into_inner(), body.into_inner());
    let problem =
        detached(async move { catalog::save_problem(&state, Some(id), input).await }).await?;
    Ok(HttpResponse::Ok().json(AdminProblem::from(problem)))
}

/// Queues every graded submission of a problem for grading again, behind live submissions.
#[utoipa::path(
    post,
    path = "/admin/problems/{id}/rejudge",
    tag = "admin",
    params(("id" = i64, Path, description = "Problem id")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Queued behind live submissions", body = Queued),
        responses::Unauthorized,
        responses::Forbidden,
        responses::NotFound,
        responses::Unavailable,
    )
)]
pub(crate) async fn rejudge(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if !state.health.redis_up() {
        return Err(ApiError::Unavailable {
            message: "rejudging uses the Redis background queue, which is unavailable".into(),
            retry_after_secs: 5,
        });
    }
    let jobs = db::run(&state.pool, move |c| {
        if Problem::find(c, id)?.is_none() {
            return Ok(None);
        }
        Submission::rejudge_jobs(c, id).map(Some)
    })
    .await?
    .ok_or(ApiError::NotFound("problem"))?;
    for chunk in jobs.chunks(1000) {
        state.queue.enqueue_all(chunk).await.map_err(|e| {
            state
                .health
                .report_failure(crate::backends::Backend::Redis, &e);
            ApiError::Unavailable {
                message: format!("queueing the rejudge failed part way ({e}); send it again"),
                retry_after_secs: 5,
            }
        })?;
    }
    Ok(HttpResponse::Accepted().json(Queued { queued: jobs.len() }))
}

/// Grades standard mutants of the problem's reference on its tests and lists the survivors.
#[utoipa::path(
    get,
    path = "/admin/problems/{id}/adequacy",
    tag = "admin",
    params(("id" = i64, Path, description = "Problem id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Mutants graded; the survivors", body = Adequacy),
        responses::Unauthorized,
        responses::Forbidden,
        responses::NotFound,
        responses::Unprocessable,
        responses::Unavailable,
    )
)]
pub(crate) async fn adequacy(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let report = detached(async move { catalog::adequacy(&state, id).await }).await?;
    Ok(HttpResponse::Ok().json(report))
}
