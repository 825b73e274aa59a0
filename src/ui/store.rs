//! The viewer's memory: spans assembled into traces by the console's assembler, then the
//! most recent traces held within a count and a byte bound, plus cumulative counters for
//! `/metrics`.
//!
//! The byte bound covers everything the store keeps, counted by [`size`](super::size) on
//! the high side: held traces (their spans' heap, and their vectors' capacity), spans
//! waiting in the assembler (an eighth of the bound at most, roots excepted), the
//! assembler's tables at their largest, the trace index, and `/metrics`' operations. All
//! that is kept within two thirds of the bound: the last third is for what the allocator
//! keeps beyond the bytes in use (freed chunks between live ones, per-thread arenas), which
//! `examples/ui_load.rs` measured at up to a third of the counted bytes with glibc's
//! `malloc`, so that the process's resident memory, not only its live heap, stays within
//! the bound.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::context::TraceId;
use crate::report::console::assemble::{self, Added, Assembler, Printed, Ready};
use crate::span::{SpanKind, SpanRecord, Status, Value};

use super::measured::MeasuredOps;
use super::op_metrics::{bucket, class, OpMetrics, CLASSES, MAX_OPERATIONS, OTHER_OPERATION};
use super::size;

/// Where a span came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// This process's recorder.
    Local,
    /// `POST /v1/traces`.
    Otlp,
}

/// Cumulative counters, never reset.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub(crate) received_local: u64,
    pub(crate) received_otlp: u64,
    /// Spans refused at the assembler's limits, never shown.
    pub(crate) spans_dropped: u64,
    /// Whole traces let go, oldest first, to stay within the bounds.
    pub(crate) traces_dropped: u64,
}

/// A trace held for the pages.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) spans: Vec<SpanRecord>,
    /// Spans of this trace refused at the assembler's limits.
    pub(crate) dropped: u64,
    /// What the spans own on the heap ([`size::span_heap`]); their own slots are counted
    /// from `spans`' capacity.
    heap: usize,
}

impl Held {
    fn bytes(&self) -> usize {
        size::vec_of::<SpanRecord>(self.spans.capacity()) + self.heap
    }
}

/// Memory bounds of a [`Store`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub(crate) max_traces: usize,
    /// Everything the store keeps, as [`Store::bytes_held`] counts it.
    pub(crate) max_bytes: usize,
    pub(crate) assembly: assemble::Limits,
    pub(crate) timeouts: assemble::Timeouts,
}

pub(crate) struct Store {
    assembler: Assembler,
    held: HashMap<TraceId, Held>,
    /// Held trace ids, oldest first.
    order: VecDeque<TraceId>,
    /// [`Held::bytes`] of every held trace.
    held_bytes: usize,
    /// [`size::assembling`] of every span in the assembler.
    assembling_bytes: usize,
    /// Spans in the assembler may take this much; a true root is always let in.
    assembling_budget: usize,
    /// What [`Store::bytes_held`] may reach: two thirds of the bound.
    budget: usize,
    /// `operations`' entries.
    operation_bytes: usize,
    /// The most traces the assembler has held at once, and the most released at once:
    /// its tables and vectors keep the size they grew to.
    pending_high_water: usize,
    released_high_water: usize,
    /// Traces ever held (an upper bound of the ids the assembler remembers).
    traces_seen: usize,
    bounds: Bounds,
    /// Bumped whenever the held traces change, for the live updates.
    generation: u64,
    pub(crate) counters: Counters,
    pub(crate) operations: BTreeMap<(Arc<str>, Arc<str>), OpMetrics>,
    /// The requests metered layers measured, by operation: apart from the store's lock.
    pub(crate) measured: Arc<MeasuredOps>,
    ready: Vec<Ready>,
}

impl Store {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Store {
            assembler: Assembler::new(bounds.assembly, bounds.timeouts),
            held: HashMap::new(),
            order: VecDeque::new(),
            held_bytes: 0,
            assembling_bytes: 0,
            assembling_budget: bounds.max_bytes / 8,
            budget: bounds.max_bytes / 3 * 2,
            operation_bytes: 0,
            pending_high_water: 0,
            released_high_water: 0,
            traces_seen: 0,
            bounds,
            generation: 0,
            counters: Counters::default(),
            operations: BTreeMap::new(),
            measured: Arc::default(),
            ready: Vec::new(),
        }
    }

    /// Takes in `spans`; traces whose root arrived are held at once. Returns how many were
    /// dropped at the assembly limits.
    pub(crate) fn add(&mut self, spans: &[SpanRecord], source: Source, now: Instant) -> u64 {
        let dropped_before = self.counters.spans_dropped;
        let received = match source {
            Source::Local => &mut self.counters.received_local,
            Source::Otlp => &mut self.counters.received_otlp,
        };
        *received += spans.len() as u64;
        for span in spans {
            let bytes = size::assembling(span);
            // A root is let in whatever the budget: it releases its trace (and its memory
            // to the held traces' bound) at the end of this batch.
            let over = self.assembling_bytes.saturating_add(bytes) > self.assembling_budget;
            if over && !span.is_root() {
                self.counters.spans_dropped += 1;
                continue;
            }
            match self.assembler.add(span, now) {
                Added::Dropped => self.counters.spans_dropped += 1,
                Added::Held { .. } => self.assembling_bytes += bytes,
            }
        }
        self.pending_high_water = self.pending_high_water.max(self.assembler.traces_held());
        let mut ready = std::mem::take(&mut self.ready);
        self.assembler.take_rooted(&mut ready);
        self.hold_all(&mut ready);
        self.ready = ready;
        self.counters.spans_dropped - dropped_before
    }

    /// Holds the traces whose grace period, idle timeout or maximum age has passed.
    pub(crate) fn tick(&mut self, now: Instant) {
        let mut ready = std::mem::take(&mut self.ready);
        self.assembler.take_due(now, &mut ready);
        self.hold_all(&mut ready);
        self.ready = ready;
    }

    /// Holds every trace still being assembled.
    pub(crate) fn flush(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        self.assembler.take_all(&mut ready);
        self.hold_all(&mut ready);
        self.ready = ready;
    }

    fn hold_all(&mut self, ready: &mut Vec<Ready>) {
        if ready.is_empty() {
            return;
        }
        self.released_high_water = self.released_high_water.max(ready.len());
        for one in ready.drain(..) {
            self.hold(one);
        }
        self.evict();
        self.generation += 1;
    }

    fn hold(&mut self, mut ready: Ready) {
        let start = ready
            .spans
            .iter()
            .map(|s| s.start_time)
            .min()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.assembler.mark_done(ready.trace_id, true, start);
        let mut heap = 0;
        for span in &ready.spans {
            self.count_operation(span);
            heap += size::span_heap(span);
            // Computed from lengths only, so the same for the assembler's clone.
            self.assembling_bytes = self.assembling_bytes.saturating_sub(size::assembling(span));
        }
        match self.held.get_mut(&ready.trace_id) {
            Some(held) => {
                self.held_bytes = self.held_bytes.saturating_sub(held.bytes());
                held.spans.extend(ready.spans);
                held.dropped += ready.dropped;
                held.heap += heap;
                self.held_bytes += held.bytes();
            }
            None => {
                // The assembler's vector grew by doubling; held for long, it is trimmed.
                ready.spans.shrink_to_fit();
                let held = Held {
                    spans: ready.spans,
                    dropped: ready.dropped,
                    heap,
                };
                self.held_bytes += held.bytes();
                self.held.insert(ready.trace_id, held);
                self.order.push_back(ready.trace_id);
                self.traces_seen += 1;
            }
        }
    }

    /// Lets the oldest traces go until both bounds hold.
    fn evict(&mut self) {
        while self.held.len() > self.bounds.max_traces || self.bytes_held() > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(held) = self.held.remove(&oldest) {
                self.held_bytes = self.held_bytes.saturating_sub(held.bytes());
                self.counters.traces_dropped += 1;
            }
        }
    }

    fn count_operation(&mut self, span: &SpanRecord) {
        let entry = span.is_root() || matches!(span.kind, SpanKind::Server | SpanKind::Consumer);
        if !entry {
            return;
        }
        // The key's strings, the entry in a B-tree node (at least half full), and the node
        // of its own small map of status classes.
        let row = |key: &(Arc<str>, Arc<str>)| {
            size::alloc(key.0.len() + 16)
                + size::alloc(key.1.len() + 16)
                + 2 * std::mem::size_of::<((Arc<str>, Arc<str>), OpMetrics)>()
                + size::alloc(11 * std::mem::size_of::<(&str, u64)>() + 16)
        };
        let mut key = (span.service_name.clone(), Arc::from(span.name.as_ref()));
        if !self.operations.contains_key(&key) {
            // Rows are never let go: bounded in number, and in bytes too (an OTLP sender
            // can name spans with ever new, long names), else they would crowd out every
            // trace and still exceed the bound.
            if self.operations.len() >= MAX_OPERATIONS
                || self.operation_bytes + row(&key) > self.budget / OPERATIONS_SHARE
            {
                key = (Arc::from(""), Arc::from(OTHER_OPERATION));
            }
            if !self.operations.contains_key(&key) {
                self.operation_bytes += row(&key);
            }
        }
        let op = self.operations.entry(key).or_default();
        *op.by_class.entry(status_class(span)).or_default() += 1;
        let seconds = span.duration().as_secs_f64();
        op.buckets[bucket(seconds)] += 1;
        op.count += 1;
        op.sum_seconds += seconds;
    }

    /// Held traces, newest first.
    pub(crate) fn newest_first(&self) -> impl Iterator<Item = (TraceId, &Held)> + '_ {
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.held.get(id).map(|held| (*id, held)))
    }

    pub(crate) fn get(&self, trace_id: TraceId) -> Option<&Held> {
        self.held.get(&trace_id)
    }

    pub(crate) fn traces_held(&self) -> usize {
        self.held.len()
    }

    /// Everything the store keeps, as the byte bound counts it; at most two thirds of the
    /// bound.
    pub(crate) fn bytes_held(&self) -> usize {
        self.held_bytes
            + self.assembling_bytes
            + self.operation_bytes
            + self.measured.bytes()
            + self.assembler_tables()
            + size::table_of::<(TraceId, Held)>(self.held.capacity())
            + size::vec_of::<TraceId>(self.order.capacity())
    }

    /// Bumped whenever the held traces change.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Spans still being assembled into traces.
    pub(crate) fn spans_assembling(&self) -> usize {
        self.assembler.spans_held()
    }
}

/// `/metrics`' operations take at most this part of the budget; the operations past it
/// count under [`OTHER_OPERATION`].
const OPERATIONS_SHARE: usize = 8;

/// An assembler trace in waiting, beyond its spans: the vectors and id set it starts with,
/// timestamps and counters. (Its type is private to the assembler; this is on the high side.)
const PENDING_TRACE: usize = 192;

impl Store {
    /// The assembler's tables and vectors, at the size they grew to (they do not shrink):
    /// traces in waiting (each with room for 4 spans and a small id set before its first
    /// growth; the spans themselves are in `assembling_bytes`), the ids of the traces it
    /// released, and the vectors of traces rooted and released in one batch.
    fn assembler_tables(&self) -> usize {
        let pending = size::table_of::<(TraceId, [u8; PENDING_TRACE])>(self.pending_high_water)
            + self.assembler.traces_held()
                * (size::vec_of::<SpanRecord>(4) - 2 * std::mem::size_of::<SpanRecord>()
                    + size::table_of::<crate::context::SpanId>(3));
        let remembered = self.traces_seen.min(self.bounds.assembly.remember);
        let done = size::table_of::<(TraceId, Printed)>(remembered)
            + size::vec_of::<TraceId>(2 * remembered + 2);
        let released = 2 * self.released_high_water;
        pending + done + size::vec_of::<TraceId>(released) + size::vec_of::<Ready>(released)
    }
}

/// `1xx`…`5xx` from the HTTP status code when there is one, else `ok` or `error` from the
/// span status.
pub(crate) fn status_class(span: &SpanRecord) -> &'static str {
    let code = match span.attribute(crate::semconv::HTTP_RESPONSE_STATUS_CODE) {
        Some(Value::I64(code)) => Some(*code),
        _ => None,
    };
    CLASSES[class(code, matches!(span.status, Status::Error { .. }))]
}

/// The duration of a list of spans: first start to last end.
pub(crate) fn extent(spans: &[SpanRecord]) -> (SystemTime, Duration) {
    let start = spans
        .iter()
        .map(|s| s.start_time)
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let end = spans.iter().map(|s| s.end_time).max().unwrap_or(start);
    (start, end.duration_since(start).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(max_traces: usize, max_bytes: usize) -> Bounds {
        Bounds {
            max_traces,
            max_bytes,
            assembly: assemble::Limits {
                max_traces: 100,
                max_spans: 1000,
                max_spans_per_trace: 10,
                max_bytes: 1 << 20,
                max_bytes_per_trace: 1 << 20,
                remember: 100,
            },
            timeouts: assemble::Timeouts {
                grace: Duration::from_millis(100),
                idle: Duration::from_secs(5),
                max_age: Duration::from_secs(30),
            },
        }
    }

    #[test]
    fn the_oldest_traces_go_first_and_are_counted() {
        let mut store = Store::new(bounds(3, usize::MAX));
        let now = Instant::now();
        for trace in 1..=5u128 {
            store.add(
                &[
                    SpanRecord::for_test(trace, 2, 1),
                    SpanRecord::for_test(trace, 1, 0),
                ],
                Source::Local,
                now,
            );
        }
        let held: Vec<_> = store.newest_first().map(|(id, _)| id).collect();
        assert_eq!(held, [5u128, 4, 3].map(TraceId::from));
        assert_eq!(store.counters.traces_dropped, 2);
        assert_eq!(store.counters.received_local, 10);
    }

    #[test]
    fn the_byte_bound_holds() {
        let big = |trace: u128| {
            let mut span = SpanRecord::for_test(trace, 1, 0);
            span.attributes
                .push(crate::span::KeyValue::new("payload", "x".repeat(10_000)));
            span
        };
        let empty = Store::new(bounds(100, usize::MAX)).bytes_held();
        let mut one = Store::new(bounds(100, usize::MAX));
        one.add(&[big(1)], Source::Local, Instant::now());
        // A trace of one span: its payload, its heap, its vector, its share of the index.
        let trace = one.bytes_held() - empty;
        assert!(
            trace > 10_000 + std::mem::size_of::<SpanRecord>(),
            "{trace}"
        );
        // Two thirds of the bound are for the data, the rest for the allocator.
        let budget = empty + trace * 4 + trace / 2;
        let bound = budget / 2 * 3 + 3;
        let mut store = Store::new(bounds(100, bound));
        let now = Instant::now();
        for trace in 1..=10u128 {
            store.add(&[big(trace)], Source::Local, now);
            assert!(store.bytes_held() <= budget);
        }
        assert_eq!(store.traces_held(), 4);
        assert_eq!(store.counters.traces_dropped, 6);
    }

    #[test]
    fn spans_being_assembled_count_and_are_refused_over_their_budget() {
        let mut bounds = bounds(100, 512 << 10);
        bounds.assembly.max_spans_per_trace = 10_000;
        let mut store = Store::new(bounds);
        let now = Instant::now();
        let before = store.bytes_held();
        // Children whose root has not come: they wait in the assembler, and count.
        store.add(&[SpanRecord::for_test(1, 2, 1)], Source::Local, now);
        assert!(store.bytes_held() > before);
        let mut dropped = 0;
        for id in 3..1000u64 {
            store.add(&[SpanRecord::for_test(1, id, 1)], Source::Local, now);
            dropped = store.counters.spans_dropped;
            assert!(store.assembling_bytes <= (512 << 10) / 8);
        }
        assert!(dropped > 0);
        // The root is let in and releases them; the assembler's share goes back to zero.
        store.add(&[SpanRecord::for_test(1, 1, 0)], Source::Local, now);
        assert_eq!(store.assembling_bytes, 0);
        assert_eq!(store.traces_held(), 1);
        assert!(store.bytes_held() <= 512 << 10);
    }

    #[test]
    fn late_spans_join_their_held_trace() {
        let mut store = Store::new(bounds(10, usize::MAX));
        let now = Instant::now();
        store.add(&[SpanRecord::for_test(1, 1, 0)], Source::Local, now);
        store.add(&[SpanRecord::for_test(1, 2, 1)], Source::Otlp, now);
        assert_eq!(store.get(TraceId::from(1u128)).unwrap().spans.len(), 1);
        store.tick(now + Duration::from_millis(100));
        assert_eq!(store.get(TraceId::from(1u128)).unwrap().spans.len(), 2);
        assert_eq!(store.traces_held(), 1);
        assert_eq!(store.counters.received_otlp, 1);
    }
}
