//! Trace and span identifiers, trace flags, trace state and the span context that crosses
//! process boundaries.
//!
//! Ids and flags are the `opentelemetry` types. [`TraceState`] and [`SpanContext`] are
//! tracewire's own: `opentelemetry`'s `TraceState` validates keys with an outdated grammar
//! (it rejects keys that W3C Trace Context Level 2 allows), and its `SpanContext` can only
//! hold that `TraceState`. Both convert to and from the `opentelemetry` types.
//!
//! A [`SpanContext`] comes from a propagator's extract (a caller's `traceparent`), from
//! [`SpanExt::span_context`](crate::record::SpanExt::span_context) or
//! [`current_context`](crate::record::current_context) for a recorded span, or is built from
//! its parts:
//!
//! ```
//! use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
//!
//! let cx = SpanContext::new(
//!     TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
//!     SpanId::from(0x00f0_67aa_0ba9_02b7),
//!     TraceFlags::SAMPLED,
//!     true, // received from another process
//!     TraceState::from_members([("vendor", "abc")]).unwrap(),
//! );
//! assert!(cx.is_valid() && cx.is_sampled());
//!
//! // The same context for an `opentelemetry` API.
//! let otel = opentelemetry::trace::SpanContext::from(&cx);
//! assert_eq!(otel.trace_state().header(), "vendor=abc");
//! assert_eq!(SpanContext::from(&otel), cx);
//! ```

use std::fmt;
use std::sync::Arc;

pub use opentelemetry::trace::{SpanId, TraceFlags, TraceId};

/// The W3C Trace Context Level 2 `random` flag: the rightmost 7 bytes of the trace id are
/// random.
pub const FLAG_RANDOM: TraceFlags = TraceFlags::new(0x02);

/// The `sampled` flag.
pub const FLAG_SAMPLED: TraceFlags = TraceFlags::SAMPLED;

/// Not a W3C flag, and never sent as one: the caller left the sampling decision to us (B3's
/// "deferred", ids without a sampling state). A remote parent with this flag is sampled by
/// the local sampler's rule for new roots; when that says no, propagators that can say
/// "deferred" (B3) pass the decision on rather than a deny. W3C `traceparent` and the
/// `opentelemetry` conversions leave it out.
pub const FLAG_DEFERRED: TraceFlags = TraceFlags::new(0x80);

/// Most list members a `tracestate` may carry.
pub const TRACESTATE_MAX_MEMBERS: usize = 32;

/// The identity of a span, as it travels between processes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpanContext {
    /// The trace this span belongs to.
    pub trace_id: TraceId,
    /// This span.
    pub span_id: SpanId,
    /// `sampled` and `random` flags.
    pub trace_flags: TraceFlags,
    /// Whether this context was received from another process.
    pub is_remote: bool,
    /// Vendor data, passed on unchanged.
    pub trace_state: TraceState,
}

impl SpanContext {
    /// The invalid, empty context.
    pub const NONE: SpanContext = SpanContext {
        trace_id: TraceId::INVALID,
        span_id: SpanId::INVALID,
        trace_flags: TraceFlags::NOT_SAMPLED,
        is_remote: false,
        trace_state: TraceState::NONE,
    };

    /// A context from its parts.
    pub fn new(
        trace_id: TraceId,
        span_id: SpanId,
        trace_flags: TraceFlags,
        is_remote: bool,
        trace_state: TraceState,
    ) -> Self {
        SpanContext {
            trace_id,
            span_id,
            trace_flags,
            is_remote,
            trace_state,
        }
    }

    /// Both ids are non-zero.
    pub fn is_valid(&self) -> bool {
        self.trace_id != TraceId::INVALID && self.span_id != SpanId::INVALID
    }

    /// The `sampled` flag is set.
    pub fn is_sampled(&self) -> bool {
        self.trace_flags.is_sampled()
    }

    /// The W3C Level 2 `random` flag is set.
    pub fn is_random(&self) -> bool {
        self.trace_flags.to_u8() & FLAG_RANDOM.to_u8() != 0
    }

    /// The caller left the sampling decision to us ([`FLAG_DEFERRED`]).
    pub fn is_deferred(&self) -> bool {
        self.trace_flags.to_u8() & FLAG_DEFERRED.to_u8() != 0
    }
}

impl Default for SpanContext {
    fn default() -> Self {
        SpanContext::NONE
    }
}

impl From<&SpanContext> for opentelemetry::trace::SpanContext {
    /// Members that `opentelemetry`'s stricter `TraceState` refuses are left out, and so is
    /// [`FLAG_DEFERRED`], which is not a W3C flag.
    fn from(cx: &SpanContext) -> Self {
        opentelemetry::trace::SpanContext::new(
            cx.trace_id,
            cx.span_id,
            TraceFlags::new(cx.trace_flags.to_u8() & !FLAG_DEFERRED.to_u8()),
            cx.is_remote,
            cx.trace_state.to_otel(),
        )
    }
}

impl From<&opentelemetry::trace::SpanContext> for SpanContext {
    fn from(cx: &opentelemetry::trace::SpanContext) -> Self {
        SpanContext {
            trace_id: cx.trace_id(),
            span_id: cx.span_id(),
            trace_flags: cx.trace_flags(),
            is_remote: cx.is_remote(),
            trace_state: TraceState::from_members(cx.trace_state()).unwrap_or_default(),
        }
    }
}

/// Why a trace state member was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceStateError {
    /// The key breaks the W3C key grammar.
    InvalidKey,
    /// The value breaks the W3C value grammar.
    InvalidValue,
    /// The same key appears twice.
    DuplicateKey,
    /// More than [`TRACESTATE_MAX_MEMBERS`] members.
    TooManyMembers,
    /// A member has no `=`.
    InvalidMember,
}

impl fmt::Display for TraceStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceStateError::InvalidKey => "tracestate key breaks the W3C key grammar",
            TraceStateError::InvalidValue => "tracestate value breaks the W3C value grammar",
            TraceStateError::DuplicateKey => "tracestate key appears twice",
            TraceStateError::TooManyMembers => "tracestate has more than 32 members",
            TraceStateError::InvalidMember => "tracestate member is not key=value",
        })
    }
}

impl std::error::Error for TraceStateError {}

/// W3C `tracestate`: an ordered list of up to 32 vendor `key=value` members.
///
/// Stored as one validated, normalised header string (`k1=v1,k2=v2`) behind an `Arc`, so a
/// clone is a reference-count increment and injecting it copies no member. Updates return a
/// new state:
///
/// ```
/// use tracewire::context::{TraceState, TraceStateError};
///
/// let state = TraceState::from_members([("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")])?;
/// let state = state.insert("congo", "ucfJifl5GOE")?; // moved to the front, newest first
/// assert_eq!(state.header(), "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");
/// assert_eq!(state.get("rojo"), Some("00f067aa0ba902b7"));
/// assert_eq!(state.remove("rojo").header(), "congo=ucfJifl5GOE");
///
/// assert_eq!(state.insert("Upper", "x"), Err(TraceStateError::InvalidKey));
/// # Ok::<(), TraceStateError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TraceState(Option<Arc<str>>);

impl TraceState {
    /// The empty trace state.
    pub const NONE: TraceState = TraceState(None);

    /// Builds a trace state from members, validating each; the first member is the newest.
    pub fn from_members<'a, I>(members: I) -> Result<Self, TraceStateError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut header = String::new();
        let mut count = 0;
        for (key, value) in members {
            if !is_valid_key(key) {
                return Err(TraceStateError::InvalidKey);
            }
            if !is_valid_value(value) {
                return Err(TraceStateError::InvalidValue);
            }
            count += 1;
            if count > TRACESTATE_MAX_MEMBERS {
                return Err(TraceStateError::TooManyMembers);
            }
            if TraceState::get_in(&header, key).is_some() {
                return Err(TraceStateError::DuplicateKey);
            }
            if !header.is_empty() {
                header.push(',');
            }
            header.push_str(key);
            header.push('=');
            header.push_str(value);
        }
        Ok(TraceState::from_normalized(header))
    }

    /// Wraps a header already validated and normalised (members joined by `,` with no
    /// whitespace); an empty string is the empty state.
    pub(crate) fn from_normalized(header: String) -> Self {
        if header.is_empty() {
            TraceState::NONE
        } else {
            TraceState(Some(Arc::from(header)))
        }
    }

    /// The header value: members joined by `,`; empty when there are none.
    pub fn header(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// No members.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Members in order, newest first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.header()
            .split(',')
            .filter(|m| !m.is_empty())
            .filter_map(|m| m.split_once('='))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        TraceState::get_in(self.header(), key)
    }

    pub(crate) fn get_in<'h>(header: &'h str, key: &str) -> Option<&'h str> {
        header
            .split(',')
            .filter_map(|m| m.split_once('='))
            .find_map(|(k, v)| (k == key).then_some(v))
    }

    /// A copy with `key=value` moved to the front, as a vendor updating its own entry must.
    /// When the state is full, the last member makes room.
    pub fn insert(&self, key: &str, value: &str) -> Result<TraceState, TraceStateError> {
        if !is_valid_key(key) {
            return Err(TraceStateError::InvalidKey);
        }
        if !is_valid_value(value) {
            return Err(TraceStateError::InvalidValue);
        }
        let mut header = String::with_capacity(self.header().len() + key.len() + value.len() + 2);
        header.push_str(key);
        header.push('=');
        header.push_str(value);
        let rest = self.iter().filter(|(k, _)| *k != key);
        for (k, v) in rest.take(TRACESTATE_MAX_MEMBERS - 1) {
            header.push(',');
            header.push_str(k);
            header.push('=');
            header.push_str(v);
        }
        Ok(TraceState::from_normalized(header))
    }

    /// A copy without `key`.
    pub fn remove(&self, key: &str) -> TraceState {
        if self.get(key).is_none() {
            return self.clone();
        }
        let mut header = String::with_capacity(self.header().len());
        for (k, v) in self.iter().filter(|(k, _)| *k != key) {
            if !header.is_empty() {
                header.push(',');
            }
            header.push_str(k);
            header.push('=');
            header.push_str(v);
        }
        TraceState::from_normalized(header)
    }

    /// The `opentelemetry` trace state, without members its older key grammar refuses.
    pub fn to_otel(&self) -> opentelemetry::trace::TraceState {
        if self.is_empty() {
            return opentelemetry::trace::TraceState::NONE;
        }
        let accepted = self
            .iter()
            .filter(|(k, v)| opentelemetry::trace::TraceState::from_key_value([(*k, *v)]).is_ok());
        opentelemetry::trace::TraceState::from_key_value(accepted).unwrap_or_default()
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceState({:?})", self.header())
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.header())
    }
}

/// A `tracestate` key per W3C Trace Context Level 2:
/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`,
/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
pub fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_lowercase() || first.is_ascii_digit() => {}
        _ => return false,
    }
    bytes.len() <= 256
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
        })
}

/// A `tracestate` value: `value = 0*255(chr) nblk-chr`, where `chr` is any printable ASCII
/// but `,` and `=`, and the last character is not a space.
pub fn is_valid_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    let Some(&last) = bytes.last() else {
        return false;
    };
    bytes.len() <= 256
        && last != b' '
        && bytes
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_level_2_grammar() {
        assert!(is_valid_key("congo"));
        assert!(is_valid_key("0vendor"));
        assert!(is_valid_key("tenant@system"));
        assert!(is_valid_key("a@b@c"));
        assert!(is_valid_key("t@abcdefghijklmn"));
        assert!(is_valid_key(&"a".repeat(256)));
        assert!(!is_valid_key(&"a".repeat(257)));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("Congo"));
        assert!(!is_valid_key("_x"));
        assert!(!is_valid_key("a b"));
        assert!(!is_valid_key("a=b"));
    }

    #[test]
    fn values_follow_the_grammar() {
        assert!(is_valid_value("t61rcWkgMzE"));
        assert!(is_valid_value(" leading space"));
        assert!(!is_valid_value("trailing "));
        assert!(!is_valid_value(""));
        assert!(!is_valid_value("a,b"));
        assert!(!is_valid_value("a=b"));
        assert!(!is_valid_value("tab\there"));
        assert!(is_valid_value(&"v".repeat(256)));
        assert!(!is_valid_value(&"v".repeat(257)));
    }

    #[test]
    fn insert_moves_the_key_to_the_front_and_caps_the_list() {
        let ts = TraceState::from_members([("a", "1"), ("b", "2")]).unwrap();
        let ts = ts.insert("b", "3").unwrap();
        assert_eq!(ts.header(), "b=3,a=1");
        assert_eq!(ts.remove("a").header(), "b=3");
        assert!(ts.remove("a").remove("b").is_empty());

        let keys: Vec<String> = (0..32).map(|i| format!("k{i}")).collect();
        let full = TraceState::from_members(keys.iter().map(|k| (k.as_str(), "v"))).unwrap();
        assert_eq!(full.len(), 32);
        let bumped = full.insert("new", "v").unwrap();
        assert_eq!(bumped.len(), 32);
        assert_eq!(bumped.iter().next(), Some(("new", "v")));
        assert_eq!(bumped.get("k31"), None);
    }

    #[test]
    fn from_members_refuses_duplicates_and_overflow() {
        assert_eq!(
            TraceState::from_members([("a", "1"), ("a", "2")]),
            Err(TraceStateError::DuplicateKey)
        );
        let keys: Vec<String> = (0..33).map(|i| format!("k{i}")).collect();
        assert_eq!(
            TraceState::from_members(keys.iter().map(|k| (k.as_str(), "v"))),
            Err(TraceStateError::TooManyMembers)
        );
    }

    #[test]
    fn converts_to_opentelemetry_without_members_it_refuses() {
        let ts = TraceState::from_members([("a@b@c", "1"), ("rojo", "00f067aa0ba902b7")]).unwrap();
        let otel = ts.to_otel();
        assert_eq!(otel.header(), "rojo=00f067aa0ba902b7");
    }
}
