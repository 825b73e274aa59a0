//! Propagators made of others: [`CompositePropagator`], the default [`W3cPropagator`], and
//! [`NoopPropagator`].

use std::fmt;

use super::{
    parse_traceparent, parse_tracestate, BaggagePropagator, Extracted, Extractor, Injector,
    Propagator, TraceContextPropagator, BAGGAGE, TRACEPARENT, TRACESTATE,
};
use crate::baggage::Baggage;
use crate::context::SpanContext;

/// Several propagators in order.
///
/// Extract: the first valid span context wins; baggage is merged, a key already read from
/// an earlier propagator keeping its first value (see [`Baggage::merge`]). Inject: every
/// propagator writes its headers.
#[derive(Default)]
pub struct CompositePropagator {
    propagators: Vec<Box<dyn Propagator>>,
}

impl CompositePropagator {
    /// A composite of `propagators`, in order.
    pub fn new(propagators: Vec<Box<dyn Propagator>>) -> Self {
        CompositePropagator { propagators }
    }

    /// This composite with `propagator` appended.
    pub fn with(mut self, propagator: impl Propagator) -> Self {
        self.propagators.push(Box::new(propagator));
        self
    }

    /// Number of propagators.
    pub fn len(&self) -> usize {
        self.propagators.len()
    }

    /// No propagators.
    pub fn is_empty(&self) -> bool {
        self.propagators.is_empty()
    }
}

impl fmt::Debug for CompositePropagator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompositePropagator")
            .field("len", &self.propagators.len())
            .finish()
    }
}

impl Propagator for CompositePropagator {
    fn extract(&self, carrier: &dyn Extractor) -> Extracted {
        let mut merged = Extracted::default();
        for propagator in &self.propagators {
            let Extracted {
                span_context,
                baggage,
            } = propagator.extract(carrier);
            if merged.span_context.is_none() {
                merged.span_context = span_context.filter(SpanContext::is_valid);
            }
            merged.baggage = merged.baggage.merge(&baggage);
        }
        merged
    }

    fn inject(&self, cx: &SpanContext, baggage: &Baggage, carrier: &mut dyn Injector) {
        for propagator in &self.propagators {
            propagator.inject(cx, baggage, carrier);
        }
    }
}

/// W3C Trace Context and W3C Baggage: the default propagator.
///
/// The same as a [`CompositePropagator`] of [`TraceContextPropagator`] and
/// [`BaggagePropagator`], without boxing or merging: a request without baggage costs no
/// allocation for it.
#[derive(Clone, Copy, Debug, Default)]
pub struct W3cPropagator;

impl W3cPropagator {
    /// The propagator.
    pub const fn new() -> Self {
        W3cPropagator
    }
}

impl Propagator for W3cPropagator {
    fn extract(&self, carrier: &dyn Extractor) -> Extracted {
        if let Some(headers) = carrier.header_map() {
            return W3cPropagator::extract_from_map(headers);
        }
        Extracted {
            span_context: TraceContextPropagator::extract_span_context(carrier),
            baggage: BaggagePropagator::extract_baggage(carrier),
        }
    }

    fn inject(&self, cx: &SpanContext, baggage: &Baggage, carrier: &mut dyn Injector) {
        TraceContextPropagator::inject_span_context(cx, carrier);
        BaggagePropagator::inject_baggage(baggage, carrier);
    }
}

impl W3cPropagator {
    /// One pass over the headers instead of a lookup per header name: requests carry a
    /// handful of headers, most of them standard ones that a name comparison passes over at
    /// once. The other headers are looked up only when present.
    fn extract_from_map(headers: &http::HeaderMap) -> Extracted {
        let mut traceparent = None;
        let mut traceparents = 0usize;
        let (mut tracestate, mut baggage) = (false, false);
        for (name, value) in headers {
            if *name == TRACEPARENT {
                traceparents += 1;
                traceparent.get_or_insert(value);
            } else if *name == TRACESTATE {
                tracestate = true;
            } else if *name == BAGGAGE {
                baggage = true;
            }
        }
        let span_context = match traceparent {
            // A duplicated traceparent is malformed.
            Some(value) if traceparents == 1 => {
                parse_traceparent(value.as_bytes()).ok().map(|mut cx| {
                    if tracestate {
                        cx.trace_state = parse_tracestate(
                            headers.get_all(TRACESTATE).iter().map(|v| v.as_bytes()),
                        );
                    }
                    cx
                })
            }
            _ => None,
        };
        let baggage = if baggage {
            BaggagePropagator::extract_baggage(headers)
        } else {
            Baggage::new()
        };
        Extracted {
            span_context,
            baggage,
        }
    }
}

/// Reads nothing and writes nothing: every request starts a new trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopPropagator;

impl Propagator for NoopPropagator {
    fn extract(&self, _carrier: &dyn Extractor) -> Extracted {
        Extracted::default()
    }

    fn inject(&self, _cx: &SpanContext, _baggage: &Baggage, _carrier: &mut dyn Injector) {}
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    const TP1: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// Reads its own header names, so two of them can be told apart in one carrier.
    #[derive(Debug)]
    struct Named(&'static str, &'static str);

    impl Propagator for Named {
        fn extract(&self, carrier: &dyn Extractor) -> Extracted {
            let mut span_context = None;
            carrier.get_each(self.0, &mut |v| {
                span_context = super::super::parse_traceparent(v).ok();
            });
            let mut baggage = Baggage::new();
            carrier.get_each(self.1, &mut |v| {
                baggage = super::super::parse_baggage([v].into_iter());
            });
            Extracted {
                span_context,
                baggage,
            }
        }

        fn inject(&self, cx: &SpanContext, _baggage: &Baggage, carrier: &mut dyn Injector) {
            carrier.set(
                http::HeaderName::from_static(self.0),
                super::super::traceparent_header_value(cx),
            );
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn first_valid_span_context_wins_and_baggage_merges() {
        let composite = CompositePropagator::new(vec![Box::new(Named("tp-a", "bg-a"))])
            .with(Named("tp-b", "bg-b"));
        assert_eq!(composite.len(), 2);
        let carrier = headers(&[
            (
                "tp-a",
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            ),
            ("tp-b", TP1),
            ("bg-a", "k=1,a=x"),
            ("bg-b", "k=2,b=y"),
        ]);
        let extracted = composite.extract(&carrier);
        assert_eq!(
            extracted.span_context,
            super::super::parse_traceparent(TP1.as_bytes()).ok()
        );
        let members: Vec<(&str, &str)> = extracted
            .baggage
            .iter()
            .map(|m| (m.key.as_str(), m.value.as_str()))
            .collect();
        assert_eq!(members, [("k", "1"), ("a", "x"), ("b", "y")]);

        let carrier = headers(&[("tp-a", TP1), ("tp-b", "garbage")]);
        assert!(composite.extract(&carrier).span_context.is_some());
    }

    #[test]
    fn composite_injects_through_every_propagator() {
        let composite = CompositePropagator::default()
            .with(Named("tp-a", "bg-a"))
            .with(Named("tp-b", "bg-b"));
        let cx = super::super::parse_traceparent(TP1.as_bytes()).unwrap();
        let mut carrier = HeaderMap::new();
        composite.inject(&cx, &Baggage::new(), &mut carrier);
        assert_eq!(carrier["tp-a"], TP1);
        assert_eq!(carrier["tp-b"], TP1);
        assert!(format!("{composite:?}").contains("len: 2"));
    }

    #[test]
    fn w3c_equals_the_composite_of_its_parts() {
        let composite = CompositePropagator::default()
            .with(TraceContextPropagator)
            .with(BaggagePropagator);
        let carrier = headers(&[
            ("traceparent", TP1),
            ("tracestate", "a=1"),
            ("baggage", "k=v;p, x = y"),
            ("baggage", "z=%20"),
        ]);
        let w3c = W3cPropagator.extract(&carrier);
        assert_eq!(w3c, composite.extract(&carrier));
        assert_eq!(w3c.baggage.len(), 3);

        let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
        let cx = w3c.span_context.unwrap();
        W3cPropagator.inject(&cx, &w3c.baggage, &mut a);
        composite.inject(&cx, &w3c.baggage, &mut b);
        assert_eq!(a, b);
        assert_eq!(a["baggage"], "k=v;p,x=y,z=%20");
    }

    #[test]
    fn noop_reads_and_writes_nothing() {
        let carrier = headers(&[("traceparent", TP1), ("baggage", "k=v")]);
        assert_eq!(NoopPropagator.extract(&carrier), Extracted::default());
        let mut out = HeaderMap::new();
        let cx = super::super::parse_traceparent(TP1.as_bytes()).unwrap();
        NoopPropagator.inject(&cx, &Baggage::new().with("k", "v").unwrap(), &mut out);
        assert!(out.is_empty());
    }
}
