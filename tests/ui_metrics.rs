//! The trace viewer's `/metrics` takes the requests of metered server layers from their
//! measurements (`Viewer::count_measured_requests`): unsampled and filtered requests count,
//! each request once; operations no metered layer measures still come from spans.
//!
//! Real axum servers and a real reqwest client on loopback; `/metrics` read with a
//! Prometheus text-format parser (which skips lines whose labels hold braces, so the routes
//! here have no parameters). The tests of this binary share the process's measured
//! requests, so each uses service names of its own.
#![cfg(all(feature = "ui", feature = "metrics", feature = "axum"))]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use serde_json::Value as Json;
use tracewire::record::Recorder;
use tracewire::sampler::AlwaysOff;
use tracewire::ui::Viewer;
use tracewire::ServerLayer;
use tracing_subscriber::layer::SubscriberExt;

fn start() -> Viewer {
    Viewer::builder()
        .addr(([127, 0, 0, 1], 0).into())
        .start()
        .expect("start the viewer")
}

async fn get_text(url: String) -> (StatusCode, String) {
    let response = reqwest::get(url).await.expect("answers");
    (response.status(), response.text().await.expect("body"))
}

async fn scrape(viewer: SocketAddr) -> prometheus_parse::Scrape {
    let (status, text) = get_text(format!("http://{viewer}/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

/// The value of `metric` with these labels (a histogram: its count); 0 when absent.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    match found.map(|s| &s.value) {
        None => 0.0,
        Some(
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v),
        ) => *v,
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            buckets.iter().map(|b| b.count).fold(0.0, f64::max)
        }
        Some(other) => panic!("{other:?}"),
    }
}

fn requests(scrape: &prometheus_parse::Scrape, service: &str, operation: &str, class: &str) -> f64 {
    value(
        scrape,
        "tracewire_ui_requests_total",
        &[
            ("service", service),
            ("operation", operation),
            ("status_class", class),
        ],
    )
}

fn durations(scrape: &prometheus_parse::Scrape, service: &str, operation: &str) -> f64 {
    value(
        scrape,
        "tracewire_ui_request_duration_seconds",
        &[("service", service), ("operation", operation)],
    )
}

/// Scrapes until `done` holds (10 s at most), and returns that scrape.
async fn wait_for(
    viewer: SocketAddr,
    done: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> prometheus_parse::Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = scrape(viewer).await;
        if done(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {:#?}",
            scrape
                .samples
                .iter()
                .filter(|s| !s.metric.ends_with("_bucket"))
                .map(|s| (&s.metric, &s.labels, &s.value))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(addr: SocketAddr, path: &str, traceparent: Option<&str>) -> StatusCode {
    let mut request = reqwest::Client::new().get(format!("http://{addr}{path}"));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.expect("server answers");
    let status = response.status();
    response.text().await.expect("body");
    status
}

#[test]
fn unsampled_requests_count_in_the_viewer_metrics() {
    const N: usize = 20;
    let viewer = start();
    viewer.count_measured_requests("test");
    let (layer, guard) = Recorder::builder()
        .service_name("test")
        .sampler(AlwaysOff)
        .reporter(viewer.reporter())
        .build();
    let provider = SdkMeterProvider::builder().build();
    let viewer_addr = viewer.addr();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        support::runtime().block_on(async {
            let app = Router::new()
                .route("/users", get(|| async { "ana" }))
                .route(
                    "/fail",
                    get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
                )
                .layer(
                    ServerLayer::new()
                        .service_name("unsampled")
                        .metrics(&provider),
                );
            let addr = support::serve(app).await;
            for i in 0..N {
                assert_eq!(
                    send(addr, &format!("/users?id={i}"), None).await,
                    StatusCode::OK
                );
            }
            for _ in 0..3 {
                let status = send(addr, "/fail", None).await;
                assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            }
            let scrape = wait_for(viewer_addr, |s| {
                durations(s, "unsampled", "GET /users") >= N as f64
                    && durations(s, "unsampled", "GET /fail") >= 3.0
            })
            .await;
            assert_eq!(
                requests(&scrape, "unsampled", "GET /users", "2xx"),
                N as f64
            );
            assert_eq!(durations(&scrape, "unsampled", "GET /users"), N as f64);
            assert_eq!(requests(&scrape, "unsampled", "GET /fail", "5xx"), 3.0);
            assert_eq!(requests(&scrape, "unsampled", "GET /fail", "2xx"), 0.0);
            assert_eq!(durations(&scrape, "unsampled", "GET /fail"), 3.0);
        });
    });
    // No trace was sampled: the viewer holds none, and got no span.
    guard.flush().expect("flush");
    let stats = viewer.stats();
    assert_eq!((stats.traces_held, stats.spans_received_local), (0, 0));
    let list: Json = support::runtime().block_on(async {
        let (status, body) = get_text(format!("{}api/traces", viewer.url())).await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_str(&body).expect("JSON")
    });
    assert_eq!(list["traces"], Json::Array(Vec::new()));
}

#[test]
fn measured_operations_count_once_and_the_others_from_spans() {
    const SAMPLED: usize = 5;
    const FILTERED: usize = 4;
    let viewer = start();
    viewer.count_measured_requests("test");
    let (layer, guard) = Recorder::builder()
        .service_name("test")
        .reporter(viewer.reporter())
        .build();
    let provider = SdkMeterProvider::builder().build();
    let viewer_addr = viewer.addr();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        support::runtime().block_on(async {
            let metered = Router::new()
                .route("/items", get(|| async { "item" }))
                .route("/health", get(|| async { "ok" }))
                .layer(
                    ServerLayer::new()
                        .service_name("sampled")
                        .filter(|head| head.uri.path() != "/health")
                        .metrics(&provider),
                );
            let unmetered = Router::new()
                .route("/plain", get(|| async { "plain" }))
                .layer(ServerLayer::new().service_name("legacy"));
            let addr = support::serve(metered.merge(unmetered)).await;
            for i in 0..SAMPLED {
                assert_eq!(
                    send(addr, &format!("/items?sku={i}"), None).await,
                    StatusCode::OK
                );
            }
            for _ in 0..FILTERED {
                assert_eq!(send(addr, "/health", None).await, StatusCode::OK);
            }
            // Sampled by the caller, not recorded: an unmetered layer's requests come from
            // spans, so this one is not counted.
            let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00";
            assert_eq!(send(addr, "/plain", None).await, StatusCode::OK);
            assert_eq!(send(addr, "/plain", Some(unsampled)).await, StatusCode::OK);
            // Every sampled request's trace is held: its spans have reached the viewer.
            let scrape = wait_for(viewer_addr, |s| {
                value(s, "tracewire_ui_traces_held", &[]) >= (SAMPLED + 1) as f64
                    && durations(s, "sampled", "GET /items") >= SAMPLED as f64
                    && durations(s, "sampled", "GET /health") >= FILTERED as f64
            })
            .await;
            // Measured and traced: counted once, from the measurements.
            assert_eq!(
                requests(&scrape, "sampled", "GET /items", "2xx"),
                SAMPLED as f64
            );
            assert_eq!(durations(&scrape, "sampled", "GET /items"), SAMPLED as f64);
            // Filtered: no span, measured all the same.
            assert_eq!(
                requests(&scrape, "sampled", "GET /health", "2xx"),
                FILTERED as f64
            );
            // Not measured: from spans.
            assert_eq!(requests(&scrape, "legacy", "GET /plain", "2xx"), 1.0);
            assert_eq!(durations(&scrape, "legacy", "GET /plain"), 1.0);
        });
    });
    guard.flush().expect("flush");
    assert_eq!(viewer.stats().traces_held, SAMPLED + 1);
}

#[test]
fn dropping_a_viewer_leaves_the_others_counting() {
    let provider = SdkMeterProvider::builder().build();
    let (first, second) = (start(), start());
    first.count_measured_requests("test");
    second.count_measured_requests("test");
    let second_addr = second.addr();
    drop(first);
    support::runtime().block_on(async {
        let app = Router::new()
            .route("/gone", get(|| async { "gone" }))
            .layer(
                ServerLayer::new()
                    .service_name("dropped")
                    .metrics(&provider),
            );
        let addr = support::serve(app).await;
        assert_eq!(send(addr, "/gone", None).await, StatusCode::OK);
        let scrape = wait_for(second_addr, |s| durations(s, "dropped", "GET /gone") >= 1.0).await;
        assert_eq!(durations(&scrape, "dropped", "GET /gone"), 1.0);
    });
}
