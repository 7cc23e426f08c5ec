//! Who is calling: bearer tokens of users, or the configured admin token.
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::auth::{constant_time_eq, token_hash};
use crate::error::ApiError;
pub use crate::sessions::Account;
use crate::state::AppState;
use crate::tickets::Grant;

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

impl AuthUser {
    /// The caller as a user; the admin token is not one.
    pub fn of(principal: Principal) -> Result<AuthUser, ApiError> {
        match principal {
            Principal {
                user: Some(user),
                family: Some(family),
                ..
            } => Ok(AuthUser { user, family }),
            _ => Err(ApiError::Unauthorized(
                "this endpoint needs a user's token".into(),
            )),
        }
    }
}

/// A caller allowed to use the admin API.
#[derive(Debug, Clone)]
pub struct Admin;

pub(crate) fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
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
    Ok(authenticate_along(state, token, None).await?.0)
}

/// `authenticate`, reading Redis key `along` with a user's session (`Sessions::lookup_along`):
/// its value, when it was read.
pub async fn authenticate_along(
    state: &AppState,
    token: String,
    along: Option<&str>,
) -> Result<(Principal, Option<Option<String>>), ApiError> {
    let admin_token = state.settings.auth.admin_token.expose_secret();
    if !admin_token.is_empty() && constant_time_eq(&token, admin_token) {
        return Ok((admin(), None));
    }
    session(state, &token_hash(&token), along).await
}

/// The caller a WebSocket ticket was issued to, as of now (a login ended since is refused).
pub async fn redeem(state: &AppState, grant: Grant) -> Result<Principal, ApiError> {
    match grant {
        Grant::Admin if !state.settings.auth.admin_token.expose_secret().is_empty() => Ok(admin()),
        Grant::Admin => Err(ApiError::Unauthorized("the admin token is disabled".into())),
        Grant::Session(hash) => Ok(session(state, &hash, None).await?.0),
    }
}

fn admin() -> Principal {
    Principal {
        user: None,
        family: None,
        is_admin: true,
    }
}

async fn session(
    state: &AppState,
    token_hash: &str,
    along: Option<&str>,
) -> Result<(Principal, Option<Option<String>>), ApiError> {
    let (session, read) = state.sessions.lookup_along(token_hash, along).await?;
    let session =
        session.ok_or_else(|| ApiError::Unauthorized("invalid or expired token".into()))?;
    state.sessions.touch(session.account.id);
    let principal = Principal {
        is_admin: session.account.is_admin,
        user: Some(session.account),
        family: Some(session.family),
    };
    Ok((principal, read))
}

pub(crate) fn state(req: &HttpRequest) -> web::Data<AppState> {
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

/// Authenticates the caller, then `allow` decides what this endpoint makes of them.
fn require<T: 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    allow: fn(Principal) -> Result<T, ApiError>,
) -> LocalBoxFuture<'static, Result<T, ApiError>> {
    let principal = Principal::from_request(req, payload);
    Box::pin(async move { allow(principal.await?) })
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        require(req, payload, AuthUser::of)
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        require(req, payload, |principal| {
            if principal.is_admin {
                Ok(Admin)
            } else {
                Err(ApiError::Forbidden("admin only".into()))
            }
        })
    }
}
