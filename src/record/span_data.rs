//! Per-span state kept in the registry's extensions, and the field visitors that fill it.

use std::borrow::Cow;
use std::error::Error;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, OnceLock};

use tracing_core::field::{Field, Visit};

use crate::baggage::Baggage;
use crate::record::facts::RequestFacts;
use crate::record::pipeline::{RecordSlot, Shared};
use crate::record::timestamp;
use crate::semconv;
use crate::span::{Event, Key, KeyValue, SpanKind, SpanRecord, Status, Value};

/// A live span's record, and the request facts its attributes will be made of on the
/// reporter thread (see [`facts`](crate::record::facts)). Reads and writes of the record go
/// through `Deref`.
pub(crate) struct LiveRecord {
    pub(crate) record: SpanRecord,
    pub(crate) facts: Option<RequestFacts>,
    /// The span's attribute limit: for attributes recorded while it is live, and for the facts
    /// with them when it is reported.
    pub(crate) max_attributes: u32,
    /// The end time is set (the call ended before the `tracing` span closed). Otherwise it is
    /// taken at close, and a span kept open by a child ends with that child, as the registry
    /// closes it then.
    pub(crate) ended: bool,
    /// The start and end times, in nanoseconds since the Unix epoch (see
    /// [`timestamp::now_nanos`]); the record's are set from them when it is reported.
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

/// A span's place in the tree of recorded spans: what ties it to its recorded parent.
///
/// A span is handed to the pipeline when its `SpanData` is dropped, that is when the registry
/// clears a closed span, and not before all its recorded children have been handed over: a
/// span closed by its last child's close (its handle was dropped while a child still ran) is
/// cleared by the registry *before* that child's data is dropped, and reporters (the tail
/// sampler, the console) expect a trace's spans before its root. So each recorded child holds
/// its parent's [`Node`], and the node hands the parent's record over when the last holder
/// lets go. Handing spans over here rather than in `Layer::on_close` saves a registry lookup
/// and an extension lock per span.
pub(crate) struct Tree {
    /// The node of the recorded parent, held until this span is handed over.
    parent: Option<Arc<Node>>,
    /// The pipeline the span goes to, on spans without a recorded parent on the same
    /// pipeline; the others reach it through their parent.
    owner: Option<Arc<Shared>>,
    sampled: bool,
}

impl Tree {
    /// The tree of a new span under `parent` (recorded on this thread's subscriber, if any).
    pub(crate) fn new(sampled: bool, parent: Option<Arc<Node>>, shared: &Arc<Shared>) -> Self {
        // A parent on the same pipeline reaches it for this span: no count to take.
        let borrows = parent
            .as_ref()
            .is_some_and(|p| std::ptr::eq(p.tree.pipeline(), &**shared));
        Tree {
            parent,
            owner: (!borrows).then(|| shared.clone()),
            sampled,
        }
    }

    /// The pipeline: this span's, or its nearest owning ancestor's (which the chain of
    /// parents keeps alive).
    fn pipeline(&self) -> &Shared {
        let mut tree = self;
        loop {
            match (&tree.owner, &tree.parent) {
                (Some(owner), _) => return owner,
                (None, Some(parent)) => tree = &parent.tree,
                // Every root owns its pipeline (see `new`).
                (None, None) => unreachable!("a root span owns its pipeline"),
            }
        }
    }

    /// Hands `record` over. `by_child`: the last holder was a child, so a span whose handle
    /// went first ends now, after that child.
    fn hand_over(&self, mut record: RecordSlot, by_child: bool) {
        if let Some(live) =
            Option::as_mut(&mut record).filter(|live| by_child && self.sampled && !live.ended)
        {
            live.end = timestamp::now_nanos().max(live.end);
        }
        self.pipeline().finish(record, self.sampled);
    }

    /// Lets go of the parent: the parents whose last holder this was are handed over, in a
    /// loop rather than by recursive drops, which a deep chain of spans would overflow the
    /// stack with.
    fn release_parent(&mut self) {
        let mut parent = self.parent.take();
        while let Some(mut node) = parent.and_then(Arc::into_inner) {
            let record = node
                .record
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(record) = record {
                node.tree.hand_over(record, true);
            }
            parent = node.tree.parent.take();
            // `node` drops here with nothing left to hand over.
        }
    }
}

/// A span with recorded children: its tree, shared with them, and its record once its data
/// is dropped. Made only when a first child arrives, so leaf spans (most spans) need none.
pub(crate) struct Node {
    /// Put here by the span's `SpanData` as it goes; taken at hand-over.
    record: Mutex<Option<RecordSlot>>,
    tree: Tree,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(record) = self
            .record
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            self.tree.hand_over(record, false);
        }
        self.tree.release_parent();
    }
}

/// What the recorder knows of a live span. Sampled-out spans keep only the context, service
/// and baggage (for propagation); the rest of `record` stays empty.
pub(crate) struct SpanData {
    pub(crate) record: LiveBox,
    /// The span's tree until a first child arrives; then it moves into the node the
    /// children share.
    tree: Mutex<Option<Tree>>,
    node: OnceLock<Arc<Node>>,
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
    /// Attributes kept per event and per link.
    pub(crate) event_attributes: u32,
    pub(crate) link_attributes: u32,
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

/// Applies the per-link limits: attributes beyond the count dropped and counted, long values
/// cut.
fn limit_link(link: &mut crate::span::Link, limits: &Limits) {
    let max = limits.link_attributes as usize;
    if link.attributes.len() > max {
        link.dropped_attributes_count += (link.attributes.len() - max) as u32;
        link.attributes.truncate(max);
    }
    for kv in &mut link.attributes {
        cap_value(&mut kv.value, limits.value_len);
    }
}

/// Cuts the text in `value` (a string, or each string of an array) to `max` bytes.
pub(crate) fn cap_value(value: &mut Value, max: usize) {
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
        let Some(mut record) = self.record.0.take() else {
            return;
        };
        if let Some(live) = Option::as_mut(&mut record).filter(|live| self.sampled && !live.ended) {
            // Not before the start, should the wall clock step back in between.
            live.end = timestamp::now_nanos().max(live.start);
        }
        let tree = self
            .tree
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match (tree, self.node.take()) {
            // A leaf: handed over now, then its parent is let go of.
            (Some(mut tree), _) => {
                tree.hand_over(record, false);
                tree.release_parent();
            }
            // The node hands the record over when its last holder, this data or a child,
            // lets go.
            (None, Some(node)) => {
                *node.record.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
            }
            (None, None) => unreachable!("a span's tree moves only into its node"),
        }
    }
}

/// A live span's record, owned by its `SpanData` until the data is dropped.
pub(crate) struct LiveBox(Option<RecordSlot>);

const TAKEN: &str = "a span's record is taken only when its data is dropped";

impl std::ops::Deref for LiveBox {
    type Target = LiveRecord;

    fn deref(&self) -> &LiveRecord {
        // Taken only by `SpanData::drop`, after which nothing reaches it.
        self.0.as_deref().and_then(Option::as_ref).expect(TAKEN)
    }
}

impl std::ops::DerefMut for LiveBox {
    fn deref_mut(&mut self) -> &mut LiveRecord {
        self.0.as_deref_mut().and_then(Option::as_mut).expect(TAKEN)
    }
}

impl SpanData {
    /// A span's data, for the record in `record` (`Some`).
    pub(crate) fn new(
        record: RecordSlot,
        tree: Tree,
        baggage: Baggage,
        sampled: bool,
        limits: Limits,
    ) -> Self {
        SpanData {
            record: LiveBox(Some(record)),
            tree: Mutex::new(Some(tree)),
            node: OnceLock::new(),
            baggage,
            sampled,
            status_explicit: false,
            pending_status_message: None,
            limits,
        }
    }

    /// This span's node, for a new recorded child: this span is not handed over before the
    /// child is. Made at the first child, with the span's tree.
    pub(crate) fn adopt_child(&self) -> Arc<Node> {
        self.node
            .get_or_init(|| {
                let tree = self.tree.lock().unwrap_or_else(|e| e.into_inner()).take();
                Arc::new(Node {
                    record: Mutex::new(None),
                    // Present: it moves out only here, once, or when the data is dropped.
                    tree: tree.expect("a span's tree moves only into its node"),
                })
            })
            .clone()
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
        self.record.end = timestamp::now_nanos().max(self.record.start);
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
        for link in &mut record.links {
            limit_link(link, &self.limits);
        }
    }

    /// Adds a link, unless the span has as many as its limit allows.
    pub(crate) fn add_link(&mut self, mut link: crate::span::Link) {
        if self.record.links.len() < self.limits.links as usize {
            limit_link(&mut link, &self.limits);
            self.record.links.push(link);
        } else {
            self.record.dropped_links_count += 1;
        }
    }

    pub(crate) fn add_event(&mut self, mut event: Event) {
        if self.record.events.len() < self.limits.events as usize {
            // An owned name is a log line, which may hold what a caller sent (a static one is
            // the code's: `exception`, a callsite's name).
            if let Cow::Owned(name) = &mut event.name {
                if name.len() > self.limits.value_len {
                    name.truncate(truncated(name, self.limits.value_len).len());
                }
            }
            let max = self.limits.event_attributes as usize;
            if event.attributes.len() > max {
                event.dropped_attributes_count += (event.attributes.len() - max) as u32;
                event.attributes.truncate(max);
            }
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

    /// Marks the span failed by an outcome that its attributes name (an HTTP or gRPC status
    /// code), which the conventions say not to repeat as the description: an error already
    /// there (one the handler logged, or set) keeps its description; else there is none.
    pub(crate) fn fail(&mut self) {
        match self.record.status {
            Status::Ok => {}
            Status::Error { .. } => self.status_explicit = true,
            Status::Unset => self.set_status(Status::error("")),
        }
    }

    /// A status implied by an error event or field: only fills an unset status.
    fn set_implied_error(&mut self, message: &str) {
        if !self.status_explicit && matches!(self.record.status, Status::Unset) {
            self.record.status =
                Status::error(truncated(message, self.limits.value_len).to_owned());
        }
    }

    /// The status the span's events implied goes (a status set explicitly stays): the
    /// semantic conventions leave it unset for this span's outcome, whatever was logged.
    pub(crate) fn clear_implied_error(&mut self) {
        if !self.status_explicit {
            self.record.status = Status::Unset;
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
            timestamp::now(),
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

/// A 128-bit integer: an `i64` when it fits, else text.
fn int_value<T: TryInto<i64> + ToString + Copy>(value: T) -> Value {
    match value.try_into() {
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

/// The name and kind a span declares in its `otel.name` and `otel.kind` fields, read before
/// the sampler decides: they are the span's name and kind from its creation on.
#[derive(Default)]
pub(crate) struct DeclaredNameKind {
    pub(crate) name: Option<String>,
    pub(crate) kind: Option<SpanKind>,
}

impl DeclaredNameKind {
    /// Whether spans of `metadata` declare either field (checked before visiting values).
    pub(crate) fn declared_in(metadata: &tracing_core::Metadata<'_>) -> bool {
        let fields = metadata.fields();
        fields.field(semconv::OTEL_NAME).is_some() || fields.field(semconv::OTEL_KIND).is_some()
    }

    fn text(&mut self, field: &Field, value: Cow<'_, str>) {
        match field.name() {
            semconv::OTEL_NAME => self.name = Some(value.into_owned()),
            semconv::OTEL_KIND => self.kind = parse_kind(&value).or(self.kind.take()),
            _ => {}
        }
    }
}

impl Visit for DeclaredNameKind {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, Cow::Borrowed(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if matches!(field.name(), semconv::OTEL_NAME | semconv::OTEL_KIND) {
            self.text(field, Cow::Owned(format!("{value:?}")));
        }
    }
}

/// Records a span's fields (at creation and on `Span::record`) as attributes, handling the
/// `otel.*` and `error` fields.
pub(crate) struct SpanVisitor<'a>(pub(crate) &'a mut SpanData);

impl SpanVisitor<'_> {
    fn text(&mut self, field: &Field, value: Cow<'_, str>) {
        let data = &mut *self.0;
        match field.name() {
            // Names built from a request (`otel.name = %format!("{method} {path}")`) are
            // bounded like any attribute value.
            semconv::OTEL_NAME => {
                let name = capped_string(value.into_owned(), data.limits.value_len);
                data.record.name = Cow::Owned(name);
            }
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
        self.0.set_field(field, int_value(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.0.set_field(field, int_value(value));
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

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.attributes.push(KeyValue::new(
            Key::from_static_str(field.name()),
            int_value(value),
        ));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.attributes.push(KeyValue::new(
            Key::from_static_str(field.name()),
            int_value(value),
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
