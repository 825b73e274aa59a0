//! W3C Trace Context and W3C Baggage conformance, as tables.
//!
//! The trace-context rows translate every case of the W3C test suite
//! (`w3c/trace-context`, `test/test.py`, classes `TraceContextTest` and `AdvancedTest`);
//! each row names the suite test it comes from. The suite drives a service over HTTP and
//! looks at the `traceparent`/`tracestate` the service sends on; here the same inbound
//! headers go through a real `http::HeaderMap` into the propagator, and each row states what
//! must come out: the caller's trace id, parent id, flags and tracestate, or "new trace"
//! (no caller context: the service starts a new trace and drops the tracestate).
//!
//! Two suite tests changed with Trace Context Level 2's key grammar
//! (`key = ( lcalpha / DIGIT ) 0*255 ( keychar )`, `@` an ordinary `keychar`):
//! w3c/trace-context#584 (fixing #583) updated `test_tracestate_key_illegal_vendor_format`
//! and `test_tracestate_key_length_limit` so that `foo@`, `foo@@bar`, `foo@bar@baz`,
//! 242 characters before an `@`, and 15 after one are valid. The rows follow the updated
//! suite and say where the older copy expected otherwise.

use http::{HeaderMap, HeaderName, HeaderValue};
use tracewire::baggage::{
    Baggage, BaggageError, BaggageMember, BAGGAGE_MAX_BYTES, BAGGAGE_MAX_MEMBERS,
};
use tracewire::context::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracewire::propagation::{
    format_baggage, parse_baggage, BaggagePropagator, Extracted, Injector, NoOverwrite, Propagator,
    TraceContextPropagator, W3cPropagator,
};

const TRACE_ID: &str = "12345678901234567890123456789012";
const PARENT_ID: &str = "1234567890123456";
/// The suite's traceparent, sampled.
const TP_01: &str = "00-12345678901234567890123456789012-1234567890123456-01";
/// The suite's traceparent, not sampled (the tracestate tests use it).
const TP_00: &str = "00-12345678901234567890123456789012-1234567890123456-00";

fn carrier(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_bytes(value.as_bytes()).expect("test header value"),
        );
    }
    map
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

#[derive(Debug)]
enum Expect {
    /// No caller context: a new trace starts, the inbound tracestate is not passed on.
    NewTrace,
    /// The caller's trace continues with these flags and this (normalised) tracestate.
    Continue { flags: u8, tracestate: String },
}

#[derive(Debug)]
struct Case {
    /// The W3C suite test (or, for rows beyond the suite, the rule) this row checks.
    test: &'static str,
    headers: Vec<(String, String)>,
    expect: Expect,
}

fn new_trace(test: &'static str, headers: &[(&str, &str)]) -> Case {
    Case {
        test,
        headers: owned(headers),
        expect: Expect::NewTrace,
    }
}

fn cont(test: &'static str, headers: &[(&str, &str)], flags: u8, tracestate: &str) -> Case {
    cont_owned(test, owned(headers), flags, tracestate)
}

fn cont_owned(
    test: &'static str,
    headers: Vec<(String, String)>,
    flags: u8,
    tracestate: &str,
) -> Case {
    Case {
        test,
        headers,
        expect: Expect::Continue {
            flags,
            tracestate: tracestate.to_owned(),
        },
    }
}

/// The suite's header pairs with one extra `tracestate` built at run time.
fn with_ts(extra: Vec<String>) -> Vec<(String, String)> {
    let mut headers = owned(&[("traceparent", TP_00)]);
    headers.extend(extra.into_iter().map(|v| ("tracestate".to_owned(), v)));
    headers
}

fn traceparent_cases() -> Vec<Case> {
    let f = |s: &str| -> String { format!("00-{TRACE_ID}-{PARENT_ID}-{s}") };
    vec![
        new_trace("test_both_traceparent_and_tracestate_missing", &[]),
        cont("test_traceparent_included_tracestate_missing", &[("traceparent", TP_01)], 1, ""),
        new_trace(
            "test_traceparent_duplicated",
            &[
                ("traceparent", "00-12345678901234567890123456789011-1234567890123456-01"),
                ("traceparent", "00-12345678901234567890123456789012-1234567890123456-01"),
            ],
        ),
        new_trace("test_traceparent_header_name (trace-parent)", &[("trace-parent", TP_01)]),
        new_trace("test_traceparent_header_name (trace.parent)", &[("trace.parent", TP_01)]),
        cont("test_traceparent_header_name_valid_casing (TraceParent)", &[("TraceParent", TP_01)], 1, ""),
        cont("test_traceparent_header_name_valid_casing (TrAcEpArEnT)", &[("TrAcEpArEnT", TP_01)], 1, ""),
        cont("test_traceparent_header_name_valid_casing (TRACEPARENT)", &[("TRACEPARENT", TP_01)], 1, ""),
        new_trace(
            "test_traceparent_version_0x00 (trailing '.')",
            &[("traceparent", "00-12345678901234567890123456789012-1234567890123456-01.")],
        ),
        new_trace(
            "test_traceparent_version_0x00 (extra field)",
            &[(
                "traceparent",
                "00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            )],
        ),
        cont(
            "test_traceparent_version_0xcc (55 bytes)",
            &[("traceparent", "cc-12345678901234567890123456789012-1234567890123456-01")],
            1,
            "",
        ),
        cont(
            "test_traceparent_version_0xcc (extra field after '-')",
            &[(
                "traceparent",
                "cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like",
            )],
            1,
            "",
        ),
        new_trace(
            "test_traceparent_version_0xcc (extra data after '.')",
            &[(
                "traceparent",
                "cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like",
            )],
        ),
        new_trace(
            "test_traceparent_version_0xff",
            &[("traceparent", "ff-12345678901234567890123456789012-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_version_illegal_characters ('.0')",
            &[("traceparent", ".0-12345678901234567890123456789012-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_version_illegal_characters ('0.')",
            &[("traceparent", "0.-12345678901234567890123456789012-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_version_too_long ('000')",
            &[("traceparent", "000-12345678901234567890123456789012-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_version_too_long ('0000')",
            &[("traceparent", "0000-12345678901234567890123456789012-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_version_too_short",
            &[("traceparent", "0-12345678901234567890123456789012-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_trace_id_all_zero",
            &[("traceparent", "00-00000000000000000000000000000000-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_trace_id_illegal_characters (first)",
            &[("traceparent", "00-.2345678901234567890123456789012-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_trace_id_illegal_characters (last)",
            &[("traceparent", "00-1234567890123456789012345678901.-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_trace_id_too_long",
            &[("traceparent", "00-123456789012345678901234567890123-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_trace_id_too_short",
            &[("traceparent", "00-1234567890123456789012345678901-1234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_parent_id_all_zero",
            &[("traceparent", "00-12345678901234567890123456789012-0000000000000000-01")],
        ),
        new_trace(
            "test_traceparent_parent_id_illegal_characters (first)",
            &[("traceparent", "00-12345678901234567890123456789012-.234567890123456-01")],
        ),
        new_trace(
            "test_traceparent_parent_id_illegal_characters (last)",
            &[("traceparent", "00-12345678901234567890123456789012-123456789012345.-01")],
        ),
        new_trace(
            "test_traceparent_parent_id_too_long",
            &[("traceparent", "00-12345678901234567890123456789012-12345678901234567-01")],
        ),
        new_trace(
            "test_traceparent_parent_id_too_short",
            &[("traceparent", "00-12345678901234567890123456789012-123456789012345-01")],
        ),
        new_trace("test_traceparent_trace_flags_illegal_characters ('.0')", &[tp_ref(&f(".0"))]),
        new_trace("test_traceparent_trace_flags_illegal_characters ('0.')", &[tp_ref(&f("0."))]),
        new_trace("test_traceparent_trace_flags_too_long", &[tp_ref(&f("001"))]),
        new_trace("test_traceparent_trace_flags_too_short", &[tp_ref(&f("1"))]),
        cont("test_traceparent_ows_handling (leading space)", &[tp_ref(&format!(" {TP_01}"))], 1, ""),
        cont("test_traceparent_ows_handling (leading tab)", &[tp_ref(&format!("\t{TP_01}"))], 1, ""),
        cont("test_traceparent_ows_handling (trailing space)", &[tp_ref(&format!("{TP_01} "))], 1, ""),
        cont("test_traceparent_ows_handling (trailing tab)", &[tp_ref(&format!("{TP_01}\t"))], 1, ""),
        cont("test_traceparent_ows_handling (both)", &[tp_ref(&format!("\t {TP_01} \t"))], 1, ""),
        // AdvancedTest: the suite checks that every outgoing call keeps the caller's trace id
        // (valid) or gets a new one (all-zero trace id); new parent ids are the span's work.
        cont("test_multiple_requests_with_valid_traceparent", &[("traceparent", TP_01)], 1, ""),
        new_trace("test_multiple_requests_without_traceparent", &[]),
        new_trace(
            "test_multiple_requests_with_illegal_traceparent",
            &[("traceparent", "00-00000000000000000000000000000000-1234567890123456-01")],
        ),
        // Beyond the suite: Level 2 flags and the letter of the grammar.
        cont("level 2: random flag passed on", &[tp_ref(&f("02"))], 2, ""),
        cont("level 2: sampled and random passed on", &[tp_ref(&f("03"))], 3, ""),
        cont("level 2: unknown flags dropped", &[tp_ref(&f("ff"))], 3, ""),
        cont("level 2: unknown flags dropped (only unknown)", &[tp_ref(&f("fc"))], 0, ""),
        new_trace("upper-case hex flags", &[tp_ref(&f("0A"))]),
        new_trace(
            "upper-case hex trace id",
            &[("traceparent", "00-ABCDEF78901234567890123456789012-1234567890123456-01")],
        ),
        new_trace(
            "upper-case hex parent id",
            &[("traceparent", "00-12345678901234567890123456789012-ABCDEF7890123456-01")],
        ),
        new_trace(
            "upper-case hex version",
            &[("traceparent", "CC-12345678901234567890123456789012-1234567890123456-01")],
        ),
        new_trace(
            "whitespace inside the value",
            &[("traceparent", "00-12345678901234567890123456789012 -1234567890123456-01")],
        ),
        new_trace(
            "future version shorter than 55 bytes",
            &[("traceparent", "01-12345678901234567890123456789012-1234567890123456-1")],
        ),
        new_trace(
            "future version with an all-zero parent id",
            &[("traceparent", "01-12345678901234567890123456789012-0000000000000000-01-x")],
        ),
        new_trace(
            "future version with a bad delimiter",
            &[("traceparent", "01-12345678901234567890123456789012_1234567890123456-01")],
        ),
        cont(
            "future version: only known flags kept",
            &[("traceparent", "01-12345678901234567890123456789012-1234567890123456-ff-00")],
            3,
            "",
        ),
        new_trace("empty traceparent", &[("traceparent", "")]),
        new_trace("two traceparent headers, the second one invalid", &[("traceparent", TP_01), ("traceparent", "x")]),
    ]
}

fn tp_ref(value: &str) -> (&'static str, &str) {
    ("traceparent", value)
}

fn tracestate_cases() -> Vec<Case> {
    let bar_members = |n: usize| -> Vec<String> {
        (1..=n)
            .collect::<Vec<_>>()
            .chunks(10)
            .map(|c| {
                c.iter()
                    .map(|i| format!("bar{i:02}={i:02}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    };
    let bar32 = bar_members(32).join(",");
    let key_lc = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let key_at = format!("{key_lc}@a-z0-9_-*/");
    let value: String = (0x20u8..=0x2b)
        .chain(0x2d..=0x3c)
        .chain(0x3e..=0x7e)
        .map(char::from)
        .collect();
    let z256 = format!("{}=1", "z".repeat(256));
    let t241 = format!("{}@{}=1", "t".repeat(241), "v".repeat(14));
    let t242 = format!("{}@v=1", "t".repeat(242));
    let t_v15 = format!("t@{}=1", "v".repeat(15));
    vec![
        new_trace(
            "test_tracestate_included_traceparent_missing (1)",
            &[("tracestate", "foo=1")],
        ),
        new_trace(
            "test_tracestate_included_traceparent_missing (2)",
            &[("tracestate", "foo=1,bar=2")],
        ),
        cont(
            "test_tracestate_included_traceparent_included",
            &[("traceparent", TP_00), ("tracestate", "foo=1,bar=2")],
            0,
            "foo=1,bar=2",
        ),
        cont(
            "test_tracestate_header_name (trace-state)",
            &[("traceparent", TP_00), ("trace-state", "foo=1")],
            0,
            "",
        ),
        cont(
            "test_tracestate_header_name (trace.state)",
            &[("traceparent", TP_00), ("trace.state", "foo=1")],
            0,
            "",
        ),
        cont(
            "test_tracestate_header_name_valid_casing (TraceState)",
            &[("traceparent", TP_00), ("TraceState", "foo=1")],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_header_name_valid_casing (TrAcEsTaTe)",
            &[("traceparent", TP_00), ("TrAcEsTaTe", "foo=1")],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_header_name_valid_casing (TRACESTATE)",
            &[("traceparent", TP_00), ("TRACESTATE", "foo=1")],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_empty_header (alone)",
            &[("traceparent", TP_00), ("tracestate", "")],
            0,
            "",
        ),
        cont(
            "test_tracestate_empty_header (after)",
            &[
                ("traceparent", TP_00),
                ("tracestate", "foo=1"),
                ("tracestate", ""),
            ],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_empty_header (before)",
            &[
                ("traceparent", TP_00),
                ("tracestate", ""),
                ("tracestate", "foo=1"),
            ],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_multiple_headers_different_keys",
            &[
                ("traceparent", TP_00),
                ("tracestate", "foo=1,bar=2"),
                ("tracestate", "rojo=1,congo=2"),
                ("tracestate", "baz=3"),
            ],
            0,
            "foo=1,bar=2,rojo=1,congo=2,baz=3",
        ),
        // The suite accepts the duplicates kept or all but one dropped; we keep the first.
        cont(
            "test_tracestate_duplicated_keys (same value)",
            &[("traceparent", TP_00), ("tracestate", "foo=1,foo=1")],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_duplicated_keys (other value)",
            &[("traceparent", TP_00), ("tracestate", "foo=1,foo=2")],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_duplicated_keys (two headers, same value)",
            &[
                ("traceparent", TP_00),
                ("tracestate", "foo=1"),
                ("tracestate", "foo=1"),
            ],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_duplicated_keys (two headers, other value)",
            &[
                ("traceparent", TP_00),
                ("tracestate", "foo=1"),
                ("tracestate", "foo=2"),
            ],
            0,
            "foo=1",
        ),
        cont_owned(
            "test_tracestate_all_allowed_characters (key without @)",
            with_ts(vec![format!("{key_lc}={value}")]),
            0,
            &format!("{key_lc}={value}"),
        ),
        cont_owned(
            "test_tracestate_all_allowed_characters (key with @)",
            with_ts(vec![format!("{key_at}={value}")]),
            0,
            &format!("{key_at}={value}"),
        ),
        cont(
            "test_tracestate_ows_handling (around commas, spaces first)",
            &[
                ("traceparent", TP_00),
                ("tracestate", "foo=1 \t , \t bar=2, \t baz=3"),
            ],
            0,
            "foo=1,bar=2,baz=3",
        ),
        cont(
            "test_tracestate_ows_handling (around commas, tabs first)",
            &[
                ("traceparent", TP_00),
                ("tracestate", "foo=1\t \t,\t \tbar=2,\t \tbaz=3"),
            ],
            0,
            "foo=1,bar=2,baz=3",
        ),
        cont(
            "test_tracestate_ows_handling (leading space)",
            &[("traceparent", TP_00), ("tracestate", " foo=1")],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_ows_handling (leading tab)",
            &[("traceparent", TP_00), ("tracestate", "\tfoo=1")],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_ows_handling (trailing space)",
            &[("traceparent", TP_00), ("tracestate", "foo=1 ")],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_ows_handling (trailing tab)",
            &[("traceparent", TP_00), ("tracestate", "foo=1\t")],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_ows_handling (both)",
            &[("traceparent", TP_00), ("tracestate", "\t foo=1 \t")],
            0,
            "foo=1",
        ),
        cont(
            "test_tracestate_key_illegal_characters (space)",
            &[("traceparent", TP_00), ("tracestate", "foo =1")],
            0,
            "",
        ),
        cont(
            "test_tracestate_key_illegal_characters (upper case)",
            &[("traceparent", TP_00), ("tracestate", "FOO=1")],
            0,
            "",
        ),
        cont(
            "test_tracestate_key_illegal_characters (dot)",
            &[("traceparent", TP_00), ("tracestate", "foo.bar=1")],
            0,
            "",
        ),
        // The copy of the suite before w3c/trace-context#584 expected these three discarded.
        cont(
            "test_tracestate_key_illegal_vendor_format (foo@: valid in Level 2)",
            &[("traceparent", TP_00), ("tracestate", "foo@=1,bar=2")],
            0,
            "foo@=1,bar=2",
        ),
        cont(
            "test_tracestate_key_illegal_vendor_format (@foo: a key cannot start with @)",
            &[("traceparent", TP_00), ("tracestate", "@foo=1,bar=2")],
            0,
            "",
        ),
        cont(
            "test_tracestate_key_illegal_vendor_format (foo@@bar: valid in Level 2)",
            &[("traceparent", TP_00), ("tracestate", "foo@@bar=1,bar=2")],
            0,
            "foo@@bar=1,bar=2",
        ),
        cont(
            "test_tracestate_key_illegal_vendor_format (foo@bar@baz: valid in Level 2)",
            &[
                ("traceparent", TP_00),
                ("tracestate", "foo@bar@baz=1,bar=2"),
            ],
            0,
            "foo@bar@baz=1,bar=2",
        ),
        cont_owned(
            "test_tracestate_member_count_limit (32)",
            with_ts(bar_members(32)),
            0,
            &bar32,
        ),
        cont_owned(
            "test_tracestate_member_count_limit (33)",
            with_ts(bar_members(33)),
            0,
            "",
        ),
        cont_owned(
            "test_tracestate_key_length_limit (256 characters)",
            with_ts(vec!["foo=1".into(), z256.clone()]),
            0,
            &format!("foo=1,{z256}"),
        ),
        cont_owned(
            "test_tracestate_key_length_limit (257 characters)",
            with_ts(vec!["foo=1".into(), format!("{}=1", "z".repeat(257))]),
            0,
            "",
        ),
        cont_owned(
            "test_tracestate_key_length_limit (241 before @, 14 after)",
            with_ts(vec!["foo=1".into(), t241.clone()]),
            0,
            &format!("foo=1,{t241}"),
        ),
        // The copy of the suite before w3c/trace-context#584 expected these two discarded.
        cont_owned(
            "test_tracestate_key_length_limit (242 before @: 244 in all, valid in Level 2)",
            with_ts(vec!["foo=1".into(), t242.clone()]),
            0,
            &format!("foo=1,{t242}"),
        ),
        cont_owned(
            "test_tracestate_key_length_limit (15 after @: valid in Level 2)",
            with_ts(vec!["foo=1".into(), t_v15.clone()]),
            0,
            &format!("foo=1,{t_v15}"),
        ),
        cont(
            "test_tracestate_value_illegal_characters ('=')",
            &[("traceparent", TP_00), ("tracestate", "foo=bar=baz")],
            0,
            "",
        ),
        cont(
            "test_tracestate_value_illegal_characters (empty)",
            &[("traceparent", TP_00), ("tracestate", "foo=,bar=3")],
            0,
            "",
        ),
        // Beyond the suite.
        cont(
            "key starting with a digit (Level 2)",
            &[("traceparent", TP_00), ("tracestate", "0vendor=1")],
            0,
            "0vendor=1",
        ),
        cont(
            "leading spaces of a value are kept",
            &[("traceparent", TP_00), ("tracestate", "foo=  1")],
            0,
            "foo=  1",
        ),
        cont(
            "tab inside a value",
            &[("traceparent", TP_00), ("tracestate", "foo=a\tb")],
            0,
            "",
        ),
        cont(
            "member without '='",
            &[("traceparent", TP_00), ("tracestate", "foo=1,bar")],
            0,
            "",
        ),
        cont_owned(
            "value of 256 characters",
            with_ts(vec![format!("foo={}", "v".repeat(256))]),
            0,
            &format!("foo={}", "v".repeat(256)),
        ),
        cont_owned(
            "value of 257 characters",
            with_ts(vec![format!("foo={}", "v".repeat(257))]),
            0,
            "",
        ),
        cont_owned(
            "empty members do not count towards 32",
            with_ts(vec![format!(",{bar32}, ,"), ",".into()]),
            0,
            &bar32,
        ),
        cont(
            "tracestate kept with a future version",
            &[
                (
                    "traceparent",
                    "cc-12345678901234567890123456789012-1234567890123456-01-x",
                ),
                ("tracestate", "foo=1"),
            ],
            1,
            "foo=1",
        ),
        cont(
            "a repeated key keeps the first member, the others stay in order",
            &[
                ("traceparent", TP_00),
                ("tracestate", "foo=1,bar=2,foo=3"),
                ("tracestate", "baz=4,bar=5"),
            ],
            0,
            "foo=1,bar=2,baz=4",
        ),
        cont_owned(
            "dropped repeats do not count towards 32",
            with_ts(vec![bar32.clone(), "bar01=x,bar32=y".into()]),
            0,
            &bar32,
        ),
        cont(
            "a repeated key with a bad value still drops the list",
            &[("traceparent", TP_00), ("tracestate", "foo=1,foo=")],
            0,
            "",
        ),
        new_trace(
            "tracestate dropped with an invalid traceparent",
            &[("traceparent", "00-1-2-3"), ("tracestate", "foo=1")],
        ),
    ]
}

fn check(case: &Case, extracted: &Extracted) {
    match (&case.expect, &extracted.span_context) {
        (Expect::NewTrace, None) => {}
        (Expect::Continue { flags, tracestate }, Some(cx)) => {
            assert_eq!(format!("{:032x}", cx.trace_id), TRACE_ID, "{}", case.test);
            assert_eq!(format!("{:016x}", cx.span_id), PARENT_ID, "{}", case.test);
            assert_eq!(cx.trace_flags.to_u8(), *flags, "{}", case.test);
            assert_eq!(cx.trace_state.header(), tracestate, "{}", case.test);
            assert!(cx.is_remote, "{}", case.test);
        }
        (expect, got) => panic!("{}: expected {expect:?}, got {got:?}", case.test),
    }
}

/// What the service sends on: a child of the extracted context, through a real HeaderMap.
fn check_outbound(case: &Case, extracted: &Extracted) {
    let Some(parent) = &extracted.span_context else {
        return;
    };
    let mut child = parent.clone();
    child.span_id = SpanId::from_bytes([0xab; 8]);
    let mut headers = HeaderMap::new();
    TraceContextPropagator.inject(&child, &Baggage::new(), &mut headers);
    let Expect::Continue { flags, tracestate } = &case.expect else {
        unreachable!("checked before")
    };
    assert_eq!(
        headers["traceparent"],
        format!("00-{TRACE_ID}-abababababababab-{flags:02x}").as_str(),
        "{}",
        case.test
    );
    match headers.get("tracestate") {
        Some(sent) => assert_eq!(sent, tracestate.as_str(), "{}", case.test),
        None => assert!(tracestate.is_empty(), "{}", case.test),
    }
}

fn run(cases: &[Case]) {
    for case in cases {
        let headers = carrier(&case.headers);
        let extracted = TraceContextPropagator.extract(&headers);
        check(case, &extracted);
        check_outbound(case, &extracted);
        let w3c = W3cPropagator.extract(&headers);
        assert_eq!(w3c.span_context, extracted.span_context, "{}", case.test);
    }
}

#[test]
fn w3c_suite_traceparent() {
    let cases = traceparent_cases();
    assert!(cases.len() >= 40);
    run(&cases);
}

#[test]
fn w3c_suite_tracestate() {
    run(&tracestate_cases());
}

fn suite_cx(flags: u8, tracestate: &str) -> SpanContext {
    SpanContext::new(
        TraceId::from_hex(TRACE_ID).unwrap(),
        SpanId::from_hex(PARENT_ID).unwrap(),
        TraceFlags::new(flags),
        false,
        if tracestate.is_empty() {
            TraceState::NONE
        } else {
            TraceState::from_members(tracestate.split(',').filter_map(|m| m.split_once('=')))
                .unwrap()
        },
    )
}

#[test]
fn inject_downgrades_a_future_version_to_00_and_writes_known_flags_only() {
    let headers = carrier(&owned(&[(
        "traceparent",
        "cc-12345678901234567890123456789012-1234567890123456-ff-future",
    )]));
    let cx = TraceContextPropagator
        .extract(&headers)
        .span_context
        .unwrap();
    let mut out = HeaderMap::new();
    TraceContextPropagator.inject(&cx, &Baggage::new(), &mut out);
    assert_eq!(
        out["traceparent"],
        "00-12345678901234567890123456789012-1234567890123456-03"
    );

    let mut cx = suite_cx(0, "");
    cx.trace_flags = TraceFlags::new(0b1010_0110);
    TraceContextPropagator.inject(&cx, &Baggage::new(), &mut out);
    assert_eq!(
        out["traceparent"],
        "00-12345678901234567890123456789012-1234567890123456-02"
    );
}

#[test]
fn inject_never_sends_an_empty_or_stale_tracestate() {
    let mut out = carrier(&owned(&[("tracestate", "stale=1")]));
    TraceContextPropagator.inject(&suite_cx(1, ""), &Baggage::new(), &mut out);
    assert_eq!(out.get("tracestate"), None);
    TraceContextPropagator.inject(&suite_cx(1, "a=1,b=2"), &Baggage::new(), &mut out);
    assert_eq!(out["tracestate"], "a=1,b=2");
}

#[test]
fn an_invalid_context_injects_nothing() {
    let mut out = HeaderMap::new();
    W3cPropagator.inject(&SpanContext::NONE, &Baggage::new(), &mut out);
    let zero_parent = SpanContext {
        span_id: SpanId::INVALID,
        ..suite_cx(1, "a=1")
    };
    TraceContextPropagator.inject(&zero_parent, &Baggage::new(), &mut out);
    assert!(out.is_empty());
}

#[test]
fn no_overwrite_keeps_a_traceparent_the_caller_set() {
    let mut out = carrier(&owned(&[("traceparent", TP_00)]));
    let cx = SpanContext {
        span_id: SpanId::from_bytes([7; 8]),
        ..suite_cx(1, "a=1")
    };
    TraceContextPropagator.inject(&cx, &Baggage::new(), &mut NoOverwrite::new(&mut out));
    assert_eq!(out["traceparent"], TP_00);
    assert_eq!(out["tracestate"], "a=1");
    assert!(NoOverwrite::new(&mut out).contains("traceparent"));
}

#[test]
fn round_trip_through_a_header_map() {
    let baggage = Baggage::new()
        .with("user", "alice")
        .unwrap()
        .with_member(BaggageMember::new("region", "eu west, 2").with_properties("ttl=30;sticky"))
        .unwrap();
    for (flags, tracestate) in [
        (0, ""),
        (1, "rojo=00f067aa0ba902b7"),
        (2, "a@b=1,0x= y"),
        (3, "congo=t61rcWkgMzE"),
    ] {
        let cx = suite_cx(flags, tracestate);
        let mut headers = HeaderMap::new();
        W3cPropagator.inject(&cx, &baggage, &mut headers);
        let extracted = W3cPropagator.extract(&headers);
        let want = SpanContext {
            is_remote: true,
            ..cx
        };
        assert_eq!(extracted.span_context, Some(want));
        assert_eq!(extracted.baggage, baggage);
    }
}

// ---------------------------------------------------------------------------------------
// W3C Baggage
// ---------------------------------------------------------------------------------------

/// (key, value, properties)
type Member<'a> = (&'a str, &'a str, &'a str);

fn extract_baggage(values: &[&str]) -> Baggage {
    let headers: Vec<(String, String)> = values
        .iter()
        .map(|v| ("baggage".to_owned(), (*v).to_owned()))
        .collect();
    BaggagePropagator.extract(&carrier(&headers)).baggage
}

fn members(baggage: &Baggage) -> Vec<Member<'_>> {
    baggage
        .iter()
        .map(|m| (m.key.as_str(), m.value.as_str(), m.properties.as_str()))
        .collect()
}

#[test]
fn w3c_baggage_parsing() {
    // Rows from w3c/baggage test/test_baggage.py and the spec's examples.
    let encoded = "%09%20%22%27%3B%3Dasdf%21%40%23%24%25%5E%26%2A%28%29";
    let decoded = "\t \"';=asdf!@#$%^&*()";
    let percent_encoded = format!("SomeKey={encoded}");
    let percent_encoded_ows = format!("SomeKey \t = \t {encoded} \t ");
    let cases: Vec<(&str, Vec<&str>, Vec<Member>)> = vec![
        ("test_parse_simple", vec!["SomeKey=SomeValue"], vec![("SomeKey", "SomeValue", "")]),
        (
            "test_parse_multiple",
            vec!["SomeKey=SomeValue;SomeProp,SomeKey2=SomeValue2;ValueProp=PropVal"],
            vec![("SomeKey", "SomeValue", "SomeProp"), ("SomeKey2", "SomeValue2", "ValueProp=PropVal")],
        ),
        (
            "test_parse_multiple_ows",
            vec!["SomeKey \t = \t SomeValue \t ; \t SomeProp \t , \t SomeKey2 \t = \t SomeValue2 \t ; \t ValueProp \t = \t PropVal"],
            vec![("SomeKey", "SomeValue", "SomeProp"), ("SomeKey2", "SomeValue2", "ValueProp=PropVal")],
        ),
        (
            "test_parse_multiple_kv_property",
            vec!["SomeKey=SomeValue;SomePropKey=SomePropValue,SomeKey2=SomeValue2;SomePropKey2=SomePropValue2"],
            vec![
                ("SomeKey", "SomeValue", "SomePropKey=SomePropValue"),
                ("SomeKey2", "SomeValue2", "SomePropKey2=SomePropValue2"),
            ],
        ),
        (
            "test_parse_multiple_kv_property_ows",
            vec!["SomeKey \t = \t SomeValue \t ; \t SomePropKey=SomePropValue \t , \t SomeKey2 \t = \t SomeValue2 \t ; \t SomePropKey2 \t = \t SomePropValue2"],
            vec![
                ("SomeKey", "SomeValue", "SomePropKey=SomePropValue"),
                ("SomeKey2", "SomeValue2", "SomePropKey2=SomePropValue2"),
            ],
        ),
        ("test_parse_multiple_equals", vec!["SomeKey=SomeValue=equals"], vec![("SomeKey", "SomeValue=equals", "")]),
        ("test_parse_percent_encoded", vec![&percent_encoded], vec![("SomeKey", decoded, "")]),
        (
            "test_parse_percent_encoded_ows",
            vec![&percent_encoded_ows],
            vec![("SomeKey", decoded, "")],
        ),
        ("test_parse_property", vec!["SomeKey=SomeValue;SomeProp"], vec![("SomeKey", "SomeValue", "SomeProp")]),
        (
            "test_parse_multi_property",
            vec!["SomeKey=SomeValue;SomeProp;SecondProp=PropValue"],
            vec![("SomeKey", "SomeValue", "SomeProp;SecondProp=PropValue")],
        ),
        ("test_parse_simple_ows", vec!["SomeKey \t = \t SomeValue \t "], vec![("SomeKey", "SomeValue", "")]),
        (
            "test_parse_multi_property_ows",
            vec!["SomeKey \t = \t SomeValue \t ; \t SomeProp \t ; \t SecondProp \t = \t PropValue"],
            vec![("SomeKey", "SomeValue", "SomeProp;SecondProp=PropValue")],
        ),
        (
            "spec example: properties kept",
            vec!["key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue"],
            vec![
                ("key1", "value1", "property1;property2"),
                ("key2", "value2", ""),
                ("key3", "value3", "propertyKey=propertyValue"),
            ],
        ),
        (
            "spec example: several headers combine",
            vec!["userId =   alice", "serverNode = DF%2028, isProduction = false"],
            vec![("userId", "alice", ""), ("serverNode", "DF 28", ""), ("isProduction", "false", "")],
        ),
        (
            "malformed members are dropped, the others kept",
            vec![
                "a=1,b c=2,d=DF 28,e=\"q\",f=x\\y,g=%ff%fe,h,=i,j=1;,k=1;p q,l=ok",
                "m=1;=x, (n)=1 ,o=é",
            ],
            vec![("a", "1", ""), ("g", "\u{fffd}\u{fffd}", ""), ("l", "ok", "")],
        ),
        (
            "invalid UTF-8 after percent-decoding becomes U+FFFD, the member is kept",
            vec!["k=%ff,j=a%C3%28b,ok=%C3%A9"],
            vec![("k", "\u{fffd}", ""), ("j", "a\u{fffd}(b", ""), ("ok", "\u{e9}", "")],
        ),
        ("empty members are skipped", vec![",, a=1 ,\t,", "", " "], vec![("a", "1", "")]),
        ("duplicate keys are kept, in order", vec!["k=1,k=2"], vec![("k", "1", ""), ("k", "2", "")]),
        ("empty value", vec!["k="], vec![("k", "", "")]),
        ("stray percent signs stay", vec!["k=100%,j=%4"], vec![("k", "100%", ""), ("j", "%4", "")]),
    ];
    for (name, values, want) in cases {
        let baggage = extract_baggage(&values);
        assert_eq!(members(&baggage), want, "{name}");
        assert_eq!(
            parse_baggage(values.iter().map(|v| v.as_bytes())),
            baggage,
            "{name}"
        );
    }
}

#[test]
fn w3c_baggage_percent_encoding_round_trip() {
    // test_parse_percent_encoded: what the suite's encoder (Python's quote) writes, we read;
    // we encode no more than the spec requires, and read it back the same.
    let value = "\t \"';=asdf!@#$%^&*()";
    let baggage = Baggage::new().with("SomeKey", value).unwrap();
    let header = format_baggage(&baggage).unwrap();
    assert_eq!(header, "SomeKey=%09%20%22'%3B=asdf!@#$%25^&*()");
    assert_eq!(extract_baggage(&[&header]), baggage);

    let unicode = Baggage::new()
        .with("k", "ünï cødé ✓ 100% a,b;c\\d\r\n")
        .unwrap();
    let header = format_baggage(&unicode).unwrap();
    let encoded = header.strip_prefix("k=").unwrap();
    assert!(
        encoded
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)),
        "only baggage-octets on the wire: {encoded}"
    );
    assert_eq!(extract_baggage(&[&header]), unicode);
}

fn n_members(n: usize) -> String {
    (0..n)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn w3c_baggage_member_limit() {
    // 180 members (the grammar's `0*179` repetitions) are kept; the 181st is dropped.
    assert_eq!(
        extract_baggage(&[&n_members(180)]).len(),
        BAGGAGE_MAX_MEMBERS
    );
    let over = extract_baggage(&[&n_members(100), &n_members(181).replace('k', "j")]);
    assert_eq!(over.len(), 180);
    assert_eq!(over.get("j79"), Some("v"));
    assert_eq!(over.get("j80"), None);
    // Malformed members do not count.
    let bad = ["b d=1"; 200].join(",");
    assert_eq!(extract_baggage(&[&bad, "ok=1"]).len(), 1);

    // LimitsTest.test_serialize_at_least_64, and on to 180.
    let mut baggage = Baggage::new();
    for i in 0..BAGGAGE_MAX_MEMBERS {
        baggage = baggage.with(&format!("key{i}"), "value").unwrap();
    }
    assert_eq!(
        baggage.with("one-more", "v"),
        Err(BaggageError::TooManyMembers)
    );
    let header = format_baggage(&baggage).unwrap();
    assert_eq!(header.split(',').count(), 180);
    assert_eq!(extract_baggage(&[&header]), baggage);

    // LimitsTest.test_serialize_many_entries: 512 members of 15 bytes. The spec requires at
    // least 64; we keep the grammar's 180 and drop the rest whole.
    let many: Vec<String> = (0..512).map(|i| format!("{i:03}=0123456789a")).collect();
    let kept = extract_baggage(&[&many.join(",")]);
    assert_eq!(kept.len(), 180);
    assert_eq!(kept.iter().last().map(|m| m.key.as_str()), Some("179"));
}

#[test]
fn w3c_baggage_byte_limits() {
    // LimitsTest.test_serialize_long_entry: one member of 8192 bytes is propagated whole.
    let long = format!("a={}", "0123456789".repeat(819));
    assert_eq!(long.len(), BAGGAGE_MAX_BYTES);
    let baggage = extract_baggage(&[&long]);
    assert_eq!(baggage.len(), 1);
    assert_eq!(format_baggage(&baggage).unwrap(), long);

    // A member over 4096 bytes is kept: the 4096-byte member limit of the 2020 drafts is not
    // in the spec any more, and would break the test above.
    let member_4097 = format!("m={}", "x".repeat(4095));
    assert_eq!(extract_baggage(&[&member_4097, "n=1"]).len(), 2);

    // One byte more is dropped whole, and what follows is still read.
    let too_long = format!("{long}9");
    assert_eq!(
        members(&extract_baggage(&[&too_long, "b=2"])),
        [("b", "2", "")]
    );

    // The total: 8192 bytes with commas. A member that would cross it is dropped whole and a
    // smaller one after it still fits.
    let first = format!("a={}", "x".repeat(4000)); // 4002 bytes
    let second = format!("b={}", "y".repeat(4186)); // 4188 bytes, +1 comma = 8191
    let third = format!("c={}", "z".repeat(10)); // would make 8204
    let kept = extract_baggage(&[&first, &third, &second]);
    assert_eq!(
        kept.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    let kept = extract_baggage(&[&first, &second, &third, "d=1"]);
    assert_eq!(
        kept.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(format_baggage(&kept).unwrap().len(), 8191);
    let kept = extract_baggage(&[&first, &second, "d"]);
    assert_eq!(kept.len(), 2);

    // Encoding counts: `k=` and 2731 spaces is 8195 bytes once encoded; 2730 spaces fit.
    let spaces = " ".repeat(2731);
    assert_eq!(
        Baggage::new().with("k", &spaces),
        Err(BaggageError::TooLarge)
    );
    assert!(Baggage::new().with("k", &spaces[1..]).is_ok());
    let full = Baggage::new().with("k", &"v".repeat(8190)).unwrap();
    assert_eq!(full.encoded_len(), BAGGAGE_MAX_BYTES);
    assert_eq!(full.with("x", ""), Err(BaggageError::TooLarge));
}

#[test]
fn baggage_inject_never_sends_an_empty_header() {
    let mut headers = HeaderMap::new();
    BaggagePropagator.inject(&SpanContext::NONE, &Baggage::new(), &mut headers);
    W3cPropagator.inject(
        &SpanContext::NONE,
        &extract_baggage(&["bad key=1", ""]),
        &mut headers,
    );
    assert!(headers.is_empty());
    assert_eq!(format_baggage(&Baggage::new()), None);
}

#[test]
fn baggage_mutators() {
    let b = Baggage::new()
        .with("a", "1")
        .unwrap()
        .with("b", "2")
        .unwrap();
    let b = b.with("a", "3").unwrap();
    assert_eq!(members(&b), [("a", "3", ""), ("b", "2", "")]);
    assert_eq!(members(&b.without("a")), [("b", "2", "")]);
    assert!(b.without("a").without("b").is_empty());
    assert_eq!(b.without("zzz"), b);

    let dup = extract_baggage(&["k=1,x=0,k=2"]);
    assert_eq!(
        members(&dup.with("k", "3").unwrap()),
        [("k", "3", ""), ("x", "0", "")]
    );
    assert_eq!(members(&dup.without("k")), [("x", "0", "")]);

    assert_eq!(
        Baggage::new().with("a b", "1"),
        Err(BaggageError::InvalidKey)
    );
    assert_eq!(Baggage::new().with("", "1"), Err(BaggageError::InvalidKey));
    let bad_props = BaggageMember::new("k", "v").with_properties("p q");
    assert_eq!(
        Baggage::new().with_member(bad_props),
        Err(BaggageError::InvalidProperties)
    );
    assert!(BaggageError::TooLarge.to_string().contains("8192"));

    let merged = b.merge(&extract_baggage(&["b=9,c=4"]));
    assert_eq!(
        members(&merged),
        [("a", "3", ""), ("b", "2", ""), ("c", "4", "")]
    );

    // Merging keeps the limits: a member that does not fit is left out whole.
    let big_a = Baggage::new().with("a", &"x".repeat(5000)).unwrap();
    let big_b = Baggage::new()
        .with("b", &"y".repeat(5000))
        .unwrap()
        .with("c", "1")
        .unwrap();
    let merged = big_a.merge(&big_b);
    assert_eq!(
        merged.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert!(merged.encoded_len() <= BAGGAGE_MAX_BYTES);
}
