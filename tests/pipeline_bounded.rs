//! A million spans into reporters that sleep or stall: the producing thread never waits,
//! memory stays bounded by the queue, and every span is either reported or counted as dropped.
//!
//! Its own test binary because it measures the heap with a counting global allocator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tracewire::record::{Recorder, SpanRecord};
use tracewire::report::Reporter;
use tracing_subscriber::layer::SubscriberExt;

mod heap;

use heap::{Counting, LIVE, PEAK};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The two tests measure the same global heap: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const SPANS: u64 = 1_000_000;
const CAPACITY: usize = 2048;
/// The queue holds at most 2048 spans of a few hundred bytes, a batch 256 more; 1M spans held
/// would take hundreds of MiB.
const HEAP_BOUND: usize = 16 << 20;

struct Sleepy {
    delay: Duration,
    received: Arc<AtomicU64>,
    /// When set, the first batch blocks until the test sends on the channel.
    gate: Option<mpsc::Receiver<()>>,
}

impl Reporter for Sleepy {
    fn report(&mut self, batch: &[SpanRecord]) {
        if let Some(gate) = self.gate.take() {
            let _ = gate.recv();
        }
        std::thread::sleep(self.delay);
        self.received
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
    }
}

/// Produces `SPANS` spans on a fresh thread and returns how much the heap grew at its peak;
/// fails (instead of hanging) if the producer is ever blocked for long.
fn produce(layer: tracewire::record::RecordLayer) -> usize {
    let subscriber = tracing_subscriber::registry().with(layer);
    let baseline = LIVE.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..SPANS {
                tracing::info_span!("work", i).in_scope(|| {});
            }
        });
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the producer was blocked by the reporter");
    PEAK.load(Ordering::SeqCst).saturating_sub(baseline)
}

#[test]
fn a_stalled_reporter_never_blocks_the_producer_and_drops_are_counted_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let received = Arc::new(AtomicU64::new(0));
    let (release, gate) = mpsc::channel();
    let (layer, guard) = Recorder::builder()
        .queue_capacity(CAPACITY)
        .max_batch_size(256)
        .reporter(Sleepy {
            delay: Duration::ZERO,
            received: received.clone(),
            gate: Some(gate),
        })
        .build();

    let growth = produce(layer);
    assert!(growth < HEAP_BOUND, "heap grew by {growth} bytes");

    // The worker holds at most one batch and the queue at most its capacity.
    let stalled = guard.stats();
    assert!(
        stalled.spans_dropped >= SPANS - CAPACITY as u64 - 256,
        "{stalled:?}"
    );
    assert_eq!(received.load(Ordering::SeqCst), 0);

    release.send(()).unwrap();
    guard.flush().unwrap();
    let stats = guard.stats();
    let got = received.load(Ordering::SeqCst);
    assert_eq!(got, stats.spans_reported);
    assert_eq!(
        stats.spans_dropped, stalled.spans_dropped,
        "no drop after the stall"
    );
    assert_eq!(got + stats.spans_dropped, SPANS, "{stats:?}");
    assert!(got > 0 && got <= CAPACITY as u64 + 256);
}

#[test]
fn a_sleeping_reporter_keeps_memory_bounded_and_every_span_accounted_for() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let received = Arc::new(AtomicU64::new(0));
    let (layer, guard) = Recorder::builder()
        .queue_capacity(CAPACITY)
        .max_batch_size(256)
        .reporter(Sleepy {
            delay: Duration::from_millis(20),
            received: received.clone(),
            gate: None,
        })
        .build();

    let growth = produce(layer);
    assert!(growth < HEAP_BOUND, "heap grew by {growth} bytes");

    guard.flush().unwrap();
    let stats = guard.stats();
    let got = received.load(Ordering::SeqCst);
    assert_eq!(got, stats.spans_reported);
    assert_eq!(got + stats.spans_dropped, SPANS, "{stats:?}");
    assert_eq!(stats.reporter_panics, 0);
}
