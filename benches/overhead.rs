//! Per-request overhead of tracing stacks over the bare service, in one run: an in-memory
//! `GET /users/{id}` axum request carrying a sampled `traceparent`, through
//!
//! - `bare`: the router alone;
//! - `tower_http`: tower-http's `TraceLayer` over a registry whose only layer counts spans
//!   (no propagation, no export);
//! - `otel_stack`: axum-tracing-opentelemetry's `OtelAxumLayer`, tracing-opentelemetry and
//!   the opentelemetry SDK's batch processor, with an exporter that counts and drops;
//! - `fastrace`: fastrace-axum's `FastraceLayer` and fastrace, with a reporter that counts
//!   and drops;
//! - `tracewire_sampled`, `tracewire_unsampled`: tracewire's `ServerLayer` and recorder,
//!   with a reporter that counts and drops;
//! - `tracewire_client`: the same plus the `ClientLayer` around an inner (in-memory) call
//!   the handler makes; compare it with `bare_client`, the same handler and call untraced;
//! - `tracewire_sampled_metrics`, `tracewire_unsampled_metrics`: `tracewire_sampled` and
//!   `tracewire_unsampled` with the request metrics on (`ServerLayer::metrics`, the SDK's
//!   meter provider with a reader that does not run during the measurement);
//! - `otel_stack_metrics`: `otel_stack` plus `http.server.request.duration` recorded with
//!   the SDK's histogram by a middleware, as a service without tracewire would.
//!
//! ```sh
//! cargo bench --bench overhead            # allocations per request, interleaved timings
//!                                         # (see `interleaved`), then criterion's
//! # One case only, N requests, printing the mean time per request; run it under
//! # `valgrind --tool=callgrind --separate-threads=yes` for instruction counts:
//! TRACEWIRE_BENCH_CASE=tracewire_sampled TRACEWIRE_BENCH_REQUESTS=20000 \
//!     target/release/deps/overhead-<hash> --bench
//! ```
//!
//! `benches/instructions.sh` runs every case under callgrind and prints instructions per
//! request (main thread), from the difference between 10,000 and 20,000 requests.
//!
//! Before measuring, every case is checked: it must record, and every span it makes must
//! reach its exporter or reporter, so that no case wins by doing nothing.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

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
use tracewire::{ClientLayer, ServerLayer};
use tracing_subscriber::layer::SubscriberExt;

mod support;
use support::{
    count_allocations, fastest, interleave, median, quartiles, Count, CountSpans, Counting,
};

#[global_allocator]
static GLOBAL: Counting = Counting;

const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

async fn user(Path(id): Path<u64>) -> String {
    format!("user {id}")
}

/// The inner dependency a handler calls: in memory, so only the layers' cost shows.
type Inner = BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<Body>, Infallible>;

fn inner_service(traced: bool) -> Inner {
    let profile = service_fn(|_req: http::Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(Body::from("profile")))
    });
    if traced {
        let traced = ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(profile)
            .map_response(|r: http::Response<_>| r.map(Body::new));
        BoxCloneSyncService::new(traced)
    } else {
        BoxCloneSyncService::new(profile)
    }
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
}

/// The router as `axum::serve` runs it: routes finalized once.
fn router(layer: impl FnOnce(Router) -> Router) -> Router {
    layer(Router::new().route("/users/{id}", get(user))).with_state(())
}

/// Drives a future that never waits on I/O (an in-memory request) to completion.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// One request, its body read to the end (which is what ends a server span).
fn request(app: &Router, traceparent: &str) {
    let request = http::Request::get("/users/42")
        .header("traceparent", traceparent)
        .body(Body::empty())
        .unwrap();
    run(async {
        let response = app.clone().oneshot(request).await.unwrap();
        assert!(response.status().is_success());
        let body = response.into_body().collect().await.unwrap();
        std::hint::black_box(body);
    });
}

struct Case {
    name: &'static str,
    app: Router,
    traceparent: &'static str,
    dispatch: Option<tracing::Dispatch>,
    /// Spans each request must produce, and where they arrive.
    spans_per_request: u64,
    count: Option<Count>,
    /// Hands everything recorded so far to the exporter or reporter.
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

fn tower_http_case() -> Case {
    let count = CountSpans::default();
    Case {
        name: "tower_http",
        app: router(|r| r.layer(tower_http::trace::TraceLayer::new_for_http())),
        traceparent: SAMPLED,
        dispatch: Some(tracing::Dispatch::new(
            tracing_subscriber::registry().with(count.clone()),
        )),
        spans_per_request: 1,
        count: Some(count.0),
        flush: Box::new(|| {}),
        _guard: None,
    }
}

fn otel_case() -> Case {
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
        name: "otel_stack",
        app: router(|r| r.layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())),
        traceparent: SAMPLED,
        dispatch: Some(tracing::Dispatch::new(
            tracing_subscriber::registry().with(layer),
        )),
        spans_per_request: 1,
        count: Some(count),
        flush: Box::new(move || {
            provider.force_flush().expect("otel flush");
        }),
        _guard: None,
    }
}

fn fastrace_case() -> Case {
    let count = Count::default();
    fastrace::set_reporter(count.clone(), fastrace::collector::Config::default());
    Case {
        name: "fastrace",
        app: router(|r| r.layer(fastrace_axum::FastraceLayer::default())),
        traceparent: SAMPLED,
        dispatch: None,
        spans_per_request: 1,
        count: Some(count),
        flush: Box::new(fastrace::flush),
        _guard: None,
    }
}

fn tracewire_case(
    name: &'static str,
    traceparent: &'static str,
    app: Router,
    spans_per_request: u64,
) -> Case {
    let count = Count::default();
    let (recorder, guard) = Recorder::builder()
        .service_name("bench")
        .reporter(count.clone())
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

fn with_call(traced: bool) -> Router {
    let app = Router::new().route("/users/{id}", get(user_with_call));
    let app = if traced {
        app.layer(ServerLayer::new())
    } else {
        app
    };
    app.with_state(inner_service(traced))
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

const CASES: [&str; 12] = [
    "bare",
    "noop_layer",
    "tower_http",
    "otel_stack",
    "fastrace",
    "tracewire_sampled",
    "tracewire_unsampled",
    "bare_client",
    "tracewire_client",
    "tracewire_sampled_metrics",
    "tracewire_unsampled_metrics",
    "otel_stack_metrics",
];

/// Builds one case; only what it needs is started (no other stack's background threads).
fn case(name: &str) -> Case {
    match name {
        "bare" => bare("bare", router(|r| r)),
        // What `Router::layer` costs any middleware that wraps the body: axum boxes the
        // layered service, its future and the new body type.
        "noop_layer" => bare("noop_layer", router(|r| r.layer(NoopLayer))),
        "tower_http" => tower_http_case(),
        "otel_stack" => otel_case(),
        "fastrace" => fastrace_case(),
        "tracewire_sampled" => tracewire_case(
            name_of(name),
            SAMPLED,
            router(|r| r.layer(ServerLayer::new())),
            1,
        ),
        "tracewire_unsampled" => tracewire_case(
            name_of(name),
            UNSAMPLED,
            router(|r| r.layer(ServerLayer::new())),
            0,
        ),
        "bare_client" => bare("bare_client", with_call(false)),
        "tracewire_client" => tracewire_case(name_of(name), SAMPLED, with_call(true), 2),
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
        other => panic!("unknown case {other}; cases: {CASES:?}"),
    }
}

fn name_of(name: &str) -> &'static str {
    CASES.iter().find(|c| **c == name).expect("known case")
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

fn overhead(c: &mut Criterion) {
    // Instruction counting under callgrind: build and run one case, nothing else.
    if let Ok(name) = std::env::var("TRACEWIRE_BENCH_CASE") {
        let n: u64 = std::env::var("TRACEWIRE_BENCH_REQUESTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000);
        let case = case(&name);
        let started = std::time::Instant::now();
        case.run(|| (0..n).for_each(|_| request(&case.app, case.traceparent)));
        println!("{name}: {:?} per request", started.elapsed() / n as u32);
        (case.flush)();
        return;
    }
    let cases: Vec<Case> = CASES.iter().map(|name| case(name)).collect();
    let bare = verify_and_count(&cases[0]);
    let bare_client = verify_and_count(&cases[7]);
    println!("allocations per request, and over the bare router (same run):");
    for case in &cases {
        let per_request = verify_and_count(case);
        let baseline = if case.name.ends_with("client") {
            bare_client
        } else {
            bare
        };
        println!(
            "  {:<22} {:>6.1}   {:>+6.1}",
            case.name,
            per_request,
            per_request - baseline
        );
    }
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
    let baseline = |case: &Case| {
        index(if case.name.ends_with("client") {
            "bare_client"
        } else {
            "bare"
        })
    };
    println!(
        "interleaved: {ROUNDS} rounds of {REQUESTS} requests per case, in a new order each \
         round; ns per request and over the bare router: median, then fastest slice"
    );
    for (i, case) in cases.iter().enumerate() {
        let (own, base) = (&per_request[i], &per_request[baseline(case)]);
        println!(
            "  {:<22} {:>8.1}   {:>+8.1}   {:>8.1}   {:>+8.1}",
            case.name,
            median(own),
            median(own) - median(base),
            fastest(own),
            fastest(own) - fastest(base)
        );
    }
    // Each ratio from the medians, and its spread over the rounds (a round measures every
    // case within a fraction of a second).
    let ratio = |ours: &str, theirs: &str| {
        let (o, t, b) = (index(ours), index(theirs), index("bare"));
        let over = |i: usize| median(&per_request[i]) - median(&per_request[b]);
        let over_fastest = |i: usize| fastest(&per_request[i]) - fastest(&per_request[b]);
        let per_round: Vec<f64> = (0..ROUNDS)
            .map(|r| {
                (per_request[o][r] - per_request[b][r]) / (per_request[t][r] - per_request[b][r])
            })
            .collect();
        let [low, mid, high] = quartiles(&per_round);
        println!(
            "  {ours} / {theirs}: {:.3} on the medians, {:.3} on the fastest slices (per \
             round: quartiles {low:.3}, {mid:.3}, {high:.3})",
            over(o) / over(t),
            over_fastest(o) / over_fastest(t)
        );
    };
    println!("overhead over bare, ours against theirs:");
    ratio("tracewire_sampled", "otel_stack");
    ratio("tracewire_sampled", "fastrace");
    ratio("tracewire_sampled", "tower_http");
    ratio("tracewire_unsampled", "tower_http");
    ratio("tracewire_sampled_metrics", "otel_stack_metrics");
    let spans = |i: usize| cases[i].spans_per_request * u64::from(REQUESTS) * (ROUNDS as u64 + 1);
    println!("spans lost in the timed slices (dropped at a full queue), of those recorded:");
    for (i, case) in cases.iter().enumerate() {
        if case.count.is_some() && case.spans_per_request > 0 {
            println!("  {:<22} {:>9} of {}", case.name, lost[i], spans(i));
        }
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
