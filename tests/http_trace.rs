//! An axum server and a hyper-util client, both traced, over loopback: one trace, with the
//! right parents, kinds, attributes and status.

#![cfg(feature = "axum")]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use support::*;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tracewire::record::SpanRecord;
use tracewire::span::{SpanKind, Status, Value};
use tracewire::{ClientLayer, ServerLayer};
use tracing::Instrument;

#[tracing::instrument]
async fn load_user(id: u32) -> String {
    tracing::info!(cache = "miss", "loading user");
    format!("user {id}")
}

fn users_app() -> Router {
    Router::new()
        .route("/users/{id}", get(|Path(id): Path<u32>| load_user(id)))
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .layer(ServerLayer::new().service_name("users"))
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
fn client_server_and_handler_spans_form_one_trace() {
    let (recorded, addr) = recorded(|_| async {
        let addr = serve(users_app()).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new().service_name("frontend"))
            .service(hyper_client());
        let mut request = get_req(&format!("http://{addr}/users/7?q=1"));
        request.headers_mut().insert(
            http::header::USER_AGENT,
            "tracewire-test/1".parse().unwrap(),
        );
        let response = async {
            let response = client.ready().await.unwrap().call(request).await.unwrap();
            assert_eq!(response.status(), 200);
            text(response.into_body()).await
        }
        .instrument(tracing::info_span!("page"))
        .await;
        assert_eq!(response, "user 7");
        addr
    });
    let spans = recorded.spans.wait_for(4, WAIT).unwrap();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let page = recorded.spans.find("page").unwrap();
    let client = recorded.spans.find("GET").unwrap();
    let server = recorded.spans.find("GET /users/{id}").unwrap();
    let handler = recorded.spans.find("load_user").unwrap();

    // One trace, parent by parent.
    for span in [&client, &server, &handler] {
        assert_eq!(span.trace_id(), page.trace_id());
    }
    assert_eq!(client.parent_span_id, page.span_id());
    assert!(!client.parent_is_remote);
    assert_eq!(server.parent_span_id, client.span_id());
    assert!(server.parent_is_remote);
    assert_eq!(handler.parent_span_id, server.span_id());
    assert!(!handler.parent_is_remote);

    assert_eq!(client.kind, SpanKind::Client);
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(handler.kind, SpanKind::Internal);
    assert_eq!(client.service_name.as_ref(), "frontend");
    assert_eq!(server.service_name.as_ref(), "users");
    assert_eq!(
        handler.service_name.as_ref(),
        "users",
        "handler spans inherit the server's service"
    );
    assert_eq!(page.service_name.as_ref(), "test");

    // The server span covers the handler, the client span covers the server.
    assert!(server.start_time <= handler.start_time && handler.end_time <= server.end_time);
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
    assert_eq!(client.status, Status::Unset);

    assert_eq!(
        string(&server, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        string(&server, "http.route").as_deref(),
        Some("/users/{id}")
    );
    assert_eq!(string(&server, "url.path").as_deref(), Some("/users/7"));
    assert_eq!(string(&server, "url.scheme").as_deref(), Some("http"));
    assert!(
        server.attribute("url.query").is_none(),
        "queries are opt-in"
    );
    assert_eq!(int(&server, "http.response.status_code"), Some(200));
    assert_eq!(
        string(&server, "network.protocol.version").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        string(&server, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(int(&server, "server.port"), Some(i64::from(addr.port())));
    assert_eq!(
        string(&server, "client.address").as_deref(),
        Some("127.0.0.1")
    );
    // Opt-In for HTTP server spans (semantic conventions): not recorded by default.
    assert_eq!(int(&server, "client.port"), None);
    assert!(int(&server, "network.peer.port").is_some_and(|p| p > 0));
    assert_eq!(
        string(&server, "user_agent.original").as_deref(),
        Some("tracewire-test/1")
    );
    assert!(server.attribute("error.type").is_none());
    assert_eq!(server.status, Status::Unset);

    assert_eq!(handler.attribute("id"), Some(&Value::I64(7)));
    assert_eq!(handler.events[0].name, "loading user");

    assert_eq!(
        recorded.spans.render_tree(page.trace_id()),
        "test internal page\n    frontend client GET\n        users server GET /users/{id}\n            users internal load_user\n              • loading user\n"
    );
}

#[derive(Debug)]
struct Unavailable;
impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("database unavailable")
    }
}
impl std::error::Error for Unavailable {}

#[derive(Debug)]
struct HandlerFailed(Unavailable);
impl std::fmt::Display for HandlerFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("handler failed")
    }
}
impl std::error::Error for HandlerFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

async fn fail(
    _req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, BoxError> {
    Err(Box::new(HandlerFailed(Unavailable)))
}

/// A hyper server whose service fails: `Err` from the inner service.
async fn serve_failing() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ServiceBuilder::new()
        .layer(ServerLayer::new().service_name("failing"))
        .service(service_fn(fail));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let service = hyper_util::service::TowerToHyperService::new(service);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    addr
}

#[test]
fn status_rules_for_200_404_500_and_an_inner_error_on_server_and_client() {
    let (recorded, ()) = recorded(|_| async {
        let addr = serve(users_app()).await;
        let failing = serve_failing().await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new().service_name("caller"))
            .service(hyper_client());
        for (path, status) in [("/ok", 200), ("/missing", 404), ("/boom", 500)] {
            async {
                let response = client
                    .ready()
                    .await
                    .unwrap()
                    .call(get_req(&format!("http://{addr}{path}")))
                    .await
                    .unwrap();
                assert_eq!(response.status(), status);
                text(response.into_body()).await;
            }
            .instrument(tracing::info_span!("call", path))
            .await;
        }
        async {
            let result = client
                .ready()
                .await
                .unwrap()
                .call(get_req(&format!("http://{failing}/any")))
                .await;
            assert!(result.is_err(), "the server closes the connection");
        }
        .instrument(tracing::info_span!("call", path = "/any"))
        .await;
    });
    // 4 call spans, 4 client spans, 3 axum server spans, 1 failing server span.
    recorded.spans.wait_for(12, WAIT).unwrap();
    let calls = recorded.spans.find_all("call");
    let by_path = |path: &str| {
        let call = calls
            .iter()
            .find(|c| {
                c.attribute("path")
                    .map(|p| p.as_str().into_owned())
                    .as_deref()
                    == Some(path)
            })
            .unwrap_or_else(|| panic!("call {path}"));
        let client = recorded.spans.children(call).remove(0);
        let server = recorded.spans.children(&client).into_iter().next();
        (client, server)
    };

    let (client, server) = by_path("/ok");
    let server = server.unwrap();
    assert_eq!(client.status, Status::Unset);
    assert_eq!(server.status, Status::Unset);

    let (client, server) = by_path("/missing");
    let server = server.unwrap();
    assert_eq!(server.name, "GET", "no route matched: the method alone");
    assert_eq!(int(&server, "http.response.status_code"), Some(404));
    assert_eq!(
        server.status,
        Status::Unset,
        "4xx is the client's fault, not the server's"
    );
    assert!(server.attribute("error.type").is_none());
    assert_eq!(client.status, Status::error(""));
    assert_eq!(string(&client, "error.type").as_deref(), Some("404"));

    let (client, server) = by_path("/boom");
    let server = server.unwrap();
    assert_eq!(server.status, Status::error(""));
    assert_eq!(string(&server, "error.type").as_deref(), Some("500"));
    assert_eq!(client.status, Status::error(""));
    assert_eq!(string(&client, "error.type").as_deref(), Some("500"));

    // The inner service's Err: Error with an exception carrying type, message and causes.
    let failing = recorded
        .spans
        .spans()
        .into_iter()
        .find(|s| s.service_name.as_ref() == "failing")
        .unwrap();
    assert_eq!(failing.kind, SpanKind::Server);
    assert_eq!(
        failing.status,
        Status::error("handler failed: database unavailable")
    );
    let exception = failing.event("exception").unwrap();
    let attr = |k: &str| {
        exception
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(
        attr("exception.message").as_deref(),
        Some("handler failed: database unavailable")
    );
    // A boxed error of a type the layers cannot name: the conventions' `_OTHER`, and no
    // `exception.type` (the box's own type name would say nothing).
    assert_eq!(attr("exception.type"), None);
    assert_eq!(string(&failing, "error.type").as_deref(), Some("_OTHER"));
    // And the client saw a transport error.
    let (client, _) = by_path("/any");
    assert!(matches!(client.status, Status::Error { .. }), "{client:?}");
    let exception = client.event("exception").expect("transport error recorded");
    assert!(exception
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "exception.type" && kv.value.as_str().contains("hyper_util")));
    assert!(client.attribute("http.response.status_code").is_none());
}

#[test]
fn traceresponse_names_the_server_span() {
    let (recorded, header) = recorded(|_| async {
        let app = Router::new()
            .route("/", get(|| async { "hi" }))
            .layer(ServerLayer::new().traceresponse(true));
        let addr = serve(app).await;
        let response = hyper_client()
            .request(get_req(&format!("http://{addr}/")))
            .await
            .unwrap();
        let header = response.headers().get("traceresponse").cloned();
        text(response.into_body()).await;
        header
    });
    let server = recorded.spans.wait_for(1, WAIT).unwrap().remove(0);
    let header = header.expect("traceresponse header");
    let cx = tracewire::propagation::parse_traceresponse(header.as_bytes()).unwrap();
    assert_eq!(cx.trace_id, server.trace_id());
    assert_eq!(cx.span_id, server.span_id());
    assert!(cx.is_sampled());
}

#[test]
fn layers_work_on_plain_tower_services_without_axum() {
    let (recorded, ()) = recorded(|_| async {
        let mut service = ServiceBuilder::new()
            .layer(ServerLayer::new())
            .service(service_fn(|_req: http::Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"x"))))
            }));
        let request = http::Request::post("/plain")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(text(response.into_body()).await, "x");
    });
    let span = recorded.spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(span.name, "POST");
    assert_eq!(string(&span, "url.path").as_deref(), Some("/plain"));
    assert_eq!(int(&span, "http.response.status_code"), Some(200));
}

#[test]
fn a_services_synchronous_call_runs_inside_the_request() {
    let seen: std::sync::Arc<std::sync::Mutex<Vec<_>>> = std::sync::Arc::default();
    let (recorded, ()) = recorded(|_| {
        let seen = std::sync::Arc::clone(&seen);
        async move {
            // Work in the inner service's synchronous `call`: a span, and a look at the
            // context it runs in.
            let inner = service_fn(move |_req: http::Request<Full<Bytes>>| {
                drop(tracing::info_span!("in_call"));
                seen.lock()
                    .unwrap()
                    .push(tracewire::record::current_context());
                async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"x"))))
                }
            });
            let mut service = ServiceBuilder::new()
                .layer(ServerLayer::new())
                .service(inner);
            for flags in ["01", "00"] {
                let mut request = http::Request::get("/call")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                request.headers_mut().insert(
                    "traceparent",
                    format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}")
                        .parse()
                        .unwrap(),
                );
                let response = service.ready().await.unwrap().call(request).await.unwrap();
                assert_eq!(text(response.into_body()).await, "x");
            }
        }
    });
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    let server = spans.iter().find(|s| s.name == "GET").expect("server span");
    let in_call = spans
        .iter()
        .find(|s| s.name == "in_call")
        .expect("call's span");
    assert_eq!(in_call.parent_span_id, server.span_id());
    assert_eq!(in_call.trace_id(), server.trace_id());

    let seen = seen.lock().unwrap();
    // Sampled: `call` ran inside the server span.
    let sampled = seen[0].as_ref().expect("a context in the sampled call");
    assert_eq!(sampled.span_id, server.span_id());
    // Unsampled: no span, but the caller's context, not sampled, is in effect.
    let unsampled = seen[1].as_ref().expect("a context in the unsampled call");
    assert_eq!(unsampled.trace_id, server.trace_id());
    assert!(!unsampled.is_sampled());
    recorded.guard.flush().unwrap();
    assert_eq!(
        recorded.spans.len(),
        2,
        "the unsampled request recorded nothing"
    );
}

/// A response that carries no content (to HEAD; 204, 304) has its body dropped unread by
/// the server: that is its end, not a cancellation, on the server and the client alike.
#[test]
fn responses_without_content_end_without_error() {
    let app = Router::new()
        .route("/ok", get(|| async { "hello" }))
        .route(
            "/none",
            get(|| async { (StatusCode::NO_CONTENT, "a body the server never sends") }),
        )
        .route(
            "/same",
            get(|| async { (StatusCode::NOT_MODIFIED, "a body the server never sends") }),
        )
        .layer(ServerLayer::new().service_name("quiet"));
    let (recorded, ()) = recorded(|_| async {
        let addr = serve(app).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new().service_name("caller"))
            .service(hyper_client());
        for (method, path, status) in [
            (http::Method::HEAD, "/ok", 200),
            (http::Method::GET, "/none", 204),
            (http::Method::GET, "/same", 304),
        ] {
            let request = http::Request::builder()
                .method(method)
                .uri(format!("http://{addr}{path}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = client.ready().await.unwrap().call(request).await.unwrap();
            assert_eq!(response.status(), status);
            assert_eq!(text(response.into_body()).await, "");
        }
    });
    let spans = recorded.spans.wait_for(6, WAIT).unwrap();
    assert_eq!(spans.len(), 6);
    for span in &spans {
        assert_eq!(
            span.status,
            Status::Unset,
            "{}: {:?}",
            span.name,
            span.status
        );
        assert!(span.attribute("error.type").is_none(), "{}", span.name);
    }
    let head = recorded
        .spans
        .find("HEAD /ok")
        .expect("the HEAD request's server span");
    assert_eq!(int(&head, "http.response.status_code"), Some(200));
}

/// A 4xx is the caller's error: the server span's status stays unset even where the handler
/// logged an error about the request (the event is kept); a 5xx after one is still ERROR.
#[test]
fn a_logged_error_does_not_fail_a_server_span_that_answered_4xx() {
    async fn reject() -> (StatusCode, &'static str) {
        tracing::error!(error = "field `age` must be a number", "rejected input");
        (StatusCode::BAD_REQUEST, "bad input")
    }
    async fn broken() -> (StatusCode, &'static str) {
        tracing::error!("the store is down");
        (StatusCode::SERVICE_UNAVAILABLE, "later")
    }
    let app = Router::new()
        .route("/reject", get(reject))
        .route("/broken", get(broken))
        .layer(ServerLayer::new().service_name("strict"));
    let (recorded, ()) = recorded(|_| async {
        let addr = serve(app).await;
        for path in ["/reject", "/broken"] {
            let response = hyper_client()
                .request(get_req(&format!("http://{addr}{path}")))
                .await
                .unwrap();
            text(response.into_body()).await;
        }
    });
    recorded.spans.wait_for(2, WAIT).unwrap();
    let rejected = recorded.spans.find("GET /reject").unwrap();
    assert_eq!(rejected.status, Status::Unset);
    assert!(rejected.attribute("error.type").is_none());
    assert!(
        rejected.events.iter().any(|e| e.name == "exception"),
        "the logged error stays an event: {:?}",
        rejected.events
    );
    // A 5xx fails the span, and the error the handler logged describes it: the description
    // never just repeats the status code.
    let broken = recorded.spans.find("GET /broken").unwrap();
    assert_eq!(broken.status, Status::error("the store is down"));
}

/// A router nested under a prefix sees its requests without it (axum strips it from the
/// URI); its layer still records the path the client sent, which the route names in full.
#[test]
fn a_layer_inside_a_nested_router_records_the_whole_path() {
    let users = Router::new()
        .route("/users/{id}", get(|Path(id): Path<u32>| load_user(id)))
        .layer(ServerLayer::new().service_name("users"));
    let app = Router::new().nest("/api", users);
    let (recorded, body) = recorded(|_| async {
        let addr = serve(app).await;
        let response = hyper_client()
            .request(get_req(&format!("http://{addr}/api/users/7")))
            .await
            .unwrap();
        text(response.into_body()).await
    });
    assert_eq!(body, "user 7");
    recorded.spans.wait_for(2, WAIT).unwrap();
    let server = recorded.spans.find("GET /api/users/{id}").unwrap();
    assert_eq!(
        string(&server, "http.route").as_deref(),
        Some("/api/users/{id}")
    );
    assert_eq!(string(&server, "url.path").as_deref(), Some("/api/users/7"));
}
