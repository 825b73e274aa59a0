//! `baggage` (values cut at `\n`, one header each): never panics, stays within 180 members
//! and 8192 bytes, and what is formatted parses back to the same baggage.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tracewire::baggage::{BAGGAGE_MAX_BYTES, BAGGAGE_MAX_MEMBERS};
use tracewire::context::SpanContext;
use tracewire::propagation::{format_baggage, parse_baggage, BaggagePropagator, Propagator};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let values = common::values(data);
    let baggage = parse_baggage(values.iter().map(HeaderValue::as_bytes));
    assert!(baggage.len() <= BAGGAGE_MAX_MEMBERS);
    match format_baggage(&baggage) {
        Some(formatted) => {
            assert!(formatted.len() <= BAGGAGE_MAX_BYTES, "{}", formatted.len());
            let again = parse_baggage(std::iter::once(formatted.as_bytes()));
            assert_eq!(again, baggage);
        }
        None => assert!(baggage.is_empty()),
    }
    let headers = common::headers("baggage", &values);
    let extracted = BaggagePropagator.extract(&headers);
    assert_eq!(extracted.baggage, baggage);
    let mut out = http::HeaderMap::new();
    BaggagePropagator.inject(&SpanContext::NONE, &baggage, &mut out);
    assert_eq!(BaggagePropagator.extract(&out).baggage, baggage);
});
