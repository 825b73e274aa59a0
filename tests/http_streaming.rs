//! The spans cover the response body: a body that streams for 200 ms, and a client that
//! disconnects in the middle of one.

#![cfg(feature = "axum")]

mod support;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::stream;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::span::{Status, Value};
use tracewire::{ClientLayer, ServerLayer};

/// Four chunks, 50 ms apart.
fn slow_body() -> Body {
    Body::from_stream(stream::unfold(0u32, |n| async move {
        if n == 4 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("chunk {n}\n"))),
            n + 1,
        ))
    }))
}

/// Chunks every 10 ms, for a minute: only a client that goes away ends it early.
fn endless_body() -> Body {
    Body::from_stream(stream::unfold(0u32, |n| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        (n < 6000).then(|| (Ok::<_, Infallible>(Bytes::from(vec![b'x'; 1024])), n + 1))
    }))
}

fn app() -> Router {
    Router::new()
        .route("/slow", get(|| async { slow_body() }))
        .route("/endless", get(|| async { endless_body() }))
        .layer(ServerLayer::new().service_name("streamer"))
}

#[test]
fn server_and_client_spans_cover_a_body_that_streams_for_200_ms() {
    let (recorded, (body, elapsed)) = recorded(|_| async {
        let addr = serve(app()).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new().service_name("reader"))
            .service(hyper_client());
        let started = std::time::Instant::now();
        let response = client
            .ready()
            .await
            .unwrap()
            .call(get_req(&format!("http://{addr}/slow")))
            .await
            .unwrap();
        let body = text(response.into_body()).await;
        (body, started.elapsed())
    });
    assert_eq!(body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
    assert!(elapsed >= Duration::from_millis(200));
    recorded.spans.wait_for(2, WAIT).unwrap();
    let server = recorded.spans.find("GET /slow").unwrap();
    let client = recorded.spans.find("GET").unwrap();
    // The sleeps make these lower bounds certain; the body, not the headers, ends the spans.
    assert!(
        server.duration() >= Duration::from_millis(200),
        "{:?}",
        server.duration()
    );
    assert!(
        client.duration() >= Duration::from_millis(200),
        "{:?}",
        client.duration()
    );
    assert_eq!(server.status, Status::Unset);
    assert_eq!(client.status, Status::Unset);
    assert_eq!(server.parent_span_id, client.span_id());
}

#[test]
fn a_client_that_disconnects_mid_body_ends_the_server_span_as_cancelled() {
    let (recorded, ()) = recorded(|spans| async move {
        let addr = serve(app()).await;
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /endless HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        // Read the head and the first chunk, then go away.
        let mut buf = vec![0u8; 4096];
        let mut read = 0;
        while read < 2048 {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed early");
            read += n;
        }
        drop(socket);
        // Keep the runtime turning until the server notices the broken connection.
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if !spans.is_empty() {
                break;
            }
        }
    });
    let server = recorded.spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(server.name, "GET /endless");
    assert_eq!(
        server.attribute("error.type"),
        Some(&Value::from("cancelled"))
    );
    assert_eq!(
        server.status,
        Status::error("response body dropped before its end")
    );
    assert_eq!(
        server.attribute("http.response.status_code"),
        Some(&Value::I64(200))
    );
}

#[test]
fn a_dropped_response_future_ends_the_client_span_as_cancelled() {
    let (recorded, ()) = recorded(|_| async {
        let addr = serve(app()).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(hyper_client());
        let call = client
            .ready()
            .await
            .unwrap()
            .call(get_req(&format!("http://{addr}/endless")));
        // Give up on the response before it arrives.
        drop(call);
    });
    let client = recorded.spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(client.name, "GET");
    assert_eq!(
        client.attribute("error.type"),
        Some(&Value::from("cancelled"))
    );
    assert_eq!(
        client.status,
        Status::error("response future dropped before completion")
    );
}

/// A body that declares its length (`content-length`, as a file download does) but does not
/// say it has ended after its last chunk: hyper's HTTP/1 server stops at the declared length
/// and drops the body without polling it again. The response was sent whole: not cancelled.
#[test]
fn a_body_sent_to_its_declared_length_ends_without_error() {
    let app = Router::new()
        .route(
            "/download",
            get(|| async {
                let chunks = ["0123", "4567"].map(|c| Ok::<_, Infallible>(Bytes::from(c)));
                (
                    [(http::header::CONTENT_LENGTH, "8")],
                    Body::from_stream(stream::iter(chunks)),
                )
            }),
        )
        .layer(ServerLayer::new().service_name("files"));
    let (recorded, body) = recorded(|_| async {
        let addr = serve(app).await;
        let response = hyper_client()
            .request(get_req(&format!("http://{addr}/download")))
            .await
            .unwrap();
        text(response.into_body()).await
    });
    assert_eq!(body, "01234567");
    let server = recorded.spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(server.name, "GET /download");
    assert_eq!(server.status, Status::Unset);
    assert_eq!(server.attribute("error.type"), None);
    assert_eq!(
        server.attribute("http.response.status_code"),
        Some(&Value::I64(200))
    );
}
