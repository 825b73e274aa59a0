//! gRPC wire details the layers read: detection, `grpc-status`, `grpc-timeout`, the status
//! a response without one stands for, and the length-prefixed messages of a body.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use http::HeaderMap;

use crate::record::with_span_data;
use crate::semconv;
use crate::span::{Event, KeyValue};

/// gRPC by `content-type`: `application/grpc`, `application/grpc+proto`,
/// `application/grpc;charset=…`. gRPC-Web (`application/grpc-web*`) carries its status in
/// the body, not in trailers, so it is traced as HTTP.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    is_grpc_content_type(headers.get(http::header::CONTENT_TYPE))
}

/// A request a server takes for a gRPC call: a POST (the only method gRPC uses) with a gRPC
/// `content-type`. The method is checked because the caller chooses both: a GET to an HTTP
/// route stays an HTTP request, with its route and status, whatever its `content-type`.
pub(crate) fn is_grpc_request(
    method: &http::Method,
    content_type: Option<&http::HeaderValue>,
) -> bool {
    method == http::Method::POST && is_grpc_content_type(content_type)
}

/// [`is_grpc`] with the `Content-Type` header already looked up.
pub(crate) fn is_grpc_content_type(content_type: Option<&http::HeaderValue>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let value = content_type.as_bytes();
    let Some(rest) = strip_prefix_ignore_case(value, b"application/grpc") else {
        return false;
    };
    matches!(rest.first(), None | Some(b'+' | b';' | b' ' | b'\t'))
}

fn strip_prefix_ignore_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// The gRPC methods a server layer recognizes, so that a caller cannot name spans: the
/// semantic conventions want `rpc.method` set to `_OTHER` for a method the server does not
/// recognize, and the caller picks the path.
///
/// A method is recognized when it was configured, or once the service answered a call to
/// it (a gRPC response head, a `grpc-status` other than UNIMPLEMENTED). An answer does not
/// prove the method exists: a layer in front of the router (authentication, rate limiting,
/// load shedding) answers made-up paths too, with any status. So what bounds the names is
/// the learning itself: only names shaped as a method ([`is_method_name`]) are learned, and
/// the set stops growing at [`MAX_LEARNED`](Self::MAX_LEARNED); a call whose method cannot
/// be learned is unrecognized. Callers can fill the set, so only configured methods are
/// always recognized. Whole services are not configurable: a caller could then make up
/// methods under one.
#[derive(Debug, Default)]
pub(crate) struct GrpcMethods {
    /// Configured `package.Service/Method` names.
    configured: Vec<&'static str>,
    /// Learned names, kept for the life of the process (they are few and bounded, see
    /// [`intern`]), so that spans and metrics name a method without copying it.
    learned: RwLock<HashSet<&'static str>>,
}

impl GrpcMethods {
    const MAX_LEARNED: usize = 1024;

    /// These methods too.
    pub(crate) fn with(&self, more: impl IntoIterator<Item = Box<str>>) -> Self {
        let mut configured = self.configured.clone();
        configured.extend(
            more.into_iter()
                .filter_map(|m| intern(m.trim_start_matches('/'), usize::MAX)),
        );
        GrpcMethods {
            configured,
            learned: RwLock::default(),
        }
    }

    /// `method` (`package.Service/Method`) is known to be served: its name, as kept.
    pub(crate) fn known(&self, method: &str) -> Option<&'static str> {
        if let Some(known) = self.configured.iter().find(|known| **known == method) {
            return Some(known);
        }
        self.learned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(method)
            .copied()
    }

    /// `method` is known to be served.
    pub(crate) fn recognizes(&self, method: &str) -> bool {
        self.known(method).is_some()
    }

    /// The service answered a call to `method`. Its name as kept, unless it is not shaped as
    /// a method or the bound was reached.
    pub(crate) fn learn(&self, method: &str) -> Option<&'static str> {
        if !is_method_name(method) {
            return None;
        }
        let mut learned = self.learned.write().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = learned.get(method) {
            return Some(known);
        }
        if learned.len() >= Self::MAX_LEARNED {
            return None;
        }
        let method = intern(method, MAX_INTERNED)?;
        learned.insert(method);
        Some(method)
    }

    /// [`known`](Self::known), else [`learn`](Self::learn).
    #[cfg(feature = "metrics")]
    pub(crate) fn known_or_learn(&self, method: &str) -> Option<&'static str> {
        self.known(method).or_else(|| self.learn(method))
    }
}

/// The most method names [`intern`] keeps for names the layers learn (configured ones are
/// kept regardless): what callers can add to the process's memory, whatever number of layers.
const MAX_INTERNED: usize = 4096;

/// `method`, kept for the life of the process once however many layers configure or learn
/// it: a layer built per connection (as hyper servers often build their services) learns its
/// methods again on each, and copies of its own would grow with the connections served.
/// `None` when `max` names are kept already.
fn intern(method: &str, max: usize) -> Option<&'static str> {
    static NAMES: std::sync::OnceLock<RwLock<HashSet<&'static str>>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(RwLock::default);
    if let Some(kept) = names.read().unwrap_or_else(|e| e.into_inner()).get(method) {
        return Some(kept);
    }
    let mut names = names.write().unwrap_or_else(|e| e.into_inner());
    if let Some(kept) = names.get(method) {
        return Some(kept);
    }
    if names.len() >= max {
        return None;
    }
    let method: &'static str = Box::leak(method.into());
    names.insert(method);
    Some(method)
}

/// The longest method name learned: real ones are far shorter.
const MAX_METHOD_NAME: usize = 256;

/// `method` looks like `package.Service/Method` as protobuf names it: at most
/// [`MAX_METHOD_NAME`] bytes, one `/` between a service (letters, digits, `_`, `.`, the
/// package optional) and a method (letters, digits, `_`).
fn is_method_name(method: &str) -> bool {
    let Some((service, name)) = method.split_once('/') else {
        return false;
    };
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    method.len() <= MAX_METHOD_NAME
        && !service.is_empty()
        && !name.is_empty()
        && service
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| word(&b)))
        && name.bytes().all(|b| word(&b))
}

/// `package.Service/Method` from a gRPC path `/package.Service/Method`.
pub(crate) fn full_method(path: &str) -> &str {
    path.strip_prefix('/').unwrap_or(path)
}

/// `grpc-status`: one to ten ASCII digits. Anything else counts as absent.
pub(crate) fn parse_status(headers: &HeaderMap) -> Option<i32> {
    let value = headers.get("grpc-status")?.as_bytes();
    let value = crate::propagation::trim_ows(value);
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// `grpc-message`, percent-decoded; bytes that are not UTF-8 become U+FFFD.
pub(crate) fn parse_message(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("grpc-message")?;
    Some(
        percent_encoding::percent_decode(value.as_bytes())
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// The status a client infers from a gRPC response's HTTP status when it carries no
/// `grpc-status`, as gRPC's HTTP-to-gRPC status mapping says.
pub(crate) fn status_from_http(code: u16) -> i32 {
    match code {
        400 => 13,                   // INTERNAL
        401 => 16,                   // UNAUTHENTICATED
        403 => 7,                    // PERMISSION_DENIED
        404 => 12,                   // UNIMPLEMENTED
        429 | 502 | 503 | 504 => 14, // UNAVAILABLE
        _ => 2,                      // UNKNOWN
    }
}

/// `grpc-timeout`: up to eight digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub(crate) fn parse_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// When the call's `grpc-timeout` runs out, counted from now.
pub(crate) fn deadline(headers: &HeaderMap) -> Option<Instant> {
    Instant::now().checked_add(parse_timeout(headers)?)
}

/// Which way counted messages travel, from the span's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Sent,
    Received,
}

/// Counts the length-prefixed messages of a gRPC body (a flag byte, a big-endian `u32`
/// length, the payload) as its chunks go by, without copying payloads, and adds an
/// `rpc.message` event to the span for each complete one.
#[derive(Debug)]
pub(crate) struct MessageCounter {
    direction: Direction,
    /// Messages completed so far; the next one's id is `count + 1`.
    count: i64,
    /// The prefix of the message being read, and how much of it has arrived.
    prefix: [u8; 5],
    prefix_len: u8,
    /// Payload bytes still to come of the current message.
    remaining: u32,
    /// The body stopped looking like gRPC framing (or a chunk could not be walked): no more
    /// events.
    lost: bool,
}

/// One complete message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) id: i64,
    pub(crate) compressed: bool,
    pub(crate) size: u32,
}

impl MessageCounter {
    pub(crate) fn new(direction: Direction) -> Self {
        MessageCounter {
            direction,
            count: 0,
            prefix: [0; 5],
            prefix_len: 0,
            remaining: 0,
            lost: false,
        }
    }

    /// Walks one data frame, recording an event on `span` per completed message.
    pub(crate) fn on_data<D: bytes::Buf>(&mut self, data: &D, span: &tracing::Span) {
        if self.lost || !data.has_remaining() {
            return;
        }
        let mut slices = [std::io::IoSlice::new(&[]); 16];
        let n = data.chunks_vectored(&mut slices);
        let walked: usize = slices[..n].iter().map(|s| s.len()).sum();
        let mut messages = Vec::new();
        for slice in &slices[..n] {
            self.feed(slice, &mut messages);
        }
        if walked < data.remaining() {
            // A buffer of more than 16 pieces: the rest cannot be seen without copying.
            self.lost = true;
        }
        if !messages.is_empty() {
            self.record(&messages, span);
        }
    }

    /// Advances over `bytes`, pushing each message that completes.
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Message>) {
        while !bytes.is_empty() && !self.lost {
            if self.remaining > 0 {
                let take = bytes.len().min(self.remaining as usize);
                bytes = &bytes[take..];
                // `take` is at most `remaining`, a u32.
                self.remaining -= take as u32;
                if self.remaining == 0 {
                    out.push(self.complete());
                }
                continue;
            }
            let have = usize::from(self.prefix_len);
            let take = bytes.len().min(5 - have);
            self.prefix[have..have + take].copy_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            self.prefix_len += take as u8;
            if self.prefix_len == 5 {
                if self.prefix[0] > 1 {
                    // Not a data message (a gRPC-Web trailer frame, or not gRPC at all).
                    self.lost = true;
                    return;
                }
                self.remaining = self.size();
                if self.remaining == 0 {
                    out.push(self.complete());
                }
            }
        }
    }

    fn size(&self) -> u32 {
        u32::from_be_bytes([
            self.prefix[1],
            self.prefix[2],
            self.prefix[3],
            self.prefix[4],
        ])
    }

    fn complete(&mut self) -> Message {
        self.count += 1;
        self.prefix_len = 0;
        Message {
            id: self.count,
            compressed: self.prefix[0] == 1,
            size: self.size(),
        }
    }

    fn record(&self, messages: &[Message], span: &tracing::Span) {
        let kind = match self.direction {
            Direction::Sent => "SENT",
            Direction::Received => "RECEIVED",
        };
        let now = crate::record::timestamp::now();
        with_span_data(span, |d| {
            for m in messages {
                let size_key = if m.compressed {
                    semconv::RPC_MESSAGE_COMPRESSED_SIZE
                } else {
                    semconv::RPC_MESSAGE_UNCOMPRESSED_SIZE
                };
                d.add_event(Event::new(
                    semconv::RPC_MESSAGE_EVENT,
                    now,
                    vec![
                        KeyValue::new(semconv::RPC_MESSAGE_TYPE, kind),
                        KeyValue::new(semconv::RPC_MESSAGE_ID, m.id),
                        KeyValue::new(size_key, i64::from(m.size)),
                    ],
                    0,
                ));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &'static str, value: &'static [u8]) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_bytes(value).unwrap());
        map
    }

    #[test]
    fn only_method_shaped_names_are_learned() {
        let methods = GrpcMethods::default();
        for good in ["grpc.health.v1.Health/Check", "Svc/M", "a_b.C1/D_2"] {
            assert_eq!(methods.learn(good), Some(good), "{good}");
        }
        let long = format!("pkg.Svc/{}", "A".repeat(MAX_METHOD_NAME));
        for bad in [
            "",
            "Svc",
            "/Svc/M",
            "Svc/",
            "pkg..Svc/M",
            ".Svc/M",
            "Svc/M/N",
            "Svc/M-1",
            "Svc/M\u{e9}",
            "Svc M/N",
            &long,
        ] {
            assert_eq!(methods.learn(bad), None, "{bad}");
            assert!(!methods.recognizes(bad), "{bad}");
        }
    }

    #[test]
    fn grpc_is_detected_by_content_type_but_grpc_web_is_not() {
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "application/grpc; charset=utf-8",
            "Application/GRPC",
        ] {
            assert!(is_grpc(&headers("content-type", grpc.as_bytes())), "{grpc}");
        }
        for other in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpcx",
            "application/json",
            "application/grp",
            "",
        ] {
            assert!(
                !is_grpc(&headers("content-type", other.as_bytes())),
                "{other}"
            );
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_status_is_digits_only() {
        assert_eq!(parse_status(&headers("grpc-status", b"0")), Some(0));
        assert_eq!(parse_status(&headers("grpc-status", b" 14 ")), Some(14));
        assert_eq!(parse_status(&headers("grpc-status", b"99")), Some(99));
        for bad in [
            &b""[..],
            b"-1",
            b"+3",
            b"1x",
            b"12345678901",
            b"\xff",
            b"9999999999",
        ] {
            assert_eq!(parse_status(&headers("grpc-status", bad)), None, "{bad:?}");
        }
        assert_eq!(parse_status(&HeaderMap::new()), None);
    }

    #[test]
    fn http_statuses_map_to_grpc_codes() {
        let mapped: Vec<i32> = [400, 401, 403, 404, 429, 502, 503, 504, 500, 302]
            .into_iter()
            .map(status_from_http)
            .collect();
        assert_eq!(mapped, [13, 16, 7, 12, 14, 14, 14, 14, 2, 2]);
    }

    #[test]
    fn grpc_timeouts_parse_every_unit_and_refuse_the_rest() {
        let t = |v: &'static [u8]| parse_timeout(&headers("grpc-timeout", v));
        assert_eq!(t(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(t(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(t(b"4S"), Some(Duration::from_secs(4)));
        assert_eq!(t(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(t(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(t(b"99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(
            t(b"99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for bad in [
            &b""[..],
            b"m",
            b"123456789m",
            b"10x",
            b"1.5S",
            b"-1S",
            b"10",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
        // A deadline too far to represent is no deadline; never a panic.
        let _ = deadline(&headers("grpc-timeout", b"99999999H"));
    }

    fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn count(chunks: &[&[u8]]) -> (Vec<Message>, bool) {
        let mut counter = MessageCounter::new(Direction::Sent);
        let mut out = Vec::new();
        for chunk in chunks {
            counter.feed(chunk, &mut out);
        }
        (out, counter.lost)
    }

    #[test]
    fn messages_are_counted_across_any_chunking() {
        let mut body = frame(0, b"hello");
        body.extend(frame(0, b""));
        body.extend(frame(1, &[7; 300]));
        let expected = vec![
            Message {
                id: 1,
                compressed: false,
                size: 5,
            },
            Message {
                id: 2,
                compressed: false,
                size: 0,
            },
            Message {
                id: 3,
                compressed: true,
                size: 300,
            },
        ];
        assert_eq!(count(&[&body]), (expected.clone(), false));
        // Every split point, and byte by byte.
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(
                count(&[a, b]),
                (expected.clone(), false),
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(count(&bytes), (expected, false));
    }

    #[test]
    fn a_partial_message_is_not_counted_and_garbage_stops_counting() {
        let body = frame(0, b"hello");
        assert_eq!(count(&[&body[..7]]).0, []);
        assert_eq!(count(&[&body[..3]]).0, []);
        let (messages, lost) = count(&[b"\x80\x00\x00\x00\x01x", &frame(0, b"a")]);
        assert!(messages.is_empty() && lost);
        // A huge length is just a long message: nothing allocates for it.
        let (messages, lost) = count(&[b"\x00\xff\xff\xff\xff", &[0; 1000]]);
        assert!(messages.is_empty() && !lost);
    }
}
