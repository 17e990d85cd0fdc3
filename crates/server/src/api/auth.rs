//! API-key authentication of management requests: `Authorization: Bearer rc_key_...`, an operator
//! key that exists and is not revoked. SCIM connection tokens are refused here.

use super::problem::ApiProblem;
use crate::admin::Admin;
use crate::tokens;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rollcall_store::{Actor, WriteContext};

/// The API key a management request was authenticated with.
#[derive(Debug, Clone)]
pub struct Operator {
    pub key_id: String,
    pub key_name: String,
}

pub async fn require_api_key(State(admin): State<Admin>, mut req: Request, next: Next) -> Response {
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
    match admin.authenticate_api_key(&presented).await {
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

/// Longest User-Agent recorded with an event of the management API, in characters.
const MAX_USER_AGENT_CHARS: usize = 256;

/// The context a management change is made in: the API key that authenticated the request, with
/// its User-Agent and request id, recorded with the change's events.
pub struct ApiCaller(pub WriteContext);

impl<S: Send + Sync> FromRequestParts<S> for ApiCaller {
    type Rejection = ApiProblem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiProblem> {
        let operator = parts.extensions.get::<Operator>().ok_or_else(|| {
            // Every management route sits behind `require_api_key`; reaching this is a wiring bug.
            tracing::error!("a management handler ran without an authenticated API key");
            ApiProblem::new(500, "the request was not authenticated")
        })?;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(MAX_USER_AGENT_CHARS).collect::<String>())
        };
        Ok(ApiCaller(WriteContext {
            user_agent: header("user-agent"),
            request_id: header("x-request-id"),
            actor: Actor::ApiKey {
                id: operator.key_id.clone(),
                name: operator.key_name.clone(),
            },
            ..Default::default()
        }))
    }
}
