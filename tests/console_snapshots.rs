//! The console's output for hand-built traces with fixed ids and times, without colour.

#![cfg(feature = "console")]

mod console_support;

use std::time::Duration;

use console_support::*;
use tracewire::record::SpanRecord;
use tracewire::report::Reporter;
use tracewire::span::{KeyValue, SpanKind::*};

#[test]
fn three_services_print_as_one_tree_when_the_root_arrives() {
    let (builder, out) = console(120);
    let mut console = builder.build();
    let mut spans = checkout_trace();
    let root = spans.pop().unwrap();
    // Children first, as the recorder hands them over.
    console.report(&spans[..2]);
    console.report(&spans[2..]);
    assert_eq!(out.take(), "", "nothing before the root");
    console.report(&[root]);
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  POST /checkout  98.1ms  ERROR  5 spans, 3 services  checkout → inventory, payme…
checkout   ▸ POST /checkout                    500  98.1ms |██████████████████████████████|
├─ checkout   ◂ GET                            200  20.3ms |██████                        |
│  └─ inventory ⇠▸ GET /items/{sku}            200  18.0ms |██████                        |
└─ checkout   ◂ payment.Pay/Charge     UNAVAILABLE  60.2ms |        ██████████████████    |
   └─ payment   ⇠▸ payment.Pay/Charge  UNAVAILABLE  58.9ms |        ██████████████████    |
         • exception: gateway timeout  +57.1ms

"
    );
}

#[test]
fn the_same_trace_at_80_columns() {
    assert_eq!(
        render(&checkout_trace(), 80),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  POST /checkout  98.1ms  ERROR  5 spans…
checkout   ▸ POST /checkout                    500  98.1ms |███████████████████|
├─ checkout   ◂ GET                            200  20.3ms |████               |
│  └─ inventory ⇠▸ GET /items/{sku}            200  18.0ms |████               |
└─ checkout   ◂ payment.Pay/Charge     UNAVAILABLE  60.2ms |     ████████████  |
   └─ payment   ⇠▸ payment.Pay/Charge  UNAVAILABLE  58.9ms |     ███████████   |
         • exception: gateway timeout  +57.1ms

"
    );
}

fn error_trace() -> Vec<SpanRecord> {
    vec![
        span(0x2, 0x1, "users", Internal, "load_user", 1_000, 3_000),
        span(0x3, 0x1, "users", Client, "SELECT users", 4_500, 30_000)
            .attr("db.system", "postgresql")
            .event(
                "exception",
                34_000,
                vec![
                    KeyValue::new("exception.type", "io::Error"),
                    KeyValue::new("exception.message", "connection reset by peer"),
                ],
            )
            .error("connection reset by peer"),
        span(0x1, 0, "users", Server, "GET", 0, 35_250)
            .attr("http.route", "/users/{id}")
            .attr("http.response.status_code", 500)
            .error("database unavailable"),
    ]
}

#[test]
fn an_error_trace_shows_the_status_the_exception_and_the_error_message() {
    assert_eq!(
        render(&error_trace(), 100),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  GET  35.3ms  ERROR  3 spans, 1 service  users
users  ▸ GET /users/{id}       500  35.3ms |█████████████████████████|
│  • error: database unavailable
├─ users    load_user                3.0ms | ██                      |
└─ users  ◂ SELECT users     ERROR  30.0ms |   █████████████████████ |
      • exception: connection reset by peer  +34.0ms

"
    );
}

#[test]
fn spans_whose_parent_never_arrives_print_as_orphans_under_the_trace() {
    let (builder, out) = console(120);
    let mut console = builder.build();
    console.report(&[
        span(0x2, 0x1, "users", Internal, "load_user", 1_000, 3_000),
        // Their parent 0x4 was never recorded (say, sampled out by a filter).
        span(0x6, 0x5, "users", Internal, "decode", 2_100, 100),
        span(0x5, 0x4, "users", Internal, "cache.get", 2_000, 500),
        span(0x1, 0, "users", Server, "GET /users/{id}", 0, 5_000)
            .attr("http.response.status_code", 404),
    ]);
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  GET /users/{id}  5.0ms  OK  1 orphan  4 spans, 1 service  users
users  ▸ GET /users/{id}        404    5.0ms |██████████████████████████████|
└─ users    load_user                  3.0ms |      ██████████████████      |
? parent 0000000000000004 not received (orphans)
└─ users    cache.get                500.0µs |            ███               |
   └─ users    decode                100.0µs |             █                |

"
    );
}

#[test]
fn spans_arriving_after_their_trace_printed_print_as_a_late_addendum() {
    let clock = FakeClock::new();
    let (builder, out) = console(100);
    let mut console = builder.clock(clock.source()).build();
    console.report(&[
        span(0x2, 0x1, "worker", Internal, "enqueue", 500, 1_000),
        span(0x1, 0, "worker", Server, "POST /jobs", 0, 2_000),
    ]);
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  POST /jobs  2.0ms  OK  2 spans, 1 service  worker
worker  ▸ POST /jobs     2.0ms |█████████████████████████|
└─ worker    enqueue     1.0ms |      █████████████      |

"
    );
    // A task spawned by the request outlives it; its children close first.
    console.report(&[span(
        0x4,
        0x3,
        "worker",
        Internal,
        "send_email",
        9_000,
        40_000,
    )]);
    clock.advance(Duration::from_millis(100));
    console.tick();
    console.report(&[
        span(0x3, 0x1, "worker", Consumer, "job.run", 8_000, 42_000).event("retry", 20_000, vec![]),
    ]);
    clock.advance(Duration::from_millis(99));
    console.tick();
    assert_eq!(
        out.take(),
        "",
        "late spans gather for the grace period after the first of them"
    );
    clock.advance(Duration::from_millis(1));
    console.tick();
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  late  job.run  42.0ms  OK  2 spans, 1 service  worker
↑ under parent 0000000000000001
└─ worker  ◃ job.run        42.0ms |█████████████████████████|
   │  • retry  +20.0ms
   └─ worker    send_email  40.0ms | ███████████████████████ |

"
    );
    let stats = console.stats();
    assert_eq!(stats.late_spans, 2);
    assert_eq!(stats.traces_printed, 2);
}

#[test]
fn events_print_under_their_span_with_offsets_from_the_trace_start() {
    let spans = vec![
        span(0x1, 0, "shop", Server, "POST /cart", 0, 12_000)
            .attr("http.route", "/cart")
            .attr("http.response.status_code", 201)
            .event("request body parsed", 150, vec![])
            .event("cart saved", 11_800, vec![KeyValue::new("items", 3)]),
        span(0x2, 0x1, "shop", Internal, "validate", 200, 800).event(
            "rule \"max items\" passed",
            900,
            vec![],
        ),
        span(
            0x3,
            0x1,
            "shop",
            Producer,
            "cart.updated publish",
            9_000,
            2_000,
        )
        .event("sent", 10_950, vec![]),
        span(0x4, 0x1, "shop", Client, "GET", 1_100, 7_000)
            .attr("http.route", "/stock")
            .attr("http.response.status_code", 429),
    ];
    assert_eq!(
        render(&spans, 100),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736  POST /cart  12.0ms  OK  4 spans, 1 service  shop
shop  ▸ POST /cart               201   12.0ms |█████████████████████████|
│  • request body parsed  +150.0µs
│  • cart saved  +11.8ms
├─ shop    validate                   800.0µs |██                       |
│     • rule \"max items\" passed  +900.0µs
├─ shop  ◂ GET /stock            429    7.0ms |  ███████████████        |
└─ shop  ▹ cart.updated publish         2.0ms |                   ████  |
      • sent  +11.0ms

"
    );
}
