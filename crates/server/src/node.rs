//! The runtime state of one serving node: what this process keeps in memory beside the SCIM
//! service ([`crate::service::Scim`]), shared by the HTTP middleware and the background tasks.
//! Every node of a deployment has its own: the per-connection rate limiter, the cache of verified
//! tokens, when each connection's last request was recorded, the request log's buffer, and the
//! webhook services that wake this node's dispatcher.
//!
//! It knows no HTTP and no SCIM operation: the middleware ([`crate::auth`], [`crate::limits`],
//! [`crate::request_log::capture`], [`crate::webhook_wake`]) and [`crate::background`] read it.

use crate::metrics::MetricsSettings;
use crate::ratelimit::ConnectionRateLimiter;
use crate::request_log::{RequestLog, RequestLogSettings};
use crate::token_cache::{ActivityThrottle, TokenCache};
use rollcall_store::Store;
use rollcall_webhooks::{WebhookConfig, Webhooks};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Settings of event retention and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivitySettings {
    /// Events older than this are deleted; `None` keeps them forever.
    pub event_retention: Option<Duration>,
    /// How often retention runs (the first run comes one interval after the start).
    pub retention_interval: Duration,
    pub request_log: RequestLogSettings,
}

impl Default for ActivitySettings {
    fn default() -> Self {
        ActivitySettings {
            event_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            retention_interval: Duration::from_secs(600),
            request_log: RequestLogSettings::default(),
        }
    }
}

/// Settings of a serving node, beside the SCIM service's ([`crate::service::ScimConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// Per-connection rate limit (requests per second, burst); `None` switches it off.
    pub rate_limit: Option<(NonZeroU32, NonZeroU32)>,
    /// Event retention and the request log ([`crate::background`]).
    pub activity: ActivitySettings,
    /// Where and how `/metrics` is served ([`crate::metrics`]).
    pub metrics: MetricsSettings,
    /// The product name, logo and colour of the console and the setup page.
    pub branding: crate::branding::Branding,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings {
            rate_limit: None,
            activity: ActivitySettings::default(),
            metrics: MetricsSettings::on_main(),
            branding: crate::branding::Branding::default(),
        }
    }
}

/// This node's runtime state. Cheap to clone (one reference count).
#[derive(Clone)]
pub struct Node(Arc<NodeParts>);

/// What a [`Node`] holds; its fields are read through `Node` (`node.token_cache`, …).
#[derive(Clone)]
pub struct NodeParts {
    pub settings: NodeSettings,
    /// Built from `settings.rate_limit`.
    pub rate_limiter: Option<ConnectionRateLimiter>,
    /// Recently verified bearer tokens.
    pub token_cache: Arc<TokenCache>,
    /// When this node last recorded each connection's last request.
    pub activity: Arc<ActivityThrottle>,
    /// The buffer of the per-connection request log, written by [`crate::background`].
    pub request_log: Arc<RequestLog>,
    /// Webhook endpoints' URL checks, redelivery and test pings, and the dispatcher's wake-up
    /// ([`Node::with_webhooks`] sets their configuration).
    pub webhooks: Arc<Webhooks>,
    /// Wakes this node's directory sync scheduler ([`crate::directory_sync`]) when a sync is asked
    /// for here.
    pub directory_wake: Arc<tokio::sync::Notify>,
    /// Outbound provisioning: plans, the worker's wake-up ([`Node::with_outbound`] shares the
    /// instance the node's worker runs).
    pub outbound: Arc<rollcall_outbound::Outbound>,
}

impl Node {
    /// A node's fresh state, with the rate limiter and request log its settings ask for and webhook
    /// services of the default configuration over `store`.
    pub fn new(store: Arc<dyn Store>, settings: NodeSettings) -> Node {
        let rate_limiter = settings
            .rate_limit
            .map(|(per_second, burst)| ConnectionRateLimiter::new(per_second, burst));
        let request_log = Arc::new(RequestLog::new(settings.activity.request_log));
        let outbound = rollcall_outbound::Outbound::new(
            store.clone(),
            rollcall_outbound::Transport::new(rollcall_webhooks::NetworkPolicy::default()),
            Default::default(),
        );
        let webhooks = Webhooks::new(store, WebhookConfig::default());
        Node(Arc::new(NodeParts {
            settings,
            rate_limiter,
            token_cache: Arc::default(),
            activity: Arc::default(),
            request_log,
            webhooks,
            directory_wake: Arc::new(tokio::sync::Notify::new()),
            outbound,
        }))
    }

    /// Uses these webhook services (one instance shared with the node's dispatcher, so that writes
    /// here wake it).
    pub fn with_webhooks(mut self, webhooks: Arc<Webhooks>) -> Node {
        Arc::make_mut(&mut self.0).webhooks = webhooks;
        self
    }

    /// Uses this outbound provisioning service (the one the node's worker runs, so that writes
    /// here wake it).
    pub fn with_outbound(mut self, outbound: Arc<rollcall_outbound::Outbound>) -> Node {
        Arc::make_mut(&mut self.0).outbound = outbound;
        self
    }
}

impl std::ops::Deref for Node {
    type Target = NodeParts;
    fn deref(&self) -> &NodeParts {
        &self.0
    }
}
