//! Paging of every management API list: `limit` and an opaque cursor (the `next_cursor` of the
//! previous page, in the one form of [`rollcall_store::cursor`]), read the same way and refused the
//! same way (400 problem details naming the parameter) on every list.

use super::problem::{ApiProblem, ApiResult};
use rollcall_store::cursor;

/// Items on a page when `limit` is not given, and the most allowed.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// The one value of a parameter; giving it twice is refused.
pub fn single<'a>(pairs: &'a [(String, String)], name: &str) -> ApiResult<Option<&'a str>> {
    let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiProblem::new(400, format!("give {name} once")));
    }
    Ok(first)
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent or empty.
pub fn limit(pairs: &[(String, String)]) -> ApiResult<i64> {
    match single(pairs, "limit")?.map(str::trim) {
        None | Some("") => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiProblem::new(
                400,
                format!("limit must be an integer from 1 to {MAX_LIMIT}, not \"{v}\""),
            )),
        },
    }
}

fn not_a_cursor(name: &str, value: &str) -> ApiProblem {
    ApiProblem::new(
        400,
        format!("{name}=\"{value}\" is not a cursor this list returned; pass a next_cursor unchanged"),
    )
}

/// The numeric position of the cursor parameter `name` (of list `kind`); `None` when absent or
/// empty.
pub fn number_cursor(pairs: &[(String, String)], name: &str, kind: &str) -> ApiResult<Option<i64>> {
    match single(pairs, name)?.map(str::trim) {
        None | Some("") => Ok(None),
        Some(c) => cursor::decode_number(kind, c)
            .map(Some)
            .ok_or_else(|| not_a_cursor(name, c)),
    }
}

/// The textual position of the cursor parameter `name` (of list `kind`); `None` when absent or
/// empty.
pub fn text_cursor(pairs: &[(String, String)], name: &str, kind: &str) -> ApiResult<Option<String>> {
    match single(pairs, name)?.map(str::trim) {
        None | Some("") => Ok(None),
        Some(c) => cursor::decode(kind, c).map(Some).ok_or_else(|| not_a_cursor(name, c)),
    }
}

/// The cursor kinds of the lists (the events cursor is [`rollcall_webhooks::event::EVENTS_CURSOR`]).
pub mod kinds {
    pub const ORGANIZATIONS: &str = "o1:";
    pub const USERS: &str = "u1:";
    pub const GROUPS: &str = "g1:";
    pub const MEMBERS: &str = "m1:";
    pub const REQUESTS: &str = "rq1:";
    pub const ATTEMPTS: &str = "a1:";
    pub const HELD: &str = "h1:";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        super::super::extract::query_pairs(Some(q))
    }

    #[test]
    fn limits_and_cursors() {
        assert_eq!(limit(&pairs("")).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(&pairs("limit=7")).unwrap(), 7);
        for bad in ["limit=0", "limit=1001", "limit=x", "limit=1&limit=2"] {
            assert_eq!(limit(&pairs(bad)).unwrap_err().status.as_u16(), 400, "{bad}");
        }
        let c = cursor::encode_number(kinds::USERS, 9);
        assert_eq!(
            number_cursor(&pairs(&format!("cursor={c}")), "cursor", kinds::USERS).unwrap(),
            Some(9)
        );
        // Another list's cursor is refused, naming the parameter.
        let e = number_cursor(&pairs(&format!("cursor={c}")), "cursor", kinds::GROUPS).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.detail.starts_with("cursor=\""), "{e:?}");
        assert_eq!(number_cursor(&pairs("cursor="), "cursor", kinds::USERS).unwrap(), None);
        let o = cursor::encode(kinds::ORGANIZATIONS, "0190-abc");
        assert_eq!(
            text_cursor(&pairs(&format!("cursor={o}")), "cursor", kinds::ORGANIZATIONS).unwrap(),
            Some("0190-abc".to_string())
        );
    }
}
