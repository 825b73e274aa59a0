//! The console's text sanitiser: never panics, writes valid UTF-8 within the columns it was
//! given, counts them right, and lets no control or format character through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracewire::fuzzing::{console_fit, console_replaces, console_short};

fuzz_target!(|data: &[u8]| {
    let Some((&max, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let max = usize::from(max);
    let (out, columns) = console_fit(&text, max);
    let out = String::from_utf8(out).expect("UTF-8 out");
    assert!(columns <= max);
    assert_eq!(out.chars().count(), columns, "{out:?}");
    assert!(!out.chars().any(console_replaces), "{out:?}");
    let short = console_short(&text);
    assert!(short.len() <= 32 && !short.chars().any(console_replaces), "{short:?}");
});
