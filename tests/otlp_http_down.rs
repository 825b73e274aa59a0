//! Requests through a traced axum server and a traced reqwest client while the OTLP receiver
//! is up, down (connections refused), stuck (connections accepted, never answered) and back:
//!
//! - the request path never waits on the exporter: every request completes while an export
//!   is provably stuck (its timeouts are ten minutes, and no export finishes during the
//!   phase); median latencies of each phase are printed (`--nocapture`) and compared with a
//!   generous bound;
//! - spans that cannot wait are dropped and counted: the queue never holds more than its
//!   capacity;
//! - exports resume once a receiver listens again.
#![cfg(all(feature = "otel", feature = "reqwest", feature = "axum"))]

mod otlp_support;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithTonicConfig};
use otlp_support::{BlackHole, Receiver};
use reqwest_middleware::ClientWithMiddleware;
use tokio::net::TcpListener;
use tracewire::record::Recorder;
use tracewire::record::RecorderGuard;
use tracewire::report::{OtelCounters, OtelReporter};
use tracewire::reqwest::TracingMiddleware;
use tracewire::ServerLayer;
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(60);
const QUEUE: usize = 256;
const BATCH: usize = 64;
/// Requests measured per phase.
const REQUESTS: usize = 200;
/// Spans per request: the client span and the server span.
const SPANS_PER_REQUEST: usize = 2;
/// No request may take this long; the stuck export would hold one for ten minutes.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// The application side: a traced server and a traced client on a current-thread runtime.
struct App {
    rt: tokio::runtime::Runtime,
    http: ClientWithMiddleware,
    url: String,
}

impl App {
    fn start() -> App {
        let rt = support::runtime();
        let addr = rt.block_on(support::serve(
            Router::new()
                .route("/work", get(|| async { "done" }))
                .layer(ServerLayer::new().service_name("api")),
        ));
        let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(TracingMiddleware::new().service_name("caller"))
            .build();
        App {
            rt,
            http,
            url: format!("http://{addr}/work"),
        }
    }

    /// Sends `n` requests one after the other; their latencies, sorted.
    fn requests(&self, n: usize) -> Vec<Duration> {
        self.rt.block_on(async {
            let mut latencies = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                let body = tokio::time::timeout(REQUEST_LIMIT, async {
                    let response = self.http.get(&self.url).send().await?;
                    Ok::<_, reqwest_middleware::Error>(response.text().await?)
                })
                .await
                .expect("a request waited on the exporter")
                .unwrap();
                latencies.push(started.elapsed());
                assert_eq!(body, "done");
            }
            latencies.sort();
            latencies
        })
    }
}

fn median(latencies: &[Duration]) -> Duration {
    latencies[latencies.len() / 2]
}

/// Sends one request at a time until `done` holds; fails the test after `WAIT`.
fn until(app: &App, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        app.requests(1);
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn exporter_setup(
    export_rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
) -> (
    RecorderGuard,
    OtelCounters,
    impl tracing::Subscriber + Send + Sync,
) {
    let exporter = {
        let _entered = export_rt.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{addr}"))
            // Longer than the test: nothing but a receiver's answer ends an export.
            .with_timeout(Duration::from_secs(600))
            .with_retry_policy(RetryPolicy::disabled())
            .build()
            .unwrap()
    };
    let handle = export_rt.handle().clone();
    let otel = OtelReporter::builder(exporter)
        .export_interval(Duration::ZERO)
        .max_export_batch_size(BATCH)
        .export_timeout(Duration::from_secs(600))
        .runtime(handle.clone())
        .build();
    let counters = otel.counters();
    let (layer, guard) = Recorder::builder()
        .service_name("test")
        .queue_capacity(QUEUE)
        .max_batch_size(BATCH)
        .flush_interval(Duration::from_millis(5))
        .reporter(otel)
        .build();
    (guard, counters, tracing_subscriber::registry().with(layer))
}

#[test]
fn requests_never_wait_on_a_down_or_stuck_receiver_and_export_resumes() {
    let export_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let receiver = export_rt
        .block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let addr = receiver.addr;
    let (guard, counters, subscriber) = exporter_setup(&export_rt, addr);

    tracing::subscriber::with_default(subscriber, || {
        let app = App::start();

        // Up: spans arrive; the baseline latency.
        app.requests(20);
        assert!(receiver.wait_for_span("GET /work", WAIT));
        let up = app.requests(REQUESTS);

        // Down: connections are refused; exports fail and are counted.
        export_rt.block_on(receiver.stop());
        let errors_before = counters.stats().export_errors;
        until(&app, "failed exports", || {
            counters.stats().export_errors >= errors_before + 2
        });
        let down = app.requests(REQUESTS);

        // Stuck: the exporter connects to something that never answers.
        let hole =
            export_rt.block_on(async { BlackHole::start(TcpListener::bind(addr).await.unwrap()) });
        until(&app, "the exporter to connect to the black hole", || {
            hole.accepted.load(Ordering::SeqCst) >= 1
        });
        let before = counters.stats();
        let dropped_before = guard.stats().spans_dropped;
        let stuck = app.requests(REQUESTS);
        let after = counters.stats();
        let pipeline = guard.stats();
        // No export finished, failed or timed out during the phase: the exporter was stuck
        // throughout, and every request completed anyway.
        assert_eq!(after.exports, before.exports, "{after:?}");
        assert_eq!(after.export_errors, before.export_errors, "{after:?}");
        assert_eq!(after.export_timeouts, 0, "{after:?}");
        // What could not wait was dropped and counted; the queue stayed bounded.
        let produced = (REQUESTS * SPANS_PER_REQUEST) as u64;
        let dropped = pipeline.spans_dropped - dropped_before;
        assert!(
            dropped >= produced - (QUEUE + BATCH) as u64,
            "{dropped} of {produced} spans dropped: {pipeline:?}"
        );
        // Waiting: the queue, and what the stuck exporter holds (its buffer and the export).
        assert!(
            pipeline.queued <= (QUEUE + 2 * BATCH) as u64,
            "{pipeline:?}"
        );

        let (up, down, stuck) = (median(&up), median(&down), median(&stuck));
        println!(
            "median request latency over {REQUESTS} requests: receiver up {up:?}, \
             down {down:?}, stuck {stuck:?}"
        );
        // Generous: only an exporter in the request path would break it (a stuck one would
        // hold requests for ten minutes).
        let bound = up * 10 + Duration::from_millis(50);
        assert!(down <= bound, "down {down:?} vs up {up:?}");
        assert!(stuck <= bound, "stuck {stuck:?} vs up {up:?}");

        // Back: the stuck connection closes, a receiver listens again, spans arrive.
        export_rt.block_on(hole.close());
        let receiver =
            export_rt.block_on(async { Receiver::start(TcpListener::bind(addr).await.unwrap()) });
        until(&app, "exports to resume", || {
            receiver.wait_for_span("GET /work", Duration::from_millis(20))
        });
        // The receiver stores a request before the exporter hears back: let the worker finish.
        guard.flush().unwrap();
        let stats = counters.stats();
        assert!(stats.exports > after.exports, "{stats:?}");
        assert!(stats.spans_failed > 0, "{stats:?}");
        export_rt.block_on(receiver.stop());
    });
    drop(guard);
}
