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

const CHILD: &str = "TRACEWIRE_ENV_WARNINGS_CHILD";

/// Runs with `OTEL_TRACES_SAMPLER=coin_flip` in its own process (see below).
#[test]
fn child_process_entry() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    // No subscriber yet: what `with_env` logs now reaches no one, so the guard keeps it.
    let (layer, guard) = Recorder::builder().with_env().build();
    drop(layer);
    assert_eq!(
        guard.env_warnings(),
        [EnvWarning::UnknownSampler {
            value: "coin_flip".into()
        }]
    );
    println!("WARNINGS {}", guard.env_warnings()[0]);
}

#[test]
fn with_env_keeps_its_warnings_for_after_the_subscriber_is_installed() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("OTEL_TRACES_SAMPLER", "coin_flip")
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.split("WARNINGS ").nth(1))
        .unwrap_or_else(|| panic!("no warnings line in {stdout}"));
    assert!(line.contains("OTEL_TRACES_SAMPLER"), "{line}");
}

/// An invalid span limit counts as unset: the general `OTEL_ATTRIBUTE_*_LIMIT` then applies,
/// as it would had the span limit not been set.
#[test]
fn an_invalid_span_limit_falls_back_to_the_general_one() {
    let env = EnvConfig::from_lookup(|name| match name {
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT" => Some("lots"),
        "OTEL_ATTRIBUTE_COUNT_LIMIT" => Some("1"),
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT" => Some("-5"),
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT" => Some("3"),
        _ => None,
    });
    assert_eq!(env.limits.attribute_count, Some(1));
    assert_eq!(env.limits.attribute_value_length, Some(3));
    assert_eq!(
        env.warnings,
        [
            EnvWarning::InvalidLimit {
                variable: "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                value: "-5".into()
            },
            EnvWarning::InvalidLimit {
                variable: "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
                value: "lots".into()
            },
        ]
    );
    let spans = Recorder::builder().with_env_config(&env);
    let spans = {
        let reporter = InMemoryReporter::new();
        let (layer, guard) = spans.reporter(reporter.clone()).build();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info_span!("work", a = "abcdef", b = 2).in_scope(|| {});
        });
        guard.flush().unwrap();
        reporter
    };
    let span = spans.find("work").unwrap();
    assert_eq!(span.attributes.len(), 1);
    assert_eq!(span.dropped_attributes_count, 1);
    assert_eq!(
        span.attribute("a").map(|v| v.as_str().into_owned()),
        Some("abc".into())
    );
}
