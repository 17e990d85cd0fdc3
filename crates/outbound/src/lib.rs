//! # rollcall-outbound
//!
//! Outbound provisioning (issue #15): each organization's directory pushed on to downstream SCIM
//! applications — AWS IAM Identity Center, GitHub, Salesforce, Slack, any SCIM 2.0 server.
//!
//! Layers, lowest first (each module only uses the ones above it):
//! - `profile`: what each downstream target allows, as one table of data (filters, paging,
//!   PATCH/Bulk, member changes per PATCH, whether members read back, required and refused
//!   attributes, what DELETE means, rate limits, required headers); the generic profile read from
//!   the target's `/ServiceProviderConfig`.
//! - `auth`, `client`: one HTTP exchange with a target — bearer, Basic, OAuth 2.0 client
//!   credentials (token cached until expiry, one refresh on a 401), the target's rate limit,
//!   retries with exponential backoff that honour `Retry-After`.
//! - `remote`: SCIM operations on a target shaped by its profile (search, create, update,
//!   deactivate, delete, group members in chunks).
//! - `plan`: the diff between what should be downstream and what is (creates, links with ambiguous
//!   matches, updates with the attributes that change, deactivations, deletions).
//! - `engine`: runs of a target — event-driven from the event log with a durable cursor, full
//!   reconciliation, matching and linking through the mapping table, the deletion threshold,
//!   quarantine.

pub mod auth;
pub mod client;
pub mod engine;
pub mod plan;
pub mod profile;
pub mod remote;

pub use auth::{ClientAuthMethod, Credentials, OAuthClientCredentials, Secret};
pub use client::{
    ClientError, ErrorKind, RetryMode, RetryPolicy, ScimRequest, ScimResponse, TargetClient, TargetConfig, Transport,
};
pub use engine::{EngineConfig, EngineError, Outbound};
pub use plan::Plan;
pub use profile::{TargetProfile, profile};
