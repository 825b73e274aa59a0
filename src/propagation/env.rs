//! The propagator named by `OTEL_PROPAGATORS`.

use super::{
    BaggagePropagator, CompositePropagator, NoopPropagator, Propagator, TraceContextPropagator,
    W3cPropagator,
};
use crate::record::env::{EnvConfig, EnvWarning, PropagatorName};

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

/// Why a propagator name cannot be used in this build, if it cannot.
pub(crate) fn unavailable(name: &PropagatorName) -> Option<EnvWarning> {
    let feature = match name {
        PropagatorName::TraceContext | PropagatorName::Baggage | PropagatorName::None => {
            return None
        }
        PropagatorName::B3 | PropagatorName::B3Multi if cfg!(feature = "b3") => return None,
        PropagatorName::Jaeger if cfg!(feature = "jaeger") => return None,
        PropagatorName::B3 | PropagatorName::B3Multi => Some("b3"),
        PropagatorName::Jaeger => Some("jaeger"),
        PropagatorName::XRay | PropagatorName::OtTrace => None,
        PropagatorName::Other(name) => {
            return Some(EnvWarning::UnknownPropagator { name: name.clone() })
        }
    };
    Some(EnvWarning::UnavailablePropagator {
        name: name.as_str().to_owned(),
        feature,
    })
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
    use opentelemetry_propagator_b3::{B3Encoding, Propagator as OtelB3};

    use crate::baggage::Baggage;
    use crate::context::{SpanContext, TraceFlags};
    use crate::propagation::{Extracted, Extractor, Injector, OtelPropagator, Propagator};

    /// `opentelemetry-propagator-b3` with two fixes:
    ///
    /// - single header: with `B3Encoding::SingleHeader`, 0.33 also writes the multiple
    ///   headers (its encoding test takes every encoding to support `UnSpecified`), so only
    ///   `b3` is let through;
    /// - debug (`b3: …-d`, `X-B3-Flags: 1`) means sampled, as the B3 specification says;
    ///   the crate reports it with a flag of its own, which the adapter does not keep.
    pub(super) struct B3 {
        inner: OtelPropagator<OtelB3>,
        single: bool,
    }

    impl B3 {
        pub(super) fn single() -> Self {
            B3 {
                inner: OtelPropagator::new(OtelB3::with_encoding(B3Encoding::SingleHeader)),
                single: true,
            }
        }

        pub(super) fn multi() -> Self {
            B3 {
                inner: OtelPropagator::new(OtelB3::with_encoding(B3Encoding::MultipleHeader)),
                single: false,
            }
        }
    }

    /// The caller asked for debug tracing.
    fn debug(carrier: &dyn Extractor) -> bool {
        let mut debug = false;
        carrier.get_each("b3", &mut |value| {
            debug |= value.split(|&b| b == b'-').nth(2) == Some(b"d");
        });
        carrier.get_each("x-b3-flags", &mut |value| debug |= value == b"1");
        debug
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
            let mut extracted = self.inner.extract(carrier);
            if let Some(cx) = &mut extracted.span_context {
                if !cx.is_sampled() && debug(carrier) {
                    cx.trace_flags = TraceFlags::SAMPLED;
                }
            }
            extracted
        }

        fn inject(&self, cx: &SpanContext, baggage: &Baggage, carrier: &mut dyn Injector) {
            if self.single {
                self.inner.inject(cx, baggage, &mut OnlyB3(carrier));
            } else {
                self.inner.inject(cx, baggage, carrier);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use http::HeaderMap;

        use super::*;

        #[test]
        fn debug_means_sampled() {
            for (name, value) in [
                ("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-d"),
                ("x-b3-flags", "1"),
            ] {
                let mut headers = HeaderMap::new();
                headers.insert(
                    "x-b3-traceid",
                    "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
                );
                headers.insert("x-b3-spanid", "00f067aa0ba902b7".parse().unwrap());
                headers.insert(name, value.parse().unwrap());
                let cx = B3::single().extract(&headers).span_context.unwrap();
                assert!(cx.is_sampled(), "{name}: {value}");
                assert_eq!(cx.trace_flags, TraceFlags::SAMPLED);
            }
        }
    }
}
