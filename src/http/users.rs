//! The caller's own account and submissions.
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::AuthUser;
use super::page;
use crate::db;
use crate::db::models::{Submission, User};
use crate::error::responses;
use crate::error::ApiError;
use crate::job::Status;
use crate::job::SubmissionResult;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users/me", web::get().to(me))
        .route("/users/me/submissions", web::get().to(my_submissions));
}

#[utoipa::path(
    get,
    path = "/users/me",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = Profile),
        responses::Unauthorized,
        responses::Unavailable,
    )
)]
pub(crate) async fn me(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> Result<HttpResponse, ApiError> {
    // Not cached: a user expects their own solve to show at once.
    let id = caller.user.id;
    let solved = db::run(&state.pool, move |c| User::solved_count(c, id)).await?;
    let last_seen_at = state.sessions.last_seen(id).await?;
    let u = caller.user;
    Ok(HttpResponse::Ok().json(Profile {
        user_id: u.id,
        username: u.username,
        email: u.email,
        created_at: u.created_at,
        solved,
        is_admin: u.is_admin,
        last_seen_at,
    }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Profile {
    user_id: i64,
    username: String,
    email: String,
    created_at: DateTime<Utc>,
    /// Distinct problems solved.
    solved: i64,
    is_admin: bool,
    /// Last authenticated request, as of the last activity flush (a few seconds).
    last_seen_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct SubmissionQuery {
    problem_id: Option<i64>,
    /// Only submissions with this status (e.g. `accepted`: what the caller solved).
    #[param(value_type = Option<String>)]
    status: Option<Status>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SubmissionList {
    items: Vec<Item>,
    total: i64,
}

/// A result object with the submitted SQL beside it.
#[derive(Serialize, ToSchema)]
pub(crate) struct Item {
    #[serde(flatten)]
    result: SubmissionResult,
    sql: String,
    queue: crate::job::Queue,
}

#[utoipa::path(
    get,
    path = "/users/me/submissions",
    tag = "accounts",
    params(SubmissionQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Newest first", body = SubmissionList),
        responses::Invalid,
        responses::Unauthorized,
        responses::Unavailable,
    )
)]
pub(crate) async fn my_submissions(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: web::Query<SubmissionQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = page(query.limit, query.offset, 20, 100)?;
    let (user_id, problem_id, status) = (caller.user.id, query.problem_id, query.status);
    let (items, total) = db::run(&state.pool, move |c| {
        Submission::list_for_user(c, user_id, problem_id, status, limit, offset)
    })
    .await?;
    let items: Vec<Item> = items
        .into_iter()
        .map(|s| Item {
            result: SubmissionResult::from(&s),
            sql: s.sql_query,
            queue: s.queue,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SubmissionList { items, total }))
}
