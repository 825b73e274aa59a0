//! The `MetadataMap` helpers as interceptors, without the Tower layers: the client
//! interceptor sends the current context, the server interceptor reads it and the handler
//! opens its span under it.
#![cfg(feature = "grpc")]

mod grpc_support;
mod support;

use grpc_support::*;
use support::*;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tracewire::baggage::Baggage;
use tracewire::grpc::{ExtractContext, InjectContext};
use tracewire::record::SpanExt;
use tracewire::record::SpanStart;
use tracewire::span::SpanKind;
use tracing::Instrument;

/// Opens its own span per call from the interceptor's context; reports the span's baggage.
struct Traced;

#[tonic::async_trait]
impl Health for Traced {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let span = tracewire::grpc::span_start(&request)
            .name(CHECK)
            .create(|| tracing::info_span!("check"));
        async {
            let user = tracing::Span::current()
                .baggage()
                .and_then(|b| b.get("user").map(str::to_owned));
            Ok(Response::new(HealthCheckResponse {
                status: if user.as_deref() == Some("ana") { 1 } else { 2 },
            }))
        }
        .instrument(span)
        .await
    }

    type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("no watching"))
    }
}

#[test]
fn interceptors_carry_context_and_baggage() {
    let (recorded, status) = recorded(|_| async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(HealthServer::with_interceptor(
                    Traced,
                    ExtractContext::new(),
                ))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        let mut client = HealthClient::with_interceptor(channel(addr).await, InjectContext::new());
        let outer = SpanStart::new()
            .baggage(Baggage::new().with("user", "ana").unwrap())
            .create(|| tracing::info_span!("outer"));
        client
            .check(check_req("ok"))
            .instrument(outer)
            .await
            .unwrap()
            .into_inner()
            .status
    });
    assert_eq!(status, 1, "the baggage reached the handler's span");
    recorded.spans.wait_for(2, WAIT).unwrap();
    let outer = recorded.spans.find("outer").unwrap();
    let handler = recorded.spans.find(CHECK).unwrap();
    assert_eq!(handler.kind, SpanKind::Server);
    assert_eq!(handler.trace_id(), outer.trace_id());
    assert_eq!(handler.parent_span_id, outer.span_id());
    assert!(handler.parent_is_remote);
}

#[test]
fn without_the_server_interceptor_span_start_reads_the_metadata() {
    let (recorded, ()) = recorded(|_| async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(HealthServer::new(Traced))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        let mut client = HealthClient::with_interceptor(channel(addr).await, InjectContext::new());
        client
            .check(check_req("ok"))
            .instrument(tracing::info_span!("outer"))
            .await
            .unwrap();
    });
    recorded.spans.wait_for(2, WAIT).unwrap();
    let outer = recorded.spans.find("outer").unwrap();
    let handler = recorded.spans.find(CHECK).unwrap();
    assert_eq!(handler.parent_span_id, outer.span_id());
}
