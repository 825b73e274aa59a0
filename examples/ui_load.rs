//! Memory of the trace viewer under load: 100,000 spans per second for a minute, by default.
//!
//! ```sh
//! cargo run --release --example ui_load -- [spans_per_second] [seconds] [max_traces] [max_mib]
//! ```
//!
//! Spans go through the real recorder (its default queue of 8192 spans) into the viewer's
//! reporter, as traces of 5 spans (a server root with a client child, an internal span and
//! two more), each with a few attributes. Every 5 seconds it prints the process's resident
//! memory (`VmRSS`, from `/proc/self/status`; Linux only), what the viewer counts against
//! its bound and what was dropped; at the end the peak (`VmHWM`) and the peak over the
//! baseline (the resident memory once the viewer and the recorder are up, before the first
//! span). The viewer is bounded at 1000 traces (or `max_traces`) and 64 MiB (or `max_mib`);
//! a large `max_traces`, e.g. `100000000`, makes the byte bound the one that holds.

use std::time::{Duration, Instant};

use tracewire::record::Recorder;
use tracewire::ui::Viewer;
use tracing_subscriber::layer::SubscriberExt;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let max_traces: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let max_mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);

    let viewer = Viewer::builder()
        .addr(([127, 0, 0, 1], 0).into())
        .max_traces(max_traces)
        .max_bytes(max_mib << 20)
        .start()
        .expect("start the viewer");
    println!("viewer at {}", viewer.url());
    let (recorder, guard) = Recorder::builder()
        .service_name("load")
        .reporter(viewer.reporter())
        .build();
    let subscriber = tracing_subscriber::registry().with(recorder);
    let _default = tracing::subscriber::set_default(subscriber);

    let baseline = status_kib("VmRSS:");
    println!(
        "bound {max_mib} MiB, {max_traces} traces; baseline RSS {} MiB",
        baseline / 1024
    );
    let start = Instant::now();
    let traces_per_tick = rate / 5 / 100; // 100 ticks a second, 5 spans a trace
    let mut next_report = Duration::from_secs(5);
    let mut tick = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        for n in 0..traces_per_tick {
            let order = tick * traces_per_tick + n;
            let root = tracing::info_span!("GET /items/{id}", otel.kind = "server", http.request.method = "GET", url.path = %format_args!("/items/{order}"), http.response.status_code = 200).entered();
            tracing::info_span!("load", id = order).in_scope(|| {
                tracing::info_span!("GET", otel.kind = "client", server.address = "inventory")
                    .in_scope(|| {});
                tracing::info_span!("cache", hit = order.is_multiple_of(2)).in_scope(|| {});
            });
            tracing::info_span!("render").in_scope(|| {});
            drop(root);
        }
        tick += 1;
        // Pace to the rate: wait for this tick's slot.
        let slot = Duration::from_millis(10 * tick);
        if let Some(wait) = slot.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        if start.elapsed() >= next_report {
            let stats = viewer.stats();
            let recorder = guard.handle().stats();
            println!(
                "{:>3}s  RSS {:>4} MiB  held {} traces, {:.1} MiB counted, {} spans assembling  viewer dropped {} traces, {} spans  recorder: {} recorded, {} dropped",
                next_report.as_secs(),
                status_kib("VmRSS:") / 1024,
                stats.traces_held,
                stats.bytes_held as f64 / (1 << 20) as f64,
                stats.spans_assembling,
                stats.traces_dropped,
                stats.spans_dropped,
                recorder.spans_recorded,
                recorder.dropped.total(),
            );
            next_report += Duration::from_secs(5);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    guard.flush().expect("flush");
    let recorder = guard.handle().stats();
    let stats = viewer.stats();
    let peak = status_kib("VmHWM:");
    println!(
        "done: {:.0} spans/s recorded over {elapsed:.1} s; viewer received {}, counts {:.1} MiB; peak RSS {:.1} MiB = baseline {:.1} + {:.1} MiB (bound {max_mib} MiB); now {:.1} MiB",
        recorder.spans_recorded as f64 / elapsed,
        stats.spans_received_local,
        stats.bytes_held as f64 / 1024.0 / 1024.0,
        peak as f64 / 1024.0,
        baseline as f64 / 1024.0,
        peak.saturating_sub(baseline) as f64 / 1024.0,
        status_kib("VmRSS:") as f64 / 1024.0,
    );
}
