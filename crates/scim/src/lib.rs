//! # rollcall-scim
//!
//! The SCIM 2.0 protocol core of Rollcall (RFC 7643 and RFC 7644), with no I/O, no async and no web
//! framework: schemas and the schema registry, validation and normalisation of resources, the filter
//! language, PATCH, projection (`attributes`/`excludedAttributes`), sorting, the SCIM error type, the
//! bounds on one resource and one PATCH ([`limits`]), and keeping secret values out of logs
//! ([`redact`]).
//! The accepted dialects of real identity providers (Entra ID, Okta, Google Workspace) are collected
//! in [`dialect`].

pub mod dialect;
pub mod error;
pub mod filter;
pub mod json_text;
pub mod limits;
pub mod patch;
pub mod path;
pub mod policy;
pub mod projection;
pub mod redact;
pub mod resource;
pub mod schema;
pub mod sort;

pub use error::{ScimError, ScimResult, ScimType};
