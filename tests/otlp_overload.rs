//! Overload and shutdown against a real OTLP receiver: every span is accounted for
//! (recorded = exported + dropped by cause + queued, queued 0 after shutdown), shutdown keeps
//! its deadline with the receiver down or stalled, and no thread panics, whether the tokio
//! runtime is alive, gone, or shutting down while the worker waits on it.
//!
//! A panic hook installed by the tests counts panics on every thread.
#![cfg(feature = "otel")]

mod otlp_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use otlp_support::{BlackHole, Receiver};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tonic::transport::server::TcpIncoming;
use tracewire::record::RecorderGuard;
use tracewire::record::{RecordLayer, Recorder};
use tracewire::report::{OtelCounters, OtelReporter, Stats};
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(60);

static PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();
/// One test at a time, so that a panic is counted against the test that caused it.
static SERIAL: Mutex<()> = Mutex::new(());

/// Counts every panic, on any thread, from now until the returned guard drops (and still
/// prints it).
fn count_panics() -> std::sync::MutexGuard<'static, ()> {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
    PANICS.store(0, Ordering::SeqCst);
    serial
}

fn assert_no_panic() {
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A tonic OTLP exporter to `endpoint`, built inside `rt`.
fn exporter(
    rt: &Runtime,
    endpoint: String,
    retry: RetryPolicy,
) -> opentelemetry_otlp::SpanExporter {
    let _entered = rt.enter();
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        // Longer than any test: only our own export timeout may end a stalled export.
        .with_timeout(Duration::from_secs(600))
        // Retries back off on the runtime's timers.
        .with_retry_policy(retry)
        .build()
        .unwrap()
}

struct Setup {
    layer: RecordLayer,
    guard: RecorderGuard,
    counters: OtelCounters,
}

fn setup(rt: &Runtime, endpoint: String, retry: RetryPolicy, queue: usize) -> Setup {
    let otel = OtelReporter::builder(exporter(rt, endpoint, retry))
        .export_interval(Duration::ZERO)
        .export_timeout(Duration::from_secs(600))
        .max_export_batch_size(64)
        .runtime(rt.handle().clone())
        .build();
    let counters = otel.counters();
    let (layer, guard) = Recorder::builder()
        .service_name("overload")
        .queue_capacity(queue)
        .max_batch_size(64)
        .flush_interval(Duration::from_millis(5))
        .reporter(otel)
        .build();
    Setup {
        layer,
        guard,
        counters,
    }
}

/// Records `n` spans on this thread into `layer`.
fn produce(layer: &tracing::Dispatch, n: u64) {
    tracing::dispatcher::with_default(layer, || {
        for i in 0..n {
            tracing::info_span!("work", i).in_scope(|| {});
        }
    });
}

fn dispatch(layer: RecordLayer) -> tracing::Dispatch {
    tracing::Dispatch::new(tracing_subscriber::registry().with(layer))
}

/// The sum holds, and nothing is left in flight.
fn assert_final(stats: &Stats, recorded: u64) {
    assert_eq!(stats.spans_recorded, recorded, "{stats:?}");
    assert_eq!(stats.queued, 0, "{stats:?}");
    assert_eq!(
        stats.spans_exported + stats.dropped.total(),
        stats.spans_recorded,
        "{stats:?}"
    );
}

fn received(receiver: &Receiver) -> u64 {
    receiver.spans().len() as u64
}

#[test]
fn receiver_down_at_shutdown() {
    let _serial = count_panics();
    let rt = runtime();
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let addr = receiver.addr;
    let Setup {
        layer,
        guard,
        counters,
    } = setup(&rt, format!("http://{addr}"), RetryPolicy::default(), 4096);
    let spans = dispatch(layer);

    produce(&spans, 100);
    guard.flush().unwrap();
    assert_eq!(received(&receiver), 100);
    rt.block_on(receiver.stop());

    produce(&spans, 50);
    let deadline = Duration::from_secs(10);
    let started = Instant::now();
    let err = guard
        .shutdown_within(deadline)
        .expect_err("spans were lost");
    assert!(started.elapsed() < deadline + Duration::from_secs(2));
    let stats = err.stats;
    assert_final(&stats, 150);
    assert_eq!(stats.spans_exported, 100, "{stats:?}");
    assert_eq!(
        stats.dropped.export_failed + stats.dropped.shutdown,
        50,
        "{stats:?}"
    );
    if !err.timed_out {
        assert_eq!(stats.dropped.export_failed, 50, "{stats:?}");
        assert_eq!(counters.stats().spans_failed, 50);
    }
    drop(rt);
    assert_no_panic();
}

#[test]
fn receiver_stalled_at_shutdown_then_the_runtime_goes_away() {
    let _serial = count_panics();
    let rt = runtime();
    let (hole, addr) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (BlackHole::start(listener), addr)
    });
    let Setup {
        layer,
        guard,
        counters,
    } = setup(&rt, format!("http://{addr}"), RetryPolicy::disabled(), 4096);
    let spans = dispatch(layer);
    let handle = guard.handle();

    produce(&spans, 200);
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let err = guard
        .shutdown_within(deadline)
        .expect_err("the stalled receiver took nothing");
    let took = started.elapsed();
    assert!(err.timed_out, "{err:?}");
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(2),
        "{took:?}"
    );
    assert_final(&err.stats, 200);
    assert_eq!(err.stats.spans_exported, 0, "{err:?}");
    assert_eq!(err.stats.dropped.shutdown, 200, "{err:?}");
    assert!(err.to_string().contains("200 of 200"), "{err}");

    // The worker still waits on the stuck export; the runtime shuts down under it. Its export
    // task is dropped, not polled: the worker hears so and finishes, without a panic.
    let errors_before = counters.stats().export_errors;
    drop(rt);
    let until = Instant::now() + WAIT;
    while counters.stats().export_errors <= errors_before {
        assert!(
            Instant::now() < until,
            "the worker never heard the runtime was gone"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(hole);
    let after = handle.stats();
    assert_eq!(
        (after.spans_exported, after.dropped, after.queued),
        (
            err.stats.spans_exported,
            err.stats.dropped,
            err.stats.queued
        ),
        "the counts were final"
    );
    assert_no_panic();
}

#[test]
fn guard_dropped_after_the_runtime_shut_down() {
    let _serial = count_panics();
    let rt = runtime();
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let Setup {
        layer,
        guard,
        counters,
    } = setup(
        &rt,
        format!("http://{}", receiver.addr),
        RetryPolicy::default(),
        4096,
    );
    let spans = dispatch(layer);
    let handle = guard.handle();

    // As at the end of `#[tokio::main]`: the body returns, the runtime drops, then the guard.
    rt.block_on(async {
        produce(&spans, 30);
        handle.flush(WAIT).unwrap();
    });
    assert_eq!(received(&receiver), 30);
    drop(receiver);
    drop(rt);
    produce(&spans, 20);
    let started = Instant::now();
    drop(guard);
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = handle.stats();
    assert_final(&stats, 50);
    assert_eq!(stats.spans_exported, 30, "{stats:?}");
    assert_eq!(stats.dropped.export_failed, 20, "{stats:?}");
    assert_eq!(counters.stats().spans_failed, 20);
    assert_no_panic();
}

#[test]
fn guard_dropped_from_a_task_while_the_runtime_shuts_down() {
    let _serial = count_panics();
    let rt = runtime();
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let Setup { layer, guard, .. } = setup(
        &rt,
        format!("http://{}", receiver.addr),
        RetryPolicy::default(),
        4096,
    );
    let spans = dispatch(layer);
    let handle = guard.handle();
    produce(&spans, 40);
    // As a signal handler's task would: the guard drops on a runtime thread, then the
    // runtime shuts down without waiting for it.
    let (dropped_tx, dropped_rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        drop(guard);
        let _ = dropped_tx.send(());
    });
    dropped_rx.recv_timeout(WAIT).expect("the guard dropped");
    rt.shutdown_timeout(Duration::from_secs(5));
    let stats = handle.stats();
    assert_final(&stats, 40);
    assert_eq!(stats.spans_exported, received(&receiver), "{stats:?}");
    assert_no_panic();
}

/// The case of the panic "A Tokio 1.x context was found, but it is being shutdown": the
/// collector is down, an export waits in a retry back-off on the runtime's timers when the
/// shutdown deadline passes, and the runtime then shuts down under it.
#[test]
fn runtime_shuts_down_while_an_export_backs_off() {
    let _serial = count_panics();
    let rt = runtime();
    // A port with nothing listening: connections are refused.
    let addr = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    });
    let backoff = RetryPolicy::default()
        .with_max_retries(5)
        .with_initial_delay(Duration::from_secs(60))
        .with_max_delay(Duration::from_secs(60))
        .with_max_jitter(Duration::ZERO);
    let Setup {
        layer,
        guard,
        counters,
    } = setup(&rt, format!("http://{addr}"), backoff, 4096);
    let spans = dispatch(layer);
    let handle = guard.handle();
    produce(&spans, 10);
    let deadline = Duration::from_millis(500);
    let started = Instant::now();
    let err = guard
        .shutdown_within(deadline)
        .expect_err("nothing was delivered");
    assert!(started.elapsed() < deadline + Duration::from_secs(2));
    assert!(err.timed_out, "{err:?}");
    assert_final(&err.stats, 10);
    assert_eq!(err.stats.dropped.shutdown, 10, "{err:?}");

    let errors_before = counters.stats().export_errors;
    drop(rt);
    let until = Instant::now() + WAIT;
    while counters.stats().export_errors <= errors_before {
        assert!(
            Instant::now() < until,
            "the worker never heard the runtime was gone"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(handle.stats().queued, 0);
    assert_eq!(handle.stats().dropped, err.stats.dropped);
    assert_no_panic();
}

/// An OTLP receiver that takes every request but answers only once let through.
#[derive(Clone)]
struct Gated {
    /// Requests that reached the receiver.
    arrived: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    spans: Arc<Mutex<u64>>,
}

#[tonic::async_trait]
impl TraceService for Gated {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let _pass = self.gate.acquire().await.unwrap();
        let n: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        *self.spans.lock().unwrap() += n as u64;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[test]
fn queue_overflow_under_a_burst() {
    let _serial = count_panics();
    const QUEUE: usize = 256;
    const BURST: u64 = 20_000;
    let rt = runtime();
    let gated = Gated {
        arrived: Arc::new(AtomicUsize::new(0)),
        gate: Arc::new(Semaphore::new(0)),
        spans: Arc::new(Mutex::new(0)),
    };
    let addr = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = TraceServiceServer::new(gated.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        addr
    });
    let Setup {
        layer,
        guard,
        counters,
    } = setup(
        &rt,
        format!("http://{addr}"),
        RetryPolicy::disabled(),
        QUEUE,
    );
    let spans = dispatch(layer);

    // The first export reaches the receiver and waits there: the worker is stuck on it, and
    // takes nothing from the queue.
    produce(&spans, 1);
    let until = Instant::now() + WAIT;
    while gated.arrived.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the first export never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    produce(&spans, BURST);
    let during = guard.stats();
    assert_eq!(during.spans_recorded, BURST + 1);
    assert_eq!(
        during.dropped.queue_full,
        BURST - QUEUE as u64,
        "{during:?}"
    );
    assert_eq!(
        during.queued,
        QUEUE as u64 + 1,
        "the queue, and the span being exported"
    );
    assert_eq!(during.spans_exported, 0);

    gated.gate.add_permits(1_000_000);
    let err = guard
        .shutdown_within(WAIT)
        .expect_err("the burst overflowed the queue");
    assert!(!err.timed_out, "{err:?}");
    let stats = err.stats;
    assert_final(&stats, BURST + 1);
    assert_eq!(stats.dropped.queue_full, BURST - QUEUE as u64, "{stats:?}");
    assert_eq!(stats.spans_exported, QUEUE as u64 + 1, "{stats:?}");
    assert_eq!(
        stats.dropped.total(),
        stats.dropped.queue_full,
        "the queue was the only loss: {stats:?}"
    );
    assert_eq!(
        stats.spans_exported,
        *gated.spans.lock().unwrap(),
        "{stats:?}"
    );
    assert_eq!(counters.stats().spans_exported, stats.spans_exported);
    drop(rt);
    assert_no_panic();
}
