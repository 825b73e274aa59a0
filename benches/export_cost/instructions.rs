//! The program `benches/export_instructions.sh` counts instructions in: N in-memory requests
//! (`GET /users/{id}` carrying `traceparent`, `host` and `user-agent`, as benches/overhead.rs
//! makes them) through an axum router, untraced or traced by one stack that exports every
//! span over OTLP/gRPC, with `opentelemetry-otlp`'s tonic exporter, to the receiver of
//! `benches/export_cost.sh` running as another process at `OTLP_ENDPOINT`. Everything the
//! process does for a span is in the count: the layer, the recorder, the conversion to SDK
//! span data, batching, the protobuf encoding, gzip if asked, tonic, h2 and the socket writes;
//! the receiver's work is not.
//!
//! `export_cost_instructions bare|tracewire|tracewire_sdk|tracewire_bsp|otel|fastrace N`
//!
//! `tracewire` is `tracewire::otlp::init`'s setup (its log layer included). `tracewire_sdk`
//! is the recorder alone with `OtelReporter` and `opentelemetry-otlp`'s tonic exporter;
//! `tracewire_bsp` the recorder alone handing its spans to the SDK's `BatchSpanProcessor`.
//!
//! Unlike `export_cost.sh`, the count does not depend on the machine's load. At the end the
//! stack's pipeline is flushed and shut down, and the program prints `requests N`; the
//! script checks that the receiver got one span per request.

use axum::extract::Path;
use axum::routing::get;
use axum::Router;

#[path = "../support/in_memory.rs"]
mod in_memory;
mod stacks;

use in_memory::request;
use stacks::{otlp_exporter, BoxError};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn user(Path(id): Path<u64>) -> String {
    format!("user {id}")
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or("mode: bare|tracewire|otel|fastrace")?;
    let requests: u64 = args.next().ok_or("requests")?.parse()?;
    let endpoint = std::env::var("OTLP_ENDPOINT")?;
    // The exporters' connections run here, on one thread, as on a server's runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // The tonic exporter is built inside the runtime that runs its connection.
    let exporter = || {
        let _entered = runtime.enter();
        otlp_exporter(&endpoint)
    };
    let router = Router::new().route("/users/{id}", get(user));
    let finish: Box<dyn FnOnce()>;
    // Called every `PACE` requests. fastrace's collector thread, starved under valgrind,
    // would let its queue overflow and drop spans; at full speed it reports every few ms.
    let mut pace: Box<dyn Fn()> = Box::new(|| {});
    let app = match mode.as_str() {
        "bare" => {
            finish = Box::new(|| {});
            router
        }
        "tracewire" => {
            let guard = stacks::install_tracewire(&endpoint)?;
            finish = Box::new(move || {
                guard.flush().expect("flushed");
                let stats = guard.exporter_counters().expect("an exporter").stats();
                assert_eq!(stats.spans_exported, requests, "every span exported");
                drop(guard);
            });
            router.layer(tracewire::ServerLayer::new())
        }
        "tracewire_sdk" => {
            let otel = {
                let _entered = runtime.enter();
                tracewire::report::OtelReporter::builder(otlp_exporter(&endpoint)?)
                    .with_env()
                    .runtime(runtime.handle().clone())
                    .build()
            };
            let counters = otel.counters();
            let guard = tracewire::record::Recorder::builder()
                .with_env()
                .service_name("bench")
                .reporter(otel)
                .install()?;
            finish = Box::new(move || {
                guard.flush().expect("flushed");
                assert_eq!(
                    counters.stats().spans_exported,
                    requests,
                    "every span exported"
                );
                drop(guard);
            });
            router.layer(tracewire::ServerLayer::new())
        }
        "tracewire_bsp" => {
            let guard = stacks::install_tracewire_bsp(exporter()?)?;
            finish = Box::new(move || {
                guard.flush().expect("flushed");
                drop(guard);
            });
            router.layer(tracewire::ServerLayer::new())
        }
        "otel" => {
            let provider = stacks::install_otel(exporter()?)?;
            finish = Box::new(move || {
                provider.shutdown().expect("shut down");
            });
            router.layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())
        }
        "fastrace" => {
            stacks::install_fastrace(exporter()?);
            finish = Box::new(fastrace::flush);
            pace = Box::new(fastrace::flush);
            router.layer(fastrace_axum::FastraceLayer::default())
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    const PACE: u64 = 1000;
    for i in 1..=requests {
        request(&app, TRACEPARENT);
        if i % PACE == 0 {
            pace();
        }
    }
    finish();
    drop(runtime);
    println!("requests {requests}");
    Ok(())
}
