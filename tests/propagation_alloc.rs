//! Heap allocations on the propagation hot paths, counted by a test-only global allocator
//! that forwards to the system allocator and counts per thread (tests run on their own
//! threads). It is not `tests/heap`'s allocator, which counts live bytes across all threads:
//! a count shared by the tests running beside this one could not say what one call allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use http::{HeaderMap, HeaderValue};
use tracewire::baggage::Baggage;
use tracewire::propagation::{
    format_traceparent, parse_traceparent, traceparent_header_value, Propagator,
    TraceContextPropagator, W3cPropagator,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator, so `System`'s guarantees
// hold for the memory returned. The count is a `const`-initialised `Cell<usize>` thread-local:
// it has no destructor and its access never allocates, so counting cannot re-enter the
// allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (ALLOCATIONS.with(Cell::get) - before, out)
}

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";

#[test]
fn extracting_a_traceparent_allocates_nothing() {
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_static(TP));
    headers.insert("user-agent", HeaderValue::from_static("test"));

    let (n, cx) = allocations(|| parse_traceparent(TP.as_bytes()));
    assert_eq!(n, 0);
    let cx = cx.unwrap();
    let (n, _) = allocations(|| format_traceparent(&cx));
    assert_eq!(n, 0);

    let (n, extracted) = allocations(|| TraceContextPropagator.extract(&headers));
    assert_eq!(n, 0);
    assert!(extracted.span_context.is_some());
    let (n, extracted) = allocations(|| W3cPropagator.extract(&headers));
    assert_eq!(n, 0, "no baggage, no tracestate: nothing to allocate");
    assert!(extracted.span_context.is_some());
    drop(extracted);

    headers.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
    let (n, extracted) = allocations(|| W3cPropagator.extract(&headers));
    assert!(n > 0, "a tracestate is stored");
    assert_eq!(
        extracted.span_context.unwrap().trace_state.header(),
        "congo=t61rcWkgMzE"
    );
}

#[test]
fn injecting_a_traceparent_allocates_its_header_value_only() {
    let cx = parse_traceparent(TP.as_bytes()).unwrap();
    let (n, value) = allocations(|| traceparent_header_value(&cx));
    assert_eq!(n, 1);
    assert_eq!(value, TP);

    let mut headers = HeaderMap::with_capacity(8);
    let baggage = Baggage::new();
    let (n, ()) = allocations(|| W3cPropagator.inject(&cx, &baggage, &mut headers));
    assert_eq!(n, 1, "one header value; no tracestate, no baggage");
    assert_eq!(headers["traceparent"], TP);
}
