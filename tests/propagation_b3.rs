//! B3 sampling states through real axum servers on loopback: an edge service reads B3 from
//! its caller and calls a downstream echo service through `ClientLayer`, which shows what
//! B3 headers arrived downstream.
//!
//! - ids without a sampling state ("deferred") leave the decision to the local sampler, and
//!   when it says no the ids go on still deferred, never as a deny the caller did not send;
//! - a bare deny (`b3: 0`, `x-b3-sampled: 0`) is honoured: nothing is recorded and the deny
//!   goes on.

#![cfg(all(feature = "b3", feature = "axum"))]

mod support;

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use http::HeaderMap;
use opentelemetry_propagator_b3::{B3Encoding, Propagator as B3Propagator};
use support::*;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::context::TraceId;
use tracewire::env::EnvConfig;
use tracewire::propagation::{OtelPropagator, Propagator};
use tracewire::record::Recorder;
use tracewire::sampler::{AlwaysOff, ParentBased};
use tracewire::{ClientLayer, ServerLayer};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

/// `OtelPropagator` around the B3 crate's own propagator (single header), in place of the
/// propagator `OTEL_PROPAGATORS` names.
const OTEL_B3: &str = "OtelPropagator(b3)";

fn b3(name: &'static str) -> Box<dyn Propagator> {
    if name == OTEL_B3 {
        return Box::new(OtelPropagator::new(B3Propagator::with_encoding(
            B3Encoding::SingleHeader,
        )));
    }
    EnvConfig::from_lookup(|var| (var == "OTEL_PROPAGATORS").then_some(name)).propagator()
}

/// The B3 headers a request carried, as text.
async fn echo(headers: HeaderMap) -> String {
    let get = |name: &str| {
        headers
            .get(name)
            .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
    };
    format!(
        "b3={} traceid={} spanid={} sampled={}",
        get("b3"),
        get("x-b3-traceid"),
        get("x-b3-spanid"),
        get("x-b3-sampled")
    )
}

/// The edge (B3 `name` in and out) in front of the echo service; returns the edge's address.
async fn edge(name: &'static str) -> SocketAddr {
    let downstream = serve(Router::new().route("/echo", get(echo))).await;
    let app = Router::new()
        .route(
            "/in",
            get(move || async move {
                let mut client = ServiceBuilder::new()
                    .layer(ClientLayer::new().propagator(b3(name)))
                    .service(hyper_client());
                let request = get_req(&format!("http://{downstream}/echo"));
                let response = client.ready().await.unwrap().call(request).await.unwrap();
                text(response.into_body()).await
            }),
        )
        .layer(ServerLayer::new().propagator(b3(name)));
    serve(app).await
}

/// Calls the edge with `headers`; returns what reached the echo service.
async fn call(name: &'static str, headers: Vec<(&'static str, String)>) -> String {
    let addr = edge(name).await;
    let mut request = get_req(&format!("http://{addr}/in"));
    for (header, value) in headers {
        request.headers_mut().insert(header, value.parse().unwrap());
    }
    let response = hyper_client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    text(response.into_body()).await
}

fn deferred_headers(name: &str) -> Vec<(&'static str, String)> {
    if name == "b3" {
        vec![("b3", format!("{TRACE}-{SPAN}"))]
    } else {
        vec![("x-b3-traceid", TRACE.into()), ("x-b3-spanid", SPAN.into())]
    }
}

#[test]
fn deferred_ids_are_sampled_when_the_local_sampler_says_so() {
    for name in ["b3", "b3multi"] {
        let headers = deferred_headers(name);
        let (recorded, seen) = recorded(|_| call(name, headers));
        let spans = recorded.spans.wait_for(2, WAIT).unwrap();
        let server = recorded.spans.find("GET /in");
        let server = server.unwrap_or_else(|| panic!("{name}: no server span: {spans:#?}"));
        assert_eq!(
            server.trace_id(),
            TraceId::from_hex(TRACE).unwrap(),
            "{name}"
        );
        assert_eq!(format!("{:016x}", server.parent_span_id), SPAN, "{name}");
        // Our decision (sampled) goes on.
        if name == "b3" {
            assert!(seen.starts_with(&format!("b3={TRACE}-")), "{seen}");
            assert!(seen.contains("-1 "), "{name}: {seen}");
        } else {
            assert!(seen.ends_with("sampled=1"), "{name}: {seen}");
        }
    }
}

#[test]
fn deferred_ids_the_local_sampler_leaves_out_go_on_deferred_never_as_a_deny() {
    for name in ["b3", "b3multi"] {
        let headers = deferred_headers(name);
        let builder = Recorder::builder().sampler(ParentBased::new(AlwaysOff));
        let (recorded, seen) = with_recorder(builder, |_| call(name, headers));
        assert!(recorded.spans.spans().is_empty(), "{name}: not sampled");
        if name == "b3" {
            // `{trace}-{span}`: ids, no sampling state.
            let value = seen.split(' ').next().unwrap().trim_start_matches("b3=");
            let parts: Vec<&str> = value.split('-').collect();
            assert_eq!(parts.len(), 2, "{seen}");
            assert_eq!(parts[0], TRACE);
        } else {
            assert!(seen.contains(&format!("traceid={TRACE}")), "{seen}");
            assert!(seen.ends_with("sampled=-"), "no x-b3-sampled: {seen}");
        }
    }
}

#[test]
fn a_bare_deny_records_nothing_and_goes_on() {
    for (name, header, value) in [("b3", "b3", "0"), ("b3multi", "x-b3-sampled", "0")] {
        let (recorded, seen) = recorded(|_| call(name, vec![(header, value.to_owned())]));
        assert!(
            recorded.spans.spans().is_empty(),
            "{name}: {:#?}",
            recorded.spans.spans()
        );
        if name == "b3" {
            assert!(seen.split(' ').next().unwrap().ends_with("-0"), "{seen}");
        } else {
            assert!(seen.ends_with("sampled=0"), "{seen}");
        }
    }
}

/// The server span of `GET /in`, which must belong to the caller's trace.
fn server_span_of_the_callers_trace(recorded: &Recorded, what: &str) {
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    let server = recorded.spans.find("GET /in");
    let server = server.unwrap_or_else(|| panic!("{what}: no server span: {spans:#?}"));
    assert_eq!(
        server.trace_id(),
        TraceId::from_hex(TRACE).unwrap(),
        "{what}"
    );
    assert_eq!(format!("{:016x}", server.parent_span_id), SPAN, "{what}");
}

#[test]
fn flags_0_leaves_an_accept_standing() {
    for name in ["b3", "b3multi"] {
        let mut headers = deferred_headers("b3multi");
        headers.push(("x-b3-sampled", "1".into()));
        headers.push(("x-b3-flags", "0".into()));
        // Only the caller's accept can get a span recorded past this sampler.
        let builder = Recorder::builder().sampler(ParentBased::new(AlwaysOff));
        let (recorded, seen) = with_recorder(builder, |_| call(name, headers));
        server_span_of_the_callers_trace(&recorded, name);
        if name == "b3" {
            assert!(seen.split(' ').next().unwrap().ends_with("-1"), "{seen}");
        } else {
            assert!(seen.ends_with("sampled=1"), "{seen}");
        }
    }
}

/// Multiple headers naming another trace than `TRACE`, with `sampled`.
fn other_trace(sampled: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c".into()),
        ("x-b3-spanid", "b7ad6b7169203331".into()),
        ("x-b3-sampled", sampled.into()),
    ]
}

#[test]
fn the_single_header_takes_precedence_for_both_names() {
    for name in ["b3", "b3multi"] {
        // Debug in `b3` over a deny in the multiple headers.
        let mut headers = other_trace("0");
        headers.push(("b3", format!("{TRACE}-{SPAN}-d")));
        let builder = Recorder::builder().sampler(ParentBased::new(AlwaysOff));
        let (accepted, seen) = with_recorder(builder, |_| call(name, headers));
        server_span_of_the_callers_trace(&accepted, name);
        if name == "b3" {
            assert!(seen.starts_with(&format!("b3={TRACE}-")), "{seen}");
            assert!(seen.split(' ').next().unwrap().ends_with("-1"), "{seen}");
        } else {
            assert!(seen.contains(&format!("traceid={TRACE}")), "{seen}");
            assert!(seen.ends_with("sampled=1"), "{seen}");
        }

        // A bare deny in `b3` over an accept in the multiple headers.
        let mut headers = other_trace("1");
        headers.push(("b3", "0".into()));
        let (denied, seen) = recorded(|_| call(name, headers));
        assert!(
            denied.spans.spans().is_empty(),
            "{name}: {:#?}",
            denied.spans.spans()
        );
        if name == "b3" {
            assert!(seen.split(' ').next().unwrap().ends_with("-0"), "{seen}");
        } else {
            assert!(seen.ends_with("sampled=0"), "{seen}");
        }
    }
}

#[test]
fn otel_propagator_around_b3_keeps_debug_and_no_decision() {
    // Debug is an accept, which a parent-based sampler follows, and goes on as one.
    let headers = vec![("b3", format!("{TRACE}-{SPAN}-d"))];
    let builder = Recorder::builder().sampler(ParentBased::new(AlwaysOff));
    let (accepted, seen) = with_recorder(builder, |_| call(OTEL_B3, headers));
    server_span_of_the_callers_trace(&accepted, OTEL_B3);
    let b3 = seen.split(' ').next().unwrap();
    assert!(b3.starts_with(&format!("b3={TRACE}-")), "{seen}");
    assert!(b3.ends_with("-1"), "{seen}");

    // No decision, which the local sampler then declines, goes on as no decision.
    let headers = vec![("b3", format!("{TRACE}-{SPAN}"))];
    let builder = Recorder::builder().sampler(ParentBased::new(AlwaysOff));
    let (declined, seen) = with_recorder(builder, |_| call(OTEL_B3, headers));
    assert!(declined.spans.spans().is_empty(), "not sampled");
    let b3 = seen.split(' ').next().unwrap().trim_start_matches("b3=");
    assert_eq!(b3.split('-').count(), 2, "ids alone: {seen}");
    assert!(b3.starts_with(TRACE), "{seen}");
    assert!(seen.ends_with("sampled=-"), "no x-b3-sampled: {seen}");
}
