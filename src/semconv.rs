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
pub use opentelemetry_semantic_conventions::attribute::{EXCEPTION_MESSAGE, EXCEPTION_TYPE};
