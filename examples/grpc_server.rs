//! A tonic server traced by tracewire: the gRPC health service (tonic-health ships its
//! generated code, so no `protoc`) behind `ServerLayer::grpc()`. Each call gets a server span
//! named `grpc.health.v1.Health/{Check,Watch}` that continues the caller's trace and ends
//! with the call's status (for `Watch`, when the stream ends or is cancelled). Finished
//! spans are printed to stderr.
//!
//! ```sh
//! cargo run --example grpc_server          # in one terminal: 127.0.0.1:50051
//! cargo run --example grpc_client          # in another
//! ```

use std::time::Duration;

use tonic_health::ServingStatus;
use tracewire::record::{Recorder, SpanRecord};
use tracewire::report::Reporter;
use tracewire::ServerLayer;
use tracing_subscriber::layer::SubscriberExt;

/// Prints one line per finished span.
struct Stderr;

impl Reporter for Stderr {
    fn report(&mut self, batch: &[SpanRecord]) {
        for span in batch {
            let code = span.attribute("rpc.grpc.status_code");
            eprintln!(
                "{} {:?} {} trace={} span={} parent={} grpc-status={} {:?} {:.1?}",
                span.service_name,
                span.kind,
                span.name,
                span.trace_id(),
                span.span_id(),
                span.parent_span_id,
                code.map_or_else(|| "-".into(), |c| c.as_str()),
                span.status,
                span.duration(),
            );
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (recorder, _guard) = Recorder::builder()
        .service_name("health-server")
        .reporter(Stderr)
        .build();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(recorder))?;

    // `""` (the whole server) is SERVING; `checkout` flips every second, so that `Watch`
    // streams; any other name is NOT_FOUND.
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        let mut serving = true;
        loop {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("checkout", status).await;
            serving = !serving;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });

    let addr = "127.0.0.1:50051".parse()?;
    eprintln!("gRPC health service on {addr}; Ctrl-C stops");
    tonic::transport::Server::builder()
        .layer(ServerLayer::grpc())
        .add_service(health)
        .serve_with_shutdown(addr, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
