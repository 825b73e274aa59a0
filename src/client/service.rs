use std::borrow::Cow;
use std::fmt::{self, Display};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower::Service;

use crate::attrs::{self, UrlFull};
use crate::baggage::Baggage;
use crate::body::{ResponseBody, SpanEnd};
use crate::classify::Role;
use crate::client::layer::ClientConfig;
use crate::config::RequestHead;
use crate::context::SpanContext;
use crate::future::{ResponseFuture, ResponseState};
use crate::propagation::NoOverwrite;
use crate::record::data::{KeyValue, SpanKind};
use crate::record::{ambient, with_span_data, SpanStart};
use crate::rpc::{self, full_method as grpc_full_method, Direction, MessageCounter};
use crate::semconv;
use crate::server::is_grpc;

/// The service [`ClientLayer`](crate::client::ClientLayer) wraps around an inner client.
#[derive(Clone)]
pub struct ClientTrace<S> {
    inner: S,
    config: Arc<ClientConfig>,
}

impl<S> ClientTrace<S> {
    pub(crate) fn new(inner: S, config: Arc<ClientConfig>) -> Self {
        ClientTrace { inner, config }
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

impl<S: fmt::Debug> fmt::Debug for ClientTrace<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTrace")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The host a request goes to: the URI's, else the `Host` header's.
fn target_host<B>(req: &Request<B>) -> Option<&str> {
    attrs::server_host_port(req.uri(), req.headers()).map(|(host, _)| host)
}

/// The context to propagate from the current span (or, without one, the request being
/// served without a recorded span).
pub(crate) fn current_propagation() -> Option<(SpanContext, Baggage)> {
    let current = tracing::Span::current();
    with_span_data(&current, |d| {
        (d.record.span_context.clone(), d.baggage.clone())
    })
    .or_else(|| ambient().and_then(|a| Some((a.context?, a.baggage))))
}

pub(crate) fn inject<B>(
    config: &ClientConfig,
    req: &mut Request<B>,
    cx: &SpanContext,
    baggage: &Baggage,
) {
    let headers = req.headers_mut();
    if config.overwrite {
        config.common.propagator.inject(cx, baggage, headers);
    } else {
        config
            .common
            .propagator
            .inject(cx, baggage, &mut NoOverwrite::new(headers));
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClientTrace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Display + 'static,
    ResBody: Body,
    ResBody::Error: Display,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let propagate = config.propagates_to(target_host(&req));
        if !config.common.traces(&RequestHead::from(&req)) {
            if propagate {
                if let Some((cx, baggage)) = current_propagation() {
                    inject(config, &mut req, &cx, &baggage);
                }
            }
            return ResponseFuture::new(self.inner.call(req), None, None);
        }

        let grpc = config.grpc_only || is_grpc(req.headers());
        let name: Cow<'static, str> = match &config.common.span_name {
            Some(name) => name(&RequestHead::from(&req)),
            None if grpc => Cow::Owned(grpc_full_method(req.uri().path()).to_owned()),
            None => Cow::Borrowed(attrs::span_method(req.method())),
        };
        let mut start = SpanStart::new()
            .kind(SpanKind::Client)
            .name(name)
            .skip_fields();
        if let Some(service) = &config.common.service_name {
            start = start.service_name(service.clone());
        }
        let method = attrs::span_method(req.method());
        let host = target_host(&req).unwrap_or("");
        let path = req.uri().path();
        let (span, started) = start.create_traced(|| {
            if grpc {
                tracing::info_span!(
                    target: "tracewire::client",
                    "gRPC call",
                    rpc.method = grpc_full_method(path),
                    server.address = host,
                    rpc.grpc.status_code = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                )
            } else {
                tracing::info_span!(
                    target: "tracewire::client",
                    "HTTP call",
                    http.request.method = method,
                    server.address = host,
                    url.path = path,
                    http.response.status_code = tracing::field::Empty,
                    otel.status_code = tracing::field::Empty,
                )
            }
        });

        let Some(started) = started else {
            // No recorder: pass on what the request being served carried, if anything.
            if propagate {
                if let Some((cx, baggage)) = current_propagation() {
                    inject(config, &mut req, &cx, &baggage);
                }
            }
            return ResponseFuture::new(self.inner.call(req), None, None);
        };
        if started.sampled {
            with_span_data(&span, |d| {
                let mut attributes = Vec::with_capacity(12);
                if grpc {
                    grpc_request_attributes(&req, &mut attributes);
                } else {
                    http_request_attributes(&req, config, &mut attributes);
                }
                config.common.request_headers.capture_as(
                    req.headers(),
                    &config.common.redacted_headers,
                    grpc,
                    &mut attributes,
                );
                d.extend_attributes(attributes);
            });
        }
        if propagate {
            inject(config, &mut req, &started.context, &started.baggage);
        }
        let mut end = SpanEnd::new(span, Role::Client, started.sampled, grpc);
        if grpc {
            end.deadline = rpc::deadline(req.headers());
            if config.message_events && started.sampled {
                end.messages = Some(MessageCounter::new(Direction::Received));
            }
        }
        let state = ResponseState {
            end,
            traceresponse: None,
            capture: config.common.response_capture.clone(),
        };
        ResponseFuture::new(self.inner.call(req), Some(state), None)
    }
}

fn http_request_attributes<B>(req: &Request<B>, config: &ClientConfig, out: &mut Vec<KeyValue>) {
    let (method, known) = attrs::method(req.method());
    out.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, method));
    if !known {
        out.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD_ORIGINAL,
            req.method().as_str().to_owned(),
        ));
    }
    server_address(req, out);
    let full = UrlFull {
        uri: req.uri(),
        headers: req.headers(),
        redacted_query_params: &config.common.redacted_query_params,
    };
    out.push(KeyValue::new(semconv::URL_FULL, full.to_string()));
}

fn grpc_request_attributes<B>(req: &Request<B>, out: &mut Vec<KeyValue>) {
    out.push(KeyValue::new(semconv::RPC_SYSTEM, "grpc"));
    let full = grpc_full_method(req.uri().path());
    if let Some((service, method)) = full.rsplit_once('/') {
        out.push(KeyValue::new(semconv::RPC_SERVICE, service.to_owned()));
        out.push(KeyValue::new(semconv::RPC_METHOD, method.to_owned()));
    }
    server_address(req, out);
}

fn server_address<B>(req: &Request<B>, out: &mut Vec<KeyValue>) {
    if let Some((host, port)) = attrs::server_host_port(req.uri(), req.headers()) {
        out.push(KeyValue::new(semconv::SERVER_ADDRESS, host.to_owned()));
        let port = port.unwrap_or_else(|| attrs::default_port(attrs::scheme(req.uri())));
        out.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
    }
}
