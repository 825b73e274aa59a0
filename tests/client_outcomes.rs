//! What a client span says about how a call ended: a failed call keeps the causes beneath
//! its error, and a program that reads only the status is not in error.
#![cfg(feature = "hyper-util")]

mod support;

use axum::routing::get;
use axum::Router;
use support::*;
use tower::{Service, ServiceExt};
use tracewire::client::{ClientLayer, HyperClient};
use tracewire::span::{SpanKind, Status, Value};

fn exception_message(span: &tracewire::record::SpanRecord) -> String {
    let exception = span.event("exception").expect("an exception event");
    exception
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "exception.message")
        .map(|kv| kv.value.as_str().into_owned())
        .unwrap()
}

#[test]
fn a_hyper_util_failure_keeps_the_cause_beneath_it() {
    let (recorded, ()) = recorded(|_| async {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let mut client: HyperClient = ClientLayer::new().hyper_client();
        let request = get_req(&format!("http://127.0.0.1:{port}/"));
        let error = client
            .ready()
            .await
            .unwrap()
            .call(request)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "client error (Connect)");
    });
    let spans = recorded.spans.wait_for(1, WAIT).unwrap();
    let message = exception_message(&spans[0]);
    assert!(
        message.starts_with("client error (Connect): ") && message.contains("refused"),
        "{message}"
    );
    match &spans[0].status {
        Status::Error { description } => assert_eq!(description.as_ref(), message),
        other => panic!("{other:?}"),
    }
}

/// A tonic `Channel` that cannot connect: the client layer records tonic's transport error
/// with the causes beneath it, down to the refused connection.
#[cfg(feature = "grpc")]
#[test]
fn a_failed_tonic_connection_keeps_its_cause() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let (recorded, ()) = recorded(|_| async {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_lazy();
        let channel = tower::ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(channel);
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    });
    let spans = recorded.spans.wait_for(1, WAIT).unwrap();
    assert_eq!(spans[0].kind, SpanKind::Client);
    let message = exception_message(&spans[0]);
    assert!(
        message.starts_with("transport error: ")
            && message.to_ascii_lowercase().contains("connection refused"),
        "{message}"
    );
    match &spans[0].status {
        Status::Error { description } => assert_eq!(description.as_ref(), message),
        other => panic!("{other:?}"),
    }
}

#[test]
fn reading_only_the_status_is_not_an_error() {
    let (recorded, ()) = recorded(|_| async {
        let big = "x".repeat(256 * 1024);
        let app = Router::new()
            .route("/big", get(move || async move { big }))
            .route(
                "/missing",
                get(|| async { (http::StatusCode::NOT_FOUND, "x".repeat(65536)) }),
            )
            .layer(tracewire::ServerLayer::new());
        let addr = serve(app).await;
        let mut client: HyperClient = ClientLayer::new().hyper_client();
        for path in ["/big", "/missing"] {
            let request = get_req(&format!("http://{addr}{path}"));
            let response = client.ready().await.unwrap().call(request).await.unwrap();
            // The program looks at the status and drops the response unread.
            let _ = response.status();
        }
    });
    // Two client spans, two server spans.
    let spans = recorded.spans.wait_for(4, WAIT).unwrap();
    let client = |code: i64| {
        spans
            .iter()
            .find(|s| {
                s.kind == SpanKind::Client
                    && s.attribute("http.response.status_code") == Some(&Value::I64(code))
            })
            .unwrap_or_else(|| panic!("no client span with {code}: {spans:#?}"))
    };
    let ok = client(200);
    assert_eq!(ok.status, Status::Unset, "{ok:#?}");
    assert!(ok.attribute("error.type").is_none());
    assert!(ok.event("response body dropped before its end").is_some());
    // An error response stays the error its status makes it, not a cancellation.
    let missing = client(404);
    assert_eq!(missing.status, Status::error(""));
    assert_eq!(missing.attribute("error.type"), Some(&Value::from("404")));
}

/// A caller that sets its own `traceparent` sends its own trace: the client layer leaves it
/// alone, and does not pair it with the `tracestate` of the trace being served (another
/// trace's vendor state), as W3C Trace Context keeps the two headers together.
#[test]
fn a_traceparent_the_caller_set_is_not_paired_with_another_traces_tracestate() {
    const CALLER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    recorded(|_| async {
        let back = serve(Router::new().route(
            "/echo",
            get(|headers: http::HeaderMap| async move {
                let get = |name: &str| {
                    headers
                        .get_all(name)
                        .iter()
                        .map(|v| v.to_str().unwrap().to_owned())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                format!("{}|{}", get("traceparent"), get("tracestate"))
            }),
        ))
        .await;
        let front = serve(
            Router::new()
                .route(
                    "/front",
                    get(move |own: String| async move {
                        let mut client: HyperClient = ClientLayer::new().hyper_client();
                        let mut request = get_req(&format!("http://{back}/echo"));
                        if !own.is_empty() {
                            request
                                .headers_mut()
                                .insert("traceparent", own.parse().unwrap());
                        }
                        let response = client.ready().await.unwrap().call(request).await.unwrap();
                        text(response.into_body()).await
                    }),
                )
                .layer(tracewire::ServerLayer::new()),
        )
        .await;
        let call = |own: &'static str| async move {
            let request = http::Request::get(format!("http://{front}/front"))
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .header("tracestate", "congo=t61rcWkgMzE")
                .body(http_body_util::Full::new(bytes::Bytes::from(own)))
                .unwrap();
            let response = hyper_client().request(request).await.unwrap();
            text(response.into_body()).await
        };
        // The layer's own context travels whole.
        let sent = call("").await;
        let (traceparent, tracestate) = sent.split_once('|').unwrap();
        assert!(
            traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert_eq!(tracestate, "congo=t61rcWkgMzE", "{sent}");
        // The caller's alone.
        assert_eq!(call(CALLER).await, format!("{CALLER}|"));
    });
}
