//! Shared helpers for the console reporter tests: hand-built spans with fixed ids and times,
//! a writer the test can read back, and a clock the test moves by hand.
#![allow(dead_code)]

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracewire::record::SpanRecord;
use tracewire::report::{ConsoleBuilder, ConsoleReporter};
use tracewire::span::{Event, InstrumentationScope, KeyValue, SpanKind, Status, Value};

/// The trace id of the hand-built spans unless [`SpanBuild::trace`] says otherwise.
pub const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;

/// 2023-11-14T22:13:20Z: every hand-built time is an offset from here.
pub fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// A span of trace [`TRACE`] starting `start_us` after [`t0`] and lasting `dur_us`.
pub fn span(
    id: u64,
    parent: u64,
    service: &str,
    kind: SpanKind,
    name: &str,
    start_us: u64,
    dur_us: u64,
) -> SpanRecord {
    SpanRecord {
        span_context: SpanContext::new(
            TraceId::from(TRACE),
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from(parent),
        parent_is_remote: false,
        name: name.to_owned().into(),
        kind,
        start_time: t0() + Duration::from_micros(start_us),
        end_time: t0() + Duration::from_micros(start_us + dur_us),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Status::Unset,
        service_name: service.into(),
        scope: InstrumentationScope::builder("test").build(),
    }
}

/// Chained edits of a hand-built span.
pub trait SpanBuild: Sized {
    fn remote(self) -> Self;
    fn trace(self, trace: u128) -> Self;
    fn attr(self, key: &'static str, value: impl Into<Value>) -> Self;
    fn event(self, name: &'static str, at_us: u64, attributes: Vec<KeyValue>) -> Self;
    fn error(self, description: &'static str) -> Self;
    fn ok(self) -> Self;
}

impl SpanBuild for SpanRecord {
    fn remote(mut self) -> Self {
        self.parent_is_remote = true;
        self
    }

    fn trace(mut self, trace: u128) -> Self {
        self.span_context.trace_id = TraceId::from(trace);
        self
    }

    fn attr(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.attributes.push(KeyValue::new(key, value.into()));
        self
    }

    fn event(mut self, name: &'static str, at_us: u64, attributes: Vec<KeyValue>) -> Self {
        self.events.push(Event::new(
            name,
            t0() + Duration::from_micros(at_us),
            attributes,
            0,
        ));
        self
    }

    fn error(mut self, description: &'static str) -> Self {
        self.status = Status::error(description);
        self
    }

    fn ok(mut self) -> Self {
        self.status = Status::Ok;
        self
    }
}

/// A writer whose bytes the test reads back.
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    /// Everything written since the last call.
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap());
        String::from_utf8(bytes).expect("the console writes UTF-8")
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A clock that moves only when told.
#[derive(Clone)]
pub struct FakeClock(Arc<Mutex<Instant>>);

impl FakeClock {
    pub fn new() -> Self {
        FakeClock(Arc::new(Mutex::new(Instant::now())))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    /// The clock to hand to [`ConsoleBuilder::clock`].
    pub fn source(&self) -> impl Fn() -> Instant + Send + 'static {
        let now = self.0.clone();
        move || *now.lock().unwrap()
    }
}

/// A colourless console of `width` columns writing into the returned buffer.
pub fn console(width: usize) -> (ConsoleBuilder, SharedBuf) {
    let out = SharedBuf::default();
    let builder = ConsoleReporter::builder()
        .writer(out.clone())
        .color(false)
        .width(width);
    (builder, out)
}

/// Renders `spans` as one trace at `width` columns, without colour.
pub fn render(spans: &[SpanRecord], width: usize) -> String {
    let (builder, _) = console(width);
    let mut out = Vec::new();
    builder.build().render(spans, &mut out);
    String::from_utf8(out).expect("the console writes UTF-8")
}

/// Terminal columns of a printed line: box drawing is one column, East Asian wide
/// characters two, combining marks none.
pub fn columns(line: &str) -> usize {
    use unicode_width::UnicodeWidthChar;
    line.chars().map(|c| c.width().unwrap_or(1)).sum()
}

/// Fails when a line is wider than `width` columns (see [`columns`]).
pub fn assert_fits(output: &str, width: usize) {
    for (n, line) in output.lines().enumerate() {
        let cols = columns(line);
        assert!(
            cols <= width,
            "line {} is {cols} columns wide, more than {width}:\n{line}",
            n + 1
        );
    }
}

/// The three-service trace of the design sketch: checkout calls inventory over HTTP and
/// payment over gRPC; payment times out.
pub fn checkout_trace() -> Vec<SpanRecord> {
    use SpanKind::*;
    vec![
        span(
            0x21,
            0x12,
            "inventory",
            Server,
            "GET /items/{sku}",
            1_500,
            18_000,
        )
        .remote()
        .attr("http.route", "/items/{sku}")
        .attr("http.response.status_code", 200),
        span(0x12, 0x11, "checkout", Client, "GET", 900, 20_300)
            .attr("http.response.status_code", 200),
        span(
            0x31,
            0x13,
            "payment",
            Server,
            "payment.Pay/Charge",
            25_800,
            58_900,
        )
        .remote()
        .attr("rpc.grpc.status_code", 14)
        .event(
            "exception",
            57_100,
            vec![KeyValue::new("exception.message", "gateway timeout")],
        )
        .error("gateway timeout"),
        span(
            0x13,
            0x11,
            "checkout",
            Client,
            "payment.Pay/Charge",
            25_200,
            60_200,
        )
        .attr("rpc.grpc.status_code", 14)
        .error("UNAVAILABLE"),
        span(0x11, 0, "checkout", Server, "POST /checkout", 0, 98_100)
            .attr("http.route", "/checkout")
            .attr("http.response.status_code", 500)
            .error(""),
    ]
}
