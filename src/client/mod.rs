//! The client layer: one `SpanKind::Client` span per outgoing request, with its context
//! injected into the request headers.
//!
//! [`ClientLayer`] opens a client span as a child of the current span, named `{method}`
//! (gRPC: `package.Service/Method`), with the OpenTelemetry HTTP client (or RPC)
//! attributes: `http.request.method`, `server.address`, `server.port`, `url.full` (with
//! credentials and configured query values redacted), `http.response.status_code`,
//! `network.protocol.version`, `error.type`. It injects the span's context with its
//! propagator, leaving alone any propagation header the caller set on purpose (unless
//! [`overwrite_headers`](ClientLayer::overwrite_headers)), and only towards the hosts of
//! [`propagate_to`](ClientLayer::propagate_to) when that is set.
//!
//! 4xx and 5xx responses, every non-OK gRPC status and transport errors (with an
//! `exception` event) are Error. The span ends when the response body ends.
//!
//! ```no_run
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tracewire::client::ClientLayer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let hyper = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
//! let mut client = ServiceBuilder::new()
//!     .layer(ClientLayer::new().service_name("checkout").propagate_to(["*.internal"]))
//!     .service(hyper);
//! let request = http::Request::get("http://inventory.internal/items/42").body(Empty::new())?;
//! let response = client.ready().await?.call(request).await?;
//! # drop(response);
//! # Ok(())
//! # }
//! ```
//!
//! To keep a traced hyper-util client (in axum state, say), name it [`HyperClient`] (feature
//! `hyper-util`, on by default) and build it with [`ClientLayer::hyper_client`]:
//!
//! ```
//! # #[cfg(feature = "hyper-util")] {
//! use tracewire::client::{ClientLayer, HyperClient};
//!
//! #[derive(Clone)]
//! struct AppState {
//!     inventory: HyperClient, // a body of `Full<Bytes>`; `HyperClient<B>` for another
//! }
//!
//! let state = AppState {
//!     inventory: ClientLayer::new().service_name("checkout").hyper_client(),
//! };
//! # drop(state);
//! # }
//! ```
//!
//! With no recorder installed there is no span, but the client still passes on the context
//! of the request being served (from the server layer), so traces stay connected.
//!
//! # gRPC
//!
//! Wrapping a tonic `Channel` traces each call as an RPC span (gRPC is told apart by
//! `content-type`; [`ClientLayer::grpc`] treats every request as gRPC; no cargo feature is
//! needed): named `package.Service/Method`, with `rpc.system`, `rpc.service`, `rpc.method`,
//! `server.address`, `server.port` and `rpc.grpc.status_code`. The context travels as the
//! standard `traceparent`, `tracestate` and `baggage` metadata.
//!
//! Every code but OK is Error. The status is read from the response headers (Trailers-Only)
//! or the trailers at the end of the stream; a response without `grpc-status` is UNKNOWN,
//! and a non-200 response without one gets the code gRPC maps its HTTP status to. A
//! streaming call's span ends when the stream ends; dropping the stream (or the response
//! future) ends it as Error with `error.type = "cancelled"` and code CANCELLED, or
//! DEADLINE_EXCEEDED past the request's `grpc-timeout`. Metadata capture and
//! [`message_events`](ClientLayer::message_events) (`RECEIVED`, response messages only)
//! work as on the [server](crate::server#grpc).
//!
//! A client built on a `Channel` sends paths without the server's address; give the
//! generated client the origin (`with_origin`) so that the span has `server.address`.
//!
//! ```no_run
//! use tonic::transport::Endpoint;
//! use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
//! use tower::ServiceBuilder;
//! use tracewire::client::ClientLayer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let origin: http::Uri = "http://127.0.0.1:50051".parse()?;
//! let channel = Endpoint::from(origin.clone()).connect().await?;
//! let channel = ServiceBuilder::new()
//!     .layer(ClientLayer::grpc().service_name("checkout"))
//!     .service(channel);
//! let mut health = HealthClient::with_origin(channel, origin);
//! let request = HealthCheckRequest { service: String::new() };
//! let status = health.check(request).await?.into_inner().status();
//! # drop(status);
//! # Ok(())
//! # }
//! ```
//!
//! Interceptors instead of a layer: see the `grpc` module (feature `grpc`).

mod layer;
mod service;

pub use crate::request::body::ResponseBody;
pub use crate::request::future::ResponseFuture;
pub use layer::ClientLayer;
pub use service::ClientTrace;

/// A hyper-util client for plain `http://` on tokio, traced by a [`ClientLayer`]: the type to
/// name where a traced client is kept. `B` is the request body; `M` says whether it records
/// request metrics (see [`ClientLayer::metrics`], feature `metrics`).
#[cfg(feature = "hyper-util")]
pub type HyperClient<B = http_body_util::Full<bytes::Bytes>, M = crate::metrics::Unmetered> =
    ClientTrace<
        hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, B>,
        M,
    >;

pub(crate) use layer::HostPattern;
#[cfg(feature = "reqwest")]
pub(crate) use layer::{client_builder_methods, ClientConfig};
#[cfg(feature = "grpc")]
pub(crate) use service::inject_beside;
#[cfg(feature = "reqwest")]
pub(crate) use service::start_call;
