//! Request metrics (feature `metrics`): the OpenTelemetry semantic-convention duration
//! histograms, recorded by the same layers that open the spans, for **every** request, sampled
//! or not.
//!
//! Traces are sampled; rates, errors and latencies must not be. Give a layer a
//! `MeterProvider` (the SDK's, exporting over OTLP, or any other) and it records:
//!
//! | instrument | layer | attributes |
//! |---|---|---|
//! | `http.server.request.duration` (histogram, `s`) | [`ServerLayer`](crate::ServerLayer) | `http.request.method` (`_OTHER` for a method that is not standard), `url.scheme`, `http.route` (the route template, never the path), `http.response.status_code`, `network.protocol.version`, `error.type` |
//! | `http.client.request.duration` (histogram, `s`) | [`ClientLayer`](crate::ClientLayer), reqwest's `TracingMiddleware` | the same without `http.route`, with `server.address` and `server.port` |
//! | `rpc.server.call.duration`, `rpc.client.call.duration` (histograms, `s`) | the same, for gRPC calls | `rpc.system.name` (`grpc`), `rpc.method` (`package.Service/Method`, or `_OTHER` for a method the server does not serve), `rpc.response.status_code` (`OK`, `UNAVAILABLE`, …), `error.type` |
//! | `http.server.active_requests` (up-down counter, opt-in) | [`ServerLayer`](crate::ServerLayer) | `http.request.method`, `url.scheme` |
//!
//! The names, units, bucket boundaries and attributes are those of the semantic conventions
//! 1.42 (the version of the `opentelemetry-semantic-conventions` crate tracewire pins): the
//! RPC metrics follow the RPC conventions of that version (`rpc.system.name`,
//! `rpc.response.status_code` as the status code's name), which tracewire's RPC spans do not
//! yet (see [`semconv`]).
//!
//! A duration ends where the span ends: at the end of the response body, at an error, or when
//! the response or its body is dropped (`error.type = cancelled`). A layer without a provider
//! records nothing and pays nothing. Every attribute comes from the application (route
//! templates), from a closed set (methods, schemes, versions, status codes, error types) or
//! from the gRPC methods the server serves, so callers cannot create new series.
//!
//! ```
//! use opentelemetry_sdk::metrics::SdkMeterProvider;
//! use tracewire::ServerLayer;
//!
//! let provider = SdkMeterProvider::builder().build(); // add a reader or exporter
//! let layer = ServerLayer::new().metrics(&provider);
//! # drop(layer);
//! ```

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use http::HeaderMap;
use opentelemetry::metrics::{Histogram, Meter, MeterProvider, UpDownCounter};
use opentelemetry::{InstrumentationScope, Key, KeyValue, StringValue, Value};

use crate::classify::{grpc_code_is_error, grpc_code_name, http_status_is_error, Role, CANCELLED};
use crate::rpc::{self, GrpcMethods};
use crate::semconv;

/// The semantic conventions' bucket boundaries for request durations, in seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The instruments of one layer.
pub(crate) struct LayerMetrics {
    role: Role,
    http: Histogram<f64>,
    rpc: Histogram<f64>,
    active: Option<UpDownCounter<i64>>,
}

impl std::fmt::Debug for LayerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerMetrics")
            .field("role", &self.role)
            .field("active_requests", &self.active.is_some())
            .finish()
    }
}

fn meter<M: MeterProvider + ?Sized>(provider: &M) -> Meter {
    provider.meter_with_scope(
        InstrumentationScope::builder("tracewire")
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(opentelemetry_semantic_conventions::SCHEMA_URL)
            .build(),
    )
}

fn duration(meter: &Meter, name: &'static str, description: &'static str) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(DURATION_BUCKETS.to_vec())
        .build()
}

impl LayerMetrics {
    pub(crate) fn server<M: MeterProvider + ?Sized>(provider: &M, active: bool) -> Self {
        let meter = meter(provider);
        LayerMetrics {
            role: Role::Server,
            http: duration(
                &meter,
                "http.server.request.duration",
                "Duration of HTTP server requests.",
            ),
            rpc: duration(
                &meter,
                "rpc.server.call.duration",
                "Measures the duration of inbound remote procedure calls (RPC).",
            ),
            active: active.then(|| {
                meter
                    .i64_up_down_counter("http.server.active_requests")
                    .with_unit("{request}")
                    .with_description("Number of active HTTP server requests.")
                    .build()
            }),
        }
    }

    pub(crate) fn client<M: MeterProvider + ?Sized>(provider: &M) -> Self {
        let meter = meter(provider);
        LayerMetrics {
            role: Role::Client,
            http: duration(
                &meter,
                "http.client.request.duration",
                "Duration of HTTP client requests.",
            ),
            rpc: duration(
                &meter,
                "rpc.client.call.duration",
                "Measures the duration of outbound remote procedure calls (RPC).",
            ),
            active: None,
        }
    }
}

/// The gRPC part of a measured call.
#[derive(Debug)]
struct GrpcCall {
    /// The method's name when already known to be the application's.
    method: Option<&'static str>,
    /// The called path's method, kept (copied) only while it is not known, to learn it.
    path: Option<Box<str>>,
    /// The server's methods (server side).
    methods: Option<Arc<GrpcMethods>>,
    code: Option<i32>,
    answered: bool,
}

/// One request being measured: started when the layer saw it, recorded once when it ends.
///
/// Boxed, so that the response future and body of a layer without metrics stay as small as
/// they were (they are moved several times per request); a measured request pays one small
/// allocation instead.
#[derive(Debug)]
pub(crate) struct Measure(Box<Measured>);

impl Measure {
    pub(crate) fn start(metrics: &Arc<LayerMetrics>, start: Start<'_>) -> Self {
        Measure(Box::new(Measured::start(metrics, start)))
    }

    /// The response head arrived.
    pub(crate) fn on_response(&mut self, code: u16, headers: &HeaderMap) {
        self.0.on_response(code, headers);
    }

    /// The body ended, with these trailers.
    pub(crate) fn finish(self, trailers: Option<&HeaderMap>) {
        self.0.finish(trailers);
    }

    /// The call failed with an error of this type.
    pub(crate) fn fail(self, error_type: &'static str) {
        self.0.fail(error_type);
    }

    /// The call was abandoned before it completed (see [`Measured::cancel`]).
    pub(crate) fn cancel(self, unread: bool) {
        self.0.cancel(unread);
    }
}

#[derive(Debug)]
pub(crate) struct Measured {
    metrics: Arc<LayerMetrics>,
    start: Instant,
    method: &'static str,
    scheme: &'static str,
    version: &'static str,
    route: Option<StringValue>,
    server: Option<(StringValue, i64)>,
    status: Option<u16>,
    error_type: Option<&'static str>,
    grpc: Option<GrpcCall>,
}

/// What the layer knows of a request when it starts measuring it.
pub(crate) struct Start<'a> {
    pub(crate) method: &'static str,
    pub(crate) scheme: &'static str,
    pub(crate) version: &'static str,
    /// The route template (server).
    pub(crate) route: Option<&'a str>,
    /// The route template as interned, when it is.
    pub(crate) interned_route: Option<&'static str>,
    /// The host and port called (client).
    pub(crate) server: Option<(&'a str, u16)>,
    /// The gRPC path, for a gRPC call.
    pub(crate) grpc_path: Option<&'a str>,
    /// The server's gRPC methods.
    pub(crate) grpc_methods: Option<&'a Arc<GrpcMethods>>,
}

impl Measured {
    fn start(metrics: &Arc<LayerMetrics>, start: Start<'_>) -> Self {
        let grpc = start.grpc_path.map(|path| {
            let full = rpc::full_method(path);
            let method = match start.grpc_methods {
                Some(methods) => methods.known(full),
                // A client calls the application's own methods.
                None => client_methods().known_or_learn(full),
            };
            GrpcCall {
                method,
                path: match (method, start.grpc_methods) {
                    (None, Some(_)) => Some(full.into()),
                    _ => None,
                },
                methods: start.grpc_methods.cloned(),
                code: None,
                answered: false,
            }
        });
        let measure = Measured {
            metrics: metrics.clone(),
            start: Instant::now(),
            method: start.method,
            scheme: start.scheme,
            version: start.version,
            route: match (start.interned_route, start.route) {
                (Some(route), _) => Some(StringValue::from(route)),
                (None, Some(route)) => Some(StringValue::from(route.to_owned())),
                (None, None) => None,
            },
            server: start
                .server
                .map(|(host, port)| (StringValue::from(host.to_owned()), i64::from(port))),
            status: None,
            error_type: None,
            grpc,
        };
        if let (Some(active), None) = (&measure.metrics.active, &measure.grpc) {
            active.add(1, &measure.active_attributes());
        }
        measure
    }

    fn active_attributes(&self) -> [KeyValue; 2] {
        [
            KeyValue::new(semconv::HTTP_REQUEST_METHOD, self.method),
            KeyValue::new(semconv::URL_SCHEME, self.scheme),
        ]
    }

    /// The response head arrived.
    fn on_response(&mut self, code: u16, headers: &HeaderMap) {
        self.status = Some(code);
        if let Some(grpc) = &mut self.grpc {
            if let Some(status) = rpc::parse_status(headers) {
                grpc.code = Some(status);
            } else if code != 200 {
                grpc.code = Some(rpc::status_from_http(code));
            }
            grpc.answered = code == 200 && rpc::is_grpc(headers);
        }
    }

    /// The body ended, with these trailers.
    fn finish(mut self: Box<Self>, trailers: Option<&HeaderMap>) {
        if let Some(grpc) = &mut self.grpc {
            if grpc.code.is_none() {
                // A gRPC response that ends without a status is UNKNOWN.
                grpc.code = Some(trailers.and_then(rpc::parse_status).unwrap_or(2));
            }
        }
        self.record();
    }

    /// The call failed with an error of this type.
    fn fail(mut self: Box<Self>, error_type: &'static str) {
        self.error_type = Some(error_type);
        self.record();
    }

    /// The call was abandoned before it completed. An HTTP client that drops the body of a
    /// response it has (`unread`) completed its call.
    fn cancel(mut self: Box<Self>, unread: bool) {
        let completed = unread && self.grpc.is_none() && self.metrics.role == Role::Client;
        if !completed {
            match &mut self.grpc {
                Some(grpc) if grpc.code.is_some() => {}
                Some(grpc) => {
                    grpc.code = Some(1);
                    self.error_type = Some(CANCELLED);
                }
                None => self.error_type = Some(CANCELLED),
            }
        }
        self.record();
    }

    fn record(self: Box<Self>) {
        let seconds = self.start.elapsed().as_secs_f64();
        let role = self.metrics.role;
        // On the stack: no allocation per request (the values are static or shared).
        let mut attributes: [KeyValue; 7] =
            std::array::from_fn(|_| KeyValue::new(RPC_SYSTEM_NAME, ""));
        let mut n = 0;
        let mut push = |kv: KeyValue| {
            attributes[n] = kv;
            n += 1;
        };
        match &self.grpc {
            Some(grpc) => {
                push(KeyValue::new(RPC_SYSTEM_NAME, "grpc"));
                let method = grpc.method.or_else(|| {
                    let methods = grpc.methods.as_ref()?;
                    let refused = grpc.code == Some(12);
                    (grpc.answered && !refused)
                        .then(|| methods.learn(grpc.path.as_deref()?))
                        .flatten()
                });
                push(KeyValue::new(
                    semconv::RPC_METHOD,
                    method.unwrap_or("_OTHER"),
                ));
                let code = grpc.code.unwrap_or(2);
                let name = grpc_code_name(code);
                push(KeyValue::new(
                    RPC_RESPONSE_STATUS_CODE,
                    name.map_or_else(|| Value::from(code.to_string()), Value::from),
                ));
                match self.error_type {
                    Some(error_type) => push(KeyValue::new(semconv::ERROR_TYPE, error_type)),
                    None if grpc_code_is_error(role, code) => {
                        push(KeyValue::new(semconv::ERROR_TYPE, name.unwrap_or("_OTHER")))
                    }
                    None => {}
                }
                self.metrics.rpc.record(seconds, &attributes[..n]);
            }
            None => {
                push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, self.method));
                push(KeyValue::new(semconv::URL_SCHEME, self.scheme));
                push(KeyValue::new(
                    semconv::NETWORK_PROTOCOL_VERSION,
                    self.version,
                ));
                if let Some(route) = &self.route {
                    push(KeyValue::new(semconv::HTTP_ROUTE, route.clone()));
                }
                if let Some((host, port)) = &self.server {
                    push(KeyValue::new(semconv::SERVER_ADDRESS, host.clone()));
                    push(KeyValue::new(semconv::SERVER_PORT, *port));
                }
                if let Some(code) = self.status {
                    push(KeyValue::new(
                        semconv::HTTP_RESPONSE_STATUS_CODE,
                        i64::from(code),
                    ));
                }
                match (self.error_type, self.status) {
                    (Some(error_type), _) => push(KeyValue::new(semconv::ERROR_TYPE, error_type)),
                    (None, Some(code)) if http_status_is_error(role, code) => {
                        push(KeyValue::new(semconv::ERROR_TYPE, status_text(code)))
                    }
                    _ => {}
                }
                self.metrics.http.record(seconds, &attributes[..n]);
                if let Some(active) = &self.metrics.active {
                    active.add(-1, &self.active_attributes());
                }
            }
        }
    }
}

/// `rpc.system.name` (semantic conventions 1.42).
const RPC_SYSTEM_NAME: Key = Key::from_static_str("rpc.system.name");
/// `rpc.response.status_code` (semantic conventions 1.42).
const RPC_RESPONSE_STATUS_CODE: Key = Key::from_static_str("rpc.response.status_code");

/// An HTTP status code as text (`error.type`), without formatting it on every request.
fn status_text(code: u16) -> StringValue {
    static TEXTS: OnceLock<Vec<StringValue>> = OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (100..1000u16)
            .map(|c| StringValue::from(Arc::<str>::from(c.to_string())))
            .collect()
    });
    match texts.get(usize::from(code).wrapping_sub(100)) {
        Some(text) => text.clone(),
        None => StringValue::from(Cow::<'static, str>::Owned(code.to_string())),
    }
}

/// The gRPC methods clients of this process call: the application's own, so learned on first
/// use (up to a bound) to name them without copying.
fn client_methods() -> &'static GrpcMethods {
    static METHODS: OnceLock<GrpcMethods> = OnceLock::new();
    METHODS.get_or_init(GrpcMethods::default)
}
