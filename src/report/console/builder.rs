//! [`ConsoleBuilder`]: where the console reporter writes, what it prints, how long it waits
//! and how much it holds.

use std::fmt;
use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::span::SpanRecord;

use super::assemble::{Assembler, Limits, Timeouts};
use super::clock::{Clock, SystemClock};
use super::render::{extent, has_error};
use super::summary::Summary;
use super::terminal::{auto_color, Target};
use super::{ConsoleReporter, Shared};

/// Which traces the console prints. See the [module docs](super#modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceFilter {
    /// Every trace (the default).
    #[default]
    All,
    /// Traces with at least one span of status Error.
    Errors,
    /// Traces with an error, and traces that took at least this long (from the earliest
    /// span start to the latest span end).
    ErrorsOrSlowerThan(Duration),
}

impl TraceFilter {
    /// Whether a trace made of `spans` is printed.
    pub fn accepts(&self, spans: &[SpanRecord]) -> bool {
        match *self {
            TraceFilter::All => true,
            TraceFilter::Errors => has_error(spans),
            TraceFilter::ErrorsOrSlowerThan(threshold) => {
                has_error(spans) || {
                    let (start, end) = extent(spans);
                    end.duration_since(start).unwrap_or_default() >= threshold
                }
            }
        }
    }
}

/// Configures a [`ConsoleReporter`]; start with [`ConsoleReporter::builder`]. Every setting
/// has a default, listed on its method and in the [module docs](super#defaults).
#[must_use = "a builder does nothing until `build`"]
pub struct ConsoleBuilder {
    target: Target,
    color: Option<bool>,
    width: Option<usize>,
    filter: TraceFilter,
    summary: bool,
    limits: Limits,
    timeouts: Timeouts,
    summary_operations: usize,
    summary_samples: usize,
    clock: Box<dyn Clock>,
}

impl Default for ConsoleBuilder {
    fn default() -> Self {
        ConsoleBuilder {
            target: Target::Stderr,
            color: None,
            width: None,
            filter: TraceFilter::All,
            summary: false,
            limits: Limits {
                max_traces: 1024,
                max_spans: 65_536,
                max_spans_per_trace: 8192,
                max_bytes: 64 << 20,
                max_bytes_per_trace: 8 << 20,
                remember: 4096,
            },
            timeouts: Timeouts {
                grace: Duration::from_millis(200),
                idle: Duration::from_secs(10),
                max_age: Duration::from_secs(60),
            },
            summary_operations: 512,
            summary_samples: 1024,
            clock: Box::new(SystemClock),
        }
    }
}

impl ConsoleBuilder {
    /// Writes to `writer` instead of stderr. A writer is not a terminal: no colour unless
    /// [`color(true)`](Self::color), width from `COLUMNS` or 120 unless [`width`](Self::width).
    pub fn writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.target = Target::Writer(Box::new(writer));
        self
    }

    /// Writes to stdout, with colour and width following it when it is a terminal.
    pub fn stdout(mut self) -> Self {
        self.target = Target::Stdout;
        self
    }

    /// Writes to stderr (the default), with colour and width following it when it is a
    /// terminal.
    pub fn stderr(mut self) -> Self {
        self.target = Target::Stderr;
        self
    }

    /// Forces ANSI colour on or off. By default colour is on only when the output is a
    /// terminal and `NO_COLOR` is unset or empty ([`ConsoleReporter::auto_color`]).
    pub fn color(mut self, color: bool) -> Self {
        self.color = Some(color);
        self
    }

    /// Fixes the line width in columns. By default: `COLUMNS` when set, else the terminal's
    /// width, else 120, read again for every trace.
    pub fn width(mut self, columns: usize) -> Self {
        self.width = Some(columns);
        self
    }

    /// Which traces to print (default [`TraceFilter::All`]).
    pub fn filter(mut self, filter: TraceFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Prints a per-operation summary on shutdown (default off; on in
    /// [`dev::init`](crate::dev::init)).
    pub fn summary(mut self, on: bool) -> Self {
        self.summary = on;
        self
    }

    /// How long a local root (a span whose parent is remote) waits for that parent to show
    /// up before its trace prints without it, counted from the trace's first such local root;
    /// also how long a late addendum gathers after its first span. Default 200 ms.
    pub fn remote_parent_grace(mut self, grace: Duration) -> Self {
        self.timeouts.grace = grace;
        self
    }

    /// A trace that received no span for this long prints as it is. Default 10 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.idle = timeout;
        self
    }

    /// A trace held this long since its first span arrived prints as it is. Default 60 s.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.timeouts.max_age = age;
        self
    }

    /// Most traces held at once; spans of further traces are dropped. Default 1024.
    pub fn max_traces(mut self, traces: usize) -> Self {
        self.limits.max_traces = traces;
        self
    }

    /// Most spans held at once, all traces together. Default 65 536.
    pub fn max_spans(mut self, spans: usize) -> Self {
        self.limits.max_spans = spans;
        self
    }

    /// Most spans held for one trace. Default 8192.
    pub fn max_spans_per_trace(mut self, spans: usize) -> Self {
        self.limits.max_spans_per_trace = spans;
        self
    }

    /// Most bytes held at once, all traces together: about what the spans' records and their
    /// names, attribute values, events and links take. Default 64 MiB.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_bytes = bytes;
        self
    }

    /// Most bytes held for one trace, counted as for [`max_bytes`](Self::max_bytes).
    /// Default 8 MiB.
    pub fn max_bytes_per_trace(mut self, bytes: usize) -> Self {
        self.limits.max_bytes_per_trace = bytes;
        self
    }

    /// How many printed trace ids are remembered, to print spans arriving after their trace
    /// as a late addendum. Default 4096.
    pub fn remember_printed(mut self, traces: usize) -> Self {
        self.limits.remember = traces;
        self
    }

    /// Most operations the summary tracks. Default 512.
    pub fn summary_operations(mut self, operations: usize) -> Self {
        self.summary_operations = operations;
        self
    }

    /// Durations kept per operation for the summary's percentiles. Default 1024.
    pub fn summary_samples(mut self, samples: usize) -> Self {
        self.summary_samples = samples;
        self
    }

    /// The clock for timeouts (default [`SystemClock`]); see [`Clock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// The reporter.
    pub fn build(self) -> ConsoleReporter {
        let color = self.color.unwrap_or_else(|| {
            auto_color(
                self.target.is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            )
        });
        let shared = Arc::new(Shared {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            summary: self
                .summary
                .then(|| Mutex::new(Summary::new(self.summary_operations, self.summary_samples))),
        });
        ConsoleReporter {
            target: self.target,
            color,
            width: self.width,
            filter: self.filter,
            assembler: Assembler::new(self.limits, self.timeouts),
            shared,
            clock: self.clock,
            buf: Vec::new(),
            ready: Vec::new(),
            shut_down: false,
        }
    }
}

impl fmt::Debug for ConsoleBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleBuilder")
            .field("target", &self.target)
            .field("color", &self.color)
            .field("width", &self.width)
            .field("filter", &self.filter)
            .field("summary", &self.summary)
            .field("limits", &self.limits)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}
