//! Query and URL redaction: never panics, and no value of a redacted parameter survives.
//! The input's first line is the query (or, after a `!`, a whole URL), the others are the
//! parameter names to redact.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracewire::fuzzing::{is_redacted, redact_query, redact_text, url_full};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let params: Vec<String> = lines.map(str::to_owned).collect();
    if let Some(url) = first.strip_prefix('!') {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return;
        };
        let full = url_full(&uri, Some(url.as_bytes()), &params);
        if let Some(authority) = uri.authority() {
            if let Some((userinfo, _)) = authority.as_str().rsplit_once('@') {
                assert!(
                    full.starts_with(&format!(
                        "{}://REDACTED:REDACTED@",
                        uri.scheme_str().unwrap_or("http")
                    )),
                    "{full:?}"
                );
                let _ = userinfo;
            }
        }
        if let Some(query) = uri.query() {
            assert!(full.ends_with(&redact_query(query, &params)), "{full:?}");
        }
        return;
    }
    // Error text: never panics, and redacting twice changes nothing more.
    let text = redact_text(&text, &params);
    assert_eq!(redact_text(&text, &params), text);
    let redacted = redact_query(first, &params);
    let pairs: Vec<&str> = redacted.split('&').collect();
    assert_eq!(pairs.len(), first.split('&').count());
    for (before, after) in first.split('&').zip(pairs) {
        match before.split_once('=') {
            Some((key, _)) if is_redacted(key, &params) => {
                assert_eq!(after, format!("{key}=REDACTED"));
            }
            _ => assert_eq!(after, before),
        }
    }
});
