//! Where finished spans go.
//!
//! The recorder never calls a reporter on the request path. A finished span is moved into a
//! bounded queue; a background worker thread drains it in batches and hands each batch to the
//! reporters. When the queue is full the span is dropped and counted ([`Stats::spans_dropped`]);
//! the caller never waits. A reporter that panics is caught and counted
//! ([`Stats::reporter_panics`]) and keeps receiving later batches.
//!
//! Write a reporter by implementing [`Reporter`]; several can be installed side by side with
//! [`RecorderBuilder::reporter`](crate::record::RecorderBuilder::reporter).
//!
//! ```
//! use tracewire::report::Reporter;
//! use tracewire::record::data::SpanRecord;
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

use crate::record::data::SpanRecord;

#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
pub mod console;
mod memory;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
pub(crate) mod pipeline;
mod recycle;
pub mod tail;

#[cfg(feature = "console")]
#[cfg_attr(docsrs, doc(cfg(feature = "console")))]
#[doc(no_inline)]
pub use console::{ConsoleBuilder, ConsoleHandle, ConsoleReporter, ConsoleStats, TraceFilter};
pub use memory::{InMemoryReporter, WaitTimeout};
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use otel::{OtelCounters, OtelReporter, OtelReporterBuilder, OtelStats};
pub use pipeline::{FlushError, RecorderGuard, RecorderHandle, Stats};
pub use tail::{TailCounters, TailSampler, TailSamplerBuilder, TailStats};

/// Receives finished spans in batches, on the reporter worker thread.
///
/// Object safe: the recorder holds reporters as `Box<dyn Reporter>`.
pub trait Reporter: Send + 'static {
    /// Handles a batch of finished spans, oldest first.
    fn report(&mut self, batch: &[SpanRecord]);

    /// Called about every flush interval even when no span arrived, for reporters that act on
    /// time (timeouts, periodic export).
    fn tick(&mut self) {}

    /// Pushes out anything buffered. Called when the application flushes the recorder.
    fn flush(&mut self) {}

    /// Last call before the worker stops: flush and release resources.
    fn shutdown(&mut self) {
        self.flush();
    }
}

impl<R: Reporter + ?Sized> Reporter for Box<R> {
    fn report(&mut self, batch: &[SpanRecord]) {
        (**self).report(batch)
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
}

/// Drops every span: for benchmarks and for measuring the recorder alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct DropReporter;

impl Reporter for DropReporter {
    fn report(&mut self, _batch: &[SpanRecord]) {}
}
