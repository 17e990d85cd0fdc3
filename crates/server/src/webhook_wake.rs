//! Wakes this node's webhook dispatcher and outbound provisioning worker after every request that may have written events, so that
//! deliveries and pushes start right after the commit instead of at the next poll.

use crate::node::Node;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// Middleware: after a request other than GET, HEAD or OPTIONS has been answered (its transaction
/// committed, or failed), wake the dispatcher. A wake-up with nothing to do costs one query.
pub async fn wake_after_writes(State(node): State<Node>, req: Request, next: Next) -> Response {
    let writes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let resp = next.run(req).await;
    if writes {
        node.webhooks.wake();
        node.outbound.wake();
    }
    resp
}
