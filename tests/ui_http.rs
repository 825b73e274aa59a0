//! The trace viewer's live updates and its guard against DNS rebinding, over real sockets:
//! a server-sent event after a traced axum request, the cap on event clients, no backlog for
//! a slow reader; 403 for foreign `Host` headers (the OTLP endpoint too) and for
//! cross-origin posts.
#![cfg(feature = "ui")]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::routing;
use axum::Router;
use tracewire::record::Recorder;
use tracewire::ui::Viewer;
use tracewire::ServerLayer;
use tracing_subscriber::layer::SubscriberExt;

fn start(builder: tracewire::ui::ViewerBuilder) -> Viewer {
    builder
        .addr(([127, 0, 0, 1], 0).into())
        .start()
        .expect("start the viewer")
}

/// One HTTP/1.1 exchange written by hand, so that any `Host` and `Origin` can be sent;
/// returns the status code and the body.
fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the answer");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    (status, body)
}

fn get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

/// An OTLP/JSON body with one root span of trace `trace` (32 hex digits).
fn otlp_body(trace: &str) -> String {
    serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace, "spanId": "0102030405060708", "name": "GET /", "kind": 2,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000001000000"
        }]}]
    }]})
    .to_string()
}

fn post_otlp(addr: SocketAddr, host: &str, origin: Option<&str>, trace: &str) -> (u16, String) {
    let body = otlp_body(trace);
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    raw(
        addr,
        &format!(
            "POST /v1/traces HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn requests_for_another_host_get_403_the_otlp_endpoint_too() {
    let viewer = start(Viewer::builder());
    let addr = viewer.addr();
    let port = addr.port();
    for path in [
        "/",
        "/app.js",
        "/api/traces",
        "/api/stats",
        "/api/events",
        "/metrics",
    ] {
        for host in [
            format!("attacker.example:{port}"),
            "attacker.example".to_owned(),
            format!("localhost.attacker.example:{port}"),
            // Our names, another port: a page of another local server.
            format!("localhost:{}", port.wrapping_add(1).max(1)),
        ] {
            let (status, body) = get(addr, path, &host);
            assert_eq!(status, 403, "{path} for {host}: {body}");
            assert!(body.contains("answers only to its own address"), "{body}");
        }
    }
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let (status, _) = post_otlp(addr, &format!("attacker.example:{port}"), None, trace);
    assert_eq!(status, 403);
    // No Host at all (HTTP/1.0).
    let (status, _) = raw(addr, "GET /api/traces HTTP/1.0\r\n\r\n");
    assert_eq!(status, 403);
    assert_eq!(
        viewer.stats().spans_received_otlp,
        0,
        "nothing was taken in"
    );

    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, body) = get(addr, "/api/traces", &host);
        assert_eq!(status, 200, "{host}: {body}");
    }
    let (status, body) = post_otlp(addr, &format!("localhost:{port}"), None, trace);
    assert_eq!(status, 200, "{body}");
    assert_eq!(viewer.stats().spans_received_otlp, 1);
}

#[test]
fn hosts_allowed_by_the_builder_are_answered() {
    let viewer = start(Viewer::builder().allow_host("Traces.Dev.Internal"));
    let addr = viewer.addr();
    let (status, body) = get(addr, "/api/traces", "traces.dev.internal:8080");
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(addr, "/api/traces", "traces.dev.internal");
    assert_eq!(status, 200);
    let (status, _) = get(addr, "/api/traces", "other.dev.internal:8080");
    assert_eq!(status, 403);
    let (status, body) = post_otlp(
        addr,
        "traces.dev.internal:8080",
        None,
        "0af7651916cd43dd8448eb211c80319c",
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn cross_origin_posts_get_403() {
    let viewer = start(Viewer::builder());
    let addr = viewer.addr();
    let host = format!("127.0.0.1:{}", addr.port());
    for origin in [
        "http://attacker.example",
        "null",
        &format!("http://localhost:{}", addr.port()),
        &format!("https://127.0.0.1:{}", addr.port()),
    ] {
        let (status, body) = post_otlp(
            addr,
            &host,
            Some(origin),
            "0af7651916cd43dd8448eb211c80319c",
        );
        assert_eq!(status, 403, "{origin}: {body}");
        assert!(body.contains("other sites"), "{body}");
    }
    assert_eq!(viewer.stats().spans_received_otlp, 0);
    // The viewer's own page may post, and so may any program that is not a browser.
    let own = format!("http://{host}");
    let (status, body) = post_otlp(addr, &host, Some(&own), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_otlp(addr, &host, None, "1af7651916cd43dd8448eb211c80319c");
    assert_eq!(status, 200, "{body}");
    assert_eq!(viewer.stats().spans_received_otlp, 2);
}

/// An open `GET /api/events`, read event by event.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(viewer: &Viewer) -> Result<Events, reqwest::StatusCode> {
        let response = reqwest::get(format!("{}api/events", viewer.url()))
            .await
            .expect("viewer answers");
        if response.status() != 200 {
            return Err(response.status());
        }
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, "text/event-stream");
        Ok(Events {
            response,
            buffer: String::new(),
        })
    }

    /// The next `traces` event's data (comments and keep-alives skipped), within 10 s.
    async fn next(&mut self) -> serde_json::Value {
        let read = async {
            loop {
                while let Some((event, rest)) = self.buffer.split_once("\n\n") {
                    let event = event.to_owned();
                    self.buffer = rest.to_owned();
                    if event.lines().any(|l| l == "event: traces") {
                        let data = event
                            .lines()
                            .find_map(|l| l.strip_prefix("data: "))
                            .expect("data");
                        return serde_json::from_str(data).expect("JSON data");
                    }
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .expect("the stream goes on")
                    .expect("the stream is not over");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("an event within 10 s")
    }
}

#[test]
fn a_traced_request_is_told_to_event_clients() {
    let viewer = start(Viewer::builder());
    let (layer, guard) = Recorder::builder()
        .service_name("test")
        .reporter(viewer.reporter())
        .build();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        support::runtime().block_on(async {
            let mut events = Events::open(&viewer).await.expect("200");
            let first = events.next().await;
            assert_eq!(first["traces_held"], 0, "{first}");

            let app = Router::new()
                .route("/hello", routing::get(|| async { "hi" }))
                .layer(ServerLayer::new().service_name("web"));
            let addr = support::serve(app).await;
            let response = support::hyper_client()
                .request(support::get_req(&format!("http://{addr}/hello")))
                .await
                .unwrap();
            assert_eq!(support::text(response.into_body()).await, "hi");
            guard.flush().unwrap();

            let event = events.next().await;
            assert_eq!(event["traces_held"], 1, "{event}");
            assert!(
                event["generation"].as_u64() > first["generation"].as_u64(),
                "{event}"
            );
            let list: serde_json::Value = serde_json::from_str(
                &reqwest::get(format!("{}api/traces", viewer.url()))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(list["traces"][0]["name"], "GET /hello", "{list}");
        })
    });
}

#[test]
fn event_clients_are_capped_and_a_slow_one_gets_no_backlog() {
    let viewer = start(Viewer::builder());
    let mut reporter = viewer.reporter();
    support::runtime().block_on(async {
        let mut open = Vec::new();
        for _ in 0..32 {
            let mut events = Events::open(&viewer).await.expect("200");
            events.next().await;
            open.push(events);
        }
        assert_eq!(
            Events::open(&viewer).await.err(),
            Some(reqwest::StatusCode::SERVICE_UNAVAILABLE)
        );

        // 300 changes while the first client does not read.
        let started = Instant::now();
        let slow = &mut open[0];
        for n in 1..=300u64 {
            let mut span = SpanBuilder::root(n);
            span.name = format!("burst {n}").into();
            tracewire::report::Reporter::report(&mut reporter, &[span]);
        }
        assert_eq!(viewer.stats().traces_held, 300);
        // It then reads: a few events at most (one per 250 ms while the burst went on),
        // and the last tells the final state.
        let mut received = 0;
        loop {
            let event = slow.next().await;
            received += 1;
            if event["traces_held"] == 300 {
                break;
            }
        }
        let allowed = started.elapsed().as_millis() / 250 + 2;
        assert!(
            received as u128 <= allowed,
            "{received} events for 300 changes in {:?}",
            started.elapsed()
        );
    });
}

/// Root spans made by hand, for bursts of changes.
struct SpanBuilder;

impl SpanBuilder {
    fn root(trace: u64) -> tracewire::record::SpanRecord {
        use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let now = std::time::SystemTime::now();
        tracewire::record::SpanRecord {
            span_context: SpanContext::new(
                TraceId::from(u128::from(trace)),
                SpanId::from(1u64),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::INVALID,
            parent_is_remote: false,
            name: "root".into(),
            kind: tracewire::span::SpanKind::Server,
            start_time: now,
            end_time: now,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Vec::new(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status: tracewire::span::Status::Unset,
            service_name: "burst".into(),
            scope: tracewire::span::InstrumentationScope::builder("test").build(),
        }
    }
}

/// The head of a response, lower-cased, for its headers.
fn head(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let host = format!("127.0.0.1:{}", addr.port());
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    // The event stream does not end: its head is enough.
    let mut buf = [0; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).expect("read the answer");
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let response = String::from_utf8_lossy(&response).to_ascii_lowercase();
    response.split("\r\n\r\n").next().unwrap().to_owned()
}

#[test]
fn every_answer_is_nosniff_and_refuses_inline_script() {
    let viewer = start(Viewer::builder());
    let addr = viewer.addr();
    // A query parameter is echoed in a 400's message: served as anything but JSON, it
    // must not run.
    for path in [
        "/",
        "/app.js",
        "/api/traces",
        "/api/traces?%3Cscript%3Ealert(1)%3C/script%3E=1",
        "/api/traces/4bf92f3577b34da6a3ce929d0e0e4736",
        "/api/stats",
        "/api/events",
        "/metrics",
        "/no/such/page",
    ] {
        let head = head(addr, path);
        assert!(
            head.contains("\r\nx-content-type-options: nosniff"),
            "{path}: {head}"
        );
        let csp = head
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("{path}: no CSP in {head}"));
        assert!(csp.starts_with("default-src "), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    }
}

#[test]
fn dropping_the_viewer_does_not_wait_for_requests_that_never_end() {
    // A sender stopped half-way through a request (paused in a debugger, say) must not
    // keep the application from exiting: dropping the viewer waits for it only briefly.
    let viewer = start(Viewer::builder());
    let addr = viewer.addr();
    let host = format!("127.0.0.1:{}", addr.port());
    let mut body_unsent = TcpStream::connect(addr).unwrap();
    write!(
        body_unsent,
        "POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    let mut head_unsent = TcpStream::connect(addr).unwrap();
    write!(head_unsent, "GET /api/traces HTTP/1.1\r\nHost: {host}\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (dropped, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let started = Instant::now();
        drop(viewer);
        let _ = dropped.send(started.elapsed());
    });
    let took = done
        .recv_timeout(Duration::from_secs(15))
        .expect("dropping the viewer returns");
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop((body_unsent, head_unsent));
}

/// The connections to `port` the viewer has taken in: established TCP sockets on that local
/// port with an inode, that is a file descriptor (one still in the listen backlog has none).
/// Counted by port, not by this process's descriptors, which the other tests of this binary
/// open and close as they run; and by inode, as the kernel writes the table while sockets
/// come and go and may list one twice.
#[cfg(target_os = "linux")]
fn taken_in(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let inodes: std::collections::HashSet<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            let ours = u16::from_str_radix(local_port, 16).unwrap() == port
                && fields[3] == "01"
                && fields[9] != "0";
            ours.then(|| fields[9].to_owned())
        })
        .collect();
    inodes.len()
}

#[test]
#[cfg(target_os = "linux")]
fn connections_are_capped_so_the_application_keeps_its_file_descriptors() {
    // Each connection the viewer serves takes a descriptor of the application's process: a
    // local program that opens connections and never closes them (a leaking exporter, say)
    // must not take them all. Past the cap, connections wait in the listen backlog.
    let viewer = start(Viewer::builder());
    let addr = viewer.addr();
    // Within the cap and the backlog (128), so that every connect completes.
    let clients: Vec<TcpStream> = (0..320)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok())
        .collect();
    assert!(clients.len() > 256, "{} connected", clients.len());
    // The viewer takes in 256 of them, in its own time, and no more.
    let deadline = Instant::now() + Duration::from_secs(10);
    while taken_in(addr.port()) < 256 {
        assert!(
            Instant::now() < deadline,
            "{} taken in",
            taken_in(addr.port())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let served = taken_in(addr.port());
    assert!(served <= 256, "{served} connections taken in");
    // Once they go, the viewer answers again.
    drop(clients);
    let (status, body) = get(addr, "/api/traces", &format!("127.0.0.1:{}", addr.port()));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout() {
    // One opened and never written to would otherwise hold one of the 256 connections.
    let viewer = start(Viewer::builder().idle_timeout(Duration::from_millis(300)));
    let mut silent = TcpStream::connect(viewer.addr()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0; 16];
    // The viewer closes it: end of stream (or a reset), not our 10 s read timeout.
    match silent.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "{:?}", &buf[..n]),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(9));
    // A connection in use is not idle.
    let addr = viewer.addr();
    let (status, _) = get(addr, "/api/traces", &format!("127.0.0.1:{}", addr.port()));
    assert_eq!(status, 200);
}

#[test]
fn otlp_senders_past_four_bodies_at_once_are_told_to_retry() {
    let viewer = start(Viewer::builder());
    let addr = viewer.addr();
    let host = format!("127.0.0.1:{}", addr.port());
    // Four senders start a body of 1,000 bytes and pause half-way: each holds a slot.
    let paused: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(addr).unwrap();
            write!(
                stream,
                "POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n{{\"resourceSpans\": ["
            )
            .unwrap();
            stream
        })
        .collect();
    // Once the four are being read (they arrive in their own time), a fifth is told to retry.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let stream = TcpStream::connect(addr).unwrap();
        let answer = send_otlp(stream, &host);
        if answer.starts_with("HTTP/1.1 503") || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // When they go, senders are served again.
    drop(paused);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = send_otlp(TcpStream::connect(addr).unwrap(), &host);
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "{answer}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Posts one span and returns the whole answer.
fn send_otlp(mut stream: TcpStream, host: &str) -> String {
    let body = otlp_body("4bf92f3577b34da6a3ce929d0e0e4736");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}
