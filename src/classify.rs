//! Outcome to span status: the one place for the rules.
//!
//! - HTTP server: 5xx is Error, 4xx and below leave the status Unset.
//! - HTTP client: 4xx and 5xx are Error.
//! - gRPC server: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and
//!   DATA_LOSS are Error; other codes leave it Unset.
//! - gRPC client: every code but OK is Error.
//! - An `Err` from the inner service, a failed body or a cancelled request is Error.

use std::time::Instant;

/// `error.type` of a request cancelled before its response, or its response body, was
/// complete (the client went away, or the caller dropped the future).
pub const CANCELLED: &str = "cancelled";

/// What the response had told of a call when it was abandoned.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AnswerSoFar {
    Grpc {
        /// A `grpc-status` was read, or concluded from the HTTP status.
        status_seen: bool,
        /// When the call's `grpc-timeout` ran out.
        deadline: Option<Instant>,
    },
    Http {
        /// The response's status code, if its head arrived.
        status: Option<u16>,
    },
}

/// How a call abandoned before its end (its response future or body dropped) ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abandoned {
    /// As the response said: a gRPC status, or an HTTP status that is an error (a client
    /// that gives up on the body of an error response, as retry middleware does, did not
    /// cancel a successful call).
    AsAnswered,
    /// A gRPC call without a status, past its deadline: DEADLINE_EXCEEDED.
    DeadlineExceeded,
    /// `error.type` `cancelled`; a gRPC call, CANCELLED.
    Cancelled,
}

/// How an abandoned call ends, on its span and in its metrics alike (the conventions give
/// both the same `error.type`).
pub(crate) fn abandoned(role: Role, answer: AnswerSoFar) -> Abandoned {
    match answer {
        AnswerSoFar::Grpc {
            status_seen: true, ..
        } => Abandoned::AsAnswered,
        AnswerSoFar::Grpc {
            status_seen,
            deadline,
        } if deadline_exceeded(status_seen, deadline) => Abandoned::DeadlineExceeded,
        AnswerSoFar::Http { status: Some(code) } if http_status_is_error(role, code) => {
            Abandoned::AsAnswered
        }
        _ => Abandoned::Cancelled,
    }
}

/// A gRPC call that failed or was abandoned ended DEADLINE_EXCEEDED: no status came, and its
/// deadline has passed. On its span and in its metrics alike.
pub(crate) fn deadline_exceeded(status_seen: bool, deadline: Option<Instant>) -> bool {
    !status_seen && deadline.is_some_and(|d| Instant::now() >= d)
}

/// Which side of a call a span describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Server,
    Client,
}

/// An HTTP response status is an error for this role.
pub(crate) fn http_status_is_error(role: Role, code: u16) -> bool {
    match role {
        Role::Server => code >= 500,
        Role::Client => code >= 400,
    }
}

/// A gRPC status code is an error for this role.
pub(crate) fn grpc_code_is_error(role: Role, code: i32) -> bool {
    match role {
        // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
        Role::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
        Role::Client => code != 0,
    }
}

/// An abandoned call ([`Abandoned::Cancelled`]) is an error for this role: always but on a
/// gRPC server, where CANCELLED (the caller gave up) is outside the conventions' error codes.
pub(crate) fn cancelled_is_error(role: Role, grpc: bool) -> bool {
    !grpc || grpc_code_is_error(role, CANCELLED_CODE)
}

/// gRPC's CANCELLED.
pub(crate) const CANCELLED_CODE: i32 = 1;

/// A gRPC status code as spans and metrics name it (`rpc.response.status_code`,
/// `error.type`): its canonical name, or `_OTHER` for a code outside 0..=16, which the peer
/// picks without bound.
pub(crate) fn grpc_code_label(code: i32) -> &'static str {
    grpc_code_name(code).unwrap_or("_OTHER")
}

/// The canonical name of a gRPC status code, `None` for codes outside 0..=16.
pub fn grpc_code_name(code: i32) -> Option<&'static str> {
    Some(match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_rules() {
        for (code, server, client) in [
            (200, false, false),
            (302, false, false),
            (404, false, true),
            (499, false, true),
            (500, true, true),
            (503, true, true),
        ] {
            assert_eq!(http_status_is_error(Role::Server, code), server, "{code}");
            assert_eq!(http_status_is_error(Role::Client, code), client, "{code}");
        }
    }

    #[test]
    fn grpc_rules() {
        let server_errors: Vec<i32> = (0..=16)
            .filter(|c| grpc_code_is_error(Role::Server, *c))
            .collect();
        assert_eq!(server_errors, [2, 4, 12, 13, 14, 15]);
        let client_errors: Vec<i32> = (0..=16)
            .filter(|c| grpc_code_is_error(Role::Client, *c))
            .collect();
        assert_eq!(client_errors, (1..=16).collect::<Vec<_>>());
        assert_eq!(grpc_code_name(14), Some("UNAVAILABLE"));
        assert_eq!(grpc_code_name(4), Some("DEADLINE_EXCEEDED"));
        assert_eq!(grpc_code_name(17), None);
        assert_eq!(grpc_code_name(-1), None);
    }
}
