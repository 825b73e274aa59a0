//! `traceparent`: the codec and the propagator never panic; what parses formats to 55
//! characters that parse back to the same context.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracewire::baggage::Baggage;
use tracewire::propagation::{
    format_traceparent, parse_traceparent, Propagator, TraceContextPropagator,
};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(cx) = parse_traceparent(data) {
        assert!(cx.is_valid() && cx.is_remote);
        let formatted = format_traceparent(&cx);
        assert_eq!(formatted.len(), 55);
        assert_eq!(parse_traceparent(&formatted), Ok(cx));
    }
    let headers = common::headers("traceparent", &common::values(data));
    let extracted = TraceContextPropagator.extract(&headers);
    if let Some(cx) = extracted.span_context {
        let mut out = http::HeaderMap::new();
        TraceContextPropagator.inject(&cx, &Baggage::new(), &mut out);
        assert_eq!(out["traceparent"].len(), 55);
        assert_eq!(TraceContextPropagator.extract(&out).span_context, Some(cx));
    }
});
