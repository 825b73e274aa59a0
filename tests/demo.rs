//! `cargo run --example demo` runs to completion and prints one tree per request, with the
//! three services in their places.

#![cfg(feature = "console")]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The demo binary `cargo test` built next to this test (`target/<profile>/examples/demo`).
fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let demo = profile_dir
        .join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    assert!(
        demo.exists(),
        "{} not built (cargo test builds examples)",
        demo.display()
    );
    demo
}

/// One printed trace: its header and its tree lines.
struct Trace<'a> {
    header: &'a str,
    lines: Vec<&'a str>,
}

fn traces(output: &str) -> Vec<Trace<'_>> {
    let mut traces = Vec::new();
    let mut lines = output.lines().peekable();
    while let Some(line) = lines.next() {
        if !line.starts_with("trace ") {
            continue;
        }
        let mut tree = Vec::new();
        while let Some(next) = lines.peek() {
            if next.is_empty() || next.starts_with("trace ") {
                break;
            }
            tree.push(lines.next().unwrap());
        }
        traces.push(Trace {
            header: line,
            lines: tree,
        });
    }
    traces
}

/// The index of the first line containing every one of `parts`, after `from`.
fn find(lines: &[&str], from: usize, parts: &[&str]) -> usize {
    (from..lines.len())
        .find(|&i| parts.iter().all(|p| lines[i].contains(p)))
        .unwrap_or_else(|| {
            panic!(
                "no line with {parts:?} after line {from} in:\n{}",
                lines.join("\n")
            )
        })
}

/// The total duration in a header (`trace <id>  <name>  <duration>  <status>  …`), in ms.
fn total_ms(header: &str) -> f64 {
    let field = header.split("  ").nth(2).expect("duration field");
    let (number, scale) = if let Some(ms) = field.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(us) = field.strip_suffix("µs") {
        (us, 0.001)
    } else if let Some(s) = field.strip_suffix('s') {
        (s, 1000.0)
    } else {
        panic!("no duration in {header}")
    };
    number.parse::<f64>().expect("a number") * scale
}

/// Column where the span's name column starts: deeper spans start further right.
fn depth(line: &str) -> usize {
    line.chars()
        .take_while(|c| matches!(c, ' ' | '│' | '├' | '└' | '─'))
        .count()
}

#[test]
fn the_demo_prints_one_tree_per_request_with_three_services_in_place() {
    let started = Instant::now();
    let output = Command::new(demo_binary())
        .env("NO_COLOR", "1")
        .env("COLUMNS", "160")
        .env("RUST_LOG", "info")
        .output()
        .expect("run the demo");
    assert!(output.status.success(), "demo failed: {output:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the demo must exit by itself, quickly"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains('\x1b'), "NO_COLOR: no escape codes");

    let traces = traces(&stderr);
    assert_eq!(traces.len(), 5, "one tree per request:\n{stderr}");
    for trace in &traces {
        assert!(
            trace.header.contains("POST /checkout/{sku}"),
            "{}",
            trace.header
        );
        assert!(
            trace.header.contains("7 spans, 3 services"),
            "{}",
            trace.header
        );
        assert!(
            trace.header.contains("checkout → inventory, payment"),
            "{}",
            trace.header
        );

        let lines = &trace.lines;
        let root = find(lines, 0, &["checkout", "▸ POST /checkout/{sku}"]);
        assert_eq!(root, 0, "checkout's server span is the root");
        let inventory_call = find(lines, root, &["checkout", "◂ GET"]);
        let inventory = find(lines, inventory_call, &["inventory", "⇠▸ GET /items/{sku}"]);
        assert_eq!(inventory, inventory_call + 1);
        assert!(depth(lines[inventory]) > depth(lines[inventory_call]));
        let payment_call = find(lines, root, &["checkout", "◂ payment.Pay/Charge"]);
        let payment = find(lines, payment_call, &["payment", "⇠▸ payment.Pay/Charge"]);
        assert!(depth(lines[payment]) > depth(lines[payment_call]));
        assert!(depth(lines[payment_call]) > depth(lines[root]));
    }

    let ok = traces
        .iter()
        .filter(|t| t.header.contains("  OK  "))
        .count();
    let failed: Vec<_> = traces
        .iter()
        .filter(|t| t.header.contains("  ERROR  "))
        .collect();
    assert_eq!((ok, failed.len()), (4, 1));
    let failed = &failed[0].lines;
    assert!(failed[0].contains(" 500 "), "{}", failed[0]);
    let charge = find(
        failed,
        0,
        &["payment", "⇠▸ payment.Pay/Charge", "UNAVAILABLE"],
    );
    find(failed, charge, &["exception: gateway timeout"]);

    // Requests go one after the other, so their trees print in order: the third order's
    // inventory lookup sleeps 300 ms, the fourth's card is declined.
    assert!(total_ms(traces[2].header) >= 300.0, "{}", traces[2].header);
    assert!(
        traces[3].header.contains("  ERROR  "),
        "{}",
        traces[3].header
    );

    assert!(stderr.contains("summary"), "the summary prints at exit");
    let summary_row = stderr
        .lines()
        .find(|l| {
            l.starts_with("checkout") && l.contains("POST /checkout/{sku}") && l.contains("server")
        })
        .expect("summary row for checkout");
    let counts: Vec<&str> = summary_row.split_whitespace().collect();
    assert!(
        counts.windows(2).any(|w| w == ["5", "1"]),
        "5 traces, 1 error: {summary_row}"
    );
}
