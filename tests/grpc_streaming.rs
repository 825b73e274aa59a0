//! Server-streaming gRPC over loopback: the spans end when the stream ends (OK, or with an
//! error status in the trailers), or when the client cancels it.

mod grpc_support;
mod support;

use std::time::Duration;

use grpc_support::*;
use support::*;
use tonic::Code;
use tracewire::record::SpanRecord;
use tracewire::span::{Status, Value};
use tracewire::{ClientLayer, ServerLayer};
use tracing::Instrument;

fn layers() -> (ServerLayer, ClientLayer) {
    (
        ServerLayer::grpc().service_name("health"),
        ClientLayer::grpc().service_name("caller"),
    )
}

fn client_and_server(recorded: &Recorded) -> (SpanRecord, SpanRecord) {
    recorded.spans.wait_for(3, WAIT).unwrap();
    let outer = recorded.spans.find("outer").unwrap();
    let calls = recorded.spans.find_all(WATCH);
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let (client, server) = split_call(&calls);
    assert_eq!(client.trace_id(), outer.trace_id());
    assert_eq!(client.parent_span_id, outer.span_id());
    assert_eq!(server.trace_id(), outer.trace_id());
    assert_eq!(server.parent_span_id, client.span_id());
    assert!(server.parent_is_remote);
    (client, server)
}

#[test]
fn a_stream_that_ends_ok_ends_both_spans_at_its_end() {
    let (recorded, received) = recorded(|_| async {
        let (server, client_layer) = layers();
        let addr = serve_grpc(server, TestHealth::default()).await;
        let mut client = client(addr, client_layer).await;
        async {
            let mut stream = client
                .watch(check_req("stream-ok"))
                .await
                .unwrap()
                .into_inner();
            let mut received = 0;
            while let Some(message) = stream.message().await.unwrap() {
                assert_eq!(message.status, 1);
                received += 1;
            }
            received
        }
        .instrument(tracing::info_span!("outer"))
        .await
    });
    assert_eq!(received, 3);
    let (client, server) = client_and_server(&recorded);
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(0));
        assert_eq!(span.status, Status::Unset);
        assert!(span.attribute("error.type").is_none());
        assert_eq!(string(span, "rpc.method").as_deref(), Some("Watch"));
        // Three messages 30 ms apart: the spans last at least as long as the stream.
        assert!(
            span.duration() >= Duration::from_millis(90),
            "{:?}",
            span.duration()
        );
    }
    assert!(client.start_time <= server.start_time && server.end_time <= client.end_time);
}

fn stream_with_error(code: Code) -> (SpanRecord, SpanRecord) {
    let name = code_name(code);
    let (recorded, received) = recorded(|_| async move {
        let (server, client_layer) = layers();
        let addr = serve_grpc(server, TestHealth::default()).await;
        let mut client = client(addr, client_layer).await;
        async {
            let mut stream = client
                .watch(check_req(&format!("stream-error:{name}")))
                .await
                .unwrap()
                .into_inner();
            let mut received = 0;
            loop {
                match stream.message().await {
                    Ok(Some(_)) => received += 1,
                    Ok(None) => panic!("the stream should end with {name}"),
                    Err(status) => {
                        assert_eq!(status.code(), code);
                        assert_eq!(status.message(), format!("{name} mid-stream"));
                        break received;
                    }
                }
            }
        }
        .instrument(tracing::info_span!("outer"))
        .await
    });
    assert_eq!(received, 2);
    let (client, server) = client_and_server(&recorded);
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(code as i64));
        assert!(
            span.duration() >= Duration::from_millis(60),
            "{:?}",
            span.duration()
        );
    }
    assert!(client.start_time <= server.start_time && server.end_time <= client.end_time);
    (client, server)
}

#[test]
fn a_stream_that_ends_with_an_error_status_in_its_trailers() {
    let (client, server) = stream_with_error(Code::Unavailable);
    for span in [&client, &server] {
        assert_eq!(span.status, Status::error("UNAVAILABLE mid-stream"));
        assert_eq!(
            span.attribute("error.type"),
            Some(&Value::from("UNAVAILABLE"))
        );
    }
}

#[test]
fn a_stream_that_ends_with_a_client_error_in_its_trailers() {
    let (client, server) = stream_with_error(Code::ResourceExhausted);
    assert_eq!(
        client.status,
        Status::error("RESOURCE_EXHAUSTED mid-stream")
    );
    assert_eq!(
        client.attribute("error.type"),
        Some(&Value::from("RESOURCE_EXHAUSTED"))
    );
    assert_eq!(server.status, Status::Unset);
    assert!(server.attribute("error.type").is_none());
}

#[test]
fn a_stream_refused_before_its_first_message_is_trailers_only() {
    let (recorded, ()) = recorded(|_| async {
        let (server, client_layer) = layers();
        let addr = serve_grpc(server, TestHealth::default()).await;
        let mut client = client(addr, client_layer).await;
        let status = client
            .watch(check_req("DATA_LOSS"))
            .instrument(tracing::info_span!("outer"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DataLoss);
    });
    let (client, server) = client_and_server(&recorded);
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(15));
        assert_eq!(span.status, Status::error("DATA_LOSS on purpose"));
        assert_eq!(
            span.attribute("error.type"),
            Some(&Value::from("DATA_LOSS"))
        );
    }
}

#[test]
fn a_cancelled_stream_ends_both_spans_cancelled_and_only_the_client_span_failed() {
    let (recorded, ()) = recorded(|spans| async move {
        let (server, client_layer) = layers();
        let addr = serve_grpc(server, TestHealth::default()).await;
        let mut client = client(addr, client_layer).await;
        async {
            let mut stream = client
                .watch(check_req("endless"))
                .await
                .unwrap()
                .into_inner();
            for _ in 0..3 {
                stream.message().await.unwrap().unwrap();
            }
            // Stop listening: the stream is cancelled.
            drop(stream);
        }
        .instrument(tracing::info_span!("outer"))
        .await;
        // Keep the runtime turning until the server notices.
        assert!(
            until(|| spans.find_all(WATCH).len() == 2).await,
            "{:#?}",
            spans.spans()
        );
    });
    let (client, server) = client_and_server(&recorded);
    assert_eq!(
        client.status,
        Status::error("response body dropped before its end")
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
        assert_eq!(
            int(span, "rpc.grpc.status_code"),
            Some(Code::Cancelled as i64)
        );
        // Three messages 10 ms apart came through before the cancellation.
        assert!(
            span.duration() >= Duration::from_millis(30),
            "{:?}",
            span.duration()
        );
    }
    assert!(client.start_time <= server.start_time);
}
