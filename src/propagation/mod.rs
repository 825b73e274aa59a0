//! Carrying trace context across process boundaries: W3C Trace Context and W3C Baggage
//! codecs, the carrier abstraction over `http::HeaderMap`, and the [`Propagator`] trait.
//!
//! # Overview
//!
//! A [`Propagator`] reads a caller's context from a carrier ([`Extractor`]) and writes ours
//! into an outgoing one ([`Injector`]). `http::HeaderMap` is both (gRPC metadata travels as
//! HTTP/2 headers, so the same carrier serves tonic). The propagators:
//!
//! - [`W3cPropagator`], the default: [`TraceContextPropagator`] (`traceparent` and
//!   `tracestate`, W3C Trace Context Level 2) plus [`BaggagePropagator`] (`baggage`, W3C
//!   Baggage), without the boxing of a composite;
//! - [`CompositePropagator`]: any list of propagators; the first valid span context wins
//!   and baggage is merged;
//! - [`OtelPropagator`]: any `opentelemetry` `TextMapPropagator` (B3, Jaeger, X-Ray…);
//! - `JaegerPropagator` (feature `jaeger`): Jaeger's `uber-trace-id` and `uberctx-*`;
//! - [`NoopPropagator`]: reads and writes nothing.
//!
//! [`from_env`] (or [`EnvConfig::propagator`](crate::env::EnvConfig::propagator) with
//! a lookup function) builds the propagator that `OTEL_PROPAGATORS` names: `tracecontext`,
//! `baggage`, `b3` and `b3multi` (feature `b3`, through `opentelemetry-propagator-b3`),
//! `jaeger` (feature `jaeger`) or `none`. A `Box<dyn Propagator>` and an `Arc<dyn Propagator>` are
//! propagators too, so the layers take it as it is.
//!
//! Malformed input never yields an error: an invalid `traceparent` means "no caller
//! context, start a new trace" (`span_context: None`), an invalid `tracestate` is dropped
//! while the `traceparent` is kept, and malformed baggage members are dropped one by one.
//!
//! The W3C codecs are also available as functions: [`parse_traceparent`],
//! [`format_traceparent`], [`parse_tracestate`], [`parse_baggage`], [`format_baggage`], and
//! the Level 2 response header through [`parse_traceresponse`] and
//! [`format_traceresponse`].
//!
//! # Example
//!
//! ```
//! use http::HeaderMap;
//! use tracewire::baggage::Baggage;
//! use tracewire::propagation::{Propagator, W3cPropagator, TRACEPARENT};
//!
//! let propagator = W3cPropagator;
//!
//! // Server side: read the caller's context from the request headers.
//! let mut inbound = HeaderMap::new();
//! inbound.insert(
//!     TRACEPARENT,
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap(),
//! );
//! inbound.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
//! inbound.insert("baggage", "user=alice,region=eu%20west".parse().unwrap());
//! let extracted = propagator.extract(&inbound);
//! let parent = extracted.span_context.expect("a valid traceparent");
//! assert!(parent.is_sampled() && parent.is_remote);
//! assert_eq!(parent.trace_state.get("congo"), Some("t61rcWkgMzE"));
//! assert_eq!(extracted.baggage.get("region"), Some("eu west"));
//!
//! // Client side: write a child's context into the outgoing request headers.
//! let mut child = parent.clone();
//! child.span_id = tracewire::context::SpanId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8]);
//! let baggage: Baggage = extracted.baggage.with("tenant", "acme").unwrap();
//! let mut outbound = HeaderMap::new();
//! propagator.inject(&child, &baggage, &mut outbound);
//! assert_eq!(
//!     outbound["traceparent"],
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
//! );
//! assert_eq!(outbound["tracestate"], "congo=t61rcWkgMzE");
//! assert_eq!(outbound["baggage"], "user=alice,region=eu%20west,tenant=acme");
//! ```

use http::{HeaderName, HeaderValue};

use crate::baggage::Baggage;
use crate::context::SpanContext;

mod carrier;
mod composite;
pub(crate) mod from_env;
mod global;
#[cfg(feature = "jaeger")]
mod jaeger;
mod text_map;
mod trace_context;
pub(crate) mod w3c_baggage;

pub use self::carrier::NoOverwrite;
pub use self::composite::{CompositePropagator, NoopPropagator, W3cPropagator};
pub use self::from_env::from_env;
pub use self::global::{global_default, set_global_default, GlobalDefaultSet};
#[cfg(feature = "jaeger")]
#[cfg_attr(docsrs, doc(cfg(feature = "jaeger")))]
pub use self::jaeger::{JaegerPropagator, UBERCTX_PREFIX, UBER_TRACE_ID};
pub use self::text_map::OtelPropagator;
pub use self::trace_context::{
    format_traceparent, format_traceresponse, parse_traceparent, parse_traceresponse,
    parse_tracestate, traceparent_header_value, traceresponse_header_value, TraceContextPropagator,
    TraceparentError,
};
pub use self::w3c_baggage::{format_baggage, parse_baggage, BaggagePropagator};

/// The W3C Trace Context request header `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The W3C Trace Context request header `tracestate`.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The W3C Baggage header `baggage`.
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
/// The W3C Trace Context Level 2 response header `traceresponse`.
pub const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");

/// Read access to a carrier's headers (HTTP headers or gRPC metadata).
pub trait Extractor {
    /// Calls `f` with every value of header `name` (lower-case), in order.
    fn get_each(&self, name: &str, f: &mut dyn FnMut(&[u8]));
    /// [`get_each`](Self::get_each) with a ready-made header name, which carriers keyed by
    /// [`HeaderName`] look up without parsing the name again.
    fn get_each_header(&self, name: &HeaderName, f: &mut dyn FnMut(&[u8])) {
        self.get_each(name.as_str(), f)
    }
    /// The carrier as an `http::HeaderMap`, when it is one: propagators may then read the
    /// headers they need in a single pass.
    fn header_map(&self) -> Option<&http::HeaderMap> {
        None
    }
    /// The names of every header.
    fn keys(&self) -> Vec<&str>;
}

/// Write access to a carrier's headers.
pub trait Injector {
    /// Header `name` is present.
    fn contains(&self, name: &str) -> bool;
    /// Header `name` is present. The default asks [`contains`](Self::contains); a carrier
    /// keyed by `HeaderName` finds it without parsing the name again.
    fn contains_header(&self, name: &HeaderName) -> bool {
        self.contains(name.as_str())
    }
    /// Sets header `name`, replacing any value.
    fn set(&mut self, name: HeaderName, value: HeaderValue);
    /// Removes header `name` (lower-case), if the carrier allows it; the default does
    /// nothing.
    ///
    /// Propagators use it to drop a stale header that must not travel with the one they
    /// just wrote (a `tracestate` left from another trace next to a new `traceparent`).
    fn remove(&mut self, name: &str) {
        let _ = name;
    }
}

/// What a propagator read from a carrier.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Extracted {
    /// The caller's span, when a valid one was sent.
    pub span_context: Option<SpanContext>,
    /// The caller's baggage.
    pub baggage: Baggage,
}

/// Reads and writes trace context in a carrier.
pub trait Propagator: Send + Sync + 'static {
    /// Reads the context; malformed input yields no span context, never an error.
    fn extract(&self, carrier: &dyn Extractor) -> Extracted;
    /// Writes `cx` and `baggage`.
    fn inject(&self, cx: &SpanContext, baggage: &Baggage, carrier: &mut dyn Injector);
}

impl<P: Propagator + ?Sized> Propagator for Box<P> {
    fn extract(&self, carrier: &dyn Extractor) -> Extracted {
        (**self).extract(carrier)
    }

    fn inject(&self, cx: &SpanContext, baggage: &Baggage, carrier: &mut dyn Injector) {
        (**self).inject(cx, baggage, carrier)
    }
}

impl<P: Propagator + ?Sized> Propagator for std::sync::Arc<P> {
    fn extract(&self, carrier: &dyn Extractor) -> Extracted {
        (**self).extract(carrier)
    }

    fn inject(&self, cx: &SpanContext, baggage: &Baggage, carrier: &mut dyn Injector) {
        (**self).inject(cx, baggage, carrier)
    }
}

/// Strips optional whitespace (spaces and horizontal tabs) from both ends.
pub(crate) fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::trim_ows;

    #[test]
    fn trim_ows_strips_spaces_and_tabs_only() {
        assert_eq!(trim_ows(b" \t a b \t "), b"a b");
        assert_eq!(trim_ows(b"\t\t"), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b"\r\nx\n"), b"\r\nx\n");
    }
}
