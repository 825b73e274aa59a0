//! `grpc-status` and `grpc-message`: never panic; a status is the number its digits spell;
//! a message is the percent-decoded value, and a message that was percent-encoded decodes
//! back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracewire::fuzzing::{grpc_message, grpc_status};

/// gRPC's percent-encoding of a message: bytes outside printable ASCII, and `%`.
fn encode(message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in message.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if let Some(code) = grpc_status(data) {
        let digits = data.trim_ascii_start();
        let digits = &digits[..digits.iter().take_while(|b| b.is_ascii_digit()).count()];
        assert_eq!(std::str::from_utf8(digits).unwrap().parse::<i32>().ok(), Some(code));
    }
    if let Some(message) = grpc_message(data) {
        // Lossy: at most as many characters as bytes came in.
        assert!(message.chars().count() <= data.len());
    }
    let text = String::from_utf8_lossy(data);
    assert_eq!(grpc_message(&encode(&text)).as_deref(), Some(&*text));
});
