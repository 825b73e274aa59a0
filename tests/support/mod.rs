//! Shared test plumbing: a recorder over an in-memory reporter, a current-thread runtime under
//! it (so servers and clients on loopback record into the same subscriber), and clients.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracewire::record::RecorderGuard;
use tracewire::record::{Recorder, RecorderBuilder};
use tracewire::report::InMemoryReporter;
use tracing_subscriber::layer::SubscriberExt;

pub const WAIT: Duration = Duration::from_secs(10);

/// Spans recorded by one test.
pub struct Recorded {
    pub spans: InMemoryReporter,
    pub guard: RecorderGuard,
}

/// Runs `test` on a current-thread runtime with a recorder installed for this thread only,
/// so every task of the test records into it; flushes before returning.
pub fn with_recorder<F, Fut>(builder: RecorderBuilder, test: F) -> (Recorded, Fut::Output)
where
    F: FnOnce(InMemoryReporter) -> Fut,
    Fut: Future,
{
    let spans = InMemoryReporter::new();
    let (layer, guard) = builder.reporter(spans.clone()).build();
    let subscriber = tracing_subscriber::registry().with(layer);
    let out =
        tracing::subscriber::with_default(subscriber, || runtime().block_on(test(spans.clone())));
    guard.flush().expect("flush");
    (Recorded { spans, guard }, out)
}

/// Like [`with_recorder`] with the default recorder.
pub fn recorded<F, Fut>(test: F) -> (Recorded, Fut::Output)
where
    F: FnOnce(InMemoryReporter) -> Fut,
    Fut: Future,
{
    with_recorder(Recorder::builder().service_name("test"), test)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Serves `app` on 127.0.0.1:0 with the peer address available to handlers.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

pub type HyperClient = Client<HttpConnector, Full<Bytes>>;

pub fn hyper_client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A GET request with no body.
pub fn get_req(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Reads a whole body into a string.
pub async fn text<B>(body: B) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = body.collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// GETs `url` through `layer` around a hyper client and reads the answer's body.
pub async fn get_through(layer: tracewire::ClientLayer, url: &str) -> String {
    use tower::{Service, ServiceBuilder, ServiceExt};
    let mut client = ServiceBuilder::new().layer(layer).service(hyper_client());
    let response = client
        .ready()
        .await
        .unwrap()
        .call(get_req(url))
        .await
        .unwrap();
    text(response.into_body()).await
}

/// GETs `url` with the given `traceparent` (no client layer) and reads the answer's body.
pub async fn get_with_traceparent(url: &str, traceparent: &str) -> String {
    let mut request = get_req(url);
    request
        .headers_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let response = hyper_client().request(request).await.unwrap();
    text(response.into_body()).await
}
