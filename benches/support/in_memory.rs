//! The in-memory request that `benches/overhead.rs` and `benches/export_cost/instructions.rs`
//! count: the same request in both, so their figures compare.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;

/// Drives a future that never waits on I/O (an in-memory request) to completion.
pub fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// One `GET /users/42` carrying `host`, a browser's `user-agent` and `traceparent`, its body
/// read to the end (which is what ends a server span). The service is cloned and called once,
/// as hyper-util's `TowerToHyperService` does for `axum::serve`.
pub fn request(app: &Router, traceparent: &str) {
    let request = http::Request::get("/users/42")
        .header("host", "api.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header("traceparent", traceparent)
        .body(Body::empty())
        .unwrap();
    run(async {
        let response = app.clone().oneshot(request).await.unwrap();
        assert!(response.status().is_success());
        black_box(response.into_body().collect().await.unwrap());
    });
}
