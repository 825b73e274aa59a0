//! Production-style export: three services in one process (checkout calls inventory over
//! reqwest and payment over a hyper-util client, all on loopback ports, all traced by
//! tracewire) send their spans to an OpenTelemetry Collector (or Jaeger, Tempo…) over
//! OTLP/gRPC, then exit; the recorder's guard flushes what is left.
//!
//! ```sh
//! # a Collector, Jaeger all-in-one or Tempo listening for OTLP/gRPC on 4317, then:
//! cargo run --example otlp_export --features otel,reqwest
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317 cargo run --example otlp_export --features otel,reqwest
//! ```
//!
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)` and `OTEL_PROPAGATORS` apply too.
//! Without a receiver the requests still run; the export failures are counted and printed.

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
use opentelemetry_otlp::WithExportConfig;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::record::env::EnvConfig;
use tracewire::record::Recorder;
use tracewire::report::OtelReporter;
use tracewire::reqwest::TracingMiddleware;
use tracewire::{ClientLayer, ServerLayer};
use tracing::Instrument;
use tracing_subscriber::{filter::filter_fn, layer::SubscriberExt, Layer};

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
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "http://localhost:4317".to_owned());

    // The tonic exporter is built inside the runtime, and exports run as tasks on it.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_secs(3))
        .build()?;
    let otel = OtelReporter::builder(exporter)
        .with_env()
        .runtime(tokio::runtime::Handle::current())
        .build();
    let counters = otel.counters();
    // OTEL_SERVICE_NAME and friends, OTEL_TRACES_SAMPLER(_ARG), OTEL_PROPAGATORS.
    let env = EnvConfig::from_env();
    for warning in &env.warnings {
        eprintln!("warning: {warning}");
    }
    let (recorder, guard) = Recorder::builder()
        .service_name("storefront")
        .with_env_config(&env)
        .reporter(otel)
        .build();
    // The exporter's own stack stays out of the recorder.
    let own_stack = ["h2", "hyper", "tonic", "tower", "opentelemetry"];
    let recorder = recorder.with_filter(filter_fn(move |meta| {
        !own_stack
            .iter()
            .any(|prefix| meta.target().starts_with(prefix))
    }));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(recorder))?;
    let propagator = || env.propagator();

    let inventory = serve(
        Router::new()
            .route(
                "/reserve/{sku}",
                post(|Path(sku): Path<String>| reserve(sku)),
            )
            .layer(
                ServerLayer::new()
                    .service_name("inventory")
                    .propagator(propagator()),
            ),
    )
    .await?;
    let payment = serve(
        Router::new()
            .route(
                "/charge/{amount}",
                post(|Path(amount): Path<u64>| charge(amount)),
            )
            .layer(
                ServerLayer::new()
                    .service_name("payment")
                    .propagator(propagator()),
            ),
    )
    .await?;
    let to_inventory = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(
            TracingMiddleware::new()
                .service_name("checkout")
                .propagator(propagator()),
        )
        .build();
    let checkout_addr = serve(
        Router::new()
            .route(
                "/checkout/{sku}/{amount}",
                post(move |Path((sku, amount)): Path<(String, u64)>| {
                    checkout(to_inventory.clone(), payment, inventory, sku, amount)
                }),
            )
            .layer(
                ServerLayer::new()
                    .service_name("checkout")
                    .propagator(propagator()),
            ),
    )
    .await?;

    // The storefront sends a few orders: one sold out, one declined.
    let storefront = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TracingMiddleware::new().propagator(propagator()))
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

    // Exports what is left while the runtime still runs the exporter's connection.
    drop(guard);
    let stats = counters.stats();
    println!(
        "exported {} spans to {endpoint} in {} calls; {} failed calls, {} timeouts, {} spans lost",
        stats.spans_exported,
        stats.exports,
        stats.export_errors,
        stats.export_timeouts,
        stats.spans_failed
    );
    Ok(())
}
