//! Who is calling: bearer tokens of users, or the configured admin token.
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use uuid::Uuid;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::actors::health::Backend;
use crate::auth::{constant_time_eq, token_hash};
use crate::db;
use crate::db::models::{AuthToken, User, ACCESS};
use crate::error::ApiError;
use crate::startup::AppState;

/// The account behind a token, as cached in Redis (`session:{hash}`) for Postgres outages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
}

impl From<&User> for Account {
    fn from(u: &User) -> Self {
        Account {
            id: u.id,
            username: u.username.clone(),
            email: u.email.clone(),
            is_admin: u.is_admin,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    account: Account,
    family: Uuid,
    expires_at: DateTime<Utc>,
}

/// How long a validated token may be honoured from Redis while Postgres is unreachable.
const SESSION_CACHE_SECS: i64 = 300;

/// An authenticated caller: a user (with the login the token belongs to), or the holder of
/// the configured admin token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: Option<Account>,
    pub family: Option<Uuid>,
    pub is_admin: bool,
}

/// A caller who is a user account.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: Account,
    pub family: Uuid,
}

/// A caller allowed to use the admin API.
#[derive(Debug, Clone)]
pub struct Admin;

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_string())
        }
        _ => Err(ApiError::Unauthorized(
            "expected Authorization: Bearer <token>".into(),
        )),
    }
}

pub async fn authenticate(state: &AppState, token: String) -> Result<Principal, ApiError> {
    let admin_token = &state.settings.auth.admin_token;
    if !admin_token.is_empty() && constant_time_eq(&token, admin_token) {
        return Ok(Principal {
            user: None,
            family: None,
            is_admin: true,
        });
    }
    let hash = token_hash(&token);
    // Postgres decides whenever it answers, so a revoked token never outlives its revocation.
    let lookup = hash.clone();
    let session = match db::run(&state.pool, move |c| {
        AuthToken::find_active(c, &lookup, ACCESS)
    })
    .await
    {
        Ok(Some((token, user))) => {
            let session = Session {
                account: Account::from(&user),
                family: token.family,
                expires_at: token.expires_at,
            };
            let ttl = (token.expires_at - Utc::now())
                .num_seconds()
                .clamp(1, SESSION_CACHE_SECS);
            if state.health.redis_up() {
                // Off the request path: a hanging Redis must not slow authentication down.
                let (queue, health, cached) =
                    (state.queue.clone(), state.health.clone(), session.clone());
                actix_web::rt::spawn(async move {
                    if let Err(e) = queue.cache_session(&hash, &cached, ttl as u64).await {
                        health.report_failure(Backend::Redis, e);
                    }
                });
            }
            session
        }
        Ok(None) => return Err(ApiError::Unauthorized("invalid or expired token".into())),
        Err(e) if e.is_unavailable() => match state.queue.session::<Session>(&hash).await {
            Ok(Some(s)) if s.expires_at > Utc::now() => s,
            Ok(_) => return Err(ApiError::Unauthorized("invalid or expired token".into())),
            Err(_) => return Err(e.into()),
        },
        Err(e) => return Err(e.into()),
    };
    Ok(Principal {
        is_admin: session.account.is_admin,
        user: Some(session.account),
        family: Some(session.family),
    })
}

fn state(req: &HttpRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .expect("AppState is registered")
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (state, token) = (state(req), bearer(req));
        Box::pin(async move { authenticate(&state, token?).await })
    }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let principal = Principal::from_request(req, payload);
        Box::pin(async move {
            match principal.await? {
                Principal {
                    user: Some(user),
                    family: Some(family),
                    ..
                } => Ok(AuthUser { user, family }),
                _ => Err(ApiError::Unauthorized(
                    "this endpoint needs a user's token".into(),
                )),
            }
        })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let principal = Principal::from_request(req, payload);
        Box::pin(async move {
            if principal.await?.is_admin {
                Ok(Admin)
            } else {
                Err(ApiError::Forbidden("admin only".into()))
            }
        })
    }
}
