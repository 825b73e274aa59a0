//! Modes: every trace, or only error traces and slow ones.

#![cfg(feature = "console")]

mod console_support;

use std::time::Duration;

use console_support::*;
use tracewire::report::{Reporter, TraceFilter};
use tracewire::span::SpanKind::*;

#[test]
fn errors_only_leaves_ok_traces_out_and_counts_them() {
    let (builder, out) = console(120);
    let mut console = builder.filter(TraceFilter::Errors).build();
    console.report(&[span(0x1, 0, "api", Server, "GET /fine", 0, 1_000).trace(1)]);
    assert_eq!(out.take(), "");
    console.report(&checkout_trace());
    assert!(out.take().contains("ERROR"));
    let stats = console.stats();
    assert_eq!((stats.traces_printed, stats.traces_filtered), (1, 1));
}

#[test]
fn slow_traces_print_even_without_an_error() {
    let (builder, out) = console(120);
    let mut console = builder
        .filter(TraceFilter::ErrorsOrSlowerThan(Duration::from_millis(50)))
        .build();
    console.report(&[span(0x1, 0, "api", Server, "GET /fast", 0, 49_999).trace(1)]);
    assert_eq!(out.take(), "");
    console.report(&[span(0x1, 0, "api", Server, "GET /slow", 0, 50_000).trace(2)]);
    assert!(out.take().contains("GET /slow"));
    console.report(&[span(0x1, 0, "api", Server, "GET /broken", 0, 10)
        .trace(3)
        .error("x")]);
    assert!(out.take().contains("GET /broken"));
}

#[test]
fn late_spans_follow_their_trace_unless_they_qualify_themselves() {
    let (builder, out) = console(120);
    let mut console = builder.filter(TraceFilter::Errors).build();
    console.report(&[span(0x1, 0, "api", Server, "GET /shown", 0, 10)
        .trace(1)
        .error("x")]);
    console.report(&[span(0x1, 0, "api", Server, "GET /hidden", 0, 10).trace(2)]);
    out.take();
    console.report(&[
        span(0x2, 0x1, "api", Internal, "late ok", 0, 10).trace(1),
        span(0x2, 0x1, "api", Internal, "late ok", 0, 10).trace(2),
        span(0x3, 0x1, "api", Internal, "late error", 0, 10)
            .trace(3)
            .error("y"),
    ]);
    console.report(&[span(0x1, 0, "api", Server, "GET /hidden too", 0, 10).trace(3)]);
    console.flush();
    let printed = out.take();
    assert!(
        printed.contains("00000000000000000000000000000001  late"),
        "{printed}"
    );
    assert!(
        !printed.contains("00000000000000000000000000000002"),
        "{printed}"
    );
    assert!(
        printed.contains("00000000000000000000000000000003"),
        "{printed}"
    );
}

#[test]
fn all_is_the_default() {
    assert_eq!(TraceFilter::default(), TraceFilter::All);
    assert!(TraceFilter::All.accepts(&[]));
    assert!(!TraceFilter::Errors.accepts(&[]));
}
