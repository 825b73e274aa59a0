//! Where finished spans go.
//!
//! The recorder never calls a reporter on the request path. A finished span is moved into a
//! bounded queue; a background worker thread drains it in batches and hands each batch to the
//! reporters. When the queue is full the span is dropped and counted ([`Drops::queue_full`]);
//! the caller never waits. A reporter that panics is caught and counted
//! ([`Stats::reporter_panics`]) and keeps receiving later batches.
//!
//! Every span is accounted for ([`Stats`]): recorded = exported + dropped, by cause
//! ([`Drops`]), + still queued, at every moment and for the whole path. Drops are logged at
//! WARN under [`DROP_LOG_TARGET`], at most once per
//! [`drop_warning_interval`](crate::record::RecorderBuilder::drop_warning_interval) (10 s by
//! default), with the counts by cause since the last warning; the recorder never records
//! these events.
//!
//! To hand spans to an OpenTelemetry SDK `SpanProcessor` (the SDK's `BatchSpanProcessor`, or
//! your own), use `ProcessorReporter` (feature `otel`); to export through an SDK
//! `SpanExporter` with tracewire's own batching, `OtelReporter`.
//!
//! Write a reporter by implementing [`Reporter`]; several can be installed side by side with
//! [`RecorderBuilder::reporter`](crate::record::RecorderBuilder::reporter).
//!
//! ```
//! use tracewire::report::Reporter;
//! use tracewire::span::SpanRecord;
//!
//! /// Counts spans per batch.
//! struct Count(usize);
//!
//! impl Reporter for Count {
//!     fn report(&mut self, batch: &[SpanRecord]) {
//!         self.0 += batch.len();
//!     }
//! }
//! ```

use crate::span::SpanRecord;

#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub mod console;
pub(crate) mod memory;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
#[cfg(feature = "otel")]
mod processor;
pub mod stats;
pub mod tail;

#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
#[doc(no_inline)]
pub use console::{ConsoleBuilder, ConsoleHandle, ConsoleReporter, ConsoleStats, TraceFilter};
pub use memory::{InMemoryReporter, WaitTimeout};
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use otel::{OtelCounters, OtelReporter, OtelReporterBuilder, OtelStats};
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use processor::{
    ProcessorCounters, ProcessorReporter, ProcessorReporterBuilder, ProcessorStats,
    PROCESSOR_LOG_TARGET,
};
pub use stats::{Drops, Outcomes, ShutdownError, Stats, DROP_LOG_TARGET};
pub use tail::{TailCounters, TailSampler, TailSamplerBuilder, TailStats};

/// Receives finished spans in batches, on the reporter worker thread.
///
/// Object safe: the recorder holds reporters as `Box<dyn Reporter>`.
pub trait Reporter: Send + 'static {
    /// Handles a batch of finished spans, oldest first.
    fn report(&mut self, batch: &[SpanRecord]);

    /// Handles a batch of finished spans, oldest first, and may take what it keeps out of
    /// them (`std::mem::take` of their attributes, events, links…) instead of cloning it:
    /// no reporter sees the batch after this one. The pipeline calls it, instead of
    /// [`report`](Self::report), on the last reporter installed. The default calls `report`.
    fn report_mut(&mut self, batch: &mut [SpanRecord]) {
        self.report(batch)
    }

    /// Whether this reporter reads the attributes that the layers derive from a request
    /// (method, path, route, host, peer, user agent, status code). The layers keep those as
    /// raw request facts, and the recorder turns them into attributes only if some installed
    /// reporter reads them, so a reporter that only counts, or looks at names, times and
    /// statuses, does not pay for them. Attributes recorded directly (span fields, those a
    /// layer records eagerly) are always there.
    ///
    /// The default is `true`. Return `false` only if this reporter never looks at
    /// [`SpanRecord::attributes`].
    fn reads_attributes(&self) -> bool {
        true
    }

    /// Called about every flush interval even when no span arrived, for reporters that act on
    /// time (timeouts, periodic export).
    fn tick(&mut self) {}

    /// Pushes out anything buffered. Called when the application flushes the recorder.
    fn flush(&mut self) {}

    /// Last call before the worker stops: flush and release resources.
    fn shutdown(&mut self) {
        self.flush();
    }

    /// What became of the spans this reporter was handed, since the last call: for
    /// reporters that keep spans after [`report`](Self::report) returns (batching exporters,
    /// samplers) or drop some. Called on the worker thread after every other call.
    ///
    /// The default, `None`, means "done with them": every span of a batch counts as exported
    /// once `report` returns without panicking. A reporter that returns `Some` must do so on
    /// every call, and account for each span once, eventually; spans handed to it and not
    /// yet accounted for count as queued, and as dropped at shutdown if still unaccounted
    /// for after [`shutdown`](Self::shutdown). Only the first reporter installed is asked
    /// (see [`Stats`]); a wrapper asks the reporter it wraps.
    ///
    /// ```
    /// use tracewire::record::SpanRecord;
    /// use tracewire::report::{Drops, Outcomes, Reporter};
    ///
    /// /// Keeps up to 100 spans, to send somewhere later.
    /// #[derive(Default)]
    /// struct Buffered {
    ///     held: Vec<SpanRecord>,
    ///     outcomes: Outcomes,
    /// }
    ///
    /// impl Reporter for Buffered {
    ///     fn report(&mut self, batch: &[SpanRecord]) {
    ///         let room = 100 - self.held.len();
    ///         let (kept, refused) = batch.split_at(batch.len().min(room));
    ///         self.held.extend_from_slice(kept);
    ///         self.outcomes.dropped.queue_full += refused.len() as u64;
    ///     }
    ///     fn flush(&mut self) {
    ///         // … send `self.held` …
    ///         self.outcomes.exported += self.held.drain(..).len() as u64;
    ///     }
    ///     fn take_outcomes(&mut self) -> Option<Outcomes> {
    ///         Some(std::mem::take(&mut self.outcomes))
    ///     }
    /// }
    /// ```
    fn take_outcomes(&mut self) -> Option<Outcomes> {
        None
    }
}

impl<R: Reporter + ?Sized> Reporter for Box<R> {
    fn report(&mut self, batch: &[SpanRecord]) {
        (**self).report(batch)
    }
    fn report_mut(&mut self, batch: &mut [SpanRecord]) {
        (**self).report_mut(batch)
    }
    fn reads_attributes(&self) -> bool {
        (**self).reads_attributes()
    }
    fn tick(&mut self) {
        (**self).tick()
    }
    fn flush(&mut self) {
        (**self).flush()
    }
    fn shutdown(&mut self) {
        (**self).shutdown()
    }
    fn take_outcomes(&mut self) -> Option<Outcomes> {
        (**self).take_outcomes()
    }
}

/// Drops every span: for benchmarks and for measuring the recorder alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct DropReporter;

impl Reporter for DropReporter {
    fn report(&mut self, _batch: &[SpanRecord]) {}

    fn reads_attributes(&self) -> bool {
        false
    }
}
