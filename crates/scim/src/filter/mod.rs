//! The SCIM filter language (RFC 7644 §3.4.2.2): typed AST, parser, printer and in-memory evaluator.

mod ast;

pub use ast::{CompValue, CompareOp, Filter};
