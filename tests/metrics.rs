//! Request metrics recorded by the layers, read back through the SDK's in-memory exporter:
//! names, units, buckets and attributes as the semantic conventions say; every request
//! counted (unsampled, filtered, without a recorder, cancelled); no series a caller can make.
#![cfg(feature = "metrics")]

mod grpc_support;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use support::*;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::metrics::{Metered, DURATION_BUCKETS};
use tracewire::record::Recorder;
use tracewire::sampler::AlwaysOff;
use tracewire::{ClientLayer, ServerLayer};

/// A meter provider and what it exported.
struct Meters {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl Meters {
    fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        Meters { provider, exporter }
    }

    /// The data points of `name` (a histogram), each as its attributes and count, after
    /// checking the instrument's unit and buckets.
    fn histogram(&self, name: &str) -> Vec<(BTreeMap<String, String>, u64)> {
        self.provider.force_flush().unwrap();
        let exported = self.exporter.get_finished_metrics().unwrap();
        let last = exported.last().expect("metrics exported");
        let mut points = Vec::new();
        for scope in last.scope_metrics() {
            for metric in scope.metrics().filter(|m| m.name() == name) {
                assert_eq!(metric.unit(), "s", "{name}");
                let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
                    panic!("{name} is not an f64 histogram: {:?}", metric.data());
                };
                for point in histogram.data_points() {
                    let bounds: Vec<f64> = point.bounds().collect();
                    assert_eq!(bounds, DURATION_BUCKETS, "{name}");
                    let attributes = point
                        .attributes()
                        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                        .collect();
                    points.push((attributes, point.count()));
                }
            }
        }
        points
    }
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn app(meters: &Meters, layer: ServerLayer) -> Router {
    routes(layer.metrics(&meters.provider))
}

fn routes(layer: ServerLayer<Metered>) -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "ana" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .route("/health", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .layer(layer)
}

async fn get_status(client: &HyperClient, url: String) -> u16 {
    let response = client.request(get_req(&url)).await.unwrap();
    let status = response.status().as_u16();
    text(response.into_body()).await;
    status
}

#[test]
fn http_durations_carry_the_conventions_attributes_on_both_sides() {
    let meters = Meters::new();
    http_durations(&meters, &meters.provider);
}

/// A provider other than the SDK's (here the SDK's behind `dyn MeterProvider`, as the global
/// provider is) gets the prepared attribute sets instead of bound instruments: the same series.
#[test]
fn another_provider_records_the_same_series() {
    let meters = Meters::new();
    let provider: Arc<dyn MeterProvider + Send + Sync> = Arc::new(meters.provider.clone());
    http_durations(&meters, &*provider);
}

fn http_durations<P: MeterProvider + ?Sized + 'static>(meters: &Meters, provider: &P) {
    let (_, port) = recorded(|_| async {
        let addr = serve(routes(ServerLayer::new().metrics(provider))).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new().metrics(provider))
            .service(hyper_client());
        for path in ["/users/1", "/users/2", "/fail", "/nowhere"] {
            let response = client
                .ready()
                .await
                .unwrap()
                .call(get_req(&format!("http://{addr}{path}")))
                .await
                .unwrap();
            text(response.into_body()).await;
        }
        addr.port().to_string()
    });
    let server = meters.histogram("http.server.request.duration");
    let base = [
        ("http.request.method", "GET"),
        ("url.scheme", "http"),
        ("network.protocol.version", "1.1"),
    ];
    let with = |more: &[(&str, &str)]| {
        let mut all = base.to_vec();
        all.extend_from_slice(more);
        attrs(&all)
    };
    let mut expected = vec![
        (
            with(&[
                ("http.route", "/users/{id}"),
                ("http.response.status_code", "200"),
            ]),
            2,
        ),
        (
            with(&[
                ("http.route", "/fail"),
                ("http.response.status_code", "500"),
                ("error.type", "500"),
            ]),
            1,
        ),
        // No route matched: no `http.route`, never the path; 404 is no server error.
        (with(&[("http.response.status_code", "404")]), 1),
    ];
    let mut server = server;
    server.sort();
    expected.sort();
    assert_eq!(server, expected);

    let mut client = meters.histogram("http.client.request.duration");
    // `url.scheme` is Opt-In on a client's durations.
    let client_base = |code: &str, error: Option<&str>| {
        let mut all = vec![
            ("http.request.method", "GET"),
            ("network.protocol.version", "1.1"),
        ];
        all.extend_from_slice(&[
            ("server.address", "127.0.0.1"),
            ("server.port", port.as_str()),
            ("http.response.status_code", code),
        ]);
        if let Some(error) = error {
            all.push(("error.type", error));
        }
        attrs(&all)
    };
    let mut expected = vec![
        (client_base("200", None), 2),
        (client_base("500", Some("500")), 1),
        // A client's 4xx is an error.
        (client_base("404", Some("404")), 1),
    ];
    client.sort();
    expected.sort();
    assert_eq!(client, expected);
}

fn total(points: &[(BTreeMap<String, String>, u64)]) -> u64 {
    points.iter().map(|(_, count)| count).sum()
}

#[test]
fn every_request_counts_sampled_or_not_filtered_or_not_recorder_or_not() {
    let meters = Meters::new();
    let layer = || ServerLayer::new().filter(|head| head.uri.path() != "/health");
    // Sampled, with a recorder.
    recorded(|_| async {
        let addr = serve(app(&meters, layer())).await;
        let client = hyper_client();
        assert_eq!(
            get_status(&client, format!("http://{addr}/users/1")).await,
            200
        );
        assert_eq!(
            get_status(&client, format!("http://{addr}/health")).await,
            200
        );
    });
    // Nothing sampled.
    with_recorder(Recorder::builder().sampler(AlwaysOff), |_| async {
        let addr = serve(app(&meters, layer())).await;
        let client = hyper_client();
        assert_eq!(
            get_status(&client, format!("http://{addr}/users/1")).await,
            200
        );
    });
    // No recorder at all.
    runtime().block_on(async {
        let addr = serve(app(&meters, layer())).await;
        let client = hyper_client();
        assert_eq!(
            get_status(&client, format!("http://{addr}/users/1")).await,
            200
        );
    });
    let server = meters.histogram("http.server.request.duration");
    let routed = |route: &str| -> u64 {
        server
            .iter()
            .filter(|(a, _)| a.get("http.route").map(String::as_str) == Some(route))
            .map(|(_, count)| count)
            .sum()
    };
    assert_eq!(routed("/users/{id}"), 3, "{server:#?}");
    assert_eq!(
        routed("/health"),
        1,
        "filtered requests are measured by default"
    );

    // Filtered requests left out when asked.
    let meters = Meters::new();
    recorded(|_| async {
        let addr = serve(app(&meters, layer().measure_filtered(false))).await;
        let client = hyper_client();
        get_status(&client, format!("http://{addr}/health")).await;
        get_status(&client, format!("http://{addr}/users/1")).await;
    });
    let server = meters.histogram("http.server.request.duration");
    assert_eq!(total(&server), 1, "{server:#?}");
    assert_eq!(server[0].0.get("http.route").unwrap(), "/users/{id}");
}

#[test]
fn cancelled_requests_count_with_their_error_type() {
    let meters = Meters::new();
    recorded(|_| async {
        let addr = serve(app(&meters, ServerLayer::new())).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new().metrics(&meters.provider))
            .service(hyper_client());
        let call = client
            .ready()
            .await
            .unwrap()
            .call(get_req(&format!("http://{addr}/slow")));
        assert!(tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err());
        // The server notices the connection go and drops the handler.
        let deadline = std::time::Instant::now() + WAIT;
        while total(&meters.histogram("http.server.request.duration")) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the server never noticed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    for name in [
        "http.server.request.duration",
        "http.client.request.duration",
    ] {
        let points = meters.histogram(name);
        assert_eq!(points.len(), 1, "{name}: {points:#?}");
        let (attributes, count) = &points[0];
        assert_eq!(*count, 1);
        assert_eq!(attributes.get("error.type").unwrap(), "cancelled", "{name}");
        assert!(!attributes.contains_key("http.response.status_code"));
        // A client learns the protocol version from the response, and none came.
        assert_eq!(
            attributes.contains_key("network.protocol.version"),
            name.starts_with("http.server"),
            "{name}"
        );
    }
}

#[test]
fn callers_cannot_create_series() {
    let meters = Meters::new();
    recorded(|_| async {
        let addr = serve(app(&meters, ServerLayer::new())).await;
        let client = hyper_client();
        for n in 0..1000 {
            get_status(&client, format!("http://{addr}/made-up/{n}")).await;
            get_status(&client, format!("http://{addr}/users/{n}")).await;
            let method = http::Method::from_bytes(format!("INVENTED{n}").as_bytes()).unwrap();
            let request = http::Request::builder()
                .method(method)
                .uri(format!("http://{addr}/users/{n}"))
                .body(Default::default())
                .unwrap();
            let response = client.request(request).await.unwrap();
            text(response.into_body()).await;
        }
    });
    let server = meters.histogram("http.server.request.duration");
    assert_eq!(total(&server), 3000);
    // Unrouted GET (404), routed GET (200), invented methods on the route (405 from axum).
    assert_eq!(server.len(), 3, "{server:#?}");
    for (attributes, _) in &server {
        let method = attributes.get("http.request.method").unwrap();
        assert!(method == "GET" || method == "_OTHER", "{method}");
        assert!(!attributes
            .values()
            .any(|v| v.contains("made-up") || v.contains("INVENTED")));
    }
}

#[test]
fn grpc_calls_are_measured_with_the_rpc_conventions() {
    use grpc_support::*;
    let meters = Meters::new();
    recorded(|_| async {
        let server = ServerLayer::grpc().metrics(&meters.provider);
        let addr = serve_grpc(server, TestHealth::default()).await;
        let mut health = client(addr, ClientLayer::grpc().metrics(&meters.provider)).await;
        health.check(check_req("ok")).await.unwrap();
        health.check(check_req("INTERNAL")).await.unwrap_err();
        let status = raw_unary(channel(addr).await, uri(addr), "/made.Up/Call42")
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    });
    let mut server = meters.histogram("rpc.server.call.duration");
    server.sort();
    let point = |method: &str, code: &str, error: Option<&str>| {
        let mut all = vec![
            ("rpc.system.name", "grpc"),
            ("rpc.method", method),
            ("rpc.response.status_code", code),
        ];
        if let Some(error) = error {
            all.push(("error.type", error));
        }
        (attrs(&all), 1)
    };
    let mut expected = vec![
        point(CHECK, "OK", None),
        point(CHECK, "INTERNAL", Some("INTERNAL")),
        // The made-up method is not named.
        point("_OTHER", "UNIMPLEMENTED", Some("UNIMPLEMENTED")),
    ];
    expected.sort();
    assert_eq!(server, expected);
    let client = meters.histogram("rpc.client.call.duration");
    assert_eq!(total(&client), 2, "{client:#?}");
    assert!(client
        .iter()
        .all(|(a, _)| a.get("rpc.method").map(String::as_str) == Some(CHECK)));
    // gRPC calls are not counted as HTTP requests too.
    assert!(meters.histogram("http.server.request.duration").is_empty());
}

/// Answers every gRPC call at once (Trailers-Only), as an authentication layer in front of
/// the router does: UNAUTHENTICATED, except OK for `/real.Svc/Call`.
async fn answer_every_path(uri: http::Uri) -> axum::response::Response {
    let status = if uri.path() == "/real.Svc/Call" {
        "0"
    } else {
        "16"
    };
    axum::response::Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", status)
        .body(axum::body::Body::empty())
        .unwrap()
}

#[test]
fn answers_to_made_up_grpc_paths_cannot_create_span_names_or_series() {
    const LONG: usize = 20;
    const FLOOD: usize = 1100;
    let meters = Meters::new();
    let (recorded, ()) = recorded(|_| async {
        let layer = ServerLayer::grpc()
            .grpc_methods(["real.Svc/Call"])
            .metrics(&meters.provider);
        let addr = serve(Router::new().fallback(answer_every_path).layer(layer)).await;
        let client = hyper_client();
        let long = "A".repeat(300);
        let paths = (0..LONG)
            .map(|i| format!("/evil{i}.{long}/M"))
            .chain((0..FLOOD).map(|i| format!("/evil{i}.S/M")))
            .chain(["/real.Svc/Call".to_owned()]);
        for path in paths {
            let request = http::Request::post(format!("http://{addr}{path}"))
                .header("content-type", "application/grpc")
                .body(Default::default())
                .unwrap();
            let response = client.request(request).await.unwrap();
            text(response.into_body()).await;
        }
    });
    let spans = recorded.spans.wait_for(LONG + FLOOD + 1, WAIT).unwrap();
    let names: std::collections::BTreeSet<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    // At most the 1,024 learned, `grpc`, and the configured method.
    assert!(names.len() <= 1024 + 2, "{} span names", names.len());
    assert!(names.iter().all(|n| n.len() <= 256), "a long span name");
    let real = spans.iter().find(|s| s.name == "real.Svc/Call").unwrap();
    assert_eq!(
        grpc_support::string(real, "rpc.method").as_deref(),
        Some("Call")
    );
    let other = spans.iter().filter(|s| s.name == "grpc").count();
    assert!(other >= LONG + FLOOD - 1024, "{other} spans named grpc");

    let server = meters.histogram("rpc.server.call.duration");
    assert_eq!(total(&server), (LONG + FLOOD + 1) as u64);
    assert!(server.len() <= 1024 + 2, "{} series", server.len());
    let method = |a: &BTreeMap<String, String>| a.get("rpc.method").cloned().unwrap_or_default();
    assert!(
        server.iter().all(|(a, _)| method(a).len() <= 256),
        "a long rpc.method"
    );
    let series =
        |name: &str| -> Vec<_> { server.iter().filter(|(a, _)| method(a) == name).collect() };
    let real = series("real.Svc/Call");
    assert_eq!(real.len(), 1, "{real:#?}");
    assert_eq!(real[0].0.get("rpc.response.status_code").unwrap(), "OK");
    assert_eq!(real[0].1, 1);
    // The spans named `grpc` and the `_OTHER` series count the same calls.
    assert_eq!(
        total(&series("_OTHER").into_iter().cloned().collect::<Vec<_>>()),
        other as u64
    );
}

#[test]
fn grpc_codes_an_upstream_makes_up_share_one_series() {
    const CALLS: usize = 200;
    let meters = Meters::new();
    let (recorded, ()) = recorded(|_| async {
        let upstream = Router::new().fallback(|uri: http::Uri| async move {
            let n: u32 = uri.path().trim_start_matches("/pkg.Svc/M").parse().unwrap();
            axum::response::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", (100_000 + n).to_string())
                .body(axum::body::Body::empty())
                .unwrap()
        });
        let addr = serve(upstream).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::grpc().metrics(&meters.provider))
            .service(hyper_client());
        for n in 0..CALLS {
            let request = http::Request::post(format!("http://{addr}/pkg.Svc/M{n}"))
                .header("content-type", "application/grpc")
                .body(Default::default())
                .unwrap();
            let response = client.ready().await.unwrap().call(request).await.unwrap();
            text(response.into_body()).await;
        }
    });
    let client = meters.histogram("rpc.client.call.duration");
    assert_eq!(total(&client), CALLS as u64);
    let codes: std::collections::BTreeSet<(&str, &str)> = client
        .iter()
        .map(|(a, _)| (&*a["rpc.response.status_code"], &*a["error.type"]))
        .collect();
    assert_eq!(codes, [("_OTHER", "_OTHER")].into());
    // Spans name the error as the metric does, and keep the code itself.
    let spans = recorded.spans.wait_for(CALLS, WAIT).unwrap();
    for span in &spans {
        assert_eq!(
            grpc_support::string(span, "error.type").as_deref(),
            Some("_OTHER")
        );
    }
    let mut codes: Vec<i64> = spans
        .iter()
        .filter_map(|s| grpc_support::int(s, "rpc.grpc.status_code"))
        .collect();
    codes.sort();
    assert_eq!(codes, (100_000..100_000 + CALLS as i64).collect::<Vec<_>>());
}

/// Waits (up to [`WAIT`]) until `name` has a data point: a server records a request once it
/// notices the client go.
async fn until_measured(meters: &Meters, name: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        meters.provider.force_flush().unwrap();
        let exported = !meters.exporter.get_finished_metrics().unwrap().is_empty();
        if exported && total(&meters.histogram(name)) > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: never measured"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A gRPC call to a handler that takes 30 s, given up by its caller after `give_up`;
/// `timeout`: the request's `grpc-timeout`. Returns once the server has measured the call.
fn give_up_on_a_slow_grpc_call(
    meters: &Meters,
    timeout: Option<&str>,
    give_up: Duration,
) -> support::Recorded {
    let (recorded, ()) = recorded(|_| async {
        let slow = Router::new()
            .route(
                "/pkg.Svc/Slow",
                axum::routing::post(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }),
            )
            .layer(ServerLayer::grpc().metrics(&meters.provider));
        let addr = serve(slow).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::grpc().metrics(&meters.provider))
            .service(hyper_client());
        let mut request = http::Request::post(format!("http://{addr}/pkg.Svc/Slow"))
            .header("content-type", "application/grpc");
        if let Some(timeout) = timeout {
            request = request.header("grpc-timeout", timeout);
        }
        let request = request.body(Default::default()).unwrap();
        let call = client.ready().await.unwrap().call(request);
        assert!(tokio::time::timeout(give_up, call).await.is_err());
        until_measured(meters, "rpc.server.call.duration").await;
    });
    recorded
}

#[test]
fn a_grpc_call_abandoned_past_its_deadline_is_deadline_exceeded_on_spans_and_metrics() {
    let meters = Meters::new();
    // Given up well past the deadline.
    let recorded = give_up_on_a_slow_grpc_call(&meters, Some("50m"), Duration::from_millis(300));
    for name in ["rpc.server.call.duration", "rpc.client.call.duration"] {
        let points = meters.histogram(name);
        assert_eq!(points.len(), 1, "{name}: {points:#?}");
        let attributes = &points[0].0;
        assert_eq!(
            attributes["rpc.response.status_code"], "DEADLINE_EXCEEDED",
            "{name}"
        );
        assert_eq!(attributes["error.type"], "DEADLINE_EXCEEDED", "{name}");
    }
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    for span in &spans {
        assert_eq!(grpc_support::int(span, "rpc.grpc.status_code"), Some(4));
        assert_eq!(
            grpc_support::string(span, "error.type").as_deref(),
            Some("DEADLINE_EXCEEDED")
        );
    }
}

#[test]
fn a_grpc_call_the_caller_gives_up_is_cancelled_and_fails_only_the_client_on_spans_and_metrics() {
    let meters = Meters::new();
    // No `grpc-timeout`: giving up is a cancellation, not a deadline.
    let recorded = give_up_on_a_slow_grpc_call(&meters, None, Duration::from_millis(50));
    for (name, error_type) in [
        ("rpc.server.call.duration", None),
        ("rpc.client.call.duration", Some("cancelled")),
    ] {
        let points = meters.histogram(name);
        assert_eq!(points.len(), 1, "{name}: {points:#?}");
        let attributes = &points[0].0;
        assert_eq!(
            attributes["rpc.response.status_code"], "CANCELLED",
            "{name}"
        );
        assert_eq!(
            attributes.get("error.type").map(String::as_str),
            error_type,
            "{name}"
        );
    }
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    for span in &spans {
        assert_eq!(grpc_support::int(span, "rpc.grpc.status_code"), Some(1));
        let error_type = grpc_support::string(span, "error.type");
        match span.kind {
            tracewire::span::SpanKind::Server => {
                assert_eq!(error_type, None);
                assert_eq!(span.status, tracewire::span::Status::Unset);
            }
            _ => assert_eq!(error_type.as_deref(), Some("cancelled")),
        }
    }
}

/// A gRPC call whose response body fails part way, 300 ms in, on both sides; `timeout`:
/// the request's `grpc-timeout`, `status`: a `grpc-status` in the response head. Checks
/// that spans and metrics agree on `code` (its name) and `error_type`.
fn grpc_call_failing_part_way(
    timeout: Option<&'static str>,
    status: Option<&'static str>,
    code: (i64, &str),
    error_type: &str,
) {
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    let meters = Meters::new();
    let (recorded, ()) = recorded(|_| async {
        let failing = Router::new()
            .route(
                "/pkg.Svc/Fail",
                axum::routing::post(move || async move {
                    // An empty message, so that the head goes out, then an error.
                    let empty = bytes::Bytes::from_static(&[0; 5]);
                    let chunks = futures_util::stream::once(async { Ok(empty) }).chain(
                        futures_util::stream::once(async {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            Err(std::io::Error::other("gone"))
                        }),
                    );
                    let mut response = axum::response::Response::builder()
                        .header("content-type", "application/grpc");
                    if let Some(status) = status {
                        response = response.header("grpc-status", status);
                    }
                    response
                        .body(axum::body::Body::from_stream(chunks))
                        .unwrap()
                }),
            )
            .layer(ServerLayer::grpc().metrics(&meters.provider));
        let addr = serve(failing).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::grpc().metrics(&meters.provider))
            .service(hyper_client());
        let mut request = http::Request::post(format!("http://{addr}/pkg.Svc/Fail"))
            .header("content-type", "application/grpc");
        if let Some(timeout) = timeout {
            request = request.header("grpc-timeout", timeout);
        }
        let request = request.body(Default::default()).unwrap();
        let response = client.ready().await.unwrap().call(request).await.unwrap();
        assert!(response.into_body().collect().await.is_err());
        until_measured(&meters, "rpc.server.call.duration").await;
    });
    for name in ["rpc.server.call.duration", "rpc.client.call.duration"] {
        let points = meters.histogram(name);
        assert_eq!(points.len(), 1, "{name}: {points:#?}");
        let attributes = &points[0].0;
        assert_eq!(attributes["rpc.response.status_code"], code.1, "{name}");
        assert_eq!(attributes["error.type"], error_type, "{name}");
    }
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    for span in &spans {
        assert_eq!(
            grpc_support::int(span, "rpc.grpc.status_code"),
            Some(code.0)
        );
        assert_eq!(
            grpc_support::string(span, "error.type").as_deref(),
            Some(error_type)
        );
    }
}

#[test]
fn a_grpc_call_failing_past_its_deadline_is_deadline_exceeded_on_spans_and_metrics() {
    let deadline_exceeded = (4, "DEADLINE_EXCEEDED");
    grpc_call_failing_part_way(Some("50m"), None, deadline_exceeded, "DEADLINE_EXCEEDED");
}

#[test]
fn a_grpc_call_failing_after_an_error_status_is_named_by_the_status_on_spans_and_metrics() {
    grpc_call_failing_part_way(None, Some("14"), (14, "UNAVAILABLE"), "UNAVAILABLE");
}

#[test]
fn a_500_whose_body_is_dropped_part_way_keeps_its_error_type_on_spans_and_metrics() {
    use futures_util::StreamExt;
    use http_body_util::BodyExt;
    let meters = Meters::new();
    let (recorded, ()) = recorded(|_| async {
        let failing = Router::new()
            .route(
                "/report",
                get(|| async {
                    let chunks = futures_util::stream::once(async {
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"partial"))
                    })
                    .chain(futures_util::stream::pending());
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        axum::body::Body::from_stream(chunks),
                    )
                }),
            )
            .layer(ServerLayer::new().metrics(&meters.provider));
        let addr = serve(failing).await;
        let response = hyper_client()
            .request(get_req(&format!("http://{addr}/report")))
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        let mut body = response.into_body();
        body.frame().await.unwrap().unwrap();
        drop(body);
        until_measured(&meters, "http.server.request.duration").await;
    });
    let points = meters.histogram("http.server.request.duration");
    assert_eq!(points.len(), 1, "{points:#?}");
    assert_eq!(points[0].0["http.response.status_code"], "500");
    assert_eq!(points[0].0["error.type"], "500");
    let spans = recorded.spans.wait_for(1, WAIT).unwrap();
    assert_eq!(
        grpc_support::string(&spans[0], "error.type").as_deref(),
        Some("500")
    );
}

/// hyper's HTTP/1 server drops a body once it has sent the length the response declares: a
/// stream with a `content-length` (a file download) is then complete, not cancelled.
#[test]
fn a_body_sent_to_its_declared_length_is_measured_as_complete() {
    let meters = Meters::new();
    recorded(|_| async {
        let download = Router::new()
            .route(
                "/download",
                get(|| async {
                    let chunks = ["0123", "4567"].map(|c| Ok::<_, std::io::Error>(c.to_owned()));
                    (
                        [(http::header::CONTENT_LENGTH, "8")],
                        axum::body::Body::from_stream(futures_util::stream::iter(chunks)),
                    )
                }),
            )
            .layer(ServerLayer::new().metrics(&meters.provider));
        let addr = serve(download).await;
        let url = format!("http://{addr}/download");
        assert_eq!(get_status(&hyper_client(), url).await, 200);
        until_measured(&meters, "http.server.request.duration").await;
    });
    let points = meters.histogram("http.server.request.duration");
    assert_eq!(points.len(), 1, "{points:#?}");
    assert_eq!(points[0].0["http.response.status_code"], "200");
    assert!(!points[0].0.contains_key("error.type"), "{points:#?}");
}

#[cfg(feature = "reqwest")]
#[test]
fn reqwest_calls_are_measured() {
    let meters = Meters::new();
    recorded(|_| async {
        let addr = serve(app(&meters, ServerLayer::new())).await;
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(tracewire::reqwest::TracingMiddleware::new().metrics(&meters.provider))
            .build();
        let response = client
            .get(format!("http://{addr}/users/1"))
            .send()
            .await
            .unwrap();
        response.text().await.unwrap();
        let response = client
            .get(format!("http://{addr}/fail"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
    });
    let client = meters.histogram("http.client.request.duration");
    let codes: Vec<(String, Option<String>)> = {
        let mut codes: Vec<_> = client
            .iter()
            .map(|(a, _)| {
                (
                    a.get("http.response.status_code").cloned().unwrap(),
                    a.get("error.type").cloned(),
                )
            })
            .collect();
        codes.sort();
        codes
    };
    assert_eq!(
        codes,
        [
            ("200".to_owned(), None),
            ("500".to_owned(), Some("500".to_owned()))
        ]
    );
}

#[test]
fn active_requests_go_up_and_down() {
    use opentelemetry_sdk::metrics::data::AggregatedMetrics::I64;
    let meters = Meters::new();
    recorded(|_| async {
        let layer = ServerLayer::new().active_requests(true);
        let addr = serve(app(&meters, layer)).await;
        let client = hyper_client();
        get_status(&client, format!("http://{addr}/users/1")).await;
    });
    meters.provider.force_flush().unwrap();
    let exported = meters.exporter.get_finished_metrics().unwrap();
    let metric = exported
        .last()
        .unwrap()
        .scope_metrics()
        .flat_map(|s| s.metrics())
        .find(|m| m.name() == "http.server.active_requests")
        .expect("http.server.active_requests");
    let I64(MetricData::Sum(sum)) = metric.data() else {
        panic!("{:?}", metric.data());
    };
    let points: Vec<_> = sum.data_points().collect();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].value(), 0, "one request came and went");
    let attributes: BTreeMap<_, _> = points[0]
        .attributes()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    assert_eq!(
        attributes,
        attrs(&[("http.request.method", "GET"), ("url.scheme", "http")])
    );
}

/// A client does not know the protocol a request goes out on until the response comes: a
/// hyper-util client speaking HTTP/2 takes requests that say HTTP/1.1. The duration carries
/// the version the response came over, as the span does.
#[test]
fn a_client_duration_carries_the_protocol_version_the_response_came_over() {
    let meters = Meters::new();
    let (recorded, ()) = recorded(|_| async {
        let addr = serve(app(&meters, ServerLayer::new())).await;
        let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http::<http_body_util::Full<bytes::Bytes>>();
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new().metrics(&meters.provider))
            .service(h2);
        let request = get_req(&format!("http://{addr}/users/1"));
        assert_eq!(request.version(), http::Version::HTTP_11);
        let response = client.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        text(response.into_body()).await;
    });
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    let client_span = spans
        .iter()
        .find(|s| s.kind == tracewire::span::SpanKind::Client)
        .unwrap();
    assert_eq!(
        client_span
            .attribute("network.protocol.version")
            .map(|v| v.as_str().into_owned())
            .as_deref(),
        Some("2")
    );
    let client = meters.histogram("http.client.request.duration");
    assert_eq!(client.len(), 1, "{client:#?}");
    assert_eq!(
        client[0]
            .0
            .get("network.protocol.version")
            .map(String::as_str),
        Some("2"),
        "{client:#?}"
    );
}

/// `rpc.client.call.duration` carries `server.address` and `server.port` when the call has
/// them (the conventions require them then), each server its own series.
#[test]
fn grpc_client_durations_name_the_server_called() {
    use grpc_support::*;
    let meters = Meters::new();
    let ports = recorded(|_| async {
        let mut ports = Vec::new();
        for _ in 0..2 {
            let addr = serve_grpc(ServerLayer::grpc(), TestHealth::default()).await;
            let mut health = client(addr, ClientLayer::grpc().metrics(&meters.provider)).await;
            health.check(check_req("ok")).await.unwrap();
            health.check(check_req("ok")).await.unwrap();
            ports.push(addr.port().to_string());
        }
        ports
    })
    .1;
    let mut client = meters.histogram("rpc.client.call.duration");
    client.sort();
    let point = |port: &str| {
        (
            attrs(&[
                ("rpc.system.name", "grpc"),
                ("rpc.method", CHECK),
                ("rpc.response.status_code", "OK"),
                ("server.address", "127.0.0.1"),
                ("server.port", port),
            ]),
            2,
        )
    };
    let mut expected = vec![point(&ports[0]), point(&ports[1])];
    expected.sort();
    assert_eq!(client, expected);
}
