//! The requests metered server layers measured, per operation, for `/metrics`: every
//! request, sampled or not, filtered or not (feature `metrics`, see
//! [`Viewer::count_measured_requests`](super::Viewer::count_measured_requests)).
//!
//! Written on the request's path, so kept apart from the store's lock (which a page may hold
//! while it renders): a read lock and a few atomic additions per request once its operation
//! is known, a write lock only to add an operation.

use std::collections::{BTreeMap, HashMap};
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::op_metrics::{bucket, OpMetrics, BUCKETS, CLASSES, MAX_OPERATIONS, OTHER_OPERATION};
use super::size;

/// Per service, per operation; at most [`MAX_OPERATIONS`] operations, then the rest count
/// under [`OTHER_OPERATION`] as spans do.
#[derive(Debug, Default)]
pub(crate) struct MeasuredOps {
    ops: RwLock<Ops>,
    /// What `ops` takes, counted as [`size`] counts (on the high side).
    bytes: AtomicUsize,
}

#[derive(Debug, Default)]
struct Ops {
    by_service: HashMap<Arc<str>, HashMap<Box<str>, Counters>>,
    len: usize,
}

/// One operation's counts, added to under a read lock.
#[derive(Debug, Default)]
struct Counters {
    /// By [`CLASSES`].
    by_class: [AtomicU64; CLASSES.len()],
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Counters {
    fn add(&self, class: usize, nanos: u64) {
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.buckets[bucket(nanos as f64 / 1e9)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn snapshot(&self) -> OpMetrics {
        let mut op = OpMetrics::default();
        for (class, n) in CLASSES.iter().zip(&self.by_class) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                op.by_class.insert(*class, n);
            }
        }
        for (slot, n) in op.buckets.iter_mut().zip(&self.buckets) {
            *slot = n.load(Ordering::Relaxed);
        }
        op.count = self.count.load(Ordering::Relaxed);
        op.sum_seconds = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        op
    }
}

impl MeasuredOps {
    /// One request of `service`'s `operation`, of status class `class` (an index into
    /// [`CLASSES`]), that took `nanos`.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn record(&self, service: &Arc<str>, operation: &str, class: usize, nanos: u64) {
        {
            let ops = self.ops.read().unwrap_or_else(|e| e.into_inner());
            if let Some(counters) = ops
                .by_service
                .get(service)
                .and_then(|names| names.get(operation))
            {
                counters.add(class, nanos);
                return;
            }
        }
        let mut ops = self.ops.write().unwrap_or_else(|e| e.into_inner());
        let known = ops
            .by_service
            .get(service)
            .is_some_and(|names| names.contains_key(operation));
        let (service, operation) = if known || ops.len < MAX_OPERATIONS {
            (service.clone(), operation)
        } else {
            (Arc::from(""), OTHER_OPERATION)
        };
        let Ops { by_service, len } = &mut *ops;
        let mut added = 0;
        let names = by_service.entry(service.clone()).or_insert_with(|| {
            // The service's string, its slot in the outer table (which may double) and its
            // inner table's header.
            added += size::alloc(service.len() + 16)
                + 2 * size_of::<(Arc<str>, HashMap<Box<str>, Counters>)>()
                + size::alloc(16);
            HashMap::new()
        });
        let counters = match names.get(operation) {
            Some(counters) => counters,
            None => {
                *len += 1;
                added += size::alloc(operation.len()) + 2 * size_of::<(Box<str>, Counters)>();
                names.entry(operation.into()).or_default()
            }
        };
        counters.add(class, nanos);
        self.bytes.fetch_add(added, Ordering::Relaxed);
    }

    /// Every operation's counts so far.
    pub(crate) fn snapshot(&self) -> BTreeMap<(Arc<str>, Arc<str>), OpMetrics> {
        let ops = self.ops.read().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        for (service, names) in &ops.by_service {
            for (operation, counters) in names {
                out.insert(
                    (service.clone(), Arc::from(&**operation)),
                    counters.snapshot(),
                );
            }
        }
        out
    }

    /// The memory the counts take (see [`size`]).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_past_the_bound_count_together() {
        let measured = MeasuredOps::default();
        let service: Arc<str> = Arc::from("checkout");
        for i in 0..MAX_OPERATIONS + 10 {
            measured.record(&service, &format!("GET /{i}"), 1, 1_000_000);
        }
        measured.record(&service, "GET /0", 4, 20_000_000_000);
        let ops = measured.snapshot();
        assert_eq!(ops.len(), MAX_OPERATIONS + 1);
        let other = &ops[&(Arc::from(""), Arc::from(OTHER_OPERATION))];
        assert_eq!(other.count, 10);
        let first = &ops[&(service.clone(), Arc::from("GET /0"))];
        assert_eq!(first.count, 2);
        assert_eq!(first.buckets[0], 1);
        assert_eq!(first.buckets[BUCKETS.len()], 1);
        assert_eq!(first.by_class.get(CLASSES[4]), Some(&1));
        assert!(measured.bytes() > (MAX_OPERATIONS + 1) * size_of::<Counters>());
    }
}
