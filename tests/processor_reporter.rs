//! `ProcessorReporter` hands the recorder's spans to an OpenTelemetry SDK `SpanProcessor`: the
//! SDK's `BatchSpanProcessor` into a real OTLP/gRPC receiver or into the SDK's in-memory
//! exporter, behind a traced axum server answering real requests over loopback.

#![cfg(all(feature = "otel", feature = "axum"))]

mod otlp_support;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use opentelemetry::trace::{SpanKind, TraceId as OtelTraceId};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as ProtoKind;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, InMemorySpanExporter, Span, SpanData, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use otlp_support::{attr, Receiver};
use tokio::net::TcpListener;
use tracewire::record::{RecordLayer, Recorder, RecorderHandle};
use tracewire::report::ProcessorReporter;
use tracewire::ServerLayer;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn app() -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/ok", get(|| async { "ok" }))
        .route("/boom", get(|| async { "boom" }))
        .layer(ServerLayer::new())
}

/// Runs `paths` against a traced axum server on 127.0.0.1:0, each with a W3C `traceparent`,
/// recording into `dispatch` on this thread only; returns once their server spans are
/// recorded (the client may see the end of a response before the server span closes).
fn serve_requests(dispatch: &Dispatch, handle: &RecorderHandle, paths: &[&str]) {
    let before = handle.stats().spans_recorded;
    tracing::dispatcher::with_default(dispatch, || {
        support::runtime().block_on(async {
            let addr = support::serve(app()).await;
            let client = support::hyper_client();
            for path in paths {
                let mut request = support::get_req(&format!("http://{addr}{path}"));
                request.headers_mut().insert(
                    "traceparent",
                    format!("00-{TRACE_ID}-{PARENT_ID}-01").parse().unwrap(),
                );
                let response = client.request(request).await.expect("response");
                assert_eq!(response.status(), 200, "the request path is untouched");
                support::text(response.into_body()).await;
            }
            let want = before + paths.len() as u64;
            let deadline = Instant::now() + support::WAIT;
            while handle.stats().spans_recorded < want {
                assert!(
                    Instant::now() < deadline,
                    "server spans not recorded in time"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    });
}

fn dispatch(layer: RecordLayer) -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(layer))
}

fn string(value: Option<&AnyValue>) -> Option<String> {
    match value {
        Some(AnyValue::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int(value: Option<&AnyValue>) -> Option<i64> {
    match value {
        Some(AnyValue::IntValue(i)) => Some(*i),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A real OTLP/gRPC receiver on 127.0.0.1:0, and the SDK's batch processor exporting to it
/// through `opentelemetry-otlp`'s tonic exporter every `delay`, with the runtime that keeps
/// both.
fn otlp_batch_processor(
    delay: Duration,
) -> (tokio::runtime::Runtime, Receiver, BatchSpanProcessor) {
    let otlp = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let receiver =
        otlp.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    // The tonic exporter is built inside the runtime that keeps its connection.
    let exporter = {
        let _entered = otlp.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{}", receiver.addr))
            .build()
            .unwrap()
    };
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(delay)
                .with_max_export_batch_size(512)
                .build(),
        )
        .build();
    (otlp, receiver, processor)
}

/// The server span of a real request goes through the SDK's `BatchSpanProcessor` and
/// `opentelemetry-otlp`'s tonic exporter to a real receiver, on the processor's own schedule
/// (no flush), with its attributes, the caller's trace and parent ids and the resource made
/// from the recorder's service name.
#[test]
fn a_server_span_reaches_an_otlp_receiver_through_the_batch_processor() {
    let (_otlp, receiver, processor) = otlp_batch_processor(Duration::from_millis(100));
    let reporter = ProcessorReporter::builder(processor)
        .resource_attribute(KeyValue::new("deployment.environment", "test"))
        .build();
    let counters = reporter.counters();
    let (layer, guard) = Recorder::builder()
        .service_name("checkout")
        .reporter(reporter)
        .build();

    serve_requests(&dispatch(layer), &guard.handle(), &["/users/7"]);
    assert!(
        receiver.wait_for_span("GET /users/{id}", support::WAIT),
        "the server span arrived without a flush: {:#?}",
        receiver.requests()
    );

    let spans = receiver.spans();
    let (resource, server) = spans
        .iter()
        .find(|(_, span)| span.name == "GET /users/{id}")
        .unwrap();
    assert_eq!(hex(&server.trace_id), TRACE_ID);
    assert_eq!(hex(&server.parent_span_id), PARENT_ID);
    assert_eq!(server.kind, ProtoKind::Server as i32);
    assert_eq!(server.span_id.len(), 8);
    let a = &server.attributes;
    assert_eq!(
        string(attr(a, "http.request.method")).as_deref(),
        Some("GET")
    );
    assert_eq!(
        string(attr(a, "http.route")).as_deref(),
        Some("/users/{id}")
    );
    assert_eq!(string(attr(a, "url.path")).as_deref(), Some("/users/7"));
    assert_eq!(int(attr(a, "http.response.status_code")), Some(200));
    let r = &resource.attributes;
    assert_eq!(string(attr(r, "service.name")).as_deref(), Some("checkout"));
    assert_eq!(
        string(attr(r, "deployment.environment")).as_deref(),
        Some("test")
    );
    assert_eq!(
        string(attr(r, "telemetry.sdk.name")).as_deref(),
        Some("tracewire")
    );

    let stats = guard.shutdown_within(support::WAIT).expect("all delivered");
    assert_eq!(stats.spans_recorded, 1);
    assert_eq!(stats.spans_exported, 1);
    assert_eq!(stats.queued, 0);
    assert_eq!(counters.stats().spans_handed, 1);
    assert_eq!(counters.stats().flush_errors, 0);
}

/// A batch processor into the SDK's in-memory exporter that never exports on its own: only
/// a flush or shutdown does. (The in-memory exporter forgets its spans when shut down.)
fn idle_batch_processor(exporter: &InMemorySpanExporter) -> BatchSpanProcessor {
    BatchSpanProcessor::builder(exporter.clone())
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_secs(3600))
                .with_max_export_batch_size(512)
                .build(),
        )
        .build()
}

fn names(exporter: &InMemorySpanExporter) -> Vec<String> {
    let mut names: Vec<String> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .map(|span| span.name.into_owned())
        .collect();
    names.sort();
    names
}

fn received(receiver: &Receiver) -> Vec<String> {
    let mut names: Vec<String> = receiver.spans().into_iter().map(|(_, s)| s.name).collect();
    names.sort();
    names
}

/// Flushing the recorder is the processor's `force_flush`, and dropping its guard the
/// processor's `shutdown`: each delivers every span recorded before it to the receiver,
/// though the processor would not export for an hour.
#[test]
fn flush_and_guard_drop_deliver_everything() {
    let (_otlp, receiver, processor) = otlp_batch_processor(Duration::from_secs(3600));
    let reporter = ProcessorReporter::builder(processor)
        .resource(Resource::builder_empty().with_service_name("given").build())
        .build();
    let counters = reporter.counters();
    let (layer, guard) = Recorder::builder()
        .service_name("checkout")
        .reporter(reporter)
        .build();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let record = |n: usize| serve_requests(&dispatch, &handle, &vec!["/ok"; n]);

    record(5);
    handle.flush(support::WAIT).expect("flush");
    assert_eq!(
        received(&receiver),
        vec!["GET /ok"; 5],
        "delivered by the flush"
    );

    record(20);
    assert_eq!(
        received(&receiver).len(),
        5,
        "the processor holds the rest until shutdown"
    );
    drop(guard);
    assert_eq!(
        received(&receiver),
        vec!["GET /ok"; 25],
        "delivered at guard drop"
    );
    for (resource, _) in receiver.spans() {
        assert_eq!(
            string(attr(&resource.attributes, "service.name")).as_deref(),
            Some("given"),
            "the resource given in code, as given"
        );
    }
    let stats = handle.stats();
    assert_eq!(stats.spans_recorded, 25);
    assert_eq!(stats.spans_exported, 25);
    assert_eq!(stats.dropped.total(), 0);
    assert_eq!(stats.queued, 0);
    assert_eq!(counters.stats().spans_handed, 25);
    assert_eq!(counters.stats().flush_errors, 0);
}

/// A user's processor that panics on spans named "GET /boom", and in its first
/// `force_flush`; passes everything else to a batch processor.
#[derive(Debug)]
struct Panicky {
    next: BatchSpanProcessor,
    flush_panicked: AtomicBool,
}

impl SpanProcessor for Panicky {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.name == "GET /boom" {
            panic!("the processor panics on {}", span.name);
        }
        self.next.on_end(span)
    }

    fn force_flush(&self) -> OTelSdkResult {
        if !self.flush_panicked.swap(true, Ordering::SeqCst) {
            panic!("the processor panics in its first flush");
        }
        self.next.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.next.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.next.set_resource(resource)
    }
}

/// A processor that panics loses the span it panicked on, counted as dropped
/// (`reporter_panic`), and nothing else: the spans around it in the same batch and the
/// spans after it are handed over, and the worker keeps running.
#[test]
fn a_panicking_processor_costs_only_its_span() {
    let exporter = InMemorySpanExporter::default();
    let reporter = ProcessorReporter::new(Panicky {
        next: idle_batch_processor(&exporter),
        flush_panicked: AtomicBool::new(false),
    });
    let counters = reporter.counters();
    let (layer, guard) = Recorder::builder()
        .service_name("checkout")
        // One batch for all three spans of the first round, however slow the machine.
        .flush_interval(Duration::from_secs(3600))
        .reporter(reporter)
        .build();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let record = |paths: &[&str]| serve_requests(&dispatch, &handle, paths);

    record(&["/ok", "/boom", "/users/1"]);
    // The first flush panics in the processor's `force_flush`: counted, and the worker goes
    // on (the recorder's own flush still completes).
    handle.flush(support::WAIT).expect("flush");
    let after_first = counters.stats();
    assert_eq!(after_first.panics, 2, "one `on_end`, one `force_flush`");
    assert_eq!(after_first.flush_errors, 1);
    assert_eq!(after_first.spans_handed, 2);
    let stats = handle.stats();
    assert_eq!(stats.spans_recorded, 3);
    assert_eq!(stats.spans_exported, 2);
    assert_eq!(stats.dropped.reporter_panic, 1);
    assert_eq!(stats.queued, 0);

    // Later spans, the panicking kind among them, still go through.
    record(&["/boom", "/ok"]);
    handle.flush(support::WAIT).expect("flush");
    assert_eq!(names(&exporter), ["GET /ok", "GET /ok", "GET /users/{id}"]);
    let stats = handle.stats();
    assert_eq!(stats.spans_recorded, 5);
    assert_eq!(stats.spans_exported, 3);
    assert_eq!(stats.dropped.reporter_panic, 2);
    assert_eq!(counters.stats().panics, 3);
    assert_eq!(counters.stats().flush_errors, 1);

    let deadline = Instant::now() + support::WAIT;
    let stats = match guard.shutdown_within(support::WAIT) {
        Ok(stats) => stats,
        // Two spans were lost to the panics: the shutdown says so.
        Err(error) => {
            assert!(!error.timed_out, "{error}");
            error.stats
        }
    };
    assert!(Instant::now() <= deadline);
    assert_eq!(stats.spans_exported, 3);
    assert_eq!(stats.dropped.reporter_panic, 2);
    assert_eq!(stats.dropped.total(), 2);
    assert_eq!(stats.queued, 0);
    assert!(exporter.is_shutdown_called());
}

/// The span data handed to the processor is the recorder's span, converted once: the same
/// trace as the caller's, a server span.
#[test]
fn handed_span_data_keeps_ids_and_kind() {
    let exporter = InMemorySpanExporter::default();
    let (layer, guard) = Recorder::builder()
        .service_name("checkout")
        .reporter(ProcessorReporter::new(idle_batch_processor(&exporter)))
        .build();
    serve_requests(&dispatch(layer), &guard.handle(), &["/users/3"]);
    guard.flush().expect("flush");
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    assert_eq!(
        span.span_context.trace_id(),
        OtelTraceId::from_hex(TRACE_ID).unwrap()
    );
    assert_eq!(span.parent_span_id.to_string(), PARENT_ID);
    assert!(span.parent_span_is_remote);
    assert_eq!(span.span_kind, SpanKind::Server);
    assert!(span
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "http.route" && kv.value.as_str() == "/users/{id}"));
}

/// The `Debug` of the reporter and its builder names the processor without printing it: the
/// SDK's `SimpleSpanProcessor` prints its exporter, and an OTLP exporter its headers' values
/// (credentials, often) and its endpoint's user and password.
#[test]
fn debug_output_shows_no_exporter_credentials() {
    use opentelemetry_otlp::WithHttpConfig;
    use opentelemetry_sdk::trace::SimpleSpanProcessor;
    let runtime = support::runtime();
    let processor = || {
        let _entered = runtime.enter();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint("http://ana:pa55word@127.0.0.1:9/v1/traces")
            .with_headers([("authorization".to_owned(), "Bearer s3cr3t".to_owned())].into())
            .build()
            .unwrap();
        SimpleSpanProcessor::new(exporter)
    };
    let builder = ProcessorReporter::builder(processor());
    let reporter = ProcessorReporter::new(processor());
    for debug in [format!("{builder:?}"), format!("{reporter:?}")] {
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(!debug.contains("pa55word"), "{debug}");
        assert!(debug.contains("SimpleSpanProcessor"), "{debug}");
    }
}
