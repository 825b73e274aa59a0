//! The propagator named by `OTEL_PROPAGATORS`.

use super::{
    BaggagePropagator, CompositePropagator, NoopPropagator, Propagator, TraceContextPropagator,
    W3cPropagator,
};
use crate::env::{unavailable, EnvConfig, EnvWarning, PropagatorName};

/// The propagator `OTEL_PROPAGATORS` names in this process's environment (W3C Trace Context
/// and Baggage when unset), for the layers'
/// [`propagator`](crate::ServerLayer::propagator) setting. Names that are unknown or not
/// available in this build are left out and logged once through `tracing` at WARN (only a
/// subscriber already installed sees them). See [`EnvConfig::propagator`] for the rules, and
/// to read the variable through a lookup function and handle its warnings yourself.
///
/// ```no_run
/// let layer = tracewire::ServerLayer::new().propagator(tracewire::propagation::from_env());
/// # drop(layer);
/// ```
pub fn from_env() -> Box<dyn Propagator> {
    let config = EnvConfig::from_env();
    for warning in config.warnings.iter().filter(|w| is_propagator_warning(w)) {
        tracing::warn!(target: "tracewire::env", %warning, "ignoring a propagator in OTEL_PROPAGATORS");
    }
    config.propagator()
}

fn is_propagator_warning(warning: &EnvWarning) -> bool {
    matches!(
        warning,
        EnvWarning::UnknownPropagator { .. } | EnvWarning::UnavailablePropagator { .. }
    )
}

impl EnvConfig {
    /// The propagator [`propagators`](Self::propagators) names, for the layers'
    /// [`propagator`](crate::ServerLayer::propagator) setting:
    ///
    /// - unset: W3C Trace Context and Baggage (the default);
    /// - `tracecontext`, `baggage`: W3C Trace Context, W3C Baggage;
    /// - `b3`, `b3multi` (feature `b3`): B3, injected as the single header or the multiple
    ///   headers, through `opentelemetry-propagator-b3`; both extract either form, the single
    ///   header first;
    /// - `jaeger` (feature `jaeger`): [`JaegerPropagator`](crate::propagation::JaegerPropagator);
    /// - `none`: no propagation at all, whatever else is listed;
    /// - several: a [`CompositePropagator`] in the order given (the first valid span context
    ///   wins, baggage is merged).
    ///
    /// Unknown names (and `xray`, `ottrace`, or a name whose feature is off) are left out,
    /// each with a warning in [`warnings`](Self::warnings); if nothing usable is left, the
    /// default applies.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    /// use tracewire::env::{EnvConfig, EnvWarning};
    ///
    /// let env = EnvConfig::from_lookup(|name| {
    ///     (name == "OTEL_PROPAGATORS").then_some("tracecontext,xray")
    /// });
    /// assert_eq!(
    ///     env.warnings,
    ///     vec![EnvWarning::UnavailablePropagator { name: "xray".into(), feature: None }]
    /// );
    /// let propagator = env.propagator();
    /// let cx = SpanContext::new(
    ///     TraceId::from(1u128),
    ///     SpanId::from(2u64),
    ///     TraceFlags::SAMPLED,
    ///     false,
    ///     TraceState::NONE,
    /// );
    /// let mut headers = HeaderMap::new();
    /// propagator.inject(&cx, &Default::default(), &mut headers);
    /// assert!(headers.contains_key("traceparent"));
    /// let layer = tracewire::ServerLayer::new().propagator(propagator);
    /// # drop(layer);
    /// ```
    pub fn propagator(&self) -> Box<dyn Propagator> {
        from_names(self.propagators.as_deref())
    }
}

/// The propagator for a list of names; see [`EnvConfig::propagator`].
pub(crate) fn from_names(names: Option<&[PropagatorName]>) -> Box<dyn Propagator> {
    let Some(names) = names else {
        return Box::new(W3cPropagator);
    };
    let usable: Vec<&PropagatorName> = names.iter().filter(|n| unavailable(n).is_none()).collect();
    if usable.contains(&&PropagatorName::None) {
        return Box::new(NoopPropagator);
    }
    match usable.as_slice() {
        [] => Box::new(W3cPropagator),
        [PropagatorName::TraceContext, PropagatorName::Baggage] => Box::new(W3cPropagator),
        [one] => single(one).unwrap_or_else(|| Box::new(W3cPropagator)),
        many => Box::new(CompositePropagator::new(
            many.iter().filter_map(|n| single(n)).collect(),
        )),
    }
}

/// One usable propagator; `None` for names [`unavailable`] refuses.
fn single(name: &PropagatorName) -> Option<Box<dyn Propagator>> {
    Some(match name {
        PropagatorName::TraceContext => Box::new(TraceContextPropagator),
        PropagatorName::Baggage => Box::new(BaggagePropagator),
        PropagatorName::None => Box::new(NoopPropagator),
        #[cfg(feature = "b3")]
        PropagatorName::B3 => Box::new(b3::B3::single()),
        #[cfg(feature = "b3")]
        PropagatorName::B3Multi => Box::new(b3::B3::multi()),
        #[cfg(feature = "jaeger")]
        PropagatorName::Jaeger => Box::new(super::JaegerPropagator),
        _ => return None,
    })
}

#[cfg(feature = "b3")]
mod b3 {
    use http::{HeaderName, HeaderValue};
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_propagator_b3::{B3Encoding, Propagator as OtelB3};

    use crate::baggage::Baggage;
    use crate::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use crate::propagation::text_map::{
        flags_from_otel, flags_to_otel, OtelExtractor, OtelInjector,
    };
    use crate::propagation::{Extracted, Extractor, Injector, Propagator};

    /// `opentelemetry-propagator-b3`'s codec, with the B3 specification's rules:
    ///
    /// - `b3` and `b3multi` extract alike and differ only in what they inject: a `b3` header
    ///   the specification can read takes precedence, even one with a sampling state alone
    ///   (`b3: 0`); the multiple headers count only when it is absent or unreadable.
    ///   `b3` may say `d`, `x-b3-sampled` may say `true` or `false` (as Finagle sends);
    /// - ids without a sampling state are deferred
    ///   ([`FLAG_DEFERRED`](crate::context::FLAG_DEFERRED)): the local sampler
    ///   decides, and when it says no, the ids go on still without a sampling state, never
    ///   as a deny the caller did not send;
    /// - a bare deny (`b3: 0`, or `x-b3-sampled: 0` without ids) is honoured: it extracts
    ///   as a remote parent that is not sampled, with ids of its own (made up here: they
    ///   name no span of the caller's), so nothing is recorded and the deny goes on; a bare
    ///   accept (`b3: 1`) has no ids to continue and extracts as nothing;
    /// - debug (`b3: …-d`, `X-B3-Flags: 1`) means sampled; `X-B3-Flags: 0` means nothing;
    /// - an invalid context injects nothing (the crate would write a bare deny);
    /// - single header: with `B3Encoding::SingleHeader`, 0.33 also writes the multiple
    ///   headers (its encoding test takes every encoding to support `UnSpecified`), so only
    ///   `b3` is let through.
    pub(super) struct B3 {
        /// Injects; extraction reads each form with the encoding that accepts its values.
        inner: OtelB3,
        single: bool,
    }

    impl B3 {
        pub(super) fn single() -> Self {
            B3 {
                inner: OtelB3::with_encoding(B3Encoding::SingleHeader),
                single: true,
            }
        }

        pub(super) fn multi() -> Self {
            B3 {
                inner: OtelB3::with_encoding(B3Encoding::MultipleHeader),
                single: false,
            }
        }
    }

    /// A deny sent alone: a remote parent that is not sampled, with ids made up here (they
    /// name no span of the caller's), so nothing is recorded and the deny goes on.
    fn bare_deny() -> SpanContext {
        SpanContext::new(
            TraceId::from(fastrand::u128(1..)),
            SpanId::from(fastrand::u64(1..)),
            TraceFlags::NOT_SAMPLED,
            true,
            TraceState::NONE,
        )
    }

    /// One of B3's two forms (the `b3` header, or the others) as the crate reads it: values
    /// without optional whitespace (as HTTP strips it), and `x-b3-flags` only when it says
    /// debug. The crate lets any valid `x-b3-flags` override `x-b3-sampled`, but the
    /// specification gives only `1` a meaning.
    struct Form<'a> {
        carrier: &'a dyn Extractor,
        single: bool,
    }

    impl Form<'_> {
        fn has(&self, name: &str) -> bool {
            name.eq_ignore_ascii_case("b3") == self.single
        }

        /// The value the crate reads of `name` (the first in UTF-8) is one of `values`.
        fn first_is(&self, name: &str, values: &[&[u8]]) -> bool {
            let mut first = None;
            self.get_each(name, &mut |value| {
                if first.is_none() && std::str::from_utf8(value).is_ok() {
                    first = Some(values.contains(&value));
                }
            });
            first == Some(true)
        }

        /// The span context the crate reads from this form, with our flags.
        fn read(&self) -> Option<SpanContext> {
            // The crate accepts `d` only in `b3`, and `true` only in `x-b3-sampled`, by the
            // encoding it injects.
            let encoding = if self.single {
                B3Encoding::SingleHeader
            } else {
                B3Encoding::MultipleHeader
            };
            let cx = OtelB3::with_encoding(encoding)
                .extract_with_context(&opentelemetry::Context::new(), &OtelExtractor::new(self));
            let otel = cx.span().span_context().clone();
            otel.is_valid().then(|| {
                SpanContext::new(
                    otel.trace_id(),
                    otel.span_id(),
                    flags_from_otel(otel.trace_flags()),
                    true,
                    TraceState::NONE,
                )
            })
        }
    }

    impl Extractor for Form<'_> {
        fn get_each(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
            if !self.has(name) {
                return;
            }
            let debug_only = name.eq_ignore_ascii_case("x-b3-flags");
            self.carrier.get_each(name, &mut |value| {
                let value = crate::propagation::trim_ows(value);
                if !debug_only || value == b"1" {
                    f(value);
                }
            });
        }

        fn keys(&self) -> Vec<&str> {
            let mut keys = self.carrier.keys();
            keys.retain(|name| self.has(name));
            keys
        }
    }

    struct OnlyB3<'a>(&'a mut dyn Injector);

    impl Injector for OnlyB3<'_> {
        fn contains(&self, name: &str) -> bool {
            self.0.contains(name)
        }

        fn set(&mut self, name: HeaderName, value: HeaderValue) {
            if name == "b3" {
                self.0.set(name, value);
            }
        }

        fn remove(&mut self, name: &str) {
            if name == "b3" {
                self.0.remove(name);
            }
        }
    }

    impl Propagator for B3 {
        fn extract(&self, carrier: &dyn Extractor) -> Extracted {
            let single = Form {
                carrier,
                single: true,
            };
            let multi = Form {
                carrier,
                single: false,
            };
            // A `b3` the specification can read wins, even one with a sampling state alone.
            let span_context = if let Some(cx) = single.read() {
                Some(cx)
            } else if single.first_is("b3", &[b"0"]) {
                Some(bare_deny())
            } else if single.first_is("b3", &[b"1", b"d"]) {
                // An accept without ids: a new root, as the local sampler says.
                None
            } else if let Some(cx) = multi.read() {
                Some(cx)
            } else {
                multi
                    .first_is("x-b3-sampled", &[b"0", b"false"])
                    .then(bare_deny)
            };
            Extracted {
                span_context,
                baggage: Baggage::new(),
            }
        }

        fn inject(&self, cx: &SpanContext, _baggage: &Baggage, carrier: &mut dyn Injector) {
            if !cx.is_valid() {
                return;
            }
            // A decision we made is sent; a deferred one we did not take stays deferred.
            let flags = flags_to_otel(cx.trace_flags);
            let otel_cx = opentelemetry::Context::new().with_remote_span_context(
                opentelemetry::trace::SpanContext::new(
                    cx.trace_id,
                    cx.span_id,
                    flags,
                    true,
                    opentelemetry::trace::TraceState::NONE,
                ),
            );
            if self.single {
                self.inner
                    .inject_context(&otel_cx, &mut OtelInjector(&mut OnlyB3(carrier)));
            } else {
                self.inner
                    .inject_context(&otel_cx, &mut OtelInjector(carrier));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use http::HeaderMap;

        use super::*;

        fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        }

        const IDS: [(&str, &str); 2] = [
            ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
        ];

        #[test]
        fn debug_means_sampled() {
            for (name, value) in [
                ("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-d"),
                ("x-b3-flags", "1"),
            ] {
                let mut map = headers(&IDS);
                map.insert(name, HeaderValue::from_static(value));
                let cx = B3::single().extract(&map).span_context.unwrap();
                assert!(cx.is_sampled(), "{name}: {value}");
                assert_eq!(cx.trace_flags, TraceFlags::SAMPLED);
            }
        }

        #[test]
        fn ids_without_a_sampling_state_are_deferred_and_stay_so_unless_we_sample() {
            for (b3, map) in [
                (
                    B3::single(),
                    headers(&[("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7")]),
                ),
                (B3::multi(), headers(&IDS)),
            ] {
                let cx = b3.extract(&map).span_context.unwrap();
                assert!(cx.is_deferred() && !cx.is_sampled() && cx.is_remote);
                let mut out = HeaderMap::new();
                b3.inject(&cx, &Baggage::new(), &mut out);
                assert!(!out.contains_key("x-b3-sampled"), "{out:?}");
                if let Some(single) = out.get("b3") {
                    assert_eq!(single, "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7");
                }
                let mut sampled = cx.clone();
                sampled.trace_flags = sampled.trace_flags.with_sampled(true);
                let mut out = HeaderMap::new();
                b3.inject(&sampled, &Baggage::new(), &mut out);
                let decision = out.get("x-b3-sampled").or(out.get("b3")).unwrap();
                assert!(decision.as_bytes().ends_with(b"1"), "{out:?}");
            }
        }

        #[test]
        fn flags_0_is_no_sampling_state() {
            let mut map = headers(&IDS);
            map.insert("x-b3-flags", HeaderValue::from_static("0"));
            let cx = B3::multi().extract(&map).span_context.unwrap();
            assert!(cx.is_deferred() && !cx.is_sampled());
            map.insert("x-b3-sampled", HeaderValue::from_static("0"));
            let cx = B3::multi().extract(&map).span_context.unwrap();
            assert!(!cx.is_deferred() && !cx.is_sampled());
        }

        #[test]
        fn flags_0_leaves_an_accept_standing() {
            for b3 in [B3::single(), B3::multi()] {
                let mut map = headers(&IDS);
                map.insert("x-b3-flags", HeaderValue::from_static("0"));
                map.insert("x-b3-sampled", HeaderValue::from_static("1"));
                let cx = b3.extract(&map).span_context.unwrap();
                assert_eq!(cx.trace_flags, TraceFlags::SAMPLED, "{map:?}");
            }
        }

        #[test]
        fn optional_whitespace_is_no_part_of_a_value() {
            let mut map = headers(&IDS);
            map.insert("x-b3-sampled", HeaderValue::from_static(" 1 "));
            let cx = B3::multi().extract(&map).span_context.unwrap();
            assert_eq!(cx.trace_flags, TraceFlags::SAMPLED);
            let map = headers(&[("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1 ")]);
            let cx = B3::single().extract(&map).span_context.unwrap();
            assert_eq!(cx.trace_flags, TraceFlags::SAMPLED);
        }

        #[test]
        fn a_bare_deny_is_a_parent_that_is_not_sampled() {
            for (b3, map) in [
                (B3::single(), headers(&[("b3", "0")])),
                (B3::multi(), headers(&[("x-b3-sampled", "0")])),
                (B3::single(), headers(&[("x-b3-sampled", "false")])),
                // Found by the fuzz targets: optional whitespace is no part of the value.
                (B3::single(), headers(&[("b3", "0 ")])),
                (
                    B3::multi(),
                    headers(&[("x-b3-spanid", "9"), ("x-b3-sampled", " 0")]),
                ),
            ] {
                let cx = b3.extract(&map).span_context.unwrap();
                assert!(
                    cx.is_valid() && !cx.is_sampled() && !cx.is_deferred(),
                    "{map:?}"
                );
                let mut out = HeaderMap::new();
                b3.inject(&cx, &Baggage::new(), &mut out);
                let decision = out.get("x-b3-sampled").or(out.get("b3")).unwrap();
                assert!(decision.as_bytes().ends_with(b"0"), "{out:?}");
            }
            // A bare accept has no ids to continue: a new root, as the local sampler says.
            assert_eq!(
                B3::single().extract(&headers(&[("b3", "1")])).span_context,
                None
            );
        }

        const SINGLE: &str = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
        /// Multiple headers naming another trace than [`SINGLE`].
        const OTHER: [(&str, &str); 2] = [
            ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"),
            ("x-b3-spanid", "b7ad6b7169203331"),
        ];

        fn with_other(b3: &'static str, sampled: &'static str) -> HeaderMap {
            let mut map = headers(&OTHER);
            map.insert("b3", HeaderValue::from_static(b3));
            map.insert("x-b3-sampled", HeaderValue::from_static(sampled));
            map
        }

        #[test]
        fn the_single_header_takes_precedence_in_both_modes() {
            let debug = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-d";
            for b3 in [B3::single(), B3::multi()] {
                for map in [headers(&[("b3", debug)]), with_other(debug, "0")] {
                    let cx = b3.extract(&map).span_context.unwrap();
                    assert_eq!(cx.trace_flags, TraceFlags::SAMPLED, "{map:?}");
                    assert_eq!(format!("{}-{}", cx.trace_id, cx.span_id), SINGLE);
                }

                let cx = b3.extract(&with_other("0", "1")).span_context.unwrap();
                assert!(!cx.is_sampled() && !cx.is_deferred(), "b3: 0 is a deny");
                assert_ne!(cx.trace_id, TraceId::from_hex(OTHER[0].1).unwrap());

                // A `b3` the specification cannot read leaves the others to speak.
                let cx = b3.extract(&with_other("nonsense", "1")).span_context;
                let cx = cx.unwrap();
                assert!(cx.is_sampled());
                assert_eq!(cx.trace_id, TraceId::from_hex(OTHER[0].1).unwrap());
            }
        }

        #[test]
        fn sampled_true_and_false_are_read_in_both_modes() {
            for b3 in [B3::single(), B3::multi()] {
                for (value, sampled) in [("true", true), ("false", false)] {
                    let mut map = headers(&IDS);
                    map.insert("x-b3-sampled", HeaderValue::from_static(value));
                    let cx = b3.extract(&map).span_context.unwrap();
                    assert_eq!(cx.trace_id, TraceId::from_hex(IDS[0].1).unwrap());
                    assert_eq!(cx.is_sampled(), sampled, "{value}");
                    assert!(!cx.is_deferred(), "{value}");
                }
            }
        }

        #[test]
        fn an_invalid_context_injects_nothing() {
            for b3 in [B3::single(), B3::multi()] {
                let mut out = HeaderMap::new();
                b3.inject(&SpanContext::NONE, &Baggage::new(), &mut out);
                assert!(out.is_empty(), "{out:?}");
            }
        }
    }
}
