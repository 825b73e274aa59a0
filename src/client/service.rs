use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::{self, Display};
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use http_body::Body;
use tower::Service;

use crate::baggage::Baggage;
use crate::classify::Role;
use crate::client::layer::ClientConfig;
use crate::config::RequestHead;
use crate::context::SpanContext;
use crate::metrics::{Measured, Metering, Unmetered};
use crate::propagation::{Injector, NoOverwrite, Propagator, TRACEPARENT, TRACESTATE};
use crate::record::facts::{HttpClientFacts, RequestFacts};
use crate::record::{current_parent, decide_under_current, with_pending, Decision, SpanStart};
use crate::request::attrs::{self, AuthorityParts, UrlFull};
use crate::request::body::{Asked, ResponseBody, SpanEnd};
use crate::request::future::{ResponseFuture, ResponseState, Trace, TraceResponse};
use crate::rpc::{self, full_method as grpc_full_method, is_grpc, Direction, MessageCounter};
use crate::semconv;
use crate::span::{KeyValue, SpanKind};

/// The service [`ClientLayer`](crate::client::ClientLayer) wraps around an inner client.
pub struct ClientTrace<S, M: Metering = Unmetered> {
    inner: S,
    config: Arc<ClientConfig>,
    metering: PhantomData<fn() -> M>,
}

impl<S: Clone, M: Metering> Clone for ClientTrace<S, M> {
    fn clone(&self) -> Self {
        ClientTrace {
            inner: self.inner.clone(),
            config: self.config.clone(),
            metering: PhantomData,
        }
    }
}

impl<S, M: Metering> ClientTrace<S, M> {
    pub(crate) fn new(inner: S, config: Arc<ClientConfig>) -> Self {
        ClientTrace {
            inner,
            config,
            metering: PhantomData,
        }
    }

    /// The wrapped client.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped client, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner client.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, M: Metering> fmt::Debug for ClientTrace<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTrace")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The host and port a request goes to: the URI's, else the `Host` header's. Read once per
/// call: parsing the authority is not free.
type Target<'a> = Option<(&'a str, Option<u16>)>;

/// Writes `cx` and `baggage` into `headers` with the configured propagator, leaving
/// headers the caller set alone unless the layer overwrites them.
pub(crate) fn inject(
    config: &ClientConfig,
    headers: &mut HeaderMap,
    cx: &SpanContext,
    baggage: &Baggage,
) {
    if config.overwrite {
        config.common.propagator.inject(cx, baggage, headers);
    } else {
        inject_beside(&*config.common.propagator, cx, baggage, headers);
    }
}

/// Writes `cx` and `baggage` into `carrier` with `propagator`, leaving entries the caller set
/// alone: with a `traceparent` of the caller's, no `tracestate` of ours either. The caller's
/// `traceparent` names another trace than `cx`, and W3C Trace Context keeps the vendor state
/// of `tracestate` with the `traceparent` it came with.
pub(crate) fn inject_beside(
    propagator: &dyn Propagator,
    cx: &SpanContext,
    baggage: &Baggage,
    carrier: &mut dyn Injector,
) {
    let callers_trace =
        carrier.contains_header(&TRACEPARENT) && !carrier.contains_header(&TRACESTATE);
    propagator.inject(cx, baggage, &mut NoOverwrite::new(carrier));
    if callers_trace {
        carrier.remove(TRACESTATE.as_str());
    }
}

/// An outgoing call, as the client layers start it.
pub(crate) struct ClientCall {
    /// The span's end, when a recorder tracks the call.
    pub(crate) state: Option<ResponseState>,
    /// The context to send, when the call goes to a host that may receive it: the span's,
    /// or (untraced) the current one.
    pub(crate) propagate: Option<(SpanContext, Baggage)>,
    /// The call's metrics, when the layer records them.
    pub(crate) measure: Option<Measured>,
}

impl ClientCall {
    /// Injects the context to send, if any, into `headers`.
    pub(crate) fn inject(&mut self, config: &ClientConfig, headers: &mut HeaderMap) {
        if let Some((cx, baggage)) = self.propagate.take() {
            inject(config, headers, &cx, &baggage);
        }
    }
}

/// Starts the client span of the request `head` (unless the filter skips it, the sampler
/// leaves it out, or no recorder sees it) and says what to inject: the one place both client
/// layers (Tower and reqwest) create their spans. `metered`: the layer may record metrics.
#[inline]
pub(crate) fn start_call(
    config: &ClientConfig,
    head: &RequestHead<'_>,
    metered: bool,
) -> ClientCall {
    let traced = config.common.traces(head);
    let authority = head
        .uri
        .authority()
        .map(|a| attrs::authority_parts(a.as_str()));
    let target: Target<'_> = attrs::server_host_port_with(authority.as_ref(), head.headers);
    let (state, propagate) = if traced {
        trace_call(config, head, authority.as_ref(), target)
    } else {
        // Pass on the context of the span the call would hang under: the current one, or
        // the request being served.
        (None, current_parent())
    };
    let propagates = config.propagates_to(target.map(|(host, _)| host));
    ClientCall {
        state,
        propagate: propagate.filter(|_| propagates),
        measure: if metered {
            measure(config, head, traced)
        } else {
            None
        },
    }
}

/// Starts measuring the call, when the layer records metrics and measures it.
#[cfg(feature = "metrics")]
fn measure(config: &ClientConfig, head: &RequestHead<'_>, traced: bool) -> Option<Measured> {
    let metrics = config.common.measured(traced)?;
    let grpc = config.grpc_only || is_grpc(head.headers);
    let scheme = attrs::scheme(head.uri);
    let server = attrs::server_host_port(head.uri, head.headers)
        .map(|(host, port)| (host, port.unwrap_or_else(|| attrs::default_port(scheme))));
    let series = Some(match server {
        // `rpc.client.call.duration` names the server too, when the call does.
        _ if grpc => metrics.client_call_series(head.uri.path(), server),
        Some((host, port)) => metrics.series(Some(host), port, None),
        None => metrics.series(None, 0, None),
    });
    Some(Measured::start(
        metrics,
        crate::metrics::Start {
            request: crate::metrics::RequestCode::new(head.method, scheme, head.version),
            series,
            grpc_path: grpc.then(|| head.uri.path()),
            grpc_methods: None,
            grpc_deadline: grpc.then(|| rpc::deadline(head.headers)).flatten(),
            service: None,
        },
    ))
}

#[cfg(not(feature = "metrics"))]
fn measure(_: &ClientConfig, _: &RequestHead<'_>, _: bool) -> Option<Measured> {
    None
}

/// The span part of [`start_call`]: the span's end, when one is recorded, and the context
/// the call carries.
fn trace_call(
    config: &ClientConfig,
    head: &RequestHead<'_>,
    authority: Option<&AuthorityParts<'_>>,
    target: Target<'_>,
) -> (Option<ResponseState>, Option<(SpanContext, Baggage)>) {
    let grpc = config.grpc_only || is_grpc(head.headers);
    let name = || -> Cow<'static, str> {
        match &config.common.span_name {
            Some(name) => name(head),
            None if grpc => Cow::Owned(grpc_full_method(head.uri.path()).to_owned()),
            None => Cow::Borrowed(attrs::span_method(head.method)),
        }
    };

    // Decide: the recorder's sampler, under the span the call would hang under, so that an
    // unsampled call skips the span.
    let (parent, decision) = decide_under_current(&SpanKind::Client, name, || grpc);
    let Some(Decision {
        context,
        attributes,
    }) = decision
    else {
        // No recorder: pass on what the request being served carried, if anything.
        return (None, parent);
    };
    let (parent, baggage) = match parent {
        Some((cx, baggage)) => (Some(cx), baggage),
        None => (None, Baggage::new()),
    };
    let sampled = context.is_sampled();
    if !sampled && !config.common.log_spans {
        // Not recorded, so no span; the callee still learns the trace and the decision.
        return (None, Some((context, baggage)));
    }

    // Build the span.
    let mut seed = RefCell::new(Some(SpanStart {
        kind: Some(SpanKind::Client),
        name: Some(name()),
        attributes,
        service_name: config.common.service_name.clone(),
        decided: Some(context.clone()),
        skip_fields: true,
        ..SpanStart::default()
    }));
    if let Some(start) = seed.get_mut().as_mut().filter(|_| sampled) {
        add_request(start, config, head, authority, target, grpc);
    }
    let span = with_pending(&seed, || client_span(grpc, head, target));
    // Checked in place: the seed is usually taken, and moving the empty cell out would still
    // copy it.
    if seed.borrow().is_some() {
        // The recorder filtered the span out: as without a recorder.
        return (None, parent.map(|cx| (cx, baggage)));
    }

    // Wrap: what the response future and body keep to end the span.
    let state = response_state(config, head, span, sampled, grpc);
    (Some(state), Some((context, baggage)))
}

/// What the response future and body keep of a recorded call, to end its span.
fn response_state(
    config: &ClientConfig,
    head: &RequestHead<'_>,
    span: tracing::Span,
    sampled: bool,
    grpc: bool,
) -> ResponseState {
    let mut end = SpanEnd::new(
        span,
        Role::Client,
        sampled,
        grpc,
        &config.common.redacted_query_params,
    );
    if let Some(g) = end.grpc_mut() {
        g.deadline = rpc::deadline(head.headers);
        if config.message_events && sampled {
            g.messages = Some(MessageCounter::new(Direction::Received));
        }
    }
    ResponseState {
        end,
        capture: config.common.response_capture.clone(),
    }
}

/// Adds the request's attributes (or, for HTTP, its raw facts: see `record::facts`) to the
/// seed of a sampled span, in place: a seed is a few hundred bytes.
fn add_request(
    seed: &mut SpanStart,
    config: &ClientConfig,
    head: &RequestHead<'_>,
    authority: Option<&AuthorityParts<'_>>,
    target: Target<'_>,
    grpc: bool,
) {
    if grpc {
        seed.attributes.reserve(12);
        grpc_request_attributes(head, target, &mut seed.attributes);
    } else {
        let http = http_request_facts(head, target, authority, config, &mut seed.attributes);
        seed.facts = Some(RequestFacts::Client(http));
    }
    config.common.request_headers.capture_as(
        head.headers,
        &config.common.redacted_headers,
        grpc,
        &mut seed.attributes,
    );
}

/// The call's `tracing` span. Its fields are for log layers; the recorder takes its
/// attributes from the seed.
fn client_span(grpc: bool, head: &RequestHead<'_>, target: Target<'_>) -> tracing::Span {
    let host = target.map_or("", |(host, _)| host);
    let path = head.uri.path();
    if grpc {
        tracing::info_span!(
            target: "tracewire::client",
            "gRPC call",
            rpc.method = %grpc_full_method(path),
            server.address = %host,
        )
    } else {
        tracing::info_span!(
            target: "tracewire::client",
            "HTTP call",
            http.request.method = %attrs::span_method(head.method),
            server.address = %host,
            url.path = %path,
        )
    }
}

impl<S, ReqBody, ResBody, M> Service<Request<ReqBody>> for ClientTrace<S, M>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Display + 'static,
    ResBody: Body,
    ResBody::Error: Display + 'static,
    M: Metering,
{
    type Response = Response<ResponseBody<ResBody, M>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let mut call = start_call(config, &RequestHead::from(&req), M::ON);
        call.inject(config, req.headers_mut());
        let measure = M::start(|| call.measure.take());
        let trace = match call.state {
            Some(state) => Trace::Span(state),
            None => Trace::nothing(),
        };
        let asked = Asked::of(req.method());
        ResponseFuture::new(
            || self.inner.call(req),
            trace,
            TraceResponse::NONE,
            measure,
            asked,
        )
    }
}

/// The facts of the HTTP client semantic conventions known from the request. What does not
/// fit the facts (an unknown method's name, text too long to keep inline) goes to `out` as
/// attributes.
fn http_request_facts(
    head: &RequestHead<'_>,
    target: Target<'_>,
    authority: Option<&AuthorityParts<'_>>,
    config: &ClientConfig,
    out: &mut Vec<KeyValue>,
) -> HttpClientFacts {
    let (method, known) = attrs::method(head.method);
    if !known {
        out.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD_ORIGINAL,
            head.method.as_str().to_owned(),
        ));
    }
    let mut facts = HttpClientFacts {
        method,
        ..HttpClientFacts::default()
    };
    if let Some((host, port)) = target {
        let port = port.unwrap_or_else(|| attrs::default_port(attrs::scheme(head.uri)));
        match facts.text.push(host) {
            Some(host) => facts.host = Some((host, port)),
            None => {
                out.push(KeyValue::new(semconv::SERVER_ADDRESS, host.to_owned()));
                out.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
            }
        }
    }
    let full = UrlFull {
        uri: head.uri,
        headers: head.headers,
        redacted_query_params: &config.common.redacted_query_params,
    };
    let query = full.query();
    let parts = full.parts(authority, query.as_deref());
    match facts.text.push_parts(&parts) {
        Some(url) => facts.url = Some(url),
        None => out.push(KeyValue::new(semconv::URL_FULL, parts.concat())),
    }
    facts
}

fn grpc_request_attributes(head: &RequestHead<'_>, target: Target<'_>, out: &mut Vec<KeyValue>) {
    out.push(KeyValue::new(semconv::RPC_SYSTEM, "grpc"));
    let full = grpc_full_method(head.uri.path());
    if let Some((service, method)) = full.rsplit_once('/') {
        out.push(KeyValue::new(semconv::RPC_SERVICE, service.to_owned()));
        out.push(KeyValue::new(semconv::RPC_METHOD, method.to_owned()));
    }
    server_address(head, target, out);
}

fn server_address(head: &RequestHead<'_>, target: Target<'_>, out: &mut Vec<KeyValue>) {
    if let Some((host, port)) = target {
        out.push(KeyValue::new(semconv::SERVER_ADDRESS, host.to_owned()));
        let port = port.unwrap_or_else(|| attrs::default_port(attrs::scheme(head.uri)));
        out.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
    }
}
