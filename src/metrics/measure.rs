//! The instruments of a layer, its series, and the measurement of one request.

use std::collections::HashMap;
#[cfg(feature = "console")]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use http::HeaderMap;
use opentelemetry::metrics::{BoundHistogram, Histogram, Meter, MeterProvider, UpDownCounter};
use opentelemetry::{InstrumentationScope, Key, KeyValue, StringValue};

use super::DURATION_BUCKETS;
use crate::classify::{
    self, grpc_code_is_error, grpc_code_label, grpc_code_name, http_status_is_error, Abandoned,
    AnswerSoFar, Role, CANCELLED,
};
use crate::request::methods;
use crate::rpc::{self, GrpcMethods};
use crate::semconv::{self, PROTOCOL_VERSIONS};

/// Request parts (routes, servers, gRPC methods) a layer keeps series for.
const MAX_SERIES: usize = 1024;
/// Sets of the rest of the attributes (method, status, …) a series keeps.
const MAX_ENDS: usize = 64;

/// The series of one route (port 0) or server address, by port.
type Ports = Vec<(u16, Arc<Series>)>;

/// The instruments of one layer, and its series.
pub(crate) struct LayerMetrics {
    role: Role,
    http: Histogram<f64>,
    rpc: Histogram<f64>,
    active: Option<UpDownCounter<i64>>,
    /// The provider is the SDK's, whose instruments bind attribute sets.
    bind: bool,
    /// Requests without a route (server) or server address (client).
    unnamed: OnceLock<Arc<Series>>,
    /// The first route or server seen: most client layers call one server.
    first: OnceLock<Arc<Series>>,
    /// By route (server) or server address and port (client).
    named: RwLock<HashMap<Box<str>, Ports>>,
    /// gRPC calls, by method (and, on a client, by server address and port).
    calls: RwLock<HashMap<&'static str, Vec<Arc<Series>>>>,
}

impl std::fmt::Debug for LayerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerMetrics")
            .field("role", &self.role)
            .field("active_requests", &self.active.is_some())
            .field("bind", &self.bind)
            .finish_non_exhaustive()
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

/// The SDK's provider implements bound instruments (tracewire turns the SDK's feature on);
/// another provider may not, and its bound handles would drop what they record.
fn binds<M: MeterProvider + ?Sized + 'static>() -> bool {
    std::any::TypeId::of::<M>()
        == std::any::TypeId::of::<opentelemetry_sdk::metrics::SdkMeterProvider>()
}

impl LayerMetrics {
    pub(crate) fn server<M: MeterProvider + ?Sized + 'static>(provider: &M, active: bool) -> Self {
        let meter = meter(provider);
        let active = active.then(|| {
            meter
                .i64_up_down_counter("http.server.active_requests")
                .with_unit("{request}")
                .with_description("Number of active HTTP server requests.")
                .build()
        });
        Self::new(
            Role::Server,
            binds::<M>(),
            duration(
                &meter,
                "http.server.request.duration",
                "Duration of HTTP server requests.",
            ),
            duration(
                &meter,
                "rpc.server.call.duration",
                "Measures the duration of inbound remote procedure calls (RPC).",
            ),
            active,
        )
    }

    pub(crate) fn client<M: MeterProvider + ?Sized + 'static>(provider: &M) -> Self {
        let meter = meter(provider);
        Self::new(
            Role::Client,
            binds::<M>(),
            duration(
                &meter,
                "http.client.request.duration",
                "Duration of HTTP client requests.",
            ),
            duration(
                &meter,
                "rpc.client.call.duration",
                "Measures the duration of outbound remote procedure calls (RPC).",
            ),
            None,
        )
    }

    fn new(
        role: Role,
        bind: bool,
        http: Histogram<f64>,
        rpc: Histogram<f64>,
        active: Option<UpDownCounter<i64>>,
    ) -> Self {
        LayerMetrics {
            role,
            http,
            rpc,
            active,
            bind,
            unnamed: OnceLock::new(),
            first: OnceLock::new(),
            named: RwLock::default(),
            calls: RwLock::default(),
        }
    }

    /// The series of HTTP requests to `name` (a route template, or the server's address) and
    /// `port` (client). `service`: the layer's service name, for the development summary
    /// (the first layer to create a series names it).
    pub(crate) fn series(
        &self,
        name: Option<&str>,
        port: u16,
        service: Option<&Arc<str>>,
    ) -> Arc<Series> {
        let Some(name) = name else {
            return self
                .unnamed
                .get_or_init(|| self.new_series(&self.http, Fixed::None, service, true))
                .clone();
        };
        if let Some(first) = self.first.get() {
            if first.is(name, port) {
                return first.clone();
            }
        }
        let found = self
            .named
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .and_then(|ports| ports.iter().find(|(p, _)| *p == port))
            .map(|(_, series)| series.clone());
        if let Some(series) = found {
            return series;
        }
        let mut named = self.named.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, series)) = named
            .get(name)
            .and_then(|ports| ports.iter().find(|(p, _)| *p == port))
        {
            return series.clone();
        }
        let fixed = match self.role {
            Role::Server => Fixed::Route(StringValue::from(name.to_owned())),
            Role::Client => Fixed::Server(StringValue::from(name.to_owned()), port),
        };
        let count: usize = named.values().map(Vec::len).sum();
        let kept = count < MAX_SERIES;
        let series = self.new_series(&self.http, fixed, service, kept);
        if kept {
            named
                .entry(name.into())
                .or_default()
                .push((port, series.clone()));
            let _ = self.first.set(series.clone());
        }
        series
    }

    /// A series of `histogram`; `kept`: the layer keeps it (one that lives for one request
    /// only, past the bound, binds nothing).
    fn new_series(
        &self,
        histogram: &Histogram<f64>,
        fixed: Fixed,
        service: Option<&Arc<str>>,
        kept: bool,
    ) -> Arc<Series> {
        let active = match fixed {
            Fixed::Method(..) => None,
            _ => self.active.clone(),
        };
        Arc::new(Series {
            role: self.role,
            bind: self.bind && kept,
            histogram: histogram.clone(),
            active,
            fixed,
            service: service.cloned(),
            #[cfg(feature = "console")]
            operations: (0..methods::table().len())
                .map(|_| OnceLock::new())
                .collect(),
            ends: RwLock::default(),
        })
    }

    /// The series of a client's gRPC calls to the method of `path` on `server` (address and
    /// port, when the call names them).
    pub(crate) fn client_call_series(&self, path: &str, server: Server<'_>) -> Arc<Series> {
        // A client calls the application's own methods.
        let method = client_methods().known_or_learn(rpc::full_method(path));
        self.call_series(method, server, None)
    }

    /// The series of gRPC calls to `method` (`None`: `_OTHER`) on `server`.
    fn call_series(
        &self,
        method: Option<&'static str>,
        server: Server<'_>,
        service: Option<&Arc<str>>,
    ) -> Arc<Series> {
        let method = method.unwrap_or("_OTHER");
        let find = |calls: &HashMap<&'static str, Vec<Arc<Series>>>| {
            calls
                .get(method)
                .and_then(|all| all.iter().find(|s| s.calls_to(server)).cloned())
        };
        if let Some(series) = find(&self.calls.read().unwrap_or_else(|e| e.into_inner())) {
            return series;
        }
        let mut calls = self.calls.write().unwrap_or_else(|e| e.into_inner());
        if let Some(series) = find(&calls) {
            return series;
        }
        let count: usize = calls.values().map(Vec::len).sum();
        let kept = count < MAX_SERIES;
        let server = server.map(|(host, port)| (StringValue::from(host.to_owned()), port));
        let series = self.new_series(&self.rpc, Fixed::Method(method, server), service, kept);
        if kept {
            calls.entry(method).or_default().push(series.clone());
        }
        series
    }
}

/// A client's server address and port, when it has them.
pub(crate) type Server<'a> = Option<(&'a str, u16)>;

/// The attributes every request of a series has.
enum Fixed {
    None,
    Route(StringValue),
    Server(StringValue, u16),
    /// A gRPC method, and on a client the server called.
    Method(&'static str, Option<(StringValue, u16)>),
}

/// The requests of one route, server or gRPC method: their attribute sets, built once.
pub(crate) struct Series {
    role: Role,
    bind: bool,
    histogram: Histogram<f64>,
    active: Option<UpDownCounter<i64>>,
    fixed: Fixed,
    /// The service name of the layer that made it, for the development summary.
    #[cfg_attr(not(feature = "console"), allow(dead_code))]
    service: Option<Arc<str>>,
    /// The operation names (`{method} {route}`) of a route's requests, by method, made once
    /// for the development views.
    #[cfg(feature = "console")]
    operations: Box<[OnceLock<Box<str>>]>,
    ends: RwLock<Vec<(EndKey, Recorder)>>,
}

/// The attributes of a request that its series does not fix.
#[derive(Clone, Copy, PartialEq, Eq)]
struct EndKey {
    request: RequestCode,
    /// The HTTP status code, or the gRPC status code.
    status: Option<i32>,
    /// An error type that the status does not tell.
    error_type: Option<&'static str>,
}

/// `http.request.method`, `url.scheme` and `network.protocol.version` of a request, as
/// indexes into the known methods ([`methods::table`]), [`SCHEMES`] and [`PROTOCOL_VERSIONS`]: small to carry and
/// to compare.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RequestCode {
    method: u8,
    scheme: u8,
    version: u8,
}

const SCHEMES: [&str; 2] = ["http", "https"];

impl RequestCode {
    pub(crate) fn new(method: &http::Method, scheme: &str, version: http::Version) -> Self {
        RequestCode {
            method: methods::table().index(method),
            scheme: u8::from(scheme == "https"),
            version: semconv::protocol_version_index(version),
        }
    }

    fn method(self) -> &'static str {
        methods::table().value(self.method)
    }

    fn scheme(self) -> &'static str {
        SCHEMES[usize::from(self.scheme)]
    }

    fn version(self) -> &'static str {
        PROTOCOL_VERSIONS[usize::from(self.version)]
    }
}

/// Records into one attribute set.
enum Recorder {
    Bound(BoundHistogram<f64>),
    Unbound(Box<[KeyValue]>),
}

impl Series {
    /// The series of `name` and `port`.
    fn is(&self, name: &str, port: u16) -> bool {
        match &self.fixed {
            Fixed::Route(route) => route.as_str() == name,
            Fixed::Server(host, p) => *p == port && host.as_str() == name,
            Fixed::None | Fixed::Method(..) => false,
        }
    }

    /// The series of gRPC calls to `server`.
    fn calls_to(&self, server: Server<'_>) -> bool {
        match (&self.fixed, server) {
            (Fixed::Method(_, None), None) => true,
            (Fixed::Method(_, Some((host, port))), Some((h, p))) => {
                *port == p && host.as_str() == h
            }
            _ => false,
        }
    }

    /// The series of this route template.
    pub(crate) fn is_route(&self, route: &str) -> bool {
        self.is(route, 0)
    }

    fn record(&self, nanos: u64, key: EndKey) {
        // Nanoseconds to seconds: exact enough for any duration a request takes.
        let seconds = nanos as f64 / 1e9;
        {
            let ends = self.ends.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, recorder)) = ends.iter().find(|(k, _)| *k == key) {
                match recorder {
                    Recorder::Bound(bound) => bound.record(seconds),
                    Recorder::Unbound(attributes) => self.histogram.record(seconds, attributes),
                }
                return;
            }
        }
        let attributes = self.attributes(key);
        let mut ends = self.ends.write().unwrap_or_else(|e| e.into_inner());
        if ends.len() >= MAX_ENDS || ends.iter().any(|(k, _)| *k == key) {
            drop(ends);
            self.histogram.record(seconds, &attributes);
            return;
        }
        let recorder = if self.bind {
            Recorder::Bound(self.histogram.bind(&attributes))
        } else {
            Recorder::Unbound(attributes.into_boxed_slice())
        };
        match &recorder {
            Recorder::Bound(bound) => bound.record(seconds),
            Recorder::Unbound(attributes) => self.histogram.record(seconds, attributes),
        }
        ends.push((key, recorder));
    }

    /// The attribute set of a request of this series that ended with `key`.
    fn attributes(&self, key: EndKey) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(8);
        if let Fixed::Method(method, server) = &self.fixed {
            attributes.push(KeyValue::new(RPC_SYSTEM_NAME, "grpc"));
            attributes.push(KeyValue::new(semconv::RPC_METHOD, *method));
            if let Some((host, port)) = server {
                attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, host.clone()));
                attributes.push(KeyValue::new(semconv::SERVER_PORT, i64::from(*port)));
            }
            let code = key.status.unwrap_or(2);
            attributes.push(KeyValue::new(
                RPC_RESPONSE_STATUS_CODE,
                grpc_code_label(code),
            ));
            match key.error_type {
                Some(error_type) => attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_type)),
                None if grpc_code_is_error(self.role, code) => {
                    attributes.push(KeyValue::new(semconv::ERROR_TYPE, grpc_code_label(code)))
                }
                None => {}
            }
            return attributes;
        }
        attributes.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD,
            key.request.method(),
        ));
        // `url.scheme` is Required on a server's durations and Opt-In on a client's. A client
        // knows the protocol version from the response, so a call without one has none.
        if self.role == Role::Server {
            attributes.push(KeyValue::new(semconv::URL_SCHEME, key.request.scheme()));
        }
        if self.role == Role::Server || key.status.is_some() {
            attributes.push(KeyValue::new(
                semconv::NETWORK_PROTOCOL_VERSION,
                key.request.version(),
            ));
        }
        match &self.fixed {
            Fixed::Route(route) => {
                attributes.push(KeyValue::new(semconv::HTTP_ROUTE, route.clone()));
            }
            Fixed::Server(host, port) => {
                attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, host.clone()));
                attributes.push(KeyValue::new(semconv::SERVER_PORT, i64::from(*port)));
            }
            Fixed::None | Fixed::Method(..) => {}
        }
        if let Some(code) = key.status {
            attributes.push(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(code),
            ));
        }
        match (key.error_type, key.status) {
            (Some(error_type), _) => {
                attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_type));
            }
            (None, Some(code)) if http_status_is_error(self.role, code as u16) => {
                attributes.push(KeyValue::new(semconv::ERROR_TYPE, code.to_string()));
            }
            _ => {}
        }
        attributes
    }

    /// Hands a server request to the development views ([`add_sink`]), under the span name
    /// the layer gives by default. `http_status`: the response's HTTP status code (for a
    /// gRPC call, only one other than 200, as its span carries it).
    #[cfg(feature = "console")]
    fn to_sinks(&self, nanos: u64, key: EndKey, http_status: Option<u16>) {
        if self.role != Role::Server || !SINKING.load(Ordering::Relaxed) {
            return;
        }
        let (operation, error) = match &self.fixed {
            Fixed::Method(method, _) => {
                let code = key.status.unwrap_or(2);
                let name = if *method == "_OTHER" { "grpc" } else { method };
                (name, grpc_code_is_error(self.role, code))
            }
            fixed => {
                let error = key
                    .status
                    .is_some_and(|code| http_status_is_error(self.role, code as u16));
                let method = methods::table().span_method(key.request.method);
                let name = match fixed {
                    Fixed::Route(route) => &**self.operations[usize::from(key.request.method)]
                        .get_or_init(|| format!("{method} {}", route.as_str()).into()),
                    _ => method,
                };
                (name, error)
            }
        };
        let sinks = SINKS.read().unwrap_or_else(|e| e.into_inner());
        for sink in sinks.iter() {
            sink.sink.record(&MeasuredRequest {
                service: self.service.as_ref().unwrap_or(&sink.default_service),
                operation,
                nanos,
                http_status,
                error: error || key.error_type.is_some(),
            });
        }
    }

    fn active_add(&self, delta: i64, request: RequestCode) {
        if let Some(active) = &self.active {
            active.add(
                delta,
                &[
                    KeyValue::new(semconv::HTTP_REQUEST_METHOD, request.method()),
                    KeyValue::new(semconv::URL_SCHEME, request.scheme()),
                ],
            );
        }
    }
}

/// The gRPC part of a measured call.
struct GrpcCall {
    metrics: Arc<LayerMetrics>,
    /// The layer's service name (see [`Series`]).
    service: Option<Arc<str>>,
    /// The method's name when already known to be the application's.
    method: Option<&'static str>,
    /// The called path's method, kept (copied) only while it is not known, to learn it.
    path: Option<Box<str>>,
    /// The server's methods (server side).
    methods: Option<Arc<GrpcMethods>>,
    code: Option<i32>,
    answered: bool,
    /// When the call's `grpc-timeout` runs out.
    deadline: Option<Instant>,
    /// The series, when known from the start (a client's call: its method and server).
    series: Option<Arc<Series>>,
}

/// What a request is measured into.
enum Target {
    Http(Arc<Series>),
    Grpc(Box<GrpcCall>),
}

/// One request being measured: started when the layer saw it, recorded once when it ends.
pub struct Measured {
    target: Target,
    /// When it started: a monotonic clock, which a step of the wall clock cannot skew.
    start: Instant,
    request: RequestCode,
    status: Option<u16>,
    error_type: Option<&'static str>,
}

/// What the layer knows of a request when it starts measuring it.
pub(crate) struct Start<'a> {
    pub(crate) request: RequestCode,
    /// The series of the route (server) or server (client), for an HTTP request; the series
    /// of a client's gRPC call ([`LayerMetrics::client_call_series`]).
    pub(crate) series: Option<Arc<Series>>,
    /// The gRPC path, for a gRPC call.
    pub(crate) grpc_path: Option<&'a str>,
    /// The server's gRPC methods.
    pub(crate) grpc_methods: Option<&'a Arc<GrpcMethods>>,
    /// When a gRPC call's `grpc-timeout` runs out.
    pub(crate) grpc_deadline: Option<Instant>,
    /// The layer's service name (see [`Series`]).
    pub(crate) service: Option<&'a Arc<str>>,
}

impl Measured {
    pub(crate) fn start(metrics: &Arc<LayerMetrics>, start: Start<'_>) -> Self {
        let target = match (start.grpc_path, start.series) {
            (Some(path), series) => {
                let full = rpc::full_method(path);
                let method = match (start.grpc_methods, &series) {
                    (Some(methods), _) => methods.known(full),
                    // The series names it.
                    (None, Some(_)) => None,
                    // A client calls the application's own methods.
                    (None, None) => client_methods().known_or_learn(full),
                };
                Target::Grpc(Box::new(GrpcCall {
                    metrics: metrics.clone(),
                    service: start.service.cloned(),
                    method,
                    path: match (method, start.grpc_methods) {
                        (None, Some(_)) => Some(full.into()),
                        _ => None,
                    },
                    methods: start.grpc_methods.cloned(),
                    code: None,
                    answered: false,
                    deadline: start.grpc_deadline,
                    series,
                }))
            }
            (None, Some(series)) => Target::Http(series),
            (None, None) => Target::Http(metrics.series(None, 0, start.service)),
        };
        if let Target::Http(series) = &target {
            series.active_add(1, start.request);
        }
        Measured {
            target,
            start: Instant::now(),
            request: start.request,
            status: None,
            error_type: None,
        }
    }

    /// The response head arrived, over HTTP `version`.
    pub(crate) fn on_response(&mut self, code: u16, version: http::Version, headers: &HeaderMap) {
        self.status = Some(code);
        match &mut self.target {
            // A client learns the protocol the request went out on from the response (a
            // hyper-util client speaking HTTP/2 takes requests that say HTTP/1.1), as its
            // span does; a server's response says what the handler set, not what was spoken.
            Target::Http(series) if series.role == Role::Client => {
                self.request.version = semconv::protocol_version_index(version);
            }
            Target::Http(_) => {}
            Target::Grpc(grpc) => {
                if let Some(status) = rpc::parse_status(headers) {
                    grpc.code = Some(status);
                } else if code != 200 {
                    grpc.code = Some(rpc::status_from_http(code));
                }
                grpc.answered = code == 200 && rpc::is_grpc(headers);
            }
        }
    }

    /// The body ended, with these trailers.
    pub(crate) fn finish(mut self, trailers: Option<&HeaderMap>) {
        if let Target::Grpc(grpc) = &mut self.target {
            if grpc.code.is_none() {
                // A gRPC response that ends without a status is UNKNOWN.
                grpc.code = Some(trailers.and_then(rpc::parse_status).unwrap_or(2));
            }
        }
        self.record();
    }

    /// The call failed with an error of this type: it ends as its span does.
    pub(crate) fn fail(mut self, error_type: &'static str) {
        let mut status_names_it = false;
        if let Target::Grpc(grpc) = &mut self.target {
            if classify::deadline_exceeded(grpc.code.is_some(), grpc.deadline) {
                grpc.code = Some(4);
            }
            status_names_it = grpc
                .code
                .is_some_and(|code| grpc_code_is_error(grpc.metrics.role, code));
        }
        if !status_names_it {
            self.error_type = Some(error_type);
        }
        self.record();
    }

    /// The call was abandoned before it completed: it ends as its span does. An HTTP client
    /// that drops the body of a response it has (`unread`) completed its call.
    pub(crate) fn cancel(mut self, unread: bool) {
        let (answer, role) = match &self.target {
            Target::Http(series) => (
                AnswerSoFar::Http {
                    status: self.status,
                },
                series.role,
            ),
            Target::Grpc(grpc) => (
                AnswerSoFar::Grpc {
                    status_seen: grpc.code.is_some(),
                    deadline: grpc.deadline,
                },
                grpc.metrics.role,
            ),
        };
        let completed =
            unread && matches!(answer, AnswerSoFar::Http { .. }) && role == Role::Client;
        if !completed {
            let code = match classify::abandoned(role, answer) {
                Abandoned::AsAnswered => None,
                Abandoned::DeadlineExceeded => Some(4),
                Abandoned::Cancelled => {
                    if classify::cancelled_is_error(role, matches!(self.target, Target::Grpc(_))) {
                        self.error_type = Some(CANCELLED);
                    }
                    Some(classify::CANCELLED_CODE)
                }
            };
            if let (Target::Grpc(grpc), Some(code)) = (&mut self.target, code) {
                grpc.code = Some(code);
            }
        }
        self.record();
    }

    fn record(self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        match self.target {
            Target::Http(series) => {
                let key = EndKey {
                    request: self.request,
                    status: self.status.map(i32::from),
                    error_type: self.error_type,
                };
                series.record(nanos, key);
                series.active_add(-1, self.request);
                #[cfg(feature = "console")]
                series.to_sinks(nanos, key, self.status);
            }
            Target::Grpc(grpc) => {
                let method = grpc.method.or_else(|| {
                    let methods = grpc.methods.as_ref()?;
                    let refused = grpc.code == Some(12);
                    (grpc.answered && !refused)
                        .then(|| methods.learn(grpc.path.as_deref()?))
                        .flatten()
                });
                // Codes outside 0..=16 share one series, as they share `_OTHER`.
                let code = grpc.code.unwrap_or(2);
                let code = if grpc_code_name(code).is_some() {
                    code
                } else {
                    OTHER_CODE
                };
                let key = EndKey {
                    request: RequestCode::default(),
                    status: Some(code),
                    error_type: self.error_type,
                };
                let series = match grpc.series {
                    Some(series) => series,
                    None => grpc
                        .metrics
                        .call_series(method, None, grpc.service.as_ref()),
                };
                series.record(nanos, key);
                #[cfg(feature = "console")]
                series.to_sinks(nanos, key, self.status.filter(|code| *code != 200));
            }
        }
    }
}

/// The status of a gRPC call whose code is outside 0..=16, in its [`EndKey`].
const OTHER_CODE: i32 = -1;

/// `rpc.system.name` (semantic conventions 1.42).
const RPC_SYSTEM_NAME: Key = Key::from_static_str("rpc.system.name");
/// `rpc.response.status_code` (semantic conventions 1.42).
const RPC_RESPONSE_STATUS_CODE: Key = Key::from_static_str("rpc.response.status_code");

/// A server request a metered layer measured, as the development views take it.
#[cfg(feature = "console")]
pub(crate) struct MeasuredRequest<'a> {
    /// The layer's service name, else the sink's default.
    pub(crate) service: &'a Arc<str>,
    /// The span name the layer gives the request by default: `{method} {route}`,
    /// `{method}`, or the gRPC method.
    pub(crate) operation: &'a str,
    pub(crate) nanos: u64,
    /// The response's HTTP status code, as the request's span carries it (a gRPC call's
    /// only when not 200); `None` when no response came.
    #[cfg_attr(not(feature = "ui"), allow(dead_code))]
    pub(crate) http_status: Option<u16>,
    /// It failed: an `error.type`, or a status that is an error.
    pub(crate) error: bool,
}

/// A development view that measured server requests also go to: the console summary, the
/// trace viewer's `/metrics`. Called on the request's path: it must be quick.
#[cfg(feature = "console")]
pub(crate) trait MeasuredSink: Send + Sync {
    fn record(&self, request: &MeasuredRequest<'_>);
}

#[cfg(feature = "console")]
impl MeasuredSink for crate::report::ConsoleHandle {
    fn record(&self, request: &MeasuredRequest<'_>) {
        self.record_measured(
            request.service,
            request.operation,
            request.nanos,
            request.error,
        );
    }
}

/// A sink and the service name of requests whose layer has none.
#[cfg(feature = "console")]
struct Sink {
    id: SinkId,
    default_service: Arc<str>,
    sink: Arc<dyn MeasuredSink>,
}

/// Names a sink added with [`add_sink`], to remove it.
#[cfg(feature = "console")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SinkId(u64);

/// The development views measured server requests go to: a few (the console summary of
/// [`dev::init`](crate::dev::init), trace viewers); read on each request only while there
/// is one ([`SINKING`]), so that production pays one load.
#[cfg(feature = "console")]
static SINKS: RwLock<Vec<Sink>> = RwLock::new(Vec::new());
#[cfg(feature = "console")]
static SINKING: AtomicBool = AtomicBool::new(false);

/// Server requests measured from now on also go to `sink`, under `default_service` when
/// their layer has no service name.
#[cfg(feature = "console")]
pub(crate) fn add_sink(sink: Arc<dyn MeasuredSink>, default_service: Arc<str>) -> SinkId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = SinkId(NEXT.fetch_add(1, Ordering::Relaxed));
    let mut sinks = SINKS.write().unwrap_or_else(|e| e.into_inner());
    sinks.push(Sink {
        id,
        default_service,
        sink,
    });
    SINKING.store(true, Ordering::Relaxed);
    id
}

/// Measured requests no longer go to the sink `id`.
#[cfg(feature = "console")]
#[cfg_attr(not(feature = "ui"), allow(dead_code))]
pub(crate) fn remove_sink(id: SinkId) {
    let mut sinks = SINKS.write().unwrap_or_else(|e| e.into_inner());
    sinks.retain(|sink| sink.id != id);
    SINKING.store(!sinks.is_empty(), Ordering::Relaxed);
}

/// The gRPC methods clients of this process call: the application's own, so learned on first
/// use (up to a bound) to name them without copying.
fn client_methods() -> &'static GrpcMethods {
    static METHODS: OnceLock<GrpcMethods> = OnceLock::new();
    METHODS.get_or_init(GrpcMethods::default)
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    use super::*;

    /// Past the bound, a server (here: a port) still records its own series, unbound.
    #[test]
    fn past_the_bound_requests_still_record_their_series() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let metrics = LayerMetrics::client(&provider);
        assert!(metrics.bind);
        let ports = MAX_SERIES as u16 + 10;
        let end = EndKey {
            request: RequestCode::default(),
            status: Some(200),
            error_type: None,
        };
        for round in 0..2 {
            for port in 1..=ports {
                let series = metrics.series(Some("inventory"), port, None);
                assert_eq!(series.bind, port <= MAX_SERIES as u16, "port {port}");
                series.record(1_000_000 + round, end);
            }
        }
        provider.force_flush().unwrap();
        let exported = exporter.get_finished_metrics().unwrap();
        let last = exported.last().unwrap();
        let mut counts = Vec::new();
        for metric in last.scope_metrics().flat_map(|s| s.metrics()) {
            let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
                continue;
            };
            for point in histogram.data_points() {
                let port = point
                    .attributes()
                    .find(|kv| kv.key.as_str() == semconv::SERVER_PORT)
                    .map(|kv| kv.value.to_string());
                counts.push((port, point.count()));
            }
        }
        counts.sort();
        let mut expected: Vec<_> = (1..=ports)
            .map(|port| (Some(port.to_string()), 2))
            .collect();
        expected.sort();
        assert_eq!(counts, expected);
    }
}
