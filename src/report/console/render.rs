//! Writes one trace as a header line and an aligned tree with waterfall bars.
//!
//! Two passes over the rows: the first measures every cell (service, label, status,
//! duration) and picks the column widths for the terminal width, the second writes each line
//! straight into the output buffer, cutting text that does not fit. No line is ever wider
//! than the width (see [`text`](super::text) for how columns are counted).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::context::SpanId;
use crate::semconv;
use crate::span::{SpanKind, SpanRecord, Status, Value};

use super::text::{self, duration, pad, write_fit, Short};
use super::tree::{self, Node, Row};

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
/// Service name colours, by the service's order of appearance in the trace. Red and
/// yellow are kept for errors and warnings.
const SERVICE_COLORS: [&str; 6] = [
    "\x1b[36m", "\x1b[35m", "\x1b[34m", "\x1b[32m", "\x1b[96m", "\x1b[95m",
];

const HTTP_STATUS: &str = "http.response.status_code";
const HTTP_ROUTE: &str = "http.route";
const GRPC_STATUS: &str = "rpc.grpc.status_code";

/// Widest service column; longer names are cut.
const MAX_SERVICE: usize = 24;
/// Widest status column; longer values are cut.
const MAX_STATUS: usize = 20;
/// Below this many columns for the tree part, the bar, then the status, then the duration
/// columns give way.
const MIN_LEFT: usize = 30;

/// Spans to print as one block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block<'a> {
    pub(crate) spans: &'a [SpanRecord],
    /// Spans of a trace printed before: the header says `late`.
    pub(crate) late: bool,
    /// Where event offsets count from when not from the block's earliest span: the start
    /// of the trace a late addendum belongs to.
    pub(crate) origin: Option<SystemTime>,
    /// Spans of this trace dropped by the memory limits.
    pub(crate) dropped: u64,
}

/// The extent of a set of spans: earliest start, latest end.
pub(crate) fn extent(spans: &[SpanRecord]) -> (SystemTime, SystemTime) {
    let start = spans
        .iter()
        .map(|s| s.start_time)
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let end = spans
        .iter()
        .map(|s| s.end_time.max(s.start_time))
        .max()
        .unwrap_or(start);
    (start, end)
}

/// One of the spans has status Error.
pub(crate) fn has_error(spans: &[SpanRecord]) -> bool {
    spans
        .iter()
        .any(|s| matches!(s.status, Status::Error { .. }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tone {
    Plain,
    Warn,
    Error,
}

impl Tone {
    fn color(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Warn => Some(YELLOW),
            Tone::Error => Some(RED),
        }
    }
}

/// The measured cells of one span row.
struct Cells<'a> {
    route: Option<&'a str>,
    label_w: usize,
    service_w: usize,
    service_ix: usize,
    status: Short,
    status_w: usize,
    tone: Tone,
    duration: Short,
    /// Start, from the trace start.
    offset: Duration,
    len: Duration,
}

fn int_attribute(span: &SpanRecord, key: &str) -> Option<Result<i64, String>> {
    match span.attribute(key)? {
        Value::I64(v) => Some(Ok(*v)),
        Value::String(s) => Some(s.as_str().trim().parse().map_err(|_| s.to_string())),
        other => Some(Err(other.to_string())),
    }
}

fn measure<'a>(span: &'a SpanRecord, service_ix: usize, start: SystemTime) -> Cells<'a> {
    let route = match span.attribute(HTTP_ROUTE) {
        Some(Value::String(route)) if !route.as_str().is_empty() => Some(route.as_str()),
        _ => None,
    }
    .filter(|route| !span.name.contains(route));
    let label_w = text::width(&span.name) + route.map_or(0, |r| 1 + text::width(r));

    let error = matches!(span.status, Status::Error { .. });
    let http = int_attribute(span, HTTP_STATUS);
    let mut status = Short::EMPTY;
    match (int_attribute(span, GRPC_STATUS), &http) {
        (Some(Ok(code)), _) => match i32::try_from(code)
            .ok()
            .and_then(crate::classify::grpc_code_name)
        {
            Some(name) => status = Short::new(name),
            None => {
                let _ = write!(status, "{code}");
            }
        },
        (Some(Err(raw)), _) => status = Short::new(&raw),
        (None, Some(Ok(code))) => {
            let _ = write!(status, "{code}");
        }
        (None, Some(Err(raw))) => status = Short::new(raw),
        (None, None) if error => status = Short::new("ERROR"),
        (None, None) => {}
    }
    let tone = if error {
        Tone::Error
    } else if matches!(http, Some(Ok(400..=499))) {
        Tone::Warn
    } else {
        Tone::Plain
    };
    let len = span.duration();
    Cells {
        route,
        label_w,
        service_w: text::width(&span.service_name),
        service_ix,
        status_w: status.width(),
        status,
        tone,
        duration: duration(len),
        offset: span.start_time.duration_since(start).unwrap_or_default(),
        len,
    }
}

/// Column widths for one block.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    width: usize,
    /// Columns of the tree part: prefix, service, markers, name.
    left: usize,
    /// Most prefix levels drawn; deeper rows show `…` and their last levels.
    levels: usize,
    service: usize,
    /// 0 when the column is left out.
    status: usize,
    duration: usize,
    bar: usize,
}

impl Layout {
    fn new(
        width: usize,
        max_depth: usize,
        service: usize,
        label: usize,
        status: usize,
        dur: usize,
    ) -> Layout {
        let service = service.min(MAX_SERVICE);
        let natural = max_depth.saturating_mul(3) + service + 4 + label;
        let mut status = status.min(MAX_STATUS);
        let mut dur = dur;
        let mut bar = (width / 4).clamp(10, 50);
        let right = |status: usize, dur: usize, bar: usize| {
            (if status > 0 { status + 2 } else { 0 })
                + (if dur > 0 { dur + 2 } else { 0 })
                + (if bar > 0 { bar + 3 } else { 0 })
        };
        while width < right(status, dur, bar) + natural.min(MIN_LEFT) {
            if bar > 0 {
                bar = 0;
            } else if status > 0 {
                status = 0;
            } else if dur > 0 {
                dur = 0;
            } else {
                break;
            }
        }
        let mut left = natural.min(width.saturating_sub(right(status, dur, bar)));
        if bar > 10 && left < natural {
            // Narrow the bar before cutting names.
            let give = (natural - left).min(bar - 10);
            bar -= give;
            left += give;
        }
        let service = if left >= natural {
            service
        } else {
            service.min((left / 4).max(3))
        };
        Layout {
            width,
            left,
            levels: (left / 2 / 3).max(1),
            service,
            status,
            duration: dur,
            bar,
        }
    }
}

/// Where a span's bar starts and how many cells it fills: placed by start offset, sized by
/// duration relative to the whole trace, both rounded to the nearest cell. A span with a
/// non-zero duration fills at least one cell; a zero-length one fills none.
pub(crate) fn bar_cells(
    offset: Duration,
    len: Duration,
    total: Duration,
    cells: usize,
) -> (usize, usize) {
    if cells == 0 {
        return (0, 0);
    }
    let total = total.as_nanos();
    if total == 0 {
        return (0, if len.is_zero() { 0 } else { cells });
    }
    let cells_u = cells as u128;
    let at = |ns: u128| -> usize {
        // ns ≤ a few centuries in nanos, cells ≤ 50: no overflow in u128.
        let cell = ns
            .saturating_mul(cells_u)
            .saturating_mul(2)
            .saturating_add(total)
            / (2 * total);
        cell.min(cells_u) as usize
    };
    let off = offset.as_nanos();
    let mut start = at(off);
    let end = at(off.saturating_add(len.as_nanos()));
    if len.is_zero() {
        return (start.min(cells - 1), 0);
    }
    if end <= start {
        start = start.min(cells - 1);
        return (start, 1);
    }
    (start, end - start)
}

/// A line being written, never past `width` columns.
struct Line<'a> {
    out: &'a mut Vec<u8>,
    col: usize,
    width: usize,
    color: bool,
}

impl<'a> Line<'a> {
    fn new(out: &'a mut Vec<u8>, width: usize, color: bool) -> Self {
        Line {
            out,
            col: 0,
            width,
            color,
        }
    }

    fn room(&self) -> usize {
        self.width.saturating_sub(self.col)
    }

    fn text(&mut self, s: &str) {
        self.col += write_fit(self.out, s, self.room());
    }

    fn text_max(&mut self, s: &str, max: usize) {
        self.col += write_fit(self.out, s, max.min(self.room()));
    }

    /// A [`Short`], copied as it is when it fits.
    fn short(&mut self, s: &Short) {
        if s.width() <= self.room() {
            self.out.extend_from_slice(s.as_bytes());
            self.col += s.width();
        } else {
            self.text(s.as_str());
        }
    }

    /// A string known to take `cols` columns.
    fn fixed(&mut self, s: &str, cols: usize) {
        if cols <= self.room() {
            self.out.extend_from_slice(s.as_bytes());
            self.col += cols;
        } else {
            self.text(s);
        }
    }

    /// A separator; when nothing could follow it, `…` ends the line instead.
    fn sep(&mut self, s: &str) {
        if self.room() > text::width(s) {
            self.text(s);
        } else {
            self.text("…");
            self.col = self.width;
        }
    }

    fn pad(&mut self, n: usize) {
        let n = n.min(self.room());
        pad(self.out, n);
        self.col += n;
    }

    fn pad_to(&mut self, col: usize) {
        if col > self.col {
            self.pad(col - self.col);
        }
    }

    fn paint(&mut self, code: &str) {
        if self.color {
            self.out.extend_from_slice(code.as_bytes());
        }
    }

    fn reset(&mut self) {
        if self.color {
            self.out.extend_from_slice(RESET.as_bytes());
        }
    }

    fn finish(self) {
        self.out.push(b'\n');
    }
}

/// The prefix segments of the ancestors of the current row, one per level below the top:
/// `│  ` when that ancestor has siblings still to come, blank otherwise. Kept as one string,
/// so a row's prefix is a single copy.
#[derive(Default)]
struct Ancestors {
    text: String,
    /// Byte end of each segment in `text`.
    ends: Vec<usize>,
}

impl Ancestors {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn truncate(&mut self, levels: usize) {
        self.ends.truncate(levels);
        self.text.truncate(self.ends.last().copied().unwrap_or(0));
    }

    fn push(&mut self, continues: bool) {
        self.text.push_str(if continues { "│  " } else { "   " });
        self.ends.push(self.text.len());
    }

    /// Segments from `first` on.
    fn from(&self, first: usize) -> &str {
        let start = match first {
            0 => 0,
            k => self.ends.get(k - 1).copied().unwrap_or(self.text.len()),
        };
        self.text.get(start..).unwrap_or_default()
    }
}

/// Draws the tree prefix: the ancestors' segments, then `tail` (a connector or the span's
/// own continuation). Past `levels` segments, the outer ones are replaced by `…`.
fn prefix(line: &mut Line<'_>, ancestors: &Ancestors, tail: Option<&str>, levels: usize) {
    let count = ancestors.len() + usize::from(tail.is_some());
    if count == 0 {
        return;
    }
    line.paint(DIM);
    let mut skip = 0;
    if count > levels {
        line.fixed("…  ", 3);
        skip = count - levels.saturating_sub(1).min(count);
    }
    if skip <= ancestors.len() {
        line.fixed(ancestors.from(skip), 3 * (ancestors.len() - skip));
        if let Some(tail) = tail {
            line.fixed(tail, 3);
        }
    }
    line.reset();
}

fn kind_marker(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Server => "▸",
        SpanKind::Client => "◂",
        SpanKind::Producer => "▹",
        SpanKind::Consumer => "◃",
        SpanKind::Internal => " ",
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// Writes `block` at `width` columns, with ANSI colour when `color`, followed by an empty
/// line.
pub(crate) fn render(block: &Block<'_>, width: usize, color: bool, out: &mut Vec<u8>) {
    let spans = block.spans;
    if spans.is_empty() {
        return;
    }
    let width = width.max(1);
    let tree = tree::build(spans);
    let (start, end) = extent(spans);
    let total = end.duration_since(start).unwrap_or_default();

    // Pass 1: services in order of appearance, cells, column widths.
    let mut services: Vec<&str> = Vec::new();
    let mut service_ix: HashMap<&str, usize> = HashMap::new();
    if let Some(top) = tree.top {
        services.push(&spans[top].service_name);
        service_ix.insert(&spans[top].service_name, 0);
    }
    let mut cells = Vec::with_capacity(tree.rows.len());
    let (mut max_depth, mut svc_w, mut label_w, mut status_w, mut dur_w) = (0, 0, 0, 0, 0);
    for row in &tree.rows {
        max_depth = max_depth.max(row.depth);
        let Node::Span(i) = row.node else {
            continue;
        };
        let span = &spans[i];
        // Few services per trace: a scan (same `Arc` first) beats hashing every name.
        let name: &str = &span.service_name;
        let scanned = services
            .iter()
            .take(8)
            .position(|s| std::ptr::eq(*s, name) || *s == name);
        let ix = match scanned {
            Some(ix) => ix,
            None => *service_ix.entry(name).or_insert_with(|| {
                services.push(name);
                services.len() - 1
            }),
        };
        let c = measure(span, ix, start);
        svc_w = svc_w.max(c.service_w);
        label_w = label_w.max(c.label_w);
        status_w = status_w.max(c.status_w);
        dur_w = dur_w.max(c.duration.width());
        cells.push(c);
    }
    let layout = Layout::new(width, max_depth, svc_w, label_w, status_w, dur_w);
    let line_bytes = width.min(400) + if color { 48 } else { 8 };
    out.reserve(line_bytes * (tree.rows.len() + 2));

    header(block, &tree, &services, total, width, color, out);

    // Pass 2: the rows.
    let events_cx = EventsContext {
        layout: &layout,
        origin: block.origin.map_or(start, |o| o.min(start)),
        color,
    };
    let mut open = Ancestors::default();
    let mut cells = cells.iter();
    for row in &tree.rows {
        open.truncate(row.depth.saturating_sub(1));
        let connector = (row.depth > 0).then_some(if row.last { "└─ " } else { "├─ " });
        let mut line = Line::new(out, width, color);
        prefix(&mut line, &open, connector, layout.levels);
        if row.depth > 0 {
            open.push(!row.last);
        }
        match row.node {
            Node::Missing(parent) => {
                missing_row(line, parent, block.late);
            }
            Node::Span(i) => {
                let Some(c) = cells.next() else {
                    line.finish();
                    continue;
                };
                span_row(line, &spans[i], c, &layout, total);
                events(out, &spans[i], c, row, &open, &events_cx);
            }
        }
    }
    out.push(b'\n');
}

fn header(
    block: &Block<'_>,
    tree: &tree::Tree,
    services: &[&str],
    total: Duration,
    width: usize,
    color: bool,
    out: &mut Vec<u8>,
) {
    let spans = block.spans;
    let mut line = Line::new(out, width, color);
    let mut id = Short::EMPTY;
    let _ = write!(id, "{:032x}", spans[0].trace_id());
    line.paint(BOLD);
    line.fixed("trace ", 6);
    line.short(&id);
    line.reset();
    let tag = if block.late {
        Some("late")
    } else if !tree.rooted {
        Some("incomplete")
    } else {
        None
    };
    if let Some(tag) = tag {
        line.sep("  ");
        line.paint(YELLOW);
        line.text(tag);
        line.reset();
    }
    if let Some(top) = tree.top {
        line.sep("  ");
        line.paint(BOLD);
        line.text(&spans[top].name);
        line.reset();
    }
    line.sep("  ");
    line.short(&duration(total));
    line.sep("  ");
    if has_error(spans) {
        line.paint(RED);
        line.paint(BOLD);
        line.text("ERROR");
    } else {
        line.paint(GREEN);
        line.text("OK");
    }
    line.reset();
    for (n, one, many) in [
        // Late spans hang off spans printed before: no orphans to speak of.
        (
            if block.late { 0 } else { tree.orphans as u64 },
            "orphan",
            "orphans",
        ),
        (block.dropped, "dropped", "dropped"),
    ] {
        if n > 0 {
            let mut note = Short::EMPTY;
            let _ = write!(note, "{n} {}", if n == 1 { one } else { many });
            line.sep("  ");
            line.paint(YELLOW);
            line.short(&note);
            line.reset();
        }
    }
    for (n, one, many, sep) in [
        (spans.len(), "span", "spans", "  "),
        (services.len(), "service", "services", ", "),
    ] {
        let mut count = Short::EMPTY;
        let _ = write!(count, "{n} {}", plural(n, one, many));
        line.sep(sep);
        line.short(&count);
    }
    if let Some((first, rest)) = services.split_first() {
        line.sep("  ");
        line.text(first);
        for (k, service) in rest.iter().enumerate() {
            line.sep(if k == 0 { " → " } else { ", " });
            line.text(service);
        }
    }
    line.finish();
}

fn missing_row(mut line: Line<'_>, parent: SpanId, late: bool) {
    let mut text = Short::EMPTY;
    let _ = write!(text, "{parent:016x}");
    line.paint(DIM);
    if late {
        line.text("↑ under parent ");
        line.text(text.as_str());
    } else {
        line.text("? parent ");
        line.text(text.as_str());
        line.text(" not received (orphans)");
    }
    line.reset();
    line.finish();
}

fn span_row(
    mut line: Line<'_>,
    span: &SpanRecord,
    c: &Cells<'_>,
    layout: &Layout,
    total: Duration,
) {
    let service_at = line.col;
    line.paint(SERVICE_COLORS[c.service_ix % SERVICE_COLORS.len()]);
    line.text_max(&span.service_name, layout.service);
    line.reset();
    line.pad_to(service_at + layout.service);
    line.fixed(" ", 1);
    if span.parent_is_remote {
        line.paint(DIM);
        line.fixed("⇠", 1);
        line.reset();
    } else {
        line.fixed(" ", 1);
    }
    line.fixed(kind_marker(&span.kind), 1);
    line.fixed(" ", 1);
    let error = c.tone == Tone::Error;
    if error {
        line.paint(RED);
    }
    line.text_max(&span.name, layout.left.saturating_sub(line.col));
    if error {
        line.reset();
    }
    if let Some(route) = c.route {
        line.text_max(" ", layout.left.saturating_sub(line.col));
        line.paint(DIM);
        line.text_max(route, layout.left.saturating_sub(line.col));
        line.reset();
    }
    if layout.status + layout.duration + layout.bar == 0 {
        line.finish();
        return;
    }
    line.pad_to(layout.left);
    if layout.status > 0 {
        line.pad(2 + layout.status.saturating_sub(c.status_w));
        if let Some(code) = c.tone.color() {
            line.paint(code);
        }
        if c.status_w <= layout.status {
            line.short(&c.status);
        } else {
            line.text_max(c.status.as_str(), layout.status);
        }
        line.reset();
    }
    if layout.duration > 0 {
        let w = c.duration.width();
        line.pad(2 + layout.duration.saturating_sub(w));
        line.short(&c.duration);
    }
    if layout.bar > 0 && line.room() >= layout.bar + 3 {
        let (first, filled) = bar_cells(c.offset, c.len, total, layout.bar);
        line.fixed(" |", 2);
        line.pad(first);
        line.paint(c.tone.color().unwrap_or(CYAN));
        if filled == 0 {
            line.fixed("·", 1);
        } else {
            for _ in 0..filled {
                line.fixed("█", 1);
            }
        }
        line.reset();
        line.pad(layout.bar.saturating_sub(first + filled.max(1)));
        line.fixed("|", 1);
    }
    line.finish();
}

/// What a block's event lines share: its layout, the time their offsets count from, colour.
struct EventsContext<'a> {
    layout: &'a Layout,
    origin: SystemTime,
    color: bool,
}

/// The span's events, one line each under the span with their offset from the trace start,
/// and its error status message when neither an exception event nor the status column
/// already says it.
fn events(
    out: &mut Vec<u8>,
    span: &SpanRecord,
    c: &Cells<'_>,
    row: &Row,
    open: &Ancestors,
    cx: &EventsContext<'_>,
) {
    let EventsContext {
        layout,
        origin: start,
        color,
    } = *cx;
    // One level deeper than the span's text, past the line down to its children.
    let own = Some(if row.has_children { "│  " } else { "   " });
    for event in &span.events {
        let mut line = Line::new(out, layout.width, color);
        prefix(&mut line, open, own, layout.levels);
        let offset = duration(event.timestamp.duration_since(start).unwrap_or_default());
        let room = line.room().saturating_sub(2 + 3 + offset.width());
        line.fixed("• ", 2);
        let before = line.col;
        if event.name == semconv::EXCEPTION_EVENT {
            let message = event
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == semconv::EXCEPTION_MESSAGE)
                .or_else(|| {
                    event
                        .attributes
                        .iter()
                        .find(|kv| kv.key.as_str() == semconv::EXCEPTION_TYPE)
                });
            line.paint(RED);
            line.text_max("exception", room);
            if let Some(kv) = message {
                line.text_max(": ", room.saturating_sub(line.col - before));
                let message = kv.value.as_str();
                line.text_max(&message, room.saturating_sub(line.col - before));
            }
            line.reset();
        } else {
            line.text_max(&event.name, room);
        }
        line.paint(DIM);
        line.text("  +");
        line.short(&offset);
        line.reset();
        line.finish();
    }
    if let Status::Error { description } = &span.status {
        let carried = span.events.iter().any(|e| {
            e.name == semconv::EXCEPTION_EVENT
                && e.attributes.iter().any(|kv| {
                    kv.key.as_str() == semconv::EXCEPTION_MESSAGE
                        && kv.value.as_str() == *description
                })
        });
        if !description.is_empty() && !carried && *description != c.status.as_str() {
            let mut line = Line::new(out, layout.width, color);
            prefix(&mut line, open, own, layout.levels);
            line.fixed("• ", 2);
            line.paint(RED);
            line.text("error: ");
            line.text(description);
            line.reset();
            line.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bars_are_placed_by_offset_and_sized_by_duration() {
        assert_eq!(bar_cells(ms(0), ms(100), ms(100), 30), (0, 30));
        assert_eq!(bar_cells(ms(50), ms(50), ms(100), 30), (15, 15));
        assert_eq!(bar_cells(ms(0), ms(20), ms(100), 30), (0, 6));
        assert_eq!(bar_cells(ms(10), ms(20), ms(100), 10), (1, 2));
    }

    #[test]
    fn a_short_span_still_fills_one_cell() {
        assert_eq!(
            bar_cells(ms(0), Duration::from_nanos(1), ms(100), 30),
            (0, 1)
        );
        assert_eq!(
            bar_cells(ms(100), Duration::from_nanos(1), ms(100), 30),
            (29, 1)
        );
        assert_eq!(
            bar_cells(ms(99), Duration::from_nanos(1), ms(100), 30),
            (29, 1)
        );
    }

    #[test]
    fn zero_length_spans_and_traces_fill_nothing_but_stay_in_range() {
        assert_eq!(bar_cells(ms(100), ms(0), ms(100), 30), (29, 0));
        assert_eq!(bar_cells(ms(0), ms(0), ms(0), 30), (0, 0));
        assert_eq!(bar_cells(ms(0), ms(1), ms(0), 30), (0, 30));
        assert_eq!(bar_cells(ms(5), ms(5), ms(5), 0), (0, 0));
    }

    #[test]
    fn bars_of_spans_beyond_the_trace_are_clamped() {
        let (first, filled) = bar_cells(ms(200), ms(100), ms(100), 30);
        assert!(first + filled <= 30);
        assert!(filled >= 1);
        let (first, filled) = bar_cells(Duration::MAX, Duration::MAX, ms(1), 30);
        assert!(first + filled <= 30);
    }

    #[test]
    fn the_layout_gives_way_bar_first_then_status_then_duration() {
        let full = Layout::new(120, 2, 9, 18, 11, 6);
        assert_eq!((full.status, full.duration, full.bar), (11, 6, 30));
        assert_eq!(full.left, 6 + 9 + 4 + 18);
        let narrower_bar = Layout::new(80, 2, 9, 18, 11, 6);
        assert_eq!((narrower_bar.left, narrower_bar.bar), (37, 19));
        let no_bar = Layout::new(55, 2, 9, 18, 11, 6);
        assert_eq!((no_bar.status, no_bar.duration, no_bar.bar), (11, 6, 0));
        let tiny = Layout::new(20, 2, 9, 18, 11, 6);
        assert_eq!((tiny.status, tiny.duration, tiny.bar), (0, 0, 0));
        assert_eq!(tiny.left, 20);
        assert!(tiny.service < 9);
        let none = Layout::new(1, 300, 9, 18, 11, 6);
        assert_eq!(none.left, 1);
        assert_eq!(none.levels, 1);
    }

    #[test]
    fn deep_prefixes_are_compressed() {
        let draw = |open: &[bool], levels: usize| {
            let mut ancestors = Ancestors::default();
            for &o in open {
                ancestors.push(o);
            }
            let mut out = Vec::new();
            let mut line = Line::new(&mut out, 80, false);
            prefix(&mut line, &ancestors, Some("└─ "), levels);
            line.finish();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(draw(&[true, false, true, true], 9), "│     │  │  └─ \n");
        assert_eq!(draw(&[true, false, true, false], 3), "…     └─ \n");
        assert_eq!(draw(&[true, false, true, true], 3), "…  │  └─ \n");
        assert_eq!(draw(&[true, false], 1), "…  \n");
        assert_eq!(draw(&[], 1), "└─ \n");

        let mut ancestors = Ancestors::default();
        for o in [true, false, true] {
            ancestors.push(o);
        }
        ancestors.truncate(1);
        ancestors.push(false);
        assert_eq!(ancestors.from(0), "│     ");
        assert_eq!(ancestors.from(1), "   ");
        assert_eq!(ancestors.from(2), "");
    }
}
