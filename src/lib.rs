//! tracewire follows a request across services.
//!
//! It gives every `tracing` span a W3C trace id and span id, carries trace context across
//! process boundaries, and hands finished spans to pluggable reporters without ever making
//! the request wait.
//!
//! The modules, one line each (ARCHITECTURE.md in the repository explains how they fit
//! together):
//!
//! - [`server`] and [`client`]: the Tower layers, one span per incoming or outgoing request.
//! - [`config`]: what both layers share: settings, filters, redaction, the request view hooks get.
//! - [`classify`]: the rules that turn an HTTP status or a `grpc-status` into a span status.
//! - [`record`]: the recorder, a `tracing_subscriber::Layer`; [`record::SpanStart`] gives a span
//!   a remote parent, [`record::SpanExt`] reads its context.
//! - [`sampler`]: head sampling; [`ParentBased`](sampler::ParentBased) over `AlwaysOn` by default.
//! - [`span`]: [`SpanRecord`](span::SpanRecord), the plain finished span every reporter gets.
//! - [`report`]: the [`Reporter`](report::Reporter) trait, the pipeline to the reporter thread,
//!   [`InMemoryReporter`](report::InMemoryReporter) for tests,
//!   [`TailSampler`](report::TailSampler), `ConsoleReporter` (feature `console`) and
//!   `OtelReporter` (feature `otel`).
//! - [`propagation`]: the [`Propagator`](propagation::Propagator) trait, the W3C Trace Context
//!   and Baggage codecs, and the choice from `OTEL_PROPAGATORS` (B3 and Jaeger by feature).
//! - [`context`]: trace and span ids, flags, trace state and the span context.
//! - [`baggage`]: W3C Baggage values.
//! - [`semconv`]: attribute keys and special field names.
//! - [`env`](mod@env): the OpenTelemetry `OTEL_*` environment variables, read only when asked.
//! - [`metrics`]: request duration histograms through an OpenTelemetry `MeterProvider`
//!   (feature `metrics`).
//! - `dev` (feature `console`): `dev::init("service")` installs the recorder, the console
//!   reporter and a `fmt` log layer filtered by `RUST_LOG` in one call.
//! - `otlp` (feature `otlp`): `otlp::init()`, export over OTLP configured by `OTEL_*`.
//! - `reqwest` (feature `reqwest`): the reqwest-middleware `TracingMiddleware`.
//! - `grpc` (feature `grpc`): tonic `MetadataMap` helpers and interceptors.
//! - `ui` (feature `ui`): the trace viewer in the browser.
//!
//! # Features
//!
//! | feature   | default | what it adds |
//! |-----------|---------|--------------|
//! | `axum`    | yes     | span names and `http.route` from axum's `MatchedPath`, `client.address` from `ConnectInfo` |
//! | `console` | yes     | `ConsoleReporter` (trace trees with waterfalls) and `dev::init` |
//! | `hyper-util` | yes  | `client::HyperClient` and `ClientLayer::hyper_client`, a traced hyper-util client named once; the causes of its errors in recorded messages |
//! | `otel`    |         | `OtelReporter`: export through any `opentelemetry_sdk` `SpanExporter`; `ProcessorReporter`: through any `SpanProcessor` |
//! | `otlp`    |         | `otlp::init()`: recorder, OTLP exporter, logs and propagator from the `OTEL_*` variables |
//! | `otlp-tls` |        | `https://` OTLP endpoints for `otlp::init()` (rustls, webpki roots) |
//! | `metrics` |         | request metrics (`http.server.request.duration`, …) through any OpenTelemetry `MeterProvider` |
//! | `reqwest` |         | `reqwest::TracingMiddleware` for reqwest-middleware |
//! | `grpc`    |         | tonic `MetadataMap` helpers and interceptors (gRPC tracing itself needs no feature) |
//! | `b3`      |         | the B3 propagator for `OTEL_PROPAGATORS` |
//! | `jaeger`  |         | the Jaeger propagator for `OTEL_PROPAGATORS` |
//! | `ui`      |         | the trace viewer in the browser (`ui::Viewer`, `dev::init_with_ui`), which also takes OTLP/HTTP from other local services |
//!
//! # Quick start
//!
//! Wrap the server in [`ServerLayer`] and outgoing clients in [`ClientLayer`]; spans inside
//! handlers (`#[instrument]`, events) join the request's trace:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use tracewire::ServerLayer;
//!
//! # #[cfg(feature = "console")]
//! # async fn run() -> std::io::Result<()> {
//! let _guard = tracewire::dev::init("users"); // recorder + console trees + fmt logs
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "ana" }))
//!     .layer(ServerLayer::new());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! The recorder alone, with the in-memory reporter tests use:
//!
//! ```
//! use tracewire::record::Recorder;
//! use tracewire::report::InMemoryReporter;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let spans = InMemoryReporter::new();
//! let (recorder, guard) = Recorder::builder()
//!     .service_name("checkout")
//!     .reporter(spans.clone())
//!     .build();
//! let subscriber = tracing_subscriber::registry().with(recorder);
//!
//! tracing::subscriber::with_default(subscriber, || {
//!     let _request = tracing::info_span!("POST /checkout").entered();
//!     tracing::info_span!("reserve", sku = "A-1").in_scope(|| {});
//! });
//! guard.flush().unwrap();
//!
//! let reserve = spans.find("reserve").unwrap();
//! assert_eq!(spans.parent(&reserve).unwrap().name, "POST /checkout");
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]
#![deny(unreachable_pub)]
#![deny(unsafe_code)]

pub mod baggage;
pub mod classify;
pub mod client;
pub mod context;
#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub mod dev;
pub mod env;
// The parsers the fuzz targets in `fuzz/` reach; the unit tests keep the same properties.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
#[cfg(feature = "console")]
mod log;
pub mod metrics;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub mod otlp;
pub mod propagation;
pub mod record;
pub mod report;
mod request;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
mod rpc;
pub mod sampler;
pub mod semconv;
pub mod server;
pub mod span;
#[cfg(feature = "ui")]
#[cfg_attr(docsrs, doc(cfg(feature = "ui")))]
pub mod ui;

pub use client::ClientLayer;
pub use request::config;
pub use server::ServerLayer;

// The README's snippets are compiled (and run, unless marked otherwise) as doc tests, so they
// cannot drift from the API.
#[cfg(all(
    doctest,
    feature = "axum",
    feature = "console",
    feature = "hyper-util",
    feature = "metrics",
    feature = "otlp",
    feature = "ui"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
