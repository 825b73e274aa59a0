//! tonic `MetadataMap` helpers, for those who carry trace context with interceptors rather
//! than the Tower layers.
//!
//! The [server](crate::server) and [client](crate::client) layers trace gRPC on their own
//! (they need no feature): they open spans that last until the call's status is known,
//! with the RPC attributes and status rules. Interceptors only see the request metadata, so
//! with them the application opens its spans itself; these helpers carry the context:
//!
//! - `MetadataMap` is an [`Extractor`] and an [`Injector`], so any
//!   [`Propagator`] reads and writes it;
//! - [`extract`] and [`inject_current`] do that with the W3C propagator;
//! - [`InjectContext`] is a client interceptor sending the current span's context;
//! - [`ExtractContext`] is a server interceptor that puts the caller's context into the
//!   request extensions, and [`span_start`] turns a request into a [`SpanStart`] for the
//!   handler's span.
//!
//! ```
//! use tonic::service::Interceptor;
//! use tracewire::grpc::{ExtractContext, InjectContext};
//! use tracewire::record::{Recorder, SpanExt};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let (recorder, _guard) = Recorder::builder().build();
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(recorder), || {
//!     // Client side: the interceptor sends the current span's context.
//!     let caller = tracing::info_span!("caller");
//!     let request = caller
//!         .in_scope(|| InjectContext::new().call(tonic::Request::new(())))
//!         .unwrap();
//!     assert!(request.metadata().contains_key("traceparent"));
//!
//!     // Server side: the interceptor reads it, the handler opens its span under it.
//!     let request = ExtractContext::new().call(request).unwrap();
//!     let handler = tracewire::grpc::span_start(&request)
//!         .name("pkg.Service/Method")
//!         .create(|| tracing::info_span!("handler"));
//!     let (caller, handler) = (caller.span_context().unwrap(), handler.span_context().unwrap());
//!     assert_eq!(handler.trace_id, caller.trace_id);
//! });
//! ```

use std::fmt;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;

use crate::baggage::Baggage;
use crate::context::SpanContext;
use crate::propagation::{Extracted, Extractor, Injector, Propagator, W3cPropagator};
use crate::record::SpanStart;
use crate::span::SpanKind;

impl Extractor for MetadataMap {
    fn get_each(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        self.as_ref().get_each(name, f);
    }

    fn keys(&self) -> Vec<&str> {
        Extractor::keys(self.as_ref())
    }
}

impl Injector for MetadataMap {
    fn contains(&self, name: &str) -> bool {
        self.as_ref().contains_key(name)
    }

    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.as_mut().insert(name, value);
    }

    fn remove(&mut self, name: &str) {
        self.as_mut().remove(name);
    }
}

/// Reads the caller's context and baggage from `metadata` with the W3C propagator.
/// Malformed metadata yields no span context, never an error.
pub fn extract(metadata: &MetadataMap) -> Extracted {
    W3cPropagator.extract(metadata)
}

/// Writes the current span's context and baggage into `metadata` with the W3C propagator
/// (or, with no recorded span, the context of the request being served); entries already
/// present are left alone. Returns `false` when there was no context to send.
pub fn inject_current(metadata: &mut MetadataMap) -> bool {
    inject_current_with(&W3cPropagator, metadata)
}

/// Like [`inject_current`], with `propagator`.
pub fn inject_current_with(propagator: &dyn Propagator, metadata: &mut MetadataMap) -> bool {
    match crate::record::current_parent() {
        Some((cx, baggage)) => {
            inject(propagator, &cx, &baggage, metadata);
            true
        }
        None => false,
    }
}

fn inject(propagator: &dyn Propagator, cx: &SpanContext, baggage: &Baggage, md: &mut MetadataMap) {
    crate::client::inject_beside(propagator, cx, baggage, md);
}

/// A [`SpanStart`] for the span handling `request` on a server: kind Server, continuing the
/// caller's trace with its baggage. The context comes from [`ExtractContext`] when that
/// interceptor ran (and, if it was [`untrusted`](ExtractContext::untrusted), the span starts
/// a new trace linked to the caller's, without its baggage), else from the request's
/// metadata (W3C), trusted.
pub fn span_start<T>(request: &tonic::Request<T>) -> SpanStart {
    let start = SpanStart::new().kind(SpanKind::Server);
    if let Some(Distrusted(claimed)) = request.extensions().get::<Distrusted>() {
        return match claimed {
            Some(claimed) => start.untrusted_parent(claimed.clone()),
            None => start.new_root(),
        };
    }
    let extracted = match request.extensions().get::<Extracted>() {
        Some(extracted) => extracted.clone(),
        None => extract(request.metadata()),
    };
    let mut start = start.baggage(extracted.baggage);
    if let Some(parent) = extracted.span_context {
        start = start.remote_parent(parent);
    }
    start
}

/// What [`ExtractContext::untrusted`] keeps of a caller's context: only the claim, for a
/// link.
#[derive(Clone, Debug)]
struct Distrusted(Option<SpanContext>);

/// A client [`Interceptor`] that sends the current span's context and baggage in the
/// request metadata (`traceparent`, `tracestate`, `baggage` with the default propagator),
/// leaving entries the caller set alone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tonic_health::pb::health_client::HealthClient;
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051")
///     .connect()
///     .await?;
/// let client = HealthClient::with_interceptor(channel, tracewire::grpc::InjectContext::new());
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct InjectContext {
    propagator: Arc<dyn Propagator>,
}

impl InjectContext {
    /// With the [process-wide default propagator](crate::propagation::set_global_default)
    /// (W3C unless one was set).
    pub fn new() -> Self {
        InjectContext {
            propagator: crate::propagation::global_default(),
        }
    }

    /// With `propagator`.
    pub fn with_propagator(propagator: impl Propagator) -> Self {
        InjectContext {
            propagator: Arc::new(propagator),
        }
    }
}

impl Default for InjectContext {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InjectContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InjectContext").finish_non_exhaustive()
    }
}

impl Interceptor for InjectContext {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_current_with(&*self.propagator, request.metadata_mut());
        Ok(request)
    }
}

/// A server [`Interceptor`] that reads the caller's context and baggage from the request
/// metadata and stores them, as [`Extracted`], in the request extensions, where
/// [`span_start`] finds them. It never rejects a request.
#[derive(Clone)]
pub struct ExtractContext {
    propagator: Arc<dyn Propagator>,
    untrusted: bool,
}

impl ExtractContext {
    /// With the [process-wide default propagator](crate::propagation::set_global_default)
    /// (W3C unless one was set).
    pub fn new() -> Self {
        ExtractContext {
            propagator: crate::propagation::global_default(),
            untrusted: false,
        }
    }

    /// With `propagator`.
    pub fn with_propagator(propagator: impl Propagator) -> Self {
        ExtractContext {
            propagator: Arc::new(propagator),
            untrusted: false,
        }
    }

    /// Distrusts every caller (a public edge), as
    /// [`ServerLayer::untrusted`](crate::ServerLayer::untrusted) does: the request carries
    /// an empty [`Extracted`] (no context, no baggage), and [`span_start`] starts a new trace
    /// linked to the context the caller claimed.
    ///
    /// ```
    /// use tonic::service::Interceptor;
    /// use tracewire::propagation::Extracted;
    ///
    /// let mut request = tonic::Request::new(());
    /// request.metadata_mut().insert(
    ///     "traceparent",
    ///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap(),
    /// );
    /// request.metadata_mut().insert("baggage", "role=admin".parse().unwrap());
    /// let request = tracewire::grpc::ExtractContext::new().untrusted().call(request).unwrap();
    /// assert_eq!(request.extensions().get::<Extracted>(), Some(&Extracted::default()));
    /// ```
    pub fn untrusted(mut self) -> Self {
        self.untrusted = true;
        self
    }
}

impl Default for ExtractContext {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ExtractContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtractContext")
            .field("untrusted", &self.untrusted)
            .finish_non_exhaustive()
    }
}

impl Interceptor for ExtractContext {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let extracted = self.propagator.extract(request.metadata());
        if self.untrusted {
            request
                .extensions_mut()
                .insert(Distrusted(extracted.span_context));
            request.extensions_mut().insert(Extracted::default());
        } else {
            request.extensions_mut().insert(extracted);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{SpanId, TraceFlags, TraceId, TraceState};

    fn context() -> SpanContext {
        SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
            SpanId::from(0x00f0_67aa_0ba9_02b7),
            TraceFlags::SAMPLED,
            true,
            TraceState::from_members([("congo", "t61rcWkgMzE")]).unwrap(),
        )
    }

    #[test]
    fn metadata_round_trips_context_and_baggage() {
        let baggage = Baggage::new().with("user", "ana").unwrap();
        let mut metadata = MetadataMap::new();
        inject(&W3cPropagator, &context(), &baggage, &mut metadata);
        assert_eq!(
            metadata.get("traceparent").unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(metadata.get("tracestate").unwrap(), "congo=t61rcWkgMzE");
        assert_eq!(metadata.get("baggage").unwrap(), "user=ana");
        let extracted = extract(&metadata);
        assert_eq!(extracted.span_context.unwrap().trace_id, context().trace_id);
        assert_eq!(extracted.baggage.get("user"), Some("ana"));
    }

    #[test]
    fn injection_leaves_entries_the_caller_set() {
        let mut metadata = MetadataMap::new();
        metadata.insert("traceparent", "caller".parse().unwrap());
        let baggage = Baggage::new().with("user", "ana").unwrap();
        inject(&W3cPropagator, &context(), &baggage, &mut metadata);
        assert_eq!(metadata.get("traceparent").unwrap(), "caller");
        // Our `tracestate` belongs to another trace than the caller's `traceparent`.
        assert!(metadata.get("tracestate").is_none());
        assert_eq!(metadata.get("baggage").unwrap(), "user=ana");
        // The caller's own pair stays as it is.
        metadata.insert("tracestate", "mine=1".parse().unwrap());
        inject(&W3cPropagator, &context(), &baggage, &mut metadata);
        assert_eq!(metadata.get("tracestate").unwrap(), "mine=1");
    }

    #[test]
    fn malformed_metadata_is_no_context() {
        let mut metadata = MetadataMap::new();
        metadata.insert("traceparent", "00-zz-zz-01".parse().unwrap());
        metadata.insert("baggage", "=,;;".parse().unwrap());
        let extracted = extract(&metadata);
        assert!(extracted.span_context.is_none());
        assert!(extracted.baggage.is_empty());
        let mut keys = Extractor::keys(&metadata);
        keys.sort_unstable();
        assert_eq!(keys, ["baggage", "traceparent"]);
    }

    #[test]
    fn nothing_to_inject_without_a_span() {
        let mut metadata = MetadataMap::new();
        assert!(!inject_current(&mut metadata));
        assert!(metadata.is_empty());
        let request = InjectContext::new().call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().is_empty());
    }
}
