//! A gRPC server whose layer is built for each connection, as hyper servers often build their
//! services: the method names the layers learn are kept once for the process, not once more
//! for every connection.
//!
//! Its own test binary because it measures the heap with a counting global allocator.

mod heap;
mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{service_fn, ServiceBuilder};
use tracewire::record::{Recorder, SpanRecord};
use tracewire::report::Reporter;
use tracewire::ServerLayer;
use tracing_subscriber::layer::SubscriberExt;

use heap::{Counting, LIVE};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A method name near the longest learned, so that every copy kept shows.
fn method() -> String {
    format!("pkg.v1.{}/{}", "S".repeat(120), "M".repeat(100))
}

/// Counts spans and keeps none.
#[derive(Clone, Default)]
struct Count(Arc<AtomicUsize>);

impl Reporter for Count {
    fn report(&mut self, batch: &[SpanRecord]) {
        self.0.fetch_add(batch.len(), Ordering::Relaxed);
    }
}

/// Answers every call OK, Trailers-Only: the layer learns the method.
async fn answer(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", "0")
        .body(Full::new(Bytes::new()))
        .unwrap())
}

/// Serves each connection with a layer of its own; says when a connection is over.
async fn serve_per_connection() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done, closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = ServiceBuilder::new()
                .layer(ServerLayer::grpc())
                .service(service_fn(answer));
            let service = hyper_util::service::TowerToHyperService::new(service);
            let done = done.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                let _ = done.send(());
            });
        }
    });
    (addr, closed)
}

#[test]
fn layers_built_per_connection_keep_each_learned_method_once() {
    let spans = Count::default();
    let (layer, guard) = Recorder::builder()
        .service_name("per-connection")
        .reporter(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry().with(layer);
    let method = method();
    let growth = tracing::subscriber::with_default(subscriber, || {
        support::runtime().block_on(async {
            let (addr, mut closed) = serve_per_connection().await;
            let client = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http::<Full<Bytes>>();
            let mut live_after = Vec::new();
            // The first thousand calls fill what the runtime, the client and the recorder
            // keep for reuse; the heap then stays put over the next two hundred.
            for round in [1000, 200] {
                for _ in 0..round {
                    let request = Request::post(format!("http://{addr}/{method}"))
                        .header("content-type", "application/grpc")
                        .header("connection", "close")
                        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
                        .unwrap();
                    let response = client.request(request).await.unwrap();
                    assert_eq!(response.headers()["grpc-status"], "0");
                    support::text(response.into_body()).await;
                    // The server's side of the connection, its layer with it, is gone.
                    closed.recv().await.unwrap();
                }
                guard.flush().unwrap();
                live_after.push(LIVE.load(Ordering::Relaxed));
            }
            live_after[1].saturating_sub(live_after[0])
        })
    });
    guard.flush().unwrap();
    assert_eq!(
        spans.0.load(Ordering::Relaxed),
        1200,
        "every call was recorded"
    );
    // One copy of the name per connection would be 200 × 227 bytes.
    assert!(
        growth < 200 * method.len() / 4,
        "the heap grew by {growth} bytes over 200 connections"
    );
}
