//! A reporter that keeps spans in memory, for tests.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::context::{SpanId, TraceId};
use crate::report::Reporter;
use crate::span::{SpanKind, SpanRecord, Status};

/// Collects every span it receives. Clones share the same store: install one clone, keep
/// another to read from.
///
/// ```
/// use tracewire::record::Recorder;
/// use tracewire::report::InMemoryReporter;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let spans = InMemoryReporter::new();
/// let (layer, guard) = Recorder::builder()
///     .service_name("example")
///     .reporter(spans.clone())
///     .build();
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     let _outer = tracing::info_span!("outer").entered();
///     let _inner = tracing::info_span!("inner").entered();
/// });
/// guard.flush().unwrap();
/// let inner = spans.find("inner").unwrap();
/// assert_eq!(spans.parent(&inner).unwrap().name, "outer");
/// assert_eq!(
///     spans.render_tree(inner.trace_id()),
///     "example internal outer\n    example internal inner\n"
/// );
/// ```
#[derive(Clone, Default)]
pub struct InMemoryReporter {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    spans: Mutex<Vec<SpanRecord>>,
    arrived: Condvar,
}

/// [`InMemoryReporter::wait_for`] gave up before enough spans arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeout {
    /// How many spans had arrived.
    pub got: usize,
    /// How many were awaited.
    pub wanted: usize,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "waited for {} spans, got {}", self.wanted, self.got)
    }
}

impl std::error::Error for WaitTimeout {}

impl InMemoryReporter {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<SpanRecord>> {
        // A panic while holding the lock cannot leave a Vec half-written.
        self.inner.spans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.lock().clone()
    }

    /// Number of spans received.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No span received yet.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets every span.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Waits until at least `n` spans have arrived, then returns all of them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<SpanRecord>, WaitTimeout> {
        // A century stands in for longer timeouts (`Duration::MAX`), which overflow an `Instant`.
        let deadline = Instant::now() + timeout.min(Duration::from_secs(100 * 365 * 24 * 60 * 60));
        let mut spans = self.lock();
        while spans.len() < n {
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitTimeout {
                    got: spans.len(),
                    wanted: n,
                });
            }
            spans = self
                .inner
                .arrived
                .wait_timeout(spans, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(spans.clone())
    }

    /// The first span named `name`.
    pub fn find(&self, name: &str) -> Option<SpanRecord> {
        self.lock().iter().find(|s| s.name == name).cloned()
    }

    /// Every span named `name`.
    pub fn find_all(&self, name: &str) -> Vec<SpanRecord> {
        self.lock()
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// The span with this id.
    pub fn get(&self, trace_id: TraceId, span_id: SpanId) -> Option<SpanRecord> {
        self.lock()
            .iter()
            .find(|s| s.trace_id() == trace_id && s.span_id() == span_id)
            .cloned()
    }

    /// The parent of `span`, when it was recorded here.
    pub fn parent(&self, span: &SpanRecord) -> Option<SpanRecord> {
        if span.is_root() {
            return None;
        }
        self.get(span.trace_id(), span.parent_span_id)
    }

    /// The recorded children of `span`, by start time.
    pub fn children(&self, span: &SpanRecord) -> Vec<SpanRecord> {
        let mut children: Vec<_> = self
            .lock()
            .iter()
            .filter(|s| s.trace_id() == span.trace_id() && s.parent_span_id == span.span_id())
            .cloned()
            .collect();
        children.sort_by(|a, b| (a.start_time, &a.name).cmp(&(b.start_time, &b.name)));
        children
    }

    /// Every span of one trace, by start time.
    pub fn trace(&self, trace_id: TraceId) -> Vec<SpanRecord> {
        let mut spans: Vec<_> = self
            .lock()
            .iter()
            .filter(|s| s.trace_id() == trace_id)
            .cloned()
            .collect();
        spans.sort_by(|a, b| (a.start_time, &a.name).cmp(&(b.start_time, &b.name)));
        spans
    }

    /// One trace as an indented text tree, without ids or times, for snapshot assertions.
    ///
    /// Each line is `service kind name`, then ` [ok]`, ` [error]` or ` [error: message]` when
    /// the status is set; events follow their span as `• name`. Children are indented four
    /// spaces under their parent, siblings in start order. Spans whose parent was not
    /// recorded here (a remote parent, or one still open) start their own top-level tree.
    pub fn render_tree(&self, trace_id: TraceId) -> String {
        let spans = self.trace(trace_id);
        let mut out = String::new();
        let known = |id: SpanId| spans.iter().any(|s| s.span_id() == id);
        for top in spans
            .iter()
            .filter(|s| s.is_root() || !known(s.parent_span_id))
        {
            render(&spans, top, 0, &mut out);
        }
        out
    }
}

fn render(spans: &[SpanRecord], span: &SpanRecord, depth: usize, out: &mut String) {
    let indent = "    ".repeat(depth);
    let _ = write!(
        out,
        "{indent}{} {} {}",
        span.service_name,
        kind_name(&span.kind),
        span.name
    );
    match &span.status {
        Status::Unset => {}
        Status::Ok => out.push_str(" [ok]"),
        // Errors often have no description (the status code says it all).
        Status::Error { description } if description.is_empty() => out.push_str(" [error]"),
        Status::Error { description } => {
            let _ = write!(out, " [error: {description}]");
        }
    }
    out.push('\n');
    for event in &span.events {
        let _ = writeln!(out, "{indent}  • {}", event.name);
    }
    for child in spans.iter().filter(|s| s.parent_span_id == span.span_id()) {
        render(spans, child, depth + 1, out);
    }
}

/// The lower-case name of a span kind.
pub(crate) fn kind_name(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    }
}

impl Reporter for InMemoryReporter {
    fn report(&mut self, batch: &[SpanRecord]) {
        self.lock().extend_from_slice(batch);
        self.inner.arrived.notify_all();
    }
}

impl fmt::Debug for InMemoryReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryReporter")
            .field("spans", &self.len())
            .finish()
    }
}
