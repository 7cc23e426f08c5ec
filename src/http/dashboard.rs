//! `GET /admin`: the admin health dashboard, one self-contained page (no CDN) compiled into
//! the binary. It asks for the admin token, then follows `/ws` with a single-use ticket from
//! `POST /ws/ticket` (the token never goes into a URL).
use actix_web::{web, HttpResponse};

const PAGE: &str = include_str!("../../assets/dashboard.html");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(page));
}

#[utoipa::path(
    get,
    path = "/admin",
    tag = "operations",
    responses(
        (status = 200, description = "The admin health dashboard; it asks for the admin token and follows /ws", body = String, content_type = "text/html"),
    )
)]
pub(crate) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // Everything is inline; nothing may come from elsewhere.
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ))
        .body(PAGE)
}
