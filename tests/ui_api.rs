//! The trace viewer over loopback: real traced axum and tonic calls read back through the
//! JSON API; OTLP/HTTP bodies (built with opentelemetry-proto, and sent by the real
//! opentelemetry-otlp HTTP exporter, protobuf and JSON) merged into the right trace; the
//! 400, 404, 413 and 415 answers (gzip bodies bounded once decompressed); `/metrics` read with a Prometheus text-format parser; the
//! bounds.
#![cfg(all(feature = "ui", feature = "otel"))]

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::Router;
use http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use serde_json::Value as Json;
use tower::ServiceBuilder;
use tracewire::context::{SpanContext, TraceFlags, TraceState};
use tracewire::record::{Recorder, SpanExt, SpanStart};
use tracewire::report::OtelReporter;
use tracewire::ui::Viewer;
use tracewire::{ClientLayer, ServerLayer};
use tracing_subscriber::layer::SubscriberExt;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn start(builder: tracewire::ui::ViewerBuilder) -> Viewer {
    builder
        .addr(([127, 0, 0, 1], 0).into())
        .start()
        .expect("start the viewer")
}

/// One HTTP exchange with the viewer, on a runtime of its own.
fn call(request: reqwest::RequestBuilder) -> (StatusCode, String) {
    support::runtime().block_on(async {
        let response = request.send().await.expect("viewer answers");
        let status = response.status();
        (status, response.text().await.expect("body"))
    })
}

fn get_text(viewer: &Viewer, path: &str) -> (StatusCode, String) {
    call(reqwest::Client::new().get(format!("{}{path}", viewer.url())))
}

fn get_json(viewer: &Viewer, path: &str) -> Json {
    let (status, body) = get_text(viewer, path);
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn post(viewer: &Viewer, content_type: &str, body: Vec<u8>) -> (StatusCode, String) {
    call(
        reqwest::Client::new()
            .post(format!("{}v1/traces", viewer.url()))
            .header("content-type", content_type)
            .body(body),
    )
}

/// Waits (10 s at most) until trace `id` is held and `done` holds for it.
fn wait_for_trace(viewer: &Viewer, id: &str, done: impl Fn(&Json) -> bool) -> Json {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get_text(viewer, &format!("api/traces/{id}"));
        if status == StatusCode::OK {
            let trace: Json = serde_json::from_str(&body).unwrap();
            if done(&trace) {
                return trace;
            }
        }
        assert!(
            Instant::now() < deadline,
            "trace {id} not as expected: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn span_names(trace: &Json) -> Vec<(String, String)> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_owned(),
                s["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn metrics(viewer: &Viewer) -> prometheus_parse::Scrape {
    let (status, text) = get_text(viewer, "metrics");
    assert_eq!(status, StatusCode::OK);
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {metric} {labels:?}"));
    match &found.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        prometheus_parse::Value::Histogram(buckets) => {
            buckets.iter().map(|b| b.count).fold(0.0, f64::max)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn traced_axum_and_tonic_calls_read_back_through_the_api() {
    let viewer = start(Viewer::builder());
    let (layer, guard) = Recorder::builder()
        .service_name("test")
        .reporter(viewer.reporter())
        .build();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        support::runtime().block_on(async {
            let (_health, health_service) = tonic_health::server::health_reporter();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let health_addr = listener.local_addr().unwrap();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .layer(ServerLayer::new().service_name("health"))
                    .add_service(health_service)
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
            );
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{health_addr}"))
                .unwrap()
                .connect_lazy();
            let traced = ServiceBuilder::new()
                .layer(ClientLayer::new().service_name("front"))
                .service(channel);
            let front = support::serve(
                Router::new()
                    .route(
                        "/check",
                        get(move || {
                            let mut client =
                                tonic_health::pb::health_client::HealthClient::new(traced.clone());
                            async move {
                                let request = tonic_health::pb::HealthCheckRequest {
                                    service: String::new(),
                                };
                                match client.check(request).await {
                                    Ok(_) => (StatusCode::OK, "serving"),
                                    Err(_) => (StatusCode::BAD_GATEWAY, "down"),
                                }
                            }
                        }),
                    )
                    .route(
                        "/fail",
                        get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") }),
                    )
                    .layer(ServerLayer::new().service_name("front")),
            )
            .await;
            let client = support::hyper_client();
            let mut check = support::get_req(&format!("http://{front}/check"));
            check.headers_mut().insert(
                "traceparent",
                format!("00-{TRACE}-00f067aa0ba902b7-01").parse().unwrap(),
            );
            let response = client.request(check).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            support::text(response.into_body()).await;
            let response = client
                .request(support::get_req(&format!("http://{front}/fail")))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            support::text(response.into_body()).await;
        })
    });
    guard.flush().unwrap();

    // The first call: a remote parent, released after the grace period.
    let trace = wait_for_trace(&viewer, TRACE, |t| {
        t["spans"].as_array().unwrap().len() >= 3
    });
    let names = span_names(&trace);
    for expected in [
        ("front", "GET /check"),
        ("front", "grpc.health.v1.Health/Check"),
        ("health", "grpc.health.v1.Health/Check"),
    ] {
        assert!(
            names.contains(&(expected.0.into(), expected.1.into())),
            "{names:?}"
        );
    }
    assert_eq!(trace["path"], "front → health");
    assert_eq!(trace["error"], false);
    let server = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "GET /check")
        .unwrap();
    assert_eq!(server["kind"], "server");
    assert_eq!(server["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(server["parent_is_remote"], true);
    assert_eq!(server["attributes"]["http.response.status_code"], 200);

    // The list and its filters.
    let list = get_json(&viewer, "api/traces?service=front");
    assert_eq!(list["matched"], 2);
    assert_eq!(list["counts"]["services"], 2);
    let errors = get_json(&viewer, "api/traces?errors=true");
    assert_eq!(errors["matched"], 1);
    assert_eq!(errors["traces"][0]["name"], "GET /fail");
    assert_eq!(errors["traces"][0]["error"], true);
    let by_id = get_json(&viewer, &format!("api/traces?trace_id={TRACE}"));
    assert_eq!(by_id["traces"][0]["trace_id"], TRACE);
    let op = get_json(&viewer, "api/traces?operation=grpc.health.v1.Health/Check");
    assert_eq!(op["matched"], 1);
    assert_eq!(
        get_json(&viewer, "api/traces?min_duration_ms=100000")["matched"],
        0
    );
    assert_eq!(get_json(&viewer, "api/traces?service=nobody")["matched"], 0);

    // Per-operation statistics.
    let stats = get_json(&viewer, "api/stats");
    let ops = stats["operations"].as_array().unwrap();
    let check = ops
        .iter()
        .find(|o| o["service"] == "front" && o["name"] == "GET /check")
        .unwrap();
    assert_eq!(check["count"], 1);
    assert!(check["p99_ms"].as_f64().unwrap() >= check["p50_ms"].as_f64().unwrap());
    let fail = ops.iter().find(|o| o["name"] == "GET /fail").unwrap();
    assert_eq!(fail["errors"], 1);

    // `/metrics`, read by a Prometheus text-format parser.
    let scrape = metrics(&viewer);
    let received = sample(
        &scrape,
        "tracewire_ui_spans_received_total",
        &[("source", "local")],
    );
    assert_eq!(
        received as usize,
        viewer.stats().spans_received_local as usize
    );
    assert!(received >= 4.0);
    let fail_5xx = [
        ("service", "front"),
        ("operation", "GET /fail"),
        ("status_class", "5xx"),
    ];
    assert_eq!(
        sample(&scrape, "tracewire_ui_requests_total", &fail_5xx),
        1.0
    );
    let check_op = [("service", "front"), ("operation", "GET /check")];
    assert_eq!(
        sample(
            &scrape,
            "tracewire_ui_request_duration_seconds_count",
            &check_op
        ),
        1.0
    );
    let histogram = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "tracewire_ui_request_duration_seconds"
                && s.labels.get("operation") == Some("GET /check")
        })
        .expect("the histogram");
    let prometheus_parse::Value::Histogram(buckets) = &histogram.value else {
        panic!("{histogram:?}");
    };
    let bounds: Vec<f64> = buckets.iter().map(|b| b.less_than).collect();
    assert_eq!(
        &bounds[..14],
        [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
    );
    assert_eq!(sample(&scrape, "tracewire_ui_traces_held", &[]), 2.0);
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn proto_span(trace: u128, id: u64, parent: u64, name: &str) -> Span {
    let start = now_nanos();
    Span {
        trace_id: trace.to_be_bytes().to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            parent.to_be_bytes().to_vec()
        },
        name: name.into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 2_000_000,
        attributes: vec![text("http.route", "/work")],
        ..Default::default()
    }
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn otlp_protobuf_and_json_bodies_join_the_right_trace() {
    let viewer = start(Viewer::builder());
    let trace = 0x0af7651916cd43dd8448eb211c80319c_u128;
    let id = format!("{trace:032x}");
    // A Go gateway's root span, as protobuf.
    let root = request("gateway", vec![proto_span(trace, 1, 0, "POST /orders")]);
    let (status, _) = post(&viewer, "application/x-protobuf", root.encode_to_vec());
    assert_eq!(status, StatusCode::OK);
    // A span of another trace, which must stay apart.
    let other = request("gateway", vec![proto_span(trace + 1, 9, 0, "GET /health")]);
    post(&viewer, "application/x-protobuf", other.encode_to_vec());
    // A Python worker's child span, as OTLP/JSON, with an error and an exception event.
    let mut child = proto_span(trace, 2, 1, "process order");
    child.kind = span::SpanKind::Consumer as i32;
    child.status = Some(Status {
        code: status::StatusCode::Error as i32,
        message: "card declined".into(),
    });
    child.events.push(span::Event {
        time_unix_nano: child.start_time_unix_nano + 1_000,
        name: "exception".into(),
        attributes: vec![text("exception.message", "card <b>declined</b>")],
        dropped_attributes_count: 0,
    });
    let body = serde_json::to_vec(&request("worker", vec![child])).unwrap();
    let (status, answer) = post(&viewer, "application/json; charset=utf-8", body);
    assert_eq!(status, StatusCode::OK, "{answer}");

    let held = wait_for_trace(&viewer, &id, |t| t["spans"].as_array().unwrap().len() == 2);
    assert_eq!(
        span_names(&held),
        [
            ("gateway".to_owned(), "POST /orders".to_owned()),
            ("worker".to_owned(), "process order".to_owned())
        ]
    );
    assert_eq!(held["path"], "gateway → worker");
    assert_eq!(held["error"], true);
    let worker = &held["spans"][1];
    assert_eq!(worker["kind"], "consumer");
    assert_eq!(worker["parent_span_id"], "0000000000000001");
    assert_eq!(worker["status"]["message"], "card declined");
    assert_eq!(
        worker["events"][0]["attributes"]["exception.message"],
        "card <b>declined</b>"
    );
    let other = get_json(&viewer, &format!("api/traces/{:032x}", trace + 1));
    assert_eq!(other["span_count"], 1);
    assert_eq!(
        viewer.stats().spans_received_otlp,
        3,
        "{:?}",
        viewer.stats()
    );
}

/// A second "service" whose spans leave through the real opentelemetry-otlp HTTP exporter
/// (its hyper client, as users ship it) to the viewer, and join a trace this process recorded.
fn export_through_otlp_http(protocol: opentelemetry_otlp::Protocol, gzip: bool) {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};

    let viewer = start(Viewer::builder());
    let (local, local_guard) = Recorder::builder()
        .service_name("front")
        .reporter(viewer.reporter())
        .build();
    let caller =
        tracing::subscriber::with_default(tracing_subscriber::registry().with(local), || {
            let span = tracing::info_span!("GET /orders", otel.kind = "server");
            span.span_context().expect("recorded")
        });
    local_guard.flush().unwrap();

    let export_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let exporter = {
        let _entered = export_rt.enter();
        let builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_endpoint(format!("{}v1/traces", viewer.url()));
        let builder = if gzip {
            builder.with_compression(opentelemetry_otlp::Compression::Gzip)
        } else {
            builder
        };
        builder.build().expect("exporter")
    };
    let otel = OtelReporter::builder(exporter)
        .runtime(export_rt.handle().clone())
        .build();
    let (remote, remote_guard) = Recorder::builder()
        .service_name("worker")
        .reporter(otel)
        .build();
    let remote_parent = SpanContext::new(
        caller.trace_id,
        caller.span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    tracing::subscriber::with_default(tracing_subscriber::registry().with(remote), || {
        SpanStart::new()
            .remote_parent(remote_parent)
            .create(|| tracing::info_span!("work", otel.kind = "server"))
            .in_scope(|| {});
    });
    remote_guard.flush().unwrap();

    let id = caller.trace_id.to_string();
    let trace = wait_for_trace(&viewer, &id, |t| t["spans"].as_array().unwrap().len() == 2);
    assert_eq!(
        span_names(&trace),
        [
            ("front".to_owned(), "GET /orders".to_owned()),
            ("worker".to_owned(), "work".to_owned())
        ]
    );
    assert_eq!(
        trace["spans"][1]["parent_span_id"],
        caller.span_id.to_string()
    );
    assert_eq!(viewer.stats().spans_received_otlp, 1);
    drop(remote_guard);
    drop(export_rt);
}

#[test]
fn the_real_otlp_exporter_joins_a_local_trace_over_http_protobuf() {
    export_through_otlp_http(opentelemetry_otlp::Protocol::HttpBinary, false);
}

/// As an SDK sends with `OTEL_EXPORTER_OTLP_COMPRESSION=gzip`.
#[test]
fn the_real_otlp_exporter_joins_a_local_trace_over_gzipped_http_protobuf() {
    export_through_otlp_http(opentelemetry_otlp::Protocol::HttpBinary, true);
}

#[test]
fn the_real_otlp_exporter_joins_a_local_trace_over_http_json() {
    export_through_otlp_http(opentelemetry_otlp::Protocol::HttpJson, false);
}

#[test]
fn bad_requests_get_400_404_413_415_and_leave_the_traces_alone() {
    let viewer = start(Viewer::builder().max_body_bytes(4096));
    let root = request("gateway", vec![proto_span(7, 1, 0, "POST /orders")]);
    assert_eq!(
        post(&viewer, "application/x-protobuf", root.encode_to_vec()).0,
        StatusCode::OK
    );
    let before = get_json(&viewer, "api/traces");
    assert_eq!(before["matched"], 1);

    let bad_id = {
        let mut span = proto_span(8, 1, 0, "bad");
        span.trace_id = vec![1, 2, 3];
        request("gateway", vec![proto_span(9, 1, 0, "fine"), span])
    };
    for (content_type, body, status, message) in [
        (
            "application/x-protobuf",
            b"\x0a\xff\xff\xff".to_vec(),
            400,
            "invalid OTLP protobuf",
        ),
        (
            "application/json",
            b"{\"resourceSpans\": [".to_vec(),
            400,
            "invalid OTLP JSON",
        ),
        (
            "application/x-protobuf",
            bad_id.encode_to_vec(),
            400,
            "span 1: invalid trace_id",
        ),
        (
            "application/json",
            vec![b' '; 5000],
            413,
            "over the limit of 4096 bytes",
        ),
        ("text/plain", b"{}".to_vec(), 415, "Content-Type"),
    ] {
        // A `Status` in the request's encoding (JSON when that is not known).
        let (got, answer_type, answer) = post_raw(&viewer, content_type, body);
        assert_eq!(got.as_u16(), status, "{answer:?}");
        let said = match answer_type.as_deref() {
            Some("application/x-protobuf") => RpcStatus::decode(&answer[..]).unwrap().message,
            _ => {
                let answer: Json = serde_json::from_slice(&answer).unwrap();
                answer["message"].as_str().unwrap().to_owned()
            }
        };
        assert!(said.contains(message), "{said}");
    }
    // A chunked body (no Content-Length) over the limit.
    let got = support::runtime().block_on(async {
        use http_body_util::BodyExt;
        let chunks = futures_util::stream::iter((0..10).map(|_| {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(vec![
                b' ';
                1000
            ])))
        }));
        let body = http_body_util::StreamBody::new(chunks).boxed();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let request = http::Request::post(format!("{}v1/traces", viewer.url()))
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        assert!(request.headers().get("content-length").is_none());
        client.request(request).await.unwrap().status()
    });
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE);
    // The limit holds for a gzip body once decompressed: 2 MiB of zeros in about 2 KiB.
    let bomb = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&vec![0; 2 << 20]).unwrap();
        gz.finish().unwrap()
    };
    assert!(bomb.len() < 4096);
    for (encoding, body, status) in [
        ("gzip", bomb, StatusCode::PAYLOAD_TOO_LARGE),
        ("gzip", b"not gzip".to_vec(), StatusCode::BAD_REQUEST),
        ("br", b"{}".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ] {
        let got = support::runtime().block_on(async {
            reqwest::Client::new()
                .post(format!("{}v1/traces", viewer.url()))
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", encoding)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(got, status, "{encoding}");
    }

    for (path, status) in [
        ("api/traces/xyz", 400),
        ("api/traces/4BF92F3577B34DA6A3CE929D0E0E4736", 400),
        (&format!("api/traces/{TRACE}") as &str, 404),
        ("api/traces?limit=0", 400),
        ("api/traces?limit=-1", 400),
        ("api/traces?errors=maybe", 400),
        ("api/traces?min_duration_ms=fast", 400),
        ("api/traces?trace_id=123", 400),
        ("api/traces?color=red", 400),
        ("api/traces?%ff=1", 400),
    ] {
        let (got, answer) = get_text(&viewer, path);
        assert_eq!(got.as_u16(), status, "{path}: {answer}");
        let answer: Json = serde_json::from_str(&answer).unwrap();
        assert!(answer["error"].is_string(), "{path}: {answer}");
    }

    let after = get_json(&viewer, "api/traces");
    assert_eq!(after["traces"], before["traces"]);
    assert_eq!(viewer.stats().spans_received_otlp, 1);
}

#[test]
fn the_bounds_hold_and_the_oldest_traces_go_first() {
    let viewer = start(Viewer::builder().max_traces(5));
    let roots = (1..=20u128)
        .map(|trace| proto_span(trace, 1, 0, "GET /"))
        .collect();
    post(
        &viewer,
        "application/x-protobuf",
        request("gateway", roots).encode_to_vec(),
    );
    let list = get_json(&viewer, "api/traces");
    let ids: Vec<&str> = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    let newest: Vec<String> = (16..=20u128).rev().map(|t| format!("{t:032x}")).collect();
    assert_eq!(ids, newest);
    let scrape = metrics(&viewer);
    assert_eq!(
        sample(&scrape, "tracewire_ui_traces_dropped_total", &[]),
        15.0
    );
    assert_eq!(sample(&scrape, "tracewire_ui_traces_held", &[]), 5.0);
    assert_eq!(
        sample(
            &scrape,
            "tracewire_ui_spans_received_total",
            &[("source", "otlp")]
        ),
        20.0
    );

    // In bytes: spans with 1 KiB attributes against a 1 MiB bound. The viewer counts every
    // allocation (`tests/ui_memory.rs` checks that against the heap) and keeps it within
    // two thirds of the bound, the rest being for the allocator's own overhead.
    let bound = 1 << 20;
    let viewer = start(Viewer::builder().max_bytes(bound));
    for batch in 0..40u128 {
        let spans = (0..50u128)
            .map(|n| {
                let mut span = proto_span(batch * 100 + n + 1, 1, 0, "GET /big");
                span.attributes.push(text("payload", &"x".repeat(1024)));
                span
            })
            .collect();
        let (status, body) = post(
            &viewer,
            "application/x-protobuf",
            request("gateway", spans).encode_to_vec(),
        );
        assert_eq!(status, StatusCode::OK, "{body}");
        let stats = viewer.stats();
        assert!(stats.bytes_held <= bound / 3 * 2, "{stats:?}");
    }
    let stats = viewer.stats();
    // Each trace takes more than its 1 KiB payload; the indexes take their part.
    assert!(
        stats.traces_held < bound / 3 * 2 / 1024 && stats.traces_held > bound / 3 * 2 / 8192,
        "{stats:?}"
    );
    assert_eq!(stats.spans_dropped, 0, "{stats:?}");
    assert_eq!(stats.traces_held as u64 + stats.traces_dropped, 2000);
}

#[test]
fn long_operation_names_from_otlp_stay_within_the_byte_bound() {
    // `/metrics` keeps a row per operation for as long as the viewer runs: a sender of
    // spans with long, ever new names must not grow it past the bound.
    let bound = 1 << 20;
    let viewer = start(Viewer::builder().max_bytes(bound));
    for batch in 0..20u128 {
        let name = format!("{batch} {}", "x".repeat(100 << 10));
        let root = request("gateway", vec![proto_span(batch + 1, 1, 0, &name)]);
        let (status, body) = post(&viewer, "application/x-protobuf", root.encode_to_vec());
        assert_eq!(status, StatusCode::OK, "{body}");
        let stats = viewer.stats();
        assert!(
            stats.bytes_held <= bound / 3 * 2,
            "batch {batch}: {stats:?}"
        );
    }
    // The newest traces are still shown; the operations past the bound count together.
    assert!(viewer.stats().traces_held >= 1, "{:?}", viewer.stats());
    let scrape = metrics(&viewer);
    let other = sample(
        &scrape,
        "tracewire_ui_requests_total",
        &[("operation", "_other")],
    );
    assert!(other > 0.0, "{other}");
}

/// `google.rpc.Status`, the body of OTLP/HTTP failures.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn post_raw(
    viewer: &Viewer,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Option<String>, Vec<u8>) {
    support::runtime().block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{}v1/traces", viewer.url()))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("viewer answers");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        (
            status,
            content_type,
            response.bytes().await.unwrap().to_vec(),
        )
    })
}

#[test]
fn otlp_failures_are_status_messages_in_the_request_encoding() {
    // As the OTLP/HTTP spec asks: an SDK (Java's, say) decodes the body of a 4xx as a
    // `Status` of the request's encoding, to show the developer its message.
    let viewer = start(Viewer::builder().max_body_bytes(4096));
    let (status, content_type, body) = post_raw(
        &viewer,
        "application/x-protobuf",
        b"\x0a\xff\xff\xff".to_vec(),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
    let decoded = RpcStatus::decode(&body[..]).expect("a protobuf Status");
    assert!(
        decoded.message.contains("invalid OTLP protobuf"),
        "{decoded:?}"
    );
    let (status, content_type, body) = post_raw(&viewer, "application/x-protobuf", vec![0; 5000]);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
    let decoded = RpcStatus::decode(&body[..]).expect("a protobuf Status");
    assert!(decoded.message.contains("4096 bytes"), "{decoded:?}");

    let (status, content_type, body) = post_raw(
        &viewer,
        "application/json",
        b"{\"resourceSpans\": [".to_vec(),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let decoded: Json = serde_json::from_slice(&body).expect("JSON");
    assert!(
        decoded["message"]
            .as_str()
            .unwrap()
            .contains("invalid OTLP JSON"),
        "{decoded}"
    );
}

#[test]
fn spans_dropped_at_the_limits_are_told_as_a_partial_success() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    // 5,000 spans a trace wait for their root at most: the sender hears of the rest (a 200
    // with `partial_success`, as the OTLP spec asks), rather than a full success.
    let viewer = start(Viewer::builder());
    let trace = 0x5af7651916cd43dd8448eb211c80319c_u128;
    let children = (2..=5101u64)
        .map(|id| proto_span(trace, id, 1, "SELECT"))
        .collect();
    let (status, content_type, body) = post_raw(
        &viewer,
        "application/x-protobuf",
        request("db", children).encode_to_vec(),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
    let response = ExportTraceServiceResponse::decode(&body[..]).unwrap();
    let partial = response.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_spans, 100, "{partial:?}");
    assert!(!partial.error_message.is_empty());
    assert_eq!(viewer.stats().spans_dropped, 100);

    // In JSON too; a request taken whole is a full success.
    let (status, _, body) = post_raw(
        &viewer,
        "application/json",
        serde_json::to_vec(&request("db", vec![proto_span(trace, 9999, 1, "SELECT")])).unwrap(),
    );
    assert_eq!(status, StatusCode::OK);
    let response: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        response["partialSuccess"]["rejectedSpans"]
            .to_string()
            .trim_matches('"'),
        "1",
        "{response}"
    );
    let root = request("db", vec![proto_span(trace + 1, 1, 0, "GET /")]);
    let (status, _, body) = post_raw(&viewer, "application/x-protobuf", root.encode_to_vec());
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_empty(), "{body:?}");
}

#[test]
fn a_trace_of_many_services_lists_quickly() {
    // A trace's service path is worked out on each listing, under the store's lock (which
    // the application's reporter waits on): it must not take time in the square of the
    // spans when each names its own service.
    let viewer = start(Viewer::builder());
    let trace = 0x6af7651916cd43dd8448eb211c80319c_u128;
    let root = request("gateway", vec![proto_span(trace, 1, 0, "GET /")]);
    post(&viewer, "application/x-protobuf", root.encode_to_vec());
    for batch in 0..8u64 {
        let mut body = ExportTraceServiceRequest::default();
        for n in 0..5000 {
            let id = 2 + batch * 5000 + n;
            let one = request(&format!("svc-{id}"), vec![proto_span(trace, id, 1, "x")]);
            body.resource_spans.extend(one.resource_spans);
        }
        let (status, answer) = post(&viewer, "application/x-protobuf", body.encode_to_vec());
        assert_eq!(status, StatusCode::OK, "{answer}");
        // Joined to the held trace after the grace period.
        let deadline = Instant::now() + Duration::from_secs(10);
        while viewer.stats().spans_assembling > 0 {
            assert!(Instant::now() < deadline, "{:?}", viewer.stats());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let started = Instant::now();
    let list = get_json(&viewer, "api/traces");
    let took = started.elapsed();
    assert_eq!(
        list["traces"][0]["span_count"],
        40_001,
        "{:?}",
        viewer.stats()
    );
    assert!(took < Duration::from_secs(2), "listing took {took:?}");
}
