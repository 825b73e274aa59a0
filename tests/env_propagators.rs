//! `OTEL_PROPAGATORS`, read through a lookup function: which headers the propagator it names
//! reads and writes, the warnings for names it cannot use, and the layers taking it as it is.

#[cfg(all(feature = "b3", feature = "reqwest"))]
mod support;

use http::{HeaderMap, HeaderValue};
use tracewire::baggage::Baggage;
use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracewire::env::{EnvConfig, EnvWarning};
use tracewire::propagation::Propagator;

fn env(value: Option<&str>) -> EnvConfig {
    EnvConfig::from_lookup(|name| (name == "OTEL_PROPAGATORS").then_some(value).flatten())
}

fn cx() -> SpanContext {
    SpanContext::new(
        TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
        SpanId::from(0x00f067aa0ba902b7),
        TraceFlags::SAMPLED,
        false,
        TraceState::from_members([("congo", "t61rcWkgMzE")]).unwrap(),
    )
}

fn baggage() -> Baggage {
    Baggage::new().with("tenant", "acme").unwrap()
}

/// The header names `propagator` writes for a sampled context with baggage, sorted.
fn written(propagator: &dyn Propagator) -> Vec<String> {
    let mut headers = HeaderMap::new();
    propagator.inject(&cx(), &baggage(), &mut headers);
    let mut names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
    names.sort();
    names
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

const TRACEPARENT: (&str, &str) = (
    "traceparent",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
);

#[test]
fn unset_empty_and_default_lists_are_w3c() {
    for value in [None, Some(""), Some("  "), Some("tracecontext,baggage")] {
        let env = env(value);
        assert!(env.warnings.is_empty(), "{value:?}");
        let propagator = env.propagator();
        assert_eq!(
            written(&*propagator),
            ["baggage", "traceparent", "tracestate"],
            "{value:?}"
        );
        let extracted = propagator.extract(&headers(&[TRACEPARENT, ("baggage", "k=v")]));
        assert_eq!(extracted.span_context.unwrap().trace_id, cx().trace_id);
        assert_eq!(extracted.baggage.get("k"), Some("v"));
    }
}

#[test]
fn tracecontext_and_baggage_alone_and_none() {
    let trace_only = env(Some("tracecontext")).propagator();
    assert_eq!(written(&*trace_only), ["traceparent", "tracestate"]);
    let extracted = trace_only.extract(&headers(&[TRACEPARENT, ("baggage", "k=v")]));
    assert!(extracted.span_context.is_some() && extracted.baggage.is_empty());

    let baggage_only = env(Some("Baggage")).propagator();
    assert_eq!(written(&*baggage_only), ["baggage"]);
    let extracted = baggage_only.extract(&headers(&[TRACEPARENT, ("baggage", "k=v")]));
    assert!(extracted.span_context.is_none() && extracted.baggage.get("k") == Some("v"));

    for value in ["none", "tracecontext,none", " NONE , baggage"] {
        let env = env(Some(value));
        assert!(env.warnings.is_empty(), "{value}");
        let none = env.propagator();
        assert!(written(&*none).is_empty(), "{value}");
        let extracted = none.extract(&headers(&[TRACEPARENT, ("baggage", "k=v")]));
        assert_eq!(extracted, Default::default(), "{value}");
    }
}

#[test]
fn unknown_and_unimplemented_names_are_warned_about_and_left_out() {
    let env = env(Some("tracecontext,custom,xray,ottrace"));
    assert_eq!(
        env.warnings,
        vec![
            EnvWarning::UnknownPropagator {
                name: "custom".into()
            },
            EnvWarning::UnavailablePropagator {
                name: "xray".into(),
                feature: None
            },
            EnvWarning::UnavailablePropagator {
                name: "ottrace".into(),
                feature: None
            },
        ]
    );
    assert!(env.warnings[0].to_string().contains("custom"));
    assert_eq!(written(&*env.propagator()), ["traceparent", "tracestate"]);

    // Nothing usable left: the default.
    let env = self::env(Some("custom"));
    assert_eq!(env.warnings.len(), 1);
    assert_eq!(
        written(&*env.propagator()),
        ["baggage", "traceparent", "tracestate"]
    );
}

#[cfg(not(feature = "b3"))]
#[test]
fn b3_without_its_feature_is_warned_about() {
    let env = env(Some("b3,b3multi"));
    assert_eq!(
        env.warnings,
        vec![
            EnvWarning::UnavailablePropagator {
                name: "b3".into(),
                feature: Some("b3")
            },
            EnvWarning::UnavailablePropagator {
                name: "b3multi".into(),
                feature: Some("b3")
            },
        ]
    );
    assert!(env.warnings[0].to_string().contains("feature"));
}

#[cfg(feature = "b3")]
#[test]
fn b3_single_and_multiple_headers() {
    let single = env(Some("b3"));
    assert!(single.warnings.is_empty());
    let single = single.propagator();
    let mut out = HeaderMap::new();
    single.inject(&cx(), &baggage(), &mut out);
    assert_eq!(
        out["b3"],
        "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"
    );
    assert_eq!(out.len(), 1, "B3 carries no baggage nor trace state");
    let back = single.extract(&out).span_context.unwrap();
    assert_eq!((back.trace_id, back.span_id), (cx().trace_id, cx().span_id));
    assert!(back.is_sampled() && back.is_remote);

    let multi = env(Some("b3multi")).propagator();
    assert_eq!(
        written(&*multi),
        ["x-b3-sampled", "x-b3-spanid", "x-b3-traceid"]
    );
    let extracted = multi.extract(&headers(&[
        ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
        ("x-b3-sampled", "0"),
    ]));
    let sc = extracted.span_context.unwrap();
    assert_eq!(sc.trace_id, cx().trace_id);
    assert!(!sc.is_sampled());
}

#[cfg(feature = "jaeger")]
#[test]
fn jaeger_headers() {
    let env = env(Some("jaeger"));
    assert!(env.warnings.is_empty());
    let jaeger = env.propagator();
    assert_eq!(written(&*jaeger), ["uber-trace-id", "uberctx-tenant"]);
    let extracted = jaeger.extract(&headers(&[
        (
            "uber-trace-id",
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1",
        ),
        ("uberctx-tenant", "acme"),
    ]));
    assert_eq!(extracted.span_context.unwrap().span_id, cx().span_id);
    assert_eq!(extracted.baggage.get("tenant"), Some("acme"));
}

#[cfg(all(feature = "b3", feature = "jaeger"))]
#[test]
fn several_names_compose_in_order() {
    let composite = env(Some("b3, tracecontext ,jaeger,baggage")).propagator();
    assert_eq!(
        written(&*composite),
        [
            "b3",
            "baggage",
            "traceparent",
            "tracestate",
            "uber-trace-id",
            "uberctx-tenant"
        ]
    );
    // The first valid span context wins: B3's here, the W3C one when B3 sent none.
    let b3 = "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1";
    let extracted = composite.extract(&headers(&[("b3", b3), TRACEPARENT]));
    assert_eq!(
        extracted.span_context.unwrap().trace_id,
        TraceId::from(0x0af7651916cd43dd8448eb211c80319c)
    );
    let extracted = composite.extract(&headers(&[
        TRACEPARENT,
        ("uberctx-region", "eu"),
        ("baggage", "tenant=acme"),
    ]));
    assert_eq!(extracted.span_context.unwrap().trace_id, cx().trace_id);
    assert_eq!(extracted.baggage.get("region"), Some("eu"));
    assert_eq!(extracted.baggage.get("tenant"), Some("acme"));
}

/// The layers take the boxed propagator as it is: an axum server reading B3 and a reqwest
/// client writing it.
#[cfg(all(feature = "b3", feature = "reqwest"))]
#[test]
#[cfg(feature = "axum")]
fn the_layers_take_the_environment_propagator() {
    use axum::routing::get;
    use axum::Router;
    use tracewire::reqwest::TracingMiddleware;
    use tracewire::ServerLayer;

    let b3 = env(Some("b3"));
    let server_propagator = b3.propagator();
    let client_propagator = b3.propagator();
    let (recorded, sent) = support::recorded(|_| async move {
        let app = Router::new()
            .route(
                "/b3",
                get(|headers: HeaderMap| async move {
                    format!("{:?}/{:?}", headers.get("b3"), headers.get("traceparent"))
                }),
            )
            .layer(ServerLayer::new().propagator(server_propagator));
        let addr = support::serve(app).await;
        let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(TracingMiddleware::new().propagator(client_propagator))
            .build();
        http.get(format!("http://{addr}/b3"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let spans = recorded.spans.spans();
    assert_eq!(spans.len(), 2, "{spans:#?} {sent}");
    let client = recorded.spans.find("GET").unwrap();
    let server = recorded.spans.find("GET /b3").unwrap();
    assert_eq!(
        server.parent_span_id,
        client.span_id(),
        "B3 carried the context"
    );
    assert!(sent.contains(&format!("{}-{}-1", client.trace_id(), client.span_id())));
    assert!(sent.ends_with("/None"), "no traceparent: {sent}");
}
