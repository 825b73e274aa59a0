//! The recorder: a `tracing_subscriber::Layer` that gives every `tracing` span a W3C trace id
//! and span id, and sends each finished, sampled span to the reporters as a [`SpanRecord`].
//!
//! For every span it:
//! - assigns ids: a child of the current (or explicit) parent span, a child of a remote
//!   parent handed in with [`SpanStart`], or the root of a new trace;
//! - records fields as typed attributes (integers stay integers; a `u64` that fits an `i64`
//!   is an `i64`);
//! - turns events inside the span into span events, and error-level events and `error`
//!   fields into `exception` events with status Error (except on a server span whose
//!   outcome the semantic conventions leave unset: an HTTP 4xx, a gRPC code other than
//!   UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE or DATA_LOSS);
//! - honours the fields `otel.name`, `otel.kind`, `otel.status_code` and
//!   `otel.status_message`, as written for `tracing-opentelemetry`;
//! - on close, queues the [`SpanRecord`] for the reporter worker (see [`crate::report`]),
//!   never before the records of its recorded children, even when its last child's close
//!   is what closes it.
//!
//! Sampling is decided when a span starts ([`sampler`](crate::sampler)); it is parent-based by default, with
//! a ratio for new roots ([`RecorderBuilder::sample_ratio`]). A sampled-out span keeps its ids
//! so that they propagate, flagged not sampled, but records nothing.
//!
//! The recorder works beside other layers (fmt, `EnvFilter`, per-layer filters):
//!
//! ```
//! use tracewire::record::{Recorder, SpanExt};
//! use tracewire::report::InMemoryReporter;
//! use tracing_subscriber::{layer::SubscriberExt, Layer};
//!
//! let spans = InMemoryReporter::new();
//! let (recorder, guard) = Recorder::builder()
//!     .service_name("checkout")
//!     .reporter(spans.clone())
//!     .build();
//! let subscriber = tracing_subscriber::registry()
//!     // Library internals stay out of the trace.
//!     .with(recorder.with_filter(tracing_subscriber::filter::filter_fn(|m| {
//!         !m.target().starts_with("hyper")
//!     })))
//!     .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink));
//!
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::info_span!("charge", amount = 42u64, otel.kind = "client");
//!     let _entered = span.enter();
//!     tracing::info!(card = "visa", "authorised");
//!     assert!(span.span_context().unwrap().is_sampled());
//! });
//! guard.flush().unwrap();
//!
//! let charge = spans.find("charge").unwrap();
//! assert_eq!(charge.attribute("amount"), Some(&42i64.into()));
//! assert_eq!(charge.kind, tracewire::span::SpanKind::Client);
//! assert_eq!(charge.events[0].name, "authorised");
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

mod ext;
pub(crate) mod facts;
mod ids;
pub(crate) mod pipeline;
mod record_layer;
mod recycle;
mod span_data;
mod start;
pub(crate) mod timestamp;

pub use crate::span::SpanRecord;
pub use ext::{current_baggage, current_context, SpanExt};
pub use pipeline::{FlushError, RecorderGuard, RecorderHandle};
pub use record_layer::RecordLayer;

pub(crate) use record_layer::{
    current_parent, decide, decide_under_current, with_span_data, Decision,
};
#[cfg(feature = "console")]
pub(crate) use record_layer::{is_internal_target, nearest_span_context, nearest_span_context_of};
pub(crate) use span_data::{error_chain, LiveRecord, SpanData};
pub use start::SpanStart;
pub(crate) use start::{with_ambient, with_pending, Ambient};

use crate::report::Reporter;
use crate::sampler::{AlwaysOn, ParentBased, Sampler, TraceIdRatio};
use pipeline::PipelineConfig;
use record_layer::RecorderConfig;
use span_data::Limits;

/// Entry point: `Recorder::builder()`.
#[derive(Debug)]
pub struct Recorder(());

impl Recorder {
    /// A builder with the defaults: parent-based sampling of every root, no reporter, a queue
    /// of 8192 spans, batches of up to 512 handed over at least every 50 ms.
    pub fn builder() -> RecorderBuilder {
        RecorderBuilder {
            service_name: None,
            sampler: None,
            reporters: Vec::new(),
            pipeline: PipelineConfig::default(),
            max_attributes: 128,
            max_events: 128,
            max_links: 128,
            max_event_attributes: 128,
            max_link_attributes: 128,
            max_value_len: DEFAULT_VALUE_LENGTH_LIMIT,
            record_internals: false,
            known_methods: None,
            env_warnings: Vec::new(),
        }
    }
}

/// Configures and builds the recorder layer and its reporter pipeline.
#[must_use = "a builder does nothing until `build` or `install`"]
pub struct RecorderBuilder {
    service_name: Option<Arc<str>>,
    sampler: Option<Box<dyn Sampler>>,
    reporters: Vec<Box<dyn Reporter>>,
    pipeline: PipelineConfig,
    max_attributes: u32,
    max_events: u32,
    max_links: u32,
    max_event_attributes: u32,
    max_link_attributes: u32,
    max_value_len: usize,
    record_internals: bool,
    known_methods: Option<crate::config::KnownMethods>,
    env_warnings: Vec<crate::env::EnvWarning>,
}

/// The default longest attribute value, in bytes: what a caller sends (a user agent, a path,
/// a header, an error message) must not make spans arbitrarily large.
pub const DEFAULT_VALUE_LENGTH_LIMIT: usize = 8 * 1024;

impl RecorderBuilder {
    /// The service name of spans that no layer names otherwise. Defaults to
    /// `unknown_service:<executable name>`, as OpenTelemetry does.
    pub fn service_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Replaces the sampler (by default parent-based, sampling every new root).
    pub fn sampler(mut self, sampler: impl Sampler) -> Self {
        self.sampler = Some(Box::new(sampler));
        self
    }

    /// Parent-based sampling that samples `ratio` of new roots (by trace id).
    pub fn sample_ratio(self, ratio: f64) -> Self {
        self.sampler(ParentBased::new(TraceIdRatio::new(ratio)))
    }

    /// Adds a reporter; every reporter receives every batch.
    pub fn reporter(mut self, reporter: impl Reporter) -> Self {
        self.reporters.push(Box::new(reporter));
        self
    }

    /// How many finished spans may wait for the worker; beyond it they are dropped and
    /// counted. Default 8192.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.pipeline.queue_capacity = capacity;
        self
    }

    /// Largest batch handed to a reporter. Default 512.
    pub fn max_batch_size(mut self, size: usize) -> Self {
        self.pipeline.max_batch = size;
        self
    }

    /// Longest time a finished span waits in the queue when traffic is light, and the
    /// period of [`Reporter::tick`]. Default 50 ms.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.pipeline.interval = interval;
        self
    }

    /// How long the guard waits for the reporters on flush and shutdown. Default 5 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.pipeline.shutdown_timeout = timeout;
        self
    }

    /// Shortest time between two warnings about dropped spans, logged through `tracing` at
    /// WARN under [`DROP_LOG_TARGET`](crate::report::DROP_LOG_TARGET) with the counts by
    /// cause since the last one (see [`Stats`](crate::report::Stats)). Default 10 s.
    pub fn drop_warning_interval(mut self, interval: Duration) -> Self {
        self.pipeline.drop_warning_interval = interval;
        self
    }

    /// Most attributes kept per span; more are counted as dropped. Default 128.
    pub fn max_attributes_per_span(mut self, max: u32) -> Self {
        self.max_attributes = max;
        self
    }

    /// Most events kept per span; more are counted as dropped. Default 128.
    pub fn max_events_per_span(mut self, max: u32) -> Self {
        self.max_events = max;
        self
    }

    /// Most links kept per span; more are counted as dropped. Default 128.
    pub fn max_links_per_span(mut self, max: u32) -> Self {
        self.max_links = max;
        self
    }

    /// Most attributes kept per span event (a log line's fields); more are counted as
    /// dropped on the event. Default 128.
    pub fn max_attributes_per_event(mut self, max: u32) -> Self {
        self.max_event_attributes = max;
        self
    }

    /// Most attributes kept per link; more are counted as dropped on the link. Default 128.
    pub fn max_attributes_per_link(mut self, max: u32) -> Self {
        self.max_link_attributes = max;
        self
    }

    /// The longest text kept in an attribute value (each string of an array too), an
    /// exception message, a status description or a log line made a span event's name, in
    /// bytes; longer text is cut on a
    /// character boundary. Default [`DEFAULT_VALUE_LENGTH_LIMIT`] (8 KiB), so that what a
    /// caller sends (a user agent, a path, a header, an error message) stays bounded.
    pub fn max_attribute_value_length(mut self, max: usize) -> Self {
        self.max_value_len = max;
        self
    }

    /// Records the spans and events of library internals too: targets under `hyper`,
    /// `hyper_util`, `h2`, `tower`, `tonic`, `reqwest`, `rustls`, `tokio`, `mio`, `want`,
    /// `opentelemetry`, `opentelemetry_sdk` and `opentelemetry_otlp` (and OpenTelemetry's internal
    /// logs, under `opentelemetry-otlp` and `opentelemetry-http`).
    /// Off by default, so a trace shows the application and tracewire's request spans; for
    /// finer control, put a per-layer filter on the recorder.
    pub fn record_internals(mut self, record: bool) -> Self {
        self.record_internals = record;
        self
    }

    /// The layer, to compose with other layers, and the guard that flushes on drop.
    pub fn build(mut self) -> (RecordLayer, RecorderGuard) {
        let service_name = self.service_name.unwrap_or_else(default_service_name);
        self.pipeline.value_len = self.max_value_len;
        let (shared, mut guard) = pipeline::start(self.reporters, &self.pipeline);
        guard.env_warnings = self.env_warnings;
        if let Some(methods) = self.known_methods {
            if let Err(error) = methods.install() {
                let warning = crate::env::EnvWarning::KnownMethods(error);
                tracing::warn!(target: "tracewire::env", %warning, "ignoring an OpenTelemetry environment variable");
                guard.env_warnings.push(warning);
            }
        }
        let config = RecorderConfig {
            shared: shared.clone(),
            service_name,
            sampler: self
                .sampler
                .unwrap_or_else(|| Box::new(ParentBased::new(AlwaysOn))),
            max_attributes: self.max_attributes,
            limits: Limits {
                events: self.max_events,
                links: self.max_links,
                event_attributes: self.max_event_attributes,
                link_attributes: self.max_link_attributes,
                value_len: self.max_value_len,
            },
            record_internals: self.record_internals,
            max_level: tracing_subscriber::filter::LevelFilter::TRACE,
        };
        (RecordLayer::new(config, shared), guard)
    }

    /// Builds and installs `registry().with(recorder)` as the global subscriber.
    pub fn install(self) -> Result<RecorderGuard, InstallError> {
        use tracing_subscriber::layer::SubscriberExt;
        let (layer, guard) = self.build();
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .map_err(|_| InstallError::AlreadyInstalled)?;
        Ok(guard)
    }

    /// Applies the OpenTelemetry environment variables (`OTEL_SERVICE_NAME`,
    /// `OTEL_RESOURCE_ATTRIBUTES`'s `service.name`, `OTEL_TRACES_SAMPLER`,
    /// `OTEL_TRACES_SAMPLER_ARG`, the span limits `OTEL_SPAN_*_LIMIT` and
    /// `OTEL_ATTRIBUTE_*_LIMIT`, `OTEL_BSP_MAX_QUEUE_SIZE`,
    /// `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`) of this process; see
    /// [`env`](crate::env). Invalid values keep the current setting. They are logged
    /// once through `tracing` at WARN now, which only a subscriber already installed sees,
    /// and kept for [`RecorderGuard::env_warnings`], to log once yours is. Later builder
    /// calls override earlier ones, so call this first to let code override the
    /// environment, or last to let the environment override code.
    ///
    /// ```
    /// use tracing_subscriber::prelude::*;
    ///
    /// let (recorder, guard) = tracewire::record::Recorder::builder().with_env().build();
    /// tracing_subscriber::registry().with(recorder).init();
    /// for warning in guard.env_warnings() {
    ///     tracing::warn!(%warning, "ignoring an OpenTelemetry environment variable");
    /// }
    /// ```
    pub fn with_env(mut self) -> Self {
        let config = crate::env::EnvConfig::from_env();
        config.log_warnings();
        self.env_warnings.extend(config.warnings.iter().cloned());
        self.with_env_config(&config)
    }

    /// Applies settings read with [`EnvConfig`](crate::env::EnvConfig): its service name, sampler,
    /// span limits and `OTEL_BSP_MAX_QUEUE_SIZE` (the [queue capacity](Self::queue_capacity)),
    /// when set. Its known HTTP methods (`OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`) are
    /// [installed](crate::config::KnownMethods::install) for the process when the recorder
    /// is built; if a request has already fixed another list, the guard's
    /// [`env_warnings`](RecorderGuard::env_warnings) says so. Warnings are left to the caller.
    pub fn with_env_config(mut self, config: &crate::env::EnvConfig) -> Self {
        if let Some(name) = &config.service_name {
            self.service_name = Some(Arc::from(name.as_str()));
        }
        if let Some(sampler) = &config.sampler {
            self.sampler = Some(sampler.to_sampler());
        }
        let limits = &config.limits;
        self.max_value_len = limits.attribute_value_length.unwrap_or(self.max_value_len);
        self.max_attributes = limits.attribute_count.unwrap_or(self.max_attributes);
        self.max_events = limits.event_count.unwrap_or(self.max_events);
        self.max_links = limits.link_count.unwrap_or(self.max_links);
        self.max_event_attributes =
            (limits.event_attribute_count).unwrap_or(self.max_event_attributes);
        self.max_link_attributes =
            (limits.link_attribute_count).unwrap_or(self.max_link_attributes);
        if let Some(capacity) = config.batch.max_queue_size {
            self.pipeline.queue_capacity = capacity;
        }
        if let Some(methods) = &config.known_http_methods {
            self.known_methods = Some(methods.clone());
        }
        self
    }
}

impl fmt::Debug for RecorderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecorderBuilder")
            .field("service_name", &self.service_name)
            .field("sampler", &self.sampler)
            .field("reporters", &self.reporters.len())
            .field("pipeline", &self.pipeline)
            .finish()
    }
}

/// Why [`RecorderBuilder::install`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallError {
    /// A global subscriber was already set.
    AlreadyInstalled,
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::AlreadyInstalled => {
                f.write_str("a global tracing subscriber is already set")
            }
        }
    }
}

impl std::error::Error for InstallError {}

fn default_service_name() -> Arc<str> {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()));
    match exe {
        Some(exe) => format!("unknown_service:{exe}").into(),
        None => Arc::from("unknown_service"),
    }
}
