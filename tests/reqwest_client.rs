//! A reqwest client through reqwest-middleware, with and without a retry middleware, against a
//! traced axum server over loopback: one trace, one client span per attempt with its resend
//! count, server spans under the attempts that reached them, and the span lasting until the
//! response body ends.
#![cfg(all(feature = "reqwest", feature = "axum"))]

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use support::*;
use tokio::sync::oneshot;
use tracewire::record::SpanRecord;
use tracewire::reqwest::TracingMiddleware;
use tracewire::span::{SpanKind, Status, Value};
use tracewire::{ClientLayer, ServerLayer};
use tracing::Instrument;

#[tracing::instrument]
async fn load_user(id: u32) -> String {
    format!("user {id}")
}

/// The `traceparent` the request arrived with, or `none`.
async fn echo_traceparent(headers: HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned()
}

/// Fails with 503 `failures` times, then answers 200.
async fn flaky(State(calls): State<Arc<AtomicUsize>>, Path(failures): Path<usize>) -> StatusCode {
    if calls.fetch_add(1, Ordering::SeqCst) < failures {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

/// Sends `first`, then waits for the signal before the last chunk.
fn gated_body(release: oneshot::Receiver<()>) -> Body {
    let chunks = futures_util::stream::unfold(Some(release), |gate| async move {
        let release = gate?;
        let _ = release.await;
        Some((Ok::<_, Infallible>(Bytes::from_static(b"last")), None))
    });
    Body::from_stream(futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from_static(b"first "))]),
        chunks,
    ))
}

fn app(calls: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route("/users/{id}", get(|Path(id): Path<u32>| load_user(id)))
        .route("/echo", get(echo_traceparent))
        .route("/flaky/{failures}", get(flaky))
        .route("/never", get(std::future::pending::<()>))
        .route(
            "/unavailable",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "try later") }),
        )
        .with_state(calls)
        .layer(ServerLayer::new().service_name("users"))
}

fn client(middleware: TracingMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

fn retrying_client(middleware: TracingMiddleware, max_retries: u32) -> ClientWithMiddleware {
    let policy = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(1), Duration::from_millis(5))
        .build_with_max_retries(max_retries);
    ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy(policy))
        .with(middleware)
        .build()
}

fn int(span: &SpanRecord, key: &str) -> Option<i64> {
    match span.attribute(key) {
        Some(Value::I64(v)) => Some(*v),
        _ => None,
    }
}

fn string(span: &SpanRecord, key: &str) -> Option<String> {
    span.attribute(key).map(|v| v.as_str().into_owned())
}

#[test]
fn without_retries_client_server_and_handler_spans_form_one_trace() {
    let (recorded, addr) = recorded(|_| async {
        let addr = serve(app(Arc::default())).await;
        let http = client(TracingMiddleware::new().service_name("frontend"));
        let body = async {
            let response = http
                .get(format!("http://{addr}/users/7?q=1"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.url().as_str(),
                format!("http://{addr}/users/7?q=1"),
                "the final URL survives the body wrapper"
            );
            assert!(response.remote_addr().is_some(), "so do the extensions");
            assert_eq!(response.content_length(), Some(6), "and the size hint");
            response.text().await.unwrap()
        }
        .instrument(tracing::info_span!("page"))
        .await;
        assert_eq!(body, "user 7");
        addr
    });
    recorded.spans.wait_for(4, WAIT).unwrap();
    let page = recorded.spans.find("page").unwrap();
    let client = recorded.spans.find("GET").unwrap();
    let server = recorded.spans.find("GET /users/{id}").unwrap();
    let handler = recorded.spans.find("load_user").unwrap();

    for span in [&client, &server, &handler] {
        assert_eq!(span.trace_id(), page.trace_id());
    }
    assert_eq!(client.parent_span_id, page.span_id());
    assert_eq!(server.parent_span_id, client.span_id());
    assert!(server.parent_is_remote);
    assert_eq!(handler.parent_span_id, server.span_id());
    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(client.service_name.as_ref(), "frontend");
    assert_eq!(server.service_name.as_ref(), "users");
    assert!(client.start_time <= server.start_time && server.end_time <= client.end_time);

    assert_eq!(
        string(&client, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        string(&client, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(int(&client, "server.port"), Some(i64::from(addr.port())));
    assert_eq!(
        string(&client, "url.full"),
        Some(format!("http://127.0.0.1:{}/users/7?q=1", addr.port()))
    );
    assert_eq!(int(&client, "http.response.status_code"), Some(200));
    assert_eq!(
        string(&client, "network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert!(
        client.attribute("http.request.resend_count").is_none(),
        "a first attempt has no resend count"
    );
    assert_eq!(client.status, Status::Unset);
}

#[test]
fn with_retries_each_attempt_is_a_span_with_its_resend_count_and_its_server_span() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (recorded, ()) = recorded(|_| {
        let calls = calls.clone();
        async move {
            let addr = serve(app(calls)).await;
            let http = retrying_client(TracingMiddleware::new().service_name("frontend"), 3);
            async {
                let response = http
                    .get(format!("http://{addr}/flaky/2"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
            }
            .instrument(tracing::info_span!("page"))
            .await;
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two 503s, then a 200");
    // page, 3 attempts, 3 server spans.
    recorded.spans.wait_for(7, WAIT).unwrap();
    let page = recorded.spans.find("page").unwrap();
    let mut attempts = recorded.spans.find_all("GET");
    attempts.sort_by_key(|s| s.start_time);
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    let servers = recorded.spans.find_all("GET /flaky/{failures}");
    assert_eq!(servers.len(), 3);

    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.trace_id(), page.trace_id(), "one trace");
        assert_eq!(attempt.parent_span_id, page.span_id());
        assert_eq!(attempt.kind, SpanKind::Client);
        let resend = int(attempt, "http.request.resend_count");
        assert_eq!(resend, (i > 0).then_some(i as i64), "attempt {}", i + 1);
        // The server span of this attempt is its child, and only its.
        let children = recorded.spans.children(attempt);
        assert_eq!(children.len(), 1, "attempt {}: {children:#?}", i + 1);
        assert_eq!(children[0].kind, SpanKind::Server);
        assert!(servers.iter().any(|s| s.span_id() == children[0].span_id()));
        let code = if i < 2 { 503 } else { 200 };
        assert_eq!(int(attempt, "http.response.status_code"), Some(code));
        assert_eq!(int(&children[0], "http.response.status_code"), Some(code));
    }
    // The retry middleware drops the 503 bodies unread: they stay 503 errors, not
    // cancellations.
    for attempt in &attempts[..2] {
        assert_eq!(attempt.status, Status::error(""));
        assert_eq!(string(attempt, "error.type").as_deref(), Some("503"));
    }
    assert_eq!(attempts[2].status, Status::Unset);
    assert!(attempts
        .windows(2)
        .all(|w| w[0].end_time <= w[1].start_time));
}

#[test]
fn the_client_span_ends_when_the_body_ends_not_with_the_headers() {
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let gate = Arc::new(std::sync::Mutex::new(Some(release_rx)));
    let (recorded, released_at) = recorded(|_| async move {
        let app = Router::new()
            .route(
                "/gated",
                get(move || {
                    let release = gate.lock().unwrap().take().unwrap();
                    async move { gated_body(release) }
                }),
            )
            .layer(ServerLayer::new().service_name("users"));
        let addr = serve(app).await;
        let http = client(TracingMiddleware::new());
        let mut response = http
            .get(format!("http://{addr}/gated"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.chunk().await.unwrap().unwrap(), "first ");
        // Headers and a first chunk are in; the body has not ended.
        let released_at = SystemTime::now();
        release_tx.send(()).unwrap();
        assert_eq!(response.chunk().await.unwrap().unwrap(), "last");
        assert!(response.chunk().await.unwrap().is_none());
        released_at
    });
    recorded.spans.wait_for(2, WAIT).unwrap();
    let client = recorded.spans.find("GET").unwrap();
    let server = recorded.spans.find("GET /gated").unwrap();
    assert!(
        client.end_time >= released_at,
        "the client span outlived the response head"
    );
    assert!(server.end_time >= released_at);
    assert!(client.end_time >= server.end_time);
    assert_eq!(client.status, Status::Unset);
}

#[test]
fn dropped_bodies_failures_and_client_errors() {
    let (recorded, ()) = recorded(|_| async {
        let addr = serve(app(Arc::default())).await;
        let http = client(TracingMiddleware::new());
        // A request abandoned before its response: cancelled.
        let abandoned = tokio::time::timeout(
            Duration::from_millis(50),
            http.get(format!("http://{addr}/never"))
                .send()
                .instrument(tracing::info_span!("call", case = "abandoned")),
        )
        .await;
        assert!(abandoned.is_err(), "the server never answers");
        // Only the status read, the body dropped before its end: normal use, not an error.
        let response = http
            .get(format!("http://{addr}/users/1"))
            .send()
            .instrument(tracing::info_span!("call", case = "dropped"))
            .await
            .unwrap();
        drop(response);
        // An error status whose body is dropped: the error stays the status's.
        let response = http
            .get(format!("http://{addr}/unavailable"))
            .send()
            .instrument(tracing::info_span!("call", case = "503"))
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        drop(response);
        // 404 is an error for a client.
        let response = http
            .get(format!("http://{addr}/missing"))
            .send()
            .instrument(tracing::info_span!("call", case = "404"))
            .await
            .unwrap();
        response.bytes().await.unwrap();
        // Nothing listens: a transport error with an exception.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let error = http
            .get(format!("http://{closed_addr}/"))
            .send()
            .instrument(tracing::info_span!("call", case = "refused"))
            .await
            .unwrap_err();
        assert!(error.is_connect(), "{error:?}");
    });
    let client_of = |case: &str| {
        let call = recorded
            .spans
            .find_all("call")
            .into_iter()
            .find(|c| string(c, "case").as_deref() == Some(case))
            .unwrap();
        recorded.spans.children(&call).remove(0)
    };
    // 5 call spans, 5 client spans, 4 server spans, the handler of /users/1.
    recorded.spans.wait_for(15, WAIT).unwrap();

    let abandoned = client_of("abandoned");
    assert_eq!(
        string(&abandoned, "error.type").as_deref(),
        Some("cancelled")
    );
    assert_eq!(
        abandoned.status,
        Status::error("request dropped before the response arrived")
    );

    let dropped = client_of("dropped");
    assert!(dropped.attribute("error.type").is_none(), "{dropped:#?}");
    assert_eq!(dropped.status, Status::Unset);
    assert_eq!(int(&dropped, "http.response.status_code"), Some(200));
    assert!(dropped
        .event("response body dropped before its end")
        .is_some());

    let unavailable = client_of("503");
    assert_eq!(string(&unavailable, "error.type").as_deref(), Some("503"));
    assert_eq!(unavailable.status, Status::error(""));

    let missing = client_of("404");
    assert_eq!(string(&missing, "error.type").as_deref(), Some("404"));
    assert_eq!(missing.status, Status::error(""));

    let refused = client_of("refused");
    assert!(matches!(refused.status, Status::Error { .. }));
    assert_eq!(
        string(&refused, "error.type").as_deref(),
        Some("reqwest::error::Error")
    );
    assert!(refused.attribute("http.response.status_code").is_none());
    let exception = refused.event("exception").expect("an exception event");
    let message = exception
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.message")
        .map(|kv| kv.value.as_str().into_owned())
        .unwrap();
    assert!(message.contains("error sending request"), "{message}");
    // With its causes, down to the operating system's.
    assert!(
        message.to_ascii_lowercase().contains("connection refused"),
        "with its causes: {message}"
    );
}

#[test]
fn header_policy_host_allow_list_filter_and_layer_settings() {
    let (recorded, ()) = recorded(|_| async {
        let addr = serve(app(Arc::default())).await;
        let url = format!("http://{addr}/echo");
        let page = tracing::info_span!("page");
        let page_trace = {
            use tracewire::record::SpanExt;
            page.span_context().unwrap().trace_id.to_string()
        };
        async {
            // Only allowed hosts receive context.
            let http = client(TracingMiddleware::new().propagate_to(["*.example.com"]));
            let sent = http.get(&url).send().await.unwrap().text().await.unwrap();
            assert_eq!(sent, "none");

            // A caller's own traceparent is kept, unless told otherwise.
            let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let http = client(TracingMiddleware::new());
            let sent = http
                .get(&url)
                .header("traceparent", own)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert_eq!(sent, own);
            let http = client(TracingMiddleware::new().overwrite_headers(true));
            let sent = http
                .get(&url)
                .header("traceparent", own)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(sent.contains(&page_trace), "{sent}");

            // Filtered out: no span, but the current context still goes out.
            let http = client(TracingMiddleware::new().filter(|head| head.uri.path() != "/echo"));
            let sent = http.get(&url).send().await.unwrap().text().await.unwrap();
            assert!(sent.contains(&page_trace), "{sent}");

            // A ClientLayer's settings carry over.
            let layer = ClientLayer::new().service_name("from-layer");
            let http = client(TracingMiddleware::from(layer));
            http.get(&url).send().await.unwrap().text().await.unwrap();
        }
        .instrument(page.clone())
        .await;
    });
    // page, 4 client spans (the filtered request has none), 5 server spans.
    recorded.spans.wait_for(10, WAIT).unwrap();
    let clients = recorded.spans.find_all("GET");
    assert_eq!(clients.len(), 4, "{clients:#?}");
    assert!(clients
        .iter()
        .any(|c| c.service_name.as_ref() == "from-layer"));
    let servers = recorded.spans.find_all("GET /echo");
    assert_eq!(servers.len(), 5);
    let page = recorded.spans.find("page").unwrap();
    let roots = servers
        .iter()
        .filter(|s| s.trace_id() != page.trace_id())
        .count();
    assert_eq!(
        roots, 2,
        "the disallowed host and the caller's own traceparent start elsewhere"
    );
}

#[test]
fn without_a_recorder_the_served_context_still_travels() {
    // No subscriber at all: the server layer makes no span, the middleware none either, but
    // the inbound traceparent reaches the downstream call.
    let rt = runtime();
    let downstream = rt.block_on(async {
        let downstream = serve(app(Arc::default())).await;
        let front = Router::new()
            .route(
                "/front",
                get(move || async move {
                    client(TracingMiddleware::new())
                        .get(format!("http://{downstream}/echo"))
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap()
                }),
            )
            .layer(ServerLayer::new());
        let front = serve(front).await;
        reqwest::Client::new()
            .get(format!("http://{front}/front"))
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        downstream.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{downstream}"
    );
}
