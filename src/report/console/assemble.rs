//! Gathers spans into traces and decides when each trace is ready to print.
//!
//! The rules (also in the module docs of [`console`](super)):
//! - a trace is ready at the end of the batch that brings its **true root** (a span with no
//!   parent);
//! - a **local root** (a span whose parent is remote) whose parent is not held is ready after
//!   the **grace** period, unless that parent arrives meanwhile: then the trace waits for its
//!   true root like any other. The period runs from the first such local root: later ones
//!   do not restart it, so a caller who keeps sending requests for the same trace cannot
//!   keep it held;
//! - a trace whose spans stopped coming is ready after the **idle** timeout, and any trace
//!   after the **maximum age** since its first span arrived;
//! - spans of a trace printed before gather as a **late** addendum, ready at the end of the
//!   batch that brings a true root, or the grace period after its first span (later late
//!   spans do not restart it either);
//! - a flush makes everything ready.
//!
//! Memory is bounded by five limits: traces held, spans held in all, spans held per trace,
//! and the same two in bytes ([`held_bytes`] estimates a span's). A span over a limit is
//! dropped and counted; a true root is always let in for a trace already held (it lets the
//! trace print and free its memory), so the per-trace bounds can be passed by one span.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use crate::context::{SpanId, TraceId};
use crate::span::{KeyValue, SpanRecord, Status, Value};

/// Memory limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_traces: usize,
    pub(crate) max_spans: usize,
    pub(crate) max_spans_per_trace: usize,
    /// Bytes held at once, all traces together (as [`held_bytes`] counts them).
    pub(crate) max_bytes: usize,
    /// Bytes held for one trace.
    pub(crate) max_bytes_per_trace: usize,
    /// How many printed trace ids are remembered to recognise late spans.
    pub(crate) remember: usize,
}

/// Waiting times.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub(crate) grace: Duration,
    pub(crate) idle: Duration,
    pub(crate) max_age: Duration,
}

/// Why a trace was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    Root,
    RemoteParent,
    /// Late spans stopped coming.
    Settled,
    Idle,
    MaxAge,
    Flush,
}

/// A trace (or late addendum) ready to print.
#[derive(Debug)]
pub(crate) struct Ready {
    pub(crate) trace_id: TraceId,
    pub(crate) spans: Vec<SpanRecord>,
    pub(crate) late: bool,
    pub(crate) dropped: u64,
    /// Which rule released the trace, so the tests can check it.
    #[cfg_attr(not(test), allow(dead_code, reason = "read only by the tests"))]
    pub(crate) why: Why,
}

/// What is remembered of a printed trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Printed {
    /// Shown rather than filtered out.
    pub(crate) shown: bool,
    /// Its earliest span start, the origin of a late addendum's event offsets.
    pub(crate) start: SystemTime,
}

/// What [`Assembler::add`] did with a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Added {
    Held { late: bool },
    Dropped,
}

struct Pending {
    spans: Vec<SpanRecord>,
    /// The [`held_bytes`] of `spans`.
    bytes: usize,
    ids: HashSet<SpanId>,
    first_seen: Instant,
    last_seen: Instant,
    has_root: bool,
    /// Since when a local root without its parent (or, for late spans, the last span) waits.
    wait_since: Option<Instant>,
    late: bool,
    dropped: u64,
    seq: u64,
}

impl Pending {
    fn has_unparented_local_root(&self) -> bool {
        self.spans
            .iter()
            .any(|s| s.parent_is_remote && !s.is_root() && !self.ids.contains(&s.parent_span_id))
    }
}

/// Spans waiting for their trace to be ready, and the ids of traces already printed.
pub(crate) struct Assembler {
    limits: Limits,
    timeouts: Timeouts,
    pending: HashMap<TraceId, Pending>,
    spans_held: usize,
    bytes_held: usize,
    /// Printed trace ids.
    done: HashMap<TraceId, Printed>,
    done_order: VecDeque<TraceId>,
    /// Traces whose true root arrived since the last [`Assembler::take_rooted`].
    rooted: Vec<TraceId>,
    seq: u64,
}

impl Assembler {
    pub(crate) fn new(limits: Limits, timeouts: Timeouts) -> Self {
        Assembler {
            limits,
            timeouts,
            pending: HashMap::new(),
            spans_held: 0,
            bytes_held: 0,
            done: HashMap::new(),
            done_order: VecDeque::new(),
            rooted: Vec::new(),
            seq: 0,
        }
    }

    pub(crate) fn traces_held(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn spans_held(&self) -> usize {
        self.spans_held
    }

    pub(crate) fn bytes_held(&self) -> usize {
        self.bytes_held
    }

    /// Holds `span` until its trace is ready, or drops it at a limit.
    pub(crate) fn add(&mut self, span: &SpanRecord, now: Instant) -> Added {
        let trace_id = span.trace_id();
        let root = span.is_root();
        let bytes = held_bytes(span);
        let limits = self.limits;
        let full = self.spans_held >= limits.max_spans
            || self.bytes_held.saturating_add(bytes) > limits.max_bytes;
        let traces_full = self.pending.len() >= limits.max_traces;
        let pending = match self.pending.entry(trace_id) {
            Entry::Occupied(entry) => {
                let pending = entry.into_mut();
                let lets_in = root && !pending.has_root;
                let trace_full = pending.spans.len() >= limits.max_spans_per_trace
                    || pending.bytes.saturating_add(bytes) > limits.max_bytes_per_trace;
                if !lets_in && (full || trace_full) {
                    pending.dropped += 1;
                    pending.last_seen = now;
                    return Added::Dropped;
                }
                pending
            }
            Entry::Vacant(entry) => {
                if full
                    || traces_full
                    || limits.max_spans_per_trace == 0
                    || bytes > limits.max_bytes_per_trace
                {
                    return Added::Dropped;
                }
                self.seq += 1;
                entry.insert(Pending {
                    spans: Vec::new(),
                    bytes: 0,
                    ids: HashSet::new(),
                    first_seen: now,
                    last_seen: now,
                    has_root: false,
                    wait_since: None,
                    late: self.done.contains_key(&trace_id),
                    dropped: 0,
                    seq: self.seq,
                })
            }
        };
        pending.spans.push(span.clone());
        pending.bytes += bytes;
        pending.ids.insert(span.span_id());
        pending.last_seen = now;
        self.spans_held += 1;
        self.bytes_held += bytes;
        if root {
            if !pending.has_root {
                pending.has_root = true;
                self.rooted.push(trace_id);
            }
        } else if pending.wait_since.is_none()
            && (pending.late
                || (span.parent_is_remote && !pending.ids.contains(&span.parent_span_id)))
        {
            // Late spans settle, and a local root stops waiting for its remote parent, the
            // grace period after the first of them: a caller who keeps sending spans for the
            // same trace does not restart it, so cannot keep the trace (and its memory) held.
            pending.wait_since = Some(now);
        }
        Added::Held { late: pending.late }
    }

    fn release(&mut self, trace_id: TraceId, why: Why) -> Option<Ready> {
        let pending = self.pending.remove(&trace_id)?;
        self.spans_held = self.spans_held.saturating_sub(pending.spans.len());
        self.bytes_held = self.bytes_held.saturating_sub(pending.bytes);
        Some(Ready {
            trace_id,
            spans: pending.spans,
            late: pending.late,
            dropped: pending.dropped,
            why,
        })
    }

    /// Traces whose true root arrived, in the order the roots arrived.
    pub(crate) fn take_rooted(&mut self, out: &mut Vec<Ready>) {
        let rooted = std::mem::take(&mut self.rooted);
        for &trace_id in &rooted {
            if let Some(ready) = self.release(trace_id, Why::Root) {
                out.push(ready);
            }
        }
        self.rooted = rooted;
        self.rooted.clear();
    }

    /// Traces whose grace period, idle timeout or maximum age has passed at `now`, in the
    /// order they were first seen.
    pub(crate) fn take_due(&mut self, now: Instant, out: &mut Vec<Ready>) {
        let t = self.timeouts;
        let mut due: Vec<(u64, TraceId, Why)> = Vec::new();
        for (&trace_id, pending) in &mut self.pending {
            let why = if now.saturating_duration_since(pending.first_seen) >= t.max_age {
                Why::MaxAge
            } else if now.saturating_duration_since(pending.last_seen) >= t.idle {
                Why::Idle
            } else {
                match pending.wait_since {
                    Some(since) if now.saturating_duration_since(since) >= t.grace => {
                        if pending.late {
                            Why::Settled
                        } else if pending.has_unparented_local_root() {
                            Why::RemoteParent
                        } else {
                            // The remote parent arrived: wait for the true root.
                            pending.wait_since = None;
                            continue;
                        }
                    }
                    _ => continue,
                }
            };
            due.push((pending.seq, trace_id, why));
        }
        due.sort_unstable_by_key(|&(seq, ..)| seq);
        for (_, trace_id, why) in due {
            if let Some(ready) = self.release(trace_id, why) {
                out.push(ready);
            }
        }
    }

    /// Every trace held, in the order first seen.
    pub(crate) fn take_all(&mut self, out: &mut Vec<Ready>) {
        let mut all: Vec<(u64, TraceId)> =
            self.pending.iter().map(|(&id, p)| (p.seq, id)).collect();
        all.sort_unstable_by_key(|&(seq, _)| seq);
        for (_, trace_id) in all {
            if let Some(ready) = self.release(trace_id, Why::Flush) {
                out.push(ready);
            }
        }
        self.rooted.clear();
    }

    /// What is remembered of `trace_id`, if it was printed (or filtered out) before.
    pub(crate) fn printed(&self, trace_id: TraceId) -> Option<Printed> {
        self.done.get(&trace_id).copied()
    }

    /// Remembers that `trace_id`, starting at `start`, was printed (or filtered out),
    /// forgetting the oldest remembered trace beyond the limit.
    pub(crate) fn mark_done(&mut self, trace_id: TraceId, shown: bool, start: SystemTime) {
        if self.limits.remember == 0 {
            return;
        }
        match self.done.entry(trace_id) {
            Entry::Occupied(mut entry) => {
                let printed = entry.get_mut();
                printed.shown |= shown;
                printed.start = printed.start.min(start);
            }
            Entry::Vacant(entry) => {
                entry.insert(Printed { shown, start });
                self.done_order.push_back(trace_id);
                while self.done_order.len() > self.limits.remember {
                    if let Some(old) = self.done_order.pop_front() {
                        self.done.remove(&old);
                    }
                }
            }
        }
    }
}

/// About how many bytes holding `span` takes: the record itself and what its strings and
/// vectors own. An estimate (allocator overhead and spare capacity are not counted) that
/// grows with everything a caller can make large: names, attribute values, events, links.
pub(crate) fn held_bytes(span: &SpanRecord) -> usize {
    let attributes = |attributes: &[KeyValue]| -> usize {
        attributes
            .iter()
            .map(|kv| {
                std::mem::size_of::<KeyValue>() + kv.key.as_str().len() + value_bytes(&kv.value)
            })
            .sum()
    };
    let status = match &span.status {
        Status::Error { description } => description.len(),
        _ => 0,
    };
    let events: usize = span
        .events
        .iter()
        .map(|e| std::mem::size_of_val(e) + e.name.len() + attributes(&e.attributes))
        .sum();
    let links: usize = span
        .links
        .iter()
        .map(|l| {
            std::mem::size_of_val(l)
                + l.span_context.trace_state.header().len()
                + attributes(&l.attributes)
        })
        .sum();
    // The record, its id in the trace's id set, and what it owns.
    std::mem::size_of::<SpanRecord>()
        + std::mem::size_of::<SpanId>()
        + span.name.len()
        + span.span_context.trace_state.header().len()
        + attributes(&span.attributes)
        + events
        + links
        + status
}

/// Bytes a value owns beyond the `Value` itself.
fn value_bytes(value: &Value) -> usize {
    use opentelemetry::Array;
    match value {
        Value::String(s) => s.as_str().len(),
        Value::Array(Array::String(v)) => v
            .iter()
            .map(|s| std::mem::size_of_val(s) + s.as_str().len())
            .sum(),
        Value::Array(Array::Bool(v)) => v.len(),
        Value::Array(Array::I64(v)) => 8 * v.len(),
        Value::Array(Array::F64(v)) => 8 * v.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: u128, id: u64, parent: u64, remote: bool) -> SpanRecord {
        SpanRecord {
            parent_is_remote: remote,
            ..SpanRecord::for_test(trace, id, parent)
        }
    }

    fn assembler() -> Assembler {
        Assembler::new(
            Limits {
                max_traces: 10,
                max_spans: 100,
                max_spans_per_trace: 5,
                max_bytes: usize::MAX,
                max_bytes_per_trace: usize::MAX,
                remember: 2,
            },
            Timeouts {
                grace: Duration::from_millis(200),
                idle: Duration::from_secs(10),
                max_age: Duration::from_secs(60),
            },
        )
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_true_root_releases_its_trace_at_the_end_of_the_batch() {
        let mut a = assembler();
        let t0 = Instant::now();
        a.add(&span(1, 2, 1, false), t0);
        a.add(&span(1, 1, 0, false), t0);
        a.add(&span(1, 3, 1, false), t0);
        let mut out = Vec::new();
        a.take_rooted(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].spans.len(), 3);
        assert_eq!(out[0].why, Why::Root);
        assert_eq!((a.traces_held(), a.spans_held()), (0, 0));
    }

    #[test]
    fn a_local_root_waits_for_the_grace_period_unless_its_parent_arrives() {
        let mut a = assembler();
        let t0 = Instant::now();
        let mut out = Vec::new();
        // Trace 1: the remote parent never comes.
        a.add(&span(1, 5, 4, true), t0);
        // Trace 2: the remote parent (a client span of this process) comes in time.
        a.add(&span(2, 5, 4, true), t0);
        a.take_due(t0 + ms(199), &mut out);
        assert!(out.is_empty());
        a.add(&span(2, 4, 1, false), t0 + ms(100));
        a.take_due(t0 + ms(200), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].trace_id, TraceId::from(1u128));
        assert_eq!(out[0].why, Why::RemoteParent);
        out.clear();
        a.take_due(t0 + ms(1000), &mut out);
        assert!(out.is_empty(), "trace 2 waits for its true root");
        a.add(&span(2, 1, 0, false), t0 + ms(1000));
        a.take_rooted(&mut out);
        assert_eq!(out[0].spans.len(), 3);
    }

    #[test]
    fn new_local_roots_do_not_restart_the_grace_period() {
        let mut a = assembler();
        let t0 = Instant::now();
        let mut out = Vec::new();
        // A caller keeps sending requests under the same remote parent, every 50 ms.
        for k in 0..4 {
            a.add(&span(1, 10 + k, 4, true), t0 + ms(50 * k));
            a.take_due(t0 + ms(50 * k), &mut out);
            assert!(out.is_empty());
        }
        a.take_due(t0 + ms(200), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].why, Why::RemoteParent);
        assert_eq!(out[0].spans.len(), 4);
        assert_eq!((a.traces_held(), a.spans_held(), a.bytes_held()), (0, 0, 0));
        a.mark_done(TraceId::from(1u128), true, SystemTime::UNIX_EPOCH);
        out.clear();
        // It keeps going after the trace printed: the late spans settle the grace period
        // after the first of them, however often more come.
        for k in 4..8 {
            a.add(&span(1, 10 + k, 4, true), t0 + ms(50 * k));
            a.take_due(t0 + ms(50 * k), &mut out);
            assert!(out.is_empty());
        }
        a.take_due(t0 + ms(400), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].why, Why::Settled);
        assert_eq!(out[0].spans.len(), 4);
    }

    #[test]
    fn bytes_are_bounded_per_trace_and_in_all() {
        let big = |trace: u128, id: u64| {
            let mut s = span(trace, id, 1, false);
            s.attributes
                .push(KeyValue::new("user_agent.original", "x".repeat(1000)));
            s
        };
        let one = held_bytes(&big(1, 2));
        assert!(one > 1000 && one < 2000, "{one}");
        let mut a = assembler();
        a.limits.max_bytes = 5 * one;
        a.limits.max_bytes_per_trace = 2 * one;
        let t0 = Instant::now();
        assert_eq!(a.add(&big(1, 2), t0), Added::Held { late: false });
        assert_eq!(a.add(&big(1, 3), t0), Added::Held { late: false });
        assert_eq!(
            a.add(&big(1, 4), t0),
            Added::Dropped,
            "over the trace's share"
        );
        assert_eq!(a.add(&big(2, 2), t0), Added::Held { late: false });
        assert_eq!(a.add(&big(2, 3), t0), Added::Held { late: false });
        assert_eq!(a.add(&big(3, 2), t0), Added::Held { late: false });
        assert_eq!(a.add(&big(4, 2), t0), Added::Dropped, "over the total");
        assert_eq!(a.bytes_held(), 5 * one);
        // A true root still gets in and lets its trace go.
        let mut root = big(1, 1);
        root.parent_span_id = SpanId::INVALID;
        assert_eq!(a.add(&root, t0), Added::Held { late: false });
        let mut out = Vec::new();
        a.take_rooted(&mut out);
        assert_eq!(out[0].spans.len(), 3);
        assert_eq!(out[0].dropped, 1);
        assert_eq!(a.bytes_held(), 3 * one);
        assert_eq!(a.add(&big(4, 2), t0), Added::Held { late: false });
        // A span bigger than a trace's share never gets in.
        a.limits.max_bytes_per_trace = one - 1;
        assert_eq!(a.add(&big(5, 2), t0), Added::Dropped);
    }

    #[test]
    fn held_bytes_grow_with_what_a_caller_controls() {
        let base = held_bytes(&span(1, 2, 1, false));
        let mut s = span(1, 2, 1, false);
        s.name = "n".repeat(100).into();
        assert_eq!(held_bytes(&s), base + 100 - "s2".len());
        s.status = Status::error("e".repeat(50));
        assert_eq!(held_bytes(&s), base + 150 - "s2".len());
        s.events.push(crate::span::Event::new(
            "exception",
            SystemTime::UNIX_EPOCH,
            vec![KeyValue::new("exception.message", "m".repeat(300))],
            0,
        ));
        assert!(held_bytes(&s) > base + 450);
        s.attributes.push(KeyValue::new(
            "k",
            Value::Array(opentelemetry::Array::String(vec!["a".repeat(70).into()])),
        ));
        assert!(held_bytes(&s) > base + 520);
    }

    #[test]
    fn idle_and_old_traces_are_released() {
        let mut a = assembler();
        let t0 = Instant::now();
        let secs = |n: u64| t0 + Duration::from_secs(n);
        let mut out = Vec::new();
        a.add(&span(1, 2, 1, false), t0);
        a.add(&span(2, 2, 1, false), t0);
        a.add(&span(2, 3, 1, false), secs(5));
        a.take_due(secs(10) - ms(1), &mut out);
        assert!(out.is_empty());
        a.take_due(secs(10), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].why, Why::Idle);
        assert_eq!(out[0].trace_id, TraceId::from(1u128));
        out.clear();
        // Trace 2 keeps getting spans (dropped ones count as activity too).
        for k in 2..12 {
            a.add(&span(2, 2 + k, 1, false), secs(5 * k));
            a.take_due(secs(5 * k), &mut out);
        }
        a.take_due(secs(60) - ms(1), &mut out);
        assert!(out.is_empty());
        a.take_due(secs(60), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].why, Why::MaxAge);
        assert_eq!(out[0].dropped, 7);
    }

    #[test]
    fn late_spans_settle_after_the_grace_period() {
        let mut a = assembler();
        let t0 = Instant::now();
        let mut out = Vec::new();
        a.add(&span(1, 1, 0, false), t0);
        a.take_rooted(&mut out);
        a.mark_done(TraceId::from(1u128), true, SystemTime::UNIX_EPOCH);
        out.clear();
        assert_eq!(a.add(&span(1, 7, 1, false), t0), Added::Held { late: true });
        a.add(&span(1, 8, 1, false), t0 + ms(150));
        a.take_due(t0 + ms(199), &mut out);
        assert!(out.is_empty(), "within the grace period");
        a.take_due(t0 + ms(200), &mut out);
        assert_eq!(
            out.len(),
            1,
            "the second late span did not restart the period"
        );
        assert_eq!(out[0].spans.len(), 2);
        assert!(out[0].late);
        assert_eq!(out[0].why, Why::Settled);
        assert!(a.printed(TraceId::from(1u128)).unwrap().shown);
    }

    #[test]
    fn limits_drop_spans_but_let_a_root_in() {
        let mut a = assembler();
        let t0 = Instant::now();
        for id in 2..=6 {
            assert_eq!(
                a.add(&span(1, id, 1, false), t0),
                Added::Held { late: false }
            );
        }
        assert_eq!(a.add(&span(1, 7, 1, false), t0), Added::Dropped);
        assert_eq!(
            a.add(&span(1, 1, 0, false), t0),
            Added::Held { late: false }
        );
        let mut out = Vec::new();
        a.take_rooted(&mut out);
        assert_eq!(out[0].spans.len(), 6);
        assert_eq!(out[0].dropped, 1);

        for trace in 10..20 {
            assert!(matches!(
                a.add(&span(trace, 2, 1, false), t0),
                Added::Held { .. }
            ));
        }
        assert_eq!(a.add(&span(99, 2, 1, false), t0), Added::Dropped);
        assert_eq!(a.traces_held(), 10);
    }

    #[test]
    fn printed_trace_ids_are_remembered_up_to_the_limit() {
        let mut a = assembler();
        let t = SystemTime::UNIX_EPOCH;
        for trace in 1..=3u128 {
            a.mark_done(TraceId::from(trace), trace != 2, t);
        }
        a.mark_done(TraceId::from(3u128), false, t - Duration::from_secs(1));
        assert_eq!(a.printed(TraceId::from(1u128)), None, "forgotten");
        assert!(
            !a.printed(TraceId::from(2u128)).unwrap().shown,
            "filtered out"
        );
        let third = a.printed(TraceId::from(3u128)).unwrap();
        assert!(third.shown, "stays shown");
        assert_eq!(
            third.start,
            t - Duration::from_secs(1),
            "keeps the earliest start"
        );
        let t0 = Instant::now();
        assert_eq!(
            a.add(&span(1, 5, 4, false), t0),
            Added::Held { late: false }
        );
        assert_eq!(a.add(&span(2, 5, 4, false), t0), Added::Held { late: true });
    }
}
