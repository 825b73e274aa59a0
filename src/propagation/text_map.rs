//! Any `opentelemetry` `TextMapPropagator` (B3, Jaeger, X-Ray, a composite…) as a
//! [`Propagator`].

use std::cell::OnceCell;

use http::{HeaderName, HeaderValue};
use opentelemetry::baggage::{BaggageExt, KeyValueMetadata};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TraceFlags};

use super::{Extracted, Extractor, Injector, Propagator};
use crate::baggage::{Baggage, BaggageBuilder, BaggageMember};
use crate::context::{SpanContext, FLAG_DEFERRED, FLAG_SAMPLED};

/// Adapts an `opentelemetry` [`TextMapPropagator`].
///
/// Extract runs the propagator on an empty `opentelemetry` context over our carrier: header
/// values that are not UTF-8 are invisible to it (it can only read `&str`), and the carrier
/// must list its header names ([`Extractor::keys`]). The context's span context (when valid)
/// becomes ours, marked remote; its baggage becomes ours, without members our rules refuse.
///
/// Inject builds an `opentelemetry` context holding our span context as a remote parent and
/// our baggage, and lets the propagator write it; header names or values that `http`
/// refuses are skipped.
///
/// `opentelemetry` propagators give trace flags other than `sampled` meanings of their own
/// (B3's and X-Ray's 0x02 is "no sampling decision", B3's and Jaeger's 0x04 is "debug"), so
/// the flags cross the adapter as sampling decisions: extracted, `sampled` or 0x04 is an
/// accept, any other bit leaves the decision to the local sampler (as [`FLAG_DEFERRED`])
/// and no bit is a deny; injected, an accept is `sampled`, a decision left to us and not
/// taken is 0x02 (B3 then sends none; the W3C propagator of `opentelemetry_sdk` keeps only
/// `sampled`) and a deny is no bit.
/// Our Level 2 `random` flag is not passed on, as B3 would read it as "no decision".
///
/// `opentelemetry`'s types are stricter than ours: its trace state drops members its older
/// key grammar refuses, and its baggage keeps at most 64 members.
#[derive(Clone, Debug, Default)]
pub struct OtelPropagator<P> {
    inner: P,
}

impl<P> OtelPropagator<P> {
    /// Wraps `inner`.
    pub fn new(inner: P) -> Self {
        OtelPropagator { inner }
    }

    /// The wrapped propagator.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P> Propagator for OtelPropagator<P>
where
    P: TextMapPropagator + Send + Sync + 'static,
{
    fn extract(&self, carrier: &dyn Extractor) -> Extracted {
        let adapter = OtelExtractor::new(carrier);
        let cx = self
            .inner
            .extract_with_context(&opentelemetry::Context::new(), &adapter);
        let span_context = cx.span().span_context().is_valid().then(|| {
            let mut span_context = SpanContext::from(cx.span().span_context());
            span_context.is_remote = true;
            span_context.trace_flags = flags_from_otel(span_context.trace_flags);
            span_context
        });
        let mut baggage = BaggageBuilder::default();
        for (key, (value, metadata)) in cx.baggage() {
            let member =
                BaggageMember::new(key.as_str(), value.as_str()).with_properties(metadata.as_str());
            baggage.push_checked(member);
        }
        Extracted {
            span_context,
            baggage: baggage.finish(),
        }
    }

    fn inject(&self, cx: &SpanContext, baggage: &Baggage, carrier: &mut dyn Injector) {
        let mut otel_cx = opentelemetry::Context::new();
        if cx.is_valid() {
            otel_cx = otel_cx.with_remote_span_context(opentelemetry::trace::SpanContext::new(
                cx.trace_id,
                cx.span_id,
                flags_to_otel(cx.trace_flags),
                cx.is_remote,
                cx.trace_state.to_otel(),
            ));
        }
        if !baggage.is_empty() {
            let members = baggage.iter().map(|m| {
                KeyValueMetadata::new(m.key.clone(), m.value.clone(), m.properties.as_str())
            });
            otel_cx = otel_cx.with_baggage(opentelemetry::baggage::Baggage::from_iter(members));
        }
        self.inner
            .inject_context(&otel_cx, &mut OtelInjector(carrier));
    }
}

/// "No sampling decision" among `opentelemetry` propagators' own flags (B3, X-Ray).
const OTEL_DEFERRED: u8 = 0x02;
/// "Debug" among `opentelemetry` propagators' own flags (B3, Jaeger): an accept, which B3's
/// sets without the sampled bit.
const OTEL_DEBUG: u8 = 0x04;

/// Our flags for those an `opentelemetry` propagator extracted. A bit we cannot read is no
/// deny: the caller may have said anything but "not sampled", so the local sampler decides.
pub(super) fn flags_from_otel(flags: TraceFlags) -> TraceFlags {
    let flags = flags.to_u8();
    if flags & (FLAG_SAMPLED.to_u8() | OTEL_DEBUG) != 0 {
        FLAG_SAMPLED
    } else if flags != 0 {
        FLAG_DEFERRED
    } else {
        TraceFlags::NOT_SAMPLED
    }
}

/// The flags an `opentelemetry` propagator is given for ours.
pub(super) fn flags_to_otel(flags: TraceFlags) -> TraceFlags {
    if flags.is_sampled() {
        FLAG_SAMPLED
    } else if flags.to_u8() & FLAG_DEFERRED.to_u8() != 0 {
        TraceFlags::new(OTEL_DEFERRED)
    } else {
        TraceFlags::NOT_SAMPLED
    }
}

/// `opentelemetry`'s extractor over ours. Values are copied to strings on first read, one
/// header at a time, since ours only lends them to a callback.
pub(super) struct OtelExtractor<'a> {
    carrier: &'a dyn Extractor,
    headers: Vec<(&'a str, OnceCell<Vec<String>>)>,
}

impl<'a> OtelExtractor<'a> {
    pub(super) fn new(carrier: &'a dyn Extractor) -> Self {
        let headers = carrier
            .keys()
            .into_iter()
            .map(|name| (name, OnceCell::new()))
            .collect();
        OtelExtractor { carrier, headers }
    }

    /// The UTF-8 values of header `key`, any case.
    fn values(&self, key: &str) -> Option<&[String]> {
        let (name, values) = self
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))?;
        let values = values.get_or_init(|| {
            let mut values = Vec::new();
            self.carrier.get_each(name, &mut |value| {
                if let Ok(value) = std::str::from_utf8(value) {
                    values.push(value.to_owned());
                }
            });
            values
        });
        (!values.is_empty()).then_some(values.as_slice())
    }
}

impl opentelemetry::propagation::Extractor for OtelExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.values(key)?.first().map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.iter().map(|(name, _)| *name).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        Some(self.values(key)?.iter().map(String::as_str).collect())
    }
}

/// `opentelemetry`'s injector over ours.
pub(super) struct OtelInjector<'a>(pub(super) &'a mut dyn Injector);

impl opentelemetry::propagation::Injector for OtelInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::try_from(value),
        ) {
            self.0.set(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use http::HeaderMap;
    use opentelemetry::propagation::text_map_propagator::FieldIter;
    use opentelemetry::propagation::TextMapCompositePropagator;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

    use super::*;
    use crate::context::{TraceState, FLAG_RANDOM};

    /// A B3-like single-header propagator, written for these tests: `x-test-trace:
    /// {trace-id}-{span-id}-{trace flags in hex}`.
    #[derive(Debug)]
    struct SingleHeader;

    fn fields() -> &'static [String] {
        static FIELDS: OnceLock<Vec<String>> = OnceLock::new();
        FIELDS.get_or_init(|| vec!["x-test-trace".to_owned()])
    }

    impl TextMapPropagator for SingleHeader {
        fn inject_context(
            &self,
            cx: &opentelemetry::Context,
            injector: &mut dyn opentelemetry::propagation::Injector,
        ) {
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                injector.set(
                    "X-Test-Trace",
                    format!(
                        "{}-{}-{:x}",
                        sc.trace_id(),
                        sc.span_id(),
                        sc.trace_flags().to_u8()
                    ),
                );
            }
            injector.set("bad header name", "x".to_owned());
            injector.set("x-bad-value", "line\nbreak".to_owned());
        }

        fn extract_with_context(
            &self,
            cx: &opentelemetry::Context,
            extractor: &dyn opentelemetry::propagation::Extractor,
        ) -> opentelemetry::Context {
            let Some(value) = extractor.get("x-test-trace") else {
                return cx.clone();
            };
            let mut parts = value.split('-');
            let (Some(t), Some(s), Some(f), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return cx.clone();
            };
            let (Ok(t), Ok(s)) = (TraceId::from_hex(t), SpanId::from_hex(s)) else {
                return cx.clone();
            };
            let Ok(flags) = u8::from_str_radix(f, 16) else {
                return cx.clone();
            };
            let flags = TraceFlags::new(flags);
            let sc = opentelemetry::trace::SpanContext::new(t, s, flags, false, Default::default());
            cx.with_remote_span_context(sc)
        }

        fn fields(&self) -> FieldIter<'_> {
            FieldIter::new(fields())
        }
    }

    /// Keeps every header of the carrier in the otel baggage, so the adapter's baggage path
    /// and its `keys`/`get_all` are exercised.
    #[derive(Debug)]
    struct HeadersAsBaggage;

    impl TextMapPropagator for HeadersAsBaggage {
        fn inject_context(
            &self,
            cx: &opentelemetry::Context,
            injector: &mut dyn opentelemetry::propagation::Injector,
        ) {
            for (key, (value, metadata)) in cx.baggage() {
                let mut header = value.as_str().to_owned();
                if !metadata.as_str().is_empty() {
                    header.push(';');
                    header.push_str(metadata.as_str());
                }
                injector.set(&format!("x-bag-{}", key.as_str()), header);
            }
        }

        fn extract_with_context(
            &self,
            cx: &opentelemetry::Context,
            extractor: &dyn opentelemetry::propagation::Extractor,
        ) -> opentelemetry::Context {
            let members: Vec<KeyValueMetadata> = extractor
                .keys()
                .into_iter()
                .filter_map(|k| Some((k.strip_prefix("x-bag-")?, extractor.get_all(k)?)))
                .map(|(k, values)| KeyValueMetadata::new(k.to_owned(), values.join("+"), ""))
                .collect();
            cx.with_baggage(opentelemetry::baggage::Baggage::from_iter(members))
        }

        fn fields(&self) -> FieldIter<'_> {
            FieldIter::new(&[])
        }
    }

    fn cx() -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes([0x4b; 16]),
            SpanId::from_bytes([0x0f; 8]),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        )
    }

    #[test]
    fn a_hand_written_otel_propagator_round_trips_through_the_adapter() {
        let propagator = OtelPropagator::new(SingleHeader);
        let mut headers = HeaderMap::new();
        propagator.inject(&cx(), &Baggage::new(), &mut headers);
        assert_eq!(
            headers["x-test-trace"],
            "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-0f0f0f0f0f0f0f0f-1"
        );
        assert_eq!(
            headers.len(),
            1,
            "invalid names and values are skipped: {headers:?}"
        );

        let extracted = propagator.extract(&headers);
        let mut want = cx();
        want.is_remote = true;
        assert_eq!(extracted.span_context, Some(want));

        propagator.inject(&SpanContext::NONE, &Baggage::new(), &mut HeaderMap::new());
        assert_eq!(propagator.extract(&HeaderMap::new()), Extracted::default());
    }

    #[test]
    fn non_utf8_values_are_skipped_and_baggage_converts() {
        let propagator = OtelPropagator::new(TextMapCompositePropagator::new(vec![
            Box::new(SingleHeader),
            Box::new(HeadersAsBaggage),
        ]));
        let mut headers = HeaderMap::new();
        headers.append("x-bag-user", HeaderValue::from_static("alice"));
        headers.append("x-bag-user", HeaderValue::from_bytes(b"\xff").unwrap());
        headers.append("x-bag-user", HeaderValue::from_static("bob"));
        headers.append("x-test-trace", HeaderValue::from_bytes(b"\xfe").unwrap());
        headers.append(
            "x-test-trace",
            HeaderValue::from_static("4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-0f0f0f0f0f0f0f0f-0"),
        );
        let extracted = propagator.extract(&headers);
        assert_eq!(extracted.baggage.get("user"), Some("alice+bob"));
        let sc = extracted.span_context.unwrap();
        assert!(!sc.is_sampled() && sc.is_remote);

        let baggage = Baggage::new()
            .with_member(BaggageMember::new("tenant", "acme").with_properties("p=1"))
            .unwrap();
        let mut out = HeaderMap::new();
        propagator.inject(&cx(), &baggage, &mut out);
        assert_eq!(out["x-bag-tenant"], "acme;p=1");
        assert!(out.contains_key("x-test-trace"));
    }

    #[test]
    fn flags_cross_as_sampling_decisions_never_inventing_a_deny() {
        let propagator = OtelPropagator::new(SingleHeader);
        let ids = "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-0f0f0f0f0f0f0f0f";
        for (sent, read) in [
            ("1", FLAG_SAMPLED),
            ("4", FLAG_SAMPLED),
            ("5", FLAG_SAMPLED),
            ("2", FLAG_DEFERRED),
            ("8", FLAG_DEFERRED),
            ("0", TraceFlags::NOT_SAMPLED),
        ] {
            let mut headers = HeaderMap::new();
            let value = format!("{ids}-{sent}");
            headers.insert("x-test-trace", HeaderValue::from_str(&value).unwrap());
            let sc = propagator.extract(&headers).span_context.unwrap();
            assert_eq!(sc.trace_flags, read, "{sent}");
        }
        for (ours, sent) in [
            (FLAG_SAMPLED | FLAG_RANDOM, "1"),
            (FLAG_DEFERRED, "2"),
            (FLAG_RANDOM, "0"),
            (TraceFlags::NOT_SAMPLED, "0"),
        ] {
            let mut sc = cx();
            sc.trace_flags = ours;
            let mut headers = HeaderMap::new();
            propagator.inject(&sc, &Baggage::new(), &mut headers);
            assert_eq!(headers["x-test-trace"], format!("{ids}-{sent}"), "{ours:?}");
        }
    }

    #[cfg(feature = "b3")]
    #[test]
    fn b3_debug_is_an_accept_and_no_decision_stays_none() {
        use opentelemetry_propagator_b3::{B3Encoding, Propagator as B3Propagator};

        let propagator = OtelPropagator::new(B3Propagator::with_encoding(B3Encoding::SingleHeader));
        let ids = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        for (sent, read, goes_on) in [
            ("-d", FLAG_SAMPLED, "-1"),
            ("", FLAG_DEFERRED, ""),
            ("-0", TraceFlags::NOT_SAMPLED, "-0"),
            ("-1", FLAG_SAMPLED, "-1"),
        ] {
            let mut headers = HeaderMap::new();
            let value = format!("{ids}{sent}");
            headers.insert("b3", HeaderValue::from_str(&value).unwrap());
            let sc = propagator.extract(&headers).span_context.unwrap();
            assert_eq!(sc.trace_flags, read, "b3: {value}");
            let mut out = HeaderMap::new();
            propagator.inject(&sc, &Baggage::new(), &mut out);
            assert_eq!(out["b3"], format!("{ids}{goes_on}"), "b3: {value}");
        }
    }

    #[cfg(feature = "otel")]
    #[test]
    fn opentelemetry_sdk_propagators_work_through_the_adapter() {
        use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

        let propagator = OtelPropagator::new(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
        let mut sc = cx();
        sc.trace_state = TraceState::from_members([("rojo", "00f067aa0ba902b7")]).unwrap();
        let baggage = Baggage::new().with("user", "alice smith").unwrap();
        let mut headers = HeaderMap::new();
        propagator.inject(&sc, &baggage, &mut headers);
        assert_eq!(
            headers["traceparent"],
            "00-4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b-0f0f0f0f0f0f0f0f-01"
        );
        assert_eq!(headers["tracestate"], "rojo=00f067aa0ba902b7");
        assert_eq!(headers["baggage"], "user=alice%20smith");

        let extracted = propagator.extract(&headers);
        sc.is_remote = true;
        assert_eq!(extracted.span_context, Some(sc.clone()));
        assert_eq!(extracted.baggage, baggage);

        // And the other way: what our W3C codec writes, the SDK's propagators read.
        let mut ours = HeaderMap::new();
        crate::propagation::W3cPropagator.inject(&sc, &baggage, &mut ours);
        assert_eq!(propagator.extract(&ours).span_context, Some(sc));
    }
}
