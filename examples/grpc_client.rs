//! A tonic client traced by tracewire: a `Channel` behind `ClientLayer::grpc()`. Each call
//! gets a client span whose context travels as `traceparent` / `tracestate` / `baggage`
//! metadata, so the server's spans join the same trace. It makes an OK call, one that fails
//! (NOT_FOUND: an error for the client, not for the server), and a `Watch` stream it
//! cancels after three messages. Finished spans are printed to stderr.
//!
//! ```sh
//! cargo run --example grpc_server          # in one terminal
//! cargo run --example grpc_client          # in another
//! cargo run --example grpc_client -- http://127.0.0.1:50051
//! ```

use tonic::transport::Endpoint;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::ServiceBuilder;
use tracewire::record::{Recorder, SpanRecord};
use tracewire::report::Reporter;
use tracewire::ClientLayer;
use tracing::Instrument;
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

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (recorder, guard) = Recorder::builder()
        .service_name("health-client")
        .reporter(Stderr)
        .build();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(recorder))?;
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());

    let channel = Endpoint::from_shared(url.clone())?.connect().await?;
    let channel = ServiceBuilder::new()
        .layer(ClientLayer::grpc())
        .service(channel);
    // The origin makes the server's address visible to the layer (`server.address`).
    let mut client = HealthClient::with_origin(channel, url.parse()?);

    async {
        let overall = client.check(request("")).await?.into_inner();
        println!("overall: {:?}", overall.status());
        match client.check(request("no-such-service")).await {
            Ok(response) => println!("unexpected: {:?}", response.into_inner()),
            Err(status) => println!("no-such-service: {:?} {}", status.code(), status.message()),
        }
        let mut updates = client.watch(request("checkout")).await?.into_inner();
        for _ in 0..3 {
            match updates.message().await? {
                Some(update) => println!("checkout: {:?}", update.status()),
                None => break,
            }
        }
        // Dropping the stream cancels the call: both spans end as cancelled.
        drop(updates);
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .instrument(tracing::info_span!("health round"))
    .await?;

    guard.flush()?;
    Ok(())
}
