//! Gathers spans into traces and decides when each trace is ready to print.
//!
//! The rules (also in the module docs of [`console`](super)):
//! - a trace is ready at the end of the batch that brings its **true root** (a span with no
//!   parent);
//! - a **local root** (a span whose parent is remote) whose parent is not held is ready after
//!   the **grace** period, unless that parent arrives meanwhile: then the trace waits for its
//!   true root like any other;
//! - a trace whose spans stopped coming is ready after the **idle** timeout, and any trace
//!   after the **maximum age** since its first span arrived;
//! - spans of a trace printed before gather as a **late** addendum, ready at the end of the
//!   batch that brings a true root, or once no late span arrived for the grace period;
//! - a flush makes everything ready.
//!
//! Memory is bounded by three limits: traces held, spans held in all, spans held per trace.
//! A span over a limit is dropped and counted; a true root is always let in for a trace
//! already held (it lets the trace print and free its memory), so the per-trace bound can be
//! passed by one.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use crate::context::{SpanId, TraceId};
use crate::record::data::SpanRecord;

/// Memory limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_traces: usize,
    pub(crate) max_spans: usize,
    pub(crate) max_spans_per_trace: usize,
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
    #[allow(dead_code)] // Read by tests; kept for diagnostics.
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

    /// Holds `span` until its trace is ready, or drops it at a limit.
    pub(crate) fn add(&mut self, span: &SpanRecord, now: Instant) -> Added {
        let trace_id = span.trace_id();
        let root = span.is_root();
        let spans_full = self.spans_held >= self.limits.max_spans;
        let traces_full = self.pending.len() >= self.limits.max_traces;
        let pending = match self.pending.entry(trace_id) {
            Entry::Occupied(entry) => {
                let pending = entry.into_mut();
                let lets_in = root && !pending.has_root;
                if !lets_in
                    && (spans_full || pending.spans.len() >= self.limits.max_spans_per_trace)
                {
                    pending.dropped += 1;
                    pending.last_seen = now;
                    return Added::Dropped;
                }
                pending
            }
            Entry::Vacant(entry) => {
                if spans_full || traces_full || self.limits.max_spans_per_trace == 0 {
                    return Added::Dropped;
                }
                self.seq += 1;
                entry.insert(Pending {
                    spans: Vec::new(),
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
        pending.ids.insert(span.span_id());
        pending.last_seen = now;
        self.spans_held += 1;
        if root {
            if !pending.has_root {
                pending.has_root = true;
                self.rooted.push(trace_id);
            }
        } else if pending.late
            || (span.parent_is_remote && !pending.ids.contains(&span.parent_span_id))
        {
            // Late spans settle once none came for the grace period; a local root waits
            // that long for its remote parent.
            pending.wait_since = Some(now);
        }
        Added::Held { late: pending.late }
    }

    fn release(&mut self, trace_id: TraceId, why: Why) -> Option<Ready> {
        let pending = self.pending.remove(&trace_id)?;
        self.spans_held = self.spans_held.saturating_sub(pending.spans.len());
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
        a.take_due(t0 + ms(300), &mut out);
        assert!(out.is_empty(), "quiet for 150ms only");
        a.take_due(t0 + ms(350), &mut out);
        assert_eq!(out.len(), 1);
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
