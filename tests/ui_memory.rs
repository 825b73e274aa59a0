//! The trace viewer's byte bound against the heap really in use, measured by a counting
//! global allocator: the viewer's count covers every byte it holds, and under a recorded
//! load the heap stays under the bound plus a fixed allowance for the recorder.
//!
//! Its own test binary because it measures the heap with a counting global allocator.
#![cfg(feature = "ui")]

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use tracewire::context::TraceId;
use tracewire::record::{Recorder, SpanRecord};
use tracewire::report::{InMemoryReporter, Reporter};
use tracewire::ui::Viewer;
use tracing_subscriber::layer::SubscriberExt;

mod heap;

use heap::{Counting, LIVE, PEAK};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests measure the same global heap: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn viewer(bound: usize) -> Viewer {
    Viewer::builder()
        .addr(([127, 0, 0, 1], 0).into())
        .max_traces(usize::MAX)
        .max_bytes(bound)
        .start()
        .expect("start the viewer")
}

/// Records one trace of 5 spans as `examples/ui_load.rs` does: a server root, a client
/// call, and internal spans with a few attributes, one of them `payload` bytes long.
fn record_trace(order: u64, body: &str) {
    let root = tracing::info_span!("GET /items/{id}", otel.kind = "server", http.request.method = "GET", url.path = %format_args!("/items/{order}"), http.response.status_code = 200).entered();
    tracing::info_span!("load", id = order, body = %body).in_scope(|| {
        tracing::info_span!("GET", otel.kind = "client", server.address = "inventory")
            .in_scope(|| {});
        tracing::info_span!("cache", hit = order.is_multiple_of(2)).in_scope(|| {});
    });
    tracing::info_span!("render").in_scope(|| {});
    drop(root);
}

/// 100 real recorded traces of 5 spans, to copy under new trace ids.
fn recorded_traces(payload: usize) -> Vec<SpanRecord> {
    let spans = InMemoryReporter::new();
    let (recorder, guard) = Recorder::builder()
        .service_name("load")
        .reporter(spans.clone())
        .build();
    let body = "x".repeat(payload);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(recorder), || {
        for order in 0..100 {
            record_trace(order, &body);
        }
    });
    guard.flush().expect("flush");
    let spans = spans.spans();
    assert_eq!(spans.len(), 500);
    spans
}

/// `template` with its trace ids moved to `batch`'s own.
fn renumbered(template: &[SpanRecord], batch: u64) -> Vec<SpanRecord> {
    template
        .iter()
        .map(|span| {
            let mut span = span.clone();
            let id = u128::from_be_bytes(span.span_context.trace_id.to_bytes());
            span.span_context.trace_id = TraceId::from(id ^ (u128::from(batch) << 64));
            span
        })
        .collect()
}

/// Batches of recorded spans straight into the viewer's reporter: at every point between
/// batches, the heap the viewer adds is no more than it counts, and the count no more than
/// the bound; at the end the count is not far above the heap (the bound is not wasted).
fn count_covers_the_heap(bound: usize, payload: usize) {
    let template = recorded_traces(payload);
    let viewer = viewer(bound);
    let mut reporter = viewer.reporter();
    let baseline = live();
    PEAK.store(baseline, Ordering::Relaxed);
    let mut largest_batch = 0;
    for batch in 1..=200 {
        let spans = renumbered(&template, batch);
        let before = live();
        reporter.report(&spans);
        largest_batch = largest_batch.max(before - baseline);
        drop(spans);
        let held = live().saturating_sub(baseline);
        let stats = viewer.stats();
        assert!(stats.bytes_held <= bound / 3 * 2, "{stats:?}");
        assert!(
            held <= stats.bytes_held,
            "after batch {batch}: the viewer adds {held} bytes to the heap and counts {}",
            stats.bytes_held
        );
    }
    let held = live().saturating_sub(baseline);
    let stats = viewer.stats();
    eprintln!(
        "bound {bound}, payload {payload}: heap {held}, counted {}, peak {} over the baseline; {stats:?}",
        stats.bytes_held,
        PEAK.load(Ordering::Relaxed) - baseline
    );
    assert!(stats.traces_dropped > 0, "the bound was reached: {stats:?}");
    assert!(
        stats.bytes_held <= held + held / 2,
        "heap {held}, counted {}: the count wastes the bound",
        stats.bytes_held
    );
    // At its peak the heap held the bound and a batch twice (the caller's, and its clone
    // in the assembler before the oldest traces went).
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    assert!(peak <= bound + 2 * largest_batch.max(1), "peak {peak}");
}

#[test]
fn the_count_covers_what_the_viewer_holds() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    count_covers_the_heap(4 * MIB, 0);
}

#[test]
fn the_count_covers_what_the_viewer_holds_with_large_attributes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    count_covers_the_heap(8 * MIB, 4096);
}

/// The recorder's part of the heap that is not the viewer's: its queue and pools of spans,
/// filled as a load goes on.
const RECORDER_ALLOWANCE: usize = 2 * MIB;

#[test]
fn under_a_recorded_load_the_heap_stays_within_the_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bound = 4 * MIB;
    let viewer = viewer(bound);
    let (recorder, guard) = Recorder::builder()
        .service_name("load")
        .reporter(viewer.reporter())
        .build();
    let baseline;
    {
        let _default =
            tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder));
        // One trace first, so that lazily built parts (thread-locals, the first batch) are
        // in the baseline.
        record_trace(0, "");
        guard.flush().expect("flush");
        baseline = live();
        PEAK.store(baseline, Ordering::Relaxed);
        for order in 1..=20_000 {
            record_trace(order, "");
            if order.is_multiple_of(1000) {
                // Lets the recorder keep up, so that no span is dropped on its side.
                guard.flush().expect("flush");
            }
        }
        guard.flush().expect("flush");
    }
    let stats = viewer.stats();
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    eprintln!("recorded load, bound {bound}: peak {peak} over the baseline; {stats:?}");
    assert_eq!(stats.spans_received_local, 20_001 * 5, "{stats:?}");
    assert!(stats.traces_dropped > 0, "the bound was reached: {stats:?}");
    assert!(
        peak <= bound + RECORDER_ALLOWANCE,
        "peak {peak} bytes over the baseline, bound {bound}"
    );
}
