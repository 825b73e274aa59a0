//! `dev::init`'s summary takes the requests of metered server layers from their measurements:
//! unsampled and filtered requests count, each request once.
//!
//! One test: the global subscriber can be set only once per test binary.
#![cfg(all(feature = "metrics", feature = "console", feature = "axum"))]

mod support;

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use support::{get_req, hyper_client, runtime, serve, text};
use tracewire::report::console::OperationSummary;
use tracewire::ServerLayer;

const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00";

#[test]
fn the_summary_counts_every_request_a_metered_layer_measures() {
    let guard = tracewire::dev::try_init("checkout").expect("the first install");
    let console = guard.console().unwrap();
    // No reader: nothing is exported, the summary is fed all the same.
    let provider = SdkMeterProvider::builder().build();
    runtime().block_on(async {
        let metered = Router::new()
            .route("/users/{id}", get(|| async { "ana" }))
            .route("/health", get(|| async { "ok" }))
            .route(
                "/fail",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
            )
            .layer(
                ServerLayer::new()
                    .filter(|head| head.uri.path() != "/health")
                    .metrics(&provider),
            );
        let unmetered = Router::new()
            .route("/plain", get(|| async { "plain" }))
            .layer(ServerLayer::new().service_name("legacy"));
        let addr = serve(metered.merge(unmetered)).await;
        let client = hyper_client();
        for (path, traceparent) in [
            ("/users/1", SAMPLED),
            ("/users/2", UNSAMPLED),
            ("/users/3", UNSAMPLED),
            ("/health", SAMPLED),
            ("/fail", UNSAMPLED),
            ("/plain", SAMPLED),
            ("/plain", UNSAMPLED),
        ] {
            let mut request = get_req(&format!("http://{addr}{path}"));
            request
                .headers_mut()
                .insert("traceparent", traceparent.parse().unwrap());
            let response = client.request(request).await.unwrap();
            text(response.into_body()).await;
        }
    });
    guard.flush().unwrap();
    let rows: Vec<(String, String, u64, u64)> = console
        .summary()
        .into_iter()
        .map(|r: OperationSummary| (r.service.to_string(), r.operation, r.traces, r.errors))
        .collect();
    let row = |service: &str, operation: &str, traces, errors| {
        (service.to_owned(), operation.to_owned(), traces, errors)
    };
    assert_eq!(
        rows,
        vec![
            // Measured: the unsampled request counts, the sampled one's span not again.
            row("checkout", "GET /fail", 1, 1),
            // Filtered: no span, measured all the same.
            row("checkout", "GET /health", 1, 0),
            row("checkout", "GET /users/{id}", 3, 0),
            // Not measured: from spans, so the unsampled request is not there.
            row("legacy", "GET /plain", 1, 0),
        ]
    );
    drop(guard);
}
