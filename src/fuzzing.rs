//! Entry points for the fuzz targets in `fuzz/`, built only under `--cfg fuzzing` (which
//! `cargo fuzz` sets) and for tests: the parsers of outside input that are not public. Not
//! an API. The property tests below check, on every `cargo test`, what the fuzz targets
//! check at length.

use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Uri};

/// A header map holding `name: value`, or an empty one when `value` is not a header value.
fn one_header(name: &'static str, value: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(name, value);
    }
    headers
}

/// `grpc-timeout: {value}` as the layers read it.
pub fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    crate::rpc::parse_timeout(&one_header("grpc-timeout", value))
}

/// `grpc-status: {value}` as the layers read it.
pub fn grpc_status(value: &[u8]) -> Option<i32> {
    crate::rpc::parse_status(&one_header("grpc-status", value))
}

/// `grpc-message: {value}` as the layers read it (percent-decoded).
pub fn grpc_message(value: &[u8]) -> Option<String> {
    crate::rpc::parse_message(&one_header("grpc-message", value))
}

/// The layers' query redaction for exactly `params` (the defaults left out, so that a fuzzer
/// chooses every name).
fn redaction(params: &[String]) -> crate::config::QueryRedaction {
    crate::config::QueryRedaction::only(params.iter().map(|p| Cow::Owned(p.clone())))
}

/// The documented rule, stated on its own for the properties: a parameter is redacted when
/// its name, percent-decoded, equals one of `params` ignoring ASCII case.
pub fn is_redacted(key: &str, params: &[String]) -> bool {
    let decoded = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
    params.iter().any(|p| p.eq_ignore_ascii_case(&decoded))
}

/// `query` with the values of `params` redacted, as `url.query` and `url.full` record it.
pub fn redact_query(query: &str, params: &[String]) -> String {
    crate::request::attrs::redact_query(query, &redaction(params)).into_owned()
}

/// Free text (an error message) with the secrets of the URLs in it redacted.
pub fn redact_text(text: &str, params: &[String]) -> String {
    crate::request::attrs::redact_text(text, &redaction(params)).into_owned()
}

/// `url.full` of a request to `uri` (with `host` as its `Host` header when given), the
/// values of `params` redacted.
pub fn url_full(uri: &Uri, host: Option<&[u8]>, params: &[String]) -> String {
    let headers = host.map_or_else(HeaderMap::new, |host| one_header("host", host));
    crate::request::attrs::UrlFull {
        uri,
        headers: &headers,
        redacted_query_params: &redaction(params),
    }
    .render()
}

/// `text` written into at most `max` terminal columns by the console reporter: the bytes
/// written and the columns they take.
#[cfg(feature = "console")]
pub fn console_fit(text: &str, max: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let columns = crate::report::console::text::write_fit(&mut out, text, max);
    (out, columns)
}

/// `text` as the console reporter keeps a short string (a status, a duration).
#[cfg(feature = "console")]
pub fn console_short(text: &str) -> String {
    crate::report::console::text::Short::new(text)
        .as_str()
        .to_owned()
}

/// Whether the console reporter writes `c` as a space.
#[cfg(feature = "console")]
pub fn console_replaces(c: char) -> bool {
    crate::report::console::text::is_unsafe(c)
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// gRPC's percent-encoding of a message: bytes outside printable ASCII, and `%`.
    fn encode(message: &str) -> String {
        let mut out = String::new();
        for &b in message.as_bytes() {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn grpc_timeouts_are_what_their_digits_and_unit_say(
            value in prop_oneof![
                "[0-9]{1,9}[HMSmunx]".prop_map(String::into_bytes),
                vec(any::<u8>(), 0..12),
            ]
        ) {
            if let Some(timeout) = grpc_timeout(&value) {
                let (unit, digits) = value.split_last().unwrap();
                prop_assert!((1..=8).contains(&digits.len()));
                let n: u64 = std::str::from_utf8(digits).unwrap().parse().unwrap();
                let want = match unit {
                    b'H' => Duration::from_secs(n * 3600),
                    b'M' => Duration::from_secs(n * 60),
                    b'S' => Duration::from_secs(n),
                    b'm' => Duration::from_millis(n),
                    b'u' => Duration::from_micros(n),
                    b'n' => Duration::from_nanos(n),
                    _ => unreachable!("unit {unit}"),
                };
                prop_assert_eq!(timeout, want);
            }
        }

        #[test]
        fn grpc_status_and_message_never_panic_and_messages_round_trip(
            value in vec(any::<u8>(), 0..40),
            message in "\\PC{0,20}",
        ) {
            if let Some(code) = grpc_status(&value) {
                prop_assert!(code >= 0);
            }
            if let Some(decoded) = grpc_message(&value) {
                prop_assert!(decoded.chars().count() <= value.len());
            }
            prop_assert_eq!(grpc_message(encode(&message).as_bytes()), Some(message));
        }

        #[test]
        fn redacted_query_values_never_survive(
            pairs in vec(("[a-zA-Z_%-]{0,6}", proptest::option::of("[a-z0-9=%&]{0,6}")), 0..6),
            params in vec("[a-zA-Z_%-]{1,6}", 0..3),
        ) {
            let query = pairs
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect::<Vec<_>>()
                .join("&");
            let redacted = redact_query(&query, &params);
            let before: Vec<&str> = query.split('&').collect();
            let after: Vec<&str> = redacted.split('&').collect();
            prop_assert_eq!(before.len(), after.len());
            for (before, after) in before.iter().zip(&after) {
                match before.split_once('=') {
                    Some((key, _)) if is_redacted(key, &params) => {
                        prop_assert_eq!(*after, format!("{key}=REDACTED"));
                    }
                    _ => prop_assert_eq!(after, before),
                }
            }
        }

        #[test]
        fn urls_in_error_text_lose_their_secrets(
            prefix in "[ -~]{0,12}",
            user in proptest::option::of("[a-z]{1,4}:[a-z0-9]{1,4}@"),
            secret in "[A-Za-z0-9]{4,8}",
            suffix in "[ -~]{0,12}",
        ) {
            let params = vec!["sig".to_owned()];
            let url = format!(
                "http://{}h.example/p?a=1&sig={secret}#f",
                user.clone().unwrap_or_default()
            );
            let text = format!("{prefix} ({url}) {suffix}");
            let redacted = redact_text(&text, &params);
            prop_assert!(redacted.contains("sig=REDACTED"), "{}", redacted);
            if let Some(user) = &user {
                prop_assert!(!redacted.contains(user.as_str()), "{}", redacted);
            }
            // Redacting twice changes nothing more.
            prop_assert_eq!(redact_text(&redacted, &params), redacted.clone());
        }

        #[test]
        fn url_full_hides_credentials(
            user in "[a-z]{1,6}",
            password in "[a-z0-9]{1,6}",
            query in "[a-z]{1,4}=[a-z0-9]{1,4}",
        ) {
            let url = format!("https://{user}:{password}@example.com:8443/p?{query}&sig=s3cret");
            let uri: Uri = url.parse().unwrap();
            let full = url_full(&uri, None, &["sig".to_owned()]);
            let want = "https://REDACTED:REDACTED@example.com:8443/p?";
            prop_assert!(full.starts_with(want), "{}", full);
            prop_assert!(full.ends_with("&sig=REDACTED"), "{}", full);
        }
    }

    #[cfg(feature = "console")]
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_console_writes_no_control_or_format_character_and_fits(
            text in prop_oneof![
                "\\PC{0,40}",
                // Control and format characters among letters.
                "[\\x00-\\x1f\\u{7f}-\\u{9f}\\u{ad}\\u{600}-\\u{605}\\u{61c}a-z]{0,40}",
                "[\\u{200b}-\\u{200f}\\u{202a}-\\u{202e}\\u{2060}-\\u{206f}\\u{feff}a-z]{0,40}",
            ],
            max in 0usize..60,
        ) {
            let (out, columns) = console_fit(&text, max);
            let out = String::from_utf8(out).unwrap();
            prop_assert!(columns <= max);
            // What was written takes the columns reported: a wide character (CJK) two, a
            // combining mark none.
            let written: usize = out
                .chars()
                .map(|c| unicode_width::UnicodeWidthChar::width(c).unwrap_or(1))
                .sum();
            prop_assert_eq!(written, columns);
            prop_assert!(!out.chars().any(console_replaces), "{:?}", out);
            let short = console_short(&text);
            prop_assert!(short.len() <= 32 && !short.chars().any(console_replaces));
        }
    }
}
