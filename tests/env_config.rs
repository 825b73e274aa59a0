//! The recorder applies OpenTelemetry environment settings only when asked, read here
//! through a lookup function rather than the process environment.

use tracewire::env::{EnvConfig, EnvWarning};
use tracewire::record::Recorder;
use tracewire::report::InMemoryReporter;
use tracing_subscriber::layer::SubscriberExt;

fn run(config: &EnvConfig) -> InMemoryReporter {
    let spans = InMemoryReporter::new();
    let (layer, guard) = Recorder::builder()
        .service_name("from-code")
        .with_env_config(config)
        .reporter(spans.clone())
        .build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("work").in_scope(|| {});
    });
    guard.flush().unwrap();
    spans
}

#[test]
fn service_name_and_sampler_come_from_the_environment() {
    let env = EnvConfig::from_lookup(|name| match name {
        "OTEL_RESOURCE_ATTRIBUTES" => Some("service.name=billing"),
        "OTEL_TRACES_SAMPLER" => Some("parentbased_traceidratio"),
        "OTEL_TRACES_SAMPLER_ARG" => Some("1.0"),
        _ => None,
    });
    assert!(env.warnings.is_empty());
    let spans = run(&env);
    assert_eq!(&*spans.find("work").unwrap().service_name, "billing");

    let off =
        EnvConfig::from_lookup(|name| (name == "OTEL_TRACES_SAMPLER").then_some("always_off"));
    assert!(run(&off).is_empty());
}

#[test]
fn invalid_values_keep_the_code_settings() {
    let env = EnvConfig::from_lookup(|name| match name {
        "OTEL_TRACES_SAMPLER" => Some("sometimes"),
        "OTEL_RESOURCE_ATTRIBUTES" => Some("service.name"),
        _ => None,
    });
    assert_eq!(
        env.warnings,
        [
            EnvWarning::InvalidResourceAttribute {
                entry: "service.name".into()
            },
            EnvWarning::UnknownSampler {
                value: "sometimes".into()
            },
        ]
    );
    let spans = run(&env);
    assert_eq!(&*spans.find("work").unwrap().service_name, "from-code");
}
