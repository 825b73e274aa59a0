//! The response future both layers return: it polls the inner service inside the request's
//! span, records the response head, and hands the span to the response body.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;

use crate::config::ResponseCapture;
use crate::context::SpanContext;
use crate::metrics::{Metering, Unmetered};
use crate::propagation::{traceresponse_header_value, TRACERESPONSE};
use crate::record::{with_ambient, Ambient};
use crate::request::body::{
    carries_content, declared_length, Asked, ResponseBody, ResponseHead, SpanEnd,
};
use crate::request::error::{error_message, error_type, error_type_name};

/// What the future needs once the response head arrives.
pub(crate) struct ResponseState {
    pub(crate) end: SpanEnd,
    pub(crate) capture: Option<Arc<ResponseCapture>>,
}

impl ResponseState {
    /// Records the response head: status code, status, protocol version, captured headers.
    pub(crate) fn on_response<B>(&mut self, response: &Response<B>) {
        let end = &mut self.end;
        let code = response.status().as_u16();
        let grpc = end.grpc.is_some();
        if grpc {
            // Trailers-Only responses carry the status in the headers. Without one, a
            // response that is not 200 (a proxy's 503, a router's 404) failed with the
            // status gRPC maps its HTTP status to.
            if !end.grpc_status(response.headers()) && code != 200 {
                end.grpc_http_failure(code);
            }
            if code == 200 && crate::rpc::is_grpc(response.headers()) {
                if let Some(g) = end.grpc_mut() {
                    // A gRPC service took the call (a status read above may still refuse it).
                    g.answered = true;
                }
            }
            if let Some(g) = end.grpc_mut() {
                g.trailer_capture.clone_from(&self.capture);
            }
        }
        if !end.sampled {
            return;
        }
        let mut captured = Vec::new();
        if let Some(capture) = self.capture.as_deref() {
            capture
                .headers
                .capture_as(response.headers(), &capture.redacted, grpc, &mut captured);
        }
        // Recorded with the span's end, in one visit.
        end.head = Some(ResponseHead {
            code,
            version: response.version(),
            captured,
        });
    }
}

/// How a request is traced while its response is awaited.
pub(crate) enum Trace {
    /// A recorded span, handed to the response body.
    Span(ResponseState),
    /// No recorded span: the request's context (if any) is in effect while the inner
    /// service is called and polled, inside a span for log layers when asked for.
    Context {
        ambient: Option<Ambient>,
        log_span: Option<tracing::Span>,
    },
    /// The response came.
    Done,
}

impl Trace {
    /// Nothing of the caller's: an untrusted request the filter skips, or a call without
    /// a span.
    pub(crate) fn nothing() -> Self {
        Trace::Context {
            ambient: None,
            log_span: None,
        }
    }

    /// No recorded span: `ambient` is in effect instead, inside `log_span` if any.
    pub(crate) fn context(ambient: Ambient, log_span: Option<tracing::Span>) -> Self {
        Trace::Context {
            ambient: Some(ambient),
            log_span,
        }
    }
}

pin_project! {
    /// Response future of the server and client layers.
    pub struct ResponseFuture<F, M: Metering = Unmetered> {
        #[pin]
        inner: F,
        trace: Trace,
        // The server span's context, for the `traceresponse` header.
        traceresponse: Option<SpanContext>,
        // What the request's method says about the content of its response.
        asked: Asked,
        // The request's metrics, measured whether or not it has a span.
        measure: M,
    }

    impl<F, M: Metering> PinnedDrop for ResponseFuture<F, M> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Trace::Span(state) = std::mem::replace(this.trace, Trace::Done) {
                state.end.cancel("response future dropped before completion");
            }
            this.measure.cancel(false);
        }
    }
}

impl<F, M: Metering> std::fmt::Debug for ResponseFuture<F, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("traced", &matches!(self.trace, Trace::Span(_)))
            .finish_non_exhaustive()
    }
}

impl<F, M: Metering> ResponseFuture<F, M> {
    /// Calls the inner service (`call`) as the future will poll it: inside the request's
    /// span, or with the request's context in effect and inside `log_span`, so that spans
    /// and events of a service's synchronous `call` belong to the request too.
    #[inline(always)]
    pub(crate) fn new(
        call: impl FnOnce() -> F,
        trace: Trace,
        traceresponse: TraceResponse,
        measure: M,
        asked: Asked,
    ) -> Self {
        let inner = match &trace {
            Trace::Span(state) => state.end.span.in_scope(call),
            Trace::Context { ambient, log_span } => {
                let _entered = log_span.as_ref().map(tracing::Span::enter);
                match ambient {
                    Some(ambient) => with_ambient(ambient, call),
                    None => call(),
                }
            }
            Trace::Done => call(),
        };
        ResponseFuture {
            inner,
            trace,
            traceresponse: traceresponse.0,
            asked,
            measure,
        }
    }
}

/// The context a server sends back in a `traceresponse` header, if any.
pub(crate) struct TraceResponse(pub(crate) Option<SpanContext>);

impl TraceResponse {
    /// No `traceresponse` header (a client's response, or a server that sends none).
    pub(crate) const NONE: TraceResponse = TraceResponse(None);
}

impl<F, B, E, M> Future for ResponseFuture<F, M>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    E: Display + 'static,
    M: Metering,
{
    type Output = Result<Response<ResponseBody<B, M>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let result = match this.trace {
            Trace::Span(state) => {
                let _entered = state.end.span.enter();
                ready!(inner.poll(cx))
            }
            Trace::Context { ambient, log_span } => {
                let _entered = log_span.as_ref().map(tracing::Span::enter);
                match ambient {
                    Some(ambient) => ready!(with_ambient(ambient, || inner.poll(cx))),
                    None => ready!(inner.poll(cx)),
                }
            }
            Trace::Done => ready!(inner.poll(cx)),
        };
        let result = result.map(|mut response| {
            if let Some(cx) = this.traceresponse.take() {
                response
                    .headers_mut()
                    .insert(TRACERESPONSE, traceresponse_header_value(&cx));
            }
            response
        });
        let mut measure = std::mem::take(this.measure);
        match &result {
            Ok(response) => measure.on_response(
                response.status().as_u16(),
                response.version(),
                response.headers(),
            ),
            Err(error) => measure.fail(error_type(error)),
        }
        let asked = *this.asked;
        let content = |r: &Response<B>| carries_content(asked, r.status());
        let mut state = match std::mem::replace(this.trace, Trace::Done) {
            Trace::Span(state) => state,
            trace => {
                return Poll::Ready(result.map(|r| {
                    let content = content(&r);
                    // Only a measured body ends by its length: the others have nothing to end.
                    let declared = if measure.active() {
                        declared_length(r.headers(), r.body())
                    } else {
                        None
                    };
                    r.map(|body| {
                        let body = ResponseBody::new(body, None, measure, content)
                            .declared_length(declared);
                        match trace {
                            Trace::Context { ambient, log_span } if content && body.streams() => {
                                body.in_effect(ambient, log_span)
                            }
                            _ => body,
                        }
                    })
                }));
            }
        };
        Poll::Ready(match result {
            Ok(response) => {
                state.on_response(&response);
                let content = content(&response);
                let declared = declared_length(response.headers(), response.body());
                Ok(response.map(|body| {
                    ResponseBody::new(body, Some(state.end), measure, content)
                        .declared_length(declared)
                }))
            }
            Err(error) => {
                let message = if state.end.sampled {
                    error_message(&error)
                } else {
                    String::new()
                };
                state.end.fail(error_type_name(&error), message);
                Err(error)
            }
        })
    }
}
