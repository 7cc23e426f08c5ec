//! `GET /ws`: live events over a WebSocket (API.md, "Live progress").
//!
//! The credentials (a single-use ticket from `POST /ws/ticket`, a token) are checked before
//! the upgrade (401 JSON otherwise). Each connection reads this
//! instance's bounded event broadcast: one that falls `websocket.buffer` events behind, or
//! cannot take a frame within `websocket.send_timeout_ms`, is closed rather than buffered for.
//! The server pings every `websocket.heartbeat_ms` and closes a connection that has sent
//! nothing (pongs included) for `websocket.client_timeout_ms`.
use std::time::{Duration, Instant};

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};
use utoipa::{IntoParams, ToSchema};

use super::extract::{authenticate, bearer, redeem, Principal};
use crate::auth::token_hash;
use crate::error::responses;
use crate::error::ApiError;
use crate::events::Delivery;
use crate::state::AppState;
use crate::tickets::Grant;

/// How long a handshake waits for this instance's subscription to events (made when it has
/// listeners) before it is answered.
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(2);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(connect))
        .route("/ws/ticket", web::post().to(ticket));
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct WsQuery {
    /// A ticket from `POST /ws/ticket`: single use, short-lived. What browsers should use.
    ticket: Option<String>,
    /// The access token (or admin token), for clients that cannot set headers and predate
    /// tickets. Prefer a ticket: a URL is easily copied into logs and histories.
    token: Option<String>,
}

/// A single-use ticket for `GET /ws?ticket=`.
#[derive(Serialize, ToSchema)]
pub(crate) struct WsTicket {
    ticket: String,
    /// Seconds the ticket stays valid (if not used before).
    expires_in: u64,
}

#[utoipa::path(
    post,
    path = "/ws/ticket",
    tag = "live",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A ticket that opens one WebSocket (GET /ws?ticket=) within expires_in seconds, as the caller", body = WsTicket),
        responses::Unauthorized,
        responses::Unavailable,
    )
)]
pub(crate) async fn ticket(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = bearer(&req)?;
    let grant = match authenticate(&state, token.clone()).await?.user {
        None => Grant::Admin,
        Some(_) => Grant::Session(token_hash(&token)),
    };
    let ticket = state.tickets.issue(grant).await?;
    Ok(HttpResponse::Ok()
        // A credential: no cache may keep it.
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(WsTicket {
            ticket,
            expires_in: state.tickets.ttl_secs(),
        }))
}

#[utoipa::path(
    get,
    path = "/ws",
    tag = "live",
    params(WsQuery),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket of JSON text frames: {type: submission | health | stats, ...}"),
        responses::Invalid,
        (status = 401, description = "No or bad credentials, or a used, expired or unknown ticket", body = crate::error::ErrorBody),
        responses::Unavailable,
    )
)]
pub(crate) async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<WsQuery>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let WsQuery { ticket, token } = query.into_inner();
    let principal = match (ticket, token) {
        (Some(ticket), _) if !ticket.is_empty() => {
            let grant = state.tickets.redeem(&ticket).await.ok_or_else(|| {
                ApiError::Unauthorized("invalid, expired or already used ticket".into())
            })?;
            redeem(&state, grant).await?
        }
        // Browsers cannot set headers on a WebSocket: `?token=` is accepted too.
        (_, Some(token)) if !token.is_empty() => authenticate(&state, token).await?,
        _ => authenticate(&state, bearer(&req)?).await?,
    };
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::Invalid(format!("not a WebSocket upgrade: {e}")))?;
    // Listening before the handshake is answered: the client hears every event published
    // after it (the subscription to Redis is made when this instance has listeners).
    let events = state.events.subscribe();
    state.events.heard_from_now(SUBSCRIBE_WITHIN).await;
    let state = state.into_inner();
    actix_web::rt::spawn(async move {
        state.metrics.ws_connections.inc();
        let reason = serve(&state, &principal, session, stream, events).await;
        log::debug!("websocket closed: {reason}");
        state.metrics.ws_connections.dec();
    });
    Ok(response)
}

/// Runs one connection; returns why it ended.
async fn serve(
    state: &AppState,
    principal: &Principal,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
    mut events: broadcast::Receiver<Delivery>,
) -> &'static str {
    let settings = &state.settings.websocket;
    let send_timeout = Duration::from_millis(settings.send_timeout_ms);
    let client_timeout = Duration::from_millis(settings.client_timeout_ms);
    let mut heartbeat = actix_web::rt::time::interval(Duration::from_millis(settings.heartbeat_ms));
    let mut last_heard = Instant::now();
    let user_id = principal.user.as_ref().map(|u| u.id);
    if principal.is_admin {
        // The dashboard starts from the current state, then follows the changes.
        let hello = state.health.event_json();
        if session.text(hello).await.is_err() {
            return "closed by the client";
        }
    }
    let reason = loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > client_timeout {
                    break "heartbeat timeout";
                }
                if session.ping(b"").await.is_err() {
                    return "closed by the client";
                }
            }
            message = stream.recv() => match message {
                Some(Ok(Message::Ping(bytes))) => {
                    last_heard = Instant::now();
                    if session.pong(&bytes).await.is_err() {
                        return "closed by the client";
                    }
                }
                Some(Ok(Message::Close(_))) | None => return "closed by the client",
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(_)) => break "protocol error",
            },
            event = events.recv() => match event {
                Ok(event) => {
                    let visible = principal.is_admin || (event.user_id.is_some() && event.user_id == user_id);
                    if !visible {
                        continue;
                    }
                    match actix_web::rt::time::timeout(send_timeout, session.text(event.json.to_string())).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return "closed by the client",
                        Err(_) => break "client too slow",
                    }
                }
                Err(RecvError::Lagged(_)) => break "client too slow",
                Err(RecvError::Closed) => break "server shutting down",
            },
            () = state.shutdown.started() => break "server shutting down",
        }
    };
    let code = match reason {
        "client too slow" => CloseCode::Policy,
        "heartbeat timeout" | "server shutting down" => CloseCode::Away,
        _ => CloseCode::Error,
    };
    let _ = actix_web::rt::time::timeout(
        send_timeout,
        session.close(Some(CloseReason {
            code,
            description: Some(reason.to_string()),
        })),
    )
    .await;
    reason
}
