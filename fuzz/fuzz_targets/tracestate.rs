//! `tracestate` (values cut at `\n`, one header each) behind a valid `traceparent`: never
//! panics, keeps at most 32 members with keys and values of the spec's grammar and lengths,
//! each key once, and what is injected extracts to the same list.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tracewire::baggage::Baggage;
use tracewire::context::{is_valid_key, is_valid_value};
use tracewire::propagation::{parse_tracestate, Propagator, TraceContextPropagator};

#[path = "common.rs"]
mod common;

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fuzz_target!(|data: &[u8]| {
    let values = common::values(data);
    let parsed = parse_tracestate(values.iter().map(HeaderValue::as_bytes));
    assert!(parsed.len() <= 32);
    let mut keys = Vec::new();
    for (key, value) in parsed.iter() {
        assert!(is_valid_key(key) && key.len() <= 256, "{key:?}");
        assert!(is_valid_value(value) && value.len() <= 256, "{value:?}");
        assert!(!keys.contains(&key), "{key:?} twice");
        keys.push(key);
    }
    // The normalised header parses back to itself.
    let again = parse_tracestate(std::iter::once(parsed.header().as_bytes()));
    assert_eq!(again, parsed);

    let mut headers = common::headers("tracestate", &values);
    headers.insert("traceparent", HeaderValue::from_static(TP));
    let cx = TraceContextPropagator
        .extract(&headers)
        .span_context
        .expect("a valid traceparent");
    assert_eq!(cx.trace_state, parsed);
    let mut out = http::HeaderMap::new();
    TraceContextPropagator.inject(&cx, &Baggage::new(), &mut out);
    assert_eq!(TraceContextPropagator.extract(&out).span_context, Some(cx));
});
