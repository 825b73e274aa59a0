//! One call for development: trace trees on the console and logs filtered by `RUST_LOG`.
//!
//! ```no_run
//! let _guard = tracewire::dev::init("checkout");
//! // ... run the service: every finished trace prints as a tree on stderr ...
//! // at the end of `main` the guard prints what is left, then the per-operation summary
//! ```
//!
//! [`init`] installs one global subscriber made of:
//! - the [recorder](crate::record) for `service_name`, reporting to a
//!   [`ConsoleReporter`] on stderr with the [summary](crate::report::console#summary) on;
//! - a `tracing_subscriber::fmt` layer writing log lines to stderr, filtered by `RUST_LOG`
//!   (default `info`); a line written inside a recorded span ends with the `trace_id` and
//!   `span_id` of that span, so the trace of a log line can be found. With
//!   `TRACEWIRE_LOG_FORMAT=json` each line is a JSON object instead, with `"trace_id"` and
//!   `"span_id"` members;
//! - a filter of the recorder's own, [`TRACEWIRE_RECORD`] (default `info`, in `RUST_LOG`'s
//!   syntax), so that `RUST_LOG=warn` quiets the logs but not the trace trees. Library
//!   internals (`hyper`, `h2`, `tower`, `tonic`, … as in
//!   [`record_internals`](crate::record::RecorderBuilder::record_internals)) are left out
//!   unless a `TRACEWIRE_RECORD` directive names one of those crates
//!   (`TRACEWIRE_RECORD=info,hyper=debug` records hyper's debug spans). The crates are
//!   matched at module boundaries, so an application target such as `hyper_client` is not
//!   taken for `hyper`.
//!
//! Both layers write to stderr, so log lines and trees keep their order. Colour follows
//! stderr and `NO_COLOR`.
//!
//! Keep the returned [`DevGuard`] alive for the life of the program: dropping it flushes the
//! reporter, prints the traces still held, then the summary.
//!
//! # Every request in the summary
//!
//! The summary counts spans, and spans are sampled and filtered. With the feature `metrics`,
//! server layers that record [request metrics](crate::metrics) count every request they
//! measure in the summary as well, sampled or not, filtered or not: give them any meter
//! provider, even OpenTelemetry's global one, which records nothing until one is installed.
//!
//! ```no_run
//! # #[cfg(feature = "metrics")] {
//! let _guard = tracewire::dev::init("checkout");
//! let layer = tracewire::ServerLayer::new()
//!     .metrics(&*opentelemetry::global::meter_provider());
//! # drop(layer);
//! # }
//! ```
//!
//! Such a request counts under its service (the layer's, else `service_name`) and the span
//! name the layer gives by default (`GET /users/{id}`, or the gRPC method), with its duration
//! and whether it failed (`error.type`); that operation's server spans are then left out of
//! the table, so that no request counts twice. The measurements and the metrics come from
//! the same place: the layer's measurement of the request, ended where its span ends.
//!
//! When the [trace viewer](crate::ui) runs ([`init_with_ui`], `TRACEWIRE_UI_ADDR`), the same
//! measurements feed its [`/metrics`](crate::ui#metrics) the same way.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Arc;

use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

use crate::log::NoSpanEvents;
use crate::record::{FlushError, RecorderGuard, RecorderHandle};
use crate::record::{InstallError, RecordLayer, Recorder};
use crate::report::{ConsoleHandle, ConsoleReporter};

/// The recorder's own filter, in `RUST_LOG`'s syntax (default `info`): which spans become
/// trace trees (or are exported, with [`otlp`](crate::otlp)), whatever `RUST_LOG` says of
/// the log lines.
pub const TRACEWIRE_RECORD: &str = "TRACEWIRE_RECORD";

/// Keeps the development setup running; on drop it flushes the console and prints the
/// summary. See the [module docs](self).
#[must_use = "dropping the guard shuts the console reporter down"]
pub struct DevGuard {
    recorder: Option<RecorderGuard>,
    console: Option<ConsoleHandle>,
}

impl DevGuard {
    /// Prints every trace held now, complete or not, waiting for the reporter thread up to
    /// the recorder's shutdown timeout. Does nothing on the guard of a failed [`init`].
    pub fn flush(&self) -> Result<(), FlushError> {
        match &self.recorder {
            Some(recorder) => recorder.flush(),
            None => Ok(()),
        }
    }

    /// The recorder's pipeline (flush, counters); `None` after a failed [`init`].
    pub fn recorder(&self) -> Option<RecorderHandle> {
        self.recorder.as_ref().map(RecorderGuard::handle)
    }

    /// The console reporter's counters and summary; `None` after a failed [`init`].
    pub fn console(&self) -> Option<ConsoleHandle> {
        self.console.clone()
    }

    /// The address the [trace viewer](crate::ui) listens on, when it runs (with the port
    /// picked, for `TRACEWIRE_UI_ADDR=127.0.0.1:0`); `None` after a failed [`init`].
    #[cfg(feature = "ui")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ui")))]
    pub fn viewer_addr(&self) -> Option<std::net::SocketAddr> {
        self.recorder.as_ref()?;
        VIEWER.get().map(crate::ui::Viewer::addr)
    }
}

impl fmt::Debug for DevGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevGuard")
            .field("installed", &self.recorder.is_some())
            .field("console", &self.console.as_ref().map(ConsoleHandle::stats))
            .finish()
    }
}

/// Installs the development setup for `service_name`; see the [module docs](self).
///
/// When a global subscriber is already set, prints a warning to stderr and returns a guard
/// that does nothing; use [`try_init`] to handle that case.
pub fn init(service_name: impl Into<Arc<str>>) -> DevGuard {
    match try_init(service_name) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("tracewire::dev::init: {error}; the development setup is not installed");
            DevGuard {
                recorder: None,
                console: None,
            }
        }
    }
}

/// Installs the development setup for `service_name`, or fails with
/// [`InstallError::AlreadyInstalled`] when a global subscriber is already set.
pub fn try_init(service_name: impl Into<Arc<str>>) -> Result<DevGuard, InstallError> {
    install(service_name.into(), false)
}

fn install(service_name: Arc<str>, ui: bool) -> Result<DevGuard, InstallError> {
    let console = ConsoleReporter::builder().summary(true).build();
    let handle = console.handle();
    let record = std::env::var(TRACEWIRE_RECORD).ok();
    let builder = Recorder::builder()
        .service_name(service_name.clone())
        .reporter(console)
        .record_internals(asks_for_internals(record.as_deref()));
    #[cfg(feature = "ui")]
    let (builder, viewer) = with_viewer(builder, ui);
    #[cfg(not(feature = "ui"))]
    let _ = ui;
    let (recorder, guard) = builder.build();
    let ansi = ConsoleReporter::auto_color(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let (format, warning) = match crate::log::json_from_env() {
        Ok(true) => (crate::log::WithTraceIds::json(), None),
        Ok(false) => (crate::log::WithTraceIds::text(ansi), None),
        Err(warning) => (crate::log::WithTraceIds::text(ansi), Some(warning)),
    };
    let subscriber = subscriber(
        Some(recorder),
        record.as_deref(),
        std::env::var("RUST_LOG").ok().as_deref(),
        format,
    );
    // On failure the viewer, if any, is dropped here, which stops it: no page left serving
    // that nothing feeds.
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|_| InstallError::AlreadyInstalled)?;
    #[cfg(feature = "ui")]
    if let Some(viewer) = viewer {
        eprintln!("tracewire: trace viewer at {}", viewer.url());
        let _ = VIEWER.set(viewer);
    }
    if let Some(warning) = warning {
        tracing::warn!(target: "tracewire::env", %warning, "ignoring an environment variable");
    }
    // Requests the server layers measure count in the summary, and in the viewer's
    // `/metrics`, sampled or not.
    #[cfg(feature = "metrics")]
    {
        crate::metrics::add_sink(Arc::new(handle.clone()), service_name.clone());
        #[cfg(feature = "ui")]
        if let Some(viewer) = VIEWER.get() {
            viewer.count_measured_requests(service_name);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = service_name;
    Ok(DevGuard {
        recorder: Some(guard),
        console: Some(handle),
    })
}

/// The registry with the recorder under its own filter (`record`, see [`TRACEWIRE_RECORD`])
/// and a `fmt` layer on stderr filtered by `rust_log`, its lines in `format`.
pub(crate) fn subscriber(
    recorder: Option<RecordLayer>,
    record: Option<&str>,
    rust_log: Option<&str>,
    format: crate::log::WithTraceIds,
) -> impl tracing::Subscriber + Send + Sync {
    // A lone level is checked by the recorder itself, without a per-layer filter's lookups.
    let recorder = recorder.map(|recorder| match lone_level(record) {
        Some(level) => recorder.with_max_level(level),
        None => Err(recorder),
    });
    let (filtered, plain) = match recorder {
        Some(Ok(plain)) => (None, Some(plain)),
        Some(Err(recorder)) => (Some(recorder.with_filter(recorder_filter(record))), None),
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(filtered).with(plain);
    let ansi = format.ansi();
    let filter = log_filter(rust_log);
    // Directives beyond a lone level (an `EnvFilter`) may name spans (`[request]=debug`):
    // the filter then follows the spans entered, exited and closed, which `NoSpanEvents`
    // would hide from it.
    let spans_matter = lone_level(rust_log).is_none();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // JSON lines need their span fields recorded as JSON too.
    let layer = if format.is_json() {
        layer
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(format)
            .with_filter(filter)
            .boxed()
    } else {
        layer.event_format(format).with_filter(filter).boxed()
    };
    if spans_matter {
        return registry.with(layer);
    }
    registry.with(NoSpanEvents(layer).boxed())
}

// ---- The trace viewer (feature `ui`) ----

/// Like [`init`], and also serves the [trace viewer](crate::ui) on `TRACEWIRE_UI_ADDR`, or
/// `127.0.0.1:16686` when that is unset, and prints its URL once. (With the feature `ui`,
/// plain [`init`] serves it too when `TRACEWIRE_UI_ADDR` is set.) If the viewer cannot
/// start, a warning says why and the rest of the setup goes on without it.
///
/// ```no_run
/// let _guard = tracewire::dev::init_with_ui("checkout");
/// ```
#[cfg(feature = "ui")]
#[cfg_attr(docsrs, doc(cfg(feature = "ui")))]
pub fn init_with_ui(service_name: impl Into<Arc<str>>) -> DevGuard {
    match install(service_name.into(), true) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!(
                "tracewire::dev::init_with_ui: {error}; the development setup is not installed"
            );
            DevGuard {
                recorder: None,
                console: None,
            }
        }
    }
}

/// The viewer of the development setup. It lives as long as the process, as the global
/// subscriber does.
#[cfg(feature = "ui")]
static VIEWER: std::sync::OnceLock<crate::ui::Viewer> = std::sync::OnceLock::new();

/// Starts the viewer when it is asked for and adds its reporter. The viewer is kept (and its
/// URL printed) only once the setup is installed.
#[cfg(feature = "ui")]
fn with_viewer(
    builder: crate::record::RecorderBuilder,
    asked: bool,
) -> (crate::record::RecorderBuilder, Option<crate::ui::Viewer>) {
    match crate::ui::start_for_dev(asked) {
        Some(viewer) => (builder.reporter(viewer.reporter()), Some(viewer)),
        None => (builder, None),
    }
}

// ---- end of the trace viewer ----

/// The directives given, or `info` when unset or blank.
fn directives(rust_log: Option<&str>) -> &str {
    match rust_log {
        Some(directives) if !directives.trim().is_empty() => directives,
        _ => "info",
    }
}

/// The fmt layer's filter: `RUST_LOG`, default `info`. Invalid directives are skipped.
pub(crate) fn log_filter<S: tracing::Subscriber>(rust_log: Option<&str>) -> DynFilter<S> {
    filter_of(directives(rust_log))
}

/// The recorder's filter: `TRACEWIRE_RECORD`, default `info`. Internals are kept out by the
/// recorder itself (see [`asks_for_internals`]).
pub(crate) fn recorder_filter<S: tracing::Subscriber>(record: Option<&str>) -> DynFilter<S> {
    filter_of(directives(record))
}

/// The level `directives` name, when they are a lone level (`info`, `warn`…).
fn lone_level(directives_text: Option<&str>) -> Option<tracing_subscriber::filter::LevelFilter> {
    directives(directives_text).trim().parse().ok()
}

/// A per-layer filter of either kind.
pub(crate) type DynFilter<S> = Box<dyn tracing_subscriber::layer::Filter<S> + Send + Sync>;

/// The filter `directives` describe. A lone level (`info`, `warn`…), the usual case, is a
/// `LevelFilter`: one comparison per span or event, where an `EnvFilter` matches its
/// directives against each.
fn filter_of<S: tracing::Subscriber>(directives: &str) -> DynFilter<S> {
    use tracing_subscriber::filter::{FilterExt, LevelFilter};
    match directives.trim().parse::<LevelFilter>() {
        Ok(level) => FilterExt::boxed(level),
        Err(_) => FilterExt::boxed(EnvFilter::builder().parse_lossy(directives)),
    }
}

/// A `TRACEWIRE_RECORD` directive names a library the recorder leaves out by default.
pub(crate) fn asks_for_internals(rust_log: Option<&str>) -> bool {
    directives(rust_log).split(',').any(|directive| {
        let target = directive.split(['=', '[']).next().unwrap_or("").trim();
        crate::record::is_internal_target(target)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::InMemoryReporter;

    /// Names of the spans the recorder keeps under `recorder_filter(rust_log)`.
    fn recorded(rust_log: Option<&str>) -> Vec<String> {
        let spans = InMemoryReporter::new();
        let (recorder, guard) = Recorder::builder()
            .reporter(spans.clone())
            .record_internals(asks_for_internals(rust_log))
            .build();
        // The development setup's own subscriber, its logs off.
        let subscriber = subscriber(
            Some(recorder),
            rust_log,
            Some("off"),
            crate::log::WithTraceIds::text(false),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("app").in_scope(|| {
                tracing::info_span!(target: "hyper::proto::h1", "hyper_read").in_scope(|| {});
                tracing::info_span!(target: "h2::codec", "h2_frame").in_scope(|| {});
                tracing::info_span!(target: "tower::buffer", "tower_buffer").in_scope(|| {});
                tracing::info_span!(target: "tonic::transport", "tonic_conn").in_scope(|| {});
                tracing::debug_span!("app_debug").in_scope(|| {
                    // Under a span the recorder leaves out: attached to `app`.
                    tracing::warn_span!("app_warn").in_scope(|| {});
                });
                tracing::debug!("a debug event");
                tracing::info_span!(target: "hyper_client", "app_named_like_hyper").in_scope(|| {});
            });
        });
        guard.flush().unwrap();
        let recorded = spans.spans();
        // `app`, or a root when `app` is not recorded either.
        let app = recorded
            .iter()
            .find(|s| s.name == "app")
            .map_or(crate::context::SpanId::INVALID, |s| s.span_id());
        let warn = recorded.iter().find(|s| s.name == "app_warn");
        if let Some(warn) = warn.filter(|_| !recorded.iter().any(|s| s.name == "app_debug")) {
            assert_eq!(warn.parent_span_id, app, "app_warn hangs under app");
        }
        let debug_events = recorded
            .iter()
            .flat_map(|s| &s.events)
            .filter(|e| e.name == "a debug event")
            .count();
        let debug_spans = recorded.iter().any(|s| s.name == "app_debug");
        assert_eq!(
            debug_events > 0,
            debug_spans,
            "events follow the same level"
        );
        let mut names: Vec<_> = recorded.iter().map(|s| s.name.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn library_internals_stay_out_of_the_recorder_by_default() {
        let info = ["app", "app_named_like_hyper", "app_warn"];
        assert_eq!(recorded(None), info);
        assert_eq!(recorded(Some("  ")), info);
        assert_eq!(
            recorded(Some("debug")),
            ["app", "app_debug", "app_named_like_hyper", "app_warn"]
        );
        assert_eq!(recorded(Some("warn")), ["app_warn"]);
        assert!(recorded(Some("off")).is_empty());
        // The same levels through directives (an `EnvFilter`), not a lone level.
        assert_eq!(recorded(Some("info,tracewire=info")), info);
    }

    #[test]
    fn rust_log_can_ask_for_them() {
        assert_eq!(
            recorded(Some("info,hyper=info")),
            [
                "app",
                "app_named_like_hyper",
                "app_warn",
                "h2_frame",
                "hyper_read",
                "tonic_conn",
                "tower_buffer"
            ]
        );
        assert!(asks_for_internals(Some("info,hyper::proto=trace")));
        assert!(asks_for_internals(Some("tonic[conn]=debug")));
        assert!(!asks_for_internals(Some("info,hyper_client=debug")));
        assert!(!asks_for_internals(None));
    }

    #[test]
    fn invalid_directives_are_skipped() {
        assert_eq!(
            recorded(Some("info,=[bad")),
            ["app", "app_named_like_hyper", "app_warn"]
        );
    }
}
