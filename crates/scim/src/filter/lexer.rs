//! Tokeniser for filters and PATCH paths.
//!
//! The token set is deliberately small: brackets, parentheses, JSON string literals, and "words".
//! A word is a maximal run of characters that are not spaces, brackets, parentheses or quotes; the
//! parser decides from context whether a word is an attribute path, an operator, a keyword or a
//! literal. That keeps keywords usable as attribute names (`not pr` is a valid filter) and lets
//! URNs with dots and colons (`urn:…:2.0:User:userName`) arrive in one piece.
//!
//! Only the space character separates tokens. Tabs, newlines and other control characters outside
//! string literals are errors: URL decoding (and `+` for space) belongs to the HTTP layer.

/// A lexing or parsing failure: a byte offset into the input (always on a character boundary) and
/// a plain-English reason. The caller turns it into a SCIM error with a 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: usize,
    pub msg: String,
}

impl SyntaxError {
    pub fn new(pos: usize, msg: impl Into<String>) -> Self {
        SyntaxError { pos, msg: msg.into() }
    }

    /// 1-based column (in characters) of the error within `src`.
    pub fn column(&self, src: &str) -> usize {
        let pos = self.pos.min(src.len());
        // `pos` is always produced on a character boundary; `get` guards against misuse anyway.
        src.get(..pos).map_or(pos, |p| p.chars().count()) + 1
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'a> {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// A JSON string literal, unescaped.
    Str(String),
    Word(&'a str),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'a> {
    pub tok: Tok<'a>,
    /// Byte offsets of the token in the input.
    pub start: usize,
    pub end: usize,
}

impl Token<'_> {
    /// How the token is named in error messages.
    pub fn describe(&self) -> String {
        match &self.tok {
            Tok::LParen => "\"(\"".into(),
            Tok::RParen => "\")\"".into(),
            Tok::LBracket => "\"[\"".into(),
            Tok::RBracket => "\"]\"".into(),
            Tok::Str(s) => format!("the string {}", quote_excerpt(s)),
            Tok::Word(w) => quote_excerpt(w),
            Tok::End => "the end of the input".into(),
        }
    }
}

/// Puts `s` in double quotes for an error message, shortened to a readable length.
pub(crate) fn quote_excerpt(s: &str) -> String {
    const MAX: usize = 40;
    let mut out = String::with_capacity(s.len().min(MAX * 4) + 4);
    out.push('"');
    for (n, c) in s.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out.push('"');
    out
}

pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn is_delimiter(b: u8) -> bool {
    matches!(b, b' ' | b'(' | b')' | b'[' | b']' | b'"')
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Lexer { src, pos: 0 }
    }

    pub fn next_token(&mut self) -> Result<Token<'a>, SyntaxError> {
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() && bytes[self.pos] == b' ' {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(&b) = bytes.get(start) else {
            return Ok(Token {
                tok: Tok::End,
                start,
                end: start,
            });
        };
        let single = |tok| {
            Ok(Token {
                tok,
                start,
                end: start + 1,
            })
        };
        match b {
            b'(' => {
                self.pos += 1;
                single(Tok::LParen)
            }
            b')' => {
                self.pos += 1;
                single(Tok::RParen)
            }
            b'[' => {
                self.pos += 1;
                single(Tok::LBracket)
            }
            b']' => {
                self.pos += 1;
                single(Tok::RBracket)
            }
            b'"' => self.string(start),
            _ => self.word(start),
        }
    }

    fn word(&mut self, start: usize) -> Result<Token<'a>, SyntaxError> {
        let src = self.src;
        let bytes = src.as_bytes();
        let mut i = start;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 {
                if is_delimiter(b) || b.is_ascii_control() {
                    break;
                }
                i += 1;
            } else {
                // `i` is on a character boundary: it only ever advances by whole characters.
                let Some(c) = src[i..].chars().next() else { break };
                if c.is_whitespace() || c.is_control() {
                    break;
                }
                i += c.len_utf8();
            }
        }
        if i == start {
            // Not a delimiter, yet nothing consumed: a control or non-space whitespace character.
            let c = src[start..].chars().next().unwrap_or('\0');
            let reason = if c.is_whitespace() {
                format!(
                    "unexpected whitespace character U+{:04X}; only spaces may separate the parts of a filter",
                    c as u32
                )
            } else {
                format!("unexpected control character U+{:04X}", c as u32)
            };
            return Err(SyntaxError::new(start, reason));
        }
        self.pos = i;
        Ok(Token {
            tok: Tok::Word(&src[start..i]),
            start,
            end: i,
        })
    }

    fn string(&mut self, start: usize) -> Result<Token<'a>, SyntaxError> {
        let src = self.src;
        let bytes = src.as_bytes();
        let unterminated = || SyntaxError::new(start, "unterminated string: the closing double quote (\") is missing");
        // Stays `None` (no allocation beyond the final copy) while the literal has no escapes.
        let mut out: Option<String> = None;
        let mut i = start + 1;
        let mut seg = i;
        loop {
            let Some(&b) = bytes.get(i) else {
                return Err(unterminated());
            };
            match b {
                b'"' => {
                    // `seg` and `i` sit on ASCII bytes (or the end), so both are character boundaries.
                    let s = match out {
                        Some(mut o) => {
                            o.push_str(&src[seg..i]);
                            o
                        }
                        None => src[seg..i].to_string(),
                    };
                    self.pos = i + 1;
                    return Ok(Token {
                        tok: Tok::Str(s),
                        start,
                        end: i + 1,
                    });
                }
                b'\\' => {
                    let o = out.get_or_insert_with(String::new);
                    o.push_str(&src[seg..i]);
                    let (c, len) = self.escape(i)?;
                    o.push(c);
                    i += len;
                    seg = i;
                }
                0x00..=0x1f => {
                    return Err(SyntaxError::new(
                        i,
                        format!(
                            "control character U+{b:04X} inside a string must be escaped (for example \\n or \\u{b:04x})"
                        ),
                    ));
                }
                _ => i += 1,
            }
        }
    }

    /// Decodes the escape sequence whose backslash is at byte `at`; returns the character and the
    /// number of bytes the sequence occupies.
    fn escape(&self, at: usize) -> Result<(char, usize), SyntaxError> {
        let bytes = self.src.as_bytes();
        let Some(&e) = bytes.get(at + 1) else {
            return Err(SyntaxError::new(
                at,
                "unterminated string: it ends inside an escape sequence",
            ));
        };
        let c = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4(at)?;
                if (0xD800..0xDC00).contains(&hi) {
                    let lo_at = at + 6;
                    if bytes.get(lo_at) == Some(&b'\\') && bytes.get(lo_at + 1) == Some(&b'u') {
                        let lo = self.hex4(lo_at)?;
                        if (0xDC00..0xE000).contains(&lo) {
                            let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            if let Some(c) = char::from_u32(cp) {
                                return Ok((c, 12));
                            }
                        }
                    }
                    return Err(SyntaxError::new(
                        at,
                        format!(
                            "invalid escape \\u{hi:04x}: a high surrogate must be followed by a \\u escape for a low surrogate (DC00-DFFF)"
                        ),
                    ));
                }
                if (0xDC00..0xE000).contains(&hi) {
                    return Err(SyntaxError::new(
                        at,
                        format!("invalid escape \\u{hi:04x}: a low surrogate must follow a high surrogate"),
                    ));
                }
                if hi == 0 {
                    // No stored value holds one (request bodies with NUL are refused), and
                    // PostgreSQL text cannot hold one either.
                    return Err(SyntaxError::new(at, "\\u0000 (NUL) is not allowed in a string"));
                }
                // Not a surrogate, so always a valid scalar value.
                let c = char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER);
                return Ok((c, 6));
            }
            _ => {
                let c = self.src[at + 1..].chars().next().unwrap_or('?');
                return Err(SyntaxError::new(
                    at,
                    format!(
                        "invalid escape sequence \"\\{c}\" in a string (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"
                    ),
                ));
            }
        };
        Ok((c, 2))
    }

    /// Reads the four hex digits of a `\uXXXX` escape whose backslash is at byte `at`.
    fn hex4(&self, at: usize) -> Result<u32, SyntaxError> {
        let bytes = self.src.as_bytes();
        let mut v = 0u32;
        for k in 0..4 {
            let d = bytes.get(at + 2 + k).and_then(|b| (*b as char).to_digit(16));
            match d {
                Some(d) => v = v * 16 + d,
                None => {
                    return Err(SyntaxError::new(
                        at,
                        "invalid \\u escape: expected four hexadecimal digits after \\u",
                    ));
                }
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(src: &str) -> Result<Vec<Tok<'_>>, SyntaxError> {
        let mut lx = Lexer::new(src);
        let mut v = Vec::new();
        loop {
            let t = lx.next_token()?;
            if t.tok == Tok::End {
                return Ok(v);
            }
            v.push(t.tok);
        }
    }

    #[test]
    fn tokens() {
        assert_eq!(
            all(r#"emails[type eq "w\"k"] or  not(x pr)"#).unwrap(),
            vec![
                Tok::Word("emails"),
                Tok::LBracket,
                Tok::Word("type"),
                Tok::Word("eq"),
                Tok::Str("w\"k".into()),
                Tok::RBracket,
                Tok::Word("or"),
                Tok::Word("not"),
                Tok::LParen,
                Tok::Word("x"),
                Tok::Word("pr"),
                Tok::RParen,
            ]
        );
    }

    #[test]
    fn escapes() {
        let t = all(r#""\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#).unwrap();
        assert_eq!(t, vec![Tok::Str("\"\\/\u{8}\u{c}\n\r\té😀".into())]);
        assert!(all(r#""\ud83d""#).is_err());
        assert!(all(r#""\ude00""#).is_err());
        assert!(all(r#""\u12""#).is_err());
        assert!(all(r#""\x""#).is_err());
        assert!(all(r#""\é""#).is_err());
        assert!(all("\"a\nb\"").is_err());
        assert!(all(r#""abc"#).is_err());
        assert!(all(r#""abc\"#).is_err());
    }

    #[test]
    fn non_ascii_words_and_columns() {
        assert_eq!(all("é€x").unwrap(), vec![Tok::Word("é€x")]);
        let e = all("é\tx").unwrap_err();
        assert_eq!(e.column("é\tx"), 2);
        let e = all("ab\u{2003}c").unwrap_err();
        assert!(e.msg.contains("U+2003"), "{}", e.msg);
    }
}
