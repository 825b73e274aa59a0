use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::fmt::{self, Display};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Extensions, Request, Response};
use http_body::Body;
use tower::Service;

use crate::baggage::Baggage;
use crate::classify::Role;
use crate::config::RequestHead;
use crate::context::SpanContext;
use crate::metrics::{Measured, Metering, Unmetered};
use crate::propagation::Extracted;
use crate::record::facts::HttpServerFacts;
use crate::record::facts::RequestFacts;
use crate::record::{decide, with_pending, Ambient, Decision, SpanStart};
use crate::request::attrs::{self, SpanHeaders};
use crate::request::body::{Asked, ResponseBody, SpanEnd};
use crate::request::future::{ResponseFuture, ResponseState, Trace, TraceResponse};
use crate::rpc::{self, full_method as grpc_full_method, Direction, MessageCounter};
use crate::semconv;
use crate::server::layer::ServerConfig;
use crate::span::{Key, KeyValue, Link, SpanKind};

/// The service [`ServerLayer`](crate::server::ServerLayer) wraps around an inner service.
pub struct ServerTrace<S, M: Metering = Unmetered> {
    inner: S,
    config: Arc<ServerConfig>,
    route: Arc<RouteCache>,
    metering: PhantomData<fn() -> M>,
}

/// What a service learns of the route it serves. axum gives each route its own layered
/// service, which then sees the same template on every request.
#[derive(Default)]
struct RouteCache {
    names: attrs::FirstRoute,
    /// The metrics series of the first route seen.
    #[cfg(feature = "metrics")]
    series: std::sync::OnceLock<Arc<crate::metrics::Series>>,
}

impl<S: Clone, M: Metering> Clone for ServerTrace<S, M> {
    fn clone(&self) -> Self {
        ServerTrace {
            inner: self.inner.clone(),
            config: self.config.clone(),
            route: self.route.clone(),
            metering: PhantomData,
        }
    }
}

impl<S, M: Metering> ServerTrace<S, M> {
    pub(crate) fn new(inner: S, config: Arc<ServerConfig>) -> Self {
        ServerTrace {
            inner,
            config,
            route: Arc::default(),
            metering: PhantomData,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// A request's kind and name.
struct Named<'r> {
    grpc: bool,
    /// The route template axum matched (HTTP).
    route: Option<&'r str>,
    name: Cow<'static, str>,
    /// The route, when interned (see [`attrs::FirstRoute`]).
    interned_route: Option<&'static str>,
    /// The path the client sent (see [`request_path`]), looked up once.
    path: &'r str,
}

/// What the caller sent, as far as this edge trusts it.
struct Caller {
    /// The parent of the request's span.
    parent: Option<SpanContext>,
    baggage: Baggage,
    /// On a public edge, the context the caller claimed: the new trace links to it.
    claimed: Option<SpanContext>,
}

impl Caller {
    fn of(extracted: Extracted, untrusted: bool) -> Self {
        if untrusted {
            Caller {
                parent: None,
                baggage: Baggage::new(),
                claimed: extracted.span_context,
            }
        } else {
            Caller {
                parent: extracted.span_context,
                baggage: extracted.baggage,
                claimed: None,
            }
        }
    }

    /// The caller's context in effect while the handler runs, inside `log_span` if any: a
    /// request without a recorded span still propagates it.
    fn in_effect(self, log_span: Option<tracing::Span>) -> Trace {
        let ambient = Ambient {
            context: self.parent,
            baggage: self.baggage,
        };
        Trace::context(ambient, log_span)
    }
}

/// A request as the steps of [`ServerTrace::trace`] read it. The sampler may ask for the
/// span's name and kind or not, and an unsampled request needs neither: each part is worked
/// out when first asked for, and once.
struct Incoming<'r, 'h, B> {
    config: &'r ServerConfig,
    route: &'r RouteCache,
    req: &'r Request<B>,
    head: &'r RequestHead<'h>,
    headers: OnceCell<SpanHeaders<'r>>,
    grpc: OnceCell<bool>,
}

impl<'r, B> Incoming<'r, '_, B> {
    /// The headers a recorded span reads.
    fn headers(&self) -> SpanHeaders<'r> {
        *self
            .headers
            .get_or_init(|| SpanHeaders::of(self.req.headers()))
    }

    fn grpc(&self) -> bool {
        *self.grpc.get_or_init(|| {
            self.config.grpc_only
                || rpc::is_grpc_request(self.req.method(), self.headers().content_type)
        })
    }

    /// `{method} {route}`, or `{method}`, or a gRPC call's `package.Service/Method`, or the
    /// configured name.
    fn named(&self) -> Named<'r> {
        let (req, grpc) = (self.req, self.grpc());
        let route = if grpc {
            None
        } else {
            matched_route(req.extensions())
        };
        let interned = route.and_then(|route| self.route.names.route_name(req.method(), route));
        let name: Cow<'static, str> = match (&self.config.common.span_name, interned) {
            (Some(name), _) => name(self.head),
            (None, _) if grpc => Cow::Owned(grpc_full_method(req.uri().path()).to_owned()),
            (None, Some((name, _))) => Cow::Borrowed(name),
            (None, None) => {
                let method = attrs::span_method(req.method());
                match route {
                    Some(route) => Cow::Owned(format!("{method} {route}")),
                    None => Cow::Borrowed(method),
                }
            }
        };
        Named {
            grpc,
            route,
            name,
            interned_route: interned.map(|(_, route)| route),
            path: if grpc {
                req.uri().path()
            } else {
                request_path(req)
            },
        }
    }

    /// What the recorder is to make of the span: its kind, name, parent, links, and the
    /// request's attributes (or, for HTTP, its raw facts: see `record::facts`). Inlined, so
    /// that the seed (a few hundred bytes) is built where the caller keeps it.
    #[inline(always)]
    fn seed(
        &self,
        named: Named<'_>,
        caller: Caller,
        context: SpanContext,
        mut attributes: Vec<KeyValue>,
    ) -> SpanStart {
        let (config, req) = (self.config, self.req);
        let mut facts = None;
        if context.is_sampled() {
            if named.grpc {
                attributes.reserve(16);
                grpc_request_attributes(req, &mut attributes);
            } else {
                facts = Some(RequestFacts::Server(http_request_facts(
                    req,
                    self.headers(),
                    config,
                    named.interned_route,
                    named.route,
                    named.path,
                    &mut attributes,
                )));
            }
            config.common.request_headers.capture_as(
                req.headers(),
                &config.common.redacted_headers,
                named.grpc,
                &mut attributes,
            );
        }
        SpanStart {
            new_root: caller.parent.is_none(),
            remote_parent: caller.parent,
            baggage: Some(caller.baggage),
            // Not `collect`ed from the option: that costs a call even when there is none.
            links: match caller.claimed {
                Some(claimed) => vec![Link::new(claimed)],
                None => Vec::new(),
            },
            service_name: config.common.service_name.clone(),
            kind: Some(SpanKind::Server),
            name: Some(named.name),
            attributes,
            decided: Some(context),
            skip_fields: true,
            facts,
        }
    }
}

impl<S, M: Metering> ServerTrace<S, M> {
    /// Starts measuring the request, when the layer records metrics and measures it.
    #[cfg(feature = "metrics")]
    fn measure<B>(&self, req: &Request<B>, traced: bool) -> Option<Measured> {
        let config = &*self.config;
        let metrics = config.common.measured(traced)?;
        let service = config.common.service_name.as_ref();
        let content_type = req.headers().get(http::header::CONTENT_TYPE);
        let grpc = config.grpc_only || rpc::is_grpc_request(req.method(), content_type);
        let series = (!grpc).then(|| match matched_route(req.extensions()) {
            Some(route) => match self.route.series.get() {
                Some(series) if series.is_route(route) => series.clone(),
                _ => {
                    let series = metrics.series(Some(route), 0, service);
                    let _ = self.route.series.set(series.clone());
                    series
                }
            },
            None => metrics.series(None, 0, service),
        });
        Some(Measured::start(
            metrics,
            crate::metrics::Start {
                request: crate::metrics::RequestCode::new(
                    req.method(),
                    attrs::scheme(req.uri()),
                    req.version(),
                ),
                series,
                grpc_path: grpc.then(|| req.uri().path()),
                grpc_methods: grpc.then_some(&config.grpc_methods),
                grpc_deadline: grpc.then(|| rpc::deadline(req.headers())).flatten(),
                service,
            },
        ))
    }

    #[cfg(not(feature = "metrics"))]
    fn measure<B>(&self, _: &Request<B>, _: bool) -> Option<Measured> {
        None
    }
}

impl<S: fmt::Debug, M: Metering> fmt::Debug for ServerTrace<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTrace")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The route template axum matched, when axum routed the request.
fn matched_route(extensions: &Extensions) -> Option<&str> {
    #[cfg(feature = "axum")]
    if let Some(path) = extensions.get::<axum::extract::MatchedPath>() {
        return Some(path.as_str());
    }
    let _ = extensions;
    None
}

/// The path the client sent: a router nested under a prefix sees its requests without it
/// (axum strips it from the URI), and axum keeps the URI as sent in `OriginalUri`.
fn request_path<B>(req: &Request<B>) -> &str {
    #[cfg(feature = "axum")]
    if let Some(original) = req.extensions().get::<axum::extract::OriginalUri>() {
        return original.0.path();
    }
    req.uri().path()
}

/// The peer's socket address, from axum's `ConnectInfo`, tonic's `TcpConnectInfo` (feature
/// `grpc`) or a bare `SocketAddr` extension.
fn peer_addr(extensions: &Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    #[cfg(feature = "grpc")]
    if let Some(addr) = extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
    {
        return Some(addr);
    }
    extensions.get::<SocketAddr>().copied()
}

impl<S, ReqBody, ResBody, M> Service<Request<ReqBody>> for ServerTrace<S, M>
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let head = RequestHead::from(&req);
        // Trust is decided first: on an untrusted edge nothing the caller sent reaches the
        // handler's context, whichever way the request goes on (filtered, unsampled, no
        // recorder).
        let untrusted = config.untrusted.as_ref().is_some_and(|u| u(&head));
        let traced = config.common.traces(&head);
        let measure = M::start(|| self.measure(&req, traced));
        let (trace, traceresponse) = if traced {
            self.trace(&req, &head, untrusted)
        } else {
            (self.untraced(&req, untrusted), None)
        };
        let asked = Asked::of(req.method());
        ResponseFuture::new(
            || self.inner.call(req),
            trace,
            TraceResponse(traceresponse),
            measure,
            asked,
        )
    }
}

impl<S, M: Metering> ServerTrace<S, M> {
    /// A request the filter skips: no span, and on a trusted edge the caller's context
    /// stays in effect, so that the handler's outgoing calls still propagate it.
    fn untraced<B>(&self, req: &Request<B>, untrusted: bool) -> Trace {
        if untrusted {
            return Trace::nothing();
        }
        let extracted = self.config.common.propagator.extract(req.headers());
        Caller::of(extracted, false).in_effect(None)
    }

    /// Decides whether the recorder records the request and, if it does, starts its span.
    /// Also returns the context for a `traceresponse` header, when the layer sends one.
    fn trace<B>(
        &self,
        req: &Request<B>,
        head: &RequestHead<'_>,
        untrusted: bool,
    ) -> (Trace, Option<SpanContext>) {
        let config = &*self.config;
        let caller = Caller::of(config.common.propagator.extract(req.headers()), untrusted);
        let request = Incoming {
            config,
            route: &self.route,
            req,
            head,
            headers: OnceCell::new(),
            grpc: OnceCell::new(),
        };

        // Decide: the recorder's sampler, before any span exists, so that an unsampled
        // request skips the span (and its name, unless the sampler reads names).
        let decision = decide(
            caller.parent.as_ref(),
            &SpanKind::Server,
            || request.named().name,
            || request.grpc(),
        );
        let Some(Decision {
            context,
            attributes,
        }) = decision
        else {
            // No recorder.
            let log_span = config.common.log_spans.then(|| {
                let named = request.named();
                server_span(named.grpc, req, named.route, named.path)
            });
            return (caller.in_effect(log_span), None);
        };
        let traceresponse = config.traceresponse.then(|| context.clone());
        let sampled = context.is_sampled();
        if !sampled && !config.common.log_spans {
            // Not recorded, so no span: the decided context stands in for it, and the
            // recorder's descendants of the handler continue it, unsampled.
            let ambient = Ambient {
                context: Some(context),
                baggage: caller.baggage,
            };
            return (Trace::context(ambient, None), traceresponse);
        }

        // Build the span.
        let named = request.named();
        let (grpc, route, path) = (named.grpc, named.route, named.path);
        let seed = RefCell::new(Some(request.seed(named, caller, context, attributes)));
        let span = with_pending(&seed, || server_span(grpc, req, route, path));
        // Checked in place: the seed is usually taken, and moving the empty cell out would
        // still copy it.
        if seed.borrow().is_some() {
            // The recorder filtered the span out: as without a recorder, the caller's
            // context is in effect, and no header names a span that will not be reported.
            let seed = seed.into_inner().unwrap_or_default();
            let caller = Caller {
                parent: seed.remote_parent,
                baggage: seed.baggage.unwrap_or_default(),
                claimed: None,
            };
            return (caller.in_effect(Some(span)), None);
        }

        // Wrap the future: what it and the body keep to end the span.
        (
            Trace::Span(self.response_state(req, span, sampled, grpc)),
            traceresponse,
        )
    }

    /// What the response future and body keep of a recorded request, to end its span.
    fn response_state<B>(
        &self,
        req: &Request<B>,
        span: tracing::Span,
        sampled: bool,
        grpc: bool,
    ) -> ResponseState {
        let config = &*self.config;
        let mut end = SpanEnd::new(
            span,
            Role::Server,
            sampled,
            grpc,
            &config.common.redacted_query_params,
        );
        if let Some(g) = end.grpc_mut() {
            g.deadline = rpc::deadline(req.headers());
            if config.message_events && sampled {
                g.messages = Some(MessageCounter::new(Direction::Sent));
            }
            if sampled && config.common.span_name.is_none() {
                g.methods = Some(config.grpc_methods.clone());
                // A route the application wrote out in full names the method, as for HTTP;
                // one with parameters would let the caller's path through.
                g.routed = matched_route(req.extensions()).is_some_and(|r| !r.contains('{'));
            }
        }
        ResponseState {
            end,
            capture: config.common.response_capture.clone(),
        }
    }
}

/// The request's `tracing` span. Its fields are for log layers; the recorder takes its
/// attributes from the seed.
fn server_span<B>(grpc: bool, req: &Request<B>, route: Option<&str>, path: &str) -> tracing::Span {
    if grpc {
        return tracing::info_span!(
            target: "tracewire::server",
            "gRPC request",
            rpc.method = %grpc_full_method(path),
        );
    }
    let method = attrs::span_method(req.method());
    match route {
        Some(route) => tracing::info_span!(
            target: "tracewire::server",
            "HTTP request",
            http.request.method = %method,
            http.route = %route,
            url.path = %path,
        ),
        None => tracing::info_span!(
            target: "tracewire::server",
            "HTTP request",
            http.request.method = %method,
            url.path = %path,
        ),
    }
}

/// The facts of the HTTP server semantic conventions known from the request. What does not
/// fit the facts (an unknown method's name, the query, a route that is not interned, text too
/// long to keep inline) goes to `out` as attributes.
fn http_request_facts<B>(
    req: &Request<B>,
    headers: SpanHeaders<'_>,
    config: &ServerConfig,
    interned_route: Option<&'static str>,
    route: Option<&str>,
    path: &str,
    out: &mut Vec<KeyValue>,
) -> HttpServerFacts {
    let (method, known) = attrs::method(req.method());
    if !known {
        out.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD_ORIGINAL,
            req.method().as_str().to_owned(),
        ));
    }
    let uri = req.uri();
    let scheme = attrs::scheme(uri);
    let mut facts = HttpServerFacts {
        method,
        scheme,
        version: attrs::version(req.version()),
        route: interned_route,
        peer: peer_addr(req.extensions()),
        ..HttpServerFacts::default()
    };
    facts.path = facts.text.push(path);
    if facts.path.is_none() {
        out.push(KeyValue::new(semconv::URL_PATH, path.to_owned()));
    }
    if config.common.record_query {
        if let Some(query) = uri.query() {
            let query = attrs::redact_query(query, &config.common.redacted_query_params);
            out.push(KeyValue::new(semconv::URL_QUERY, query.into_owned()));
        }
    }
    if let (None, Some(route)) = (interned_route, route) {
        out.push(KeyValue::new(semconv::HTTP_ROUTE, route.to_owned()));
    }
    let host_header = headers.host.and_then(|host| host.to_str().ok());
    match (uri.authority(), host_header) {
        // The `Host` header as sent: the reporter's thread splits it, and only when a
        // reporter reads attributes.
        (None, Some(header)) if facts.text.fits(header) => {
            let default_port = attrs::default_port(scheme);
            facts.host_header = facts.text.push(header).map(|h| (h, default_port));
        }
        _ => {
            if let Some((host, port)) = attrs::server_host_port_of(uri, headers.host) {
                let port = port.unwrap_or_else(|| attrs::default_port(scheme));
                match facts.text.push(host) {
                    Some(host) => facts.host = Some((host, port)),
                    None => {
                        out.push(KeyValue::new(semconv::SERVER_ADDRESS, host.to_owned()));
                        out.push(KeyValue::new(
                            Key::from_static_str(semconv::SERVER_PORT),
                            i64::from(port),
                        ));
                    }
                }
            }
        }
    }
    if let Some(agent) = headers.user_agent {
        // Checked as UTF-8 first: user agents are ASCII, and the lossy walk is slower.
        let agent = match std::str::from_utf8(agent.as_bytes()) {
            Ok(agent) => Cow::Borrowed(agent),
            Err(_) => String::from_utf8_lossy(agent.as_bytes()),
        };
        match facts.text.push(&agent) {
            Some(agent) => facts.user_agent = Some(agent),
            None => out.push(KeyValue::new(
                semconv::USER_AGENT_ORIGINAL,
                agent.into_owned(),
            )),
        }
    }
    facts
}

/// Attributes of the RPC semantic conventions for a gRPC server call.
fn grpc_request_attributes<B>(req: &Request<B>, out: &mut Vec<KeyValue>) {
    out.push(KeyValue::new(semconv::RPC_SYSTEM, "grpc"));
    let full = grpc_full_method(req.uri().path());
    if let Some((service, method)) = full.rsplit_once('/') {
        out.push(KeyValue::new(semconv::RPC_SERVICE, service.to_owned()));
        out.push(KeyValue::new(semconv::RPC_METHOD, method.to_owned()));
    }
    out.push(KeyValue::new(
        semconv::NETWORK_PROTOCOL_VERSION,
        attrs::version(req.version()),
    ));
    server_address(req, attrs::scheme(req.uri()), out);
    if let Some(peer) = peer_addr(req.extensions()) {
        out.push(KeyValue::new(
            semconv::NETWORK_PEER_ADDRESS,
            peer.ip().to_string(),
        ));
        out.push(KeyValue::new(
            semconv::NETWORK_PEER_PORT,
            i64::from(peer.port()),
        ));
    }
}

fn server_address<B>(req: &Request<B>, scheme: &str, out: &mut Vec<KeyValue>) {
    if let Some((host, port)) = attrs::server_host_port(req.uri(), req.headers()) {
        out.push(KeyValue::new(semconv::SERVER_ADDRESS, host.to_owned()));
        let port = port.unwrap_or_else(|| attrs::default_port(scheme));
        out.push(KeyValue::new(
            Key::from_static_str(semconv::SERVER_PORT),
            i64::from(port),
        ));
    }
}
