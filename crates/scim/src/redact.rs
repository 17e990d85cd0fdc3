//! Keeping the values of secret attributes out of logs and error messages.
//!
//! An attribute is secret when the schema says it is never returned (`returned: never`) or
//! write-only (`mutability: writeOnly`), such as the User's `password`. Its value may still appear
//! in a request's filter (`password eq "hunter2"`) or PATCH path (`password[value eq "hunter2"]`);
//! [`SecretAttributes::redact`] gives such text with those literals replaced by `"[redacted]"`
//! (for the request log), and [`SecretAttributes::scrub`] removes them from an error detail that may
//! quote them.
//!
//! The text is read with the filter tokeniser, leniently: it need not be a valid filter. After a
//! tokenising error, the rest of the text is redacted when it mentions a secret attribute.

use crate::filter::lexer::{Lexer, Tok};
use crate::path::{AttrPath, split_urn};
use crate::schema::{AttributeDef, Mutability, Returned, SchemaRegistry};
use std::borrow::Cow;

/// What replaces a secret value.
pub const REDACTED: &str = "[redacted]";

/// The comparison operators of the filter language.
const OPERATORS: [&str; 9] = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"];

fn is_secret_def(a: &AttributeDef) -> bool {
    a.returned == Returned::Never || a.mutability == Mutability::WriteOnly
}

/// One secret attribute: schema URN, attribute, and sub-attribute (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Secret {
    urn: String,
    attr: String,
    sub: Option<String>,
}

/// The secret attributes of every schema of a registry.
#[derive(Debug, Clone, Default)]
pub struct SecretAttributes {
    secrets: Vec<Secret>,
    /// Lower-case names whose mention in a text means it may hold a secret.
    names: Vec<String>,
}

impl SecretAttributes {
    /// The attributes (and sub-attributes) of `registry`'s schemas that are never returned or are
    /// write-only.
    pub fn of(registry: &SchemaRegistry) -> SecretAttributes {
        let mut out = SecretAttributes::default();
        let mut add = |urn: &str, attr: &str, sub: Option<&str>| {
            let leaf = sub.unwrap_or(attr).to_ascii_lowercase();
            if !out.names.contains(&leaf) {
                out.names.push(leaf);
            }
            out.secrets.push(Secret {
                urn: urn.to_ascii_lowercase(),
                attr: attr.to_ascii_lowercase(),
                sub: sub.map(str::to_ascii_lowercase),
            });
        };
        for schema in registry.schemas() {
            for a in &schema.attributes {
                if is_secret_def(a) {
                    add(&schema.id, &a.name, None);
                }
                for s in a.sub_attributes.iter().filter(|s| is_secret_def(s)) {
                    add(&schema.id, &a.name, Some(&s.name));
                }
            }
        }
        out
    }

    /// Whether `path` (inside the value filter of `parent`, when given) designates a secret
    /// attribute or a part of one.
    pub fn is_secret(&self, path: &AttrPath, parent: Option<&AttrPath>) -> bool {
        let (urn, attr, sub) = match parent {
            Some(p) => (p.schema.as_deref(), p.attr.as_str(), Some(path.attr.as_str())),
            None => (path.schema.as_deref(), path.attr.as_str(), path.sub_attr.as_deref()),
        };
        self.secrets.iter().any(|s| {
            urn.is_none_or(|u| u.eq_ignore_ascii_case(&s.urn))
                && attr.eq_ignore_ascii_case(&s.attr)
                && match (&s.sub, sub) {
                    // The whole attribute is secret: so is any part of it.
                    (None, _) => true,
                    (Some(secret_sub), Some(sub)) => sub.eq_ignore_ascii_case(secret_sub),
                    (Some(_), None) => false,
                }
        })
    }

    /// Whether `text` names a secret attribute at all (ignoring case): when it does not, there is
    /// nothing to redact. A substring test, cheap enough for every request.
    pub fn mentioned_in(&self, text: &str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        let lower = text.to_ascii_lowercase();
        self.names.iter().any(|n| lower.contains(n.as_str()))
    }

    /// The byte ranges of `text` (a filter, or a PATCH path) that hold values compared against
    /// secret attributes.
    fn secret_spans(&self, text: &str) -> Vec<(usize, usize)> {
        if !self.mentioned_in(text) {
            return Vec::new();
        }
        let mut lexer = Lexer::new(text);
        let mut toks = Vec::new();
        let mut failed_at = None;
        loop {
            match lexer.next_token() {
                Ok(t) if t.tok == Tok::End => break,
                Ok(t) => toks.push(t),
                Err(_) => {
                    // From the start of the token that could not be read.
                    let after = toks.last().map_or(0, |t: &crate::filter::lexer::Token<'_>| t.end);
                    let skipped = text[after..].len() - text[after..].trim_start_matches(' ').len();
                    failed_at = Some(after + skipped);
                    break;
                }
            }
        }
        let parse = |w: &str| AttrPath::parse(w).ok();
        let mut spans = Vec::new();
        // The value paths (`attr[...]`) the scan is inside, with whether each is secret.
        let mut stack: Vec<(Option<AttrPath>, bool)> = Vec::new();
        let mut last_closed: Option<AttrPath> = None;
        let mut i = 0;
        // Whether the tokens before a tokenising error left a secret comparison open.
        let mut open_secret = false;
        while i < toks.len() {
            let closed = last_closed.take();
            match &toks[i].tok {
                Tok::Word(w) if matches!(toks.get(i + 1).map(|t| &t.tok), Some(Tok::LBracket)) => {
                    let path = parse(w);
                    let secret =
                        stack.iter().any(|(_, s)| *s) || path.as_ref().is_some_and(|p| self.is_secret(p, None));
                    stack.push((path, secret));
                    i += 2;
                    continue;
                }
                Tok::RBracket => {
                    last_closed = stack.pop().and_then(|(p, _)| p);
                }
                Tok::Word(w) => {
                    let op = toks.get(i + 1).and_then(|t| match &t.tok {
                        Tok::Word(o) => OPERATORS.iter().any(|x| x.eq_ignore_ascii_case(o)).then_some(()),
                        _ => None,
                    });
                    if op.is_some() {
                        let in_secret = stack.iter().any(|(_, s)| *s);
                        let parent = stack.last().and_then(|(p, _)| p.as_ref());
                        let secret = in_secret
                            || match (w.strip_prefix('.'), &closed) {
                                // `emails[type eq "work"].value eq "x"` (Entra ID).
                                (Some(sub), Some(p)) => self.is_secret(&AttrPath::new(sub), Some(p)),
                                _ => parse(w).is_some_and(|p| self.is_secret(&p, parent)),
                            };
                        match toks.get(i + 2) {
                            Some(lit) if matches!(lit.tok, Tok::Str(_) | Tok::Word(_)) => {
                                if secret {
                                    spans.push((lit.start, lit.end));
                                }
                                i += 3;
                                continue;
                            }
                            Some(_) => {}
                            None => open_secret = secret,
                        }
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if let Some(at) = failed_at {
            let rest = &text[at..];
            if open_secret || stack.iter().any(|(_, s)| *s) || self.mentioned_in(rest) {
                spans.push((at, text.len()));
            }
        }
        spans
    }

    /// `text` (a filter or a PATCH path) with every value compared against a secret attribute
    /// replaced by `"[redacted]"`; borrowed when there is none.
    ///
    /// ```
    /// use rollcall_scim::redact::SecretAttributes;
    /// use rollcall_scim::schema::SchemaRegistry;
    /// let s = SecretAttributes::of(&SchemaRegistry::standard());
    /// assert_eq!(
    ///     s.redact(r#"userName eq "bjensen" and password eq "t1meMach1ne""#),
    ///     r#"userName eq "bjensen" and password eq "[redacted]""#
    /// );
    /// assert_eq!(s.redact(r#"password[value eq "x"]"#), r#"password[value eq "[redacted]"]"#);
    /// assert_eq!(s.redact(r#"title eq "password""#), r#"title eq "password""#);
    /// ```
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let spans = self.secret_spans(text);
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in spans {
            out.push_str(&text[at..start]);
            out.push('"');
            out.push_str(REDACTED);
            out.push('"');
            at = end;
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// The secret values in `text` (see [`redact`](Self::redact)), as written and unescaped.
    pub fn literals(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (start, end) in self.secret_spans(text) {
            let raw = &text[start..end];
            let inner = raw.strip_prefix('"').map(|r| r.strip_suffix('"').unwrap_or(r));
            if let Some(inner) = inner {
                let mut lexer = Lexer::new(raw);
                if let Ok(t) = lexer.next_token()
                    && let Tok::Str(s) = t.tok
                {
                    out.push(s);
                }
                out.push(inner.to_string());
            }
            out.push(raw.to_string());
        }
        out.retain(|s| !s.is_empty());
        out
    }

    /// `detail` with every occurrence of `literals` (from [`literals`](Self::literals)) replaced,
    /// including the 40-character excerpts error messages quote of long values.
    pub fn scrub<'d>(detail: &'d str, literals: &[String]) -> Cow<'d, str> {
        let mut needles: Vec<&str> = Vec::new();
        for l in literals {
            needles.push(l);
            if let Some((cut, _)) = l.char_indices().nth(40) {
                needles.push(&l[..cut]);
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        let mut out = Cow::Borrowed(detail);
        for n in needles {
            if out.contains(n) {
                out = Cow::Owned(out.replace(n, REDACTED));
            }
        }
        out
    }
}

/// Whether a bare name (a JSON member name, possibly URN-qualified) names a secret attribute.
impl SecretAttributes {
    pub fn is_secret_name(&self, name: &str) -> bool {
        let (urn, attr) = split_urn(name);
        let path = AttrPath {
            schema: urn.map(str::to_string),
            attr: attr.split('.').next().unwrap_or(attr).to_string(),
            sub_attr: attr.split_once('.').map(|(_, s)| s.to_string()),
        };
        self.is_secret(&path, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> SecretAttributes {
        SecretAttributes::of(&SchemaRegistry::standard())
    }

    #[test]
    fn password_is_the_standard_secret() {
        let s = secrets();
        assert!(s.is_secret(&AttrPath::new("Password"), None));
        assert!(s.is_secret(
            &AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:password").unwrap(),
            None
        ));
        assert!(!s.is_secret(&AttrPath::new("userName"), None));
        assert!(!s.is_secret(
            &AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:Group:password").unwrap(),
            None
        ));
        assert!(s.is_secret_name("password") && !s.is_secret_name("title"));
    }

    #[test]
    fn filters_and_paths_are_redacted() {
        let s = secrets();
        for (text, want) in [
            (r#"password eq "x""#, r#"password eq "[redacted]""#),
            (
                r#"PASSWORD Eq "x" or userName eq "y""#,
                r#"PASSWORD Eq "[redacted]" or userName eq "y""#,
            ),
            (r#"password[value eq "x"]"#, r#"password[value eq "[redacted]"]"#),
            (
                r#"password[value eq "x" and type eq "y"].value"#,
                r#"password[value eq "[redacted]" and type eq "[redacted]"].value"#,
            ),
            (r#"(password eq 123)"#, r#"(password eq "[redacted]")"#),
            (r#"not (password co "a\"b")"#, r#"not (password co "[redacted]")"#),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:password sw "x""#,
                r#"urn:ietf:params:scim:schemas:core:2.0:User:password sw "[redacted]""#,
            ),
            (r#"password pr"#, r#"password pr"#),
            // Not valid, still redacted: an unterminated string, a bad escape after the secret.
            (r#"password eq "abc"#, r#"password eq "[redacted]""#),
            (r#"userName eq "a\q" or password eq "x""#, r#"userName eq "[redacted]""#),
        ] {
            assert_eq!(s.redact(text), want, "{text}");
        }
        for text in [r#"userName eq "password""#, r#"emails[value eq "x"]"#, "title"] {
            assert!(matches!(s.redact(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn details_are_scrubbed_of_the_literals() {
        let s = secrets();
        let long = "s".repeat(60);
        let text = format!(r#"password[value eq "{long}"] or password eq "a\"b""#);
        let lits = s.literals(&text);
        assert!(lits.contains(&long) && lits.contains(&"a\"b".to_string()), "{lits:?}");
        let detail = format!(
            "operation 1 (remove \"{text}\"): the string \"{}…\" is wrong",
            &long[..40]
        );
        let clean = SecretAttributes::scrub(&detail, &lits);
        assert!(
            !clean.contains("sss") && !clean.contains("a\"b") && !clean.contains(r#"a\"b"#),
            "{clean}"
        );
        assert!(clean.contains(REDACTED));
    }
}
