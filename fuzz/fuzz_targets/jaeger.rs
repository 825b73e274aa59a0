//! Jaeger: the first line of the input is `uber-trace-id`, the others `key=value` pairs that
//! become `uberctx-{key}: {value}` headers. Never panics, stays within the baggage limits,
//! and what is injected extracts to the same context and baggage.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tracewire::baggage::BAGGAGE_MAX_MEMBERS;
use tracewire::propagation::{JaegerPropagator, Propagator};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let mut headers = HeaderMap::new();
    if let Some(Ok(value)) = lines.next().map(HeaderValue::from_bytes) {
        headers.insert("uber-trace-id", value);
    }
    for line in lines {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let mut name = b"uberctx-".to_vec();
        name.extend_from_slice(&line[..eq]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&name),
            HeaderValue::from_bytes(&line[eq + 1..]),
        ) {
            headers.append(name, value);
        }
    }
    let extracted = JaegerPropagator.extract(&headers);
    assert!(extracted.baggage.len() <= BAGGAGE_MAX_MEMBERS);
    let cx = extracted.span_context.clone().unwrap_or_default();
    let mut out = HeaderMap::new();
    JaegerPropagator.inject(&cx, &extracted.baggage, &mut out);
    let again = JaegerPropagator.extract(&out);
    assert_eq!(again.span_context, extracted.span_context);
    // Values are trimmed on the way in, so a value that is only whitespace comes back empty;
    // keys and the order they take in a header map may differ: compare as sorted pairs.
    let sorted = |b: &tracewire::baggage::Baggage| {
        let mut pairs: Vec<(String, String)> = b
            .iter()
            .map(|m| (m.key.to_string(), m.value.to_string()))
            .collect();
        pairs.sort();
        pairs
    };
    assert_eq!(sorted(&again.baggage), sorted(&extracted.baggage));
});
