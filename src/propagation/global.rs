//! The process-wide default propagator: what layers built without
//! [`propagator`](crate::ServerLayer::propagator) use.

use std::fmt;
use std::sync::{Arc, OnceLock};

use super::{Propagator, W3cPropagator};

static DEFAULT: OnceLock<Arc<dyn Propagator>> = OnceLock::new();

/// Makes `propagator` the default of every server layer, client layer and middleware built
/// from now on without an explicit [`propagator`](crate::ServerLayer::propagator) (an
/// explicit one still wins). [`otlp::init`](crate::otlp) installs the one `OTEL_PROPAGATORS`
/// names; layers built before keep W3C Trace Context and Baggage. The default is read once,
/// when a layer is built, so requests pay nothing for it. It can be set once per process.
///
/// ```
/// use tracewire::propagation::{set_global_default, TraceContextPropagator};
///
/// set_global_default(TraceContextPropagator).unwrap();
/// let layer = tracewire::ServerLayer::new(); // W3C Trace Context, no baggage
/// assert!(set_global_default(TraceContextPropagator).is_err());
/// # drop(layer);
/// ```
pub fn set_global_default(propagator: impl Propagator) -> Result<(), GlobalDefaultSet> {
    DEFAULT
        .set(Arc::new(propagator))
        .map_err(|_| GlobalDefaultSet)
}

/// The process-wide default propagator: the one given to [`set_global_default`], else W3C
/// Trace Context and Baggage.
pub fn global_default() -> Arc<dyn Propagator> {
    match DEFAULT.get() {
        Some(propagator) => propagator.clone(),
        None => Arc::new(W3cPropagator),
    }
}

/// [`set_global_default`] was already called; the default did not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalDefaultSet;

impl fmt::Display for GlobalDefaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the process-wide default propagator is already set")
    }
}

impl std::error::Error for GlobalDefaultSet {}
