//! Output never gets wider than the configured width, whatever the tree's shape, and
//! nothing panics at tiny or huge widths.

#![cfg(feature = "console")]

mod console_support;

use console_support::*;
use tracewire::record::SpanRecord;
use tracewire::span::{KeyValue, SpanKind};

const SERVICES: [&str; 4] = [
    "gateway",
    "inventory-service-with-a-long-name",
    "db",
    "payment",
];

/// A root with 200 children, some with events and statuses.
fn wide() -> Vec<SpanRecord> {
    let mut spans: Vec<_> = (0..200u64)
        .map(|i| {
            let s = span(
                0x100 + i,
                0x1,
                SERVICES[i as usize % 4],
                if i % 3 == 0 {
                    SpanKind::Client
                } else {
                    SpanKind::Internal
                },
                &format!("operation number {i} with a rather long descriptive name"),
                i * 400,
                300 + i * 7,
            );
            match i % 5 {
                0 => s
                    .attr("http.response.status_code", 503)
                    .error("upstream down"),
                1 => s.event(
                    "exception",
                    i * 400 + 10,
                    vec![KeyValue::new("exception.message", "x".repeat(300))],
                ),
                _ => s,
            }
        })
        .collect();
    spans.push(span(
        0x1,
        0,
        "gateway",
        SpanKind::Server,
        "GET /wide",
        0,
        90_000,
    ));
    spans
}

/// A chain 300 spans deep.
fn deep() -> Vec<SpanRecord> {
    (1..=300u64)
        .map(|i| {
            span(
                i,
                i - 1,
                SERVICES[i as usize % 4],
                SpanKind::Internal,
                &format!("level {i}"),
                i,
                1_000 - i,
            )
            .event("tick", i + 1, vec![])
        })
        .collect()
}

#[test]
fn a_wide_tree_fits_every_width() {
    let spans = wide();
    for width in [1, 2, 10, 20, 40, 80, 120, 200] {
        let out = render(&spans, width);
        assert_fits(&out, width);
        // Header, 201 spans, 40 exception lines, 40 error lines, blank line.
        assert_eq!(out.lines().count(), 1 + 201 + 40 + 40 + 1, "width {width}");
    }
}

#[test]
fn a_deep_tree_fits_every_width() {
    let spans = deep();
    for width in [1, 2, 10, 20, 40, 80, 120, 200] {
        let out = render(&spans, width);
        assert_fits(&out, width);
        assert_eq!(out.lines().count(), 1 + 300 + 300 + 1, "width {width}");
    }
}

#[test]
fn huge_widths_pad_nothing_beyond_the_content() {
    let out = render(&deep(), 100_000);
    assert_fits(&out, 100_000);
    let longest = out.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest < 2_000, "{longest}");
}

#[test]
fn deep_levels_are_compressed_with_an_ellipsis() {
    let spans: Vec<_> = deep()
        .into_iter()
        .take(12)
        .map(|mut s| {
            s.events.clear();
            s.service_name = "svc".into();
            s
        })
        .collect();
    assert_eq!(
        render(&spans, 40),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736…
svc    level 1                   999.0µs
└─ svc    level 2                998.0µs
   └─ svc    level 3             997.0µs
      └─ svc    level 4          996.0µs
         └─ svc    level 5       995.0µs
            └─ svc    level 6    994.0µs
…           └─ svc    level 7    993.0µs
…           └─ svc    level 8    992.0µs
…           └─ svc    level 9    991.0µs
…           └─ svc    level 10   990.0µs
…           └─ svc    level 11   989.0µs
…           └─ svc    level 12   988.0µs

"
    );
}

#[test]
fn long_names_are_cut_and_control_characters_cannot_break_lines() {
    let spans = vec![span(
        0x1,
        0,
        "svc",
        SpanKind::Server,
        "GET /a\nfake line\u{1b}[31m and a name much longer than the line can hold",
        0,
        1_000,
    )];
    let out = render(&spans, 60);
    assert_fits(&out, 60);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(!out.contains('\u{1b}'));
    let row = out.lines().nth(1).unwrap();
    assert!(
        row.contains("▸ GET /a fake line [31m and a name…  1.0ms"),
        "{out}"
    );
}

/// Terminal columns of `s` for the characters this test uses: CJK ideographs, kana and
/// emoji take two, combining marks none, the rest one. (Written out, rather than
/// `console_support::columns`, so that the test does not measure with the code it checks.)
fn cjk_columns(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            '\u{300}'..='\u{36f}' => 0,
            '\u{3040}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}' | '\u{1f300}'..='\u{1f64f}' => 2,
            _ => 1,
        })
        .sum()
}

#[test]
fn wide_characters_take_two_columns_and_combining_marks_none() {
    let spans = vec![
        span(
            0x1,
            0,
            "注文サービス",
            SpanKind::Server,
            "GET /注文",
            0,
            1_000,
        ),
        span(
            0x2,
            0x1,
            "注文サービス",
            SpanKind::Client,
            "在庫を確認する🎉",
            100,
            500,
        ),
        span(
            0x3,
            0x1,
            "cafe\u{301}",
            SpanKind::Internal,
            "re\u{301}sume\u{301}",
            200,
            300,
        ),
        span(0x4, 0x1, "db", SpanKind::Client, "SELECT", 300, 200),
    ];
    for width in [120, 60, 40] {
        let out = render(&spans, width);
        for line in out.lines() {
            assert!(
                cjk_columns(line) <= width,
                "{} columns at {width}:\n{out}",
                cjk_columns(line)
            );
        }
        // The bars line up: every row's bar starts in the same column.
        let bars: Vec<usize> = out
            .lines()
            .skip(1)
            .filter_map(|line| line.find(" |").map(|at| cjk_columns(&line[..at])))
            .collect();
        assert!(
            bars.windows(2).all(|w| w[0] == w[1]),
            "bars at columns {bars:?} at {width}:\n{out}"
        );
    }
}
