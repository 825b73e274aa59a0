//! Span and event timestamps, read from the CPU's time-stamp counter where the kernel trusts it.
//!
//! A span reads the clock twice. `SystemTime::now()` is a vDSO call of about 34 ns on the
//! benchmark machine; reading the TSC takes about 10. So on x86-64 Linux, when the kernel's own
//! clocksource is `tsc` (it checked that the counters of all cores agree and run at a constant
//! rate), the time is an *anchor* (a TSC reading paired with the wall clock) plus the ticks
//! since, scaled by a rate measured against the monotonic clock.
//!
//! Two things keep it on the wall clock. The anchor is taken again when it is more than about a
//! millisecond old, so the wall clock's steps and slews are followed within that. The rate is
//! measured over the whole life of the process, so its error (and the error it adds between
//! anchors) shrinks as the process runs: nanoseconds after the first second. Until the first
//! rate is known (a few milliseconds), and everywhere else, it is `SystemTime::now()`.

use std::time::SystemTime;

/// The wall-clock time now.
#[inline]
pub(crate) fn now() -> SystemTime {
    to_system_time(now_nanos())
}

/// The wall-clock time now, in nanoseconds since the Unix epoch (0 for a clock set before
/// it). Spans keep their times so while live: the conversion to `SystemTime` (a division and
/// a checked add) is left to the reporter thread.
#[inline]
pub(crate) fn now_nanos() -> u64 {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        tsc::now()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        nanos_of(SystemTime::now())
    }
}

/// A time from [`now_nanos`].
#[inline]
pub(crate) fn to_system_time(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos)
}

/// `time` in nanoseconds since the Unix epoch: 0 before it, saturated after the year 2554.
fn nanos_of(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Whether [`now`] reads the TSC (it may still fall back while it calibrates).
#[cfg(test)]
fn uses_tsc() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        tsc::usable()
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        false
    }
}

/// Reads served from the TSC so far.
#[cfg(test)]
fn fast_reads() -> u64 {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        tsc::FAST_READS.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    {
        0
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tsc {
    use std::sync::atomic::{fence, AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use super::nanos_of;

    /// Ticks after which the anchor is taken again: 1.4 ms at 3 GHz, and within a few
    /// milliseconds for any TSC rate from 1 to 10 GHz.
    const REANCHOR_TICKS: i64 = 1 << 22;
    /// Ticks of monotonic-clock baseline before the first rate is trusted (about 5 ms at 3 GHz).
    const CALIBRATE_TICKS: u64 = 1 << 24;
    /// Clock reads that took longer than this many ticks (about 20 µs at 3 GHz) were
    /// interrupted: their pairing with the TSC is too loose to anchor on.
    const MAX_READ_TICKS: u64 = 1 << 16;

    /// The anchor, published as a sequence lock: `SEQ` is odd while it is being written.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static ANCHOR_TSC: AtomicU64 = AtomicU64::new(0);
    /// Nanoseconds since the Unix epoch at `ANCHOR_TSC`.
    static ANCHOR_WALL: AtomicU64 = AtomicU64::new(0);
    /// Nanoseconds per tick, fixed point with 32 fractional bits; 0 until calibrated.
    static SCALE: AtomicU64 = AtomicU64::new(0);
    /// No calibration attempt before this tick, so that the first milliseconds of a process do
    /// not all take the slow path's lock.
    static NEXT_TRY: AtomicU64 = AtomicU64::new(0);
    /// The start of the rate's baseline; the lock also makes the anchor's writer unique.
    static BASE: Mutex<Option<Base>> = Mutex::new(None);

    /// Reads served from the TSC, for the tests to see that the fast path runs.
    #[cfg(test)]
    pub(super) static FAST_READS: AtomicU64 = AtomicU64::new(0);

    struct Base {
        mono: Instant,
        tsc: u64,
    }

    #[inline]
    fn rdtsc() -> u64 {
        // SAFETY: `rdtsc` exists on every x86-64 CPU and only reads the time-stamp counter
        // into registers: no memory is touched and no state is changed.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }

    /// Whether the kernel's current clocksource is the TSC.
    pub(super) fn usable() -> bool {
        static USABLE: OnceLock<bool> = OnceLock::new();
        *USABLE.get_or_init(|| {
            std::fs::read_to_string(
                "/sys/devices/system/clocksource/clocksource0/current_clocksource",
            )
            .is_ok_and(|source| source.trim() == "tsc")
        })
    }

    #[inline]
    pub(super) fn now() -> u64 {
        let tsc = rdtsc();
        let seq = SEQ.load(Ordering::Acquire);
        let anchor_tsc = ANCHOR_TSC.load(Ordering::Relaxed);
        let anchor_wall = ANCHOR_WALL.load(Ordering::Relaxed);
        let scale = SCALE.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let unchanged = SEQ.load(Ordering::Relaxed) == seq && seq & 1 == 0;
        // Ticks since the anchor; negative when another core anchored just after our read.
        let ticks = tsc.wrapping_sub(anchor_tsc) as i64;
        if scale == 0 || !unchanged || !(-REANCHOR_TICKS..REANCHOR_TICKS).contains(&ticks) {
            return slow(tsc);
        }
        #[cfg(test)]
        FAST_READS.fetch_add(1, Ordering::Relaxed);
        let nanos = anchor_wall as i128 + ((ticks as i128 * scale as i128) >> 32);
        nanos as u64
    }

    /// The wall clock read directly, re-anchoring (and calibrating) on the way when due.
    #[cold]
    #[inline(never)]
    fn slow(tsc: u64) -> u64 {
        if tsc < NEXT_TRY.load(Ordering::Relaxed) || !usable() {
            return nanos_of(SystemTime::now());
        }
        // Someone else is anchoring: their anchor will do for the next call.
        let Ok(mut base) = BASE.try_lock() else {
            return nanos_of(SystemTime::now());
        };
        // Each clock read is paired with the middle of the two TSC reads around it.
        let t1 = rdtsc();
        let wall = SystemTime::now();
        let t2 = rdtsc();
        let mono = Instant::now();
        let t3 = rdtsc();
        let Ok(wall) = wall.duration_since(UNIX_EPOCH) else {
            // Before the epoch: nothing to anchor on.
            return 0;
        };
        let wall = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX);
        if !(t1 <= t2 && t2 <= t3 && t3 - t1 <= MAX_READ_TICKS) {
            return wall;
        }
        let wall_tsc = t1 + (t2 - t1) / 2;
        let mono_tsc = t2 + (t3 - t2) / 2;
        let Some(start) = base.as_ref().filter(|b| b.tsc < mono_tsc) else {
            // First sight, or the counter went backwards (a resume from suspend): start the
            // baseline here and keep whatever rate there was.
            *base = Some(Base {
                mono,
                tsc: mono_tsc,
            });
            NEXT_TRY.store(mono_tsc.saturating_add(CALIBRATE_TICKS), Ordering::Relaxed);
            return wall;
        };
        let ticks = mono_tsc - start.tsc;
        let scale = if ticks >= CALIBRATE_TICKS {
            let nanos = mono.saturating_duration_since(start.mono).as_nanos();
            (nanos << 32) / u128::from(ticks)
        } else {
            // A baseline too short to measure on (just restarted): keep the last rate.
            u128::from(SCALE.load(Ordering::Relaxed))
        };
        // Between 1/64 and 16 ns per tick (a 62.5 MHz to 64 GHz counter): anything else is
        // a broken measurement, and the wall clock is read directly until a good one.
        if !((1u128 << 26)..(1u128 << 36)).contains(&scale) {
            return wall;
        }
        let scale = scale as u64;
        // The lock makes this the only writer: odd sequence, fields, even sequence.
        let seq = SEQ.load(Ordering::Relaxed);
        SEQ.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        ANCHOR_TSC.store(wall_tsc, Ordering::Relaxed);
        ANCHOR_WALL.store(wall, Ordering::Relaxed);
        SCALE.store(scale, Ordering::Relaxed);
        SEQ.store(seq.wrapping_add(2), Ordering::Release);
        wall
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Far above the error of a calibrated anchor (nanoseconds), far below any real error (a
    /// wrong rate or a stale anchor would be off by milliseconds).
    const TOLERANCE: Duration = Duration::from_micros(200);

    /// Reads bracketed by two `SystemTime::now()` calls fall between them, through the
    /// calibration, many re-anchorings and sleeps.
    #[test]
    fn now_follows_the_wall_clock() {
        let started = std::time::Instant::now();
        let fast_before = fast_reads();
        let mut worst = Duration::ZERO;
        while started.elapsed() < Duration::from_millis(60) {
            for _ in 0..1000 {
                let before = SystemTime::now();
                let t = now();
                let after = SystemTime::now();
                assert!(
                    t + TOLERANCE >= before && t <= after + TOLERANCE,
                    "{t:?} outside [{before:?}, {after:?}] (tsc: {})",
                    uses_tsc()
                );
                let off = before
                    .duration_since(t)
                    .or_else(|_| t.duration_since(after))
                    .unwrap_or(Duration::ZERO);
                worst = worst.max(off);
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        println!("worst distance outside the bracketing reads: {worst:?}");
        if uses_tsc() {
            // Calibrated within the first milliseconds, then read from the counter.
            assert!(fast_reads() > fast_before, "the TSC path never ran");
        }
    }

    /// The same from several threads at once, which race to re-anchor.
    #[test]
    fn threads_agree_with_the_wall_clock() {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let started = std::time::Instant::now();
                    while started.elapsed() < Duration::from_millis(30) {
                        let before = SystemTime::now();
                        let t = now();
                        let after = SystemTime::now();
                        assert!(t + TOLERANCE >= before && t <= after + TOLERANCE);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no read strayed from the wall clock");
        }
    }
}
