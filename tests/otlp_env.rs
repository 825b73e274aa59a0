//! `otlp::init()` configured only by environment variables, each case in a child process
//! with an environment of its own: this test binary runs itself again, filtered to
//! `child_process_entry`, with `TRACEWIRE_TEST_CHILD` set and a cleared environment.
//!
//! The child installs the setup, serves a "checkout" axum service (`ServerLayer::new()`, no
//! propagator given) whose handler logs a line and calls a "stock" service through a hyper
//! client with `ClientLayer::new()` (no propagator given either). It sends checkout one
//! request carrying B3 multi headers and prints what stock received, then drops the guard,
//! which exports what is left. The parent owns the OTLP receiver (gRPC or HTTP) and checks
//! what reached it, the child's stdout and its stderr.
//!
//! `TRACEWIRE_TEST_MODE` varies the child: `runtime-multi-thread` and
//! `runtime-current-thread` call `init` inside a runtime of that flavour (as in
//! `#[tokio::main]`) and drop the guard there; `reqwest-grpc` calls stock through reqwest
//! and `TracingMiddleware::new()`, and a tonic health service through `ClientLayer::new()`
//! over a `Channel`, served behind `ServerLayer::new()`.
#![cfg(all(feature = "otlp", feature = "axum", feature = "b3"))]

#[cfg(feature = "reqwest")]
mod grpc_support;
mod otlp_support;

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp_support::{attr, Receiver};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::{ClientLayer, ServerLayer};

const CHILD: &str = "TRACEWIRE_TEST_CHILD";
const MODE: &str = "TRACEWIRE_TEST_MODE";
const B3_TRACE: &str = "463ac35c9f6413ad48485a3953bb6124";
const B3_SPAN: &str = "a2fb4a1d1a96d312";
const WAIT: Duration = Duration::from_secs(60);

/// The child's side. In the parent's run (no `TRACEWIRE_TEST_CHILD`) it returns at once:
/// it is only the entry point the parent's tests run in their children.
#[test]
fn child_process_entry() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let mode = std::env::var(MODE).unwrap_or_default();
    match mode.as_str() {
        "runtime-multi-thread" => {
            return init_inside(tokio::runtime::Builder::new_multi_thread());
        }
        "runtime-current-thread" => {
            return init_inside(tokio::runtime::Builder::new_current_thread());
        }
        "edit-env" => return edited_env(),
        #[cfg(feature = "reqwest")]
        "reqwest-grpc" => return reqwest_and_grpc(),
        "" => {}
        other => panic!("no such mode {other}"),
    }
    let guard = tracewire::otlp::init().expect("the first init installs");
    assert!(
        matches!(
            tracewire::otlp::init(),
            Err(tracewire::otlp::InitError::AlreadyInstalled)
        ),
        "a second init fails"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (status, seen) = runtime.block_on(serve_and_call());
    print_outcome(status, &seen);
    // The spans the exporter gave up on, all of them counted.
    guard.flush().unwrap();
    if let Some(counters) = guard.exporter_counters() {
        let stats = counters.stats();
        println!(
            "EXPORTED {} FAILED {}",
            stats.spans_exported, stats.spans_failed
        );
    }
    // Exports what is left: nothing is exported later, so the parent can count.
    drop(guard);
    drop(runtime);
}

fn print_outcome(status: u16, seen: &[(String, String)]) {
    println!("STATUS {status}");
    for (name, value) in seen {
        println!("STOCK-SAW {name}: {value}");
    }
}

/// `init` called inside a runtime, as `#[tokio::main]` would, and its guard dropped there.
fn init_inside(mut builder: tokio::runtime::Builder) {
    let runtime = builder.enable_all().build().unwrap();
    runtime.block_on(async {
        let guard = tracewire::otlp::init().expect("init inside a runtime");
        let (status, seen) = serve_and_call().await;
        print_outcome(status, &seen);
        // Exports what is left, from a thread of the runtime.
        drop(guard);
    });
}

/// `init` with settings that have no builder method of their own set in code: a span
/// attribute limit and a short batching delay.
fn edited_env() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let guard = tracewire::otlp::builder()
            .edit_env(|env| {
                env.limits.attribute_count = Some(3);
                env.batch.schedule_delay = Some(Duration::from_millis(50));
            })
            .init()
            .expect("init");
        let (status, seen) = serve_and_call().await;
        print_outcome(status, &seen);
        // Not flushed: the 50 ms schedule exports while the guard is still held.
        let deadline = std::time::Instant::now() + WAIT;
        let counters = guard.exporter_counters().expect("an OTLP exporter");
        while counters.stats().spans_exported < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("EXPORTED-BEFORE-DROP {}", counters.stats().spans_exported);
        drop(guard);
    });
}

/// The headers a service kept of a request: B3 and W3C ones.
fn keep_trace_headers(headers: &http::HeaderMap, kept: &Mutex<Vec<(String, String)>>) {
    for (name, value) in headers {
        let name = name.as_str();
        if name.starts_with("x-b3-") || name == "traceparent" || name == "b3" {
            kept.lock()
                .unwrap()
                .push((name.to_owned(), value.to_str().unwrap_or("").to_owned()));
        }
    }
}

/// The "stock" service, keeping the trace headers of its requests in `seen`.
async fn serve_stock(seen: Arc<Mutex<Vec<(String, String)>>>) -> std::net::SocketAddr {
    let stock = Router::new().route(
        "/stock",
        get(move |headers: http::HeaderMap| {
            let kept = seen.clone();
            async move {
                keep_trace_headers(&headers, &kept);
                "12"
            }
        }),
    );
    spawn_server(stock).await
}

/// Checkout calls stock through reqwest with `TracingMiddleware::new()`, then a tonic
/// health service through `ClientLayer::new()` over a `Channel`, served behind
/// `ServerLayer::new()`: none is given a propagator.
#[cfg(feature = "reqwest")]
fn reqwest_and_grpc() {
    use tracewire::reqwest::TracingMiddleware;

    let guard = tracewire::otlp::init().expect("init");
    let runtime = runtime();
    runtime.block_on(async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stock_addr = serve_stock(seen.clone()).await;
        let health = grpc_support::TestHealth::default();
        let grpc_addr = grpc_support::serve_grpc(ServerLayer::new(), health.clone()).await;
        let checkout = Router::new()
            .route(
                "/checkout",
                get(move || async move {
                    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                        .with(TracingMiddleware::new())
                        .build();
                    let stock = http
                        .get(format!("http://{stock_addr}/stock"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(stock.text().await.unwrap(), "12");
                    let mut client = grpc_support::client(grpc_addr, ClientLayer::new()).await;
                    client
                        .check(grpc_support::check_req("ok"))
                        .await
                        .expect("the health check answers");
                    "ordered"
                }),
            )
            .layer(ServerLayer::new());
        let checkout_addr = spawn_server(checkout).await;
        let status = call_checkout(checkout_addr).await;
        let stock_saw = seen.lock().unwrap().clone();
        print_outcome(status, &stock_saw);
        for metadata in health.seen() {
            let mut kept = Mutex::new(Vec::new());
            keep_trace_headers(&metadata.into_headers(), &kept);
            for (name, value) in kept.get_mut().unwrap().drain(..) {
                println!("GRPC-SAW {name}: {value}");
            }
        }
    });
    drop(guard);
}

/// Calls checkout with B3 multi headers; its status.
async fn call_checkout(checkout_addr: std::net::SocketAddr) -> u16 {
    let request = http::Request::get(format!("http://{checkout_addr}/checkout"))
        .header("x-b3-traceid", B3_TRACE)
        .header("x-b3-spanid", B3_SPAN)
        .header("x-b3-sampled", "1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = Client::builder(TokioExecutor::new())
        .build_http::<Empty<Bytes>>()
        .request(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

async fn serve_and_call() -> (u16, Vec<(String, String)>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stock_addr = serve_stock(seen.clone()).await;
    let checkout = Router::new()
        .route(
            "/checkout",
            get(move || async move {
                tracing::info!("checking the stock");
                let mut client = ServiceBuilder::new()
                    .layer(ClientLayer::new())
                    .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
                let request = http::Request::get(format!("http://{stock_addr}/stock"))
                    .body(Empty::new())
                    .unwrap();
                let response = client.ready().await.unwrap().call(request).await.unwrap();
                let _ = response.into_body().collect().await;
                "ordered"
            }),
        )
        .layer(ServerLayer::new());
    let checkout_addr = spawn_server(checkout).await;
    let status = call_checkout(checkout_addr).await;
    let seen = seen.lock().unwrap().clone();
    (status, seen)
}

async fn spawn_server(app: Router) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// What a child did.
struct Child {
    status: Option<u16>,
    stock_saw: Vec<(String, String)>,
    /// The trace headers the gRPC health service received (mode `reqwest-grpc`).
    grpc_saw: Vec<(String, String)>,
    /// Spans exported and spans failed, by the exporter's counters (default mode).
    exported: Option<(u64, u64)>,
    stdout: String,
    stderr: String,
}

impl Child {
    fn saw(&self, header: &str) -> Option<&str> {
        find_header(&self.stock_saw, header)
    }

    fn grpc_saw(&self, header: &str) -> Option<&str> {
        find_header(&self.grpc_saw, header)
    }
}

fn find_header<'a>(seen: &'a [(String, String)], header: &str) -> Option<&'a str> {
    seen.iter()
        .find(|(name, _)| name == header)
        .map(|(_, value)| value.as_str())
}

/// Runs the child with exactly `vars` as its environment (and `PATH`).
fn run_child(vars: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut command = Command::new(exe);
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
    } = command.output().expect("the child runs");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(
        status.success(),
        "the child failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let mut child = Child {
        status: None,
        stock_saw: Vec::new(),
        grpc_saw: Vec::new(),
        exported: None,
        stdout: stdout.clone(),
        stderr,
    };
    for line in stdout.lines() {
        // The harness prints its own text before the first line of the child's.
        let line = line.find("STATUS ").map_or(line, |at| &line[at..]);
        if let Some(code) = line.strip_prefix("STATUS ") {
            child.status = code.trim().parse().ok();
        } else if let Some(seen) = line.strip_prefix("STOCK-SAW ") {
            let (name, value) = seen.split_once(": ").unwrap();
            child.stock_saw.push((name.to_owned(), value.to_owned()));
        } else if let Some(seen) = line.strip_prefix("GRPC-SAW ") {
            let (name, value) = seen.split_once(": ").unwrap();
            child.grpc_saw.push((name.to_owned(), value.to_owned()));
        } else if let Some(counts) = line.strip_prefix("EXPORTED ") {
            let (exported, failed) = counts.split_once(" FAILED ").unwrap();
            child.exported = Some((exported.parse().unwrap(), failed.trim().parse().unwrap()));
        }
    }
    assert_eq!(child.status, Some(200), "stdout:\n{stdout}");
    child
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn string_attr(resource: &Resource, key: &str) -> Option<String> {
    match attr(&resource.attributes, key) {
        Some(AnyValue::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn server_span(spans: &[(Resource, Span)]) -> (Resource, Span) {
    spans
        .iter()
        .find(|(_, s)| s.kind == SpanKind::Server as i32)
        .cloned()
        .unwrap_or_else(|| panic!("no server span in {spans:#?}"))
}

/// The common case: B3 multi in and out, service and resource, spans at the receiver, log
/// lines with the trace id.
fn exports_with(receiver: &Receiver, protocol_vars: Vec<(&str, String)>) -> Child {
    let mut vars = vec![
        ("OTEL_SERVICE_NAME", "checkout".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test,team=pay%20ments".to_owned(),
        ),
        ("OTEL_PROPAGATORS", "b3multi".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    vars.extend(protocol_vars);
    let child = run_child(&vars);

    // B3 multi out, from a client layer given no propagator, continuing the B3 trace in.
    assert_eq!(
        child.saw("x-b3-traceid"),
        Some(B3_TRACE),
        "{:?}",
        child.stock_saw
    );
    assert_eq!(child.saw("x-b3-sampled"), Some("1"));
    assert_eq!(child.saw("traceparent"), None, "only B3 goes out");

    assert!(receiver.wait_for_span("GET /checkout", WAIT));
    let spans = receiver.spans();
    let (resource, server) = server_span(&spans);
    assert_eq!(hex(&server.trace_id), B3_TRACE, "B3 multi in");
    assert_eq!(hex(&server.parent_span_id), B3_SPAN);
    assert_eq!(
        string_attr(&resource, "service.name").as_deref(),
        Some("checkout")
    );
    assert_eq!(
        string_attr(&resource, "deployment.environment").as_deref(),
        Some("test")
    );
    assert_eq!(string_attr(&resource, "team").as_deref(), Some("pay ments"));
    assert!(attr(&resource.attributes, "process.pid").is_some());
    let client = spans
        .iter()
        .find(|(_, s)| s.kind == SpanKind::Client as i32)
        .expect("the client span is exported");
    assert_eq!(hex(&client.1.trace_id), B3_TRACE);
    assert_eq!(
        child.saw("x-b3-spanid"),
        Some(hex(&client.1.span_id).as_str()),
        "the stock service's parent is the client span"
    );
    child
}

#[test]
fn grpc_from_the_environment() {
    let rt = runtime();
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let child = exports_with(
        &receiver,
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", receiver.addr),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ],
    );
    // The handler's log line names its trace.
    let line = child
        .stderr
        .lines()
        .find(|l| l.contains("checking the stock"))
        .unwrap_or_else(|| panic!("no log line in {}", child.stderr));
    assert!(line.contains(&format!("trace_id={B3_TRACE}")), "{line}");
    assert!(line.contains("span_id="), "{line}");
}

#[test]
fn http_protobuf_from_the_environment() {
    let rt = runtime();
    let receiver = rt
        .block_on(async { Receiver::start_http(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    // The base endpoint: `/v1/traces` is added.
    exports_with(
        &receiver,
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}/", receiver.addr),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ],
    );
}

#[test]
fn http_json_from_the_environment_with_json_logs() {
    let rt = runtime();
    let receiver = rt
        .block_on(async { Receiver::start_http(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let child = exports_with(
        &receiver,
        vec![
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("http://{}/v1/traces", receiver.addr),
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json".to_owned()),
            ("TRACEWIRE_LOG_FORMAT", "json".to_owned()),
        ],
    );
    let line = child
        .stderr
        .lines()
        .find(|l| l.contains("checking the stock"))
        .unwrap_or_else(|| panic!("no log line in {}", child.stderr));
    let json: serde_json::Value = serde_json::from_str(line).expect(line);
    assert_eq!(json["trace_id"], B3_TRACE, "{line}");
    assert_eq!(json["span_id"].as_str().map(str::len), Some(16), "{line}");
}

#[test]
fn the_sampler_from_the_environment() {
    let rt = runtime();
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let child = run_child(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.addr),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_PROPAGATORS", "b3multi".to_owned()),
        ("OTEL_TRACES_SAMPLER", "always_off".to_owned()),
    ]);
    // The trace goes on, unsampled; the guard exported everything before the child exited.
    assert_eq!(child.saw("x-b3-traceid"), Some(B3_TRACE));
    assert_eq!(child.saw("x-b3-sampled"), Some("0"));
    assert!(receiver.spans().is_empty(), "{:#?}", receiver.spans());
}

#[test]
fn invalid_values_are_warned_about_by_name_and_ignored() {
    let rt = runtime();
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let child = run_child(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.addr),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_TRACES_SAMPLER", "sometimes".to_owned()),
        ("OTEL_PROPAGATORS", "b3multi,carrier-pigeon".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=s3cr3t,no-equals-sign".to_owned(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "soon".to_owned()),
    ]);
    let stderr = &child.stderr;
    for expected in [
        "OTEL_TRACES_SAMPLER=\"sometimes\"",
        "carrier-pigeon",
        "OTEL_EXPORTER_OTLP_HEADERS is malformed",
        "OTEL_BSP_SCHEDULE_DELAY=\"soon\"",
    ] {
        assert_eq!(
            stderr.lines().filter(|l| l.contains(expected)).count(),
            1,
            "one warning with {expected} in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("s3cr3t"), "a header value was printed");
    // The rest of the configuration still applies: default sampler, B3 multi.
    assert_eq!(child.saw("x-b3-traceid"), Some(B3_TRACE));
    assert!(receiver.wait_for_span("GET /checkout", WAIT));
}

#[test]
fn an_unreachable_endpoint_costs_spans_not_requests() {
    let rt = runtime();
    let closed = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    });
    let child = run_child(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000".to_owned()),
    ]);
    assert_eq!(child.status, Some(200), "the request is served");
    assert_eq!(
        child
            .stderr
            .lines()
            .filter(|l| l.contains("exporting spans failed"))
            .count(),
        1,
        "{}",
        child.stderr
    );
    // The server and client spans, each counted as failed, none as exported.
    let (exported, failed) = child.exported.expect("the counters are printed");
    assert_eq!((exported, failed), (0, 2), "{}", child.stderr);
}

#[test]
fn sdk_disabled_exports_nothing_and_serves() {
    let rt = runtime();
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let child = run_child(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.addr),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_SDK_DISABLED", "true".to_owned()),
        ("OTEL_PROPAGATORS", "b3multi".to_owned()),
    ]);
    assert!(receiver.requests().is_empty());
    // The layers still pass the caller's trace on, in the propagator's format.
    assert_eq!(
        child.saw("x-b3-traceid"),
        Some(B3_TRACE),
        "{:?}",
        child.stock_saw
    );
    assert_eq!(child.saw("traceparent"), None);
}

#[test]
fn console_exporter_prints_trees_that_rust_log_does_not_quiet() {
    let child = run_child(&[
        ("OTEL_TRACES_EXPORTER", "console".to_owned()),
        ("OTEL_SERVICE_NAME", "checkout".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
        ("NO_COLOR", "1".to_owned()),
    ]);
    assert!(
        child.stderr.contains("▸ GET /checkout"),
        "the tree is printed:\n{}",
        child.stderr
    );
    let logged = |l: &&str| l.contains("INFO") && l.contains("checking the stock");
    assert!(
        !child.stderr.lines().any(|l| logged(&l)),
        "RUST_LOG=warn quiets the info line:\n{}",
        child.stderr
    );
    assert!(
        child.stderr.contains("• checking the stock"),
        "the recorder still records it, as an event of the tree:\n{}",
        child.stderr
    );
}

#[test]
fn init_inside_a_multi_thread_runtime() {
    exports_from_inside("runtime-multi-thread", "grpc");
}

#[test]
fn init_inside_a_current_thread_runtime() {
    exports_from_inside("runtime-current-thread", "http/protobuf");
}

/// A child in `mode` (a runtime flavour `init` is called in) exports over `protocol` to a
/// real receiver, as `exports_with` checks.
fn exports_from_inside(mode: &str, protocol: &str) {
    let rt = runtime();
    let receiver = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        if protocol == "grpc" {
            Receiver::start(listener)
        } else {
            Receiver::start_http(listener)
        }
    });
    exports_with(
        &receiver,
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", receiver.addr),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            (MODE, mode.to_owned()),
        ],
    );
}

/// Settings without a builder method of their own, edited in code with `edit_env`, apply:
/// the attribute limit caps every exported span, and the batching delay exports before the
/// guard goes.
#[test]
fn settings_edited_in_code_apply() {
    let rt = runtime();
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let child = run_child(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.addr),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        // Long enough that only the edited delay can export before the guard is dropped.
        ("OTEL_BSP_SCHEDULE_DELAY", "3600000".to_owned()),
        (MODE, "edit-env".to_owned()),
    ]);
    assert!(
        child.stdout.contains("EXPORTED-BEFORE-DROP 2"),
        "{}\n{}",
        child.stdout,
        child.stderr
    );
    assert!(receiver.wait_for_span("GET /checkout", WAIT));
    let spans = receiver.spans();
    assert!(spans.len() >= 2, "{spans:?}");
    for (_, span) in &spans {
        assert_eq!(
            span.attributes.len(),
            3,
            "{}: {:?}",
            span.name,
            span.attributes
        );
        assert!(span.dropped_attributes_count > 0, "{}", span.name);
    }
}

/// `OTEL_PROPAGATORS=b3multi` alone makes reqwest's middleware and a tonic client and
/// server, none given a propagator, inject and extract B3 multi headers.
#[cfg(feature = "reqwest")]
#[test]
fn the_default_propagator_applies_to_reqwest_and_grpc() {
    let rt = runtime();
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let child = run_child(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", receiver.addr),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_PROPAGATORS", "b3multi".to_owned()),
        (MODE, "reqwest-grpc".to_owned()),
    ]);
    for (hop, saw) in [("reqwest", &child.stock_saw), ("gRPC", &child.grpc_saw)] {
        assert_eq!(
            find_header(saw, "x-b3-traceid"),
            Some(B3_TRACE),
            "{hop}: {saw:?}"
        );
        assert_eq!(
            find_header(saw, "x-b3-sampled"),
            Some("1"),
            "{hop}: {saw:?}"
        );
        assert_eq!(
            find_header(saw, "traceparent"),
            None,
            "{hop}: only B3 goes out"
        );
    }
    const CHECK: &str = "grpc.health.v1.Health/Check";
    assert!(receiver.wait_for_span(CHECK, WAIT));
    assert!(receiver.wait_for_span("GET /checkout", WAIT));
    let spans = receiver.spans();
    let find = |kind: SpanKind, name: &str| {
        spans
            .iter()
            .map(|(_, span)| span)
            .find(|s| s.kind == kind as i32 && s.name == name)
            .unwrap_or_else(|| panic!("no {kind:?} span {name} in {spans:#?}"))
    };
    let checkout = find(SpanKind::Server, "GET /checkout");
    assert_eq!(hex(&checkout.trace_id), B3_TRACE, "B3 multi in over HTTP");
    let reqwest = find(SpanKind::Client, "GET");
    assert_eq!(
        child.saw("x-b3-spanid"),
        Some(hex(&reqwest.span_id).as_str()),
        "reqwest's span is the parent it sent"
    );
    let grpc_client = find(SpanKind::Client, CHECK);
    assert_eq!(
        child.grpc_saw("x-b3-spanid"),
        Some(hex(&grpc_client.span_id).as_str())
    );
    let grpc_server = find(SpanKind::Server, CHECK);
    assert_eq!(
        hex(&grpc_server.trace_id),
        B3_TRACE,
        "B3 multi in over gRPC"
    );
    assert_eq!(
        grpc_server.parent_span_id, grpc_client.span_id,
        "the gRPC server continues the client's span"
    );
}

/// Without the feature `otlp-tls`, an `https://` endpoint from the environment is a warning
/// naming the variable and the feature; with it, TLS is attempted. Either way the service
/// serves, nothing reaches the plain-text receiver in clear text, and the spans are counted
/// as failed.
#[test]
fn an_https_endpoint_from_the_environment_never_fails_the_service() {
    let rt = runtime();
    let grpc =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let http = rt
        .block_on(async { Receiver::start_http(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    for (receiver, variable, url, protocol) in [
        (
            &grpc,
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("https://127.0.0.1:{}", grpc.addr.port()),
            "grpc",
        ),
        (
            &http,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("https://127.0.0.1:{}/v1/traces", http.addr.port()),
            "http/protobuf",
        ),
    ] {
        let child = run_child(&[
            (variable, url),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000".to_owned()),
        ]);
        let stderr = &child.stderr;
        let (exported, failed) = child.exported.expect("the counters are printed");
        assert_eq!(exported, 0, "{protocol}\n{stderr}");
        assert!(
            failed >= 2,
            "{protocol}: the server and client spans\n{stderr}"
        );
        assert!(
            receiver.requests().is_empty(),
            "{protocol}: nothing in clear text"
        );
        if cfg!(feature = "otlp-tls") {
            assert!(
                stderr.contains("exporting spans failed"),
                "{protocol}: the TLS handshake fails\n{stderr}"
            );
        } else {
            let warnings: Vec<&str> = stderr
                .lines()
                .filter(|l| {
                    l.contains(variable)
                        && l.contains("otlp-tls")
                        && l.contains("spans are dropped")
                })
                .collect();
            assert_eq!(warnings.len(), 1, "{protocol}\n{stderr}");
        }
    }
}
