//! The one form of every list cursor the management API hands out: URL-safe base64 (no padding) of
//! a kind prefix and a position, so that cursors are opaque, cannot be mistaken for one another
//! (an events cursor is refused by the user list), and need no escaping in a query string.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A cursor of `kind` (a short prefix such as `"ev1:"`) for a textual position.
pub fn encode(kind: &str, position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}{position}"))
}

/// The textual position of a cursor of `kind`; `None` when it is not one.
pub fn decode(kind: &str, cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let position = text.strip_prefix(kind)?;
    (!position.is_empty()).then(|| position.to_string())
}

/// A cursor of `kind` for a numeric position (a sequence number or row key).
pub fn encode_number(kind: &str, position: i64) -> String {
    encode(kind, &position.to_string())
}

/// The numeric position (0 or more) of a cursor of `kind`; `None` when it is not one.
pub fn decode_number(kind: &str, cursor: &str) -> Option<i64> {
    decode(kind, cursor)?.parse::<i64>().ok().filter(|n| *n >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kinds_do_not_mix() {
        let c = encode_number("ev1:", 42);
        assert_eq!(decode_number("ev1:", &c), Some(42));
        assert_eq!(decode_number("u1:", &c), None);
        assert_eq!(decode_number("ev1:", &encode("ev1:", "-5")), None);
        assert_eq!(decode_number("ev1:", &encode("ev1:", "")), None);
        for bad in ["", "!!", "ZXYxOg", "not a cursor", "ZXYxOjQy=="] {
            assert_eq!(decode_number("ev1:", bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn numbers_round_trip(n in 0i64..i64::MAX) {
            prop_assert_eq!(decode_number("g1:", &encode_number("g1:", n)), Some(n));
        }

        #[test]
        fn text_round_trips(s in "[a-z0-9-]{1,40}") {
            let c = encode("o1:", &s);
            prop_assert!(c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(decode("o1:", &c), Some(s));
        }

        #[test]
        fn arbitrary_input_never_panics(s in ".{0,64}") {
            let _ = decode("o1:", &s);
            let _ = decode_number("o1:", &s);
        }
    }
}
