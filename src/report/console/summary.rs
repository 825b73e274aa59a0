//! Per-operation counts and latency percentiles, printed when the reporter shuts down.
//!
//! An operation is a (service, kind, span name) of a span that starts a piece of work in its
//! service: a true root, a local root (remote parent) or a server span. Each such span
//! counts as one trace of the operation, and as an error when its status is Error.
//!
//! Percentiles use the nearest-rank method: for `n` sorted durations, the p-th percentile is
//! the value at rank `⌈p/100 · n⌉` (1-based, at least 1), always an observed duration.
//!
//! Memory is bounded: each operation keeps at most `samples` durations, a uniform reservoir
//! (algorithm R with a fixed seed) once it has seen more, and at most `max_operations`
//! operations are tracked. Percentiles are exact while an operation has no more traces than
//! samples, estimates (marked `~`) after. Spans of operations beyond the limit are counted,
//! not summarised.
//!
//! # Requests measured by the layers
//!
//! Spans are sampled and filtered; the layers' [request metrics](crate::metrics) count every
//! request. When [`dev::init`](crate::dev::init) installs the reporter, the server layers
//! that record metrics (`ServerLayer::metrics`, with any meter provider) also hand each
//! request they measure to the summary, as it ends: its service, its operation (the span
//! name the layer gives it by default: `{method} {route}`, `{method}`, or the gRPC method),
//! its duration and whether it failed (`error.type`). Such an operation's row comes from
//! those measurements alone, so unsampled and filtered requests count; its server spans are
//! left out of the table, not to count a request twice. Operations no metered layer
//! measures (an unmetered layer's requests, traces started by a job) still come from spans.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::report::memory::kind_name;
use crate::span::{SpanKind, SpanRecord, Status};

use super::text::{self, duration, pad, write_fit, Short};

/// Counts and nearest-rank latency percentiles of one operation, from
/// [`ConsoleHandle::summary`](super::ConsoleHandle::summary).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperationSummary {
    /// The service that ran the operation.
    pub service: Arc<str>,
    /// The kind of its spans (server for requests served, internal or client for work that
    /// started a trace).
    pub kind: SpanKind,
    /// The span name.
    pub operation: String,
    /// Spans of this operation: one per request served or trace started.
    pub traces: u64,
    /// Those with status Error.
    pub errors: u64,
    /// Median duration (nearest rank).
    pub p50: Duration,
    /// 95th percentile duration (nearest rank).
    pub p95: Duration,
    /// 99th percentile duration (nearest rank).
    pub p99: Duration,
    /// The percentiles come from a sample of the durations (more traces than the reservoir
    /// holds), so they are estimates.
    pub sampled: bool,
}

struct Op {
    kind: SpanKind,
    traces: u64,
    errors: u64,
    /// Durations in nanoseconds: all of them, or a uniform sample once full.
    samples: Vec<u64>,
}

impl Op {
    fn new(kind: SpanKind) -> Self {
        Op {
            kind,
            traces: 0,
            errors: 0,
            samples: Vec::new(),
        }
    }

    /// One more trace (or request) of the operation.
    fn observe(&mut self, nanos: u64, error: bool, samples: usize, rng: &mut fastrand::Rng) {
        self.traces += 1;
        if error {
            self.errors += 1;
        }
        if self.samples.len() < samples {
            self.samples.push(nanos);
        } else if samples > 0 {
            // Algorithm R: keep the new value with probability samples / traces.
            let j = rng.u64(0..self.traces);
            if let Ok(j) = usize::try_from(j) {
                if j < samples {
                    self.samples[j] = nanos;
                }
            }
        }
    }
}

/// The summary's state: service → kind → span name → operation.
pub(crate) struct Summary {
    ops: HashMap<Arc<str>, HashMap<&'static str, HashMap<String, Op>>>,
    /// Requests the server layers measured: service → operation.
    measured: HashMap<Arc<str>, HashMap<String, Op>>,
    count: usize,
    max_operations: usize,
    samples: usize,
    untracked: u64,
    rng: fastrand::Rng,
}

/// Whether `span` starts work in its service and so counts in the summary.
fn counts(span: &SpanRecord) -> bool {
    span.is_root() || span.parent_is_remote || span.kind == SpanKind::Server
}

/// The nearest-rank `p`-th percentile of `sorted` (ascending); 0 when empty.
pub(crate) fn nearest_rank(sorted: &[u64], p: u32) -> u64 {
    let n = sorted.len();
    if n == 0 {
        return 0;
    }
    let rank = (usize::try_from(p).unwrap_or(100).min(100) * n).div_ceil(100);
    sorted[rank.clamp(1, n) - 1]
}

impl Summary {
    pub(crate) fn new(max_operations: usize, samples: usize) -> Self {
        Summary {
            ops: HashMap::new(),
            measured: HashMap::new(),
            count: 0,
            max_operations,
            samples,
            untracked: 0,
            rng: fastrand::Rng::with_seed(0x7472_6163_6577_6972),
        }
    }

    pub(crate) fn record(&mut self, span: &SpanRecord) {
        if !counts(span) {
            return;
        }
        let kind = kind_name(&span.kind);
        let known = self
            .ops
            .get(&*span.service_name)
            .and_then(|kinds| kinds.get(kind))
            .is_some_and(|names| names.contains_key(&*span.name));
        if !known {
            if self.count >= self.max_operations {
                self.untracked += 1;
                return;
            }
            self.count += 1;
        }
        let names = self
            .ops
            .entry(span.service_name.clone())
            .or_default()
            .entry(kind)
            .or_default();
        let op = match names.get_mut(&*span.name) {
            Some(op) => op,
            None => names
                .entry(span.name.to_string())
                .or_insert_with(|| Op::new(span.kind.clone())),
        };
        let error = matches!(span.status, Status::Error { .. });
        let nanos = u64::try_from(span.duration().as_nanos()).unwrap_or(u64::MAX);
        op.observe(nanos, error, self.samples, &mut self.rng);
    }

    /// A request a server layer measured (see the [module docs](self)).
    #[cfg(feature = "metrics")]
    pub(crate) fn record_measured(
        &mut self,
        service: &Arc<str>,
        operation: &str,
        nanos: u64,
        error: bool,
    ) {
        let known = self
            .measured
            .get(service)
            .is_some_and(|names| names.contains_key(operation));
        if !known {
            if self.count >= self.max_operations {
                self.untracked += 1;
                return;
            }
            self.count += 1;
        }
        let names = self.measured.entry(service.clone()).or_default();
        let op = match names.get_mut(operation) {
            Some(op) => op,
            None => names
                .entry(operation.to_owned())
                .or_insert_with(|| Op::new(SpanKind::Server)),
        };
        op.observe(nanos, error, self.samples, &mut self.rng);
    }

    /// The server spans of this operation are left out: the layer measured its requests.
    fn measured(&self, service: &Arc<str>, kind: &SpanKind, operation: &str) -> bool {
        *kind == SpanKind::Server
            && self
                .measured
                .get(service)
                .is_some_and(|names| names.contains_key(operation))
    }

    /// Every operation, by service, then operation name, then kind.
    pub(crate) fn operations(&self) -> Vec<OperationSummary> {
        let mut rows = Vec::with_capacity(self.count);
        let mut sorted = Vec::new();
        let mut row = |service: &Arc<str>, name: &String, op: &Op| {
            sorted.clear();
            sorted.extend_from_slice(&op.samples);
            sorted.sort_unstable();
            let p = |p| Duration::from_nanos(nearest_rank(&sorted, p));
            rows.push(OperationSummary {
                service: service.clone(),
                kind: op.kind.clone(),
                operation: name.clone(),
                traces: op.traces,
                errors: op.errors,
                p50: p(50),
                p95: p(95),
                p99: p(99),
                sampled: op.traces > op.samples.len() as u64,
            });
        };
        for (service, kinds) in &self.ops {
            for names in kinds.values() {
                for (name, op) in names {
                    if !self.measured(service, &op.kind, name) {
                        row(service, name, op);
                    }
                }
            }
        }
        for (service, names) in &self.measured {
            for (name, op) in names {
                row(service, name, op);
            }
        }
        rows.sort_by(|a, b| {
            (&a.service, &a.operation, kind_name(&a.kind)).cmp(&(
                &b.service,
                &b.operation,
                kind_name(&b.kind),
            ))
        });
        rows
    }

    /// Writes the summary table, at most `width` columns a line; nothing when no operation
    /// was seen.
    pub(crate) fn render(&self, width: usize, color: bool, out: &mut Vec<u8>) {
        let rows = self.operations();
        if rows.is_empty() && self.untracked == 0 {
            return;
        }
        let width = width.max(1);
        let percentile = |d: Duration, sampled: bool| {
            let mut s = Short::EMPTY;
            if sampled {
                s.write_char('~').ok();
            }
            s.write_str(duration(d).as_str()).ok();
            s
        };
        let number = |n: u64| {
            let mut s = Short::EMPTY;
            let _ = write!(s, "{n}");
            s
        };
        let cells: Vec<[Short; 5]> = rows
            .iter()
            .map(|r| {
                [
                    number(r.traces),
                    number(r.errors),
                    percentile(r.p50, r.sampled),
                    percentile(r.p95, r.sampled),
                    percentile(r.p99, r.sampled),
                ]
            })
            .collect();
        let titles = ["traces", "errors", "p50", "p95", "p99"];
        let mut num_w = titles.map(text::width);
        for row in &cells {
            for (w, cell) in num_w.iter_mut().zip(row) {
                *w = (*w).max(cell.width());
            }
        }
        let service_w = rows
            .iter()
            .map(|r| text::width(&r.service))
            .fold(text::width("service"), usize::max)
            .min(24);
        let kind_w = rows
            .iter()
            .map(|r| kind_name(&r.kind).len())
            .fold(4, usize::max);
        let numbers: usize = num_w.iter().map(|w| w + 2).sum();
        let operation_w = rows
            .iter()
            .map(|r| text::width(&r.operation))
            .fold(text::width("operation"), usize::max)
            .min(
                width
                    .saturating_sub(service_w + kind_w + 4 + numbers)
                    .max(9),
            );

        let bold = if color { "\x1b[1m" } else { "" };
        let red = if color { "\x1b[31m" } else { "" };
        let reset = if color { "\x1b[0m" } else { "" };
        let mut title = String::new();
        let _ = write!(
            title,
            "summary  {} {}, durations p50/p95/p99 by nearest rank",
            rows.len(),
            if rows.len() == 1 {
                "operation"
            } else {
                "operations"
            }
        );
        out.extend_from_slice(bold.as_bytes());
        write_fit(out, &title, width);
        out.extend_from_slice(reset.as_bytes());
        out.push(b'\n');

        let line = |out: &mut Vec<u8>, left: [&str; 3], right: [&str; 5], error: bool| {
            let mut col = 0;
            for (k, (s, w)) in left
                .iter()
                .zip([service_w, kind_w, operation_w])
                .enumerate()
            {
                let w = w.min(width.saturating_sub(col));
                let n = write_fit(out, s, w);
                pad(out, w - n);
                col += w;
                // The number columns bring their own gap.
                if k < 2 {
                    let gap = 2usize.min(width.saturating_sub(col));
                    pad(out, gap);
                    col += gap;
                }
            }
            for (k, (s, w)) in right.iter().zip(num_w).enumerate() {
                if width.saturating_sub(col) < w + 2 {
                    break;
                }
                pad(out, w + 2 - text::width(s).min(w));
                if k == 1 && error {
                    out.extend_from_slice(red.as_bytes());
                }
                write_fit(out, s, w);
                if k == 1 && error {
                    out.extend_from_slice(reset.as_bytes());
                }
                col += w + 2;
            }
            // No trailing blanks.
            while out.last() == Some(&b' ') {
                out.pop();
            }
            out.push(b'\n');
        };
        line(out, ["service", "kind", "operation"], titles, false);
        for (r, c) in rows.iter().zip(&cells) {
            line(
                out,
                [&r.service, kind_name(&r.kind), &r.operation],
                [
                    c[0].as_str(),
                    c[1].as_str(),
                    c[2].as_str(),
                    c[3].as_str(),
                    c[4].as_str(),
                ],
                r.errors > 0,
            );
        }
        if rows.iter().any(|r| r.sampled) {
            let mut note = String::new();
            let _ = write!(
                note,
                "~ estimated from a sample of {} durations",
                self.samples
            );
            write_fit(out, &note, width);
            out.push(b'\n');
        }
        if self.untracked > 0 {
            let mut note = String::new();
            let _ = write!(
                note,
                "{} spans of further operations not summarised (limit: {} operations)",
                self.untracked, self.max_operations
            );
            write_fit(out, &note, width);
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_picks_observed_values() {
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(nearest_rank(&v, 50), 5);
        assert_eq!(nearest_rank(&v, 95), 10);
        assert_eq!(nearest_rank(&v, 99), 10);
        assert_eq!(nearest_rank(&v, 0), 1);
        assert_eq!(nearest_rank(&v, 10), 1);
        assert_eq!(nearest_rank(&v, 11), 2);
        assert_eq!(nearest_rank(&[7], 99), 7);
        assert_eq!(nearest_rank(&[], 50), 0);
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&hundred, 95), 95);
        assert_eq!(nearest_rank(&hundred, 99), 99);
        assert_eq!(nearest_rank(&hundred, 200), 100);
    }
}
