//! Property tests: no input makes the codecs panic, and whatever valid context or baggage
//! we inject comes back unchanged.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderValue};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use tracewire::baggage::{Baggage, BaggageMember};
use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracewire::propagation::{
    format_baggage, parse_baggage, parse_traceparent, parse_tracestate, Propagator, W3cPropagator,
};

/// Bytes shaped like the headers, so the parsers get past their first checks often.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..120),
        "[0-9a-fA-F \t.=,;%@-]{0,80}".prop_map(String::into_bytes),
        (
            "[0-9a-f]{2}",
            "[0-9a-f]{32}",
            "[0-9a-f]{16}",
            "[0-9a-f]{2}",
            "[-. a-z]{0,4}"
        )
            .prop_map(|(v, t, p, f, rest)| format!("{v}-{t}-{p}-{f}{rest}").into_bytes()),
    ]
}

fn tracestate_key() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_*/@-]{0,24}"
}

fn tracestate_value() -> impl Strategy<Value = String> {
    r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,24}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
}

fn trace_state() -> impl Strategy<Value = TraceState> {
    btree_map(tracestate_key(), tracestate_value(), 0..=32).prop_map(
        |members: BTreeMap<String, String>| {
            TraceState::from_members(members.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .expect("the strategy makes valid members")
        },
    )
}

fn span_context() -> impl Strategy<Value = SpanContext> {
    (any::<u128>(), any::<u64>(), 0u8..=3, trace_state())
        .prop_filter("ids are non-zero", |(t, s, _, _)| *t != 0 && *s != 0)
        .prop_map(|(t, s, flags, trace_state)| {
            SpanContext::new(
                TraceId::from(t),
                SpanId::from(s),
                TraceFlags::new(flags),
                false,
                trace_state,
            )
        })
}

fn baggage_key() -> impl Strategy<Value = String> {
    "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}"
}

fn baggage_properties() -> impl Strategy<Value = String> {
    vec(
        (
            "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,8}",
            proptest::option::of(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{0,8}"),
        ),
        0..3,
    )
    .prop_map(|props| {
        props
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k,
            })
            .collect::<Vec<_>>()
            .join(";")
    })
}

fn baggage() -> impl Strategy<Value = Baggage> {
    vec(
        (baggage_key(), any::<String>(), baggage_properties()),
        0..24,
    )
    .prop_map(|members| {
        members
            .into_iter()
            .fold(Baggage::new(), |baggage, (key, value, properties)| {
                baggage
                    .with_member(BaggageMember::new(key, value).with_properties(properties))
                    .expect("the strategy stays within the grammar and the limits")
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn traceparent_never_panics(bytes in header_bytes()) {
        if let Ok(cx) = parse_traceparent(&bytes) {
            prop_assert!(cx.is_valid() && cx.is_remote);
            prop_assert!(cx.trace_flags.to_u8() <= 3);
        }
    }

    #[test]
    fn tracestate_never_panics(values in vec(header_bytes(), 0..4)) {
        let ts = parse_tracestate(values.iter().map(Vec::as_slice));
        prop_assert!(ts.len() <= 32);
        prop_assert_eq!(TraceState::from_members(ts.iter()), Ok(ts.clone()));
    }

    #[test]
    fn baggage_never_panics(values in vec(header_bytes(), 0..4)) {
        let baggage = parse_baggage(values.iter().map(Vec::as_slice));
        prop_assert!(baggage.len() <= 180);
        if let Some(header) = format_baggage(&baggage) {
            prop_assert!(header.len() <= 8192);
            prop_assert_eq!(parse_baggage([header.as_bytes()].into_iter()), baggage);
        }
    }

    #[test]
    fn any_header_map_extracts_without_panicking(
        values in vec((prop_oneof![Just("traceparent"), Just("tracestate"), Just("baggage")], header_bytes()), 0..6)
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in values {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.append(name, value);
            }
        }
        let extracted = W3cPropagator.extract(&headers);
        if let Some(cx) = extracted.span_context {
            let mut out = HeaderMap::new();
            W3cPropagator.inject(&cx, &extracted.baggage, &mut out);
            prop_assert_eq!(W3cPropagator.extract(&out).span_context, Some(cx));
        }
    }

    #[test]
    fn valid_span_contexts_round_trip(cx in span_context()) {
        let mut headers = HeaderMap::new();
        W3cPropagator.inject(&cx, &Baggage::new(), &mut headers);
        prop_assert_eq!(headers.contains_key("tracestate"), !cx.trace_state.is_empty());
        let extracted = W3cPropagator.extract(&headers);
        prop_assert_eq!(extracted.span_context, Some(SpanContext { is_remote: true, ..cx }));
        prop_assert!(extracted.baggage.is_empty());
    }

    #[test]
    fn valid_baggage_round_trips(baggage in baggage(), cx in span_context()) {
        let mut headers = HeaderMap::new();
        W3cPropagator.inject(&cx, &baggage, &mut headers);
        prop_assert_eq!(headers.contains_key("baggage"), !baggage.is_empty());
        prop_assert_eq!(W3cPropagator.extract(&headers).baggage, baggage);
    }
}
