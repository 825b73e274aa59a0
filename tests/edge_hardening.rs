//! A public edge, tried as an attacker or a careless caller would: nothing a caller sends on an
//! untrusted edge goes downstream, secrets in URLs stay out of error text, and what a caller
//! sends cannot grow span names, attribute values or links without bound.

mod grpc_support;
mod support;

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use http::{HeaderName, HeaderValue};
use support::*;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::config::ALWAYS_REDACTED_HEADERS;
use tracewire::context::TraceId;
use tracewire::env::EnvConfig;
use tracewire::record::{Recorder, DEFAULT_VALUE_LENGTH_LIMIT};
use tracewire::sampler::AlwaysOff;
use tracewire::span::{SpanKind, Value};
use tracewire::{ClientLayer, ServerLayer};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const SECRET: &str = "deadbeefs3cr3t";

/// `front` serves `/health` and `/api` behind `front_layer`; each calls `back` through the
/// client layer, and `back` echoes the `traceparent` and `baggage` it received.
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
    let back = serve(back).await;
    let call_back = move || async move {
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(hyper_client());
        let response = client
            .ready()
            .await
            .unwrap()
            .call(get_req(&format!("http://{back}/echo")))
            .await
            .unwrap();
        text(response.into_body()).await
    };
    let front = Router::new()
        .route("/health", get(call_back))
        .route("/api", get(call_back))
        .layer(front_layer);
    serve(front).await
}

/// What `back` received when a caller claiming a trace and `role=admin` called `path`.
async fn downstream_of(front: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut request = get_req(&format!("http://{front}{path}"));
    request
        .headers_mut()
        .insert("traceparent", HeaderValue::from_static(CALLER));
    request
        .headers_mut()
        .insert("baggage", HeaderValue::from_static("role=admin"));
    let response = hyper_client().request(request).await.unwrap();
    let echoed = text(response.into_body()).await;
    let (traceparent, baggage) = echoed.split_once('|').unwrap();
    (traceparent.to_owned(), baggage.to_owned())
}

fn untrusted_filtered_edge() -> ServerLayer {
    ServerLayer::new()
        .filter(|head| head.uri.path() != "/health")
        .untrusted()
}

fn assert_nothing_forwarded(case: &str, (traceparent, baggage): &(String, String)) {
    assert!(
        !traceparent.contains(TRACE),
        "{case}: the caller's trace went downstream: {traceparent}"
    );
    assert_eq!(baggage, "", "{case}: the caller's baggage went downstream");
}

#[test]
fn an_untrusted_edge_forwards_nothing_the_caller_sent_whichever_way_the_request_goes() {
    // Filtered and traced requests, with a recorder.
    let (_, (health, api)) = recorded(|_| async {
        let front = front_and_back(untrusted_filtered_edge()).await;
        (
            downstream_of(front, "/health").await,
            downstream_of(front, "/api").await,
        )
    });
    assert_nothing_forwarded("filtered", &health);
    assert_nothing_forwarded("traced", &api);
    // A fresh trace does go on from the traced request.
    assert!(api.0.starts_with("00-"), "{api:?}");

    // Unsampled: the recorder samples nothing.
    let builder = Recorder::builder().sampler(AlwaysOff);
    let (_, (health, api)) = with_recorder(builder, |_| async {
        let front = front_and_back(untrusted_filtered_edge()).await;
        (
            downstream_of(front, "/health").await,
            downstream_of(front, "/api").await,
        )
    });
    assert_nothing_forwarded("filtered, unsampled", &health);
    assert_nothing_forwarded("unsampled", &api);

    // No recorder at all on this thread.
    let (health, api) = runtime().block_on(async {
        let front = front_and_back(untrusted_filtered_edge()).await;
        (
            downstream_of(front, "/health").await,
            downstream_of(front, "/api").await,
        )
    });
    assert_nothing_forwarded("filtered, no recorder", &health);
    assert_nothing_forwarded("no recorder", &api);

    // The same layer, trusted: the filtered request passes the caller's context on, as
    // designed for internal hops.
    let (_, trusted) = recorded(|_| async {
        let front = front_and_back(ServerLayer::new().filter(|h| h.uri.path() != "/health")).await;
        downstream_of(front, "/health").await
    });
    assert!(trusted.0.contains(TRACE), "{trusted:?}");
    assert_eq!(trusted.1, "role=admin");
}

#[cfg(feature = "grpc")]
mod grpc_interceptor {
    use super::*;
    use tonic::service::Interceptor;
    use tracewire::propagation::Extracted;
    use tracewire::record::SpanExt;

    #[test]
    fn an_untrusted_extract_context_starts_a_new_trace_linked_to_the_claim() {
        let mut request = tonic::Request::new(());
        request
            .metadata_mut()
            .insert("traceparent", CALLER.parse().unwrap());
        request
            .metadata_mut()
            .insert("baggage", "role=admin".parse().unwrap());
        let trusted = tracewire::grpc::ExtractContext::new()
            .call(clone_request(&request))
            .unwrap();
        let untrusted = tracewire::grpc::ExtractContext::new()
            .untrusted()
            .call(request)
            .unwrap();
        assert_eq!(
            untrusted.extensions().get::<Extracted>(),
            Some(&Extracted::default()),
            "nothing of the caller's is handed to the application"
        );

        let (recorded, ()) = recorded(|_| async move {
            let span = tracewire::grpc::span_start(&untrusted)
                .name("public")
                .create(|| tracing::info_span!("public"));
            assert!(span.baggage().unwrap().is_empty());
            drop(span);
            let span = tracewire::grpc::span_start(&trusted)
                .name("internal")
                .create(|| tracing::info_span!("internal"));
            assert_eq!(span.baggage().unwrap().get("role"), Some("admin"));
        });
        recorded.spans.wait_for(2, WAIT).unwrap();
        let claimed = TraceId::from_hex(TRACE).unwrap();
        let public = recorded.spans.find("public").unwrap();
        assert_ne!(public.trace_id(), claimed);
        assert!(public.is_root() && !public.parent_is_remote);
        assert_eq!(public.links.len(), 1);
        assert_eq!(public.links[0].span_context.trace_id, claimed);
        let internal = recorded.spans.find("internal").unwrap();
        assert_eq!(internal.trace_id(), claimed);
    }

    fn clone_request(request: &tonic::Request<()>) -> tonic::Request<()> {
        let mut copy = tonic::Request::new(());
        *copy.metadata_mut() = request.metadata().clone();
        copy
    }
}

#[test]
fn span_start_untrusted_parent_links_instead_of_continuing() {
    use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceState};
    use tracewire::record::SpanStart;
    let claimed = SpanContext::new(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from(7u64),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_members([("vendor", "x")]).unwrap(),
    );
    let (recorded, ()) = recorded(|_| async move {
        let _outer = tracing::info_span!("outer").entered();
        let span = SpanStart::new()
            .untrusted_parent(claimed.clone())
            .create(|| tracing::info_span!("edge"));
        drop(span);
    });
    recorded.spans.wait_for(2, WAIT).unwrap();
    let edge = recorded.spans.find("edge").unwrap();
    assert!(edge.is_root(), "a new root even inside another span");
    assert_ne!(edge.trace_id(), TraceId::from_hex(TRACE).unwrap());
    assert!(edge.span_context.trace_state.is_empty());
    assert_eq!(edge.links.len(), 1);
}

/// Binds a port and frees it, so that a connection to it is refused at once.
fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn signed_url(port: u16) -> String {
    format!(
        "http://127.0.0.1:{port}/upload?X-Amz-Credential=AKIA{SECRET}&X%2DAmz%2DSignature={SECRET}&part=1"
    )
}

/// Every text of the span's exception events and status.
fn error_texts(span: &tracewire::record::SpanRecord) -> String {
    let mut texts = format!("{:?}", span.status);
    for event in &span.events {
        for kv in &event.attributes {
            texts.push_str(&kv.value.as_str());
        }
    }
    texts
}

#[cfg(feature = "reqwest")]
#[test]
fn reqwest_error_text_is_redacted_like_url_full() {
    let port = refused_port();
    let (recorded, ()) = recorded(|_| async move {
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(tracewire::reqwest::TracingMiddleware::default())
            .build();
        let error = client.get(signed_url(port)).send().await.unwrap_err();
        assert!(
            format!("{error:?}").contains(SECRET),
            "reqwest's own error quotes the URL"
        );
    });
    let spans = recorded.spans.wait_for(1, WAIT).unwrap();
    let texts = error_texts(&spans[0]);
    assert!(texts.contains("X-Amz-Credential=REDACTED"), "{texts}");
    assert!(texts.contains("X%2DAmz%2DSignature=REDACTED"), "{texts}");
    assert!(!format!("{spans:?}").contains(SECRET), "{spans:#?}");
}

/// `ClientLayer` over any Tower HTTP client whose errors quote the URL: here reqwest's
/// `Client`, driven through `http` types.
#[cfg(feature = "reqwest")]
#[test]
fn client_layer_error_text_is_redacted_like_url_full() {
    let port = refused_port();
    let (recorded, ()) = recorded(|_| async move {
        let reqwest = reqwest::Client::new();
        let inner = tower::service_fn(move |request: http::Request<String>| {
            let reqwest = reqwest.clone();
            async move {
                let request = reqwest::Request::try_from(request)?;
                reqwest
                    .execute(request)
                    .await
                    .map(http::Response::<reqwest::Body>::from)
            }
        });
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(inner);
        let request = http::Request::get(signed_url(port))
            .body(String::new())
            .unwrap();
        let error = client
            .ready()
            .await
            .unwrap()
            .call(request)
            .await
            .unwrap_err();
        assert!(error.to_string().contains(SECRET));
    });
    let spans = recorded.spans.wait_for(1, WAIT).unwrap();
    let texts = error_texts(&spans[0]);
    assert!(texts.contains("X-Amz-Credential=REDACTED"), "{texts}");
    assert!(!format!("{spans:?}").contains(SECRET), "{spans:#?}");
}

#[test]
fn sigv4_and_convention_query_keys_are_redacted_on_both_sides_after_decoding() {
    let (recorded, ()) = recorded(|_| async {
        let app = Router::new()
            .route("/upload", get(|| async { "ok" }))
            .layer(ServerLayer::new().record_query(true));
        let addr = serve(app).await;
        let mut client = ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(hyper_client());
        let query = format!(
            "X-Amz-Signature={SECRET}&X%2DAmz%2DCredential={SECRET}&x-amz-security-token={SECRET}\
             &AWSAccessKeyId={SECRET}&Signature={SECRET}&sig={SECRET}&X-Goog-Signature={SECRET}&part=1"
        );
        let response = client
            .ready()
            .await
            .unwrap()
            .call(get_req(&format!("http://{addr}/upload?{query}")))
            .await
            .unwrap();
        text(response.into_body()).await;
    });
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    assert!(!format!("{spans:?}").contains(SECRET), "{spans:#?}");
    let expected = "X-Amz-Signature=REDACTED&X%2DAmz%2DCredential=REDACTED\
                    &x-amz-security-token=REDACTED&AWSAccessKeyId=REDACTED&Signature=REDACTED\
                    &sig=REDACTED&X-Goog-Signature=REDACTED&part=1";
    let server = spans.iter().find(|s| s.kind == SpanKind::Server).unwrap();
    assert_eq!(
        server
            .attribute("url.query")
            .map(|v| v.as_str().into_owned()),
        Some(expected.to_owned())
    );
    let client = spans.iter().find(|s| s.kind == SpanKind::Client).unwrap();
    let full = client.attribute("url.full").unwrap().as_str().into_owned();
    assert!(full.ends_with(&format!("/upload?{expected}")), "{full}");
}

#[test]
fn every_usual_credential_header_is_redacted_and_cannot_be_unredacted() {
    let names: Vec<HeaderName> = ALWAYS_REDACTED_HEADERS.to_vec();
    assert_eq!(names.len(), 10);
    let (recorded, ()) = recorded(|_| {
        let names = names.clone();
        async move {
            // Capturing a header and adding other redactions never lifts a redaction.
            let server = ServerLayer::new()
                .capture_request_headers(names.clone())
                .redact_headers([HeaderName::from_static("x-other")]);
            let app = Router::new()
                .route("/", get(|| async { "ok" }))
                .layer(server);
            let addr = serve(app).await;
            let mut client = ServiceBuilder::new()
                .layer(ClientLayer::new().capture_request_headers(names.clone()))
                .service(hyper_client());
            let mut request = get_req(&format!("http://{addr}/"));
            for name in &names {
                request
                    .headers_mut()
                    .insert(name.clone(), HeaderValue::from_static(SECRET));
            }
            let response = client.ready().await.unwrap().call(request).await.unwrap();
            text(response.into_body()).await;
        }
    });
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    assert!(!format!("{spans:?}").contains(SECRET), "{spans:#?}");
    for span in &spans {
        for name in &names {
            let key = format!("http.request.header.{name}");
            match span.attribute(&key) {
                Some(Value::Array(values)) => assert_eq!(values.to_string(), "[\"REDACTED\"]"),
                other => panic!("{key} on {:?}: {other:?}", span.kind),
            }
        }
    }
}

#[test]
fn grpc_content_type_on_made_up_paths_cannot_create_span_names() {
    let (recorded, ()) = recorded(|_| async {
        let app = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .layer(ServerLayer::new());
        let addr = serve(app).await;
        let client = hyper_client();
        for n in 0..50 {
            let request = http::Request::post(format!("http://{addr}/anything-{n}/Abc"))
                .header("content-type", "application/grpc")
                .body(Default::default())
                .unwrap();
            let response = client.request(request).await.unwrap();
            text(response.into_body()).await;
        }
    });
    let spans = recorded.spans.wait_for(50, WAIT).unwrap();
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert!(names.len() <= 2, "{names:?}");
    for span in &spans {
        assert!(!span.name.contains("anything"), "{:?}", span.name);
        assert_eq!(
            span.attribute("rpc.method")
                .map(|v| v.as_str().into_owned()),
            Some("_OTHER".to_owned())
        );
        assert!(span.attribute("rpc.service").is_none(), "{span:#?}");
        let original = span.attribute("rpc.method_original").unwrap().as_str();
        assert!(original.starts_with("anything-"), "{original}");
    }
}

#[test]
fn a_served_grpc_method_keeps_its_name_and_an_unknown_one_is_other() {
    use grpc_support::*;
    let (recorded, ()) = recorded(|_| async {
        let addr = serve_grpc(ServerLayer::grpc(), TestHealth::default()).await;
        let mut health = client(addr, ClientLayer::new()).await;
        health.check(check_req("ok")).await.unwrap();
        // A made-up method of a served service: tonic answers UNIMPLEMENTED.
        let status = raw_unary(
            channel(addr).await,
            uri(addr),
            "/grpc.health.v1.Health/Nope7",
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    });
    let spans = recorded.spans.wait_for(3, WAIT).unwrap();
    let servers: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server)
        .collect();
    let check = servers.iter().find(|s| s.name == CHECK).expect("Check");
    assert_eq!(string(check, "rpc.method").as_deref(), Some("Check"));
    assert_eq!(
        string(check, "rpc.service").as_deref(),
        Some("grpc.health.v1.Health")
    );
    let other = servers.iter().find(|s| s.name == "grpc").expect("_OTHER");
    assert_eq!(string(other, "rpc.method").as_deref(), Some("_OTHER"));
    assert_eq!(
        string(other, "rpc.method_original").as_deref(),
        Some("grpc.health.v1.Health/Nope7")
    );
    assert_eq!(int(other, "rpc.grpc.status_code"), Some(12));
}

#[test]
fn request_values_are_capped_at_8_kib_on_a_character_boundary() {
    // 64 KiB of a two-byte character, so that 8 KiB falls inside none.
    let agent = "é".repeat(32 * 1024) + "x";
    let path = format!("/items/{}", "p".repeat(20_000));
    let (recorded, ()) = recorded(|_| {
        let agent = agent.clone();
        let path = path.clone();
        async move {
            let app = Router::new().fallback(|| async { "ok" }).layer(
                ServerLayer::new().capture_request_headers([HeaderName::from_static("x-big")]),
            );
            let addr = serve(app).await;
            let mut request = get_req(&format!("http://{addr}{path}"));
            let headers = request.headers_mut();
            headers.insert("user-agent", HeaderValue::from_str(&agent).unwrap());
            headers.insert("x-big", HeaderValue::from_str(&agent).unwrap());
            let response = hyper_client().request(request).await.unwrap();
            assert_eq!(response.status(), 200);
        }
    });
    let spans = recorded.spans.wait_for(1, WAIT).unwrap();
    let server = &spans[0];
    let recorded_agent = server.attribute("user_agent.original").unwrap().as_str();
    assert_eq!(recorded_agent.len(), DEFAULT_VALUE_LENGTH_LIMIT);
    assert!(agent.starts_with(recorded_agent.as_ref()));
    let recorded_path = server.attribute("url.path").unwrap().as_str();
    assert_eq!(recorded_path.len(), DEFAULT_VALUE_LENGTH_LIMIT);
    match server.attribute("http.request.header.x-big") {
        Some(Value::Array(opentelemetry::Array::String(values))) => {
            assert!(values[0].as_str().len() <= DEFAULT_VALUE_LENGTH_LIMIT)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn span_limits_come_from_the_environment() {
    let env = EnvConfig::from_lookup(|name| match name {
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT" => Some("999"),
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT" => Some("5"),
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT" => Some("2"),
        "OTEL_SPAN_EVENT_COUNT_LIMIT" => Some("1"),
        "OTEL_SPAN_LINK_COUNT_LIMIT" => Some("1"),
        _ => None,
    });
    assert!(env.warnings.is_empty(), "{:?}", env.warnings);
    let builder = Recorder::builder().with_env_config(&env);
    let (recorded, ()) = with_recorder(builder, |_| async {
        let first = tracing::info_span!("first");
        let second = tracing::info_span!("second");
        let span = tracing::info_span!("limited", a = "abcdefgh", b = 1, c = 2);
        span.follows_from(&first);
        span.follows_from(&second);
        span.in_scope(|| {
            tracing::info!("one");
            tracing::info!("two");
        });
    });
    recorded.spans.wait_for(3, WAIT).unwrap();
    let span = recorded.spans.find("limited").unwrap();
    assert_eq!(span.attributes.len(), 2);
    assert_eq!(span.dropped_attributes_count, 1);
    assert_eq!(
        span.attribute("a").map(|v| v.as_str().into_owned()),
        Some("abcde".to_owned())
    );
    assert_eq!((span.events.len(), span.dropped_events_count), (1, 1));
    assert_eq!((span.links.len(), span.dropped_links_count), (1, 1));

    let invalid =
        EnvConfig::from_lookup(|name| (name == "OTEL_SPAN_LINK_COUNT_LIMIT").then_some("-1"));
    assert_eq!(invalid.limits.link_count, None);
    assert_eq!(invalid.warnings.len(), 1, "{:?}", invalid.warnings);
    assert!(invalid.warnings[0]
        .to_string()
        .contains("OTEL_SPAN_LINK_COUNT_LIMIT"));
}

#[test]
fn a_method_is_learned_once_answered_so_later_cancelled_calls_keep_its_name() {
    use grpc_support::*;
    use std::time::Duration;
    let (recorded, ()) = recorded(|spans| async move {
        let addr = serve_grpc(ServerLayer::grpc(), TestHealth::default()).await;
        let mut health = client(addr, ClientLayer::new()).await;
        let servers = || {
            spans
                .spans()
                .into_iter()
                .filter(|s| s.kind == SpanKind::Server)
                .count()
        };
        // Given up before the service ever answered Check: the caller's word only.
        let call = health.check(check_req("hang"));
        assert!(tokio::time::timeout(Duration::from_millis(20), call)
            .await
            .is_err());
        assert!(until(|| servers() == 1).await);
        // Answered: Check is learned, and the next call given up keeps its name.
        health.check(check_req("ok")).await.unwrap();
        let call = health.check(check_req("hang"));
        assert!(tokio::time::timeout(Duration::from_millis(20), call)
            .await
            .is_err());
        assert!(until(|| servers() == 3).await);
    });
    let spans = recorded.spans.spans();
    let names: Vec<&str> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server)
        .map(|s| s.name.as_ref())
        .collect();
    assert_eq!(names, ["grpc", CHECK, CHECK], "{spans:#?}");
}
