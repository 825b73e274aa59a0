//! `dev::init_with_ui`: the requests metered server layers measure reach both the console
//! summary and the viewer's `/metrics`, sampled or not, filtered or not, each once.
//!
//! One test: the global subscriber can be set only once per test binary.
#![cfg(all(feature = "ui", feature = "metrics", feature = "axum"))]

mod support;

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tracewire::ServerLayer;

const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00";

/// The `tracewire_ui_requests_total` sample of `operation` (service `checkout`, class 2xx).
fn requests(text: &str, operation: &str) -> Option<f64> {
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let found = scrape.samples.into_iter().find(|s| {
        s.metric == "tracewire_ui_requests_total"
            && s.labels.get("service") == Some("checkout")
            && s.labels.get("operation") == Some(operation)
            && s.labels.get("status_class") == Some("2xx")
    })?;
    match found.value {
        prometheus_parse::Value::Counter(v) => Some(v),
        other => panic!("{other:?}"),
    }
}

#[test]
fn init_with_ui_counts_every_measured_request_in_the_viewer_and_the_summary() {
    // The only thread yet: the test harness runs this binary's one test.
    std::env::set_var(tracewire::ui::ADDR_ENV, "127.0.0.1:0");
    let guard = tracewire::dev::init_with_ui("checkout");
    let viewer = guard.viewer_addr().expect("the viewer runs");
    let console = guard.console().expect("installed");
    let provider = SdkMeterProvider::builder().build();
    let traces_held = support::runtime().block_on(async {
        let app = Router::new()
            .route("/users", get(|| async { "ana" }))
            .route("/health", get(|| async { "ok" }))
            .layer(
                ServerLayer::new()
                    .filter(|head| head.uri.path() != "/health")
                    .metrics(&provider),
            );
        let addr = support::serve(app).await;
        let client = reqwest::Client::new();
        for (path, traceparent) in [
            ("/users", SAMPLED),
            ("/users", UNSAMPLED),
            ("/users", UNSAMPLED),
            ("/health", SAMPLED),
        ] {
            let response = client
                .get(format!("http://{addr}{path}"))
                .header("traceparent", traceparent)
                .send()
                .await
                .expect("server answers");
            assert_eq!(response.status(), StatusCode::OK);
            response.text().await.expect("body");
        }
        // Waits (10 s at most) for the three requests and the sampled one's trace.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = client
                .get(format!("http://{viewer}/metrics"))
                .send()
                .await
                .expect("viewer answers")
                .text()
                .await
                .expect("body");
            let users = requests(&text, "GET /users");
            let held = text
                .lines()
                .find_map(|l| l.strip_prefix("tracewire_ui_traces_held "))
                .map(|n| n.trim().parse::<f64>().expect("a number"));
            if users >= Some(3.0) && held >= Some(1.0) {
                // Measured and traced: once. Filtered: measured all the same.
                assert_eq!(users, Some(3.0), "{text}");
                assert_eq!(requests(&text, "GET /health"), Some(1.0), "{text}");
                break held;
            }
            assert!(Instant::now() < deadline, "timed out: {text}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // Only the sampled request was traced.
    assert_eq!(traces_held, Some(1.0));
    guard.flush().expect("flush");
    let rows: Vec<(String, u64)> = console
        .summary()
        .into_iter()
        .map(|r| (r.operation, r.traces))
        .collect();
    assert_eq!(
        rows,
        [("GET /health".to_owned(), 1), ("GET /users".to_owned(), 3)]
    );
    drop(guard);
}
