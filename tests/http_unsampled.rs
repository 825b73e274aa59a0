//! An unsampled request costs no span: the layers ask the recorder's sampler first, and a
//! request that will not be recorded gets no `tracing` span (unless `log_spans`), while its
//! context, flagged not sampled, still travels on.

mod support;

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use support::*;
use tracewire::propagation::parse_traceparent;
use tracewire::record::{current_context, Recorder};
use tracewire::report::InMemoryReporter;
use tracewire::{ClientLayer, ServerLayer};
use tracing_subscriber::layer::SubscriberExt;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Names of every span created, recorded or not.
#[derive(Clone, Default)]
struct SpanNames(Arc<Mutex<Vec<&'static str>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanNames {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.lock().unwrap().push(attrs.metadata().name());
    }
}

/// A server answering `/echo` with the `traceparent` it got.
async fn serve_echo() -> std::net::SocketAddr {
    let back = Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            headers
                .get("traceparent")
                .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
        }),
    );
    serve(back).await
}

/// `front` (with `layer`) calls `back` through the client layer; `back` echoes the
/// `traceparent` it got; `front`'s handler also reports the context it runs in.
async fn front_and_back(layer: ServerLayer, client: ClientLayer) -> std::net::SocketAddr {
    let back = serve_echo().await;
    let front = Router::new()
        .route(
            "/",
            get(move || {
                let client = client.clone();
                async move {
                    let handler = current_context().map_or("none".to_owned(), |c| {
                        format!("{}-{:02x}", c.trace_id, c.trace_flags)
                    });
                    let echoed = get_through(client, &format!("http://{back}/echo")).await;
                    format!("{handler}|{echoed}")
                }
            }),
        )
        .layer(layer);
    serve(front).await
}

fn run(
    layer: ServerLayer,
    client: ClientLayer,
    sampled: &str,
) -> (Vec<&'static str>, InMemoryReporter, String) {
    let names = SpanNames::default();
    let spans = InMemoryReporter::new();
    let (recorder, guard) = Recorder::builder().reporter(spans.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(recorder)
        .with(names.clone());
    let body = tracing::subscriber::with_default(subscriber, || {
        runtime().block_on(async {
            let front = front_and_back(layer, client).await;
            let traceparent = format!("00-{TRACE}-{PARENT}-{sampled}");
            get_with_traceparent(&format!("http://{front}/"), &traceparent).await
        })
    });
    guard.flush().unwrap();
    let names = names.0.lock().unwrap().clone();
    (names, spans, body)
}

#[test]
fn an_unsampled_request_gets_no_span_and_still_propagates_unsampled() {
    let (names, spans, body) = run(ServerLayer::new(), ClientLayer::new(), "00");
    assert!(names.is_empty(), "no span created: {names:?}");
    assert!(spans.is_empty());
    let (handler, echoed) = body.split_once('|').unwrap();
    // The handler runs in the request's (unsampled) trace.
    assert_eq!(handler, format!("{TRACE}-00"));
    let sent = parse_traceparent(echoed.as_bytes()).unwrap();
    assert_eq!(sent.trace_id.to_string(), TRACE);
    assert!(!sent.is_sampled());
    assert_ne!(
        sent.span_id.to_string(),
        PARENT,
        "a new span id for the call"
    );
}

#[test]
fn log_spans_keeps_the_spans_for_log_layers_without_recording_them() {
    let (names, spans, body) = run(
        ServerLayer::new().log_spans(true),
        ClientLayer::new().log_spans(true),
        "00",
    );
    assert_eq!(names, ["HTTP request", "HTTP call"]);
    assert!(spans.is_empty(), "still not recorded");
    let (_, echoed) = body.split_once('|').unwrap();
    let sent = parse_traceparent(echoed.as_bytes()).unwrap();
    assert_eq!(sent.trace_id.to_string(), TRACE);
    assert!(!sent.is_sampled());
}

#[test]
fn a_sampled_request_gets_its_spans_recorded() {
    let (names, spans, body) = run(ServerLayer::new(), ClientLayer::new(), "01");
    assert_eq!(names, ["HTTP request", "HTTP call"]);
    let recorded = spans.spans();
    assert_eq!(recorded.len(), 2);
    let (handler, echoed) = body.split_once('|').unwrap();
    assert_eq!(handler, format!("{TRACE}-01"));
    let sent = parse_traceparent(echoed.as_bytes()).unwrap();
    let client = recorded.iter().find(|s| s.name == "GET").unwrap();
    assert_eq!(
        sent.span_id,
        client.span_id(),
        "the callee's parent is the client span"
    );
    assert!(sent.is_sampled());
}

/// A response body that calls `back` while it streams (as a server-sent event stream or a
/// gRPC server stream does for each message) still runs in the request's context: an
/// unsampled request's downstream calls carry its trace, not sampled, as they do from the
/// handler.
#[test]
fn a_body_that_streams_an_unsampled_request_still_propagates_it() {
    let spans = InMemoryReporter::new();
    let (recorder, guard) = Recorder::builder().reporter(spans.clone()).build();
    let subscriber = tracing_subscriber::registry().with(recorder);
    let body = tracing::subscriber::with_default(subscriber, || {
        runtime().block_on(async {
            let back = serve_echo().await;
            let front = Router::new()
                .route(
                    "/stream",
                    get(move || async move {
                        let chunk = futures_util::stream::once(async move {
                            let url = format!("http://{back}/echo");
                            let echoed = get_through(ClientLayer::new(), &url).await;
                            Ok::<_, std::convert::Infallible>(echoed)
                        });
                        axum::body::Body::from_stream(chunk)
                    }),
                )
                .layer(ServerLayer::new());
            let front = serve(front).await;
            let traceparent = format!("00-{TRACE}-{PARENT}-00");
            get_with_traceparent(&format!("http://{front}/stream"), &traceparent).await
        })
    });
    guard.flush().unwrap();
    assert!(spans.is_empty(), "nothing recorded: {:?}", spans.spans());
    let sent = parse_traceparent(body.as_bytes()).expect("the call carried a traceparent");
    assert_eq!(sent.trace_id.to_string(), TRACE);
    assert!(!sent.is_sampled());
}
