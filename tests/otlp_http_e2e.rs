//! End to end over HTTP and OTLP: a request with an inbound `traceparent` and `tracestate`
//! reaches an axum "checkout" service (`ServerLayer`), whose handler calls an axum "inventory"
//! service through reqwest and `TracingMiddleware`; inventory's handler fails. Every span goes
//! through the recorder, `OtelReporter` and `opentelemetry-otlp`'s tonic exporter to a real
//! OTLP `TraceService` receiver, and the test reads what the receiver got.
#![cfg(all(feature = "otel", feature = "reqwest", feature = "axum"))]

mod otlp_support;
mod support;

use std::collections::HashSet;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as ProtoKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use otlp_support::{attr, Receiver};
use tokio::net::TcpListener;
use tracewire::record::Recorder;
use tracewire::report::OtelReporter;
use tracewire::reqwest::TracingMiddleware;
use tracewire::ServerLayer;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

#[derive(Debug)]
struct OutOfStock(String);

impl std::fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is out of stock", self.0)
    }
}

impl std::error::Error for OutOfStock {}

/// Inventory's handler: fails, and `instrument(err)` records the error as an exception.
#[tracing::instrument(err)]
async fn lookup(sku: String) -> Result<u32, OutOfStock> {
    Err(OutOfStock(sku))
}

#[tracing::instrument(skip(http))]
async fn place_order(
    http: reqwest_middleware::ClientWithMiddleware,
    stock_url: String,
) -> StatusCode {
    match http.get(stock_url).send().await {
        Ok(response) if response.status().is_success() => StatusCode::CREATED,
        Ok(response) => {
            let _ = response.bytes().await;
            StatusCode::BAD_GATEWAY
        }
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn service(resource: &Resource) -> String {
    match attr(&resource.attributes, "service.name") {
        Some(AnyValue::StringValue(s)) => s.clone(),
        other => panic!("service.name: {other:?}"),
    }
}

#[test]
fn an_http_request_across_two_services_reaches_an_otlp_receiver_as_one_trace() {
    let export_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let receiver = export_rt
        .block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let exporter = {
        let _entered = export_rt.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{}", receiver.addr))
            .build()
            .unwrap()
    };
    let handle = export_rt.handle().clone();
    let otel = OtelReporter::builder(exporter)
        .runtime(handle.clone())
        .build();
    let counters = otel.counters();
    let (layer, guard) = Recorder::builder()
        .service_name("test")
        .reporter(otel)
        .build();

    // The services run on a current-thread runtime under this thread's subscriber.
    let status =
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            support::runtime().block_on(async {
                let inventory = support::serve(
                    Router::new()
                        .route(
                            "/stock/{sku}",
                            get(|Path(sku): Path<String>| async move {
                                match lookup(sku).await {
                                    Ok(n) => (StatusCode::OK, n.to_string()),
                                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                                }
                            }),
                        )
                        .layer(ServerLayer::new().service_name("inventory")),
                )
                .await;
                let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                    .with(TracingMiddleware::new().service_name("checkout"))
                    .build();
                let checkout = support::serve(
                    Router::new()
                        .route(
                            "/orders",
                            post(move || {
                                place_order(http.clone(), format!("http://{inventory}/stock/A-1"))
                            }),
                        )
                        .layer(ServerLayer::new().service_name("checkout")),
                )
                .await;
                // The first hop comes from outside, with a context and a trace state.
                let response = reqwest::Client::new()
                    .post(format!("http://{checkout}/orders"))
                    .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
                    .header("tracestate", TRACESTATE)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                response.bytes().await.unwrap();
                status
            })
        });
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    guard.flush().unwrap();

    let spans = receiver.spans();
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let find = |name: &str| -> (String, Span) {
        let (resource, span) = spans
            .iter()
            .find(|(_, s)| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}: {spans:#?}"));
        (service(resource), span.clone())
    };
    let (checkout_service, checkout) = find("POST /orders");
    let (order_service, order) = find("place_order");
    let (client_service, client) = find("GET");
    let (inventory_service, inventory) = find("GET /stock/{sku}");
    let (lookup_service, lookup) = find("lookup");

    // Two services, each with its own resource.
    assert_eq!(checkout_service, "checkout");
    assert_eq!(order_service, "checkout");
    assert_eq!(client_service, "checkout");
    assert_eq!(inventory_service, "inventory");
    assert_eq!(lookup_service, "inventory");
    let resources: HashSet<String> = receiver
        .requests()
        .iter()
        .flat_map(|r| &r.resource_spans)
        .map(|rs| service(rs.resource.as_ref().unwrap()))
        .collect();
    assert_eq!(
        resources,
        HashSet::from(["checkout".to_owned(), "inventory".to_owned()])
    );

    // One trace, the caller's, with its trace state carried across the reqwest hop.
    for span in [&checkout, &order, &client, &inventory, &lookup] {
        assert_eq!(hex(&span.trace_id), TRACE_ID, "{}", span.name);
        assert_eq!(span.trace_state, TRACESTATE, "{}", span.name);
        assert_eq!(span.flags & 0xff, 0x01, "{} is sampled", span.name);
    }

    // client → server → handler, twice.
    assert_eq!(hex(&checkout.parent_span_id), CALLER_SPAN);
    assert_eq!(checkout.flags & 0x300, 0x300, "remote parent");
    assert_eq!(order.parent_span_id, checkout.span_id);
    assert_eq!(client.parent_span_id, order.span_id);
    assert_eq!(client.flags & 0x300, 0x100, "local parent");
    assert_eq!(inventory.parent_span_id, client.span_id);
    assert_eq!(inventory.flags & 0x300, 0x300, "remote parent");
    assert_eq!(lookup.parent_span_id, inventory.span_id);

    assert_eq!(checkout.kind, ProtoKind::Server as i32);
    assert_eq!(order.kind, ProtoKind::Internal as i32);
    assert_eq!(client.kind, ProtoKind::Client as i32);
    assert_eq!(inventory.kind, ProtoKind::Server as i32);
    assert_eq!(lookup.kind, ProtoKind::Internal as i32);

    // Status codes stay integers; errors follow the rules.
    let code = |span: &Span| attr(&span.attributes, "http.response.status_code").cloned();
    assert_eq!(code(&checkout), Some(AnyValue::IntValue(502)));
    assert_eq!(code(&client), Some(AnyValue::IntValue(500)));
    assert_eq!(code(&inventory), Some(AnyValue::IntValue(500)));
    assert!(matches!(
        attr(&client.attributes, "server.port"),
        Some(AnyValue::IntValue(p)) if *p > 0
    ));
    for span in [&checkout, &client, &inventory, &lookup] {
        assert_eq!(
            span.status.as_ref().map(|s| s.code),
            Some(2),
            "{} is Error",
            span.name
        );
    }
    assert_eq!(order.status.as_ref().map_or(0, |s| s.code), 0, "Unset");

    // The handler's error is an exception event.
    let exception = lookup
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("an exception event");
    assert_eq!(
        attr(&exception.attributes, "exception.message"),
        Some(&AnyValue::StringValue("A-1 is out of stock".into()))
    );

    let stats = counters.stats();
    assert_eq!(stats.spans_exported, 5);
    assert_eq!(stats.export_errors + stats.export_timeouts, 0);
    drop(guard);
    export_rt.block_on(receiver.stop());
}
