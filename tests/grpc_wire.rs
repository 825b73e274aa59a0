//! What travels on the wire and what is read from it: the context as standard metadata,
//! metadata capture with redaction (headers and trailers), responses without `grpc-status`,
//! deadlines, and the optional message events.

mod grpc_support;
mod support;

use std::time::Duration;

use axum::routing::post;
use bytes::Bytes;
use grpc_support::*;
use http::HeaderName;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tonic::Code;
use tracewire::baggage::Baggage;
use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracewire::propagation::format_traceparent;
use tracewire::record::{SpanRecord, SpanStart};
use tracewire::span::{SpanKind, Status, Value};
use tracewire::{ClientLayer, ServerLayer};
use tracing::Instrument;

fn strings(span: &SpanRecord, key: &str) -> Option<Vec<String>> {
    match span.attribute(key)? {
        Value::Array(opentelemetry::Array::String(values)) => {
            Some(values.iter().map(|v| v.as_str().to_owned()).collect())
        }
        other => panic!("{key} is not a string array: {other:?}"),
    }
}

fn client_and_server(recorded: &Recorded, name: &str, n: usize) -> (SpanRecord, SpanRecord) {
    recorded.spans.wait_for(n, WAIT).unwrap();
    let calls = recorded.spans.find_all(name);
    let (client, server) = split_call(&calls);
    assert_eq!(server.parent_span_id, client.span_id());
    (client, server)
}

#[test]
fn context_travels_as_traceparent_tracestate_and_baggage_metadata() {
    let health = TestHealth::default();
    let (recorded, ()) = recorded(|_| {
        let health = health.clone();
        async move {
            let addr = serve_grpc(ServerLayer::grpc(), health).await;
            let mut client = client(addr, ClientLayer::grpc()).await;
            // A caller that came with trace state and baggage of its own.
            let upstream = SpanContext::new(
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
                SpanId::from(0x00f0_67aa_0ba9_02b7),
                TraceFlags::SAMPLED,
                true,
                TraceState::from_members([("congo", "t61rcWkgMzE")]).unwrap(),
            );
            let outer = SpanStart::new()
                .remote_parent(upstream)
                .baggage(Baggage::new().with("user", "ana").unwrap())
                .create(|| tracing::info_span!("outer"));
            client
                .check(check_req("ok"))
                .instrument(outer)
                .await
                .unwrap();
        }
    });
    let (client, server) = client_and_server(&recorded, CHECK, 3);
    let seen = health.seen();
    assert_eq!(seen.len(), 1);
    let metadata = &seen[0];
    let traceparent = format_traceparent(&client.span_context);
    assert_eq!(
        metadata.get("traceparent").unwrap().as_bytes(),
        &traceparent[..]
    );
    assert_eq!(metadata.get("tracestate").unwrap(), "congo=t61rcWkgMzE");
    assert_eq!(metadata.get("baggage").unwrap(), "user=ana");
    assert_eq!(
        client.trace_id(),
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736)
    );
    assert_eq!(server.trace_id(), client.trace_id());
    assert_eq!(
        server.span_context.trace_state.get("congo"),
        Some("t61rcWkgMzE")
    );
}

#[test]
fn metadata_is_captured_by_allow_list_with_redaction() {
    let names = |list: &[&'static str]| -> Vec<HeaderName> {
        list.iter().map(|n| HeaderName::from_static(n)).collect()
    };
    let capture = names(&["x-request-id", "authorization"]);
    let response = names(&["x-served-by", "x-retry-after", "x-secret"]);
    let server_layer = ServerLayer::grpc()
        .capture_request_headers(capture.clone())
        .capture_response_headers(response.clone())
        .redact_headers(names(&["x-secret"]));
    let client_layer = ClientLayer::grpc()
        .capture_request_headers(capture)
        .capture_response_headers(response)
        .redact_headers(names(&["x-secret"]));
    let (recorded, ()) = recorded(|_| async move {
        let addr = serve_grpc(server_layer, TestHealth::default()).await;
        let mut client = client(addr, client_layer).await;
        let mut request = tonic::Request::new(check_req("metadata"));
        request
            .metadata_mut()
            .insert("x-request-id", "req-1".parse().unwrap());
        request
            .metadata_mut()
            .insert("authorization", "Bearer t0ken".parse().unwrap());
        client.check(request).await.unwrap();

        let mut stream = client
            .watch(check_req("stream-error-metadata"))
            .await
            .unwrap()
            .into_inner();
        stream.message().await.unwrap().unwrap();
        let status = stream.message().await.unwrap_err();
        assert_eq!(status.code(), Code::Aborted);
    });
    let (client, server) = client_and_server(&recorded, CHECK, 4);
    for span in [&client, &server] {
        assert_eq!(
            strings(span, "rpc.grpc.request.metadata.x-request-id"),
            Some(vec!["req-1".to_owned()])
        );
        assert_eq!(
            strings(span, "rpc.grpc.request.metadata.authorization"),
            Some(vec!["REDACTED".to_owned()])
        );
        assert_eq!(
            strings(span, "rpc.grpc.response.metadata.x-served-by"),
            Some(vec!["health-1".to_owned()])
        );
        assert_eq!(
            strings(span, "rpc.grpc.response.metadata.x-secret"),
            Some(vec!["REDACTED".to_owned()])
        );
        assert!(
            !span
                .attributes
                .iter()
                .any(|kv| kv.key.as_str().starts_with("http.")),
            "{span:#?}"
        );
        let text = format!("{span:?}");
        assert!(
            !text.contains("t0ken") && !text.contains("s3cret"),
            "{text}"
        );
    }
    // Trailing metadata, from the trailers at the end of a stream.
    let (client, server) = client_and_server(&recorded, WATCH, 4);
    for span in [&client, &server] {
        assert_eq!(
            strings(span, "rpc.grpc.response.metadata.x-retry-after"),
            Some(vec!["5".to_owned()])
        );
        assert_eq!(
            strings(span, "rpc.grpc.response.metadata.x-secret"),
            Some(vec!["REDACTED".to_owned()])
        );
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(10));
        assert!(!format!("{span:?}").contains("trailer-s3cret"));
    }
}

/// A backend that speaks gRPC badly: answers without `grpc-status`, or with an HTTP error.
fn broken_backend() -> axum::Router {
    let grpc_ok = |status: u16| {
        move || async move {
            http::Response::builder()
                .status(status)
                .header("content-type", "application/grpc")
                .body(axum::body::Body::empty())
                .unwrap()
        }
    };
    axum::Router::new()
        .route("/pkg.Broken/NoStatus", post(grpc_ok(200)))
        .route("/pkg.Broken/Proxy503", post(grpc_ok(503)))
        .route(
            "/pkg.Broken/StatusThenBody",
            post(|| async {
                // A status in the headers, yet a body: the client stops reading at the status.
                http::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "5")
                    .header("grpc-message", "no%20such%20thing")
                    .body(axum::body::Body::from(vec![0u8; 64 * 1024]))
                    .unwrap()
            }),
        )
        .route(
            "/pkg.Broken/Hang",
            post(|| async {
                // Never answers, whatever deadline the caller sent.
                tokio::time::sleep(Duration::from_secs(60)).await;
                http::StatusCode::OK
            }),
        )
        .route(
            "/pkg.Broken/Html502",
            post(|| async {
                http::Response::builder()
                    .status(502)
                    .header("content-type", "text/html")
                    .body(axum::body::Body::from("<h1>Bad Gateway</h1>"))
                    .unwrap()
            }),
        )
        .layer(ServerLayer::new().service_name("broken"))
}

fn call_broken(path: &'static str) -> (SpanRecord, SpanRecord, Code) {
    let (recorded, code) = recorded(|_| async move {
        let addr = serve(broken_backend()).await;
        let channel = tower::ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(channel(addr).await);
        raw_unary(channel, uri(addr), path)
            .await
            .unwrap_err()
            .code()
    });
    let name = path.trim_start_matches('/');
    let (client, server) = client_and_server(&recorded, name, 2);
    (client, server, code)
}

#[test]
fn a_response_without_grpc_status_is_unknown() {
    let (client, server, code) = call_broken("/pkg.Broken/NoStatus");
    assert_eq!(code, Code::Unknown);
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(2));
        assert_eq!(
            span.status,
            Status::error("response ended without grpc-status")
        );
        assert_eq!(span.attribute("error.type"), Some(&Value::from("UNKNOWN")));
    }
}

#[test]
fn a_status_in_the_headers_is_final_even_if_the_body_is_dropped() {
    let (client, server, code) = call_broken("/pkg.Broken/StatusThenBody");
    assert_eq!(code, Code::NotFound);
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(5));
    }
    assert_eq!(client.status, Status::error("no such thing"));
    assert_eq!(
        client.attribute("error.type"),
        Some(&Value::from("NOT_FOUND"))
    );
    assert_eq!(server.status, Status::Unset);
}

#[test]
fn an_http_error_without_grpc_status_maps_to_a_grpc_code() {
    let (client, server, code) = call_broken("/pkg.Broken/Proxy503");
    assert_eq!(code, Code::Unavailable);
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(14));
        assert_eq!(int(span, "http.response.status_code"), Some(503));
        assert_eq!(span.status, Status::error("HTTP 503 Service Unavailable"));
        assert_eq!(
            span.attribute("error.type"),
            Some(&Value::from("UNAVAILABLE"))
        );
    }
    // An HTML error page from a gRPC route: the request was gRPC, so both spans are RPC
    // spans, with the status gRPC maps HTTP 502 to.
    let (recorded, code) = recorded(|_| async {
        let addr = serve(broken_backend()).await;
        let channel = tower::ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(channel(addr).await);
        raw_unary(channel, uri(addr), "/pkg.Broken/Html502")
            .await
            .unwrap_err()
            .code()
    });
    // tonic reads the HTML as a message and reports INTERNAL; the spans follow gRPC's
    // HTTP-to-gRPC mapping.
    assert_eq!(code, Code::Internal);
    let (client, server) = client_and_server(&recorded, "pkg.Broken/Html502", 2);
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(14));
        assert_eq!(int(span, "http.response.status_code"), Some(502));
        assert_eq!(span.status, Status::error("HTTP 502 Bad Gateway"));
    }
}

#[test]
fn an_unknown_path_answered_404_is_unimplemented() {
    let (recorded, code) = recorded(|_| async {
        let addr = serve(broken_backend()).await;
        let channel = tower::ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(channel(addr).await);
        raw_unary(channel, uri(addr), "/pkg.Broken/Missing")
            .await
            .unwrap_err()
            .code()
    });
    assert_eq!(code, Code::Unimplemented);
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    let client = recorded.spans.find("pkg.Broken/Missing").unwrap();
    // No route matched: the caller named the method, so the server span does not.
    let server = recorded.spans.find("grpc").expect("an _OTHER server span");
    assert_eq!(spans.len(), 2);
    assert_eq!(server.parent_span_id, client.span_id());
    assert_eq!(string(&server, "rpc.method").as_deref(), Some("_OTHER"));
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(12));
        assert_eq!(int(span, "http.response.status_code"), Some(404));
        assert_eq!(
            span.attribute("error.type"),
            Some(&Value::from("UNIMPLEMENTED"))
        );
    }
}

#[test]
fn a_client_past_its_deadline_records_deadline_exceeded() {
    let (recorded, ()) = recorded(|spans| async move {
        // A server that ignores deadlines: only the client's own timer ends the call.
        let addr = serve(broken_backend()).await;
        let channel = tower::ServiceBuilder::new()
            .layer(ClientLayer::grpc().service_name("caller"))
            .service(channel(addr).await);
        let mut request = tonic::Request::new(Bytes::new());
        request.set_timeout(Duration::from_millis(50));
        let status = raw_call(channel, uri(addr), "/pkg.Broken/Hang", request)
            .await
            .unwrap_err();
        // tonic's channel enforces `grpc-timeout` and reports its timer as CANCELLED.
        assert_eq!(status.code(), Code::Cancelled, "{status:?}");
        assert!(
            until(|| spans
                .find_all("pkg.Broken/Hang")
                .iter()
                .any(|s| s.kind == SpanKind::Client))
            .await
        );
    });
    let client = recorded
        .spans
        .find_all("pkg.Broken/Hang")
        .into_iter()
        .find(|s| s.kind == SpanKind::Client)
        .unwrap();
    assert_eq!(int(&client, "rpc.grpc.status_code"), Some(4));
    assert_eq!(
        client.attribute("error.type"),
        Some(&Value::from("DEADLINE_EXCEEDED"))
    );
    assert!(matches!(client.status, Status::Error { .. }));
    assert!(
        client.event("exception").is_some(),
        "the transport's error is kept"
    );
    assert!(client.duration() >= Duration::from_millis(50));
}

/// One gRPC frame holding a `HealthCheckRequest` for `service`.
fn check_frame(service: &str) -> Bytes {
    let mut message = vec![0x0a, service.len() as u8];
    message.extend_from_slice(service.as_bytes());
    let mut frame = vec![0];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend(message);
    Bytes::from(frame)
}

#[test]
fn a_server_past_the_callers_deadline_records_deadline_exceeded() {
    let (recorded, grpc_status) = recorded(|_| async {
        // The call never gets an answer: only a method the layer recognizes keeps its name.
        let layer = ServerLayer::grpc().grpc_methods([CHECK]);
        let addr = serve_grpc(layer, TestHealth::default()).await;
        // A client that sends a deadline but does not enforce it: the server's timer fires.
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Full<Bytes>>();
        let request = http::Request::post(format!("http://{addr}/{CHECK}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", "50m")
            .body(Full::new(check_frame("hang")))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let status = response.headers().get("grpc-status").cloned();
        let body = response.into_body().collect().await.unwrap();
        status.or_else(|| body.trailers().and_then(|t| t.get("grpc-status").cloned()))
    });
    // tonic answers CANCELLED ("Timeout expired") for a deadline; the span says what happened.
    assert_eq!(grpc_status.unwrap(), "1");
    let server = recorded.spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(server.name, CHECK);
    assert_eq!(int(&server, "rpc.grpc.status_code"), Some(4));
    assert_eq!(
        server.attribute("error.type"),
        Some(&Value::from("DEADLINE_EXCEEDED"))
    );
    assert_eq!(server.status, Status::error("deadline exceeded"));
    assert!(server.duration() >= Duration::from_millis(50));
}

fn message_events(span: &SpanRecord) -> Vec<(String, i64, i64)> {
    span.events
        .iter()
        .filter(|e| e.name == "rpc.message")
        .map(|e| {
            let get = |key: &str| {
                e.attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == key)
                    .map(|kv| kv.value.clone())
            };
            let Some(Value::I64(id)) = get("rpc.message.id") else {
                panic!("no id: {e:?}")
            };
            let Some(Value::I64(size)) = get("rpc.message.uncompressed_size") else {
                panic!("no size: {e:?}")
            };
            (
                get("rpc.message.type").unwrap().as_str().into_owned(),
                id,
                size,
            )
        })
        .collect()
}

#[test]
fn message_events_count_response_messages_when_enabled() {
    let (recorded, ()) = recorded(|_| async {
        let server = ServerLayer::grpc().message_events(true);
        let addr = serve_grpc(server, TestHealth::default()).await;
        let mut client = client(addr, ClientLayer::grpc().message_events(true)).await;
        client.check(check_req("ok")).await.unwrap();
        let mut stream = client
            .watch(check_req("stream-ok"))
            .await
            .unwrap()
            .into_inner();
        while stream.message().await.unwrap().is_some() {}
    });
    recorded.spans.wait_for(4, WAIT).unwrap();
    let (client, server) = client_and_server(&recorded, CHECK, 4);
    // `HealthCheckResponse { status: SERVING }` is two bytes.
    assert_eq!(message_events(&client), [("RECEIVED".to_owned(), 1, 2)]);
    assert_eq!(message_events(&server), [("SENT".to_owned(), 1, 2)]);
    let (client, server) = client_and_server(&recorded, WATCH, 4);
    let expected = |kind: &str| -> Vec<(String, i64, i64)> {
        (1..=3).map(|id| (kind.to_owned(), id, 2)).collect()
    };
    assert_eq!(message_events(&client), expected("RECEIVED"));
    assert_eq!(message_events(&server), expected("SENT"));
}

#[test]
fn message_events_are_off_by_default() {
    let (recorded, ()) = recorded(|_| async {
        let addr = serve_grpc(ServerLayer::grpc(), TestHealth::default()).await;
        let mut client = client(addr, ClientLayer::grpc()).await;
        let mut stream = client
            .watch(check_req("stream-ok"))
            .await
            .unwrap()
            .into_inner();
        while stream.message().await.unwrap().is_some() {}
    });
    let (client, server) = client_and_server(&recorded, WATCH, 2);
    assert!(client.events.is_empty() && server.events.is_empty());
}
