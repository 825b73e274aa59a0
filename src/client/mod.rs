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
//! With no recorder installed there is no span, but the client still passes on the context
//! of the request being served (from the server layer), so traces stay connected.

mod layer;
mod service;

pub use crate::body::ResponseBody;
pub use crate::future::ResponseFuture;
pub use layer::ClientLayer;
pub use service::ClientTrace;

pub(crate) use layer::HostPattern;
#[cfg(feature = "reqwest")]
pub(crate) use layer::{client_builder_methods, ClientConfig};
#[cfg(feature = "reqwest")]
pub(crate) use service::start_call;
