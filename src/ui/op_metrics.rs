//! What `/metrics` keeps per operation, for the traces the viewer holds and for the requests
//! the metered layers count: status classes and duration buckets.

use std::collections::BTreeMap;

/// The histogram bucket upper bounds, in seconds, of the OpenTelemetry semantic conventions
/// for `http.server.request.duration`.
pub(crate) const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Operations tracked by `/metrics` before new ones are counted together under
/// [`OTHER_OPERATION`], so that span names made of ids cannot grow memory without bound.
pub(crate) const MAX_OPERATIONS: usize = 1000;
pub(crate) const OTHER_OPERATION: &str = "_other";

/// The status classes of `tracewire_ui_requests_total`: from the HTTP status code when there
/// is one, else `ok` or `error`.
pub(crate) const CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error", "ok"];

/// The index in [`CLASSES`] of a request with HTTP status `code` (if any) that failed or not.
pub(crate) fn class(code: Option<i64>, error: bool) -> usize {
    match code {
        Some(code @ 100..=599) => (code / 100 - 1) as usize,
        _ if error => 5,
        _ => 6,
    }
}

/// The index of the bucket of a duration of `seconds` in [`OpMetrics::buckets`].
pub(crate) fn bucket(seconds: f64) -> usize {
    BUCKETS
        .iter()
        .position(|&le| seconds <= le)
        .unwrap_or(BUCKETS.len())
}

/// `/metrics`' per-operation state.
#[derive(Clone, Debug, Default)]
pub(crate) struct OpMetrics {
    pub(crate) by_class: BTreeMap<&'static str, u64>,
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    pub(crate) buckets: [u64; BUCKETS.len() + 1],
    pub(crate) count: u64,
    pub(crate) sum_seconds: f64,
}
