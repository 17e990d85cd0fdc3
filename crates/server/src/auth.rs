//! Bearer-token authentication of SCIM requests: the token (the connection's current one, or the
//! next one during a rotation) must belong to the connection named in the URL, and the connection
//! must be active. Anything else is a 401 with a SCIM error body, and never reveals whether the
//! connection exists. Operator API keys are refused here: they are for the management API only.
//!
//! The connection's rate limit and its cap on requests in progress are checked next, by
//! [`crate::limits::fair_share`].
//!
//! An accepted request is recorded as the connection's last request (time and User-Agent), at most
//! once per [`crate::token_cache::ACTIVITY_INTERVAL`] per connection on each node, in the background.

use crate::response::error_response;
use crate::state::AppState;
use crate::tokens;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use rollcall_scim::ScimError;
use rollcall_store::{Actor, Connection, ConnectionStatus, TenancyStore, WriteContext};
use std::sync::Arc;

/// Who is calling: the authenticated connection and request metadata.
#[derive(Clone, Debug)]
pub struct Caller {
    pub connection: Arc<Connection>,
    /// The prefix of the token presented: the connection's current one or, during a rotation, the
    /// next one.
    pub token_prefix: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Caller {
    pub fn write_context(&self) -> WriteContext {
        WriteContext {
            org_id: self.connection.org_id.clone(),
            connection_id: self.connection.id.clone(),
            user_agent: self.user_agent.clone(),
            request_id: self.request_id.clone(),
            actor: Actor::ScimToken {
                connection_id: self.connection.id.clone(),
                token_prefix: self.token_prefix.clone(),
            },
        }
    }
    pub fn connection_id(&self) -> &str {
        &self.connection.id
    }

    /// How this request's PATCH operations that identity providers and the RFC read differently
    /// are read (`rollcall_scim::dialect::READINGS`): by the identity provider its User-Agent names,
    /// else the connection's configured one, else the one recognised on the connection before.
    pub fn dialect(&self) -> rollcall_scim::dialect::Dialect {
        rollcall_scim::dialect::Dialect::for_request(
            self.user_agent.as_deref(),
            self.connection.idp.as_str(),
            self.connection.detected_idp.map(|d| d.as_str()),
        )
    }
}

/// The connection id in a `/scim/v2/{connection_id}/...` path.
fn connection_in_path(path: &str) -> Option<&str> {
    path.strip_prefix("/scim/v2/")?
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
}

pub async fn authenticate(State(AppState { scim, node }): State<AppState>, mut req: Request, next: Next) -> Response {
    let unauthorized = |detail: &str| error_response(&ScimError::unauthorized(detail));
    let Some(presented) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(tokens::bearer)
        .map(str::to_string)
    else {
        return unauthorized("a bearer token is required: send \"Authorization: Bearer <token>\"");
    };
    if presented.starts_with(tokens::API_KEY_PREFIX) {
        return unauthorized(
            "operator API keys work only on the management API (/api/v1); SCIM requests need the connection's \
             bearer token",
        );
    }
    // Inside the nested router the URI has lost its prefix; the original one still has it.
    let full_path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let Some(conn_id) = connection_in_path(&full_path).map(str::to_string) else {
        return unauthorized("unknown SCIM base URL");
    };
    let hash = tokens::hash(&presented);
    let connection = match node.token_cache.get(&hash) {
        Some(c) => c,
        None => match (
            node.token_cache.generation(),
            scim.store.connection_by_token_hash(&hash).await,
        ) {
            (generation, Ok(Some(c))) => {
                let c = Arc::new(c);
                node.token_cache.put_unless_forgotten(hash, c.clone(), generation);
                c
            }
            (_, Ok(None)) => return unauthorized("the bearer token is not valid for this SCIM base URL"),
            (_, Err(e)) => return error_response(&e.into_scim()),
        },
    };
    let Some(token_prefix) = connection.matching_token_prefix(&hash).map(str::to_string) else {
        return unauthorized("the bearer token is not valid for this SCIM base URL");
    };
    if connection.id != conn_id {
        return unauthorized("the bearer token is not valid for this SCIM base URL");
    }
    if connection.status == ConnectionStatus::Disabled {
        return unauthorized(
            "this SCIM connection is disabled; it accepts no requests until an operator enables it again",
        );
    }
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if node.activity.due(&connection.id) {
        record_activity(scim.store.clone(), &connection.id, user_agent.as_deref());
    }
    // Debug logging keeps the request body: read it here, where the connection is known, and hand
    // the handler a copy.
    let mut request_body = None;
    if connection.debug_logging && node.request_log.enabled() {
        match buffer_body(req, scim.config.max_body_bytes).await {
            Ok((r, bytes)) => {
                req = r;
                request_body = Some(bytes);
            }
            Err(resp) => return resp,
        }
    }
    let caller = Caller {
        connection,
        token_prefix: Some(token_prefix.clone()),
        user_agent,
        request_id: req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(crate::request_log::Authenticated {
        token_prefix: Some(token_prefix),
        request_body,
    });
    resp
}

/// Reads a request's body (at most `limit` bytes) so that it can be both logged and handled.
/// Answers the response to send instead when the body is larger than the limit.
async fn buffer_body(req: Request, limit: usize) -> Result<(Request, Bytes), Response> {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes)),
        Err(e) => Err(error_response(&match crate::deadline::body_timeout(&e) {
            Some(t) => ScimError::new(408, None, t.to_string()),
            None => ScimError::payload_too_large(format!("the request body is larger than the {limit}-byte limit")),
        })),
    }
}

/// Longest User-Agent kept as a connection's last one, in characters.
const MAX_USER_AGENT_CHARS: usize = 256;

/// Records a request as the connection's last one, without holding up the request.
fn record_activity(store: Arc<dyn TenancyStore>, connection_id: &str, user_agent: Option<&str>) {
    let id = connection_id.to_string();
    let ua: Option<String> = user_agent.map(|u| u.chars().take(MAX_USER_AGENT_CHARS).collect());
    // The identity provider the User-Agent names (see `rollcall_scim::dialect::CLIENT_SIGNATURES`),
    // recorded with the activity, so at most once per interval too.
    let detected = user_agent
        .and_then(rollcall_scim::dialect::detect_client)
        .and_then(|idp| idp.parse::<rollcall_store::IdpKind>().ok());
    let at = rollcall_store::sqlite::now_us();
    tokio::spawn(async move {
        if let Err(e) = store.record_connection_request(&id, at, ua.as_deref(), detected).await {
            tracing::warn!(connection = %id, error = %e, "recording the connection's last request failed");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_connection_in_path() {
        assert_eq!(connection_in_path("/scim/v2/abc/Users"), Some("abc"));
        assert_eq!(connection_in_path("/scim/v2/abc"), Some("abc"));
        assert_eq!(connection_in_path("/scim/v2//Users"), None);
        assert_eq!(connection_in_path("/other"), None);
    }
}
