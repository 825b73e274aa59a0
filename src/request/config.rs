//! Configuration shared by the server and client layers, and the request view their hooks
//! receive.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName, Method, Request, Uri, Version};

pub use super::methods::{KnownMethods, KnownMethodsError, MAX_KNOWN_METHODS};
use crate::propagation::Propagator;
use crate::span::{Key, KeyValue, StringValue, Value};

/// A borrowed view of a request's head, handed to the layers' hooks (filters, span names,
/// trust policies).
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The target URI (on a server, usually path and query only).
    pub uri: &'a Uri,
    /// The HTTP version.
    pub version: Version,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (axum's `MatchedPath` and `ConnectInfo` live here).
    pub extensions: &'a Extensions,
}

impl<'a, B> From<&'a Request<B>> for RequestHead<'a> {
    fn from(req: &'a Request<B>) -> Self {
        RequestHead {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

pub(crate) type Predicate = Arc<dyn Fn(&RequestHead<'_>) -> bool + Send + Sync>;
pub(crate) type NameFn = Arc<dyn Fn(&RequestHead<'_>) -> Cow<'static, str> + Send + Sync>;

/// Headers whose values are never recorded, whatever the allow-list says: the usual carriers
/// of credentials. [`redact_headers`](crate::ServerLayer::redact_headers) adds to them; nothing
/// removes them.
pub const ALWAYS_REDACTED_HEADERS: [HeaderName; 10] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
    http::header::SET_COOKIE,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-auth-token"),
    HeaderName::from_static("x-csrf-token"),
    HeaderName::from_static("x-xsrf-token"),
    HeaderName::from_static("x-amz-security-token"),
];

/// Query parameters whose values are always redacted: the OpenTelemetry semantic
/// conventions' list for `url.query` and `url.full`, the AWS Signature Version 4 query
/// parameters that carry a credential, and OAuth's: `access_token` (a bearer token in the
/// query, RFC 6750 §2.3) and `client_secret` (RFC 6749 §2.3.1), with the common `api_key`.
///
/// One policy covers the client's `url.full`, the server's `url.query` and URLs inside
/// recorded error messages: a parameter's value is replaced by `REDACTED` when its name,
/// percent-decoded, equals one of these or of the names added with
/// [`redact_query_params`](crate::ServerLayer::redact_query_params), ignoring ASCII case.
/// Credentials in a URL's user info become `REDACTED:REDACTED`.
pub const DEFAULT_REDACTED_QUERY_PARAMS: [&str; 10] = [
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Goog-Signature",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "access_token",
    "client_secret",
    "api_key",
];

/// The names of the query parameters whose values are never recorded (see
/// [`DEFAULT_REDACTED_QUERY_PARAMS`]). Shared by a layer's requests.
#[derive(Debug)]
pub(crate) struct QueryRedaction {
    names: Vec<Cow<'static, str>>,
}

impl Default for QueryRedaction {
    fn default() -> Self {
        QueryRedaction {
            names: DEFAULT_REDACTED_QUERY_PARAMS
                .iter()
                .map(|name| Cow::Borrowed(*name))
                .collect(),
        }
    }
}

impl QueryRedaction {
    /// Exactly these names, for the fuzz targets and their properties.
    #[cfg(any(fuzzing, test))]
    pub(crate) fn only(names: impl IntoIterator<Item = Cow<'static, str>>) -> Self {
        QueryRedaction {
            names: names.into_iter().collect(),
        }
    }

    /// These names and `more`.
    pub(crate) fn with(&self, more: impl IntoIterator<Item = Cow<'static, str>>) -> Self {
        let mut names = self.names.clone();
        for name in more {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                names.push(name);
            }
        }
        QueryRedaction { names }
    }

    /// The value of the parameter named `raw` (as it stands in the query, percent-encoded)
    /// is redacted. Decoding first means `X%2DAmz%2DSignature` cannot slip through.
    pub(crate) fn covers(&self, raw: &str) -> bool {
        let name = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        self.names.iter().any(|n| n.eq_ignore_ascii_case(&name))
    }
}

/// What replaces a redacted value, as the semantic conventions spell it.
pub(crate) const REDACTED: &str = "REDACTED";

/// Request or response headers recorded as `http.{request,response}.header.<name>`, or on
/// gRPC spans as `rpc.grpc.{request,response}.metadata.<name>` (metadata are HTTP/2
/// headers).
#[derive(Clone, Default)]
pub(crate) struct HeaderCapture {
    /// Each header with its HTTP key and its gRPC key.
    names: Vec<(HeaderName, Key, Key)>,
}

impl HeaderCapture {
    fn add(&mut self, prefixes: (&str, &str), name: HeaderName) {
        if self.names.iter().all(|(n, _, _)| *n != name) {
            let http = Key::from(format!("{}{}", prefixes.0, name.as_str()));
            let rpc = Key::from(format!("{}{}", prefixes.1, name.as_str()));
            self.names.push((name, http, rpc));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Appends one string-array attribute per captured header present in `headers`, under
    /// its HTTP key or (`rpc`) its gRPC metadata key.
    pub(crate) fn capture_as(
        &self,
        headers: &HeaderMap,
        redacted: &[HeaderName],
        rpc: bool,
        out: &mut Vec<KeyValue>,
    ) {
        for (name, http_key, rpc_key) in &self.names {
            let mut values = headers.get_all(name).iter().peekable();
            if values.peek().is_none() {
                continue;
            }
            let secret = redacted.contains(name);
            let values: Vec<StringValue> = values
                .map(|v| {
                    if secret {
                        StringValue::from(REDACTED)
                    } else {
                        StringValue::from(String::from_utf8_lossy(v.as_bytes()).into_owned())
                    }
                })
                .collect();
            let key = if rpc { rpc_key } else { http_key };
            out.push(KeyValue::new(key.clone(), Value::Array(values.into())));
        }
    }
}

/// Response headers to record, shared by every request of a layer.
pub(crate) struct ResponseCapture {
    pub(crate) headers: HeaderCapture,
    pub(crate) redacted: Vec<HeaderName>,
}

/// Settings both layers share.
#[derive(Clone)]
pub(crate) struct Common {
    pub(crate) service_name: Option<Arc<str>>,
    pub(crate) propagator: Arc<dyn Propagator>,
    pub(crate) filter: Option<Predicate>,
    pub(crate) span_name: Option<NameFn>,
    pub(crate) request_headers: HeaderCapture,
    pub(crate) response_headers: HeaderCapture,
    pub(crate) redacted_headers: Vec<HeaderName>,
    pub(crate) record_query: bool,
    pub(crate) redacted_query_params: Arc<QueryRedaction>,
    /// Derived from `response_headers` and `redacted_headers`; shared by every response.
    pub(crate) response_capture: Option<Arc<ResponseCapture>>,
    /// Create the `tracing` span of requests no recorder records, for log layers.
    pub(crate) log_spans: bool,
    /// Request metrics, when a meter provider was given.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<Arc<crate::metrics::LayerMetrics>>,
    /// Requests the filter skips are measured all the same.
    #[cfg(feature = "metrics")]
    pub(crate) measure_filtered: bool,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            service_name: None,
            // Read once per layer built, never per request.
            propagator: crate::propagation::global_default(),
            filter: None,
            span_name: None,
            request_headers: HeaderCapture::default(),
            response_headers: HeaderCapture::default(),
            redacted_headers: ALWAYS_REDACTED_HEADERS.to_vec(),
            record_query: false,
            redacted_query_params: Arc::default(),
            response_capture: None,
            log_spans: false,
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "metrics")]
            measure_filtered: true,
        }
    }
}

impl Common {
    pub(crate) fn capture_request_headers(&mut self, names: impl IntoIterator<Item = HeaderName>) {
        for name in names {
            self.request_headers.add(
                (
                    "http.request.header.",
                    crate::semconv::RPC_GRPC_REQUEST_METADATA_PREFIX,
                ),
                name,
            );
        }
    }

    pub(crate) fn capture_response_headers(&mut self, names: impl IntoIterator<Item = HeaderName>) {
        for name in names {
            self.response_headers.add(
                (
                    "http.response.header.",
                    crate::semconv::RPC_GRPC_RESPONSE_METADATA_PREFIX,
                ),
                name,
            );
        }
        self.refresh_response_capture();
    }

    pub(crate) fn redact_headers(&mut self, names: impl IntoIterator<Item = HeaderName>) {
        for name in names {
            if !self.redacted_headers.contains(&name) {
                self.redacted_headers.push(name);
            }
        }
        self.refresh_response_capture();
    }

    fn refresh_response_capture(&mut self) {
        self.response_capture = (!self.response_headers.is_empty()).then(|| {
            Arc::new(ResponseCapture {
                headers: self.response_headers.clone(),
                redacted: self.redacted_headers.clone(),
            })
        });
    }

    /// The request is traced (the filter, if any, lets it through).
    pub(crate) fn traces(&self, head: &RequestHead<'_>) -> bool {
        self.filter.as_ref().is_none_or(|f| f(head))
    }

    /// The metrics to record a request with, if it is measured (`traced`: the filter let it
    /// through).
    #[cfg(feature = "metrics")]
    pub(crate) fn measured(&self, traced: bool) -> Option<&Arc<crate::metrics::LayerMetrics>> {
        self.metrics
            .as_ref()
            .filter(|_| traced || self.measure_filtered)
    }
}

impl fmt::Debug for Common {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Common")
            .field("service_name", &self.service_name)
            .field("filter", &self.filter.is_some())
            .field("span_name", &self.span_name.is_some())
            .field("redacted_headers", &self.redacted_headers)
            .field("record_query", &self.record_query)
            .finish()
    }
}

/// The builder methods both layers share, so they read alike.
macro_rules! common_builder_methods {
    () => {
        /// The service these spans belong to, and (unless they say otherwise) the spans
        /// started under them. Defaults to the recorder's service name.
        pub fn service_name(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
            self.common_mut().service_name = Some(name.into());
            self
        }

        /// The propagator reading and writing trace context (W3C Trace Context and Baggage by
        /// default; any [`Propagator`](crate::propagation::Propagator), including an
        /// `opentelemetry` one through [`OtelPropagator`](crate::propagation::OtelPropagator)).
        pub fn propagator(mut self, propagator: impl crate::propagation::Propagator) -> Self {
            self.common_mut().propagator = std::sync::Arc::new(propagator);
            self
        }

        /// Traces only requests for which `filter` returns `true`. Others get no span, but
        /// their trace context still propagates.
        pub fn filter(
            mut self,
            filter: impl Fn(&crate::config::RequestHead<'_>) -> bool + Send + Sync + 'static,
        ) -> Self {
            self.common_mut().filter = Some(std::sync::Arc::new(filter));
            self
        }

        /// Creates the `tracing` span of requests that are not recorded (not sampled, or no
        /// recorder installed) too, so that log layers show it around the handler's logs.
        /// Off by default: such a request then costs no span at all, and its trace context
        /// still travels on.
        pub fn log_spans(mut self, enabled: bool) -> Self {
            self.common_mut().log_spans = enabled;
            self
        }

        /// Whether requests that the [`filter`](Self::filter) skips are still counted in the
        /// request metrics (feature `metrics`). On by default: rates and errors count every
        /// request.
        #[cfg(feature = "metrics")]
        pub fn measure_filtered(mut self, measured: bool) -> Self {
            self.common_mut().measure_filtered = measured;
            self
        }

        /// Names spans with `name` instead of the default.
        pub fn span_name(
            mut self,
            name: impl Fn(&crate::config::RequestHead<'_>) -> std::borrow::Cow<'static, str>
                + Send
                + Sync
                + 'static,
        ) -> Self {
            self.common_mut().span_name = Some(std::sync::Arc::new(name));
            self
        }

        /// Records these request headers as `http.request.header.<name>` (string arrays;
        /// gRPC metadata as `rpc.grpc.request.metadata.<name>`). Values of redacted headers
        /// are replaced by `REDACTED`.
        pub fn capture_request_headers(
            mut self,
            names: impl IntoIterator<Item = http::HeaderName>,
        ) -> Self {
            self.common_mut().capture_request_headers(names);
            self
        }

        /// Records these response headers as `http.response.header.<name>` (string arrays;
        /// gRPC metadata, from the response headers and trailers, as
        /// `rpc.grpc.response.metadata.<name>`). Values of redacted headers are replaced by
        /// `REDACTED`.
        pub fn capture_response_headers(
            mut self,
            names: impl IntoIterator<Item = http::HeaderName>,
        ) -> Self {
            self.common_mut().capture_response_headers(names);
            self
        }

        /// Adds headers whose values are never recorded. Those of
        /// [`ALWAYS_REDACTED_HEADERS`](crate::config::ALWAYS_REDACTED_HEADERS)
        /// (`Authorization`, `Cookie`, `X-Api-Key`, …) always are.
        pub fn redact_headers(mut self, names: impl IntoIterator<Item = http::HeaderName>) -> Self {
            self.common_mut().redact_headers(names);
            self
        }

        /// Adds query parameters whose values are recorded as `REDACTED` (in `url.query`,
        /// `url.full` and URLs in error messages). Names match after percent-decoding,
        /// ignoring ASCII case. Those of
        /// [`DEFAULT_REDACTED_QUERY_PARAMS`](crate::config::DEFAULT_REDACTED_QUERY_PARAMS)
        /// (the semantic conventions' list and the AWS SigV4 credentials) always are.
        pub fn redact_query_params(
            mut self,
            names: impl IntoIterator<Item = impl Into<std::borrow::Cow<'static, str>>>,
        ) -> Self {
            let common = self.common_mut();
            common.redacted_query_params = std::sync::Arc::new(
                common
                    .redacted_query_params
                    .with(names.into_iter().map(Into::into)),
            );
            self
        }
    };
}

pub(crate) use common_builder_methods;
