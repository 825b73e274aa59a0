//! Tail sampling keeps every error trace, every slow trace and about the configured ratio of
//! the rest, always whole traces; through the HTTP layers too.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracewire::record::SpanRecord;
use tracewire::report::{InMemoryReporter, Reporter, TailSampler};
use tracewire::sampler::{Sampler, TraceIdRatio};
use tracewire::span::{InstrumentationScope, SpanKind, Status};

const TRACES: usize = 10_000;
const RATIO: f64 = 0.25;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Error,
    Slow,
    Plain,
}

fn span(trace: TraceId, id: u64, parent: u64, ms: u64, status: Status) -> SpanRecord {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    SpanRecord {
        span_context: SpanContext::new(
            trace,
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from(parent),
        parent_is_remote: false,
        name: format!("s{id}").into(),
        kind: SpanKind::Internal,
        start_time: t0,
        end_time: t0 + Duration::from_millis(ms),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status,
        service_name: Arc::from("svc"),
        scope: InstrumentationScope::builder("test").build(),
    }
}

/// A root with two children; in one trace out of ten a child arrives after the root.
fn trace(rng: &mut fastrand::Rng, kind: Kind) -> (TraceId, Vec<SpanRecord>) {
    let id = TraceId::from(rng.u128(1..));
    let child_status = if kind == Kind::Error {
        Status::error("boom")
    } else {
        Status::Unset
    };
    let root_ms = if kind == Kind::Slow { 2_000 } else { 30 };
    let mut spans = vec![
        span(id, 2, 1, 10, child_status),
        span(id, 3, 1, 10, Status::Unset),
        span(id, 1, 0, root_ms, Status::Unset),
    ];
    if rng.u8(..10) == 0 {
        spans.swap(1, 2);
    }
    (id, spans)
}

#[test]
fn keeps_errors_slow_traces_and_a_ratio_of_the_rest_whole() {
    let mut rng = fastrand::Rng::with_seed(0x7a11);
    let out = InMemoryReporter::new();
    let mut tail = TailSampler::builder(out.clone())
        .slower_than(Duration::from_secs(1))
        .ratio(RATIO)
        .build();
    let counters = tail.counters();

    let mut kinds = HashMap::new();
    let mut all = Vec::new();
    for _ in 0..TRACES {
        let kind = match rng.u8(..100) {
            0..=4 => Kind::Error,
            5..=9 => Kind::Slow,
            _ => Kind::Plain,
        };
        let (id, spans) = trace(&mut rng, kind);
        kinds.insert(id, kind);
        all.push(spans);
    }
    // Interleave traces the way concurrent requests do: up to 8 in flight, their spans
    // mixed, handed over in batches of 100.
    let mut stream = Vec::new();
    for window in all.chunks(8) {
        let mut cursors = vec![0usize; window.len()];
        while cursors.iter().zip(window).any(|(c, t)| *c < t.len()) {
            let i = rng.usize(..window.len());
            if cursors[i] < window[i].len() {
                stream.push(window[i][cursors[i]].clone());
                cursors[i] += 1;
            }
        }
    }
    for batch in stream.chunks(100) {
        tail.report(batch);
    }
    tail.shutdown();

    let mut kept: HashMap<TraceId, usize> = HashMap::new();
    for span in out.spans() {
        *kept.entry(span.trace_id()).or_default() += 1;
    }
    assert!(kept.values().all(|&n| n == 3), "whole traces only");

    let ratio = TraceIdRatio::new(RATIO);
    let (mut plain, mut plain_kept) = (0usize, 0usize);
    for (id, kind) in &kinds {
        let is_kept = kept.contains_key(id);
        match kind {
            Kind::Error => assert!(is_kept, "error trace {id} dropped"),
            Kind::Slow => assert!(is_kept, "slow trace {id} dropped"),
            Kind::Plain => {
                plain += 1;
                plain_kept += usize::from(is_kept);
                // Decided by trace id alone, as the head sampler would.
                let by_id = ratio.should_sample(None, *id, "", &SpanKind::Internal);
                assert_eq!(is_kept, by_id, "trace {id}");
            }
        }
    }
    // Binomial: sigma = sqrt(p(1-p)/n) is about 0.0046 for 9,000 traces; allow 5 sigma.
    let share = plain_kept as f64 / plain as f64;
    let sigma = (RATIO * (1.0 - RATIO) / plain as f64).sqrt();
    assert!(
        (share - RATIO).abs() < 5.0 * sigma,
        "kept {share:.4} of plain traces, wanted {RATIO} ± {:.4}",
        5.0 * sigma
    );

    let stats = counters.stats();
    assert_eq!(stats.traces_kept as usize, kept.len());
    assert_eq!((stats.traces_kept + stats.traces_dropped) as usize, TRACES);
    assert_eq!(
        (stats.spans_kept + stats.spans_dropped) as usize,
        3 * TRACES
    );
    assert!(stats.late_spans > 0, "some children came after their root");
    assert_eq!(stats.traces_evicted, 0);
    assert_eq!(stats.traces_timed_out, 0);
}

#[test]
fn unfinished_traces_are_decided_after_the_wait() {
    let out = InMemoryReporter::new();
    let mut tail = TailSampler::builder(out.clone())
        .ratio(0.0)
        .decision_wait(Duration::ZERO)
        .build();
    let id = TraceId::from(7u128);
    // The root never comes: once the wait (zero here) has passed, the children are decided
    // with what they show, an error.
    tail.report(&[
        span(id, 2, 1, 1, Status::error("boom")),
        span(id, 3, 1, 1, Status::Unset),
    ]);
    tail.tick();
    assert_eq!(out.len(), 2);
    // A late root follows the decision.
    tail.report(&[span(id, 1, 0, 5, Status::Unset)]);
    assert_eq!(out.len(), 3);
    let stats = tail.counters().stats();
    assert_eq!((stats.traces_timed_out, stats.late_spans), (1, 1));
}

/// Through the HTTP layers: requests that fail at the server (500), deep in a handler (an
/// exception in an inner span of a 200 response) or in the client (nothing listens) keep
/// their whole trace; with a ratio of 0, every other trace is dropped.
///
/// (An error only the client sees in a response, a 404, is not among them here: with both
/// services in one process, the server span is a local root that finishes first and decides
/// the trace, as the module docs say. Across processes, the caller keeps its own part.)
#[cfg(all(feature = "reqwest", feature = "axum"))]
#[test]
fn every_error_trace_of_http_requests_is_kept_whole() {
    use axum::routing::get;
    use axum::Router;
    use http::StatusCode;
    use tracewire::record::Recorder;
    use tracewire::record::SpanExt;
    use tracewire::reqwest::TracingMiddleware;
    use tracewire::ServerLayer;
    use tracing::Instrument;

    #[tracing::instrument(err)]
    async fn audit() -> Result<(), std::io::Error> {
        Err(std::io::Error::other("audit log unavailable"))
    }

    const ROUNDS: usize = 10;
    let out = InMemoryReporter::new();
    let tail = TailSampler::builder(out.clone())
        .no_latency_rule()
        .ratio(0.0)
        .build();
    let counters = tail.counters();
    let mut expected: HashMap<TraceId, (&'static str, usize)> = HashMap::new();
    let (_recorded, ()) = support::with_recorder(Recorder::builder().reporter(tail), |_| async {
        let app = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/boom",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route(
                "/deep",
                get(|| async {
                    let _ = audit().await;
                    "done, unaudited"
                }),
            )
            .layer(ServerLayer::new().service_name("api"));
        let addr = support::serve(app).await;
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = closed.local_addr().unwrap();
        drop(closed);
        let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(TracingMiddleware::new().service_name("caller"))
            .build();
        for _ in 0..ROUNDS {
            // Path, and the spans of its trace: job, client, server (and the handler's).
            for (path, spans) in [("/ok", 3), ("/boom", 3), ("/deep", 4), ("refused", 2)] {
                let job = tracing::info_span!("job", path);
                let trace_id = job.span_context().unwrap().trace_id;
                expected.insert(trace_id, (path, spans));
                let url = match path {
                    "refused" => format!("http://{refused}/"),
                    _ => format!("http://{addr}{path}"),
                };
                async {
                    match http.get(url).send().await {
                        Ok(response) => drop(response.bytes().await.unwrap()),
                        Err(error) => assert!(path == "refused", "{error}"),
                    }
                }
                .instrument(job)
                .await;
            }
        }
    });

    let mut kept: HashMap<TraceId, usize> = HashMap::new();
    for span in out.spans() {
        *kept.entry(span.trace_id()).or_default() += 1;
    }
    for (trace_id, (path, spans)) in &expected {
        match *path {
            "/ok" => assert!(!kept.contains_key(trace_id), "{path} {trace_id} kept"),
            _ => assert_eq!(
                kept.get(trace_id),
                Some(spans),
                "{path} {trace_id}: the whole error trace"
            ),
        }
    }
    let stats = counters.stats();
    assert_eq!(stats.traces_evicted, 0, "{stats:?}");
    assert_eq!(kept.len(), 3 * ROUNDS);
}
