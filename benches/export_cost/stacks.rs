//! The stacks of the export-cost benchmarks (`server.rs`, `instructions.rs`), set up the same
//! way in both: each exports over OTLP/gRPC with `opentelemetry-otlp`'s tonic exporter, under
//! the service name `bench`.

use std::borrow::Cow;

use opentelemetry_otlp::WithExportConfig;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The tonic exporter to `endpoint`. Build it inside a tokio runtime.
pub fn otlp_exporter(endpoint: &str) -> Result<opentelemetry_otlp::SpanExporter, BoxError> {
    Ok(opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?)
}

/// tracewire's one-call production setup, exporting over gRPC to `endpoint`.
pub fn install_tracewire(endpoint: &str) -> Result<tracewire::otlp::OtlpGuard, BoxError> {
    Ok(tracewire::otlp::builder()
        .protocol(tracewire::otlp::OtlpProtocol::Grpc)
        .endpoint(endpoint)
        .service_name("bench")
        .init()?)
}

/// tracewire's recorder handing its spans to the SDK's `BatchSpanProcessor` into `exporter`
/// (built inside a tokio runtime) through `ProcessorReporter`, instead of `OtelReporter`'s own
/// batching: the comparison behind keeping the latter. Installed as the global subscriber.
pub fn install_tracewire_bsp(
    exporter: opentelemetry_otlp::SpanExporter,
) -> Result<tracewire::record::RecorderGuard, BoxError> {
    let bsp = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_max_queue_size(65536)
                .build(),
        )
        .build();
    let reporter = tracewire::report::ProcessorReporter::builder(bsp)
        .resource(resource())
        .build();
    Ok(tracewire::record::Recorder::builder()
        .service_name("bench")
        .reporter(reporter)
        .install()?)
}

fn resource() -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name("bench")
        .build()
}

/// The OpenTelemetry stack: the W3C propagator, the SDK's batch processor into `exporter`,
/// and tracing-opentelemetry as the global subscriber. Returns the provider, to shut down.
pub fn install_otel(
    exporter: opentelemetry_otlp::SpanExporter,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, BoxError> {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer as _;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build();
    // The exporter's own stack (h2, hyper, tonic…) stays out, as tracewire's recorder leaves
    // it out by default.
    let internal = ["h2", "hyper", "tonic", "tower", "opentelemetry"];
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bench"))
        .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
            !internal.iter().any(|t| meta.target().starts_with(t))
        }));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))?;
    Ok(provider)
}

/// fastrace, reporting through fastrace-opentelemetry into `exporter`.
pub fn install_fastrace(exporter: opentelemetry_otlp::SpanExporter) {
    let reporter = fastrace_opentelemetry::OpenTelemetryReporter::new(
        exporter,
        Cow::Owned(resource()),
        opentelemetry::InstrumentationScope::builder("bench").build(),
    );
    fastrace::set_reporter(reporter, fastrace::collector::Config::default());
}
