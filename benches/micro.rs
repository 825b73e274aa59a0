//! Micro-benchmarks, each against the opentelemetry equivalent in the same run:
//!
//! - `traceparent` extract from a 3-header map, and inject;
//! - `tracestate` and `baggage` parsing;
//! - the recorder's cost per `#[instrument]` child span, against tracing-opentelemetry with
//!   the SDK (batch processor, exporter that drops).
//!
//! ```sh
//! cargo bench --bench micro
//! ```
//!
//! Allocations per operation are printed first (counted by a global allocator; background
//! threads included, the exporters flushed before counting). Child spans are also timed
//! interleaved across the stacks (see `support::interleave`) before criterion times them.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use tracewire::baggage::Baggage;
use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracewire::propagation::{parse_tracestate, BaggagePropagator, Propagator, W3cPropagator};
use tracewire::record::Recorder;
use tracewire::record::RecorderGuard;
use tracing_subscriber::layer::SubscriberExt;

mod support;
use support::{
    count_allocations, fastest, interleave, median, quartiles, Count, CountSpans, Counting,
};

#[global_allocator]
static GLOBAL: Counting = Counting;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,vendor@tenant=abc,x=1";
const BAGGAGE: &str = "userId=alice,serverNode=DF%2028,isProduction=false;ttl=60,region=eu-west-1";

/// `traceparent` and two ordinary headers.
fn three_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
    headers.insert("accept", HeaderValue::from_static("application/json"));
    headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
    headers
}

/// opentelemetry's view of a `HeaderMap` (as opentelemetry-http gives it).
struct OtelHeaders<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for OtelHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct OtelHeadersMut<'a>(&'a mut HeaderMap);

impl opentelemetry::propagation::Injector for OtelHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

fn context() -> SpanContext {
    SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736),
        SpanId::from(0x00f0_67aa_0ba9_02b7),
        TraceFlags::SAMPLED,
        false,
        TraceState::NONE,
    )
}

/// Allocations per call of `f`, over `n` calls.
fn allocations(n: u64, mut f: impl FnMut()) -> f64 {
    count_allocations(|| (0..n).for_each(|_| f())) as f64 / n as f64
}

/// Set to `tracewire`, `tracing_opentelemetry` or `registry_only` to run only that stack's
/// child spans (for counting their instructions under callgrind), `TRACEWIRE_BENCH_SPANS` of
/// them.
const CHILD_ONLY: &str = "TRACEWIRE_BENCH_CHILD";

fn propagation(c: &mut Criterion) {
    if std::env::var_os(CHILD_ONLY).is_some() {
        return;
    }
    let headers = three_headers();
    let ours = W3cPropagator;
    let theirs = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    // Both must read the same context.
    let read = ours.extract(&headers).span_context.expect("ours reads it");
    let otel = theirs.extract(&OtelHeaders(&headers));
    assert_eq!(otel.span().span_context().trace_id(), read.trace_id);
    assert_eq!(otel.span().span_context().span_id(), read.span_id);

    let cx = context();
    let otel_cx = opentelemetry::Context::new().with_remote_span_context((&cx).into());
    let mut out = HeaderMap::with_capacity(8);
    ours.inject(&cx, &Baggage::new(), &mut out);
    let written = out.get("traceparent").cloned();
    out.clear();
    theirs.inject_context(&otel_cx, &mut OtelHeadersMut(&mut out));
    assert_eq!(
        out.get("traceparent").cloned(),
        written,
        "both write the same header"
    );

    println!("allocations per operation:");
    let n = 10_000;
    println!(
        "  traceparent extract   tracewire {:.1}   opentelemetry {:.1}",
        allocations(n, || drop(black_box(ours.extract(black_box(&headers))))),
        allocations(n, || drop(black_box(
            theirs.extract(&OtelHeaders(black_box(&headers)))
        ))),
    );
    println!(
        "  traceparent inject    tracewire {:.1}   opentelemetry {:.1}",
        allocations(n, || {
            out.clear();
            ours.inject(black_box(&cx), &Baggage::new(), &mut out);
        }),
        allocations(n, || {
            out.clear();
            theirs.inject_context(black_box(&otel_cx), &mut OtelHeadersMut(&mut out));
        }),
    );

    let mut group = c.benchmark_group("traceparent_extract");
    group.bench_function("tracewire", |b| {
        b.iter(|| ours.extract(black_box(&headers)))
    });
    group.bench_function("opentelemetry", |b| {
        b.iter(|| theirs.extract(&OtelHeaders(black_box(&headers))))
    });
    group.finish();

    let mut group = c.benchmark_group("traceparent_inject");
    group.bench_function("tracewire", |b| {
        b.iter(|| {
            out.clear();
            ours.inject(black_box(&cx), &Baggage::new(), &mut out);
        })
    });
    group.bench_function("opentelemetry", |b| {
        b.iter(|| {
            out.clear();
            theirs.inject_context(black_box(&otel_cx), &mut OtelHeadersMut(&mut out));
        })
    });
    group.finish();
}

fn parsing(c: &mut Criterion) {
    if std::env::var_os(CHILD_ONLY).is_some() {
        return;
    }
    let mut baggage_headers = HeaderMap::new();
    baggage_headers.insert("baggage", HeaderValue::from_static(BAGGAGE));
    let ours_state = parse_tracestate([TRACESTATE.as_bytes()].into_iter());
    let otel_state: opentelemetry::trace::TraceState = TRACESTATE.parse().expect("valid");
    assert_eq!(
        ours_state.header(),
        otel_state.header(),
        "both read the same members"
    );
    let ours_baggage = BaggagePropagator.extract(&baggage_headers).baggage;
    let otel_baggage = opentelemetry_sdk::propagation::BaggagePropagator::new()
        .extract(&OtelHeaders(&baggage_headers));
    assert_eq!(ours_baggage.len(), 4);
    assert_eq!(
        opentelemetry::baggage::BaggageExt::baggage(&otel_baggage).len(),
        4
    );

    let n = 10_000;
    println!(
        "  tracestate parse      tracewire {:.1}   opentelemetry {:.1}",
        allocations(n, || drop(black_box(parse_tracestate(
            [black_box(TRACESTATE).as_bytes()].into_iter()
        )))),
        allocations(n, || drop(black_box(
            black_box(TRACESTATE).parse::<opentelemetry::trace::TraceState>()
        ))),
    );
    println!(
        "  baggage parse         tracewire {:.1}   opentelemetry {:.1}",
        allocations(n, || drop(black_box(
            BaggagePropagator.extract(black_box(&baggage_headers))
        ))),
        allocations(n, || drop(black_box(
            opentelemetry_sdk::propagation::BaggagePropagator::new()
                .extract(&OtelHeaders(black_box(&baggage_headers)))
        ))),
    );

    let mut group = c.benchmark_group("tracestate_parse");
    group.bench_function("tracewire", |b| {
        b.iter(|| parse_tracestate([black_box(TRACESTATE).as_bytes()].into_iter()))
    });
    group.bench_function("opentelemetry", |b| {
        b.iter(|| black_box(TRACESTATE).parse::<opentelemetry::trace::TraceState>())
    });
    group.finish();

    let theirs = opentelemetry_sdk::propagation::BaggagePropagator::new();
    let mut group = c.benchmark_group("baggage_parse");
    group.bench_function("tracewire", |b| {
        b.iter(|| BaggagePropagator.extract(black_box(&baggage_headers)))
    });
    group.bench_function("opentelemetry", |b| {
        b.iter(|| theirs.extract(&OtelHeaders(black_box(&baggage_headers))))
    });
    group.finish();
}

#[tracing::instrument(skip_all, fields(order = id))]
fn child(id: u64) -> u64 {
    black_box(id)
}

/// A stack in the interleaved child-span timing: its name, its subscriber, its flush, and
/// where its spans are counted.
type Stack<'a> = (
    &'a str,
    &'a tracing::Dispatch,
    &'a dyn Fn(),
    Option<&'a Count>,
);

fn recorder(c: &mut Criterion) {
    // tracewire: the recorder with a reporter that counts and drops.
    let ours_count = Count::default();
    let (layer, guard): (_, RecorderGuard) = Recorder::builder()
        .service_name("bench")
        .reporter(ours_count.clone())
        .build();
    let ours = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));

    // tracing-opentelemetry and the SDK's batch processor, exporter that counts and drops.
    let theirs_count = Count::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(theirs_count.clone())
        .build();
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"));
    let theirs = tracing::Dispatch::new(tracing_subscriber::registry().with(otel_layer));

    // Child spans of one open parent, as in a request handler.
    let run = |dispatch: &tracing::Dispatch, n: u64| {
        tracing::dispatcher::with_default(dispatch, || {
            let parent = tracing::info_span!("request");
            let _entered = parent.enter();
            for i in 0..n {
                child(i);
            }
        });
    };
    let flush_ours = || guard.flush().expect("flush");
    let flush_theirs = || provider.force_flush().expect("flush");

    // The floor any `tracing` layer stands on: the registry, and a layer that only counts.
    let registry =
        tracing::Dispatch::new(tracing_subscriber::registry().with(CountSpans::default()));

    // Instruction counting under callgrind: only child spans, of one stack.
    if let Ok(stack) = std::env::var(CHILD_ONLY) {
        let n = std::env::var("TRACEWIRE_BENCH_SPANS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(10_000);
        let (dispatch, flush): (_, &dyn Fn()) = match stack.as_str() {
            "tracing_opentelemetry" => (&theirs, &flush_theirs),
            "registry_only" => (&registry, &|| {}),
            _ => (&ours, &flush_ours),
        };
        run(dispatch, n);
        flush();
        std::process::exit(0);
    }

    // Every child span (plus the parent) reaches the reporter / exporter.
    run(&ours, 1000);
    flush_ours();
    run(&theirs, 1000);
    flush_theirs();
    assert_eq!(ours_count.take(), 1001);
    assert_eq!(theirs_count.take(), 1001);

    // Allocations per child span: a thousand children under one parent, less the parent.
    let per_child = |dispatch: &tracing::Dispatch, flush: &dyn Fn()| {
        let with = allocations(1, || {
            run(dispatch, 1000);
            flush();
        });
        let without = allocations(1, || {
            run(dispatch, 0);
            flush();
        });
        (with - without) / 1000.0
    };
    println!(
        "  child span            tracewire {:.1}   tracing-opentelemetry {:.1}",
        per_child(&ours, &flush_ours),
        per_child(&theirs, &flush_theirs),
    );
    ours_count.take();
    theirs_count.take();

    // Interleaved (see `interleave`): slices of child spans of each stack, flushed (untimed)
    // between slices, in a new order each round.
    const ROUNDS: usize = 31;
    // Slices long enough that what a pipeline pays to start again after a flush (≈ 0.8 ms
    // for ours) weighs little: 20,000 spans put ≈ 35 ns on each.
    const SPANS: u32 = 100_000;
    let stacks: [Stack<'_>; 3] = [
        ("registry_only", &registry, &|| {}, None),
        ("tracewire", &ours, &flush_ours, Some(&ours_count)),
        (
            "tracing_opentelemetry",
            &theirs,
            &flush_theirs,
            Some(&theirs_count),
        ),
    ];
    // Child spans that did not reach the reporter or exporter in the timed slices.
    let mut lost = [0u64; 3];
    let per_span = interleave(stacks.len(), ROUNDS, |i| {
        let (_, dispatch, flush, count) = stacks[i];
        let elapsed = tracing::dispatcher::with_default(dispatch, || {
            let parent = tracing::info_span!("request");
            let _entered = parent.enter();
            let started = std::time::Instant::now();
            for i in 0..SPANS {
                child(black_box(u64::from(i)));
            }
            started.elapsed()
        });
        flush();
        if let Some(count) = count {
            // The slice's children and its parent.
            lost[i] += (u64::from(SPANS) + 1).saturating_sub(count.take());
        }
        elapsed.as_nanos() as f64 / f64::from(SPANS)
    });
    println!(
        "  child span, interleaved ({ROUNDS} rounds of {SPANS} spans per stack), ns per span: \
         median, fastest slice"
    );
    for (i, (name, _, _, count)) in stacks.iter().enumerate() {
        let lost = match count {
            Some(_) => format!(
                "   {} of {} spans lost",
                lost[i],
                (u64::from(SPANS) + 1) * (ROUNDS as u64 + 1)
            ),
            None => String::new(),
        };
        println!(
            "    {name:<22} {:>8.1} {:>8.1}{lost}",
            median(&per_span[i]),
            fastest(&per_span[i])
        );
    }
    let per_round: Vec<f64> = (0..ROUNDS)
        .map(|r| per_span[2][r] / per_span[1][r])
        .collect();
    let [low, mid, high] = quartiles(&per_round);
    println!(
        "    tracing_opentelemetry / tracewire: {:.2}x on the medians, {:.2}x on the fastest \
         slices (per round: quartiles {low:.2}, {mid:.2}, {high:.2})",
        median(&per_span[2]) / median(&per_span[1]),
        fastest(&per_span[2]) / fastest(&per_span[1])
    );
    ours_count.take();
    theirs_count.take();

    let mut group = c.benchmark_group("child_span");
    for (name, dispatch) in [
        ("registry_only", &registry),
        ("tracewire", &ours),
        ("tracing_opentelemetry", &theirs),
    ] {
        tracing::dispatcher::with_default(dispatch, || {
            let parent = tracing::info_span!("request");
            let _entered = parent.enter();
            group.bench_function(name, |b| b.iter(|| child(black_box(7))));
        });
    }
    group.finish();
    flush_ours();
    flush_theirs();
    // A span dropped at a full queue costs less than one reported: a few may be when the
    // reporter thread is not scheduled in time (a shared host deschedules it for
    // milliseconds). Each saves at most the hand-off, ≈ 4% of a span, so 0.5% of them
    // flatter the figure above by 0.02%; more would flatter it.
    let stats = guard.stats();
    println!(
        "  child spans timed: {} reported, {} dropped",
        stats.spans_reported, stats.spans_dropped
    );
    assert!(
        stats.spans_dropped * 200 <= stats.spans_reported,
        "the reporter kept up with all but 0.5% of the spans"
    );
}

criterion_group!(benches, propagation, parsing, recorder);
criterion_main!(benches);
