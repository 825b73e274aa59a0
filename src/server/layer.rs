use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tower::Layer;

use crate::config::{common_builder_methods, Common, Predicate, RequestHead};
use crate::metrics::{Metering, Unmetered};
use crate::rpc::GrpcMethods;
use crate::server::ServerTrace;

/// Settings of a [`ServerLayer`].
#[derive(Clone, Default)]
pub(crate) struct ServerConfig {
    pub(crate) common: Common,
    pub(crate) traceresponse: bool,
    pub(crate) untrusted: Option<Predicate>,
    pub(crate) grpc_only: bool,
    pub(crate) message_events: bool,
    pub(crate) grpc_methods: Arc<GrpcMethods>,
    /// `metrics` records `http.server.active_requests` too.
    #[cfg(feature = "metrics")]
    pub(crate) active_requests: bool,
}

/// Traces incoming requests: extracts the caller's trace context and wraps each request in
/// a `SpanKind::Server` span that lasts until the response body ends.
///
/// Serves HTTP and gRPC on one stack: a request whose `content-type` is
/// `application/grpc*` gets an RPC span. See the [module docs](crate::server).
///
/// `M` says whether it records request metrics: [`Unmetered`] until
/// `metrics` (feature `metrics`) makes it `Metered`.
pub struct ServerLayer<M: Metering = Unmetered> {
    config: Arc<ServerConfig>,
    metering: PhantomData<fn() -> M>,
}

impl<M: Metering> Clone for ServerLayer<M> {
    fn clone(&self) -> Self {
        ServerLayer {
            config: self.config.clone(),
            metering: PhantomData,
        }
    }
}

impl Default for ServerLayer {
    fn default() -> Self {
        ServerLayer {
            config: Arc::default(),
            metering: PhantomData,
        }
    }
}

impl ServerLayer {
    /// A layer with the defaults: the process default propagator (W3C Trace Context and
    /// Baggage unless `OTEL_PROPAGATORS`, through [`otlp::init`](crate::otlp), or
    /// [`propagation::set_global_default`](crate::propagation::set_global_default) chose
    /// another before this layer was built), no header capture, every request traced,
    /// inbound context trusted.
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer that treats every request as gRPC, whatever its `content-type`.
    pub fn grpc() -> Self {
        let mut layer = Self::default();
        Arc::make_mut(&mut layer.config).grpc_only = true;
        layer
    }
}

impl<M: Metering> ServerLayer<M> {
    fn common_mut(&mut self) -> &mut Common {
        &mut Arc::make_mut(&mut self.config).common
    }

    common_builder_methods!();

    /// Adds the W3C Trace Context Level 2 `traceresponse` header to responses, so callers
    /// learn the trace id and the server span. Off by default.
    pub fn traceresponse(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).traceresponse = enabled;
        self
    }

    /// Records `url.query` (with redacted parameters replaced). Off by default: queries
    /// often carry personal data.
    pub fn record_query(mut self, enabled: bool) -> Self {
        self.common_mut().record_query = enabled;
        self
    }

    /// Distrusts the inbound context of requests for which `untrusted` returns `true` (a
    /// public edge): they start a new trace, keep the inbound context as a span link, and
    /// drop the inbound baggage.
    pub fn untrusted_if(
        mut self,
        untrusted: impl Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.config).untrusted = Some(Arc::new(untrusted));
        self
    }

    /// Adds an `rpc.message` event (`rpc.message.type = SENT`, `rpc.message.id`, size) to
    /// gRPC server spans for each response message. Off by default. Request messages are
    /// not counted.
    pub fn message_events(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).message_events = enabled;
        self
    }

    /// gRPC methods this server serves, as `package.Service/Method`.
    ///
    /// A gRPC server span and its metrics keep the method's name (`package.Service/Method`)
    /// when the method is named here, or learned: the service answered a call to it (a gRPC
    /// response head or a `grpc-status` other than UNIMPLEMENTED), and the name is shaped
    /// as a method (at most 256 bytes of letters, digits, `_` and `.`) and among the first
    /// 1,024 learned. Any other call (a path an attacker made up, a method the service
    /// refused as UNIMPLEMENTED) gets the span name `grpc`, `rpc.method = _OTHER` and the
    /// caller's text in `rpc.method_original` only, as the semantic conventions ask, so that
    /// callers cannot create span names or metric series. A layer that answers before
    /// routing (authentication, rate limiting) answers made-up paths too, so callers can
    /// use up the 1,024; name your methods here to keep their names whatever callers send,
    /// and for calls cancelled before their method was first answered.
    ///
    /// ```
    /// let layer = tracewire::ServerLayer::grpc()
    ///     .grpc_methods(["grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch"]);
    /// # drop(layer);
    /// ```
    pub fn grpc_methods<I, N>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let config = Arc::make_mut(&mut self.config);
        config.grpc_methods = Arc::new(
            config
                .grpc_methods
                .with(methods.into_iter().map(|m| Box::from(m.as_ref()))),
        );
        self
    }

    /// Records the request metrics of every request (`http.server.request.duration`, and
    /// `rpc.server.call.duration` for gRPC) through `provider`; see
    /// [`metrics`](crate::metrics). Without it nothing is measured.
    ///
    /// With the SDK's `SdkMeterProvider` each attribute set is recorded through a bound
    /// instrument; see [the cost](crate::metrics#cost).
    #[cfg(feature = "metrics")]
    pub fn metrics<P>(mut self, provider: &P) -> ServerLayer<crate::metrics::Metered>
    where
        P: opentelemetry::metrics::MeterProvider + ?Sized + 'static,
    {
        let config = Arc::make_mut(&mut self.config);
        config.common.metrics = Some(Arc::new(crate::metrics::LayerMetrics::server(
            provider,
            config.active_requests,
        )));
        ServerLayer {
            config: self.config,
            metering: PhantomData,
        }
    }

    /// Also records `http.server.active_requests` (opt-in in the semantic conventions). Call
    /// it before [`metrics`](Self::metrics).
    #[cfg(feature = "metrics")]
    pub fn active_requests(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).active_requests = enabled;
        self
    }

    /// Distrusts every inbound context; see [`untrusted_if`](Self::untrusted_if).
    pub fn untrusted(self) -> Self {
        self.untrusted_if(|_| true)
    }
}

impl<S, M: Metering> Layer<S> for ServerLayer<M> {
    type Service = ServerTrace<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace::new(inner, self.config.clone())
    }
}

impl<M: Metering> fmt::Debug for ServerLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerLayer")
            .field("common", &self.config.common)
            .field("traceresponse", &self.config.traceresponse)
            .field("untrusted", &self.config.untrusted.is_some())
            .field("grpc_only", &self.config.grpc_only)
            .field("message_events", &self.config.message_events)
            .finish()
    }
}
