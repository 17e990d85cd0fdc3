//! `rollcall`: the service and the operator's command line.

use clap::{Parser, Subcommand, ValueEnum};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use rollcall_scim::filter::FilterLimits;
use rollcall_scim::limits::ResourceLimits;
use rollcall_scim::schema::SchemaRegistry;
use rollcall_server::HttpLimits;
use rollcall_server::admin::Admin;
use rollcall_server::branding::{Branding, Logo};
use rollcall_server::metrics::MetricsSettings;
use rollcall_server::node::{ActivitySettings, Node, NodeSettings};
use rollcall_server::request_log::RequestLogSettings;
use rollcall_server::service::{Scim, ScimConfig, rfc3339};
use rollcall_server::state::AppState;
use rollcall_server::tokens;
use rollcall_store::postgres::notify::Heard;
use rollcall_store::postgres::{PgSettings, PostgresStore};
use rollcall_store::sqlite::SqliteStore;
use rollcall_store::{ConnectionStatus, IdpKind, NewConnection, Store, WriteContext};
use rollcall_webhooks::{Dispatcher, NetworkPolicy, WebhookConfig, Webhooks};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod doctor;
mod export;
mod ops;
mod secrets;
mod statements;
mod targets;
mod workspaces;

#[derive(Parser)]
#[command(name = "rollcall", version, about = "Self-hosted SCIM 2.0 provisioning service")]
struct Cli {
    /// Database URL: a SQLite file (`sqlite://rollcall.db`, the default) or PostgreSQL
    /// (`postgres://user:password@host/db`). Without it, `ROLLCALL_DATABASE` or the configuration
    /// file, `DATABASE_URL` is used when set.
    #[arg(long, global = true, env = "ROLLCALL_DATABASE")]
    database: Option<String>,
    /// Optional TOML configuration file; flags and ROLLCALL_* variables override it.
    #[arg(long, global = true, env = "ROLLCALL_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, env = "ROLLCALL_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Create the SQLite database file if it does not exist. Only `serve` creates one by itself;
    /// every other command refuses a missing file, so that a command run from the wrong directory
    /// does not work on a new, empty database.
    #[arg(long, global = true)]
    create: bool,
    /// File holding the key that encrypts the secrets Rollcall stores (32 bytes, base64 or hex).
    /// `ROLLCALL_SECRETS_KEY` gives the key itself instead. Without either, a SQLite database uses
    /// `rollcall-secrets.key` beside it (which `serve` creates when needed).
    #[arg(long, global = true, env = "ROLLCALL_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Pretty,
    Json,
}

// Parsed once per process: the size of `serve`'s many settings costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage SCIM connections.
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Manage operator API keys for the management API (/api/v1).
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Manage an organization's roles.
    #[command(subcommand)]
    Role(ops::RoleCommand),
    /// Manage a connection's role mappings (IdP group or app role to role).
    #[command(subcommand, name = "role-mapping")]
    RoleMapping(ops::RoleMappingCommand),
    /// Show or replace a connection's default roles (every active user it provisions has them).
    #[command(subcommand, name = "default-roles")]
    DefaultRoles(ops::DefaultRolesCommand),
    /// Manage an organization's workspaces (IdP groups as workspace memberships).
    #[command(subcommand)]
    Workspace(workspaces::WorkspaceCommand),
    /// Manage a connection's workspace mappings (IdP group to workspace).
    #[command(subcommand, name = "workspace-mapping")]
    WorkspaceMapping(workspaces::WorkspaceMappingCommand),
    /// Show or change an organization's default workspace and whether every group gets one.
    #[command(subcommand, name = "workspace-settings")]
    WorkspaceSettings(workspaces::WorkspaceSettingsCommand),
    /// Webhook endpoints: list, delivery attempts, redeliver an event, send a test message.
    #[command(subcommand)]
    Webhook(ops::WebhookCommand),
    /// Outbound provisioning targets: create, plan, approve, sync, runs, objects, retry.
    #[command(subcommand)]
    Target(targets::TargetCommand),
    /// Setup links for an organization's IT admin (the setup page): create, list, revoke.
    #[command(subcommand, name = "setup-link")]
    SetupLink(ops::SetupLinkCommand),
    /// The key that encrypts stored secrets: status, rotation, a new key.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Copy the SQLite database to a new file while `rollcall serve` runs (a consistent snapshot).
    /// PostgreSQL: use pg_dump.
    Backup {
        /// The backup file to write.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Copy everything from a SQLite database into a new PostgreSQL one (stop `rollcall serve`
    /// first): same ids, tokens, events and webhook cursors, so identity providers and webhook
    /// consumers do not notice the move. The PostgreSQL nodes need the same secrets key.
    #[command(name = "migrate-store")]
    MigrateStore {
        /// The SQLite database (`sqlite://rollcall.db` or a path).
        #[arg(long)]
        from: String,
        /// The PostgreSQL database (`postgres://...`): migrated here, and it must hold no data.
        #[arg(long)]
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Write one organization as JSON (for support and audits): its connections, policies, roles,
    /// users with their attributes and roles, groups with members, webhook endpoints (no secrets)
    /// and every retained event.
    Export {
        /// Organization id or name.
        #[arg(long)]
        org: String,
        /// Write to this new file (0600) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check what `rollcall serve` needs: the settings, TLS files, the database and its migrations,
    /// the secrets key, the public URL. One line per check (ok, warn, fail); fails when one fails.
    /// Changes nothing.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Replace the SQLite database with a backup (stop `rollcall serve` first; asks you to type
    /// the database's file name, `--yes` to skip). PostgreSQL: use pg_restore.
    Restore {
        /// The backup file (from `rollcall backup`).
        file: PathBuf,
        /// Do not ask for confirmation (needed when not run on a terminal).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ROLLCALL_LISTEN")]
    listen: Option<String>,
    /// Public base URL clients reach the service at (used in meta.location); defaults to http://LISTEN.
    #[arg(long, env = "ROLLCALL_PUBLIC_URL")]
    public_url: Option<String>,
    /// Do not create a default organization and connection on an empty database.
    #[arg(long, env = "ROLLCALL_NO_BOOTSTRAP")]
    no_bootstrap: bool,
    /// Largest accepted request body, in bytes (advertised as bulk.maxPayloadSize).
    #[arg(long, env = "ROLLCALL_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Largest page a list returns (advertised as filter.maxResults).
    #[arg(long, env = "ROLLCALL_MAX_PAGE_SIZE")]
    max_page_size: Option<i64>,
    // Bounds on one SCIM resource and one PATCH.
    /// Most values of one multi-valued attribute (emails, roles, ...; not group members).
    #[arg(long, env = "ROLLCALL_MAX_VALUES_PER_ATTRIBUTE")]
    max_values_per_attribute: Option<usize>,
    /// Longest string value in a resource, in bytes.
    #[arg(long, env = "ROLLCALL_MAX_STRING_BYTES")]
    max_string_bytes: Option<usize>,
    /// Largest resource as stored, in bytes.
    #[arg(long, env = "ROLLCALL_MAX_RESOURCE_BYTES")]
    max_resource_bytes: Option<usize>,
    /// Most operations in one PATCH request.
    #[arg(long, env = "ROLLCALL_PATCH_MAX_OPERATIONS")]
    patch_max_operations: Option<usize>,
    // HTTP limits (`ROLLCALL_*` variables and the TOML file set them too).
    /// Time allowed for a request's line and headers, from their first byte, in milliseconds.
    #[arg(long)]
    header_read_timeout_ms: Option<u64>,
    /// Time allowed for a request's whole body, from its headers, in milliseconds.
    #[arg(long)]
    body_read_timeout_ms: Option<u64>,
    /// A connection with no request in progress for this long is closed, in milliseconds.
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// Open connections at most; at the cap, new ones wait until one closes.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Longest path and query, in bytes (414 beyond).
    #[arg(long)]
    max_uri_bytes: Option<usize>,
    /// Largest header section, in bytes (431 beyond).
    #[arg(long)]
    max_header_bytes: Option<usize>,
    /// Requests in progress on the node at once (503 with Retry-After beyond).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// SCIM requests of one SCIM connection in progress at once (429 with Retry-After beyond).
    #[arg(long)]
    max_in_flight_per_connection: Option<usize>,
    /// SCIM reads and large writes (body of 32 KiB or more) of one SCIM connection executing at
    /// once; its others wait their turn (default: half the cores, at least 1).
    #[arg(long)]
    max_active_per_connection: Option<usize>,
    /// Requests per second allowed per SCIM connection (0: no rate limit).
    #[arg(long)]
    rate_limit_per_second: Option<u32>,
    /// Burst allowed per SCIM connection above the rate (default: two seconds' worth).
    #[arg(long)]
    rate_limit_burst: Option<u32>,
    /// The most bytes of stored documents one list page reads; a larger page ends early.
    #[arg(long, env = "ROLLCALL_MAX_LIST_BYTES")]
    max_list_bytes: Option<usize>,
    /// Serve HTTPS with the certificate chain in this PEM file (needs --tls-key).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of the certificate given with --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Serve GET /metrics (open, no API key) on this address instead of the main listener.
    #[arg(long)]
    metrics_listen: Option<String>,
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List organizations.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Rename an organization.
    Rename {
        /// Organization id or name.
        org: String,
        /// Its new name.
        #[arg(long)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete an organization with its connections, users and groups (asks you to type its name;
    /// `--yes` to skip).
    Delete {
        /// Organization id or name.
        org: String,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
// Parsed once per process: the size of `Create` with its Google Workspace options does not matter.
#[allow(clippy::large_enum_variant)]
enum ConnectionCommand {
    /// Create a SCIM connection and print its base URL and token (shown once); or, with `--kind
    /// google-workspace`, a connection that reads Google Workspace through its Directory API.
    Create {
        /// Organization id or name.
        #[arg(long)]
        org: String,
        /// Identity provider: okta, entra, google, onelogin, jumpcloud, ping, generic.
        #[arg(long, default_value = "generic")]
        idp: String,
        #[arg(long)]
        name: Option<String>,
        /// `scim` (the identity provider pushes), or `google-workspace` (Rollcall reads the directory
        /// as a service account with domain-wide delegation).
        #[arg(long, default_value = "scim")]
        kind: String,
        /// google-workspace: the service account's key file (JSON from Google Cloud); stored encrypted.
        #[arg(long)]
        credentials_file: Option<std::path::PathBuf>,
        /// google-workspace: the administrator the service account acts as.
        #[arg(long)]
        admin_email: Option<String>,
        /// google-workspace: the customer id (Admin console › Account settings); default my_customer.
        #[arg(long)]
        customer: Option<String>,
        /// google-workspace: read only users of this organizational unit (and below); repeatable.
        #[arg(long = "org-unit")]
        org_units: Vec<String>,
        /// google-workspace: read only this group (by address) and its members; repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// google-workspace: seconds between syncs (default 600).
        #[arg(long)]
        interval: Option<i64>,
        /// google-workspace: the Directory API's base URL (a test double); default Google's.
        #[arg(long, hide = true)]
        api_base_url: Option<String>,
        /// google-workspace: the token endpoint (a test double); default the key's token_uri.
        #[arg(long, hide = true)]
        token_url: Option<String>,
        /// Public base URL the service is reached at, to print the SCIM base URL.
        #[arg(long, env = "ROLLCALL_PUBLIC_URL")]
        public_url: Option<String>,
        /// Create it in staging (shadow mode): nothing reaches the application until
        /// `rollcall connection activate`.
        #[arg(long)]
        staging: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List connections.
    List {
        #[arg(long)]
        org: Option<String>,
        /// Public base URL, for the SCIM base URLs in `--json`.
        #[arg(long, env = "ROLLCALL_PUBLIC_URL")]
        public_url: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Disable a connection: every SCIM request is refused (401) until it is enabled; its tokens
    /// and data are kept.
    Disable {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Enable a disabled connection.
    Enable {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Issue a new token for a connection; the old one stops working within a second.
    RotateToken {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a connection with all its users and groups (asks first; `--yes` to skip).
    Delete {
        id: String,
        /// Do not ask for confirmation (needed when not run on a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// The guard against mass deprovisioning: show, set, list what it holds, release or discard.
    #[command(subcommand)]
    Guard(ops::GuardCommand),
    /// Put a live connection into staging (shadow mode): its identity provider is answered as
    /// usual, the application hears nothing of its users and groups until it is activated.
    Stage {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Take a staging connection live: the application receives its current state, then its
    /// changes (asks first; `--yes` to skip).
    Activate {
        id: String,
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// The match report of a connection: the application's accounts against what the identity
    /// provider pushed (show, upload a CSV, delete).
    #[command(subcommand)]
    MatchReport(ops::MatchReportCommand),
    /// Sync a Google Workspace connection now, in this process, and print what it did (a serving
    /// node syncs it on its schedule too; one at a time).
    Sync {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ApiKeyCommand {
    /// Create an API key and print it (shown once).
    Create {
        /// What the key is for, to recognise it in lists.
        #[arg(long)]
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List API keys (prefixes only), revoked ones included.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key; it stops working at once (asks first; `--yes` to skip).
    Revoke {
        id: String,
        /// Do not ask for confirmation (needed when not run on a terminal).
        #[arg(long)]
        yes: bool,
    },
}

/// Settings from defaults, the TOML file and ROLLCALL_* variables, in that order.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Settings {
    database: String,
    listen: String,
    public_url: Option<String>,
    log_format: LogFormat,
    bootstrap: bool,
    max_body_bytes: usize,
    default_page_size: i64,
    max_page_size: i64,
    bulk_max_operations: usize,
    filter_max_length: usize,
    filter_max_depth: usize,
    filter_max_terms: usize,
    // Bounds on one SCIM resource and one PATCH (rollcall_scim::limits::ResourceLimits).
    /// Most values of one multi-valued attribute.
    max_values_per_attribute: usize,
    /// Longest string value in a resource, in bytes.
    max_string_bytes: usize,
    /// Largest resource as stored, in bytes.
    max_resource_bytes: usize,
    /// Most operations in one PATCH request.
    patch_max_operations: usize,
    /// Requests per second allowed per SCIM connection; 0 (or unset) means no limit.
    rate_limit_per_second: Option<u32>,
    /// Burst allowed above the rate; defaults to two seconds' worth.
    rate_limit_burst: Option<u32>,
    // HTTP limits: see `rollcall_server::limits` and the README.
    header_read_timeout_ms: u64,
    body_read_timeout_ms: u64,
    idle_timeout_ms: u64,
    max_connections: usize,
    max_uri_bytes: usize,
    max_header_bytes: usize,
    max_in_flight: usize,
    max_in_flight_per_connection: usize,
    max_active_per_connection: usize,
    /// PostgreSQL: largest number of pooled connections.
    pg_max_connections: u32,
    /// PostgreSQL: statement timeout per connection, in milliseconds (0: none).
    pg_statement_timeout_ms: u64,
    /// PostgreSQL: how many times a write is retried after a serialization failure or deadlock.
    pg_serialization_retries: u32,
    /// Events older than this many days are deleted (0: kept forever).
    event_retention_days: u32,
    /// SCIM requests kept in each connection's request log (0: no request log).
    request_log_per_connection: u32,
    /// Request log entries held in memory before they are written; past it, entries are dropped
    /// (counted and logged) rather than slowing requests down.
    request_log_buffer: usize,
    /// Run the webhook dispatcher in `serve` (every node may: they share the work).
    webhook_dispatcher: bool,
    /// Run directory syncs (Google Workspace connections) in `serve` (every node may: a lease in the
    /// database gives each connection to one node at a time).
    directory_sync: bool,
    /// Run the outbound provisioning worker in `serve` (every node may: a lease in the database
    /// gives each provisioning target to one node at a time).
    outbound_provisioning: bool,
    /// Allow webhook URLs on loopback addresses (127.0.0.0/8, ::1).
    webhook_allow_loopback: bool,
    /// Allow webhook URLs on private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).
    webhook_allow_private: bool,
    /// Comma-separated networks (CIDR) allowed for webhook URLs whatever their kind.
    webhook_allowed_networks: String,
    /// Longest a delivery attempt may take, in milliseconds.
    webhook_timeout_ms: u64,
    /// An endpoint failing continuously for this many hours is disabled.
    webhook_retry_horizon_hours: u64,
    /// How often the dispatcher looks for work it was not woken for, in milliseconds.
    webhook_poll_interval_ms: u64,
    /// Endpoints one node delivers to at once.
    webhook_concurrency: usize,
    // --- memory bounds of list responses ---
    /// The most bytes of stored documents one list page reads; a page that would be larger ends
    /// early, with fewer resources than asked for.
    max_list_bytes: usize,
    /// The file holding the secrets key (see `secrets.rs`); the key itself is never a setting of
    /// the file, only `ROLLCALL_SECRETS_KEY`.
    secrets_key_file: Option<PathBuf>,
    /// `serve` over TLS: the certificate chain (PEM) and its private key (PEM); both or neither.
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    // --- metrics (see `rollcall_server::metrics` and the README) ---
    /// Serve `GET /metrics` at all.
    metrics: bool,
    /// A listener of its own for `/metrics` (open there; not served on the main listener then).
    metrics_listen: Option<String>,
    /// On the main listener, a bearer token accepted for `/metrics` besides an operator API key.
    metrics_token: Option<String>,
    /// Label the SCIM request metrics with the connection id.
    metrics_per_connection: bool,
    // --- the console and setup pages' branding ---
    /// The product name on every page.
    console_product_name: String,
    /// A logo (an .svg or .png file), read at start and served by the binary.
    console_logo: Option<PathBuf>,
    /// The primary colour, `#rgb` or `#rrggbb`.
    console_primary_color: String,
}

impl Default for Settings {
    fn default() -> Self {
        let scim = ScimConfig::default();
        let limits = FilterLimits::default();
        let pg = PgSettings::default();
        let hooks = WebhookConfig::default();
        let http = HttpLimits::default();
        Settings {
            database: "sqlite://rollcall.db".into(),
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            log_format: LogFormat::Pretty,
            bootstrap: true,
            max_body_bytes: scim.max_body_bytes,
            default_page_size: scim.default_page_size,
            max_page_size: scim.max_page_size,
            bulk_max_operations: scim.bulk_max_operations,
            filter_max_length: limits.max_length,
            filter_max_depth: limits.max_depth,
            filter_max_terms: limits.max_terms,
            max_values_per_attribute: scim.resource_limits.max_values_per_attribute,
            max_string_bytes: scim.resource_limits.max_string_bytes,
            max_resource_bytes: scim.resource_limits.max_resource_bytes,
            patch_max_operations: scim.resource_limits.max_patch_operations,
            rate_limit_per_second: Some(rollcall_server::ratelimit::DEFAULT_PER_SECOND),
            rate_limit_burst: None,
            header_read_timeout_ms: http.header_read_timeout.as_millis() as u64,
            body_read_timeout_ms: http.body_read_timeout.as_millis() as u64,
            idle_timeout_ms: http.idle_timeout.as_millis() as u64,
            max_connections: http.max_connections,
            max_uri_bytes: http.max_uri_bytes,
            max_header_bytes: http.max_header_bytes,
            max_in_flight: http.max_in_flight,
            max_in_flight_per_connection: http.max_in_flight_per_connection,
            max_active_per_connection: http.max_active_per_connection,
            pg_max_connections: pg.max_connections,
            pg_statement_timeout_ms: pg.statement_timeout_ms,
            pg_serialization_retries: pg.serialization_retries,
            event_retention_days: 30,
            request_log_per_connection: RequestLogSettings::default().keep_per_connection,
            request_log_buffer: RequestLogSettings::default().buffer,
            webhook_dispatcher: true,
            directory_sync: true,
            outbound_provisioning: true,
            webhook_allow_loopback: false,
            webhook_allow_private: false,
            webhook_allowed_networks: String::new(),
            webhook_timeout_ms: hooks.timeout.as_millis() as u64,
            webhook_retry_horizon_hours: hooks.retry_horizon.as_secs() / 3600,
            webhook_poll_interval_ms: hooks.poll_interval.as_millis() as u64,
            webhook_concurrency: hooks.concurrency,
            max_list_bytes: scim.max_list_bytes,
            secrets_key_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            metrics: true,
            metrics_listen: None,
            metrics_token: None,
            metrics_per_connection: false,
            console_product_name: Branding::default().product_name,
            console_logo: None,
            console_primary_color: Branding::default().primary_color,
        }
    }
}

/// The smallest list byte budget: a page still holds at least one resource whatever the budget,
/// but one this small is a typo.
const MIN_LIST_BYTES: usize = 1024;

/// Upper bounds of the activity settings, so that a typo cannot ask for the impossible.
const MAX_RETENTION_DAYS: u32 = 36_500;
const MAX_REQUEST_LOG_PER_CONNECTION: u32 = 100_000;
const MAX_REQUEST_LOG_BUFFER: usize = 1_000_000;

impl Settings {
    /// The bounds on one SCIM resource and one PATCH, checked.
    fn resource_limits(&self) -> Result<ResourceLimits, String> {
        for (name, v) in [
            ("max_values_per_attribute", self.max_values_per_attribute),
            ("max_string_bytes", self.max_string_bytes),
            ("max_resource_bytes", self.max_resource_bytes),
            ("patch_max_operations", self.patch_max_operations),
        ] {
            if v == 0 {
                return Err(format!("configuration: {name} must be at least 1"));
            }
        }
        Ok(ResourceLimits {
            max_values_per_attribute: self.max_values_per_attribute,
            max_string_bytes: self.max_string_bytes,
            max_resource_bytes: self.max_resource_bytes,
            max_patch_operations: self.patch_max_operations,
        })
    }

    /// Event retention and request log settings, checked.
    fn activity(&self) -> Result<ActivitySettings, String> {
        if self.event_retention_days > MAX_RETENTION_DAYS {
            return Err(format!(
                "event_retention_days must be at most {MAX_RETENTION_DAYS} (0 keeps events forever), not {}",
                self.event_retention_days
            ));
        }
        if self.request_log_per_connection > MAX_REQUEST_LOG_PER_CONNECTION {
            return Err(format!(
                "request_log_per_connection must be at most {MAX_REQUEST_LOG_PER_CONNECTION} (0 switches the request log off), not {}",
                self.request_log_per_connection
            ));
        }
        if !(1..=MAX_REQUEST_LOG_BUFFER).contains(&self.request_log_buffer) {
            return Err(format!(
                "request_log_buffer must be from 1 to {MAX_REQUEST_LOG_BUFFER}, not {}",
                self.request_log_buffer
            ));
        }
        Ok(ActivitySettings {
            event_retention: (self.event_retention_days > 0)
                .then(|| std::time::Duration::from_secs(u64::from(self.event_retention_days) * 86_400)),
            request_log: RequestLogSettings {
                keep_per_connection: self.request_log_per_connection,
                buffer: self.request_log_buffer,
            },
            ..ActivitySettings::default()
        })
    }
}

/// The shortest `metrics_token` accepted.
const MIN_METRICS_TOKEN_CHARS: usize = 16;

impl Settings {
    /// How `/metrics` is served on the main listener, checked.
    fn metrics(&self) -> Result<MetricsSettings, String> {
        let token = self.metrics_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if let Some(t) = token
            && (t.chars().count() < MIN_METRICS_TOKEN_CHARS || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(format!(
                "configuration: metrics_token must be at least {MIN_METRICS_TOKEN_CHARS} characters without spaces"
            ));
        }
        if token.is_some() && self.metrics_listen.is_some() {
            return Err(
                "configuration: metrics_token is for /metrics on the main listener; on metrics_listen /metrics is open \
                 (bind it to a private address), so give one or the other"
                    .into(),
            );
        }
        Ok(MetricsSettings {
            on_main_listener: self.metrics && self.metrics_listen.is_none(),
            token: token.map(str::to_string),
            per_connection: self.metrics_per_connection,
        })
    }

    /// The console's branding, checked; the logo file is read here.
    fn branding(&self) -> Result<Branding, String> {
        let name = self.console_product_name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(
                "configuration: console_product_name must be 1 to 100 characters without control characters".into(),
            );
        }
        if !Branding::valid_color(self.console_primary_color.trim()) {
            return Err(format!(
                "configuration: console_primary_color \"{}\" is not a colour written #rgb or #rrggbb",
                self.console_primary_color
            ));
        }
        let logo = match &self.console_logo {
            None => None,
            Some(path) => {
                let content_type = Branding::logo_type(&path.to_string_lossy()).ok_or_else(|| {
                    format!(
                        "configuration: console_logo {} must be an .svg or .png file",
                        path.display()
                    )
                })?;
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("configuration: cannot read console_logo {}: {e}", path.display()))?;
                if bytes.len() > 512 * 1024 {
                    return Err(format!(
                        "configuration: console_logo {} is larger than 512 KiB",
                        path.display()
                    ));
                }
                Some(Logo {
                    bytes: bytes.into(),
                    content_type,
                })
            }
        };
        Ok(Branding {
            product_name: name.to_string(),
            logo,
            primary_color: self.console_primary_color.trim().to_string(),
        })
    }

    /// The HTTP limits, checked.
    fn http_limits(&self) -> Result<HttpLimits, String> {
        let limits = HttpLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
            max_uri_bytes: self.max_uri_bytes,
            max_header_bytes: self.max_header_bytes,
            max_in_flight: self.max_in_flight,
            max_in_flight_per_connection: self.max_in_flight_per_connection,
            max_active_per_connection: self.max_active_per_connection,
        };
        limits.validate().map_err(|e| format!("configuration: {e}"))?;
        Ok(limits)
    }

    /// The TLS configuration of `serve`, or `None` to serve plain HTTP: the certificate and its
    /// key are given together, and both files must hold what they should.
    fn tls(&self) -> Result<Option<Arc<rollcall_server::tls::ServerConfig>>, String> {
        let given = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        match (given(&self.tls_cert_file), given(&self.tls_key_file)) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => rollcall_server::tls::server_config(&cert, &key).map(Some),
            (Some(cert), None) => Err(format!(
                "configuration: a TLS certificate is given ({}) but no private key: add --tls-key \
                 (ROLLCALL_TLS_KEY_FILE, tls_key_file)",
                cert.display()
            )),
            (None, Some(key)) => Err(format!(
                "configuration: a TLS private key is given ({}) but no certificate: add --tls-cert \
                 (ROLLCALL_TLS_CERT_FILE, tls_cert_file)",
                key.display()
            )),
        }
    }

    /// The per-connection rate limit: (rate, burst), or `None` when it is off.
    fn rate_limit(&self) -> Option<(NonZeroU32, NonZeroU32)> {
        let per_second = self.rate_limit_per_second.and_then(NonZeroU32::new)?;
        let burst = self
            .rate_limit_burst
            .and_then(NonZeroU32::new)
            .unwrap_or_else(|| per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1)));
        Some((per_second, burst))
    }
}

/// The soft limit on open files of this process (Linux), to warn when the connection cap is above it.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The webhook settings, checked.
fn webhook_config(s: &Settings) -> Result<WebhookConfig, String> {
    let allowed_networks = NetworkPolicy::parse_networks(&s.webhook_allowed_networks)
        .map_err(|e| format!("configuration: webhook_allowed_networks: {e}"))?;
    if s.webhook_timeout_ms == 0 {
        return Err("configuration: webhook_timeout_ms must be more than 0".into());
    }
    if s.webhook_poll_interval_ms < 10 {
        return Err("configuration: webhook_poll_interval_ms must be at least 10".into());
    }
    if s.webhook_concurrency == 0 {
        return Err("configuration: webhook_concurrency must be at least 1".into());
    }
    Ok(WebhookConfig {
        policy: NetworkPolicy {
            allow_loopback: s.webhook_allow_loopback,
            allow_private: s.webhook_allow_private,
            allowed_networks,
        },
        timeout: Duration::from_millis(s.webhook_timeout_ms),
        retry_horizon: Duration::from_secs(s.webhook_retry_horizon_hours.saturating_mul(3600)),
        poll_interval: Duration::from_millis(s.webhook_poll_interval_ms),
        concurrency: s.webhook_concurrency,
        ..WebhookConfig::default()
    })
}

fn load_settings(cli: &Cli) -> Result<Settings, String> {
    // What the operator configured (file, ROLLCALL_* variables), without the defaults.
    let mut given = Figment::new();
    if let Some(path) = &cli.config {
        if !path.exists() {
            return Err(format!("configuration file {} does not exist", path.display()));
        }
        given = given.merge(Toml::file(path));
        if given.contains("secrets_key") {
            return Err(format!(
                "configuration file {}: the secrets key is not a setting of the file; put it in a file of its own \
                 (mode 0600) and name that file with secrets_key_file",
                path.display()
            ));
        }
    }
    // ROLLCALL_SECRETS_KEY is read by `secrets.rs` alone, so the key is never part of the settings.
    let given = given.merge(Env::prefixed("ROLLCALL_").ignore(&["config", "secrets_key"]));
    let fig = Figment::from(Serialized::defaults(Settings::default())).merge(given.clone());
    let mut s: Settings = fig.extract().map_err(|e| format!("configuration: {e}"))?;
    if let Some(d) = &cli.database {
        s.database = d.clone();
    } else if !given.contains("database")
        && let Ok(url) = std::env::var("DATABASE_URL")
        && !url.trim().is_empty()
    {
        // The conventional variable, used only when no Rollcall setting names a database.
        s.database = url.trim().to_string();
    }
    if let Some(f) = cli.log_format {
        s.log_format = f;
    }
    if cli.secrets_key_file.is_some() {
        s.secrets_key_file = cli.secrets_key_file.clone();
    }
    if let Command::Serve(a) = &cli.command {
        if let Some(l) = &a.listen {
            s.listen = l.clone();
        }
        if a.public_url.is_some() {
            s.public_url = a.public_url.clone();
        }
        if a.no_bootstrap {
            s.bootstrap = false;
        }
        if let Some(v) = a.max_body_bytes {
            s.max_body_bytes = v;
        }
        if let Some(v) = a.max_page_size {
            s.max_page_size = v;
        }
        if let Some(v) = a.max_values_per_attribute {
            s.max_values_per_attribute = v;
        }
        if let Some(v) = a.max_string_bytes {
            s.max_string_bytes = v;
        }
        if let Some(v) = a.max_resource_bytes {
            s.max_resource_bytes = v;
        }
        if let Some(v) = a.patch_max_operations {
            s.patch_max_operations = v;
        }
        let set = |flag: Option<u64>, to: &mut u64| {
            if let Some(v) = flag {
                *to = v;
            }
        };
        set(a.header_read_timeout_ms, &mut s.header_read_timeout_ms);
        set(a.body_read_timeout_ms, &mut s.body_read_timeout_ms);
        set(a.idle_timeout_ms, &mut s.idle_timeout_ms);
        for (flag, to) in [
            (a.max_connections, &mut s.max_connections),
            (a.max_uri_bytes, &mut s.max_uri_bytes),
            (a.max_header_bytes, &mut s.max_header_bytes),
            (a.max_in_flight, &mut s.max_in_flight),
            (a.max_in_flight_per_connection, &mut s.max_in_flight_per_connection),
            (a.max_active_per_connection, &mut s.max_active_per_connection),
        ] {
            if let Some(v) = flag {
                *to = v;
            }
        }
        if a.rate_limit_per_second.is_some() {
            s.rate_limit_per_second = a.rate_limit_per_second;
        }
        if a.rate_limit_burst.is_some() {
            s.rate_limit_burst = a.rate_limit_burst;
        }
        if let Some(v) = a.max_list_bytes {
            s.max_list_bytes = v;
        }
        if a.tls_cert.is_some() {
            s.tls_cert_file = a.tls_cert.clone();
        }
        if a.tls_key.is_some() {
            s.tls_key_file = a.tls_key.clone();
        }
        if a.metrics_listen.is_some() {
            s.metrics_listen = a.metrics_listen.clone();
        }
    }
    if s.max_list_bytes < MIN_LIST_BYTES {
        return Err(format!(
            "configuration: max_list_bytes must be at least {MIN_LIST_BYTES}, not {}",
            s.max_list_bytes
        ));
    }
    Ok(s)
}

/// The log (stderr, filtered by `ROLLCALL_LOG`); with `statement_metrics`, also the statement
/// latency histogram of `/metrics` ([`statements`]), which has a filter of its own.
fn init_logging(format: LogFormat, statement_metrics: bool) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLCALL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colour only on a terminal: a log file or collector gets plain `key=value` fields.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
        LogFormat::Pretty => fmt.with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(statement_metrics.then(statements::layer))
        .init();
}

/// What a store is opened for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StoreUse {
    /// `rollcall serve` (PostgreSQL: its connections are named so, see `secrets rotate-key`).
    Serve,
    /// A command.
    Command,
    /// A command that must have the database to itself (SQLite: refused while a server has it
    /// open; PostgreSQL: the command checks for servers itself).
    Exclusive,
}

/// Opens the store; on PostgreSQL, also the PostgreSQL store itself.
async fn open_store(
    s: &Settings,
    registry: Arc<SchemaRegistry>,
    purpose: StoreUse,
) -> Result<(Arc<dyn Store>, Option<PostgresStore>), String> {
    let database = s.database.as_str();
    if secrets::is_postgres(database) {
        let pg = PgSettings {
            max_connections: s.pg_max_connections,
            statement_timeout_ms: s.pg_statement_timeout_ms,
            serialization_retries: s.pg_serialization_retries,
            application_name: if purpose == StoreUse::Serve {
                rollcall_store::postgres::SERVE_APPLICATION_NAME
            } else {
                "rollcall"
            },
        };
        let store = PostgresStore::open(database, registry, pg)
            .await
            .map_err(|e| format!("opening {}: {e}", redact_url(database)))?;
        return Ok((Arc::new(store.clone()), Some(store)));
    }
    let store = if purpose == StoreUse::Exclusive {
        SqliteStore::open_exclusive(database, registry).await
    } else {
        SqliteStore::open(database, registry).await
    }
    .map_err(|e| format!("opening {database}: {e}"))?;
    Ok((Arc::new(store), None))
}

/// `rollcall backup`.
fn backup(s: &Settings, file: &std::path::Path, force: bool, json: bool) -> Result<(), String> {
    if secrets::is_postgres(&s.database) {
        return Err(
            "rollcall backup copies a SQLite database; back up PostgreSQL with its own tools: `pg_dump -Fc -f \
             rollcall.dump <database URL>` (restore with pg_restore), or pg_basebackup for the whole server \
             (docs/operations.md)"
                .into(),
        );
    }
    let Some(db) = sqlite_file(&s.database) else {
        return Err("an in-memory database has nothing to back up".into());
    };
    check_database_exists(&s.database, false)?;
    let summary = rollcall_store::sqlite::backup::backup(&db, file, force)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"backup": file, "database": db, "summary": summary})
        );
    } else {
        println!(
            "backed up {} to {}: {}",
            db.display(),
            file.display(),
            describe(&summary)
        );
        if summary.secrets.sealed() > 0 {
            println!(
                "It holds {} secrets encrypted under key {}; the key is not in the backup: keep it (e.g. {}) apart \
                 from the backups, since a backup cannot be used without it.",
                summary.secrets.sealed(),
                summary.secrets.by_key.keys().cloned().collect::<Vec<_>>().join(", "),
                secrets::DEFAULT_KEY_FILE
            );
        }
    }
    Ok(())
}

/// What a database holds, in a line.
fn describe(d: &rollcall_store::sqlite::backup::DatabaseSummary) -> String {
    format!(
        "{} organizations, {} connections, {} users, {} groups, {} events, {} webhook endpoints (schema version {}, \
         {} bytes)",
        d.organizations, d.connections, d.users, d.groups, d.events, d.webhook_endpoints, d.schema_version, d.bytes
    )
}

/// `rollcall restore`.
fn restore(s: &Settings, keys: &secrets::KeyConfig, file: &std::path::Path, yes: bool) -> Result<(), String> {
    if secrets::is_postgres(&s.database) {
        return Err(
            "rollcall restore replaces a SQLite database; restore PostgreSQL with its own tools: `pg_restore \
             --clean --if-exists -d <database URL> rollcall.dump` for a pg_dump archive (docs/operations.md)"
                .into(),
        );
    }
    let Some(db) = sqlite_file(&s.database) else {
        return Err("an in-memory database cannot be restored into".into());
    };
    if !file.exists() {
        return Err(format!("no backup at {}", file.display()));
    }
    // Checked before anyone is asked anything: the backup, and that no server has the database.
    let backup = rollcall_store::sqlite::backup::inspect(file)?;
    let only_us = rollcall_store::sqlite::backup::lock_for_restore(&db)?;
    if db.exists() {
        let name = db
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| db.display().to_string());
        let current = rollcall_store::sqlite::backup::inspect(&db)
            .map(|d| describe(&d))
            .unwrap_or_else(|e| format!("unreadable: {e}"));
        confirm(
            yes,
            &format!(
                "Replacing the database at {} ({current}) with the backup {} ({})",
                db.display(),
                file.display(),
                describe(&backup)
            ),
            &name,
        )?;
    }
    let restored = rollcall_store::sqlite::backup::restore(&db, file, &only_us)?;
    drop(only_us);
    println!(
        "restored {} into {}: {}",
        file.display(),
        db.display(),
        describe(&restored)
    );
    if restored.migrations_pending > 0 {
        println!(
            "{} migrations of this version are not applied to it yet: `rollcall serve` applies them when it starts.",
            restored.migrations_pending
        );
    }
    let configured = keys.key().ok().flatten();
    let missing = restored
        .secrets
        .missing_keys(
            configured
                .map(|(k, _)| rollcall_store::secrets::SecretBox::new(k))
                .as_ref(),
        )
        .join(", ");
    if !missing.is_empty() {
        println!(
            "It holds secrets encrypted under key {missing}, which is not configured here: start `rollcall serve` \
             with that key ({}).",
            secrets::HOW_TO_SET
        );
    }
    Ok(())
}

/// The public URL identity providers reach the service at, as the command line knows it: the one
/// given on the command line or configured, else the one `rollcall serve` recorded in the database
/// (with when it did); `None` when there is neither (never a guess from the listen address).
async fn resolve_public_url(
    flag: Option<String>,
    s: &Settings,
    store: &Arc<dyn Store>,
) -> Result<(Option<String>, Option<i64>), String> {
    let given = flag.or_else(|| s.public_url.clone()).filter(|u| !u.trim().is_empty());
    if given.is_some() {
        return Ok((given, None));
    }
    Ok(
        match Admin::recorded_public_url(store).await.map_err(|e| e.to_string())? {
            Some(r) => (Some(r.value), Some(r.updated_us)),
            None => (None, None),
        },
    )
}

/// Where `serve --log-format json` writes the first SCIM token: beside a SQLite database, else in
/// the working directory.
fn first_token_file(database: &str) -> PathBuf {
    let dir = sqlite_file(database)
        .and_then(|f| f.parent().map(PathBuf::from))
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    dir.join("rollcall-first-token")
}

/// Writes `text` to a new file only its owner can read (mode 0600 on Unix); an existing file is
/// replaced.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// The file a SQLite database URL names (`sqlite://rollcall.db`, `sqlite:x.db?mode=rwc`, a bare
/// path), or `None` for an in-memory database.
fn sqlite_file(database: &str) -> Option<PathBuf> {
    let path = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))
        .unwrap_or(database);
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

/// Refuses a missing SQLite file unless the command may create it (`serve`, or `--create`),
/// naming the path looked at.
fn check_database_exists(database: &str, may_create: bool) -> Result<(), String> {
    if may_create || database.starts_with("postgres://") || database.starts_with("postgresql://") {
        return Ok(());
    }
    match sqlite_file(database) {
        Some(path) if !path.exists() => {
            let full = std::path::absolute(&path).unwrap_or(path);
            Err(format!(
                "no database at {}: run this command where `rollcall serve` runs, point --database \
                 (or ROLLCALL_DATABASE) at its database, or pass --create to start an empty one",
                full.display()
            ))
        }
        _ => Ok(()),
    }
}

/// Asks on the terminal before a destructive command, unless `--yes` was given: the operator must
/// type `expected` (the id of what is destroyed). Without a terminal, refuses without `--yes`.
pub(crate) fn confirm(yes: bool, what: &str, expected: &str) -> Result<(), String> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "not done: {what} cannot be undone; pass --yes to confirm (there is no terminal to ask on)"
        ));
    }
    eprint!("{what} cannot be undone. Type {expected} to confirm: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.trim() == expected {
        Ok(())
    } else {
        Err("not done: the confirmation did not match".into())
    }
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..].find(['/', '?']).map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &url[scheme_end + at..]
        ),
        _ => url.to_string(),
    }
}

fn scim_base(public_url: &str, connection_id: &str) -> String {
    format!("{}/scim/v2/{connection_id}", public_url.trim_end_matches('/'))
}

/// mimalloc instead of glibc's malloc: request handling allocates many small, short-lived
/// objects (JSON values, strings), and glibc's allocator showed as about 12 % of a `GET`'s CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Giving memory back to the operating system after a spike (large list responses, a big PATCH).
///
/// mimalloc returns freed memory to the system ("purges" it) only some time after it is freed
/// (1 s by default), and only when some thread calls into the allocator afterwards: a server that
/// goes quiet after a spike kept it all (RSS 81 MB before a spike of large lists, 308 MB 15 s after).
/// So the purge delay is shorter, and a thread of its own asks for the purges that are due once a
/// second. SQLite allocates with the C library's `malloc`, whose per-thread arenas keep their free
/// memory too: on glibc the same thread trims them (`malloc_trim`).
mod memory {
    use std::ffi::{c_int, c_long};
    use std::time::Duration;

    /// `mi_option_purge_delay`: milliseconds between freeing memory and returning it.
    const MI_OPTION_PURGE_DELAY: c_int = 15;
    const PURGE_DELAY_MS: c_long = 50;
    const RECLAIM_EVERY: Duration = Duration::from_secs(1);

    // The mimalloc library is linked in by the `mimalloc` crate, which does not bind these.
    unsafe extern "C" {
        fn mi_option_set(option: c_int, value: c_long);
        fn mi_collect(force: bool);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> c_int;
    }

    /// Sets the allocator's options; call first thing.
    pub fn configure() {
        // SAFETY: a documented option, set before the threads that allocate are started.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }

    /// Starts the thread that returns freed memory to the system.
    pub fn start_reclaimer() {
        let started = std::thread::Builder::new().name("memory-reclaimer".into()).spawn(|| {
            loop {
                std::thread::sleep(RECLAIM_EVERY);
                // SAFETY: both only release memory nobody uses; safe from any thread at any time.
                unsafe { mi_collect(false) };
                #[cfg(all(target_os = "linux", target_env = "gnu"))]
                unsafe {
                    malloc_trim(0);
                }
            }
        });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the memory reclaimer thread");
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    memory::configure();
    let cli = Cli::parse();
    if let Command::Doctor { json } = cli.command {
        // A setting that does not load is one of the things the doctor reports.
        let settings = load_settings(&cli);
        init_logging(settings.as_ref().map_or(LogFormat::Pretty, |s| s.log_format), false);
        return match doctor::run(settings, json).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rollcall: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match load_settings(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rollcall: {e}");
            return ExitCode::from(2);
        }
    };
    // Statement latency is measured for `serve`'s `/metrics` only.
    init_logging(
        settings.log_format,
        matches!(cli.command, Command::Serve(_)) && settings.metrics,
    );
    match run(cli, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollcall: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A new file only the owner can read (an export holds personal data); an existing one is refused.
fn new_private_file(path: &std::path::Path) -> Result<std::fs::File, String> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `rollcall migrate-store`: the SQLite database opened alone (no server may be writing to it), the
/// PostgreSQL one migrated, then every row copied in one transaction.
async fn migrate_store(from: &str, to: &str, json: bool) -> Result<(), String> {
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        return Err(format!("--to must be a postgres:// URL, not \"{to}\""));
    }
    if from.starts_with("postgres") {
        return Err("--from must be a SQLite database (sqlite://FILE or a path)".into());
    }
    check_database_exists(from, false)?;
    let registry = Arc::new(SchemaRegistry::standard());
    let src = SqliteStore::open_exclusive(from, registry.clone())
        .await
        .map_err(|e| format!("opening {from}: {e} (stop rollcall serve first)"))?;
    let dst = PostgresStore::open(to, registry, PgSettings::default())
        .await
        .map_err(|e| format!("opening the PostgreSQL database: {e}"))?;
    let report = rollcall_store::migrate::sqlite_to_postgres(&src, &dst)
        .await
        .map_err(|e| format!("migrate-store: {e}"))?;
    let keys: Vec<String> = src
        .secret_inventory()
        .await
        .map_err(|e| e.to_string())?
        .by_key
        .into_keys()
        .collect();
    if json {
        let tables: serde_json::Map<String, serde_json::Value> =
            report.tables.iter().map(|(t, n)| (t.clone(), (*n).into())).collect();
        println!("{}", serde_json::json!({"tables": tables, "secrets_key_ids": keys}));
    } else {
        println!("TABLE\tROWS");
        for (t, n) in &report.tables {
            println!("{t}\t{n}");
        }
        if !keys.is_empty() {
            println!(
                "Stored secrets are encrypted under the key {}: give the PostgreSQL nodes that key \
                 (ROLLCALL_SECRETS_KEY_FILE; with SQLite it is rollcall-secrets.key beside the database).",
                keys.join(", ")
            );
        }
    }
    Ok(())
}

async fn run(cli: Cli, s: Settings) -> Result<(), String> {
    let keys = secrets::KeyConfig::new(s.secrets_key_file.clone(), &s.database, sqlite_file(&s.database));
    // The commands that work on the database's file, or on no database, without opening a store.
    match &cli.command {
        Command::Backup { file, force, json } => return backup(&s, file, *force, *json),
        Command::MigrateStore { from, to, json } => return migrate_store(from, to, *json).await,
        Command::Restore { file, yes } => return restore(&s, &keys, file, *yes),
        Command::Secrets(secrets::SecretsCommand::GenerateKey { out }) => return secrets::generate_key(out.as_deref()),
        _ => {}
    }
    check_database_exists(&s.database, cli.create || matches!(cli.command, Command::Serve(_)))?;
    let registry = Arc::new(SchemaRegistry::standard());
    let (store, postgres) = match &cli.command {
        Command::Serve(_) => open_store(&s, registry.clone(), StoreUse::Serve).await?,
        // Running servers must not see a half-done rotation.
        Command::Secrets(secrets::SecretsCommand::RotateKey { .. }) => {
            open_store(&s, registry.clone(), StoreUse::Exclusive).await?
        }
        _ => open_store(&s, registry.clone(), StoreUse::Command).await?,
    };
    match &cli.command {
        // `serve` sets its keys once its settings are checked.
        Command::Serve(_) | Command::Secrets(_) => {}
        _ => {
            secrets::use_configured(&keys, &store)?;
        }
    }
    let default_public = format!("http://{}", s.listen);
    let public_url = |flag: Option<String>| {
        flag.or_else(|| s.public_url.clone())
            .unwrap_or_else(|| default_public.clone())
    };
    // The command line shares the management API's operations (and validation).
    let admin = |flag: Option<String>| Admin::new(store.clone(), Arc::default(), &public_url(flag));
    let err = |e: rollcall_server::admin::AdminError| e.to_string();
    // Changes made here are recorded as made by the command line.
    let by = WriteContext::cli();
    match cli.command {
        Command::Serve(_) => serve(s, store, postgres, registry, &keys).await,
        Command::Secrets(secrets::SecretsCommand::Status { json }) => secrets::status(&keys, &store, json).await,
        Command::Secrets(secrets::SecretsCommand::RotateKey { new_key_file, json }) => {
            secrets::rotate_key(&keys, &store, postgres.as_ref(), &new_key_file, json).await
        }
        Command::Secrets(secrets::SecretsCommand::GenerateKey { .. })
        | Command::Doctor { .. }
        | Command::Backup { .. }
        | Command::MigrateStore { .. }
        | Command::Restore { .. } => unreachable!("handled before the store is opened"),
        Command::Org(OrgCommand::Create { name, json }) => {
            let org = admin(None).create_organization(&by, &name).await.map_err(err)?;
            if json {
                // The management API's view of it.
                println!(
                    "{}",
                    serde_json::to_string(&rollcall_server::api::schemas::OrganizationView::from(&org))
                        .unwrap_or_default()
                );
            } else {
                println!("organization {} created: {}", org.name, org.id);
            }
            Ok(())
        }
        Command::Org(OrgCommand::List { json }) => ops::org_list(&admin(None), json).await,
        Command::Org(OrgCommand::Rename { org, name, json }) => {
            ops::org_rename(&admin(None), &by, &org, &name, json).await
        }
        Command::Org(OrgCommand::Delete { org, yes }) => ops::org_delete(&admin(None), &by, &org, yes).await,
        Command::Role(cmd) => ops::role(&admin(None), &by, cmd).await,
        Command::RoleMapping(cmd) => ops::role_mapping(&admin(None), &by, cmd).await,
        Command::DefaultRoles(cmd) => ops::default_roles(&admin(None), &by, cmd).await,
        Command::Workspace(cmd) => workspaces::workspace(&admin(None), &by, cmd).await,
        Command::WorkspaceMapping(cmd) => workspaces::workspace_mapping(&admin(None), &by, cmd).await,
        Command::WorkspaceSettings(cmd) => workspaces::workspace_settings(&admin(None), &by, cmd).await,
        Command::Export { org, out } => {
            let admin = admin(None);
            match out {
                None => {
                    let stdout = std::io::stdout();
                    let mut w = std::io::BufWriter::new(stdout.lock());
                    export::export(&admin, registry.clone(), &org, &mut w).await.map(|_| ())
                }
                Some(path) => {
                    let file = new_private_file(&path)?;
                    let mut w = std::io::BufWriter::new(file);
                    let summary = export::export(&admin, registry.clone(), &org, &mut w).await;
                    match summary {
                        Ok(s) => {
                            eprintln!(
                                "exported to {}: {} connections, {} users, {} groups ({} memberships), {} events, {} webhook endpoints",
                                path.display(),
                                s.connections,
                                s.users,
                                s.groups,
                                s.memberships,
                                s.events,
                                s.webhooks
                            );
                            Ok(())
                        }
                        Err(e) => {
                            drop(w);
                            let _ = std::fs::remove_file(&path);
                            Err(e)
                        }
                    }
                }
            }
        }
        Command::SetupLink(cmd) => {
            // The link's URL is under the public URL IT admins reach the service at: given here or
            // configured, else the one `rollcall serve` recorded; never a guess.
            let flag = match &cmd {
                ops::SetupLinkCommand::Create { public_url, .. } => public_url.clone(),
                _ => None,
            };
            let (url, _) = resolve_public_url(flag, &s, &store).await?;
            ops::setup_link(&admin(url.clone()), &by, cmd, url.is_some()).await
        }
        Command::Target(cmd) => {
            // With the server's network policy, so that a plan reads where the server would push.
            let outbound = rollcall_outbound::Outbound::new(
                store.clone(),
                rollcall_outbound::Transport::new(webhook_config(&s)?.policy),
                Default::default(),
            );
            targets::target(&admin(None).with_outbound(outbound), &by, cmd).await
        }
        Command::Webhook(cmd) => {
            // With the server's network policy, so that a redelivery goes where the server's would.
            let hooks = Webhooks::new(store.clone(), webhook_config(&s)?);
            ops::webhook(&admin(None).with_webhooks(hooks), cmd).await
        }
        Command::Connection(ConnectionCommand::Create {
            org,
            kind,
            credentials_file,
            admin_email,
            customer,
            org_units,
            groups,
            interval,
            api_base_url,
            token_url,
            name,
            json,
            ..
        }) if kind.parse::<rollcall_store::ConnectionKind>()? == rollcall_store::ConnectionKind::GoogleWorkspace => {
            let admin = admin(None);
            let org = admin.find_organization(&org).await.map_err(err)?;
            let path = credentials_file.ok_or("--credentials-file (the service account's key) is required")?;
            let credentials = zeroize::Zeroizing::new(
                std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            );
            let (c, source) = admin
                .create_google_workspace_connection(
                    &by,
                    &org.id,
                    rollcall_server::admin::GoogleWorkspaceInput {
                        name,
                        customer,
                        admin_email: admin_email
                            .ok_or("--admin-email (the admin the service account acts as) is required")?,
                        credentials: credentials.to_string(),
                        scope: rollcall_store::SyncScope { org_units, groups },
                        interval_s: interval,
                        api_base_url,
                        token_url,
                    },
                )
                .await
                .map_err(err)?;
            ops::google_workspace_created(&c, &source, json);
            Ok(())
        }
        Command::Connection(ConnectionCommand::Sync { id, json }) => {
            let scim = Scim::new(store.clone(), registry.clone(), ScimConfig::default());
            let sync = rollcall_server::directory_sync::DirectorySync::new(scim, Default::default());
            let source = sync.sync_now(&id).await?;
            ops::sync_report(&source, json)
        }
        Command::Connection(ConnectionCommand::Create {
            org,
            idp,
            name,
            public_url,
            staging,
            json,
            ..
        }) => {
            // The URL identity providers use: the one given here or configured, else the one
            // `rollcall serve` recorded in the database; never a guess from the listen address.
            let (public_url, recorded_at) = resolve_public_url(public_url, &s, &store).await?;
            let admin = admin(public_url.clone());
            let org = admin.find_organization(&org).await.map_err(err)?;
            let idp: IdpKind = idp.parse()?;
            let mut issued = admin
                .create_connection(&by, &org.id, name.as_deref(), idp)
                .await
                .map_err(err)?;
            if staging {
                issued.connection = admin.stage_connection(&by, &issued.connection.id).await.map_err(err)?;
            }
            let c = &issued.connection;
            let base = public_url.as_ref().map(|_| admin.scim_base_url(&c.id));
            let path = format!("/scim/v2/{}", c.id);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": c.id, "org_id": c.org_id, "idp": c.idp, "scim_base_url": base,
                        "scim_path": path, "token": issued.token, "staging": c.staged_us.is_some()})
                );
            } else {
                println!(
                    "SCIM connection {} created for {}{}.",
                    c.id,
                    org.name,
                    if staging {
                        ", in staging (`rollcall connection activate` to go live)"
                    } else {
                        ""
                    }
                );
                match (&base, recorded_at) {
                    (Some(base), None) => println!("SCIM base URL: {base}"),
                    (Some(base), Some(at)) => println!(
                        "SCIM base URL: {base}   (the public URL `rollcall serve` recorded {}; --public-url to give another)",
                        rfc3339(at)
                    ),
                    (None, _) => println!(
                        "SCIM base URL: unknown here: no --public-url, no public_url setting, and no `rollcall serve` \
                         has recorded one in this database; it is the URL identity providers reach the service at, \
                         followed by {path}"
                    ),
                }
                println!("Bearer token:  {}   (shown once; store it now)", issued.token);
            }
            Ok(())
        }
        Command::Connection(ConnectionCommand::List { org, public_url, json }) => {
            let (url, _) = resolve_public_url(public_url, &s, &store).await?;
            ops::connection_list(&admin(url.clone()), org.as_deref(), url.is_some(), json).await
        }
        Command::Connection(ConnectionCommand::Disable { id, json }) => {
            let (url, _) = resolve_public_url(None, &s, &store).await?;
            ops::connection_set_status(
                &admin(url.clone()),
                &by,
                &id,
                ConnectionStatus::Disabled,
                url.is_some(),
                json,
            )
            .await
        }
        Command::Connection(ConnectionCommand::Enable { id, json }) => {
            let (url, _) = resolve_public_url(None, &s, &store).await?;
            ops::connection_set_status(
                &admin(url.clone()),
                &by,
                &id,
                ConnectionStatus::Active,
                url.is_some(),
                json,
            )
            .await
        }
        Command::Connection(ConnectionCommand::RotateToken { id, json }) => {
            let issued = admin(None).replace_token(&by, &id).await.map_err(err)?;
            if json {
                println!("{}", serde_json::json!({"id": id, "token": issued.token}));
            } else {
                println!(
                    "New bearer token for {id}: {}   (shown once; the old token stops working within a second)",
                    issued.token
                );
            }
            Ok(())
        }
        Command::Connection(ConnectionCommand::Guard(cmd)) => ops::guard(&admin(None), &by, cmd).await,
        Command::Connection(ConnectionCommand::Stage { id, json }) => ops::stage(&admin(None), &by, &id, json).await,
        Command::Connection(ConnectionCommand::Activate { id, yes, json }) => {
            ops::activate(&admin(None), &by, &id, yes, json).await
        }
        Command::Connection(ConnectionCommand::MatchReport(cmd)) => ops::match_report(&admin(None), &by, cmd).await,
        Command::Connection(ConnectionCommand::Delete { id, yes }) => {
            let admin = admin(None);
            let c = admin.connection(&id).await.map_err(err)?;
            confirm(
                yes,
                &format!("Deleting connection {id} ({}) with all its users and groups", c.name),
                &id,
            )?;
            admin.delete_connection(&by, &id).await.map_err(err)?;
            println!("connection {id} deleted with its users and groups");
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Create { name, json }) => {
            let issued = admin(None).create_api_key(&by, &name).await.map_err(err)?;
            let k = &issued.key;
            if json {
                println!(
                    "{}",
                    // What POST /api/v1/api-keys answers.
                    serde_json::to_string(&rollcall_server::api::api_keys::ApiKeyWithSecret {
                        api_key: rollcall_server::api::api_keys::ApiKeyView::from(k),
                        secret: issued.secret.clone(),
                    })
                    .unwrap_or_default()
                );
            } else {
                println!("API key {} created ({}).", k.id, k.name);
                println!("API key: {}   (shown once; store it now)", issued.secret);
            }
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::List { json }) => ops::api_key_list(&admin(None), json).await,
        Command::ApiKey(ApiKeyCommand::Revoke { id, yes }) => {
            confirm(yes, &format!("Revoking API key {id}"), &id)?;
            let k = admin(None).revoke_api_key(&by, &id).await.map_err(err)?;
            println!("API key {} ({}) revoked", k.id, k.name);
            Ok(())
        }
    }
}

async fn serve(
    s: Settings,
    store: Arc<dyn Store>,
    postgres: Option<PostgresStore>,
    registry: Arc<SchemaRegistry>,
    keys: &secrets::KeyConfig,
) -> Result<(), String> {
    let activity = s.activity()?;
    let resource_limits = s.resource_limits()?;
    let hook_config = webhook_config(&s)?;
    let limits = s.http_limits()?;
    let tls = s.tls()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let metrics = s.metrics()?;
    let branding = s.branding()?;
    if !s.metrics && s.metrics_listen.is_some() {
        return Err("configuration: metrics_listen is given but metrics is false".into());
    }
    rollcall_server::metrics::install_if(s.metrics);
    // Refuses to start with secrets it could not read; seals those stored in clear.
    secrets::prepare_serve(keys, &store).await?;
    if let Some(files) = open_files_limit()
        && limits.max_connections as u64 + 100 > files
    {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_files_limit = files,
            "max_connections is close to or above the process's limit on open files (ulimit -n): accept may fail \
             with \"Too many open files\" before the cap; raise the limit or lower max_connections"
        );
    }
    memory::start_reclaimer();
    let listener = tokio::net::TcpListener::bind(&s.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", s.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let metrics_listener = match &s.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (metrics_listen): {e}"))?,
        ),
        None => None,
    };
    let public_url = s
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{local}"))
        .trim_end_matches('/')
        .to_string();
    // Where `rollcall connection create` and the other nodes read it.
    if let Err(e) = Admin::new(store.clone(), Arc::default(), &public_url)
        .record_public_url()
        .await
    {
        tracing::warn!(error = %e, "cannot record the public URL in the database");
    }
    if s.bootstrap && store.count_organizations().await.map_err(|e| e.to_string())? == 0 {
        let by = WriteContext::system();
        let org = store
            .create_organization(&by, "default")
            .await
            .map_err(|e| e.to_string())?;
        let token = tokens::issue();
        let c = store
            .create_connection(
                &by,
                NewConnection {
                    org_id: org.id,
                    name: "default".into(),
                    idp: IdpKind::Generic,
                    token_hash: token.hash,
                    token_prefix: token.display_prefix,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let base = scim_base(&public_url, &c.id);
        if s.log_format == LogFormat::Json {
            // Every line is JSON, and the token stays out of the log stream: it goes to a file
            // only this user can read, whose path is logged.
            let path = first_token_file(&s.database);
            match write_private(&path, &format!("{}\n", token.secret)) {
                Ok(()) => tracing::warn!(
                    scim_base_url = %base,
                    token_file = %path.display(),
                    "first start: created organization \"default\" with a SCIM connection; its bearer token is \
                     in token_file (readable only by this user): store it and delete the file"
                ),
                Err(e) => return Err(format!("cannot write the first SCIM token to {}: {e}", path.display())),
            }
        } else {
            println!("First start: created organization \"default\" with a SCIM connection.");
            println!("SCIM base URL: {base}");
            println!("Bearer token:  {}   (shown once; store it now)", token.secret);
        }
    }
    let config = ScimConfig {
        public_url: public_url.clone(),
        default_page_size: s.default_page_size.min(s.max_page_size),
        max_page_size: s.max_page_size,
        max_body_bytes: s.max_body_bytes,
        bulk_max_operations: s.bulk_max_operations,
        filter_limits: FilterLimits {
            max_length: s.filter_max_length,
            max_depth: s.filter_max_depth,
            max_terms: s.filter_max_terms,
        },
        resource_limits,
        max_list_bytes: s.max_list_bytes,
    };
    let node_settings = NodeSettings {
        rate_limit: s.rate_limit(),
        activity,
        metrics,
        branding,
    };
    let hooks = Webhooks::new(store.clone(), hook_config);
    // Outbound provisioning reaches tenants' target URLs through the webhooks' network policy.
    let outbound = rollcall_outbound::Outbound::new(
        store.clone(),
        rollcall_outbound::Transport::new(hooks.config.policy.clone()),
        Default::default(),
    );
    let node = Node::new(store.clone(), node_settings)
        .with_webhooks(hooks.clone())
        .with_outbound(outbound.clone());
    let background = rollcall_server::background::start(&store, &node);
    // On PostgreSQL, the other nodes' changes reach this one at once: their events wake this
    // node's dispatcher, their connection changes (tokens, status, policy) empty this node's token
    // cache of the connection.
    let hearing = postgres.map(|pg| {
        let hooks = hooks.clone();
        let outbound = outbound.clone();
        let cache = node.token_cache.clone();
        pg.listen(move |heard| match heard {
            Heard::Events => {
                hooks.wake();
                outbound.wake();
            }
            Heard::Connection(id) => cache.forget_connection(&id),
            Heard::Reconnected => {
                cache.clear();
                hooks.wake();
                outbound.wake();
            }
        })
    });
    let scim = Scim::new(store, registry, config);
    let state = AppState::new(scim.clone(), node.clone());
    // Directory syncs (Google Workspace): due connections, and "sync now" asked for on this node.
    let (stop_directory, directory_stopped) = tokio::sync::watch::channel(false);
    let directory = s.directory_sync.then(|| {
        tokio::spawn(
            rollcall_server::directory_sync::DirectorySync::new(scim, Default::default())
                .with_wake(node.directory_wake.clone())
                .with_webhooks(node.webhooks.clone())
                .run(directory_stopped),
        )
    });
    // The outbound provisioning worker (pushes to provisioning targets), beside the dispatcher.
    let (stop_outbound, outbound_stopped) = tokio::sync::oneshot::channel::<()>();
    let outbound_worker = s.outbound_provisioning.then(|| {
        let node = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        tokio::spawn(outbound.clone().run_worker(node, async {
            let _ = outbound_stopped.await;
        }))
    });
    // The dispatcher stops when the server has finished its requests.
    let (stop_dispatcher, stopped) = tokio::sync::oneshot::channel::<()>();
    let dispatcher = s.webhook_dispatcher.then(|| {
        let node = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        tokio::spawn(Dispatcher::new(hooks, node).run(async {
            let _ = stopped.await;
        }))
    });
    tracing::info!(listen = %local, public_url = %public_url, database = %redact_url(&s.database), tls = tls.is_some(),
        "rollcall serving");
    // `/metrics` on a listener of its own, stopped with the main one.
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = match metrics_listener {
        Some(l) => {
            let at = l.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(metrics_listen = %at, "serving /metrics (no API key) on its own listener");
            if s.log_format != LogFormat::Json {
                println!("Metrics on http://{at}/metrics");
            }
            let app = rollcall_server::metrics_route::router(state.clone());
            Some(tokio::spawn(rollcall_server::serve_with(l, app, limits, async {
                let _ = metrics_stopped.await;
            })))
        }
        None => None,
    };
    if s.log_format != LogFormat::Json {
        // With JSON logs the "rollcall serving" line above says it.
        println!("Listening on {scheme}://{local}");
    }
    let app = rollcall_server::app_with(state, limits);
    let served = rollcall_server::serve_tls_with(listener, app, limits, tls, rollcall_server::shutdown_signal())
        .await
        .map_err(|e| e.to_string());
    let _ = stop_metrics.send(());
    if let Some(m) = metrics_server {
        let _ = m.await;
    }
    if let Some(h) = hearing {
        h.abort();
    }
    let _ = stop_dispatcher.send(());
    let _ = stop_outbound.send(());
    if let Some(w) = outbound_worker {
        let _ = w.await;
    }
    let _ = stop_directory.send(true);
    if let Some(d) = directory {
        let _ = d.await;
    }
    // After the last request: the request log's buffer is written before the process ends.
    background.shutdown().await;
    if let Some(d) = dispatcher {
        let _ = d.await;
    }
    served
}
