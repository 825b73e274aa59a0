//! The reporter pipeline: panicking and stalled reporters, several reporters, and the guard's
//! flush on drop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tracewire::record::FlushError;
use tracewire::record::{Recorder, SpanRecord};
use tracewire::report::{InMemoryReporter, Reporter};
use tracing_subscriber::layer::SubscriberExt;

/// Panics on batches of odd rounds (a span attribute), takes the others.
struct Flaky {
    received: Arc<AtomicU64>,
}

impl Reporter for Flaky {
    fn report(&mut self, batch: &[SpanRecord]) {
        let odd = batch.iter().any(|span| {
            matches!(span.attribute("round"), Some(tracewire::span::Value::I64(r)) if r % 2 == 1)
        });
        if odd {
            panic!("flaky reporter fails a batch of an odd round");
        }
        self.received
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
    }
}

#[test]
fn a_panicking_reporter_does_not_stop_recording_or_the_other_reporters() {
    let received = Arc::new(AtomicU64::new(0));
    let memory = InMemoryReporter::new();
    let (layer, guard) = Recorder::builder()
        .max_batch_size(10)
        .reporter(Flaky {
            received: received.clone(),
        })
        .reporter(memory.clone())
        .build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for round in 0..10i64 {
            for _ in 0..10 {
                tracing::info_span!("work", round).in_scope(|| {});
            }
            // Each round is reported before the next starts, so no batch mixes rounds
            // (a round may still take more than one batch).
            guard.flush().unwrap();
        }
    });
    let stats = guard.stats();
    assert_eq!(memory.len(), 100, "the other reporter got every span");
    assert_eq!(stats.spans_reported, 100);
    assert!(stats.batches >= 10, "{stats:?}");
    assert!(
        stats.reporter_panics >= 5,
        "one or more per odd round: {stats:?}"
    );
    assert_eq!(
        received.load(Ordering::SeqCst),
        50,
        "the flaky one keeps receiving: every span of the even rounds"
    );
    // And the worker still works after all that.
    drop(guard);
    assert_eq!(memory.len(), 100);
}

#[test]
fn the_guard_flushes_everything_on_drop() {
    let memory = InMemoryReporter::new();
    let (layer, guard) = Recorder::builder()
        // Long enough that only the guard can be what delivers the spans in time.
        .flush_interval(Duration::from_secs(3600))
        .queue_capacity(20_000)
        .reporter(memory.clone())
        .build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..10_000 {
            tracing::info_span!("work", i).in_scope(|| {});
        }
    });
    drop(guard);
    assert_eq!(memory.len(), 10_000);
}

/// Records when each hook runs.
struct Hooks(Arc<Mutex<Vec<&'static str>>>);

impl Reporter for Hooks {
    fn report(&mut self, _: &[SpanRecord]) {
        self.0.lock().unwrap().push("report");
    }
    fn flush(&mut self) {
        self.0.lock().unwrap().push("flush");
    }
    fn shutdown(&mut self) {
        self.0.lock().unwrap().push("shutdown");
    }
}

#[test]
fn shutdown_reports_then_shuts_reporters_down_and_later_spans_are_counted_as_dropped() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (layer, guard) = Recorder::builder()
        .flush_interval(Duration::from_secs(3600))
        .reporter(Hooks(calls.clone()))
        .build();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("before").in_scope(|| {});
        guard.shutdown().unwrap();
        tracing::info_span!("after").in_scope(|| {});
    });
    assert_eq!(*calls.lock().unwrap(), ["report", "shutdown"]);
    let stats = handle.stats();
    assert_eq!(stats.spans_reported, 1);
    assert_eq!(stats.spans_dropped, 1);
    assert_eq!(
        handle.flush(Duration::from_secs(1)),
        Err(FlushError::ShutDown)
    );
}

/// Blocks in `report` until released.
struct Stalled(Mutex<mpsc::Receiver<()>>);

impl Reporter for Stalled {
    fn report(&mut self, _: &[SpanRecord]) {
        let _ = self.0.lock().unwrap().recv();
    }
}

#[test]
fn a_stalled_reporter_makes_flush_and_shutdown_time_out_instead_of_hanging() {
    let (release, gate) = mpsc::channel();
    let (layer, guard) = Recorder::builder()
        .shutdown_timeout(Duration::from_millis(200))
        .reporter(Stalled(Mutex::new(gate)))
        .build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("stuck").in_scope(|| {});
    });
    assert_eq!(guard.flush(), Err(FlushError::Timeout));
    let started = Instant::now();
    assert_eq!(guard.shutdown(), Err(FlushError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(5));
    // Let the detached worker finish.
    let _ = release.send(());
}

/// `Duration::MAX` means "as long as it takes": it does not overflow the deadline.
#[test]
fn the_longest_timeouts_wait_instead_of_panicking() {
    let memory = InMemoryReporter::new();
    let (layer, guard) = Recorder::builder()
        .shutdown_timeout(Duration::MAX)
        .reporter(memory.clone())
        .build();
    let handle = guard.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info_span!("work").in_scope(|| {});
    });
    assert_eq!(handle.flush(Duration::MAX), Ok(()));
    assert_eq!(memory.wait_for(1, Duration::MAX).map(|s| s.len()), Ok(1));
    drop(guard);
}
