//! One call for production: spans exported over OTLP, configured by the standard `OTEL_*`
//! variables.
//!
//! ```no_run
//! # fn main() -> Result<(), tracewire::otlp::InitError> {
//! let _guard = tracewire::otlp::init()?;
//! // ... serve: every layer built from now on uses the propagators of `OTEL_PROPAGATORS` ...
//! // at the end of `main` the guard exports what is left
//! # Ok(())
//! # }
//! ```
//!
//! [`init`] installs one global subscriber made of:
//! - the [recorder](crate::record), configured by the variables below, reporting to an
//!   [`OtelReporter`] that exports through `opentelemetry-otlp`'s gRPC or HTTP exporter;
//! - a `tracing_subscriber::fmt` layer on stderr filtered by `RUST_LOG` (default `info`), whose
//!   lines inside a span end with that span's `trace_id` and `span_id` (text), or carry
//!   `"trace_id"` and `"span_id"` members (JSON, `TRACEWIRE_LOG_FORMAT=json`);
//! - the recorder's own filter, [`TRACEWIRE_RECORD`] (default
//!   `info`): `RUST_LOG=warn` quiets the logs, not the traces;
//! - the [process-wide default propagator](crate::propagation::set_global_default), from
//!   `OTEL_PROPAGATORS`: every server layer, client layer and middleware built afterwards
//!   without an explicit propagator uses it (layers built before keep W3C).
//!
//! Exports run on a small tokio runtime of the setup's own (one thread), so `init` works
//! inside or outside a runtime, of either flavour, and the guard may be dropped anywhere.
//! The request path never waits for an export: an unreachable endpoint costs the spans,
//! which are counted and reported by a warning at most every 10 s, never the service.
//!
//! Every variable can be overridden in code through [`builder`], but for headers: see
//! [headers](#headers). Invalid values are ignored
//! and logged once, after the log layer exists, naming the variable (target
//! `tracewire::env`), and are kept in [`OtlpGuard::warnings`]. Values that may hold
//! credentials (headers, endpoints) are never printed.
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_SDK_DISABLED` | `true`: no recorder, nothing exported; logs and the layers still work |
//! | `OTEL_TRACES_EXPORTER` | `otlp` (default), `console` (trace trees on stderr, as [`dev::init`](crate::dev::init)) or `none` |
//! | `OTEL_SERVICE_NAME` | the service name (else `service.name` of `OTEL_RESOURCE_ATTRIBUTES`, else `unknown_service:<executable>`) |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,…` resource attributes, after the detected `process.pid`, `process.executable.name` and `host.name` |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the full URL of the traces endpoint |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the base URL (`/v1/traces` is added for HTTP); default `http://localhost:4318` (HTTP) or `http://localhost:4317` (gRPC) |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` | `http/protobuf` (default), `http/json` or `grpc` |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` | `key=value,…` headers of each export (values percent-decoded); replaces a header of the same name given in code ([headers](#headers)) |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` | the timeout of one export request, in ms (default 10000) |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION` | `gzip` or `none` (default) |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | the sampler (default `parentbased_always_on`) |
//! | `OTEL_PROPAGATORS` | `tracecontext`, `baggage` (default both), `b3`, `b3multi` (feature `b3`), `jaeger` (feature `jaeger`), `none` |
//! | `OTEL_BSP_SCHEDULE_DELAY` | the longest a span waits for its export, in ms (default 1000) |
//! | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | the most spans per export (default 512) |
//! | `OTEL_BSP_EXPORT_TIMEOUT` | the longest one export may take, in ms (default 10000) |
//! | `OTEL_BSP_MAX_QUEUE_SIZE` | the most finished spans waiting; more are dropped and counted (default 8192) |
//! | `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` | the HTTP methods named in spans and metrics, comma-separated and case-sensitive, replacing the standard nine (others are `_OTHER`); [`KnownMethods`](crate::config::KnownMethods) sets them in code |
//! | `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, `OTEL_SPAN_EVENT_COUNT_LIMIT`, `OTEL_SPAN_LINK_COUNT_LIMIT`, `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`, `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`, `OTEL_ATTRIBUTE_*_LIMIT` | the span limits (see [`env`](crate::env)) |
//! | `OTEL_METRICS_EXPORTER` | feature `metrics`: `otlp` (default) or `none`; see [request metrics](#request-metrics) |
//! | `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_{PROTOCOL,HEADERS,TIMEOUT,COMPRESSION}` | as the `TRACES` ones, for metrics (`/v1/metrics` is added to `OTEL_EXPORTER_OTLP_ENDPOINT` for HTTP) |
//! | `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` | `cumulative` (default) or `delta` |
//! | `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_METRIC_EXPORT_TIMEOUT` | read by the SDK's periodic reader: the time between exports (default 60000 ms) and the longest one may take (default 30000 ms) |
//! | `RUST_LOG` | the log lines' filter (default `info`) |
//! | `TRACEWIRE_RECORD` | the recorder's filter (default `info`) |
//! | `TRACEWIRE_LOG_FORMAT` | `text` (default) or `json` |
//!
//! # Request metrics
//!
//! With the feature `metrics`, `init` also builds an SDK `SdkMeterProvider` that exports over
//! OTLP (`OTEL_METRICS_EXPORTER`, default `otlp`; `none` turns it off), with the same
//! resource as the spans, and installs it as OpenTelemetry's global meter provider. Give it
//! to the layers, which then record the [request metrics](crate::metrics) of every request:
//!
//! ```no_run
//! # #[cfg(feature = "metrics")]
//! # fn main() -> Result<(), tracewire::otlp::InitError> {
//! let guard = tracewire::otlp::init()?;
//! let layer = match guard.meter_provider() {
//!     Some(provider) => tracewire::ServerLayer::new().metrics(provider),
//!     None => tracewire::ServerLayer::new().metrics(&*opentelemetry::global::meter_provider()),
//! };
//! # drop(layer);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "metrics"))]
//! # fn main() {}
//! ```
//!
//! The provider also reports the recorder pipeline's lost spans, `tracewire.spans.dropped`
//! (a counter, by `reason`: `queue_full`, `export_failed`, `shutdown`, `tail_sampler`,
//! `reporter_panic`; see [`Drops`](crate::report::Drops)).
//!
//! The guard exports what is left when dropped. The SDK's provider itself (rather than the
//! global one, which hides its type) lets the layers record through bound instruments; see
//! [the cost](crate::metrics#cost).
//!
//! # TLS
//!
//! An `https://` endpoint needs the cargo feature `otlp-tls`: gRPC (tonic) and HTTP (hyper)
//! then speak TLS through rustls with the `ring` provider, trusting the Mozilla root
//! certificates of `webpki-roots` (a Collector behind a certificate of a public CA; a
//! private CA is not trusted). `http://` endpoints never use TLS. For a Collector on the
//! same host or in the same pod, as is usual, plain `http://` needs nothing more.
//!
//! Without `otlp-tls`, an `https://` endpoint is handled like an unreachable one when it
//! comes from the environment, as OpenTelemetry SDKs do with a bad endpoint: `init`
//! succeeds, logs one warning naming the variable and the feature, and every span is
//! dropped and counted as an export failure (never sent in clear text); with the
//! `metrics` feature, metrics are not exported. Given in code ([`OtlpBuilder::endpoint`]),
//! it is a mistake of the program, and `init` returns [`InitError::TlsUnavailable`].
//!
//! # Headers
//!
//! Headers come from `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` and from
//! [`OtlpBuilder::header`]. For a name set in both, **the environment wins**:
//! `opentelemetry-otlp` reads the variable again when it builds the exporter and replaces
//! the value given in code. (Every other setting given in code wins over its variable.)
//! Header values and the user and password of an endpoint URL are never printed: not by
//! warnings, errors, nor the `Debug` of [`EnvConfig`].

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

use crate::dev::TRACEWIRE_RECORD;
use crate::env::{EnvConfig, EnvWarning};
use crate::log::WithTraceIds;
use crate::propagation::Propagator;
use crate::record::{FlushError, Recorder, RecorderGuard, RecorderHandle};
use crate::report::{ConsoleReporter, OtelCounters, OtelReporter};
use crate::sampler::Sampler;
use crate::span::KeyValue;

/// `text` or `json`: the format of the log lines.
pub const TRACEWIRE_LOG_FORMAT: &str = crate::log::TRACEWIRE_LOG_FORMAT;

/// Installs the production setup from the environment; see the [module docs](self).
/// Fails, changing nothing, when a global subscriber is already set.
pub fn init() -> Result<OtlpGuard, InitError> {
    builder().init()
}

/// A builder holding this process's `OTEL_*` variables (read now, once), for settings to
/// override in code before [`init`](OtlpBuilder::init).
///
/// ```no_run
/// # fn main() -> Result<(), tracewire::otlp::InitError> {
/// use tracewire::otlp::{LogFormat, OtlpProtocol};
///
/// let _guard = tracewire::otlp::builder()
///     .service_name("checkout")
///     .protocol(OtlpProtocol::Grpc)
///     .endpoint("http://otel-collector:4317")
///     .log_format(LogFormat::Json)
///     .init()?;
/// # Ok(())
/// # }
/// ```
pub fn builder() -> OtlpBuilder {
    OtlpBuilder::from_env_config(EnvConfig::from_env())
}

/// The format of the log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// `fmt`'s human-readable lines, ending with ` trace_id=… span_id=…` inside a span.
    #[default]
    Text,
    /// One JSON object per line, with `"trace_id"` and `"span_id"` members inside a span.
    Json,
}

pub use crate::env::{OtlpProtocol, TracesExporter};

/// Configures the production setup; see [`builder`].
#[must_use = "a builder does nothing until `init`"]
pub struct OtlpBuilder {
    env: EnvConfig,
    warnings: Vec<EnvWarning>,
    exporter: Option<TracesExporter>,
    service_name: Option<Arc<str>>,
    resource: Vec<KeyValue>,
    endpoint: Option<String>,
    protocol: Option<OtlpProtocol>,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    sampler: Option<Box<dyn Sampler>>,
    propagator: Option<Box<dyn Propagator>>,
    log_format: LogFormat,
    rust_log: Option<String>,
    record: Option<String>,
    #[cfg(feature = "metrics")]
    metrics: metrics::MetricsEnv,
}

impl OtlpBuilder {
    /// A builder from an [`EnvConfig`] already read (say with
    /// [`EnvConfig::from_lookup`]); `RUST_LOG`, `TRACEWIRE_RECORD` and
    /// `TRACEWIRE_LOG_FORMAT` are still read from the process.
    pub fn from_env_config(env: EnvConfig) -> Self {
        let mut warnings = env.warnings.clone();
        let log_format = match crate::log::json_from_env() {
            Ok(true) => LogFormat::Json,
            Ok(false) => LogFormat::Text,
            Err(warning) => {
                warnings.push(warning);
                LogFormat::Text
            }
        };
        #[cfg(feature = "metrics")]
        let metrics = metrics::MetricsEnv::from_env(&mut warnings);
        OtlpBuilder {
            env,
            warnings,
            exporter: None,
            service_name: None,
            resource: Vec::new(),
            endpoint: None,
            protocol: None,
            headers: Vec::new(),
            timeout: None,
            sampler: None,
            propagator: None,
            log_format,
            rust_log: std::env::var("RUST_LOG").ok(),
            record: std::env::var(TRACEWIRE_RECORD).ok(),
            #[cfg(feature = "metrics")]
            metrics,
        }
    }

    /// Exports request metrics over OTLP (`OTEL_METRICS_EXPORTER=otlp`, the default) or not
    /// (`none`); see [request metrics](self#request-metrics).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, enabled: bool) -> Self {
        self.metrics.enabled = enabled;
        self
    }

    /// Where spans go (`OTEL_TRACES_EXPORTER`): OTLP, console trees, or nowhere.
    pub fn exporter(mut self, exporter: TracesExporter) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// The service name (`OTEL_SERVICE_NAME`).
    pub fn service_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Adds a resource attribute, overriding the environment's.
    pub fn resource_attribute(mut self, attribute: KeyValue) -> Self {
        self.resource.push(attribute);
        self
    }

    /// The full URL of the traces endpoint (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), e.g.
    /// `http://collector:4317` for gRPC or `http://collector:4318/v1/traces` for HTTP. An
    /// `https://` URL needs the feature `otlp-tls`, else `init` fails with
    /// [`InitError::TlsUnavailable`]; see [TLS](self#tls).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub fn protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Adds a header (gRPC metadata) to every export, e.g. an API key. A header of the same
    /// name in `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS` replaces this one: see
    /// [headers](self#headers).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The timeout of one export request (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The sampler (`OTEL_TRACES_SAMPLER`).
    pub fn sampler(mut self, sampler: impl Sampler) -> Self {
        self.sampler = Some(Box::new(sampler));
        self
    }

    /// The process-wide default propagator (`OTEL_PROPAGATORS`).
    pub fn propagator(mut self, propagator: impl Propagator) -> Self {
        self.propagator = Some(Box::new(propagator));
        self
    }

    /// The format of the log lines (`TRACEWIRE_LOG_FORMAT`).
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.log_format = format;
        self
    }

    /// Edits, in code, the settings read from the environment that have no method of their
    /// own: compression (`gzip`), batching (`OTEL_BSP_*`), span limits, resource attributes…
    /// The methods above still win over what the edit leaves.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), tracewire::otlp::InitError> {
    /// use std::time::Duration;
    ///
    /// let _guard = tracewire::otlp::builder()
    ///     .edit_env(|env| {
    ///         env.otlp.gzip = Some(true);
    ///         env.batch.schedule_delay = Some(Duration::from_millis(200));
    ///         env.limits.attribute_count = Some(64);
    ///     })
    ///     .init()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn edit_env(mut self, edit: impl FnOnce(&mut EnvConfig)) -> Self {
        edit(&mut self.env);
        self
    }

    /// Installs the setup; see the [module docs](self). Fails, changing nothing, when a
    /// global subscriber is already set, and when the exporter cannot be built from
    /// settings given in code (those from the environment are checked as they are read),
    /// such as an `https://` endpoint without the feature `otlp-tls`.
    pub fn init(self) -> Result<OtlpGuard, InitError> {
        if global_subscriber_set() {
            return Err(InitError::AlreadyInstalled);
        }
        let OtlpBuilder {
            mut env,
            mut warnings,
            exporter,
            service_name,
            resource,
            endpoint,
            protocol,
            headers,
            timeout,
            sampler,
            propagator,
            log_format,
            rust_log,
            record,
            #[cfg(feature = "metrics")]
            metrics,
        } = self;
        let exporter = if env.sdk_disabled {
            None
        } else {
            Some(
                exporter
                    .or(env.traces_exporter)
                    .unwrap_or(TracesExporter::Otlp),
            )
        };
        let mut installed = Installed::default();
        // Said once the log layer exists, as the environment's warnings are.
        // The spans' resource, which the metrics share.
        let mut full_resource = detected_resource();
        full_resource.extend(env.resource_attributes.iter().cloned());
        full_resource.extend(resource.iter().cloned());
        let recorder = match exporter {
            None => None,
            Some(kind) => {
                let mut builder = Recorder::builder()
                    .with_env_config(&env)
                    .record_internals(crate::dev::asks_for_internals(record.as_deref()));
                if let Some(name) = service_name {
                    builder = builder.service_name(name);
                }
                if let Some(sampler) = sampler {
                    builder = builder.sampler(sampler);
                }
                match kind {
                    TracesExporter::Otlp => {
                        env.resource_attributes = full_resource.clone();
                        let settings = Settings::new(
                            &env.otlp,
                            "traces",
                            endpoint.clone(),
                            protocol,
                            headers.clone(),
                            timeout,
                        );
                        let runtime = installed.runtime()?;
                        let otel = match settings.tls_unavailable()? {
                            Some(variable) => {
                                warnings.push(EnvWarning::TlsUnavailable {
                                    variable,
                                    signal: "spans",
                                });
                                OtelReporter::builder(NeedsTls)
                            }
                            None => {
                                let built = {
                                    let _entered = runtime.enter();
                                    settings.build()
                                };
                                OtelReporter::builder(built?)
                            }
                        };
                        let otel = otel
                            .with_env_config(&env)
                            .runtime(runtime.handle().clone())
                            .build();
                        installed.counters = Some(otel.counters());
                        builder = builder.reporter(otel);
                    }
                    TracesExporter::Console => {
                        let console = ConsoleReporter::builder().summary(true).build();
                        builder = builder.reporter(console);
                    }
                    TracesExporter::None => {}
                }
                let (layer, guard) = builder.build();
                installed.recorder = Some(guard);
                Some(layer)
            }
        };
        #[cfg(feature = "metrics")]
        if let (Some(layer), true) = (&recorder, metrics.enabled) {
            let settings =
                Settings::new(&metrics.otlp, "metrics", None, protocol, headers, timeout);
            match settings.tls_unavailable()? {
                // Nothing could be exported: no provider, the layers record no metrics.
                Some(variable) => warnings.push(EnvWarning::TlsUnavailable {
                    variable,
                    signal: "metrics",
                }),
                None => {
                    let runtime = installed.runtime()?;
                    let provider = metrics::meter_provider(
                        settings,
                        metrics.temporality,
                        runtime,
                        layer.service_name(),
                        full_resource,
                    )?;
                    if let Some(recorder) = &installed.recorder {
                        metrics::observe_pipeline(&provider, recorder.handle());
                    }
                    installed.meters = Some(provider);
                }
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = full_resource;
        let format = match log_format {
            LogFormat::Text => WithTraceIds::text(ConsoleReporter::auto_color(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            )),
            LogFormat::Json => WithTraceIds::json(),
        };
        let subscriber =
            crate::dev::subscriber(recorder, record.as_deref(), rust_log.as_deref(), format);
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            // `installed` drops here: its pipeline and runtime stop; nothing was shared.
            return Err(InitError::AlreadyInstalled);
        }
        #[cfg(feature = "metrics")]
        if let Some(provider) = &installed.meters {
            opentelemetry::global::set_meter_provider(provider.clone());
        }
        let propagator = propagator.unwrap_or_else(|| env.propagator());
        // A default the application set itself, before, is kept.
        let _ = crate::propagation::set_global_default(propagator);
        for warning in &warnings {
            tracing::warn!(target: "tracewire::env", %warning, "ignoring an environment variable");
        }
        Ok(OtlpGuard {
            installed,
            exporter,
            warnings,
        })
    }
}

impl fmt::Debug for OtlpBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers are left out: they often hold credentials.
        f.debug_struct("OtlpBuilder")
            .field("exporter", &self.exporter)
            .field("service_name", &self.service_name)
            .field("protocol", &self.protocol)
            .field("log_format", &self.log_format)
            .finish_non_exhaustive()
    }
}

/// Whether a global subscriber is set, checked before `init` changes anything. A scoped one
/// (`with_default`, `set_default`) does not count, though `tracing`'s `has_been_set` counts
/// it: a new thread, which sees only the global one, is asked. Without a thread, `false`:
/// setting the subscriber fails later all the same.
fn global_subscriber_set() -> bool {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .spawn_scoped(scope, || {
                tracing::dispatcher::get_default(|current| {
                    !current.is::<tracing_core::subscriber::NoSubscriber>()
                })
            })
            .is_ok_and(|asked| asked.join().unwrap_or(true))
    })
}

/// Builds an exporter (`SpanExporter::builder()`, `MetricExporter::builder()`) from
/// [`Settings`]: their builders share the methods, not a type.
macro_rules! configure {
    ($settings:expr, $builder:expr) => {{
        let settings: Settings = $settings;
        let builder = $builder;
        let timeout = settings.timeout.unwrap_or(Duration::from_secs(10));
        if settings.protocol == OtlpProtocol::Grpc {
            let mut headers = http::HeaderMap::new();
            for (name, value) in &settings.headers {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    http::HeaderValue::from_str(value),
                ) {
                    headers.append(name, value);
                }
            }
            let mut builder = builder
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(timeout)
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers),
                );
            if settings.gzip {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            // opentelemetry-otlp's own TLS setting for `https://` trusts no root at all.
            #[cfg(feature = "otlp-tls")]
            if settings.is_https() {
                builder = builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_webpki_roots(),
                );
            }
            builder
                .build()
                .map_err(|error| crate::otlp::ExporterError::new(&error, &settings))
        } else {
            let protocol = match settings.protocol {
                OtlpProtocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
                _ => opentelemetry_otlp::Protocol::HttpBinary,
            };
            let mut builder = builder
                .with_http()
                .with_endpoint(settings.endpoint.clone())
                .with_protocol(protocol)
                .with_timeout(timeout)
                .with_headers(settings.headers.iter().cloned().collect::<HashMap<_, _>>());
            if settings.gzip {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            // The hyper client opentelemetry-otlp builds speaks plain HTTP only.
            #[cfg(feature = "otlp-tls")]
            if settings.is_https() {
                builder = builder.with_http_client(crate::otlp::tls::https_client(timeout)?);
            }
            builder
                .build()
                .map_err(|error| crate::otlp::ExporterError::new(&error, &settings))
        }
    }};
}

/// What the exporter is built from.
struct Settings {
    protocol: OtlpProtocol,
    endpoint: String,
    /// Where `endpoint` came from.
    endpoint_source: EndpointSource,
    headers: Vec<(String, String)>,
    timeout: Option<Duration>,
    gzip: bool,
}

impl Settings {
    /// The settings of the exporter of `signal` (`traces`, `metrics`): `otlp` holds the
    /// signal's variables (its endpoint in `traces_endpoint`).
    fn new(
        otlp: &crate::env::OtlpEnv,
        signal: &str,
        endpoint: Option<String>,
        protocol: Option<OtlpProtocol>,
        headers: Vec<(String, String)>,
        timeout: Option<Duration>,
    ) -> Settings {
        let protocol = protocol
            .or(otlp.protocol)
            .unwrap_or(OtlpProtocol::HttpProtobuf);
        let grpc = protocol == OtlpProtocol::Grpc;
        let signal_variable = if signal == "metrics" {
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
        } else {
            crate::env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
        };
        let (endpoint, endpoint_source) = endpoint
            .map(|url| (url, EndpointSource::Code))
            .or_else(|| {
                let url = otlp.traces_endpoint.clone()?;
                Some((url, EndpointSource::Variable(signal_variable)))
            })
            .or_else(|| {
                let base = otlp.endpoint.as_deref()?;
                let url = if grpc {
                    base.to_owned()
                } else {
                    format!("{}/v1/{signal}", base.trim_end_matches('/'))
                };
                Some((
                    url,
                    EndpointSource::Variable(crate::env::OTEL_EXPORTER_OTLP_ENDPOINT),
                ))
            })
            .unwrap_or_else(|| {
                let url = if grpc {
                    "http://localhost:4317".to_owned()
                } else {
                    format!("http://localhost:4318/v1/{signal}")
                };
                (url, EndpointSource::Default)
            });
        let mut all = otlp.headers.clone();
        all.extend(headers);
        Settings {
            protocol,
            endpoint,
            endpoint_source,
            headers: all,
            timeout: timeout.or(otlp.timeout),
            gzip: otlp.gzip.unwrap_or(false),
        }
    }

    fn build(self) -> Result<opentelemetry_otlp::SpanExporter, ExporterError> {
        configure!(self, opentelemetry_otlp::SpanExporter::builder())
    }

    /// Whether the endpoint is an `https://` URL.
    fn is_https(&self) -> bool {
        self.endpoint
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    }

    /// Without the feature `otlp-tls`, for an `https://` endpoint: the variable that gave
    /// it (nothing will be exported), or an error when it was given in code.
    fn tls_unavailable(&self) -> Result<Option<&'static str>, InitError> {
        if cfg!(feature = "otlp-tls") || !self.is_https() {
            return Ok(None);
        }
        match self.endpoint_source {
            EndpointSource::Variable(variable) => Ok(Some(variable)),
            EndpointSource::Code | EndpointSource::Default => Err(InitError::TlsUnavailable),
        }
    }
}

/// Where an endpoint came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndpointSource {
    /// [`OtlpBuilder::endpoint`].
    Code,
    /// This variable.
    Variable(&'static str),
    /// Nowhere: the specification's default.
    Default,
}

/// Something `init` tells once the log layer exists.
#[derive(Debug)]
struct NeedsTls;

impl opentelemetry_sdk::trace::SpanExporter for NeedsTls {
    fn export(
        &self,
        _batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        std::future::ready(Err(
            opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                "the OTLP endpoint is https://, which needs tracewire's cargo feature \"otlp-tls\""
                    .to_owned(),
            ),
        ))
    }
}

/// The OTLP/HTTP client for `https://` endpoints (feature `otlp-tls`).
#[cfg(feature = "otlp-tls")]
mod tls {
    use std::time::Duration;

    use hyper_rustls::HttpsConnector;
    use hyper_util::client::legacy::connect::HttpConnector;
    use opentelemetry_http::hyper::HyperClient;

    use super::ExporterError;

    /// opentelemetry-otlp's hyper client over rustls (`ring`), trusting the webpki roots.
    pub(super) fn https_client(
        timeout: Duration,
    ) -> Result<HyperClient<HttpsConnector<HttpConnector>>, ExporterError> {
        // `ring`, as tonic's `tls-ring` uses for gRPC: rustls deprecates it for its lack of
        // post-quantum key exchange, but its alternative, aws-lc-rs, is a large C build.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|error| ExporterError {
                message: format!("TLS could not be set up: {error}"),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HyperClient::new(connector, timeout, None))
    }
}

/// `process.pid`, `process.executable.name` and, where the system tells it, `host.name`.
///
/// By hand: the SDK has no process or host detector, and the contrib crate's
/// (`opentelemetry-resource-detectors`) records `process.command_args`, the whole command
/// line, where secrets passed as arguments would reach every exported span's resource, and
/// runs the `hostname` program to name the host.
fn detected_resource() -> Vec<KeyValue> {
    let mut attributes = vec![KeyValue::new("process.pid", i64::from(std::process::id()))];
    let exe = std::env::current_exe().ok();
    if let Some(name) = exe.as_ref().and_then(|p| p.file_name()) {
        attributes.push(KeyValue::new(
            "process.executable.name",
            name.to_string_lossy().into_owned(),
        ));
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            attributes.push(KeyValue::new("host.name", host.to_owned()));
        }
    }
    attributes
}

/// What `init` started, stopped in order on drop.
#[derive(Default)]
struct Installed {
    recorder: Option<RecorderGuard>,
    counters: Option<OtelCounters>,
    #[cfg(feature = "metrics")]
    meters: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Installed {
    /// The runtime exports run on, started on first use.
    fn runtime(&mut self) -> Result<&tokio::runtime::Runtime, InitError> {
        if self.runtime.is_none() {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("tracewire-otlp")
                .enable_all()
                .build()
                .map_err(InitError::Runtime)?;
            self.runtime = Some(runtime);
        }
        Ok(self.runtime.as_ref().expect("started above"))
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        // Export what is left while the runtime still runs, then stop it without blocking
        // (the guard may be dropped on an async thread).
        drop(self.recorder.take());
        #[cfg(feature = "metrics")]
        if let Some(meters) = self.meters.take() {
            // Errors are the SDK's to report (its internal logs); nothing is left to do.
            let _ = meters.shutdown();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Keeps the production setup running; dropping it exports what is left (waiting up to the
/// recorder's shutdown timeout) and stops the export thread.
#[must_use = "dropping the guard stops exporting"]
pub struct OtlpGuard {
    installed: Installed,
    exporter: Option<TracesExporter>,
    warnings: Vec<EnvWarning>,
}

impl OtlpGuard {
    /// Exports (or prints) every span finished so far, and the metrics recorded so far.
    pub fn flush(&self) -> Result<(), FlushError> {
        #[cfg(feature = "metrics")]
        if let Some(meters) = &self.installed.meters {
            // Errors are the SDK's to report (its internal logs).
            let _ = meters.force_flush();
        }
        match &self.installed.recorder {
            Some(recorder) => recorder.flush(),
            None => Ok(()),
        }
    }

    /// The recorder's pipeline (counters of spans exported and dropped); `None` when
    /// `OTEL_SDK_DISABLED=true`.
    pub fn recorder(&self) -> Option<RecorderHandle> {
        self.installed.recorder.as_ref().map(RecorderGuard::handle)
    }

    /// The OTLP exporter's counters; `None` unless spans go to OTLP.
    pub fn exporter_counters(&self) -> Option<OtelCounters> {
        self.installed.counters.clone()
    }

    /// The meter provider exporting request metrics over OTLP, also installed as
    /// OpenTelemetry's global one; `None` with `OTEL_METRICS_EXPORTER=none` or
    /// `OTEL_SDK_DISABLED=true`. See [request metrics](self#request-metrics).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn meter_provider(&self) -> Option<&opentelemetry_sdk::metrics::SdkMeterProvider> {
        self.installed.meters.as_ref()
    }

    /// Where spans go; `None` when `OTEL_SDK_DISABLED=true`.
    pub fn exporter(&self) -> Option<TracesExporter> {
        self.exporter
    }

    /// What was wrong with the environment (also logged once at WARN by `init`).
    pub fn warnings(&self) -> &[EnvWarning] {
        &self.warnings
    }
}

impl fmt::Debug for OtlpGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpGuard")
            .field("exporter", &self.exporter)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// Why [`init`] failed; nothing was installed.
#[derive(Debug)]
#[non_exhaustive]
pub enum InitError {
    /// A global subscriber was already set (by a previous `init`, say).
    AlreadyInstalled,
    /// The export thread could not be started.
    Runtime(std::io::Error),
    /// The exporter could not be built from the settings given in code.
    Exporter(ExporterError),
    /// The endpoint given in code is an `https://` URL, and the cargo feature `otlp-tls`
    /// is off; see [TLS](self#tls).
    TlsUnavailable,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::AlreadyInstalled => {
                f.write_str("a global tracing subscriber is already set")
            }
            InitError::Runtime(_) => f.write_str("the OTLP export thread could not start"),
            InitError::Exporter(_) => f.write_str("the OTLP exporter could not be built"),
            InitError::TlsUnavailable => f.write_str(
                "the OTLP endpoint given in code is an https:// URL, which needs tracewire's \
                 cargo feature \"otlp-tls\"",
            ),
        }
    }
}

impl std::error::Error for InitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InitError::AlreadyInstalled | InitError::TlsUnavailable => None,
            InitError::Runtime(error) => Some(error),
            InitError::Exporter(error) => Some(error),
        }
    }
}

impl From<ExporterError> for InitError {
    fn from(error: ExporterError) -> Self {
        InitError::Exporter(error)
    }
}

/// Why `opentelemetry-otlp` could not build the exporter: its message and those of its
/// causes, with the endpoint's user and password and every header value taken out (they
/// may be credentials).
pub struct ExporterError {
    message: String,
}

impl ExporterError {
    fn new(error: &(dyn std::error::Error + 'static), settings: &Settings) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        ExporterError {
            message: scrub(&message, &settings.headers),
        }
    }
}

/// `text` without the user information of any URL in it and without the header values.
fn scrub(text: &str, headers: &[(String, String)]) -> String {
    let mut text = crate::env::redact_userinfo(text).into_owned();
    for (_, value) in headers {
        if !value.is_empty() {
            text = text.replace(value.as_str(), "<redacted>");
        }
    }
    text
}

impl fmt::Display for ExporterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ExporterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExporterError")
            .field("message", &self.message)
            .finish()
    }
}

impl std::error::Error for ExporterError {}

/// The metrics part of the setup (feature `metrics`).
#[cfg(feature = "metrics")]
mod metrics {
    use std::time::Duration;

    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::metrics::data::ResourceMetrics;
    use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
    use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
    use opentelemetry_sdk::Resource;

    use std::collections::HashMap;

    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

    use super::{ExporterError, OtlpProtocol, Settings};
    use crate::env::{EnvConfig, EnvWarning, OtlpEnv};
    use crate::span::KeyValue;

    /// `OTEL_METRICS_EXPORTER`.
    const OTEL_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`.
    const TEMPORALITY: &str = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";

    /// The metrics variables.
    pub(super) struct MetricsEnv {
        pub(super) enabled: bool,
        /// The metrics signal's OTLP variables (its endpoint in `traces_endpoint`).
        pub(super) otlp: OtlpEnv,
        pub(super) temporality: Temporality,
    }

    impl MetricsEnv {
        pub(super) fn from_env(warnings: &mut Vec<EnvWarning>) -> Self {
            let var = |name: &'static str| std::env::var(name).ok().map(|v| (name, v));
            let enabled = match var(OTEL_METRICS_EXPORTER) {
                Some((_, value)) if value.trim().eq_ignore_ascii_case("none") => false,
                Some((_, value)) if value.trim().eq_ignore_ascii_case("otlp") => true,
                Some((_, value)) if value.trim().is_empty() => true,
                Some((variable, value)) => {
                    warnings.push(EnvWarning::InvalidValue { variable, value });
                    true
                }
                None => true,
            };
            let temporality = match var(TEMPORALITY) {
                Some((_, value)) if value.trim().eq_ignore_ascii_case("delta") => {
                    Temporality::Delta
                }
                Some((_, value))
                    if value.trim().eq_ignore_ascii_case("cumulative")
                        || value.trim().is_empty() =>
                {
                    Temporality::Cumulative
                }
                Some((variable, value)) => {
                    warnings.push(EnvWarning::InvalidValue { variable, value });
                    Temporality::Cumulative
                }
                None => Temporality::Cumulative,
            };
            // The traces variables' parser, given the metrics variables under their names.
            let parsed = EnvConfig::from_lookup(|name| {
                std::env::var_os(name.replace("_OTLP_TRACES_", "_OTLP_METRICS_"))
            });
            warnings.extend(
                parsed
                    .warnings
                    .into_iter()
                    .filter_map(|warning| match warning {
                        EnvWarning::InvalidValue { variable, value } => {
                            Some(EnvWarning::InvalidValue {
                                variable: metrics_name(variable)?,
                                value,
                            })
                        }
                        EnvWarning::Malformed { variable } => Some(EnvWarning::Malformed {
                            variable: metrics_name(variable)?,
                        }),
                        EnvWarning::NotUnicode { variable } => Some(EnvWarning::NotUnicode {
                            variable: metrics_name(variable)?,
                        }),
                        // The rest was reported when the traces' variables were read.
                        _ => None,
                    }),
            );
            MetricsEnv {
                enabled,
                otlp: parsed.otlp,
                temporality,
            }
        }
    }

    /// The metrics variable read in place of a traces one; `None` for the others (read, and
    /// reported, with the traces' variables).
    fn metrics_name(traces: &str) -> Option<&'static str> {
        Some(match traces {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" => "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS" => "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT" => "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION" => "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
            _ => return None,
        })
    }

    /// `tracewire.spans.dropped`: the recorder pipeline's lost spans, by `reason`, read from
    /// its counters when the metrics are collected.
    pub(super) fn observe_pipeline(
        provider: &SdkMeterProvider,
        recorder: crate::record::RecorderHandle,
    ) {
        use opentelemetry::metrics::MeterProvider as _;
        let meter = provider.meter("tracewire");
        // Registered with the provider for its life; the handle itself is not needed.
        let _dropped = meter
            .u64_observable_counter("tracewire.spans.dropped")
            .with_unit("{span}")
            .with_description("Spans the recorder pipeline dropped, by reason.")
            .with_callback(move |observer| {
                let drops = recorder.stats().dropped;
                for (reason, count) in [
                    ("queue_full", drops.queue_full),
                    ("export_failed", drops.export_failed),
                    ("shutdown", drops.shutdown),
                    ("tail_sampler", drops.tail_sampler),
                    ("reporter_panic", drops.reporter_panic),
                ] {
                    observer.observe(count, &[KeyValue::new("reason", reason)]);
                }
            })
            .build();
    }

    /// The meter provider exporting through `settings`, on `runtime`.
    pub(super) fn meter_provider(
        settings: Settings,
        temporality: Temporality,
        runtime: &tokio::runtime::Runtime,
        service_name: &str,
        resource: Vec<KeyValue>,
    ) -> Result<SdkMeterProvider, ExporterError> {
        let exporter = {
            let _entered = runtime.enter();
            let builder = opentelemetry_otlp::MetricExporter::builder();
            configure!(settings, builder.with_temporality(temporality))?
        };
        let exporter = OnRuntime {
            exporter,
            runtime: runtime.handle().clone(),
        };
        let resource = Resource::builder_empty()
            .with_attributes(resource)
            .with_service_name(service_name.to_owned())
            .build();
        Ok(SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(PeriodicReader::builder(exporter).build())
            .build())
    }

    /// Runs the exporter's exports on the setup's runtime, which owns its connections: the
    /// SDK's periodic reader calls them from a thread of its own.
    #[derive(Debug)]
    struct OnRuntime {
        exporter: opentelemetry_otlp::MetricExporter,
        runtime: tokio::runtime::Handle,
    }

    impl PushMetricExporter for OnRuntime {
        fn export(
            &self,
            metrics: &ResourceMetrics,
        ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
            // The reader's thread is no runtime's: blocking it on the runtime is allowed.
            let result = self.runtime.block_on(self.exporter.export(metrics));
            std::future::ready(result)
        }

        fn force_flush(&self) -> OTelSdkResult {
            self.exporter.force_flush()
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.exporter.shutdown_with_timeout(timeout)
        }

        fn temporality(&self) -> Temporality {
            self.exporter.temporality()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-api-key";
    const PASSWORD: &str = "hunter2";

    fn env() -> EnvConfig {
        EnvConfig::from_lookup(|name| match name {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(format!(
                "https://alice:{PASSWORD}@collector.example:4318/base"
            )),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => {
                Some(format!("http://bob:{PASSWORD}@[::1]:4318/v1/traces?x=1"))
            }
            "OTEL_EXPORTER_OTLP_HEADERS" => {
                Some(format!("api-key={SECRET},authorization=Basic%20{PASSWORD}"))
            }
            _ => None,
        })
    }

    #[test]
    fn debug_of_the_environment_hides_header_values_and_userinfo() {
        let env = env();
        assert_eq!(env.otlp.headers.len(), 2, "both headers are read");
        for shown in [format!("{env:?}"), format!("{:#?}", env.otlp)] {
            assert!(!shown.contains(SECRET), "{shown}");
            assert!(!shown.contains(PASSWORD), "{shown}");
            assert!(
                !shown.contains("alice") && !shown.contains("bob"),
                "{shown}"
            );
            for kept in [
                "api-key",
                "authorization",
                "<redacted>",
                "https://<redacted>@collector.example:4318/base",
                "http://<redacted>@[::1]:4318/v1/traces?x=1",
            ] {
                assert!(shown.contains(kept), "{kept} in {shown}");
            }
        }
    }

    #[test]
    fn userinfo_is_redacted_in_any_text() {
        let table = [
            ("no url here", "no url here"),
            ("http://collector:4317", "http://collector:4317"),
            ("mail a@b.c", "mail a@b.c"),
            (
                "invalid endpoint 'https://u:p@h:1/x@y': bad",
                "invalid endpoint 'https://<redacted>@h:1/x@y': bad",
            ),
            (
                "a http://u@h and grpc://v:w@g?q=@",
                "a http://<redacted>@h and grpc://<redacted>@g?q=@",
            ),
            ("http://a:b@c@d/", "http://<redacted>@d/"),
        ];
        for (text, want) in table {
            assert_eq!(crate::env::redact_userinfo(text), want, "{text}");
        }
    }

    /// A build error quoting the endpoint, for both transports.
    #[test]
    fn exporter_errors_carry_no_header_value_nor_userinfo() {
        let env = env();
        for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
            // A space makes the URL invalid, so opentelemetry-otlp quotes it in its error.
            let endpoint = format!("http://carol:{PASSWORD}@collector:4317/ bad");
            let settings = Settings::new(
                &env.otlp,
                "traces",
                Some(endpoint),
                Some(protocol),
                vec![("x-token".to_owned(), SECRET.to_owned())],
                None,
            );
            let headers = settings.headers.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let error = {
                let _entered = runtime.enter();
                settings.build().expect_err("an invalid endpoint")
            };
            // And a message that quoted the headers themselves.
            let quoted = ExporterError {
                message: scrub(
                    &format!("{headers:?} at http://carol:{PASSWORD}@c/"),
                    &headers,
                ),
            };
            for error in [InitError::Exporter(error), InitError::Exporter(quoted)] {
                let mut shown = vec![error.to_string(), format!("{error:?}")];
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    shown.push(cause.to_string());
                    shown.push(format!("{cause:?}"));
                    source = cause.source();
                }
                let all = shown.join("\n");
                assert!(!all.contains(SECRET), "{protocol:?}: {all}");
                assert!(!all.contains(PASSWORD), "{protocol:?}: {all}");
                assert!(!all.contains("carol"), "{protocol:?}: {all}");
                assert!(all.contains("<redacted>@"), "{protocol:?}: {all}");
            }
        }
    }

    /// Fails before anything global is installed.
    #[cfg(not(feature = "otlp-tls"))]
    #[test]
    fn an_https_endpoint_in_code_needs_the_feature() {
        let error = OtlpBuilder::from_env_config(EnvConfig::default())
            .endpoint("https://collector:4318/v1/traces")
            .init()
            .expect_err("no TLS in this build");
        assert!(matches!(error, InitError::TlsUnavailable), "{error:?}");
        assert!(error.to_string().contains("\"otlp-tls\""), "{error}");
        assert!(!tracing::dispatcher::has_been_set());
    }

    #[test]
    fn where_an_https_endpoint_came_from() {
        let env = EnvConfig::from_lookup(|name| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then_some("HTTPS://collector:4317")
        });
        let from_env = Settings::new(&env.otlp, "traces", None, None, Vec::new(), None);
        assert!(from_env.is_https());
        assert_eq!(
            from_env.endpoint_source,
            EndpointSource::Variable("OTEL_EXPORTER_OTLP_ENDPOINT")
        );
        let in_code = Settings::new(
            &env.otlp,
            "metrics",
            Some("https://collector:4318/v1/metrics".to_owned()),
            None,
            Vec::new(),
            None,
        );
        assert_eq!(in_code.endpoint_source, EndpointSource::Code);
        if cfg!(feature = "otlp-tls") {
            assert_eq!(from_env.tls_unavailable().ok(), Some(None));
            assert_eq!(in_code.tls_unavailable().ok(), Some(None));
        } else {
            assert_eq!(
                from_env.tls_unavailable().ok(),
                Some(Some("OTEL_EXPORTER_OTLP_ENDPOINT"))
            );
            assert!(matches!(
                in_code.tls_unavailable(),
                Err(InitError::TlsUnavailable)
            ));
        }
        let plain = Settings::new(
            &EnvConfig::default().otlp,
            "traces",
            None,
            None,
            vec![],
            None,
        );
        assert_eq!(plain.endpoint_source, EndpointSource::Default);
        assert_eq!(plain.tls_unavailable().ok(), Some(None));
    }
}
