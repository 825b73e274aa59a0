//! gRPC test plumbing: a health service whose answers the request chooses, a tonic server
//! and a traced tonic client over loopback, a raw codec for calls outside the health
//! service, and span helpers. Use beside `mod support;` (the recorder and runtime).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use futures_util::stream::{self, Stream};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::ServiceBuilder;
use tracewire::client::ClientTrace;
use tracewire::metrics::{Metering, Unmetered};
use tracewire::record::SpanRecord;
use tracewire::span::{SpanKind, Value};
use tracewire::{ClientLayer, ServerLayer};

pub const CHECK: &str = "grpc.health.v1.Health/Check";
pub const WATCH: &str = "grpc.health.v1.Health/Watch";

/// The codes a server classes as errors, and the rest but OK.
pub const SERVER_ERROR_CODES: [Code; 6] = [
    Code::Unknown,
    Code::DeadlineExceeded,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
];
pub const OTHER_CODES: [Code; 10] = [
    Code::Cancelled,
    Code::InvalidArgument,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unauthenticated,
];

/// The canonical name of a code, as in `error.type`.
pub fn code_name(code: Code) -> &'static str {
    tracewire::classify::grpc_code_name(code as i32).unwrap()
}

fn code_by_name(name: &str) -> Option<Code> {
    (1..=16).map(Code::from_i32).find(|c| code_name(*c) == name)
}

/// A health service that does what the request's `service` field says:
///
/// - `Check`: `""` or `ok` answers SERVING; `slow` answers after 100 ms, `hang` after a
///   minute; `metadata` answers with response metadata `x-served-by` and `x-secret`; a code
///   name (`UNAVAILABLE`) fails with that code and the message `{NAME} on purpose`;
/// - `Watch`: `stream-ok` sends 3 messages 30 ms apart and ends OK; `stream-error:{NAME}`
///   sends 2 messages 30 ms apart and ends with that code in the trailers; `endless` sends a
///   message every 10 ms for a minute; `stream-error-metadata` sends one message and ends
///   ABORTED with trailing metadata `x-retry-after` and `x-secret`; a code name fails
///   before any message.
///
/// It keeps the metadata of every request it receives.
#[derive(Clone, Default)]
pub struct TestHealth {
    pub seen: Arc<Mutex<Vec<MetadataMap>>>,
}

impl TestHealth {
    pub fn seen(&self) -> Vec<MetadataMap> {
        self.seen.lock().unwrap().clone()
    }
}

fn serving() -> HealthCheckResponse {
    HealthCheckResponse {
        status: ServingStatus::Serving as i32,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

/// `count` messages `every` apart, then `end` (OK when `None`).
fn messages(count: u32, every: Duration, end: Option<Status>) -> WatchStream {
    Box::pin(stream::unfold((0u32, end), move |(sent, end)| async move {
        if sent == count {
            return end.map(|status| (Err(status), (sent, None)));
        }
        tokio::time::sleep(every).await;
        Some((Ok(serving()), (sent + 1, end)))
    }))
}

#[tonic::async_trait]
impl Health for TestHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.seen.lock().unwrap().push(request.metadata().clone());
        let service = request.into_inner().service;
        match service.as_str() {
            "" | "ok" => Ok(Response::new(serving())),
            "slow" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(Response::new(serving()))
            }
            "hang" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(Response::new(serving()))
            }
            "metadata" => {
                let mut response = Response::new(serving());
                let metadata = response.metadata_mut();
                metadata.insert("x-served-by", "health-1".parse().unwrap());
                metadata.insert("x-secret", "s3cret".parse().unwrap());
                Ok(response)
            }
            name => {
                // `logged-CODE`: CODE, after the handler logged an error on its way to it.
                let name = match name.strip_prefix("logged-") {
                    Some(code) => {
                        tracing::error!(error = "logged on the way", "the handler failed");
                        code
                    }
                    None => name,
                };
                match code_by_name(name) {
                    Some(code) => Err(Status::new(code, format!("{name} on purpose"))),
                    None => Err(Status::invalid_argument("no such behaviour")),
                }
            }
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.seen.lock().unwrap().push(request.metadata().clone());
        let service = request.into_inner().service;
        let every = Duration::from_millis(30);
        let stream = match service.as_str() {
            "stream-ok" => messages(3, every, None),
            "endless" => messages(6000, Duration::from_millis(10), None),
            "stream-error-metadata" => {
                let mut metadata = MetadataMap::new();
                metadata.insert("x-retry-after", "5".parse().unwrap());
                metadata.insert("x-secret", "trailer-s3cret".parse().unwrap());
                let status = Status::with_metadata(Code::Aborted, "try again", metadata);
                messages(1, every, Some(status))
            }
            other => {
                if let Some(name) = other.strip_prefix("stream-error:") {
                    let code = code_by_name(name).expect("a code name");
                    messages(
                        2,
                        every,
                        Some(Status::new(code, format!("{name} mid-stream"))),
                    )
                } else if let Some(code) = code_by_name(other) {
                    return Err(Status::new(code, format!("{other} on purpose")));
                } else {
                    return Err(Status::invalid_argument("no such behaviour"));
                }
            }
        };
        Ok(Response::new(stream))
    }
}

/// Serves `health` with tonic's server, behind `layer`, on 127.0.0.1:0.
pub async fn serve_grpc<M: Metering>(layer: ServerLayer<M>, health: TestHealth) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(HealthServer::new(health))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    addr
}

pub fn uri(addr: SocketAddr) -> http::Uri {
    format!("http://{addr}").parse().unwrap()
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from(uri(addr)).connect().await.unwrap()
}

pub type TracedChannel<M = Unmetered> = ClientTrace<Channel, M>;

/// A health client over a `Channel` wrapped in `layer`; with the origin set, so that the
/// layer sees the server's address.
pub async fn client<M: Metering>(
    addr: SocketAddr,
    layer: ClientLayer<M>,
) -> HealthClient<TracedChannel<M>> {
    let channel = ServiceBuilder::new()
        .layer(layer)
        .service(channel(addr).await);
    HealthClient::with_origin(channel, uri(addr))
}

pub fn check_req(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

/// Passes message bytes through untouched: calls to any path without generated code.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Calls `path` with an empty message through `service`, returning the status.
pub async fn raw_unary<T>(
    service: T,
    origin: http::Uri,
    path: &'static str,
) -> Result<Bytes, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    raw_call(service, origin, path, Request::new(Bytes::new())).await
}

/// Calls `path` with `request` through `service`, returning the status.
pub async fn raw_call<T>(
    service: T,
    origin: http::Uri,
    path: &'static str,
    request: Request<Bytes>,
) -> Result<Bytes, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::with_origin(service, origin);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.into().to_string()))?;
    grpc.unary(
        request,
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(Response::into_inner)
}

/// Waits (turning the runtime) until `done` holds, for up to ten seconds.
pub async fn until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

pub fn int(span: &SpanRecord, key: &str) -> Option<i64> {
    match span.attribute(key) {
        Some(Value::I64(v)) => Some(*v),
        _ => None,
    }
}

pub fn string(span: &SpanRecord, key: &str) -> Option<String> {
    span.attribute(key).map(|v| v.as_str().into_owned())
}

/// The client and the server span of one call, from the spans named after it.
pub fn split_call(calls: &[SpanRecord]) -> (SpanRecord, SpanRecord) {
    let of_kind = |kind: SpanKind| {
        calls
            .iter()
            .find(|s| s.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} span in {calls:#?}"))
            .clone()
    };
    (of_kind(SpanKind::Client), of_kind(SpanKind::Server))
}
