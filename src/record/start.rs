//! Giving a span its parent, links and attributes at creation.
//!
//! `tracing` has no way to pass a remote parent into `span!`, and a parent set after a span
//! started cannot fix its children or sampling decision (the pitfall of
//! tracing-opentelemetry's issue #253). [`SpanStart`] hands the recorder everything it needs
//! through a thread-local slot that the next span created inside [`SpanStart::create`] takes.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

use crate::baggage::Baggage;
use crate::context::SpanContext;
use crate::record::facts::RequestFacts;
use crate::span::{KeyValue, Link, SpanKind};

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
    /// the recorder's sampler (see `record_layer::decide`) for the same parent the recorder will
    /// find: `remote_parent`, else the local or ambient parent, else none (`new_root`).
    pub(crate) decided: Option<SpanContext>,
    /// The span's `tracing` fields are for humans (fmt output); its attributes come from
    /// `attributes` instead.
    pub(crate) skip_fields: bool,
    /// An HTTP span's request facts, made into attributes on the reporter thread.
    pub(crate) facts: Option<RequestFacts>,
}

// Scoped thread-locals: each is set for the length of one call and put back (also when the
// call unwinds) by `scoped-tls`, so the recorder can borrow what the caller owns without a
// copy into the thread-local or an allocation.
scoped_tls::scoped_thread_local! {
    /// The seed of the span being created on this thread, set by [`with_pending`].
    static PENDING: RefCell<Option<SpanStart>>
}
scoped_tls::scoped_thread_local! {
    /// The remote context of a request that has no recorded span of its own (a filtered
    /// request, or no recorder), set while its service is called and its future polled.
    static AMBIENT: Ambient
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

    /// The span starts a new trace, linked to `claimed`: the context an untrusted caller
    /// sent (a public edge). The caller's trace id, sampling decision and trace state are
    /// not continued, so nothing it chose travels further; the link keeps the trail. Give
    /// no [`baggage`](Self::baggage) of the caller's either. A context that is not valid is
    /// not linked.
    ///
    /// ```
    /// use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    /// use tracewire::record::{Recorder, SpanExt, SpanStart};
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// let (layer, _guard) = Recorder::builder().build();
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     let claimed = SpanContext::new(
    ///         TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
    ///         SpanId::from(0x00f067aa0ba902b7),
    ///         TraceFlags::SAMPLED,
    ///         true,
    ///         TraceState::NONE,
    ///     );
    ///     let span = SpanStart::new()
    ///         .untrusted_parent(claimed.clone())
    ///         .create(|| tracing::info_span!("public request"));
    ///     assert_ne!(span.span_context().unwrap().trace_id, claimed.trace_id);
    /// });
    /// ```
    pub fn untrusted_parent(mut self, claimed: SpanContext) -> Self {
        self.remote_parent = None;
        self.new_root = true;
        if claimed.is_valid() {
            self.links.push(Link::new(claimed));
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

    /// Runs `create`, which should create one span; that span gets these settings. Anything
    /// left unused (the span was disabled, or no recorder is installed) is discarded.
    pub fn create<R>(self, create: impl FnOnce() -> R) -> R {
        with_pending(&RefCell::new(Some(self)), create)
    }
}

/// Runs `create` with `seed` pending on this thread: the recorder takes it for the next span
/// created inside, and whatever it leaves stays in `seed` (nothing, once a recorder took it).
/// The caller owns the cell, so that a seed (a few hundred bytes) is moved only by the
/// recorder's take.
pub(crate) fn with_pending<R>(seed: &RefCell<Option<SpanStart>>, create: impl FnOnce() -> R) -> R {
    PENDING.set(seed, create)
}

/// Runs `f` with `ambient` in effect on this thread.
#[inline(always)]
pub(crate) fn with_ambient<R>(ambient: &Ambient, f: impl FnOnce() -> R) -> R {
    AMBIENT.set(ambient, f)
}

/// The ambient remote context, if a request without a recorded span is being called or
/// polled here.
pub(crate) fn ambient() -> Option<Ambient> {
    AMBIENT.is_set().then(|| AMBIENT.with(Ambient::clone))
}

/// Takes the settings for the span being created on this thread, if any.
#[inline]
pub(crate) fn take() -> Option<SpanStart> {
    if !PENDING.is_set() {
        return None;
    }
    // `try_borrow_mut`: a seed is taken by one span at a time; a span created while another
    // takes its seed (which nothing does) finds none rather than panicking.
    PENDING.with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        // Most spans have none: `take` on an empty slot would still copy it.
        if slot.is_none() {
            return None;
        }
        slot.take()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &'static str) -> RefCell<Option<SpanStart>> {
        RefCell::new(Some(SpanStart::new().name(name)))
    }

    fn taken_name() -> Option<Cow<'static, str>> {
        take().and_then(|seed| seed.name)
    }

    #[test]
    fn a_seed_nobody_takes_comes_back() {
        let seed = named("unused");
        with_pending(&seed, || ());
        let seed = seed.into_inner();
        assert_eq!(seed.and_then(|s| s.name).as_deref(), Some("unused"));
        assert!(take().is_none(), "nothing pending once the call returned");
    }

    #[test]
    fn the_first_span_takes_the_seed_and_the_next_finds_none() {
        let seed = named("first");
        let (first, second) = with_pending(&seed, || (taken_name(), taken_name()));
        assert_eq!(first.as_deref(), Some("first"));
        assert_eq!(second, None);
        assert!(seed.into_inner().is_none());
    }

    #[test]
    fn nested_seeds_are_taken_innermost_first_and_the_outer_one_is_restored() {
        let outer = named("outer");
        let (inner_taken, outer_taken) = with_pending(&outer, || {
            let inner = named("inner");
            let inner_taken = with_pending(&inner, taken_name);
            assert!(inner.into_inner().is_none());
            (inner_taken, taken_name())
        });
        assert_eq!(inner_taken.as_deref(), Some("inner"));
        assert_eq!(outer_taken.as_deref(), Some("outer"));
    }

    #[test]
    fn a_panic_while_creating_restores_the_previous_seed() {
        let outer = named("outer");
        let after_panic = with_pending(&outer, || {
            let unwound = std::panic::catch_unwind(|| {
                let inner = named("inner");
                with_pending(&inner, || panic!("span creation failed"));
            });
            assert!(unwound.is_err());
            // The inner seed is gone; the outer one is pending again.
            taken_name()
        });
        assert_eq!(after_panic.as_deref(), Some("outer"));
        assert!(take().is_none());
    }
}
