//! Export through any OpenTelemetry SDK `SpanProcessor`; see [`ProcessorReporter`].

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::env::EnvConfig;
use crate::report::otel::{
    base_resource_attributes, env_config, service_resource, take_span_data, without_subscriber,
};
use crate::report::{Outcomes, Reporter};
use crate::span::SpanRecord;

/// Target of the failure reports logged through `tracing`.
pub const PROCESSOR_LOG_TARGET: &str = "tracewire::report::processor";

/// A [`Reporter`] handing each finished span to an OpenTelemetry SDK [`SpanProcessor`]: the
/// SDK's [`BatchSpanProcessor`] (with its batching, its own queue and its `OTEL_BSP_*`
/// settings), its `SimpleSpanProcessor`, or one of your own.
///
/// Each span is converted to the SDK's [`SpanData`] as [`OtelReporter`] converts it (the
/// same conversion: see the [`From`] impl on [`SpanData`]) and handed to
/// [`SpanProcessor::on_end`] on the recorder's reporter worker thread, never on the request
/// path, with no `tracing` subscriber current (so nothing the processor or its exporter
/// records loops back into the recorder).
///
/// - **Resource.** A processor has one [`Resource`]. Unless one is given with
///   [`resource`](ProcessorReporterBuilder::resource), it is set
///   ([`SpanProcessor::set_resource`]) before the first span is handed over, from that span's
///   [`service_name`](SpanRecord::service_name) (the recorder's, unless a layer set its
///   own), `telemetry.sdk.*`, the attributes read from `OTEL_RESOURCE_ATTRIBUTES`
///   ([`with_env`](ProcessorReporterBuilder::with_env), only when asked) and those given in
///   code, as [`OtelReporter`] builds it. Spans of other
///   services recorded in the same process are exported under that one resource: when one
///   process records several services, use [`OtelReporter`], which gives each its own.
/// - **Flush and shutdown.** Flushing the recorder calls [`SpanProcessor::force_flush`];
///   shutting it down (dropping its guard) calls [`SpanProcessor::shutdown`]. An error (other
///   than "already shut down") is counted ([`ProcessorStats::flush_errors`]).
/// - **Panics.** Every call into the processor is guarded: a panic in `on_end` costs that
///   span only, counted as dropped with the cause
///   [`reporter_panic`](crate::report::Drops::reporter_panic) and in
///   [`ProcessorStats::panics`]; the next spans are handed over as usual. A panic in
///   `force_flush` or `shutdown` counts as a flush error. Failures are logged through
///   `tracing` at WARN at most once every 10 s, under the target [`PROCESSOR_LOG_TARGET`].
/// - **Accounting.** A span counts as exported ([`Stats::spans_exported`]) once `on_end`
///   returns. `on_end` returns nothing, so what the processor does with it afterwards is not
///   seen here: the `BatchSpanProcessor`'s own queue-full drops and failed exports are not
///   counted in [`Stats`], and its internal logs, emitted on the worker thread with no
///   subscriber, are not printed. Spans arriving after shutdown are not handed over and
///   count as dropped at shutdown. For counts of spans delivered or lost by the exporter
///   itself, use [`OtelReporter`], which also costs less per span.
/// - **Never the request path.** A processor whose `on_end` blocks holds up the reporter
///   worker only: the recorder's bounded queue then drops and counts spans, and no request
///   waits. The `BatchSpanProcessor`'s `on_end` never blocks.
///
/// The `BatchSpanProcessor` exports on a thread of its own, blocking on each export: build
/// `opentelemetry-otlp`'s tonic exporter inside a tokio runtime that keeps running until the
/// recorder's guard is dropped, and see the SDK's documentation for the HTTP clients it
/// supports.
///
/// ```
/// use opentelemetry_sdk::trace::{BatchSpanProcessor, InMemorySpanExporter};
/// use tracewire::record::Recorder;
/// use tracewire::report::ProcessorReporter;
/// use tracing_subscriber::layer::SubscriberExt;
///
/// // Stands in for a real exporter (`opentelemetry_otlp::SpanExporter`, …). The batch
/// // processor reads its `OTEL_BSP_*` settings from the environment.
/// let exporter = InMemorySpanExporter::default();
/// let reporter = ProcessorReporter::new(BatchSpanProcessor::builder(exporter.clone()).build());
/// let counters = reporter.counters();
/// let (layer, guard) = Recorder::builder()
///     .service_name("checkout")
///     .reporter(reporter)
///     .build();
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     tracing::info_span!("POST /checkout").in_scope(|| {});
/// });
/// guard.flush().unwrap(); // the processor's `force_flush`: exported by now
/// let spans = exporter.get_finished_spans().unwrap();
/// assert_eq!(spans[0].name, "POST /checkout");
/// assert_eq!(counters.stats().spans_handed, 1);
/// assert_eq!(guard.stats().spans_exported, 1);
/// ```
///
/// [`BatchSpanProcessor`]: opentelemetry_sdk::trace::BatchSpanProcessor
/// [`OtelReporter`]: crate::report::OtelReporter
/// [`Stats::spans_exported`]: crate::report::Stats::spans_exported
/// [`Stats`]: crate::report::Stats
pub struct ProcessorReporter {
    processor: Box<dyn SpanProcessor>,
    /// The processor's type, shown by `Debug` instead of the processor, whose own `Debug`
    /// may print its exporter's credentials (OTLP's headers and endpoint user).
    processor_type: &'static str,
    /// The resource's attributes but `service.name`; `None` once the resource is set.
    pending_resource: Option<Vec<KeyValue>>,
    counters: ProcessorCounters,
    outcomes: Outcomes,
    failures: Failures,
    shut_down: bool,
}

/// Configures a [`ProcessorReporter`]; see [`ProcessorReporter::builder`].
#[must_use = "a builder does nothing until `build`"]
pub struct ProcessorReporterBuilder {
    processor: Box<dyn SpanProcessor>,
    processor_type: &'static str,
    resource: Option<Resource>,
    env_attributes: Vec<KeyValue>,
    attributes: Vec<KeyValue>,
    error_log_interval: Duration,
}

impl ProcessorReporter {
    /// A reporter handing spans to `processor`, with the defaults: the resource made from
    /// the first span's service name, no resource attributes read from the environment,
    /// failures logged at most every 10 s.
    pub fn new<P: SpanProcessor + 'static>(processor: P) -> Self {
        ProcessorReporter::builder(processor).build()
    }

    /// A builder starting from the defaults of [`new`](Self::new).
    pub fn builder<P: SpanProcessor + 'static>(processor: P) -> ProcessorReporterBuilder {
        ProcessorReporterBuilder {
            processor: Box::new(processor),
            processor_type: std::any::type_name::<P>(),
            resource: None,
            env_attributes: Vec::new(),
            attributes: Vec::new(),
            error_log_interval: Duration::from_secs(10),
        }
    }

    /// A handle on the counters, readable after the reporter moved into the recorder.
    pub fn counters(&self) -> ProcessorCounters {
        self.counters.clone()
    }

    /// Whether a batch of `len` spans is handed over; spans arriving after shutdown are
    /// counted as dropped.
    fn accepts(&mut self, len: usize) -> bool {
        if self.shut_down {
            self.outcomes.dropped.shutdown += len as u64;
            return false;
        }
        len > 0
    }

    /// Sets the processor's resource before its first span, from that span's service.
    fn set_resource_for(&mut self, first: &SpanRecord) {
        if let Some(base) = self.pending_resource.take() {
            let resource = service_resource(&base, &first.service_name);
            self.set_resource(&resource);
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        let processor = &mut self.processor;
        let set = without_subscriber(|| {
            catch_unwind(AssertUnwindSafe(|| processor.set_resource(resource)))
        });
        if set.is_err() {
            self.counters.inner.panics.fetch_add(1, Ordering::Relaxed);
            self.failures.record(Failure::Panic("set_resource"));
        }
    }

    /// Hands each span to the processor, each call guarded; counts the outcomes.
    fn hand_over(&mut self, spans: impl Iterator<Item = SpanData>) {
        let processor = &*self.processor;
        let (handed, panicked) = without_subscriber(|| {
            let (mut handed, mut panicked) = (0u64, 0u64);
            for data in spans {
                match catch_unwind(AssertUnwindSafe(|| processor.on_end(data))) {
                    Ok(()) => handed += 1,
                    Err(_) => panicked += 1,
                }
            }
            (handed, panicked)
        });
        let c = &self.counters.inner;
        c.spans_handed.fetch_add(handed, Ordering::Relaxed);
        self.outcomes.exported += handed;
        if panicked > 0 {
            c.panics.fetch_add(panicked, Ordering::Relaxed);
            self.outcomes.dropped.reporter_panic += panicked;
            self.failures.record(Failure::Panic("on_end"));
        }
        self.log_failures_if_due();
    }

    /// Runs `force_flush` or `shutdown`, guarded, counting a failure.
    fn call(&mut self, name: &'static str, f: fn(&dyn SpanProcessor) -> OTelSdkResult) {
        let processor = &*self.processor;
        let result = without_subscriber(|| catch_unwind(AssertUnwindSafe(|| f(processor))));
        let failure = match result {
            Ok(Ok(())) | Ok(Err(OTelSdkError::AlreadyShutdown)) => None,
            Ok(Err(error)) => Some(Failure::Error(name, error)),
            Err(_) => {
                self.counters.inner.panics.fetch_add(1, Ordering::Relaxed);
                Some(Failure::Panic(name))
            }
        };
        if let Some(failure) = failure {
            self.counters
                .inner
                .flush_errors
                .fetch_add(1, Ordering::Relaxed);
            self.failures.record(failure);
        }
        self.log_failures_if_due();
    }

    fn log_failures_if_due(&mut self) {
        if let Some((count, last)) = self.failures.take_due(Instant::now()) {
            self.counters
                .inner
                .failure_logs
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: PROCESSOR_LOG_TARGET,
                failures = count,
                last_error = %last,
                "the span processor failed {count} times since the last report"
            );
        }
    }
}

impl Reporter for ProcessorReporter {
    fn report(&mut self, batch: &[SpanRecord]) {
        if !self.accepts(batch.len()) {
            return;
        }
        self.set_resource_for(&batch[0]);
        self.hand_over(batch.iter().map(SpanData::from));
    }

    fn report_mut(&mut self, batch: &mut [SpanRecord]) {
        if !self.accepts(batch.len()) {
            return;
        }
        self.set_resource_for(&batch[0]);
        self.hand_over(batch.iter_mut().map(take_span_data));
    }

    fn tick(&mut self) {
        self.log_failures_if_due();
    }

    fn flush(&mut self) {
        if self.shut_down {
            return;
        }
        self.call("force_flush", |p| p.force_flush());
    }

    fn shutdown(&mut self) {
        if self.shut_down {
            return;
        }
        self.call("shutdown", |p| p.shutdown());
        self.shut_down = true;
        // The last report, whatever the interval.
        self.failures.last_logged = None;
        self.log_failures_if_due();
    }

    /// Spans handed over (as exported), spans whose `on_end` panicked, and spans that
    /// arrived after shutdown: see [`Reporter::take_outcomes`].
    fn take_outcomes(&mut self) -> Option<Outcomes> {
        Some(std::mem::take(&mut self.outcomes))
    }
}

impl fmt::Debug for ProcessorReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorReporter")
            .field("processor", &format_args!("{}", self.processor_type))
            .field("stats", &self.counters.stats())
            .finish()
    }
}

impl ProcessorReporterBuilder {
    /// The processor's whole resource, set when the reporter is built, instead of the one
    /// made from the first span's service name; the resource attributes given to this
    /// builder, from code or the environment, are then not used.
    pub fn resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Adds a resource attribute. `service.name` is always the first span's service and
    /// cannot be set here.
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
    /// override them). An invalid value is ignored and logged once through `tracing` at
    /// WARN. (The SDK's `BatchSpanProcessor` reads the `OTEL_BSP_*` variables itself, when
    /// built with its default `BatchConfig`.)
    pub fn with_env(self) -> Self {
        self.with_env_config(&env_config(false))
    }

    /// Uses the resource attributes of an [`EnvConfig`] already read.
    pub fn with_env_config(mut self, config: &EnvConfig) -> Self {
        self.env_attributes = config.resource_attributes.clone();
        self
    }

    /// Shortest time between two failure reports logged through `tracing`. Default 10 s.
    pub fn error_log_interval(mut self, interval: Duration) -> Self {
        self.error_log_interval = interval;
        self
    }

    /// The reporter.
    pub fn build(self) -> ProcessorReporter {
        let mut reporter = ProcessorReporter {
            processor: self.processor,
            processor_type: self.processor_type,
            pending_resource: None,
            counters: ProcessorCounters::default(),
            outcomes: Outcomes::default(),
            failures: Failures::new(self.error_log_interval),
            shut_down: false,
        };
        match self.resource {
            Some(resource) => reporter.set_resource(&resource),
            None => {
                reporter.pending_resource = Some(base_resource_attributes(
                    self.env_attributes,
                    self.attributes,
                ))
            }
        }
        reporter
    }
}

impl fmt::Debug for ProcessorReporterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessorReporterBuilder")
            .field("processor", &format_args!("{}", self.processor_type))
            .field("resource", &self.resource)
            .field("env_attributes", &self.env_attributes)
            .field("attributes", &self.attributes)
            .field("error_log_interval", &self.error_log_interval)
            .finish()
    }
}

/// What went wrong in a call into the processor.
enum Failure {
    /// The call (named) returned an error.
    Error(&'static str, OTelSdkError),
    /// The call (named) panicked.
    Panic(&'static str),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(call, error) => write!(f, "{call} failed: {error}"),
            Failure::Panic(call) => write!(f, "{call} panicked"),
        }
    }
}

/// Failures since the last report, and when that was.
struct Failures {
    interval: Duration,
    last_logged: Option<Instant>,
    count: u64,
    last: Option<Failure>,
}

impl Failures {
    fn new(interval: Duration) -> Self {
        Failures {
            interval,
            last_logged: None,
            count: 0,
            last: None,
        }
    }

    fn record(&mut self, failure: Failure) {
        self.count += 1;
        self.last = Some(failure);
    }

    /// The failures to report now, if any and the interval has passed since the last report.
    fn take_due(&mut self, now: Instant) -> Option<(u64, Failure)> {
        if let Some(last) = self.last_logged {
            if now.saturating_duration_since(last) < self.interval {
                return None;
            }
        }
        let last = self.last.take()?;
        self.last_logged = Some(now);
        Some((std::mem::take(&mut self.count), last))
    }
}

/// A cloneable handle on a [`ProcessorReporter`]'s counters.
#[derive(Clone, Default)]
pub struct ProcessorCounters {
    inner: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    spans_handed: AtomicU64,
    panics: AtomicU64,
    flush_errors: AtomicU64,
    failure_logs: AtomicU64,
}

impl ProcessorCounters {
    /// The counters now.
    pub fn stats(&self) -> ProcessorStats {
        let c = &self.inner;
        ProcessorStats {
            spans_handed: c.spans_handed.load(Ordering::Relaxed),
            panics: c.panics.load(Ordering::Relaxed),
            flush_errors: c.flush_errors.load(Ordering::Relaxed),
            failure_logs: c.failure_logs.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for ProcessorCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.stats().fmt(f)
    }
}

/// What a [`ProcessorReporter`] did, read with [`ProcessorCounters::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorStats {
    /// Spans handed to the processor: its `on_end` returned.
    pub spans_handed: u64,
    /// Calls into the processor that panicked (caught): each `on_end` that did lost its span.
    pub panics: u64,
    /// `force_flush` and `shutdown` calls that returned an error or panicked.
    pub flush_errors: u64,
    /// Failure reports logged through `tracing`.
    pub failure_logs: u64,
}
