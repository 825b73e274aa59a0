//! W3C Baggage codec: the `baggage` header.
//!
//! <https://www.w3.org/TR/baggage/>
//!
//! ```text
//! baggage-string = list-member 0*179( OWS "," OWS list-member )
//! list-member    = key OWS "=" OWS value *( OWS ";" OWS property )
//! property       = key OWS "=" OWS value / key OWS
//! key            = token
//! value          = *baggage-octet   ; percent-encoded UTF-8
//! ```
//!
//! Limits: [`BAGGAGE_MAX_MEMBERS`] members and [`BAGGAGE_MAX_BYTES`] bytes (encoded members
//! and the commas between them). The spec makes these minimums: a platform MUST propagate
//! 64 members and 8192 bytes, so a single member may take all 8192 bytes (the 4096-byte
//! member limit of the 2020 drafts was removed). A member past a limit is dropped whole,
//! never cut; a malformed member is dropped and the others kept, as the spec allows.

use http::HeaderValue;
use percent_encoding::{percent_decode, utf8_percent_encode};

use super::{trim_ows, Extracted, Extractor, Injector, Propagator, BAGGAGE};
use crate::baggage::{
    encoded_len, is_baggage_octet, is_token, Baggage, BaggageBuilder, BaggageMember,
    BAGGAGE_MAX_BYTES, BAGGAGE_MAX_MEMBERS, VALUE_ENCODE,
};
use crate::context::SpanContext;

/// Parses and combines `baggage` header values, in order, as one list.
///
/// Values are percent-decoded; bytes that do not decode to UTF-8 become U+FFFD, as W3C Baggage
/// says. A member that is malformed (bad key, a character that is not a `baggage-octet`, a bad
/// property) is dropped and the others kept. Empty members are skipped. Members past
/// [`BAGGAGE_MAX_MEMBERS`], or that would take the total past [`BAGGAGE_MAX_BYTES`], are dropped
/// whole.
pub fn parse_baggage<'a>(values: impl Iterator<Item = &'a [u8]>) -> Baggage {
    let mut builder = BaggageBuilder::default();
    for value in values {
        builder.push_header(value);
    }
    builder.finish()
}

/// The `baggage` header value for `baggage`, or `None` when it has no member to send.
///
/// Values are percent-encoded; the result never exceeds the limits (a member that would
/// is left out whole).
pub fn format_baggage(baggage: &Baggage) -> Option<String> {
    let estimate: usize = baggage
        .iter()
        .map(|m| m.key.len() + m.value.len() + m.properties.len() + 2)
        .sum();
    let mut out = String::with_capacity(estimate.min(BAGGAGE_MAX_BYTES));
    let mut members = 0;
    for member in baggage {
        if members == BAGGAGE_MAX_MEMBERS {
            break;
        }
        let added = encoded_len(member) + usize::from(members > 0);
        if out.len() + added > BAGGAGE_MAX_BYTES {
            continue;
        }
        if members > 0 {
            out.push(',');
        }
        out.push_str(&member.key);
        out.push('=');
        out.extend(utf8_percent_encode(&member.value, VALUE_ENCODE));
        if !member.properties.is_empty() {
            out.push(';');
            out.push_str(&member.properties);
        }
        members += 1;
    }
    (!out.is_empty()).then_some(out)
}

/// W3C Baggage: the `baggage` header.
///
/// Extract combines every `baggage` header (see [`parse_baggage`]); inject writes one
/// header, and none when there is nothing to send (see [`format_baggage`]). Span contexts
/// are not this propagator's business.
#[derive(Clone, Copy, Debug, Default)]
pub struct BaggagePropagator;

impl BaggagePropagator {
    /// The propagator.
    pub const fn new() -> Self {
        BaggagePropagator
    }

    /// The caller's baggage; allocates nothing when there is none.
    pub(crate) fn extract_baggage(carrier: &dyn Extractor) -> Baggage {
        let mut builder = BaggageBuilder::default();
        carrier.get_each_header(&BAGGAGE, &mut |value| builder.push_header(value));
        builder.finish()
    }

    pub(crate) fn inject_baggage(baggage: &Baggage, carrier: &mut dyn Injector) {
        if let Some(value) = format_baggage(baggage).and_then(|s| HeaderValue::try_from(s).ok()) {
            carrier.set(BAGGAGE, value);
        }
    }
}

impl Propagator for BaggagePropagator {
    fn extract(&self, carrier: &dyn Extractor) -> Extracted {
        Extracted {
            span_context: None,
            baggage: BaggagePropagator::extract_baggage(carrier),
        }
    }

    fn inject(&self, _cx: &SpanContext, baggage: &Baggage, carrier: &mut dyn Injector) {
        BaggagePropagator::inject_baggage(baggage, carrier);
    }
}

impl BaggageBuilder {
    /// Adds the members of one `baggage` header value.
    pub(crate) fn push_header(&mut self, value: &[u8]) {
        for member in value.split(|&b| b == b',') {
            if self.is_full() {
                return;
            }
            let member = trim_ows(member);
            if let Some(member) = parse_member(member) {
                self.push(member);
            }
        }
    }
}

/// One list member, OWS already trimmed from its ends; `None` when empty or malformed.
fn parse_member(member: &[u8]) -> Option<BaggageMember> {
    let (pair, properties) = match member.iter().position(|&b| b == b';') {
        Some(semi) => (&member[..semi], Some(&member[semi + 1..])),
        None => (member, None),
    };
    let eq = pair.iter().position(|&b| b == b'=')?;
    let key = trim_ows(&pair[..eq]);
    let raw_value = trim_ows(&pair[eq + 1..]);
    if !is_token(key) || !raw_value.iter().all(|&b| is_baggage_octet(b)) {
        return None;
    }
    // W3C Baggage: invalid UTF-8 after percent-decoding is replaced, not refused.
    let value = percent_decode(raw_value).decode_utf8_lossy().into_owned();
    let properties = match properties {
        Some(properties) => normalize_properties(properties)?,
        None => String::new(),
    };
    Some(BaggageMember {
        key: std::str::from_utf8(key).ok()?.to_owned(),
        value,
        properties,
    })
}

/// `p1 ; k = v` → `p1;k=v`; `None` when a property is malformed.
fn normalize_properties(properties: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(properties.len());
    for property in properties.split(|&b| b == b';') {
        let property = trim_ows(property);
        let (key, value) = match property.iter().position(|&b| b == b'=') {
            Some(eq) => (
                trim_ows(&property[..eq]),
                Some(trim_ows(&property[eq + 1..])),
            ),
            None => (property, None),
        };
        if !is_token(key)
            || !value
                .unwrap_or_default()
                .iter()
                .all(|&b| is_baggage_octet(b))
        {
            return None;
        }
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(std::str::from_utf8(key).ok()?);
        if let Some(value) = value {
            out.push('=');
            out.push_str(std::str::from_utf8(value).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baggage::is_normalized_properties;

    fn member(s: &str) -> Option<BaggageMember> {
        parse_member(trim_ows(s.as_bytes()))
    }

    #[test]
    fn member_grammar() {
        let m = member("k \t= \t v=w \t; \tp1 ; p2 = x=y").unwrap();
        assert_eq!((m.key.as_str(), m.value.as_str()), ("k", "v=w"));
        assert_eq!(m.properties, "p1;p2=x=y");
        assert_eq!(member("k=").unwrap().value, "");
        assert_eq!(member("k=%41%zz%").unwrap().value, "A%zz%");
        assert_eq!(member("k=%ff").unwrap().value, "\u{fffd}");
        for bad in [
            "",
            "k",
            "=v",
            "k v=1",
            "k=a b",
            "k=\"q\"",
            "k=a\\b",
            "k=v;",
            "k=v;;p",
            "k=v;p q",
            "k=v;=x",
            "k=v;p=a b",
            "k\u{e9}=v",
            "k=\u{e9}",
            "(k)=v",
            "k=v,",
        ] {
            assert_eq!(member(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tokens_and_octets() {
        assert!(is_token(b"!#$%&'*+-.^_`|~09AZaz"));
        for bad in [
            &b""[..],
            b"a b",
            b"a,b",
            b"a;b",
            b"a=b",
            b"a\"",
            b"a(",
            b"a@",
            b"a/",
            b"\xc3\xa9",
        ] {
            assert!(!is_token(bad), "{bad:?}");
        }
        let octets: Vec<u8> = (0u8..=255).filter(|&b| is_baggage_octet(b)).collect();
        assert_eq!(octets.len(), 0x7e - 0x21 + 1 - 4);
        assert!(!octets.contains(&b'"') && !octets.contains(&b',') && !octets.contains(&b';'));
        assert!(!octets.contains(&b'\\') && !octets.contains(&b' '));
    }

    #[test]
    fn normalized_properties() {
        assert!(is_normalized_properties(b""));
        assert!(is_normalized_properties(b"a;b=c;d=e=f;g="));
        for bad in [&b";"[..], b"a;", b"a b", b"a=b c", b" a", b"=b", b"a;;b"] {
            assert!(!is_normalized_properties(bad), "{bad:?}");
        }
    }

    #[test]
    fn encoding_escapes_what_is_not_a_baggage_octet_and_percent() {
        let m = BaggageMember::new("k", "a b,c;d\\e\"f%g=h\u{e9}\t");
        let baggage = Baggage::new().with_member(m.clone()).unwrap();
        let header = format_baggage(&baggage).unwrap();
        assert_eq!(header, "k=a%20b%2Cc%3Bd%5Ce%22f%25g=h%C3%A9%09");
        assert_eq!(encoded_len(&m), header.len());
        assert_eq!(parse_baggage([header.as_bytes()].into_iter()), baggage);
    }

    #[test]
    fn builder_stops_at_the_member_limit_and_skips_what_does_not_fit() {
        let mut builder = BaggageBuilder::default();
        let big = format!("big={}", "x".repeat(BAGGAGE_MAX_BYTES - 4));
        builder.push_header(b"a=1");
        builder.push_header(big.as_bytes());
        builder.push_header(b"b=2");
        let baggage = builder.finish();
        assert_eq!(baggage.get("big"), None);
        assert_eq!(baggage.get("b"), Some("2"));

        let mut builder = BaggageBuilder::default();
        assert!(!builder.push_checked(BaggageMember::new("a b", "1")));
        assert!(!builder.push_checked(BaggageMember::new("a", "1").with_properties(" p")));
        assert!(builder.push_checked(BaggageMember::new("a", "1").with_properties("p")));
        assert_eq!(builder.finish().len(), 1);
    }

    #[test]
    fn nothing_to_send_is_no_header() {
        assert_eq!(format_baggage(&Baggage::new()), None);
    }
}
