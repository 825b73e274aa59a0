//! Id generation: a thread-local generator (`fastrand`'s wyrand), so no lock and no
//! syscall per id. Seeded per thread from the standard library's random hasher keys.

use crate::context::{SpanId, TraceId};

/// A random trace id, never all-zero. All 16 bytes are random, so new roots may carry the
/// W3C Level 2 `random` flag, which promises 7 random bytes on the right.
pub(crate) fn new_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return TraceId::from(id);
        }
    }
}

/// A random span id, never all-zero.
pub(crate) fn new_span_id() -> SpanId {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return SpanId::from(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_non_zero_and_distinct() {
        let traces: HashSet<_> = (0..10_000).map(|_| new_trace_id()).collect();
        let spans: HashSet<_> = (0..10_000).map(|_| new_span_id()).collect();
        assert_eq!(traces.len(), 10_000);
        assert_eq!(spans.len(), 10_000);
        assert!(!traces.contains(&TraceId::INVALID));
        assert!(!spans.contains(&SpanId::INVALID));
    }

    #[test]
    fn threads_draw_different_ids() {
        let a = std::thread::spawn(new_trace_id).join().unwrap();
        let b = std::thread::spawn(new_trace_id).join().unwrap();
        assert_ne!(a, b);
    }
}
