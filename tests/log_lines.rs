//! Log lines name their trace whatever the log level: under `RUST_LOG=warn`, a warning inside
//! an `info` request span (which the log filter leaves out) still carries that span's ids.
//!
//! `dev::init` installs the global subscriber, so the check runs in a child process of this
//! test binary, with its own environment, and the parent reads what it printed.

#![cfg(feature = "console")]

use std::process::Command;

const CHILD: &str = "TRACEWIRE_LOG_LINES_CHILD";

#[test]
fn child_process_entry() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let guard = tracewire::dev::try_init("log-lines").expect("the first install");
    let request = tracing::info_span!("request");
    request.in_scope(|| {
        tracing::info!("quiet");
        tracing::warn!("loud");
        // A span the log filter lets through keeps its fields in the line.
        tracing::warn_span!("step", user = 7).in_scope(|| tracing::warn!("inner"));
        let cx = tracewire::record::SpanExt::span_context(&tracing::Span::current())
            .expect("the request span is recorded");
        println!("IDS trace_id={} span_id={}", cx.trace_id, cx.span_id);
    });
    // An event given its span explicitly, outside that span's scope.
    tracing::warn!(parent: &request, "explicit");
    drop(request);
    guard.flush().unwrap();
}

/// Runs the child under `RUST_LOG=warn` and `format` (`TRACEWIRE_LOG_FORMAT`): the ids it
/// printed (`trace_id=… span_id=…`) and its stderr.
fn run_child(format: &str) -> (String, String) {
    run_child_with(format, "warn")
}

/// [`run_child`] under `rust_log`.
fn run_child_with(format: &str, rust_log: &str) -> (String, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1")
        .env("TRACEWIRE_LOG_FORMAT", format)
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let ids = stdout
        .lines()
        .find_map(|l| l.split("IDS ").nth(1))
        .unwrap_or_else(|| panic!("no ids in {stdout}"))
        .to_owned();
    (ids, stderr)
}

#[test]
fn a_warning_names_its_trace_under_a_span_the_log_filter_leaves_out() {
    let (ids, stderr) = run_child("text");
    let ids = ids.as_str();
    // The console tree still shows the info event; no log line does.
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains(" INFO ") && l.contains("quiet")),
        "RUST_LOG=warn quiets info:\n{stderr}"
    );
    assert!(
        stderr.contains("• quiet"),
        "the trace tree keeps it:\n{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains(" WARN ") && l.contains("loud"))
        .unwrap_or_else(|| panic!("no warning in {stderr}"));
    assert!(line.ends_with(ids), "{line}\nexpected {ids}");
    let inner = stderr
        .lines()
        .find(|l| l.contains(" WARN ") && l.contains("inner"))
        .unwrap_or_else(|| panic!("no inner warning in {stderr}"));
    assert!(inner.contains("step{user=7}:"), "{inner}");
    // The same for an event whose span is given explicitly (`parent: &span`).
    let explicit = stderr
        .lines()
        .find(|l| l.contains(" WARN ") && l.contains("explicit"))
        .unwrap_or_else(|| panic!("no explicit warning in {stderr}"));
    assert!(explicit.ends_with(ids), "{explicit}\nexpected {ids}");
}

/// The same under `TRACEWIRE_LOG_FORMAT=json`: each line is a JSON object, and the warning's
/// carries the ids of its span as members.
#[test]
fn json_lines_name_their_trace_too() {
    let (ids, stderr) = run_child("json");
    let (trace_id, span_id) = ids
        .strip_prefix("trace_id=")
        .and_then(|rest| rest.split_once(" span_id="))
        .unwrap_or_else(|| panic!("ids as printed: {ids}"));
    let line = stderr
        .lines()
        .find(|l| l.starts_with('{') && l.contains("\"loud\""))
        .unwrap_or_else(|| panic!("no JSON warning in {stderr}"));
    assert!(line.ends_with('}'), "{line}");
    assert!(line.contains("\"level\":\"WARN\""), "{line}");
    assert!(
        line.contains(&format!("\"trace_id\":\"{trace_id}\"")),
        "{line}"
    );
    assert!(
        line.contains(&format!("\"span_id\":\"{span_id}\"")),
        "{line}"
    );
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"quiet\"")),
        "RUST_LOG=warn quiets info:\n{stderr}"
    );
}

/// `RUST_LOG`'s span directives select log lines too: under `warn,[request]=info`, the info
/// event inside the `request` span is logged.
#[test]
fn span_directives_of_rust_log_select_log_lines() {
    let (ids, stderr) = run_child_with("text", "warn,[request]=info");
    let line = stderr
        .lines()
        .find(|l| l.contains(" INFO ") && l.contains("quiet"))
        .unwrap_or_else(|| panic!("no info line inside `request`:\n{stderr}"));
    assert!(line.ends_with(&ids), "{line}\nexpected {ids}");
}
