//! An axum server traced by tracewire, printing each request's trace to the terminal.
//!
//! ```sh
//! cargo run --example axum_server
//! # in another terminal:
//! curl -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' \
//!      http://127.0.0.1:3000/users/42
//! ```

use std::net::SocketAddr;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use tracewire::ServerLayer;

#[tracing::instrument]
async fn load_user(id: u64) -> String {
    tracing::info!("cache miss");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    format!("user {id}\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Recorder + console trees + fmt logs filtered by RUST_LOG.
    let _guard = tracewire::dev::init("users");

    let app = Router::new()
        .route("/users/{id}", get(|Path(id): Path<u64>| load_user(id)))
        .route("/health", get(|| async { "ok\n" }))
        .layer(
            ServerLayer::new()
                .filter(|head| head.uri.path() != "/health")
                .capture_request_headers([http::HeaderName::from_static("x-request-id")])
                .traceresponse(true),
        );

    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
