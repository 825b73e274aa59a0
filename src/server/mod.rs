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
//!
//! # gRPC
//!
//! A request whose `content-type` is `application/grpc` (`+proto`, `+json`, …) is a gRPC
//! call, so one layer serves a router that mixes axum routes and tonic services
//! ([`ServerLayer::grpc`] treats every request as gRPC). gRPC tracing needs no cargo feature.
//! The span follows the OpenTelemetry RPC conventions:
//!
//! - named `package.Service/Method`, with `rpc.system = "grpc"`, `rpc.service`,
//!   `rpc.method`, `server.address`, `server.port`, `network.protocol.version` and, when the
//!   server makes the peer known (axum's `ConnectInfo`, or tonic's `TcpConnectInfo` with
//!   feature `grpc`), `network.peer.address` and `network.peer.port`;
//! - `rpc.grpc.status_code` (an integer) from the response headers of a Trailers-Only
//!   response, else from the trailers at the end of the body, with `grpc-message` as the
//!   status description; a response with no `grpc-status` is UNKNOWN, and one whose HTTP
//!   status is not 200 gets the code gRPC maps that status to (404 is UNIMPLEMENTED, 503
//!   UNAVAILABLE, …);
//! - UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS are
//!   Error (with `error.type` the code's name); the other codes leave the status Unset;
//! - a streaming call's span ends when the stream ends; a call the client cancels ends with
//!   code CANCELLED and its status left Unset (CANCELLED is not among the server's error
//!   codes above), or as DEADLINE_EXCEEDED when its `grpc-timeout` had run out (tonic drops
//!   the handler then);
//! - captured metadata ([`capture_request_headers`](ServerLayer::capture_request_headers),
//!   [`capture_response_headers`](ServerLayer::capture_response_headers), redacted as for
//!   HTTP) is recorded as `rpc.grpc.request.metadata.<key>` and
//!   `rpc.grpc.response.metadata.<key>`, the latter from response headers and trailers;
//! - [`message_events`](ServerLayer::message_events) adds an `rpc.message` event
//!   (`SENT`) per response message; off by default, and request messages are not counted.
//!
//! gRPC-Web (`application/grpc-web*`) carries its status in the body and is traced as HTTP;
//! put the layer inside the gRPC-Web translation to trace it as gRPC.
//!
//! ```no_run
//! use tracewire::server::ServerLayer;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! tonic::transport::Server::builder()
//!     .layer(ServerLayer::grpc().service_name("health"))
//!     .add_service(health)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//!
//! // Or axum routes and tonic services on one port, behind one layer:
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! let app = tonic::service::Routes::new(health)
//!     .into_axum_router()
//!     .route("/hello", axum::routing::get(|| async { "hello" }))
//!     .layer(ServerLayer::new().service_name("mixed"));
//! # drop(app);
//! # Ok(())
//! # }
//! ```

mod layer;
mod service;

pub use crate::request::body::ResponseBody;
pub use crate::request::future::ResponseFuture;
pub use layer::ServerLayer;
pub use service::ServerTrace;
