//! `GET /openapi.json`, generated from the handlers' `#[utoipa::path]` attributes and the
//! types they answer with, and the browsable page at `/docs` (Swagger UI, vendored).
use actix_web::web;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{admin, auth, health, leaderboard, pages, problems, status, users, ws};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sqljudge",
        description = "SQL practice and grading. Errors are always {\"error\": {\"code\", \"message\"}}; \
                       authenticated endpoints take `Authorization: Bearer <token>` (admin endpoints: \
                       the configured admin token or an admin user's token)."
    ),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout,
        users::me, users::my_submissions,
        problems::list, problems::detail, problems::dataset, problems::submit, problems::result, problems::run,
        admin::list_datasets, admin::put_dataset, admin::put_test, admin::delete_test, admin::create_problem, admin::update_problem,
        admin::rejudge, admin::adequacy,
        leaderboard::global, leaderboard::topic, leaderboard::user,
        health::health, health::live, health::ready, status::queue_status, status::metrics, pages::practice, pages::dashboard, ws::connect,
        ws::ticket,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    // The UI's relative asset paths need the trailing slash; `/docs` (as linked) leads there.
    cfg.service(web::redirect("/docs", "/docs/").permanent())
        .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi()));
}
