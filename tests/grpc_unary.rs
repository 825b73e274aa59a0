//! Unary gRPC over loopback: a tonic server behind the server layer, a tonic `Channel`
//! behind the client layer, one trace; OK, each error class, and calls tonic itself
//! answers (an unknown method).

mod grpc_support;
mod support;

use std::time::Duration;

use grpc_support::*;
use support::*;
use tonic::Code;
use tracewire::record::SpanRecord;
use tracewire::span::{SpanKind, Status, Value};
use tracewire::{ClientLayer, ServerLayer};
use tracing::Instrument;

fn layers() -> (ServerLayer, ClientLayer) {
    (
        // Named, so that calls cancelled before any answer keep their method's name.
        ServerLayer::grpc()
            .grpc_methods([CHECK, WATCH])
            .service_name("health"),
        ClientLayer::grpc().service_name("caller"),
    )
}

/// The outer span, the client span and the server span of one call, linked as one trace.
fn one_trace(recorded: &Recorded, name: &str) -> (SpanRecord, SpanRecord, SpanRecord) {
    recorded.spans.wait_for(3, WAIT).unwrap();
    let outer = recorded.spans.find("outer").expect("outer span");
    let calls = recorded.spans.find_all(name);
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let (client, server) = split_call(&calls);
    assert_eq!(client.trace_id(), outer.trace_id());
    assert_eq!(server.trace_id(), outer.trace_id());
    assert_eq!(client.parent_span_id, outer.span_id());
    assert!(!client.parent_is_remote);
    assert_eq!(server.parent_span_id, client.span_id());
    assert!(server.parent_is_remote);
    assert_eq!(client.service_name.as_ref(), "caller");
    assert_eq!(server.service_name.as_ref(), "health");
    (outer, client, server)
}

fn assert_rpc_attributes(span: &SpanRecord, port: u16, method: &str) {
    assert_eq!(string(span, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        string(span, "rpc.service").as_deref(),
        Some("grpc.health.v1.Health")
    );
    assert_eq!(string(span, "rpc.method").as_deref(), Some(method));
    assert_eq!(string(span, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(int(span, "server.port"), Some(i64::from(port)));
    assert!(
        span.attribute("http.request.method").is_none() && span.attribute("url.full").is_none(),
        "gRPC spans carry RPC attributes, not HTTP ones: {span:#?}"
    );
}

/// The client span encloses the server span.
fn assert_encloses(client: &SpanRecord, server: &SpanRecord) {
    assert!(
        client.start_time <= server.start_time,
        "{client:#?} {server:#?}"
    );
    assert!(
        server.end_time <= client.end_time,
        "{client:#?} {server:#?}"
    );
}

#[test]
fn unary_ok_is_one_trace_with_rpc_attributes() {
    let (recorded, addr) = recorded(|_| async {
        let (server, client_layer) = layers();
        let addr = serve_grpc(server, TestHealth::default()).await;
        let mut client = client(addr, client_layer).await;
        let response = client
            .check(check_req("slow"))
            .instrument(tracing::info_span!("outer"))
            .await
            .unwrap();
        assert_eq!(response.into_inner().status, 1);
        addr
    });
    let (_, client, server) = one_trace(&recorded, CHECK);
    for span in [&client, &server] {
        assert_rpc_attributes(span, addr.port(), "Check");
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(0));
        assert_eq!(span.status, Status::Unset);
        assert!(span.attribute("error.type").is_none());
        // The handler sleeps 100 ms: a lower bound on both sides.
        assert!(
            span.duration() >= Duration::from_millis(100),
            "{:?}",
            span.duration()
        );
    }
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(
        string(&client, "network.protocol.version").as_deref(),
        Some("2")
    );
    // tonic's server hands the peer address to the layer (feature `grpc`).
    #[cfg(feature = "grpc")]
    {
        assert_eq!(
            string(&server, "network.peer.address").as_deref(),
            Some("127.0.0.1")
        );
        assert!(int(&server, "network.peer.port").is_some_and(|p| p > 0));
    }
    assert_encloses(&client, &server);
}

fn check_failing(code: Code) -> (SpanRecord, SpanRecord) {
    let name = code_name(code);
    let (recorded, ()) = recorded(|_| async move {
        let (server, client_layer) = layers();
        let addr = serve_grpc(server, TestHealth::default()).await;
        let mut client = client(addr, client_layer).await;
        let status = client
            .check(check_req(name))
            .instrument(tracing::info_span!("outer"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code);
        assert_eq!(status.message(), format!("{name} on purpose"));
    });
    let (_, client, server) = one_trace(&recorded, CHECK);
    assert_encloses(&client, &server);
    (client, server)
}

#[test]
fn unary_server_error_classes_are_errors_on_both_sides() {
    for code in SERVER_ERROR_CODES {
        let name = code_name(code);
        let (client, server) = check_failing(code);
        let description = format!("{name} on purpose");
        for span in [&client, &server] {
            assert_eq!(
                int(span, "rpc.grpc.status_code"),
                Some(code as i64),
                "{name}"
            );
            assert_eq!(span.status, Status::error(description.clone()), "{name}");
            assert_eq!(
                span.attribute("error.type"),
                Some(&Value::from(name)),
                "{name}"
            );
        }
    }
}

#[test]
fn unary_other_codes_are_errors_for_the_client_only() {
    for code in OTHER_CODES {
        let name = code_name(code);
        let (client, server) = check_failing(code);
        assert_eq!(
            int(&client, "rpc.grpc.status_code"),
            Some(code as i64),
            "{name}"
        );
        assert_eq!(
            int(&server, "rpc.grpc.status_code"),
            Some(code as i64),
            "{name}"
        );
        assert_eq!(
            client.status,
            Status::error(format!("{name} on purpose")),
            "{name}"
        );
        assert_eq!(client.attribute("error.type"), Some(&Value::from(name)));
        assert_eq!(server.status, Status::Unset, "{name}");
        assert!(server.attribute("error.type").is_none(), "{name}");
    }
}

#[test]
fn an_unknown_method_is_unimplemented_on_both_sides() {
    let (recorded, ()) = recorded(|_| async {
        let (server, client_layer) = layers();
        let addr = serve_grpc(server, TestHealth::default()).await;
        let channel = tower::ServiceBuilder::new()
            .layer(client_layer)
            .service(channel(addr).await);
        let status = raw_unary(channel, uri(addr), "/grpc.health.v1.Health/Nope")
            .instrument(tracing::info_span!("outer"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
    });
    let (client, server) = refused_call(&recorded, "grpc.health.v1.Health/Nope");
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(12));
        assert_eq!(span.status, Status::error(""), "the code says it");
        assert_eq!(
            span.attribute("error.type"),
            Some(&Value::from("UNIMPLEMENTED"))
        );
    }
    assert_eq!(string(&client, "rpc.method").as_deref(), Some("Nope"));
}

/// The client and server spans of a call the server refused as UNIMPLEMENTED: the client
/// keeps the name it chose; the server span is `grpc`, with `rpc.method = _OTHER` and the
/// caller's method only in `rpc.method_original`.
fn refused_call(recorded: &Recorded, method: &str) -> (SpanRecord, SpanRecord) {
    recorded.spans.wait_for(3, WAIT).unwrap();
    let outer = recorded.spans.find("outer").expect("outer span");
    let client = recorded.spans.find(method).expect("client span");
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(client.parent_span_id, outer.span_id());
    let server = recorded.spans.find("grpc").expect("server span");
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(server.parent_span_id, client.span_id());
    assert_eq!(string(&server, "rpc.method").as_deref(), Some("_OTHER"));
    assert_eq!(
        string(&server, "rpc.method_original").as_deref(),
        Some(method)
    );
    assert!(server.attribute("rpc.service").is_none(), "{server:#?}");
    (client, server)
}

#[test]
fn an_unknown_service_is_unimplemented_on_both_sides() {
    let (recorded, ()) = recorded(|_| async {
        let (server, client_layer) = layers();
        let addr = serve_grpc(server, TestHealth::default()).await;
        let channel = tower::ServiceBuilder::new()
            .layer(client_layer)
            .service(channel(addr).await);
        let status = raw_unary(channel, uri(addr), "/pkg.Missing/Call")
            .instrument(tracing::info_span!("outer"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
    });
    let (client, server) = refused_call(&recorded, "pkg.Missing/Call");
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(12));
        assert_eq!(span.status, Status::error(""), "the code says it");
    }
    assert_eq!(
        string(&client, "rpc.service").as_deref(),
        Some("pkg.Missing")
    );
}

#[test]
fn a_unary_call_given_up_by_the_client_is_cancelled_on_both_sides_and_fails_only_the_client() {
    let (recorded, timer_set) = recorded(|spans| async move {
        let (server, client_layer) = layers();
        let addr = serve_grpc(server, TestHealth::default()).await;
        let mut client = client(addr, client_layer).await;
        let call = client
            .check(check_req("hang"))
            .instrument(tracing::info_span!("outer"));
        // The caller stops waiting (no deadline was sent: this is a cancellation).
        let timer_set = std::time::SystemTime::now();
        let gave_up = tokio::time::timeout(Duration::from_millis(20), call).await;
        assert!(gave_up.is_err());
        assert!(
            until(|| spans.find_all(CHECK).len() == 2).await,
            "{:#?}",
            spans.spans()
        );
        timer_set
    });
    let (_, client, server) = one_trace(&recorded, CHECK);
    assert_eq!(
        client.status,
        Status::error("response future dropped before completion")
    );
    // CANCELLED is not among a server's error codes: the caller gave up, the server did not
    // fail.
    assert_eq!(server.status, Status::Unset);
    assert_eq!(server.attribute("error.type"), None);
    assert_eq!(
        client.attribute("error.type"),
        Some(&Value::from("cancelled"))
    );
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(1));
    }
    // The span lasted until the caller gave up: it ends after the timer ran out, whenever
    // the call itself got to start on a busy machine (the clocks may differ by 200 µs).
    let ran_out = timer_set + Duration::from_millis(20) - Duration::from_micros(200);
    assert!(client.end_time >= ran_out, "{client:#?}");
}

#[test]
fn without_a_recorder_calls_pass_through() {
    let status = runtime().block_on(async {
        let (server, client_layer) = layers();
        let addr = serve_grpc(server, TestHealth::default()).await;
        let mut client = client(addr, client_layer).await;
        assert_eq!(
            client
                .check(check_req("ok"))
                .await
                .unwrap()
                .into_inner()
                .status,
            1
        );
        let mut stream = client
            .watch(check_req("stream-ok"))
            .await
            .unwrap()
            .into_inner();
        while stream.message().await.unwrap().is_some() {}
        client.check(check_req("UNAVAILABLE")).await.unwrap_err()
    });
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "UNAVAILABLE on purpose");
}

/// A code the conventions do not count as a server error leaves the server span's status
/// unset even where the handler logged an error on its way to it; the event stays.
#[test]
fn a_logged_error_does_not_fail_a_server_span_the_conventions_leave_unset() {
    for (code, failed) in [(Code::NotFound, false), (Code::Internal, true)] {
        let name = code_name(code);
        let (recorded, ()) = recorded(|_| async move {
            let (server, client_layer) = layers();
            let addr = serve_grpc(server, TestHealth::default()).await;
            let mut client = client(addr, client_layer).await;
            let status = client
                .check(check_req(&format!("logged-{name}")))
                .instrument(tracing::info_span!("outer"))
                .await
                .unwrap_err();
            assert_eq!(status.code(), code);
        });
        let (_, client, server) = one_trace(&recorded, CHECK);
        assert!(
            server.events.iter().any(|e| e.name == "exception"),
            "{name}: {:?}",
            server.events
        );
        assert_eq!(
            matches!(server.status, Status::Error { .. }),
            failed,
            "{name}: {:?}",
            server.status
        );
        assert!(matches!(client.status, Status::Error { .. }), "{name}");
    }
}
