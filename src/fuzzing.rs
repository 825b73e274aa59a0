//! Entry points for the fuzz targets in `fuzz/`, built only under `--cfg fuzzing` (which
//! `cargo fuzz` sets): the parsers of outside input that are not public. Not an API.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Uri};

/// A header map holding `name: value`, or an empty one when `value` is not a header value.
fn one_header(name: &'static str, value: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(name, value);
    }
    headers
}

/// `grpc-timeout: {value}` as the layers read it.
pub fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    crate::rpc::parse_timeout(&one_header("grpc-timeout", value))
}

/// `grpc-status: {value}` as the layers read it.
pub fn grpc_status(value: &[u8]) -> Option<i32> {
    crate::rpc::parse_status(&one_header("grpc-status", value))
}

/// `grpc-message: {value}` as the layers read it (percent-decoded).
pub fn grpc_message(value: &[u8]) -> Option<String> {
    crate::rpc::parse_message(&one_header("grpc-message", value))
}

/// `query` with the values of `params` redacted, as `url.query` and `url.full` record it.
pub fn redact_query(query: &str, params: &[String]) -> String {
    let params: Vec<Cow<'static, str>> = params.iter().map(|p| Cow::Owned(p.clone())).collect();
    crate::attrs::redact_query(query, &params).into_owned()
}

/// `url.full` of a request to `uri` (with `host` as its `Host` header when given), the
/// values of `params` redacted.
pub fn url_full(uri: &Uri, host: Option<&[u8]>, params: &[String]) -> String {
    let headers = host.map_or_else(HeaderMap::new, |host| one_header("host", host));
    let params: Vec<Cow<'static, str>> = params.iter().map(|p| Cow::Owned(p.clone())).collect();
    crate::attrs::UrlFull {
        uri,
        headers: &headers,
        redacted_query_params: &params,
    }
    .render()
}

/// `text` written into at most `max` terminal columns by the console reporter: the bytes
/// written and the columns they take.
#[cfg(feature = "console")]
pub fn console_fit(text: &str, max: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let columns = crate::report::console::text::write_fit(&mut out, text, max);
    (out, columns)
}

/// `text` as the console reporter keeps a short string (a status, a duration).
#[cfg(feature = "console")]
pub fn console_short(text: &str) -> String {
    crate::report::console::text::Short::new(text)
        .as_str()
        .to_owned()
}

/// Whether the console reporter writes `c` as a space.
#[cfg(feature = "console")]
pub fn console_replaces(c: char) -> bool {
    crate::report::console::text::is_unsafe(c)
}
