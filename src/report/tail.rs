//! Tail sampling: decide whether to keep a trace once it has finished, knowing how it went.
//!
//! [`TailSampler`] wraps another reporter. It holds each trace's spans until the trace's
//! local root finishes (a span whose parent is invalid or remote), then decides, for the
//! whole trace at once, and hands the kept traces to the inner reporter. It keeps:
//!
//! - every trace with a span whose status is Error;
//! - every trace slower than a threshold (from its earliest start to its latest end);
//! - a share of the rest, chosen by trace id with the algorithm of
//!   [`TraceIdRatio`], so every process with the same ratio keeps the same traces.
//!
//! A trace whose local root never arrives (it was dropped, sampled elsewhere, or is still
//! running) is decided with the spans it has after a decision timeout. Spans arriving after
//! their trace was decided follow the decision, which is remembered for a bounded number of
//! recent traces. Memory is bounded: past the most traces or spans buffered, the oldest
//! trace is decided early; every such early decision is counted.
//!
//! ```
//! use std::time::Duration;
//! use tracewire::record::Recorder;
//! use tracewire::report::{InMemoryReporter, TailSampler};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let spans = InMemoryReporter::new();
//! let tail = TailSampler::builder(spans.clone())
//!     .slower_than(Duration::from_secs(1))
//!     .ratio(0.0)
//!     .build();
//! let counters = tail.counters();
//! let (layer, guard) = Recorder::builder().reporter(tail).build();
//!
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     tracing::info_span!("fast and fine").in_scope(|| {});
//!     tracing::info_span!("failed", otel.status_code = "error").in_scope(|| {
//!         tracing::info_span!("child").in_scope(|| {});
//!     });
//! });
//! guard.flush().unwrap();
//!
//! let kept: Vec<_> = spans.spans().into_iter().map(|s| s.name).collect();
//! assert_eq!(kept, ["child", "failed"]);
//! assert_eq!(counters.stats().traces_kept, 1);
//! assert_eq!(counters.stats().traces_dropped, 1);
//! ```
//!
//! Limits worth knowing:
//! - With several services in one process, each service's entry span is a local root; the
//!   first to finish decides the trace, and spans of the others follow that decision.
//! - The ratio is taken over the traces the head sampler let through; with the same trace-id
//!   algorithm on both sides, a tail ratio `r` after a head ratio `h` keeps `min(r, h)` of
//!   the traces, not `r × h`.
//! - [`Reporter::flush`] flushes the inner reporter but does not decide unfinished traces;
//!   [`Reporter::shutdown`] decides them all.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::{SpanId, TraceId};
use crate::report::{Outcomes, Reporter};
use crate::sampler::{Sampler, TraceIdRatio};
use crate::span::{SpanKind, SpanRecord, Status};

/// A reporter that forwards whole traces, keeping errors, slow traces and a ratio of the rest.
/// See the [module docs](crate::report::tail).
pub struct TailSampler<R: Reporter> {
    inner: R,
    config: TailConfig,
    ratio: TraceIdRatio,
    pending: HashMap<TraceId, Pending>,
    /// Pending traces oldest first, as `(trace, generation)`; entries whose generation no
    /// longer matches a pending trace are stale and skipped.
    order: VecDeque<(TraceId, u64)>,
    generation: u64,
    buffered_spans: usize,
    decided: Decided,
    counters: TailCounters,
    out: Vec<SpanRecord>,
    /// Since the pipeline last asked (`take_outcomes`): spans handed to the inner reporter,
    /// and spans left out.
    forwarded: u64,
    sampled_out: u64,
}

#[derive(Clone, Debug)]
struct TailConfig {
    keep_errors: bool,
    slower_than: Option<Duration>,
    decision_wait: Duration,
    max_traces: usize,
    max_spans: usize,
    max_decided: usize,
}

struct Pending {
    spans: Vec<SpanRecord>,
    first_seen: Instant,
    generation: u64,
}

/// Builds a [`TailSampler`]; see [`TailSampler::builder`].
#[must_use = "a builder does nothing until `build`"]
pub struct TailSamplerBuilder<R: Reporter> {
    inner: R,
    config: TailConfig,
    ratio: f64,
}

impl<R: Reporter> TailSampler<R> {
    /// A tail sampler with the defaults: keep error traces, traces slower than 1 s and 10 % of
    /// the rest; decide a trace 30 s after its first span if its root has not finished;
    /// buffer at most 10 000 traces and 100 000 spans; remember 100 000 decisions.
    pub fn new(inner: R) -> Self {
        TailSampler::builder(inner).build()
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder(inner: R) -> TailSamplerBuilder<R> {
        TailSamplerBuilder {
            inner,
            config: TailConfig {
                keep_errors: true,
                slower_than: Some(Duration::from_secs(1)),
                decision_wait: Duration::from_secs(30),
                max_traces: 10_000,
                max_spans: 100_000,
                max_decided: 100_000,
            },
            ratio: 0.1,
        }
    }

    /// A handle on the counters, readable after the sampler moved into the recorder.
    pub fn counters(&self) -> TailCounters {
        self.counters.clone()
    }

    /// The wrapped reporter.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    fn push(&mut self, span: &SpanRecord, now: Instant) {
        let trace_id = span.trace_id();
        if let Some(keep) = self.decided.get(trace_id) {
            self.forward_late(span, keep);
            return;
        }
        if !self.pending.contains_key(&trace_id) {
            while self.pending.len() >= self.config.max_traces.max(1) {
                if !self.evict_oldest() {
                    break;
                }
            }
            self.generation += 1;
            self.pending.insert(
                trace_id,
                Pending {
                    spans: Vec::new(),
                    first_seen: now,
                    generation: self.generation,
                },
            );
            self.order.push_back((trace_id, self.generation));
        }
        if let Some(pending) = self.pending.get_mut(&trace_id) {
            pending.spans.push(span.clone());
            self.buffered_spans += 1;
        }
        if is_local_root(span) {
            self.decide(trace_id, false);
        }
        while self.buffered_spans > self.config.max_spans.max(1) {
            if !self.evict_oldest() {
                break;
            }
        }
        self.compact_order();
    }

    fn forward_late(&mut self, span: &SpanRecord, keep: bool) {
        if keep {
            self.counters
                .inner
                .spans_kept
                .fetch_add(1, Ordering::Relaxed);
            self.out.push(span.clone());
        } else {
            self.counters
                .inner
                .spans_dropped
                .fetch_add(1, Ordering::Relaxed);
            self.sampled_out += 1;
        }
        self.counters
            .inner
            .late_spans
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Decides the oldest pending trace now, to make room. False when none is pending.
    fn evict_oldest(&mut self) -> bool {
        while let Some((trace_id, generation)) = self.order.pop_front() {
            if self.pending.get(&trace_id).map(|p| p.generation) == Some(generation) {
                self.decide(trace_id, true);
                return true;
            }
        }
        false
    }

    /// Decides every trace pending since before `now - decision_wait`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(trace_id, generation)) = self.order.front() {
            match self.pending.get(&trace_id) {
                Some(p) if p.generation == generation => {
                    if now.saturating_duration_since(p.first_seen) < self.config.decision_wait {
                        break;
                    }
                    self.order.pop_front();
                    self.counters
                        .inner
                        .traces_timed_out
                        .fetch_add(1, Ordering::Relaxed);
                    self.decide(trace_id, false);
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Drops stale entries from `order` when they outnumber the live ones, so it stays
    /// within twice the pending traces.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.order
                .retain(|(id, g)| pending.get(id).map(|p| p.generation) == Some(*g));
        }
    }

    fn decide(&mut self, trace_id: TraceId, evicted: bool) {
        let Some(pending) = self.pending.remove(&trace_id) else {
            return;
        };
        let spans = pending.spans;
        self.buffered_spans -= spans.len();
        if evicted {
            self.counters
                .inner
                .traces_evicted
                .fetch_add(1, Ordering::Relaxed);
        }
        let keep = self.keep(trace_id, &spans);
        self.decided.insert(trace_id, keep, self.config.max_decided);
        let c = &self.counters.inner;
        if keep {
            c.traces_kept.fetch_add(1, Ordering::Relaxed);
            c.spans_kept
                .fetch_add(spans.len() as u64, Ordering::Relaxed);
            self.out.extend(spans);
        } else {
            c.traces_dropped.fetch_add(1, Ordering::Relaxed);
            c.spans_dropped
                .fetch_add(spans.len() as u64, Ordering::Relaxed);
            self.sampled_out += spans.len() as u64;
        }
    }

    fn keep(&self, trace_id: TraceId, spans: &[SpanRecord]) -> bool {
        if self.config.keep_errors
            && spans
                .iter()
                .any(|s| matches!(s.status, Status::Error { .. }))
        {
            return true;
        }
        if let Some(threshold) = self.config.slower_than {
            let start = spans.iter().map(|s| s.start_time).min();
            let end = spans.iter().map(|s| s.end_time).max();
            if let (Some(start), Some(end)) = (start, end) {
                if end.duration_since(start).unwrap_or_default() > threshold {
                    return true;
                }
            }
        }
        self.ratio
            .should_sample(None, trace_id, "", &SpanKind::Internal)
    }

    fn forward(&mut self) {
        if !self.out.is_empty() {
            // Counted first: if the inner reporter panics, the pipeline counts the spans it
            // was handing over as lost to the panic.
            self.forwarded += self.out.len() as u64;
            self.inner.report(&self.out);
            self.out.clear();
        }
    }

    #[cfg(test)]
    fn pending_traces(&self) -> usize {
        self.pending.len()
    }
}

fn is_local_root(span: &SpanRecord) -> bool {
    span.parent_span_id == SpanId::INVALID || span.parent_is_remote
}

impl<R: Reporter> Reporter for TailSampler<R> {
    fn report(&mut self, batch: &[SpanRecord]) {
        let now = Instant::now();
        for span in batch {
            self.push(span, now);
        }
        self.expire(now);
        self.forward();
    }

    /// Its rules read names, times and statuses; what it keeps goes to `inner`.
    fn reads_attributes(&self) -> bool {
        self.inner.reads_attributes()
    }

    fn tick(&mut self) {
        self.expire(Instant::now());
        self.forward();
        self.inner.tick();
    }

    fn flush(&mut self) {
        self.forward();
        self.inner.flush();
    }

    fn shutdown(&mut self) {
        while self.evict_oldest() {}
        self.forward();
        self.inner.shutdown();
    }

    /// The spans left out (as [`Drops::tail_sampler`](crate::report::Drops::tail_sampler)),
    /// and what became of those kept: the inner reporter's outcomes, or, when it does not
    /// say, exported once handed to it. Spans still pending a decision count as queued.
    fn take_outcomes(&mut self) -> Option<Outcomes> {
        let mut outcomes = match self.inner.take_outcomes() {
            Some(inner) => inner,
            None => Outcomes::exported(self.forwarded),
        };
        outcomes.dropped.tail_sampler += self.sampled_out;
        self.forwarded = 0;
        self.sampled_out = 0;
        Some(outcomes)
    }
}

impl<R: Reporter> fmt::Debug for TailSampler<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailSampler")
            .field("config", &self.config)
            .field("ratio", &self.ratio.ratio())
            .field("pending_traces", &self.pending.len())
            .field("buffered_spans", &self.buffered_spans)
            .field("stats", &self.counters.stats())
            .finish()
    }
}

impl<R: Reporter> TailSamplerBuilder<R> {
    /// Keep every trace with a span whose status is Error. Default true.
    pub fn keep_errors(mut self, keep: bool) -> Self {
        self.config.keep_errors = keep;
        self
    }

    /// Keep every trace longer than `threshold`, from its earliest span start to its latest
    /// span end. Default 1 s.
    pub fn slower_than(mut self, threshold: Duration) -> Self {
        self.config.slower_than = Some(threshold);
        self
    }

    /// Do not keep traces for being slow.
    pub fn no_latency_rule(mut self) -> Self {
        self.config.slower_than = None;
        self
    }

    /// The share of other traces to keep, `0.0..=1.0`, decided by trace id. Default 0.1.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// How long after its first span a trace whose local root has not finished is decided
    /// anyway. Default 30 s.
    pub fn decision_wait(mut self, wait: Duration) -> Self {
        self.config.decision_wait = wait;
        self
    }

    /// Most traces buffered; beyond it the oldest is decided early. Default 10 000.
    pub fn max_traces(mut self, max: usize) -> Self {
        self.config.max_traces = max;
        self
    }

    /// Most spans buffered; beyond it the oldest traces are decided early. Default 100 000.
    pub fn max_spans(mut self, max: usize) -> Self {
        self.config.max_spans = max;
        self
    }

    /// How many recent decisions are remembered for late spans. Default 100 000.
    pub fn max_decisions_remembered(mut self, max: usize) -> Self {
        self.config.max_decided = max;
        self
    }

    /// The sampler.
    pub fn build(self) -> TailSampler<R> {
        TailSampler {
            inner: self.inner,
            config: self.config,
            ratio: TraceIdRatio::new(self.ratio),
            pending: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            buffered_spans: 0,
            decided: Decided::default(),
            counters: TailCounters::default(),
            out: Vec::new(),
            forwarded: 0,
            sampled_out: 0,
        }
    }
}

impl<R: Reporter> fmt::Debug for TailSamplerBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailSamplerBuilder")
            .field("config", &self.config)
            .field("ratio", &self.ratio)
            .finish()
    }
}

/// Recent decisions, oldest forgotten first.
#[derive(Default)]
struct Decided {
    kept: HashSet<TraceId>,
    dropped: HashSet<TraceId>,
    order: VecDeque<TraceId>,
}

impl Decided {
    fn get(&self, trace_id: TraceId) -> Option<bool> {
        if self.kept.contains(&trace_id) {
            Some(true)
        } else if self.dropped.contains(&trace_id) {
            Some(false)
        } else {
            None
        }
    }

    fn insert(&mut self, trace_id: TraceId, keep: bool, max: usize) {
        if max == 0 {
            return;
        }
        while self.order.len() >= max {
            match self.order.pop_front() {
                Some(old) => {
                    self.kept.remove(&old);
                    self.dropped.remove(&old);
                }
                None => break,
            }
        }
        if keep {
            self.kept.insert(trace_id);
        } else {
            self.dropped.insert(trace_id);
        }
        self.order.push_back(trace_id);
    }
}

/// A cloneable handle on a [`TailSampler`]'s counters.
#[derive(Clone, Default)]
pub struct TailCounters {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    traces_kept: AtomicU64,
    traces_dropped: AtomicU64,
    spans_kept: AtomicU64,
    spans_dropped: AtomicU64,
    traces_timed_out: AtomicU64,
    traces_evicted: AtomicU64,
    late_spans: AtomicU64,
}

impl TailCounters {
    /// The counters now.
    pub fn stats(&self) -> TailStats {
        let c = &self.inner;
        TailStats {
            traces_kept: c.traces_kept.load(Ordering::Relaxed),
            traces_dropped: c.traces_dropped.load(Ordering::Relaxed),
            spans_kept: c.spans_kept.load(Ordering::Relaxed),
            spans_dropped: c.spans_dropped.load(Ordering::Relaxed),
            traces_timed_out: c.traces_timed_out.load(Ordering::Relaxed),
            traces_evicted: c.traces_evicted.load(Ordering::Relaxed),
            late_spans: c.late_spans.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for TailCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.stats().fmt(f)
    }
}

/// What a [`TailSampler`] did, read with [`TailCounters::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TailStats {
    /// Traces forwarded to the inner reporter.
    pub traces_kept: u64,
    /// Traces sampled out.
    pub traces_dropped: u64,
    /// Spans forwarded, late ones included.
    pub spans_kept: u64,
    /// Spans sampled out, late ones included.
    pub spans_dropped: u64,
    /// Traces decided by the decision timeout, their local root missing.
    pub traces_timed_out: u64,
    /// Traces decided early because the buffer was full.
    pub traces_evicted: u64,
    /// Spans that arrived after their trace was decided, and followed the decision.
    pub late_spans: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::InMemoryReporter;
    use std::time::SystemTime;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn span(trace: u128, id: u64, parent: u64, start: u64, end: u64) -> SpanRecord {
        SpanRecord {
            start_time: at(start),
            end_time: at(end),
            ..SpanRecord::for_test(trace, id, parent)
        }
    }

    fn sampler(ratio: f64) -> (TailSampler<InMemoryReporter>, InMemoryReporter) {
        let out = InMemoryReporter::new();
        let tail = TailSampler::builder(out.clone())
            .ratio(ratio)
            .slower_than(Duration::from_millis(100))
            .decision_wait(Duration::from_secs(10))
            .build();
        (tail, out)
    }

    #[test]
    fn whole_trace_goes_when_the_root_arrives() {
        let (mut tail, out) = sampler(1.0);
        let t0 = Instant::now();
        tail.push(&span(1, 2, 1, 0, 5), t0);
        tail.push(&span(1, 3, 1, 0, 5), t0);
        tail.forward();
        assert!(out.is_empty());
        tail.push(&span(1, 1, 0, 0, 10), t0);
        tail.forward();
        assert_eq!(out.len(), 3);
        // A late span follows the decision.
        tail.push(&span(1, 4, 2, 0, 1), t0);
        tail.forward();
        assert_eq!(out.len(), 4);
        assert_eq!(tail.counters().stats().late_spans, 1);
    }

    #[test]
    fn a_remote_parent_makes_a_local_root() {
        let (mut tail, out) = sampler(1.0);
        let mut root = span(1, 1, 99, 0, 10);
        root.parent_is_remote = true;
        tail.push(&root, Instant::now());
        tail.forward();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn dropped_traces_stay_dropped() {
        let (mut tail, out) = sampler(0.0);
        let t0 = Instant::now();
        tail.push(&span(1, 1, 0, 0, 10), t0);
        tail.push(&span(1, 2, 1, 0, 1), t0);
        tail.forward();
        assert!(out.is_empty());
        let stats = tail.counters().stats();
        assert_eq!((stats.traces_dropped, stats.spans_dropped), (1, 2));
    }

    #[test]
    fn errors_and_slow_traces_are_kept() {
        let (mut tail, out) = sampler(0.0);
        let t0 = Instant::now();
        let mut failed = span(1, 2, 1, 0, 1);
        failed.status = Status::error("boom");
        tail.push(&failed, t0);
        tail.push(&span(1, 1, 0, 0, 10), t0);
        // Slow: the child ends 150 ms after the root started.
        tail.push(&span(2, 2, 1, 50, 150), t0);
        tail.push(&span(2, 1, 0, 0, 20), t0);
        // Exactly at the threshold: not slower.
        tail.push(&span(3, 1, 0, 0, 100), t0);
        tail.forward();
        let kept: Vec<_> = out.spans().iter().map(|s| s.trace_id()).collect();
        assert_eq!(
            kept,
            [1u128, 1, 2, 2].map(TraceId::from),
            "{:?}",
            tail.counters()
        );
    }

    #[test]
    fn stragglers_are_decided_after_the_wait() {
        let (mut tail, out) = sampler(1.0);
        let t0 = Instant::now();
        tail.push(&span(1, 2, 1, 0, 1), t0);
        tail.expire(t0 + Duration::from_secs(9));
        tail.forward();
        assert!(out.is_empty());
        tail.expire(t0 + Duration::from_secs(10));
        tail.forward();
        assert_eq!(out.len(), 1);
        assert_eq!(tail.counters().stats().traces_timed_out, 1);
        assert_eq!(tail.pending_traces(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let out = InMemoryReporter::new();
        let mut tail = TailSampler::builder(out.clone())
            .ratio(1.0)
            .max_traces(10)
            .max_spans(25)
            .max_decisions_remembered(5)
            .build();
        let t0 = Instant::now();
        for trace in 1..=100u128 {
            for id in 2..=4u64 {
                tail.push(&span(trace, id, 1, 0, 1), t0);
            }
            assert!(tail.pending.len() <= 10);
            assert!(tail.buffered_spans <= 25);
            assert!(tail.order.len() <= 2 * tail.pending.len() + 64);
            assert!(tail.decided.order.len() <= 5);
        }
        tail.forward();
        let stats = tail.counters().stats();
        assert!(stats.traces_evicted >= 90, "{stats:?}");
        assert_eq!(stats.spans_kept as usize, out.len());
        // Everything is accounted for after shutdown.
        tail.shutdown();
        assert_eq!(out.len(), 300);
    }

    #[test]
    fn generations_keep_order_entries_apart() {
        let out = InMemoryReporter::new();
        let mut tail = TailSampler::builder(out.clone())
            .ratio(1.0)
            .max_decisions_remembered(1)
            .build();
        let t0 = Instant::now();
        // Trace 1 decided, then forgotten, then seen again: a new pending entry.
        tail.push(&span(1, 1, 0, 0, 1), t0);
        tail.push(&span(2, 1, 0, 0, 1), t0);
        tail.push(&span(1, 5, 1, 0, 1), t0);
        assert_eq!(tail.pending_traces(), 1);
        assert!(tail.evict_oldest());
        assert!(!tail.evict_oldest());
        tail.forward();
        assert_eq!(out.len(), 3);
    }
}
