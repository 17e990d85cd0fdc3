//! What the HTTP application holds: the SCIM service ([`Scim`]) and this node's runtime state
//! ([`Node`]), side by side. Handlers take the part they need (`State<Scim>` for SCIM,
//! `State<Admin>` for the management API); middleware that needs both takes `State<AppState>`.

use crate::admin::Admin;
use crate::node::Node;
use crate::service::Scim;
use axum::extract::FromRef;

/// The state of the HTTP application. Cheap to clone (two reference counts).
#[derive(Clone)]
pub struct AppState {
    pub scim: Scim,
    pub node: Node,
}

impl AppState {
    pub fn new(scim: Scim, node: Node) -> AppState {
        AppState { scim, node }
    }

    /// The management operations, sharing this node's token cache and webhook services.
    pub fn admin(&self) -> Admin {
        Admin::new(
            self.scim.store.clone(),
            self.node.token_cache.clone(),
            &self.scim.config.public_url,
        )
        .with_webhooks(self.node.webhooks.clone())
        .with_directory_wake(self.node.directory_wake.clone())
        .with_outbound(self.node.outbound.clone())
    }
}

impl FromRef<AppState> for Scim {
    fn from_ref(state: &AppState) -> Scim {
        state.scim.clone()
    }
}

impl FromRef<AppState> for Node {
    fn from_ref(state: &AppState) -> Node {
        state.node.clone()
    }
}

impl FromRef<AppState> for Admin {
    fn from_ref(state: &AppState) -> Admin {
        state.admin()
    }
}
