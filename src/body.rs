//! The response body wrapper both layers return: the span lasts until the body ends.
//!
//! The span ends at end of stream (reading gRPC status from the trailers), on a body error
//! (status Error), or when the body is dropped before its end (status Error, `error.type`
//! `cancelled`, unless the response head already made it an error). A body that says it has
//! ended (`is_end_stream`) ends the span at once, since the server or client may drop it
//! without polling it again.

use std::borrow::Cow;
use std::fmt::Display;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tracing::Span;

use crate::classify::{grpc_code_is_error, Role, CANCELLED};
use crate::record::data::{Key, KeyValue, Status};
use crate::record::with_span_data;
use crate::semconv;

/// How a span ends, carried from the response future into the body.
pub(crate) struct SpanEnd {
    pub(crate) span: Span,
    pub(crate) role: Role,
    /// A recorder tracks the span and sampled it: attributes are worth recording.
    pub(crate) sampled: bool,
    /// A gRPC call: the status comes from `grpc-status`.
    pub(crate) grpc: bool,
    /// `grpc-status` was already read (from a Trailers-Only response's headers).
    pub(crate) grpc_status_seen: bool,
}

impl SpanEnd {
    /// Reads `grpc-status` and `grpc-message` from `headers` (response headers of a
    /// Trailers-Only response, or trailers) and records them; `false` if absent.
    pub(crate) fn grpc_status(&mut self, headers: &HeaderMap) -> bool {
        let Some(code) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i32>().ok())
        else {
            return false;
        };
        let message = headers
            .get("grpc-message")
            .map(|m| percent_encoding::percent_decode(m.as_bytes()).decode_utf8_lossy());
        self.record_grpc(code, message);
        true
    }

    fn record_grpc(&mut self, code: i32, message: Option<Cow<'_, str>>) {
        self.grpc_status_seen = true;
        self.span.record(semconv::RPC_GRPC_STATUS_CODE, code);
        if !grpc_code_is_error(self.role, code) || !self.sampled {
            return;
        }
        let description = match message {
            Some(m) if !m.is_empty() => m.into_owned(),
            _ => crate::classify::grpc_code_name(code)
                .unwrap_or("unknown gRPC status")
                .to_owned(),
        };
        let error_type = crate::classify::grpc_code_name(code)
            .map_or_else(|| Cow::Owned(code.to_string()), Cow::Borrowed);
        with_span_data(&self.span, |d| {
            d.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type));
            d.set_status(Status::error(description));
        });
    }

    /// The body ended normally, with `trailers` if it sent any.
    pub(crate) fn finish(mut self, trailers: Option<&HeaderMap>) {
        if self.grpc && !self.grpc_status_seen && !trailers.is_some_and(|t| self.grpc_status(t)) {
            // A gRPC response that ends without any status is UNKNOWN.
            self.record_grpc(2, Some(Cow::Borrowed("response ended without grpc-status")));
        }
    }

    /// The call failed with `error`: an `exception` event typed `E`, status Error.
    pub(crate) fn fail<E: Display + ?Sized>(self, exception_type: &'static str, error: &E) {
        if self.sampled {
            record_failure(
                &self.span,
                Cow::Borrowed(exception_type),
                exception_type,
                error.to_string(),
            );
        }
    }

    /// The call was abandoned before it completed: `what` says which part was dropped. An
    /// error already read from the response head (a 503, a gRPC status) is kept: a client
    /// that gives up on the body of an error response (a retry middleware does) did not
    /// cancel a successful call.
    pub(crate) fn cancel(self, what: &'static str) {
        if self.sampled {
            with_span_data(&self.span, |d| {
                let failed = d
                    .record
                    .attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == semconv::ERROR_TYPE);
                if failed {
                    return;
                }
                d.set_attribute(KeyValue::new(semconv::ERROR_TYPE, CANCELLED));
                d.set_status(Status::error(what));
            });
        }
        self.span.record(semconv::OTEL_STATUS_CODE, "error");
    }
}

/// Records `error.type`, an `exception` event and status Error in one visit to the span.
pub(crate) fn record_failure(
    span: &Span,
    error_type: Cow<'static, str>,
    exception_type: &'static str,
    message: String,
) {
    with_span_data(span, |d| {
        d.set_attribute(KeyValue::new(
            Key::from_static_str(semconv::ERROR_TYPE),
            error_type,
        ));
        d.record_exception(Some(Cow::Borrowed(exception_type)), message, Vec::new());
    });
}

pin_project! {
    /// A response body that keeps its request's span open until the body ends.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        end: Option<SpanEnd>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // Ends already seen (last frame, trailers, error, or an empty body) took `end`;
            // anything left was abandoned.
            if let Some(end) = this.project().end.take() {
                end.cancel("response body dropped before its end");
            }
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("traced", &self.end.is_some())
            .finish()
    }
}

impl<B: Body> ResponseBody<B> {
    pub(crate) fn new(inner: B, mut end: Option<SpanEnd>) -> Self {
        // An empty body is never polled: its span ends with the response head.
        if inner.is_end_stream() {
            if let Some(end) = end.take() {
                end.finish(None);
            }
        }
        ResponseBody { inner, end }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: Display,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let result = {
            // Spans created while the body streams are children of the request's span.
            let _entered = this.end.as_ref().map(|e| e.span.enter());
            ready!(this.inner.as_mut().poll_frame(cx))
        };
        match &result {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(end) = this.end.take() {
                        end.finish(Some(trailers));
                    }
                } else if this.inner.is_end_stream() {
                    if let Some(end) = this.end.take() {
                        end.finish(None);
                    }
                }
            }
            Some(Err(error)) => {
                if let Some(end) = this.end.take() {
                    end.fail(std::any::type_name::<B::Error>(), error);
                }
            }
            None => {
                if let Some(end) = this.end.take() {
                    end.finish(None);
                }
            }
        }
        Poll::Ready(result)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
