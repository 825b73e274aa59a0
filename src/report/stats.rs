//! Where every span went: the pipeline's accounting, the reporters' part in it, the
//! rate-limited drop warning and the shutdown report.
//!
//! Each finished, sampled span is counted once, where it ends:
//!
//! ```text
//! spans_recorded = spans_exported + dropped.total() + queued
//! ```
//!
//! - The recording thread counts the span when it hands it over (one atomic increment), and,
//!   when the queue is full or the pipeline has shut down, counts it dropped.
//! - The worker counts the spans it hands to the first reporter; that reporter either
//!   finishes with them when [`Reporter::report`] returns (the default: they count as
//!   exported), or says later what became of them ([`Reporter::take_outcomes`]).
//! - `queued` is what is left: spans in the queue, in the worker's hands or held by the
//!   reporter. It is never negative: outcomes are read before the count of spans handed
//!   over, and every outcome happens after its span was counted.
//! - Once the pipeline has shut down (or given up waiting at its deadline), nothing is left
//!   in flight: whatever has no outcome by then counts as dropped at shutdown, and later
//!   outcomes are ignored, so `queued` is 0 and the counts never change again.
//!
//! [`Reporter::report`]: crate::report::Reporter::report
//! [`Reporter::take_outcomes`]: crate::report::Reporter::take_outcomes

use std::fmt;
use std::ops::{Add, AddAssign};
use std::time::{Duration, Instant};

/// Target of the pipeline's drop warnings. The recorder never records events of this target,
/// so a warning cannot become a span event and feed the queue it reports on.
pub const DROP_LOG_TARGET: &str = "tracewire::report::drops";

/// Spans dropped, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drops {
    /// The recorder's queue (or a reporter's own) was full.
    pub queue_full: u64,
    /// An export failed or timed out.
    pub export_failed: u64,
    /// Not delivered because the pipeline shut down: finished after shutdown, or still
    /// waiting when the shutdown deadline passed.
    pub shutdown: u64,
    /// Left out on purpose by a [`TailSampler`](crate::report::TailSampler).
    pub tail_sampler: u64,
    /// Handed to a reporter call that panicked.
    pub reporter_panic: u64,
}

impl Drops {
    /// All causes together.
    pub fn total(&self) -> u64 {
        self.queue_full
            + self.export_failed
            + self.shutdown
            + self.tail_sampler
            + self.reporter_panic
    }

    /// Spans lost: every cause but the tail sampler's choice.
    pub fn lost(&self) -> u64 {
        self.total() - self.tail_sampler
    }

    fn since(&self, earlier: &Drops) -> Drops {
        Drops {
            queue_full: self.queue_full - earlier.queue_full,
            export_failed: self.export_failed - earlier.export_failed,
            shutdown: self.shutdown - earlier.shutdown,
            tail_sampler: self.tail_sampler - earlier.tail_sampler,
            reporter_panic: self.reporter_panic - earlier.reporter_panic,
        }
    }
}

impl Add for Drops {
    type Output = Drops;
    fn add(self, other: Drops) -> Drops {
        Drops {
            queue_full: self.queue_full + other.queue_full,
            export_failed: self.export_failed + other.export_failed,
            shutdown: self.shutdown + other.shutdown,
            tail_sampler: self.tail_sampler + other.tail_sampler,
            reporter_panic: self.reporter_panic + other.reporter_panic,
        }
    }
}

impl AddAssign for Drops {
    fn add_assign(&mut self, other: Drops) {
        *self = *self + other;
    }
}

impl fmt::Display for Drops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queue full {}, export failed {}, shutdown {}, tail sampler {}, reporter panic {}",
            self.queue_full,
            self.export_failed,
            self.shutdown,
            self.tail_sampler,
            self.reporter_panic
        )
    }
}

/// What a reporter did with spans it had been handed, since it was last asked; see
/// [`Reporter::take_outcomes`](crate::report::Reporter::take_outcomes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcomes {
    /// Spans delivered.
    pub exported: u64,
    /// Spans dropped, by cause.
    pub dropped: Drops,
}

impl Outcomes {
    /// Outcomes of `exported` spans delivered and nothing dropped.
    pub fn exported(exported: u64) -> Outcomes {
        Outcomes {
            exported,
            dropped: Drops::default(),
        }
    }

    /// Outcomes of nothing delivered and `dropped` dropped.
    pub fn dropped(dropped: Drops) -> Outcomes {
        Outcomes {
            exported: 0,
            dropped,
        }
    }

    /// Every span these outcomes account for.
    pub fn total(&self) -> u64 {
        self.exported + self.dropped.total()
    }
}

impl Add for Outcomes {
    type Output = Outcomes;
    fn add(self, other: Outcomes) -> Outcomes {
        Outcomes {
            exported: self.exported + other.exported,
            dropped: self.dropped + other.dropped,
        }
    }
}

impl AddAssign for Outcomes {
    fn add_assign(&mut self, other: Outcomes) {
        *self = *self + other;
    }
}

/// Counters of the whole path, recorder queue and reporters together, read with
/// [`RecorderHandle::stats`](crate::record::RecorderHandle::stats).
///
/// At every moment `spans_recorded == spans_exported + dropped.total() + queued`; once the
/// pipeline has shut down, `queued` is 0 and the counts are final. With several reporters,
/// every reporter receives every span and the counts follow the first one installed (read
/// the others' own counters for theirs); panics of any of them are counted in
/// `reporter_panics`.
///
/// ```
/// use tracewire::record::Recorder;
/// use tracewire::report::InMemoryReporter;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let (layer, guard) = Recorder::builder().reporter(InMemoryReporter::new()).build();
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     tracing::info_span!("work").in_scope(|| {});
/// });
/// let handle = guard.handle();
/// let stats = guard.shutdown_within(std::time::Duration::from_secs(5)).unwrap();
/// assert_eq!(stats.spans_recorded, 1);
/// assert_eq!(stats.spans_exported, 1);
/// assert_eq!(stats.dropped.total(), 0);
/// assert_eq!(stats.queued, 0);
/// assert_eq!(handle.stats(), stats, "final");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Finished, sampled spans the recorder handed to the pipeline.
    pub spans_recorded: u64,
    /// Spans the reporters delivered (for a reporter that does not say, every span its
    /// [`report`](crate::report::Reporter::report) took without panicking).
    pub spans_exported: u64,
    /// Spans dropped, by cause.
    pub dropped: Drops,
    /// Spans neither exported nor dropped yet: in the queue, or held by the reporters.
    pub queued: u64,
    /// Spans handed to the reporters.
    pub spans_reported: u64,
    /// Spans dropped before reaching the reporters: `dropped.queue_full` for the recorder's
    /// queue, plus those finished after shutdown.
    pub spans_dropped: u64,
    /// Reporter calls that panicked (caught).
    pub reporter_panics: u64,
    /// Batches handed to the reporters.
    pub batches: u64,
}

/// Shutting down could not deliver every span; see
/// [`RecorderGuard::shutdown_within`](crate::record::RecorderGuard::shutdown_within).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownError {
    /// The reporters were still working when the deadline passed; what they held counts as
    /// dropped at shutdown.
    pub timed_out: bool,
    /// The final counts: `stats.dropped` says what was lost, and why.
    pub stats: Stats,
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.timed_out {
            f.write_str("the reporters did not finish before the shutdown deadline; ")?;
        }
        write!(
            f,
            "{} of {} spans were not delivered ({})",
            self.stats.dropped.lost(),
            self.stats.spans_recorded,
            self.stats.dropped
        )
    }
}

impl std::error::Error for ShutdownError {}

/// The outcomes of the spans handed to the first reporter, kept by the worker under a lock
/// that readers take too, so they see a consistent set.
#[derive(Debug, Default)]
pub(crate) struct Books {
    /// Spans handed to the first reporter.
    pub(crate) handed: u64,
    pub(crate) exported: u64,
    pub(crate) dropped: Drops,
    /// Shut down: nothing is in flight any more, and later outcomes are ignored.
    pub(crate) closed: bool,
}

impl Books {
    /// Spans with an outcome.
    pub(crate) fn settled(&self) -> u64 {
        self.exported + self.dropped.total()
    }

    /// Adds a reporter's outcomes, never more than the spans it holds (after a panic counted
    /// its batch as dropped, the reporter may still deliver some of those spans).
    pub(crate) fn settle(&mut self, outcomes: Outcomes) {
        if self.closed {
            return;
        }
        let mut room = self.handed - self.settled();
        let mut take = |n: u64| {
            let n = n.min(room);
            room -= n;
            n
        };
        self.exported += take(outcomes.exported);
        let d = outcomes.dropped;
        self.dropped.export_failed += take(d.export_failed);
        self.dropped.shutdown += take(d.shutdown);
        self.dropped.tail_sampler += take(d.tail_sampler);
        self.dropped.reporter_panic += take(d.reporter_panic);
        self.dropped.queue_full += take(d.queue_full);
    }
}

/// Decides when the next drop warning is due: at most one per interval, with the drops since
/// the last one.
#[derive(Debug)]
pub(crate) struct DropLog {
    interval: Duration,
    last_warned: Option<Instant>,
    reported: Drops,
}

impl DropLog {
    pub(crate) fn new(interval: Duration) -> DropLog {
        DropLog {
            interval,
            last_warned: None,
            reported: Drops::default(),
        }
    }

    /// The drops to warn about at `now` given the totals `dropped`, if any and the interval
    /// has passed since the last warning (the first one is due at once).
    /// `dropped` is read only when a warning may be due.
    pub(crate) fn take_due(
        &mut self,
        now: Instant,
        dropped: impl FnOnce() -> Drops,
    ) -> Option<Drops> {
        if let Some(last) = self.last_warned {
            if now.saturating_duration_since(last) < self.interval {
                return None;
            }
        }
        self.take(now, dropped())
    }

    /// The drops not yet warned about, whatever the time: for the last warning, at shutdown.
    pub(crate) fn take(&mut self, now: Instant, dropped: Drops) -> Option<Drops> {
        let new = dropped.since(&self.reported);
        if new.lost() == 0 {
            // Tail sampling is a choice, not a loss: no warning for it alone.
            return None;
        }
        self.reported = dropped;
        self.last_warned = Some(now);
        Some(new)
    }
}

/// Logs a drop warning through `tracing`, attached to no span.
pub(crate) fn warn_drops(new: &Drops, stats: &Stats) {
    tracing::warn!(
        target: DROP_LOG_TARGET,
        parent: None,
        queue_full = new.queue_full,
        export_failed = new.export_failed,
        shutdown = new.shutdown,
        tail_sampler = new.tail_sampler,
        reporter_panic = new.reporter_panic,
        total_dropped = stats.dropped.total(),
        total_recorded = stats.spans_recorded,
        "{} spans dropped since the last report ({new})",
        new.lost()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drops(queue_full: u64, export_failed: u64) -> Drops {
        Drops {
            queue_full,
            export_failed,
            ..Drops::default()
        }
    }

    #[test]
    fn drop_warnings_come_at_most_once_per_interval_with_the_counts_since_the_last() {
        let mut log = DropLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.take_due(t0, Drops::default), None, "nothing dropped");
        assert_eq!(
            log.take_due(t0, || drops(5, 0)),
            Some(drops(5, 0)),
            "first at once"
        );
        for s in 1..10 {
            assert_eq!(
                log.take_due(t0 + Duration::from_secs(s), || drops(100 * s, 2)),
                None
            );
        }
        assert_eq!(
            log.take_due(t0 + Duration::from_secs(10), || drops(1000, 3)),
            Some(drops(995, 3)),
            "the counts since the last warning"
        );
        assert_eq!(
            log.take_due(t0 + Duration::from_secs(30), || drops(1000, 3)),
            None,
            "no new drop, no warning"
        );
        let sampled = Drops {
            tail_sampler: 7,
            ..drops(1000, 3)
        };
        assert_eq!(log.take_due(t0 + Duration::from_secs(40), || sampled), None);
        assert_eq!(
            log.take(
                t0 + Duration::from_secs(41),
                drops(1001, 3) + sampled.since(&drops(1000, 3))
            ),
            Some(Drops {
                queue_full: 1,
                tail_sampler: 7,
                ..Drops::default()
            }),
            "the last warning, at shutdown, does not wait for the interval"
        );
    }

    #[test]
    fn books_never_settle_more_than_was_handed_and_ignore_outcomes_once_closed() {
        let mut books = Books {
            handed: 10,
            ..Books::default()
        };
        books.dropped.reporter_panic = 4;
        books.settle(Outcomes {
            exported: 5,
            dropped: drops(0, 3),
        });
        assert_eq!((books.exported, books.dropped.export_failed), (5, 1));
        assert_eq!(books.settled(), 10);
        books.handed += 2;
        books.closed = true;
        books.settle(Outcomes::exported(2));
        assert_eq!(books.exported, 5);
    }
}
