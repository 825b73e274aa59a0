//! One server layer in front of a mixed router: axum routes and a tonic service on one
//! port. HTTP requests get HTTP spans, gRPC calls (told apart by `content-type`) RPC spans.

#![cfg(feature = "axum")]

mod grpc_support;
mod support;

use axum::routing::get;
use grpc_support::*;
use support::*;
use tonic::service::Routes;
use tonic::Code;
use tonic_health::pb::health_server::HealthServer;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::span::{SpanKind, Status};
use tracewire::{ClientLayer, ServerLayer};

fn mixed_app() -> axum::Router {
    Routes::new(HealthServer::new(TestHealth::default()))
        .into_axum_router()
        .route("/hello", get(|| async { "hello" }))
        .layer(ServerLayer::new().service_name("mixed"))
}

#[test]
fn http_and_grpc_on_one_port_get_their_own_spans() {
    let (recorded, addr) = recorded(|_| async {
        let addr = serve(mixed_app()).await;

        let mut http = ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(hyper_client());
        let response = http
            .ready()
            .await
            .unwrap()
            .call(get_req(&format!("http://{addr}/hello")))
            .await
            .unwrap();
        assert_eq!(text(response.into_body()).await, "hello");

        // The plain layer (not `grpc()`) on the client too: detection by content-type.
        let mut grpc = client(addr, ClientLayer::new()).await;
        grpc.check(check_req("ok")).await.unwrap();
        let status = grpc.check(check_req("INTERNAL")).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal);

        // An unknown gRPC service: tonic's fallback answers UNIMPLEMENTED.
        let channel = ServiceBuilder::new()
            .layer(ClientLayer::new())
            .service(channel(addr).await);
        let status = raw_unary(channel, uri(addr), "/pkg.Missing/Call")
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
        addr
    });
    recorded.spans.wait_for(8, WAIT).unwrap();

    let http_server = recorded.spans.find("GET /hello").unwrap();
    assert_eq!(http_server.kind, SpanKind::Server);
    assert_eq!(http_server.service_name.as_ref(), "mixed");
    assert_eq!(
        string(&http_server, "http.route").as_deref(),
        Some("/hello")
    );
    assert_eq!(int(&http_server, "http.response.status_code"), Some(200));
    assert!(http_server.attribute("rpc.system").is_none());
    let http_client = recorded.spans.find("GET").unwrap();
    assert_eq!(http_server.parent_span_id, http_client.span_id());

    let checks = recorded.spans.find_all(CHECK);
    assert_eq!(checks.len(), 4, "{checks:#?}");
    let servers: Vec<_> = checks
        .iter()
        .filter(|s| s.kind == SpanKind::Server)
        .collect();
    let clients: Vec<_> = checks
        .iter()
        .filter(|s| s.kind == SpanKind::Client)
        .collect();
    assert_eq!((servers.len(), clients.len()), (2, 2));
    for server in &servers {
        assert_eq!(server.service_name.as_ref(), "mixed");
        assert_eq!(string(server, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(string(server, "rpc.method").as_deref(), Some("Check"));
        assert!(
            server.attribute("http.route").is_none() && server.attribute("url.path").is_none(),
            "{server:#?}"
        );
        // axum's ConnectInfo gives the peer.
        assert_eq!(
            string(server, "network.peer.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(int(server, "server.port"), Some(i64::from(addr.port())));
        let client = clients
            .iter()
            .find(|c| c.span_id() == server.parent_span_id)
            .expect("each server span's parent is a client span");
        assert_eq!(
            int(server, "rpc.grpc.status_code"),
            int(client, "rpc.grpc.status_code")
        );
    }
    let failed: Vec<_> = checks
        .iter()
        .filter(|s| int(s, "rpc.grpc.status_code") == Some(13))
        .collect();
    assert_eq!(failed.len(), 2);
    for span in failed {
        assert_eq!(span.status, Status::error("INTERNAL on purpose"));
    }

    // The client named the method it called; the server does not serve it, so its span
    // does not take the caller's name (`rpc.method = _OTHER`).
    let client = recorded.spans.find("pkg.Missing/Call").unwrap();
    assert_eq!(client.kind, SpanKind::Client);
    let server = recorded.spans.find("grpc").unwrap();
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(string(&server, "rpc.method").as_deref(), Some("_OTHER"));
    assert_eq!(
        string(&server, "rpc.method_original").as_deref(),
        Some("pkg.Missing/Call")
    );
    for span in [&client, &server] {
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(12));
        assert_eq!(span.status, Status::error(""), "the code says it");
    }
}
