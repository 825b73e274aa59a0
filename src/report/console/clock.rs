//! The clock the console reporter measures waiting traces with.

use std::time::Instant;

/// A source of "now" for the console reporter's timeouts (remote-parent grace, inactivity,
/// maximum age).
///
/// The default is [`SystemClock`]. Tests inject a clock they advance by hand, so that
/// timeouts fire deterministically without sleeping; any `Fn() -> Instant + Send` closure
/// is a clock.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::{Duration, Instant};
/// use tracewire::report::ConsoleReporter;
///
/// let now = Arc::new(Mutex::new(Instant::now()));
/// let clock = now.clone();
/// let console = ConsoleReporter::builder()
///     .clock(move || *clock.lock().unwrap())
///     .writer(std::io::sink())
///     .build();
/// // Later: move time forward, then call `tick()`.
/// *now.lock().unwrap() += Duration::from_secs(60);
/// # drop(console);
/// ```
pub trait Clock: Send + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// [`Instant::now`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> Instant + Send + 'static,
{
    fn now(&self) -> Instant {
        self()
    }
}
