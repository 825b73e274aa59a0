//! No input makes the console panic or write a line wider than its width: arbitrary ids
//! (duplicates, cycles, self-parents), times running backwards, hostile names, any width.

#![cfg(feature = "console")]

mod console_support;

use std::time::{Duration, SystemTime};

use console_support::*;
use proptest::prelude::*;
use tracewire::record::data::{KeyValue, SpanKind};
use tracewire::record::SpanRecord;
use tracewire::report::Reporter;

fn any_span() -> impl Strategy<Value = SpanRecord> {
    (
        (0u64..12, 0u64..12, any::<bool>(), 0u128..3),
        (
            any::<u32>(),
            any::<i32>(),
            "\\PC{0,30}|[\\x00-\\x1f]{0,5}",
            0usize..5,
        ),
        (
            0usize..5,
            proptest::option::of(any::<i64>()),
            proptest::option::of(-2i64..20),
            0usize..4,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(
                (id, parent, remote, trace),
                (start, len, name, service),
                (kind, http, grpc, events),
                error,
            )| {
                let kind = [
                    SpanKind::Server,
                    SpanKind::Client,
                    SpanKind::Internal,
                    SpanKind::Producer,
                    SpanKind::Consumer,
                ][kind]
                    .clone();
                let service = ["a", "service-b", "", "ünïcødé", "x\ny"][service];
                let mut s =
                    span(id, parent, service, kind, &name, u64::from(start), 0).trace(trace + 1);
                s.end_time = if len >= 0 {
                    s.start_time + Duration::from_micros(len as u64)
                } else {
                    s.start_time - Duration::from_micros(len.unsigned_abs().into())
                };
                s.parent_is_remote = remote;
                if let Some(code) = http {
                    s = s.attr("http.response.status_code", code);
                }
                if let Some(code) = grpc {
                    s = s.attr("rpc.grpc.status_code", code);
                }
                for k in 0..events {
                    let at = if k % 2 == 0 {
                        SystemTime::UNIX_EPOCH
                    } else {
                        s.end_time
                    };
                    s.events.push(tracewire::record::data::Event::new(
                        if k == 0 { "exception" } else { "note" },
                        at,
                        vec![KeyValue::new("exception.message", name.clone())],
                        0,
                    ));
                }
                if error {
                    s = s.error("failed\nbadly");
                }
                s
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn rendering_never_panics_nor_overflows_the_width(
        spans in proptest::collection::vec(any_span(), 0..40),
        width in 0usize..260,
    ) {
        let out = render(&spans, width);
        assert_fits(&out, width.max(1));
    }

    #[test]
    fn assembling_never_panics_and_prints_every_held_span(
        batches in proptest::collection::vec(proptest::collection::vec(any_span(), 0..10), 0..6),
        width in 1usize..200,
    ) {
        let clock = FakeClock::new();
        let (builder, out) = console(width);
        let mut console = builder
            .clock(clock.source())
            .max_spans_per_trace(15)
            .max_traces(2)
            .remember_printed(3)
            .summary(true)
            .build();
        let mut sent = 0;
        for batch in &batches {
            console.report(batch);
            sent += batch.len() as u64;
            clock.advance(Duration::from_millis(150));
            console.tick();
        }
        console.shutdown();
        let stats = console.stats();
        prop_assert_eq!(stats.spans_printed + stats.spans_dropped, sent);
        prop_assert_eq!(stats.spans_held, 0);
        assert_fits(&out.take(), width);
    }
}
