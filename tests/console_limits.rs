//! Memory stays bounded: spans over the trace and span limits are dropped and counted.

#![cfg(feature = "console")]

mod console_support;

use console_support::*;
use tracewire::report::Reporter;
use tracewire::span::SpanKind::*;

#[test]
fn spans_of_traces_beyond_the_trace_limit_are_dropped_and_counted() {
    let (builder, out) = console(100);
    let mut console = builder.max_traces(3).build();
    let handle = console.handle();
    for trace in 1..=5u128 {
        console.report(&[span(0x2, 0x1, "api", Internal, "child", 0, 10).trace(trace)]);
    }
    let stats = handle.stats();
    assert_eq!(stats.traces_held, 3);
    assert_eq!(stats.spans_held, 3);
    assert_eq!(stats.spans_dropped, 2);
    // A held trace completes and makes room.
    console.report(&[span(0x1, 0, "api", Server, "root", 0, 20).trace(1)]);
    assert!(out.take().contains("root"));
    console.report(&[span(0x2, 0x1, "api", Internal, "child", 0, 10).trace(5)]);
    assert_eq!(handle.stats().traces_held, 3);
    assert_eq!(handle.stats().spans_dropped, 2);
}

#[test]
fn spans_beyond_the_per_trace_limit_are_dropped_counted_and_reported_in_the_header() {
    let (builder, out) = console(120);
    let mut console = builder.max_spans_per_trace(4).build();
    let children: Vec<_> = (0..10u64)
        .map(|i| span(0x10 + i, 0x1, "api", Internal, "child", i, 1))
        .collect();
    console.report(&children);
    assert_eq!(console.stats().spans_held, 4);
    assert_eq!(console.stats().spans_dropped, 6);
    // The root always gets in: it lets the trace print and free its memory.
    console.report(&[span(0x1, 0, "api", Server, "root", 0, 20)]);
    let printed = out.take();
    assert!(
        printed.starts_with(
            "trace 4bf92f3577b34da6a3ce929d0e0e4736  root  20.0µs  OK  6 dropped  5 spans, 1 service  api\n"
        ),
        "{printed}"
    );
    let stats = console.stats();
    assert_eq!((stats.spans_held, stats.traces_held), (0, 0));
    assert_eq!(stats.spans_printed, 5);
}

#[test]
fn spans_beyond_the_total_span_limit_are_dropped_and_counted() {
    let (builder, _out) = console(100);
    let mut console = builder.max_spans(10).max_spans_per_trace(100).build();
    for trace in 1..=4u128 {
        let spans: Vec<_> = (0..4u64)
            .map(|i| span(0x10 + i, 0x1, "api", Internal, "child", i, 1).trace(trace))
            .collect();
        console.report(&spans);
    }
    let stats = console.stats();
    assert_eq!(stats.spans_held, 10);
    assert_eq!(stats.spans_dropped, 6);
    assert_eq!(stats.traces_held, 3);
}

#[test]
fn printed_trace_ids_are_remembered_within_a_bound() {
    let (builder, out) = console(100);
    let mut console = builder.remember_printed(2).build();
    for trace in 1..=3u128 {
        console.report(&[span(0x1, 0, "api", Server, "root", 0, 20).trace(trace)]);
    }
    out.take();
    // Trace 1 is forgotten: its straggler is a trace of its own, not a late addendum.
    console.report(&[span(0x2, 0x1, "api", Internal, "straggler", 5, 1).trace(1)]);
    console.report(&[span(0x2, 0x1, "api", Internal, "straggler", 5, 1).trace(3)]);
    assert_eq!(console.stats().late_spans, 1);
    console.flush();
    let printed = out.take();
    assert!(
        printed.contains("00000000000000000000000000000001  incomplete"),
        "{printed}"
    );
    assert!(
        printed.contains("00000000000000000000000000000003  late"),
        "{printed}"
    );
}

#[test]
fn spans_beyond_the_byte_limits_are_dropped_and_counted() {
    let (builder, out) = console(100);
    let mut console = builder
        .max_bytes(64 * 1024)
        .max_bytes_per_trace(16 * 1024)
        .build();
    let handle = console.handle();
    // Spans carrying 8 KiB user agents, as any caller can send: about 8.5 KiB held each,
    // so one fits a trace's 16 KiB and seven the 64 KiB in all.
    for trace in 1..=10u128 {
        let spans: Vec<_> = (0..4u64)
            .map(|i| {
                span(0x10 + i, 0x1, "api", Internal, "child", i, 1)
                    .attr("user_agent.original", "x".repeat(8192))
                    .trace(trace)
            })
            .collect();
        console.report(&spans);
        let stats = handle.stats();
        assert!(stats.bytes_held <= 64 * 1024, "{stats:?}");
        assert!(stats.spans_held <= 7, "{stats:?}");
    }
    let stats = handle.stats();
    assert_eq!((stats.spans_held, stats.traces_held), (7, 7));
    assert_eq!(stats.spans_dropped, 33);
    assert!(stats.bytes_held > 7 * 8192, "{stats:?}");
    // A root still gets in, prints its trace and frees its bytes.
    let before = stats.bytes_held;
    console.report(&[span(0x1, 0, "api", Server, "root", 0, 20).trace(1)]);
    assert!(out.take().contains("root"));
    assert!(handle.stats().bytes_held < before - 8192);
    assert_eq!(handle.stats().spans_held, 6);
}
