//! B3 single header (`b3`, values cut at `\n`): never panics, round-trips, and never sends a
//! deny the caller did not send.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "b3.rs"]
mod b3;
#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let values = common::values(data);
    let headers = common::headers("b3", &values);
    // Optional whitespace around a value is no part of it (HTTP strips it too).
    let denied = values.iter().any(|v| {
        let v = v.as_bytes().trim_ascii();
        v == b"0" || v.split(|&b| b == b'-').nth(2) == Some(b"0")
    });
    b3::round_trip(&*b3::propagator("b3"), &headers, denied);
});
