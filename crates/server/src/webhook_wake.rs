//! Wakes this node's webhook dispatcher after every request that may have written events, so that
//! deliveries start right after the commit instead of at the next poll.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use rollcall_webhooks::Webhooks;
use std::sync::Arc;

/// Middleware: after a request other than GET, HEAD or OPTIONS has been answered (its transaction
/// committed, or failed), wake the dispatcher. A wake-up with nothing to do costs one query.
pub async fn wake_after_writes(State(webhooks): State<Arc<Webhooks>>, req: Request, next: Next) -> Response {
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let resp = next.run(req).await;
    if writes {
        webhooks.wake();
    }
    resp
}
