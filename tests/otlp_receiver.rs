//! Spans recorded from `tracing` reach a real OTLP/gRPC receiver through
//! `opentelemetry-otlp`'s tonic exporter and the bridge.
#![cfg(feature = "otel")]

mod otlp_support;

use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as ProtoKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp_support::{attr, Receiver};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracewire::record::{Recorder, SpanExt, SpanStart};
use tracewire::report::OtelReporter;
use tracewire::span::SpanKind;
use tracing_subscriber::layer::SubscriberExt;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn recorded_spans_reach_an_otlp_receiver() {
    let rt = runtime();
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });

    // The tonic exporter must be built inside the runtime, and exports run in its context.
    let exporter = {
        let _entered = rt.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{}", receiver.addr))
            .build()
            .unwrap()
    };
    let handle = rt.handle().clone();
    let otel = OtelReporter::builder(exporter)
        // Only the flush below exports, however slow the machine: one call per service.
        .export_interval(std::time::Duration::from_secs(3600))
        .resource_attribute(KeyValue::new("deployment.environment", "test"))
        .runtime(handle.clone())
        .build();
    let counters = otel.counters();
    let (layer, guard) = Recorder::builder()
        .service_name("checkout")
        .reporter(otel)
        .build();

    let caller = SpanContext::new(
        TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
        SpanId::from(0x00f067aa0ba902b7),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_members([("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]).unwrap(),
    );
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let server = SpanStart::new()
            .remote_parent(caller.clone())
            .kind(SpanKind::Server)
            .create(|| tracing::info_span!("POST /checkout", http.response.status_code = 500i64));
        let _entered = server.enter();
        tracing::info_span!("GET", otel.kind = "client", server.port = 8080u64).in_scope(|| {
            SpanStart::new()
                .service_name("inventory")
                .kind(SpanKind::Server)
                .create(|| tracing::info_span!("GET /items/{sku}", stock = 0i64))
                .in_scope(|| tracing::error!(error = "out of stock", "lookup failed"));
        });
        server.record_exception(&std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "gateway timeout",
        ));
    });
    guard.flush().unwrap();

    let spans = receiver.spans();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let find = |name: &str| -> (String, Span) {
        let (resource, span) = spans.iter().find(|(_, s)| s.name == name).unwrap().clone();
        let service = match attr(&resource.attributes, "service.name") {
            Some(AnyValue::StringValue(s)) => s.clone(),
            other => panic!("service.name: {other:?}"),
        };
        assert_eq!(
            attr(&resource.attributes, "deployment.environment"),
            Some(&AnyValue::StringValue("test".into()))
        );
        (service, span)
    };
    let (server_service, server) = find("POST /checkout");
    let (client_service, client) = find("GET");
    let (inventory_service, inventory) = find("GET /items/{sku}");

    assert_eq!(server_service, "checkout");
    assert_eq!(client_service, "checkout");
    assert_eq!(inventory_service, "inventory");

    let trace_id = caller.trace_id.to_bytes().to_vec();
    for span in [&server, &client, &inventory] {
        assert_eq!(span.trace_id, trace_id);
        assert_eq!(span.span_id.len(), 8);
        assert_eq!(span.trace_state, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        assert_eq!(span.flags & 0xff, 0x01, "sampled, as the caller");
    }
    assert_eq!(server.parent_span_id, caller.span_id.to_bytes().to_vec());
    assert_eq!(server.flags & 0x300, 0x300, "the parent is remote");
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(client.flags & 0x300, 0x100, "the parent is local");
    assert_eq!(inventory.parent_span_id, client.span_id);

    assert_eq!(server.kind, ProtoKind::Server as i32);
    assert_eq!(client.kind, ProtoKind::Client as i32);
    assert_eq!(inventory.kind, ProtoKind::Server as i32);

    assert_eq!(
        attr(&server.attributes, "http.response.status_code"),
        Some(&AnyValue::IntValue(500))
    );
    assert_eq!(
        attr(&client.attributes, "server.port"),
        Some(&AnyValue::IntValue(8080))
    );
    assert_eq!(
        attr(&inventory.attributes, "stock"),
        Some(&AnyValue::IntValue(0))
    );

    let exception = |span: &Span| -> Option<AnyValue> {
        let event = span.events.iter().find(|e| e.name == "exception")?;
        attr(&event.attributes, "exception.message").cloned()
    };
    assert_eq!(
        exception(&server),
        Some(AnyValue::StringValue("gateway timeout".into()))
    );
    assert_eq!(
        exception(&inventory),
        Some(AnyValue::StringValue("out of stock".into()))
    );
    let status = server.status.clone().unwrap();
    assert_eq!(status.code, 2, "error");
    assert_eq!(status.message, "gateway timeout");

    let stats = counters.stats();
    assert_eq!(stats.spans_exported, 3);
    assert_eq!(stats.exports, 2, "one call per service");
    assert_eq!(stats.export_errors + stats.export_timeouts, 0);

    drop(guard);
    rt.block_on(receiver.stop());
}
