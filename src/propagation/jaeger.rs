//! The Jaeger propagation format: `uber-trace-id` and `uberctx-*` headers.
//!
//! The official `opentelemetry-jaeger-propagator` (deprecated, like the format itself in
//! favour of W3C Trace Context) is built against an older `opentelemetry` (0.32) than
//! tracewire's, so its `TextMapPropagator` cannot be adapted; this is a native [`Propagator`]
//! for the same wire format, for services that still speak it.

use std::fmt::Write as _;

use http::{HeaderName, HeaderValue};
use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{Extracted, Extractor, Injector, Propagator};
use crate::baggage::{Baggage, BaggageBuilder, BaggageMember};
use crate::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// The Jaeger trace context header.
pub const UBER_TRACE_ID: HeaderName = HeaderName::from_static("uber-trace-id");
/// The prefix of Jaeger baggage headers: `uberctx-{key}: {value}`.
pub const UBERCTX_PREFIX: &str = "uberctx-";

/// Flag bits of `uber-trace-id`: sampled, and debug (which implies sampled).
const SAMPLED: u8 = 0x01;
const DEBUG: u8 = 0x02;

/// What stays readable in a baggage value: letters, digits and `-._~`.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Jaeger's `uber-trace-id: {trace-id}:{span-id}:{parent-span-id}:{flags}` and
/// `uberctx-{key}: {value}` baggage headers.
///
/// Extract: exactly one `uber-trace-id` (its value may be percent-encoded), with a trace id of 1 to
/// 32 hex digits (64-bit ids are zero-extended), a span id of 1 to 16, a parent span id (ignored)
/// and 1 or 2 hex digits of flags; the debug flag implies sampled. Anything else is no span
/// context. Every `uberctx-` header becomes a baggage member (its value percent-decoded, invalid
/// UTF-8 replaced by U+FFFD), within the W3C baggage limits. Jaeger has no trace state.
///
/// Inject: `uber-trace-id` with 32 and 16 hex digits, parent `0` and flags `1` or `0`, and
/// one `uberctx-` header per baggage member (values percent-encoded).
///
/// ```
/// use http::HeaderMap;
/// use tracewire::baggage::Baggage;
/// use tracewire::propagation::{JaegerPropagator, Propagator};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("uber-trace-id", "4bf92f3577b34da6:a3ce929d0e0e4736:0:1".parse().unwrap());
/// headers.insert("uberctx-tenant", "acme%20corp".parse().unwrap());
/// let extracted = JaegerPropagator.extract(&headers);
/// let cx = extracted.span_context.unwrap();
/// assert!(cx.is_sampled());
/// assert_eq!(cx.trace_id.to_string(), "00000000000000004bf92f3577b34da6");
/// assert_eq!(extracted.baggage.get("tenant"), Some("acme corp"));
///
/// let mut out = HeaderMap::new();
/// JaegerPropagator.inject(&cx, &extracted.baggage, &mut out);
/// assert_eq!(
///     out["uber-trace-id"],
///     "00000000000000004bf92f3577b34da6:a3ce929d0e0e4736:0:1"
/// );
/// assert_eq!(out["uberctx-tenant"], "acme%20corp");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct JaegerPropagator;

impl JaegerPropagator {
    /// The propagator.
    pub const fn new() -> Self {
        JaegerPropagator
    }
}

impl Propagator for JaegerPropagator {
    fn extract(&self, carrier: &dyn Extractor) -> Extracted {
        let mut count = 0usize;
        let mut span_context = None;
        carrier.get_each(UBER_TRACE_ID.as_str(), &mut |value| {
            count += 1;
            if count == 1 {
                span_context = parse_uber_trace_id(value);
            }
        });
        if count != 1 {
            span_context = None;
        }

        let mut baggage = BaggageBuilder::default();
        for name in carrier.keys() {
            let Some(key) = strip_prefix_ignore_case(name, UBERCTX_PREFIX) else {
                continue;
            };
            if key.is_empty() {
                continue;
            }
            let mut first = None;
            carrier.get_each(name, &mut |value| {
                if first.is_none() {
                    // As W3C Baggage: invalid UTF-8 becomes U+FFFD rather than losing the
                    // member.
                    first = Some(percent_decode(value).decode_utf8_lossy().trim().to_owned());
                }
            });
            if let Some(value) = first {
                baggage.push_checked(BaggageMember::new(key.to_ascii_lowercase(), value));
            }
        }
        Extracted {
            span_context,
            baggage: baggage.finish(),
        }
    }

    fn inject(&self, cx: &SpanContext, baggage: &Baggage, carrier: &mut dyn Injector) {
        if cx.is_valid() {
            let mut value = String::with_capacity(53);
            let flags = if cx.is_sampled() { 1 } else { 0 };
            let _ = write!(value, "{}:{}:0:{flags}", cx.trace_id, cx.span_id);
            if let Ok(value) = HeaderValue::try_from(value) {
                carrier.set(UBER_TRACE_ID, value);
            }
        }
        for member in baggage.iter() {
            let name = HeaderName::from_bytes(format!("{UBERCTX_PREFIX}{}", member.key).as_bytes());
            let value = utf8_percent_encode(&member.value, VALUE).to_string();
            if let (Ok(name), Ok(value)) = (name, HeaderValue::try_from(value)) {
                carrier.set(name, value);
            }
        }
    }
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// Parses `{trace-id}:{span-id}:{parent-span-id}:{flags}`, percent-encoded or not.
fn parse_uber_trace_id(raw: &[u8]) -> Option<SpanContext> {
    let decoded = percent_decode(raw).decode_utf8().ok()?;
    let mut parts = decoded.trim().split(':');
    let (Some(trace), Some(span), Some(parent), Some(flags), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let trace = hex_u128(trace, 32)?;
    let span = hex_u128(span, 16)?;
    hex_u128(parent, 16)?;
    let flags = u8::try_from(hex_u128(flags, 2)?).ok()?;
    let cx = SpanContext::new(
        TraceId::from(trace),
        SpanId::from(u64::try_from(span).ok()?),
        if flags & (SAMPLED | DEBUG) != 0 {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        },
        true,
        TraceState::NONE,
    );
    cx.is_valid().then_some(cx)
}

/// 1 to `max` hex digits, either case.
fn hex_u128(digits: &str, max: usize) -> Option<u128> {
    if digits.is_empty() || digits.len() > max || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn extract(value: &str) -> Option<SpanContext> {
        let mut headers = HeaderMap::new();
        headers.insert(UBER_TRACE_ID, HeaderValue::from_str(value).unwrap());
        JaegerPropagator.extract(&headers).span_context
    }

    #[test]
    fn uber_trace_id_values() {
        let full = extract("4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:01").unwrap();
        assert_eq!(
            full.trace_id,
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736)
        );
        assert_eq!(full.span_id, SpanId::from(0x00f067aa0ba902b7));
        assert!(full.is_sampled() && full.is_remote);

        let short = extract("abc:def:0:0").unwrap();
        assert_eq!(short.trace_id, TraceId::from(0xabc));
        assert_eq!(short.span_id, SpanId::from(0xdef));
        assert!(!short.is_sampled());

        assert!(extract("ABC:DEF:0:3").unwrap().is_sampled(), "debug");
        assert!(
            extract("abc%3Adef%3A0%3A1").unwrap().is_sampled(),
            "percent-encoded"
        );
        for bad in [
            "",
            "abc:def:0",
            "abc:def:0:1:2",
            "0:def:0:1",
            "abc:0:0:1",
            "abc:def:0:100",
            "abc:def:0:",
            "abc:+def:0:1",
            "abc:-1:0:1",
            "g:def:0:1",
            "abc:00000000000000def:0:1",
            "4bf92f3577b34da6a3ce929d0e0e47360:def:0:1",
            "abc:def:x:1",
            "%ff:def:0:1",
        ] {
            assert_eq!(extract(bad), None, "{bad:?}");
        }

        let mut two = HeaderMap::new();
        two.append(UBER_TRACE_ID, HeaderValue::from_static("abc:def:0:1"));
        two.append(UBER_TRACE_ID, HeaderValue::from_static("abc:def:0:1"));
        assert_eq!(JaegerPropagator.extract(&two).span_context, None);
        assert_eq!(
            JaegerPropagator.extract(&HeaderMap::new()),
            Extracted::default()
        );
    }

    #[test]
    fn baggage_round_trips() {
        let mut headers = HeaderMap::new();
        headers.insert("uberctx-user", HeaderValue::from_static("alice%20smith"));
        headers.insert("UberCtx-Region", HeaderValue::from_static("eu"));
        headers.insert("uberctx-", HeaderValue::from_static("no key"));
        headers.insert("uberctx-bad", HeaderValue::from_bytes(b"%ff").unwrap());
        let baggage = JaegerPropagator.extract(&headers).baggage;
        assert_eq!(baggage.get("user"), Some("alice smith"));
        assert_eq!(baggage.get("region"), Some("eu"));
        assert_eq!(
            baggage.get("bad"),
            Some("\u{fffd}"),
            "invalid UTF-8 is replaced"
        );
        assert_eq!(baggage.len(), 3);

        let cx = SpanContext::new(
            TraceId::from(1u128),
            SpanId::from(2u64),
            TraceFlags::default(),
            false,
            TraceState::NONE,
        );
        let mut out = HeaderMap::new();
        JaegerPropagator.inject(&cx, &baggage, &mut out);
        assert_eq!(
            out[UBER_TRACE_ID],
            "00000000000000000000000000000001:0000000000000002:0:0"
        );
        assert_eq!(out["uberctx-user"], "alice%20smith");
        let back = JaegerPropagator.extract(&out);
        assert_eq!(back.baggage, baggage);
        assert_eq!(back.span_context.map(|c| c.span_id), Some(cx.span_id));

        let mut none = HeaderMap::new();
        JaegerPropagator.inject(&SpanContext::NONE, &Baggage::new(), &mut none);
        assert!(none.is_empty());
    }
}
