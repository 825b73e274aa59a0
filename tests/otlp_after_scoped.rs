//! `otlp::init` after a scoped subscriber (`with_default`, `set_default`) installs: only a
//! global subscriber already set makes it fail.
//!
//! One test: the global subscriber can be set only once per test binary.

#![cfg(feature = "otlp")]

use tracewire::otlp::{InitError, TracesExporter};
use tracing_subscriber::layer::SubscriberExt;

#[test]
fn init_after_a_scoped_subscriber_installs_and_only_once() {
    // Startup logs under a scoped subscriber, say, before the production setup.
    let scoped = tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::OFF);
    tracing::subscriber::with_default(scoped, || tracing::info!("starting"));

    let guard = tracewire::otlp::builder()
        .exporter(TracesExporter::None)
        .init()
        .expect("a scoped subscriber is no global one");
    assert_eq!(guard.exporter(), Some(TracesExporter::None));
    let again = tracewire::otlp::builder()
        .exporter(TracesExporter::None)
        .init();
    assert!(matches!(again, Err(InitError::AlreadyInstalled)));
}
