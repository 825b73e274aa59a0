//! The server layer: one `SpanKind::Server` span per request, continuing the caller's trace.
//!
//! [`ServerLayer`] extracts the caller's context with its propagator (W3C Trace Context and
//! Baggage by default) and opens a server span as the child of the caller's span. A
//! malformed or missing `traceparent` starts a new trace; it never fails the request.
//!
//! The span is named `{method} {route}`, with the route from axum's `MatchedPath` (so add the
//! layer with `Router::layer`, inside the routing), else `{method}`; gRPC calls
//! (`content-type: application/grpc*`) are named `package.Service/Method`. It carries the
//! OpenTelemetry HTTP (or RPC) semantic-convention attributes, and lasts until the response
//! body ends:
//!
//! - 5xx responses are Error, 4xx leave the status Unset; an `Err` from the inner service is
//!   Error with an `exception` event (type, message and cause chain);
//! - gRPC status comes from the response headers (Trailers-Only) or the trailers;
//! - a body error is Error; a response future or body dropped early (the client went away)
//!   ends the span as Error with `error.type = "cancelled"`.
//!
//! Spans the handler creates (`#[instrument]`, events) are children of the server span and
//! inherit its service name.
//!
//! ```
//! use axum::{routing::get, Router};
//! use tracewire::server::ServerLayer;
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "ana" }))
//!     .layer(
//!         ServerLayer::new()
//!             .service_name("users")
//!             .filter(|head| head.uri.path() != "/health")
//!             .capture_request_headers([http::header::HeaderName::from_static("x-request-id")])
//!             .traceresponse(true),
//!     );
//! ```
//!
//! With no recorder installed (or for a filtered request) there is no span, but the
//! request's context stays in effect while the handler runs, so the client layer still
//! propagates it.

mod layer;
mod service;

pub use crate::body::ResponseBody;
pub use crate::future::ResponseFuture;
pub use layer::ServerLayer;
pub use service::ServerTrace;

pub(crate) use service::is_grpc;
