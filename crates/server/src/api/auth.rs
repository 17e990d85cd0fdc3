//! API-key authentication of management requests: `Authorization: Bearer rc_key_...`, an operator
//! key that exists and is not revoked. SCIM connection tokens are refused here.

use super::problem::ApiProblem;
use crate::service::Scim;
use crate::tokens;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The API key a management request was authenticated with.
#[derive(Debug, Clone)]
pub struct Operator {
    pub key_id: String,
    pub key_name: String,
}

pub async fn require_api_key(State(scim): State<Scim>, mut req: Request, next: Next) -> Response {
    let Some(presented) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(tokens::bearer)
        .map(str::to_string)
    else {
        return ApiProblem::new(
            401,
            "an API key is required: send \"Authorization: Bearer rc_key_...\" (create one with `rollcall api-key create`)",
        )
        .into_response();
    };
    match scim.admin().authenticate_api_key(&presented).await {
        Ok(key) => {
            req.extensions_mut().insert(Operator {
                key_id: key.id,
                key_name: key.name,
            });
            next.run(req).await
        }
        Err(e) => ApiProblem::from(e).into_response(),
    }
}
