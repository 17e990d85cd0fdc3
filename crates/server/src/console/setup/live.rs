//! The setup page's live panel: the connection's request log as Server-Sent Events. Each event
//! (`request`) is one SCIM request the identity provider sent, described in words ("Microsoft
//! Entra ID looked up a user by userName: Test Connection"), with its answer and, for a failure,
//! what went wrong and how to fix it.

use super::pages::Visitor;
use crate::console::page::when;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use rollcall_store::RequestLogEntry;
use serde::Serialize;
use std::time::Duration;

/// How often the log is read.
const POLL: Duration = Duration::from_secs(1);
/// How long one stream lasts (the browser reconnects by itself).
const STREAM_FOR: Duration = Duration::from_secs(15 * 60);
/// Entries read per poll, and shown when the panel opens.
const BATCH: i64 = 20;

/// One request, as the panel shows it.
#[derive(Debug, Serialize, PartialEq)]
pub struct LiveRequest {
    pub seq: i64,
    pub at: String,
    pub status: u16,
    pub ok: bool,
    pub summary: String,
    /// For a failure: how to fix it.
    pub fix: Option<String>,
}

/// What the request was, in words (its answer is shown beside it).
pub fn describe(e: &RequestLogEntry) -> String {
    let client = e
        .user_agent
        .as_deref()
        .and_then(rollcall_scim::dialect::detect_client)
        .and_then(|idp| idp.parse::<rollcall_store::IdpKind>().ok())
        .map(crate::console::page::idp_name)
        .unwrap_or("The client");
    let (path, query) = e.path.split_once('?').unwrap_or((&e.path, ""));
    // The part after /scim/v2/{connection_id}.
    let rest = path.splitn(5, '/').nth(4).map(|r| format!("/{r}")).unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let filtered = query.contains("filter=");
    let what = match (e.method.as_str(), segments.as_slice()) {
        ("GET", ["ServiceProviderConfig" | "Schemas" | "ResourceTypes", ..]) => {
            "read the service's capabilities".to_string()
        }
        ("GET", ["Users"]) if filtered && query.contains("userName") => {
            if client == "Microsoft Entra ID" {
                "looked up a user by userName (Test Connection, or matching before a create)".into()
            } else {
                "looked up a user by userName".into()
            }
        }
        ("GET", ["Users"]) if filtered => "looked up users with a filter".into(),
        ("GET", ["Users"]) => "listed users".into(),
        ("GET", ["Users", _]) => "read a user".into(),
        ("POST", ["Users"]) => "created a user".into(),
        ("PUT", ["Users", _]) => "replaced a user".into(),
        ("PATCH", ["Users", _]) => "updated a user".into(),
        ("DELETE", ["Users", _]) => "deleted a user".into(),
        ("GET", ["Groups"]) if filtered => "looked up groups with a filter".into(),
        ("GET", ["Groups"]) => "listed groups".into(),
        ("GET", ["Groups", _]) => "read a group".into(),
        ("POST", ["Groups"]) => "created a group".into(),
        ("PUT", ["Groups", _]) => "replaced a group".into(),
        ("PATCH", ["Groups", _]) => "changed a group's name or members".into(),
        ("DELETE", ["Groups", _]) => "deleted a group".into(),
        ("POST", ["Bulk"]) => "sent a batch of changes".into(),
        ("POST", [.., ".search"]) => "searched".into(),
        _ => format!("sent {} {}", e.method, if rest.is_empty() { path } else { &rest }),
    };
    format!("{client} {what}")
}

impl From<&RequestLogEntry> for LiveRequest {
    fn from(e: &RequestLogEntry) -> Self {
        let explained = crate::explain::explain(e);
        LiveRequest {
            seq: e.seq,
            at: when(e.at_us),
            status: e.status,
            ok: e.status < 400,
            summary: match &explained {
                Some(x) => format!("{} — {}", describe(e), x.summary),
                None => describe(e),
            },
            fix: explained.map(|x| x.fix),
        }
    }
}

/// `GET /setup/connections/{id}/live`: the stream. Each event's id is its position in the log, so
/// a browser that reconnects (it does so by itself) sends `Last-Event-ID` and gets only what it has
/// not seen; a new panel gets the last few requests first.
pub async fn stream(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    v: Visitor,
    Path(id): Path<String>,
) -> Response {
    let seen: Option<i64> = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().parse().ok());
    let connection = match app.admin().connection(&id).await {
        Ok(c) if c.org_id == v.org_id => c,
        _ => return crate::console::page::not_found().await,
    };
    let admin = app.admin();
    let idp = connection.idp;
    let started = tokio::time::Instant::now();
    // Oldest first, from the last few already logged.
    let stream = futures::stream::unfold((admin, connection.id, seen), move |(admin, id, mut last)| async move {
        loop {
            if started.elapsed() > STREAM_FOR {
                return None;
            }
            if last.is_some() {
                tokio::time::sleep(POLL).await;
            }
            let (mut entries, _) = match admin.request_log(&id, None, BATCH).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "the live panel could not read the request log");
                    return None;
                }
            };
            entries.reverse();
            // Runs of requests are recognised among the whole batch, so that the last request of
            // JumpCloud's Test Connection says what the run was even when its first ones were sent.
            let marks = crate::explain::activities(&entries, idp.as_str());
            let fresh: Vec<(&RequestLogEntry, Option<crate::explain::Activity>)> = entries
                .iter()
                .zip(marks)
                .filter(|(e, _)| last.is_none_or(|l| e.seq > l))
                .collect();
            let next_last = entries.last().map(|e| e.seq).or(last).or(Some(0));
            let events: Vec<Result<Event, std::convert::Infallible>> = fresh
                .into_iter()
                .filter_map(|(e, activity)| {
                    let mut line = LiveRequest::from(e);
                    if let Some(a) = activity {
                        line.summary = format!("{} (part of {})", line.summary, a.name);
                    }
                    Event::default()
                        .event("request")
                        .id(e.seq.to_string())
                        .json_data(line)
                        .ok()
                })
                .map(Ok)
                .collect();
            last = next_last;
            if !events.is_empty() {
                return Some((futures::stream::iter(events), (admin, id, last)));
            }
        }
    });
    use futures::StreamExt;
    Sse::new(stream.flatten())
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: &str, path: &str, status: u16, ua: &str) -> RequestLogEntry {
        RequestLogEntry {
            seq: 1,
            connection_id: "c".into(),
            at_us: 0,
            method: method.into(),
            path: path.into(),
            status,
            latency_us: 1000,
            scim_type: None,
            error_detail: None,
            user_agent: Some(ua.into()),
            request_id: None,
            token_prefix: None,
            auth_scheme: Some("bearer".into()),
            request_body: None,
            response_body: None,
        }
    }

    #[test]
    fn requests_in_words() {
        let e = entry(
            "GET",
            "/scim/v2/c1/Users?filter=userName%20eq%20%22x%22",
            200,
            "Azure AD SCIM Client",
        );
        assert_eq!(
            describe(&e),
            "Microsoft Entra ID looked up a user by userName (Test Connection, or matching before a create)"
        );
        let e = entry("POST", "/scim/v2/c1/Users", 201, "Okta SCIM Client 1.0.0");
        assert_eq!(describe(&e), "Okta created a user");
        let e = entry("PATCH", "/scim/v2/c1/Groups/g", 204, "curl/8");
        assert_eq!(describe(&e), "The client changed a group's name or members");
        let e = entry("GET", "/scim/v2/c1/ServiceProviderConfig", 200, "OneLogin");
        assert_eq!(describe(&e), "OneLogin read the service's capabilities");
    }
}
