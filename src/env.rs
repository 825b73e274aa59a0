//! The OpenTelemetry SDK environment variables, read only when asked.
//!
//! [`EnvConfig`] reads:
//!
//! | variable | meaning |
//! |---|---|
//! | `OTEL_SERVICE_NAME` | the default service name |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,…` resource attributes (values percent-decoded); its `service.name` is used when `OTEL_SERVICE_NAME` is unset |
//! | `OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio` |
//! | `OTEL_TRACES_SAMPLER_ARG` | the ratio for the two ratio samplers, in `0.0..=1.0` (default `1.0`) |
//! | `OTEL_PROPAGATORS` | `tracecontext`, `baggage`, `b3`, `b3multi`, `jaeger`, `none`, comma-separated: [`EnvConfig::propagator`] builds the propagator for the layers |
//! | `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` | the longest attribute value kept, in bytes (default 8192 in tracewire) |
//! | `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, else `OTEL_ATTRIBUTE_COUNT_LIMIT` | the most attributes per span (default 128) |
//! | `OTEL_SPAN_EVENT_COUNT_LIMIT` | the most events per span (default 128) |
//! | `OTEL_SPAN_LINK_COUNT_LIMIT` | the most links per span (default 128) |
//! | `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`, `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`, else `OTEL_ATTRIBUTE_COUNT_LIMIT` | the most attributes per span event and per link (default 128) |
//! | `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER` | whether and where spans go ([`otlp`](crate::otlp)) |
//! | `OTEL_EXPORTER_OTLP_[TRACES_]{ENDPOINT,PROTOCOL,HEADERS,TIMEOUT,COMPRESSION}` | the OTLP exporter ([`OtlpEnv`]) |
//! | `OTEL_BSP_{SCHEDULE_DELAY,EXPORT_TIMEOUT,MAX_QUEUE_SIZE,MAX_EXPORT_BATCH_SIZE}` | the export batching ([`BatchConfig`]) |
//! | `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` | the HTTP methods recorded by name, comma-separated and case-sensitive, replacing the standard ones ([`KnownMethods`]); others are `_OTHER` |
//!
//! As the specification asks, names are matched case-insensitively, surrounding whitespace is
//! ignored, an empty variable counts as unset, and an invalid value falls back to the default
//! (the setting is left as it was) with one typed [`EnvWarning`] in [`EnvConfig::warnings`].
//!
//! Nothing here touches the process environment unless you call [`EnvConfig::from_env`] (or
//! [`RecorderBuilder::with_env`](crate::record::RecorderBuilder::with_env)); tests pass a
//! lookup function to [`EnvConfig::from_lookup`]:
//!
//! ```
//! use tracewire::env::{EnvConfig, EnvWarning, SamplerConfig};
//!
//! let env = EnvConfig::from_lookup(|name| match name {
//!     "OTEL_RESOURCE_ATTRIBUTES" => Some("service.name=checkout,team=pay%20ments"),
//!     "OTEL_TRACES_SAMPLER" => Some("parentbased_traceidratio"),
//!     "OTEL_TRACES_SAMPLER_ARG" => Some("2.5"),
//!     _ => None,
//! });
//! assert_eq!(env.service_name.as_deref(), Some("checkout"));
//! assert_eq!(env.sampler, Some(SamplerConfig::ParentBasedTraceIdRatio(1.0)));
//! assert_eq!(
//!     env.warnings,
//!     vec![EnvWarning::InvalidSamplerArg { value: "2.5".into() }]
//! );
//! ```

use std::ffi::OsStr;
use std::fmt;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::config::{KnownMethods, KnownMethodsError};
use crate::sampler::{AlwaysOff, AlwaysOn, ParentBased, Sampler, TraceIdRatio};
use crate::span::KeyValue;

/// `OTEL_SERVICE_NAME`.
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `OTEL_RESOURCE_ATTRIBUTES`.
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// `OTEL_TRACES_SAMPLER`.
pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// `OTEL_TRACES_SAMPLER_ARG`.
pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// `OTEL_PROPAGATORS`.
pub const OTEL_PROPAGATORS: &str = "OTEL_PROPAGATORS";
/// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`.
pub const OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT";
/// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`.
pub const OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";
/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`.
pub const OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_ATTRIBUTE_COUNT_LIMIT`.
pub const OTEL_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_SPAN_EVENT_COUNT_LIMIT`.
pub const OTEL_SPAN_EVENT_COUNT_LIMIT: &str = "OTEL_SPAN_EVENT_COUNT_LIMIT";
/// `OTEL_SPAN_LINK_COUNT_LIMIT`.
pub const OTEL_SPAN_LINK_COUNT_LIMIT: &str = "OTEL_SPAN_LINK_COUNT_LIMIT";
/// `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`.
pub const OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS: &str = "OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS";
/// `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`.
pub const OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`.
pub const OTEL_LINK_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_SDK_DISABLED`.
pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_TRACES_EXPORTER`.
pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_HEADERS`.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`.
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// `OTEL_EXPORTER_OTLP_TIMEOUT`.
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`.
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_COMPRESSION`.
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`.
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
/// `OTEL_BSP_SCHEDULE_DELAY`.
pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// `OTEL_BSP_EXPORT_TIMEOUT`.
pub const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
/// `OTEL_BSP_MAX_QUEUE_SIZE`.
pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";

/// The resource attribute naming the service.
const SERVICE_NAME_KEY: &str = "service.name";

/// Settings read from the OpenTelemetry environment variables. A field is `None` (or empty)
/// when its variable is unset, empty or invalid.
///
/// Its `Debug` output shows header names but not their values, and endpoints without their
/// user and password: see [`OtlpEnv`].
#[derive(Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct EnvConfig {
    /// `OTEL_SERVICE_NAME`, else the `service.name` of `OTEL_RESOURCE_ATTRIBUTES`.
    pub service_name: Option<String>,
    /// Every attribute of `OTEL_RESOURCE_ATTRIBUTES`, in order, values percent-decoded.
    pub resource_attributes: Vec<KeyValue>,
    /// `OTEL_TRACES_SAMPLER` with its argument.
    pub sampler: Option<SamplerConfig>,
    /// `OTEL_PROPAGATORS`, deduplicated, in order, every name as given (also those that
    /// [`propagator`](Self::propagator) leaves out). The recorder does not act on it: the
    /// layers take [`propagator`](Self::propagator).
    pub propagators: Option<Vec<PropagatorName>>,
    /// The span limits set by `OTEL_SPAN_*_LIMIT` and `OTEL_ATTRIBUTE_*_LIMIT`; a limit
    /// left unset is `None`.
    pub limits: LimitsConfig,
    /// `OTEL_SDK_DISABLED=true`: export nothing (see [`otlp`](crate::otlp) where enabled).
    pub sdk_disabled: bool,
    /// `OTEL_TRACES_EXPORTER`.
    pub traces_exporter: Option<TracesExporter>,
    /// The `OTEL_EXPORTER_OTLP_*` settings.
    pub otlp: OtlpEnv,
    /// The `OTEL_BSP_*` settings of the export batching.
    pub batch: BatchConfig,
    /// `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`: the HTTP methods the layers and metrics
    /// record by name. The recorder ([`RecorderBuilder::with_env_config`]) installs them
    /// when it is built.
    ///
    /// [`RecorderBuilder::with_env_config`]: crate::record::RecorderBuilder::with_env_config
    pub known_http_methods: Option<KnownMethods>,
    /// What was wrong with the variables, one entry per problem.
    pub warnings: Vec<EnvWarning>,
}

/// Where finished spans go, as `OTEL_TRACES_EXPORTER` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TracesExporter {
    /// `otlp` (the default): to an OTLP receiver.
    Otlp,
    /// `console`: trace trees on stderr, as [`dev::init`](crate::dev::init) prints them.
    Console,
    /// `none`: nowhere; the recorder still gives ids to log lines and propagates context.
    None,
}

/// The transport of the OTLP exporter (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// `grpc`.
    Grpc,
    /// `http/protobuf` (the specification's default).
    HttpProtobuf,
    /// `http/json`.
    HttpJson,
}

/// The `OTEL_EXPORTER_OTLP_*` variables; each `TRACES_` variant wins over the generic one.
///
/// Its `Debug` output, which may reach logs, hides what may be credentials: header values
/// are shown as `"<redacted>"`, and the user information of an endpoint URL
/// (`https://user:password@host`) as `https://<redacted>@host`.
#[derive(Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct OtlpEnv {
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, used as is.
    pub traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the base URL (`/v1/traces` is added for HTTP).
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`.
    pub protocol: Option<OtlpProtocol>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, values percent-decoded; malformed entries are
    /// left out with a warning that does not show them (they often hold credentials).
    pub headers: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`, in milliseconds.
    pub timeout: Option<Duration>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION`: `Some(true)` for `gzip`, `Some(false)` for
    /// `none`.
    pub gzip: Option<bool>,
}

impl fmt::Debug for EnvConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvConfig")
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("sampler", &self.sampler)
            .field("propagators", &self.propagators)
            .field("limits", &self.limits)
            .field("sdk_disabled", &self.sdk_disabled)
            .field("traces_exporter", &self.traces_exporter)
            // Redacted by `OtlpEnv`'s own `Debug`.
            .field("otlp", &self.otlp)
            .field("batch", &self.batch)
            .field("known_http_methods", &self.known_http_methods)
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl fmt::Debug for OtlpEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Header names, each with `"<redacted>"` for its value.
        struct Headers<'a>(&'a [(String, String)]);
        impl fmt::Debug for Headers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|(name, _)| (name, REDACTED)))
                    .finish()
            }
        }
        fn endpoint(url: &Option<String>) -> Option<std::borrow::Cow<'_, str>> {
            url.as_deref().map(redact_userinfo)
        }
        f.debug_struct("OtlpEnv")
            .field("traces_endpoint", &endpoint(&self.traces_endpoint))
            .field("endpoint", &endpoint(&self.endpoint))
            .field("protocol", &self.protocol)
            .field("headers", &Headers(&self.headers))
            .field("timeout", &self.timeout)
            .field("gzip", &self.gzip)
            .finish()
    }
}

/// What stands for a value that may be a credential.
const REDACTED: &str = "<redacted>";

/// `text` with the user information of every URL in it (`scheme://user:password@host`)
/// replaced by `<redacted>`; for `Debug` output and error messages.
pub(crate) fn redact_userinfo(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the path, query, fragment, or anything a URL cannot hold.
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '\'' | '"' | '`' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(userinfo) => {
                out.push_str(REDACTED);
                out.push_str(&tail[userinfo..end]);
            }
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// The `OTEL_BSP_*` variables, for the export batching of
/// [`OtelReporter`](crate::report::OtelReporter) and the recorder's queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchConfig {
    /// `OTEL_BSP_SCHEDULE_DELAY` (ms): the longest a span waits for its export.
    pub schedule_delay: Option<Duration>,
    /// `OTEL_BSP_EXPORT_TIMEOUT` (ms): the longest one export may take.
    pub export_timeout: Option<Duration>,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`: the recorder's queue capacity.
    pub max_queue_size: Option<usize>,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: the most spans in one export.
    pub max_export_batch_size: Option<usize>,
}

/// Span limits read from the environment; `None` where the variable is unset or invalid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`.
    pub attribute_value_length: Option<usize>,
    /// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, else `OTEL_ATTRIBUTE_COUNT_LIMIT`.
    pub attribute_count: Option<u32>,
    /// `OTEL_SPAN_EVENT_COUNT_LIMIT`.
    pub event_count: Option<u32>,
    /// `OTEL_SPAN_LINK_COUNT_LIMIT`.
    pub link_count: Option<u32>,
    /// `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`, else `OTEL_ATTRIBUTE_COUNT_LIMIT`.
    pub event_attribute_count: Option<u32>,
    /// `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`, else `OTEL_ATTRIBUTE_COUNT_LIMIT`.
    pub link_attribute_count: Option<u32>,
}

/// A sampler named by `OTEL_TRACES_SAMPLER`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerConfig {
    /// `always_on`.
    AlwaysOn,
    /// `always_off`.
    AlwaysOff,
    /// `traceidratio`, with its ratio.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default).
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`, with its ratio.
    ParentBasedTraceIdRatio(f64),
}

impl SamplerConfig {
    /// The sampler this names.
    pub fn to_sampler(&self) -> Box<dyn Sampler> {
        match *self {
            SamplerConfig::AlwaysOn => Box::new(AlwaysOn),
            SamplerConfig::AlwaysOff => Box::new(AlwaysOff),
            SamplerConfig::TraceIdRatio(ratio) => Box::new(TraceIdRatio::new(ratio)),
            SamplerConfig::ParentBasedAlwaysOn => Box::new(ParentBased::new(AlwaysOn)),
            SamplerConfig::ParentBasedAlwaysOff => Box::new(ParentBased::new(AlwaysOff)),
            SamplerConfig::ParentBasedTraceIdRatio(ratio) => {
                Box::new(ParentBased::new(TraceIdRatio::new(ratio)))
            }
        }
    }
}

/// A propagator named by `OTEL_PROPAGATORS`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PropagatorName {
    /// `tracecontext`: W3C Trace Context.
    TraceContext,
    /// `baggage`: W3C Baggage.
    Baggage,
    /// `b3`: B3 single header.
    B3,
    /// `b3multi`: B3 multiple headers.
    B3Multi,
    /// `jaeger`.
    Jaeger,
    /// `xray`: AWS X-Ray.
    XRay,
    /// `ottrace`: OpenTracing.
    OtTrace,
    /// `none`: no propagation.
    None,
    /// Any other name, lower-cased, for a propagator registered elsewhere.
    Other(String),
}

impl PropagatorName {
    /// The name as `OTEL_PROPAGATORS` spells it (lower case).
    pub fn as_str(&self) -> &str {
        match self {
            PropagatorName::TraceContext => "tracecontext",
            PropagatorName::Baggage => "baggage",
            PropagatorName::B3 => "b3",
            PropagatorName::B3Multi => "b3multi",
            PropagatorName::Jaeger => "jaeger",
            PropagatorName::XRay => "xray",
            PropagatorName::OtTrace => "ottrace",
            PropagatorName::None => "none",
            PropagatorName::Other(name) => name,
        }
    }

    fn parse(name: &str) -> Self {
        match name {
            "tracecontext" => PropagatorName::TraceContext,
            "baggage" => PropagatorName::Baggage,
            "b3" => PropagatorName::B3,
            "b3multi" => PropagatorName::B3Multi,
            "jaeger" => PropagatorName::Jaeger,
            "xray" => PropagatorName::XRay,
            "ottrace" => PropagatorName::OtTrace,
            "none" => PropagatorName::None,
            other => PropagatorName::Other(other.to_owned()),
        }
    }
}

/// Why a propagator name cannot be used in this build, if it cannot.
pub(crate) fn unavailable(name: &PropagatorName) -> Option<EnvWarning> {
    let feature = match name {
        PropagatorName::TraceContext | PropagatorName::Baggage | PropagatorName::None => {
            return None
        }
        PropagatorName::B3 | PropagatorName::B3Multi if cfg!(feature = "b3") => return None,
        PropagatorName::Jaeger if cfg!(feature = "jaeger") => return None,
        PropagatorName::B3 | PropagatorName::B3Multi => Some("b3"),
        PropagatorName::Jaeger => Some("jaeger"),
        PropagatorName::XRay | PropagatorName::OtTrace => None,
        PropagatorName::Other(name) => {
            return Some(EnvWarning::UnknownPropagator { name: name.clone() })
        }
    };
    Some(EnvWarning::UnavailablePropagator {
        name: name.as_str().to_owned(),
        feature,
    })
}

/// Something wrong with an environment variable; the setting kept its default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvWarning {
    /// A variable is set but is not valid Unicode.
    NotUnicode {
        /// The variable.
        variable: &'static str,
    },
    /// `OTEL_TRACES_SAMPLER` names no known sampler.
    UnknownSampler {
        /// The value, as given.
        value: String,
    },
    /// `OTEL_TRACES_SAMPLER` names a sampler tracewire does not implement (`jaeger_remote`,
    /// `parentbased_jaeger_remote`, `xray`).
    UnsupportedSampler {
        /// The value, as given.
        value: String,
    },
    /// `OTEL_TRACES_SAMPLER_ARG` is not a number in `0.0..=1.0`; the ratio is `1.0`.
    InvalidSamplerArg {
        /// The value, as given.
        value: String,
    },
    /// An entry of `OTEL_RESOURCE_ATTRIBUTES` is not `key=value` with a non-empty key and a
    /// percent-encoded UTF-8 value; the whole variable is ignored, as the specification asks.
    InvalidResourceAttribute {
        /// The entry at fault.
        entry: String,
    },
    /// A limit variable (`OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, …) is not a whole number of at
    /// most `u32::MAX`; the limit keeps its default.
    InvalidLimit {
        /// The variable.
        variable: &'static str,
        /// The value, as given.
        value: String,
    },
    /// `OTEL_PROPAGATORS` names no known propagator; the name is left out.
    UnknownPropagator {
        /// The name, lower-cased.
        name: String,
    },
    /// `OTEL_PROPAGATORS` names a propagator this build lacks: `b3`, `b3multi` or `jaeger`
    /// without their cargo feature, or `xray` and `ottrace`, which tracewire does not
    /// implement; the name is left out.
    UnavailablePropagator {
        /// The name.
        name: String,
        /// The cargo feature that provides it, if one does.
        feature: Option<&'static str>,
    },
    /// An OTLP endpoint variable names an `https://` URL, and this build lacks the cargo
    /// feature `otlp-tls`: what the endpoint was for (`signal`: `"spans"` or `"metrics"`) is
    /// not exported, rather than sent in clear text. Spans are dropped and counted as failed
    /// exports.
    TlsUnavailable {
        /// The variable.
        variable: &'static str,
        /// `"spans"` or `"metrics"`.
        signal: &'static str,
    },
    /// A variable (`OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_BSP_SCHEDULE_DELAY`,
    /// `OTEL_SDK_DISABLED`, …) has a value that means nothing to it; the setting keeps its
    /// default.
    InvalidValue {
        /// The variable.
        variable: &'static str,
        /// The value, as given.
        value: String,
    },
    /// An endpoint or headers variable is malformed; the malformed part is ignored. The value
    /// is not kept: it may hold credentials.
    Malformed {
        /// The variable.
        variable: &'static str,
    },
    /// `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` is not a list of at most
    /// [`MAX_KNOWN_METHODS`](crate::config::MAX_KNOWN_METHODS) methods, or came after a
    /// request fixed the list; the list in force stays.
    KnownMethods(KnownMethodsError),
}

impl fmt::Display for EnvWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvWarning::NotUnicode { variable } => {
                write!(f, "{variable} is not valid Unicode; ignored")
            }
            EnvWarning::UnknownSampler { value } => write!(
                f,
                "{OTEL_TRACES_SAMPLER}={value:?} names no known sampler; keeping the default"
            ),
            EnvWarning::UnsupportedSampler { value } => write!(
                f,
                "{OTEL_TRACES_SAMPLER}={value:?} is not supported; keeping the default"
            ),
            EnvWarning::InvalidSamplerArg { value } => write!(
                f,
                "{OTEL_TRACES_SAMPLER_ARG}={value:?} is not a ratio in 0.0..=1.0; using 1.0"
            ),
            EnvWarning::InvalidLimit { variable, value } => write!(
                f,
                "{variable}={value:?} is not a whole number; keeping the default limit"
            ),
            EnvWarning::InvalidResourceAttribute { entry } => write!(
                f,
                "{OTEL_RESOURCE_ATTRIBUTES} entry {entry:?} is not key=value; variable ignored"
            ),
            EnvWarning::UnknownPropagator { name } => write!(
                f,
                "{OTEL_PROPAGATORS} names {name:?}, which is no known propagator; left out"
            ),
            EnvWarning::UnavailablePropagator {
                name,
                feature: Some(feature),
            } => write!(
                f,
                "{OTEL_PROPAGATORS} names {name:?}, which needs tracewire's cargo feature \
                 {feature:?}; left out"
            ),
            EnvWarning::UnavailablePropagator {
                name,
                feature: None,
            } => write!(
                f,
                "{OTEL_PROPAGATORS} names {name:?}, which tracewire does not implement; left out"
            ),
            EnvWarning::TlsUnavailable { variable, signal } => {
                write!(
                    f,
                    "{variable} is an https:// URL, which needs tracewire's cargo feature \
                     \"otlp-tls\"; "
                )?;
                if *signal == "spans" {
                    f.write_str(
                        "spans are dropped (counted as failed exports), never sent in clear text",
                    )
                } else {
                    write!(f, "{signal} are not exported")
                }
            }
            EnvWarning::InvalidValue { variable, value } => {
                write!(f, "{variable}={value:?} is not valid; keeping the default")
            }
            EnvWarning::KnownMethods(error) => write!(
                f,
                "{OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS}: {error}; the known methods stay"
            ),
            EnvWarning::Malformed { variable } => write!(
                f,
                "{variable} is malformed (its value is not shown: it may hold credentials); \
                 the malformed part is ignored"
            ),
        }
    }
}

impl std::error::Error for EnvWarning {}

impl EnvConfig {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        EnvConfig::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads variables through `lookup`, which returns a variable's value or `None` when it
    /// is unset.
    pub fn from_lookup<F, V>(lookup: F) -> Self
    where
        F: Fn(&str) -> Option<V>,
        V: AsRef<OsStr>,
    {
        let mut config = EnvConfig::default();
        let mut unicode_warnings = Vec::new();
        let mut get = |name: &'static str| -> Option<String> {
            let value = lookup(name)?;
            match value.as_ref().to_str() {
                Some(s) => {
                    let s = s.trim();
                    (!s.is_empty()).then(|| s.to_owned())
                }
                None => {
                    unicode_warnings.push(EnvWarning::NotUnicode { variable: name });
                    None
                }
            }
        };
        let service = get(OTEL_SERVICE_NAME);
        let resource = get(OTEL_RESOURCE_ATTRIBUTES);
        let sampler = get(OTEL_TRACES_SAMPLER);
        let sampler_arg = get(OTEL_TRACES_SAMPLER_ARG);
        let propagators = get(OTEL_PROPAGATORS);
        let known_methods = get(OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS);
        let mut limit_warnings = Vec::new();
        // The first valid one of `names`: an invalid value counts as unset, so the general
        // variable after the span's own still applies.
        let mut limit = |names: &[&'static str]| -> Option<u32> {
            names.iter().find_map(|&variable| {
                let value = get(variable)?;
                let parsed = value.parse::<u32>().ok();
                let warning = EnvWarning::InvalidLimit { variable, value };
                // The general variables are read for several limits: one warning each.
                if parsed.is_none() && !limit_warnings.contains(&warning) {
                    limit_warnings.push(warning);
                }
                parsed
            })
        };
        let limits = LimitsConfig {
            attribute_value_length: limit(&[
                OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
                OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
            ])
            .map(|n| n as usize),
            attribute_count: limit(&[OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_ATTRIBUTE_COUNT_LIMIT]),
            event_count: limit(&[OTEL_SPAN_EVENT_COUNT_LIMIT]),
            link_count: limit(&[OTEL_SPAN_LINK_COUNT_LIMIT]),
            event_attribute_count: limit(&[
                OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT,
                OTEL_ATTRIBUTE_COUNT_LIMIT,
            ]),
            link_attribute_count: limit(&[
                OTEL_LINK_ATTRIBUTE_COUNT_LIMIT,
                OTEL_ATTRIBUTE_COUNT_LIMIT,
            ]),
        };
        config.limits = limits;
        config.warnings.append(&mut limit_warnings);

        if let Some(resource) = resource {
            match parse_resource_attributes(&resource) {
                Ok(attributes) => config.resource_attributes = attributes,
                Err(warning) => config.warnings.push(warning),
            }
        }
        config.service_name = service.or_else(|| {
            config
                .resource_attributes
                .iter()
                .rev()
                .find(|kv| kv.key.as_str() == SERVICE_NAME_KEY)
                .map(|kv| kv.value.as_str().into_owned())
                .filter(|name| !name.is_empty())
        });
        if let Some(sampler) = sampler {
            config.sampler = parse_sampler(&sampler, sampler_arg.as_deref(), &mut config.warnings);
        }
        config.propagators = propagators.map(|list| parse_propagators(&list));
        if let Some(list) = known_methods {
            match KnownMethods::parse(&list) {
                Ok(methods) => config.known_http_methods = Some(methods),
                Err(error) => config.warnings.push(EnvWarning::KnownMethods(error)),
            }
        }
        read_exporter(&mut config, &mut get);
        for name in config.propagators.iter().flatten() {
            config.warnings.extend(unavailable(name));
        }
        config.warnings.splice(0..0, unicode_warnings);
        config
    }

    /// Logs each warning once through `tracing`, at WARN level.
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!(target: "tracewire::env", %warning, "ignoring an OpenTelemetry environment variable");
        }
    }
}

/// Reads `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*`.
fn read_exporter(config: &mut EnvConfig, get: &mut dyn FnMut(&'static str) -> Option<String>) {
    let mut warnings = Vec::new();
    let invalid = |warnings: &mut Vec<EnvWarning>, variable: &'static str, value: &str| {
        warnings.push(EnvWarning::InvalidValue {
            variable,
            value: value.to_owned(),
        })
    };
    // The signal's own variable wins over the generic one.
    let mut pair = |traces: &'static str, generic: &'static str| {
        get(traces)
            .map(|v| (traces, v))
            .or_else(|| get(generic).map(|v| (generic, v)))
    };
    if let Some((variable, value)) = pair(OTEL_SDK_DISABLED, OTEL_SDK_DISABLED) {
        match value.to_ascii_lowercase().as_str() {
            "true" => config.sdk_disabled = true,
            "false" => {}
            _ => invalid(&mut warnings, variable, &value),
        }
    }
    if let Some((variable, value)) = pair(OTEL_TRACES_EXPORTER, OTEL_TRACES_EXPORTER) {
        config.traces_exporter = match value.to_ascii_lowercase().as_str() {
            "otlp" => Some(TracesExporter::Otlp),
            "console" | "logging" => Some(TracesExporter::Console),
            "none" => Some(TracesExporter::None),
            _ => {
                invalid(&mut warnings, variable, &value);
                None
            }
        };
    }
    let otlp = &mut config.otlp;
    for variable in [
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
        OTEL_EXPORTER_OTLP_ENDPOINT,
    ] {
        let Some((_, value)) = pair(variable, variable) else {
            continue;
        };
        if !is_endpoint(&value) {
            warnings.push(EnvWarning::Malformed { variable });
        } else if variable == OTEL_EXPORTER_OTLP_TRACES_ENDPOINT {
            otlp.traces_endpoint = Some(value);
        } else {
            otlp.endpoint = Some(value);
        }
    }
    if let Some((variable, value)) = pair(
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        OTEL_EXPORTER_OTLP_PROTOCOL,
    ) {
        otlp.protocol = match value.to_ascii_lowercase().as_str() {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" => Some(OtlpProtocol::HttpProtobuf),
            "http/json" => Some(OtlpProtocol::HttpJson),
            _ => {
                invalid(&mut warnings, variable, &value);
                None
            }
        };
    }
    if let Some((variable, value)) = pair(
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        OTEL_EXPORTER_OTLP_TIMEOUT,
    ) {
        match value.parse::<u64>() {
            Ok(ms) => otlp.timeout = Some(Duration::from_millis(ms)),
            Err(_) => invalid(&mut warnings, variable, &value),
        }
    }
    if let Some((variable, value)) = pair(
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
        OTEL_EXPORTER_OTLP_COMPRESSION,
    ) {
        match value.to_ascii_lowercase().as_str() {
            "gzip" => otlp.gzip = Some(true),
            "none" => otlp.gzip = Some(false),
            _ => invalid(&mut warnings, variable, &value),
        }
    }
    if let Some((variable, value)) = pair(
        OTEL_EXPORTER_OTLP_TRACES_HEADERS,
        OTEL_EXPORTER_OTLP_HEADERS,
    ) {
        let (headers, malformed) = parse_headers(&value);
        otlp.headers = headers;
        if malformed {
            warnings.push(EnvWarning::Malformed { variable });
        }
    }
    let batch = &mut config.batch;
    for variable in [OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_EXPORT_TIMEOUT] {
        let Some((_, value)) = pair(variable, variable) else {
            continue;
        };
        let Ok(ms) = value.parse::<u64>() else {
            invalid(&mut warnings, variable, &value);
            continue;
        };
        let delay = Some(Duration::from_millis(ms));
        if variable == OTEL_BSP_SCHEDULE_DELAY {
            batch.schedule_delay = delay;
        } else {
            batch.export_timeout = delay;
        }
    }
    for variable in [OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE] {
        let Some((_, value)) = pair(variable, variable) else {
            continue;
        };
        let Some(n) = value.parse::<usize>().ok().filter(|n| *n > 0) else {
            invalid(&mut warnings, variable, &value);
            continue;
        };
        if variable == OTEL_BSP_MAX_QUEUE_SIZE {
            batch.max_queue_size = Some(n);
        } else {
            batch.max_export_batch_size = Some(n);
        }
    }
    config.warnings.append(&mut warnings);
}

/// An `http` or `https` URL with a host.
fn is_endpoint(value: &str) -> bool {
    value.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some()
    })
}

/// `key=value,…` with percent-encoded values, as the OTLP exporter specification reads
/// headers; entries that are not a valid header name and value are left out (`true`).
fn parse_headers(value: &str) -> (Vec<(String, String)>, bool) {
    let mut headers = Vec::new();
    let mut malformed = false;
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('=').and_then(|(key, raw)| {
            let key = key.trim();
            let value = percent_decode_str(raw.trim()).decode_utf8().ok()?;
            http::HeaderName::from_bytes(key.as_bytes()).ok()?;
            http::HeaderValue::from_str(&value).ok()?;
            Some((key.to_ascii_lowercase(), value.into_owned()))
        });
        match parsed {
            Some(header) => headers.push(header),
            None => malformed = true,
        }
    }
    (headers, malformed)
}

fn parse_sampler(
    name: &str,
    arg: Option<&str>,
    warnings: &mut Vec<EnvWarning>,
) -> Option<SamplerConfig> {
    let mut ratio = || match arg {
        None => 1.0,
        Some(arg) => match arg.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => r,
            _ => {
                warnings.push(EnvWarning::InvalidSamplerArg {
                    value: arg.to_owned(),
                });
                1.0
            }
        },
    };
    let config = match name.to_ascii_lowercase().as_str() {
        "always_on" => SamplerConfig::AlwaysOn,
        "always_off" => SamplerConfig::AlwaysOff,
        "traceidratio" => SamplerConfig::TraceIdRatio(ratio()),
        "parentbased_always_on" => SamplerConfig::ParentBasedAlwaysOn,
        "parentbased_always_off" => SamplerConfig::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => SamplerConfig::ParentBasedTraceIdRatio(ratio()),
        "jaeger_remote" | "parentbased_jaeger_remote" | "xray" => {
            warnings.push(EnvWarning::UnsupportedSampler {
                value: name.to_owned(),
            });
            return None;
        }
        _ => {
            warnings.push(EnvWarning::UnknownSampler {
                value: name.to_owned(),
            });
            return None;
        }
    };
    Some(config)
}

fn parse_propagators(list: &str) -> Vec<PropagatorName> {
    let mut out: Vec<PropagatorName> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = PropagatorName::parse(&name.to_ascii_lowercase());
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Parses `key1=value1,key2=value2` with percent-encoded values. Any bad entry discards the
/// whole value.
pub(crate) fn parse_resource_attributes(value: &str) -> Result<Vec<KeyValue>, EnvWarning> {
    let mut attributes = Vec::new();
    for entry in value.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let invalid = || EnvWarning::InvalidResourceAttribute {
            entry: entry.trim().to_owned(),
        };
        let (key, raw) = entry.split_once('=').ok_or_else(invalid)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(invalid());
        }
        let decoded = percent_decode_str(raw.trim())
            .decode_utf8()
            .map_err(|_| invalid())?;
        attributes.push(KeyValue::new(key.to_owned(), decoded.into_owned()));
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn read(vars: &[(&str, &str)]) -> EnvConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EnvConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn nothing_set_is_all_defaults() {
        assert_eq!(read(&[]), EnvConfig::default());
        assert_eq!(
            read(&[(OTEL_TRACES_SAMPLER, "  "), (OTEL_SERVICE_NAME, "")]),
            EnvConfig::default()
        );
    }

    #[test]
    fn event_and_link_attribute_limits_fall_back_to_the_general_one() {
        let config = read(&[
            (OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT, "3"),
            (OTEL_ATTRIBUTE_COUNT_LIMIT, "7"),
        ]);
        assert_eq!(config.limits.event_attribute_count, Some(3));
        assert_eq!(config.limits.link_attribute_count, Some(7));
        assert_eq!(config.limits.attribute_count, Some(7));
        let config = read(&[(OTEL_ATTRIBUTE_COUNT_LIMIT, "many")]);
        assert_eq!(config.limits.link_attribute_count, None);
        assert_eq!(
            config.warnings,
            [EnvWarning::InvalidLimit {
                variable: OTEL_ATTRIBUTE_COUNT_LIMIT,
                value: "many".into()
            }],
            "one warning, though three limits read it"
        );
    }

    #[test]
    fn known_http_methods_replace_the_standard_ones_or_warn() {
        let config = read(&[(OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS, "GET, PROPFIND")]);
        let methods = config.known_http_methods.expect("methods");
        let names: Vec<&str> = methods.methods().iter().map(|m| m.as_str()).collect();
        assert_eq!(names, ["GET", "PROPFIND"]);
        assert!(config.warnings.is_empty());

        let config = read(&[(OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS, "GET,NOT A METHOD")]);
        assert_eq!(config.known_http_methods, None);
        assert_eq!(
            config.warnings,
            [EnvWarning::KnownMethods(KnownMethodsError::Invalid(
                "NOT A METHOD".into()
            ))]
        );
        assert_eq!(
            read(&[(OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS, ",")]).warnings,
            [EnvWarning::KnownMethods(KnownMethodsError::Empty)]
        );
    }

    #[test]
    fn samplers() {
        use SamplerConfig::*;
        /// Sampler, argument, expected sampler, expected warnings.
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<SamplerConfig>,
            Vec<EnvWarning>,
        );
        let table: &[Case] = &[
            ("always_on", None, Some(AlwaysOn), vec![]),
            ("ALWAYS_OFF", None, Some(AlwaysOff), vec![]),
            (" always_off ", Some("0.3"), Some(AlwaysOff), vec![]),
            ("traceidratio", None, Some(TraceIdRatio(1.0)), vec![]),
            (
                "traceidratio",
                Some("0.25"),
                Some(TraceIdRatio(0.25)),
                vec![],
            ),
            ("traceidratio", Some(" 0 "), Some(TraceIdRatio(0.0)), vec![]),
            ("traceidratio", Some("1"), Some(TraceIdRatio(1.0)), vec![]),
            (
                "traceidratio",
                Some("-0.1"),
                Some(TraceIdRatio(1.0)),
                vec![EnvWarning::InvalidSamplerArg {
                    value: "-0.1".into(),
                }],
            ),
            (
                "traceidratio",
                Some("NaN"),
                Some(TraceIdRatio(1.0)),
                vec![EnvWarning::InvalidSamplerArg {
                    value: "NaN".into(),
                }],
            ),
            (
                "traceidratio",
                Some("half"),
                Some(TraceIdRatio(1.0)),
                vec![EnvWarning::InvalidSamplerArg {
                    value: "half".into(),
                }],
            ),
            (
                "parentbased_always_on",
                None,
                Some(ParentBasedAlwaysOn),
                vec![],
            ),
            (
                "parentbased_always_off",
                None,
                Some(ParentBasedAlwaysOff),
                vec![],
            ),
            (
                "ParentBased_TraceIdRatio",
                Some("0.5"),
                Some(ParentBasedTraceIdRatio(0.5)),
                vec![],
            ),
            (
                "parentbased_traceidratio",
                Some("1.5"),
                Some(ParentBasedTraceIdRatio(1.0)),
                vec![EnvWarning::InvalidSamplerArg {
                    value: "1.5".into(),
                }],
            ),
            (
                "sometimes",
                Some("0.5"),
                None,
                vec![EnvWarning::UnknownSampler {
                    value: "sometimes".into(),
                }],
            ),
            (
                "jaeger_remote",
                None,
                None,
                vec![EnvWarning::UnsupportedSampler {
                    value: "jaeger_remote".into(),
                }],
            ),
            (
                "xray",
                None,
                None,
                vec![EnvWarning::UnsupportedSampler {
                    value: "xray".into(),
                }],
            ),
        ];
        for (name, arg, sampler, warnings) in table {
            let mut vars = vec![(OTEL_TRACES_SAMPLER, *name)];
            if let Some(arg) = arg {
                vars.push((OTEL_TRACES_SAMPLER_ARG, *arg));
            }
            let env = read(&vars);
            assert_eq!(&env.sampler, sampler, "{name} {arg:?}");
            assert_eq!(&env.warnings, warnings, "{name} {arg:?}");
        }
    }

    #[test]
    fn sampler_arg_alone_is_ignored() {
        let env = read(&[(OTEL_TRACES_SAMPLER_ARG, "0.1")]);
        assert_eq!(env.sampler, None);
        assert!(env.warnings.is_empty());
    }

    #[test]
    fn service_name_precedence() {
        /// Variables, expected service name.
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let table: &[Case] = &[
            (&[(OTEL_SERVICE_NAME, "a")], Some("a")),
            (&[(OTEL_RESOURCE_ATTRIBUTES, "service.name=b")], Some("b")),
            (
                &[
                    (OTEL_SERVICE_NAME, "a"),
                    (OTEL_RESOURCE_ATTRIBUTES, "service.name=b"),
                ],
                Some("a"),
            ),
            (
                &[
                    (OTEL_SERVICE_NAME, " "),
                    (OTEL_RESOURCE_ATTRIBUTES, "service.name=b"),
                ],
                Some("b"),
            ),
            (&[(OTEL_RESOURCE_ATTRIBUTES, "service.name=")], None),
            (
                &[(OTEL_RESOURCE_ATTRIBUTES, "service.name=x,service.name=y")],
                Some("y"),
            ),
            (
                &[(OTEL_RESOURCE_ATTRIBUTES, "service.name=my%20svc")],
                Some("my svc"),
            ),
            (&[(OTEL_RESOURCE_ATTRIBUTES, "team=pay")], None),
        ];
        for (vars, want) in table {
            assert_eq!(read(vars).service_name.as_deref(), *want, "{vars:?}");
        }
    }

    #[test]
    fn resource_attributes() {
        let env = read(&[(
            OTEL_RESOURCE_ATTRIBUTES,
            " deployment.environment = prod , team=pay%2Cments,,empty=,k=a=b ",
        )]);
        assert_eq!(
            env.resource_attributes,
            vec![
                KeyValue::new("deployment.environment", "prod"),
                KeyValue::new("team", "pay,ments"),
                KeyValue::new("empty", ""),
                KeyValue::new("k", "a=b"),
            ]
        );
        assert!(env.warnings.is_empty());

        for (bad, entry) in [
            ("a=1,novalue", "novalue"),
            ("a=1, =2", "=2"),
            ("a=%FF%FE", "a=%FF%FE"),
        ] {
            let env = read(&[(OTEL_RESOURCE_ATTRIBUTES, bad)]);
            assert!(env.resource_attributes.is_empty(), "{bad}");
            assert_eq!(
                env.warnings,
                vec![EnvWarning::InvalidResourceAttribute {
                    entry: entry.into()
                }],
                "{bad}"
            );
        }
    }

    #[test]
    fn propagators() {
        use PropagatorName::*;
        let table: &[(&str, Vec<PropagatorName>)] = &[
            ("tracecontext,baggage", vec![TraceContext, Baggage]),
            (
                " B3 , b3multi,jaeger,xray,ottrace,none ",
                vec![B3, B3Multi, Jaeger, XRay, OtTrace, None],
            ),
            ("baggage,tracecontext,baggage", vec![Baggage, TraceContext]),
            ("tracecontext,,", vec![TraceContext]),
            ("Custom", vec![Other("custom".into())]),
        ];
        for (value, want) in table {
            let env = read(&[(OTEL_PROPAGATORS, value)]);
            assert_eq!(env.propagators.as_ref(), Some(want), "{value}");
        }
        assert_eq!(read(&[]).propagators, Option::None);
    }

    #[cfg(unix)]
    #[test]
    fn non_unicode_values_are_warned_about() {
        use std::os::unix::ffi::OsStringExt;
        let env = EnvConfig::from_lookup(|name| {
            (name == OTEL_SERVICE_NAME).then(|| OsString::from_vec(vec![0x66, 0xff]))
        });
        assert_eq!(env.service_name, None);
        assert_eq!(
            env.warnings,
            vec![EnvWarning::NotUnicode {
                variable: OTEL_SERVICE_NAME
            }]
        );
    }

    #[test]
    fn exporter_variables() {
        let env = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s3cr%20t, =x,bad header=1",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_TRACES_EXPORTER", "Console"),
            ("OTEL_SDK_DISABLED", "maybe"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"),
        ]);
        assert_eq!(env.otlp.endpoint.as_deref(), Some("http://collector:4318"));
        assert_eq!(env.otlp.traces_endpoint, None);
        assert_eq!(env.otlp.protocol, Some(OtlpProtocol::Grpc), "TRACES_ wins");
        assert_eq!(
            env.otlp.headers,
            [("api-key".to_owned(), "s3cr t".to_owned())]
        );
        assert_eq!(env.otlp.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(env.otlp.gzip, None);
        assert_eq!(env.traces_exporter, Some(TracesExporter::Console));
        assert!(!env.sdk_disabled);
        assert_eq!(env.batch.schedule_delay, Some(Duration::from_millis(200)));
        assert_eq!(env.batch.max_queue_size, None);
        assert_eq!(env.batch.max_export_batch_size, Some(64));
        let shown: Vec<String> = env.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(env.warnings.len(), 5, "{shown:#?}");
        assert!(env.warnings.contains(&EnvWarning::Malformed {
            variable: OTEL_EXPORTER_OTLP_HEADERS
        }));
        assert!(env.warnings.contains(&EnvWarning::Malformed {
            variable: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
        }));
        assert!(
            shown.iter().all(|w| !w.contains("s3cr")),
            "no header value is shown: {shown:#?}"
        );
    }

    #[test]
    fn warnings_display() {
        let w = EnvWarning::UnknownSampler { value: "x".into() };
        assert!(w.to_string().contains("OTEL_TRACES_SAMPLER"));
    }
}
