//! Webhook endpoints: the list and creating one (its signing secret shown once); an endpoint's
//! page with its delivery attempts, subscription, enabling and disabling, redelivery of one
//! event, replay from a sequence number, a test message, secret rotation and deletion.

use super::page::{Chrome, Framed, PageResult, done, send, when, when_or};
use super::session::{Form, Operator};
use crate::admin::{AdminError, WebhookChange, WebhookInput};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use rollcall_store::{Webhook, WebhookStatus};
use serde::Deserialize;

/// Attempts shown on an endpoint's page.
const ATTEMPTS: i64 = 50;

pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub scope: String,
    pub types: String,
    pub active: bool,
    pub status: String,
    pub last_sequence: i64,
    pub failing: String,
}

fn row(w: &Webhook) -> WebhookRow {
    WebhookRow {
        id: w.id.clone(),
        url: w.url.clone(),
        scope: w.org_id.clone().unwrap_or_else(|| "every organization".into()),
        types: if w.event_types.is_empty() {
            "every event".into()
        } else {
            w.event_types.join(", ")
        },
        active: w.status == WebhookStatus::Active,
        status: match (&w.status, &w.disabled_reason) {
            (WebhookStatus::Disabled, Some(r)) => format!("disabled: {r}"),
            (s, _) => s.as_str().to_string(),
        },
        last_sequence: w.cursor_seq,
        failing: match (w.failing_since_us, &w.last_error) {
            (Some(since), Some(e)) => format!(
                "failing since {} ({} attempts): {e}",
                when(since),
                w.consecutive_failures
            ),
            (Some(since), None) => format!("failing since {}", when(since)),
            _ => String::new(),
        },
    }
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    chrome: Chrome,
    org_id: String,
    webhooks: Vec<WebhookRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksQuery {
    org_id: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Query(q): Query<WebhooksQuery>,
) -> PageResult {
    let org_id = q.org_id.filter(|o| !o.trim().is_empty());
    let webhooks = app.admin().list_webhooks(org_id.as_deref()).await?;
    let (chrome, clear) = Framed::console(&app, &headers, &op.signed(), "Webhooks", "webhooks").take();
    Ok(send(
        &WebhooksPage {
            chrome,
            org_id: org_id.unwrap_or_default(),
            webhooks: webhooks.iter().map(row).collect(),
        },
        clear,
    ))
}

#[derive(Template)]
#[template(path = "webhook_secret.html")]
struct SecretPage {
    chrome: Chrome,
    id: String,
    url: String,
    secret: String,
    rotated: bool,
}

fn secret_page(
    app: &AppState,
    headers: &HeaderMap,
    op: &Operator,
    w: &Webhook,
    secret: String,
    rotated: bool,
) -> Response {
    let (chrome, clear) = Framed::console(app, headers, &op.signed(), "Signing secret", "webhooks").take();
    send(
        &SecretPage {
            chrome,
            id: w.id.clone(),
            url: w.url.clone(),
            secret,
            rotated,
        },
        clear,
    )
}

fn types_of(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .split([',', '\n', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

pub async fn create(State(app): State<AppState>, headers: HeaderMap, op: Operator, Form(f): Form) -> Response {
    if let Err(e) = f.only(&["url", "org_id", "description", "event_types"]) {
        return done("/console/webhooks", Err(e));
    }
    let input = WebhookInput {
        org_id: f.get("org_id").map(str::to_string),
        url: f.get("url").unwrap_or("").to_string(),
        description: f.get("description").map(str::to_string),
        event_types: types_of(f.get("event_types")),
    };
    match app.admin().create_webhook(input).await {
        Ok(issued) => secret_page(&app, &headers, &op, &issued.webhook, issued.secret, false),
        Err(e) => done("/console/webhooks", Err(e.detail)),
    }
}

pub struct AttemptRow {
    pub at: String,
    pub event_id: String,
    pub event_type: String,
    pub sequence: String,
    pub attempt: i64,
    pub origin: &'static str,
    pub ok: bool,
    pub outcome: String,
    pub latency_ms: String,
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    chrome: Chrome,
    w: WebhookRow,
    description: String,
    event_types: String,
    created: String,
    previous_secret_until: String,
    attempts: Vec<AttemptRow>,
}

pub async fn show(State(app): State<AppState>, headers: HeaderMap, op: Operator, Path(id): Path<String>) -> PageResult {
    let admin = app.admin();
    let w = admin.webhook(&id).await?;
    let (attempts, _) = admin.webhook_attempts(&id, None, ATTEMPTS).await?;
    let (chrome, clear) = Framed::console(&app, &headers, &op.signed(), "Webhook endpoint", "webhooks").take();
    Ok(send(
        &WebhookPage {
            chrome,
            description: w.description.clone(),
            event_types: w.event_types.join(", "),
            created: when(w.created_us),
            previous_secret_until: when_or(w.previous_secret_expires_us, ""),
            attempts: attempts
                .into_iter()
                .map(|a| AttemptRow {
                    at: when(a.created_us),
                    sequence: a.event_seq.map(|s| s.to_string()).unwrap_or_default(),
                    attempt: a.attempt,
                    origin: a.origin.as_str(),
                    ok: a.succeeded,
                    outcome: match (a.status_code, &a.error) {
                        (_, Some(e)) => e.clone(),
                        (Some(code), None) => format!("HTTP {code}"),
                        (None, None) => String::new(),
                    },
                    latency_ms: format!("{:.0}", a.latency_us as f64 / 1000.0),
                    event_id: a.event_id,
                    event_type: a.event_type,
                })
                .collect(),
            w: row(&w),
        },
        clear,
    ))
}

/// `POST /console/webhooks/{id}/{action}`.
pub async fn act(
    State(app): State<AppState>,
    headers: HeaderMap,
    op: Operator,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form,
) -> Response {
    let back = format!("/console/webhooks/{id}");
    let admin = app.admin();
    let allowed: &[&str] = match action.as_str() {
        "subscription" => &["event_types", "description", "url"],
        "redeliver" => &["event_id"],
        "replay" => &["from_sequence"],
        _ => &[],
    };
    if let Err(e) = f.only(allowed) {
        return done(&back, Err(e));
    }
    let status = |s: WebhookStatus| WebhookChange {
        status: Some(s),
        ..Default::default()
    };
    let result: Result<String, AdminError> = match action.as_str() {
        "subscription" => admin
            .update_webhook(
                &id,
                WebhookChange {
                    url: f.get("url").map(str::to_string),
                    description: Some(f.get("description").unwrap_or("").to_string()),
                    event_types: Some(types_of(f.get("event_types"))),
                    status: None,
                },
            )
            .await
            .map(|_| "Endpoint saved.".into()),
        "disable" => admin
            .update_webhook(&id, status(WebhookStatus::Disabled))
            .await
            .map(|_| {
                "Endpoint disabled: nothing is delivered until it is enabled; it then resumes where it stopped.".into()
            }),
        "enable" => admin
            .update_webhook(&id, status(WebhookStatus::Active))
            .await
            .map(|_| "Endpoint enabled.".into()),
        "ping" => admin.ping_webhook(&id).await.map(|a| {
            if a.succeeded {
                format!("Test message delivered (HTTP {}).", a.status_code.unwrap_or(0))
            } else {
                format!(
                    "The test message failed: {}",
                    a.error
                        .or(a.status_code.map(|c| format!("HTTP {c}")))
                        .unwrap_or_default()
                )
            }
        }),
        "redeliver" => admin
            .redeliver_webhook(&id, f.get("event_id").unwrap_or(""))
            .await
            .map(|a| {
                if a.succeeded {
                    "Event delivered again.".to_string()
                } else {
                    format!("Redelivery failed: {}", a.error.unwrap_or_default())
                }
            }),
        "replay" => match f.get("from_sequence").unwrap_or("").parse::<i64>() {
            Ok(seq) => admin
                .replay_webhook(&id, seq)
                .await
                .map(|_| format!("Every event from sequence {seq} on will be delivered again, in order.")),
            Err(_) => Err(AdminError::invalid("from_sequence must be a whole number")),
        },
        "rotate-secret" => {
            return match admin.rotate_webhook_secret(&id).await {
                Ok(issued) => secret_page(&app, &headers, &op, &issued.webhook, issued.secret, true),
                Err(e) => done(&back, Err(e.detail)),
            };
        }
        "delete" => {
            return match admin.delete_webhook(&id).await {
                Ok(()) => done("/console/webhooks", Ok("Endpoint deleted.".into())),
                Err(e) => done(&back, Err(e.detail)),
            };
        }
        _ => return super::page::not_found().await.into_response(),
    };
    done(&back, result.map_err(|e| e.detail))
}
