//! The server of `benches/export_cost.sh`: `GET /work` on axum, untraced or traced by one
//! stack, exporting every span over OTLP/gRPC to `OTLP_ENDPOINT`. On SIGTERM it stops
//! serving, exports what is left and prints `handled N` (requests answered).
//!
//! `export_cost_server bare|tower_http|tracewire|tracewire_sdk|tracewire_bsp|otel|fastrace PORT`
//!
//! `tower_http` is a reference, not an export stack: tower-http's `TraceLayer` over a bare
//! `tracing` registry, the cost of a `tracing` span per request and nothing else.
//! `tracewire_bsp` is tracewire's recorder handing its spans to the SDK's
//! `BatchSpanProcessor` instead of `OtelReporter`'s own batching, and `tracewire_sdk` the
//! recorder with `OtelReporter`; both export on the server's runtime, without `otlp::init`'s
//! log layer: the comparison behind keeping `OtelReporter`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;

mod stacks;

use stacks::{otlp_exporter, BoxError};

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = args
        .next()
        .ok_or("mode: bare|tower_http|tracewire|tracewire_sdk|tracewire_bsp|otel|fastrace")?;
    let port: u16 = args.next().ok_or("port")?.parse()?;
    let endpoint = std::env::var("OTLP_ENDPOINT")?;
    let handled = Arc::new(AtomicU64::new(0));
    let count = handled.clone();
    let router = Router::new().route(
        "/work",
        get(move || {
            count.fetch_add(1, Ordering::Relaxed);
            async { "ok" }
        }),
    );
    // What ends the stack: flushes and shuts its exporter down.
    let finish: Box<dyn FnOnce() + Send>;
    let app = match mode.as_str() {
        "bare" => {
            finish = Box::new(|| {});
            router
        }
        "tower_http" => {
            // The floor of any layer built on a `tracing` span: tower-http's `TraceLayer` over
            // a bare registry, exporting nothing.
            tracing::subscriber::set_global_default(tracing_subscriber::registry())?;
            finish = Box::new(|| {});
            router.layer(tower_http::trace::TraceLayer::new_for_http())
        }
        "tracewire" => {
            let guard = stacks::install_tracewire(&endpoint)?;
            finish = Box::new(move || drop(guard));
            router.layer(tracewire::ServerLayer::new())
        }
        "tracewire_sdk" => {
            // The recorder and `OtelReporter`, exporting on this runtime as `tracewire_bsp`
            // does: the same stack but for the batching.
            let otel = tracewire::report::OtelReporter::builder(otlp_exporter(&endpoint)?)
                .runtime(tokio::runtime::Handle::current())
                .build();
            let guard = tracewire::record::Recorder::builder()
                .service_name("bench")
                .reporter(otel)
                .install()?;
            finish = Box::new(move || drop(guard));
            router.layer(tracewire::ServerLayer::new())
        }
        "tracewire_bsp" => {
            let guard = stacks::install_tracewire_bsp(otlp_exporter(&endpoint)?)?;
            finish = Box::new(move || drop(guard));
            router.layer(tracewire::ServerLayer::new())
        }
        "otel" => {
            let provider = stacks::install_otel(otlp_exporter(&endpoint)?)?;
            finish = Box::new(move || {
                let _ = provider.shutdown();
            });
            router.layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())
        }
        "fastrace" => {
            stacks::install_fastrace(otlp_exporter(&endpoint)?);
            finish = Box::new(fastrace::flush);
            router.layer(fastrace_axum::FastraceLayer::default())
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            term.recv().await;
        })
        .await?;
    // Drops (and flushes) on a blocking thread: the tracewire guard and the SDK's shutdown
    // wait for their exports.
    tokio::task::spawn_blocking(finish).await?;
    println!("handled {}", handled.load(Ordering::Relaxed));
    Ok(())
}
