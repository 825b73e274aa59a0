//! An HTTP client span's request facts, and the facts a live span may carry (server or
//! client), turned into attributes on the reporter thread as [`facts`](super::facts) explains
//! for server spans.

use crate::record::facts::{self, HttpServerFacts, InlineText, Range, RepeatedText, WriteFacts};
use crate::semconv;
use crate::span::{KeyValue, SpanRecord};

/// What an HTTP client span's attributes are made of, as the request (and response head) gave
/// it. Strings that did not fit inline went into the span's attributes directly.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HttpClientFacts {
    /// `http.request.method` (a standard method, or `_OTHER`).
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
    /// them alike, and a low attribute limit (see [`merge`](facts::merge)) keeps the same ones.
    pub(crate) fn write(&self, out: &mut Vec<KeyValue>, repeated: &mut RepeatedText) {
        out.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, self.method));
        if let Some((host, port)) = self.host {
            facts::write_server(out, self.text.bytes(host), port, repeated);
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
        out: Vec<KeyValue>,
        repeated: &mut RepeatedText,
    ) -> Vec<KeyValue> {
        match self {
            RequestFacts::Server(f) => facts::finish(f, record, max, out, repeated),
            RequestFacts::Client(f) => facts::finish(f, record, max, out, repeated),
        }
    }
}

#[cfg(test)]
mod tests {
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
