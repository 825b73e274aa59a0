//! The OTLP receiver goes away and comes back: export errors are counted and logged once per
//! interval, the application's threads never wait on the stalled exporter (the queue drops
//! and counts instead), the WARN log does not feed back into the recorder, and exports resume
//! once a receiver listens on the port again.
//!
//! Its own test binary: it installs a global subscriber, because the reporter worker thread
//! logs through the global dispatcher.
#![cfg(feature = "otel")]

mod otlp_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use opentelemetry_otlp::{RetryPolicy, WithExportConfig, WithTonicConfig};
use otlp_support::{BlackHole, Receiver};
use tokio::net::TcpListener;
use tracewire::record::Recorder;
use tracewire::report::otel::LOG_TARGET;
use tracewire::report::{InMemoryReporter, OtelCounters, OtelReporter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

const WAIT: Duration = Duration::from_secs(60);
const QUEUE: usize = 1024;
const PRODUCED: u64 = 20_000;

/// Counts the bridge's WARN events, from any thread.
struct CountWarnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let m = event.metadata();
        if m.target() == LOG_TARGET && *m.level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Waits until `done` holds; fails the test after `WAIT`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn produce(name: &'static str) {
    tracing::info_span!("marker", phase = name).in_scope(|| {});
}

#[test]
fn a_receiver_outage_is_counted_logged_once_and_recovered_from() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Phase A: a receiver is up.
    let receiver =
        rt.block_on(async { Receiver::start(TcpListener::bind("127.0.0.1:0").await.unwrap()) });
    let addr: SocketAddr = receiver.addr;
    let exporter = {
        let _entered = rt.enter();
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(format!("http://{addr}"))
            // Longer than the test: only our own export timeout may end a stalled export.
            .with_timeout(Duration::from_secs(600))
            .with_retry_policy(RetryPolicy::disabled())
            .build()
            .unwrap()
    };
    let handle = rt.handle().clone();
    let otel = OtelReporter::builder(exporter)
        .export_interval(Duration::ZERO)
        .export_timeout(Duration::from_secs(600))
        .error_log_interval(Duration::from_secs(3600))
        .runtime(handle.clone())
        .build();
    let counters: OtelCounters = otel.counters();
    let recorded = InMemoryReporter::new();
    let (layer, guard) = Recorder::builder()
        .service_name("checkout")
        .queue_capacity(QUEUE)
        .max_batch_size(256)
        .flush_interval(Duration::from_millis(5))
        .reporter(otel)
        .reporter(recorded.clone())
        .build();
    let warnings = Arc::new(AtomicUsize::new(0));
    // The exporter's own stack stays out of the recorder, as the bridge's docs advise; the
    // bridge's WARN events do reach it.
    let exporter_stack = ["h2", "hyper", "tonic", "tower", "opentelemetry"];
    let subscriber = tracing_subscriber::registry()
        .with(
            layer.with_filter(tracing_subscriber::filter::filter_fn(move |m| {
                !exporter_stack.iter().any(|p| m.target().starts_with(p))
            })),
        )
        .with(CountWarnings(warnings.clone()));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    produce("up");
    assert!(receiver.wait_for_span("marker", WAIT));
    assert_eq!(counters.stats().export_errors, 0);

    // Phase B: the receiver stops; exports to the closed port fail.
    rt.block_on(receiver.stop());
    wait_until("three failed exports", || {
        produce("down");
        counters.stats().export_errors >= 3
    });
    assert_eq!(warnings.load(Ordering::SeqCst), 1, "{:?}", counters.stats());

    // Phase C: something accepts connections on the port and never answers: the worker is
    // stuck in an export, and the producer must still finish at full speed.
    let hole = rt.block_on(async { BlackHole::start(TcpListener::bind(addr).await.unwrap()) });
    wait_until("the exporter to connect to the black hole", || {
        produce("stuck");
        hole.accepted.load(Ordering::SeqCst) >= 1
    });
    let dropped_before = guard.stats().spans_dropped;
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..PRODUCED {
            tracing::info_span!("work", i).in_scope(|| {});
        }
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the producer was blocked by the stalled exporter");
    let dropped = guard.stats().spans_dropped - dropped_before;
    assert!(
        dropped >= PRODUCED - QUEUE as u64,
        "the stalled worker took nothing, so all but a queue-full were dropped: {dropped}"
    );

    // Phase D: the port closes, then a receiver comes back on it.
    rt.block_on(hole.close());
    let receiver = rt.block_on(async { Receiver::start(TcpListener::bind(addr).await.unwrap()) });
    wait_until("exports to resume", || {
        produce("back");
        receiver.wait_for_span("marker", Duration::from_millis(50))
    });
    guard.flush().unwrap();
    let stats = counters.stats();
    assert!(stats.exports >= 2, "{stats:?}");
    assert!(stats.export_errors >= 4, "{stats:?}");
    assert!(stats.spans_failed > 0, "{stats:?}");
    assert_eq!(stats.failure_logs, 1, "{stats:?}");
    assert_eq!(
        warnings.load(Ordering::SeqCst),
        1,
        "one WARN for the whole outage"
    );

    // No feedback: the WARN events attached to no span, and nothing but our own spans was
    // recorded.
    for span in recorded.spans() {
        assert!(
            span.name == "marker" || span.name == "work",
            "unexpected span {span:?}"
        );
        assert!(span.events.is_empty(), "unexpected event in {span:?}");
    }

    drop(guard);
    rt.block_on(receiver.stop());
}
