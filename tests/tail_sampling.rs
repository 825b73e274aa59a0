//! Tail sampling keeps every error trace, every slow trace and about the configured ratio of
//! the rest, always whole traces.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracewire::record::data::{InstrumentationScope, SpanKind, Status};
use tracewire::record::sampler::{Sampler, TraceIdRatio};
use tracewire::record::SpanRecord;
use tracewire::report::{InMemoryReporter, Reporter, TailSampler};

const TRACES: usize = 10_000;
const RATIO: f64 = 0.25;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Error,
    Slow,
    Plain,
}

fn span(trace: TraceId, id: u64, parent: u64, ms: u64, status: Status) -> SpanRecord {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    SpanRecord {
        span_context: SpanContext::new(
            trace,
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from(parent),
        parent_is_remote: false,
        name: format!("s{id}").into(),
        kind: SpanKind::Internal,
        start_time: t0,
        end_time: t0 + Duration::from_millis(ms),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        status,
        service_name: Arc::from("svc"),
        scope: InstrumentationScope::builder("test").build(),
    }
}

/// A root with two children; in one trace out of ten a child arrives after the root.
fn trace(rng: &mut fastrand::Rng, kind: Kind) -> (TraceId, Vec<SpanRecord>) {
    let id = TraceId::from(rng.u128(1..));
    let child_status = if kind == Kind::Error {
        Status::error("boom")
    } else {
        Status::Unset
    };
    let root_ms = if kind == Kind::Slow { 2_000 } else { 30 };
    let mut spans = vec![
        span(id, 2, 1, 10, child_status),
        span(id, 3, 1, 10, Status::Unset),
        span(id, 1, 0, root_ms, Status::Unset),
    ];
    if rng.u8(..10) == 0 {
        spans.swap(1, 2);
    }
    (id, spans)
}

#[test]
fn keeps_errors_slow_traces_and_a_ratio_of_the_rest_whole() {
    let mut rng = fastrand::Rng::with_seed(0x7a11);
    let out = InMemoryReporter::new();
    let mut tail = TailSampler::builder(out.clone())
        .slower_than(Duration::from_secs(1))
        .ratio(RATIO)
        .build();
    let counters = tail.counters();

    let mut kinds = HashMap::new();
    let mut all = Vec::new();
    for _ in 0..TRACES {
        let kind = match rng.u8(..100) {
            0..=4 => Kind::Error,
            5..=9 => Kind::Slow,
            _ => Kind::Plain,
        };
        let (id, spans) = trace(&mut rng, kind);
        kinds.insert(id, kind);
        all.push(spans);
    }
    // Interleave traces the way concurrent requests do: up to 8 in flight, their spans
    // mixed, handed over in batches of 100.
    let mut stream = Vec::new();
    for window in all.chunks(8) {
        let mut cursors = vec![0usize; window.len()];
        while cursors.iter().zip(window).any(|(c, t)| *c < t.len()) {
            let i = rng.usize(..window.len());
            if cursors[i] < window[i].len() {
                stream.push(window[i][cursors[i]].clone());
                cursors[i] += 1;
            }
        }
    }
    for batch in stream.chunks(100) {
        tail.report(batch);
    }
    tail.shutdown();

    let mut kept: HashMap<TraceId, usize> = HashMap::new();
    for span in out.spans() {
        *kept.entry(span.trace_id()).or_default() += 1;
    }
    assert!(kept.values().all(|&n| n == 3), "whole traces only");

    let ratio = TraceIdRatio::new(RATIO);
    let (mut plain, mut plain_kept) = (0usize, 0usize);
    for (id, kind) in &kinds {
        let is_kept = kept.contains_key(id);
        match kind {
            Kind::Error => assert!(is_kept, "error trace {id} dropped"),
            Kind::Slow => assert!(is_kept, "slow trace {id} dropped"),
            Kind::Plain => {
                plain += 1;
                plain_kept += usize::from(is_kept);
                // Decided by trace id alone, as the head sampler would.
                let by_id = ratio.should_sample(None, *id, "", &SpanKind::Internal);
                assert_eq!(is_kept, by_id, "trace {id}");
            }
        }
    }
    // Binomial: sigma = sqrt(p(1-p)/n) is about 0.0046 for 9,000 traces; allow 5 sigma.
    let share = plain_kept as f64 / plain as f64;
    let sigma = (RATIO * (1.0 - RATIO) / plain as f64).sqrt();
    assert!(
        (share - RATIO).abs() < 5.0 * sigma,
        "kept {share:.4} of plain traces, wanted {RATIO} ± {:.4}",
        5.0 * sigma
    );

    let stats = counters.stats();
    assert_eq!(stats.traces_kept as usize, kept.len());
    assert_eq!((stats.traces_kept + stats.traces_dropped) as usize, TRACES);
    assert_eq!(
        (stats.spans_kept + stats.spans_dropped) as usize,
        3 * TRACES
    );
    assert!(stats.late_spans > 0, "some children came after their root");
    assert_eq!(stats.traces_evicted, 0);
    assert_eq!(stats.traces_timed_out, 0);
}

#[test]
fn unfinished_traces_are_decided_after_the_wait() {
    let out = InMemoryReporter::new();
    let mut tail = TailSampler::builder(out.clone())
        .ratio(0.0)
        .decision_wait(Duration::ZERO)
        .build();
    let id = TraceId::from(7u128);
    // The root never comes: once the wait (zero here) has passed, the children are decided
    // with what they show, an error.
    tail.report(&[
        span(id, 2, 1, 1, Status::error("boom")),
        span(id, 3, 1, 1, Status::Unset),
    ]);
    tail.tick();
    assert_eq!(out.len(), 2);
    // A late root follows the decision.
    tail.report(&[span(id, 1, 0, 5, Status::Unset)]);
    assert_eq!(out.len(), 3);
    let stats = tail.counters().stats();
    assert_eq!((stats.traces_timed_out, stats.late_spans), (1, 1));
}
