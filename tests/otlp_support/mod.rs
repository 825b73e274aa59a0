//! An OTLP trace receiver for tests: the official `TraceService` from `opentelemetry-proto`,
//! served by tonic on a loopback port, keeping every request it gets.
#![cfg(feature = "otel")]
// Each test binary uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue as ProtoKeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

#[derive(Default)]
struct Store {
    requests: Mutex<Vec<ExportTraceServiceRequest>>,
    arrived: Condvar,
}

struct Collect(Arc<Store>);

#[tonic::async_trait]
impl TraceService for Collect {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.requests.lock().unwrap().push(request.into_inner());
        self.0.arrived.notify_all();
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running receiver; stopped on drop.
pub struct Receiver {
    pub addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    /// Serves on `listener`, on the current runtime.
    pub fn start(listener: TcpListener) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let store = Arc::new(Store::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(Collect(store.clone()));
        let served = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            addr,
            store,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Serves OTLP over HTTP (`POST /v1/traces`, protobuf or JSON by `content-type`) on
    /// `listener`, on the current runtime.
    #[cfg(feature = "axum")]
    pub fn start_http(listener: TcpListener) -> Receiver {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        use prost::Message;

        let addr = listener.local_addr().unwrap();
        let store = Arc::new(Store::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let kept = store.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let store = kept.clone();
                async move {
                    let json = headers
                        .get("content-type")
                        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
                    let request = if json {
                        serde_json::from_slice::<ExportTraceServiceRequest>(&body).ok()
                    } else {
                        ExportTraceServiceRequest::decode(body).ok()
                    };
                    let Some(request) = request else {
                        return StatusCode::BAD_REQUEST;
                    };
                    store.requests.lock().unwrap().push(request);
                    store.arrived.notify_all();
                    StatusCode::OK
                }
            }),
        );
        let served = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            addr,
            store,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.store.requests.lock().unwrap().clone()
    }

    /// Every span so far, with its resource.
    pub fn spans(&self) -> Vec<(Resource, Span)> {
        self.requests()
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|rs| {
                let resource = rs.resource.unwrap_or_default();
                rs.scope_spans
                    .into_iter()
                    .flat_map(|ss| ss.spans)
                    .map(move |span| (resource.clone(), span))
            })
            .collect()
    }

    /// Waits until a span named `name` arrived; false after `timeout`.
    pub fn wait_for_span(&self, name: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut requests = self.store.requests.lock().unwrap();
        loop {
            let found = requests.iter().any(|r| {
                r.resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .flat_map(|ss| &ss.spans)
                    .any(|s| s.name == name)
            });
            if found {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            requests = self
                .store
                .arrived
                .wait_timeout(requests, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Stops serving and waits until the port is released.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = served.await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The string or integer value of attribute `key`.
pub fn attr<'a>(attributes: &'a [ProtoKeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// A collector that is stuck: it accepts connections and holds them without a word, until
/// closed.
pub struct BlackHole {
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    pub fn start(listener: TcpListener) -> BlackHole {
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        BlackHole { accepted, task }
    }

    /// Closes the listener and every held connection.
    pub async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
