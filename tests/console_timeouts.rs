//! When traces without a finished root print: remote-parent grace, inactivity, maximum age,
//! flush. Time comes from a fake clock; no test sleeps.

#![cfg(feature = "console")]

mod console_support;

use std::time::Duration;

use console_support::*;
use tracewire::report::{ConsoleReporter, Reporter};
use tracewire::span::SpanKind::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn with_clock(width: usize) -> (ConsoleReporter, SharedBuf, FakeClock) {
    let clock = FakeClock::new();
    let (builder, out) = console(width);
    let console = builder
        .clock(clock.source())
        .idle_timeout(Duration::from_secs(10))
        .max_age(Duration::from_secs(60))
        .build();
    (console, out, clock)
}

#[test]
fn a_stalled_trace_prints_after_the_inactivity_timeout() {
    let (mut console, out, clock) = with_clock(120);
    // The root never finishes: its children are all we get.
    console.report(&[span(0x2, 0x1, "api", Internal, "step one", 100, 1_000)]);
    clock.advance(Duration::from_secs(6));
    console.report(&[span(0x3, 0x1, "api", Internal, "step two", 1_200, 1_000)]);
    clock.advance(Duration::from_secs(6));
    console.tick();
    assert_eq!(out.take(), "", "the second span reset the inactivity timer");
    clock.advance(Duration::from_secs(4) - ms(1));
    console.tick();
    assert_eq!(out.take(), "");
    clock.advance(ms(1));
    console.tick();
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  incomplete  step one  2.1ms  OK  2 orphans  2 spans, 1 service  api
? parent 0000000000000001 not received (orphans)
├─ api    step one  1.0ms |██████████████                |
└─ api    step two  1.0ms |                ██████████████|

"
    );
    assert_eq!(console.stats().traces_held, 0);
}

#[test]
fn a_trace_that_keeps_growing_prints_at_its_maximum_age() {
    let (mut console, out, clock) = with_clock(100);
    for i in 0..12u64 {
        console.report(&[span(0x10 + i, 0x1, "api", Internal, "poll", i * 10, 5)]);
        console.tick();
        assert_eq!(out.take(), "", "at {}s", i * 5);
        clock.advance(Duration::from_secs(5));
    }
    // 60 s after the first span arrived.
    console.tick();
    let printed = out.take();
    assert!(
        printed.starts_with("trace 4bf92f3577b34da6a3ce929d0e0e4736  incomplete  poll"),
        "{printed}"
    );
    assert!(printed.contains("12 spans"), "{printed}");
}

#[test]
fn a_local_root_prints_after_the_grace_period_when_its_remote_parent_stays_away() {
    let (mut console, out, clock) = with_clock(100);
    console.report(&[
        span(0x22, 0x21, "inventory", Client, "SELECT stock", 300, 4_000),
        span(
            0x21,
            0x12,
            "inventory",
            Server,
            "GET /items/{sku}",
            0,
            5_000,
        )
        .remote()
        .attr("http.response.status_code", 200),
    ]);
    clock.advance(ms(199));
    console.tick();
    assert_eq!(out.take(), "");
    clock.advance(ms(1));
    console.tick();
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  GET /items/{sku}  5.0ms  OK  2 spans, 1 service  inventory
inventory ⇠▸ GET /items/{sku}     200  5.0ms |█████████████████████████|
└─ inventory  ◂ SELECT stock           4.0ms |  ████████████████████   |

"
    );
}

#[test]
fn a_local_root_whose_parent_shows_up_waits_for_the_true_root() {
    let (mut console, out, clock) = with_clock(120);
    let mut spans = checkout_trace();
    let root = spans.pop().unwrap();
    // The servers' spans first, their clients' spans within the grace period.
    console.report(&[spans[0].clone(), spans[2].clone()]);
    clock.advance(ms(150));
    console.tick();
    console.report(&[spans[1].clone(), spans[3].clone()]);
    clock.advance(Duration::from_secs(5));
    console.tick();
    assert_eq!(
        out.take(),
        "",
        "the parents arrived: wait for the true root"
    );
    console.report(&[root]);
    let printed = out.take();
    assert!(printed.contains("5 spans, 3 services"), "{printed}");
    assert!(!printed.contains("orphan"), "{printed}");
}

#[test]
fn the_grace_period_is_configurable() {
    let clock = FakeClock::new();
    let (builder, out) = console(100);
    let mut console = builder
        .clock(clock.source())
        .remote_parent_grace(Duration::from_secs(2))
        .build();
    console.report(&[span(0x21, 0x12, "inventory", Server, "GET", 0, 5_000).remote()]);
    clock.advance(ms(1_999));
    console.tick();
    assert_eq!(out.take(), "");
    clock.advance(ms(1));
    console.tick();
    assert!(out.take().contains("GET"));
}

#[test]
fn flush_prints_everything_held() {
    let (mut console, out, _clock) = with_clock(100);
    console.report(&[
        span(0x2, 0x1, "api", Internal, "a", 0, 10),
        span(0x2, 0x1, "api", Internal, "b", 0, 10).trace(7),
    ]);
    assert_eq!(console.stats().traces_held, 2);
    console.flush();
    let printed = out.take();
    assert_eq!(printed.matches("trace ").count(), 2, "{printed}");
    assert!(
        printed.find("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
            < printed.find("00000000000000000000000000000007").unwrap(),
        "in the order first seen"
    );
    assert_eq!(console.stats().spans_held, 0);
}

#[test]
fn a_caller_repeating_a_remote_parent_cannot_keep_its_trace_held() {
    let (mut console, out, clock) = with_clock(120);
    // A caller sends a request under the same remote parent every 50 ms for 3 s: each is a
    // new local root of the same trace. The grace period runs from the first of them (and
    // from the first late span after the trace printed), so the spans print as they come
    // instead of piling up until the caller stops.
    let mut most_held = 0;
    for i in 0..60u64 {
        console
            .report(&[span(0x100 + i, 0x1, "api", Server, "GET /x", i * 50_000, 1_000).remote()]);
        clock.advance(ms(50));
        console.tick();
        most_held = most_held.max(console.stats().spans_held);
    }
    assert!(most_held <= 5, "held {most_held} spans at once");
    let printed = out.take();
    assert!(
        printed.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{printed}"
    );
    let stats = console.stats();
    assert!(stats.spans_printed >= 55, "{stats:?}");
    assert_eq!(stats.spans_dropped, 0);
}
