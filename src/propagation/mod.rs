//! Carrying trace context across process boundaries: W3C Trace Context and W3C Baggage
//! codecs, the carrier abstraction over `http::HeaderMap`, and the [`Propagator`] trait.

use http::{HeaderName, HeaderValue};

use crate::baggage::Baggage;
use crate::context::SpanContext;

/// Read access to a carrier's headers (HTTP headers or gRPC metadata).
pub trait Extractor {
    /// Calls `f` with every value of header `name` (lower-case), in order.
    fn get_each(&self, name: &str, f: &mut dyn FnMut(&[u8]));
    /// The names of every header.
    fn keys(&self) -> Vec<&str>;
}

/// Write access to a carrier's headers.
pub trait Injector {
    /// Header `name` is present.
    fn contains(&self, name: &str) -> bool;
    /// Sets header `name`, replacing any value.
    fn set(&mut self, name: HeaderName, value: HeaderValue);
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
