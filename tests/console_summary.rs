//! The shutdown summary: traces, errors and nearest-rank percentiles per service and
//! operation.

#![cfg(feature = "console")]

mod console_support;

use std::time::Duration;

use console_support::*;
use tracewire::record::SpanRecord;
use tracewire::report::{ConsoleReporter, Reporter};
use tracewire::span::SpanKind::*;

/// `n` requests of `service`/`name` lasting 1 ms, 2 ms, … n ms; every `error_every`-th fails.
fn requests(trace0: u128, service: &str, name: &str, n: u64, error_every: u64) -> Vec<SpanRecord> {
    (1..=n)
        .map(|k| {
            let s = span(0x1, 0, service, Server, name, 0, k * 1_000).trace(trace0 + u128::from(k));
            if k % error_every == 0 {
                s.error("boom")
            } else {
                s
            }
        })
        .collect()
}

#[test]
fn the_summary_counts_and_ranks_durations_per_operation() {
    let (builder, out) = console(100);
    let mut console = builder.summary(true).build();
    let handle = console.handle();
    // 20 checkouts of 1..=20 ms, every 5th an error; 3 item lookups of 1..=3 ms, in a
    // shuffled order; an internal child span, which is no operation of its own.
    let mut items = requests(1_000, "inventory", "GET /items/{sku}", 3, 100);
    items.reverse();
    console.report(&requests(0, "checkout", "POST /checkout", 20, 5));
    console.report(&items);
    console.report(&[span(0x2, 0x1, "checkout", Internal, "validate", 0, 5).trace(1)]);
    // A gRPC server span under a local parent still counts (kind server).
    console.report(&[
        span(0x3, 0x1, "payment", Server, "payment.Pay/Charge", 0, 7_000)
            .trace(1)
            .error("no"),
    ]);

    let summary = handle.summary();
    assert_eq!(summary.len(), 3);
    let checkout = &summary[0];
    assert_eq!(&*checkout.service, "checkout");
    assert_eq!(checkout.operation, "POST /checkout");
    assert_eq!((checkout.traces, checkout.errors), (20, 4));
    // Nearest rank of 20 values: p50 → rank 10, p95 → rank 19, p99 → rank 20.
    assert_eq!(checkout.p50, Duration::from_millis(10));
    assert_eq!(checkout.p95, Duration::from_millis(19));
    assert_eq!(checkout.p99, Duration::from_millis(20));
    assert!(!checkout.sampled);
    let items = &summary[1];
    assert_eq!((items.traces, items.errors), (3, 0));
    // Of 3 values: p50 → rank 2, p95 and p99 → rank 3.
    assert_eq!(items.p50, Duration::from_millis(2));
    assert_eq!(items.p95, Duration::from_millis(3));
    assert_eq!(items.p99, Duration::from_millis(3));
    assert_eq!((summary[2].traces, summary[2].errors), (1, 1));
    assert_eq!(summary[2].p99, Duration::from_millis(7));

    out.take();
    console.shutdown();
    let printed = out.take();
    let table = &printed[printed.find("summary").expect("a summary")..];
    assert_eq!(
        table,
        "\
summary  3 operations, durations p50/p95/p99 by nearest rank
service    kind    operation           traces  errors     p50     p95     p99
checkout   server  POST /checkout          20       4  10.0ms  19.0ms  20.0ms
inventory  server  GET /items/{sku}         3       0   2.0ms   3.0ms   3.0ms
payment    server  payment.Pay/Charge       1       1   7.0ms   7.0ms   7.0ms
"
    );
}

#[test]
fn the_summary_is_off_for_a_plain_reporter() {
    let (builder, out) = console(100);
    let mut console = builder.build();
    console.report(&requests(0, "checkout", "POST /checkout", 3, 2));
    console.shutdown();
    assert!(!out.take().contains("summary"));
    assert!(console.handle().summary().is_empty());
    let plain = ConsoleReporter::new();
    assert!(plain.handle().summary().is_empty());
}

#[test]
fn memory_is_bounded_by_samples_and_operations() {
    let (builder, out) = console(100);
    let mut console = builder
        .summary(true)
        .summary_samples(10)
        .summary_operations(1)
        .build();
    console.report(&requests(0, "checkout", "POST /checkout", 1_000, 1_000));
    console.report(&requests(5_000, "checkout", "GET /other", 5, 1_000));
    let summary = console.handle().summary();
    assert_eq!(summary.len(), 1);
    let op = &summary[0];
    assert_eq!(op.traces, 1_000);
    assert!(op.sampled);
    assert!(op.p50 >= Duration::from_millis(1) && op.p50 <= Duration::from_millis(1_000));
    assert!(op.p50 <= op.p95 && op.p95 <= op.p99);
    out.take();
    console.shutdown();
    let printed = out.take();
    assert!(
        printed.contains("~ estimated from a sample of 10 durations"),
        "{printed}"
    );
    assert!(
        printed.contains("5 spans of further operations not summarised (limit: 1 operations)"),
        "{printed}"
    );
}

#[test]
fn the_summary_fits_narrow_widths() {
    for width in [1, 10, 30, 60] {
        let (builder, out) = console(width);
        let mut console = builder.summary(true).build();
        console.report(&requests(
            0,
            "a-service-with-a-long-name",
            &"op".repeat(40),
            3,
            2,
        ));
        console.shutdown();
        assert_fits(&out.take(), width);
    }
}
