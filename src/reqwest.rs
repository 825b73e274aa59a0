//! Client spans for reqwest, through reqwest-middleware.
//!
//! [`TracingMiddleware`] is the reqwest counterpart of the Tower [`ClientLayer`], with the
//! same span, attributes, status rules, injection and settings: each request sent gets a
//! `SpanKind::Client` span named `{method}`, a child of the current span, with
//! `http.request.method`, `server.address`, `server.port`, `url.full` (credentials and
//! configured query values redacted), `http.response.status_code`,
//! `network.protocol.version` and `error.type`; its context goes out in the request headers
//! (only towards the hosts of [`propagate_to`](TracingMiddleware::propagate_to), when set).
//! 4xx and 5xx responses are Error; a failed send is Error with an `exception` event.
//!
//! The span ends when the response body ends (read to its end, failed, or dropped before
//! its end): the middleware hands back a `reqwest::Response` whose body is wrapped, built
//! again from the `http::Response` with the same status, headers, extensions and final URL.
//!
//! # Retries
//!
//! Put the tracing middleware **after** a retry middleware (inside it) to get one span per
//! attempt, each with its own context sent to the server, so the server's span is a child of
//! the attempt that reached it. From the second attempt on, the span carries
//! `http.request.resend_count` (1 on the second attempt, 2 on the third, …). The middleware
//! counts the attempts itself, in a [`SendCount`] it keeps in the request's `Extensions`:
//! reqwest-middleware gives each logical request one `Extensions` that a retry middleware
//! passes to every attempt, and exposes no attempt number of its own.
//!
//! ```no_run
//! use std::time::Duration;
//! use reqwest_retry::{policies::ExponentialBackoff, RetryTransientMiddleware};
//! use tracewire::reqwest::TracingMiddleware;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let retries = ExponentialBackoff::builder()
//!     .retry_bounds(Duration::from_millis(10), Duration::from_secs(1))
//!     .build_with_max_retries(3);
//! let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(RetryTransientMiddleware::new_with_policy(retries))
//!     .with(TracingMiddleware::new().service_name("checkout"))
//!     .build();
//! let stock = http
//!     .get("http://inventory.internal/items/42")
//!     .send()
//!     .await?
//!     .text()
//!     .await?;
//! # drop(stock);
//! # Ok(())
//! # }
//! ```
//!
//! # Redirects
//!
//! reqwest follows redirects inside the client, below the middleware: a request and the
//! redirects it follows make one span, with the first URL and the last response's status.
//! reqwest sends the redirected requests with the same headers (it drops only credentials
//! when the host changes), so the context and baggage injected for the first host also reach
//! the hosts it redirects to, whatever [`propagate_to`](TracingMiddleware::propagate_to)
//! says. Where that matters, build the `reqwest::Client` with a `redirect::Policy` that does
//! not follow redirects to other hosts (or `Policy::none()`).
//!
//! With no recorder installed there is no span, but the middleware still passes on the
//! context of the request being served, so traces stay connected.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Extensions, Uri};
use reqwest::{Request, Response, ResponseBuilderExt};
use reqwest_middleware::{Middleware, Next};
use tracing::Instrument;

use crate::client::{client_builder_methods, start_call, ClientConfig, ClientLayer};
use crate::config::{common_builder_methods, Common, RequestHead};
use crate::metrics::{Measured, Metering, Unmetered};
use crate::record::{error_chain, with_span_data};
use crate::request::body::{carries_content, Asked, ResponseBody};
use crate::request::future::ResponseState;
use crate::semconv;
use crate::span::KeyValue;

/// Traces requests sent through a `reqwest_middleware::ClientWithMiddleware`: one
/// `SpanKind::Client` span per attempt, its context injected into the request headers.
///
/// Settings are those of [`ClientLayer`] (which converts into this middleware). See the
/// [module docs](crate::reqwest).
#[derive(Clone, Default)]
pub struct TracingMiddleware {
    config: Arc<ClientConfig>,
}

impl TracingMiddleware {
    /// A middleware with the defaults: the process default propagator (W3C Trace Context
    /// and Baggage unless `OTEL_PROPAGATORS`, through [`otlp::init`](crate::otlp), or
    /// [`propagation::set_global_default`](crate::propagation::set_global_default) chose
    /// another before this middleware was built), injected to every host, headers the
    /// caller set left alone.
    pub fn new() -> Self {
        Self::default()
    }

    fn common_mut(&mut self) -> &mut Common {
        &mut Arc::make_mut(&mut self.config).common
    }

    fn client_config_mut(&mut self) -> &mut ClientConfig {
        Arc::make_mut(&mut self.config)
    }

    common_builder_methods!();

    client_builder_methods!();

    /// Records the request metrics of every request (`http.client.request.duration`)
    /// through `provider`; see [`metrics`](crate::metrics). Without it nothing is measured.
    #[cfg(feature = "metrics")]
    pub fn metrics<P>(mut self, provider: &P) -> Self
    where
        P: opentelemetry::metrics::MeterProvider + ?Sized + 'static,
    {
        self.client_config_mut().common.metrics =
            Some(Arc::new(crate::metrics::LayerMetrics::client(provider)));
        self
    }
}

impl<M: Metering> From<ClientLayer<M>> for TracingMiddleware {
    /// The middleware with the layer's settings.
    fn from(layer: ClientLayer<M>) -> Self {
        TracingMiddleware {
            config: layer.config().clone(),
        }
    }
}

impl fmt::Debug for TracingMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingMiddleware")
            .field("common", &self.config.common)
            .field("propagate_to", &self.config.propagate_to)
            .field("overwrite", &self.config.overwrite)
            .finish()
    }
}

/// How many times [`TracingMiddleware`] has sent a logical request, kept in the request's
/// `Extensions` to number the attempts of a retry middleware.
///
/// Each request sent through `RequestBuilder::send` has `Extensions` of its own. Callers that
/// reuse one `Extensions` for several requests (`execute_with_extensions`) should remove it
/// between requests, or the later ones count as resends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendCount(u32);

impl SendCount {
    /// Attempts sent so far.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Middleware for TracingMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        req: Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Pin<Box<dyn Future<Output = reqwest_middleware::Result<Response>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.send(req, extensions, next))
    }
}

impl TracingMiddleware {
    async fn send<'a>(
        &self,
        mut req: Request,
        extensions: &'a mut Extensions,
        next: Next<'a>,
    ) -> reqwest_middleware::Result<Response> {
        let sent = extensions.get::<SendCount>().map_or(0, |c| c.0);
        extensions.insert(SendCount(sent.saturating_add(1)));

        let config = &*self.config;
        let Some(uri) = request_uri(&req) else {
            // A URL `http` cannot represent: sent untraced, as reqwest would send it.
            return next.run(req, extensions).await;
        };
        let mut call = start_call(
            config,
            &RequestHead {
                method: req.method(),
                uri: &uri,
                version: req.version(),
                headers: req.headers(),
                extensions: &*extensions,
            },
            true,
        );
        call.inject(config, req.headers_mut());
        let measure = call.measure.take();
        let Some(state) = call.state else {
            let Some(measure) = measure else {
                return next.run(req, extensions).await;
            };
            // Measured, not traced.
            let mut pending = Pending(None, Some(measure));
            let result = next.run(req, extensions).await;
            return match (result, pending.1.take()) {
                (Ok(response), measure) => Ok(traced_response(None, measure, response)),
                (Err(error), measure) => {
                    if let Some(measure) = measure {
                        measure.fail(error_type(&error));
                    }
                    Err(error)
                }
            };
        };
        if sent > 0 && state.end.sampled {
            with_span_data(&state.end.span, |d| {
                d.set_attribute(KeyValue::new(
                    semconv::HTTP_REQUEST_RESEND_COUNT,
                    i64::from(sent),
                ));
            });
        }

        let span = state.end.span.clone();
        let mut pending = Pending(Some(state), measure);
        let result = next.run(req, extensions).instrument(span).await;
        let (Some(state), measure) = (pending.0.take(), pending.1.take()) else {
            return result;
        };
        match result {
            Ok(response) => Ok(traced_response(Some(state), measure, response)),
            Err(error) => {
                if let Some(measure) = measure {
                    measure.fail(error_type(&error));
                }
                failed(state, &error);
                Err(error)
            }
        }
    }
}

/// The request's URL as a `Uri` for the hooks and attributes: the whole URL, else its
/// origin alone (`http` refuses a few URLs that `url` accepts, such as very long ones).
fn request_uri(req: &Request) -> Option<Uri> {
    let url = req.url();
    Uri::try_from(url.as_str())
        .ok()
        .or_else(|| Uri::try_from(url.origin().ascii_serialization()).ok())
}

/// The span and the measurement of a request in flight; ended as cancelled if the request
/// is dropped.
struct Pending(Option<ResponseState>, Option<Measured>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            state
                .end
                .cancel("request dropped before the response arrived");
        }
        if let Some(measure) = self.1.take() {
            measure.cancel(false);
        }
    }
}

/// Records the response head and hands the span and the measurement to the response body.
fn traced_response(
    state: Option<ResponseState>,
    mut measure: Option<Measured>,
    response: Response,
) -> Response {
    let url = response.url().clone();
    let response = http::Response::<reqwest::Body>::from(response);
    if let Some(measure) = &mut measure {
        measure.on_response(
            response.status().as_u16(),
            response.version(),
            response.headers(),
        );
    }
    let end = state.map(|mut state| {
        state.on_response(&response);
        state.end
    });
    // reqwest gives the response to a HEAD request an empty body already.
    let content = carries_content(Asked::Other, response.status());
    let mut response = response.map(|body| match measure {
        #[cfg(feature = "metrics")]
        Some(measure) => reqwest::Body::wrap(ResponseBody::new(
            body,
            end,
            crate::metrics::Metered(Some(measure)),
            content,
        )),
        #[cfg(not(feature = "metrics"))]
        Some(measure) => match measure {},
        None => reqwest::Body::wrap(ResponseBody::new(body, end, Unmetered, content)),
    });
    // `reqwest::Response::from` reads the final URL from an extension that only
    // `ResponseBuilderExt::url` can set.
    if let Ok(marker) = http::Response::builder().url(url).body(()) {
        response
            .extensions_mut()
            .extend(marker.into_parts().0.extensions);
    }
    Response::from(response)
}

/// The type of a failed request's error, as `error.type`.
fn error_type(error: &reqwest_middleware::Error) -> &'static str {
    match error {
        reqwest_middleware::Error::Reqwest(_) => std::any::type_name::<reqwest::Error>(),
        reqwest_middleware::Error::Middleware(_) => {
            std::any::type_name::<reqwest_middleware::Error>()
        }
    }
}

/// The request failed: `error.type`, an `exception` event and status Error.
fn failed(state: ResponseState, error: &reqwest_middleware::Error) {
    let end = state.end;
    let exception_type = error_type(error);
    let message = if end.sampled {
        error_chain(error)
    } else {
        String::new()
    };
    end.fail(Some(exception_type), message);
}
