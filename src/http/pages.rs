//! The two pages compiled into the binary, each one self-contained file (no CDN, nothing
//! fetched from elsewhere):
//! - `GET /`: the practice page for learners, a client of the public API only;
//! - `GET /admin`: the admin health dashboard. It asks for the admin token.
//!
//! Both follow `/ws` with a single-use ticket from `POST /ws/ticket`, so no token goes into a URL.
use actix_web::{web, HttpResponse};

const PRACTICE: &str = include_str!("../../assets/practice.html");
const DASHBOARD: &str = include_str!("../../assets/dashboard.html");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(practice))
        .route("/admin", web::get().to(dashboard));
}

fn html(page: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // Everything is inline; nothing may come from elsewhere.
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ))
        .body(page)
}

#[utoipa::path(
    get,
    path = "/",
    tag = "operations",
    responses(
        (status = 200, description = "The practice page: problems, sample data, an SQL editor, live grading, leaderboards", body = String, content_type = "text/html"),
    )
)]
pub(crate) async fn practice() -> HttpResponse {
    html(PRACTICE)
}

#[utoipa::path(
    get,
    path = "/admin",
    tag = "operations",
    responses(
        (status = 200, description = "The admin health dashboard; it asks for the admin token and follows /ws", body = String, content_type = "text/html"),
    )
)]
pub(crate) async fn dashboard() -> HttpResponse {
    html(DASHBOARD)
}
