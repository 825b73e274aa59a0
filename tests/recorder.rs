//! The recorder turns `tracing` spans into span records with W3C ids, typed attributes,
//! events, exceptions and status.

mod support;

use std::time::{Duration, SystemTime};

use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState, FLAG_RANDOM};
use tracewire::record::RecorderGuard;
use tracewire::record::{current_context, Recorder, RecorderBuilder, SpanExt, SpanStart};
use tracewire::report::InMemoryReporter;
use tracewire::sampler::AlwaysOff;
use tracewire::span::{KeyValue, SpanKind, Status, StringValue, Value};
use tracing::instrument;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

const WAIT: Duration = Duration::from_secs(10);

/// Runs `f` under a registry with the recorder built from `builder`, then flushes.
fn record<R>(
    builder: RecorderBuilder,
    f: impl FnOnce() -> R,
) -> (InMemoryReporter, R, RecorderGuard) {
    let spans = InMemoryReporter::new();
    let (layer, guard) = builder.reporter(spans.clone()).build();
    let out = tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    guard.flush().expect("flush");
    (spans, out, guard)
}

#[instrument(fields(order.items = items, vip = true, ratio = 0.5, big = u64::MAX, customer = %"ana"))]
fn checkout(items: u32) {
    std::thread::sleep(Duration::from_millis(5));
    reserve(items);
    charge(42);
}

#[instrument]
fn reserve(count: u32) {
    std::thread::sleep(Duration::from_millis(2));
}

#[instrument]
fn charge(amount: u64) {
    std::thread::sleep(Duration::from_millis(2));
}

#[test]
fn nested_instrument_spans_get_parent_ids_timing_and_typed_attributes() {
    let (spans, _, _guard) = record(Recorder::builder().service_name("shop"), || checkout(3));
    let all = spans.wait_for(3, WAIT).unwrap();
    assert_eq!(all.len(), 3);
    // Children close first.
    assert_eq!(all[2].name, "checkout");

    let root = spans.find("checkout").unwrap();
    let reserve = spans.find("reserve").unwrap();
    let charge = spans.find("charge").unwrap();

    assert!(root.is_root());
    assert!(!root.parent_is_remote);
    assert!(root.span_context.is_valid());
    assert!(root.span_context.is_sampled());
    assert!(
        root.span_context.is_random(),
        "new roots carry the Level 2 random flag"
    );
    for child in [&reserve, &charge] {
        assert_eq!(child.trace_id(), root.trace_id());
        assert_eq!(child.parent_span_id, root.span_id());
        assert_ne!(child.span_id(), root.span_id());
        assert!(child.start_time >= root.start_time);
        assert!(child.end_time <= root.end_time);
        assert!(child.duration() >= Duration::from_millis(2));
        assert_eq!(child.service_name.as_ref(), "shop");
        assert_eq!(child.kind, SpanKind::Internal);
    }
    assert_ne!(reserve.span_id(), charge.span_id());
    assert!(
        reserve.end_time <= charge.start_time,
        "siblings run in order"
    );
    assert!(root.duration() >= Duration::from_millis(9));

    assert_eq!(root.attribute("items"), Some(&Value::I64(3)));
    assert_eq!(root.attribute("order.items"), Some(&Value::I64(3)));
    assert_eq!(root.attribute("vip"), Some(&Value::Bool(true)));
    assert_eq!(root.attribute("ratio"), Some(&Value::F64(0.5)));
    assert_eq!(root.attribute("customer"), Some(&Value::from("ana")));
    assert_eq!(
        root.attribute("big"),
        Some(&Value::from(u64::MAX.to_string())),
        "a u64 beyond i64 becomes text"
    );
    assert_eq!(charge.attribute("amount"), Some(&Value::I64(42)));
    assert_eq!(root.scope.name(), module_path!());

    assert_eq!(
        spans.render_tree(root.trace_id()),
        "shop internal checkout\n    shop internal reserve\n    shop internal charge\n"
    );
    assert_eq!(spans.children(&root).len(), 2);
    assert_eq!(spans.parent(&charge).unwrap(), root);
}

/// Span times are wall-clock times: each falls between `SystemTime::now()` read before and
/// after, also for a parent whose handle went first and which its child's close ends.
#[test]
fn span_times_are_wall_clock_times() {
    // Far above the clock's error (nanoseconds), far below a wrong clock (milliseconds off).
    const TOLERANCE: Duration = Duration::from_micros(200);
    let before = SystemTime::now();
    let (spans, (child_closed, after), _guard) = record(Recorder::builder(), || {
        let parent = tracing::info_span!("parent");
        let child = tracing::info_span!(parent: &parent, "child");
        drop(parent);
        std::thread::sleep(Duration::from_millis(3));
        drop(child);
        let child_closed = SystemTime::now();
        std::thread::sleep(Duration::from_millis(2));
        (child_closed, SystemTime::now())
    });
    spans.wait_for(2, WAIT).unwrap();
    let parent = spans.find("parent").unwrap();
    let child = spans.find("child").unwrap();
    for span in [&parent, &child] {
        assert!(span.start_time + TOLERANCE >= before, "{span:?}");
        assert!(span.end_time <= child_closed + TOLERANCE, "{span:?}");
        assert!(span.duration() >= Duration::from_millis(3), "{span:?}");
    }
    assert!(
        child.end_time <= parent.end_time,
        "the child closed the parent"
    );
    assert!(child_closed < after);
}

#[test]
fn events_become_span_events_and_otel_fields_apply() {
    let (spans, _, _guard) = record(Recorder::builder(), || {
        let span = tracing::info_span!(
            "raw",
            otel.name = "GET /users/{id}",
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
        );
        let _enter = span.enter();
        tracing::info!(user = 7u64, "loaded user");
        tracing::debug!(cache = "miss");
        span.record("otel.status_message", "upstream said no");
        span.record("otel.status_code", "ERROR");
    });
    let span = spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(span.kind, SpanKind::Server);
    assert_eq!(span.status, Status::error("upstream said no"));
    assert_eq!(span.events.len(), 2);
    assert_eq!(span.events[0].name, "loaded user");
    assert!(span.events[0]
        .attributes
        .contains(&KeyValue::new("user", 7i64)));
    assert!(span.events[0]
        .attributes
        .contains(&KeyValue::new("level", "INFO")));
    assert!(
        span.events[0].timestamp >= span.start_time && span.events[0].timestamp <= span.end_time
    );
    assert!(span.events[1]
        .attributes
        .contains(&KeyValue::new("cache", "miss")));
    assert!(
        span.attribute("otel.name").is_none(),
        "otel.* fields are not attributes"
    );

    let (spans, _, _guard) = record(Recorder::builder(), || {
        let span = tracing::info_span!("ok", otel.status_code = "Ok");
        let _enter = span.enter();
        tracing::error!("logged, but the status was set explicitly");
    });
    let span = spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(span.status, Status::Ok, "an explicit Ok is final");
    assert_eq!(span.events[0].name, "exception");
}

#[derive(Debug)]
struct Timeout;
impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gateway timeout")
    }
}
impl std::error::Error for Timeout {}

#[derive(Debug)]
struct ChargeFailed(Timeout);
impl std::fmt::Display for ChargeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("charge failed")
    }
}
impl std::error::Error for ChargeFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[instrument(err)]
fn pay() -> Result<(), ChargeFailed> {
    Err(ChargeFailed(Timeout))
}

#[test]
fn errors_become_exception_events_with_status_error() {
    let (spans, _, _guard) = record(Recorder::builder(), || {
        let _ = pay();
        let span = tracing::info_span!("logged");
        span.in_scope(|| tracing::error!(code = 502i64, "payment gateway down"));
        let span = tracing::info_span!("field", error = tracing::field::Empty);
        span.record(
            "error",
            &ChargeFailed(Timeout) as &(dyn std::error::Error + 'static),
        );
        drop(span);
        let span = tracing::info_span!("ext");
        span.record_exception(&ChargeFailed(Timeout));
    });
    spans.wait_for(4, WAIT).unwrap();

    let pay = spans.find("pay").unwrap();
    // `#[instrument(err)]` logs `error = %e` at ERROR level: Display only.
    assert_eq!(pay.status, Status::error("charge failed"));
    let exception = pay.event("exception").expect("exception event");
    assert!(exception
        .attributes
        .contains(&KeyValue::new("exception.message", "charge failed")));

    let logged = spans.find("logged").unwrap();
    assert_eq!(logged.status, Status::error("payment gateway down"));
    let exception = logged.event("exception").unwrap();
    assert!(exception
        .attributes
        .contains(&KeyValue::new("exception.message", "payment gateway down")));
    assert!(exception
        .attributes
        .contains(&KeyValue::new("code", 502i64)));

    for name in ["field", "ext"] {
        let span = spans.find(name).unwrap();
        assert_eq!(
            span.status,
            Status::error("charge failed: gateway timeout"),
            "{name}"
        );
        let exception = span.event("exception").unwrap();
        assert!(
            exception.attributes.contains(&KeyValue::new(
                "exception.message",
                "charge failed: gateway timeout"
            )),
            "{name}: the cause chain is in the message"
        );
    }
}

#[test]
fn unsampled_trace_records_nothing_but_keeps_ids() {
    let (spans, contexts, guard) = record(Recorder::builder().sampler(AlwaysOff), || {
        let root = tracing::info_span!("root");
        let _root = root.enter();
        let child = tracing::info_span!("child", field = 1);
        let _child = child.enter();
        tracing::error!("not recorded");
        (root.span_context().unwrap(), current_context().unwrap())
    });
    let (root, child) = contexts;
    assert!(root.is_valid() && child.is_valid());
    assert!(!root.is_sampled() && !child.is_sampled());
    assert!(root.is_random());
    assert_eq!(child.trace_id, root.trace_id);
    assert_ne!(child.span_id, root.span_id);
    assert!(spans.is_empty());
    assert_eq!(guard.stats().spans_reported, 0);
    assert_eq!(guard.stats().spans_dropped, 0);
}

fn remote(sampled: bool) -> SpanContext {
    SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        TraceFlags::default().with_sampled(sampled),
        true,
        TraceState::from_members([("rojo", "00f067aa0ba902b7")]).unwrap(),
    )
}

#[test]
fn a_remote_parent_given_at_creation_is_followed_and_its_sampled_flag_honoured() {
    let (spans, unsampled, _guard) = record(Recorder::builder().sample_ratio(0.0), || {
        let server = SpanStart::new()
            .remote_parent(remote(true))
            .kind(SpanKind::Server)
            .service_name("inventory")
            .create(|| tracing::info_span!("server"));
        server.in_scope(|| tracing::info_span!("handler").in_scope(|| {}));
        drop(server);
        let unsampled = SpanStart::new()
            .remote_parent(remote(false))
            .create(|| tracing::info_span!("unsampled"));
        unsampled.span_context().unwrap()
    });
    spans.wait_for(2, WAIT).unwrap();
    let server = spans.find("server").unwrap();
    assert_eq!(server.trace_id(), remote(true).trace_id);
    assert_eq!(server.parent_span_id, remote(true).span_id);
    assert!(server.parent_is_remote);
    assert!(!server.span_context.is_remote);
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(
        server.span_context.trace_state.header(),
        "rojo=00f067aa0ba902b7"
    );
    assert!(
        !server.span_context.is_random(),
        "flags come from the caller"
    );
    let handler = spans.find("handler").unwrap();
    assert_eq!(handler.parent_span_id, server.span_id());
    assert!(!handler.parent_is_remote);
    assert_eq!(
        handler.service_name.as_ref(),
        "inventory",
        "children inherit the service"
    );
    assert_eq!(
        handler.span_context.trace_state,
        server.span_context.trace_state
    );

    assert!(spans.find("unsampled").is_none());
    assert_eq!(unsampled.trace_id, remote(false).trace_id);
    assert!(!unsampled.is_sampled());
}

#[test]
fn ratio_sampling_applies_to_new_roots_only() {
    let (spans, _, _guard) = record(Recorder::builder().sample_ratio(0.25), || {
        for _ in 0..4000 {
            let root = tracing::info_span!("root");
            root.in_scope(|| drop(tracing::info_span!("child")));
        }
    });
    let roots = spans.find_all("root");
    let children = spans.find_all("child");
    // Binomial(4000, 0.25): mean 1000, sd 27; 6 sd either side.
    assert!(
        (840..=1160).contains(&roots.len()),
        "{} roots kept",
        roots.len()
    );
    assert_eq!(children.len(), roots.len(), "children follow their root");
    for child in children {
        assert!(roots.iter().any(|r| r.span_id() == child.parent_span_id));
    }
}

#[test]
fn follows_from_becomes_a_link_and_new_root_starts_a_trace() {
    let (spans, _, _guard) = record(Recorder::builder(), || {
        let producer = tracing::info_span!("produce");
        let outer = tracing::info_span!("outer");
        let _outer = outer.enter();
        let consumer = SpanStart::new()
            .new_root()
            .create(|| tracing::info_span!("consume"));
        consumer.follows_from(&producer);
    });
    spans.wait_for(3, WAIT).unwrap();
    let producer = spans.find("produce").unwrap();
    let consumer = spans.find("consume").unwrap();
    assert!(consumer.is_root());
    assert_ne!(consumer.trace_id(), spans.find("outer").unwrap().trace_id());
    assert_eq!(consumer.links.len(), 1);
    assert_eq!(consumer.links[0].span_context.span_id, producer.span_id());
}

#[test]
fn works_beside_fmt_env_filter_and_per_layer_filters() {
    let spans = InMemoryReporter::new();
    let (recorder, guard) = Recorder::builder().reporter(spans.clone()).build();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let writer = {
        let logs = logs.clone();
        move || LogWriter(logs.clone())
    };
    let subscriber = tracing_subscriber::registry()
        .with(
            recorder.with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target() != "noisy"
            })),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(tracing_subscriber::EnvFilter::new("info")),
        );
    tracing::subscriber::with_default(subscriber, || {
        let outer = tracing::info_span!("outer");
        let _outer = outer.enter();
        let noisy = tracing::info_span!(target: "noisy", "internals");
        let _noisy = noisy.enter();
        let inner = tracing::info_span!("inner");
        inner.in_scope(|| tracing::info!("hello from inner"));
    });
    guard.flush().unwrap();
    let outer = spans.find("outer").unwrap();
    let inner = spans.find("inner").unwrap();
    assert!(
        spans.find("internals").is_none(),
        "filtered out of the recorder"
    );
    assert_eq!(
        inner.parent_span_id,
        outer.span_id(),
        "a child of a filtered span hangs under the nearest recorded ancestor"
    );
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("hello from inner"), "fmt still logs: {logs}");
    assert!(
        logs.contains("internals"),
        "fmt still sees the span the recorder skipped"
    );
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn span_ext_sets_typed_attributes_status_and_baggage_without_a_recorder_too() {
    let (spans, _, _guard) = record(Recorder::builder(), || {
        let span = tracing::info_span!("typed");
        span.set_attribute(KeyValue::new("http.response.status_code", 503i64));
        span.set_attribute(KeyValue::new(
            "http.request.header.accept",
            Value::Array(vec![StringValue::from("a"), StringValue::from("b")].into()),
        ));
        span.set_status(Status::Ok);
        span.set_status(Status::error("ignored after Ok"));
    });
    let span = spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(
        span.attribute("http.response.status_code"),
        Some(&Value::I64(503))
    );
    assert!(matches!(
        span.attribute("http.request.header.accept"),
        Some(Value::Array(_))
    ));
    assert_eq!(span.status, Status::Ok);

    // No recorder at all: nothing panics, nothing is known.
    let span = tracing::info_span!("orphan");
    span.set_attribute(KeyValue::new("k", 1i64));
    assert!(span.span_context().is_none());
    assert!(current_context().is_none());
}

#[test]
fn unsampled_spans_do_not_carry_the_random_flag_from_an_old_parent() {
    // A remote parent without the random flag keeps it off in its children.
    let (spans, _, _guard) = record(Recorder::builder(), || {
        let cx = SpanContext {
            trace_flags: TraceFlags::SAMPLED,
            ..remote(true)
        };
        let span = SpanStart::new()
            .remote_parent(cx)
            .create(|| tracing::info_span!("s"));
        drop(span);
        let cx = SpanContext {
            trace_flags: TraceFlags::new(TraceFlags::SAMPLED.to_u8() | FLAG_RANDOM.to_u8()),
            ..remote(true)
        };
        drop(
            SpanStart::new()
                .remote_parent(cx)
                .create(|| tracing::info_span!("r")),
        );
    });
    spans.wait_for(2, WAIT).unwrap();
    assert!(!spans.find("s").unwrap().span_context.is_random());
    assert!(spans.find("r").unwrap().span_context.is_random());
}

#[test]
fn links_added_through_span_ext_keep_the_link_limit_and_value_length() {
    let linked = |id: u64| {
        SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        )
    };
    let builder = Recorder::builder()
        .max_links_per_span(2)
        .max_attribute_value_length(4);
    let (spans, _, _guard) = record(builder, || {
        let span = tracing::info_span!("batch");
        for id in 1..=5 {
            span.add_link(tracewire::span::Link {
                span_context: linked(id),
                attributes: vec![KeyValue::new("reason", "retry of a failed job")],
                dropped_attributes_count: 0,
            });
        }
    });
    let span = spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(
        (span.links.len(), span.dropped_links_count),
        (2, 3),
        "links beyond the limit are dropped and counted"
    );
    assert_eq!(span.links[0].attributes[0].value.as_str(), "retr");
}

/// The value length limit holds for the attributes the server layer records from the
/// request (built on the reporter thread), not only for those recorded through `tracing`.
#[test]
fn request_attributes_keep_the_value_length_limit() {
    use axum::routing::get;
    let builder = Recorder::builder().max_attribute_value_length(8);
    let (recorded, ()) = support::with_recorder(builder, |_| async {
        let app = axum::Router::new()
            .route("/items/{sku}", get(|| async { "ok" }))
            .layer(tracewire::ServerLayer::new());
        let addr = support::serve(app).await;
        let mut request = support::get_req(&format!("http://{addr}/items/0123456789"));
        request
            .headers_mut()
            .insert("user-agent", "curl/8.5.0".parse().unwrap());
        let response = support::hyper_client().request(request).await.unwrap();
        assert_eq!(response.status(), 200);
    });
    let server = recorded.spans.wait_for(1, WAIT).unwrap().remove(0);
    for key in ["url.path", "user_agent.original", "http.route"] {
        let value = server.attribute(key).map(|v| v.as_str().into_owned());
        assert!(
            value.as_ref().is_some_and(|v| v.len() <= 8),
            "{key} = {value:?}"
        );
    }
    assert_eq!(server.attribute("url.path"), Some(&"/items/0".into()));
}

/// OpenTelemetry's own crates log under their package names, as `opentelemetry-otlp` (the
/// `otel_debug!` family of macros uses `CARGO_PKG_NAME`): internals the recorder leaves
/// out, like `opentelemetry_otlp`'s modules.
#[test]
fn opentelemetry_internal_logs_stay_out_under_their_package_names() {
    let (spans, _, _guard) = record(Recorder::builder(), || {
        tracing::info_span!("startup").in_scope(|| {
            tracing::debug!(target: "opentelemetry-otlp", name = "TonicChannelBuilt", "built");
            tracing::debug!(target: "opentelemetry-http", name = "HttpClient.Send", "sent");
            tracing::debug!(target: "opentelemetry_otlp::exporter", "too");
            tracing::info!(target: "my-app", "kept");
        })
    });
    let span = spans.wait_for(1, WAIT).unwrap().remove(0);
    let names: Vec<&str> = span.events.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(names, ["kept"]);
}

/// A log line becomes a span event's name: what a caller sent and the handler logged is cut
/// to the value length limit there too, as it is in an attribute or an exception message.
#[test]
fn event_names_from_log_lines_keep_the_value_length_limit() {
    let builder = Recorder::builder().max_attribute_value_length(8);
    let (spans, _, _guard) = record(builder, || {
        tracing::info_span!("handler").in_scope(|| {
            let body = "é".repeat(1000);
            tracing::info!("got: {body}");
            tracing::error!("failed on {body}");
        })
    });
    let span = spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(span.events[0].name, "got: é", "cut on a character boundary");
    let exception = &span.events[1];
    assert_eq!(exception.name, "exception");
    for kv in &exception.attributes {
        assert!(kv.value.as_str().len() <= 8, "{kv:?}");
    }
}

/// Events and links keep their own attribute limits, and count what they drop, as OTLP
/// carries it.
#[test]
fn events_and_links_keep_their_attribute_count_limits() {
    let builder = Recorder::builder()
        .max_attributes_per_event(2)
        .max_attributes_per_link(1);
    let (spans, _, _guard) = record(builder, || {
        let span = tracing::info_span!("job");
        span.add_link(tracewire::span::Link {
            span_context: SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            attributes: vec![KeyValue::new("a", 1), KeyValue::new("b", 2)],
            dropped_attributes_count: 0,
        });
        span.in_scope(|| tracing::info!(a = 1, b = 2, c = 3, d = 4, "four fields"));
    });
    let span = spans.wait_for(1, WAIT).unwrap().remove(0);
    let event = span.event("four fields").unwrap();
    // The four fields and `level`: two kept, in order, three dropped.
    assert_eq!(
        event.attributes,
        [KeyValue::new("a", 1), KeyValue::new("b", 2)],
        "{event:?}"
    );
    assert_eq!(event.dropped_attributes_count, 3);
    assert_eq!(span.links[0].attributes, [KeyValue::new("a", 1)]);
    assert_eq!(span.links[0].dropped_attributes_count, 1);
}

/// A span name set by `otel.name` from what a caller sent (a path) is bounded too.
#[test]
fn span_names_from_otel_name_keep_the_value_length_limit() {
    let builder = Recorder::builder().max_attribute_value_length(8);
    let (spans, _, _guard) = record(builder, || {
        let path = format!("/{}", "é".repeat(1000));
        let span = tracing::info_span!("request", otel.name = tracing::field::Empty);
        span.record("otel.name", format!("GET {path}"));
        span.in_scope(|| {});
    });
    let span = spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(span.name, "GET /é", "cut on a character boundary");
}

/// Integers stay integers in events as in spans, 128-bit ones included when they fit.
#[test]
fn event_fields_of_128_bit_integers_stay_integers() {
    let (spans, _, _guard) = record(Recorder::builder(), || {
        tracing::info_span!("s", span_big = 5u128).in_scope(|| {
            tracing::info!(big = 5u128, neg = -3i128, huge = u128::MAX, "counted");
        })
    });
    let span = spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(span.attribute("span_big"), Some(&Value::I64(5)));
    let event = span.event("counted").unwrap();
    let get = |key: &str| {
        event
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(get("big"), Some(Value::I64(5)));
    assert_eq!(get("neg"), Some(Value::I64(-3)));
    assert_eq!(get("huge"), Some(Value::from(u128::MAX.to_string())));
}

/// `render_tree` shows an error status without a description as `[error]`, not with an
/// empty message after a colon (errors no longer repeat their status code as description).
#[test]
fn render_tree_shows_an_error_without_description_as_bare_error() {
    let (spans, (), _guard) = record(Recorder::builder().service_name("shop"), || {
        tracing::info_span!("checkout", otel.status_code = "ERROR").in_scope(|| {
            tracing::info_span!(
                "charge",
                otel.status_code = "ERROR",
                otel.status_message = "declined"
            )
            .in_scope(|| {});
        });
    });
    let root = spans.find("checkout").expect("checkout");
    assert_eq!(
        spans.render_tree(root.trace_id()),
        "shop internal checkout [error]\n    shop internal charge [error: declined]\n"
    );
}
