//! The `tracing_subscriber::Layer` that turns `tracing` spans into [`SpanRecord`]s.

use std::any::TypeId;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event as TracingEvent, Level, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, SpanRef};
use tracing_subscriber::Layer;

use crate::baggage::Baggage;
use crate::context::{SpanContext, SpanId, TraceState, FLAG_RANDOM};
use crate::record::ids::{new_span_id, new_trace_id};
use crate::record::pipeline::Shared;
use crate::record::span_data::{
    DeclaredNameKind, EventVisitor, Limits, LiveRecord, Node, SpanData, SpanVisitor, Tree,
};
use crate::record::start::{self, SpanStart};
use crate::record::timestamp;
use crate::record::RecorderHandle;
use crate::sampler::Sampler;
use crate::semconv;
use crate::span::{Event, InstrumentationScope, KeyValue, Link, SpanKind, SpanRecord, Status};

/// `target` belongs to a library the recorder leaves out unless asked: its crate (the part
/// before the first `::`) is one of those [`record_internals`] lists.
///
/// [`record_internals`]: crate::record::RecorderBuilder::record_internals
pub(crate) fn is_internal_target(target: &str) -> bool {
    // The crate is the part before the first `:` (a crate name holds none).
    let end = target
        .bytes()
        .position(|b| b == b':')
        .unwrap_or(target.len());
    let krate = &target[..end];
    // The HTTP, gRPC and export stacks underneath the layers, whose spans and events would
    // otherwise drown the application's.
    matches!(
        krate,
        "h2" | "hyper"
            | "hyper_util"
            | "mio"
            | "opentelemetry"
            | "opentelemetry_otlp"
            | "opentelemetry_sdk"
            // OpenTelemetry's internal logs (`otel_debug!` and the like) are under the
            // package name, hyphens and all.
            | "opentelemetry-http"
            | "opentelemetry-otlp"
            | "reqwest"
            | "rustls"
            | "tokio"
            | "tonic"
            | "tower"
            | "want"
    )
}

/// Settings shared by every span of one recorder.
pub(crate) struct RecorderConfig {
    /// The pipeline, for recycled attribute vectors.
    pub(crate) shared: Arc<Shared>,
    pub(crate) record_internals: bool,
    /// The most verbose level recorded (see [`RecordLayer::with_max_level`]).
    pub(crate) max_level: LevelFilter,
    pub(crate) service_name: Arc<str>,
    pub(crate) sampler: Box<dyn Sampler>,
    pub(crate) max_attributes: u32,
    pub(crate) limits: Limits,
}

impl RecorderConfig {
    /// The context of a new span under `parent` (local or remote), or of a new root: ids,
    /// flags with the sampler's decision, and the parent's trace state.
    #[inline]
    pub(crate) fn new_context(
        &self,
        parent: Option<&SpanContext>,
        name: &str,
        kind: &SpanKind,
    ) -> SpanContext {
        let trace_id = parent.map_or_else(new_trace_id, |p| p.trace_id);
        let sampled = self.sampler.should_sample(parent, trace_id, name, kind);
        let (trace_flags, trace_state) = match parent {
            Some(p) => (p.trace_flags.with_sampled(sampled), p.trace_state.clone()),
            // Every byte of a new trace id is random, so the Level 2 random flag holds.
            None => (FLAG_RANDOM.with_sampled(sampled), TraceState::NONE),
        };
        SpanContext {
            trace_id,
            span_id: new_span_id(),
            trace_flags,
            is_remote: false,
            trace_state,
        }
    }
}

/// Decides, with the sampler of the recorder installed in the current dispatcher, the
/// context of a span about to start under `parent` (a remote parent) or as a new root;
/// `None` when no recorder is installed. `name` is asked for only when the sampler looks at
/// names. Layers use it to skip creating a `tracing` span for a request that will not be
/// recorded.
///
/// `wants_vec` is asked, only for a sampled span, whether the caller will record attributes
/// directly (a recycled vector is then handed out for them).
pub(crate) fn decide<'n>(
    parent: Option<&SpanContext>,
    kind: &SpanKind,
    name: impl FnOnce() -> Cow<'n, str>,
    wants_vec: impl FnOnce() -> bool,
) -> Option<Decision> {
    let mut name = Some(name);
    let mut wants_vec = Some(wants_vec);
    tracing::dispatcher::get_default(|dispatch| {
        decide_in(dispatch, parent, kind, &mut name, &mut wants_vec)
    })
}

/// [`current_parent`], and [`decide`] for a span started under it, from one visit to the
/// current dispatcher.
pub(crate) fn decide_under_current<'n>(
    kind: &SpanKind,
    name: impl FnOnce() -> Cow<'n, str>,
    wants_vec: impl FnOnce() -> bool,
) -> (Option<(SpanContext, Baggage)>, Option<Decision>) {
    let mut name = Some(name);
    let mut wants_vec = Some(wants_vec);
    tracing::dispatcher::get_default(|dispatch| {
        let parent = local_parent(dispatch).or_else(ambient_parent);
        let parent_cx = parent.as_ref().map(|(cx, _)| cx);
        let decision = decide_in(dispatch, parent_cx, kind, &mut name, &mut wants_vec);
        (parent, decision)
    })
}

/// [`decide`] with the dispatcher at hand.
fn decide_in<'n>(
    dispatch: &Dispatch,
    parent: Option<&SpanContext>,
    kind: &SpanKind,
    name: &mut Option<impl FnOnce() -> Cow<'n, str>>,
    wants_vec: &mut Option<impl FnOnce() -> bool>,
) -> Option<Decision> {
    let config = dispatch.downcast_ref::<RecorderConfig>()?;
    let context = if config.sampler.uses_span_name() {
        let name = name.take().map_or(Cow::Borrowed(""), |name| name());
        config.new_context(parent, &name, kind)
    } else {
        config.new_context(parent, "", kind)
    };
    let attributes = if context.is_sampled() && wants_vec.take().is_some_and(|w| w()) {
        config.shared.attribute_vec()
    } else {
        Vec::new()
    };
    Some(Decision {
        context,
        attributes,
    })
}

/// What [`decide`] decided: the span's context and, when it is sampled and the caller wants
/// one, an (empty, possibly recycled) vector for its attributes.
pub(crate) struct Decision {
    pub(crate) context: SpanContext,
    pub(crate) attributes: Vec<KeyValue>,
}

/// The recorder: a [`Layer`] giving every `tracing` span W3C ids and sending finished,
/// sampled spans to the reporters. Build it with [`Recorder::builder`](crate::record::Recorder::builder).
pub struct RecordLayer {
    config: Arc<RecorderConfig>,
    shared: Arc<Shared>,
    with_data: Option<WithSpanData>,
}

impl RecordLayer {
    pub(crate) fn new(config: RecorderConfig, shared: Arc<Shared>) -> Self {
        RecordLayer {
            config: Arc::new(config),
            shared,
            with_data: None,
        }
    }

    /// A handle for flushing the reporters and reading the pipeline's counters.
    pub fn handle(&self) -> RecorderHandle {
        RecorderHandle {
            shared: self.shared.clone(),
        }
    }

    /// The default service name of this recorder.
    pub fn service_name(&self) -> &str {
        &self.config.service_name
    }
}

impl RecordLayer {
    /// Records only spans and events at `level` or more severe, checked by the recorder
    /// itself. A per-layer filter (`with_filter`) does the same for a lone level, but it
    /// looks each span up in the registry again whenever the span is entered, exited or
    /// closed; this is one comparison when a span or event is created.
    /// Gives the layer back unchanged, as `Err`, once its settings are shared (it is set up
    /// before it is installed).
    #[cfg(any(feature = "console", test))] // `dev::init` is the one caller.
    pub(crate) fn with_max_level(mut self, level: LevelFilter) -> Result<Self, Self> {
        match Arc::get_mut(&mut self.config) {
            Some(config) => {
                config.max_level = level;
                Ok(self)
            }
            None => Err(self),
        }
    }

    /// Spans and events of library internals are left out (unless configured otherwise),
    /// and so are those more verbose than the recorder's level; their children attach to
    /// the nearest recorded ancestor.
    #[inline]
    fn skips(&self, metadata: &Metadata<'_>) -> bool {
        let target = metadata.target();
        *metadata.level() > self.config.max_level
            || (!self.config.record_internals && is_internal_target(target))
            // The pipeline's own drop warnings, whatever the settings: recorded, they would
            // feed the queue they report on.
            || target == crate::report::DROP_LOG_TARGET
    }
}

impl fmt::Debug for RecordLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordLayer")
            .field("service_name", &self.config.service_name)
            .field("sampler", &self.config.sampler)
            .finish()
    }
}

/// Finds a span's [`SpanData`] from a `Dispatch`, for code that holds a `tracing::Span` but
/// not the subscriber type. The layer hands this out through `downcast_raw`.
#[derive(Clone, Copy)]
pub(crate) struct WithSpanData {
    exact: SpanDataFn,
    nearest: SpanDataFn,
}

type SpanDataFn = fn(&Dispatch, &Id, &mut dyn FnMut(&mut SpanData));

impl WithSpanData {
    /// `f` on the data of span `id`.
    pub(crate) fn with(&self, dispatch: &Dispatch, id: &Id, f: &mut dyn FnMut(&mut SpanData)) {
        (self.exact)(dispatch, id, f)
    }

    /// `f` on the data of span `id` or, when the recorder skipped it, of its nearest recorded
    /// ancestor: the span a child of `id` would hang under.
    pub(crate) fn nearest(&self, dispatch: &Dispatch, id: &Id, f: &mut dyn FnMut(&mut SpanData)) {
        (self.nearest)(dispatch, id, f)
    }
}

fn span_data_of<S>(dispatch: &Dispatch, id: &Id, f: &mut dyn FnMut(&mut SpanData))
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(subscriber) = dispatch.downcast_ref::<S>() else {
        return;
    };
    let Some(span) = subscriber.span(id) else {
        return;
    };
    let mut extensions = span.extensions_mut();
    if let Some(data) = extensions.get_mut::<SpanData>() {
        f(data);
    }
}

fn nearest_span_data_of<S>(dispatch: &Dispatch, id: &Id, f: &mut dyn FnMut(&mut SpanData))
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(subscriber) = dispatch.downcast_ref::<S>() else {
        return;
    };
    // Walked by `parent` rather than `scope`: the scope would look `id` up a second time.
    let mut next = subscriber.span(id);
    while let Some(span) = next {
        if let Some(data) = span.extensions_mut().get_mut::<SpanData>() {
            f(data);
            return;
        }
        next = span.parent();
    }
}

impl<S> Layer<S> for RecordLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    /// Lets `tracing` turn off, at their call sites, spans and events more verbose than any
    /// layer records. Without a level of its own the recorder gives no hint, so that a global
    /// filter beside it still sets the static level.
    fn max_level_hint(&self) -> Option<LevelFilter> {
        (self.config.max_level != LevelFilter::TRACE).then_some(self.config.max_level)
    }

    fn on_layer(&mut self, _subscriber: &mut S) {
        self.with_data = Some(WithSpanData {
            exact: span_data_of::<S>,
            nearest: nearest_span_data_of::<S>,
        });
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.skips(attrs.metadata()) {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        match start::take() {
            // Most spans have no seed: with the defaults known here, their checks fold away.
            None => self.start_span(attrs, &span, SpanStart::default()),
            Some(seed) => self.start_span(attrs, &span, seed),
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(data) = extensions.get_mut::<SpanData>() {
            if data.sampled {
                values.record(&mut SpanVisitor(data));
            }
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let Some(follows) = ctx.span(follows) else {
            return;
        };
        let Some(linked) = follows
            .extensions()
            .get::<SpanData>()
            .map(|d| d.record.span_context.clone())
        else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(data) = extensions.get_mut::<SpanData>() {
            if data.sampled {
                data.add_link(Link::new(linked));
            }
        }
    }

    fn on_event(&self, event: &TracingEvent<'_>, ctx: Context<'_, S>) {
        if self.skips(event.metadata()) {
            return;
        }
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        // The event belongs to the nearest span the recorder tracks.
        let Some(span) = span
            .scope()
            .find(|s| s.extensions().get::<SpanData>().is_some())
        else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let Some(data) = extensions.get_mut::<SpanData>() else {
            return;
        };
        if !data.sampled {
            return;
        }
        let mut fields = EventVisitor::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        if *metadata.level() == Level::ERROR || fields.error.is_some() {
            // An error: an `exception` event whose message is the error (or the log line),
            // keeping the log line and other fields as attributes.
            let message = match (fields.error, &fields.message) {
                (Some(error), _) => error,
                (None, Some(message)) => message.clone(),
                (None, None) => metadata.name().to_owned(),
            };
            let mut extra = fields.attributes;
            if let Some(line) = fields.message {
                if line != message {
                    extra.push(KeyValue::new(semconv::MESSAGE_FIELD, line));
                }
            }
            extra.push(KeyValue::new("level", metadata.level().as_str()));
            data.record_exception(None, message, extra);
            return;
        }
        let name: Cow<'static, str> = match fields.message {
            Some(message) => Cow::Owned(message),
            None => Cow::Borrowed(metadata.name()),
        };
        let mut attributes = fields.attributes;
        attributes.push(KeyValue::new("level", metadata.level().as_str()));
        data.add_event(Event::new(name, timestamp::now(), attributes, 0));
    }

    /// # Safety
    ///
    /// The caller casts the pointer back to the type whose `TypeId` it passed, so each arm
    /// must return a pointer to a live value of exactly that type. It does: `self` for
    /// `RecordLayer`, the `RecorderConfig` inside `self.config` (an `Arc` this layer holds)
    /// for `RecorderConfig`, and the one in `self.with_data` (if set) for `WithSpanData`; any
    /// other id gets `None`. All three live as long as the layer, which the caller reached
    /// through a `Dispatch` that keeps it in place for as long as the caller holds it.
    /// `.ci/sanitize` runs the recorder's tests, all of which come through here, under
    /// AddressSanitizer.
    #[allow(unsafe_code)] // tracing-subscriber declares `Layer::downcast_raw` unsafe.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        match id {
            id if id == TypeId::of::<Self>() => Some(self as *const Self as *const ()),
            id if id == TypeId::of::<RecorderConfig>() => {
                Some(&*self.config as *const RecorderConfig as *const ())
            }
            id if id == TypeId::of::<WithSpanData>() => self
                .with_data
                .as_ref()
                .map(|w| w as *const WithSpanData as *const ()),
            _ => None,
        }
    }
}

impl RecordLayer {
    /// `on_new_span` for a span the recorder tracks, with its seed (or the defaults).
    #[inline(always)]
    fn start_span<S>(&self, attrs: &Attributes<'_>, span: &SpanRef<'_, S>, seed: SpanStart)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        // Into locals, not kept as a struct: most spans have no seed, and the defaults then
        // cost nothing.
        let SpanStart {
            remote_parent,
            mut baggage,
            links,
            service_name,
            kind,
            name,
            attributes,
            new_root,
            decided,
            skip_fields,
            facts,
        } = seed;
        let metadata = attrs.metadata();

        // The parent: a remote one handed in at creation, else the local one (explicit or
        // contextual, as the registry resolved it), else none. Written in place: these are
        // moved around on every span.
        let mut parent_is_remote = remote_parent.is_some();
        let mut parent = remote_parent;
        let mut inherited_service = None;
        let mut inherited_baggage = Baggage::new();
        let mut adopted: Option<Arc<Node>> = None;
        if parent.is_none() && !new_root {
            // The nearest ancestor the recorder tracks (skipped internals have no data).
            let mut ancestor = span.parent();
            while let Some(a) = ancestor {
                if let Some(p) = a.extensions().get::<SpanData>() {
                    parent = Some(p.record.span_context.clone());
                    inherited_service = Some(p.record.service_name.clone());
                    inherited_baggage = p.baggage.clone();
                    adopted = Some(p.adopt_child());
                    break;
                }
                ancestor = a.parent();
            }
            // A root span created while a request without a recorded span of its own is
            // polled (filtered, say) continues that request's remote context.
            if parent.is_none() {
                if let Some(ambient) = start::ambient() {
                    parent_is_remote = ambient.context.is_some();
                    parent = ambient.context;
                    if baggage.is_none() {
                        baggage = Some(ambient.baggage);
                    }
                }
            }
        }

        let kind = kind.unwrap_or(SpanKind::Internal);
        let name: Cow<'static, str> = name.unwrap_or(Cow::Borrowed(metadata.name()));
        let span_context = match decided {
            // The layer that seeded the span already decided, with this recorder's sampler.
            Some(decided) => decided,
            // `otel.name` and `otel.kind` fields name the span from its creation on: a
            // sampler that looks at names and kinds sees them (the default one does not,
            // and then nothing is looked up).
            None if !skip_fields
                && self.config.sampler.uses_span_name()
                && DeclaredNameKind::declared_in(metadata) =>
            {
                let mut declared = DeclaredNameKind::default();
                attrs.record(&mut declared);
                self.config.new_context(
                    parent.as_ref(),
                    declared.name.as_deref().unwrap_or(&name),
                    declared.kind.as_ref().unwrap_or(&kind),
                )
            }
            None => self.config.new_context(parent.as_ref(), &name, &kind),
        };
        let sampled = span_context.is_sampled();
        let parent_span_id = parent.as_ref().map_or(SpanId::INVALID, |p| p.span_id);
        let now = if sampled { timestamp::now_nanos() } else { 0 };
        let seeded_attributes = !attributes.is_empty();
        let seeded_links = !links.is_empty();
        let wants_vec =
            sampled && attributes.capacity() == 0 && !skip_fields && !metadata.fields().is_empty();
        let (mut record, recycled) = self.shared.record_slot(wants_vec);
        *record = Some(LiveRecord {
            record: SpanRecord {
                span_context,
                parent_span_id,
                parent_is_remote,
                name,
                kind,
                // Set from `start` and `end` when reported.
                start_time: SystemTime::UNIX_EPOCH,
                end_time: SystemTime::UNIX_EPOCH,
                attributes: match recycled {
                    Some(recycled) => {
                        // Only asked for when the seed's vector has no capacity:
                        // nothing to free, so skip its drop call.
                        debug_assert_eq!(attributes.capacity(), 0);
                        std::mem::forget(attributes);
                        recycled
                    }
                    None => attributes,
                },
                dropped_attributes_count: 0,
                events: Vec::new(),
                dropped_events_count: 0,
                links,
                dropped_links_count: 0,
                status: Status::Unset,
                service_name: service_name
                    .or(inherited_service)
                    .unwrap_or_else(|| self.config.service_name.clone()),
                scope: InstrumentationScope::builder(metadata.target()).build(),
            },
            // Set below, only when there are some: most spans have none, and writing
            // the variable here would copy all of its bytes.
            facts: None,
            max_attributes: self.config.max_attributes,
            ended: false,
            start: now,
            end: now,
            // A seed's attributes may hold text.
            plain_attributes: !seeded_attributes,
        });
        if let (Some(facts), Some(live)) = (facts, Option::as_mut(&mut record)) {
            live.facts = Some(facts);
        }
        let mut data = SpanData::new(
            record,
            Tree::new(sampled, adopted, &self.shared),
            baggage.unwrap_or(inherited_baggage),
            sampled,
            self.config.limits,
        );
        if seeded_attributes || seeded_links {
            data.enforce_seed_limits();
        }
        if sampled && !skip_fields {
            attrs.record(&mut SpanVisitor(&mut data));
        }
        span.extensions_mut().insert(data);
    }
}

/// Runs `f` on the recorder's data for `span`, if a recorder tracks it.
pub(crate) fn with_span_data<R>(
    span: &tracing::Span,
    f: impl FnOnce(&mut SpanData) -> R,
) -> Option<R> {
    let mut f = Some(f);
    let mut out = None;
    span.with_subscriber(|(id, dispatch)| {
        if let Some(get) = dispatch.downcast_ref::<WithSpanData>() {
            get.with(dispatch, id, &mut |data| {
                if let Some(f) = f.take() {
                    out = Some(f(data));
                }
            });
        }
    });
    out
}

/// The context of `span`, or of its nearest recorded ancestor (the recorder skips some
/// spans). Looked up through the span's own subscriber, which sees every span, whatever a
/// per-layer filter lets a layer see.
#[cfg(feature = "console")] // For the `fmt` log lines of `dev::init`.
pub(crate) fn nearest_span_context(span: &tracing::Span) -> Option<SpanContext> {
    let mut out = None;
    span.with_subscriber(|(id, dispatch)| {
        if let Some(get) = dispatch.downcast_ref::<WithSpanData>() {
            get.nearest(dispatch, id, &mut |data| {
                out = Some(data.record.span_context.clone());
            });
        }
    });
    out
}

/// The context of the recorded span `id`, or of its nearest recorded ancestor, looked up in
/// the current dispatcher, which sees every span (see [`nearest_span_context`]).
#[cfg(feature = "console")] // For the `fmt` log lines of events given their parent.
pub(crate) fn nearest_span_context_of(id: &Id) -> Option<SpanContext> {
    tracing::dispatcher::get_default(|dispatch| {
        let get = dispatch.downcast_ref::<WithSpanData>()?;
        let mut out = None;
        get.nearest(dispatch, id, &mut |data| {
            out = Some(data.record.span_context.clone());
        });
        out
    })
}

/// The context and baggage a span started here would inherit: the current span's or, when
/// the recorder skipped it, its nearest recorded ancestor's; else the ambient context of a
/// request without a recorded span.
pub(crate) fn current_parent() -> Option<(SpanContext, Baggage)> {
    tracing::dispatcher::get_default(local_parent).or_else(ambient_parent)
}

/// The recorded span a span started here would hang under, in `dispatch`.
fn local_parent(dispatch: &Dispatch) -> Option<(SpanContext, Baggage)> {
    let current = dispatch.current_span();
    let id = current.id()?;
    let with = dispatch.downcast_ref::<WithSpanData>()?;
    let mut found = None;
    with.nearest(dispatch, id, &mut |d| {
        found = Some((d.record.span_context.clone(), d.baggage.clone()));
    });
    found
}

/// The remote context of a request without a recorded span, if one is being served here.
fn ambient_parent() -> Option<(SpanContext, Baggage)> {
    start::ambient().and_then(|a| Some((a.context?, a.baggage)))
}

#[cfg(test)]
mod tests {
    use super::is_internal_target;
    use crate::record::Recorder;
    use tracing_subscriber::layer::SubscriberExt;

    /// The recorder's level reaches `tracing`'s static level; without one, a global filter
    /// beside the recorder still sets it.
    #[test]
    fn the_level_hint_is_the_recorders_own_or_none() {
        use tracing_core::Subscriber;
        use tracing_subscriber::filter::LevelFilter;
        let (layer, _guard) = Recorder::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(LevelFilter::INFO)
            .with(layer);
        assert_eq!(subscriber.max_level_hint(), Some(LevelFilter::INFO));
        let (layer, _guard) = Recorder::builder().build();
        let Ok(layer) = layer.with_max_level(LevelFilter::WARN) else {
            panic!("a new layer's settings are its own");
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        assert_eq!(subscriber.max_level_hint(), Some(LevelFilter::WARN));
    }

    /// Spans whose fields are all numbers and bools hand their attribute vectors back
    /// empty (the worker empties them: nothing to free); a text field leaves it full, for
    /// the recording thread to free what it allocated.
    #[test]
    fn only_text_attributes_leave_vectors_to_the_recording_thread() {
        let spans = crate::report::InMemoryReporter::new();
        let (layer, guard) = Recorder::builder().reporter(spans.clone()).build();
        let shared = layer.shared.clone();
        // One span at a time, and the pool emptied after each: otherwise a vector handed
        // back early (the worker may run at any moment) is reused by the next span.
        let returned = |make: &dyn Fn()| {
            make();
            guard.flush().expect("flush");
            shared.pooled_vec_lengths()
        };
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let numbers = returned(&|| {
                tracing::info_span!("numbers", n = 7u64, ok = true, ratio = 0.5, delta = -3i64)
                    .in_scope(|| {})
            });
            let text =
                returned(&|| tracing::info_span!("text", n = 7u64, who = "ana").in_scope(|| {}));
            let big = returned(&|| tracing::info_span!("big", n = u64::MAX).in_scope(|| {}));
            assert_eq!(numbers, [0], "numbers come back empty");
            assert_eq!(text, [2], "text comes back full");
            assert_eq!(big, [1], "a u64 beyond i64 is text: full");
        });
        assert_eq!(spans.spans().len(), 3);
    }

    #[test]
    fn internal_targets_are_whole_crate_names() {
        for target in [
            "hyper",
            "hyper::proto::h1",
            "h2::codec",
            "tower::buffer",
            "tokio",
        ] {
            assert!(is_internal_target(target), "{target}");
        }
        for target in [
            "opentelemetry_sdk::trace",
            "want",
            "mio::poll",
            "reqwest::connect",
            "hyper_util::client::legacy",
            "rustls",
            "opentelemetry_otlp::exporter",
            "opentelemetry-otlp",
            "opentelemetry-http",
            "tonic::transport",
        ] {
            assert!(is_internal_target(target), "{target}");
        }
        // Crates whose names only start like an internal one, and the application's own.
        for target in [
            "tower_http::trace",
            "hyperion",
            "tokio_util",
            "tracewire::server",
            "h2c",
            "mi",
            "mio_extras",
            "want2",
            "opentelemetry_contrib",
        ] {
            assert!(!is_internal_target(target), "{target}");
        }
        for target in ["checkout", "my_app::handlers", "", "::odd"] {
            assert!(!is_internal_target(target), "{target}");
        }
    }
}
