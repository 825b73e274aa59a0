//! A trace viewer in the browser, for development.
//!
//! [`Viewer`] keeps the most recent traces in memory and serves them on a loopback address:
//! a list of traces with filters, per-operation latency, and a waterfall of each trace. Other
//! local services, in any language, can send their spans to it over OTLP/HTTP and appear in
//! the same traces as the Rust services they call.
//!
//! The quickest way in is [`dev::init_with_ui`](crate::dev::init_with_ui), or setting
//! `TRACEWIRE_UI_ADDR` (for example `127.0.0.1:16686`) before
//! [`dev::init`](crate::dev::init); both print the viewer's URL once. By hand:
//!
//! ```
//! use tracewire::record::Recorder;
//! use tracewire::ui::Viewer;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # fn main() -> Result<(), tracewire::ui::StartError> {
//! let viewer = Viewer::builder().addr(([127, 0, 0, 1], 0).into()).start()?;
//! println!("traces at {}", viewer.url());
//! let (recorder, guard) = Recorder::builder()
//!     .service_name("checkout")
//!     .reporter(viewer.reporter())
//!     .build();
//! let subscriber = tracing_subscriber::registry().with(recorder);
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info_span!("POST /checkout").in_scope(|| {});
//! });
//! guard.flush().unwrap();
//! assert_eq!(viewer.stats().traces_held, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # What it keeps
//!
//! Spans are gathered into traces by the same assembly as the
//! [console reporter](crate::report::console) (orphans, late spans, the remote-parent grace
//! period, idle and maximum-age timeouts): a trace appears once its root has arrived, and
//! spans arriving later (say from an OTLP service) join it. Held traces are bounded in number
//! ([`ViewerBuilder::max_traces`], 1000 by default) and in bytes
//! ([`ViewerBuilder::max_bytes`], 64 MiB, counting every allocation the viewer's data
//! takes); the oldest go first, and the drops are counted ([`ViewerStats`], `/metrics`).
//!
//! The server listens on `127.0.0.1:16686` unless told otherwise; it listens on another
//! interface only when named one. It has no authentication: keep it on loopback. It serves
//! at most 256 connections at once (the others wait to be taken in), so that a program
//! leaking connections cannot take all of the application's file descriptors, and closes a
//! connection silent for [`ViewerBuilder::idle_timeout`] (two minutes). It reads at most
//! four OTLP bodies at once; more senders get 503 with `Retry-After: 1`, which exporters
//! retry.
//!
//! Against [DNS rebinding](https://en.wikipedia.org/wiki/DNS_rebinding) (a page of another
//! site whose name the attacker points at 127.0.0.1), every request, `/v1/traces`
//! included, must be addressed to the viewer: a `Host` of `localhost`, `127.0.0.1` or
//! `[::1]` with the port listened on, the address listened on, or a name allowed with
//! [`ViewerBuilder::allow_host`]; others get 403. A `POST` from a browser page (with an
//! `Origin` header) of another origin gets 403 too.
//!
//! # Pages
//!
//! `GET /` is the whole application (HTML, JavaScript and CSS compiled into the crate, no
//! CDN): the trace list, newest first, updated live (from `/api/events`; it polls every 2
//! seconds only while that stream is down), with filters by service,
//! operation, errors only, minimum duration and trace id; counts of traces, spans and
//! services; p50/p95/p99 latency per operation; and, at `#/trace/{trace_id}`, the trace's
//! service path (`checkout → inventory, payment`) and a waterfall with a bar per span on a
//! shared time axis. Clicking a span shows its attributes, events, links and status. Every
//! name and value is inserted as text, never as markup.
//!
//! # JSON API
//!
//! Times are microseconds since the Unix epoch (`start_us`); durations and offsets are
//! milliseconds with microsecond precision (`duration_ms`, `offset_ms`). Errors are
//! `{"error": "message"}` with status 400 (a bad parameter) or 404 (no such trace held).
//!
//! `GET /api/traces` lists held traces, newest first. Query parameters, all optional (an
//! empty value means no filter; any other parameter is a 400):
//!
//! | parameter | meaning |
//! |---|---|
//! | `service` | a span of the trace ran in this service |
//! | `operation` | a span of the trace has this name |
//! | `errors` | `true`: only traces with a span whose status is Error |
//! | `min_duration_ms` | the trace lasted at least this long (a number ≥ 0) |
//! | `trace_id` | 32 lower-case hex digits |
//! | `limit` | at most this many traces, 1 to 1000 (default 100) |
//!
//! ```text
//! {"traces": [{"trace_id": "4bf9…", "name": "POST /checkout/{sku}", "service": "checkout",
//!              "start_us": 1718000000000000, "duration_ms": 98.1, "span_count": 5,
//!              "services": ["checkout", "inventory", "payment"],
//!              "path": "checkout → inventory, payment", "error": true, "dropped_spans": 0}],
//!  "matched": 1,
//!  "counts": {"traces": 12, "spans": 60, "services": 3}}
//! ```
//!
//! `GET /api/traces/{trace_id}` is one trace: the fields of a list entry, plus `spans`,
//! ordered by start:
//!
//! ```text
//! {"span_id": "00f067aa0ba902b7", "parent_span_id": null, "parent_is_remote": false,
//!  "name": "POST /checkout/{sku}", "kind": "server", "service": "checkout", "scope": "tracewire",
//!  "start_us": 1718000000000000, "offset_ms": 0.0, "duration_ms": 98.1,
//!  "status": {"code": "error", "message": ""},
//!  "attributes": {"http.response.status_code": 500, "url.path": "/checkout/C-3"},
//!  "events": [{"name": "exception", "offset_ms": 97.0, "attributes": {"exception.message": "…"}}],
//!  "links": [{"trace_id": "…", "span_id": "…", "attributes": {}}]}
//! ```
//!
//! `GET /api/stats` is the per-operation latency of the traces held, for entry spans (roots,
//! server and consumer spans):
//!
//! ```text
//! {"counts": {"traces": 12, "spans": 60, "services": 3},
//!  "operations": [{"service": "checkout", "name": "POST /checkout/{sku}", "count": 12,
//!                  "errors": 2, "p50_ms": 31.2, "p95_ms": 98.1, "p99_ms": 98.1}]}
//! ```
//!
//! `GET /api/events` is a stream of [server-sent events](https://html.spec.whatwg.org/multipage/server-sent-events.html)
//! (`text/event-stream`): an event `traces` at once, then one whenever the held traces
//! change, at most every 250 ms (changes meanwhile are told in one), with
//! `{"generation": 42, "traces_held": 12}`; fetch `/api/traces` on each. Nothing queues
//! for a slow reader: it gets the latest state when it reads again. At most 32 clients at
//! once; more get 503.
//!
//! # OTLP/HTTP
//!
//! `POST /v1/traces` takes an OTLP `ExportTraceServiceRequest`, as protobuf
//! (`application/x-protobuf`) or JSON (`application/json`), uncompressed or with
//! `Content-Encoding: gzip` (`OTEL_EXPORTER_OTLP_COMPRESSION=gzip`). Point another
//! service's SDK at the viewer with `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:16686`
//! (and, for SDKs that default to gRPC, `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`). A body
//! that cannot be decoded, has a span with an invalid id, or holds more than 1,048,576
//! elements (spans, attributes, events, links, values; a bound on the memory decoding takes)
//! gets 400 with a message and nothing of it is kept; a body over [`ViewerBuilder::max_body_bytes`] (4 MiB by default)
//! gets 413, also when it is over that limit once decompressed; another `Content-Type` or
//! `Content-Encoding` gets 415. The body of these answers
//! is a `google.rpc.Status` with the message, in the request's encoding (JSON when the
//! `Content-Type` is another), as the OTLP/HTTP specification asks. Spans of a request
//! taken in but dropped at the limits on spans waiting for their trace's root are told in
//! the 200's `partial_success` (`rejected_spans`).
//!
//! # Metrics
//!
//! `GET /metrics` is in the Prometheus text format:
//! - `tracewire_ui_spans_received_total{source="local"|"otlp"}`;
//! - `tracewire_ui_spans_dropped_total` (refused at the assembly limits) and
//!   `tracewire_ui_traces_dropped_total` (let go to stay within the bounds);
//! - `tracewire_ui_traces_held`;
//! - per operation (`service`, `operation`; after 1000 operations, or once their rows
//!   take a twelfth of [`ViewerBuilder::max_bytes`], new ones count under
//!   `operation="_other"`): `tracewire_ui_requests_total` by `status_class` (`1xx`…`5xx`
//!   from the HTTP status code, else `ok` or `error`), and the histogram
//!   `tracewire_ui_request_duration_seconds` with the semantic conventions' bucket
//!   boundaries (5 ms to 10 s).
//!
//! The per-operation series come from one of two places, never both:
//! - **requests measured by metered server layers** ([`ServerLayer::metrics`](crate::ServerLayer::metrics),
//!   feature `metrics`), once the viewer takes them
//!   ([`Viewer::count_measured_requests`]; [`dev::init_with_ui`](crate::dev::init_with_ui)
//!   and `TRACEWIRE_UI_ADDR` do): **every request**, sampled or not, filtered or not, under
//!   its layer's service name and the span name the layer gives it by default (`GET
//!   /users/{id}`, `GET`, or the gRPC method), with the duration and status of its
//!   [request metrics](crate::metrics). Such an operation's spans are not counted, so that
//!   no request counts twice.
//! - **entry spans** (roots, server and consumer spans) for every other operation: the
//!   requests of unmetered layers, jobs, spans from OTLP. Traces are sampled and filtered:
//!   these count only the requests recorded.

mod http;
mod ingest;
mod measured;
mod op_metrics;
mod size;
mod store;

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::report::console::assemble;
use crate::report::Reporter;
use crate::span::SpanRecord;

use http::{Hosts, Shared};
use store::{Bounds, Store};

/// Where the viewer listens unless told otherwise: Jaeger's UI port, on loopback.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 16686);

/// The environment variable [`dev`](crate::dev) reads the viewer's address from.
pub const ADDR_ENV: &str = "TRACEWIRE_UI_ADDR";

/// How long a stopping viewer waits for the requests in flight to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How often held-back traces are checked for their timeouts when no span arrives.
const TICK: Duration = Duration::from_millis(250);

/// Configures and starts a [`Viewer`]. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct ViewerBuilder {
    addr: SocketAddr,
    max_traces: usize,
    max_bytes: usize,
    max_body_bytes: usize,
    idle_timeout: Duration,
    hosts: Vec<String>,
}

impl Default for ViewerBuilder {
    fn default() -> Self {
        ViewerBuilder {
            addr: DEFAULT_ADDR,
            max_traces: 1000,
            max_bytes: 64 << 20,
            max_body_bytes: 4 << 20,
            idle_timeout: Duration::from_secs(120),
            hosts: Vec::new(),
        }
    }
}

impl ViewerBuilder {
    /// The address to listen on; `127.0.0.1:16686` by default. Port 0 picks a free port.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The most traces held; the oldest go first. 1000 by default.
    pub fn max_traces(mut self, traces: usize) -> Self {
        self.max_traces = traces;
        self
    }

    /// The most memory the viewer's data takes; the oldest traces go first. 64 MiB by
    /// default.
    ///
    /// It counts everything the viewer keeps: held traces, spans still being assembled
    /// into traces (an eighth of the bound at most), and the indexes, each allocation as
    /// the allocator rounds it and with its header, and strings that may be shared as if
    /// they were not. All that is kept within two thirds of the bound; the last third is
    /// for what the allocator keeps beyond the bytes in use (freed memory between live
    /// allocations), measured at up to a third of the counted bytes with glibc.
    ///
    /// What it does not count is fixed or passing: the process, the server and its thread,
    /// the recorder's queue and pools (bounded by its
    /// [capacity](crate::record::RecorderBuilder::queue_capacity)), together about 8 MiB
    /// with the defaults; and a request in flight (an OTLP body of up to
    /// [`max_body_bytes`](Self::max_body_bytes), decoded, or a page of the JSON API). See
    /// [`ViewerStats::bytes_held`].
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The largest OTLP request body accepted; larger ones get 413. 4 MiB by default.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// How long a connection may send and receive nothing before it is closed: one opened
    /// and left silent would otherwise hold one of the 256 connections for good. Two minutes
    /// by default, longer than HTTP clients keep idle connections (90 s) and than the page's
    /// live updates stay quiet (15 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Also answers requests addressed to `host`, a name or address without port (say
    /// `traces.dev.internal`), on any port: for a viewer reached through a proxy or a
    /// name of your own. Requests whose `Host` is not one of the viewer's get 403, against
    /// [DNS rebinding](https://en.wikipedia.org/wiki/DNS_rebinding); always allowed are
    /// `localhost` and loopback addresses with the port listened on, and the address
    /// listened on (any address, when listening on all interfaces).
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        let host: String = host.into();
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        self.hosts
            .push(host.trim_end_matches('.').to_ascii_lowercase());
        self
    }

    /// Binds the address and starts serving on a thread of its own.
    pub fn start(self) -> Result<Viewer, StartError> {
        let bind_error = |source| StartError::Bind {
            addr: self.addr,
            source,
        };
        let listener = TcpListener::bind(self.addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        // The store bounds the bytes of traces being assembled (an eighth of the bound,
        // counted more fully than the assembler does) and lets every root in, as a root
        // releases its trace at the end of its batch; the assembler bounds them by count.
        let bounds = Bounds {
            max_traces: self.max_traces,
            max_bytes: self.max_bytes,
            assembly: assemble::Limits {
                max_traces: 2_000,
                max_spans: 20_000,
                max_spans_per_trace: 5_000,
                max_bytes: usize::MAX,
                max_bytes_per_trace: (self.max_bytes / 8).max(1 << 20),
                // The ids of released traces, to join late spans to them: counted in the
                // bound, so fewer for a small one.
                remember: (self.max_bytes >> 10).clamp(64, 10_000),
            },
            timeouts: assemble::Timeouts {
                grace: Duration::from_millis(500),
                idle: Duration::from_secs(5),
                max_age: Duration::from_secs(60),
            },
        };
        let hosts = Hosts {
            addr,
            extra: self.hosts,
        };
        let shared = Arc::new(Shared::new(Store::new(bounds), self.max_body_bytes, hosts));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = shared.clone();
        let idle = self.idle_timeout;
        let thread = std::thread::Builder::new()
            .name("tracewire-ui".into())
            .spawn(move || runtime.block_on(serve(listener, serving, stopped, idle)))
            .map_err(StartError::Runtime)?;
        Ok(Viewer {
            shared,
            addr,
            stop: Some(stop),
            thread: Some(thread),
            #[cfg(feature = "metrics")]
            counting: std::sync::Mutex::new(None),
        })
    }
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stopped: tokio::sync::oneshot::Receiver<()>,
    idle_timeout: Duration,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("tracewire: the trace viewer cannot serve: {e}");
            return;
        }
    };
    let ticking = shared.clone();
    let ticker = tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        loop {
            interval.tick().await;
            ticking.update(|store| store.tick(Instant::now()));
        }
    });
    let listener = Capped {
        listener,
        slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        idle_timeout,
    };
    let closing = shared.clone();
    let mut stopping = shared.closing.subscribe();
    let server = axum::serve(listener, http::router(shared)).with_graceful_shutdown(async move {
        let _ = stopped.await;
        closing.closing.send_replace(true);
    });
    tokio::select! {
        result = std::future::IntoFuture::into_future(server) => {
            if let Err(e) = result {
                eprintln!("tracewire: the trace viewer stopped: {e}");
            }
        }
        // A request still unfinished a moment after the stop (its sender paused or gone
        // quiet half-way) is cut as the runtime drops: else the application could not exit.
        _ = async {
            let _ = stopping.wait_for(|closing| *closing).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {}
    }
    ticker.abort();
}

/// The most connections served at once; the others wait in the listen backlog. Each takes
/// a file descriptor of the application's process, which a local program opening
/// connections and never closing them (a leaking exporter, say) must not exhaust.
const MAX_CONNECTIONS: usize = 256;

/// The listener, taking a connection in only while fewer than [`MAX_CONNECTIONS`] are open.
/// Written here because axum's `serve` has neither a connection limit nor a timeout
/// (hyper's header timeout needs a timer axum does not give it).
struct Capped {
    listener: tokio::net::TcpListener,
    slots: Arc<tokio::sync::Semaphore>,
    idle_timeout: Duration,
}

impl axum::serve::Listener for Capped {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CappedStream, SocketAddr) {
        // Never closed, so always a slot.
        let slot = self.slots.clone().acquire_owned().await.ok();
        let (stream, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        let idle_timeout = self.idle_timeout;
        (
            CappedStream {
                stream,
                _slot: slot,
                idle: Box::pin(tokio::time::sleep(idle_timeout)),
                idle_timeout,
            },
            addr,
        )
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection, holding its slot until it closes, and closed once nothing went either way
/// for its idle timeout.
struct CappedStream {
    stream: tokio::net::TcpStream,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    idle: Pin<Box<tokio::time::Sleep>>,
    idle_timeout: Duration,
}

impl CappedStream {
    /// `poll` moved bytes: the connection is not idle. Else, once the timeout has passed,
    /// the connection fails with `TimedOut`, and hyper closes it.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Pending if std::future::Future::poll(self.idle.as_mut(), cx).is_ready() => {
                Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()))
            }
            Poll::Pending => Poll::Pending,
            ready => {
                let deadline = tokio::time::Instant::now() + self.idle_timeout;
                self.idle.as_mut().reset(deadline);
                ready
            }
        }
    }
}

impl tokio::io::AsyncRead for CappedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.watch(cx, poll)
    }
}

impl tokio::io::AsyncWrite for CappedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Why a [`Viewer`] did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The address could not be bound (in use, not local, no permission).
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// `TRACEWIRE_UI_ADDR` is not a socket address such as `127.0.0.1:16686`.
    BadAddr {
        /// The value found, cut to 100 characters.
        value: String,
    },
    /// The server thread or its runtime could not start.
    Runtime(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            StartError::BadAddr { value } => write!(
                f,
                "{ADDR_ENV}={value:?} is not an address such as 127.0.0.1:16686"
            ),
            StartError::Runtime(e) => write!(f, "cannot start the server thread: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { source, .. } | StartError::Runtime(source) => Some(source),
            StartError::BadAddr { .. } => None,
        }
    }
}

/// The running trace viewer; dropping it stops the server (after a second at most for the
/// requests in flight). See the [module docs](self).
pub struct Viewer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Where measured requests come from, after [`Viewer::count_measured_requests`].
    #[cfg(feature = "metrics")]
    counting: std::sync::Mutex<Option<crate::metrics::SinkId>>,
}

impl Viewer {
    /// A builder: `127.0.0.1:16686`, 1000 traces, 64 MiB.
    pub fn builder() -> ViewerBuilder {
        ViewerBuilder::default()
    }

    /// The address the viewer listens on (with the port picked, if 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The viewer's page, e.g. `http://127.0.0.1:16686/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// A reporter that feeds this viewer; give it to
    /// [`RecorderBuilder::reporter`](crate::record::RecorderBuilder::reporter).
    pub fn reporter(&self) -> ViewerReporter {
        ViewerReporter {
            shared: self.shared.clone(),
        }
    }

    /// From now on, the requests that metered server layers of this process measure
    /// ([`ServerLayer::metrics`](crate::ServerLayer::metrics)) count in this viewer's
    /// [`/metrics`](self#metrics): every request, sampled or not, filtered or not, under its
    /// layer's service name, else `default_service` (give the recorder's, so that they meet
    /// its spans). Until the viewer is dropped; a second call changes `default_service`.
    /// [`dev::init_with_ui`](crate::dev::init_with_ui) calls it.
    ///
    /// ```
    /// # fn main() -> Result<(), tracewire::ui::StartError> {
    /// let viewer = tracewire::ui::Viewer::builder()
    ///     .addr(([127, 0, 0, 1], 0).into())
    ///     .start()?;
    /// viewer.count_measured_requests("checkout");
    /// let layer = tracewire::ServerLayer::new()
    ///     .metrics(&*opentelemetry::global::meter_provider());
    /// # drop(layer);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn count_measured_requests(&self, default_service: impl Into<Arc<str>>) {
        let sink = Arc::new(MeasuredSink {
            measured: self.shared.lock().measured.clone(),
        });
        let mut counting = self.counting.lock().unwrap_or_else(|e| e.into_inner());
        let id = crate::metrics::add_sink(sink, default_service.into());
        if let Some(old) = counting.replace(id) {
            crate::metrics::remove_sink(old);
        }
    }

    /// What the viewer holds and has dropped so far.
    pub fn stats(&self) -> ViewerStats {
        let store = self.shared.lock();
        ViewerStats {
            traces_held: store.traces_held(),
            bytes_held: store.bytes_held(),
            spans_assembling: store.spans_assembling(),
            spans_received_local: store.counters.received_local,
            spans_received_otlp: store.counters.received_otlp,
            spans_dropped: store.counters.spans_dropped,
            traces_dropped: store.counters.traces_dropped,
        }
    }
}

impl fmt::Debug for Viewer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Viewer")
            .field("addr", &self.addr)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        if let Some(id) = self
            .counting
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            crate::metrics::remove_sink(id);
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a [`Viewer`] holds and has dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ViewerStats {
    /// Traces held for the pages.
    pub traces_held: usize,
    /// The memory the viewer's data takes, as counted against
    /// [`ViewerBuilder::max_bytes`]: held traces, spans being assembled, and the indexes.
    pub bytes_held: usize,
    /// Spans waiting for their trace's root (or a timeout) before they show.
    pub spans_assembling: usize,
    /// Spans received from this process's recorder.
    pub spans_received_local: u64,
    /// Spans received over OTLP/HTTP.
    pub spans_received_otlp: u64,
    /// Spans refused at the assembly limits.
    pub spans_dropped: u64,
    /// Traces let go, oldest first, to stay within the bounds.
    pub traces_dropped: u64,
}

/// The [`Reporter`] that feeds a [`Viewer`]; from [`Viewer::reporter`].
#[derive(Clone)]
pub struct ViewerReporter {
    shared: Arc<Shared>,
}

impl fmt::Debug for ViewerReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewerReporter").finish_non_exhaustive()
    }
}

impl Reporter for ViewerReporter {
    fn report(&mut self, batch: &[SpanRecord]) {
        self.shared
            .update(|store| store.add(batch, store::Source::Local, Instant::now()));
    }

    fn tick(&mut self) {
        self.shared.update(|store| store.tick(Instant::now()));
    }

    fn flush(&mut self) {
        self.shared.update(Store::flush);
    }
}

/// Hands measured requests to a viewer's counts.
#[cfg(feature = "metrics")]
struct MeasuredSink {
    measured: Arc<measured::MeasuredOps>,
}

#[cfg(feature = "metrics")]
impl crate::metrics::MeasuredSink for MeasuredSink {
    fn record(&self, request: &crate::metrics::MeasuredRequest<'_>) {
        let class = op_metrics::class(request.http_status.map(i64::from), request.error);
        self.measured
            .record(request.service, request.operation, class, request.nanos);
    }
}

/// Starts the viewer for [`dev`](crate::dev): at `TRACEWIRE_UI_ADDR` when set, else at
/// [`DEFAULT_ADDR`] if `asked`; `None` when neither. Prints why it did not start on stderr
/// (`dev` prints the URL, once the setup is installed).
pub(crate) fn start_for_dev(asked: bool) -> Option<Viewer> {
    let from_env = std::env::var(ADDR_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    if !asked && from_env.is_none() {
        return None;
    }
    let started = match from_env {
        Some(value) => match value.trim().parse::<SocketAddr>() {
            Ok(addr) => Viewer::builder().addr(addr).start(),
            Err(_) => Err(StartError::BadAddr {
                value: value.chars().take(100).collect(),
            }),
        },
        None => Viewer::builder().start(),
    };
    match started {
        // `dev` prints the URL once the setup is installed.
        Ok(viewer) => Some(viewer),
        Err(e) => {
            eprintln!("tracewire: the trace viewer is not running: {e}");
            None
        }
    }
}
