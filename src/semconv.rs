//! Attribute keys and special field names.
//!
//! Attribute keys are the stable OpenTelemetry semantic conventions, taken from
//! `opentelemetry-semantic-conventions` where it has them; the `otel.*` field names are the
//! ones code written for `tracing-opentelemetry` already uses.

/// Field renaming a span (`otel.name = "GET /users/{id}"`).
pub const OTEL_NAME: &str = "otel.name";
/// Field setting the span kind: `server`, `client`, `producer`, `consumer`, `internal`.
pub const OTEL_KIND: &str = "otel.kind";
/// Field setting the status: `ok`, `error` or `unset` (any case).
pub const OTEL_STATUS_CODE: &str = "otel.status_code";
/// Field setting the error status message.
pub const OTEL_STATUS_MESSAGE: &str = "otel.status_message";
/// Field (on a span or an event) recorded as an `exception` event.
pub const ERROR_FIELD: &str = "error";
/// The message field of a `tracing` event, which becomes the span event's name.
pub const MESSAGE_FIELD: &str = "message";

/// Name of the span event recording an exception.
pub const EXCEPTION_EVENT: &str = "exception";

#[doc(inline)]
pub use opentelemetry_semantic_conventions::attribute::{
    CLIENT_ADDRESS, CLIENT_PORT, ERROR_TYPE, EXCEPTION_MESSAGE, EXCEPTION_TYPE,
    HTTP_REQUEST_METHOD, HTTP_REQUEST_METHOD_ORIGINAL, HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT,
    NETWORK_PROTOCOL_VERSION, SERVER_ADDRESS, SERVER_PORT, URL_FULL, URL_PATH, URL_QUERY,
    URL_SCHEME, USER_AGENT_ORIGINAL,
};

// The RPC keys below are those of the RPC conventions that backends (Jaeger, Tempo, the
// Collector's span metrics) key their gRPC views on. Semantic conventions 1.37 renamed some
// of them (`rpc.system.name`, a string `rpc.response.status_code`, `rpc.service` folded into
// `rpc.method`); tracewire keeps these until backends follow.

/// `rpc.system`: `grpc`.
pub const RPC_SYSTEM: &str = "rpc.system";
/// `rpc.service`: the full service name, `package.Service`.
pub const RPC_SERVICE: &str = "rpc.service";
/// `rpc.method_original`: the method the caller named, when `rpc.method` is `_OTHER`.
pub const RPC_METHOD_ORIGINAL: &str = "rpc.method_original";
/// `rpc.method`: the method name, `Method`.
pub const RPC_METHOD: &str = "rpc.method";
/// `rpc.grpc.status_code`: the gRPC status code, an integer.
pub const RPC_GRPC_STATUS_CODE: &str = "rpc.grpc.status_code";
/// Name of the optional per-message span events.
pub const RPC_MESSAGE_EVENT: &str = "rpc.message";
/// `rpc.message.type`: `SENT` or `RECEIVED`.
pub const RPC_MESSAGE_TYPE: &str = "rpc.message.type";
/// `rpc.message.id`: the message's sequence number in its direction, from 1.
pub const RPC_MESSAGE_ID: &str = "rpc.message.id";
/// `rpc.message.compressed_size`: a compressed message's size, in bytes, as framed.
pub const RPC_MESSAGE_COMPRESSED_SIZE: &str = "rpc.message.compressed_size";
/// `rpc.message.uncompressed_size`: an uncompressed message's size, in bytes.
pub const RPC_MESSAGE_UNCOMPRESSED_SIZE: &str = "rpc.message.uncompressed_size";
/// Prefix of captured gRPC request metadata: `rpc.grpc.request.metadata.<key>`.
pub const RPC_GRPC_REQUEST_METADATA_PREFIX: &str = "rpc.grpc.request.metadata.";
/// Prefix of captured gRPC response metadata (headers and trailers):
/// `rpc.grpc.response.metadata.<key>`.
pub const RPC_GRPC_RESPONSE_METADATA_PREFIX: &str = "rpc.grpc.response.metadata.";

/// The `network.protocol.version` values, then `_OTHER`.
pub(crate) const PROTOCOL_VERSIONS: [&str; 6] = ["0.9", "1.0", "1.1", "2", "3", "_OTHER"];

/// The index of `version` in [`PROTOCOL_VERSIONS`].
pub(crate) fn protocol_version_index(version: http::Version) -> u8 {
    use http::Version;
    match version {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_11 => 2,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => 5,
    }
}
