//! The console reporter: whole traces as trees in the terminal, for development.
//!
//! [`ConsoleReporter`] gathers the spans of each trace, and once the trace is complete prints
//! it as one block: a header line, then the spans as a tree with their service, kind, name,
//! status, duration and a waterfall bar, and their events underneath. Errors stand out in
//! red on a terminal. [`dev::init`](crate::dev::init) installs it with a `fmt` log layer in
//! one call; this module is for setting it up by hand.
//!
//! ```
//! use tracewire::record::Recorder;
//! use tracewire::report::ConsoleReporter;
//! use tracing_subscriber::layer::SubscriberExt;
//! # use std::sync::{Arc, Mutex};
//! # #[derive(Clone, Default)]
//! # struct Shared(Arc<Mutex<Vec<u8>>>);
//! # impl std::io::Write for Shared {
//! #     fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
//! #         self.0.lock().unwrap().extend_from_slice(buf);
//! #         Ok(buf.len())
//! #     }
//! #     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! # }
//!
//! let out = Shared::default(); // a Vec<u8> behind a mutex
//! let console = ConsoleReporter::builder()
//!     .writer(out.clone()) // stderr when not set
//!     .color(false)
//!     .width(100)
//!     .build();
//! let (recorder, guard) = Recorder::builder()
//!     .service_name("checkout")
//!     .reporter(console)
//!     .build();
//!
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(recorder), || {
//!     let _request = tracing::info_span!(
//!         "POST /checkout",
//!         otel.kind = "server",
//!         http.response.status_code = 200
//!     )
//!     .entered();
//!     tracing::info_span!("reserve", otel.kind = "client").in_scope(|| {
//!         tracing::info!("reserved");
//!     });
//! });
//! guard.flush().unwrap();
//!
//! let printed = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
//! assert!(printed.starts_with("trace "));
//! assert!(printed.contains("\ncheckout  ▸ POST /checkout     200 "));
//! assert!(printed.contains("\n└─ checkout  ◂ reserve"));
//! assert!(printed.contains("\n      • reserved  +"));
//! ```
//!
//! prints (ids and times vary):
//!
//! ```text
//! trace b09ac0a02482346bfea199a81b3c7477  POST /checkout  1.5ms  OK  2 spans, 1 service  checkout
//! checkout  ▸ POST /checkout     200    1.5ms |█████████████████████████|
//! └─ checkout  ◂ reserve              908.7µs |       ███████████████   |
//!       • reserved  +728.2µs
//! ```
//!
//! A trace across three services of one process, where checkout's payment call fails
//! (from this crate's snapshot tests, at 120 columns):
//!
//! ```text
//! trace 4bf92f3577b34da6a3ce929d0e0e4736  POST /checkout  98.1ms  ERROR  5 spans, 3 services  checkout → inventory, payme…
//! checkout   ▸ POST /checkout                    500  98.1ms |██████████████████████████████|
//! ├─ checkout   ◂ GET                            200  20.3ms |██████                        |
//! │  └─ inventory ⇠▸ GET /items/{sku}            200  18.0ms |██████                        |
//! └─ checkout   ◂ payment.Pay/Charge     UNAVAILABLE  60.2ms |        ██████████████████    |
//!    └─ payment   ⇠▸ payment.Pay/Charge  UNAVAILABLE  58.9ms |        ██████████████████    |
//!          • exception: gateway timeout  +57.1ms
//! ```
//!
//! # What a block shows
//!
//! The **header**: the trace id, a tag (`late` for an addendum, `incomplete` when neither
//! a root nor a local root is in the block), the name of the top span, the trace's duration
//! (earliest start to latest end), `OK` or `ERROR` (any span with status Error), the numbers
//! of orphans and dropped spans when not zero, the numbers of spans and services, and the
//! service path: the top span's service, then the others in the order the tree meets them.
//!
//! A **span line**: the tree connectors (`├─ `, `└─ `, `│  `); the service; `⇠` when the
//! parent is remote: it came with the request, from another process or from a client of
//! this one; the kind: `▸` server, `◂` client, `▹` producer, `◃` consumer, blank for
//! internal; the name, followed by `http.route` when the name does not contain it; the
//! status column: the gRPC code name
//! from `rpc.grpc.status_code` (`UNAVAILABLE`), else `http.response.status_code`, else
//! `ERROR` for a span with status Error (red when the span failed, yellow for an HTTP 4xx
//! that did not); the duration in µs, ms or s with one decimal; and a bar placed by the
//! span's start and sized by its duration relative to the trace, at least one cell for any
//! span that took time.
//!
//! Under a span, one line per **event** with its offset from the trace start
//! (`• exception: gateway timeout  +57.1ms`; an `exception` event shows its
//! `exception.message`), and `• error: …` for an error status message that neither an
//! exception event nor the status column already shows.
//!
//! Siblings are ordered by start time. Spans whose parent never arrived print after the
//! tree, under a `? parent <span id> not received (orphans)` line per missing parent.
//!
//! # When a trace prints
//!
//! Spans arrive children first and out of order, from every service of the process. They
//! are gathered by trace id, and a trace prints:
//!
//! - at the end of the batch that brings its **true root** (a span without parent);
//! - for a **local root** — a span whose parent is remote and not held here, as for a
//!   service called by another process — after a **grace period** (default 200 ms) in
//!   which that parent may still show up. When two services of one process call each other,
//!   the caller's client span usually arrives within that time; the server span then is an
//!   ordinary child, and the trace waits for its true root;
//! - after an **idle timeout** (default 10 s) without a new span, or at a **maximum age**
//!   (default 60 s) since its first span arrived, as it is: stalled traces and long-running
//!   ones do not wait forever;
//! - on [`Reporter::flush`] and [`Reporter::shutdown`]: everything held.
//!
//! Spans arriving after their trace printed (a spawned task that outlives the request, a
//! client span that closed after the server span's grace period) print as a **late**
//! addendum, the grace period after the first late span, with event offsets from the
//! original trace start. Printed trace ids are remembered (default 4096, oldest forgotten
//! first) to recognise them.
//!
//! Timeouts are checked on [`Reporter::tick`], which the recorder's worker calls about every
//! flush interval. Time comes from a [`Clock`], which tests replace to make timeouts fire
//! without sleeping.
//!
//! # Width and colour
//!
//! Lines are at most as wide as the terminal: the [`width`](ConsoleBuilder::width) set on
//! the builder, else `COLUMNS`, else the width of the terminal written to, else 120.
//! Columns give way in order — the bar narrows, then goes, then the status, then the
//! duration — and names are cut with `…`. Trees deeper than half the width show their outer
//! levels as `…`. Widths are counted in terminal columns: East Asian wide characters (CJK,
//! most emoji) take two, combining marks none, box-drawing characters one. Control
//! characters and Unicode format characters (category `Cf`: bidi overrides and isolates,
//! zero-width characters) in names and values print as spaces.
//!
//! Colour is on when the output is a terminal and `NO_COLOR` is unset or empty
//! ([`ConsoleReporter::auto_color`]), unless the builder says [`color`](ConsoleBuilder::color).
//! A custom [`writer`](ConsoleBuilder::writer) is never taken for a terminal.
//!
//! # Modes
//!
//! [`TraceFilter::All`] prints every trace; [`TraceFilter::Errors`] only traces with an
//! error; [`TraceFilter::ErrorsOrSlowerThan`] also those that took at least the threshold.
//! A late addendum prints when its trace printed, or when it qualifies itself.
//!
//! # Summary
//!
//! With [`summary(true)`](ConsoleBuilder::summary) (off by default, on in
//! [`dev::init`](crate::dev::init)) the reporter prints a table on shutdown:
//!
//! ```text
//! summary  3 operations, durations p50/p95/p99 by nearest rank
//! service    kind    operation           traces  errors     p50     p95     p99
//! checkout   server  POST /checkout          20       4  10.0ms  19.0ms  20.0ms
//! inventory  server  GET /items/{sku}         3       0   2.0ms   3.0ms   3.0ms
//! payment    server  payment.Pay/Charge       1       1   7.0ms   7.0ms   7.0ms
//! ```
//!
//! An operation is a service, kind and span name of a span that starts work in its service:
//! a true root, a local root or a server span; each counts once, as an error when its
//! status is Error. Percentiles are nearest-rank: of `n` sorted durations, the p-th
//! percentile is the one at rank `⌈p/100 · n⌉`. Each operation keeps at most
//! [`summary_samples`](ConsoleBuilder::summary_samples) durations (default 1024), a uniform
//! reservoir sample beyond that (the percentiles are then estimates, marked `~`), and at
//! most [`summary_operations`](ConsoleBuilder::summary_operations) operations are tracked
//! (default 512). [`ConsoleHandle::summary`] returns the same figures as data.
//!
//! # Defaults
//!
//! | setting | default |
//! |---|---|
//! | output | stderr ([`writer`](ConsoleBuilder::writer), [`stdout`](ConsoleBuilder::stdout)) |
//! | [`filter`](ConsoleBuilder::filter) | every trace |
//! | [`summary`](ConsoleBuilder::summary) | off |
//! | [`remote_parent_grace`](ConsoleBuilder::remote_parent_grace) | 200 ms |
//! | [`idle_timeout`](ConsoleBuilder::idle_timeout) | 10 s |
//! | [`max_age`](ConsoleBuilder::max_age) | 60 s |
//! | [`max_traces`](ConsoleBuilder::max_traces) | 1024 traces held |
//! | [`max_spans`](ConsoleBuilder::max_spans) | 65 536 spans held |
//! | [`max_spans_per_trace`](ConsoleBuilder::max_spans_per_trace) | 8192 |
//! | [`max_bytes`](ConsoleBuilder::max_bytes) | 64 MiB held |
//! | [`max_bytes_per_trace`](ConsoleBuilder::max_bytes_per_trace) | 8 MiB |
//! | [`remember_printed`](ConsoleBuilder::remember_printed) | 4096 trace ids |
//!
//! Memory is bounded by the five `max_*` limits, in traces, spans and bytes (an estimate of
//! each span's record and what it owns: names, attribute values, events, links): a span over
//! one of them is dropped and counted in [`ConsoleStats::spans_dropped`] and in its trace's
//! header. A trace's true root is always let in, since it lets the trace print and free its
//! memory. A caller who keeps sending spans for the same few traces cannot keep them held:
//! the grace period runs from a trace's first local root (or first late span) and does not
//! restart, and each trace holds at most its share of spans and bytes.

pub(crate) mod assemble; // Also assembles the trace viewer's traces (`ui`).
mod builder;
mod clock;
mod render;
mod summary;
mod terminal;
pub(crate) mod text;
mod tree;

use std::ffi::OsStr;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::context::TraceId;
use crate::report::Reporter;
use crate::span::SpanRecord;

use assemble::{Added, Assembler, Ready};
use render::Block;
use summary::Summary;
use terminal::Target;

pub use builder::{ConsoleBuilder, TraceFilter};
pub use clock::{Clock, SystemClock};
pub use summary::OperationSummary;

const TRACES_PRINTED: usize = 0;
const TRACES_FILTERED: usize = 1;
const SPANS_PRINTED: usize = 2;
const LATE_SPANS: usize = 3;
const SPANS_DROPPED: usize = 4;
const WRITE_ERRORS: usize = 5;
const TRACES_HELD: usize = 6;
const SPANS_HELD: usize = 7;
const BYTES_HELD: usize = 8;
const COUNTERS: usize = 9;

/// Largest output buffer kept between traces, in bytes.
const MAX_KEPT_BUFFER: usize = 1 << 20;

/// State shared between the reporter and its handles.
struct Shared {
    counters: [AtomicU64; COUNTERS],
    summary: Option<Mutex<Summary>>,
}

impl Shared {
    fn add(&self, counter: usize, n: u64) {
        self.counters[counter].fetch_add(n, Ordering::Relaxed);
    }

    fn set(&self, counter: usize, n: usize) {
        self.counters[counter].store(n as u64, Ordering::Relaxed);
    }

    fn get(&self, counter: usize) -> u64 {
        self.counters[counter].load(Ordering::Relaxed)
    }

    fn summary(&self) -> Option<MutexGuard<'_, Summary>> {
        // A panic while recording cannot leave the maps unusable: take the data as it is.
        self.summary
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Prints each trace as a tree when it is complete; see the [module docs](self).
///
/// Build it with [`ConsoleReporter::new`] (stderr, every trace, no summary) or
/// [`ConsoleReporter::builder`], and install it with
/// [`RecorderBuilder::reporter`](crate::record::RecorderBuilder::reporter). Read its
/// counters through a [`ConsoleHandle`] taken before installing it.
pub struct ConsoleReporter {
    target: Target,
    color: bool,
    width: Option<usize>,
    filter: TraceFilter,
    assembler: Assembler,
    shared: Arc<Shared>,
    clock: Box<dyn Clock>,
    buf: Vec<u8>,
    ready: Vec<Ready>,
    shut_down: bool,
}

/// Counters of a [`ConsoleReporter`], from [`ConsoleHandle::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsoleStats {
    /// Trace blocks written, late addenda included.
    pub traces_printed: u64,
    /// Traces left out by the [`TraceFilter`].
    pub traces_filtered: u64,
    /// Spans written.
    pub spans_printed: u64,
    /// Spans that arrived after their trace was printed.
    pub late_spans: u64,
    /// Spans dropped because a memory limit was reached.
    pub spans_dropped: u64,
    /// Failed writes to the output (the block is lost, the reporter carries on).
    pub write_errors: u64,
    /// Traces held now, waiting to print.
    pub traces_held: u64,
    /// Spans held now.
    pub spans_held: u64,
    /// Bytes held now, about: the spans' records and what they own (names, attributes,
    /// events, links).
    pub bytes_held: u64,
}

/// A cheap, cloneable view of a [`ConsoleReporter`]'s counters and summary, usable after
/// the reporter moved into the recorder.
#[derive(Clone)]
pub struct ConsoleHandle {
    shared: Arc<Shared>,
}

impl ConsoleHandle {
    /// The reporter's counters.
    pub fn stats(&self) -> ConsoleStats {
        let s = &self.shared;
        ConsoleStats {
            traces_printed: s.get(TRACES_PRINTED),
            traces_filtered: s.get(TRACES_FILTERED),
            spans_printed: s.get(SPANS_PRINTED),
            late_spans: s.get(LATE_SPANS),
            spans_dropped: s.get(SPANS_DROPPED),
            write_errors: s.get(WRITE_ERRORS),
            traces_held: s.get(TRACES_HELD),
            spans_held: s.get(SPANS_HELD),
            bytes_held: s.get(BYTES_HELD),
        }
    }

    /// The summary so far, by service and operation; empty when the summary is off.
    pub fn summary(&self) -> Vec<OperationSummary> {
        self.shared
            .summary()
            .map(|s| s.operations())
            .unwrap_or_default()
    }

    /// Counts a request a server layer measured in the summary (see its
    /// [module docs](summary)).
    #[cfg(feature = "metrics")]
    pub(crate) fn record_measured(
        &self,
        service: &Arc<str>,
        operation: &str,
        nanos: u64,
        error: bool,
    ) {
        if let Some(mut summary) = self.shared.summary() {
            summary.record_measured(service, operation, nanos, error);
        }
    }
}

impl fmt::Debug for ConsoleHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for ConsoleReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleReporter {
    /// A reporter with the defaults: stderr, colour and width following the terminal,
    /// every trace, no summary.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, to choose the output, filter, summary, timeouts and limits.
    pub fn builder() -> ConsoleBuilder {
        ConsoleBuilder::default()
    }

    /// A handle on the counters and the summary.
    pub fn handle(&self) -> ConsoleHandle {
        ConsoleHandle {
            shared: self.shared.clone(),
        }
    }

    /// The reporter's counters.
    pub fn stats(&self) -> ConsoleStats {
        self.handle().stats()
    }

    /// The automatic colour decision: colour when the output `is_terminal` and `no_color`
    /// (the value of `NO_COLOR`) is unset or empty, as <https://no-color.org> asks.
    pub fn auto_color(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
        terminal::auto_color(is_terminal, no_color)
    }

    /// Renders `spans` as the reporter would print them, one block per trace id (in order
    /// of first appearance), without waiting, filtering or remembering anything. For
    /// snapshot tests and benchmarks.
    pub fn render(&self, spans: &[SpanRecord], out: &mut Vec<u8>) {
        let Some(first) = spans.first() else {
            return;
        };
        let width = self.width();
        let one = |spans: &[SpanRecord], out: &mut Vec<u8>| {
            let block = Block {
                spans,
                late: false,
                origin: None,
                dropped: 0,
            };
            render::render(&block, width, self.color, out);
        };
        let trace_id = first.trace_id();
        if spans.iter().all(|s| s.trace_id() == trace_id) {
            one(spans, out);
            return;
        }
        let mut traces: Vec<(TraceId, Vec<SpanRecord>)> = Vec::new();
        for span in spans {
            match traces.iter_mut().find(|(id, _)| *id == span.trace_id()) {
                Some((_, group)) => group.push(span.clone()),
                None => traces.push((span.trace_id(), vec![span.clone()])),
            }
        }
        for (_, group) in &traces {
            one(group, out);
        }
    }

    fn width(&self) -> usize {
        self.width.unwrap_or_else(|| self.target.width())
    }

    fn update_held(&self) {
        self.shared.set(TRACES_HELD, self.assembler.traces_held());
        self.shared.set(SPANS_HELD, self.assembler.spans_held());
        self.shared.set(BYTES_HELD, self.assembler.bytes_held());
    }

    /// Prints (or filters out) everything in `self.ready`.
    fn print_ready(&mut self) {
        if self.ready.is_empty() {
            self.update_held();
            return;
        }
        let width = self.width();
        let mut ready = std::mem::take(&mut self.ready);
        for trace in ready.drain(..) {
            let earlier = self.assembler.printed(trace.trace_id);
            let shown = (trace.late && earlier.is_some_and(|p| p.shown))
                || self.filter.accepts(&trace.spans);
            let (start, _) = render::extent(&trace.spans);
            self.assembler.mark_done(trace.trace_id, shown, start);
            if !shown {
                self.shared.add(TRACES_FILTERED, 1);
                continue;
            }
            self.buf.clear();
            let block = Block {
                spans: &trace.spans,
                late: trace.late,
                origin: earlier.filter(|_| trace.late).map(|p| p.start),
                dropped: trace.dropped,
            };
            render::render(&block, width, self.color, &mut self.buf);
            self.write_buf();
            self.shared.add(TRACES_PRINTED, 1);
            self.shared.add(SPANS_PRINTED, trace.spans.len() as u64);
        }
        self.ready = ready;
        self.update_held();
    }

    fn write_buf(&mut self) {
        if self.target.write_all(&self.buf).is_err() {
            self.shared.add(WRITE_ERRORS, 1);
        }
        // One huge trace should not pin its buffer for the life of the program.
        if self.buf.capacity() > MAX_KEPT_BUFFER {
            self.buf = Vec::new();
        }
    }
}

impl Reporter for ConsoleReporter {
    fn report(&mut self, batch: &[SpanRecord]) {
        let now = self.clock.now();
        if let Some(mut summary) = self.shared.summary() {
            for span in batch {
                summary.record(span);
            }
        }
        for span in batch {
            match self.assembler.add(span, now) {
                Added::Held { late: true } => self.shared.add(LATE_SPANS, 1),
                Added::Held { late: false } => {}
                Added::Dropped => self.shared.add(SPANS_DROPPED, 1),
            }
        }
        self.assembler.take_rooted(&mut self.ready);
        self.print_ready();
    }

    fn tick(&mut self) {
        let now = self.clock.now();
        self.assembler.take_due(now, &mut self.ready);
        self.print_ready();
    }

    fn flush(&mut self) {
        self.assembler.take_all(&mut self.ready);
        self.print_ready();
        if self.target.flush().is_err() {
            self.shared.add(WRITE_ERRORS, 1);
        }
    }

    fn shutdown(&mut self) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        self.flush();
        let width = self.width();
        let color = self.color;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if let Some(summary) = self.shared.summary() {
            summary.render(width, color, &mut buf);
        }
        self.buf = buf;
        if !self.buf.is_empty() {
            self.write_buf();
            if self.target.flush().is_err() {
                self.shared.add(WRITE_ERRORS, 1);
            }
        }
    }
}

impl Drop for ConsoleReporter {
    /// Prints what is still held (and the summary), if the recorder did not shut the
    /// reporter down.
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for ConsoleReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleReporter")
            .field("target", &self.target)
            .field("color", &self.color)
            .field("width", &self.width)
            .field("filter", &self.filter)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
