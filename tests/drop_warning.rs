//! The drop warning: at most one per interval, with the counts by cause since the last one,
//! under a target the recorder never records.
//!
//! Its own test binary: it installs a global subscriber, because the reporter worker thread
//! logs through the global dispatcher.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tracewire::record::{Recorder, SpanRecord};
use tracewire::report::{InMemoryReporter, Reporter, DROP_LOG_TARGET};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// `queue_full` of every drop warning, in order.
static WARNINGS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

struct Warnings;

struct QueueFull(Option<u64>);

impl Visit for QueueFull {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "queue_full" {
            self.0 = Some(value);
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let m = event.metadata();
        if m.target() == DROP_LOG_TARGET && *m.level() == tracing::Level::WARN {
            let mut visit = QueueFull(None);
            event.record(&mut visit);
            // The test's own event of this target has no counts.
            if let Some(queue_full) = visit.0 {
                WARNINGS.lock().unwrap().push(queue_full);
            }
        }
    }
}

/// Takes batches only when let through.
struct Gate {
    pass: Arc<Mutex<mpsc::Receiver<()>>>,
    taken: Arc<AtomicU64>,
}

impl Reporter for Gate {
    fn report(&mut self, batch: &[SpanRecord]) {
        let _ = self.pass.lock().unwrap().recv();
        self.taken.fetch_add(batch.len() as u64, Ordering::SeqCst);
    }
}

const QUEUE: usize = 16;

#[test]
fn one_warning_per_interval_with_the_counts_since_the_last_and_none_recorded() {
    let (pass, gate) = mpsc::channel();
    let taken = Arc::new(AtomicU64::new(0));
    let recorded = InMemoryReporter::new();
    let (layer, guard) = Recorder::builder()
        .queue_capacity(QUEUE)
        .max_batch_size(1)
        .flush_interval(Duration::from_secs(3600))
        // No second warning while the test runs, but the last one at shutdown.
        .drop_warning_interval(Duration::from_secs(3600))
        // Even with internals recorded, the warnings stay out.
        .record_internals(true)
        .reporter(Gate {
            pass: Arc::new(Mutex::new(gate)),
            taken: taken.clone(),
        })
        .reporter(recorded.clone())
        .build();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(layer).with(Warnings),
    )
    .unwrap();

    let handle = guard.handle();
    // Lets through every span waiting, and waits until they were reported.
    let release = |pass: &mpsc::Sender<()>| {
        for _ in 0..handle.stats().queued {
            pass.send(()).unwrap();
        }
        guard.flush().unwrap();
        assert_eq!(handle.stats().queued, 0);
    };
    // A burst while the worker is stuck in its first batch: the queue fills, the rest drops.
    // The worker warns only once the gate lets it go on, so with every drop of the burst.
    let burst = || {
        for _ in 0..(QUEUE * 3) {
            tracing::info_span!("burst").in_scope(|| {});
        }
        handle.stats().dropped.queue_full
    };

    // An event and a span of the warnings' target: neither is recorded.
    tracing::info_span!("burst").in_scope(|| {
        tracing::warn!(target: DROP_LOG_TARGET, "not recorded");
        tracing::info_span!(target: DROP_LOG_TARGET, "not recorded").in_scope(|| {});
    });

    // Round 1: one warning, at once, with its drops.
    let dropped_1 = burst();
    assert!(dropped_1 >= QUEUE as u64 - 1, "{:?}", handle.stats());
    release(&pass);
    assert_eq!(
        *WARNINGS.lock().unwrap(),
        [dropped_1],
        "one warning, at once"
    );

    // Round 2, within the interval: more drops, no warning.
    let dropped_2 = burst() - dropped_1;
    assert!(dropped_2 >= QUEUE as u64 - 1, "{:?}", handle.stats());
    release(&pass);
    assert_eq!(*WARNINGS.lock().unwrap(), [dropped_1]);

    // Shutdown: the last warning, with round 2's drops only.
    let err = guard.shutdown_within(Duration::from_secs(60)).unwrap_err();
    assert_eq!(*WARNINGS.lock().unwrap(), [dropped_1, dropped_2]);
    assert_eq!(err.stats.dropped.queue_full, dropped_1 + dropped_2);
    assert_eq!(err.stats.spans_recorded, QUEUE as u64 * 6 + 1);
    assert_eq!(err.stats.queued, 0);
    assert_eq!(err.stats.spans_exported, taken.load(Ordering::SeqCst));

    // Neither the warnings nor an event or span of their target was recorded.
    assert!(recorded.len() as u64 > QUEUE as u64);
    for span in recorded.spans() {
        assert!(span.events.is_empty(), "{span:?}");
        assert_eq!(span.name, "burst", "{span:?}");
    }
}
