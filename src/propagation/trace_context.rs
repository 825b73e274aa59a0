//! W3C Trace Context Level 2: `traceparent`, `tracestate` and `traceresponse`.
//!
//! <https://www.w3.org/TR/trace-context-2/>

use std::fmt;

use http::HeaderValue;

use super::{trim_ows, Extracted, Extractor, Injector, Propagator, TRACEPARENT, TRACESTATE};
use crate::baggage::Baggage;
use crate::context::{
    is_valid_key, is_valid_value, SpanContext, SpanId, TraceFlags, TraceId, TraceState,
    TRACESTATE_MAX_MEMBERS,
};

/// Length of a version `00` `traceparent`: `vv-` + 32 + `-` + 16 + `-` + 2.
const TRACEPARENT_LEN: usize = 55;

/// The flags this implementation knows: `sampled` (0x01) and Level 2 `random` (0x02).
const KNOWN_FLAGS: u8 = 0x03;

/// Why a `traceparent` (or `traceresponse`) value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceparentError {
    /// Shorter than 55 bytes, or version `00` and not exactly 55 bytes.
    Length,
    /// The version is not two lower-case hex digits followed by `-`.
    InvalidVersion,
    /// Version `ff`, which the spec forbids.
    ForbiddenVersion,
    /// The trace id is not 32 lower-case hex digits followed by `-`.
    InvalidTraceId,
    /// The trace id is all zeros.
    ZeroTraceId,
    /// The parent id is not 16 lower-case hex digits followed by `-`.
    InvalidParentId,
    /// The parent id is all zeros.
    ZeroParentId,
    /// The flags are not two lower-case hex digits.
    InvalidFlags,
    /// A future version's flags are followed by something other than `-`.
    TrailingData,
}

impl fmt::Display for TraceparentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceparentError::Length => "traceparent has the wrong length",
            TraceparentError::InvalidVersion => {
                "traceparent version is not 2 lower-case hex digits"
            }
            TraceparentError::ForbiddenVersion => "traceparent version ff is forbidden",
            TraceparentError::InvalidTraceId => {
                "traceparent trace id is not 32 lower-case hex digits"
            }
            TraceparentError::ZeroTraceId => "traceparent trace id is all zeros",
            TraceparentError::InvalidParentId => {
                "traceparent parent id is not 16 lower-case hex digits"
            }
            TraceparentError::ZeroParentId => "traceparent parent id is all zeros",
            TraceparentError::InvalidFlags => "traceparent flags are not 2 lower-case hex digits",
            TraceparentError::TrailingData => {
                "traceparent flags are followed by something other than '-'"
            }
        })
    }
}

impl std::error::Error for TraceparentError {}

/// Parses a `traceparent` value, allocation-free.
///
/// Optional whitespace (spaces, tabs) around the value is ignored, as HTTP does. Version
/// `00` must be exactly 55 bytes. A higher version (but `ff`) is read as version `00` would
/// read its first 55 bytes, and is valid when it is exactly 55 bytes long or its 56th byte
/// is `-`; what follows is ignored. Hex must be lower-case; all-zero ids are refused. Only
/// the known flags, `sampled` and `random`, are kept. The result is remote and has an
/// empty trace state.
pub fn parse_traceparent(value: &[u8]) -> Result<SpanContext, TraceparentError> {
    let value = trim_ows(value);
    if value.len() < TRACEPARENT_LEN {
        return Err(TraceparentError::Length);
    }
    let version = match hex_u8(&value[0..2]) {
        Some(version) if value[2] == b'-' => version,
        _ => return Err(TraceparentError::InvalidVersion),
    };
    match version {
        0xff => return Err(TraceparentError::ForbiddenVersion),
        0x00 if value.len() != TRACEPARENT_LEN => return Err(TraceparentError::Length),
        _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => {
            return Err(TraceparentError::TrailingData)
        }
        _ => {}
    }
    let trace_id = match (
        hex_number::<16>(&value[3..19]),
        hex_number::<16>(&value[19..35]),
    ) {
        (Some(high), Some(low)) if value[35] == b'-' => {
            TraceId::from((u128::from(high) << 64) | u128::from(low))
        }
        _ => return Err(TraceparentError::InvalidTraceId),
    };
    let span_id = match hex_number::<16>(&value[36..52]) {
        Some(id) if value[52] == b'-' => SpanId::from(id),
        _ => return Err(TraceparentError::InvalidParentId),
    };
    let Some(flags) = hex_u8(&value[53..55]) else {
        return Err(TraceparentError::InvalidFlags);
    };
    if trace_id == TraceId::INVALID {
        return Err(TraceparentError::ZeroTraceId);
    }
    if span_id == SpanId::INVALID {
        return Err(TraceparentError::ZeroParentId);
    }
    Ok(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & KNOWN_FLAGS),
        true,
        TraceState::NONE,
    ))
}

/// Formats `cx` as a version `00` `traceparent`, allocation-free; only the `sampled` and
/// `random` flags are written.
pub fn format_traceparent(cx: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    let mut out = [b'-'; TRACEPARENT_LEN];
    out[0] = b'0';
    out[1] = b'0';
    encode_hex(&cx.trace_id.to_bytes(), &mut out[3..35]);
    encode_hex(&cx.span_id.to_bytes(), &mut out[36..52]);
    encode_hex(&[cx.trace_flags.to_u8() & KNOWN_FLAGS], &mut out[53..55]);
    out
}

/// [`format_traceparent`] as a header value (one allocation).
pub fn traceparent_header_value(cx: &SpanContext) -> HeaderValue {
    // Hex digits and dashes are always a valid header value; the fallback is never taken.
    HeaderValue::from_bytes(&format_traceparent(cx)).unwrap_or(HeaderValue::from_static(""))
}

/// Parses a Level 2 `traceresponse` value: the callee's trace id, its span (`child-id`) and
/// its flags. The format and rules are those of `traceparent`: see [`parse_traceparent`].
pub fn parse_traceresponse(value: &[u8]) -> Result<SpanContext, TraceparentError> {
    parse_traceparent(value)
}

/// Formats `cx` (our server span) as a version `00` `traceresponse`; the format is that of
/// [`format_traceparent`].
pub fn format_traceresponse(cx: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    format_traceparent(cx)
}

/// [`format_traceresponse`] as a header value (one allocation).
pub fn traceresponse_header_value(cx: &SpanContext) -> HeaderValue {
    traceparent_header_value(cx)
}

/// Parses and combines `tracestate` header values, in order, as one list.
///
/// Empty members and optional whitespace around members are skipped. A key that appears
/// again (in the same header or a later one) keeps its first member: the later ones are
/// dropped and do not count towards the limit, as the W3C test suite allows. The whole
/// trace state is dropped ([`TraceState::NONE`]) when a member breaks the Level 2 key or
/// value grammar, or there are more than 32 members. Allocates only when a member is
/// present.
pub fn parse_tracestate<'a>(values: impl Iterator<Item = &'a [u8]>) -> TraceState {
    let mut builder = TraceStateBuilder::default();
    for value in values {
        builder.push(value);
    }
    builder.finish()
}

/// Builds a trace state from header values fed one at a time (the carrier hands them to a
/// callback, so they cannot be collected without copying).
#[derive(Debug, Default)]
struct TraceStateBuilder {
    header: String,
    members: usize,
    invalid: bool,
}

impl TraceStateBuilder {
    fn push(&mut self, value: &[u8]) {
        if self.invalid {
            return;
        }
        for member in value.split(|&b| b == b',') {
            let member = trim_ows(member);
            if !member.is_empty() && !self.push_member(member, value.len()) {
                self.invalid = true;
                return;
            }
        }
    }

    /// Appends one non-empty member; `false` when it invalidates the whole trace state.
    fn push_member(&mut self, member: &[u8], hint: usize) -> bool {
        let Some(eq) = member.iter().position(|&b| b == b'=') else {
            return false;
        };
        let (Ok(key), Ok(value)) = (
            std::str::from_utf8(&member[..eq]),
            std::str::from_utf8(&member[eq + 1..]),
        ) else {
            return false;
        };
        if !is_valid_key(key) || !is_valid_value(value) {
            return false;
        }
        if TraceState::get_in(&self.header, key).is_some() {
            // A repeated key: the first member stands, this one is dropped.
            return true;
        }
        self.members += 1;
        if self.members > TRACESTATE_MAX_MEMBERS {
            return false;
        }
        if self.header.is_empty() {
            self.header.reserve(hint);
        } else {
            self.header.push(',');
        }
        self.header.push_str(key);
        self.header.push('=');
        self.header.push_str(value);
        true
    }

    fn finish(self) -> TraceState {
        if self.invalid {
            TraceState::NONE
        } else {
            TraceState::from_normalized(self.header)
        }
    }
}

/// W3C Trace Context Level 2: `traceparent` and `tracestate`.
///
/// Extract: exactly one valid `traceparent` gives a remote span context (two or more are
/// malformed: new trace); every `tracestate` header is combined, and kept only with a valid
/// `traceparent`. Inject: a valid context writes `traceparent` (version `00`) and, when not
/// empty, `tracestate` (otherwise a stale `tracestate` is removed); an invalid context
/// writes nothing. Baggage is not this propagator's business.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContextPropagator;

impl TraceContextPropagator {
    /// The propagator.
    pub const fn new() -> Self {
        TraceContextPropagator
    }

    /// The caller's span context, if exactly one valid `traceparent` was sent.
    pub(crate) fn extract_span_context(carrier: &dyn Extractor) -> Option<SpanContext> {
        let mut count = 0usize;
        let mut parsed = None;
        carrier.get_each_header(&TRACEPARENT, &mut |value| {
            count += 1;
            if count == 1 {
                parsed = parse_traceparent(value).ok();
            }
        });
        if count != 1 {
            return None;
        }
        let mut cx = parsed?;
        let mut trace_state = TraceStateBuilder::default();
        carrier.get_each_header(&TRACESTATE, &mut |value| trace_state.push(value));
        cx.trace_state = trace_state.finish();
        Some(cx)
    }

    pub(crate) fn inject_span_context(cx: &SpanContext, carrier: &mut dyn Injector) {
        if !cx.is_valid() {
            return;
        }
        carrier.set(TRACEPARENT, traceparent_header_value(cx));
        let trace_state = (!cx.trace_state.is_empty())
            .then(|| HeaderValue::from_str(cx.trace_state.header()).ok())
            .flatten();
        match trace_state {
            Some(value) => carrier.set(TRACESTATE, value),
            None => carrier.remove(TRACESTATE.as_str()),
        }
    }
}

impl Propagator for TraceContextPropagator {
    fn extract(&self, carrier: &dyn Extractor) -> Extracted {
        Extracted {
            span_context: TraceContextPropagator::extract_span_context(carrier),
            baggage: Baggage::new(),
        }
    }

    fn inject(&self, cx: &SpanContext, _baggage: &Baggage, carrier: &mut dyn Injector) {
        TraceContextPropagator::inject_span_context(cx, carrier);
    }
}

/// `N` lower-case hex digits (at most 16) as the number they spell; `None` unless `hex` is
/// exactly `N` `0-9a-f` digits. The ids are most of a `traceparent`, read on every request: a
/// fixed-length loop, which the compiler unrolls, accumulating into a word.
fn hex_number<const N: usize>(hex: &[u8]) -> Option<u64> {
    let hex: &[u8; N] = hex.try_into().ok()?;
    let mut value = 0u64;
    // Branch-free: any byte that is not lower-case hex sets a high bit in `bad`.
    let mut bad = 0u8;
    for &digit in hex {
        let nibble = HEX[usize::from(digit)];
        bad |= nibble;
        value = (value << 4) | u64::from(nibble & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(value)
}

/// Two lower-case hex digits, as a byte.
fn hex_u8(hex: &[u8]) -> Option<u8> {
    hex_number::<2>(hex).map(|value| value as u8)
}

/// Lower-case hex digit values; every other byte maps to `0xff`.
const HEX: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Writes `bytes` as lower-case hex into `out` (`2 * bytes.len()` long).
fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

#[cfg(test)]
mod hex_tests {
    use super::*;

    #[test]
    fn hex_decoding_takes_lower_case_digits_only_at_every_position() {
        let base = *b"0123456789abcdef";
        assert_eq!(hex_number::<16>(&base), Some(0x0123_4567_89ab_cdef));
        for position in 0..base.len() {
            for byte in 0..=255u8 {
                let mut hex = base;
                hex[position] = byte;
                let valid = byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
                let want = valid.then(|| {
                    let text = std::str::from_utf8(&hex).unwrap();
                    u64::from_str_radix(text, 16).unwrap()
                });
                assert_eq!(
                    hex_number::<16>(&hex),
                    want,
                    "byte {byte:#04x} at {position}"
                );
                let want_u8 = want.filter(|_| position < 2).map(|_| {
                    u8::from_str_radix(std::str::from_utf8(&hex[..2]).unwrap(), 16).unwrap()
                });
                if position < 2 {
                    assert_eq!(hex_u8(&hex[..2]), want_u8, "byte {byte:#04x} at {position}");
                }
            }
        }
        assert_eq!(hex_number::<16>(b"0123456789abcde"), None);
        assert_eq!(hex_number::<16>(b"0123456789abcdef0"), None);
        assert_eq!(hex_u8(b"0"), None);
        assert_eq!(hex_u8(b"000"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn parse(s: &str) -> Result<SpanContext, TraceparentError> {
        parse_traceparent(s.as_bytes())
    }

    #[test]
    fn parses_a_valid_version_00() {
        let cx = parse(VALID).unwrap();
        assert_eq!(
            format!("{:032x}", cx.trace_id),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(format!("{:016x}", cx.span_id), "b7ad6b7169203331");
        assert!(cx.is_sampled() && !cx.is_random() && cx.is_remote);
        assert!(cx.trace_state.is_empty());
        assert_eq!(format_traceparent(&cx), VALID.as_bytes());
    }

    #[test]
    fn each_error_branch() {
        use TraceparentError::*;
        let cases: &[(&str, TraceparentError)] = &[
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
                Length,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
                Length,
            ),
            (
                "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                InvalidVersion,
            ),
            (
                "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                InvalidVersion,
            ),
            (
                "000-af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                InvalidVersion,
            ),
            (
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ForbiddenVersion,
            ),
            (
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                InvalidTraceId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319cxb7ad6b7169203331-01",
                InvalidTraceId,
            ),
            (
                "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                ZeroTraceId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
                InvalidParentId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331+01",
                InvalidParentId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                ZeroParentId,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A",
                InvalidFlags,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-+1",
                InvalidFlags,
            ),
            (
                "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
                TrailingData,
            ),
            ("", Length),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input), Err(*want), "{input:?}");
        }
    }

    #[test]
    fn future_versions_take_the_version_00_fields() {
        let cx = parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-extra").unwrap();
        assert!(cx.is_sampled() && cx.is_random());
        assert!(parse("fe-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").is_ok());
        assert!(parse("fe-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00-").is_ok());
        assert_eq!(
            parse("fe-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0"),
            Err(TraceparentError::Length)
        );
        assert_eq!(
            parse("cc-00000000000000000000000000000000-b7ad6b7169203331-01-x"),
            Err(TraceparentError::ZeroTraceId)
        );
    }

    #[test]
    fn unknown_flags_are_dropped_and_known_ones_kept() {
        for (flags, want) in [
            ("00", 0),
            ("01", 1),
            ("02", 2),
            ("03", 3),
            ("ff", 3),
            ("fc", 0),
            ("09", 1),
        ] {
            let input = format!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}");
            assert_eq!(parse(&input).unwrap().trace_flags.to_u8(), want, "{flags}");
        }
        let mut cx = parse(VALID).unwrap();
        cx.trace_flags = TraceFlags::new(0xff);
        assert!(format_traceparent(&cx).ends_with(b"-03"));
    }

    #[test]
    fn ows_around_the_value_is_ignored_but_not_inside() {
        assert!(parse(&format!(" \t{VALID}\t ")).is_ok());
        assert!(parse(&VALID.replacen('-', " -", 1)).is_err());
    }

    #[test]
    fn header_values_match_the_formatted_bytes() {
        let cx = parse(VALID).unwrap();
        assert_eq!(traceparent_header_value(&cx), VALID);
        assert_eq!(traceresponse_header_value(&cx), VALID);
        assert_eq!(parse_traceresponse(VALID.as_bytes()), Ok(cx.clone()));
        assert_eq!(format_traceresponse(&cx), format_traceparent(&cx));
    }

    fn ts(values: &[&str]) -> TraceState {
        parse_tracestate(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn tracestate_combines_headers_and_skips_empty_members() {
        assert_eq!(ts(&["a=1, ,b=2", "", " , c=3 ,"]).header(), "a=1,b=2,c=3");
        assert_eq!(ts(&["a= 1"]).get("a"), Some(" 1"));
        assert!(ts(&[]).is_empty());
        assert!(ts(&[" , ,\t"]).is_empty());
    }

    #[test]
    fn tracestate_is_dropped_whole_on_any_bad_member() {
        let bad: [&[&str]; 5] = [
            &["a=1", "b"],
            &["a=1,B=2"],
            &["a=1,b=,c=4"],
            &["a=1,k=\u{e9}"],
            &["a=1,k=v\u{7f}"],
        ];
        for values in bad {
            assert!(ts(values).is_empty(), "{values:?}");
        }
        let mut builder = TraceStateBuilder::default();
        builder.push(b"a=\xff");
        builder.push(b"b=1");
        assert!(builder.finish().is_empty());
    }

    #[test]
    fn tracestate_keeps_the_first_member_of_a_repeated_key() {
        assert_eq!(ts(&["foo=1,foo=1"]).header(), "foo=1");
        assert_eq!(ts(&["foo=1,bar=2,foo=3"]).header(), "foo=1,bar=2");
        assert_eq!(ts(&["foo=1", "foo=2"]).header(), "foo=1");
        // A repeated key is still checked: a bad one drops the whole state.
        assert!(ts(&["foo=1", "foo="]).is_empty());
        // Dropped repeats do not count towards the 32 members.
        let members: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert_eq!(ts(&[&members.join(","), "k0=w,k31=w"]).len(), 32);
    }

    #[test]
    fn tracestate_member_limit() {
        let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(ts(&[&members[..32].join(",")]).len(), 32);
        assert!(ts(&[&members.join(",")]).is_empty());
    }
}
