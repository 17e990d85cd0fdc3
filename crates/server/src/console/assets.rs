//! The console's and setup page's assets, embedded in the binary: nothing is fetched from the
//! internet, and the pages work offline.

use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const FAVICON: &str = include_str!("assets/favicon.svg");

fn asset(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut resp = (StatusCode::OK, body.into()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

/// `GET /console/assets/{name}`: the style sheet, the script, the brand's colours and its logo.
pub async fn serve(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    let branding = &app.node.settings.branding;
    match name.as_str() {
        "console.css" => asset("text/css; charset=utf-8", CSS),
        "console.js" => asset("text/javascript; charset=utf-8", JS),
        "favicon.svg" => asset("image/svg+xml", FAVICON),
        // The colour was checked when the configuration was read (`#rgb` or `#rrggbb`).
        "brand.css" => asset(
            "text/css; charset=utf-8",
            format!(":root {{ --primary: {}; }}\n", branding.primary_color),
        ),
        "logo" => match &branding.logo {
            Some(logo) => asset(logo.content_type, axum::body::Bytes::from(logo.bytes.to_vec())),
            None => super::page::not_found().await,
        },
        _ => super::page::not_found().await,
    }
}
