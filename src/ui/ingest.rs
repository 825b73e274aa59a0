//! `POST /v1/traces`: OTLP/HTTP requests, protobuf or JSON, turned into span records.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue as ProtoKeyValue};
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use prost::Message;

use crate::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use crate::span::{
    Event, InstrumentationScope, KeyValue, Link, SpanKind, SpanRecord, Status, StringValue, Value,
};

/// The service name of spans whose resource has no `service.name`, as the SDKs default it.
const UNKNOWN_SERVICE: &str = "unknown_service";

/// OTLP span flags: bit 8 says whether bit 9 (parent is remote) is known.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// The two OTLP/HTTP encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding named by a `Content-Type` value, ignoring parameters.
    pub(crate) fn from_content_type(content_type: &str) -> Option<Encoding> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Why a request body was refused.
#[derive(Debug)]
pub(crate) enum DecodeError {
    Protobuf(prost::DecodeError),
    Json(serde_json::Error),
    /// More elements than [`MAX_ELEMENTS`].
    TooManyElements,
    /// A span with a trace id or span id of the wrong length, or all zeros.
    BadId {
        span: usize,
        field: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Protobuf(e) => write!(f, "invalid OTLP protobuf: {e}"),
            DecodeError::Json(e) => write!(f, "invalid OTLP JSON: {e}"),
            DecodeError::TooManyElements => write!(
                f,
                "over {MAX_ELEMENTS} elements (spans, attributes, events, links, values) in one \
                 request; send fewer spans per request"
            ),
            DecodeError::BadId { span, field } => {
                write!(f, "span {span}: invalid {field}")
            }
        }
    }
}

/// Decodes a whole request; nothing is kept from a body with any error in it.
pub(crate) fn decode(body: &[u8], encoding: Encoding) -> Result<Vec<SpanRecord>, DecodeError> {
    let elements = match encoding {
        Encoding::Protobuf => protobuf_elements(body),
        Encoding::Json => json_elements(body),
    };
    if elements > MAX_ELEMENTS {
        return Err(DecodeError::TooManyElements);
    }
    let request = match encoding {
        Encoding::Protobuf => {
            ExportTraceServiceRequest::decode(body).map_err(DecodeError::Protobuf)?
        }
        Encoding::Json => serde_json::from_slice(body).map_err(DecodeError::Json)?,
    };
    convert(request)
}

/// The most elements one request may hold. Decoding makes a struct of up to 150 bytes of
/// each (a span, an attribute, an event, a link, a value), however few bytes it took on the
/// wire: an empty event is two bytes of protobuf, so a 4 MiB body of them took 300 MB. With
/// this bound, the worst body takes about 150 MB, twice what 4 MiB of real spans take (about
/// 9 bytes an element, so some 460,000 elements).
pub(crate) const MAX_ELEMENTS: usize = 1 << 20;

/// What a protobuf message kind holds in its fields, as far as counting elements needs:
/// every length-delimited field (a string, bytes or message) is one element, and the
/// message fields below are read for their own.
#[derive(Clone, Copy)]
enum Kind {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

impl Kind {
    /// The kind of the message in field `field`, for the OTLP trace fields that hold one.
    fn child(self, field: u64) -> Option<Kind> {
        use Kind::*;
        Some(match (self, field) {
            (Request, 1) => ResourceSpans,
            (ResourceSpans, 1) => Resource,
            (ResourceSpans, 2) => ScopeSpans,
            (Resource, 1) | (Scope, 3) | (Span, 9) | (Event, 3) | (Link, 4) => KeyValue,
            (Resource, 3) => EntityRef,
            (ScopeSpans, 1) => Scope,
            (ScopeSpans, 2) => Span,
            (Span, 11) => Event,
            (Span, 13) => Link,
            (KeyValue, 2) | (ArrayValue, 1) => AnyValue,
            (AnyValue, 5) => ArrayValue,
            (AnyValue, 6) => KeyValueList,
            (KeyValueList, 1) => KeyValue,
            _ => return None,
        })
    }
}

/// The elements of an OTLP protobuf request, counted by walking its wire format without
/// decoding it, and without counting past `MAX_ELEMENTS + 1`. Written here because prost
/// decodes whole messages only; a malformed body is counted up to its first fault and left
/// to prost to refuse.
fn protobuf_elements(body: &[u8]) -> usize {
    // As deep as prost decodes (its recursion limit).
    const MAX_DEPTH: u32 = 100;
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for (i, &byte) in buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                *buf = &buf[i + 1..];
                return Some(value);
            }
        }
        None
    }
    fn walk(mut buf: &[u8], kind: Kind, depth: u32, count: &mut usize) -> Option<()> {
        while !buf.is_empty() && *count <= MAX_ELEMENTS {
            let key = varint(&mut buf)?;
            let skip = match key & 7 {
                0 => {
                    varint(&mut buf)?;
                    0
                }
                1 => 8,
                5 => 4,
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).ok()?;
                    let inner = buf.get(..len)?;
                    *count += 1;
                    if let Some(child) = kind.child(key >> 3).filter(|_| depth < MAX_DEPTH) {
                        walk(inner, child, depth + 1, count);
                    }
                    len
                }
                // Groups: OTLP has none.
                _ => return None,
            };
            buf = buf.get(skip..)?;
        }
        Some(())
    }
    let mut count = 0;
    walk(body, Kind::Request, 0, &mut count);
    count
}

/// At least the elements of an OTLP JSON request: each object, and each item of an array or
/// member of an object after the first, outside strings.
fn json_elements(body: &[u8]) -> usize {
    let mut count = 0;
    let (mut in_string, mut escaped) = (false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b'{' | b',' => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// The `ExportTraceServiceResponse` to a request taken in, in `encoding`: empty (a full
/// success), or a partial success when `rejected` spans were dropped at the limits, as
/// the OTLP spec asks, so that the sender hears of them.
pub(crate) fn success(encoding: Encoding, rejected: u64) -> Vec<u8> {
    let response = ExportTraceServiceResponse {
        partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: "the trace viewer was holding as many spans as it may while \
                            their traces' roots had not arrived; these were dropped"
                .into(),
        }),
    };
    match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json if rejected == 0 => b"{}".to_vec(),
        Encoding::Json => serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec()),
    }
}

/// A `google.rpc.Status` saying `message`, in `encoding`: the body of a 4xx, as the OTLP/HTTP
/// spec asks (it leaves the code out). Written by hand: one string field.
pub(crate) fn failure(encoding: Encoding, message: &str) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => {
            // Field 2, length-delimited.
            let mut out = vec![2 << 3 | 2];
            let mut len = message.len() as u64;
            while len >= 0x80 {
                out.push(len as u8 | 0x80);
                len >>= 7;
            }
            out.push(len as u8);
            out.extend_from_slice(message.as_bytes());
            out
        }
        Encoding::Json => serde_json::json!({ "message": message })
            .to_string()
            .into_bytes(),
    }
}

fn convert(request: ExportTraceServiceRequest) -> Result<Vec<SpanRecord>, DecodeError> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let service: Arc<str> = resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) if !s.is_empty() => Some(Arc::from(s.as_str())),
                _ => None,
            })
            .unwrap_or_else(|| Arc::from(UNKNOWN_SERVICE));
        for scope_spans in resource_spans.scope_spans {
            let scope = match scope_spans.scope {
                Some(scope) => InstrumentationScope::builder(scope.name)
                    .with_version(scope.version)
                    .build(),
                None => InstrumentationScope::builder("").build(),
            };
            for one in scope_spans.spans {
                let index = spans.len();
                spans.push(span_record(one, index, &service, &scope)?);
            }
        }
    }
    Ok(spans)
}

fn span_record(
    span: Span,
    index: usize,
    service: &Arc<str>,
    scope: &InstrumentationScope,
) -> Result<SpanRecord, DecodeError> {
    let bad = |field| DecodeError::BadId { span: index, field };
    let trace_id = trace_id(&span.trace_id).ok_or(bad("trace_id"))?;
    let span_id = span_id(&span.span_id).ok_or(bad("span_id"))?;
    let parent_span_id = if span.parent_span_id.is_empty() {
        SpanId::INVALID
    } else {
        span_id_or_zero(&span.parent_span_id).ok_or(bad("parent_span_id"))?
    };
    let kind = match span::SpanKind::try_from(span.kind) {
        Ok(span::SpanKind::Server) => SpanKind::Server,
        Ok(span::SpanKind::Client) => SpanKind::Client,
        Ok(span::SpanKind::Producer) => SpanKind::Producer,
        Ok(span::SpanKind::Consumer) => SpanKind::Consumer,
        _ => SpanKind::Internal,
    };
    let status = match span.status {
        Some(s) => match status::StatusCode::try_from(s.code) {
            Ok(status::StatusCode::Error) => Status::Error {
                description: Cow::Owned(s.message),
            },
            Ok(status::StatusCode::Ok) => Status::Ok,
            _ => Status::Unset,
        },
        None => Status::Unset,
    };
    let start_time = time(span.start_time_unix_nano);
    let end_time = time(span.end_time_unix_nano).max(start_time);
    let events = span
        .events
        .into_iter()
        .map(|e| {
            Event::new(
                e.name,
                time(e.time_unix_nano),
                attributes(e.attributes),
                e.dropped_attributes_count,
            )
        })
        .collect();
    let links = span
        .links
        .into_iter()
        .filter_map(|l| {
            Some(Link {
                span_context: SpanContext::new(
                    trace_id_or_zero(&l.trace_id)?,
                    span_id_or_zero(&l.span_id)?,
                    TraceFlags::new((l.flags & 0xff) as u8),
                    true,
                    TraceState::NONE,
                ),
                attributes: attributes(l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
            })
        })
        .collect();
    Ok(SpanRecord {
        span_context: SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::new((span.flags & 0xff) as u8),
            false,
            TraceState::NONE,
        ),
        parent_span_id,
        parent_is_remote: span.flags & FLAG_HAS_IS_REMOTE != 0 && span.flags & FLAG_IS_REMOTE != 0,
        name: Cow::Owned(span.name),
        kind,
        start_time,
        end_time,
        attributes: attributes(span.attributes),
        dropped_attributes_count: span.dropped_attributes_count,
        events,
        dropped_events_count: span.dropped_events_count,
        links,
        dropped_links_count: span.dropped_links_count,
        status,
        service_name: service.clone(),
        scope: scope.clone(),
    })
}

fn time(unix_nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(unix_nanos)
}

fn trace_id_or_zero(bytes: &[u8]) -> Option<TraceId> {
    Some(TraceId::from_bytes(bytes.try_into().ok()?))
}

fn span_id_or_zero(bytes: &[u8]) -> Option<SpanId> {
    Some(SpanId::from_bytes(bytes.try_into().ok()?))
}

fn trace_id(bytes: &[u8]) -> Option<TraceId> {
    trace_id_or_zero(bytes).filter(|id| *id != TraceId::INVALID)
}

fn span_id(bytes: &[u8]) -> Option<SpanId> {
    span_id_or_zero(bytes).filter(|id| *id != SpanId::INVALID)
}

fn attributes(list: Vec<ProtoKeyValue>) -> Vec<KeyValue> {
    list.into_iter()
        .map(|kv| KeyValue::new(kv.key, value(kv.value)))
        .collect()
}

fn value(v: Option<AnyValue>) -> Value {
    match v.and_then(|v| v.value) {
        Some(any_value::Value::StringValue(s)) => Value::String(s.into()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
        Some(any_value::Value::IntValue(i)) => Value::I64(i),
        Some(any_value::Value::DoubleValue(d)) => Value::F64(d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(
            a.values
                .into_iter()
                .map(|v| StringValue::from(display(value(Some(v)))))
                .collect::<Vec<_>>()
                .into(),
        ),
        Some(any_value::Value::KvlistValue(list)) => Value::String(
            list.values
                .into_iter()
                .map(|kv| format!("{}={}", kv.key, display(value(kv.value))))
                .collect::<Vec<_>>()
                .join(", ")
                .into(),
        ),
        Some(any_value::Value::BytesValue(bytes)) => Value::String(
            bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into(),
        ),
        Some(any_value::Value::StringValueStrindex(_)) | None => Value::String("".into()),
    }
}

fn display(v: Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type("Application/JSON; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }

    /// Field `tag` holding `inner`, length-delimited, as protobuf writes it.
    fn field(tag: u64, inner: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for mut value in [tag << 3 | 2, inner.len() as u64] {
            while value >= 0x80 {
                out.push(value as u8 | 0x80);
                value >>= 7;
            }
            out.push(value as u8);
        }
        out.extend_from_slice(inner);
        out
    }

    /// A request of one span whose fields are `span_fields` (after its ids).
    fn one_span(span_fields: &[u8]) -> Vec<u8> {
        let mut span = field(1, &[1; 16]);
        span.extend(field(2, &[2; 8]));
        span.extend_from_slice(span_fields);
        field(1, &field(2, &field(2, &span)))
    }

    #[test]
    fn bodies_of_many_tiny_elements_are_refused_before_decoding() {
        // Two bytes an empty event (field 11) or attribute (field 9), 4 MiB in all.
        for tag in [0x5a, 0x4a] {
            let body = one_span(&[tag, 0].repeat(2 << 20));
            let elements = protobuf_elements(&body);
            assert!(elements > MAX_ELEMENTS, "{elements}");
            assert!(matches!(
                decode(&body, Encoding::Protobuf),
                Err(DecodeError::TooManyElements)
            ));
        }
        // Values nested in array values, deeper than the span.
        let array = [0x0a, 0].repeat(MAX_ELEMENTS);
        let attribute = field(9, &field(2, &field(5, &array)));
        assert!(protobuf_elements(&one_span(&attribute)) > MAX_ELEMENTS);
        let json = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{}","spanId":"{}","events":[{}{{}}]}}]}}]}}]}}"#,
            "01".repeat(16),
            "02".repeat(8),
            "{},".repeat(MAX_ELEMENTS),
        );
        assert!(matches!(
            decode(json.as_bytes(), Encoding::Json),
            Err(DecodeError::TooManyElements)
        ));
    }

    #[test]
    fn real_requests_of_four_mib_are_within_the_bound() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
        // Spans as an HTTP server exports them: twelve attributes, with keys and values of
        // the usual lengths.
        let attribute = |key: &str, value: &str| ProtoKeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        };
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            name: "GET /users/{id}".into(),
            attributes: (0..12)
                .map(|i| attribute(&format!("http.attribute.{i:02}"), "value of 12"))
                .collect(),
            ..Default::default()
        };
        // With the field's tag and length in front.
        let per_span = span.encoded_len() + 4;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span; (4 << 20) / per_span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = request.encode_to_vec();
        assert!(body.len() <= 4 << 20, "{}", body.len());
        assert!(protobuf_elements(&body) <= MAX_ELEMENTS);
        let spans = decode(&body, Encoding::Protobuf).unwrap();
        assert_eq!(spans.len(), (4 << 20) / per_span);
        // The same spans in JSON, cut to 4 MiB of text.
        let json = serde_json::to_vec(&request).unwrap();
        let json = &json[..json.len().min(4 << 20)];
        assert!(json_elements(json) <= MAX_ELEMENTS);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert!(decode(b"\xff\xff\xff", Encoding::Protobuf).is_err());
        assert!(decode(b"{\"resourceSpans\": 3}", Encoding::Json).is_err());
        let short_id = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"ab","spanId":"0102030405060708","name":"x"}]}]}]}"#;
        let error = decode(short_id.as_bytes(), Encoding::Json).unwrap_err();
        assert_eq!(error.to_string(), "span 0: invalid trace_id");
    }
}
