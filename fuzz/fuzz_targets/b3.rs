//! Shared by the B3 targets (included with `#[path]`): the B3 propagators as
//! `OTEL_PROPAGATORS` names them, and the round-trip checks.
#![allow(dead_code)]

use http::HeaderMap;
use tracewire::propagation::{Extracted, Propagator};
use tracewire::env::EnvConfig;

/// The propagator `OTEL_PROPAGATORS={name}` gives.
pub fn propagator(name: &'static str) -> Box<dyn Propagator> {
    EnvConfig::from_lookup(|var| (var == "OTEL_PROPAGATORS").then_some(name)).propagator()
}

/// Extracts from `headers`, injects what came out, and checks that the injected headers
/// extract to the same context and that no deny is sent that the caller did not send.
pub fn round_trip(propagator: &dyn Propagator, headers: &HeaderMap, caller_denied: bool) {
    let extracted: Extracted = propagator.extract(headers);
    let Some(cx) = extracted.span_context else {
        return;
    };
    let mut out = HeaderMap::new();
    propagator.inject(&cx, &extracted.baggage, &mut out);
    let again = propagator.extract(&out).span_context.expect("what we send, we read");
    assert_eq!((again.trace_id, again.span_id), (cx.trace_id, cx.span_id));
    assert_eq!(again.trace_flags, cx.trace_flags);
    if !caller_denied {
        let denies = out.get("b3").is_some_and(|v| v.as_bytes().ends_with(b"-0") || v == "0")
            || out.get("x-b3-sampled").is_some_and(|v| v == "0");
        assert!(!denies, "a deny the caller did not send: {out:?}");
    }
}
