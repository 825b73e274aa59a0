//! Reading and enriching the recorder's view of a `tracing::Span`.

use std::error::Error;

use crate::baggage::Baggage;
use crate::context::SpanContext;
use crate::record::record_layer::with_span_data;
use crate::record::span_data::error_chain;
use crate::span::{KeyValue, Link, Status};

mod sealed {
    pub trait Sealed {}
    impl Sealed for tracing::Span {}
}

/// What the recorder knows of a `tracing::Span`, and typed ways to add to it.
///
/// Every method is a no-op (or returns `None`) when no recorder tracks the span: the span
/// is disabled, or no recorder is installed.
pub trait SpanExt: sealed::Sealed {
    /// The span's ids, flags and trace state.
    fn span_context(&self) -> Option<SpanContext>;
    /// The baggage the span carries (inherited from its parent unless set).
    fn baggage(&self) -> Option<Baggage>;
    /// Replaces the baggage carried by the span and spans started under it later.
    fn set_baggage(&self, baggage: Baggage);
    /// Sets a typed attribute, replacing one with the same key.
    fn set_attribute(&self, attribute: KeyValue);
    /// Sets the status: Ok is final, Error replaces Unset or Error, Unset is ignored.
    fn set_status(&self, status: Status);
    /// Adds a link to another span, unless the span has as many as its limit allows (then
    /// it is counted as dropped).
    fn add_link(&self, link: Link);
    /// Records an `exception` event for `error` (its message followed by its sources) and,
    /// unless a status was set explicitly, sets the status to Error.
    fn record_exception(&self, error: &(dyn Error + 'static));
}

impl SpanExt for tracing::Span {
    fn span_context(&self) -> Option<SpanContext> {
        with_span_data(self, |d| d.record.span_context.clone())
    }

    fn baggage(&self) -> Option<Baggage> {
        with_span_data(self, |d| d.baggage.clone())
    }

    fn set_baggage(&self, baggage: Baggage) {
        with_span_data(self, |d| d.baggage = baggage);
    }

    fn set_attribute(&self, attribute: KeyValue) {
        with_span_data(self, |d| {
            if d.sampled {
                d.set_attribute(attribute)
            }
        });
    }

    fn set_status(&self, status: Status) {
        with_span_data(self, |d| {
            if d.sampled {
                d.set_status(status)
            }
        });
    }

    fn add_link(&self, link: Link) {
        with_span_data(self, |d| {
            if d.sampled {
                d.add_link(link)
            }
        });
    }

    fn record_exception(&self, error: &(dyn Error + 'static)) {
        with_span_data(self, |d| {
            if d.sampled {
                d.record_exception(None, error_chain(error), Vec::new())
            }
        });
    }
}

/// The context the current code runs in: the current `tracing` span's (or, when the
/// recorder skipped that span, its nearest recorded ancestor's), else the context of the
/// request being served without a recorded span (one not sampled, say). `None` outside any
/// trace.
pub fn current_context() -> Option<SpanContext> {
    crate::record::current_parent().map(|(cx, _)| cx)
}

/// The baggage the current code runs with (see [`current_context`]), empty if none.
pub fn current_baggage() -> Baggage {
    crate::record::current_parent()
        .map(|(_, baggage)| baggage)
        .unwrap_or_default()
}
