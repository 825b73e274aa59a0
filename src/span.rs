//! Plain span data, as the recorder hands it to reporters.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

pub use opentelemetry::trace::{Event, SpanKind, Status};
pub use opentelemetry::{InstrumentationScope, Key, KeyValue, StringValue, Value};

use crate::context::{SpanContext, SpanId, TraceId};

/// A finished span: everything a reporter needs, as plain data.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanRecord {
    /// This span's ids, flags and trace state.
    pub span_context: SpanContext,
    /// The parent span, or [`SpanId::INVALID`] for a root.
    pub parent_span_id: SpanId,
    /// The parent lives in another process.
    pub parent_is_remote: bool,
    /// The operation name.
    pub name: Cow<'static, str>,
    /// Server, client, producer, consumer or internal.
    pub kind: SpanKind,
    /// Wall-clock start.
    pub start_time: SystemTime,
    /// Wall-clock end.
    pub end_time: SystemTime,
    /// Typed attributes, each key once.
    pub attributes: Vec<KeyValue>,
    /// Attributes left out because the span reached its attribute limit.
    pub dropped_attributes_count: u32,
    /// Timed events, in order.
    pub events: Vec<Event>,
    /// Events left out because the span reached its event limit.
    pub dropped_events_count: u32,
    /// Links to other spans.
    pub links: Vec<Link>,
    /// Links left out because the span reached its link limit.
    pub dropped_links_count: u32,
    /// Unset, Ok, or Error with a message.
    pub status: Status,
    /// The service that ran this span.
    pub service_name: Arc<str>,
    /// What produced the span: the `tracing` target, or tracewire's layers.
    pub scope: InstrumentationScope,
}

#[cfg(test)]
impl SpanRecord {
    /// A sampled internal span named `s{id}` of service `svc`, for unit tests: span `id` of
    /// trace `trace` under `parent` (0 for a root), at the epoch, with nothing recorded.
    pub(crate) fn for_test(trace: u128, id: u64, parent: u64) -> SpanRecord {
        use crate::context::{TraceFlags, TraceState};
        SpanRecord {
            span_context: SpanContext::new(
                TraceId::from(trace),
                SpanId::from(id),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::from(parent),
            parent_is_remote: false,
            name: format!("s{id}").into(),
            kind: SpanKind::Internal,
            start_time: SystemTime::UNIX_EPOCH,
            end_time: SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Vec::new(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status: Status::Unset,
            service_name: Arc::from("svc"),
            scope: InstrumentationScope::builder("t").build(),
        }
    }
}

impl SpanRecord {
    /// The trace this span belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.span_context.trace_id
    }

    /// This span's id.
    pub fn span_id(&self) -> SpanId {
        self.span_context.span_id
    }

    /// The span has no parent in this trace.
    pub fn is_root(&self) -> bool {
        self.parent_span_id == SpanId::INVALID
    }

    /// The value of attribute `key`.
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    /// The first event named `name`.
    pub fn event(&self, name: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.name == name)
    }

    /// `end_time - start_time`, zero if the clock stepped back.
    pub fn duration(&self) -> std::time::Duration {
        self.end_time
            .duration_since(self.start_time)
            .unwrap_or_default()
    }
}

/// A link from one span to another, in this trace or another.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    /// The linked span.
    pub span_context: SpanContext,
    /// What the link means.
    pub attributes: Vec<KeyValue>,
    /// Attributes left out by the per-link attribute limit.
    pub dropped_attributes_count: u32,
}

impl Link {
    /// A link to `span_context` with no attributes.
    pub fn new(span_context: SpanContext) -> Self {
        Link {
            span_context,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
        }
    }
}
