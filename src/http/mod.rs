//! HTTP routes by area, the extractor configuration, and JSON for every error.
mod admin;
mod auth;
pub mod extract;
mod health;
mod leaderboard;
mod nul;
pub mod openapi;
mod pages;
mod problems;
pub mod status;
mod users;
mod ws;

use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::error::ApiError;
pub use nul::screen_json;

pub fn routes(cfg: &mut web::ServiceConfig, max_json_bytes: usize) {
    cfg.app_data(json_config(max_json_bytes))
        .app_data(web::QueryConfig::default().error_handler(query_error))
        .app_data(web::PathConfig::default().error_handler(path_error))
        .configure(auth::routes)
        .configure(users::routes)
        .configure(problems::routes)
        .configure(admin::routes)
        .configure(health::routes)
        .configure(leaderboard::routes)
        .configure(status::routes)
        .configure(pages::routes)
        .configure(openapi::routes)
        .configure(ws::routes)
        .default_service(web::to(|| async {
            ApiError::NotFound("route").error_response()
        }));
}

/// A worker's port: health for orchestrators, metrics and statistics; the API is elsewhere.
pub fn worker_routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(query_error))
        .configure(health::routes)
        .configure(status::routes)
        .default_service(web::to(|| async {
            ApiError::NotFound("route (this is a worker: /health, /metrics and /queue/status only)")
                .error_response()
        }));
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req: &HttpRequest| {
            match err {
                JsonPayloadError::OverflowKnownLength { length, limit } => {
                    ApiError::PayloadTooLarge(format!(
                        "body is {length} bytes; the limit is {limit}"
                    ))
                }
                JsonPayloadError::Overflow { limit } => {
                    ApiError::PayloadTooLarge(format!("body exceeds {limit} bytes"))
                }
                JsonPayloadError::ContentType => {
                    ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
                }
                JsonPayloadError::Deserialize(e) if e.is_data() => {
                    ApiError::Invalid(without_value(&e.to_string()))
                }
                JsonPayloadError::Payload(e) if e.to_string().contains(nul::NUL_MESSAGE) => {
                    ApiError::Invalid(nul::NUL_MESSAGE.into())
                }
                other => ApiError::MalformedJson(format!("malformed JSON: {other}")),
            }
            .into()
        })
}

/// serde's "invalid type: string \"hunter2\", expected i64" echoes what was sent, which may
/// be a password or a token: only the kind of value stays ("invalid type: string, ...").
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((unexpected, expected)) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.rsplit_once(", expected "))
        {
            let kind = unexpected
                .split(['"', '`', '\''])
                .next()
                .unwrap_or_default()
                .trim_end();
            return format!("{prefix}{kind}, expected {expected}");
        }
    }
    message.to_string()
}

fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::Invalid(format!("invalid query string: {err}")).into()
}

fn path_error(_: PathError, _: &HttpRequest) -> actix_web::Error {
    // A path segment that cannot be an id names nothing that exists.
    ApiError::NotFound("resource").into()
}

/// Gives responses the framework produced itself (405, a failing extractor's plain text...)
/// the JSON error shape of API.md.
pub fn json_errors<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status().as_u16();
    let error = match status {
        401 => ApiError::Unauthorized("authentication required".into()),
        403 => ApiError::Forbidden("not allowed".into()),
        404 => ApiError::NotFound("route"),
        405 => ApiError::MethodNotAllowed("method not allowed for this path".into()),
        413 => ApiError::PayloadTooLarge("request body too large".into()),
        415 => ApiError::UnsupportedMediaType("unsupported content type".into()),
        500.. => ApiError::Internal(format!("framework error with status {status}")),
        _ => ApiError::Invalid("bad request".into()),
    };
    let (req, _) = res.into_parts();
    let res = ServiceResponse::new(req, error.error_response());
    Ok(ErrorHandlerResponse::Response(res.map_into_right_body()))
}

/// The request as the access log shows it: method and path, and `?…` for a query string,
/// which is left out (it may carry a token or a ticket); the path is cut at 256 bytes.
pub fn log_request(req: &actix_web::dev::ServiceRequest) -> String {
    let path = req.path();
    let mut end = path.len().min(256);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < path.len() { "…" } else { "" };
    let query = if req.query_string().is_empty() {
        ""
    } else {
        "?…"
    };
    format!("{} {}{cut}{query}", req.method(), &path[..end])
}

/// Counts every request for `/metrics` by its route pattern (not its path, which would give
/// one series per id) and status.
pub async fn count_requests(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let metrics = req
        .app_data::<web::Data<crate::state::AppState>>()
        .map(|s| s.metrics.clone());
    let method = req.method().to_string();
    let res = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        metrics
            .http_requests
            .with_label_values(&[method.as_str(), route.as_str(), res.status().as_str()])
            .inc();
        metrics
            .http_seconds
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

/// Validated `limit`/`offset` paging for the list endpoints.
pub fn page(
    limit: Option<i64>,
    offset: Option<i64>,
    default: i64,
    max: i64,
) -> Result<(i64, i64), ApiError> {
    let (limit, offset) = (limit.unwrap_or(default), offset.unwrap_or(0));
    if !(1..=max).contains(&limit) {
        return Err(ApiError::Invalid(format!(
            "limit must be between 1 and {max}"
        )));
    }
    if offset < 0 {
        return Err(ApiError::Invalid("offset must not be negative".into()));
    }
    Ok((limit, offset))
}

pub fn created<T: serde::Serialize>(body: &T) -> HttpResponse {
    HttpResponse::Created().json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_log_leaves_out_query_strings_and_bounds_paths() {
        let req = actix_web::test::TestRequest::get()
            .uri("/ws?token=s3cret&x=1")
            .to_srv_request();
        assert_eq!(log_request(&req), "GET /ws?…");
        let long = format!("/{}", "a".repeat(300));
        let req = actix_web::test::TestRequest::get()
            .uri(&long)
            .to_srv_request();
        let line = log_request(&req);
        assert!(line.len() < 270 && line.ends_with('…'), "{line}");
    }

    #[test]
    fn data_errors_name_the_kind_of_value_not_the_value() {
        let err = serde_json::from_str::<(String,)>(r#"[918273645]"#).unwrap_err();
        let shown = without_value(&err.to_string());
        assert!(
            shown.starts_with("invalid type: integer, expected"),
            "{shown}"
        );
        let err = serde_json::from_str::<(i64,)>(r#"["hunter2, expected a"]"#).unwrap_err();
        let shown = without_value(&err.to_string());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(without_value("missing field `sql`"), "missing field `sql`");
    }
}
