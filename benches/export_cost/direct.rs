//! A prototype, for measurement only: an OTLP/gRPC `SpanExporter` that writes the protobuf
//! of `ExportTraceServiceRequest` straight from `SpanData` in one pass (no intermediate
//! `opentelemetry-proto` messages, no copy of the batch, each length computed once) and sends
//! the bytes with tonic. No retry, no compression, no TLS, no headers. `check` compares its
//! bytes, decoded, with what `opentelemetry-proto`'s transform makes of the same batch.

use bytes::{BufMut, Bytes};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct DirectExporter {
    client: tonic::client::Grpc<tonic::transport::Channel>,
    /// The encoded `Resource` message, set by `set_resource`.
    resource: Vec<u8>,
}

impl std::fmt::Debug for DirectExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectExporter")
    }
}

impl DirectExporter {
    /// Must be called inside a tokio runtime.
    pub fn new(endpoint: &str) -> Result<Self, tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?.connect_lazy();
        Ok(DirectExporter {
            client: tonic::client::Grpc::new(channel),
            resource: Vec::new(),
        })
    }
}

impl SpanExporter for DirectExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = Bytes::from(encode_request(&self.resource, &batch));
        drop(batch);
        let mut client = self.client.clone();
        client
            .ready()
            .await
            .map_err(|e| OTelSdkError::InternalFailure(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        );
        client
            .unary::<Bytes, (), _>(tonic::Request::new(body), path, RawCodec)
            .await
            .map(|_| ())
            .map_err(|status| OTelSdkError::InternalFailure(status.to_string()))
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        let mut out = Vec::new();
        for (key, value) in resource.iter() {
            message(&mut out, 1, |out| key_value(out, key.as_str(), value));
        }
        self.resource = out;
    }
}

/// Sends pre-encoded bytes; reads the response as nothing.
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf;
        let n = src.remaining();
        src.advance(n);
        Ok(Some(()))
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    if !b.is_empty() {
        tag(out, field, 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, 0);
        varint(out, v);
    }
}

fn fixed64_field(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32_field(out: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        tag(out, field, 5);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A nested message: written after a one-byte length, moved right if the length needs more.
fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(out, field, 2);
    let at = out.len();
    out.push(0);
    body(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        varint(&mut prefix, len as u64);
        let extra = prefix.len() - 1;
        out.resize(out.len() + extra, 0);
        out.copy_within(at + 1..at + 1 + len, at + 1 + extra);
        out[at..at + prefix.len()].copy_from_slice(&prefix);
    }
}

fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => {
            tag(out, 2, 0);
            varint(out, u64::from(*b));
        }
        Value::I64(i) => {
            tag(out, 3, 0);
            varint(out, *i as u64);
        }
        Value::F64(f) => {
            tag(out, 4, 1);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::String(s) => {
            tag(out, 1, 2);
            varint(out, s.as_str().len() as u64);
            out.extend_from_slice(s.as_str().as_bytes());
        }
        Value::Array(array) => message(out, 5, |out| match array {
            Array::Bool(v) => v.iter().for_each(|x| {
                message(out, 1, |out| any_value(out, &Value::Bool(*x)));
            }),
            Array::I64(v) => v.iter().for_each(|x| {
                message(out, 1, |out| any_value(out, &Value::I64(*x)));
            }),
            Array::F64(v) => v.iter().for_each(|x| {
                message(out, 1, |out| any_value(out, &Value::F64(*x)));
            }),
            Array::String(v) => v.iter().for_each(|x| {
                message(out, 1, |out| any_value(out, &Value::String(x.clone())));
            }),
            _ => {}
        }),
        _ => {}
    }
}

fn key_value(out: &mut Vec<u8>, key: &str, value: &Value) {
    bytes_field(out, 1, key.as_bytes());
    message(out, 2, |out| any_value(out, value));
}

fn attributes(out: &mut Vec<u8>, field: u32, kvs: &[KeyValue]) {
    for kv in kvs {
        message(out, field, |out| key_value(out, kv.key.as_str(), &kv.value));
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn flags(remote: bool, base: u8) -> u32 {
    u32::from(base) | 0x100 | if remote { 0x200 } else { 0 }
}

fn span(out: &mut Vec<u8>, s: &SpanData) {
    bytes_field(out, 1, &s.span_context.trace_id().to_bytes());
    bytes_field(out, 2, &s.span_context.span_id().to_bytes());
    bytes_field(out, 3, s.span_context.trace_state().header().as_bytes());
    if s.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        bytes_field(out, 4, &s.parent_span_id.to_bytes());
    }
    bytes_field(out, 5, s.name.as_bytes());
    let kind = match s.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    varint_field(out, 6, kind);
    fixed64_field(out, 7, nanos(s.start_time));
    fixed64_field(out, 8, nanos(s.end_time));
    attributes(out, 9, &s.attributes);
    varint_field(out, 10, u64::from(s.dropped_attributes_count));
    for event in s.events.iter() {
        message(out, 11, |out| {
            fixed64_field(out, 1, nanos(event.timestamp));
            bytes_field(out, 2, event.name.as_bytes());
            attributes(out, 3, &event.attributes);
            varint_field(out, 4, u64::from(event.dropped_attributes_count));
        });
    }
    varint_field(out, 12, u64::from(s.events.dropped_count));
    for link in s.links.iter() {
        message(out, 13, |out| {
            bytes_field(out, 1, &link.span_context.trace_id().to_bytes());
            bytes_field(out, 2, &link.span_context.span_id().to_bytes());
            bytes_field(out, 3, link.span_context.trace_state().header().as_bytes());
            attributes(out, 4, &link.attributes);
            varint_field(out, 5, u64::from(link.dropped_attributes_count));
            fixed32_field(
                out,
                6,
                flags(
                    link.span_context.is_remote(),
                    link.span_context.trace_flags().to_u8(),
                ),
            );
        });
    }
    varint_field(out, 14, u64::from(s.links.dropped_count));
    message(out, 15, |out| match &s.status {
        Status::Unset => {}
        Status::Ok => varint_field(out, 3, 1),
        Status::Error { description } => {
            bytes_field(out, 2, description.as_bytes());
            varint_field(out, 3, 2);
        }
    });
    fixed32_field(
        out,
        16,
        flags(
            s.parent_span_is_remote,
            s.span_context.trace_flags().to_u8(),
        ),
    );
}

/// `ExportTraceServiceRequest` of one resource, spans grouped by scope in order of first
/// appearance (as `group_spans_by_resource_and_scope` does).
pub fn encode_request(resource: &[u8], batch: &[SpanData]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + batch.len() * 512);
    let mut scopes: Vec<&opentelemetry::InstrumentationScope> = Vec::new();
    for s in batch {
        if !scopes.contains(&&s.instrumentation_scope) {
            scopes.push(&s.instrumentation_scope);
        }
    }
    message(&mut out, 1, |out| {
        message(out, 1, |out| out.extend_from_slice(resource));
        for scope in &scopes {
            message(out, 2, |out| {
                message(out, 1, |out| {
                    bytes_field(out, 1, scope.name().as_bytes());
                    bytes_field(out, 2, scope.version().unwrap_or_default().as_bytes());
                    let kvs: Vec<KeyValue> = scope.attributes().cloned().collect();
                    attributes(out, 3, &kvs);
                });
                for s in batch.iter().filter(|s| &s.instrumentation_scope == *scope) {
                    message(out, 2, |out| span(out, s));
                }
                bytes_field(out, 3, scope.schema_url().unwrap_or_default().as_bytes());
            });
        }
    });
    out
}

/// Decodes `encode_request`'s bytes for `batch` and compares them with
/// `opentelemetry-proto`'s transform of the same batch.
pub fn check(resource: &opentelemetry_sdk::Resource, batch: Vec<SpanData>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use prost::Message;
    let mut encoded_resource = Vec::new();
    for (key, value) in resource.iter() {
        message(&mut encoded_resource, 1, |out| {
            key_value(out, key.as_str(), value)
        });
    }
    let ours = encode_request(&encoded_resource, &batch);
    let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).expect("decodes");
    let theirs = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            batch,
            &ResourceAttributesWithSchema::from(resource),
        ),
    };
    assert_eq!(decoded, theirs, "the direct encoding differs");
}
