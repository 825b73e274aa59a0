//! Request metrics exported over OTLP to a real receiver (`opentelemetry-proto`'s
//! `MetricsService` over gRPC, and `POST /v1/metrics` over HTTP): through the SDK and
//! `opentelemetry-otlp` set up by hand, and through `otlp::init()` configured by the
//! environment, each case of the latter in a child process of its own (this test binary run
//! again, filtered to `child_process_entry`, with `TRACEWIRE_TEST_CHILD` set and a cleared
//! environment), as `tests/otlp_env.rs` does for spans.
#![cfg(all(feature = "metrics", feature = "otlp", feature = "axum"))]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue as ProtoKeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use support::{get_req, hyper_client, serve, text};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::metrics::{Metered, DURATION_BUCKETS};
use tracewire::{ClientLayer, ServerLayer};

const CHILD: &str = "TRACEWIRE_TEST_CHILD";
const WAIT: Duration = Duration::from_secs(60);

/// Every export request a receiver got.
#[derive(Clone, Default)]
struct Store(Arc<(Mutex<Vec<ExportMetricsServiceRequest>>, Condvar)>);

impl Store {
    fn push(&self, request: ExportMetricsServiceRequest) {
        self.0 .0.lock().unwrap().push(request);
        self.0 .1.notify_all();
    }

    /// Waits until the data points of `name` count `count` requests in all (cumulative
    /// exports: the last export of each series); panics after [`WAIT`].
    fn wait_for(&self, name: &str, count: u64) -> Vec<Point> {
        let deadline = Instant::now() + WAIT;
        let mut requests = self.0 .0.lock().unwrap();
        loop {
            let points = points(&requests, name);
            if points.iter().map(|p| p.count).sum::<u64>() >= count {
                return points;
            }
            let now = Instant::now();
            assert!(now < deadline, "{name}: {count} requests never arrived");
            requests = self.0 .1.wait_timeout(requests, deadline - now).unwrap().0;
        }
    }

    /// The last value of each data point of the sum `name`, by attributes.
    fn sums(&self, name: &str) -> BTreeMap<BTreeMap<String, String>, i64> {
        use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
        let mut sums = BTreeMap::new();
        for request in self.0 .0.lock().unwrap().iter() {
            for sm in request
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
            {
                for metric in sm.metrics.iter().filter(|m| m.name == name) {
                    let Some(Data::Sum(sum)) = &metric.data else {
                        panic!("{name} is not a sum: {:?}", metric.data);
                    };
                    assert!(sum.is_monotonic, "{name} is a counter");
                    for point in &sum.data_points {
                        let value = match point.value {
                            Some(Value::AsInt(v)) => v,
                            other => panic!("{name}: {other:?}"),
                        };
                        sums.insert(texts(&point.attributes), value);
                    }
                }
            }
        }
        sums
    }

    /// The resource attributes of the exports, as text.
    fn resources(&self) -> Vec<BTreeMap<String, String>> {
        self.0
             .0
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .map(|rm| texts(&rm.resource.clone().unwrap_or_default().attributes))
            .collect()
    }
}

/// One histogram data point, as the receiver decoded it.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    unit: String,
    scope: String,
    attributes: BTreeMap<String, String>,
    bounds: Vec<f64>,
    count: u64,
}

fn texts(attributes: &[ProtoKeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(s)) => s.clone(),
                Some(AnyValue::IntValue(i)) => i.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// The data points of histogram `name`: the last export of each series.
fn points(requests: &[ExportMetricsServiceRequest], name: &str) -> Vec<Point> {
    let mut latest: BTreeMap<String, Point> = BTreeMap::new();
    for rm in requests.iter().flat_map(|r| &r.resource_metrics) {
        for sm in &rm.scope_metrics {
            let scope = sm
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for metric in sm.metrics.iter().filter(|m| m.name == name) {
                let Some(Data::Histogram(histogram)) = &metric.data else {
                    panic!("{name} is not a histogram: {:?}", metric.data);
                };
                for point in &histogram.data_points {
                    let attributes = texts(&point.attributes);
                    latest.insert(
                        format!("{attributes:?}"),
                        Point {
                            unit: metric.unit.clone(),
                            scope: scope.clone(),
                            attributes,
                            bounds: point.explicit_bounds.clone(),
                            count: point.count,
                        },
                    );
                }
            }
        }
    }
    latest.into_values().collect()
}

struct Collect(Store);

#[tonic::async_trait]
impl MetricsService for Collect {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// A `MetricsService` over gRPC on a loopback port, on the current runtime.
async fn grpc_receiver() -> (SocketAddr, Store) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::default();
    let service = MetricsServiceServer::new(Collect(store.clone()));
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await;
    });
    (addr, store)
}

/// `POST /v1/metrics` (protobuf) on a loopback port, on the current runtime.
async fn http_receiver() -> (SocketAddr, Store) {
    use prost::Message;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::default();
    let kept = store.clone();
    let app = Router::new().route(
        "/v1/metrics",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = kept.clone();
            async move {
                match ExportMetricsServiceRequest::decode(body) {
                    Ok(request) => {
                        store.push(request);
                        StatusCode::OK
                    }
                    Err(_) => StatusCode::BAD_REQUEST,
                }
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, store)
}

fn routes(layer: ServerLayer<Metered>) -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "ana" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .layer(layer)
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The server's and the client's durations, exported by the SDK's OTLP/gRPC exporter, arrive
/// at the receiver with their names, units, buckets, attributes and counts.
#[test]
fn durations_reach_an_otlp_receiver_over_grpc() {
    let rt = runtime();
    let (receiver, store) = rt.block_on(grpc_receiver());
    let exporter = {
        // The tonic exporter's channel lives on the runtime.
        let _entered = rt.enter();
        opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{receiver}"))
            .build()
            .unwrap()
    };
    let provider = SdkMeterProvider::builder()
        // Only the flush below exports.
        .with_reader(
            PeriodicReader::builder(exporter)
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .build();
    let port = rt.block_on(async {
        let addr = serve(routes(ServerLayer::new().metrics(&provider))).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new().metrics(&provider))
            .service(hyper_client());
        for path in ["/users/1", "/users/2", "/fail"] {
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
    provider.force_flush().unwrap();

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
    let point = |attributes, count| Point {
        unit: "s".into(),
        scope: "tracewire".into(),
        attributes,
        bounds: DURATION_BUCKETS.to_vec(),
        count,
    };
    let mut server = store.wait_for("http.server.request.duration", 3);
    server.sort_by(|a, b| a.attributes.cmp(&b.attributes));
    let mut expected = vec![
        point(
            with(&[
                ("http.route", "/users/{id}"),
                ("http.response.status_code", "200"),
            ]),
            2,
        ),
        point(
            with(&[
                ("http.route", "/fail"),
                ("http.response.status_code", "500"),
                ("error.type", "500"),
            ]),
            1,
        ),
    ];
    expected.sort_by(|a, b| a.attributes.cmp(&b.attributes));
    assert_eq!(server, expected);

    let mut client = store.wait_for("http.client.request.duration", 3);
    client.sort_by(|a, b| a.attributes.cmp(&b.attributes));
    // `url.scheme` is Opt-In on a client's durations.
    let on_client = |code: &str, error: Option<&str>| {
        let mut all = vec![
            ("http.request.method", "GET"),
            ("network.protocol.version", "1.1"),
        ];
        all.extend_from_slice(&[
            ("server.address", "127.0.0.1"),
            ("server.port", port.as_str()),
            ("http.response.status_code", code),
        ]);
        all.extend(error.map(|e| ("error.type", e)));
        attrs(&all)
    };
    let mut expected = vec![
        point(on_client("200", None), 2),
        point(on_client("500", Some("500")), 1),
    ];
    expected.sort_by(|a, b| a.attributes.cmp(&b.attributes));
    assert_eq!(client, expected);
    drop(provider);
}

/// The child's side: `otlp::init()` from the environment, a metered axum service called
/// twice, then the guard dropped (which exports). `TRACEWIRE_TEST_GLOBAL` set: the layer
/// takes OpenTelemetry's global meter provider instead of the guard's.
#[test]
fn child_process_entry() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let guard = tracewire::otlp::init().expect("init");
    println!("METER-PROVIDER {}", guard.meter_provider().is_some());
    let layer = if std::env::var_os("TRACEWIRE_TEST_GLOBAL").is_some() {
        ServerLayer::new().metrics(&*opentelemetry::global::meter_provider())
    } else {
        match guard.meter_provider() {
            Some(provider) => ServerLayer::new().metrics(provider),
            None => return,
        }
    };
    let rt = runtime();
    rt.block_on(async {
        let addr = serve(routes(layer)).await;
        let client = hyper_client();
        for path in ["/users/1", "/users/2"] {
            let response = client
                .request(get_req(&format!("http://{addr}{path}")))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            text(response.into_body()).await;
        }
    });
    drop(guard);
    drop(rt);
}

/// Runs [`child_process_entry`] with only `vars` (and `PATH`) set; returns its stdout.
fn run_child(vars: &[(&str, String)]) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env(CHILD, "1");
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// Two requests of `/users/{id}`, answered 200.
fn users_point() -> Point {
    Point {
        unit: "s".into(),
        scope: "tracewire".into(),
        attributes: attrs(&[
            ("http.request.method", "GET"),
            ("url.scheme", "http"),
            ("network.protocol.version", "1.1"),
            ("http.route", "/users/{id}"),
            ("http.response.status_code", "200"),
        ]),
        bounds: DURATION_BUCKETS.to_vec(),
        count: 2,
    }
}

/// Defaults: `OTEL_METRICS_EXPORTER` unset is `otlp`, over HTTP/protobuf, to
/// `OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/metrics`, with the spans' resource; the spans'
/// failed exports are counted in `tracewire.spans.dropped`.
#[test]
fn init_exports_metrics_over_http_by_default() {
    let rt = runtime();
    let (receiver, store) = rt.block_on(http_receiver());
    let stdout = run_child(&[
        ("OTEL_SERVICE_NAME", "checkout".into()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test".into(),
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{receiver}")),
        // Spans go where nothing listens: their export fails.
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:9/v1/traces".into(),
        ),
    ]);
    assert!(stdout.contains("METER-PROVIDER true"), "{stdout}");
    let points = store.wait_for("http.server.request.duration", 2);
    assert_eq!(points, vec![users_point()]);
    let resources = store.resources();
    assert!(!resources.is_empty());
    for resource in resources {
        assert_eq!(resource.get("service.name").unwrap(), "checkout");
        assert_eq!(resource.get("deployment.environment").unwrap(), "test");
    }
    // The recorder pipeline's lost spans, by reason: the two server spans, at export.
    let dropped = store.sums("tracewire.spans.dropped");
    let reasons: Vec<&str> = dropped
        .keys()
        .map(|attributes| attributes["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "export_failed",
            "queue_full",
            "reporter_panic",
            "shutdown",
            "tail_sampler"
        ]
    );
    let counts: Vec<i64> = dropped.values().copied().collect();
    assert_eq!(counts, [2, 0, 0, 0, 0], "{dropped:?}");
}

/// The metrics signal's own variables (gRPC, its endpoint) and the global meter provider.
#[test]
fn init_reads_the_metrics_variables_and_sets_the_global_provider() {
    let rt = runtime();
    let (receiver, store) = rt.block_on(grpc_receiver());
    let stdout = run_child(&[
        ("OTEL_SERVICE_NAME", "stock".into()),
        ("OTEL_TRACES_EXPORTER", "none".into()),
        // The traces' endpoint would not answer: metrics go by their own.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9".into()),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc".into()),
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("http://{receiver}"),
        ),
        ("TRACEWIRE_TEST_GLOBAL", "1".into()),
    ]);
    assert!(stdout.contains("METER-PROVIDER true"), "{stdout}");
    let points = store.wait_for("http.server.request.duration", 2);
    assert_eq!(points, vec![users_point()]);
    for resource in store.resources() {
        assert_eq!(resource.get("service.name").unwrap(), "stock");
    }
}

/// `OTEL_METRICS_EXPORTER=none`: no meter provider.
#[test]
fn init_without_metrics_when_asked() {
    let stdout = run_child(&[
        ("OTEL_TRACES_EXPORTER", "none".into()),
        ("OTEL_METRICS_EXPORTER", "none".into()),
    ]);
    assert!(stdout.contains("METER-PROVIDER false"), "{stdout}");
}
