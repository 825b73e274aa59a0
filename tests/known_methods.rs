//! `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` replaces the standard methods in spans and
//! metrics, on the server and the client. The list is one per process, so this binary holds
//! one test, which fixes it.
#![cfg(feature = "metrics")]

mod support;

use std::collections::BTreeMap;

use axum::routing::any;
use axum::Router;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use support::*;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::config::{KnownMethods, KnownMethodsError};
use tracewire::env::{EnvConfig, EnvWarning};
use tracewire::record::Recorder;
use tracewire::span::SpanKind;
use tracewire::{ClientLayer, ServerLayer};

/// The `http.request.method` of each data point of `name`, with its count.
fn methods(
    provider: &SdkMeterProvider,
    exporter: &InMemoryMetricExporter,
    name: &str,
) -> BTreeMap<String, u64> {
    provider.force_flush().unwrap();
    let exported = exporter.get_finished_metrics().unwrap();
    let mut found = BTreeMap::new();
    for scope in exported.last().expect("metrics exported").scope_metrics() {
        for metric in scope.metrics().filter(|m| m.name() == name) {
            let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
                panic!("{name} is not an f64 histogram");
            };
            for point in histogram.data_points() {
                let method = point
                    .attributes()
                    .find(|kv| kv.key.as_str() == "http.request.method")
                    .map(|kv| kv.value.to_string())
                    .expect("http.request.method");
                *found.entry(method).or_default() += point.count();
            }
        }
    }
    found
}

fn attr(span: &tracewire::span::SpanRecord, key: &str) -> Option<String> {
    span.attribute(key).map(|v| v.as_str().into_owned())
}

#[test]
fn the_environment_replaces_the_known_methods_of_spans_and_metrics() {
    let env = EnvConfig::from_lookup(|name| {
        (name == "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS").then_some(" GET, PROPFIND ,MKCOL")
    });
    assert!(env.warnings.is_empty(), "{:?}", env.warnings);
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();

    let builder = Recorder::builder()
        .service_name("known-methods")
        .with_env_config(&env);
    let (recorded, ()) = with_recorder(builder, |_| async {
        let app = Router::new()
            .route("/files/{*path}", any(|| async { "ok" }))
            .layer(ServerLayer::new().metrics(&provider));
        let addr = serve(app).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new().metrics(&provider))
            .service(hyper_client());
        for method in ["PROPFIND", "MKCOL", "GET", "POST", "get"] {
            let request = http::Request::builder()
                .method(method)
                .uri(format!("http://{addr}/files/a.txt"))
                .body(Default::default())
                .unwrap();
            let response = client.ready().await.unwrap().call(request).await.unwrap();
            assert_eq!(response.status(), 200, "{method}");
            text(response.into_body()).await;
        }
    });

    let spans = recorded.spans.spans();
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server)
        .collect();
    let clients: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client)
        .collect();
    assert_eq!((servers.len(), clients.len()), (5, 5), "{spans:#?}");
    let mut server_names: Vec<_> = servers.iter().map(|s| s.name.to_string()).collect();
    server_names.sort();
    assert_eq!(
        server_names,
        [
            "GET /files/{*path}",
            "HTTP /files/{*path}",
            "HTTP /files/{*path}",
            "MKCOL /files/{*path}",
            "PROPFIND /files/{*path}",
        ]
    );
    for span in servers.iter().chain(&clients) {
        let method = attr(span, "http.request.method").expect("http.request.method");
        let original = attr(span, "http.request.method_original");
        match method.as_str() {
            // The list is a full override: POST is no longer known, and `get` is not `GET`.
            "_OTHER" => assert!(
                matches!(original.as_deref(), Some("POST" | "get")),
                "{span:#?}"
            ),
            "PROPFIND" | "MKCOL" | "GET" => assert_eq!(original, None, "{span:#?}"),
            other => panic!("{other} in {span:#?}"),
        }
    }
    let mut client_names: Vec<_> = clients.iter().map(|s| s.name.to_string()).collect();
    client_names.sort();
    assert_eq!(client_names, ["GET", "HTTP", "HTTP", "MKCOL", "PROPFIND"]);

    let expected: BTreeMap<String, u64> =
        [("GET", 1), ("MKCOL", 1), ("PROPFIND", 1), ("_OTHER", 2)]
            .map(|(m, n)| (m.to_owned(), n))
            .into();
    for name in [
        "http.server.request.duration",
        "http.client.request.duration",
    ] {
        assert_eq!(methods(&provider, &exporter, name), expected, "{name}");
    }

    // Requests fixed the list: installing the same one again succeeds, another one is
    // refused, and a recorder built with another list says so.
    KnownMethods::parse("GET,PROPFIND,MKCOL")
        .unwrap()
        .install()
        .unwrap();
    assert_eq!(
        KnownMethods::standard().install(),
        Err(KnownMethodsError::AlreadyFixed)
    );
    let other = EnvConfig::from_lookup(|name| {
        (name == "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS").then_some("GET")
    });
    let (_layer, guard) = Recorder::builder().with_env_config(&other).build();
    assert_eq!(
        guard.env_warnings(),
        [EnvWarning::KnownMethods(KnownMethodsError::AlreadyFixed)]
    );
}
