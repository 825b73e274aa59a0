//! Bad and sensitive input: malformed, duplicated and oversized trace headers never fail a
//! request and start a new trace; redacted headers never reach an attribute; an untrusted
//! edge starts a new root linked to what the caller claimed; filtered requests and processes
//! without a recorder still propagate.

mod support;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use http::{HeaderName, HeaderValue};
use support::*;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::context::{SpanId, TraceId};
use tracewire::record::{current_baggage, current_context};
use tracewire::span::{SpanKind, Value};
use tracewire::{ClientLayer, ServerLayer};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn valid_traceparent() -> String {
    format!("00-{TRACE}-{PARENT}-01")
}

/// Echoes what the handler sees: its context and baggage.
async fn whoami() -> String {
    let cx = current_context();
    let baggage = current_baggage();
    format!(
        "{} {}",
        cx.map_or("none".into(), |c| c.trace_id.to_string()),
        baggage.get("user").unwrap_or("-")
    )
}

fn app(layer: ServerLayer) -> Router {
    Router::new().route("/", get(whoami)).layer(layer)
}

async fn send(addr: std::net::SocketAddr, headers: &[(&str, String)]) -> (u16, String) {
    send_to(addr, "/", headers).await
}

async fn send_to(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, String)],
) -> (u16, String) {
    let mut request = get_req(&format!("http://{addr}{path}"));
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let response = hyper_client().request(request).await.unwrap();
    let status = response.status().as_u16();
    (status, text(response.into_body()).await)
}

#[test]
fn malformed_duplicated_and_oversized_headers_start_a_new_trace_and_never_fail() {
    let big_tracestate = (0..40)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let huge_baggage = (0..300)
        .map(|i| format!("key{i}=value{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "upper-case hex",
            vec![(
                "traceparent",
                format!("00-{}-{PARENT}-01", TRACE.to_uppercase()),
            )],
        ),
        (
            "short",
            vec![("traceparent", format!("00-{TRACE}-{PARENT}-1"))],
        ),
        (
            "all-zero trace id",
            vec![("traceparent", format!("00-{}-{PARENT}-01", "0".repeat(32)))],
        ),
        (
            "version ff",
            vec![("traceparent", format!("ff-{TRACE}-{PARENT}-01"))],
        ),
        ("garbage", vec![("traceparent", "not a traceparent".into())]),
        (
            "duplicated",
            vec![
                ("traceparent", valid_traceparent()),
                ("traceparent", valid_traceparent()),
            ],
        ),
        (
            "oversized tracestate alone",
            vec![("tracestate", big_tracestate.clone())],
        ),
    ];
    let (recorded, ()) = recorded(|_| async move {
        let addr = serve(app(ServerLayer::new())).await;
        for (case, headers) in &cases {
            let (status, body) = send(addr, headers).await;
            assert_eq!(status, 200, "{case}");
            assert!(!body.starts_with(TRACE), "{case}: a new trace, got {body}");
        }
        // A valid traceparent with a 40-member tracestate and 300 baggage members: the
        // trace continues, the tracestate (over 32 members) is dropped whole, the baggage
        // is cut to the limit of 180 members.
        let (status, body) = send(
            addr,
            &[
                ("traceparent", valid_traceparent()),
                ("tracestate", big_tracestate),
                ("baggage", format!("user=ana,{huge_baggage}")),
            ],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body, format!("{TRACE} ana"));
    });
    let spans = recorded.spans.wait_for(8, WAIT).unwrap();
    let (continued, fresh): (Vec<_>, Vec<_>) = spans
        .iter()
        .partition(|s| s.trace_id() == TraceId::from_hex(TRACE).unwrap());
    assert_eq!(fresh.len(), 7);
    for span in fresh {
        assert!(span.is_root(), "{span:?}");
        assert!(!span.parent_is_remote);
        assert!(span.span_context.trace_state.is_empty());
    }
    let continued = continued[0];
    assert_eq!(continued.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert!(
        continued.span_context.trace_state.is_empty(),
        "over 32 members: dropped"
    );
}

#[test]
fn redacted_headers_never_appear_in_any_attribute() {
    let secrets = [
        "Bearer s3cr3t-token",
        "session=c00kie",
        "proxy-s3cret",
        "k3y-123",
        "pw0rd",
    ];
    let (recorded, ()) = recorded(|_| async move {
        let layer = ServerLayer::new()
            .capture_request_headers(
                [
                    "authorization",
                    "cookie",
                    "proxy-authorization",
                    "x-api-key",
                    "x-request-id",
                ]
                .map(HeaderName::from_static),
            )
            .capture_response_headers([
                http::header::SET_COOKIE,
                HeaderName::from_static("x-served-by"),
            ])
            .redact_headers([HeaderName::from_static("x-api-key")])
            .record_query(true)
            .redact_query_params(["password"]);
        let app = Router::new()
            .route(
                "/",
                get(|| async {
                    let mut headers = HeaderMap::new();
                    headers.insert(http::header::SET_COOKIE, "id=pw0rd".parse().unwrap());
                    headers.insert("x-served-by", "node-1".parse().unwrap());
                    (headers, "ok")
                }),
            )
            .layer(layer);
        let addr = serve(app).await;
        let mut client = ServiceBuilder::new()
            .layer(
                ClientLayer::new()
                    .capture_request_headers([http::header::AUTHORIZATION])
                    .capture_response_headers([http::header::SET_COOKIE])
                    .redact_query_params(["password"]),
            )
            .service(hyper_client());
        let mut request = get_req(&format!("http://user:pw0rd@{addr}/?password=pw0rd&page=2"));
        let headers = request.headers_mut();
        headers.insert("authorization", secrets[0].parse().unwrap());
        headers.insert("cookie", secrets[1].parse().unwrap());
        headers.insert("proxy-authorization", secrets[2].parse().unwrap());
        headers.insert("x-api-key", secrets[3].parse().unwrap());
        headers.insert("x-request-id", "req-42".parse().unwrap());
        let response = client.ready().await.unwrap().call(request).await.unwrap();
        text(response.into_body()).await;
    });
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    let everything = format!("{spans:?}");
    for secret in secrets {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    let array = |key: &str| match server.attribute(key) {
        Some(Value::Array(a)) => a.to_string(),
        other => panic!("{key}: {other:?}"),
    };
    assert_eq!(array("http.request.header.x-request-id"), "[\"req-42\"]");
    assert_eq!(array("http.request.header.authorization"), "[\"REDACTED\"]");
    assert_eq!(array("http.request.header.x-api-key"), "[\"REDACTED\"]");
    assert_eq!(array("http.response.header.set-cookie"), "[\"REDACTED\"]");
    assert_eq!(array("http.response.header.x-served-by"), "[\"node-1\"]");
    assert_eq!(
        server.attribute("url.query"),
        Some(&Value::from("password=REDACTED&page=2"))
    );
    let client = spans.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    let full = client.attribute("url.full").unwrap().as_str().into_owned();
    assert!(
        full.starts_with("http://REDACTED:REDACTED@127.0.0.1:"),
        "{full}"
    );
    assert!(full.ends_with("/?password=REDACTED&page=2"), "{full}");
}

#[test]
fn an_untrusted_edge_starts_a_new_root_linked_to_the_claimed_context() {
    let (recorded, bodies) = recorded(|_| async {
        let layer = ServerLayer::new().untrusted_if(|head| head.headers.contains_key("x-public"));
        let addr = serve(app(layer)).await;
        let claimed = vec![
            ("traceparent", valid_traceparent()),
            ("baggage", "user=mallory".to_owned()),
        ];
        let mut public = claimed.clone();
        public.push(("x-public", "1".into()));
        (send(addr, &public).await, send(addr, &claimed).await)
    });
    let ((status, public_body), (_, internal_body)) = bodies;
    assert_eq!(status, 200);
    assert!(!public_body.starts_with(TRACE));
    assert!(
        public_body.ends_with(" -"),
        "inbound baggage dropped: {public_body}"
    );
    assert_eq!(
        internal_body,
        format!("{TRACE} mallory"),
        "trusted requests continue"
    );

    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    let edge = spans
        .iter()
        .find(|s| s.trace_id() != TraceId::from_hex(TRACE).unwrap())
        .unwrap();
    assert!(edge.is_root());
    assert!(!edge.parent_is_remote);
    assert_eq!(edge.links.len(), 1);
    assert_eq!(
        edge.links[0].span_context.trace_id,
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(
        edge.links[0].span_context.span_id,
        SpanId::from_hex(PARENT).unwrap()
    );
}

/// Two services: `front` calls `back` with the client layer; `back` echoes the
/// `traceparent` and `baggage` it received.
async fn front_and_back(front_layer: ServerLayer) -> std::net::SocketAddr {
    let back = Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move {
            let get = |n: &str| {
                headers
                    .get(n)
                    .map_or("", |v| v.to_str().unwrap())
                    .to_owned()
            };
            format!("{}|{}", get("traceparent"), get("baggage"))
        }),
    );
    let back = serve(back.layer(ServerLayer::new().service_name("back"))).await;
    let front = Router::new()
        .route(
            "/health",
            get(move || async move {
                let mut client = ServiceBuilder::new()
                    .layer(ClientLayer::new().service_name("front"))
                    .service(hyper_client());
                let response = client
                    .ready()
                    .await
                    .unwrap()
                    .call(get_req(&format!("http://{back}/echo")))
                    .await
                    .unwrap();
                text(response.into_body()).await
            }),
        )
        .layer(front_layer);
    serve(front).await
}

#[test]
fn a_filtered_request_gets_no_span_but_its_context_still_propagates() {
    let (recorded, echoed) = recorded(|_| async {
        let front = front_and_back(
            ServerLayer::new()
                .service_name("front")
                .filter(|head| head.uri.path() != "/health"),
        )
        .await;
        send_to(
            front,
            "/health",
            &[
                ("traceparent", valid_traceparent()),
                ("baggage", "user=ana".into()),
            ],
        )
        .await
        .1
    });
    let (traceparent, baggage) = echoed.split_once('|').unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{TRACE}-")),
        "{traceparent}"
    );
    assert_eq!(baggage, "user=ana");
    // front's client span and back's server span; no server span for /health.
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let client = spans.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    assert_eq!(client.trace_id(), TraceId::from_hex(TRACE).unwrap());
    assert_eq!(client.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert!(client.parent_is_remote);
    assert!(traceparent.contains(&client.span_id().to_string()));
}

#[test]
fn a_server_span_the_recorder_filters_out_passes_on_the_callers_context() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    // The recorder sees every span but the server layer's: the handler's calls hang under
    // the caller's span, not under a span that will never be reported.
    let spans = tracewire::report::InMemoryReporter::new();
    let (recorder, guard) = tracewire::record::Recorder::builder()
        .service_name("test")
        .reporter(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(recorder.with_filter(
        tracing_subscriber::filter::filter_fn(|m| m.target() != "tracewire::server"),
    ));
    let echoed = tracing::subscriber::with_default(subscriber, || {
        runtime().block_on(async {
            let front =
                front_and_back(ServerLayer::new().service_name("front").traceresponse(true)).await;
            send_to(front, "/health", &[("traceparent", valid_traceparent())]).await
        })
    });
    guard.flush().unwrap();
    assert_eq!(echoed.0, 200);
    let (traceparent, _) = echoed.1.split_once('|').unwrap();
    let client = spans
        .spans()
        .into_iter()
        .find(|s| s.kind == SpanKind::Client)
        .expect("front's client span");
    assert!(
        spans.spans().iter().all(|s| s.kind != SpanKind::Server),
        "both server spans are filtered out"
    );
    assert_eq!(client.trace_id(), TraceId::from_hex(TRACE).unwrap());
    assert_eq!(
        client.parent_span_id,
        SpanId::from_hex(PARENT).unwrap(),
        "the caller's span, not the filtered server span's id"
    );
    assert_eq!(traceparent, format!("00-{TRACE}-{}-01", client.span_id()));
}

#[test]
fn without_a_recorder_the_layers_still_propagate_and_never_panic() {
    // No subscriber at all on this thread.
    let echoed = runtime().block_on(async {
        let front = front_and_back(ServerLayer::new().traceresponse(true)).await;
        let ok = send_to(
            front,
            "/health",
            &[
                ("traceparent", valid_traceparent()),
                ("baggage", "user=ana".into()),
            ],
        )
        .await;
        // Garbage in, still fine.
        let bad = send_to(front, "/health", &[("traceparent", "garbage".into())]).await;
        assert_eq!(bad.0, 200);
        ok
    });
    assert_eq!(echoed.0, 200);
    let (traceparent, baggage) = echoed.1.split_once('|').unwrap();
    assert_eq!(traceparent, valid_traceparent(), "passed on as received");
    assert_eq!(baggage, "user=ana");
}

/// gRPC calls are POSTs: a GET to an HTTP route that claims a gRPC `content-type` is still
/// that route's request, with its route and status, not a failed gRPC call.
#[test]
fn a_get_with_a_grpc_content_type_stays_an_http_request() {
    let (recorded, ()) = recorded(|_| async {
        let addr = serve(app(ServerLayer::new())).await;
        let request = http::Request::get(format!("http://{addr}/"))
            .header("content-type", "application/grpc")
            .body(Default::default())
            .unwrap();
        let response = hyper_client().request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        text(response.into_body()).await;
    });
    let span = recorded.spans.wait_for(1, WAIT).unwrap().remove(0);
    assert_eq!(span.name, "GET /");
    assert_eq!(span.status, tracewire::span::Status::Unset);
    assert_eq!(
        span.attribute("http.route")
            .map(|v| v.as_str().into_owned()),
        Some("/".into())
    );
    assert_eq!(
        span.attribute("http.response.status_code"),
        Some(&Value::I64(200))
    );
    assert!(span.attribute("rpc.system").is_none(), "{span:#?}");
}
