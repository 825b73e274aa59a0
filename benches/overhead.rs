//! Per-request overhead of tracewire's server layer and recorder over the bare service, on an
//! in-memory `GET /users/{id}` axum request carrying a `traceparent`.
//!
//! ```sh
//! cargo bench --bench overhead
//! ```
//!
//! Prints allocations per request (counted by a global allocator, background threads
//! included) before the timings; compare each case with `bare` from the same run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tracewire::record::{Recorder, SpanRecord};
use tracewire::report::{RecorderGuard, Reporter};
use tracewire::ServerLayer;
use tracing_subscriber::layer::SubscriberExt;

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; the counter never affects
// the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

async fn user(Path(id): Path<u64>) -> String {
    format!("user {id}")
}

fn router() -> Router {
    Router::new().route("/users/{id}", get(user))
}

/// The router as `axum::serve` runs it: state applied once, routes finalized.
fn finalize(router: Router) -> Router {
    router.with_state(())
}

/// Drives a future that never waits on I/O (an in-memory request) to completion.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// One request through `app`, body read to the end (which is what ends the server span).
fn request(app: &Router, traceparent: &str) {
    let request = http::Request::get("/users/42")
        .header("traceparent", traceparent)
        .body(Body::empty())
        .unwrap();
    run(async {
        let response = app.clone().oneshot(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap();
        std::hint::black_box(body);
    });
}

/// Drops spans, counting them so the bench can check every span arrived.
#[derive(Clone, Default)]
struct CountSpans(Arc<AtomicU64>);

impl Reporter for CountSpans {
    fn report(&mut self, batch: &[SpanRecord]) {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

struct Case {
    name: &'static str,
    app: Router,
    traceparent: &'static str,
    subscriber: Option<tracing::Dispatch>,
    /// Spans each request must produce, and where they are counted.
    check: Option<(u64, CountSpans, RecorderGuard)>,
}

fn tracewire_case(name: &'static str, traceparent: &'static str, spans_per_request: u64) -> Case {
    let spans = CountSpans::default();
    let (recorder, guard) = Recorder::builder()
        .service_name("bench")
        .queue_capacity(1 << 16)
        .reporter(spans.clone())
        .build();
    Case {
        name,
        app: finalize(router().layer(ServerLayer::new())),
        traceparent,
        subscriber: Some(tracing::Dispatch::new(
            tracing_subscriber::registry().with(recorder),
        )),
        check: Some((spans_per_request, spans, guard)),
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "bare",
            app: finalize(router()),
            traceparent: SAMPLED,
            subscriber: None,
            check: None,
        },
        tracewire_case("tracewire_sampled", SAMPLED, 1),
        tracewire_case("tracewire_unsampled", UNSAMPLED, 0),
    ]
}

fn with_case<R>(case: &Case, f: impl FnOnce() -> R) -> R {
    match &case.subscriber {
        Some(dispatch) => tracing::dispatcher::with_default(dispatch, f),
        None => f(),
    }
}

/// Checks the case really records, then prints its allocations per request.
fn verify_and_count(case: &Case) {
    const N: u64 = 1000;
    with_case(case, || {
        for _ in 0..N {
            request(&case.app, case.traceparent);
        }
    });
    if let Some((per_request, spans, guard)) = &case.check {
        guard.flush().unwrap();
        let got = spans.0.swap(0, Ordering::SeqCst);
        assert_eq!(
            got,
            per_request * N,
            "{}: every span must reach the reporter",
            case.name
        );
        assert_eq!(guard.stats().spans_dropped, 0, "{}", case.name);
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    with_case(case, || {
        for _ in 0..N {
            request(&case.app, case.traceparent);
        }
    });
    if let Some((_, _, guard)) = &case.check {
        // The worker's share of the work counts too.
        guard.flush().unwrap();
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    println!(
        "allocations/request {:<24} {:>6.1}",
        case.name,
        (after - before) as f64 / N as f64
    );
}

fn overhead(c: &mut Criterion) {
    let cases = cases();
    for case in &cases {
        verify_and_count(case);
    }
    let mut group = c.benchmark_group("server_request");
    for case in &cases {
        with_case(case, || {
            group.bench_function(case.name, |b| {
                b.iter(|| request(&case.app, case.traceparent))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
