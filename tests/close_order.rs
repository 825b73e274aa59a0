//! A span reaches the reporters after all its recorded children, also when its handle was
//! dropped first and the registry closes it with its last child.

use std::time::Duration;

use tracewire::record::{Recorder, RecorderBuilder};
use tracewire::report::{InMemoryReporter, TailSampler};
use tracewire::span::{SpanRecord, Status};
use tracing_subscriber::layer::SubscriberExt;

/// Runs `f` under a registry with the recorder built from `builder`, flushes, and returns
/// the spans in the order the reporter received them.
fn recorded(builder: RecorderBuilder, f: impl FnOnce()) -> Vec<SpanRecord> {
    let spans = InMemoryReporter::new();
    let (layer, guard) = builder.reporter(spans.clone()).build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    guard.flush().expect("flush");
    assert_eq!(guard.handle().stats().spans_dropped, 0);
    spans.spans()
}

fn names(spans: &[SpanRecord]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_ref()).collect()
}

fn find<'a>(spans: &'a [SpanRecord], name: &str) -> &'a SpanRecord {
    spans.iter().find(|s| s.name == name).expect(name)
}

#[test]
fn a_parent_whose_handle_goes_first_is_reported_after_its_child() {
    let spans = recorded(Recorder::builder(), || {
        let parent = tracing::info_span!("parent");
        let child = tracing::info_span!(parent: &parent, "child");
        drop(parent);
        drop(child);
    });
    assert_eq!(names(&spans), ["child", "parent"]);
    let (parent, child) = (find(&spans, "parent"), find(&spans, "child"));
    assert_eq!(child.parent_span_id, parent.span_context.span_id);
    assert!(
        parent.end_time >= child.end_time,
        "the parent closed with its child"
    );
}

#[test]
fn a_chain_closed_by_its_leaf_is_reported_leaf_first_across_a_skipped_span() {
    let spans = recorded(Recorder::builder(), || {
        let root = tracing::info_span!("root");
        // A library span the recorder leaves out: `mid` hangs under `root` through it.
        let internal = tracing::info_span!(target: "hyper::proto", parent: &root, "internal");
        let mid = tracing::info_span!(parent: &internal, "mid");
        let leaf = tracing::info_span!(parent: &mid, "leaf");
        drop(root);
        drop(internal);
        drop(mid);
        // Closing the leaf now closes every span above it.
        drop(leaf);
    });
    assert_eq!(names(&spans), ["leaf", "mid", "root"]);
    let (root, mid, leaf) = (
        find(&spans, "root"),
        find(&spans, "mid"),
        find(&spans, "leaf"),
    );
    assert_eq!(mid.parent_span_id, root.span_context.span_id);
    assert_eq!(leaf.parent_span_id, mid.span_context.span_id);
    assert!(root.end_time >= mid.end_time && mid.end_time >= leaf.end_time);
}

#[test]
fn a_child_closed_on_another_thread_is_reported_before_its_parent() {
    let spans = recorded(Recorder::builder(), || {
        let parent = tracing::info_span!("request");
        let children: Vec<_> = (0..4)
            .map(|i| tracing::info_span!(parent: &parent, "job", i))
            .collect();
        drop(parent);
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::scope(|scope| {
            for child in children {
                let dispatch = dispatch.clone();
                scope.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        // Children of the job, created and closed on this thread.
                        for _ in 0..250 {
                            let _step = tracing::info_span!(parent: &child, "step").entered();
                        }
                        drop(child);
                    })
                });
            }
        });
    });
    assert_eq!(spans.len(), 1 + 4 + 4 * 250);
    assert_eq!(spans.last().map(|s| s.name.as_ref()), Some("request"));
    // Every job after its own steps.
    for job in spans.iter().filter(|s| s.name == "job") {
        let at = spans
            .iter()
            .position(|s| s.span_context == job.span_context);
        let last_step = spans
            .iter()
            .rposition(|s| s.parent_span_id == job.span_context.span_id);
        assert!(last_step < at, "a job came before one of its steps");
    }
}

#[test]
fn the_tail_sampler_sees_an_error_in_a_child_that_outlives_the_request() {
    let kept = InMemoryReporter::new();
    let tail = TailSampler::builder(kept.clone())
        .slower_than(Duration::from_secs(60))
        .ratio(0.0)
        .build();
    let (layer, guard) = Recorder::builder().reporter(tail).build();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let request = tracing::info_span!("request");
        // Background work spawned by the request, still running when the request is done.
        let background = tracing::info_span!(parent: &request, "background");
        drop(request);
        background.in_scope(|| tracing::error!("the background job failed"));
        drop(background);
    });
    guard.flush().expect("flush");
    let spans = kept.spans();
    assert_eq!(names(&spans), ["background", "request"]);
    assert!(matches!(
        find(&spans, "background").status,
        Status::Error { .. }
    ));
}
