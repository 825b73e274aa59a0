//! The server of `benches/export_cost.sh`: `GET /work` on axum, untraced or traced by one
//! stack, exporting every span over OTLP/gRPC to `OTLP_ENDPOINT`. On SIGTERM it stops
//! serving, exports what is left and prints `handled N` (requests answered).
//!
//! `export_cost_server bare|tracewire|tracewire_bsp|otel|fastrace PORT`
//!
//! `tracewire_bsp` is tracewire's recorder handing its spans to the SDK's
//! `BatchSpanProcessor` instead of `OtelReporter`'s own batching: the comparison behind
//! keeping the latter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::Router;

mod stacks;

use stacks::{otlp_exporter, BoxError};

/// tracewire's spans into any SDK `SpanProcessor`.
struct ViaBsp(opentelemetry_sdk::trace::BatchSpanProcessor);

impl tracewire::report::Reporter for ViaBsp {
    fn report(&mut self, batch: &[tracewire::record::SpanRecord]) {
        use opentelemetry_sdk::trace::SpanProcessor as _;
        for record in batch {
            self.0.on_end(record.into());
        }
    }
    fn flush(&mut self) {
        use opentelemetry_sdk::trace::SpanProcessor as _;
        let _ = self.0.force_flush();
    }
    fn shutdown(&mut self) {
        use opentelemetry_sdk::trace::SpanProcessor as _;
        let _ = self.0.shutdown();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("mode: bare|tracewire|otel|fastrace")?;
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
        "tracewire" => {
            let guard = stacks::install_tracewire(&endpoint)?;
            finish = Box::new(move || drop(guard));
            router.layer(tracewire::ServerLayer::new())
        }
        "tracewire_bsp" => {
            use opentelemetry_sdk::trace::SpanProcessor as _;
            let mut bsp =
                opentelemetry_sdk::trace::BatchSpanProcessor::builder(otlp_exporter(&endpoint)?)
                    .with_batch_config(
                        opentelemetry_sdk::trace::BatchConfigBuilder::default()
                            .with_max_queue_size(65536)
                            .build(),
                    )
                    .build();
            bsp.set_resource(
                &opentelemetry_sdk::Resource::builder()
                    .with_service_name("bench")
                    .build(),
            );
            let guard = tracewire::record::Recorder::builder()
                .service_name("bench")
                .reporter(ViaBsp(bsp))
                .install()?;
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
