//! The viewer's HTTP side: pages, JSON API, live updates, OTLP/HTTP ingestion and
//! `/metrics`, behind a check of the `Host` and `Origin` headers.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use tokio::sync::{watch, Semaphore};

use super::ingest::{self, Encoding};
use super::op_metrics::{self, OpMetrics, BUCKETS};
use super::store::{self, Held, Source, Store};
use crate::context::TraceId;
use crate::span::{SpanKind, SpanRecord, Status, Value};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The most traces `GET /api/traces` lists.
pub(crate) const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// The most clients of `GET /api/events` at once; more get 503.
pub(crate) const MAX_EVENT_CLIENTS: usize = 32;

/// OTLP bodies read at once. Each may take [`ViewerBuilder::max_body_bytes`] before it is
/// decoded, outside the store's bound; more senders get 503 with `Retry-After`, which OTLP
/// exporters retry.
///
/// [`ViewerBuilder::max_body_bytes`]: super::ViewerBuilder::max_body_bytes
pub(crate) const MAX_INGESTS: usize = 4;

/// The least time between two live-update events to one client; changes meanwhile are
/// told in one.
const EVENT_INTERVAL: Duration = Duration::from_millis(250);

/// What the server and the reporter share.
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) max_body_bytes: usize,
    /// The store's latest generation, watched by the live-update streams. A watch holds
    /// one value, not a queue: a client that reads slowly sees only the latest.
    pub(crate) changes: watch::Sender<u64>,
    /// Set when the server stops, to end the live-update streams (else a graceful
    /// shutdown would wait for them forever).
    pub(crate) closing: watch::Sender<bool>,
    pub(crate) event_slots: Arc<Semaphore>,
    pub(crate) ingest_slots: Semaphore,
    pub(crate) hosts: Hosts,
}

impl Shared {
    pub(crate) fn new(store: Store, max_body_bytes: usize, hosts: Hosts) -> Shared {
        Shared {
            store: Mutex::new(store),
            max_body_bytes,
            changes: watch::Sender::new(0),
            closing: watch::Sender::new(false),
            event_slots: Arc::new(Semaphore::new(MAX_EVENT_CLIENTS)),
            ingest_slots: Semaphore::new(MAX_INGESTS),
            hosts,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves a consistent store (every update is
        // complete before the next line runs), so a poisoned lock is still usable.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` on the store, then tells the live-update streams if the held traces
    /// changed.
    pub(crate) fn update<R>(&self, change: impl FnOnce(&mut Store) -> R) -> R {
        let (result, generation) = {
            let mut store = self.lock();
            let result = change(&mut store);
            (result, store.generation())
        };
        self.changes.send_if_modified(|seen| {
            let changed = *seen != generation;
            *seen = generation;
            changed
        });
        result
    }
}

/// The hosts the viewer answers to, against DNS rebinding: a page of another site whose
/// name the attacker points at 127.0.0.1 still sends its own name in `Host`.
#[derive(Clone, Debug)]
pub(crate) struct Hosts {
    /// The address listened on.
    pub(crate) addr: SocketAddr,
    /// Names allowed besides, lower-case, without port.
    pub(crate) extra: Vec<String>,
}

impl Hosts {
    /// Whether a `Host` value (`name`, `name:port`, `[v6]:port`) is one of ours: a loopback
    /// name or address with the port listened on, the address listened on (any address,
    /// when listening on all interfaces: an address is not a name that can be rebound),
    /// or a name allowed by [`ViewerBuilder::allow_host`](super::ViewerBuilder::allow_host)
    /// with any port.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if self.extra.contains(&name) {
            return true;
        }
        let our_port = match port {
            Some(port) => port == self.addr.port(),
            None => self.addr.port() == 80,
        };
        if !our_port {
            return false;
        }
        match name.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.addr.ip() || self.addr.ip().is_unspecified(),
            Err(_) => name == "localhost",
        }
    }
}

/// `name[:port]` or `[v6][:port]` into the name (without brackets) and the port.
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let host = host.trim();
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        match after {
            "" => (name, None),
            _ => (name, Some(after.strip_prefix(':')?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    if name.is_empty() {
        return None;
    }
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None => None,
    };
    Some((name, port))
}

/// Refuses requests addressed to another host (403), and requests that change something
/// (`POST /v1/traces`) sent by a page of another origin.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let Some(host) = host.filter(|host| shared.hosts.allows(host)) else {
        return forbidden(format!(
            "this trace viewer answers only to its own address (http://localhost:{0}/, \
             http://127.0.0.1:{0}/) and the hosts named with ViewerBuilder::allow_host\n",
            shared.hosts.addr.port()
        ));
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let own = format!("http://{host}");
            if !origin.as_bytes().eq_ignore_ascii_case(own.as_bytes()) {
                return forbidden("requests from the pages of other sites are refused\n".into());
            }
        }
    }
    next.run(request).await
}

fn forbidden(text: String) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| asset(INDEX_HTML, "text/html; charset=utf-8")))
        .route(
            "/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/style.css",
            get(|| asset(STYLE_CSS, "text/css; charset=utf-8")),
        )
        .route("/api/traces", get(list_traces))
        .route("/api/traces/{trace_id}", get(one_trace))
        .route("/api/stats", get(stats))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .route("/v1/traces", post(ingest))
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .layer(middleware::from_fn(safe_headers))
        .with_state(shared)
}

/// Every answer, errors and 404s included: never sniffed into another type (a 400 echoes
/// a query parameter), and running nothing unless it says otherwise (as the page does).
/// Framing stays allowed: editors show the page in a frame, and nothing on it changes
/// anything.
async fn safe_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("default-src 'none'"));
    response
}

/// `GET /api/events`: a server-sent event `traces` at once and then whenever the held
/// traces change (at most one each [`EVENT_INTERVAL`]), with `{"generation": n,
/// "traces_held": n}`; the page then fetches what it shows. At most [`MAX_EVENT_CLIENTS`]
/// at once; more get 503.
async fn events(State(shared): State<Arc<Shared>>) -> Response {
    let Ok(slot) = shared.event_slots.clone().try_acquire_owned() else {
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many live-update clients (at most {MAX_EVENT_CLIENTS}); poll /api/traces instead"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return response;
    };
    struct Client {
        shared: Arc<Shared>,
        changes: watch::Receiver<u64>,
        closing: watch::Receiver<bool>,
        first: bool,
        /// Held for as long as the stream lives.
        _slot: tokio::sync::OwnedSemaphorePermit,
    }
    let client = Client {
        changes: shared.changes.subscribe(),
        closing: shared.closing.subscribe(),
        shared,
        first: true,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(client, |mut client| async move {
        if *client.closing.borrow() {
            return None;
        }
        if !client.first {
            tokio::select! {
                _ = tokio::time::sleep(EVENT_INTERVAL) => {}
                _ = client.closing.changed() => return None,
            }
            tokio::select! {
                changed = client.changes.changed() => changed.ok()?,
                _ = client.closing.changed() => return None,
            }
        }
        client.first = false;
        let generation = *client.changes.borrow_and_update();
        let held = client.shared.lock().traces_held();
        let event = Event::default().event("traces").data(format!(
            r#"{{"generation":{generation},"traces_held":{held}}}"#
        ));
        Some((Ok::<_, Infallible>(event), client))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn asset(text: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Nothing but our own files runs on the page, whatever a span carries.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:",
            ),
        ],
        text,
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Error {
        error: String,
    }
    let mut response = json(&Error {
        error: message.into(),
    });
    *response.status_mut() = status;
    response
}

/// A 200 response with `value` as JSON.
fn json(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        // Only maps with non-string keys fail to serialize, and there are none.
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /api/traces` filters.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    service: Option<String>,
    operation: Option<String>,
    errors_only: bool,
    min_duration: Option<Duration>,
    trace_id: Option<TraceId>,
    limit: Option<usize>,
}

impl Filter {
    pub(crate) fn parse(query: &str) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            match key.as_ref() {
                // Empty values mean "no filter", as an empty form field sends them.
                _ if value.is_empty() => {}
                "service" => filter.service = Some(value.to_owned()),
                "operation" => filter.operation = Some(value.to_owned()),
                "errors" => {
                    filter.errors_only = match value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err("errors must be true or false".into()),
                    }
                }
                "min_duration_ms" => {
                    let ms: f64 = value
                        .parse()
                        .ok()
                        .filter(|ms: &f64| ms.is_finite() && *ms >= 0.0 && *ms < 1e12)
                        .ok_or("min_duration_ms must be a number of milliseconds >= 0")?;
                    filter.min_duration = Some(Duration::from_secs_f64(ms / 1000.0));
                }
                "trace_id" => filter.trace_id = Some(parse_trace_id(value)?),
                "limit" => {
                    let limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| format!("limit must be 1 to {MAX_LIMIT}"))?;
                    filter.limit = Some(limit);
                }
                other => {
                    let mut shown: String = other.chars().take(40).collect();
                    shown.retain(|c| !c.is_control());
                    return Err(format!("unknown query parameter `{shown}`"));
                }
            }
        }
        Ok(filter)
    }

    fn matches(&self, held: &Held, duration: Duration) -> bool {
        let spans = &held.spans;
        self.service
            .as_deref()
            .is_none_or(|s| spans.iter().any(|span| &*span.service_name == s))
            && self
                .operation
                .as_deref()
                .is_none_or(|op| spans.iter().any(|span| span.name == op))
            && (!self.errors_only || spans.iter().any(is_error))
            && self.min_duration.is_none_or(|min| duration >= min)
    }
}

/// A trace id as 32 lower-case hex digits, not all zero.
fn parse_trace_id(text: &str) -> Result<TraceId, String> {
    let valid = text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match TraceId::from_hex(text) {
        Ok(id) if valid && id != TraceId::INVALID => Ok(id),
        _ => Err("a trace id is 32 lower-case hex digits, not all zero".into()),
    }
}

fn is_error(span: &SpanRecord) -> bool {
    matches!(span.status, Status::Error { .. })
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

fn millis(d: Duration) -> f64 {
    // Three decimals: microseconds, as the page shows them.
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The span a trace is named after: its true root, else its earliest span.
fn root(spans: &[SpanRecord]) -> Option<&SpanRecord> {
    spans
        .iter()
        .find(|s| s.is_root())
        .or_else(|| spans.iter().min_by_key(|s| s.start_time))
}

/// The root's service first, then the others in the order they started.
fn services(spans: &[SpanRecord]) -> Vec<&str> {
    let mut by_start: Vec<&SpanRecord> = spans.iter().collect();
    by_start.sort_by_key(|s| s.start_time);
    let mut out: Vec<&str> = Vec::new();
    // A set beside the list: a trace may name as many services as it has spans.
    let mut seen = HashSet::new();
    for span in root(spans).into_iter().chain(by_start) {
        if seen.insert(&*span.service_name) {
            out.push(&span.service_name);
        }
    }
    out
}

fn path(services: &[&str]) -> String {
    match services.split_first() {
        Some((first, [])) => (*first).to_owned(),
        Some((first, rest)) => format!("{first} → {}", rest.join(", ")),
        None => String::new(),
    }
}

#[derive(Serialize)]
struct TraceSummary<'a> {
    trace_id: String,
    name: &'a str,
    service: &'a str,
    start_us: u64,
    duration_ms: f64,
    span_count: usize,
    services: Vec<&'a str>,
    path: String,
    error: bool,
    dropped_spans: u64,
}

fn summary(trace_id: TraceId, held: &Held) -> TraceSummary<'_> {
    let (start, duration) = store::extent(&held.spans);
    let root = root(&held.spans);
    let services = services(&held.spans);
    TraceSummary {
        trace_id: trace_id.to_string(),
        name: root.map_or("", |r| &r.name),
        service: root.map_or("", |r| &r.service_name),
        start_us: micros(start),
        duration_ms: millis(duration),
        span_count: held.spans.len(),
        path: path(&services),
        services,
        error: held.spans.iter().any(is_error),
        dropped_spans: held.dropped,
    }
}

#[derive(Serialize)]
struct Counts {
    traces: usize,
    spans: usize,
    services: usize,
}

fn counts(store: &Store) -> Counts {
    let mut spans = 0;
    let mut services = BTreeSet::new();
    for (_, held) in store.newest_first() {
        spans += held.spans.len();
        services.extend(held.spans.iter().map(|s| &*s.service_name));
    }
    Counts {
        traces: store.traces_held(),
        spans,
        services: services.len(),
    }
}

async fn list_traces(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let filter = match Filter::parse(query.as_deref().unwrap_or("")) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let store = shared.lock();
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
    let mut traces = Vec::new();
    let mut matched = 0;
    let candidates: Box<dyn Iterator<Item = (TraceId, &Held)>> = match filter.trace_id {
        Some(id) => Box::new(store.get(id).map(|held| (id, held)).into_iter()),
        None => Box::new(store.newest_first()),
    };
    for (trace_id, held) in candidates {
        let (_, duration) = store::extent(&held.spans);
        if filter.matches(held, duration) {
            matched += 1;
            if traces.len() < limit {
                traces.push(summary(trace_id, held));
            }
        }
    }
    let body = serde_json::json!({
        "traces": traces,
        "matched": matched,
        "counts": counts(&store),
    });
    json(&body)
}

async fn one_trace(State(shared): State<Arc<Shared>>, Path(trace_id): Path<String>) -> Response {
    let trace_id = match parse_trace_id(&trace_id) {
        Ok(id) => id,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let store = shared.lock();
    let Some(held) = store.get(trace_id) else {
        return error(StatusCode::NOT_FOUND, "no such trace held");
    };
    let mut spans: Vec<&SpanRecord> = held.spans.iter().collect();
    spans.sort_by_key(|s| s.start_time);
    let (start, _) = store::extent(&held.spans);
    let spans: Vec<Json> = spans.into_iter().map(|s| span_json(s, start)).collect();
    let mut body = match serde_json::to_value(summary(trace_id, held)) {
        Ok(Json::Object(map)) => map,
        _ => Map::new(),
    };
    body.insert("spans".into(), Json::Array(spans));
    json(&Json::Object(body))
}

fn value_json(value: &Value) -> Json {
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::I64(i) => Json::from(*i),
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.to_string()),
        other => Json::String(other.to_string()),
    }
}

fn attributes_json(list: &[opentelemetry::KeyValue]) -> Json {
    Json::Object(
        list.iter()
            .map(|kv| (kv.key.to_string(), value_json(&kv.value)))
            .collect(),
    )
}

fn offset_ms(t: SystemTime, origin: SystemTime) -> f64 {
    millis(t.duration_since(origin).unwrap_or_default())
}

fn span_json(span: &SpanRecord, origin: SystemTime) -> Json {
    let (code, message) = match &span.status {
        Status::Unset => ("unset", ""),
        Status::Ok => ("ok", ""),
        Status::Error { description } => ("error", description.as_ref()),
    };
    let events: Vec<Json> = span
        .events
        .iter()
        .map(|e| {
            serde_json::json!({
                "name": e.name,
                "offset_ms": offset_ms(e.timestamp, origin),
                "attributes": attributes_json(&e.attributes),
            })
        })
        .collect();
    let links: Vec<Json> = span
        .links
        .iter()
        .map(|l| {
            serde_json::json!({
                "trace_id": l.span_context.trace_id.to_string(),
                "span_id": l.span_context.span_id.to_string(),
                "attributes": attributes_json(&l.attributes),
            })
        })
        .collect();
    serde_json::json!({
        "span_id": span.span_id().to_string(),
        "parent_span_id": (!span.is_root()).then(|| span.parent_span_id.to_string()),
        "parent_is_remote": span.parent_is_remote,
        "name": span.name,
        "kind": crate::report::memory::kind_name(&span.kind),
        "service": &*span.service_name,
        "scope": span.scope.name(),
        "start_us": micros(span.start_time),
        "offset_ms": offset_ms(span.start_time, origin),
        "duration_ms": millis(span.duration()),
        "status": { "code": code, "message": message },
        "attributes": attributes_json(&span.attributes),
        "events": events,
        "links": links,
    })
}

#[derive(Serialize)]
struct OperationStats<'a> {
    service: &'a str,
    name: &'a str,
    count: usize,
    errors: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
}

/// The nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    millis(sorted[rank.clamp(1, sorted.len()) - 1])
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.lock();
    // Entry spans (roots, server and consumer spans) of the traces held, per operation.
    let mut per_op: std::collections::BTreeMap<(&str, &str), (Vec<Duration>, usize)> =
        Default::default();
    for (_, held) in store.newest_first() {
        for span in &held.spans {
            if span.is_root() || matches!(span.kind, SpanKind::Server | SpanKind::Consumer) {
                let entry = per_op.entry((&span.service_name, &span.name)).or_default();
                entry.0.push(span.duration());
                entry.1 += usize::from(is_error(span));
            }
        }
    }
    let operations: Vec<OperationStats<'_>> = per_op
        .into_iter()
        .map(|((service, name), (mut durations, errors))| {
            durations.sort_unstable();
            OperationStats {
                service,
                name,
                count: durations.len(),
                errors,
                p50_ms: percentile(&durations, 50.0),
                p95_ms: percentile(&durations, 95.0),
                p99_ms: percentile(&durations, 99.0),
            }
        })
        .collect();
    json(&serde_json::json!({
        "counts": counts(&store),
        "operations": operations,
    }))
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The per-operation counts: an operation that metered layers measured from their
/// measurements alone (its spans would count its sampled requests twice), the others from
/// their entry spans; the operations past the bound, of both, under one
/// [`OTHER_OPERATION`](op_metrics::OTHER_OPERATION).
fn operations(store: &Store) -> BTreeMap<(Arc<str>, Arc<str>), OpMetrics> {
    let mut operations = store.measured.snapshot();
    for (key, op) in &store.operations {
        match operations.get_mut(key) {
            None => {
                operations.insert(key.clone(), op.clone());
            }
            Some(measured) if &*key.1 == op_metrics::OTHER_OPERATION && key.0.is_empty() => {
                for (class, n) in &op.by_class {
                    *measured.by_class.entry(*class).or_default() += n;
                }
                for (sum, n) in measured.buckets.iter_mut().zip(op.buckets) {
                    *sum += n;
                }
                measured.count += op.count;
                measured.sum_seconds += op.sum_seconds;
            }
            Some(_) => {}
        }
    }
    operations
}

pub(crate) fn metrics_text(store: &Store) -> String {
    let c = store.counters;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP tracewire_ui_spans_received_total Spans the trace viewer received, by source.\n\
         # TYPE tracewire_ui_spans_received_total counter\n\
         tracewire_ui_spans_received_total{{source=\"local\"}} {}\n\
         tracewire_ui_spans_received_total{{source=\"otlp\"}} {}\n\
         # HELP tracewire_ui_spans_dropped_total Spans refused at the assembly limits.\n\
         # TYPE tracewire_ui_spans_dropped_total counter\n\
         tracewire_ui_spans_dropped_total {}\n\
         # HELP tracewire_ui_traces_dropped_total Traces let go, oldest first, to stay within the bounds.\n\
         # TYPE tracewire_ui_traces_dropped_total counter\n\
         tracewire_ui_traces_dropped_total {}\n\
         # HELP tracewire_ui_traces_held Traces held for the pages.\n\
         # TYPE tracewire_ui_traces_held gauge\n\
         tracewire_ui_traces_held {}",
        c.received_local,
        c.received_otlp,
        c.spans_dropped,
        c.traces_dropped,
        store.traces_held(),
    );
    let operations = operations(store);
    out.push_str(
        "# HELP tracewire_ui_requests_total Requests measured by metered layers, else entry spans (server, consumer, roots), by status class.\n\
         # TYPE tracewire_ui_requests_total counter\n",
    );
    for ((service, operation), op) in &operations {
        for (class, n) in &op.by_class {
            let _ = writeln!(
                out,
                "tracewire_ui_requests_total{{service=\"{}\",operation=\"{}\",status_class=\"{class}\"}} {n}",
                label(service),
                label(operation),
            );
        }
    }
    out.push_str(
        "# HELP tracewire_ui_request_duration_seconds Duration of requests measured by metered layers, else of entry spans.\n\
         # TYPE tracewire_ui_request_duration_seconds histogram\n",
    );
    for ((service, operation), op) in &operations {
        let labels = format!(
            "service=\"{}\",operation=\"{}\"",
            label(service),
            label(operation)
        );
        let mut cumulative = 0;
        for (le, n) in BUCKETS.iter().zip(op.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "tracewire_ui_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "tracewire_ui_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
             tracewire_ui_request_duration_seconds_sum{{{labels}}} {}\n\
             tracewire_ui_request_duration_seconds_count{{{labels}}} {}",
            op.count, op.sum_seconds, op.count
        );
    }
    out
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = metrics_text(&shared.lock());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// An OTLP/HTTP failure: a `Status` in the request's encoding (JSON when not known).
fn otlp_error(encoding: Encoding, status: StatusCode, message: impl AsRef<str>) -> Response {
    let body = ingest::failure(encoding, message.as_ref());
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

async fn ingest(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let max = shared.max_body_bytes;
    let encoding = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Encoding::from_content_type);
    let Some(encoding) = encoding else {
        return otlp_error(
            Encoding::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/x-protobuf or application/json",
        );
    };
    // SDKs compress with gzip when `OTEL_EXPORTER_OTLP_COMPRESSION=gzip`.
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case(b"identity") => false,
        Some(v) if v.eq_ignore_ascii_case(b"gzip") => true,
        Some(_) => {
            return otlp_error(
                encoding,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Encoding must be gzip or identity",
            )
        }
    };
    let Ok(_slot) = shared.ingest_slots.try_acquire() else {
        let mut busy = otlp_error(
            encoding,
            StatusCode::SERVICE_UNAVAILABLE,
            "busy with other OTLP requests; retry",
        );
        (busy.headers_mut()).insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return busy;
    };
    let too_large = || {
        otlp_error(
            encoding,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the limit of {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let bytes = match Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return too_large(),
        Err(e) => {
            return otlp_error(
                encoding,
                StatusCode::BAD_REQUEST,
                format!("reading the body: {e}"),
            )
        }
    };
    let bytes: Cow<'_, [u8]> = if gzip {
        match gunzip(&bytes, max) {
            Ok(bytes) => Cow::Owned(bytes),
            Err(Gunzip::TooLarge) => return too_large(),
            Err(Gunzip::Invalid(e)) => {
                return otlp_error(encoding, StatusCode::BAD_REQUEST, format!("gzip: {e}"))
            }
        }
    } else {
        Cow::Borrowed(&bytes)
    };
    let spans = match ingest::decode(&bytes, encoding) {
        Ok(spans) => spans,
        Err(e) => return otlp_error(encoding, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let rejected = shared.update(|store| store.add(&spans, Source::Otlp, Instant::now()));
    let body = ingest::success(encoding, rejected);
    ([(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
}

enum Gunzip {
    /// Over the body limit once decompressed.
    TooLarge,
    Invalid(std::io::Error),
}

/// A gzip body decompressed, refused past `max` bytes: the limit holds for what is decoded,
/// not only for what came over the wire (a few KiB of gzip can hold gigabytes of zeros).
fn gunzip(compressed: &[u8], max: usize) -> Result<Vec<u8>, Gunzip> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(compressed)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(Gunzip::Invalid)?;
    if out.len() > max {
        return Err(Gunzip::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_bodies_are_bounded_once_decompressed() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let gzip = |data: &[u8]| {
            let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        };
        assert_eq!(gunzip(&gzip(b"spans"), 5).ok(), Some(b"spans".to_vec()));
        // 64 MiB of zeros is a few KiB of gzip.
        let bomb = gzip(&vec![0; 64 << 20]);
        assert!(bomb.len() < 128 << 10, "{}", bomb.len());
        assert!(matches!(gunzip(&bomb, 4 << 20), Err(Gunzip::TooLarge)));
        assert!(matches!(gunzip(b"not gzip", 100), Err(Gunzip::Invalid(_))));
    }

    #[test]
    fn filters_parse_and_refuse_bad_values() {
        let f =
            Filter::parse("service=checkout&errors=true&min_duration_ms=2.5&limit=3&operation=")
                .unwrap();
        assert_eq!(f.service.as_deref(), Some("checkout"));
        assert!(f.errors_only);
        assert_eq!(f.min_duration, Some(Duration::from_micros(2500)));
        assert_eq!(f.limit, Some(3));
        assert_eq!(f.operation, None);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "errors=maybe",
            "min_duration_ms=-1",
            "min_duration_ms=NaN",
            "min_duration_ms=inf",
            "trace_id=xyz",
            "trace_id=00000000000000000000000000000000",
            "trace_id=4BF92F3577B34DA6A3CE929D0E0E4736",
            "color=red",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 50.0), 50.0);
        assert_eq!(percentile(&d, 95.0), 95.0);
        assert_eq!(percentile(&d, 99.0), 99.0);
        assert_eq!(percentile(&d[..1], 99.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn hosts_are_ours_or_refused() {
        let loopback = Hosts {
            addr: ([127, 0, 0, 1], 16686).into(),
            extra: vec!["traces.internal".into()],
        };
        for ok in [
            "localhost:16686",
            "127.0.0.1:16686",
            "127.0.0.2:16686",
            "[::1]:16686",
            "localhost.:16686",
            "traces.internal",
            "traces.internal:443",
        ] {
            assert!(loopback.allows(ok), "{ok}");
        }
        for refused in [
            "",
            ":16686",
            "localhost",
            "localhost:80",
            "localhost:16686:1",
            "evil.example:16686",
            "192.168.1.5:16686",
            "[::1]",
            "[::1]x",
            "[::1",
            "localhost:99999",
        ] {
            assert!(!loopback.allows(refused), "{refused}");
        }
        // Listening on a LAN address by choice: that address too.
        let lan = Hosts {
            addr: ([192, 168, 1, 5], 16686).into(),
            extra: Vec::new(),
        };
        assert!(lan.allows("192.168.1.5:16686"));
        assert!(lan.allows("localhost:16686"));
        assert!(!lan.allows("192.168.1.6:16686"));
        assert!(!lan.allows("myhost.lan:16686"));
        // On all interfaces: any address (an address is not a name that can be rebound).
        let all = Hosts {
            addr: ([0, 0, 0, 0], 80).into(),
            extra: Vec::new(),
        };
        assert!(all.allows("10.0.0.7"));
        assert!(all.allows("10.0.0.7:80"));
        assert!(!all.allows("myhost.lan"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
