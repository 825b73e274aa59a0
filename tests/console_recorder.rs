//! End to end: `tracing` spans through the real recorder and pipeline into the console.

#![cfg(feature = "console")]

mod console_support;

use console_support::SharedBuf;
use tracewire::record::{Recorder, SpanExt, SpanStart};
use tracewire::report::ConsoleReporter;
use tracing_subscriber::layer::SubscriberExt;

fn is_hex(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[test]
fn nested_tracing_spans_print_as_a_tree_once_the_root_closes() {
    let out = SharedBuf::default();
    let console = ConsoleReporter::builder()
        .writer(out.clone())
        .color(false)
        .width(100)
        .build();
    let stats = console.handle();
    let (layer, guard) = Recorder::builder()
        .service_name("shop")
        .reporter(console)
        .build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let _request = tracing::info_span!(
            "POST /orders",
            otel.kind = "server",
            http.response.status_code = 201
        )
        .entered();
        tracing::info_span!("validate").in_scope(|| tracing::info!("checked"));
        tracing::info_span!("save", otel.kind = "client").in_scope(|| {
            tracing::error!(error = "disk full", "write failed");
        });
    });
    guard.flush().unwrap();

    let printed = out.take();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 7, "{printed}");
    let header = lines[0];
    assert!(header.starts_with("trace "), "{printed}");
    assert!(is_hex(&header[6..38]), "{printed}");
    assert!(
        header[38..].starts_with("  POST /orders  ")
            && header.ends_with("  ERROR  3 spans, 1 service  shop"),
        "{printed}"
    );
    assert!(lines[1].starts_with("shop  ▸ POST /orders  "), "{printed}");
    assert!(lines[1].contains(" 201 "), "{printed}");
    assert!(lines[2].starts_with("├─ shop    validate  "), "{printed}");
    assert!(lines[3].starts_with("│     • checked  +"), "{printed}");
    assert!(lines[4].starts_with("└─ shop  ◂ save  "), "{printed}");
    assert!(lines[4].contains("  ERROR  "), "{printed}");
    assert!(
        lines[5].starts_with("      • exception: disk full  +"),
        "{printed}"
    );
    assert_eq!(lines[6], "");
    for line in [lines[1], lines[2], lines[4]] {
        assert!(line.ends_with('|'), "a bar on every span line: {line}");
    }
    assert_eq!(stats.stats().traces_printed, 1);
    assert_eq!(stats.stats().spans_printed, 3);
}

#[test]
fn two_services_in_one_process_join_into_one_tree() {
    let out = SharedBuf::default();
    let console = ConsoleReporter::builder()
        .writer(out.clone())
        .color(false)
        .width(120)
        .build();
    let (layer, guard) = Recorder::builder()
        .service_name("checkout")
        .reporter(console)
        .build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let _root = tracing::info_span!("POST /checkout", otel.kind = "server").entered();
        let client = tracing::info_span!("GET", otel.kind = "client");
        let caller = client.span_context().unwrap();
        let _client = client.entered();
        // The called service, as its server layer would open it: a remote parent.
        let mut remote = caller.clone();
        remote.is_remote = true;
        SpanStart::new()
            .remote_parent(remote)
            .service_name("inventory")
            .create(|| tracing::info_span!("GET /items/{sku}", otel.kind = "server"))
            .in_scope(|| {});
    });
    guard.flush().unwrap();

    let printed = out.take();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 5, "{printed}");
    assert!(
        lines[0].contains("3 spans, 2 services  checkout → inventory"),
        "{printed}"
    );
    assert!(
        lines[1].starts_with("checkout   ▸ POST /checkout"),
        "{printed}"
    );
    assert!(lines[2].starts_with("└─ checkout   ◂ GET "), "{printed}");
    assert!(
        lines[3].starts_with("   └─ inventory ⇠▸ GET /items/{sku}"),
        "{printed}"
    );
}
