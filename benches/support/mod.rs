//! What the benchmarks share: a global allocator that counts allocations, and a reporter,
//! exporter and layer that count the spans reaching them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tracewire::record::SpanRecord;
use tracewire::report::Reporter;

/// Counts every allocation and reallocation into [`ALLOCATIONS`] while [`count_allocations`]
/// runs; install it with `#[global_allocator]`.
///
/// Outside counting it adds only a read of a flag that never changes while criterion times:
/// a shared counter bumped on every allocation would slow allocation-heavy stacks (a
/// contended atomic per `malloc`) and flatter the stacks that allocate less.
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

/// Allocations made, on every thread, while `f` runs.
pub fn count_allocations(f: impl FnOnce()) -> u64 {
    COUNTING.store(true, Ordering::SeqCst);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    let counted = ALLOCATIONS.load(Ordering::SeqCst) - before;
    COUNTING.store(false, Ordering::SeqCst);
    counted
}

#[inline]
fn counted() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call unchanged to the system allocator; the counter never affects
// the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Counts what reaches it and drops it: a tracewire reporter, a fastrace reporter and an
/// OpenTelemetry SDK exporter.
#[derive(Clone, Default)]
pub struct Count(pub Arc<AtomicU64>);

impl Count {
    /// The count so far, reset to zero.
    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::SeqCst)
    }
}

impl Reporter for Count {
    fn report(&mut self, batch: &[SpanRecord]) {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    fn reads_attributes(&self) -> bool {
        false
    }
}

impl fastrace::collector::Reporter for Count {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        self.0.fetch_add(spans.len() as u64, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Count").finish()
    }
}

impl opentelemetry_sdk::trace::SpanExporter for Count {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// A layer that only counts new spans: a registry "with no output".
#[derive(Clone, Default)]
pub struct CountSpans(pub Count);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountSpans {
    fn on_new_span(
        &self,
        _: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        (self.0).0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Times `cases` cases in slices, interleaved: one warm-up round, then `rounds` rounds, each
/// running every case once in a new random order. `slice(i)` runs one slice of case `i` and
/// returns its time per operation. Returns each case's times, one per round.
///
/// A shared host's noise comes in phases of seconds. Measured one after another for seconds
/// each, as criterion does, one case can sit in a slow phase and another in a fast one; here
/// every case meets every phase alike, and none always follows the same other case (and what
/// its background threads leave).
pub fn interleave(
    cases: usize,
    rounds: usize,
    mut slice: impl FnMut(usize) -> f64,
) -> Vec<Vec<f64>> {
    let mut times = vec![Vec::with_capacity(rounds); cases];
    let mut order: Vec<usize> = (0..cases).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..=rounds {
        // Fisher-Yates with xorshift64.
        for i in (1..order.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        for &i in &order {
            let time = slice(i);
            if round > 0 {
                times[i].push(time);
            }
        }
    }
    times
}

/// The median (the upper one of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The smallest of `values`: the time least disturbed by the host, whose noise only adds.
pub fn fastest(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The quartiles of `values`.
pub fn quartiles(values: &[f64]) -> [f64; 3] {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    [sorted[n / 4], sorted[n / 2], sorted[3 * n / 4]]
}
