//! Head sampling: decides, when a span starts, whether its trace is recorded.
//!
//! The default is [`ParentBased`] over [`AlwaysOn`]: a span follows its parent's `sampled`
//! flag (local or remote), and a new root is sampled. A remote parent that left the decision
//! to us ([`SpanContext::is_deferred`], B3 ids without a sampling state) is decided as a new
//! root. A sampled-out span still gets ids and
//! propagates them, flagged not sampled, but records nothing.
//!
//! Give the recorder another sampler with
//! [`RecorderBuilder::sampler`](crate::record::RecorderBuilder::sampler), or
//! [`sample_ratio`](crate::record::RecorderBuilder::sample_ratio) for the common case. A
//! sampler of your own implements [`Sampler`]; wrapped in [`ParentBased`], it decides only
//! new roots, and their children follow:
//!
//! ```
//! use tracewire::context::{SpanContext, TraceId};
//! use tracewire::record::Recorder;
//! use tracewire::report::InMemoryReporter;
//! use tracewire::sampler::{ParentBased, Sampler};
//! use tracewire::span::SpanKind;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! /// Records every trace but the health checks.
//! #[derive(Debug)]
//! struct SkipHealthChecks;
//!
//! impl Sampler for SkipHealthChecks {
//!     fn should_sample(
//!         &self,
//!         _parent: Option<&SpanContext>,
//!         _trace_id: TraceId,
//!         name: &str,
//!         _kind: &SpanKind,
//!     ) -> bool {
//!         name != "GET /health"
//!     }
//! }
//!
//! let spans = InMemoryReporter::new();
//! let (recorder, guard) = Recorder::builder()
//!     .sampler(ParentBased::new(SkipHealthChecks))
//!     .reporter(spans.clone())
//!     .build();
//!
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(recorder), || {
//!     tracing::info_span!("GET /health").in_scope(|| {
//!         tracing::info_span!("db ping").in_scope(|| {});
//!     });
//!     tracing::info_span!("GET /users").in_scope(|| {});
//! });
//! guard.flush().unwrap();
//!
//! assert!(spans.find("GET /health").is_none());
//! assert!(spans.find("db ping").is_none()); // follows its unsampled parent
//! assert!(spans.find("GET /users").is_some());
//! ```

use std::fmt;

use crate::context::{SpanContext, TraceId};
use crate::span::SpanKind;

/// Decides whether a new span is sampled.
pub trait Sampler: Send + Sync + fmt::Debug + 'static {
    /// `parent` is the local or remote parent (see [`SpanContext::is_remote`]), `None` for a
    /// new root. `trace_id` is the span's trace, new or inherited.
    fn should_sample(
        &self,
        parent: Option<&SpanContext>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
    ) -> bool;

    /// Whether decisions look at the span name. Samplers that never do return `false`, and
    /// the layers then skip building the name of a request that will not be recorded. When
    /// `true`, a span declaring `otel.name` or `otel.kind` fields is decided with them as its
    /// name and kind.
    fn uses_span_name(&self) -> bool {
        true
    }
}

impl<S: Sampler + ?Sized> Sampler for Box<S> {
    fn should_sample(
        &self,
        parent: Option<&SpanContext>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
    ) -> bool {
        (**self).should_sample(parent, trace_id, name, kind)
    }

    fn uses_span_name(&self) -> bool {
        (**self).uses_span_name()
    }
}

/// Samples every span.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysOn;

impl Sampler for AlwaysOn {
    fn uses_span_name(&self) -> bool {
        false
    }

    fn should_sample(&self, _: Option<&SpanContext>, _: TraceId, _: &str, _: &SpanKind) -> bool {
        true
    }
}

/// Samples no span.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysOff;

impl Sampler for AlwaysOff {
    fn uses_span_name(&self) -> bool {
        false
    }

    fn should_sample(&self, _: Option<&SpanContext>, _: TraceId, _: &str, _: &SpanKind) -> bool {
        false
    }
}

/// Samples a share of traces, decided by the trace id alone, so every service with the same
/// ratio makes the same decision for a trace.
///
/// Follows the OpenTelemetry `TraceIdRatioBased` algorithm: the randomness `R` is the rightmost
/// 56 bits of the trace id (random under W3C Level 2), the rejection threshold is
/// `T = (1 - ratio) * 2^56`, and a trace is sampled when `R >= T`.
///
/// ```
/// use tracewire::context::TraceId;
/// use tracewire::sampler::{Sampler, TraceIdRatio};
/// use tracewire::span::SpanKind;
///
/// let quarter = TraceIdRatio::new(0.25);
/// let decide = |id: u128| quarter.should_sample(None, TraceId::from(id), "/", &SpanKind::Server);
/// // Only the rightmost 56 bits of the trace id count; their top quarter is sampled.
/// assert!(decide(0xff_ffff_ffff_ffff));
/// assert!(!decide(0x10_0000_0000_0000));
/// assert!(!decide(0xffff_ffff_0000_0000_0000_0000_0000_0001));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TraceIdRatio {
    threshold: u64,
    ratio: f64,
}

const RANDOMNESS_BITS: u32 = 56;
const RANDOMNESS_MASK: u64 = (1 << RANDOMNESS_BITS) - 1;

impl TraceIdRatio {
    /// Samples `ratio` of traces; clamped to `0.0..=1.0` (NaN samples nothing).
    pub fn new(ratio: f64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        let max = (1u64 << RANDOMNESS_BITS) as f64;
        // Rounded so that ratio 1.0 gives threshold 0 (always) and 0.0 gives 2^56 (never).
        let threshold = ((1.0 - ratio) * max).round() as u64;
        TraceIdRatio { threshold, ratio }
    }

    /// The configured ratio.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }
}

impl Sampler for TraceIdRatio {
    fn uses_span_name(&self) -> bool {
        false
    }

    fn should_sample(
        &self,
        _: Option<&SpanContext>,
        trace_id: TraceId,
        _: &str,
        _: &SpanKind,
    ) -> bool {
        let bytes = trace_id.to_bytes();
        let mut low = [0u8; 8];
        low.copy_from_slice(&bytes[8..]);
        let randomness = u64::from_be_bytes(low) & RANDOMNESS_MASK;
        randomness >= self.threshold
    }
}

/// Follows the parent's `sampled` flag; asks `root` for new roots, and for remote parents
/// that left the decision to us ([`SpanContext::is_deferred`]).
///
/// ```
/// use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
/// use tracewire::sampler::{AlwaysOff, ParentBased, Sampler};
/// use tracewire::span::SpanKind;
///
/// let sampler = ParentBased::new(AlwaysOff);
/// let trace_id = TraceId::from(7u128);
/// let span_id = SpanId::from(9u64);
/// let caller = SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::NONE);
///
/// // A sampled caller's trace is recorded; a new root asks `AlwaysOff`.
/// assert!(sampler.should_sample(Some(&caller), trace_id, "GET /", &SpanKind::Server));
/// assert!(!sampler.should_sample(None, trace_id, "GET /", &SpanKind::Server));
/// ```
#[derive(Clone, Debug)]
pub struct ParentBased<S> {
    root: S,
}

impl<S: Sampler> ParentBased<S> {
    /// Parent-based, with `root` for spans without a parent.
    pub fn new(root: S) -> Self {
        ParentBased { root }
    }
}

impl<S: Sampler> Sampler for ParentBased<S> {
    fn uses_span_name(&self) -> bool {
        self.root.uses_span_name()
    }

    fn should_sample(
        &self,
        parent: Option<&SpanContext>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
    ) -> bool {
        match parent {
            Some(parent) if parent.is_valid() && !(parent.is_remote && parent.is_deferred()) => {
                parent.is_sampled()
            }
            _ => self.root.should_sample(None, trace_id, name, kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{SpanId, TraceFlags, TraceState};

    fn parent(sampled: bool, remote: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            TraceFlags::default().with_sampled(sampled),
            remote,
            TraceState::NONE,
        )
    }

    #[test]
    fn parent_based_follows_local_and_remote_parents() {
        let s = ParentBased::new(AlwaysOff);
        let k = SpanKind::Internal;
        assert!(s.should_sample(Some(&parent(true, true)), TraceId::from(1u128), "x", &k));
        assert!(s.should_sample(Some(&parent(true, false)), TraceId::from(1u128), "x", &k));
        let s = ParentBased::new(AlwaysOn);
        assert!(!s.should_sample(Some(&parent(false, true)), TraceId::from(1u128), "x", &k));
        assert!(s.should_sample(None, TraceId::from(1u128), "x", &k));
    }

    #[test]
    fn a_deferred_remote_parent_is_decided_as_a_root() {
        let k = SpanKind::Server;
        let mut deferred = parent(false, true);
        deferred.trace_flags = crate::context::FLAG_DEFERRED;
        let on = ParentBased::new(AlwaysOn);
        let off = ParentBased::new(AlwaysOff);
        assert!(on.should_sample(Some(&deferred), TraceId::from(1u128), "x", &k));
        assert!(!off.should_sample(Some(&deferred), TraceId::from(1u128), "x", &k));
        // A local parent already carries our decision.
        deferred.is_remote = false;
        assert!(!on.should_sample(Some(&deferred), TraceId::from(1u128), "x", &k));
    }

    #[test]
    fn ratio_edges() {
        let k = SpanKind::Internal;
        let max = TraceId::from(u128::MAX);
        let min = TraceId::from(1u128);
        assert!(TraceIdRatio::new(1.0).should_sample(None, min, "", &k));
        assert!(!TraceIdRatio::new(0.0).should_sample(None, max, "", &k));
        assert!(!TraceIdRatio::new(f64::NAN).should_sample(None, max, "", &k));
        // Only the rightmost 56 bits count.
        let high_only = TraceId::from(u128::MAX << 56);
        assert!(!TraceIdRatio::new(0.5).should_sample(None, high_only, "", &k));
        assert!(TraceIdRatio::new(0.5).should_sample(None, max, "", &k));
    }
}
