//! A reqwest client traced by tracewire through reqwest-middleware, behind a retry
//! middleware: each attempt gets its own client span (the retries carry
//! `http.request.resend_count`) and its own context in the `traceparent` header, so the
//! server's span sits under the attempt that reached it.
//!
//! The example serves a small, flaky inventory service on a loopback port itself (it fails
//! the first call with 503), calls it, and prints the recorded trace as a tree:
//!
//! ```sh
//! cargo run --example reqwest_client --features reqwest
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use reqwest_middleware::ClientWithMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;
use tracewire::record::{Recorder, SpanExt};
use tracewire::report::InMemoryReporter;
use tracewire::reqwest::TracingMiddleware;
use tracewire::ServerLayer;
use tracing::Instrument;

/// Answers 503 to the first call, then the stock of `sku`.
async fn stock(
    State(calls): State<Arc<AtomicUsize>>,
    Path(sku): Path<String>,
) -> Result<String, StatusCode> {
    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
        tracing::warn!("warming up");
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    Ok(format!("{sku}: 12 in stock\n"))
}

#[tracing::instrument(skip(http))]
async fn check_stock(http: &ClientWithMiddleware, base: &str, sku: &str) -> String {
    match http.get(format!("{base}/items/{sku}")).send().await {
        Ok(response) => response.text().await.unwrap_or_else(|e| e.to_string()),
        Err(error) => format!("failed: {error}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let spans = InMemoryReporter::new();
    let guard = Recorder::builder()
        .service_name("checkout")
        .reporter(spans.clone())
        .install()?;

    let inventory = Router::new()
        .route("/items/{sku}", get(stock))
        .with_state(Arc::new(AtomicUsize::new(0)))
        .layer(ServerLayer::new().service_name("inventory"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, inventory).await });

    // The retry middleware first, the tracing middleware inside it: one span per attempt.
    let retries = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(20), Duration::from_millis(200))
        .build_with_max_retries(3);
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RetryTransientMiddleware::new_with_policy(retries))
        .with(TracingMiddleware::new())
        .build();

    let request = tracing::info_span!("POST /checkout");
    let trace_id = request.span_context().map(|cx| cx.trace_id);
    let answer = check_stock(&http, &base, "A-1").instrument(request).await;
    print!("{answer}");

    guard.flush()?;
    if let Some(trace_id) = trace_id {
        println!("\ntrace {trace_id}");
        print!("{}", spans.render_tree(trace_id));
    }
    Ok(())
}
