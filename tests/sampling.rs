//! Head sampling: the ratio sampler keeps its share of new roots within statistical bounds,
//! and through the HTTP server layer a request follows its caller's sampled flag whatever the
//! ratio, passing its context on either way.

mod support;

use tracewire::record::{Recorder, SpanExt};
use tracewire::report::InMemoryReporter;
use tracewire::sampler::{Sampler, TraceIdRatio};
use tracing_subscriber::layer::SubscriberExt;

const ROOTS: usize = 100_000;

#[test]
fn ratio_sampling_keeps_the_expected_share_of_100_000_roots() {
    for ratio in [0.01, 0.25, 0.5] {
        let spans = InMemoryReporter::new();
        let (layer, guard) = Recorder::builder()
            .sample_ratio(ratio)
            .reporter(spans.clone())
            .build();
        let by_id = TraceIdRatio::new(ratio);
        let mut sampled = 0usize;
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for _ in 0..ROOTS {
                let span = tracing::info_span!("root");
                let cx = span.span_context().expect("every root gets ids");
                let expected = by_id.should_sample(
                    None,
                    cx.trace_id,
                    "root",
                    &tracewire::span::SpanKind::Internal,
                );
                assert_eq!(cx.is_sampled(), expected, "decided by trace id alone");
                sampled += usize::from(cx.is_sampled());
            }
        });
        guard.flush().unwrap();

        // Binomial: allow 5 sigma (a false alarm once in ~1.7 million runs).
        let share = sampled as f64 / ROOTS as f64;
        let sigma = (ratio * (1.0 - ratio) / ROOTS as f64).sqrt();
        println!("ratio {ratio}: kept {share:.5} of {ROOTS} roots (sigma {sigma:.5})");
        assert!(
            (share - ratio).abs() < 5.0 * sigma,
            "ratio {ratio}: kept {share:.5}, wanted {ratio} ± {:.5}",
            5.0 * sigma
        );
        // Every sampled root went to the reporters (or was counted as dropped); no other.
        let stats = guard.stats();
        assert_eq!(
            (stats.spans_reported + stats.spans_dropped) as usize,
            sampled,
            "{stats:?}"
        );
    }
}

/// Samples server spans other than the health check, and nothing else; remembers what it
/// was asked.
#[derive(Debug, Default)]
struct ServerSpansButHealth(std::sync::Mutex<Vec<(String, tracewire::span::SpanKind)>>);

impl Sampler for ServerSpansButHealth {
    fn should_sample(
        &self,
        _parent: Option<&tracewire::context::SpanContext>,
        _trace_id: tracewire::context::TraceId,
        name: &str,
        kind: &tracewire::span::SpanKind,
    ) -> bool {
        self.0.lock().unwrap().push((name.to_owned(), kind.clone()));
        *kind == tracewire::span::SpanKind::Server && name != "GET /health"
    }
}

/// The sampler sees the name and kind a span is created with through the `otel.name` and
/// `otel.kind` fields, as code written for tracing-opentelemetry declares them: the name and
/// kind the span is exported with.
#[test]
fn the_sampler_sees_the_otel_name_and_kind_a_span_is_created_with() {
    use tracewire::span::SpanKind;
    let spans = InMemoryReporter::new();
    let (layer, guard) = Recorder::builder()
        .sampler(ServerSpansButHealth::default())
        .reporter(spans.clone())
        .build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for path in ["/health", "/users"] {
            let name = format!("GET {path}");
            let span = tracing::info_span!("request", otel.name = %name, otel.kind = "server");
            let sampled = span.span_context().unwrap().is_sampled();
            assert_eq!(sampled, path == "/users", "{name}");
        }
        tracing::info_span!("plain").in_scope(|| {});
    });
    guard.flush().unwrap();
    let names: Vec<_> = spans
        .spans()
        .into_iter()
        .map(|s| (s.name, s.kind))
        .collect();
    assert_eq!(names, [("GET /users".into(), SpanKind::Server)]);
}

#[cfg(all(feature = "reqwest", feature = "axum"))]
mod http {
    use super::support::*;
    use axum::extract::State;
    use axum::routing::get;
    use axum::Router;
    use http::HeaderMap;
    use tracewire::context::TraceId;
    use tracewire::propagation::parse_traceparent;
    use tracewire::record::Recorder;
    use tracewire::reqwest::TracingMiddleware;
    use tracewire::ServerLayer;

    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

    /// Front calls back; back answers with the `traceparent` it received.
    async fn front(State(back): State<String>) -> String {
        let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(TracingMiddleware::new().service_name("front"))
            .build();
        http.get(&back).send().await.unwrap().text().await.unwrap()
    }

    async fn back(headers: HeaderMap) -> String {
        headers["traceparent"].to_str().unwrap().to_owned()
    }

    /// Sends one request with `traceparent` through front to back, with `ratio` for new roots;
    /// the `traceparent` back received and the spans recorded.
    fn call(ratio: f64, traceparent: &str) -> (String, Vec<tracewire::record::SpanRecord>) {
        let traceparent = traceparent.to_owned();
        let (recorded, sent) = with_recorder(Recorder::builder().sample_ratio(ratio), |_| async {
            let back_addr = serve(
                Router::new()
                    .route("/back", get(back))
                    .layer(ServerLayer::new().service_name("back")),
            )
            .await;
            let front_addr = serve(
                Router::new()
                    .route("/front", get(front))
                    .with_state(format!("http://{back_addr}/back"))
                    .layer(ServerLayer::new().service_name("front")),
            )
            .await;
            reqwest::Client::new()
                .get(format!("http://{front_addr}/front"))
                .header("traceparent", traceparent)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        (sent, recorded.spans.spans())
    }

    fn trace_id(traceparent: &str) -> TraceId {
        parse_traceparent(traceparent.as_bytes()).unwrap().trace_id
    }

    #[test]
    fn a_sampled_caller_is_recorded_even_when_new_roots_never_are() {
        let (sent, spans) = call(0.0, SAMPLED);
        let downstream = parse_traceparent(sent.as_bytes()).unwrap();
        assert_eq!(downstream.trace_id, trace_id(SAMPLED));
        assert!(downstream.is_sampled(), "{sent}");
        // front server, front client, back server.
        assert_eq!(spans.len(), 3, "{spans:#?}");
        assert!(spans.iter().all(|s| s.trace_id() == trace_id(SAMPLED)));
    }

    #[test]
    fn an_unsampled_caller_is_not_recorded_even_when_every_new_root_is() {
        let (sent, spans) = call(1.0, UNSAMPLED);
        let downstream = parse_traceparent(sent.as_bytes()).unwrap();
        assert_eq!(
            downstream.trace_id,
            trace_id(UNSAMPLED),
            "the context still travels"
        );
        assert!(!downstream.is_sampled(), "{sent}");
        assert_ne!(
            downstream.span_id,
            parse_traceparent(UNSAMPLED.as_bytes()).unwrap().span_id,
            "under a span id of its own"
        );
        assert!(spans.is_empty(), "{spans:#?}");
    }
}
