//! No input makes the console panic or write a line wider than its width: arbitrary ids
//! (duplicates, cycles, self-parents), times running backwards, hostile names, any width.

#![cfg(feature = "console")]

mod console_support;

use std::time::{Duration, SystemTime};

use console_support::*;
use proptest::prelude::*;
use tracewire::record::SpanRecord;
use tracewire::report::Reporter;
use tracewire::span::{KeyValue, SpanKind};

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
                    s.events.push(tracewire::span::Event::new(
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

/// Unicode format characters (category Cf): bidi embeddings, overrides and isolates,
/// zero-width characters, the BOM, the Arabic letter mark, the soft hyphen, word joiner.
const FORMAT: &[char] = &[
    '\u{202a}',
    '\u{202b}',
    '\u{202c}',
    '\u{202d}',
    '\u{202e}',
    '\u{2066}',
    '\u{2067}',
    '\u{2068}',
    '\u{2069}',
    '\u{200b}',
    '\u{200c}',
    '\u{200d}',
    '\u{200e}',
    '\u{200f}',
    '\u{feff}',
    '\u{061c}',
    '\u{00ad}',
    '\u{2060}',
    '\u{206a}',
    '\u{e0001}',
];

fn has_format_character(s: &str) -> bool {
    s.chars().any(|c| FORMAT.contains(&c))
}

#[test]
fn bidi_overrides_and_other_format_characters_print_as_spaces() {
    // "evil\u{202e}gpj.exe" shows as "evilexe.jpg" on a terminal that honours the override.
    let s = span(
        0x1,
        0,
        "svc\u{2067}x",
        SpanKind::Server,
        "evil\u{202e}gpj.exe\u{200b}",
        0,
        10,
    )
    .error("bad\u{2066}\u{feff}thing");
    let out = render(&[s], 120);
    assert!(!has_format_character(&out), "{out:?}");
    assert!(out.contains("evil gpj.exe "), "{out}");
    assert!(out.contains("svc x"), "{out}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_format_character_reaches_the_terminal(
        parts in proptest::collection::vec(("\\PC{0,6}", proptest::sample::select(FORMAT)), 1..6),
        width in 10usize..200,
    ) {
        let name: String = parts.iter().flat_map(|(text, c)| text.chars().chain([*c])).collect();
        let s = span(0x1, 0, &name, SpanKind::Server, &name, 0, 10)
            .attr("http.route", name.clone())
            .error("x");
        let mut s = s;
        s.events.push(tracewire::span::Event::new(
            "exception",
            SystemTime::UNIX_EPOCH,
            vec![KeyValue::new("exception.message", name.clone())],
            0,
        ));
        let out = render(&[s], width);
        prop_assert!(!has_format_character(&out), "{:?}", out);
        assert_fits(&out, width);
    }

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
