// The trace viewer's page. Every name and value from spans goes in as text (textContent),
// never as markup.
"use strict";

// The list updates when the server says the held traces changed (server-sent events,
// /api/events); it polls only while that stream is down.
const POLL_MS = 2000;
const EVENTS_RETRY_MS = 30000;
let pollTimer = null;
let events = null;
let refreshing = false;
let refreshAgain = false;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function ms(value) {
  if (value >= 1000) return (value / 1000).toFixed(2) + " s";
  if (value >= 10) return value.toFixed(1) + " ms";
  return value.toFixed(2) + " ms";
}

function clock(us) {
  const d = new Date(us / 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function showStatus(text) {
  document.getElementById("status").textContent = text || "";
}

async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function renderCounts(counts) {
  const box = document.getElementById("counts");
  box.replaceChildren(
    el("span", { text: counts.traces + " traces" }),
    el("span", { text: counts.spans + " spans" }),
    el("span", { text: counts.services + " services" }),
  );
}

// ---- the list ----

function filterQuery() {
  const params = new URLSearchParams();
  const form = document.getElementById("filters");
  for (const [key, value] of new FormData(form)) {
    if (String(value).trim() !== "") params.set(key, String(value).trim());
  }
  return params.toString();
}

function renderTraces(list) {
  const rows = document.getElementById("trace-rows");
  rows.replaceChildren(...list.traces.map((t) => {
    const row = el("tr", { class: "trace-row" + (t.error ? " error" : ""), "data-trace-id": t.trace_id },
      el("td", { class: "dim", text: clock(t.start_us) }),
      el("td", {},
        el("a", { href: "#/trace/" + encodeURIComponent(t.trace_id), class: "trace-name", text: t.name || "(no name)" }),
        el("div", { class: "mono dim", text: t.trace_id })),
      el("td", { class: "path", text: t.path }),
      el("td", { class: "num", text: t.span_count }),
      el("td", { class: "num", text: ms(t.duration_ms) }),
      el("td", {}, t.error ? el("span", { class: "badge error", text: "ERROR" }) : ""));
    row.addEventListener("click", () => { location.hash = "#/trace/" + encodeURIComponent(t.trace_id); });
    return row;
  }));
  document.getElementById("empty").hidden = list.traces.length > 0;
  renderCounts(list.counts);
}

function renderStats(stats) {
  const rows = document.getElementById("stat-rows");
  rows.replaceChildren(...stats.operations.map((op) => el("tr", {},
    el("td", { class: "service", text: op.service }),
    el("td", { text: op.name }),
    el("td", { class: "num", text: op.count }),
    el("td", { class: "num", text: op.errors }),
    el("td", { class: "num", text: ms(op.p50_ms) }),
    el("td", { class: "num", text: ms(op.p95_ms) }),
    el("td", { class: "num", text: ms(op.p99_ms) }))));
  // Filter choices from what is held; keep the current choice.
  const select = document.getElementById("f-service");
  const chosen = select.value;
  const services = [...new Set(stats.operations.map((op) => op.service))].sort();
  if (chosen && !services.includes(chosen)) services.push(chosen);
  select.replaceChildren(el("option", { value: "", text: "all" }),
    ...services.map((s) => el("option", { value: s, text: s })));
  select.value = chosen;
  document.getElementById("operations").replaceChildren(
    ...[...new Set(stats.operations.map((op) => op.name))].map((n) => el("option", { value: n })));
}

async function refreshList() {
  try {
    const [list, stats] = await Promise.all([
      getJson("/api/traces?" + filterQuery()),
      getJson("/api/stats"),
    ]);
    document.getElementById("filter-error").textContent = "";
    renderTraces(list);
    renderStats(stats);
    showStatus("");
  } catch (error) {
    if (error.status === 400) document.getElementById("filter-error").textContent = error.message;
    else showStatus("viewer unreachable: " + error.message);
  }
}

/// One refresh at a time; changes told meanwhile make one more.
async function refreshSoon() {
  if (refreshing) { refreshAgain = true; return; }
  refreshing = true;
  try {
    do {
      refreshAgain = false;
      await refreshList();
    } while (refreshAgain);
  } finally {
    refreshing = false;
  }
}

function listShown() {
  return !document.getElementById("list-view").hidden;
}

function startPolling() {
  if (pollTimer === null) pollTimer = setInterval(() => { if (listShown()) refreshSoon(); }, POLL_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

function listen() {
  if (!window.EventSource) { startPolling(); return; }
  events = new EventSource("/api/events");
  events.addEventListener("traces", () => { if (listShown()) refreshSoon(); });
  events.addEventListener("open", () => { stopPolling(); document.body.dataset.live = "events"; });
  events.addEventListener("error", () => {
    document.body.dataset.live = "polling";
    startPolling();
    // Refused (too many clients) or gone for good: try again later.
    if (events.readyState === EventSource.CLOSED) {
      events = null;
      setTimeout(listen, EVENTS_RETRY_MS);
    }
  });
}

function showList() {
  document.getElementById("trace-view").hidden = true;
  document.getElementById("list-view").hidden = false;
  refreshSoon();
}

// ---- one trace ----

/// Spans in tree order (children after their parent, by start), with depths. Spans whose
/// parent is not in the trace are shown at the top level.
function treeOrder(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  const tops = [];
  for (const span of spans) {
    if (span.parent_span_id && ids.has(span.parent_span_id)) {
      if (!children.has(span.parent_span_id)) children.set(span.parent_span_id, []);
      children.get(span.parent_span_id).push(span);
    } else {
      tops.push(span);
    }
  }
  const out = [];
  const seen = new Set();
  const visit = (span, depth) => {
    if (seen.has(span.span_id)) return;
    seen.add(span.span_id);
    out.push({ span, depth });
    for (const child of children.get(span.span_id) || []) visit(child, depth + 1);
  };
  for (const top of tops) visit(top, 0);
  // Cycles (bad input) leave spans unvisited: show them rather than lose them.
  for (const span of spans) visit(span, 0);
  return out;
}

function table(object) {
  const entries = Object.entries(object || {});
  if (entries.length === 0) return el("p", { class: "dim", text: "none" });
  return el("table", {}, el("tbody", {}, ...entries.map(([key, value]) =>
    el("tr", {}, el("td", { class: "mono", text: key }),
      el("td", { text: typeof value === "string" ? value : JSON.stringify(value) })))));
}

function showDetails(span) {
  const box = document.getElementById("details");
  const status = span.status.code + (span.status.message ? ": " + span.status.message : "");
  const events = span.events.length === 0 ? [el("p", { class: "dim", text: "none" })] :
    span.events.map((e) => {
      const exception = e.name === "exception";
      const parts = [el("div", {}, el("strong", { text: e.name }), " ",
        el("span", { class: "dim", text: "+" + ms(e.offset_ms) }))];
      if (exception && e.attributes["exception.message"] !== undefined) {
        parts.push(el("div", { class: "exception-message", text: String(e.attributes["exception.message"]) }));
      }
      parts.push(table(e.attributes));
      return el("div", { class: "event" + (exception ? " exception" : "") }, ...parts);
    });
  const links = span.links.length === 0 ? [el("p", { class: "dim", text: "none" })] :
    span.links.map((l) => el("div", { class: "event" },
      el("a", { class: "mono", href: "#/trace/" + encodeURIComponent(l.trace_id), text: l.trace_id + " / " + l.span_id }),
      table(l.attributes)));
  box.replaceChildren(
    el("h3", { text: span.name }),
    el("table", {}, el("tbody", {},
      el("tr", {}, el("td", { text: "service" }), el("td", { text: span.service })),
      el("tr", {}, el("td", { text: "kind" }), el("td", { text: span.kind })),
      el("tr", {}, el("td", { text: "status" }), el("td", { class: span.status.code === "error" ? "exception-message" : "", text: status })),
      el("tr", {}, el("td", { text: "duration" }), el("td", { text: ms(span.duration_ms) + " (starts at +" + ms(span.offset_ms) + ")" })),
      el("tr", {}, el("td", { text: "span id" }), el("td", { class: "mono", text: span.span_id + (span.parent_span_id ? " (parent " + span.parent_span_id + (span.parent_is_remote ? ", remote" : "") + ")" : "") })),
      el("tr", {}, el("td", { text: "scope" }), el("td", { text: span.scope })))),
    el("h4", { text: "Attributes" }), table(span.attributes),
    el("h4", { text: "Events" }), ...events,
    el("h4", { text: "Links" }), ...links);
  box.hidden = false;
}

function renderTrace(trace) {
  document.getElementById("trace-title").textContent = trace.name || trace.trace_id;
  document.getElementById("trace-path").textContent = trace.path;
  document.getElementById("trace-info").textContent = "· " + trace.trace_id + " · " + ms(trace.duration_ms) +
    " · " + trace.span_count + " spans" + (trace.error ? " · ERROR" : "") +
    (trace.dropped_spans ? " · " + trace.dropped_spans + " dropped" : "");
  const total = Math.max(trace.duration_ms, 0.001);
  document.getElementById("axis").replaceChildren(...[0, 0.25, 0.5, 0.75, 1].map((f) =>
    el("span", { style: { left: (f * 100) + "%" }, text: ms(f * total) })));
  const rows = treeOrder(trace.spans).map(({ span, depth }) => {
    const left = Math.min(100, (span.offset_ms / total) * 100);
    const width = Math.max(0, Math.min(100 - left, (span.duration_ms / total) * 100));
    const row = el("div", { class: "span-row" + (span.status.code === "error" ? " error" : ""), "data-span-id": span.span_id },
      el("div", { class: "span-label", style: { paddingLeft: (0.5 + depth * 1.2) + "em" } },
        el("span", { class: "service", text: span.service }),
        el("span", { class: "kind", text: span.kind }),
        el("span", { class: "span-name", text: span.name })),
      el("div", { class: "span-track" },
        el("div", { class: "bar", style: { left: left + "%", width: width + "%" } }),
        el("span", { class: "bar-label", style: { left: Math.min(left + width, 90) + "%" }, text: ms(span.duration_ms) })));
    row.addEventListener("click", () => {
      for (const other of document.querySelectorAll(".span-row.selected")) other.classList.remove("selected");
      row.classList.add("selected");
      showDetails(span);
    });
    return row;
  });
  document.getElementById("span-rows").replaceChildren(...rows);
}

async function showTrace(traceId) {
  document.getElementById("list-view").hidden = true;
  document.getElementById("trace-view").hidden = false;
  document.getElementById("details").hidden = true;
  document.getElementById("span-rows").replaceChildren();
  document.getElementById("trace-title").textContent = traceId;
  try {
    renderTrace(await getJson("/api/traces/" + encodeURIComponent(traceId)));
    showStatus("");
  } catch (error) {
    document.getElementById("trace-title").textContent = error.status === 404 ?
      "Trace " + traceId + " is not held (never received, or let go to stay within the bounds)" : "Error: " + error.message;
  }
}

// ---- routing ----

function route() {
  const match = location.hash.match(/^#\/trace\/([^/]+)$/);
  if (!match) { showList(); return; }
  // A malformed escape (a typed or crafted link) would throw, and stop the page's script
  // before the live updates start: ask for it as it is, for the server's answer.
  let traceId = match[1];
  try { traceId = decodeURIComponent(traceId); } catch (_) { /* kept as it is */ }
  showTrace(traceId);
}

document.getElementById("filters").addEventListener("input", () => refreshSoon());
document.getElementById("filters").addEventListener("submit", (e) => { e.preventDefault(); refreshSoon(); });
window.addEventListener("hashchange", route);
route();
listen();
