//! `dev::init` installs the global subscriber once; the guard flushes the console.
//!
//! One test: the global subscriber can be set only once per test binary.

#![cfg(feature = "console")]

use tracewire::dev;
use tracewire::record::InstallError;

#[test]
fn try_init_installs_once_and_init_then_warns_with_an_inert_guard() {
    let guard = dev::try_init("dev-test").expect("the first install succeeds");
    tracing::info_span!("dev request", otel.kind = "server").in_scope(|| {
        tracing::info_span!("dev step").in_scope(|| {});
    });
    guard.flush().unwrap();
    let console = guard.console().expect("a console handle");
    assert_eq!(console.stats().traces_printed, 1);
    assert_eq!(console.stats().spans_printed, 2);
    assert_eq!(console.summary().len(), 1, "the summary is on");
    assert_eq!(&*console.summary()[0].service, "dev-test");

    // Library internals stay out of the recorder.
    tracing::info_span!(target: "hyper::proto", "hyper internals").in_scope(|| {});
    guard.flush().unwrap();
    assert_eq!(console.stats().spans_printed, 2);

    assert_eq!(
        dev::try_init("again").err(),
        Some(InstallError::AlreadyInstalled)
    );
    let inert = dev::init("again");
    assert!(inert.console().is_none());
    assert!(inert.recorder().is_none());
    assert!(inert.flush().is_ok());
    drop(inert);
    drop(guard);
}
