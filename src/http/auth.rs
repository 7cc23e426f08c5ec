//! Accounts: register, login, refresh (rotating), logout.
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{HttpServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, FromRequest, Handler, HttpResponse, Responder};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::AuthUser;
use crate::auth::{new_token, token_hash};
use crate::db::models::{is_unique_violation, AuthToken, NewUser, User, ACCESS, REFRESH};
use crate::db::{self, DbError};
use crate::error::responses;
use crate::error::ApiError;
use crate::sessions::{Account, Session};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(limited("/auth/register", register))
        .service(limited("/auth/login", login))
        .service(limited("/auth/refresh", refresh))
        .route("/auth/logout", web::post().to(logout));
}

/// A `POST` route whose every request, well-formed or not, first counts against its client
/// IP's limit.
fn limited<F, Args>(path: &str, handler: F) -> impl HttpServiceFactory
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .wrap(from_fn(limit_client))
        .route(web::post().to(handler))
}

/// Too many password checks wait already.
fn busy() -> ApiError {
    ApiError::Unavailable {
        message: "too many logins at once; retry shortly".into(),
        retry_after_secs: 1,
    }
}

async fn limit_client(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .expect("AppState is registered");
    let ip = req
        .peer_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
    if let Err(e) = state.limiter.check(state.limiter.auth, &ip).await {
        return Ok(req.error_response(e).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct Register {
    username: String,
    email: String,
    password: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct Login {
    username: String,
    password: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct Refresh {
    refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Registered {
    user_id: i64,
    username: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Tokens {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: i64,
}

fn validate(body: &Register) -> Result<(), ApiError> {
    let name_ok = (3..=32).contains(&body.username.len())
        && body
            .username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err(ApiError::Invalid(
            "username must be 3-32 characters of [A-Za-z0-9_]".into(),
        ));
    }
    let email = body.email.trim();
    let email_ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if !email_ok {
        return Err(ApiError::Invalid("email is not a valid address".into()));
    }
    if body.password.chars().count() < 8 {
        return Err(ApiError::Invalid(
            "password must be at least 8 characters".into(),
        ));
    }
    if body.password.len() > 1024 {
        return Err(ApiError::Invalid(
            "password must be at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "accounts",
    request_body = Register,
    responses(
        (status = 201, description = "Registered", body = Registered),
        responses::Invalid,
        responses::Conflict,
        responses::WrongContentType,
        responses::RateLimited,
        responses::Unavailable,
    )
)]
pub(crate) async fn register(
    state: web::Data<AppState>,
    body: web::Json<Register>,
) -> Result<HttpResponse, ApiError> {
    validate(&body)?;
    let password = body.password.clone();
    let hash = state
        .passwords
        .hash(password)
        .await
        .ok_or_else(busy)?
        .map_err(ApiError::internal)?;
    let body = body.into_inner();
    let created = db::run(&state.pool, move |c| {
        User::create(
            c,
            &NewUser {
                username: &body.username,
                email: body.email.trim(),
                password_hash: &hash,
            },
        )
    })
    .await;
    match created {
        Ok(user) => Ok(super::created(&Registered {
            user_id: user.id,
            username: user.username,
        })),
        Err(DbError::Query(e)) if is_unique_violation(&e) => Err(ApiError::Conflict(
            "username or email is already taken".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Issues an access and a refresh token for a login (`family`), storing only their hashes;
/// the access token's session also goes to Redis.
async fn issue(state: &AppState, user: &User, family: Uuid) -> Result<Tokens, ApiError> {
    let user_id = user.id;
    let (access, refresh) = (new_token(), new_token());
    let auth = &state.settings.auth;
    let rows = [
        AuthToken::new(
            token_hash(&access),
            user_id,
            ACCESS,
            family,
            auth.access_ttl_secs,
        ),
        AuthToken::new(
            token_hash(&refresh),
            user_id,
            REFRESH,
            family,
            auth.refresh_ttl_secs,
        ),
    ];
    let session = Session {
        account: Account::from(user),
        family,
        expires_at: rows[0].expires_at,
    };
    let access_hash = rows[0].token_hash.clone();
    db::run(&state.pool, move |c| AuthToken::insert_all(c, &rows)).await?;
    state.sessions.store(&access_hash, &session).await;
    Ok(Tokens {
        access_token: access,
        refresh_token: refresh,
        token_type: "Bearer",
        expires_in: auth.access_ttl_secs,
    })
}

#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "accounts",
    request_body = Login,
    responses(
        (status = 200, description = "Logged in", body = Tokens),
        responses::Invalid,
        responses::Unauthorized,
        responses::RateLimited,
        responses::Unavailable,
    )
)]
pub(crate) async fn login(
    state: web::Data<AppState>,
    body: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    let Login { username, password } = body.into_inner();
    let user = db::run(&state.pool, move |c| User::find_by_username(c, &username)).await?;
    let invalid = || ApiError::Unauthorized("invalid username or password".into());
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let verified = state
        .passwords
        .verify(password, hash)
        .await
        .ok_or_else(busy)?;
    let user = user.filter(|_| verified).ok_or_else(invalid)?;
    Ok(HttpResponse::Ok().json(issue(&state, &user, Uuid::new_v4()).await?))
}

#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "accounts",
    request_body = Refresh,
    responses(
        (status = 200, description = "New tokens; the old refresh token stops working", body = Tokens),
        responses::Invalid,
        responses::Unauthorized,
        responses::RateLimited,
        responses::Unavailable,
    )
)]
pub(crate) async fn refresh(
    state: web::Data<AppState>,
    body: web::Json<Refresh>,
) -> Result<HttpResponse, ApiError> {
    let hash = token_hash(&body.refresh_token);
    let used = db::run(&state.pool, move |c| {
        let Some((token, user)) = AuthToken::find_active(c, &hash, REFRESH)? else {
            return Ok(None);
        };
        // Revoking first makes a refresh token single-use even under concurrent refreshes.
        Ok(AuthToken::revoke(c, &hash)?.then_some((token, user)))
    })
    .await?;
    let (token, user) = used.ok_or_else(|| {
        ApiError::Unauthorized("invalid, expired or already used refresh token".into())
    })?;
    Ok(HttpResponse::Ok().json(issue(&state, &user, token.family).await?))
}

#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "accounts",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The access and refresh tokens stop working"),
        responses::Unauthorized,
        responses::Unavailable,
    )
)]
pub(crate) async fn logout(
    state: web::Data<AppState>,
    caller: AuthUser,
) -> Result<HttpResponse, ApiError> {
    state.sessions.revoke_family(caller.family).await?;
    Ok(HttpResponse::NoContent().finish())
}
