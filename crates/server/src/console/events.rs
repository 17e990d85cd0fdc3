//! The events feed: every change in commit order, with type, organization, connection and
//! resource filters, pages by sequence number, and each event's raw JSON (as the Events API and
//! webhook deliveries carry it).

use super::page::{Chrome, Framed, PageResult, send, when};
use super::session::Operator;
use super::views::{EventRow, actor_text, event_rows};
use crate::admin::AdminError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use rollcall_store::EventQuery;
use rollcall_webhooks::EventView;
use serde::Deserialize;

/// Events per page.
const PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    chrome: Chrome,
    kind: String,
    org_id: String,
    connection_id: String,
    resource_id: String,
    events: Vec<EventRow>,
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    org_id: Option<String>,
    connection_id: Option<String>,
    resource_id: Option<String>,
    after: Option<i64>,
}

fn some(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Query(q): Query<EventsQuery>,
) -> PageResult {
    let types = match some(&q.kind) {
        Some(t) => rollcall_store::events::expand_type_filter(&t)
            .map_err(|e| AdminError::new(400, e))?
            .into_iter()
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    let page = app
        .admin()
        .events(&EventQuery {
            after_seq: q.after.unwrap_or(0),
            limit: PAGE,
            types,
            org_id: some(&q.org_id),
            connection_id: some(&q.connection_id),
            resource_id: some(&q.resource_id),
        })
        .await?;
    let last = page.events.last().map(|e| e.seq);
    let enc = |s: &Option<String>| -> String {
        form_urlencoded::byte_serialize(s.as_deref().unwrap_or("").as_bytes()).collect()
    };
    let next = match (page.has_more, last) {
        (true, Some(seq)) => Some(format!(
            "/console/events?type={}&org_id={}&connection_id={}&resource_id={}&after={seq}",
            enc(&q.kind),
            enc(&q.org_id),
            enc(&q.connection_id),
            enc(&q.resource_id)
        )),
        _ => None,
    };
    let (chrome, clear) = Framed::console(&app, &headers, &op.signed(), "Events", "events").take();
    Ok(send(
        &EventsPage {
            chrome,
            events: event_rows(page.events),
            next,
            kind: q.kind.unwrap_or_default(),
            org_id: q.org_id.unwrap_or_default(),
            connection_id: q.connection_id.unwrap_or_default(),
            resource_id: q.resource_id.unwrap_or_default(),
        },
        clear,
    ))
}

#[derive(Template)]
#[template(path = "event.html")]
struct EventPage {
    chrome: Chrome,
    kind: String,
    at: String,
    actor: String,
    sequence: i64,
    json: String,
}

pub async fn show(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path(event_id): Path<String>,
) -> PageResult {
    let e = app.admin().event(&event_id).await?;
    let view = EventView::from(&e);
    let (chrome, clear) = Framed::console(&app, &headers, &op.signed(), format!("Event {}", e.kind), "events").take();
    Ok(send(
        &EventPage {
            chrome,
            at: when(e.created_us),
            actor: actor_text(&e.actor),
            sequence: e.seq,
            json: serde_json::to_string_pretty(&view).unwrap_or_default(),
            kind: e.kind,
        },
        clear,
    ))
}
