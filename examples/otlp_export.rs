//! Production-style export: three services in one process (checkout calls inventory over
//! reqwest and payment over a hyper-util client, all on loopback ports, all traced by
//! tracewire) send their spans to an OpenTelemetry Collector (or Jaeger, Tempo…) over OTLP,
//! then exit; the guard of `tracewire::otlp::init` exports what is left.
//!
//! ```sh
//! # a Collector, Jaeger all-in-one or Tempo listening for OTLP/HTTP on 4318, then:
//! cargo run --example otlp_export --features otlp,reqwest
//! OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317 \
//!     cargo run --example otlp_export --features otlp,reqwest
//! ```
//!
//! Every `OTEL_*` variable of `tracewire::otlp` applies (`OTEL_PROPAGATORS=b3multi` changes
//! what every layer below reads and writes). Without a receiver the requests still run; the
//! export failures are counted, printed and logged.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::reqwest::TracingMiddleware;
use tracewire::{ClientLayer, ServerLayer};
use tracing::Instrument;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn serve(app: Router) -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tracing::instrument]
async fn reserve(sku: String) -> Result<String, StatusCode> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if sku == "sold-out" {
        tracing::warn!(%sku, "nothing left");
        return Err(StatusCode::CONFLICT);
    }
    Ok(format!("reserved {sku}"))
}

#[tracing::instrument]
async fn charge(amount: u64) -> StatusCode {
    tokio::time::sleep(Duration::from_millis(10)).await;
    if amount > 500 {
        tracing::error!(error = "card declined", amount, "charge failed");
        return StatusCode::BAD_GATEWAY;
    }
    StatusCode::OK
}

/// Checkout's handler: reserve the item, then charge for it.
async fn checkout(
    inventory: reqwest_middleware::ClientWithMiddleware,
    payment: SocketAddr,
    inventory_addr: SocketAddr,
    sku: String,
    amount: u64,
) -> (StatusCode, String) {
    let reserved = inventory
        .post(format!("http://{inventory_addr}/reserve/{sku}"))
        .send()
        .await;
    match reserved {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            return (
                StatusCode::CONFLICT,
                format!("inventory: {}", response.status()),
            )
        }
        Err(error) => return (StatusCode::BAD_GATEWAY, format!("inventory: {error}")),
    }

    let hyper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut payments = ServiceBuilder::new()
        .layer(ClientLayer::new())
        .service(hyper);
    let request = match http::Request::post(format!("http://{payment}/charge/{amount}"))
        .body(Full::new(Bytes::new()))
    {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("payment: {error}")),
    };
    let charged = match payments.ready().await {
        Ok(client) => client.call(request).await,
        Err(error) => Err(error),
    };
    match charged {
        Ok(response) if response.status().is_success() => {
            let _ = response.into_body().collect().await;
            (StatusCode::OK, format!("{sku}: paid {amount}\n"))
        }
        Ok(response) => (
            StatusCode::BAD_GATEWAY,
            format!("payment: {}", response.status()),
        ),
        Err(error) => (StatusCode::BAD_GATEWAY, format!("payment: {error}")),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Recorder, OTLP exporter, log layer and default propagator, all from OTEL_*.
    let guard = tracewire::otlp::builder()
        .service_name("storefront")
        .init()?;
    let inventory = serve(
        Router::new()
            .route(
                "/reserve/{sku}",
                post(|Path(sku): Path<String>| reserve(sku)),
            )
            .layer(ServerLayer::new().service_name("inventory")),
    )
    .await?;
    let payment = serve(
        Router::new()
            .route(
                "/charge/{amount}",
                post(|Path(amount): Path<u64>| charge(amount)),
            )
            .layer(ServerLayer::new().service_name("payment")),
    )
    .await?;
    let to_inventory = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TracingMiddleware::new().service_name("checkout"))
        .build();
    let checkout_addr = serve(
        Router::new()
            .route(
                "/checkout/{sku}/{amount}",
                post(move |Path((sku, amount)): Path<(String, u64)>| {
                    checkout(to_inventory.clone(), payment, inventory, sku, amount)
                }),
            )
            .layer(ServerLayer::new().service_name("checkout")),
    )
    .await?;

    // The storefront sends a few orders: one sold out, one declined.
    let storefront = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TracingMiddleware::new())
        .build();
    for (sku, amount) in [("A-1", 40), ("B-2", 120), ("sold-out", 10), ("C-3", 900)] {
        let order = tracing::info_span!("order", sku, amount);
        let answer = async {
            match storefront
                .post(format!("http://{checkout_addr}/checkout/{sku}/{amount}"))
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_else(|e| e.to_string());
                    format!("{status} {body}")
                }
                Err(error) => format!("failed: {error}"),
            }
        }
        .instrument(order)
        .await;
        println!("{sku}: {}", answer.trim_end());
    }

    // Exports what is left.
    let counters = guard.exporter_counters();
    drop(guard);
    if let Some(stats) = counters.map(|c| c.stats()) {
        println!(
            "exported {} spans in {} calls; {} failed calls, {} spans lost",
            stats.spans_exported, stats.exports, stats.export_errors, stats.spans_failed
        );
    }
    Ok(())
}
