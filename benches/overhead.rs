//! Per-request overhead of tracing stacks, in one run: an in-memory `GET /users/{id}` axum
//! request carrying `traceparent`, `host` and `user-agent`, through a router built once and
//! called per request as `axum::serve` calls it (hyper-util clones the connection's service
//! and calls `oneshot`), its response body read to the end. Each case is compared with the
//! case named as its baseline (`BASELINES`).
//!
//! Server spans, against `bare` (the router alone):
//!
//! - `noop_layer`: a layer that only wraps the response body (what axum charges any such
//!   middleware);
//! - `tower_http`: tower-http's `TraceLayer` over a registry whose only layer counts spans
//!   (no propagation, no export);
//! - `otel_stack`: axum-tracing-opentelemetry's `OtelAxumLayer`, tracing-opentelemetry and
//!   the opentelemetry SDK's batch processor, with an exporter that counts and drops;
//! - `fastrace`: fastrace-axum's `FastraceLayer` and fastrace, with a reporter that counts
//!   and drops;
//! - `tracewire_sampled`, `tracewire_unsampled`: tracewire's `ServerLayer` and recorder,
//!   with a reporter that counts and drops, and so reads no attribute (the recorder then
//!   never builds the request attributes the layer keeps as raw facts);
//! - `tracewire_sampled_read`: `tracewire_sampled` with a reporter that reads every
//!   attribute of every span, as an exporter does;
//! - `tracewire_sampled_metrics`, `tracewire_unsampled_metrics`: `tracewire_sampled` and
//!   `tracewire_unsampled` with the request metrics on (`ServerLayer::metrics`, the SDK's
//!   meter provider with a reader that does not run during the measurement);
//! - `otel_stack_metrics`: `otel_stack` plus `http.server.request.duration` recorded with
//!   the SDK's histogram by a middleware, as a service without tracewire would.
//!
//! One child span, no fields, inside the handler, against the same stack's server case:
//! `tracewire_child` and `otel_child` (a `#[tracing::instrument]` function), `fastrace_child`
//! (a `LocalSpan`). `tower_http_child` is the same function under tower-http's case: what a
//! `tracing` span costs in the registry alone, the floor of any recorder built on `tracing`.
//!
//! One client span: the handler calls an in-memory service (a tower service, no sockets).
//! `<stack>_call` is the stack's server case with that call untraced, `<stack>_client` the
//! same with the call traced, so the difference is the client span alone:
//!
//! - `tower_http_client`: tower-http's `TraceLayer` around the call (no propagation);
//! - `otel_client`: a `tracing` span with `otel.kind = "client"` and the attributes
//!   tracewire's client span has, its context injected with `TraceContextPropagator`
//!   through opentelemetry-http's `HeaderInjector`;
//! - `fastrace_client`: a child `Span` with the same attributes, its context written with
//!   fastrace's `traceparent` encoder;
//! - `tracewire_client`: tracewire's `ClientLayer`.
//!
//! `bare_call` (no tracing at all, the call made) is the `_call` cases' baseline.
//!
//! ```sh
//! cargo bench --bench overhead            # allocations per request, interleaved timings
//!                                         # (see `interleaved`), then criterion's
//! benches/instructions.sh                 # instructions and allocations, all threads
//! # One case only, N requests, then its pipeline flushed and every span checked:
//! TRACEWIRE_BENCH_CASE=tracewire_sampled TRACEWIRE_BENCH_REQUESTS=20000 \
//!     target/release/deps/overhead-<hash> --bench
//! ```
//!
//! Before measuring, every case is checked: it must record, and every span it makes must
//! reach its exporter or reporter, so that no case wins by doing nothing.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Full};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tracewire::record::Recorder;
use tracewire::record::RecorderGuard;
use tracewire::report::Reporter;
use tracewire::{ClientLayer, ServerLayer};
use tracing_subscriber::layer::SubscriberExt;

#[path = "support/in_memory.rs"]
mod in_memory;
mod support;
use in_memory::request;
use support::{
    count_allocations, fastest, interleave, median, quartiles, Count, CountSpans, Counting,
};

#[global_allocator]
static GLOBAL: Counting = Counting;

const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

async fn user(Path(id): Path<u64>) -> String {
    format!("user {id}, order {}", order(id))
}

#[inline(never)]
fn order(id: u64) -> u64 {
    black_box(id) + 1
}

async fn user_with_child(Path(id): Path<u64>) -> String {
    format!("user {id}, order {}", traced_order(id))
}

#[tracing::instrument(skip_all)]
#[inline(never)]
fn traced_order(id: u64) -> u64 {
    black_box(id) + 1
}

async fn user_with_local_span(Path(id): Path<u64>) -> String {
    let order = {
        let _span = fastrace::local::LocalSpan::enter_with_local_parent("traced_order");
        order(id)
    };
    format!("user {id}, order {order}")
}

/// The inner dependency a handler calls: in memory, so only the layers' cost shows.
type Inner = BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<Body>, Infallible>;

/// How the handler's call is traced.
#[derive(Clone, Copy)]
enum Call {
    Untraced,
    TowerHttp,
    Otel,
    Fastrace,
    Tracewire,
}

fn inner_service(call: Call) -> Inner {
    let profile = service_fn(|_req: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(Body::from("profile")))
    });
    match call {
        Call::Untraced => BoxCloneSyncService::new(profile),
        Call::TowerHttp => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(tower_http::trace::TraceLayer::new_for_http())
                .service(profile)
                .map_response(|r: http::Response<_>| r.map(Body::new)),
        ),
        Call::Otel => BoxCloneSyncService::new(service_fn(move |request| {
            otel_client_call(profile, request)
        })),
        Call::Fastrace => BoxCloneSyncService::new(service_fn(move |request| {
            fastrace_client_call(profile, request)
        })),
        Call::Tracewire => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(ClientLayer::new())
                .service(profile)
                .map_response(|r: http::Response<_>| r.map(Body::new)),
        ),
    }
}

/// A client span as an OpenTelemetry user writes one: a `tracing` span marked
/// `otel.kind = "client"` with the attributes tracewire's client span has, its context
/// injected into the request's headers.
fn otel_client_call<S>(
    inner: S,
    mut request: http::Request<Full<Bytes>>,
) -> impl Future<Output = Result<http::Response<Body>, Infallible>>
where
    S: tower::Service<
        http::Request<Full<Bytes>>,
        Response = http::Response<Body>,
        Error = Infallible,
    >,
{
    use opentelemetry::propagation::TextMapPropagator;
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let uri = request.uri();
    let span = tracing::info_span!(
        "GET",
        otel.kind = "client",
        http.request.method = %request.method(),
        url.full = %uri,
        server.address = uri.host().unwrap_or_default(),
        server.port = uri.port_u16().unwrap_or(80),
        http.response.status_code = tracing::field::Empty,
    );
    otel_propagator().inject_context(
        &span.context(),
        &mut opentelemetry_http::HeaderInjector(request.headers_mut()),
    );
    let call = inner.oneshot(request).instrument(span.clone());
    async move {
        let response = call.await?;
        span.record("http.response.status_code", response.status().as_u16());
        Ok(response)
    }
}

fn otel_propagator() -> &'static opentelemetry_sdk::propagation::TraceContextPropagator {
    static PROPAGATOR: OnceLock<opentelemetry_sdk::propagation::TraceContextPropagator> =
        OnceLock::new();
    PROPAGATOR.get_or_init(opentelemetry_sdk::propagation::TraceContextPropagator::new)
}

/// A client span as a fastrace user writes one: a child `Span` of the request's, with the
/// same attributes, its context written by fastrace's `traceparent` encoder.
fn fastrace_client_call<S>(
    inner: S,
    mut request: http::Request<Full<Bytes>>,
) -> impl Future<Output = Result<http::Response<Body>, Infallible>>
where
    S: tower::Service<
        http::Request<Full<Bytes>>,
        Response = http::Response<Body>,
        Error = Infallible,
    >,
{
    use fastrace::future::FutureExt as _;
    let uri = request.uri();
    let span = fastrace::Span::enter_with_local_parent("GET").with_properties(|| {
        [
            ("http.request.method", request.method().to_string()),
            ("url.full", uri.to_string()),
            ("server.address", uri.host().unwrap_or_default().to_owned()),
            ("server.port", uri.port_u16().unwrap_or(80).to_string()),
        ]
    });
    if let Some(context) = fastrace::collector::SpanContext::from_span(&span) {
        let traceparent = context.encode_w3c_traceparent();
        request.headers_mut().insert(
            "traceparent",
            http::HeaderValue::from_str(&traceparent).expect("a valid header"),
        );
    }
    async move {
        let response = inner.oneshot(request).await?;
        fastrace::local::LocalSpan::add_property(|| {
            (
                "http.response.status_code",
                response.status().as_u16().to_string(),
            )
        });
        Ok(response)
    }
    .in_span(span)
}

async fn user_with_call(State(inner): State<Inner>, Path(id): Path<u64>) -> String {
    let request = http::Request::get(format!("http://profiles.internal/profiles/{id}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = inner.oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    format!("user {id}, {} bytes of profile", body.len())
}

/// A layer that does nothing but wrap the response body in a type of its own, as every
/// tracing middleware must to see the body end.
#[derive(Clone, Copy)]
struct NoopLayer;

impl<S> tower::Layer<S> for NoopLayer {
    type Service = tower::util::MapResponse<S, fn(http::Response<Body>) -> http::Response<Wrapped>>;

    fn layer(&self, inner: S) -> Self::Service {
        tower::util::MapResponse::new(inner, |r: http::Response<Body>| r.map(Wrapped))
    }
}

/// A body of another type, passing frames through.
struct Wrapped(Body);

impl http_body::Body for Wrapped {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    // Forwarded, as tower-http's and tracewire's bodies do: axum sets `content-length` from it.
    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// The router as `axum::serve` runs it: routes finalized once.
fn router(layer: impl FnOnce(Router) -> Router) -> Router {
    layer(Router::new().route("/users/{id}", get(user))).with_state(())
}

/// The router whose handler opens one child span (`fastrace`: a `LocalSpan`).
fn child_router(fastrace: bool, layer: impl FnOnce(Router) -> Router) -> Router {
    let route = if fastrace {
        get(user_with_local_span)
    } else {
        get(user_with_child)
    };
    layer(Router::new().route("/users/{id}", route)).with_state(())
}

/// The router whose handler makes an in-memory call, traced as `call` says.
fn call_router(call: Call, layer: impl FnOnce(Router<Inner>) -> Router<Inner>) -> Router {
    layer(Router::new().route("/users/{id}", get(user_with_call))).with_state(inner_service(call))
}

struct Case {
    name: &'static str,
    app: Router,
    traceparent: &'static str,
    dispatch: Option<tracing::Dispatch>,
    /// Spans each request must produce, and where they arrive.
    spans_per_request: u64,
    count: Option<Count>,
    /// Hands everything recorded so far to the exporter or reporter, and waits until it has.
    flush: Box<dyn Fn()>,
    /// Keeps the case's pipeline alive.
    _guard: Option<RecorderGuard>,
}

impl Case {
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, f),
            None => f(),
        }
    }
}

fn bare(name: &'static str, app: Router) -> Case {
    Case {
        name,
        app,
        traceparent: SAMPLED,
        dispatch: None,
        spans_per_request: 0,
        count: None,
        flush: Box::new(|| {}),
        _guard: None,
    }
}

fn tower_http_case(name: &'static str, app: Router, spans_per_request: u64) -> Case {
    let count = CountSpans::default();
    Case {
        name,
        app,
        traceparent: SAMPLED,
        dispatch: Some(tracing::Dispatch::new(
            tracing_subscriber::registry().with(count.clone()),
        )),
        spans_per_request,
        count: Some(count.0),
        flush: Box::new(|| {}),
        _guard: None,
    }
}

fn otel_case() -> Case {
    otel_stack_case("otel_stack", router(otel_layer), 1)
}

fn otel_layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())
}

fn otel_stack_case(name: &'static str, app: Router, spans_per_request: u64) -> Case {
    use opentelemetry::trace::TracerProvider as _;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let count = Count::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(count.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    Case {
        name,
        app,
        traceparent: SAMPLED,
        dispatch: Some(tracing::Dispatch::new(
            tracing_subscriber::registry().with(layer),
        )),
        spans_per_request,
        count: Some(count),
        flush: Box::new(move || {
            provider.force_flush().expect("otel flush");
        }),
        _guard: None,
    }
}

/// fastrace has one reporter per process: every fastrace case counts into this one, each
/// taking the count after its own flush.
fn fastrace_count() -> Count {
    static COUNT: OnceLock<Count> = OnceLock::new();
    COUNT
        .get_or_init(|| {
            let count = Count::default();
            fastrace::set_reporter(count.clone(), fastrace::collector::Config::default());
            count
        })
        .clone()
}

fn fastrace_case(name: &'static str, app: Router, spans_per_request: u64) -> Case {
    Case {
        name,
        app,
        traceparent: SAMPLED,
        dispatch: None,
        spans_per_request,
        count: Some(fastrace_count()),
        flush: Box::new(fastrace::flush),
        _guard: None,
    }
}

fn fastrace_layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(fastrace_axum::FastraceLayer::default())
}

fn tracewire_case(
    name: &'static str,
    traceparent: &'static str,
    app: Router,
    spans_per_request: u64,
) -> Case {
    let count = Count::default();
    let reporter: Box<dyn Reporter> = if name == "tracewire_sampled_read" {
        Box::new(ReadAttributes(count.clone()))
    } else {
        Box::new(count.clone())
    };
    let (recorder, guard) = Recorder::builder()
        .service_name("bench")
        .reporter(reporter)
        .build();
    let handle = guard.handle();
    Case {
        name,
        app,
        traceparent,
        dispatch: Some(tracing::Dispatch::new(
            tracing_subscriber::registry().with(recorder),
        )),
        spans_per_request,
        count: Some(count),
        flush: Box::new(move || {
            handle
                .flush(std::time::Duration::from_secs(10))
                .expect("flush")
        }),
        _guard: Some(guard),
    }
}

/// Counts what reaches it after reading every attribute of every span, as an exporter
/// does, and drops it.
struct ReadAttributes(Count);

impl Reporter for ReadAttributes {
    fn report(&mut self, batch: &[tracewire::span::SpanRecord]) {
        for span in batch {
            for kv in &span.attributes {
                let text = match &kv.value {
                    tracewire::span::Value::String(text) => text.as_str(),
                    _ => "",
                };
                std::hint::black_box((kv.key.as_str(), text, &kv.value));
            }
        }
        self.0.report(batch);
    }
}

fn server_layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(ServerLayer::new())
}

fn tower_http_layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(tower_http::trace::TraceLayer::new_for_http())
}

/// A meter provider that aggregates, and whose reader does not run during the measurement.
fn meter_provider() -> opentelemetry_sdk::metrics::SdkMeterProvider {
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader};
    let reader = PeriodicReader::builder(InMemoryMetricExporter::default())
        .with_interval(std::time::Duration::from_secs(3600))
        .build();
    opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(reader)
        .build()
}

/// `http.server.request.duration` recorded by hand with the SDK, in an axum middleware: the
/// OpenTelemetry stack's metrics.
fn otel_metrics_case() -> Case {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::KeyValue;
    let mut case = otel_case();
    let provider = meter_provider();
    let histogram = provider
        .meter("bench")
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .with_boundaries(tracewire::metrics::DURATION_BUCKETS.to_vec())
        .build();
    let record = move |request: axum::extract::Request, next: axum::middleware::Next| {
        let histogram = histogram.clone();
        async move {
            let start = std::time::Instant::now();
            let method = request.method().as_str().to_owned();
            let route = request
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map(|p| p.as_str().to_owned());
            let response = next.run(request).await;
            let mut attributes = vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new(
                    "http.response.status_code",
                    i64::from(response.status().as_u16()),
                ),
            ];
            if let Some(route) = route {
                attributes.push(KeyValue::new("http.route", route));
            }
            histogram.record(start.elapsed().as_secs_f64(), &attributes);
            response
        }
    };
    case.name = "otel_stack_metrics";
    case.app = router(|r| {
        r.layer(axum::middleware::from_fn(record))
            .layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())
    });
    let flush = std::mem::replace(&mut case.flush, Box::new(|| {}));
    case.flush = Box::new(move || {
        flush();
        let _ = &provider;
    });
    case
}

/// Every case, and the case its overhead is measured against: the same requests without
/// what the case adds.
const CASES: [(&str, &str); 24] = [
    ("bare", ""),
    ("noop_layer", "bare"),
    ("tower_http", "bare"),
    ("otel_stack", "bare"),
    ("fastrace", "bare"),
    ("tracewire_sampled", "bare"),
    ("tracewire_sampled_read", "bare"),
    ("tracewire_unsampled", "bare"),
    ("otel_child", "otel_stack"),
    ("fastrace_child", "fastrace"),
    ("tracewire_child", "tracewire_sampled"),
    ("tower_http_child", "tower_http"),
    ("bare_call", ""),
    ("tower_http_call", "bare_call"),
    ("tower_http_client", "tower_http_call"),
    ("otel_call", "bare_call"),
    ("otel_client", "otel_call"),
    ("fastrace_call", "bare_call"),
    ("fastrace_client", "fastrace_call"),
    ("tracewire_call", "bare_call"),
    ("tracewire_client", "tracewire_call"),
    ("tracewire_sampled_metrics", "bare"),
    ("tracewire_unsampled_metrics", "bare"),
    ("otel_stack_metrics", "bare"),
];

/// The targets of issue 19, as (ours, theirs, at most this ratio of overheads, or strictly
/// below it).
const TARGETS: [(&str, &str, f64, bool); 12] = [
    ("tracewire_sampled", "otel_stack", 0.25, false),
    ("tracewire_sampled", "fastrace", 1.0, true),
    ("tracewire_unsampled", "tower_http", 0.5, false),
    ("tracewire_child", "fastrace_child", 1.0, false),
    ("tracewire_client", "tracewire_sampled", 1.0, false),
    ("tracewire_client", "tower_http_client", 1.0, true),
    ("tracewire_client", "otel_client", 1.0, true),
    ("tracewire_client", "fastrace_client", 1.0, true),
    // The aim beyond the targets; a child span against the same span in the registry alone;
    // a reporter that reads every attribute, and the metrics, for reference.
    ("tracewire_sampled", "tower_http", 1.0, false),
    ("tracewire_child", "tower_http_child", 1.0, false),
    ("tracewire_sampled_read", "otel_stack", 0.25, false),
    (
        "tracewire_sampled_metrics",
        "otel_stack_metrics",
        0.25,
        false,
    ),
];

/// Builds one case; only what it needs is started (no other stack's background threads).
fn case(name: &str) -> Case {
    let name = name_of(name);
    match name {
        "bare" => bare(name, router(|r| r)),
        // What `Router::layer` costs any middleware that wraps the body: axum boxes the
        // layered service, its future and the new body type.
        "noop_layer" => bare(name, router(|r| r.layer(NoopLayer))),
        "tower_http" => tower_http_case(name, router(tower_http_layer), 1),
        "otel_stack" => otel_case(),
        "fastrace" => fastrace_case(name, router(fastrace_layer), 1),
        "tracewire_sampled" | "tracewire_sampled_read" => {
            tracewire_case(name, SAMPLED, router(server_layer), 1)
        }
        "tracewire_unsampled" => tracewire_case(name, UNSAMPLED, router(server_layer), 0),
        "otel_child" => otel_stack_case(name, child_router(false, otel_layer), 2),
        "fastrace_child" => fastrace_case(name, child_router(true, fastrace_layer), 2),
        "tracewire_child" => tracewire_case(name, SAMPLED, child_router(false, server_layer), 2),
        "tower_http_child" => tower_http_case(name, child_router(false, tower_http_layer), 2),
        "bare_call" => bare(name, call_router(Call::Untraced, |r| r)),
        "tower_http_call" => {
            tower_http_case(name, call_router(Call::Untraced, tower_http_layer), 1)
        }
        "tower_http_client" => {
            tower_http_case(name, call_router(Call::TowerHttp, tower_http_layer), 2)
        }
        "otel_call" => otel_stack_case(name, call_router(Call::Untraced, otel_layer), 1),
        "otel_client" => otel_stack_case(name, call_router(Call::Otel, otel_layer), 2),
        "fastrace_call" => fastrace_case(name, call_router(Call::Untraced, fastrace_layer), 1),
        "fastrace_client" => fastrace_case(name, call_router(Call::Fastrace, fastrace_layer), 2),
        "tracewire_call" => {
            tracewire_case(name, SAMPLED, call_router(Call::Untraced, server_layer), 1)
        }
        "tracewire_client" => {
            tracewire_case(name, SAMPLED, call_router(Call::Tracewire, server_layer), 2)
        }
        "tracewire_sampled_metrics" | "tracewire_unsampled_metrics" => {
            let provider = meter_provider();
            let sampled = name == "tracewire_sampled_metrics";
            let mut case = tracewire_case(
                name_of(name),
                if sampled { SAMPLED } else { UNSAMPLED },
                router(|r| r.layer(ServerLayer::new().metrics(&provider))),
                u64::from(sampled),
            );
            let flush = std::mem::replace(&mut case.flush, Box::new(|| {}));
            case.flush = Box::new(move || {
                flush();
                let _ = &provider;
            });
            case
        }
        "otel_stack_metrics" => otel_metrics_case(),
        other => unreachable!("{other} is in CASES but not built"),
    }
}

fn name_of(name: &str) -> &'static str {
    match CASES.iter().find(|(c, _)| *c == name) {
        Some((name, _)) => name,
        None => panic!(
            "unknown case {name}; cases: {:?}",
            CASES.map(|(name, _)| name)
        ),
    }
}

/// The case `name` is measured against (none for the two bare cases).
fn baseline_of(name: &str) -> Option<&'static str> {
    let (_, baseline) = CASES.iter().find(|(c, _)| *c == name)?;
    (!baseline.is_empty()).then_some(*baseline)
}

/// Checks the case records every span it should, then returns its allocations per request
/// (background threads included: the exporter or reporter is flushed before counting).
fn verify_and_count(case: &Case) -> f64 {
    const N: u64 = 2000;
    case.run(|| (0..N).for_each(|_| request(&case.app, case.traceparent)));
    (case.flush)();
    if let Some(count) = &case.count {
        let got = count.take();
        assert_eq!(
            got,
            case.spans_per_request * N,
            "{}: every span must reach its exporter or reporter",
            case.name
        );
    }
    let per_request = count_allocations(|| {
        case.run(|| (0..N).for_each(|_| request(&case.app, case.traceparent)));
        (case.flush)();
    }) as f64
        / N as f64;
    if let Some(count) = &case.count {
        count.take();
    }
    per_request
}

/// Prints each target's ratio of overheads, `over(case)` being a case's figure minus its
/// baseline's.
fn print_targets(what: &str, over: impl Fn(&str) -> f64) {
    println!("targets, {what} over each case's baseline, ours / theirs:");
    for (ours, theirs, limit, strict) in TARGETS {
        let (o, t) = (over(ours), over(theirs));
        let ratio = o / t;
        // Compared without dividing, so that a stack with no overhead at all still counts.
        let verdict = if o.is_nan() || t.is_nan() {
            "n/a"
        } else if (strict && o < limit * t) || (!strict && o <= limit * t) {
            "met"
        } else {
            "missed"
        };
        let sign = if strict { "<" } else { "≤" };
        println!(
            "  {ours} / {theirs}: {o:.1} / {t:.1} = {ratio:.3} (target {sign} {limit}): {verdict}"
        );
    }
}

/// One case under callgrind (`benches/instructions.sh`): `n` requests, then the pipeline
/// flushed, inside the counted window, and every span checked to have arrived.
fn run_one(name: &str, n: u64) {
    let case = case(name);
    let mut elapsed = std::time::Duration::ZERO;
    let allocations = count_allocations(|| {
        let started = std::time::Instant::now();
        case.run(|| (0..n).for_each(|_| request(&case.app, case.traceparent)));
        elapsed = started.elapsed();
        (case.flush)();
    });
    let reported = case.count.as_ref().map_or(0, Count::take);
    let expected = case.spans_per_request * n;
    println!(
        "{name}: {:?} per request; allocations={allocations} spans={reported}/{expected}",
        elapsed / n as u32
    );
    // Stops the pipeline's threads before the process exits.
    drop(case);
    if reported != expected {
        eprintln!("{name}: {reported} of {expected} spans reached the reporter");
        std::process::exit(2);
    }
}

/// Prints the table of `benches/instructions.sh` from its per-request figures, one line per
/// case: `name instructions request-thread other-threads allocations`.
fn print_table(path: &str) {
    let text = std::fs::read_to_string(path).expect("the figures of instructions.sh");
    let figures: Vec<(String, [f64; 4])> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?.to_owned();
            let numbers: Vec<f64> = fields.filter_map(|f| f.parse().ok()).collect();
            Some((name, numbers.try_into().ok()?))
        })
        .collect();
    let get = |name: &str| figures.iter().find(|(n, _)| n == name).map(|(_, f)| *f);
    let over = |name: &str, i: usize| match (get(name), baseline_of(name).and_then(get)) {
        (Some(own), Some(base)) => own[i] - base[i],
        _ => f64::NAN,
    };
    println!(
        "| case | baseline | instructions | over baseline | of which request thread | allocations | over baseline |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (name, f) in &figures {
        let baseline = baseline_of(name).unwrap_or("");
        if baseline.is_empty() {
            println!("| {name} | | {:.0} | | | {:.2} | |", f[0], f[3]);
        } else {
            println!(
                "| {name} | {baseline} | {:.0} | {:+.0} | {:+.0} | {:.2} | {:+.2} |",
                f[0],
                over(name, 0),
                over(name, 1),
                f[3],
                over(name, 3)
            );
        }
    }
    print_targets("instructions (all threads)", |name| over(name, 0));
    print_targets("allocations (all threads)", |name| over(name, 3));
}

fn overhead(c: &mut Criterion) {
    // Instruction counting under callgrind: build and run one case, nothing else.
    if let Ok(name) = std::env::var("TRACEWIRE_BENCH_CASE") {
        let n: u64 = std::env::var("TRACEWIRE_BENCH_REQUESTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000);
        run_one(&name, n);
        return;
    }
    if let Ok(path) = std::env::var("TRACEWIRE_BENCH_TABLE") {
        print_table(&path);
        return;
    }
    if std::env::var("TRACEWIRE_BENCH_LIST").is_ok() {
        CASES.iter().for_each(|(name, _)| println!("{name}"));
        return;
    }
    let cases: Vec<Case> = CASES.iter().map(|(name, _)| case(name)).collect();
    let allocations: Vec<f64> = cases.iter().map(verify_and_count).collect();
    let index = |name: &str| cases.iter().position(|c| c.name == name).expect("case");
    let over = |name: &str| match baseline_of(name) {
        Some(base) => allocations[index(name)] - allocations[index(base)],
        None => f64::NAN,
    };
    println!("allocations per request, all threads, and over the case's baseline (same run):");
    for case in &cases {
        let over = match baseline_of(case.name) {
            Some(base) => format!("{:>+6.2}   {base}", over(case.name)),
            None => String::new(),
        };
        println!(
            "  {:<28} {:>6.2}   {over}",
            case.name,
            allocations[index(case.name)],
        );
    }
    print_targets("allocations", over);
    interleaved(&cases);
    let mut group = c.benchmark_group("request");
    for case in &cases {
        case.run(|| {
            group.bench_function(case.name, |b| {
                b.iter(|| request(&case.app, case.traceparent))
            });
        });
        (case.flush)();
    }
    group.finish();
}

/// Times every case in short slices, interleaved (see [`interleave`]), and prints each case's
/// median and the ratios of the targets. A slice includes what the case's background threads
/// do meanwhile, as in a service under steady load; what they have left at its end is flushed,
/// untimed, so that it does not run during another case's slice.
fn interleaved(cases: &[Case]) {
    const ROUNDS: usize = 21;
    // Long enough that what a pipeline pays to start again after the flush weighs little.
    const REQUESTS: u32 = 40_000;
    // Spans that did not reach the exporter or reporter in the timed slices, per case: a
    // pipeline that drops spans at a full queue does less work, so its time would flatter it.
    let mut lost = vec![0u64; cases.len()];
    let per_request = interleave(cases.len(), ROUNDS, |i| {
        let case = &cases[i];
        let started = std::time::Instant::now();
        case.run(|| (0..REQUESTS).for_each(|_| request(&case.app, case.traceparent)));
        let elapsed = started.elapsed();
        (case.flush)();
        if let Some(count) = &case.count {
            let expected = case.spans_per_request * u64::from(REQUESTS);
            lost[i] += expected.saturating_sub(count.take());
        }
        elapsed.as_nanos() as f64 / f64::from(REQUESTS)
    });
    let index = |name: &str| cases.iter().position(|c| c.name == name).expect("case");
    let baseline = |i: usize| baseline_of(cases[i].name).map(index);
    println!(
        "interleaved: {ROUNDS} rounds of {REQUESTS} requests per case, in a new order each \
         round; ns per request and over the case's baseline: median, then fastest slice"
    );
    for (i, case) in cases.iter().enumerate() {
        let own = &per_request[i];
        let (over_median, over_fastest) = match baseline(i) {
            Some(b) => (
                median(own) - median(&per_request[b]),
                fastest(own) - fastest(&per_request[b]),
            ),
            None => (f64::NAN, f64::NAN),
        };
        println!(
            "  {:<28} {:>8.1}   {:>+8.1}   {:>8.1}   {:>+8.1}",
            case.name,
            median(own),
            over_median,
            fastest(own),
            over_fastest
        );
    }
    // Each ratio from the medians, and its spread over the rounds (a round measures every
    // case within a few seconds).
    let over_in_round = |i: usize, r: usize| {
        let b = baseline(i).expect("a case with a baseline");
        per_request[i][r] - per_request[b][r]
    };
    let over = |i: usize, f: fn(&[f64]) -> f64| {
        let b = baseline(i).expect("a case with a baseline");
        f(&per_request[i]) - f(&per_request[b])
    };
    println!("targets, time over each case's baseline, ours / theirs:");
    for (ours, theirs, limit, strict) in TARGETS {
        let (o, t) = (index(ours), index(theirs));
        let per_round: Vec<f64> = (0..ROUNDS)
            .map(|r| over_in_round(o, r) / over_in_round(t, r))
            .collect();
        let [low, mid, high] = quartiles(&per_round);
        let sign = if strict { "<" } else { "≤" };
        println!(
            "  {ours} / {theirs} (target {sign} {limit}): {:.3} on the medians, {:.3} on the \
             fastest slices (per round: quartiles {low:.3}, {mid:.3}, {high:.3})",
            over(o, median) / over(t, median),
            over(o, fastest) / over(t, fastest)
        );
    }
    let spans = |i: usize| cases[i].spans_per_request * u64::from(REQUESTS) * (ROUNDS as u64 + 1);
    println!("spans lost in the timed slices (dropped at a full queue), of those recorded:");
    for (i, case) in cases.iter().enumerate() {
        if case.count.is_some() && case.spans_per_request > 0 {
            println!("  {:<28} {:>9} of {}", case.name, lost[i], spans(i));
        }
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
