//! Giving a span its parent, links and attributes at creation.
//!
//! `tracing` has no way to pass a remote parent into `span!`, and a parent set after a span
//! started cannot fix its children or sampling decision (the pitfall of
//! tracing-opentelemetry's issue #253). [`SpanStart`] hands the recorder everything it needs
//! through a thread-local slot that the next span created inside [`SpanStart::create`] takes.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::baggage::Baggage;
use crate::context::SpanContext;
use crate::record::data::{KeyValue, Link, SpanKind};

/// What the recorder should know about a span before it starts.
///
/// ```
/// use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
/// use tracewire::record::{Recorder, SpanExt, SpanStart};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// let (layer, _guard) = Recorder::builder().build();
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     let caller = SpanContext::new(
///         TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
///         SpanId::from(0x00f067aa0ba902b7),
///         TraceFlags::SAMPLED,
///         true,
///         TraceState::NONE,
///     );
///     let span = SpanStart::new()
///         .remote_parent(caller.clone())
///         .create(|| tracing::info_span!("job"));
///     let cx = span.span_context().unwrap();
///     assert_eq!(cx.trace_id, caller.trace_id);
///     assert_ne!(cx.span_id, caller.span_id);
/// });
/// ```
#[derive(Debug, Default)]
#[must_use = "a SpanStart does nothing until `create` is called"]
pub struct SpanStart {
    pub(crate) remote_parent: Option<SpanContext>,
    pub(crate) baggage: Option<Baggage>,
    pub(crate) links: Vec<Link>,
    pub(crate) service_name: Option<Arc<str>>,
    pub(crate) kind: Option<SpanKind>,
    pub(crate) name: Option<Cow<'static, str>>,
    pub(crate) attributes: Vec<KeyValue>,
    pub(crate) new_root: bool,
    /// The span's own context (ids, flags, trace state), already decided by the layer with
    /// the recorder's sampler (see `layer::decide`) for the same parent the recorder will
    /// find: `remote_parent`, else the local or ambient parent, else none (`new_root`).
    pub(crate) decided: Option<SpanContext>,
    /// The span's `tracing` fields are for humans (fmt output); its attributes come from
    /// `attributes` instead.
    pub(crate) skip_fields: bool,
}

thread_local! {
    static PENDING: RefCell<Option<SpanStart>> = const { RefCell::new(None) };
    /// The remote context of a request that has no recorded span of its own (a filtered
    /// request, or no recorder), set while its service is called and its future polled:
    /// a pointer to it, so that setting it costs two pointer writes.
    static AMBIENT: Cell<*const Ambient> = const { Cell::new(std::ptr::null()) };
}

/// A request's remote context, in effect while no recorded span carries it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ambient {
    pub(crate) context: Option<SpanContext>,
    pub(crate) baggage: Baggage,
}

impl SpanStart {
    /// Nothing set: the span is a child of the current span, or a new root.
    pub fn new() -> Self {
        Self::default()
    }

    /// The span continues a trace that came from another process. A context that is not
    /// valid is ignored.
    pub fn remote_parent(mut self, parent: SpanContext) -> Self {
        if parent.is_valid() {
            self.remote_parent = Some(parent);
        }
        self
    }

    /// Baggage for the span and its children (instead of the parent's).
    pub fn baggage(mut self, baggage: Baggage) -> Self {
        self.baggage = Some(baggage);
        self
    }

    /// Adds a link to another span.
    pub fn link(mut self, link: Link) -> Self {
        self.links.push(link);
        self
    }

    /// The service running this span and, unless they say otherwise, its children.
    pub fn service_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The span kind (otherwise `otel.kind`, or internal).
    pub fn kind(mut self, kind: SpanKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// The span name (otherwise `otel.name`, or the `tracing` span name).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Attributes to record, as typed values.
    pub fn attributes(mut self, attributes: Vec<KeyValue>) -> Self {
        self.attributes = attributes;
        self
    }

    /// Starts a new trace even when there is a current span.
    pub fn new_root(mut self) -> Self {
        self.new_root = true;
        self
    }

    /// Records attributes only from [`attributes`](Self::attributes), not from the span's
    /// `tracing` fields (which are then for log output only).
    #[allow(dead_code)] // used by the Tower layers
    pub(crate) fn skip_fields(mut self) -> Self {
        self.skip_fields = true;
        self
    }

    /// Runs `create`, which should create one span; that span gets these settings. Anything
    /// left unused (the span was disabled, or no recorder is installed) is discarded.
    pub fn create<R>(self, create: impl FnOnce() -> R) -> R {
        self.create_inner(create)
    }

    /// Like [`create`](Self::create), and also hands back the settings when no recorder
    /// took them (the span was disabled, or no recorder saw it).
    pub(crate) fn create_traced<R>(self, create: impl FnOnce() -> R) -> (R, Option<SpanStart>) {
        let mut reset = Reset {
            previous: PENDING.with(|p| p.replace(Some(self))),
            armed: true,
        };
        let out = create();
        reset.armed = false;
        let left = PENDING.with(|p| std::mem::replace(&mut *p.borrow_mut(), reset.previous.take()));
        (out, left)
    }

    fn create_inner<R>(self, create: impl FnOnce() -> R) -> R {
        let _reset = Reset {
            previous: PENDING.with(|p| p.replace(Some(self))),
            armed: true,
        };
        create()
    }
}

/// Puts back the settings that were pending before, discarding ours (also if creating the
/// span panics).
struct Reset {
    previous: Option<SpanStart>,
    armed: bool,
}

impl Drop for Reset {
    fn drop(&mut self) {
        if self.armed {
            let previous = self.previous.take();
            let _ = PENDING.try_with(|p| *p.borrow_mut() = previous);
        }
    }
}

/// Runs `f` with `ambient` in effect on this thread.
pub(crate) fn with_ambient<R>(ambient: &Ambient, f: impl FnOnce() -> R) -> R {
    struct Restore(*const Ambient);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = AMBIENT.try_with(|a| a.set(self.0));
        }
    }
    let previous = AMBIENT
        .try_with(|a| a.replace(ambient))
        .unwrap_or(std::ptr::null());
    let _restore = Restore(previous);
    f()
}

/// The ambient remote context, if a request without a recorded span is being called or
/// polled here.
pub(crate) fn ambient() -> Option<Ambient> {
    let current = AMBIENT.try_with(Cell::get).ok()?;
    // SAFETY: a non-null pointer was set by `with_ambient` from a shared borrow of an
    // `Ambient` that outlives the call of `f` it is set for, and is put back (also when `f`
    // unwinds) before that call returns. Calls nest, so the pointer read here belongs to
    // the innermost `with_ambient` still running on this thread, whose `Ambient` is alive
    // and, being borrowed, unchanged. The thread-local is never shared across threads.
    unsafe { current.as_ref() }.cloned()
}

/// Takes the settings for the span being created on this thread, if any.
pub(crate) fn take() -> Option<SpanStart> {
    PENDING
        .try_with(|p| {
            let mut p = p.try_borrow_mut().ok()?;
            // Most spans have none: moving the empty slot out would copy it.
            if p.is_none() {
                return None;
            }
            p.take()
        })
        .ok()
        .flatten()
}
