//! The bounded queue between the recorder and the reporter worker thread.
//!
//! Producers (any thread closing a span) push into a lock-free `ArrayQueue` and never wait:
//! a full or closed queue drops the span and counts it. The worker sleeps on a timer and is
//! woken early only when the queue passes a fill threshold or someone flushes, so the request
//! path pays no syscall per span.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::record::facts::RepeatedText;
use crate::record::recycle::{ChunkPool, CHUNK};
use crate::record::timestamp;
use crate::record::LiveRecord;
use crate::report::stats::{self, Books, DropLog, Outcomes, ShutdownError, Stats};
use crate::report::Reporter;
use crate::span::{KeyValue, SpanRecord, Value};

/// Pipeline settings.
#[derive(Clone, Debug)]
pub(crate) struct PipelineConfig {
    pub(crate) queue_capacity: usize,
    pub(crate) max_batch: usize,
    pub(crate) interval: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) drop_warning_interval: Duration,
    /// The recorder's attribute value length limit, for the attributes made from request
    /// facts on the worker.
    pub(crate) value_len: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            queue_capacity: 8192,
            max_batch: 512,
            interval: Duration::from_millis(50),
            shutdown_timeout: Duration::from_secs(5),
            drop_warning_interval: Duration::from_secs(10),
            value_len: crate::record::DEFAULT_VALUE_LENGTH_LIMIT,
        }
    }
}

/// Why a flush did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushError {
    /// The worker did not finish in time: a reporter is slow or stalled.
    Timeout,
    /// The pipeline has shut down.
    ShutDown,
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlushError::Timeout => "reporters did not finish flushing in time",
            FlushError::ShutDown => "the reporter pipeline has shut down",
        })
    }
}

impl std::error::Error for FlushError {}

#[derive(Default)]
struct SyncState {
    flushed: u64,
    stopped: bool,
}

pub(crate) struct Shared {
    /// Finished spans. Boxed: the hand-off moves a pointer, not the record, and the record
    /// is written once, where the span starts.
    queue: ArrayQueue<RecordSlot>,
    /// Emptied record slots and attribute vectors of reported spans, for new spans to
    /// reuse: no allocation per span, and the memory goes back to the recording threads
    /// (see [`recycle`](crate::record::recycle) for why that matters).
    record_slots: ChunkPool<RecordSlot>,
    attribute_vecs: ChunkPool<Vec<KeyValue>>,
    wake_at: usize,
    worker: OnceLock<Thread>,
    notified: AtomicBool,
    closed: AtomicBool,
    flush_requested: AtomicU64,
    /// Spans handed over while the pipeline was open (each counted before it is queued, so
    /// before anything can become of it).
    finished: AtomicU64,
    /// Of those, spans the full queue refused.
    queue_full: AtomicU64,
    /// Spans finished after shutdown.
    late: AtomicU64,
    /// What became of the spans handed to the first reporter.
    books: Mutex<Books>,
    drop_log: Mutex<DropLog>,
    reported: AtomicU64,
    panics: AtomicU64,
    batches: AtomicU64,
    sync: Mutex<SyncState>,
    cond: Condvar,
}

/// The heap home of a span's record: `Some` while the span is live or queued, `None` once
/// reported and waiting for the next span. Recycled whole, so a span allocates no record.
pub(crate) type RecordSlot = Box<Option<LiveRecord>>;

/// The largest attribute capacity worth recycling.
const RECYCLED_CAPACITY: usize = 32;
/// Sends between two looks at how full the queue is.
const FILL_CHECK_EVERY: u32 = 16;

thread_local! {
    static LOCAL: RefCell<Local> = const {
        RefCell::new(Local { vecs: Vec::new(), slots: Vec::new() })
    };
    static SENT: Cell<u32> = const { Cell::new(0) };
}

/// A thread's cache of recycled attribute vectors and record slots, refilled a chunk at a
/// time.
struct Local {
    vecs: Vec<Vec<KeyValue>>,
    slots: Vec<RecordSlot>,
}

impl Local {
    #[inline]
    fn vec(&mut self, shared: &Shared) -> Option<Vec<KeyValue>> {
        if self.vecs.is_empty() {
            refill(&shared.attribute_vecs, &mut self.vecs);
        }
        let mut vec = self.vecs.pop()?;
        // The worker hands vectors with strings back full: their strings were allocated on a
        // recording thread and are freed on one too. Freed on the worker, each would leave
        // the allocator's per-thread cache of the thread that made it empty and the worker's
        // overflowing, and both would take the allocator's shared, locked path. Vectors with
        // nothing to free come back empty.
        if !vec.is_empty() {
            vec.clear();
        }
        Some(vec)
    }

    #[inline]
    fn slot(&mut self, shared: &Shared) -> Option<RecordSlot> {
        if self.slots.is_empty() {
            refill(&shared.record_slots, &mut self.slots);
        }
        self.slots.pop()
    }
}

/// A new chunk for an empty cache: once per chunk, so kept off the path of every span.
#[cold]
#[inline(never)]
fn refill<T>(pool: &ChunkPool<T>, local: &mut Vec<T>) {
    pool.take(local);
}

impl Shared {
    /// An empty attribute vector: a recycled one when there is one.
    pub(crate) fn attribute_vec(&self) -> Vec<KeyValue> {
        LOCAL
            .try_with(|local| local.borrow_mut().vec(self))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// An empty record slot and, when `with_vec`, an empty attribute vector: recycled ones
    /// when there are some, from one visit to this thread's cache.
    #[inline]
    pub(crate) fn record_slot(&self, with_vec: bool) -> (RecordSlot, Option<Vec<KeyValue>>) {
        let (slot, vec) = LOCAL
            .try_with(|local| {
                let mut local = local.borrow_mut();
                let vec = if with_vec { local.vec(self) } else { None };
                (local.slot(self), vec)
            })
            .unwrap_or((None, None));
        (slot.unwrap_or_else(|| Box::new(None)), vec)
    }

    /// The lengths of the attribute vectors waiting in the pool for the recording threads.
    #[cfg(test)]
    pub(crate) fn pooled_vec_lengths(&self) -> Vec<usize> {
        let mut chunk = Vec::new();
        let mut lengths = Vec::new();
        while self.attribute_vecs.take(&mut chunk) {
            lengths.extend(chunk.drain(..).map(|v| v.len()));
        }
        lengths
    }

    /// Queues a finished span (`sampled`), or drops its record, keeping the slot.
    #[inline]
    pub(crate) fn finish(&self, span: RecordSlot, sampled: bool) {
        if sampled {
            self.send(span);
        } else {
            self.discard(span);
        }
    }

    /// Drops the record of a span that is not reported, keeping its slot on this thread.
    fn discard(&self, mut slot: RecordSlot) {
        *slot = None;
        let _ = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            if local.slots.len() < CHUNK {
                local.slots.push(slot);
            }
        });
    }

    /// Queues a finished span; never blocks.
    #[inline]
    pub(crate) fn send(&self, span: RecordSlot) {
        if self.closed.load(Ordering::Relaxed) {
            self.late.fetch_add(1, Ordering::Release);
            return;
        }
        // Release, as for `queue_full`: a reader that sees an outcome of this span (or its
        // drop) also sees it counted here (see `stats`).
        self.finished.fetch_add(1, Ordering::Release);
        match self.queue.push(span) {
            Ok(()) => {
                // `len` reads the index the worker moves: look only now and then (the worker
                // also wakes on its timer).
                let sent = SENT.try_with(|s| {
                    let n = s.get().wrapping_add(1);
                    s.set(n);
                    n
                });
                if sent.is_ok_and(|n| n % FILL_CHECK_EVERY == 0) && self.queue.len() >= self.wake_at
                {
                    self.wake();
                }
            }
            Err(_) => {
                self.queue_full.fetch_add(1, Ordering::Release);
                self.wake();
            }
        }
    }

    fn wake(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            if let Some(worker) = self.worker.get() {
                worker.unpark();
            }
        }
    }

    /// The counts, consistent with one another: see [`stats`](crate::report::stats).
    pub(crate) fn stats(&self) -> Stats {
        let books = self.books();
        // Every span settled in the books was counted in `finished` before it was queued,
        // and every refused or late span before its drop was counted: loaded after the
        // books and the drops (lock and Acquire), `finished` includes them all, so what is
        // left in flight is never negative.
        let queue_full = self.queue_full.load(Ordering::Acquire);
        let late = self.late.load(Ordering::Acquire);
        let finished = self.finished.load(Ordering::Acquire);
        let in_flight = finished - queue_full - books.settled();
        let mut dropped = books.dropped;
        dropped.queue_full += queue_full;
        dropped.shutdown += late;
        let queued = if books.closed {
            // Shut down: what never got an outcome will not get one.
            dropped.shutdown += in_flight;
            0
        } else {
            in_flight
        };
        Stats {
            spans_recorded: finished + late,
            spans_exported: books.exported,
            dropped,
            queued,
            spans_reported: self.reported.load(Ordering::Relaxed),
            spans_dropped: queue_full + late,
            reporter_panics: self.panics.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        // Plain counters, consistent even if a holder panicked.
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts everything still in flight as dropped at shutdown, for good.
    fn close_books(&self) {
        self.books().closed = true;
    }

    /// Logs the drops since the last warning, if due (or, `last`, whatever the time).
    fn warn_drops(&self, now: Instant, last: bool) {
        let mut log = self.drop_log.lock().unwrap_or_else(|e| e.into_inner());
        let mut stats = None;
        let mut read = || *stats.get_or_insert_with(|| self.stats());
        let new = if last {
            log.take(now, read().dropped)
        } else {
            log.take_due(now, || read().dropped)
        };
        drop(log);
        if let Some(new) = new {
            stats::warn_drops(&new, &read());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SyncState> {
        // The state is two plain fields, consistent even if a holder panicked.
        self.sync.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        if self.lock().stopped {
            return Err(FlushError::ShutDown);
        }
        let target = self.flush_requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake();
        let deadline = Instant::now() + timeout.min(FOREVER);
        let mut state = self.lock();
        loop {
            if state.flushed >= target {
                return Ok(());
            }
            if state.stopped {
                return Err(FlushError::ShutDown);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(FlushError::Timeout);
            }
            state = self
                .cond
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The longest wait for a flush or shutdown: a longer timeout (`Duration::MAX`) waits this
/// long, since adding it to an `Instant` would overflow.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A value worth freeing at once rather than keeping in a recycled vector.
fn is_large(value: &Value) -> bool {
    const LARGE: usize = 256;
    match value {
        Value::String(s) => s.as_str().len() > LARGE,
        Value::Array(_) => true,
        _ => false,
    }
}

/// Starts the worker thread.
pub(crate) fn start(
    reporters: Vec<Box<dyn Reporter>>,
    config: &PipelineConfig,
) -> (Arc<Shared>, RecorderGuard) {
    let capacity = config.queue_capacity.max(1);
    let max_batch = config.max_batch.max(1);
    // Waking the worker costs the recording thread a system call: do it once per many
    // batches, early enough that the queue does not fill in the meantime.
    let wake_at = (capacity / 4).max(1);
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(capacity),
        // Enough to take back everything one wake-up of the worker reports.
        record_slots: ChunkPool::new(wake_at + max_batch),
        attribute_vecs: ChunkPool::new(wake_at + max_batch),
        wake_at,
        worker: OnceLock::new(),
        notified: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        flush_requested: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        queue_full: AtomicU64::new(0),
        late: AtomicU64::new(0),
        books: Mutex::new(Books::default()),
        drop_log: Mutex::new(DropLog::new(config.drop_warning_interval)),
        reported: AtomicU64::new(0),
        panics: AtomicU64::new(0),
        batches: AtomicU64::new(0),
        sync: Mutex::new(SyncState::default()),
        cond: Condvar::new(),
    });
    // Asked once: request facts become attributes only for a reporter that reads them.
    let facts_read = reporters
        .iter()
        .any(|r| catch_unwind(AssertUnwindSafe(|| r.reads_attributes())).unwrap_or(true));
    let worker = Worker {
        shared: shared.clone(),
        reporters,
        facts_read,
        repeated: RepeatedText::default(),
        max_batch,
        value_len: config.value_len,
        interval: config.interval,
        slots: Vec::with_capacity(CHUNK),
        vecs: Vec::with_capacity(CHUNK),
        own_vecs: Vec::new(),
        owned: Vec::with_capacity(max_batch),
    };
    let join = thread::Builder::new()
        .name("tracewire-reporter".into())
        .spawn(move || worker.run())
        .ok();
    match &join {
        Some(join) => {
            let _ = shared.worker.set(join.thread().clone());
        }
        None => {
            // No thread: nothing will ever drain the queue, so refuse spans rather than
            // hold them.
            shared.closed.store(true, Ordering::SeqCst);
            shared.close_books();
            shared.lock().stopped = true;
        }
    }
    let guard = RecorderGuard {
        handle: RecorderHandle {
            shared: shared.clone(),
        },
        join,
        timeout: config.shutdown_timeout,
        env_warnings: Vec::new(),
    };
    (shared, guard)
}

struct Worker {
    shared: Arc<Shared>,
    reporters: Vec<Box<dyn Reporter>>,
    /// Some reporter reads attributes (see [`Reporter::reads_attributes`]).
    facts_read: bool,
    repeated: RepeatedText,
    max_batch: usize,
    value_len: usize,
    interval: Duration,
    /// Chunks of emptied slots and vectors being gathered for the recording threads.
    slots: Vec<RecordSlot>,
    vecs: Vec<Vec<KeyValue>>,
    /// Attribute vectors the worker filled from request facts, kept here: their strings
    /// were allocated on this thread, and are freed on it.
    own_vecs: Vec<Vec<KeyValue>>,
    /// Whose attribute vector each span of the batch holds.
    owned: Vec<AttributeVec>,
}

/// Whose attribute vector a reported span holds, and so where its values are freed.
#[derive(Clone, Copy)]
enum AttributeVec {
    /// The worker's own, filled from request facts: emptied and kept here.
    Worker,
    /// A recording thread's, with nothing to free: emptied here, and handed back.
    Plain,
    /// A recording thread's, holding values it allocated: handed back full, for it to free
    /// them (see `Local::vec`).
    Full,
}

impl Worker {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        let mut last_tick = Instant::now();
        loop {
            // Reset before reading the flags and the queue: a push or flush request that
            // lands after this line sees `false` and unparks us.
            self.shared.notified.store(false, Ordering::SeqCst);
            let flush_target = self.shared.flush_requested.load(Ordering::SeqCst);
            let closing = self.shared.closed.load(Ordering::SeqCst);

            self.drain(&mut batch, &mut last_tick);
            if last_tick.elapsed() >= self.interval {
                self.each(0, |_, r| r.tick());
                last_tick = Instant::now();
            }
            if closing {
                self.drain(&mut batch, &mut last_tick);
                self.each(0, |_, r| r.shutdown());
                // Whatever the reporters still hold now, they will never deliver.
                self.shared.close_books();
                let mut state = self.shared.lock();
                state.flushed = self.shared.flush_requested.load(Ordering::SeqCst);
                state.stopped = true;
                self.shared.cond.notify_all();
                return;
            }
            // Before a flush completes: a flush waits for the warning about earlier drops.
            self.shared.warn_drops(Instant::now(), false);
            if flush_target > self.shared.lock().flushed {
                self.each(0, |_, r| r.flush());
                self.shared.lock().flushed = flush_target;
                self.shared.cond.notify_all();
            }
            let idle = || {
                self.shared.queue.is_empty()
                    && self.shared.flush_requested.load(Ordering::SeqCst) == flush_target
                    && !self.shared.closed.load(Ordering::SeqCst)
            };
            if idle() {
                // Say we may sleep, then look again: a flush or close requested after this
                // store sees `false` and unparks us. (`notified` may have stayed `true` since
                // a wake-up whose unpark a reporter's own blocking call used up; sleeping on
                // it would miss the next flush for a whole interval.)
                self.shared.notified.store(false, Ordering::SeqCst);
                if idle() {
                    thread::park_timeout(self.interval);
                }
            }
        }
    }

    fn drain(&mut self, batch: &mut Vec<SpanRecord>, last_tick: &mut Instant) {
        loop {
            while batch.len() < self.max_batch {
                match self.shared.queue.pop() {
                    Some(mut slot) => {
                        // Finished in its slot, so that only the record is moved out: the
                        // rest of a live record (the request's facts) is read in place.
                        let Some(live) = slot.as_mut() else {
                            continue;
                        };
                        let record = &mut live.record;
                        record.start_time = timestamp::to_system_time(live.start);
                        record.end_time = timestamp::to_system_time(live.end);
                        let recorded = match &live.facts {
                            Some(facts) if self.facts_read => {
                                let out = self.own_vecs.pop().unwrap_or_default();
                                let max = live.max_attributes;
                                let len = self.value_len;
                                Some(facts.finish(record, max, len, out, &mut self.repeated))
                            }
                            _ => None,
                        };
                        let owned = match recorded {
                            Some(_) => AttributeVec::Worker,
                            None if live.plain_attributes => AttributeVec::Plain,
                            None => AttributeVec::Full,
                        };
                        if let Some(recorded) = recorded {
                            // Emptied: back to the recording threads.
                            self.recycle(recorded);
                        }
                        // Pushed together: `owned` follows `batch` index for index.
                        if let Some(LiveRecord { record, .. }) = slot.take() {
                            self.owned.push(owned);
                            batch.push(record);
                        }
                        self.slots.push(slot);
                        if self.slots.len() == CHUNK {
                            self.shared.record_slots.give(&mut self.slots);
                        }
                    }
                    None => break,
                }
            }
            if batch.is_empty() {
                // Caught up: hand back what was gathered so far too.
                self.shared.record_slots.give(&mut self.slots);
                self.shared.attribute_vecs.give(&mut self.vecs);
                return;
            }
            // The last reporter may take what it keeps out of the records, rather than clone it.
            let last = self.reporters.len().saturating_sub(1);
            self.each(batch.len() as u64, |i, r| {
                if i == last {
                    r.report_mut(batch)
                } else {
                    r.report(batch)
                }
            });
            self.shared
                .reported
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            self.shared.batches.fetch_add(1, Ordering::Relaxed);
            let owned = std::mem::take(&mut self.owned);
            for (span, owned) in batch.iter_mut().zip(owned.iter().copied()) {
                let mut attributes = std::mem::take(&mut span.attributes);
                match owned {
                    AttributeVec::Worker => {
                        attributes.clear();
                        // Empty, and without capacity if the last reporter took it whole.
                        if attributes.capacity() > 0 && self.own_vecs.len() < self.max_batch {
                            self.own_vecs.push(attributes);
                        }
                    }
                    AttributeVec::Plain => {
                        // Frees nothing, and saves the recording thread the pass.
                        attributes.clear();
                        self.recycle(attributes);
                    }
                    AttributeVec::Full => self.recycle(attributes),
                }
            }
            self.owned = owned;
            self.owned.clear();
            batch.clear();
            if last_tick.elapsed() >= self.interval {
                self.each(0, |_, r| r.tick());
                *last_tick = Instant::now();
            }
        }
    }

    /// Hands a recording thread's attribute vector back to the recording threads. It goes
    /// back full, for a recording thread to clear (see `Local::vec`), unless that would keep
    /// large values alive while it waits.
    fn recycle(&mut self, mut attributes: Vec<KeyValue>) {
        if attributes.capacity() == 0 || attributes.capacity() > RECYCLED_CAPACITY {
            return;
        }
        if attributes.iter().any(|kv| is_large(&kv.value)) {
            attributes.clear();
        }
        self.vecs.push(attributes);
        if self.vecs.len() == CHUNK {
            self.shared.attribute_vecs.give(&mut self.vecs);
        }
    }

    /// Calls every reporter, catching and counting panics so one bad reporter neither stops
    /// the others nor the worker, and settles the first reporter's outcomes: `handed` spans
    /// are handed to it by this call.
    fn each(&mut self, handed: u64, mut f: impl FnMut(usize, &mut dyn Reporter)) {
        if handed > 0 {
            self.shared.books().handed += handed;
        }
        if self.reporters.is_empty() {
            // Nobody to lose them.
            self.shared.books().settle(Outcomes::exported(handed));
            return;
        }
        for (i, reporter) in self.reporters.iter_mut().enumerate() {
            let reporter: &mut dyn Reporter = &mut **reporter;
            let ok = catch_unwind(AssertUnwindSafe(|| f(i, reporter))).is_ok();
            if !ok {
                self.shared.panics.fetch_add(1, Ordering::Relaxed);
            }
            if i > 0 {
                continue;
            }
            let taken = catch_unwind(AssertUnwindSafe(|| reporter.take_outcomes()));
            let outcomes = match taken {
                Ok(Some(outcomes)) => outcomes,
                // A reporter that does not say is done with a batch once `report` returns.
                Ok(None) if ok => Outcomes::exported(handed),
                Ok(None) => Outcomes::default(),
                Err(_) => {
                    self.shared.panics.fetch_add(1, Ordering::Relaxed);
                    Outcomes::default()
                }
            };
            let mut books = self.shared.books();
            if !ok && handed > 0 {
                let mut panicked = Outcomes::default();
                panicked.dropped.reporter_panic = handed;
                books.settle(panicked);
            }
            books.settle(outcomes);
        }
    }
}

/// A cheap, cloneable handle on the reporter pipeline: flush it and read its counters.
#[derive(Clone)]
pub struct RecorderHandle {
    pub(crate) shared: Arc<Shared>,
}

impl RecorderHandle {
    /// Waits until every span finished before this call has been handed to the reporters and
    /// the reporters have flushed, or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        self.shared.flush(timeout)
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl fmt::Debug for RecorderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecorderHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Keeps the reporter worker alive; on drop (or [`shutdown`](RecorderGuard::shutdown)) it
/// hands every queued span to the reporters, flushes them and stops the worker.
///
/// Hold it for the life of the program: `let _guard = ...;` (not `let _ = ...;`, which drops
/// it at once).
#[must_use = "dropping the guard shuts the reporters down"]
pub struct RecorderGuard {
    handle: RecorderHandle,
    join: Option<JoinHandle<()>>,
    timeout: Duration,
    pub(crate) env_warnings: Vec<crate::env::EnvWarning>,
}

impl RecorderGuard {
    /// What [`RecorderBuilder::with_env`](crate::record::RecorderBuilder::with_env) found
    /// wrong in the environment (each setting kept its default): empty otherwise.
    pub fn env_warnings(&self) -> &[crate::env::EnvWarning] {
        &self.env_warnings
    }

    /// A handle for flushing and counters, usable after the guard moved elsewhere.
    pub fn handle(&self) -> RecorderHandle {
        self.handle.clone()
    }

    /// Flushes with the guard's shutdown timeout (5 s by default).
    pub fn flush(&self) -> Result<(), FlushError> {
        self.handle.flush(self.timeout)
    }

    /// The pipeline's counters.
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Drains the queue into the reporters, shuts them down and stops the worker, waiting at
    /// most the guard's shutdown timeout. Spans finished afterwards are dropped and counted.
    /// An error only when the deadline passed; [`shutdown_within`](Self::shutdown_within)
    /// also says what was lost.
    pub fn shutdown(mut self) -> Result<(), FlushError> {
        match self.stop(self.timeout) {
            Err(ShutdownError {
                timed_out: true, ..
            }) => Err(FlushError::Timeout),
            _ => Ok(()),
        }
    }

    /// Shuts down as [`shutdown`](Self::shutdown) does, returning within `timeout` even if a
    /// reporter or its collector is down or stalled, with the final counts ([`Stats`]).
    ///
    /// An error when a span was lost (any cause in [`Drops`](crate::report::Drops) but the
    /// tail sampler's choice) or the deadline passed: what the reporters still held then
    /// counts as dropped at shutdown, and the worker is left to finish on its own. Either
    /// way, the counts are final: `queued` is 0.
    pub fn shutdown_within(mut self, timeout: Duration) -> Result<Stats, ShutdownError> {
        self.stop(timeout)
    }

    fn stop(&mut self, timeout: Duration) -> Result<Stats, ShutdownError> {
        let shared = self.handle.shared.clone();
        let mut timed_out = false;
        if let Some(join) = self.join.take() {
            shared.closed.store(true, Ordering::SeqCst);
            shared.notified.store(true, Ordering::SeqCst);
            join.thread().unpark();
            let deadline = Instant::now() + timeout.min(FOREVER);
            let mut state = shared.lock();
            while !state.stopped {
                let now = Instant::now();
                if now >= deadline {
                    timed_out = true;
                    break;
                }
                state = shared
                    .cond
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            drop(state);
            if timed_out {
                // A stalled reporter: leave the worker detached rather than miss the
                // deadline, and count what it holds as lost.
                shared.close_books();
            } else {
                let _ = join.join();
            }
            shared.warn_drops(Instant::now(), true);
        }
        let stats = shared.stats();
        if timed_out || stats.dropped.lost() > 0 {
            Err(ShutdownError { timed_out, stats })
        } else {
            Ok(stats)
        }
    }
}

impl Drop for RecorderGuard {
    fn drop(&mut self) {
        let _ = self.stop(self.timeout);
    }
}

impl fmt::Debug for RecorderGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecorderGuard")
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::StringValue;

    struct Discard;

    impl Reporter for Discard {
        fn report(&mut self, _: &[SpanRecord]) {}
    }

    fn record(attributes: Vec<KeyValue>) -> RecordSlot {
        Box::new(Some(LiveRecord {
            record: SpanRecord {
                attributes,
                ..SpanRecord::for_test(1, 1, 0)
            },
            facts: None,
            max_attributes: 128,
            ended: false,
            start: 0,
            end: 0,
            plain_attributes: false,
        }))
    }

    /// An HTTP server span's facts become its first attributes on the worker, before any
    /// reporter sees the span; the attributes recorded directly follow, and their vector
    /// goes back to the recording threads.
    #[test]
    fn facts_become_attributes_before_reporting() {
        use crate::record::facts::HttpServerFacts;
        use crate::report::InMemoryReporter;

        let spans = InMemoryReporter::new();
        let (shared, guard) = start(vec![Box::new(spans.clone())], &PipelineConfig::default());
        let mut facts = HttpServerFacts {
            method: "GET",
            scheme: "http",
            version: "1.1",
            status_code: Some(503),
            ..HttpServerFacts::default()
        };
        facts.path = facts.text.push("/users/42");
        let mut recorded = Vec::with_capacity(4);
        recorded.push(KeyValue::new("error.type", "503"));
        let mut live = record(recorded);
        if let Some(live) = Option::as_mut(&mut live) {
            live.facts = Some(facts.into());
        }
        shared.send(live);
        guard.flush().expect("flush");

        let span = spans.spans().pop().expect("reported");
        let keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "http.request.method",
                "url.path",
                "url.scheme",
                "network.protocol.version",
                "http.response.status_code",
                "error.type"
            ]
        );
        assert_eq!(span.attribute("url.path"), Some(&"/users/42".into()));
        assert_eq!(
            span.attribute("http.response.status_code"),
            Some(&503i64.into())
        );
        let back = shared.attribute_vec();
        assert!(
            back.is_empty() && back.capacity() >= 4,
            "the recorded vector came back"
        );
    }

    /// Keeps what it is handed, and says it reads no attribute.
    #[derive(Clone, Default)]
    struct NamesOnly(Arc<Mutex<Vec<SpanRecord>>>);

    impl Reporter for NamesOnly {
        fn report(&mut self, batch: &[SpanRecord]) {
            self.0.lock().unwrap().extend_from_slice(batch);
        }
        fn reads_attributes(&self) -> bool {
            false
        }
    }

    fn with_facts() -> RecordSlot {
        use crate::record::facts::HttpServerFacts;
        let mut facts = HttpServerFacts {
            method: "GET",
            scheme: "http",
            version: "1.1",
            ..HttpServerFacts::default()
        };
        facts.path = facts.text.push("/users/42");
        let mut live = record(vec![KeyValue::new("error.type", "503")]);
        if let Some(live) = Option::as_mut(&mut live) {
            live.facts = Some(facts.into());
        }
        live
    }

    /// When no reporter reads attributes, request facts are never made into attributes: the
    /// span keeps only those recorded directly. One reporter that reads them is enough for
    /// every reporter to see them.
    #[test]
    fn facts_become_attributes_only_for_a_reporter_that_reads_them() {
        let keys = |span: &SpanRecord| -> Vec<String> {
            span.attributes
                .iter()
                .map(|kv| kv.key.to_string())
                .collect()
        };

        let names = NamesOnly::default();
        let (shared, guard) = start(vec![Box::new(names.clone())], &PipelineConfig::default());
        shared.send(with_facts());
        guard.flush().expect("flush");
        let span = names.0.lock().unwrap().pop().expect("reported");
        assert_eq!(keys(&span), ["error.type"]);
        drop(guard);

        let names = NamesOnly::default();
        let spans = crate::report::InMemoryReporter::new();
        let (shared, guard) = start(
            vec![Box::new(names.clone()), Box::new(spans.clone())],
            &PipelineConfig::default(),
        );
        shared.send(with_facts());
        guard.flush().expect("flush");
        let expect = [
            "http.request.method",
            "url.path",
            "url.scheme",
            "network.protocol.version",
            "error.type",
        ];
        let span = names.0.lock().unwrap().pop().expect("reported");
        assert_eq!(keys(&span), expect);
        assert_eq!(keys(&spans.spans().pop().expect("reported")), expect);
    }

    /// Attribute vectors come back to the recording threads with their small values still in
    /// them (freed where spans are recorded, not on the worker) and are handed out empty;
    /// large values are freed at once.
    #[test]
    fn recycled_vectors_are_emptied_by_the_recording_thread() {
        let (shared, guard) = start(vec![Box::new(Discard)], &PipelineConfig::default());
        let small: Arc<str> = Arc::from("/users/42");
        let large: Arc<str> = Arc::from("x".repeat(1000));
        let mut small_vec = Vec::with_capacity(4);
        small_vec.push(KeyValue::new("url.path", StringValue::from(small.clone())));
        let mut large_vec = Vec::with_capacity(4);
        large_vec.push(KeyValue::new(
            "db.query.text",
            StringValue::from(large.clone()),
        ));
        shared.send(record(small_vec));
        shared.send(record(large_vec));
        guard.flush().expect("flush");

        assert_eq!(
            Arc::strong_count(&large),
            1,
            "large values are freed by the worker"
        );
        assert_eq!(
            Arc::strong_count(&small),
            2,
            "small values wait in the recycled vector"
        );
        let (a, b) = (shared.attribute_vec(), shared.attribute_vec());
        assert!(a.is_empty() && b.is_empty());
        assert!(
            a.capacity() >= 4 && b.capacity() >= 4,
            "the vectors were reused"
        );
        assert_eq!(Arc::strong_count(&small), 1, "emptied when handed out");
    }

    /// A vector the recorder marked as holding nothing to free is emptied on the worker, so
    /// the recording thread skips the pass; others still come back full. (The marked one
    /// holds a string here only to make the worker's emptying visible.)
    #[test]
    fn plain_vectors_are_emptied_by_the_worker() {
        let (shared, guard) = start(vec![Box::new(Discard)], &PipelineConfig::default());
        let marked: Arc<str> = Arc::from("seen by the worker");
        let kept: Arc<str> = Arc::from("kept for the recording thread");
        let mut plain = record(vec![KeyValue::new(
            "marked",
            StringValue::from(marked.clone()),
        )]);
        if let Some(plain) = Option::as_mut(&mut plain) {
            plain.plain_attributes = true;
        }
        shared.send(plain);
        shared.send(record(vec![KeyValue::new(
            "kept",
            StringValue::from(kept.clone()),
        )]));
        guard.flush().expect("flush");
        assert_eq!(Arc::strong_count(&marked), 1, "emptied on the worker");
        assert_eq!(Arc::strong_count(&kept), 2, "handed back full");
        let (a, b) = (shared.attribute_vec(), shared.attribute_vec());
        assert!(a.is_empty() && b.is_empty());
        assert_eq!(Arc::strong_count(&kept), 1, "emptied when handed out");
    }

    /// Times are kept as nanoseconds while a span is live and become the record's
    /// `SystemTime`s on the worker.
    #[test]
    fn times_are_set_on_the_worker() {
        let spans = crate::report::InMemoryReporter::new();
        let (shared, guard) = start(vec![Box::new(spans.clone())], &PipelineConfig::default());
        let mut span = record(Vec::new());
        if let Some(span) = Option::as_mut(&mut span) {
            span.start = 1_700_000_000_123_456_789;
            span.end = 1_700_000_001_000_000_000;
        }
        shared.send(span);
        guard.flush().expect("flush");
        let got = &spans.spans()[0];
        let epoch = std::time::SystemTime::UNIX_EPOCH;
        assert_eq!(
            got.start_time,
            epoch + Duration::from_nanos(1_700_000_000_123_456_789)
        );
        assert_eq!(got.end_time, epoch + Duration::from_secs(1_700_000_001));
        assert_eq!(got.duration(), Duration::from_nanos(876_543_211));
    }
}
