//! Span and event timestamps: the wall clock, read with `SystemTime::now()`.
//!
//! Spans keep their times as nanoseconds while live, and the reporter thread turns them into
//! the record's `SystemTime`s, so the conversion (a division and a checked add) stays off the
//! request thread.

use std::time::SystemTime;

/// The wall-clock time now.
#[inline]
pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}

/// The wall-clock time now, in nanoseconds since the Unix epoch: 0 for a clock set before
/// it, saturated after the year 2554.
#[inline]
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A time from [`now_nanos`].
#[inline]
pub(crate) fn to_system_time(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_round_trip_to_the_wall_clock() {
        let before = SystemTime::now();
        let t = to_system_time(now_nanos());
        let after = SystemTime::now();
        // `SystemTime` on Linux has nanosecond resolution, so nothing is lost either way.
        assert!(
            before <= t && t <= after,
            "{t:?} outside [{before:?}, {after:?}]"
        );
        assert_eq!(to_system_time(0), SystemTime::UNIX_EPOCH);
    }
}
