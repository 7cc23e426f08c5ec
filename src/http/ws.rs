//! `GET /ws`: live events over a WebSocket (API.md, "Live progress").
//!
//! The token is checked before the upgrade (401 JSON otherwise). Each connection reads this
//! instance's bounded event broadcast: one that falls `websocket.buffer` events behind, or
//! cannot take a frame within `websocket.send_timeout_ms`, is closed rather than buffered for.
//! The server pings every `websocket.heartbeat_ms` and closes a connection that has sent
//! nothing (pongs included) for `websocket.client_timeout_ms`.
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use super::extract::{authenticate, bearer, Principal};
use crate::error::ApiError;
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(connect));
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct TokenQuery {
    /// The access token, for browsers (which cannot set headers on a WebSocket).
    token: Option<String>,
}

#[utoipa::path(
    get,
    path = "/ws",
    tag = "live",
    params(TokenQuery),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket of JSON text frames: {type: submission | health | stats, ...}"),
        (status = 400, description = "Malformed or invalid input", body = crate::error::ErrorBody),
        (status = 401, description = "No or bad credentials", body = crate::error::ErrorBody),
        (status = 503, description = "Cannot accept work now (see Retry-After)", body = crate::error::ErrorBody),
    )
)]
pub(crate) async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<TokenQuery>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // Browsers cannot set headers on a WebSocket: `?token=` is accepted too.
    let token = match query.into_inner().token {
        Some(t) if !t.is_empty() => t,
        _ => bearer(&req)?,
    };
    let principal = authenticate(&state, token).await?;
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::Invalid(format!("not a WebSocket upgrade: {e}")))?;
    let state = state.into_inner();
    actix_web::rt::spawn(async move {
        state.metrics.ws_connections.inc();
        let reason = serve(&state, &principal, session, stream).await;
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
) -> &'static str {
    let settings = &state.settings.websocket;
    let send_timeout = Duration::from_millis(settings.send_timeout_ms);
    let client_timeout = Duration::from_millis(settings.client_timeout_ms);
    let mut events = state.events.subscribe();
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
        }
    };
    let code = match reason {
        "client too slow" => CloseCode::Policy,
        "heartbeat timeout" => CloseCode::Away,
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
