//! The canonical printer: lowercase operators and keywords, single spaces, JSON string literals, and
//! parentheses exactly where the tree's shape needs them, so the output parses back to the same tree.

use super::{CompValue, Filter};
use std::fmt::{self, Write};

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare { path, op, value } => {
                write!(f, "{path} {} ", op.as_str())?;
                write_value(f, value)
            }
            Filter::Present { path } => write!(f, "{path} pr"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            // `and` binds tighter than `or` and both associate to the left, so an `or` operand of
            // an `and` needs parentheses, and so does a right operand of the same operator.
            Filter::And(l, r) => {
                write_operand(f, l, matches!(**l, Filter::Or(..)))?;
                f.write_str(" and ")?;
                write_operand(f, r, matches!(**r, Filter::Or(..) | Filter::And(..)))
            }
            Filter::Or(l, r) => {
                write!(f, "{l} or ")?;
                write_operand(f, r, matches!(**r, Filter::Or(..)))
            }
        }
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, x: &Filter, parens: bool) -> fmt::Result {
    if parens { write!(f, "({x})") } else { write!(f, "{x}") }
}

fn write_value(f: &mut fmt::Formatter<'_>, v: &CompValue) -> fmt::Result {
    match v {
        CompValue::Null => f.write_str("null"),
        CompValue::Bool(b) => write!(f, "{b}"),
        CompValue::Number(n) => write!(f, "{n}"),
        CompValue::Str(s) => write_json_string(f, s),
    }
}

/// Writes `s` as a JSON string literal. Only `"`, `\` and control characters are escaped.
pub(crate) fn write_json_string(f: &mut impl Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    let mut from = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        f.write_str(&s[from..i])?;
        match esc {
            Some(e) => f.write_str(e)?,
            None => write!(f, "\\u{:04x}", c as u32)?,
        }
        from = i + c.len_utf8();
    }
    f.write_str(&s[from..])?;
    f.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings() {
        let mut out = String::new();
        write_json_string(&mut out, "a\"b\\c/\n\u{1}é😀\u{7f}").unwrap();
        assert_eq!(out, r#""a\"b\\c/\n\u0001é😀\u{7f}""#.replace("\\u{7f}", "\u{7f}"));
    }
}
