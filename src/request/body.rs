//! The response body wrapper both layers return: the span lasts until the body ends.
//!
//! The span ends at end of stream (reading gRPC status from the trailers), on a body error
//! (status Error), or when the body is dropped before its end (status Error, `error.type`
//! `cancelled`, unless the response head already made it an error; a gRPC call past its
//! `grpc-timeout` is DEADLINE_EXCEEDED instead, and a gRPC call whose status came in the
//! response headers has ended already). A body that says it has ended (`is_end_stream`), or
//! that is never sent (a response to HEAD, a 1xx, 204 or 304, a 2xx to CONNECT), ends the
//! span at once, since the server or client may drop it without polling it; so does an HTTP
//! body dropped once it has sent the length it declared (`content-length`).

use std::borrow::Cow;
use std::fmt::Display;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tracing::Span;

use crate::classify::{
    self, grpc_code_is_error, grpc_code_label, http_status_is_error, Abandoned, AnswerSoFar, Role,
    CANCELLED, CANCELLED_CODE,
};
use crate::config::{QueryRedaction, ResponseCapture};
use crate::metrics::{Metering, Unmetered};
use crate::record::{with_ambient, with_span_data, Ambient, SpanData};
use crate::request::attrs;
use crate::request::error::{error_message, error_type, error_type_name};
use crate::rpc::{self, GrpcMethods, MessageCounter};
use crate::semconv;
use crate::span::{Event, Key, KeyValue, Status, Value};

/// gRPC status codes the layers produce themselves.
const UNKNOWN_CODE: i32 = 2;
const DEADLINE_EXCEEDED_CODE: i32 = 4;
const UNIMPLEMENTED_CODE: i32 = 12;

/// The event on an HTTP client span whose response body was dropped unread.
const UNREAD_BODY_EVENT: &str = "response body dropped before its end";

/// How a span ends, carried from the response future into the body.
///
/// What the response head and the trailers say is kept here and written to the span in
/// one visit when the call ends, together with the end time.
pub(crate) struct SpanEnd {
    pub(crate) span: Span,
    pub(crate) role: Role,
    /// A recorder tracks the span and sampled it: attributes are worth recording.
    pub(crate) sampled: bool,
    /// The response head, once it arrived (sampled spans only).
    pub(crate) head: Option<ResponseHead>,
    /// What only gRPC calls need, kept out of line so HTTP responses carry less.
    pub(crate) grpc: Option<Box<GrpcEnd>>,
    /// The layer's query redaction, applied to URLs in error messages.
    redaction: Arc<QueryRedaction>,
}

/// The gRPC part of a call's end: the status comes from `grpc-status`.
#[derive(Default)]
pub(crate) struct GrpcEnd {
    /// `grpc-status` was already read (from a Trailers-Only response's headers).
    status_seen: bool,
    /// When the call's `grpc-timeout` runs out. A call abandoned after it exceeded its
    /// deadline rather than being cancelled.
    pub(crate) deadline: Option<Instant>,
    /// Response metadata to capture from the trailers too.
    pub(crate) trailer_capture: Option<Arc<ResponseCapture>>,
    /// Counts response messages into `rpc.message` events.
    pub(crate) messages: Option<MessageCounter>,
    /// The status to record: code and message.
    status: Option<(i32, Option<String>)>,
    /// The service answered the call as a gRPC method it serves: a gRPC response head, or a
    /// `grpc-status` other than UNIMPLEMENTED.
    pub(crate) answered: bool,
    /// The call was refused as unknown: UNIMPLEMENTED, or an HTTP 404.
    refused: bool,
    /// A server span named after the called method: the methods the layer recognizes, to
    /// name it `_OTHER` when the method is not one of them (see [`rpc::GrpcMethods`]).
    pub(crate) methods: Option<Arc<GrpcMethods>>,
    /// The application routed the call to a route of its own (an axum route without
    /// parameters): the method is the application's, not the caller's.
    pub(crate) routed: bool,
}

/// What a response head says about the call.
pub(crate) struct ResponseHead {
    pub(crate) code: u16,
    pub(crate) version: http::Version,
    /// Captured headers (metadata).
    pub(crate) captured: Vec<KeyValue>,
}

/// How the call ended, beyond what the response said.
enum Ending<'a> {
    /// The body ended, with these trailers.
    Finished(Option<&'a HeaderMap>),
    /// The call failed: an exception of this type with this message.
    Failed(Option<&'static str>, String),
    /// The call was abandoned, and ends as the response said.
    AsAnswered,
    /// The call was abandoned and cancelled: which part was dropped.
    Cancelled(&'static str),
    /// An HTTP client dropped the response body before its end, having what it wanted.
    Unread,
}

impl SpanEnd {
    /// The end of `span`; a gRPC call's details are set by the layer afterwards.
    pub(crate) fn new(
        span: Span,
        role: Role,
        sampled: bool,
        grpc: bool,
        redaction: &Arc<QueryRedaction>,
    ) -> Self {
        SpanEnd {
            span,
            role,
            sampled,
            head: None,
            grpc: grpc.then(Box::default),
            redaction: redaction.clone(),
        }
    }

    /// The gRPC part of a gRPC call.
    pub(crate) fn grpc_mut(&mut self) -> Option<&mut GrpcEnd> {
        self.grpc.as_deref_mut()
    }

    /// gRPC: reads `grpc-status` and `grpc-message` from `headers` (response headers of a
    /// Trailers-Only response, or trailers) and keeps them; `false` if absent.
    pub(crate) fn grpc_status(&mut self, headers: &HeaderMap) -> bool {
        let Some(code) = rpc::parse_status(headers) else {
            return false;
        };
        let message = rpc::parse_message(headers);
        self.set_grpc_status(code, message);
        if let Some(grpc) = self.grpc_mut() {
            grpc.answered = true;
            grpc.refused = code == UNIMPLEMENTED_CODE;
        }
        true
    }

    /// A gRPC response head whose HTTP status is not 200 and that carries no
    /// `grpc-status`: the call failed with the status gRPC maps `code` to.
    pub(crate) fn grpc_http_failure(&mut self, code: u16) {
        let description = match http::StatusCode::from_u16(code)
            .ok()
            .and_then(|c| c.canonical_reason())
        {
            Some(reason) => format!("HTTP {code} {reason}"),
            None => format!("HTTP {code}"),
        };
        let status = rpc::status_from_http(code);
        self.set_grpc_status(status, Some(description));
        if let Some(grpc) = self.grpc_mut() {
            grpc.refused = status == UNIMPLEMENTED_CODE;
        }
    }

    fn set_grpc_status(&mut self, code: i32, message: Option<String>) {
        let sampled = self.sampled;
        if let Some(grpc) = self.grpc_mut() {
            grpc.status_seen = true;
            if sampled {
                grpc.status = Some((code, message));
            }
        }
    }

    /// gRPC: the call has no status yet.
    fn grpc_status_missing(&self) -> bool {
        self.grpc.as_ref().is_some_and(|g| !g.status_seen)
    }

    /// A chunk of the response body went by.
    fn on_data<D: bytes::Buf>(&mut self, data: &D) {
        if let Some(counter) = self.grpc.as_mut().and_then(|g| g.messages.as_mut()) {
            counter.on_data(data, &self.span);
        }
    }

    /// The body ended normally, with `trailers` if it sent any.
    pub(crate) fn finish(mut self, trailers: Option<&HeaderMap>) {
        if self.grpc_status_missing() && !trailers.is_some_and(|t| self.grpc_status(t)) {
            // A gRPC response that ends without any status is UNKNOWN.
            self.set_grpc_status(
                UNKNOWN_CODE,
                Some("response ended without grpc-status".to_owned()),
            );
        }
        self.close(Ending::Finished(trailers));
    }

    /// The call failed with an error: an `exception` event, status Error. A gRPC status
    /// that is an error names it in `error.type` rather than the exception's type.
    pub(crate) fn fail(mut self, exception_type: Option<&'static str>, message: String) {
        let exceeded = (self.grpc.as_ref())
            .is_some_and(|g| classify::deadline_exceeded(g.status_seen, g.deadline));
        if exceeded {
            self.set_grpc_status(DEADLINE_EXCEEDED_CODE, None);
        }
        self.close(Ending::Failed(exception_type, message));
    }

    /// The call was abandoned before it completed: `what` says which part was dropped. It
    /// ends as [`classify::abandoned`] says, as its metrics do.
    pub(crate) fn cancel(mut self, what: &'static str) {
        let answer = match &self.grpc {
            Some(g) => AnswerSoFar::Grpc {
                status_seen: g.status_seen,
                deadline: g.deadline,
            },
            None => AnswerSoFar::Http {
                status: self.head.as_ref().map(|h| h.code),
            },
        };
        match classify::abandoned(self.role, answer) {
            Abandoned::AsAnswered => self.close(Ending::AsAnswered),
            Abandoned::DeadlineExceeded => {
                let message = Some("deadline exceeded".to_owned());
                self.set_grpc_status(DEADLINE_EXCEEDED_CODE, message);
                self.close(Ending::AsAnswered);
            }
            Abandoned::Cancelled => self.close(Ending::Cancelled(what)),
        }
    }

    /// The response body was dropped before its end. An HTTP client that reads only the
    /// status does that on every call: its span ends with the status the response earned,
    /// and an event notes the unread body. A gRPC call (the stream was cancelled) and a
    /// server (the caller went away) were cancelled.
    pub(crate) fn body_dropped(self) {
        if self.role == Role::Client && self.grpc.is_none() {
            self.close(Ending::Unread);
        } else {
            self.cancel("response body dropped before its end");
        }
    }

    /// Writes everything known about the call to the span, in one visit, and marks its end.
    fn close(mut self, ending: Ending<'_>) {
        if !self.sampled {
            return;
        }
        let head = self.head.take();
        let role = self.role;
        let grpc = self.grpc.is_some();
        let (grpc_status, trailer_capture) = match self.grpc.as_mut() {
            Some(g) => (g.status.take(), g.trailer_capture.take()),
            None => (None, None),
        };
        let methods = self
            .grpc
            .as_mut()
            .filter(|g| !g.routed)
            .and_then(|g| Some((g.methods.take()?, g.answered, g.refused)));
        with_span_data(&self.span, |d| {
            if let Some((methods, answered, refused)) = methods {
                name_method(d, &methods, answered, refused);
            }
            if let Some(head) = head {
                record_head(d, role, grpc, head);
            }
            let ending = match ending {
                Ending::Failed(exception_type, message) => {
                    // Error text quotes URLs (reqwest's `for url (…)`): no secret in them
                    // goes further than `url.full` would let it.
                    let message = match attrs::redact_text(&message, &self.redaction) {
                        Cow::Borrowed(_) => message,
                        Cow::Owned(redacted) => redacted,
                    };
                    d.set_attribute(KeyValue::new(
                        Key::from_static_str(semconv::ERROR_TYPE),
                        exception_type.unwrap_or("_OTHER"),
                    ));
                    d.record_exception(exception_type.map(Cow::Borrowed), message, Vec::new());
                    Ending::Failed(exception_type, String::new())
                }
                other => other,
            };
            // A gRPC status, known or concluded (a deadline), names the error more precisely.
            if let Some((code, message)) = grpc_status {
                let message = message.map(|m| match attrs::redact_text(&m, &self.redaction) {
                    Cow::Borrowed(_) => m,
                    Cow::Owned(redacted) => redacted,
                });
                record_grpc_status(d, role, code, message);
            }
            match ending {
                Ending::Finished(trailers) => {
                    if let (Some(trailers), Some(capture)) = (trailers, trailer_capture) {
                        capture_trailers(d, &capture, trailers);
                    }
                }
                Ending::Failed(..) => {}
                Ending::Unread => d.add_event(Event::new(
                    UNREAD_BODY_EVENT,
                    crate::record::timestamp::now(),
                    Vec::new(),
                    0,
                )),
                Ending::AsAnswered => {}
                Ending::Cancelled(what) => {
                    if grpc {
                        d.set_attribute(KeyValue::new(
                            semconv::RPC_GRPC_STATUS_CODE,
                            i64::from(CANCELLED_CODE),
                        ));
                    }
                    if classify::cancelled_is_error(role, grpc) {
                        d.set_attribute(KeyValue::new(semconv::ERROR_TYPE, CANCELLED));
                        d.set_status(Status::error(what));
                    } else {
                        // A gRPC server whose caller gave up: CANCELLED, status unset, even
                        // where the handler logged an error on the way.
                        d.clear_implied_error();
                    }
                }
            }
            d.end_now();
        });
    }
}

/// A gRPC server span keeps the method's name only if the layer recognizes the method
/// (configured, or learned before), or learns it now: the service answered this call
/// without refusing it, and the bounds of [`GrpcMethods`] let it in. Otherwise the caller
/// chose the name, and it becomes `_OTHER` (span name `grpc`), with the caller's text kept
/// in `rpc.method_original` only. The metrics name the call by the same rule.
fn name_method(d: &mut SpanData, methods: &GrpcMethods, answered: bool, refused: bool) {
    let method = &d.record.name;
    if methods.recognizes(method) || (answered && !refused && methods.learn(method).is_some()) {
        return;
    }
    let original = std::mem::replace(&mut d.record.name, Cow::Borrowed("grpc"));
    d.record.attributes.retain(|kv| {
        let key = kv.key.as_str();
        key != semconv::RPC_SERVICE && key != semconv::RPC_METHOD
    });
    d.set_attribute(KeyValue::new(semconv::RPC_METHOD, "_OTHER"));
    d.set_attribute(KeyValue::new(
        semconv::RPC_METHOD_ORIGINAL,
        original.into_owned(),
    ));
}

/// The response head's attributes and, by the HTTP rules for `role`, its status.
fn record_head(d: &mut SpanData, role: Role, grpc: bool, head: ResponseHead) {
    let code = head.code;
    // gRPC spans carry the HTTP status only when it says something (not 200).
    if !grpc || code != 200 {
        match d.record.facts.as_mut() {
            // An HTTP server span: a fact, like the request's attributes.
            Some(facts) => facts.set_status_code(code),
            None => d.set_attribute(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(code),
            )),
        }
    }
    if !grpc && http_status_is_error(role, code) {
        d.set_attribute(KeyValue::new(
            Key::from_static_str(semconv::ERROR_TYPE),
            code.to_string(),
        ));
        d.fail();
    } else if !grpc && role == Role::Server && code >= 400 {
        // A 4xx is the caller's error: the conventions leave the server span's status unset,
        // even where the handler logged an error about the request.
        d.clear_implied_error();
    }
    if role == Role::Client {
        let version = attrs::version(head.version);
        // An HTTP client span keeps it as a fact.
        let kept = (d.record.facts.as_mut()).is_some_and(|f| f.set_protocol_version(version));
        if !kept {
            d.set_attribute(KeyValue::new(semconv::NETWORK_PROTOCOL_VERSION, version));
        }
    }
    // Most responses capture nothing: skip making (and dropping) an iterator.
    if head.captured.is_empty() {
        return;
    }
    for kv in head.captured {
        d.set_attribute(kv);
    }
}

fn record_grpc_status(d: &mut SpanData, role: Role, code: i32, message: Option<String>) {
    d.set_attribute(KeyValue::new(
        semconv::RPC_GRPC_STATUS_CODE,
        i64::from(code),
    ));
    if grpc_code_is_error(role, code) {
        d.set_attribute(KeyValue::new(semconv::ERROR_TYPE, grpc_code_label(code)));
        match message {
            Some(message) if !message.is_empty() => d.set_status(Status::error(message)),
            // The code is in `rpc.grpc.status_code`.
            _ => d.fail(),
        }
    } else if role == Role::Server {
        // The conventions leave a server span's status unset for every other code, even
        // where the handler logged an error on the way to it (NOT_FOUND, INVALID_ARGUMENT).
        d.clear_implied_error();
    }
}

/// Records captured metadata from the trailers, adding to what the response headers gave.
fn capture_trailers(d: &mut SpanData, capture: &ResponseCapture, trailers: &HeaderMap) {
    let mut captured = Vec::new();
    capture
        .headers
        .capture_as(trailers, &capture.redacted, true, &mut captured);
    for kv in captured {
        let existing = d
            .record
            .attributes
            .iter_mut()
            .find(|a| a.key == kv.key)
            .map(|a| &mut a.value);
        match (existing, kv.value) {
            (
                Some(Value::Array(opentelemetry::Array::String(old))),
                Value::Array(opentelemetry::Array::String(new)),
            ) => {
                old.extend(new);
            }
            (_, value) => d.set_attribute(KeyValue::new(kv.key, value)),
        }
    }
}

/// The context of a request without a recorded span, as the response future had it in
/// effect (see `Trace::Context`): the caller's or the decided context, inside a span for log
/// layers when asked for.
struct InEffect {
    ambient: Option<Ambient>,
    log_span: Option<Span>,
}

impl InEffect {
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let _entered = self.log_span.as_ref().map(Span::enter);
        match &self.ambient {
            Some(ambient) => with_ambient(ambient, f),
            None => f(),
        }
    }
}

/// What a request's method says about the content of its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Asked {
    /// HEAD: the response never carries content.
    Head,
    /// CONNECT: a 2xx response turns the connection into a tunnel instead.
    Connect,
    Other,
}

impl Asked {
    pub(crate) fn of(method: &http::Method) -> Self {
        if method == http::Method::HEAD {
            Asked::Head
        } else if method == http::Method::CONNECT {
            Asked::Connect
        } else {
            Asked::Other
        }
    }
}

/// Whether a response carries content (RFC 9110, section 6.4.1): not when it answers a
/// HEAD request, nor with status 1xx, 204 or 304, nor a 2xx to CONNECT (a tunnel follows).
/// Servers drop the body of one that does not, unread: for such a response that is its
/// normal end, not a cancellation.
pub(crate) fn carries_content(asked: Asked, status: http::StatusCode) -> bool {
    !(asked == Asked::Head
        || (asked == Asked::Connect && status.is_success())
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED)
}

pin_project! {
    /// A response body that keeps its request's span open until the body ends, and ends the
    /// request's measurement (a metered layer's) with it.
    pub struct ResponseBody<B, M: Metering = Unmetered> {
        #[pin]
        inner: B,
        end: Option<SpanEnd>,
        measure: M,
        // Bytes of the declared length (see `declared_length`) not sent yet.
        // `u64::MAX` when none was declared: a sentinel rather than an `Option`, as every
        // response body is moved several times on its way out and the size shows.
        unsent: u64,
        // A request without a recorded span: its context, in effect while the body streams.
        // Boxed: few bodies stream, and every body is moved several times.
        context: Option<Box<InEffect>>,
    }

    impl<B, M: Metering> PinnedDrop for ResponseBody<B, M> {
        fn drop(this: Pin<&mut Self>) {
            // Ends already seen (last frame, trailers, error, or an empty body) took `end`;
            // anything left was abandoned (unless a Trailers-Only response had ended it),
            // or was sent whole, to its declared length.
            let this = this.project();
            let sent = *this.unsent == 0;
            if let Some(end) = this.end.take() {
                if sent {
                    end.finish(None);
                } else {
                    end.body_dropped();
                }
            }
            if sent {
                this.measure.finish(None);
            }
            this.measure.cancel(true);
        }
    }
}

impl<B: std::fmt::Debug, M: Metering> std::fmt::Debug for ResponseBody<B, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("traced", &self.end.is_some())
            .finish()
    }
}

impl<B: Body, M: Metering> ResponseBody<B, M> {
    /// `content`: the response carries content (see [`carries_content`]); without it, the
    /// body is never sent, whatever it holds.
    pub(crate) fn new(inner: B, mut end: Option<SpanEnd>, mut measure: M, content: bool) -> Self {
        // A body that is never sent or never polled (an empty one) ends its span with the
        // response head.
        if (end.is_some() || measure.active()) && (!content || inner.is_end_stream()) {
            if let Some(end) = end.take() {
                end.finish(None);
            }
            measure.finish(None);
        }
        ResponseBody {
            inner,
            end,
            measure,
            unsent: u64::MAX,
            context: None,
        }
    }

    /// What the response future had in effect for a request without a recorded span, kept
    /// in effect while the body streams: a body that calls other services as it goes (an
    /// event stream, a gRPC server stream) propagates the request's context, as its handler
    /// does, and an unsampled request stays unsampled downstream.
    ///
    /// Only for a body that streams: one that knows its size (a buffered JSON answer) holds
    /// what it sends already, and keeping the context costs every unsampled request.
    pub(crate) fn in_effect(mut self, ambient: Option<Ambient>, log_span: Option<Span>) -> Self {
        if ambient.is_some() || log_span.is_some() {
            self.context = Some(Box::new(InEffect { ambient, log_span }));
        }
        self
    }

    /// The body streams: it does not know its size (an empty one knows it is 0).
    pub(crate) fn streams(&self) -> bool {
        self.inner.size_hint().exact().is_none()
    }

    /// Takes `declared` (see [`declared_length`]) as the body's length: once that many bytes
    /// went out, a drop is its end.
    pub(crate) fn declared_length(mut self, declared: Option<u64>) -> Self {
        if self.end.is_some() || self.measure.active() {
            self.unsent = declared.unwrap_or(u64::MAX);
        }
        self
    }
}

/// The length a streamed response declares in `content-length`, which ends it too: hyper's
/// HTTP/1 server stops polling a body once it has sent that many bytes and drops it, so a
/// stream that does not say it has ended (a file download) is then dropped whole, not
/// cancelled. `None` for a body that knows its size (it says when it has ended; and the
/// header is then not looked up on every request) and for gRPC, whose status comes after
/// the last byte, in trailers.
pub(crate) fn declared_length<B: Body>(headers: &HeaderMap, body: &B) -> Option<u64> {
    if body.size_hint().exact().is_some() || body.is_end_stream() || rpc::is_grpc(headers) {
        return None;
    }
    let value = headers.get(http::header::CONTENT_LENGTH)?;
    value.to_str().ok()?.trim().parse().ok()
}

impl<B, M> Body for ResponseBody<B, M>
where
    B: Body,
    M: Metering,
    B::Error: Display + 'static,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if this.end.is_none() && !this.measure.active() {
            // Untraced and unmeasured, or already ended: frames pass straight through.
            return match this.context {
                Some(context) => context.run(|| this.inner.poll_frame(cx)),
                None => this.inner.poll_frame(cx),
            };
        }
        let result = {
            // Spans created while the body streams are children of the request's span.
            let _entered = this.end.as_ref().map(|end| end.span.enter());
            let inner = this.inner.as_mut();
            ready!(match this.context {
                Some(context) => context.run(|| inner.poll_frame(cx)),
                None => inner.poll_frame(cx),
            })
        };
        let ended = match &result {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if let Some(end) = this.end.as_mut() {
                        end.on_data(data);
                    }
                    if *this.unsent != u64::MAX {
                        *this.unsent = this.unsent.saturating_sub(data.remaining() as u64);
                    }
                }
                match frame.trailers_ref() {
                    Some(trailers) => Some(Ok(Some(trailers))),
                    None if this.inner.is_end_stream() => Some(Ok(None)),
                    None => None,
                }
            }
            Some(Err(error)) => Some(Err(error)),
            None => Some(Ok(None)),
        };
        match ended {
            Some(Ok(trailers)) => {
                if let Some(end) = this.end.take() {
                    end.finish(trailers);
                }
                this.measure.finish(trailers);
            }
            Some(Err(error)) => {
                if let Some(end) = this.end.take() {
                    end.fail(error_type_name(error), error_message(error));
                }
                this.measure.fail(error_type(error));
            }
            None => {}
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
