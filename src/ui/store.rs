//! The viewer's memory: spans assembled into traces by the console's assembler, then the
//! most recent traces held within a count and a byte bound, plus cumulative counters for
//! `/metrics`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::context::TraceId;
use crate::report::console::assemble::{self, held_bytes, Added, Assembler, Ready};
use crate::span::{SpanKind, SpanRecord, Status, Value};

/// Where a span came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// This process's recorder.
    Local,
    /// `POST /v1/traces`.
    Otlp,
}

/// The histogram bucket upper bounds, in seconds, of the OpenTelemetry semantic conventions
/// for `http.server.request.duration`.
pub(crate) const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Operations tracked by `/metrics` before new ones are counted together under
/// [`OTHER_OPERATION`], so that span names made of ids cannot grow memory without bound.
pub(crate) const MAX_OPERATIONS: usize = 1000;
pub(crate) const OTHER_OPERATION: &str = "_other";

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

/// `/metrics`' per-operation state.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpMetrics {
    pub(crate) by_class: BTreeMap<&'static str, u64>,
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    pub(crate) buckets: [u64; BUCKETS.len() + 1],
    pub(crate) count: u64,
    pub(crate) sum_seconds: f64,
}

/// A trace held for the pages.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) spans: Vec<SpanRecord>,
    /// Spans of this trace refused at the assembler's limits.
    pub(crate) dropped: u64,
    bytes: usize,
}

/// Memory bounds of a [`Store`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    pub(crate) max_traces: usize,
    pub(crate) max_bytes: usize,
    pub(crate) assembly: assemble::Limits,
    pub(crate) timeouts: assemble::Timeouts,
}

pub(crate) struct Store {
    assembler: Assembler,
    held: HashMap<TraceId, Held>,
    /// Held trace ids, oldest first.
    order: VecDeque<TraceId>,
    bytes: usize,
    bounds: Bounds,
    pub(crate) counters: Counters,
    pub(crate) operations: BTreeMap<(Arc<str>, Arc<str>), OpMetrics>,
    ready: Vec<Ready>,
}

impl Store {
    pub(crate) fn new(bounds: Bounds) -> Self {
        Store {
            assembler: Assembler::new(bounds.assembly, bounds.timeouts),
            held: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            bounds,
            counters: Counters::default(),
            operations: BTreeMap::new(),
            ready: Vec::new(),
        }
    }

    /// Takes in `spans`; traces whose root arrived are held at once.
    pub(crate) fn add(&mut self, spans: &[SpanRecord], source: Source, now: Instant) {
        let received = match source {
            Source::Local => &mut self.counters.received_local,
            Source::Otlp => &mut self.counters.received_otlp,
        };
        *received += spans.len() as u64;
        for span in spans {
            if self.assembler.add(span, now) == Added::Dropped {
                self.counters.spans_dropped += 1;
            }
        }
        let mut ready = std::mem::take(&mut self.ready);
        self.assembler.take_rooted(&mut ready);
        self.hold_all(&mut ready);
        self.ready = ready;
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
        for one in ready.drain(..) {
            self.hold(one);
        }
        self.evict();
    }

    fn hold(&mut self, ready: Ready) {
        let start = ready
            .spans
            .iter()
            .map(|s| s.start_time)
            .min()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.assembler.mark_done(ready.trace_id, true, start);
        for span in &ready.spans {
            self.count_operation(span);
        }
        let bytes: usize = ready.spans.iter().map(held_bytes).sum();
        self.bytes += bytes;
        match self.held.get_mut(&ready.trace_id) {
            Some(held) => {
                held.spans.extend(ready.spans);
                held.dropped += ready.dropped;
                held.bytes += bytes;
            }
            None => {
                self.held.insert(
                    ready.trace_id,
                    Held {
                        spans: ready.spans,
                        dropped: ready.dropped,
                        bytes,
                    },
                );
                self.order.push_back(ready.trace_id);
            }
        }
    }

    /// Lets the oldest traces go until both bounds hold.
    fn evict(&mut self) {
        while self.held.len() > self.bounds.max_traces || self.bytes > self.bounds.max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(held) = self.held.remove(&oldest) {
                self.bytes = self.bytes.saturating_sub(held.bytes);
                self.counters.traces_dropped += 1;
            }
        }
    }

    fn count_operation(&mut self, span: &SpanRecord) {
        let entry = span.is_root() || matches!(span.kind, SpanKind::Server | SpanKind::Consumer);
        if !entry {
            return;
        }
        let mut key = (span.service_name.clone(), Arc::from(span.name.as_ref()));
        if !self.operations.contains_key(&key) && self.operations.len() >= MAX_OPERATIONS {
            key = (Arc::from(""), Arc::from(OTHER_OPERATION));
        }
        let op = self.operations.entry(key).or_default();
        *op.by_class.entry(status_class(span)).or_default() += 1;
        let seconds = span.duration().as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        op.buckets[bucket] += 1;
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

    pub(crate) fn bytes_held(&self) -> usize {
        self.bytes
    }

    /// Spans still being assembled into traces.
    pub(crate) fn spans_assembling(&self) -> usize {
        self.assembler.spans_held()
    }
}

/// `2xx`…`5xx` from the HTTP status code when there is one, else `ok` or `error` from the
/// span status.
pub(crate) fn status_class(span: &SpanRecord) -> &'static str {
    let code = match span.attribute(crate::semconv::HTTP_RESPONSE_STATUS_CODE) {
        Some(Value::I64(code)) => Some(*code),
        _ => None,
    };
    match code {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ if matches!(span.status, Status::Error { .. }) => "error",
        _ => "ok",
    }
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
        let one = held_bytes(&SpanRecord::for_test(1, 1, 0));
        let mut store = Store::new(bounds(100, one * 4));
        let now = Instant::now();
        for trace in 1..=10u128 {
            store.add(&[SpanRecord::for_test(trace, 1, 0)], Source::Local, now);
            assert!(store.bytes_held() <= one * 4);
        }
        assert_eq!(store.traces_held(), 4);
        assert_eq!(store.counters.traces_dropped, 6);
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
