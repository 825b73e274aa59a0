//! Per-span state kept in the registry's extensions, and the field visitors that fill it.

use std::borrow::Cow;
use std::error::Error;
use std::fmt::{self, Write as _};
use std::mem::ManuallyDrop;
use std::ptr::{addr_of, addr_of_mut, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tracing_core::field::{Field, Visit};

use crate::baggage::Baggage;
use crate::record::clock;
use crate::record::data::{Event, Key, KeyValue, SpanKind, SpanRecord, Status, Value};
use crate::record::facts::HttpServerFacts;
use crate::report::pipeline::Shared;
use crate::semconv;

/// A live span's record, and the request facts its attributes will be made of on the
/// reporter thread (see [`facts`](crate::record::facts)). Reads and writes of the record go
/// through `Deref`.
pub(crate) struct LiveRecord {
    pub(crate) record: SpanRecord,
    pub(crate) facts: Option<HttpServerFacts>,
    /// The span's attribute limit: for attributes recorded while it is live, and for the facts
    /// with them when it is reported.
    pub(crate) max_attributes: u32,
    /// The end time is set (the call ended before the `tracing` span closed). Otherwise it is
    /// taken at close, and a span kept open by a child ends with that child, as the registry
    /// closes it then.
    pub(crate) ended: bool,
    /// The start and end times, in nanoseconds since the Unix epoch (see
    /// [`clock::now_nanos`]); the record's are set from them when it is reported.
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// No attribute holds memory to free (each has a static key and a number or a bool): the
    /// worker may empty the vector itself before handing it back for reuse.
    pub(crate) plain_attributes: bool,
}

impl std::ops::Deref for LiveRecord {
    type Target = SpanRecord;

    fn deref(&self) -> &SpanRecord {
        &self.record
    }
}

impl std::ops::DerefMut for LiveRecord {
    fn deref_mut(&mut self) -> &mut SpanRecord {
        &mut self.record
    }
}

/// A span's heap node: its record, and what ties it to its recorded parent.
///
/// A span is handed to the pipeline when its `SpanData` is dropped, that is when the registry
/// clears a closed span, and not before all its recorded children have been handed over: a
/// span closed by its last child's close (its handle was dropped while a child still ran) is
/// cleared by the registry *before* that child's data is dropped, and reporters (the tail
/// sampler, the console) expect a trace's spans before its root. The node counts the
/// references to it, its own and one per recorded child; whoever gives up the last one
/// hands it over, then gives up its reference to its parent. Handing spans over here rather
/// than in `Layer::on_close` saves a registry lookup and an extension lock per span.
pub(crate) struct LiveSpan {
    pub(crate) live: LiveRecord,
    tree: Tree,
}

/// The part of a [`LiveSpan`] shared with the span's children. `SpanData` hands out `&mut`
/// only to [`LiveSpan::live`], never to this, so children touching `pending` through a
/// pointer alias nothing.
struct Tree {
    /// The span's own reference (held by its `SpanData`), plus one per recorded child whose
    /// node still holds one.
    pending: AtomicUsize,
    /// The node of the recorded parent, on which this span holds a reference.
    parent: Option<NonNull<LiveSpan>>,
    /// The pipeline the span goes to: `owner`'s, or that of an ancestor that owns it (held
    /// alive by the chain of references up to that ancestor).
    shared: NonNull<Shared>,
    /// Set on spans without a recorded parent on the same pipeline; taken before handing over.
    owner: Option<Arc<Shared>>,
    sampled: bool,
}

// SAFETY: `live` is reached only by the one `SpanData` (through `LivePtr`, as a `Box` would
// be) and then by whoever owns the node after the last reference is given up. Of `tree`,
// only `pending` is touched by other threads, atomically; `parent` and `shared` point to
// nodes and a pipeline that are themselves `Send + Sync` and are only followed under the
// reference protocol of `release`.
unsafe impl Send for LiveSpan {}
// SAFETY: as above: shared access to a node reads immutable fields and the atomic count.
unsafe impl Sync for LiveSpan {}

/// A recorded parent's node, with one more reference taken for a new child. Given up again
/// if the child's node is never made (a sampler panicked, say).
pub(crate) struct Adopted {
    node: NonNull<LiveSpan>,
    shared: NonNull<Shared>,
}

impl Drop for Adopted {
    fn drop(&mut self) {
        // SAFETY: the reference `adopt_child` took, unused since.
        unsafe { release(self.node) }
    }
}

impl LiveSpan {
    /// A node for a new span, holding its own reference (and its parent's, taken by
    /// [`SpanData::adopt_child`]).
    pub(crate) fn new(
        live: LiveRecord,
        sampled: bool,
        parent: Option<Adopted>,
        shared: &Arc<Shared>,
    ) -> Self {
        let own = NonNull::from(&**shared);
        // The node keeps the parent's reference from here on.
        let parent = parent.map(ManuallyDrop::new);
        // A parent on the same pipeline keeps it alive for this span: no count to take.
        let borrows = parent.as_ref().is_some_and(|a| a.shared == own);
        LiveSpan {
            live,
            tree: Tree {
                pending: AtomicUsize::new(1),
                parent: parent.map(|a| a.node),
                shared: own,
                owner: (!borrows).then(|| shared.clone()),
                sampled,
            },
        }
    }

    /// A node outside any tree, for tests that hand records to the pipeline directly.
    #[cfg(test)]
    pub(crate) fn detached(live: LiveRecord) -> Box<Self> {
        Box::new(LiveSpan {
            live,
            tree: Tree {
                pending: AtomicUsize::new(1),
                parent: None,
                // Never followed: these nodes are sent, not released.
                shared: NonNull::dangling(),
                owner: None,
                sampled: true,
            },
        })
    }

    /// Whether the node still owns a reference to its pipeline (it must not once queued: the
    /// worker reuses the box without dropping it).
    pub(crate) fn owns_pipeline(&self) -> bool {
        self.tree.owner.is_some()
    }
}

/// Gives up one reference to `node`. The last one hands the span to its pipeline, then gives
/// up the span's reference to its parent, and so on up.
///
/// # Safety
///
/// `node` comes from `Box::into_raw` of a [`LiveSpan`] and the caller holds one of its
/// references, which it does not use again.
unsafe fn release(mut node: NonNull<LiveSpan>) {
    // The span's own reference first, then its ancestors', each given up by a child.
    let mut by_child = false;
    loop {
        // SAFETY: the caller's reference keeps the node alive; only the atomic is borrowed.
        let pending = unsafe { &*addr_of!((*node.as_ptr()).tree.pending) };
        // A count of one is ours alone: no child can be added any more (the span's data is
        // gone) and no other holder is left to change it, so skip the atomic write.
        if pending.load(Ordering::Acquire) != 1 && pending.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // SAFETY: the last reference was ours, so nobody else reaches the node: own it again.
        let mut span = unsafe { Box::from_raw(node.as_ptr()) };
        let parent = span.tree.parent;
        let sampled = span.tree.sampled;
        if by_child && sampled && !span.live.ended {
            // Its handle went before this child closed: it closes now, after the child.
            span.live.end = clock::now_nanos().max(span.live.end);
        }
        match span.tree.owner.take() {
            Some(owner) => owner.finish(span, sampled),
            None => {
                let shared = span.tree.shared;
                // SAFETY: the pipeline is owned by an ancestor on the parent chain, which
                // this span's reference (given up only below) keeps from being handed over.
                unsafe { shared.as_ref() }.finish(span, sampled);
            }
        }
        match parent {
            Some(parent) => node = parent,
            None => return,
        }
        by_child = true;
    }
}

/// The owning pointer from a span's `SpanData` to its node: a `Box` that reaches only the
/// record, and hands the node over on drop through [`release`].
pub(crate) struct LivePtr(NonNull<LiveSpan>);

// SAFETY: it owns access to the node's record as a `Box<LiveSpan>` would, and `LiveSpan` is
// `Send + Sync`.
unsafe impl Send for LivePtr {}
// SAFETY: as above; `&LivePtr` only reads.
unsafe impl Sync for LivePtr {}

impl LivePtr {
    pub(crate) fn new(span: Box<LiveSpan>) -> Self {
        LivePtr(NonNull::from(Box::leak(span)))
    }
}

impl std::ops::Deref for LivePtr {
    type Target = LiveRecord;

    fn deref(&self) -> &LiveRecord {
        // SAFETY: the node lives while its own reference (this pointer's) is held, and no one
        // else reaches `live` until it is given up.
        unsafe { &*addr_of!((*self.0.as_ptr()).live) }
    }
}

impl std::ops::DerefMut for LivePtr {
    fn deref_mut(&mut self) -> &mut LiveRecord {
        // SAFETY: as for `deref`; the borrow covers `live` only, never the `tree` that
        // children reach.
        unsafe { &mut *addr_of_mut!((*self.0.as_ptr()).live) }
    }
}

/// What the recorder knows of a live span. Sampled-out spans keep only the context, service
/// and baggage (for propagation); the rest of `record` stays empty.
pub(crate) struct SpanData {
    pub(crate) record: LivePtr,
    pub(crate) baggage: Baggage,
    pub(crate) sampled: bool,
    /// Set by an explicit status (`otel.status_code`, [`SpanExt::set_status`]), which error
    /// events must not override.
    ///
    /// [`SpanExt::set_status`]: crate::record::SpanExt::set_status
    status_explicit: bool,
    /// `otel.status_message` recorded before `otel.status_code`.
    pending_status_message: Option<String>,
    limits: Limits,
}

/// The per-span limits besides the attribute count (which the record carries to the reporter
/// thread, for the facts).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) events: u32,
    pub(crate) links: u32,
    /// The longest text value kept, in bytes; longer ones are cut on a character boundary.
    pub(crate) value_len: usize,
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Cuts the text in `value` (a string, or each string of an array) to `max` bytes.
fn cap_value(value: &mut Value, max: usize) {
    use opentelemetry::{Array, StringValue};
    match value {
        Value::String(s) if s.as_str().len() > max => {
            *s = StringValue::from(truncated(s.as_str(), max).to_owned());
        }
        Value::Array(Array::String(values)) => {
            for s in values.iter_mut().filter(|s| s.as_str().len() > max) {
                *s = StringValue::from(truncated(s.as_str(), max).to_owned());
            }
        }
        _ => {}
    }
}

/// `text`, owned, cut to `max` bytes.
fn capped_string(mut text: String, max: usize) -> String {
    if text.len() > max {
        text.truncate(truncated(&text, max).len());
        text.shrink_to_fit();
    }
    text
}

impl Drop for SpanData {
    /// The registry clears a span's extensions once it has closed (or when it is dropped
    /// itself): the span ends here.
    fn drop(&mut self) {
        if self.sampled && !self.record.ended {
            // Not before the start, should the wall clock step back in between.
            self.record.end = clock::now_nanos().max(self.record.start);
        }
        // SAFETY: the node came from `LivePtr::new`, and this is its own reference, given up
        // once, as the data goes.
        unsafe { release(self.record.0) }
    }
}

impl SpanData {
    pub(crate) fn new(
        record: Box<LiveSpan>,
        baggage: Baggage,
        sampled: bool,
        limits: Limits,
    ) -> Self {
        SpanData {
            record: LivePtr::new(record),
            baggage,
            sampled,
            status_explicit: false,
            pending_status_message: None,
            limits,
        }
    }

    /// Takes a reference to this span's node for a new recorded child: this span is not
    /// handed over before the child is.
    pub(crate) fn adopt_child(&self) -> Adopted {
        let node = self.record.0;
        // SAFETY: the node lives while this data holds its own reference; only the atomic
        // and the immutable pipeline pointer are read.
        unsafe {
            // Relaxed, as for `Arc::clone`: the caller already reaches the node.
            (*addr_of!((*node.as_ptr()).tree.pending)).fetch_add(1, Ordering::Relaxed);
            Adopted {
                node,
                shared: *addr_of!((*node.as_ptr()).tree.shared),
            }
        }
    }

    /// Sets an attribute, replacing one with the same key.
    #[inline]
    pub(crate) fn set_attribute(&mut self, kv: KeyValue) {
        self.record.plain_attributes = false;
        self.put_attribute(kv);
    }

    /// Sets the attribute of a `tracing` field: its key is static, so only a value other
    /// than a number or a bool leaves memory to free.
    #[inline]
    fn set_field(&mut self, field: &Field, value: Value) {
        if !matches!(value, Value::Bool(_) | Value::I64(_) | Value::F64(_)) {
            self.record.plain_attributes = false;
        }
        self.put_attribute(KeyValue::new(Key::from_static_str(field.name()), value));
    }

    #[inline]
    fn put_attribute(&mut self, mut kv: KeyValue) {
        cap_value(&mut kv.value, self.limits.value_len);
        if let Some(slot) = self.record.attributes.iter_mut().find(|a| a.key == kv.key) {
            slot.value = kv.value;
        } else if self.record.attributes.len() < self.record.max_attributes as usize {
            self.record.attributes.push(kv);
        } else {
            self.record.dropped_attributes_count += 1;
        }
    }

    /// Marks the span's end now; closing it later keeps this time.
    pub(crate) fn end_now(&mut self) {
        self.record.end = clock::now_nanos().max(self.record.start);
        self.record.ended = true;
    }

    /// Applies the limits to what a seed brought: attributes beyond the count and links
    /// beyond theirs are dropped and counted, long values cut.
    pub(crate) fn enforce_seed_limits(&mut self) {
        let max = self.record.max_attributes as usize;
        let max_links = self.limits.links as usize;
        let value_len = self.limits.value_len;
        let record = &mut self.record.record;
        if record.attributes.len() > max {
            record.dropped_attributes_count += (record.attributes.len() - max) as u32;
            record.attributes.truncate(max);
        }
        for kv in &mut record.attributes {
            cap_value(&mut kv.value, value_len);
        }
        if record.links.len() > max_links {
            record.dropped_links_count += (record.links.len() - max_links) as u32;
            record.links.truncate(max_links);
        }
    }

    /// Adds a link, unless the span has as many as its limit allows.
    pub(crate) fn add_link(&mut self, link: crate::record::data::Link) {
        if self.record.links.len() < self.limits.links as usize {
            self.record.links.push(link);
        } else {
            self.record.dropped_links_count += 1;
        }
    }

    pub(crate) fn add_event(&mut self, mut event: Event) {
        if self.record.events.len() < self.limits.events as usize {
            for kv in &mut event.attributes {
                cap_value(&mut kv.value, self.limits.value_len);
            }
            self.record.events.push(event);
        } else {
            self.record.dropped_events_count += 1;
        }
    }

    /// An explicit status: Ok is final, Error replaces Unset or Error, Unset is ignored.
    pub(crate) fn set_status(&mut self, status: Status) {
        if matches!(status, Status::Unset) || matches!(self.record.status, Status::Ok) {
            return;
        }
        self.record.status = match status {
            Status::Error { description } if description.len() > self.limits.value_len => {
                Status::error(truncated(&description, self.limits.value_len).to_owned())
            }
            status => status,
        };
        self.status_explicit = true;
    }

    /// A status implied by an error event or field: only fills an unset status.
    fn set_implied_error(&mut self, message: &str) {
        if !self.status_explicit && matches!(self.record.status, Status::Unset) {
            self.record.status =
                Status::error(truncated(message, self.limits.value_len).to_owned());
        }
    }

    /// Adds an `exception` event and marks the span as failed (unless a status was set
    /// explicitly).
    pub(crate) fn record_exception(
        &mut self,
        exception_type: Option<Cow<'static, str>>,
        message: String,
        mut extra: Vec<KeyValue>,
    ) {
        let message = capped_string(message, self.limits.value_len);
        self.set_implied_error(&message);
        let mut attributes = Vec::with_capacity(2 + extra.len());
        if let Some(ty) = exception_type {
            attributes.push(KeyValue::new(semconv::EXCEPTION_TYPE, ty));
        }
        attributes.push(KeyValue::new(semconv::EXCEPTION_MESSAGE, message));
        attributes.append(&mut extra);
        self.add_event(Event::new(
            semconv::EXCEPTION_EVENT,
            clock::now(),
            attributes,
            0,
        ));
    }
}

/// The message of an error followed by its sources, as `top: cause: root cause`; a source
/// whose text the previous message already contains is not repeated.
pub(crate) fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn u64_value(value: u64) -> Value {
    // Integers stay integers; only what does not fit an i64 becomes text.
    match i64::try_from(value) {
        Ok(v) => Value::I64(v),
        Err(_) => Value::String(value.to_string().into()),
    }
}

fn parse_kind(value: &str) -> Option<SpanKind> {
    Some(match value.to_ascii_lowercase().as_str() {
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        _ => return None,
    })
}

/// Records a span's fields (at creation and on `Span::record`) as attributes, handling the
/// `otel.*` and `error` fields.
pub(crate) struct SpanVisitor<'a>(pub(crate) &'a mut SpanData);

impl SpanVisitor<'_> {
    fn text(&mut self, field: &Field, value: Cow<'_, str>) {
        let data = &mut *self.0;
        match field.name() {
            semconv::OTEL_NAME => data.record.name = Cow::Owned(value.into_owned()),
            semconv::OTEL_KIND => {
                if let Some(kind) = parse_kind(&value) {
                    data.record.kind = kind;
                }
            }
            semconv::OTEL_STATUS_CODE => match value.to_ascii_lowercase().as_str() {
                "ok" => data.set_status(Status::Ok),
                "error" => match data.pending_status_message.take() {
                    Some(message) => data.set_status(Status::error(message)),
                    // An error status already set keeps its message.
                    None if matches!(data.record.status, Status::Error { .. }) => {
                        data.status_explicit = true;
                    }
                    None => data.set_status(Status::error("")),
                },
                _ => {}
            },
            semconv::OTEL_STATUS_MESSAGE => {
                let value = truncated(&value, data.limits.value_len);
                match &mut data.record.status {
                    Status::Error { description } => *description = Cow::Owned(value.to_owned()),
                    // Kept until an error status code arrives.
                    _ => data.pending_status_message = Some(value.to_owned()),
                }
            }
            semconv::ERROR_FIELD => data.record_exception(None, value.into_owned(), Vec::new()),
            _ => {
                let value = truncated(&value, data.limits.value_len).to_owned();
                data.set_field(field, Value::String(value.into()))
            }
        }
    }
}

impl Visit for SpanVisitor<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.set_field(field, Value::Bool(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.set_field(field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.set_field(field, u64_value(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value = match i64::try_from(value) {
            Ok(v) => Value::I64(v),
            Err(_) => Value::String(value.to_string().into()),
        };
        self.0.set_field(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value = match i64::try_from(value) {
            Ok(v) => Value::I64(v),
            Err(_) => Value::String(value.to_string().into()),
        };
        self.0.set_field(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.set_field(field, Value::F64(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, Cow::Borrowed(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        if field.name() == semconv::ERROR_FIELD {
            self.0
                .record_exception(None, error_chain(value), Vec::new());
        } else {
            self.text(field, Cow::Owned(value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.text(field, Cow::Owned(text));
    }
}

/// Collects an event's fields: `message` becomes its name, `error` its exception message.
#[derive(Default)]
pub(crate) struct EventVisitor {
    pub(crate) message: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) attributes: Vec<KeyValue>,
}

impl EventVisitor {
    fn text(&mut self, field: &Field, value: String) {
        match field.name() {
            semconv::MESSAGE_FIELD => self.message = Some(value),
            semconv::ERROR_FIELD => self.error = Some(value),
            name => self
                .attributes
                .push(KeyValue::new(Key::from_static_str(name), value)),
        }
    }
}

impl Visit for EventVisitor {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.attributes
            .push(KeyValue::new(Key::from_static_str(field.name()), value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.attributes
            .push(KeyValue::new(Key::from_static_str(field.name()), value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.attributes.push(KeyValue::new(
            Key::from_static_str(field.name()),
            u64_value(value),
        ));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.attributes
            .push(KeyValue::new(Key::from_static_str(field.name()), value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value.to_owned());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        self.text(field, error_chain(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.text(field, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(&'static str, Option<Box<Wrapped>>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn error_chain_joins_sources_once() {
        let err = Wrapped(
            "charge failed",
            Some(Box::new(Wrapped(
                "gateway timeout",
                Some(Box::new(Wrapped("connect", None))),
            ))),
        );
        assert_eq!(error_chain(&err), "charge failed: gateway timeout: connect");
        let repeats = Wrapped(
            "charge failed: gateway timeout",
            Some(Box::new(Wrapped("gateway timeout", None))),
        );
        assert_eq!(error_chain(&repeats), "charge failed: gateway timeout");
    }

    #[test]
    fn big_u64_becomes_text_small_stays_integer() {
        assert_eq!(u64_value(42), Value::I64(42));
        assert_eq!(
            u64_value(u64::MAX),
            Value::String(u64::MAX.to_string().into())
        );
    }
}
