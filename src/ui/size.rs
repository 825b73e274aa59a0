//! What the viewer's data takes in memory, counted on the high side so that the byte bound
//! holds for the memory really in use, not for an estimate of the strings alone.
//!
//! Every heap allocation is counted as the allocator hands it out: the bytes asked for
//! (with a vector's spare capacity), plus a 16-byte header, rounded up to 16 (glibc's
//! `malloc` takes the size plus 8, rounded up to 16, at least 32). Strings that may be
//! shared (`Arc<str>` service names, keys and values that may be static) are counted as if
//! each span owned a copy: over-counting only makes the bound hold earlier.

use std::borrow::Cow;
use std::mem::size_of;

use crate::span::{Event, KeyValue, Link, SpanRecord, Status, StringValue, Value};

/// The allocator's footprint for an allocation of `bytes`; nothing for none.
pub(crate) fn alloc(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes + 16 + 15) & !15
    }
}

/// A vector's buffer of `capacity` items of `T`.
pub(crate) fn vec_of<T>(capacity: usize) -> usize {
    alloc(capacity.saturating_mul(size_of::<T>()))
}

/// A `HashMap`/`HashSet` table that can hold `capacity` entries of `T` without growing:
/// hashbrown keeps 1/8 of its buckets free, buckets are a power of two, and each has a
/// control byte.
pub(crate) fn table_of<T>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity.saturating_mul(8) / 7 + 1).next_power_of_two();
    alloc(buckets.saturating_mul(size_of::<T>() + 1) + 16)
}

/// A string that may live on the heap (or be shared behind an `Arc` header).
fn text(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        alloc(len + 16)
    }
}

// Clippy would take a `&str`, which cannot tell borrowed from owned.
#[allow(clippy::ptr_arg)]
fn cow(value: &Cow<'static, str>) -> usize {
    match value {
        Cow::Borrowed(_) => 0,
        Cow::Owned(s) => alloc(s.len()),
    }
}

fn value(value: &Value) -> usize {
    use opentelemetry::Array;
    match value {
        Value::String(s) => text(s.as_str().len()),
        Value::Array(Array::String(v)) => {
            vec_of::<StringValue>(v.len()) + v.iter().map(|s| text(s.as_str().len())).sum::<usize>()
        }
        Value::Array(Array::Bool(v)) => vec_of::<bool>(v.len()),
        Value::Array(Array::I64(v)) => vec_of::<i64>(v.len()),
        Value::Array(Array::F64(v)) => vec_of::<f64>(v.len()),
        _ => 0,
    }
}

fn attributes(list: &[KeyValue]) -> usize {
    vec_of::<KeyValue>(list.len())
        + list
            .iter()
            .map(|kv| text(kv.key.as_str().len()) + value(&kv.value))
            .sum::<usize>()
}

/// The heap memory `span` owns, beyond the `SpanRecord` itself (which lives in its trace's
/// vector). Lengths stand for capacities: the store holds clones, whose vectors and
/// strings are allocated to their length, and the count of a span must not change when it
/// is cloned (it is added when a span goes into the assembler and taken away when its
/// clone comes out).
pub(crate) fn span_heap(span: &SpanRecord) -> usize {
    let events: usize = vec_of::<Event>(span.events.len())
        + span
            .events
            .iter()
            .map(|e| cow(&e.name) + attributes(&e.attributes))
            .sum::<usize>();
    let links: usize = vec_of::<Link>(span.links.len())
        + span
            .links
            .iter()
            .map(|l| text(l.span_context.trace_state.header().len()) + attributes(&l.attributes))
            .sum::<usize>();
    let status = match &span.status {
        Status::Error { description } => cow(description),
        _ => 0,
    };
    let scope = &span.scope;
    let scope = text(scope.name().len())
        + text(scope.version().map_or(0, str::len))
        + text(scope.schema_url().map_or(0, str::len))
        + scope
            .attributes()
            .map(|kv| size_of::<KeyValue>() + text(kv.key.as_str().len()) + value(&kv.value))
            .sum::<usize>();
    cow(&span.name)
        + text(span.span_context.trace_state.header().len())
        + attributes(&span.attributes)
        + events
        + links
        + status
        + text(span.service_name.len())
        + scope
}

/// A span waiting in the assembler: its heap, its slot in the trace's vector (which grows
/// by doubling, so up to two slots), and its id in the trace's id set (likewise).
pub(crate) fn assembling(span: &SpanRecord) -> usize {
    span_heap(span) + 2 * size_of::<SpanRecord>() + 2 * (size_of::<u64>() + 1) * 8 / 7 + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{KeyValue, SpanRecord};

    #[test]
    fn allocations_round_up_with_a_header() {
        assert_eq!(alloc(0), 0);
        assert_eq!(alloc(1), 32);
        assert_eq!(alloc(16), 32);
        assert_eq!(alloc(17), 48);
        assert_eq!(vec_of::<u64>(3), 48);
        // 7 entries fit in 8 buckets; 8 need 16.
        assert_eq!(table_of::<u64>(7), alloc(16 * 9 + 16));
        assert_eq!(table_of::<u64>(6), alloc(8 * 9 + 16));
    }

    #[test]
    fn a_span_counts_what_it_owns() {
        let bare = SpanRecord::for_test(1, 1, 0);
        let mut span = bare.clone();
        span.attributes
            .push(KeyValue::new("payload", "x".repeat(1000)));
        assert!(span_heap(&span) >= span_heap(&bare) + 1000 + "payload".len());
        span.status = Status::error("y".repeat(500));
        assert!(span_heap(&span) >= span_heap(&bare) + 1500);
    }

    #[test]
    fn a_clone_counts_the_same_as_its_original() {
        let mut span = SpanRecord::for_test(1, 1, 0);
        span.attributes = Vec::with_capacity(64);
        span.attributes.push(KeyValue::new("k", "v"));
        let mut name = String::with_capacity(100);
        name.push_str("GET /");
        span.name = name.into();
        assert_eq!(span_heap(&span), span_heap(&span.clone()));
        assert_eq!(assembling(&span), assembling(&span.clone()));
    }
}
