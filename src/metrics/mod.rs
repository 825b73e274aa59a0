//! Request metrics (feature `metrics`): the OpenTelemetry semantic-convention duration
//! histograms, recorded by the same layers that open the spans, for **every** request, sampled
//! or not.
//!
//! Traces are sampled; rates, errors and latencies must not be. Give a layer a
//! `MeterProvider` (the SDK's, exporting over OTLP, or any other) and it records:
//!
//! | instrument | layer | attributes |
//! |---|---|---|
//! | `http.server.request.duration` (histogram, `s`) | [`ServerLayer`](crate::ServerLayer) | `http.request.method` (`_OTHER` for a method that is not [known](crate::config::KnownMethods)), `url.scheme`, `http.route` (the route template, never the path), `http.response.status_code`, `network.protocol.version`, `error.type` |
//! | `http.client.request.duration` (histogram, `s`) | [`ClientLayer`](crate::ClientLayer), reqwest's `TracingMiddleware` | the same without `http.route` and `url.scheme` (Opt-In for clients), with `server.address` and `server.port`; `network.protocol.version` only when a response came |
//! | `rpc.server.call.duration`, `rpc.client.call.duration` (histograms, `s`) | the same, for gRPC calls | `rpc.system.name` (`grpc`), `rpc.method` (`package.Service/Method`, or `_OTHER` for a method the server does not recognize: see [`ServerLayer::grpc_methods`](crate::ServerLayer::grpc_methods)), `rpc.response.status_code` (`OK`, `UNAVAILABLE`, …, `_OTHER` for a code outside 0..=16), `error.type`; on the client, `server.address` and `server.port` when the call has them (a `Channel` client given its origin) |
//! | `http.server.active_requests` (up-down counter, opt-in) | [`ServerLayer`](crate::ServerLayer) | `http.request.method`, `url.scheme` |
//!
//! The names, units, bucket boundaries and attributes are those of the semantic conventions
//! 1.42 (the version of the `opentelemetry-semantic-conventions` crate tracewire pins): the
//! RPC metrics follow the RPC conventions of that version (`rpc.system.name`,
//! `rpc.response.status_code` as the status code's name), which tracewire's RPC spans do not
//! yet (see [`semconv`](crate::semconv)).
//!
//! A duration ends where the span ends, with the span's `error.type`: at the end of the
//! response body, at an error, or when the response or its body is dropped (`cancelled`,
//! unless the response was an error already, or a gRPC call's deadline had passed:
//! `DEADLINE_EXCEEDED`). Every attribute comes from the application (route templates), from a
//! closed set (methods, schemes, versions, status codes, error types) or from the gRPC methods
//! the server recognizes, so callers cannot create new series.
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use opentelemetry_sdk::metrics::SdkMeterProvider;
//! use tracewire::ServerLayer;
//!
//! let provider = SdkMeterProvider::builder().build(); // add a reader or exporter
//! let layer = ServerLayer::new().metrics(&provider);
//! # drop(layer);
//! # }
//! ```
//!
//! In development, [`dev::init`](crate::dev::init)'s per-operation summary takes the server
//! layers' requests from these measurements, so it counts every request too.
//!
//! # Cost
//!
//! A layer without metrics pays nothing: [`ServerLayer::metrics`](crate::ServerLayer::metrics)
//! and [`ClientLayer::metrics`](crate::ClientLayer::metrics) return a layer of another type
//! ([`Metered`] instead of the default [`Unmetered`]), whose response futures and bodies carry
//! the measurement inline; the default ones carry nothing.
//!
//! A measured request allocates nothing once its series exist. The attribute sets are built
//! once per series and kept by the layer: the request's part (route, or server address and
//! port) when the first request of that route or server starts, the rest (method, scheme,
//! version, status, error type) when the first request with those values ends. With the SDK's
//! `SdkMeterProvider`, each attribute set is bound to its histogram once (the SDK's bound
//! instruments), so a request records a number, without hashing its attributes; with any
//! other provider, it records with the prepared attribute set. The layer keeps up to 1,024
//! request parts and 64 sets of the rest under each: past those bounds (an application with
//! that many routes or servers), a request builds its attribute set itself, and records the
//! same series.

#[cfg(feature = "metrics")]
mod measure;

#[cfg(all(feature = "metrics", feature = "console"))]
pub(crate) use measure::add_sink;
#[cfg(all(feature = "metrics", feature = "ui"))]
pub(crate) use measure::{remove_sink, MeasuredRequest, MeasuredSink, SinkId};
#[cfg(feature = "metrics")]
pub(crate) use measure::{LayerMetrics, Measured, RequestCode, Series, Start};

/// The semantic conventions' bucket boundaries for request durations, in seconds.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Whether a layer measures its requests: [`Unmetered`] (the default) or [`Metered`] (after
/// `metrics`). The type parameter of the layers, their services, response futures and
/// bodies; implemented by those two types only.
pub trait Metering: slot::Slot {}

/// A layer that records no metrics: its response futures and bodies carry nothing for them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unmetered;

impl Metering for Unmetered {}

/// A layer that records the request metrics (see the [module docs](self)): what a response
/// future or body carries to measure its request.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
#[derive(Default)]
pub struct Metered(pub(crate) Option<Measured>);

#[cfg(feature = "metrics")]
impl Metering for Metered {}

#[cfg(feature = "metrics")]
impl std::fmt::Debug for Metered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Metered").field(&self.0.is_some()).finish()
    }
}

/// What the layers' futures and bodies do with their request's measurement.
pub(crate) mod slot {
    use http::HeaderMap;

    /// A request's measurement, carried from the layer's `call` to the end of the body. The
    /// methods that end it (`finish`, `fail`, `cancel`) record once; later calls do nothing.
    pub trait Slot: Default + Send + Sync + 'static {
        /// The layer measures requests: `false` lets the compiler leave the measuring out.
        const ON: bool;
        /// The measurement of a request: `measure` runs only when [`ON`](Self::ON).
        fn start(measure: impl FnOnce() -> Option<super::Measured>) -> Self;
        /// The measurement has not ended.
        fn active(&self) -> bool;
        /// The response head arrived, over HTTP `version`.
        fn on_response(&mut self, code: u16, version: http::Version, headers: &HeaderMap);
        /// The body ended, with these trailers.
        fn finish(&mut self, trailers: Option<&HeaderMap>);
        /// The call failed with an error of this type.
        fn fail(&mut self, error_type: &'static str);
        /// The call was abandoned before it completed; `unread`: the response body was
        /// dropped (an HTTP client that has its response completed its call).
        fn cancel(&mut self, unread: bool);
    }

    impl Slot for super::Unmetered {
        const ON: bool = false;
        #[inline(always)]
        fn start(_: impl FnOnce() -> Option<super::Measured>) -> Self {
            super::Unmetered
        }
        #[inline(always)]
        fn active(&self) -> bool {
            false
        }
        #[inline(always)]
        fn on_response(&mut self, _: u16, _: http::Version, _: &HeaderMap) {}
        #[inline(always)]
        fn finish(&mut self, _: Option<&HeaderMap>) {}
        #[inline(always)]
        fn fail(&mut self, _: &'static str) {}
        #[inline(always)]
        fn cancel(&mut self, _: bool) {}
    }

    #[cfg(feature = "metrics")]
    impl Slot for super::Metered {
        const ON: bool = true;
        #[inline]
        fn start(measure: impl FnOnce() -> Option<super::Measured>) -> Self {
            super::Metered(measure())
        }
        #[inline]
        fn active(&self) -> bool {
            self.0.is_some()
        }
        fn on_response(&mut self, code: u16, version: http::Version, headers: &HeaderMap) {
            if let Some(m) = &mut self.0 {
                m.on_response(code, version, headers);
            }
        }
        fn finish(&mut self, trailers: Option<&HeaderMap>) {
            if let Some(m) = self.0.take() {
                m.finish(trailers);
            }
        }
        fn fail(&mut self, error_type: &'static str) {
            if let Some(m) = self.0.take() {
                m.fail(error_type);
            }
        }
        fn cancel(&mut self, unread: bool) {
            if let Some(m) = self.0.take() {
                m.cancel(unread);
            }
        }
    }
}

/// Without the feature there is nothing to measure.
#[cfg(not(feature = "metrics"))]
pub enum Measured {}

#[cfg(all(not(feature = "metrics"), feature = "reqwest"))]
impl Measured {
    pub(crate) fn on_response(&mut self, _: u16, _: http::Version, _: &http::HeaderMap) {
        match *self {}
    }
    pub(crate) fn fail(self, _: &'static str) {
        match self {}
    }
    pub(crate) fn cancel(self, _: bool) {
        match self {}
    }
}
