//! Export through any OpenTelemetry SDK [`SpanExporter`]: OTLP to a Collector, Jaeger,
//! Tempo, stdout…
//!
//! [`OtelReporter`] converts each [`SpanRecord`] to the SDK's [`SpanData`] (see the
//! [`From`] impl) and hands batches to the exporter on the reporter worker thread:
//!
//! - **Resource.** Each span is exported with a [`Resource`] whose `service.name` is the
//!   span's own [`service_name`](SpanRecord::service_name), so several services recorded in
//!   one process each keep their identity: a batch is split by service, and the exporter's
//!   resource is set ([`SpanExporter::set_resource`]) before each service's part is exported.
//!   Every resource also carries `telemetry.sdk.*`, the attributes read from
//!   `OTEL_RESOURCE_ATTRIBUTES` ([`with_env`](OtelReporterBuilder::with_env), only when asked)
//!   and the attributes given in code, each overriding the one before.
//! - **Batching.** Spans accumulate until [`max_export_batch_size`] of them are waiting or the
//!   oldest has waited [`export_interval`]; then everything waiting is exported, one call per
//!   service and per `max_export_batch_size` spans. Flushing the recorder exports at once.
//! - **Timeouts.** Each export call runs on a current-thread tokio runtime that the worker
//!   thread builds on first use (or on the runtime given to
//!   [`runtime`](OtelReporterBuilder::runtime), see below), and is abandoned after
//!   [`export_timeout`] (10 s by default). After a timeout the rest of that
//!   round is dropped without waiting again, so a stalled exporter holds the worker for one
//!   timeout per round; the recorder's bounded queue drops (and counts) what cannot wait,
//!   and the application's threads never wait.
//! - **Failures.** Errors, panics of the exporter (each costs its call only) and timeouts
//!   are counted ([`OtelCounters`]) and logged through
//!   `tracing` at WARN at most once per [`error_log_interval`] (10 s by default), with the
//!   number of failures since the last report, under the target `tracewire::report::otel`.
//!   The exporter runs with no `tracing` subscriber on the worker thread, so its own
//!   internal logs and spans are not recorded (they would loop back into the exporter). The
//!   worker thread has no current span, so the WARN event attaches to no span either.
//! - **Shutdown.** When the recorder shuts down, waiting spans are exported, then the
//!   exporter's `force_flush` and `shutdown` run.
//! - **Accounting.** The reporter tells the pipeline which spans it exported and which it
//!   dropped ([`Reporter::take_outcomes`]): a failed or timed-out export counts its spans as
//!   [`export_failed`](crate::report::Drops::export_failed), and spans still buffered count
//!   as [`queued`](crate::report::Stats::queued) until exported.
//! - **Trace state.** `tracestate` is converted with [`TraceState::to_otel`]: members whose
//!   key `opentelemetry`'s older grammar refuses (such as `a@b@c`) are left out of the export.
//!
//! ```
//! use opentelemetry_sdk::error::OTelSdkResult;
//! use opentelemetry_sdk::trace::{SpanData, SpanExporter};
//! use std::sync::{Arc, Mutex};
//! use tracewire::record::Recorder;
//! use tracewire::report::OtelReporter;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! /// Keeps span names: stands in for a real exporter here.
//! #[derive(Debug, Default)]
//! struct Names(Arc<Mutex<Vec<String>>>);
//!
//! impl SpanExporter for Names {
//!     async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
//!         let mut names = self.0.lock().unwrap();
//!         names.extend(batch.into_iter().map(|span| span.name.into_owned()));
//!         Ok(())
//!     }
//! }
//!
//! let names = Arc::new(Mutex::new(Vec::new()));
//! let otel = OtelReporter::builder(Names(names.clone()))
//!     .resource_attribute(opentelemetry::KeyValue::new("deployment.environment", "test"))
//!     .build();
//! let counters = otel.counters();
//! let (layer, guard) = Recorder::builder()
//!     .service_name("checkout")
//!     .reporter(otel)
//!     .build();
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     tracing::info_span!("POST /checkout").in_scope(|| {});
//! });
//! guard.flush().unwrap();
//! assert_eq!(*names.lock().unwrap(), ["POST /checkout"]);
//! assert_eq!(counters.stats().spans_exported, 1);
//! ```
//!
//! # OTLP over gRPC (tonic) and the tokio runtime
//!
//! `opentelemetry-otlp`'s tonic exporter must be **built inside a tokio runtime** (building
//! its channel spawns a task), and its connection and timers run on that runtime. Give the
//! reporter that runtime with [`runtime`](OtelReporterBuilder::runtime): every export then
//! runs as a task on it, and the worker thread only waits for the result. The guard may be
//! dropped while the runtime runs, while it shuts down, or after: once the runtime is gone,
//! exports fail at once and are counted, and nothing panics.
//!
//! ```no_run
//! use opentelemetry_otlp::WithExportConfig;
//! use tracewire::record::Recorder;
//! use tracewire::report::OtelReporter;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Runtime::new()?;
//! let exporter = {
//!     let _entered = runtime.enter();
//!     opentelemetry_otlp::SpanExporter::builder()
//!         .with_tonic()
//!         .with_endpoint("http://127.0.0.1:4317")
//!         .build()?
//! };
//! let otel = OtelReporter::builder(exporter)
//!     .with_env()
//!     .runtime(runtime.handle().clone())
//!     .build();
//! let (recorder, guard) = Recorder::builder().with_env().reporter(otel).build();
//! tracing::subscriber::set_global_default(tracing_subscriber::registry().with(recorder))?;
//! // … run the application on `runtime` …
//! drop(guard); // exports what is left while the runtime still runs
//! # Ok(())
//! # }
//! ```
//!
//! The runtime's threads must be free to run the exports while the worker waits: a
//! multi-thread runtime always is; a current-thread runtime only while its thread is inside
//! `block_on` and not blocked (drop the recorder's guard from another thread, or with
//! `spawn_blocking`). [`otlp::init`](crate::otlp) (feature `otlp`) does all of this for you,
//! on a runtime thread of its own.
//!
//! The recorder leaves the exporter's own stack (`h2`, `hyper`, `tonic`, `tower`,
//! `opentelemetry*`) out by default: their spans, created on the runtime's threads while
//! exporting, would otherwise be exported in turn, and export more of their own. Keep it so
//! if you turn on [`record_internals`](crate::record::RecorderBuilder::record_internals).
//!
//! [`max_export_batch_size`]: OtelReporterBuilder::max_export_batch_size
//! [`export_interval`]: OtelReporterBuilder::export_interval
//! [`export_timeout`]: OtelReporterBuilder::export_timeout
//! [`error_log_interval`]: OtelReporterBuilder::error_log_interval
//! [`TraceState::to_otel`]: crate::context::TraceState::to_otel

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use opentelemetry::trace::Link as OtelLink;
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use opentelemetry_sdk::Resource;
use tracing::instrument::WithSubscriber;
use tracing::Dispatch;

use crate::env::{EnvConfig, OTEL_RESOURCE_ATTRIBUTES};
use crate::report::{Outcomes, Reporter};
use crate::span::SpanRecord;

/// Target of the failure reports logged through `tracing`.
pub const LOG_TARGET: &str = "tracewire::report::otel";

/// Most per-service resources kept built; past it the cache starts over.
const MAX_CACHED_RESOURCES: usize = 256;

/// `record` as SDK span data, taking its attributes, events, links, name and scope rather
/// than copying them (the record is left with empty ones).
///
/// The attributes move into a vector of their exact length, and the record keeps its own,
/// emptied but with its capacity: the recorder refills that one for a later span instead of
/// growing a new one push by push.
pub(super) fn take_span_data(record: &mut SpanRecord) -> SpanData {
    let mut attributes = Vec::with_capacity(record.attributes.len());
    attributes.append(&mut record.attributes);
    let mut events = SpanEvents::default();
    events.events = std::mem::take(&mut record.events);
    events.dropped_count = record.dropped_events_count;
    let mut links = SpanLinks::default();
    links.links = std::mem::take(&mut record.links)
        .into_iter()
        .map(|link| {
            let dropped = link.dropped_attributes_count;
            OtelLink::new((&link.span_context).into(), link.attributes, dropped)
        })
        .collect();
    links.dropped_count = record.dropped_links_count;
    SpanData {
        span_context: (&record.span_context).into(),
        parent_span_id: record.parent_span_id,
        parent_span_is_remote: record.parent_is_remote,
        span_kind: record.kind.clone(),
        name: std::mem::take(&mut record.name),
        start_time: record.start_time,
        end_time: record.end_time,
        attributes,
        dropped_attributes_count: record.dropped_attributes_count,
        events,
        links,
        status: std::mem::replace(&mut record.status, opentelemetry::trace::Status::Unset),
        instrumentation_scope: std::mem::take(&mut record.scope),
    }
}

impl From<&SpanRecord> for SpanData {
    /// A faithful copy; `tracestate` members that `opentelemetry`'s `TraceState` refuses are
    /// left out (see [`TraceState::to_otel`](crate::context::TraceState::to_otel)).
    fn from(record: &SpanRecord) -> Self {
        let mut events = SpanEvents::default();
        events.events = record.events.clone();
        events.dropped_count = record.dropped_events_count;
        let mut links = SpanLinks::default();
        links.links = record
            .links
            .iter()
            .map(|link| {
                let dropped = link.dropped_attributes_count;
                OtelLink::new(
                    (&link.span_context).into(),
                    link.attributes.clone(),
                    dropped,
                )
            })
            .collect();
        links.dropped_count = record.dropped_links_count;
        SpanData {
            span_context: (&record.span_context).into(),
            parent_span_id: record.parent_span_id,
            parent_span_is_remote: record.parent_is_remote,
            span_kind: record.kind.clone(),
            name: record.name.clone(),
            start_time: record.start_time,
            end_time: record.end_time,
            attributes: record.attributes.clone(),
            dropped_attributes_count: record.dropped_attributes_count,
            events,
            links,
            status: record.status.clone(),
            instrumentation_scope: record.scope.clone(),
        }
    }
}

/// The attributes of every exported resource but `service.name`: `telemetry.sdk.*`, then
/// those read from the environment, then those given in code, each overriding the one before.
pub(super) fn base_resource_attributes(
    env_attributes: Vec<KeyValue>,
    attributes: Vec<KeyValue>,
) -> Vec<KeyValue> {
    let mut base = vec![
        KeyValue::new("telemetry.sdk.name", "tracewire"),
        KeyValue::new("telemetry.sdk.language", "rust"),
        KeyValue::new("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    base.extend(env_attributes);
    base.extend(attributes);
    base.retain(|kv| kv.key.as_str() != "service.name");
    base
}

/// The resource of `service`'s spans: `base` (see [`base_resource_attributes`]) and
/// `service.name`.
pub(super) fn service_resource(base: &[KeyValue], service: &Arc<str>) -> Resource {
    Resource::builder_empty()
        .with_attributes(base.iter().cloned())
        .with_service_name(Value::from(service.clone()))
        .build()
}

/// `OTEL_RESOURCE_ATTRIBUTES` and, when `bsp`, the `OTEL_BSP_*` variables, read from the
/// environment; invalid values are logged once through `tracing` at WARN.
pub(super) fn env_config(bsp: bool) -> EnvConfig {
    let config = EnvConfig::from_lookup(|name| {
        if name == OTEL_RESOURCE_ATTRIBUTES || (bsp && name.starts_with("OTEL_BSP_")) {
            std::env::var_os(name)
        } else {
            None
        }
    });
    config.log_warnings();
    config
}

/// The object-safe part of [`SpanExporter`] that the reporter uses (the SDK trait returns
/// `impl Future` and so cannot be a trait object).
trait DynExporter: Send + Sync {
    fn export(&self, batch: Vec<SpanData>) -> ExportFuture<'_>;
    fn set_resource(&mut self, resource: &Resource);
    fn force_flush(&self) -> OTelSdkResult;
    fn shutdown(&self) -> OTelSdkResult;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

type ExportFuture<'a> = Pin<Box<dyn Future<Output = OTelSdkResult> + Send + 'a>>;

impl<E: SpanExporter + 'static> DynExporter for E {
    fn export(&self, batch: Vec<SpanData>) -> ExportFuture<'_> {
        Box::pin(SpanExporter::export(self, batch))
    }
    fn set_resource(&mut self, resource: &Resource) {
        SpanExporter::set_resource(self, resource)
    }
    fn force_flush(&self) -> OTelSdkResult {
        SpanExporter::force_flush(self)
    }
    fn shutdown(&self) -> OTelSdkResult {
        SpanExporter::shutdown(self)
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The type only: an exporter's own `Debug` may print credentials (OTLP's shows its
        // headers' values and its endpoint's user and password).
        f.write_str(std::any::type_name::<E>())
    }
}

/// A [`Reporter`] exporting through an OpenTelemetry SDK [`SpanExporter`]. See the
/// [module docs](crate::report::otel).
pub struct OtelReporter {
    exporter: Exec,
    base_attributes: Vec<KeyValue>,
    resources: HashMap<Arc<str>, Resource>,
    current_service: Option<Arc<str>>,
    buffer: Vec<Bucket>,
    buffered: usize,
    /// Spans in the largest bucket of the last round (at most `max_batch`): a new bucket
    /// starts with room for as many, rather than growing (and copying its spans) as it fills.
    bucket_capacity: usize,
    oldest: Option<Instant>,
    max_batch: usize,
    export_interval: Duration,
    export_timeout: Duration,
    failures: FailureLog,
    counters: OtelCounters,
    /// What became of spans since the pipeline last asked.
    outcomes: Outcomes,
    shut_down: bool,
}

/// Waiting spans of one service.
struct Bucket {
    service: Arc<str>,
    spans: Vec<SpanData>,
}

/// Configures an [`OtelReporter`]; see [`OtelReporter::builder`].
#[must_use = "a builder does nothing until `build`"]
pub struct OtelReporterBuilder {
    exporter: Box<dyn DynExporter>,
    runtime: Option<tokio::runtime::Handle>,
    env_attributes: Vec<KeyValue>,
    attributes: Vec<KeyValue>,
    max_batch: usize,
    export_interval: Duration,
    export_timeout: Duration,
    error_log_interval: Duration,
}

impl OtelReporter {
    /// A reporter with the defaults: batches of up to 512 spans, exported at least every
    /// second, each export given 10 s, failures logged at most every 10 s, no resource
    /// attributes beyond `service.name` and `telemetry.sdk.*`, nothing read from the
    /// environment.
    pub fn new<E: SpanExporter + 'static>(exporter: E) -> Self {
        OtelReporter::builder(exporter).build()
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder<E: SpanExporter + 'static>(exporter: E) -> OtelReporterBuilder {
        OtelReporterBuilder {
            exporter: Box::new(exporter),
            runtime: None,
            env_attributes: Vec::new(),
            attributes: Vec::new(),
            max_batch: 512,
            export_interval: Duration::from_secs(1),
            export_timeout: Duration::from_secs(10),
            error_log_interval: Duration::from_secs(10),
        }
    }

    /// A handle on the counters, readable after the reporter moved into the recorder.
    pub fn counters(&self) -> OtelCounters {
        self.counters.clone()
    }

    fn push(&mut self, service: &Arc<str>, data: SpanData) {
        match self.buffer.iter_mut().find(|b| b.service == *service) {
            Some(bucket) => bucket.spans.push(data),
            None => {
                let mut spans = Vec::with_capacity(self.bucket_capacity.max(1));
                spans.push(data);
                self.buffer.push(Bucket {
                    service: service.clone(),
                    spans,
                })
            }
        }
        self.buffered += 1;
    }

    /// Exports everything waiting, one call per service and per `max_batch` spans.
    fn export_all(&mut self) {
        let buckets = std::mem::take(&mut self.buffer);
        self.bucket_capacity = buckets
            .iter()
            .map(|b| b.spans.len())
            .max()
            .unwrap_or(0)
            .min(self.max_batch);
        self.buffered = 0;
        self.oldest = None;
        let mut timed_out = false;
        for Bucket { service, mut spans } in buckets {
            while !spans.is_empty() {
                let rest = if spans.len() > self.max_batch {
                    spans.split_off(self.max_batch)
                } else {
                    Vec::new()
                };
                let chunk = std::mem::replace(&mut spans, rest);
                if timed_out {
                    // The exporter just stalled for a whole timeout: do not wait again in
                    // this round.
                    self.counters
                        .inner
                        .spans_failed
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    self.failures.spans += chunk.len() as u64;
                    self.outcomes.dropped.export_failed += chunk.len() as u64;
                    continue;
                }
                timed_out = self.export_chunk(&service, chunk);
            }
        }
        self.log_failures_if_due(Instant::now());
    }

    /// Exports one chunk of one service's spans, counting the outcome. True when the export
    /// timed out.
    fn export_chunk(&mut self, service: &Arc<str>, chunk: Vec<SpanData>) -> bool {
        let resource = if self.current_service.as_ref() != Some(service) {
            self.current_service = Some(service.clone());
            Some(self.resource_for(service))
        } else {
            None
        };
        let count = chunk.len() as u64;
        let timeout = self.export_timeout;
        let outcome = match &mut self.exporter {
            Exec::Here { exporter, runtime } => match runtime.get_or_init(here_runtime) {
                Some(runtime) => {
                    // A panic costs this chunk only, counted as an error, as on a runtime.
                    let run = AssertUnwindSafe(|| {
                        if let Some(resource) = &resource {
                            exporter.set_resource(resource);
                        }
                        let export = exporter.export(chunk);
                        // The timer is made inside `block_on`, in the runtime's context.
                        let timed = async { tokio::time::timeout(timeout, export).await };
                        without_subscriber(|| runtime.block_on(timed))
                    });
                    match catch_unwind(run) {
                        Ok(Ok(Ok(()))) => Ok(()),
                        Ok(Ok(Err(error))) => Err(ExportFailure::Exporter(error)),
                        Ok(Err(_elapsed)) => Err(ExportFailure::Timeout(timeout)),
                        Err(_) => Err(ExportFailure::Exporter(panicked())),
                    }
                }
                None => Err(ExportFailure::RuntimeGone),
            },
            Exec::OnRuntime(runtime) => runtime.export(resource, chunk, timeout),
        };
        let c = &self.counters.inner;
        let failure = match outcome {
            Ok(()) => {
                c.exports.fetch_add(1, Ordering::Relaxed);
                c.spans_exported.fetch_add(count, Ordering::Relaxed);
                self.outcomes.exported += count;
                return false;
            }
            Err(failure) => failure,
        };
        let timed_out = matches!(failure, ExportFailure::Timeout(_));
        if timed_out {
            c.export_timeouts.fetch_add(1, Ordering::Relaxed);
        } else {
            c.export_errors.fetch_add(1, Ordering::Relaxed);
        }
        c.spans_failed.fetch_add(count, Ordering::Relaxed);
        self.outcomes.dropped.export_failed += count;
        self.failures.record(failure, count);
        timed_out
    }

    fn resource_for(&mut self, service: &Arc<str>) -> Resource {
        if let Some(resource) = self.resources.get(service) {
            return resource.clone();
        }
        if self.resources.len() >= MAX_CACHED_RESOURCES {
            self.resources.clear();
        }
        let resource = service_resource(&self.base_attributes, service);
        self.resources.insert(service.clone(), resource.clone());
        resource
    }

    /// Runs `force_flush` or `shutdown`, counting and logging a failure.
    fn call(&mut self, f: fn(&dyn DynExporter) -> OTelSdkResult) {
        let result = match &self.exporter {
            Exec::Here { exporter, .. } => {
                let exporter = &**exporter;
                let call = AssertUnwindSafe(|| without_subscriber(|| f(exporter)));
                Ok(catch_unwind(call).unwrap_or_else(|_| Err(panicked())))
            }
            Exec::OnRuntime(runtime) => runtime.call(f, self.export_timeout),
        };
        let failure = match result {
            Ok(Ok(())) | Ok(Err(OTelSdkError::AlreadyShutdown)) => None,
            Ok(Err(error)) => Some(ExportFailure::Exporter(error)),
            Err(failure) => Some(failure),
        };
        if let Some(failure) = failure {
            self.counters
                .inner
                .export_errors
                .fetch_add(1, Ordering::Relaxed);
            self.failures.record(failure, 0);
        }
    }

    fn log_failures_if_due(&mut self, now: Instant) {
        if let Some(report) = self.failures.take_due(now) {
            self.counters
                .inner
                .failure_logs
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: LOG_TARGET,
                failures = report.failures,
                timeouts = report.timeouts,
                spans_lost = report.spans,
                last_error = %report.last,
                "exporting spans failed {} times since the last report; spans were lost",
                report.failures
            );
        }
    }
}

impl OtelReporter {
    /// Whether a batch of `len` spans is taken in; spans handed over after shutdown are
    /// counted as dropped.
    fn accepts(&mut self, len: usize) -> bool {
        if self.shut_down {
            self.outcomes.dropped.shutdown += len as u64;
            return false;
        }
        len > 0
    }

    /// After a batch is buffered: starts the interval, and exports if a batch is full.
    fn buffered_batch(&mut self) {
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        if self.buffered >= self.max_batch {
            self.export_all();
        }
    }
}

impl Reporter for OtelReporter {
    fn report(&mut self, batch: &[SpanRecord]) {
        if !self.accepts(batch.len()) {
            return;
        }
        for record in batch {
            self.push(&record.service_name, SpanData::from(record));
        }
        self.buffered_batch();
    }

    fn report_mut(&mut self, batch: &mut [SpanRecord]) {
        if !self.accepts(batch.len()) {
            return;
        }
        for record in batch {
            let data = take_span_data(record);
            self.push(&record.service_name, data);
        }
        self.buffered_batch();
    }

    fn tick(&mut self) {
        if let Some(oldest) = self.oldest {
            if oldest.elapsed() >= self.export_interval {
                self.export_all();
            }
        }
        self.log_failures_if_due(Instant::now());
    }

    fn flush(&mut self) {
        if self.shut_down {
            return;
        }
        self.export_all();
        self.call(|e| e.force_flush());
        self.log_failures_if_due(Instant::now());
    }

    fn shutdown(&mut self) {
        if self.shut_down {
            return;
        }
        self.export_all();
        self.call(|e| e.force_flush());
        self.call(|e| e.shutdown());
        self.shut_down = true;
        self.log_failures_if_due(Instant::now());
    }

    /// Exported spans, and spans whose export failed or timed out (or that arrived after
    /// shutdown): see [`Reporter::take_outcomes`].
    fn take_outcomes(&mut self) -> Option<Outcomes> {
        Some(std::mem::take(&mut self.outcomes))
    }
}

impl fmt::Debug for OtelReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelReporter")
            .field("exporter", &self.exporter)
            .field("buffered", &self.buffered)
            .field("max_export_batch_size", &self.max_batch)
            .field("export_interval", &self.export_interval)
            .field("export_timeout", &self.export_timeout)
            .field("stats", &self.counters.stats())
            .finish()
    }
}

struct DebugExporter<'a>(&'a dyn DynExporter);

impl fmt::Debug for DebugExporter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(f)
    }
}

impl OtelReporterBuilder {
    /// Adds a resource attribute to every exported span's resource. `service.name` is always
    /// the span's own service and cannot be set here.
    pub fn resource_attribute(mut self, attribute: KeyValue) -> Self {
        self.attributes.push(attribute);
        self
    }

    /// Adds resource attributes; see [`resource_attribute`](Self::resource_attribute).
    pub fn resource_attributes(mut self, attributes: impl IntoIterator<Item = KeyValue>) -> Self {
        self.attributes.extend(attributes);
        self
    }

    /// Reads resource attributes from `OTEL_RESOURCE_ATTRIBUTES` (attributes given in code
    /// override them) and the `OTEL_BSP_*` batching variables (see
    /// [`with_env_config`](Self::with_env_config)). An invalid value is ignored and logged
    /// once through `tracing` at WARN.
    pub fn with_env(self) -> Self {
        self.with_env_config(&env_config(true))
    }

    /// Uses the settings of an [`EnvConfig`] already read: its resource attributes and the
    /// batching variables `OTEL_BSP_SCHEDULE_DELAY` ([`export_interval`](Self::export_interval)),
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` ([`max_export_batch_size`](Self::max_export_batch_size))
    /// and `OTEL_BSP_EXPORT_TIMEOUT` ([`export_timeout`](Self::export_timeout)), when set.
    /// (`OTEL_BSP_MAX_QUEUE_SIZE` sizes the recorder's queue: see
    /// [`RecorderBuilder::with_env_config`](crate::record::RecorderBuilder::with_env_config).)
    pub fn with_env_config(mut self, config: &EnvConfig) -> Self {
        self.env_attributes = config.resource_attributes.clone();
        let batch = &config.batch;
        self.export_interval = batch.schedule_delay.unwrap_or(self.export_interval);
        self.export_timeout = batch.export_timeout.unwrap_or(self.export_timeout);
        if let Some(size) = batch.max_export_batch_size {
            self.max_batch = size;
        }
        self
    }

    /// Most spans per export call, and how many waiting spans trigger an export. Default 512.
    pub fn max_export_batch_size(mut self, size: usize) -> Self {
        self.max_batch = size.max(1);
        self
    }

    /// Longest a span waits before being exported when fewer than
    /// [`max_export_batch_size`](Self::max_export_batch_size) are waiting. Checked on every
    /// [`Reporter::tick`], so never shorter than the recorder's flush interval. Default 1 s.
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = interval;
        self
    }

    /// How long one export call may take before it is abandoned and counted as a timeout.
    /// Default 10 s.
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = timeout;
        self
    }

    /// Shortest time between two failure reports logged through `tracing`. Default 10 s.
    pub fn error_log_interval(mut self, interval: Duration) -> Self {
        self.error_log_interval = interval;
        self
    }

    /// Runs every export as a task on `runtime`, the tokio runtime that owns the exporter's
    /// connection (the one it was built in, for `opentelemetry-otlp`'s tonic exporter); the
    /// worker thread only waits for the result, at most
    /// [`export_timeout`](Self::export_timeout).
    ///
    /// Once the runtime shuts down, its tasks are dropped rather than polled: later exports
    /// fail at once (counted as failed, never a panic), so the recorder's guard may be
    /// dropped before, while or after the runtime shuts down. The runtime's threads must be
    /// free to run the task: a multi-thread runtime always is; a current-thread runtime only
    /// while its thread is inside `block_on` and not blocked (do not drop the guard on it).
    ///
    /// ```no_run
    /// # fn otlp() -> opentelemetry_otlp::SpanExporter { unimplemented!() }
    /// let otel = tracewire::report::OtelReporter::builder(otlp())
    ///     .runtime(tokio::runtime::Handle::current())
    ///     .build();
    /// ```
    pub fn runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The reporter.
    pub fn build(self) -> OtelReporter {
        let base_attributes = base_resource_attributes(self.env_attributes, self.attributes);
        let exporter = match self.runtime {
            Some(runtime) => Exec::OnRuntime(OnRuntime::start(&runtime, self.exporter)),
            None => Exec::Here {
                exporter: self.exporter,
                runtime: OnceLock::new(),
            },
        };
        OtelReporter {
            exporter,
            base_attributes,
            resources: HashMap::new(),
            current_service: None,
            buffer: Vec::new(),
            buffered: 0,
            bucket_capacity: 0,
            oldest: None,
            max_batch: self.max_batch,
            export_interval: self.export_interval,
            export_timeout: self.export_timeout,
            failures: FailureLog::new(self.error_log_interval),
            counters: OtelCounters::default(),
            outcomes: Outcomes::default(),
            shut_down: false,
        }
    }
}

impl fmt::Debug for OtelReporterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelReporterBuilder")
            .field("exporter", &DebugExporter(&*self.exporter))
            .field("runtime", &self.runtime.is_some())
            .field("env_attributes", &self.env_attributes)
            .field("attributes", &self.attributes)
            .field("max_export_batch_size", &self.max_batch)
            .field("export_interval", &self.export_interval)
            .field("export_timeout", &self.export_timeout)
            .field("error_log_interval", &self.error_log_interval)
            .finish()
    }
}

/// Where exports run.
enum Exec {
    /// Polled on the worker thread, by a runtime of its own made at the first export (so it
    /// is made, and dropped, on the reporter thread, outside any other runtime).
    Here {
        exporter: Box<dyn DynExporter>,
        /// `None` if the runtime could not be made: exports then fail, counted.
        runtime: OnceLock<Option<tokio::runtime::Runtime>>,
    },
    /// As tasks on a tokio runtime.
    OnRuntime(OnRuntime),
}

impl fmt::Debug for Exec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exec::Here { exporter, .. } => DebugExporter(&**exporter).fmt(f),
            Exec::OnRuntime(runtime) => f.write_str(&runtime.name),
        }
    }
}

/// An exporter owned by a task on a tokio runtime, doing one job at a time. When the runtime
/// shuts down it drops the task, and with it the exporter and the jobs' reply senders: a
/// waiting worker hears of it at once, and nothing of the exporter's is ever polled on a
/// runtime that has shut down (which is what panicked, "A Tokio 1.x context was found, but
/// it is being shutdown", when the worker thread polled the exporter's timers itself).
struct OnRuntime {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    name: String,
}

enum Job {
    Export {
        resource: Option<Resource>,
        batch: Vec<SpanData>,
        /// Closed when the worker stops waiting: the export is abandoned.
        cancel: tokio::sync::oneshot::Receiver<()>,
        reply: mpsc::SyncSender<OTelSdkResult>,
    },
    Call {
        call: fn(&dyn DynExporter) -> OTelSdkResult,
        reply: mpsc::SyncSender<OTelSdkResult>,
    },
}

impl OnRuntime {
    fn start(runtime: &tokio::runtime::Handle, exporter: Box<dyn DynExporter>) -> OnRuntime {
        let name = format!("{:?} on a tokio runtime", DebugExporter(&*exporter));
        let (jobs, queue) = tokio::sync::mpsc::unbounded_channel();
        // No subscriber while it runs: nothing the exporter records comes back to the
        // recorder. A runtime already shut down drops the task at once; exports then fail.
        drop(runtime.spawn(serve(exporter, queue).with_subscriber(Dispatch::none())));
        OnRuntime { jobs, name }
    }

    fn export(
        &self,
        resource: Option<Resource>,
        batch: Vec<SpanData>,
        timeout: Duration,
    ) -> Result<(), ExportFailure> {
        let (reply, result) = mpsc::sync_channel(1);
        let (_cancel, cancel) = tokio::sync::oneshot::channel();
        let job = Job::Export {
            resource,
            batch,
            cancel,
            reply,
        };
        match self.wait(job, &result, timeout)? {
            Ok(()) => Ok(()),
            Err(error) => Err(ExportFailure::Exporter(error)),
        }
        // `_cancel` drops here: an export still running is abandoned.
    }

    fn call(
        &self,
        call: fn(&dyn DynExporter) -> OTelSdkResult,
        timeout: Duration,
    ) -> Result<OTelSdkResult, ExportFailure> {
        let (reply, result) = mpsc::sync_channel(1);
        self.wait(Job::Call { call, reply }, &result, timeout)
    }

    fn wait(
        &self,
        job: Job,
        result: &mpsc::Receiver<OTelSdkResult>,
        timeout: Duration,
    ) -> Result<OTelSdkResult, ExportFailure> {
        if self.jobs.send(job).is_err() {
            return Err(ExportFailure::RuntimeGone);
        }
        match result.recv_timeout(timeout) {
            Ok(result) => Ok(result),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ExportFailure::Timeout(timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ExportFailure::RuntimeGone),
        }
    }
}

/// The task owning the exporter.
async fn serve(
    mut exporter: Box<dyn DynExporter>,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<Job>,
) {
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Export {
                resource,
                batch,
                mut cancel,
                reply,
            } => {
                // A panic in the exporter costs this job only: left to unwind, it would end
                // this task, and with it every later export.
                let start = AssertUnwindSafe(|| {
                    if let Some(resource) = resource {
                        exporter.set_resource(&resource);
                    }
                    exporter.export(batch)
                });
                let mut export = match catch_unwind(start) {
                    Ok(export) => export,
                    Err(_) => {
                        let _ = reply.send(Err(panicked()));
                        continue;
                    }
                };
                let done = std::future::poll_fn(|cx| {
                    match catch_unwind(AssertUnwindSafe(|| export.as_mut().poll(cx))) {
                        Ok(Poll::Ready(result)) => return Poll::Ready(Some(result)),
                        Err(_) => return Poll::Ready(Some(Err(panicked()))),
                        Ok(Poll::Pending) => {}
                    }
                    // Ready once the worker stopped waiting.
                    match Pin::new(&mut cancel).poll(cx) {
                        Poll::Ready(_) => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                    }
                })
                .await;
                if let Some(result) = done {
                    let _ = reply.send(result);
                }
            }
            Job::Call { call, reply } => {
                let called = catch_unwind(AssertUnwindSafe(|| call(&*exporter)));
                let _ = reply.send(called.unwrap_or_else(|_| Err(panicked())));
            }
        }
    }
}

/// The error of an exporter call that panicked.
fn panicked() -> OTelSdkError {
    OTelSdkError::InternalFailure("the exporter panicked".into())
}

/// Runs `f` with no `tracing` subscriber on this thread, so that nothing the exporter
/// records comes back to the recorder.
pub(super) fn without_subscriber<R>(f: impl FnOnce() -> R) -> R {
    tracing::dispatcher::with_default(&Dispatch::none(), f)
}

/// A runtime for exports polled on the reporter thread: one thread, with a timer for the
/// export timeout and I/O for exporters that open connections as they are polled.
fn here_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
}

/// Why an export failed.
#[derive(Debug)]
enum ExportFailure {
    /// The exporter returned an error.
    Exporter(OTelSdkError),
    /// The export did not finish in time.
    Timeout(Duration),
    /// The runtime running the exports has shut down.
    RuntimeGone,
}

impl fmt::Display for ExportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportFailure::Exporter(e) => write!(f, "exporter error: {e}"),
            ExportFailure::Timeout(d) => write!(f, "export timed out after {d:?}"),
            ExportFailure::RuntimeGone => {
                f.write_str("the runtime running the exporter has shut down")
            }
        }
    }
}

/// Failures since the last report, and when that was.
struct FailureLog {
    interval: Duration,
    last_logged: Option<Instant>,
    failures: u64,
    timeouts: u64,
    spans: u64,
    last: Option<ExportFailure>,
}

struct FailureReport {
    failures: u64,
    timeouts: u64,
    spans: u64,
    last: ExportFailure,
}

impl FailureLog {
    fn new(interval: Duration) -> Self {
        FailureLog {
            interval,
            last_logged: None,
            failures: 0,
            timeouts: 0,
            spans: 0,
            last: None,
        }
    }

    fn record(&mut self, failure: ExportFailure, spans: u64) {
        self.failures += 1;
        if matches!(failure, ExportFailure::Timeout(_)) {
            self.timeouts += 1;
        }
        self.spans += spans;
        self.last = Some(failure);
    }

    /// The failures to report now, if any and the interval has passed since the last report.
    fn take_due(&mut self, now: Instant) -> Option<FailureReport> {
        if let Some(last) = self.last_logged {
            if now.saturating_duration_since(last) < self.interval {
                return None;
            }
        }
        let last = self.last.take()?;
        self.last_logged = Some(now);
        let report = FailureReport {
            failures: self.failures,
            timeouts: self.timeouts,
            spans: self.spans,
            last,
        };
        self.failures = 0;
        self.timeouts = 0;
        self.spans = 0;
        Some(report)
    }
}

/// A cloneable handle on an [`OtelReporter`]'s counters.
#[derive(Clone, Default)]
pub struct OtelCounters {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    exports: AtomicU64,
    spans_exported: AtomicU64,
    export_errors: AtomicU64,
    export_timeouts: AtomicU64,
    spans_failed: AtomicU64,
    failure_logs: AtomicU64,
}

impl OtelCounters {
    /// The counters now.
    pub fn stats(&self) -> OtelStats {
        let c = &self.inner;
        OtelStats {
            exports: c.exports.load(Ordering::Relaxed),
            spans_exported: c.spans_exported.load(Ordering::Relaxed),
            export_errors: c.export_errors.load(Ordering::Relaxed),
            export_timeouts: c.export_timeouts.load(Ordering::Relaxed),
            spans_failed: c.spans_failed.load(Ordering::Relaxed),
            failure_logs: c.failure_logs.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for OtelCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.stats().fmt(f)
    }
}

/// What an [`OtelReporter`] did, read with [`OtelCounters::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtelStats {
    /// Export calls that succeeded.
    pub exports: u64,
    /// Spans in those calls.
    pub spans_exported: u64,
    /// Export (and flush or shutdown) calls that returned an error.
    pub export_errors: u64,
    /// Export calls abandoned after the export timeout.
    pub export_timeouts: u64,
    /// Spans lost to errors and timeouts.
    pub spans_failed: u64,
    /// Failure reports logged through `tracing`.
    pub failure_logs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reported_at_most_once_per_interval() {
        let mut log = FailureLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(log.take_due(t0).is_none(), "nothing to report");
        log.record(ExportFailure::Timeout(Duration::from_secs(1)), 5);
        let first = log
            .take_due(t0)
            .expect("the first failure is reported at once");
        assert_eq!((first.failures, first.timeouts, first.spans), (1, 1, 5));
        for _ in 0..100 {
            log.record(
                ExportFailure::Exporter(OTelSdkError::InternalFailure("down".into())),
                2,
            );
            assert!(log.take_due(t0 + Duration::from_secs(9)).is_none());
        }
        let second = log.take_due(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(
            (second.failures, second.timeouts, second.spans),
            (100, 0, 200)
        );
        assert!(second.last.to_string().contains("down"));
        assert!(log.take_due(t0 + Duration::from_secs(30)).is_none());
    }
}
