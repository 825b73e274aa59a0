//! The OpenTelemetry bridge: every `SpanRecord` field arrives in the SDK's `SpanData`, each
//! service with its own resource; batching, timeouts, failures and shutdown.
#![cfg(feature = "otel")]

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Event, SpanKind, Status, TraceState as OtelTraceState};
use opentelemetry::{Array, InstrumentationScope, Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState, FLAG_RANDOM};
use tracewire::env::EnvConfig;
use tracewire::record::{Recorder, SpanRecord, SpanStart};
use tracewire::report::{OtelReporter, Reporter};
use tracewire::span::Link;
use tracing_subscriber::layer::SubscriberExt;

/// One `export` call: the resource set at that moment and the spans.
type Export = (Option<Resource>, Vec<SpanData>);

/// Records every call.
#[derive(Debug, Default)]
struct Recording {
    exports: Arc<Mutex<Vec<Export>>>,
    resource: Option<Resource>,
    flushes: Arc<AtomicUsize>,
    shutdowns: Arc<AtomicUsize>,
}

impl Recording {
    fn new() -> (Self, Arc<Mutex<Vec<Export>>>) {
        let exporter = Recording::default();
        let exports = exporter.exports.clone();
        (exporter, exports)
    }
}

impl SpanExporter for Recording {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.exports
            .lock()
            .unwrap()
            .push((self.resource.clone(), batch));
        Ok(())
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.resource = Some(resource.clone());
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn shutdown(&self) -> OTelSdkResult {
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn resource_str(resource: &Resource, key: &'static str) -> Option<String> {
    resource
        .get(&Key::from_static_str(key))
        .map(|v| v.to_string())
}

fn full_record() -> SpanRecord {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let trace_state = TraceState::from_members([
        ("rojo", "00f067aa0ba902b7"),
        ("a@b@c", "1"),
        ("congo", "t61"),
    ])
    .unwrap();
    let linked = SpanContext::new(
        TraceId::from(0xaaaa_u128),
        SpanId::from(0xbbbb_u64),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_members([("k", "v")]).unwrap(),
    );
    SpanRecord {
        span_context: SpanContext::new(
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
            SpanId::from(0x00f067aa0ba902b7),
            FLAG_RANDOM.with_sampled(true),
            false,
            trace_state,
        ),
        parent_span_id: SpanId::from(0x1122334455667788),
        parent_is_remote: true,
        name: Cow::Borrowed("POST /checkout"),
        kind: SpanKind::Server,
        start_time: t0,
        end_time: t0 + Duration::from_millis(98),
        attributes: vec![
            KeyValue::new("http.response.status_code", 500i64),
            KeyValue::new("server.port", 8080i64),
            KeyValue::new("ratio", 0.5),
            KeyValue::new("vip", true),
            KeyValue::new("http.route", "/checkout"),
            KeyValue::new(
                "tags",
                Value::Array(Array::String(vec![StringValue::from("a"), "b".into()])),
            ),
        ],
        dropped_attributes_count: 3,
        events: vec![
            Event::new(
                "exception",
                t0 + Duration::from_millis(57),
                vec![
                    KeyValue::new("exception.type", "Timeout"),
                    KeyValue::new("exception.message", "gateway timeout"),
                ],
                0,
            ),
            Event::new(
                "retry",
                t0 + Duration::from_millis(60),
                vec![KeyValue::new("attempt", 2i64)],
                1,
            ),
        ],
        dropped_events_count: 2,
        links: vec![Link {
            span_context: linked,
            attributes: vec![KeyValue::new("reason", "untrusted edge")],
            dropped_attributes_count: 0,
        }],
        dropped_links_count: 3,
        status: Status::error("gateway timeout"),
        service_name: Arc::from("checkout"),
        scope: InstrumentationScope::builder("tracewire")
            .with_version("0.1.0")
            .build(),
    }
}

#[test]
fn every_field_arrives_in_span_data() {
    let (exporter, exports) = Recording::new();
    let mut otel = OtelReporter::new(exporter);
    let record = full_record();
    otel.report(std::slice::from_ref(&record));
    otel.flush();

    let exports = exports.lock().unwrap();
    assert_eq!(exports.len(), 1);
    let (resource, spans) = &exports[0];
    let resource = resource.as_ref().expect("a resource was set");
    assert_eq!(
        resource_str(resource, "service.name").as_deref(),
        Some("checkout")
    );
    assert_eq!(
        resource_str(resource, "telemetry.sdk.name").as_deref(),
        Some("tracewire")
    );
    assert_eq!(spans.len(), 1);
    let span = &spans[0];

    let cx = &span.span_context;
    assert_eq!(cx.trace_id(), record.trace_id());
    assert_eq!(cx.span_id(), record.span_id());
    assert_eq!(cx.trace_flags().to_u8(), 0x03, "sampled and random");
    assert!(!cx.is_remote());
    // `a@b@c` is valid W3C Level 2 but refused by opentelemetry's grammar.
    assert_eq!(cx.trace_state().header(), "rojo=00f067aa0ba902b7,congo=t61");
    assert_eq!(span.parent_span_id, record.parent_span_id);
    assert!(span.parent_span_is_remote);
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.name, "POST /checkout");
    assert_eq!(span.start_time, record.start_time);
    assert_eq!(span.end_time, record.end_time);
    assert_eq!(span.attributes, record.attributes);
    assert_eq!(
        span.attributes[0].value,
        Value::I64(500),
        "integers stay integers"
    );
    assert_eq!(span.dropped_attributes_count, 3);
    assert_eq!(span.events.events, record.events);
    assert_eq!(span.events.dropped_count, 2);
    assert_eq!(span.links.dropped_count, 3);
    assert_eq!(span.events.events[1].dropped_attributes_count, 1);
    assert_eq!(span.links.links.len(), 1);
    let link = &span.links.links[0];
    assert_eq!(link.span_context.trace_id(), TraceId::from(0xaaaa_u128));
    assert_eq!(link.span_context.span_id(), SpanId::from(0xbbbb_u64));
    assert!(link.span_context.is_remote());
    assert!(link.span_context.is_sampled());
    assert_eq!(
        link.span_context.trace_state(),
        &OtelTraceState::from_key_value([("k", "v")]).unwrap()
    );
    assert_eq!(
        link.attributes,
        vec![KeyValue::new("reason", "untrusted edge")]
    );
    assert_eq!(span.status, Status::error("gateway timeout"));
    assert_eq!(span.instrumentation_scope.name(), "tracewire");
    assert_eq!(span.instrumentation_scope.version(), Some("0.1.0"));

    // The conversion is also public.
    assert_eq!(&SpanData::from(&record), span);
}

#[test]
fn each_service_is_exported_with_its_own_resource() {
    let (exporter, exports) = Recording::new();
    let env = EnvConfig::from_lookup(|name| {
        (name == "OTEL_RESOURCE_ATTRIBUTES")
            .then_some("deployment.environment=staging,team=pay,service.name=from-env")
    });
    let otel = OtelReporter::builder(exporter)
        .with_env_config(&env)
        .resource_attribute(KeyValue::new("team", "payments"))
        .resource_attributes([KeyValue::new("service.name", "ignored")])
        .build();
    let (layer, guard) = Recorder::builder()
        .service_name("checkout")
        .reporter(otel)
        .build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let _root = tracing::info_span!("checkout", amount = 42u64, port = 8080i64).entered();
        SpanStart::new()
            .service_name("inventory")
            .kind(SpanKind::Server)
            .create(|| tracing::info_span!("reserve"))
            .in_scope(|| tracing::info_span!("lookup").in_scope(|| {}));
        SpanStart::new()
            .service_name("payment")
            .create(|| tracing::info_span!("charge"))
            .in_scope(|| {});
    });
    guard.flush().unwrap();

    let exports = exports.lock().unwrap();
    let mut by_service: Vec<(String, Vec<String>)> = exports
        .iter()
        .map(|(resource, spans)| {
            let resource = resource.as_ref().unwrap();
            assert_eq!(
                resource_str(resource, "deployment.environment").as_deref(),
                Some("staging")
            );
            assert_eq!(
                resource_str(resource, "team").as_deref(),
                Some("payments"),
                "code overrides env"
            );
            assert_eq!(
                resource_str(resource, "telemetry.sdk.language").as_deref(),
                Some("rust")
            );
            (
                resource_str(resource, "service.name").unwrap(),
                spans.iter().map(|s| s.name.to_string()).collect(),
            )
        })
        .collect();
    by_service.sort();
    assert_eq!(
        by_service,
        vec![
            ("checkout".to_string(), vec!["checkout".to_string()]),
            (
                "inventory".to_string(),
                vec!["lookup".to_string(), "reserve".to_string()]
            ),
            ("payment".to_string(), vec!["charge".to_string()]),
        ]
    );
    let all: Vec<&SpanData> = exports.iter().flat_map(|(_, spans)| spans).collect();
    let checkout = all.iter().find(|s| s.name == "checkout").unwrap();
    let attr = |key: &str| {
        checkout
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(attr("amount"), Some(Value::I64(42)));
    assert_eq!(attr("port"), Some(Value::I64(8080)));
    let reserve = all.iter().find(|s| s.name == "reserve").unwrap();
    assert_eq!(reserve.span_kind, SpanKind::Server);
    assert_eq!(reserve.parent_span_id, checkout.span_context.span_id());
    assert!(!reserve.parent_span_is_remote);
    assert_eq!(
        reserve.span_context.trace_id(),
        checkout.span_context.trace_id()
    );
}

fn records(n: usize, service: &str) -> Vec<SpanRecord> {
    (0..n)
        .map(|i| {
            let mut r = full_record();
            r.span_context.span_id = SpanId::from(i as u64 + 1);
            r.service_name = Arc::from(service);
            r
        })
        .collect()
}

#[test]
fn spans_wait_for_a_full_batch_or_the_interval() {
    let (exporter, exports) = Recording::new();
    let mut otel = OtelReporter::builder(exporter)
        .max_export_batch_size(3)
        .export_interval(Duration::from_secs(3600))
        .build();
    otel.report(&records(2, "a"));
    otel.tick();
    assert_eq!(exports.lock().unwrap().len(), 0, "waiting for a full batch");
    otel.report(&records(5, "a"));
    let sizes: Vec<usize> = exports
        .lock()
        .unwrap()
        .iter()
        .map(|(_, s)| s.len())
        .collect();
    assert_eq!(sizes, [3, 3, 1]);

    let (exporter, exports) = Recording::new();
    let mut otel = OtelReporter::builder(exporter)
        .export_interval(Duration::ZERO)
        .build();
    otel.report(&records(1, "a"));
    assert_eq!(exports.lock().unwrap().len(), 0);
    otel.tick();
    assert_eq!(exports.lock().unwrap().len(), 1, "the interval passed");
    assert_eq!(otel.counters().stats().spans_exported, 1);
}

#[test]
fn shutdown_exports_then_flushes_and_shuts_the_exporter_down() {
    let (exporter, exports) = Recording::new();
    let flushes = exporter.flushes.clone();
    let shutdowns = exporter.shutdowns.clone();
    let mut otel = OtelReporter::new(exporter);
    otel.report(&records(2, "a"));
    otel.shutdown();
    assert_eq!(exports.lock().unwrap()[0].1.len(), 2);
    assert_eq!(flushes.load(Ordering::SeqCst), 1);
    assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
    // Idempotent.
    otel.shutdown();
    assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
}

/// Fails every export, or never finishes one.
#[derive(Debug)]
struct Broken {
    hang: bool,
    calls: Arc<AtomicUsize>,
}

impl SpanExporter for Broken {
    fn export(&self, _batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let hang = self.hang;
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Err(OTelSdkError::InternalFailure(
                "collector unreachable".into(),
            ))
        }
    }
}

#[test]
fn errors_are_counted_and_logged_once_per_interval() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut otel = OtelReporter::builder(Broken {
        hang: false,
        calls: calls.clone(),
    })
    .max_export_batch_size(2)
    .error_log_interval(Duration::from_secs(3600))
    .build();
    let counters = otel.counters();
    let logged = count_warnings(|| {
        for _ in 0..10 {
            otel.report(&records(4, "a"));
            otel.tick();
        }
    });
    let stats = counters.stats();
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    assert_eq!(stats.export_errors, 20);
    assert_eq!(stats.spans_failed, 40);
    assert_eq!(stats.exports, 0);
    assert_eq!(stats.failure_logs, 1);
    assert_eq!(logged, 1, "one WARN for twenty failures");
}

#[test]
fn a_stalled_export_times_out_and_the_rest_of_the_round_is_dropped() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut otel = OtelReporter::builder(Broken {
        hang: true,
        calls: calls.clone(),
    })
    .export_timeout(Duration::from_millis(20))
    .build();
    let counters = otel.counters();
    otel.report(&records(3, "a"));
    otel.report(&records(2, "b"));
    otel.flush();
    let stats = counters.stats();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "service b was not tried");
    assert_eq!(stats.export_timeouts, 1);
    assert_eq!(stats.spans_failed, 5);
}

/// Counts WARN events of the bridge's target emitted on this thread while `f` runs.
fn count_warnings(f: impl FnOnce()) -> usize {
    use tracing_subscriber::layer::{Context, Layer};
    struct Count(Arc<AtomicUsize>);
    impl<S: tracing::Subscriber> Layer<S> for Count {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let m = event.metadata();
            if m.target() == tracewire::report::otel::LOG_TARGET
                && *m.level() == tracing::Level::WARN
            {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let n = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry().with(Count(n.clone()));
    tracing::subscriber::with_default(subscriber, f);
    n.load(Ordering::SeqCst)
}

/// Checks that the export runs with no subscriber.
#[derive(Debug)]
struct Inspecting {
    seen: Arc<Mutex<Vec<bool>>>,
}

impl SpanExporter for Inspecting {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        let silent =
            tracing::dispatcher::get_default(|d| d.is::<tracing::subscriber::NoSubscriber>());
        self.seen.lock().unwrap().push(silent);
        Ok(())
    }
}

#[test]
fn exports_run_with_no_subscriber() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut otel = OtelReporter::builder(Inspecting { seen: seen.clone() }).build();
    // A subscriber is set on this thread, but the export does not see it.
    count_warnings(|| {
        otel.report(&records(1, "a"));
        otel.flush();
    });
    assert_eq!(*seen.lock().unwrap(), [true]);
}

/// The last reporter takes the records' contents instead of copying them: the SDK data is
/// the same either way, and a reporter installed before it still sees every field.
#[test]
fn taking_the_records_gives_the_same_span_data_as_copying_them() {
    let (exporter, copied) = Recording::new();
    let mut otel = OtelReporter::new(exporter);
    otel.report(&[full_record()]);
    otel.flush();
    let (exporter, taken) = Recording::new();
    let mut otel = OtelReporter::new(exporter);
    let mut batch = [full_record()];
    otel.report_mut(&mut batch);
    otel.flush();
    let (copied, taken) = (copied.lock().unwrap(), taken.lock().unwrap());
    assert_eq!(copied[0].1, taken[0].1);
    assert!(!taken[0].1[0].attributes.is_empty());
    assert!(batch[0].attributes.is_empty(), "taken, not copied");

    // Through the pipeline: an in-memory reporter first, the OTel reporter last.
    let spans = tracewire::report::InMemoryReporter::new();
    let (exporter, exports) = Recording::new();
    let (layer, guard) = Recorder::builder()
        .service_name("checkout")
        .reporter(spans.clone())
        .reporter(OtelReporter::new(exporter))
        .build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("charge", amount = 42i64, card = "visa").in_scope(|| {});
    });
    guard.flush().expect("flush");
    let seen = spans
        .find("charge")
        .expect("the first reporter saw the span");
    assert_eq!(seen.attribute("card"), Some(&"visa".into()));
    let exports = exports.lock().unwrap();
    let exported = &exports[0].1[0];
    assert_eq!(exported.name, "charge");
    assert_eq!(exported.attributes, seen.attributes);
}

/// The `Debug` of the reporter and its builder names the exporter without printing it: an
/// OTLP exporter's own `Debug` shows its headers' values (credentials, often) and its
/// endpoint's user and password.
#[cfg(feature = "otlp")]
#[test]
fn debug_output_shows_no_exporter_credentials() {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let exporter = || {
        let _entered = runtime.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint("http://ana:pa55word@127.0.0.1:9/v1/traces")
            .with_headers([("authorization".to_owned(), "Bearer s3cr3t".to_owned())].into())
            .build()
            .unwrap()
    };
    let builder = OtelReporter::builder(exporter());
    let here = OtelReporter::new(exporter());
    let on_runtime = OtelReporter::builder(exporter())
        .runtime(runtime.handle().clone())
        .build();
    for debug in [
        format!("{builder:?}"),
        format!("{here:?}"),
        format!("{on_runtime:?}"),
    ] {
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(!debug.contains("pa55word"), "{debug}");
        assert!(debug.contains("SpanExporter"), "{debug}");
    }
}

/// Panics in its first export, when polled; exports the next ones.
#[derive(Debug, Default)]
struct PanicsOnce {
    calls: Arc<AtomicUsize>,
}

impl SpanExporter for PanicsOnce {
    fn export(&self, _batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let first = self.calls.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                panic!("a bug in the exporter");
            }
            Ok(())
        }
    }
}

/// An export that panics costs its spans, counted as an exporter error, and the next export
/// goes through: on the reporter thread, and on a runtime given to the reporter (where the
/// panic used to end the task owning the exporter, so that every later export failed).
#[test]
fn a_panicking_export_is_counted_and_the_next_one_goes_through() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    for on_runtime in [false, true] {
        let mut builder = OtelReporter::builder(PanicsOnce::default());
        if on_runtime {
            builder = builder.runtime(runtime.handle().clone());
        }
        let mut otel = builder.build();
        let counters = otel.counters();
        otel.report(&records(2, "a"));
        let flushed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| otel.flush())).is_ok();
        assert!(
            flushed,
            "the panic stays in the reporter (on_runtime: {on_runtime})"
        );
        otel.report(&records(3, "a"));
        otel.flush();
        let stats = counters.stats();
        assert_eq!(
            (stats.exports, stats.spans_exported, stats.spans_failed),
            (1, 3, 2),
            "on_runtime: {on_runtime}"
        );
        assert_eq!(stats.export_errors, 1, "on_runtime: {on_runtime}");
    }
}
