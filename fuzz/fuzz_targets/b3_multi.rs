//! B3 multiple headers: the input's lines are the values of `x-b3-traceid`, `x-b3-spanid`,
//! `x-b3-parentspanid`, `x-b3-sampled` and `x-b3-flags`, in that order (an empty line leaves
//! a header out). Never panics, round-trips, and never sends a deny the caller did not send.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

#[path = "b3.rs"]
mod b3;

const NAMES: [&str; 5] = [
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for (name, value) in NAMES.iter().zip(data.split(|&b| b == b'\n')) {
        if value.is_empty() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(*name, value);
        }
    }
    // Optional whitespace around a value is no part of it (HTTP strips it too).
    let denied = headers
        .get("x-b3-sampled")
        .is_some_and(|v| matches!(v.as_bytes().trim_ascii(), b"0" | b"false"));
    b3::round_trip(&*b3::propagator("b3multi"), &headers, denied);
});
