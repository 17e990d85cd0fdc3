//! Recursive-descent parser for filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2).
//!
//! Precedence, loosest first: `or`, `and`, `not`/grouping/attribute expressions. `and` and `or`
//! associate to the left, so `a and b and c` is `And(And(a, b), c)`.
//!
//! Limits are enforced while parsing: nesting depth is checked on entering each `(`, `not (` or
//! `[` (so recursion is bounded before it happens) and the comparison count on each term.

use super::lexer::{Lexer, SyntaxError, Tok, Token, quote_excerpt};
use super::{CompValue, CompareOp, Filter, FilterLimits};
use crate::dialect::BareValue;
use crate::error::{ScimError, ScimResult};
use crate::path::{AttrPath, PatchPath, is_attr_name, split_urn};

const OPERATORS: &str = "(eq, ne, co, sw, ew, gt, ge, lt, le, pr)";

impl Filter {
    /// Parses a filter expression with the default [`FilterLimits`].
    ///
    /// Operators and keywords are case-insensitive; attribute paths keep the case they were written
    /// in. Every failure is an `invalidFilter` error whose detail names the 1-based column.
    ///
    /// ```
    /// use rollcall_scim::filter::{CompValue, CompareOp, Filter};
    /// use rollcall_scim::path::AttrPath;
    ///
    /// let f = Filter::parse(r#"userName Eq "bjensen" and emails[type eq "work"]"#).unwrap();
    /// assert_eq!(f.to_string(), r#"userName eq "bjensen" and emails[type eq "work"]"#);
    ///
    /// let f = Filter::parse("meta.lastModified gt \"2011-05-13T04:42:34Z\"").unwrap();
    /// assert_eq!(
    ///     f,
    ///     Filter::Compare {
    ///         path: AttrPath::with_sub("meta", "lastModified"),
    ///         op: CompareOp::Gt,
    ///         value: CompValue::Str("2011-05-13T04:42:34Z".into()),
    ///     }
    /// );
    ///
    /// let err = Filter::parse("userName foo \"x\"").unwrap_err();
    /// assert_eq!(err.scim_type, Some(rollcall_scim::ScimType::InvalidFilter));
    /// assert!(err.detail.starts_with("invalid filter at column 10:"));
    /// ```
    pub fn parse(input: &str) -> ScimResult<Filter> {
        Self::parse_with(input, &FilterLimits::default())
    }

    /// Parses a filter expression with explicit limits.
    ///
    /// Raising the limits far above the defaults gives up part of the stack-safety guarantee:
    /// parsing recursion grows with `max_depth`, and the depth of the resulting tree (which
    /// printing, evaluation and dropping recurse over) with `max_depth + max_terms`.
    pub fn parse_with(input: &str, limits: &FilterLimits) -> ScimResult<Filter> {
        check_length(input, limits, "filter").map_err(ScimError::invalid_filter)?;
        let mut p = Parser::new(input, limits);
        p.filter_top()
            .map_err(|e| ScimError::invalid_filter(format!("invalid filter at column {}: {}", e.column(input), e.msg)))
    }
}

impl PatchPath {
    /// Parses a PATCH operation `path` (RFC 7644 §3.5.2): `attrPath`, or `valuePath` optionally
    /// followed by `.subAttr`. The inner filter follows [`Filter::parse`]'s grammar and limits.
    /// Errors are `invalidPath` with a 1-based column and a plain-English reason.
    ///
    /// ```
    /// use rollcall_scim::path::PatchPath;
    ///
    /// let p = PatchPath::parse(r#"emails[type eq "work"].value"#).unwrap();
    /// assert_eq!(p.attr.attr, "emails");
    /// assert_eq!(p.sub_attr.as_deref(), Some("value"));
    /// assert!(p.filter.is_some());
    /// assert_eq!(p.to_string(), r#"emails[type eq "work"].value"#);
    ///
    /// let p = PatchPath::parse("name.givenName").unwrap();
    /// assert_eq!(p.attr.sub_attr.as_deref(), Some("givenName"));
    /// assert!(p.filter.is_none() && p.sub_attr.is_none());
    ///
    /// let err = PatchPath::parse("emails[type eq \"work\"").unwrap_err();
    /// assert_eq!(err.scim_type, Some(rollcall_scim::ScimType::InvalidPath));
    /// ```
    pub fn parse(input: &str) -> ScimResult<PatchPath> {
        let limits = FilterLimits::default();
        check_length(input, &limits, "path").map_err(ScimError::invalid_path)?;
        let mut p = Parser::new(input, &limits);
        p.patch_path()
            .map_err(|e| ScimError::invalid_path(format!("invalid path at column {}: {}", e.column(input), e.msg)))
    }
}

fn check_length(input: &str, limits: &FilterLimits, what: &str) -> Result<(), String> {
    // Characters never outnumber bytes, so the count is only needed for long inputs, and then
    // only up to the limit.
    if input.len() > limits.max_length && input.chars().nth(limits.max_length).is_some() {
        return Err(format!(
            "invalid {what}: it is longer than the limit of {} characters",
            limits.max_length
        ));
    }
    Ok(())
}

fn compare_op(w: &str) -> Option<CompareOp> {
    if w.len() != 2 {
        return None;
    }
    let b = w.as_bytes();
    let lower = [b[0].to_ascii_lowercase(), b[1].to_ascii_lowercase()];
    Some(match &lower {
        b"eq" => CompareOp::Eq,
        b"ne" => CompareOp::Ne,
        b"co" => CompareOp::Co,
        b"sw" => CompareOp::Sw,
        b"ew" => CompareOp::Ew,
        b"gt" => CompareOp::Gt,
        b"ge" => CompareOp::Ge,
        b"lt" => CompareOp::Lt,
        b"le" => CompareOp::Le,
        _ => return None,
    })
}

fn is_operator_or_pr(w: &str) -> bool {
    w.eq_ignore_ascii_case("pr") || compare_op(w).is_some()
}

/// Where a sub-expression is being parsed: at the top level, or inside the brackets of a value path
/// (whose attribute's name and `[` position are kept for error messages).
#[derive(Clone, Copy)]
enum Ctx<'a> {
    Top,
    InValuePath { attr: &'a str },
}

struct Parser<'a, 'l> {
    src: &'a str,
    lex: Lexer<'a>,
    peeked: Option<Token<'a>>,
    limits: &'l FilterLimits,
    depth: usize,
    terms: usize,
}

impl<'a, 'l> Parser<'a, 'l> {
    fn new(src: &'a str, limits: &'l FilterLimits) -> Self {
        Parser {
            src,
            lex: Lexer::new(src),
            peeked: None,
            limits,
            depth: 0,
            terms: 0,
        }
    }

    fn peek(&mut self) -> Result<&Token<'a>, SyntaxError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next_token()?);
        }
        // Just filled.
        Ok(self.peeked.as_ref().expect("peeked token"))
    }

    fn bump(&mut self) -> Result<Token<'a>, SyntaxError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex.next_token(),
        }
    }

    fn is_blank(&self) -> bool {
        self.src.bytes().all(|b| b == b' ')
    }

    fn column_of(&self, pos: usize) -> usize {
        SyntaxError::new(pos, "").column(self.src)
    }

    fn enter(&mut self, at: usize) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(SyntaxError::new(
                at,
                format!(
                    "the filter nests parentheses, \"not\" and brackets more than {} levels deep",
                    self.limits.max_depth
                ),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn term(&mut self, at: usize) -> Result<(), SyntaxError> {
        self.terms += 1;
        if self.terms > self.limits.max_terms {
            return Err(SyntaxError::new(
                at,
                format!(
                    "the filter has more than {} comparisons, which is the limit",
                    self.limits.max_terms
                ),
            ));
        }
        Ok(())
    }

    fn filter_top(&mut self) -> Result<Filter, SyntaxError> {
        if self.is_blank() {
            return Err(SyntaxError::new(0, "the filter is empty"));
        }
        let f = self.or_expr(Ctx::Top)?;
        let t = self.bump()?;
        match t.tok {
            Tok::End => Ok(f),
            Tok::RParen => Err(SyntaxError::new(
                t.start,
                "unbalanced parentheses: \")\" has no matching \"(\"",
            )),
            Tok::RBracket => Err(SyntaxError::new(
                t.start,
                "unbalanced brackets: \"]\" has no matching \"[\"",
            )),
            _ => Err(SyntaxError::new(
                t.start,
                format!(
                    "unexpected {} after a complete expression; expected \"and\", \"or\" or the end of the filter",
                    t.describe()
                ),
            )),
        }
    }

    fn or_expr(&mut self, ctx: Ctx<'a>) -> Result<Filter, SyntaxError> {
        let mut left = self.and_expr(ctx)?;
        while matches!(self.peek()?.tok, Tok::Word(w) if w.eq_ignore_ascii_case("or")) {
            self.bump()?;
            let right = self.and_expr(ctx)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self, ctx: Ctx<'a>) -> Result<Filter, SyntaxError> {
        let mut left = self.unary(ctx)?;
        while matches!(self.peek()?.tok, Tok::Word(w) if w.eq_ignore_ascii_case("and")) {
            self.bump()?;
            let right = self.unary(ctx)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `"(" filter ")"`, the closing parenthesis included; `open` is the opening token.
    fn group(&mut self, open: &Token<'a>, ctx: Ctx<'a>) -> Result<Filter, SyntaxError> {
        self.enter(open.start)?;
        let inner = self.or_expr(ctx)?;
        let close = self.bump()?;
        if close.tok != Tok::RParen {
            return Err(self.unclosed(&close, open.start, ')'));
        }
        self.leave();
        Ok(inner)
    }

    fn unclosed(&self, found: &Token<'a>, open_at: usize, closer: char) -> SyntaxError {
        let (opener, what) = if closer == ')' {
            ('(', "parentheses")
        } else {
            ('[', "brackets")
        };
        let lead = if found.tok == Tok::End {
            format!("unbalanced {what}: ")
        } else {
            String::new()
        };
        SyntaxError::new(
            found.start,
            format!(
                "{lead}expected \"{closer}\" to close the \"{opener}\" at column {}, found {}",
                self.column_of(open_at),
                found.describe()
            ),
        )
    }

    fn unary(&mut self, ctx: Ctx<'a>) -> Result<Filter, SyntaxError> {
        let t = self.bump()?;
        match t.tok {
            Tok::LParen => self.group(&t, ctx),
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => {
                let next = self.peek()?;
                match &next.tok {
                    Tok::LParen => {
                        let open = self.bump()?;
                        let inner = self.group(&open, ctx)?;
                        Ok(Filter::Not(Box::new(inner)))
                    }
                    // An attribute that happens to be called "not".
                    Tok::Word(op) if is_operator_or_pr(op) => self.attr_expr(w, t.start, ctx),
                    Tok::LBracket => self.attr_expr(w, t.start, ctx),
                    _ => Err(SyntaxError::new(
                        next.start,
                        format!(
                            "expected \"(\" after \"not\" (write not (...)), found {}",
                            next.describe()
                        ),
                    )),
                }
            }
            Tok::Word(w) => self.attr_expr(w, t.start, ctx),
            _ => Err(SyntaxError::new(
                t.start,
                format!(
                    "expected an attribute expression, \"not (\" or \"(\", found {}",
                    t.describe()
                ),
            )),
        }
    }

    /// Parses the word at `start` as an attribute path.
    fn attr_path(&self, word: &str, start: usize) -> Result<AttrPath, SyntaxError> {
        let (schema, rest) = split_urn(word);
        let rest_at = start + (word.len() - rest.len());
        if let Some(urn) = schema
            && let Some(bad) = urn.chars().find(|c| !c.is_ascii_graphic())
        {
            return Err(SyntaxError::new(
                start,
                format!(
                    "{} is not a valid attribute path: the schema URN contains the character {:?}",
                    quote_excerpt(word),
                    bad
                ),
            ));
        }
        let (attr, sub) = match rest.split_once('.') {
            Some((a, s)) => (a, Some(s)),
            None => (rest, None),
        };
        if !is_attr_name(attr) {
            let reason = if attr.is_empty() {
                "the attribute name is missing".to_string()
            } else {
                format!(
                    "{} is not an attribute name (names start with a letter and contain only letters, digits, \"-\" and \"_\")",
                    quote_excerpt(attr)
                )
            };
            return Err(SyntaxError::new(
                rest_at,
                format!("{} is not a valid attribute path: {reason}", quote_excerpt(word)),
            ));
        }
        if let Some(sub) = sub {
            let sub_at = rest_at + attr.len() + 1;
            if sub.contains('.') {
                return Err(SyntaxError::new(
                    sub_at,
                    format!(
                        "{} is not a valid attribute path: only one sub-attribute level is allowed (attr.subAttr)",
                        quote_excerpt(word)
                    ),
                ));
            }
            if !is_attr_name(sub) {
                return Err(SyntaxError::new(
                    sub_at,
                    format!(
                        "{} is not a valid attribute path: {} is not a sub-attribute name",
                        quote_excerpt(word),
                        quote_excerpt(sub)
                    ),
                ));
            }
        }
        Ok(AttrPath {
            schema: schema.map(str::to_string),
            attr: attr.to_string(),
            sub_attr: sub.map(str::to_string),
        })
    }

    /// `attrPath "pr"`, `attrPath compareOp compValue`, or `attrPath "[" valFilter "]"` (plus the
    /// Entra ID dialect, see below). The attribute path word has already been consumed.
    fn attr_expr(&mut self, word: &'a str, start: usize, ctx: Ctx<'a>) -> Result<Filter, SyntaxError> {
        let path = self.attr_path(word, start)?;
        if self.peek()?.tok == Tok::LBracket {
            let open = self.bump()?;
            let (path, inner) = self.value_filter(path, word, &open, ctx)?;
            // Non-standard Entra ID (Azure AD) dialect: a value path followed by `.subAttr` and a
            // comparison (or `pr`), e.g. `emails[type eq "work"].value eq "x"`. RFC 7644 has no such
            // form; it means `emails[type eq "work" and value eq "x"]`, so that is what we build, and
            // the printer emits the standard form.
            if let Tok::Word(w) = self.peek()?.tok
                && let Some(sub) = w.strip_prefix('.')
            {
                let t = self.bump()?;
                if !is_attr_name(sub) {
                    return Err(SyntaxError::new(
                        t.start + 1,
                        format!("{} after \"]\" is not a sub-attribute name", quote_excerpt(sub)),
                    ));
                }
                let tail = self.comparison(AttrPath::new(sub), w)?;
                return Ok(Filter::ValuePath {
                    path,
                    filter: Box::new(Filter::And(Box::new(inner), Box::new(tail))),
                });
            }
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(inner),
            });
        }
        self.comparison(path, word)
    }

    /// Parses `"[" valFilter "]"` after `path` (the `[` has been consumed).
    fn value_filter(
        &mut self,
        path: AttrPath,
        word: &'a str,
        open: &Token<'a>,
        ctx: Ctx<'a>,
    ) -> Result<(AttrPath, Filter), SyntaxError> {
        if let Ctx::InValuePath { attr } = ctx {
            return Err(SyntaxError::new(
                open.start,
                format!(
                    "value paths cannot be nested: {} is already inside the brackets of {}",
                    quote_excerpt(word),
                    quote_excerpt(attr)
                ),
            ));
        }
        if path.sub_attr.is_some() {
            return Err(SyntaxError::new(
                open.start,
                format!(
                    "a value filter \"[...]\" must follow an attribute, not the sub-attribute path {}",
                    quote_excerpt(word)
                ),
            ));
        }
        self.enter(open.start)?;
        if self.peek()?.tok == Tok::RBracket {
            let t = self.bump()?;
            return Err(SyntaxError::new(
                t.start,
                format!("the value filter of {} is empty", quote_excerpt(word)),
            ));
        }
        let inner = self.or_expr(Ctx::InValuePath { attr: word })?;
        let close = self.bump()?;
        if close.tok != Tok::RBracket {
            return Err(self.unclosed(&close, open.start, ']'));
        }
        self.leave();
        Ok((path, inner))
    }

    /// `"pr"` or `compareOp compValue` after `path` (written as `word`).
    fn comparison(&mut self, path: AttrPath, word: &str) -> Result<Filter, SyntaxError> {
        let t = self.bump()?;
        let op = match t.tok {
            Tok::Word(w) if w.eq_ignore_ascii_case("pr") => {
                self.term(t.start)?;
                return Ok(Filter::Present { path });
            }
            Tok::Word(w) => compare_op(w),
            _ => None,
        };
        let Some(op) = op else {
            return Err(SyntaxError::new(
                t.start,
                format!(
                    "expected a comparison operator {OPERATORS} after {}, found {}",
                    quote_excerpt(word),
                    t.describe()
                ),
            ));
        };
        let v = self.bump()?;
        let value = match v.tok {
            Tok::Str(s) => CompValue::Str(s),
            Tok::Word(w) => self.literal(w, v.start, op)?,
            _ => return Err(missing_value(&v, op)),
        };
        self.term(t.start)?;
        Ok(Filter::Compare { path, op, value })
    }

    /// A comparison value written as a word rather than a JSON string: `true`, `false`, `null`, a
    /// number, or (a dialect, see [`crate::dialect::bare_filter_value`]) an unquoted string such as
    /// `externalId eq abc123`.
    fn literal(&mut self, w: &'a str, at: usize, op: CompareOp) -> Result<CompValue, SyntaxError> {
        if w.eq_ignore_ascii_case("true") {
            return Ok(CompValue::Bool(true));
        }
        if w.eq_ignore_ascii_case("false") {
            return Ok(CompValue::Bool(false));
        }
        if w.eq_ignore_ascii_case("null") {
            return Ok(CompValue::Null);
        }
        match crate::dialect::bare_filter_value(w) {
            BareValue::Number => parse_number(w).ok_or_else(|| {
                SyntaxError::new(
                    at,
                    format!(
                        "{} is not a valid number (numbers use JSON syntax, e.g. 42, -1.5, 2e10; a string goes in double quotes)",
                        quote_excerpt(w)
                    ),
                )
            }),
            BareValue::Str => {
                // `externalId eq John Smith`: the unquoted value ends at the first space, and what
                // follows it must be what follows any value.
                let next = self.peek()?;
                match next.tok {
                    Tok::Word(n) if !n.eq_ignore_ascii_case("and") && !n.eq_ignore_ascii_case("or") => {
                        Err(SyntaxError::new(
                            next.start,
                            format!(
                                "unexpected {} after the unquoted value {}; expected \"and\", \"or\", a closing bracket or the end of the filter (a value with spaces must be in double quotes)",
                                next.describe(),
                                quote_excerpt(w)
                            ),
                        ))
                    }
                    Tok::Str(_) | Tok::LBracket | Tok::LParen => Err(SyntaxError::new(
                        next.start,
                        format!(
                            "unexpected {} right after the unquoted value {}; write the whole value in double quotes",
                            next.describe(),
                            quote_excerpt(w)
                        ),
                    )),
                    _ => Ok(CompValue::Str(w.to_string())),
                }
            }
            BareValue::Refused(why) => Err(SyntaxError::new(
                at,
                format!(
                    "expected a value (a \"quoted string\", number, true, false or null) after \"{}\", found {}; {why}",
                    op.as_str(),
                    quote_excerpt(w)
                ),
            )),
        }
    }

    fn patch_path(&mut self) -> Result<PatchPath, SyntaxError> {
        if self.is_blank() {
            return Err(SyntaxError::new(0, "the path is empty"));
        }
        let t = self.bump()?;
        let Tok::Word(word) = t.tok else {
            return Err(SyntaxError::new(
                t.start,
                format!("expected an attribute path, found {}", t.describe()),
            ));
        };
        let attr = self.attr_path(word, t.start)?;
        let mut filter = None;
        let mut sub_attr = None;
        if self.peek()?.tok == Tok::LBracket {
            let open = self.bump()?;
            let (_, inner) = self.value_filter(attr.clone(), word, &open, Ctx::Top)?;
            filter = Some(inner);
            if let Tok::Word(w) = self.peek()?.tok
                && let Some(sub) = w.strip_prefix('.')
            {
                let t = self.bump()?;
                if !is_attr_name(sub) {
                    return Err(SyntaxError::new(
                        t.start + 1,
                        format!("{} after \"]\" is not a sub-attribute name", quote_excerpt(sub)),
                    ));
                }
                sub_attr = Some(sub.to_string());
            }
        }
        let t = self.bump()?;
        match t.tok {
            Tok::End => Ok(PatchPath { attr, filter, sub_attr }),
            Tok::RBracket => Err(SyntaxError::new(
                t.start,
                "unbalanced brackets: \"]\" has no matching \"[\"",
            )),
            _ => Err(SyntaxError::new(
                t.start,
                format!(
                    "unexpected {} after the path; a path is attr, attr.subAttr, attr[filter] or attr[filter].subAttr",
                    t.describe()
                ),
            )),
        }
    }
}

fn missing_value(found: &Token<'_>, op: CompareOp) -> SyntaxError {
    SyntaxError::new(
        found.start,
        format!(
            "expected a value (a \"quoted string\", number, true, false or null) after \"{}\", found {}",
            op.as_str(),
            found.describe()
        ),
    )
}

/// Parses a number in JSON syntax (no `+1`, `.5`, `01` or `1.`). Integers that fit `i64`/`u64` stay
/// integers; everything else becomes an `f64`, parsed with correct rounding so that printing (which
/// uses the shortest representation) and re-parsing give back the same value. Values outside the
/// `f64` range are rejected.
fn parse_number(w: &str) -> Option<CompValue> {
    let b = w.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - from
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return None;
    }
    let mut integral = true;
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
        integral = false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
        integral = false;
    }
    if i != b.len() {
        return None;
    }
    if integral {
        if let Ok(v) = w.parse::<u64>() {
            return Some(CompValue::Number(v.into()));
        }
        if let Ok(v) = w.parse::<i64>() {
            return Some(CompValue::Number(v.into()));
        }
    }
    let f: f64 = w.parse().ok()?;
    serde_json::Number::from_f64(f).map(CompValue::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_words() {
        assert_eq!(compare_op("EQ"), Some(CompareOp::Eq));
        assert_eq!(compare_op("gE"), Some(CompareOp::Ge));
        assert_eq!(compare_op("é"), None);
        assert_eq!(compare_op("eqq"), None);
        assert!(is_operator_or_pr("PR"));
    }

    #[test]
    fn numbers_follow_json() {
        for ok in ["0", "-0", "42", "-7", "1.5", "1e3", "-2.5E-3", "18446744073709551615"] {
            assert!(parse_number(ok).is_some(), "{ok}");
        }
        for bad in ["01", "+1", ".5", "1.", "1e", "--1", "1e400", "0x10", "1_000", "NaN"] {
            assert!(parse_number(bad).is_none(), "{bad}");
        }
    }
}
