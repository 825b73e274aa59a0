//! `dev::init_with_ui` after another global subscriber: the setup is not installed, and
//! neither is its viewer left serving.
//!
//! One test: the global subscriber can be set only once per test binary.

#![cfg(feature = "ui")]

use std::net::{Ipv4Addr, TcpListener, TcpStream};

use tracing_subscriber::layer::SubscriberExt;

#[test]
fn a_failed_init_with_ui_leaves_no_viewer_running() {
    // A free port for the viewer, known in advance.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    std::env::set_var("TRACEWIRE_UI_ADDR", format!("127.0.0.1:{port}"));
    let theirs = tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::OFF);
    tracing::subscriber::set_global_default(theirs).expect("the first global subscriber");

    let guard = tracewire::dev::init_with_ui("late");
    assert!(guard.console().is_none(), "the setup is not installed");
    assert_eq!(guard.viewer_addr(), None);
    // Dropping a viewer joins its server thread, so a viewer that was stopped no longer
    // accepts connections by now.
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "a viewer still serves on {port}, fed by nothing"
    );
}
