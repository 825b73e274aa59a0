//! Rendering one 1,000-span trace (several services, depths up to ~12, events, statuses)
//! into a `Vec<u8>`, without colour, at 120 columns.
//!
//! `CARGO_TARGET_DIR=... cargo bench --bench console_render`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracewire::record::SpanRecord;
use tracewire::report::ConsoleReporter;
use tracewire::span::{Event, InstrumentationScope, KeyValue, SpanKind, Status};

const SPANS: u64 = 1_000;
const SERVICES: [&str; 5] = [
    "gateway",
    "checkout",
    "inventory",
    "payment",
    "notifications",
];

/// A deterministic pseudo-random tree: each span hangs under one of the 16 spans before
/// it, so depth varies; client spans carry HTTP or gRPC codes, some fail, every seventh has
/// events.
fn trace() -> Vec<SpanRecord> {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let services: Vec<Arc<str>> = SERVICES.iter().map(|&s| Arc::from(s)).collect();
    let mut depth = vec![0u32; SPANS as usize];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut spans = Vec::with_capacity(SPANS as usize);
    for i in 0..SPANS {
        let (parent, d) = if i == 0 {
            (0, 0)
        } else {
            let p = i - 1 - next() % i.min(16);
            (p + 1, depth[p as usize] + 1)
        };
        depth[i as usize] = d.min(12);
        let start = i * 90 + next() % 50;
        let len = 20 + next() % 5_000 + if i == 0 { 200_000 } else { 0 };
        let kind = match i % 6 {
            0 => SpanKind::Server,
            1 | 2 => SpanKind::Client,
            3 => SpanKind::Internal,
            4 => SpanKind::Producer,
            _ => SpanKind::Consumer,
        };
        let mut attributes = vec![KeyValue::new("component", "bench")];
        match i % 4 {
            0 => attributes.push(KeyValue::new(
                "http.response.status_code",
                200 + (i % 3) as i64 * 100,
            )),
            1 => attributes.push(KeyValue::new("rpc.grpc.status_code", (i % 17) as i64)),
            2 => attributes.push(KeyValue::new("http.route", "/items/{sku}")),
            _ => {}
        }
        let events = if i % 7 == 0 {
            vec![
                Event::new(
                    "exception",
                    t0 + Duration::from_micros(start + 5),
                    vec![
                        KeyValue::new("exception.type", "Timeout"),
                        KeyValue::new("exception.message", "upstream did not answer in time"),
                    ],
                    0,
                ),
                Event::new(
                    "retrying",
                    t0 + Duration::from_micros(start + 9),
                    Vec::new(),
                    0,
                ),
            ]
        } else {
            Vec::new()
        };
        spans.push(SpanRecord {
            span_context: SpanContext::new(
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736u128),
                SpanId::from(i + 1),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::from(parent),
            parent_is_remote: kind == SpanKind::Server && i > 0,
            name: format!("operation {i} on {}", SERVICES[(i % 5) as usize]).into(),
            kind,
            start_time: t0 + Duration::from_micros(start),
            end_time: t0 + Duration::from_micros(start + len),
            attributes,
            dropped_attributes_count: 0,
            events,
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status: if i % 11 == 0 && i > 0 {
                Status::error("failed")
            } else {
                Status::Unset
            },
            service_name: services[(i % 5) as usize].clone(),
            scope: InstrumentationScope::builder("bench").build(),
        });
    }
    // Children first, as the recorder delivers them.
    spans.reverse();
    spans
}

fn render(c: &mut Criterion) {
    let spans = trace();
    let console = ConsoleReporter::builder()
        .writer(std::io::sink())
        .color(false)
        .width(120)
        .build();
    let mut out = Vec::with_capacity(256 * 1024);
    console.render(&spans, &mut out);
    assert!(out.iter().filter(|&&b| b == b'\n').count() > 1_000);
    c.bench_function("render 1000-span trace, 120 columns, no colour", |b| {
        b.iter(|| {
            out.clear();
            console.render(black_box(&spans), &mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
