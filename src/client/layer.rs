use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tower::Layer;

use crate::client::ClientTrace;
use crate::config::{common_builder_methods, Common};
use crate::metrics::{Metering, Unmetered};

/// Settings of a [`ClientLayer`].
#[derive(Clone, Default)]
pub(crate) struct ClientConfig {
    pub(crate) common: Common,
    /// Hosts that receive context and baggage; `None` is every host.
    pub(crate) propagate_to: Option<Vec<HostPattern>>,
    pub(crate) overwrite: bool,
    pub(crate) grpc_only: bool,
    pub(crate) message_events: bool,
}

impl ClientConfig {
    /// Context and baggage may be sent to `host`.
    pub(crate) fn propagates_to(&self, host: Option<&str>) -> bool {
        match (&self.propagate_to, host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(patterns), Some(host)) => patterns.iter().any(|p| p.matches(host)),
        }
    }
}

/// The builder methods of the client layers (Tower and reqwest), beyond the shared ones.
macro_rules! client_builder_methods {
    () => {
        /// Sends trace context and baggage only to these hosts: names (`api.example.com`) or
        /// `*.` patterns (`*.internal.example.com`, any subdomain). Calls to other hosts are
        /// still traced. By default context goes to every host.
        pub fn propagate_to<I, H>(mut self, hosts: I) -> Self
        where
            I: IntoIterator<Item = H>,
            H: AsRef<str>,
        {
            let patterns = hosts
                .into_iter()
                .map(|h| crate::client::HostPattern::parse(h.as_ref()))
                .collect();
            self.client_config_mut().propagate_to = Some(patterns);
            self
        }

        /// Replaces `traceparent`, `tracestate` and `baggage` headers the caller already set.
        /// Off by default: a header set on purpose is left alone.
        pub fn overwrite_headers(mut self, overwrite: bool) -> Self {
            self.client_config_mut().overwrite = overwrite;
            self
        }
    };
}

#[cfg(feature = "reqwest")]
pub(crate) use client_builder_methods;

/// A host name, or `*.` and a domain (any subdomain of it).
#[derive(Clone, Debug)]
pub(crate) enum HostPattern {
    Exact(String),
    Subdomains(String),
}

impl HostPattern {
    pub(crate) fn parse(pattern: &str) -> Self {
        let pattern = pattern.trim().to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(domain) => HostPattern::Subdomains(format!(".{domain}")),
            None => HostPattern::Exact(pattern),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host.eq_ignore_ascii_case(name),
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// Traces outgoing requests: opens a `SpanKind::Client` span as a child of the current span
/// and injects its context into the request headers.
///
/// Wraps a hyper-util `Client`, a tonic `Channel` or any
/// `tower::Service<http::Request<B>>`. See the [module docs](crate::client).
///
/// `M` says whether it records request metrics: [`Unmetered`] until `metrics` (feature
/// `metrics`) makes it `Metered`.
pub struct ClientLayer<M: Metering = Unmetered> {
    config: Arc<ClientConfig>,
    metering: PhantomData<fn() -> M>,
}

impl<M: Metering> Clone for ClientLayer<M> {
    fn clone(&self) -> Self {
        ClientLayer {
            config: self.config.clone(),
            metering: PhantomData,
        }
    }
}

impl Default for ClientLayer {
    fn default() -> Self {
        ClientLayer {
            config: Arc::default(),
            metering: PhantomData,
        }
    }
}

impl ClientLayer {
    /// A layer with the defaults: the process default propagator (W3C Trace Context and
    /// Baggage unless `OTEL_PROPAGATORS`, through [`otlp::init`](crate::otlp), or
    /// [`propagation::set_global_default`](crate::propagation::set_global_default) chose
    /// another before this layer was built), injected to every host, headers the caller set
    /// left alone.
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

impl<M: Metering> ClientLayer<M> {
    /// Records the request metrics of every call (`http.client.request.duration`, and
    /// `rpc.client.call.duration` for gRPC) through `provider`; see
    /// [`metrics`](crate::metrics). Without it nothing is measured.
    ///
    /// With the SDK's `SdkMeterProvider` each attribute set is recorded through a bound
    /// instrument; see [the cost](crate::metrics#cost).
    #[cfg(feature = "metrics")]
    pub fn metrics<P>(mut self, provider: &P) -> ClientLayer<crate::metrics::Metered>
    where
        P: opentelemetry::metrics::MeterProvider + ?Sized + 'static,
    {
        self.client_config_mut().common.metrics =
            Some(Arc::new(crate::metrics::LayerMetrics::client(provider)));
        ClientLayer {
            config: self.config,
            metering: PhantomData,
        }
    }

    fn common_mut(&mut self) -> &mut Common {
        &mut Arc::make_mut(&mut self.config).common
    }

    fn client_config_mut(&mut self) -> &mut ClientConfig {
        Arc::make_mut(&mut self.config)
    }

    #[cfg(feature = "reqwest")]
    pub(crate) fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    common_builder_methods!();

    client_builder_methods!();

    /// A hyper-util client for plain `http://` on tokio (HTTP/1), traced by this layer. Wrap a
    /// client you configured yourself (TLS, HTTP/2, pool settings) with
    /// `ServiceBuilder::new().layer(layer).service(client)` instead.
    #[cfg(feature = "hyper-util")]
    pub fn hyper_client<B>(&self) -> crate::client::HyperClient<B, M>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        ClientTrace::new(client, self.config.clone())
    }

    /// Adds an `rpc.message` event (`rpc.message.type = RECEIVED`, `rpc.message.id`, size)
    /// to gRPC client spans for each response message. Off by default. Request messages are
    /// not counted.
    pub fn message_events(mut self, enabled: bool) -> Self {
        Arc::make_mut(&mut self.config).message_events = enabled;
        self
    }
}

impl<S, M: Metering> Layer<S> for ClientLayer<M> {
    type Service = ClientTrace<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace::new(inner, self.config.clone())
    }
}

impl<M: Metering> fmt::Debug for ClientLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLayer")
            .field("common", &self.config.common)
            .field("propagate_to", &self.config.propagate_to)
            .field("overwrite", &self.config.overwrite)
            .field("grpc_only", &self.config.grpc_only)
            .field("message_events", &self.config.message_events)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let exact = HostPattern::parse("API.example.com");
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("x.api.example.com"));
        let sub = HostPattern::parse("*.example.com");
        assert!(sub.matches("a.example.com"));
        assert!(sub.matches("a.b.EXAMPLE.com"));
        assert!(!sub.matches("example.com"));
        assert!(!sub.matches("badexample.com"));
        assert!(!sub.matches("é"));
    }
}
