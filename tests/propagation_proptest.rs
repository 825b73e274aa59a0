//! Property tests: no input makes the codecs panic, what they keep stays within the specs'
//! limits (traceparent 55 characters; tracestate 32 members, keys and values of at most 256;
//! baggage 180 members and 8192 bytes), and whatever valid context or baggage we inject
//! comes back unchanged. The fuzz targets in `fuzz/` check the same properties at length.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderValue};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use tracewire::baggage::{Baggage, BaggageMember};
use tracewire::context::{
    is_valid_key, is_valid_value, SpanContext, SpanId, TraceFlags, TraceId, TraceState,
};
use tracewire::propagation::{
    format_baggage, format_traceparent, parse_baggage, parse_traceparent, parse_tracestate,
    Propagator, W3cPropagator,
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
            let formatted = format_traceparent(&cx);
            prop_assert_eq!(formatted.len(), 55);
            prop_assert_eq!(parse_traceparent(&formatted), Ok(cx));
        }
    }

    #[test]
    fn tracestate_never_panics(values in vec(header_bytes(), 0..4)) {
        let ts = parse_tracestate(values.iter().map(Vec::as_slice));
        prop_assert!(ts.len() <= 32);
        for (key, value) in ts.iter() {
            prop_assert!(is_valid_key(key) && key.len() <= 256);
            prop_assert!(is_valid_value(value) && value.len() <= 256);
        }
        prop_assert_eq!(TraceState::from_members(ts.iter()), Ok(ts.clone()));
        prop_assert_eq!(parse_tracestate([ts.header().as_bytes()].into_iter()), ts);
    }

    /// Members of few keys, so that keys repeat, within one header or across several: the
    /// first member of each key is kept, in order, and the repeats do not count.
    #[test]
    fn repeated_tracestate_keys_keep_the_first_member(
        headers in vec(vec(("[a-e]", tracestate_value()), 1..12), 1..5)
    ) {
        let values: Vec<String> = headers
            .iter()
            .map(|members| {
                members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
            })
            .collect();
        let mut want: Vec<(String, String)> = Vec::new();
        for (key, value) in headers.iter().flatten() {
            if !want.iter().any(|(k, _)| k == key) {
                want.push((key.clone(), value.clone()));
            }
        }
        let ts = parse_tracestate(values.iter().map(|v| v.as_bytes()));
        let got: Vec<(String, String)> =
            ts.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        prop_assert_eq!(got, want);
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

    /// Any bytes, percent-encoded: the member is kept, its value decoded with U+FFFD for
    /// what is not UTF-8, as W3C Baggage says.
    #[test]
    fn baggage_values_decode_lossily(bytes in vec(any::<u8>(), 0..40)) {
        let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
        let baggage = parse_baggage([format!("k={encoded}").as_bytes()].into_iter());
        let want = String::from_utf8_lossy(&bytes);
        prop_assert_eq!(baggage.get("k"), Some(&*want));
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

#[cfg(feature = "b3")]
mod b3 {
    use super::*;
    use tracewire::env::EnvConfig;

    fn propagator(name: &'static str) -> Box<dyn Propagator> {
        EnvConfig::from_lookup(|var| (var == "OTEL_PROPAGATORS").then_some(name)).propagator()
    }

    fn b3_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9a-f]{32}-[0-9a-f]{16}(-[01d])?(-[0-9a-f]{16})?",
            "[0-9a-f]{16}-[0-9a-f]{16}(-[01d])?",
            "[01d]",
            "[0-9a-fA-F -]{0,60}",
        ]
    }

    /// What `propagator` sends for what it extracted extracts the same; a deny goes on only
    /// when the caller sent one, and an accept (with ids) always does.
    fn round_trip(
        name: &'static str,
        headers: &HeaderMap,
        caller_denied: bool,
        caller_accepted: bool,
    ) {
        let propagator = propagator(name);
        let Some(cx) = propagator.extract(headers).span_context else {
            assert!(!caller_accepted, "an accept read as nothing: {headers:?}");
            return;
        };
        assert!(
            !caller_accepted || cx.is_sampled(),
            "an accept read as {:?}: {headers:?}",
            cx.trace_flags
        );
        let mut out = HeaderMap::new();
        propagator.inject(&cx, &Baggage::new(), &mut out);
        let again = propagator
            .extract(&out)
            .span_context
            .expect("what we send, we read");
        assert_eq!(
            (again.trace_id, again.span_id, again.trace_flags),
            (cx.trace_id, cx.span_id, cx.trace_flags)
        );
        let denies = out.get("b3").is_some_and(|v| v.as_bytes().ends_with(b"-0"))
            || out.get("x-b3-sampled").is_some_and(|v| v == "0");
        assert!(
            caller_denied || !denies,
            "a deny the caller did not send: {headers:?} -> {out:?}"
        );
        let accepts = out.get("b3").is_some_and(|v| v.as_bytes().ends_with(b"-1"))
            || out.get("x-b3-sampled").is_some_and(|v| v == "1");
        assert!(
            !caller_accepted || accepts,
            "an accept not passed on: {headers:?} -> {out:?}"
        );
    }

    /// A B3 id: lower-case hex of one of `lens` digits, not all zeros.
    fn is_id(id: &str, lens: &[usize]) -> bool {
        lens.contains(&id.len())
            && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && id.bytes().any(|b| b != b'0')
    }

    /// `b3: {trace}-{span}-{1|d}[-{parent}]`, which the specification reads as an accept.
    fn single_accepts(value: &str) -> bool {
        let parts: Vec<&str> = value.trim().split('-').collect();
        matches!(parts.len(), 3 | 4)
            && is_id(parts[0], &[16, 32])
            && is_id(parts[1], &[16])
            && matches!(parts[2], "1" | "d")
            && parts.get(3).is_none_or(|p| {
                p.len() == 16 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn b3_single_round_trips(value in b3_value()) {
            let mut headers = HeaderMap::new();
            headers.insert("b3", HeaderValue::from_str(&value).unwrap());
            let accepted = single_accepts(&value);
            let value = value.trim();
            let denied = value == "0" || value.split('-').nth(2) == Some("0");
            // Both read `b3`; they differ only in what they inject.
            for name in ["b3", "b3multi"] {
                round_trip(name, &headers, denied, accepted);
            }
        }

        #[test]
        fn b3_multi_round_trips(
            trace in proptest::option::of("[0-9a-f]{16}|[0-9a-f]{32}|[0-9a-fA-F]{0,33}"),
            span in proptest::option::of("[0-9a-f]{16}|[0-9a-fA-F]{0,17}"),
            sampled in proptest::option::of("[ ]?(0|1|true|false|x)[ ]?"),
            flags in proptest::option::of("0|1|2"),
        ) {
            let mut headers = HeaderMap::new();
            for (name, value) in [("x-b3-traceid", &trace), ("x-b3-spanid", &span), ("x-b3-sampled", &sampled), ("x-b3-flags", &flags)] {
                if let Some(value) = value {
                    headers.insert(name, HeaderValue::from_str(value).unwrap());
                }
            }
            let denied = matches!(sampled.as_deref().map(str::trim), Some("0" | "false"));
            let ids = trace.as_deref().is_some_and(|t| is_id(t, &[16, 32]))
                && span.as_deref().is_some_and(|s| is_id(s, &[16]));
            let accepted = ids
                && (matches!(sampled.as_deref().map(str::trim), Some("1" | "true"))
                    || flags.as_deref() == Some("1"));
            for name in ["b3", "b3multi"] {
                round_trip(name, &headers, denied, accepted);
            }
        }
    }
}

#[cfg(feature = "jaeger")]
mod jaeger {
    use super::*;
    use tracewire::propagation::JaegerPropagator;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn jaeger_never_panics_and_round_trips(
            trace_id in prop_oneof![
                "[0-9a-f]{1,32}:[0-9a-f]{1,16}:[0-9a-f]{1,16}:[0-9a-f]{1,2}",
                "[0-9a-fA-F:%]{0,60}",
            ],
            baggage in vec(("[a-z]{1,8}", vec(any::<u8>(), 0..20)), 0..8),
        ) {
            let mut headers = HeaderMap::new();
            headers.insert("uber-trace-id", HeaderValue::from_str(&trace_id).unwrap());
            for (key, value) in &baggage {
                let encoded: String = value.iter().map(|b| format!("%{b:02X}")).collect();
                headers.append(
                    http::HeaderName::from_bytes(format!("uberctx-{key}").as_bytes()).unwrap(),
                    HeaderValue::from_str(&encoded).unwrap(),
                );
            }
            let extracted = JaegerPropagator.extract(&headers);
            prop_assert!(extracted.baggage.len() <= 180);
            // Every key arrives (the first value of each), invalid UTF-8 as U+FFFD.
            for (key, value) in &baggage {
                let first = baggage.iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap();
                let want = String::from_utf8_lossy(first);
                prop_assert_eq!(extracted.baggage.get(key), Some(want.trim()), "{:?}", value);
            }
            let cx = extracted.span_context.clone().unwrap_or_default();
            let mut out = HeaderMap::new();
            JaegerPropagator.inject(&cx, &extracted.baggage, &mut out);
            let again = JaegerPropagator.extract(&out);
            prop_assert_eq!(again.span_context, extracted.span_context);
            for member in extracted.baggage.iter() {
                prop_assert_eq!(again.baggage.get(&member.key), Some(&*member.value));
            }
        }
    }
}
