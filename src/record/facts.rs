//! Request facts kept raw while a span is live and turned into attributes on the reporter
//! thread: an HTTP server span's, an HTTP client span's, and [`RequestFacts`], either one as
//! a live span carries it.
//!
//! An HTTP server span's request attributes (method, path, scheme, route, protocol version,
//! host and port, peer, user agent) and its response status are known as a few small values
//! on the request path. Building a `KeyValue` for each there (an allocation for the path,
//! text for the peer's address, a vector to hold them) costs the request thread; the span's
//! reporter thread does it instead, from these facts, before any reporter sees the span.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::record::span_data::cap_value;
use crate::semconv;
use crate::span::{Key, KeyValue, SpanRecord, StringValue};

/// Bytes of request text (path, host, user agent) kept inline. Longer values are recorded as
/// ordinary attributes at once.
const TEXT: usize = 96;

/// Short strings copied into one inline buffer, one after the other.
#[derive(Clone, Copy)]
pub(crate) struct InlineText {
    bytes: [u8; TEXT],
    len: u8,
}

/// Where one string of an [`InlineText`] lies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Range {
    start: u8,
    len: u8,
}

impl Default for InlineText {
    fn default() -> Self {
        InlineText {
            bytes: [0; TEXT],
            len: 0,
        }
    }
}

impl InlineText {
    /// Appends `text`; `None` when it does not fit in what is left.
    pub(crate) fn push(&mut self, text: &str) -> Option<Range> {
        let start = usize::from(self.len);
        let end = start.checked_add(text.len()).filter(|end| *end <= TEXT)?;
        self.bytes[start..end].copy_from_slice(text.as_bytes());
        self.len = end as u8;
        Some(Range {
            start: start as u8,
            len: text.len() as u8,
        })
    }

    /// Whether `text` would fit in what is left.
    pub(crate) fn fits(&self, text: &str) -> bool {
        usize::from(self.len) + text.len() <= TEXT
    }

    /// Appends `parts` as one string; `None` (and nothing kept) when they do not fit.
    pub(crate) fn push_parts(&mut self, parts: &[&str]) -> Option<Range> {
        let start = usize::from(self.len);
        let mut end = start;
        for part in parts {
            let next = end.checked_add(part.len()).filter(|next| *next <= TEXT)?;
            self.bytes[end..next].copy_from_slice(part.as_bytes());
            end = next;
        }
        self.len = end as u8;
        Some(Range {
            start: start as u8,
            len: (end - start) as u8,
        })
    }

    /// The bytes of the string at `range`.
    pub(crate) fn bytes(&self, range: Range) -> &[u8] {
        let start = usize::from(range.start);
        &self.bytes[start..start + usize::from(range.len)]
    }

    /// The string at `range`.
    pub(crate) fn get(&self, range: Range) -> &str {
        text(self.bytes(range))
    }
}

impl std::fmt::Debug for InlineText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineText")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// What an HTTP server span's attributes are made of, as the request (and response head)
/// gave it. Strings that did not fit inline went into the span's attributes directly.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HttpServerFacts {
    /// `http.request.method` (a known method, or `_OTHER`).
    pub(crate) method: &'static str,
    /// `url.scheme`.
    pub(crate) scheme: &'static str,
    /// `network.protocol.version`.
    pub(crate) version: &'static str,
    /// `http.route`, when interned.
    pub(crate) route: Option<&'static str>,
    /// `url.path`.
    pub(crate) path: Option<Range>,
    /// `server.address`, and `server.port` (the scheme's default when the request named
    /// none).
    pub(crate) host: Option<(Range, u16)>,
    /// The `Host` header as sent, when the request named no authority in its target, and the
    /// scheme's default port: split into `server.address` and `server.port` only when the
    /// attributes are written.
    pub(crate) host_header: Option<(Range, u16)>,
    /// `client.*` and `network.peer.*`.
    pub(crate) peer: Option<SocketAddr>,
    /// `user_agent.original`.
    pub(crate) user_agent: Option<Range>,
    /// `http.response.status_code`, once the response head arrived.
    pub(crate) status_code: Option<u16>,
    pub(crate) text: InlineText,
}

impl HttpServerFacts {
    /// Appends the attributes in a fixed order, request before response: every span lists
    /// them alike, and a low attribute limit (see [`merge`]) keeps the same ones.
    pub(crate) fn write(&self, out: &mut Vec<KeyValue>, repeated: &mut RepeatedText) {
        out.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, self.method));
        if let Some(path) = self.path {
            // Shared rather than owned: an exporter that copies its batch (the OTLP one
            // does, for retries) then copies a pointer, not the text.
            let path: Arc<str> = Arc::from(text(self.text.bytes(path)));
            out.push(KeyValue::new(semconv::URL_PATH, StringValue::from(path)));
        }
        out.push(KeyValue::new(semconv::URL_SCHEME, self.scheme));
        if let Some(route) = self.route {
            out.push(KeyValue::new(semconv::HTTP_ROUTE, route));
        }
        out.push(KeyValue::new(
            semconv::NETWORK_PROTOCOL_VERSION,
            self.version,
        ));
        match (self.host, self.host_header) {
            (Some((host, port)), _) => write_server(out, self.text.bytes(host), port, repeated),
            (None, Some((header, default_port))) => {
                if let Some((host, port)) = split_host_port(self.text.get(header)) {
                    write_server(out, host.as_bytes(), port.unwrap_or(default_port), repeated);
                }
            }
            (None, None) => {}
        }
        // `client.port` is Opt-In for HTTP server spans: left out.
        if let Some(peer) = self.peer {
            let ip = repeated.peer(peer.ip());
            out.push(KeyValue::new(semconv::CLIENT_ADDRESS, ip.clone()));
            out.push(KeyValue::new(semconv::NETWORK_PEER_ADDRESS, ip));
            out.push(KeyValue::new(
                semconv::NETWORK_PEER_PORT,
                i64::from(peer.port()),
            ));
        }
        if let Some(agent) = self.user_agent {
            out.push(KeyValue::new(
                semconv::USER_AGENT_ORIGINAL,
                shared(&mut repeated.user_agent, self.text.bytes(agent)),
            ));
        }
        if let Some(code) = self.status_code {
            out.push(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(code),
            ));
        }
    }
}

/// Makes `facts` `record`'s first attributes, in `out` (an empty vector), ahead of those
/// recorded directly, within `max` attributes, each value cut to `value_len` bytes. Returns
/// the vector that held those, emptied, for reuse.
pub(crate) fn finish(
    facts: &impl WriteFacts,
    record: &mut SpanRecord,
    max: u32,
    value_len: usize,
    out: Vec<KeyValue>,
    repeated: &mut RepeatedText,
) -> Vec<KeyValue> {
    let mut recorded = std::mem::replace(&mut record.attributes, out);
    record.dropped_attributes_count += merge(
        facts,
        &mut recorded,
        &mut record.attributes,
        max as usize,
        repeated,
    );
    // The facts' text was kept whole (up to its inline buffer) while the span was live; the
    // limit holds for it as for what was recorded directly (which it leaves as it is).
    for kv in &mut record.attributes {
        cap_value(&mut kv.value, value_len);
    }
    recorded
}

/// `server.address` and `server.port`, for server and client spans alike.
pub(crate) fn write_server(
    out: &mut Vec<KeyValue>,
    host: &[u8],
    port: u16,
    repeated: &mut RepeatedText,
) {
    out.push(KeyValue::new(semconv::SERVER_ADDRESS, repeated.host(host)));
    out.push(KeyValue::new(
        Key::from_static_str(semconv::SERVER_PORT),
        i64::from(port),
    ));
}

/// Splits `host[:port]`, with IPv6 literals in brackets; `None` when malformed.
pub(crate) fn split_host_port(value: &str) -> Option<(&str, Option<u16>)> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Some(rest) = value.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let port = match &rest[end + 1..] {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        return Some((host, port));
    }
    // One pass over the bytes: a single `:` splits off the port; none, or several (an
    // IPv6 address without brackets), leave the value whole.
    let mut colons = 0;
    let mut last = 0;
    for (i, byte) in value.bytes().enumerate() {
        if byte == b':' {
            colons += 1;
            last = i;
        }
    }
    match colons {
        1 => Some((&value[..last], Some(value[last + 1..].parse().ok()?))),
        _ => Some((value, None)),
    }
}

/// Only whole `str`s go into an [`InlineText`], so its strings are UTF-8; a mismatch would be
/// a bug here, and records an empty string rather than panicking.
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// The last host, user agent and peer address the worker made into attribute values. A
/// server sees the same few again and again: a repeat shares the last value (an `Arc<str>`)
/// instead of allocating, copying and later freeing its own. It holds three short strings at
/// most.
#[derive(Debug, Default)]
pub(crate) struct RepeatedText {
    host: Option<Arc<str>>,
    user_agent: Option<Arc<str>>,
    peer: Option<(IpAddr, Arc<str>)>,
}

impl RepeatedText {
    /// `server.address`'s value.
    pub(crate) fn host(&mut self, host: &[u8]) -> StringValue {
        shared(&mut self.host, host)
    }

    fn peer(&mut self, ip: IpAddr) -> StringValue {
        match &self.peer {
            Some((last, text)) if *last == ip => StringValue::from(text.clone()),
            _ => {
                let text: Arc<str> = Arc::from(ip.to_string());
                self.peer = Some((ip, text.clone()));
                StringValue::from(text)
            }
        }
    }
}

/// `bytes` as a value, shared with `last` when it holds the same text.
fn shared(last: &mut Option<Arc<str>>, bytes: &[u8]) -> StringValue {
    if let Some(last) = last.as_ref().filter(|last| last.as_bytes() == bytes) {
        return StringValue::from(last.clone());
    }
    let value: Arc<str> = Arc::from(text(bytes));
    *last = Some(value.clone());
    StringValue::from(value)
}

/// Facts that become attributes on the reporter thread.
pub(crate) trait WriteFacts {
    /// Appends the attributes, sharing repeated text with earlier spans'.
    fn write_to(&self, out: &mut Vec<KeyValue>, repeated: &mut RepeatedText);
}

impl WriteFacts for HttpServerFacts {
    fn write_to(&self, out: &mut Vec<KeyValue>, repeated: &mut RepeatedText) {
        self.write(out, repeated);
    }
}

/// Puts `facts`' attributes first in `out` and then `recorded` (the attributes recorded
/// directly), a recorded value replacing a fact's of the same key, all within `max`
/// attributes. Returns how many were left out.
pub(crate) fn merge(
    facts: &impl WriteFacts,
    recorded: &mut Vec<KeyValue>,
    out: &mut Vec<KeyValue>,
    max: usize,
    repeated: &mut RepeatedText,
) -> u32 {
    facts.write_to(out, repeated);
    let mut dropped = 0;
    if out.len() > max {
        dropped += (out.len() - max) as u32;
        out.truncate(max);
    }
    for kv in recorded.drain(..) {
        if let Some(slot) = out.iter_mut().find(|a| a.key == kv.key) {
            slot.value = kv.value;
        } else if out.len() < max {
            out.push(kv);
        } else {
            dropped += 1;
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Value;

    fn facts() -> HttpServerFacts {
        let mut facts = HttpServerFacts {
            method: "GET",
            scheme: "http",
            version: "1.1",
            route: Some("/users/{id}"),
            peer: Some("[::1]:4711".parse().unwrap()),
            status_code: Some(200),
            ..HttpServerFacts::default()
        };
        facts.path = facts.text.push("/users/42");
        facts.host = facts.text.push("example.com").map(|r| (r, 8080));
        facts.user_agent = facts.text.push("curl/8.5.0");
        facts
    }

    fn get<'a>(kvs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        kvs.iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn facts_become_the_semconv_attributes() {
        let mut out = Vec::new();
        facts().write(&mut out, &mut RepeatedText::default());
        let expect: [(&str, Value); 12] = [
            ("http.request.method", "GET".into()),
            ("url.path", "/users/42".into()),
            ("url.scheme", "http".into()),
            ("http.route", "/users/{id}".into()),
            ("network.protocol.version", "1.1".into()),
            ("server.address", "example.com".into()),
            ("server.port", 8080i64.into()),
            ("client.address", "::1".into()),
            ("network.peer.address", "::1".into()),
            ("network.peer.port", 4711i64.into()),
            ("user_agent.original", "curl/8.5.0".into()),
            ("http.response.status_code", 200i64.into()),
        ];
        let got: Vec<(&str, Value)> = out
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect();
        assert_eq!(got, expect);
    }

    /// A repeated host, user agent or peer shares the last value; a different one is its own.
    #[test]
    fn repeated_text_gives_each_span_its_own_values() {
        let mut repeated = RepeatedText::default();
        let mut other = facts();
        other.text = InlineText::default();
        other.path = other.text.push("/users/43");
        other.host = other.text.push("example.org").map(|r| (r, 8080));
        other.user_agent = other.text.push("curl/8.5.0");
        other.peer = Some("10.0.0.7:4711".parse().unwrap());
        for (facts, host, path, peer) in [
            (facts(), "example.com", "/users/42", "::1"),
            (facts(), "example.com", "/users/42", "::1"),
            (other, "example.org", "/users/43", "10.0.0.7"),
            (facts(), "example.com", "/users/42", "::1"),
        ] {
            let mut out = Vec::new();
            facts.write(&mut out, &mut repeated);
            assert_eq!(get(&out, "server.address"), Some(&host.into()));
            assert_eq!(get(&out, "url.path"), Some(&path.into()));
            assert_eq!(get(&out, "client.address"), Some(&peer.into()));
            assert_eq!(get(&out, "network.peer.address"), Some(&peer.into()));
            assert_eq!(get(&out, "user_agent.original"), Some(&"curl/8.5.0".into()));
        }
    }

    /// A `Host` header kept as sent is split when written, as it was on the request path.
    #[test]
    fn a_host_header_is_split_when_written() {
        for (header, default_port, expect) in [
            ("api.example.com", 80, Some(("api.example.com", 80))),
            ("api.example.com:8443", 443, Some(("api.example.com", 8443))),
            (" api.example.com ", 80, Some(("api.example.com", 80))),
            ("[::1]:9000", 80, Some(("::1", 9000))),
            ("[::1]", 443, Some(("::1", 443))),
            ("::1", 80, Some(("::1", 80))),
            ("h:notaport", 80, None),
            ("[::1", 80, None),
            ("", 80, None),
        ] {
            let mut facts = facts();
            facts.host = None;
            facts.host_header = facts.text.push(header).map(|r| (r, default_port));
            let mut out = Vec::new();
            facts.write(&mut out, &mut RepeatedText::default());
            let got = get(&out, "server.address").map(|address| {
                let port = get(&out, "server.port").expect("a port with the address");
                (address.clone(), port.clone())
            });
            let expect = expect.map(|(host, port)| (host.into(), i64::from(port).into()));
            assert_eq!(got, expect, "Host: {header:?}");
            assert_eq!(get(&out, "server.port").is_some(), got.is_some());
        }
    }

    #[test]
    fn text_that_does_not_fit_is_refused_whole() {
        let mut text = InlineText::default();
        let a = text.push(&"a".repeat(TEXT - 1)).unwrap();
        assert!(text.push("bc").is_none(), "one byte is left");
        let c = text.push("c").unwrap();
        assert_eq!(text.get(a).len(), TEXT - 1);
        assert_eq!(text.get(c), "c");
        assert!(InlineText::default().push(&"x".repeat(TEXT + 1)).is_none());
        // Multi-byte text keeps its characters.
        let mut text = InlineText::default();
        let r = text.push("/caf\u{e9}/\u{1f600}").unwrap();
        assert_eq!(text.get(r), "/caf\u{e9}/\u{1f600}");
    }

    #[test]
    fn recorded_attributes_replace_facts_and_respect_the_limit() {
        let mut recorded = vec![
            KeyValue::new("http.route", "/override"),
            KeyValue::new("error.type", "500"),
            KeyValue::new("extra", 1i64),
        ];
        let mut out = Vec::new();
        let dropped = merge(
            &facts(),
            &mut recorded,
            &mut out,
            13,
            &mut RepeatedText::default(),
        );
        assert!(recorded.is_empty());
        assert_eq!(out.len(), 13);
        assert_eq!(get(&out, "http.route"), Some(&"/override".into()));
        assert_eq!(get(&out, "error.type"), Some(&"500".into()));
        assert_eq!(get(&out, "extra"), None);
        assert_eq!(dropped, 1);

        // Facts beyond the limit are counted too.
        let mut out = Vec::new();
        let dropped = merge(
            &facts(),
            &mut Vec::new(),
            &mut out,
            3,
            &mut RepeatedText::default(),
        );
        assert_eq!(out.len(), 3);
        assert_eq!(dropped, 9);
    }
}

// ---- HTTP client spans ----

/// What an HTTP client span's attributes are made of, as the request (and response head) gave
/// it. Strings that did not fit inline went into the span's attributes directly.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HttpClientFacts {
    /// `http.request.method` (a known method, or `_OTHER`).
    pub(crate) method: &'static str,
    /// `server.address`, and `server.port` (the scheme's default when the request named
    /// none).
    pub(crate) host: Option<(Range, u16)>,
    /// `url.full`, its secrets already redacted.
    pub(crate) url: Option<Range>,
    /// `http.response.status_code`, once the response head arrived.
    pub(crate) status_code: Option<u16>,
    /// `network.protocol.version` of the response, once its head arrived.
    pub(crate) version: Option<&'static str>,
    pub(crate) text: InlineText,
}

impl HttpClientFacts {
    /// Appends the attributes in a fixed order, request before response: every span lists
    /// them alike, and a low attribute limit (see [`merge`]) keeps the same ones.
    pub(crate) fn write(&self, out: &mut Vec<KeyValue>, repeated: &mut RepeatedText) {
        out.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, self.method));
        if let Some((host, port)) = self.host {
            write_server(out, self.text.bytes(host), port, repeated);
        }
        if let Some(url) = self.url {
            out.push(KeyValue::new(
                semconv::URL_FULL,
                self.text.get(url).to_owned(),
            ));
        }
        if let Some(code) = self.status_code {
            out.push(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(code),
            ));
        }
        if let Some(version) = self.version {
            out.push(KeyValue::new(semconv::NETWORK_PROTOCOL_VERSION, version));
        }
    }
}

impl WriteFacts for HttpClientFacts {
    fn write_to(&self, out: &mut Vec<KeyValue>, repeated: &mut RepeatedText) {
        self.write(out, repeated);
    }
}

/// The request facts of a live HTTP span.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RequestFacts {
    Server(HttpServerFacts),
    Client(HttpClientFacts),
}

impl From<HttpServerFacts> for RequestFacts {
    fn from(facts: HttpServerFacts) -> Self {
        RequestFacts::Server(facts)
    }
}

impl From<HttpClientFacts> for RequestFacts {
    fn from(facts: HttpClientFacts) -> Self {
        RequestFacts::Client(facts)
    }
}

impl RequestFacts {
    /// Records the response's status code.
    pub(crate) fn set_status_code(&mut self, code: u16) {
        match self {
            RequestFacts::Server(facts) => facts.status_code = Some(code),
            RequestFacts::Client(facts) => facts.status_code = Some(code),
        }
    }

    /// Records the response's protocol version, if these facts keep it (a client's do).
    pub(crate) fn set_protocol_version(&mut self, version: &'static str) -> bool {
        match self {
            RequestFacts::Server(_) => false,
            RequestFacts::Client(facts) => {
                facts.version = Some(version);
                true
            }
        }
    }

    /// Makes the facts `record`'s first attributes, in `out` (an empty vector), ahead of
    /// those recorded directly, within `max` attributes. Returns the vector that held those,
    /// emptied, for reuse.
    pub(crate) fn finish(
        &self,
        record: &mut SpanRecord,
        max: u32,
        value_len: usize,
        out: Vec<KeyValue>,
        repeated: &mut RepeatedText,
    ) -> Vec<KeyValue> {
        match self {
            RequestFacts::Server(f) => finish(f, record, max, value_len, out, repeated),
            RequestFacts::Client(f) => finish(f, record, max, value_len, out, repeated),
        }
    }
}

#[cfg(test)]
mod client_tests {
    use super::*;
    use crate::span::Value;

    #[test]
    fn client_facts_become_the_semconv_attributes_in_order() {
        let mut facts = HttpClientFacts {
            method: "GET",
            status_code: Some(503),
            version: Some("1.1"),
            ..HttpClientFacts::default()
        };
        facts.host = facts.text.push("example.com").map(|r| (r, 8443));
        facts.url =
            facts
                .text
                .push_parts(&["https", "://", "example.com", ":", "8443", "/a", "?", "q=1"]);
        let mut out = Vec::new();
        facts.write(&mut out, &mut RepeatedText::default());
        let got: Vec<(&str, Value)> = out
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect();
        let expect: [(&str, Value); 6] = [
            ("http.request.method", "GET".into()),
            ("server.address", "example.com".into()),
            ("server.port", 8443i64.into()),
            ("url.full", "https://example.com:8443/a?q=1".into()),
            ("http.response.status_code", 503i64.into()),
            ("network.protocol.version", "1.1".into()),
        ];
        assert_eq!(got, expect);
    }

    #[test]
    fn parts_that_do_not_fit_are_refused_whole() {
        let mut facts = HttpClientFacts::default();
        let long = "x".repeat(90);
        assert!(facts.text.push_parts(&["http://", &long]).is_none());
        let kept = facts.text.push_parts(&["a", "", "b"]).unwrap();
        assert_eq!(facts.text.get(kept), "ab");
    }
}
