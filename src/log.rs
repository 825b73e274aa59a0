//! Log lines that point to their trace: a `fmt` event format that adds the `trace_id` and
//! `span_id` of the span an event is in, as the recorder gave them.

use std::fmt;

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::fmt::format::Json;
use tracing_subscriber::fmt::format::{self, Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::context::SpanContext;
use crate::record::SpanData;

/// The format of a `fmt` layer whose lines carry the ids of their span.
pub(crate) enum WithTraceIds {
    Text { format: Format<Full>, ansi: bool },
    Json(Format<Json>),
}

/// `text` or `json`: the format of the log lines.
pub(crate) const TRACEWIRE_LOG_FORMAT: &str = "TRACEWIRE_LOG_FORMAT";

/// Whether [`TRACEWIRE_LOG_FORMAT`] asks for JSON lines. Unset, empty or `text` is text; any
/// other value is text too, with a warning naming the variable.
pub(crate) fn json_from_env() -> Result<bool, crate::env::EnvWarning> {
    let Ok(value) = std::env::var(TRACEWIRE_LOG_FORMAT) else {
        return Ok(false);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(true),
        "text" | "" => Ok(false),
        _ => Err(crate::env::EnvWarning::InvalidValue {
            variable: TRACEWIRE_LOG_FORMAT,
            value,
        }),
    }
}

impl WithTraceIds {
    /// `fmt`'s human-readable lines, then ` trace_id=… span_id=…`.
    pub(crate) fn text(ansi: bool) -> Self {
        WithTraceIds::Text {
            format: format::format().with_ansi(ansi),
            ansi,
        }
    }

    /// Whether the lines carry ANSI colours.
    pub(crate) fn ansi(&self) -> bool {
        matches!(self, WithTraceIds::Text { ansi: true, .. })
    }

    /// Whether the lines are JSON (and need their fields recorded as JSON).
    pub(crate) fn is_json(&self) -> bool {
        !matches!(self, WithTraceIds::Text { .. })
    }

    /// One JSON object per line, with `"trace_id"` and `"span_id"` members.
    pub(crate) fn json() -> Self {
        WithTraceIds::Json(format::format().json().with_ansi(false))
    }
}

/// The recorder's context of the span `event` is in, or of its nearest recorded ancestor.
fn context_of<S, N>(ctx: &FmtContext<'_, S, N>, event: &Event<'_>) -> Option<SpanContext>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    // `ctx` sees only the spans the log layer's filter lets through: under `RUST_LOG=warn`, a
    // warning inside an `info` request span would find no span. The current span's handle,
    // or the dispatcher for a parent given explicitly, reaches every span. (Inside a
    // dispatcher set for a scope rather than globally, `tracing` hands out no current span
    // here; `ctx` is asked then.)
    let found = if event.is_contextual() {
        crate::record::nearest_span_context(&tracing::Span::current())
    } else {
        event
            .parent()
            .and_then(crate::record::nearest_span_context_of)
    };
    if found.is_some() {
        return found;
    }
    let span = if event.is_contextual() {
        ctx.lookup_current()
    } else {
        event.parent().and_then(|id| ctx.span(id))
    }?;
    span.scope().find_map(|span| {
        span.extensions()
            .get::<SpanData>()
            .map(|data| data.record.span_context.clone())
    })
}

impl<S, N> FormatEvent<S, N> for WithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(cx) = context_of(ctx, event) else {
            return match self {
                WithTraceIds::Text { format, .. } => format.format_event(ctx, writer, event),
                WithTraceIds::Json(inner) => inner.format_event(ctx, writer, event),
            };
        };
        // The inner format ends its line; the ids go just before that end.
        let mut line = String::new();
        match self {
            WithTraceIds::Text { format, .. } => {
                format.format_event(ctx, Writer::new(&mut line), event)?;
                let body = line.trim_end_matches('\n');
                writeln!(
                    writer,
                    "{body} trace_id={} span_id={}",
                    cx.trace_id, cx.span_id
                )
            }
            WithTraceIds::Json(inner) => {
                inner.format_event(ctx, Writer::new(&mut line), event)?;
                let body = line.trim_end();
                match body.strip_suffix('}') {
                    Some(open) => writeln!(
                        writer,
                        "{open},\"trace_id\":\"{}\",\"span_id\":\"{}\"}}",
                        cx.trace_id, cx.span_id
                    ),
                    None => writeln!(writer, "{body}"),
                }
            }
        }
    }
}

/// A `fmt` layer under its per-layer filter, minus the calls on entering, exiting and closing
/// a span. `fmt` writes nothing then unless span events are asked for, which these setups
/// never do; but the filter would first look the span up in the registry on each of those
/// calls, several times per request, to find whether it let the span through.
pub(crate) struct NoSpanEvents<L>(pub(crate) L);

impl<S, L> tracing_subscriber::Layer<S> for NoSpanEvents<L>
where
    S: Subscriber,
    L: tracing_subscriber::Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing_core::Dispatch) {
        self.0.on_register_dispatch(subscriber)
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber)
    }
    fn register_callsite(
        &self,
        metadata: &'static tracing_core::Metadata<'static>,
    ) -> tracing_core::Interest {
        self.0.register_callsite(metadata)
    }
    fn enabled(&self, metadata: &tracing_core::Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.0.enabled(metadata, ctx)
    }
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx)
    }
    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        self.0.max_level_hint()
    }
    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(span, values, ctx)
    }
    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(span, follows, ctx)
    }
    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.0.event_enabled(event, ctx)
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.0.on_event(event, ctx)
    }
    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx)
    }
}
