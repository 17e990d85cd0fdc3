//! The SCIM filter language (RFC 7644 §3.4.2.2): typed AST, parser, printer, validation against
//! the schema registry, and in-memory evaluation.
//!
//! - [`Filter::parse`] / [`Filter::parse_with`] turn filter text into a [`Filter`] (errors are
//!   `invalidFilter` with a column and a reason).
//! - `Display` prints the canonical form, which parses back to the same tree.
//! - [`Filter::validate`] checks attribute names and operator/type combinations for a resource type.
//! - [`Filter::matches`] evaluates against a resource document; [`Filter::matches_element`] evaluates
//!   a value-path filter against one element of a multi-valued attribute (used by PATCH).
//!
//! Accepted beyond the RFC: the Entra ID form `emails[type eq "work"].value eq "x"`, normalised to
//! `emails[type eq "work" and value eq "x"]` while parsing.

mod ast;
mod eval;
pub(crate) mod lexer;
mod parser;
mod print;
mod validate;

pub use ast::{CompValue, CompareOp, Filter};

/// Resource limits enforced while parsing a filter (and the filter inside a PATCH path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// Maximum input length, in characters.
    pub max_length: usize,
    /// Maximum nesting of `(...)`, `not (...)` and `attr[...]`.
    pub max_depth: usize,
    /// Maximum number of attribute expressions (comparisons and `pr` tests).
    pub max_terms: usize,
}

impl Default for FilterLimits {
    /// 4096 characters, 16 levels of nesting, 64 comparisons.
    fn default() -> Self {
        FilterLimits {
            max_length: 4096,
            max_depth: 16,
            max_terms: 64,
        }
    }
}
