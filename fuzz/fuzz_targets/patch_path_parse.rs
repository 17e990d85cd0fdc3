//! PATCH path parser: never panics; whatever parses prints to text that parses back to the same
//! path (when the printed form still fits the length limit).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rollcall_scim::filter::FilterLimits;
use rollcall_scim::path::{AttrPath, PatchPath};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    // The plain attribute-path parser shares the input space; it must not panic either.
    let _ = AttrPath::parse(input);
    let Ok(path) = PatchPath::parse(input) else {
        return;
    };
    assert!(
        path.filter.is_some() || path.sub_attr.is_none(),
        "sub_attr without a filter: {path:?}"
    );
    if path.filter.is_some() {
        assert!(path.attr.sub_attr.is_none(), "value path on a sub-attribute: {path:?}");
    }
    let printed = path.to_string();
    // Printing can lengthen the text (`1e3` prints as `1000.0`); skip what no longer fits.
    if printed.chars().count() > FilterLimits::default().max_length {
        return;
    }
    match PatchPath::parse(&printed) {
        Ok(again) => assert_eq!(again, path, "{input:?} printed as {printed:?}"),
        Err(e) => panic!("{input:?} printed as {printed:?}, which does not parse: {e}"),
    }
});
