//! `grpc-timeout`: never panics; a value that parses is 1 to 8 digits and a unit, and the
//! duration is the one the digits and unit spell.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tracewire::fuzzing::grpc_timeout;

fuzz_target!(|data: &[u8]| {
    let Some(timeout) = grpc_timeout(data) else {
        return;
    };
    let (unit, digits) = data.split_last().expect("a parsed value is not empty");
    assert!((1..=8).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit));
    let n: u64 = std::str::from_utf8(digits).unwrap().parse().unwrap();
    let want = match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        other => panic!("unit {other:?} accepted"),
    };
    assert_eq!(timeout, want);
});
