//! W3C Baggage: application-defined `key=value` pairs that travel with a request.
//!
//! [`Baggage`] is immutable and cheap to clone; [`Baggage::with`] and [`Baggage::without`]
//! return modified copies. It always fits the limits the codec enforces on the wire
//! ([`BAGGAGE_MAX_MEMBERS`] members, [`BAGGAGE_MAX_BYTES`] bytes once encoded), so whatever a
//! [`Baggage`] holds is propagated whole. The wire format lives in
//! [`crate::propagation`] ([`parse_baggage`](crate::propagation::parse_baggage),
//! [`format_baggage`](crate::propagation::format_baggage)).

use std::fmt;
use std::sync::Arc;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// Most list members a `baggage` header carries (the W3C grammar's `0*179` repetitions).
pub const BAGGAGE_MAX_MEMBERS: usize = 180;

/// Most bytes a `baggage` header carries: members, once encoded, and the commas between them.
pub const BAGGAGE_MAX_BYTES: usize = 8192;

/// One baggage list member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaggageMember {
    /// The key (an RFC 7230 token).
    pub key: String,
    /// The value, percent-decoded.
    pub value: String,
    /// The member's properties (what follows the first `;`), as `k1=v1;k2`: optional
    /// whitespace removed, values not decoded; empty when there are none.
    pub properties: String,
}

impl BaggageMember {
    /// A member without properties.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        BaggageMember {
            key: key.into(),
            value: value.into(),
            properties: String::new(),
        }
    }

    /// This member with `properties` (`k1=v1;k2`, as on the wire, no whitespace).
    pub fn with_properties(mut self, properties: impl Into<String>) -> Self {
        self.properties = properties.into();
        self
    }

    /// Bytes this member takes in a `baggage` header.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self)
    }
}

/// Why a baggage member was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaggageError {
    /// The key is not an RFC 7230 token.
    InvalidKey,
    /// The properties break the W3C property grammar.
    InvalidProperties,
    /// The baggage would have more than [`BAGGAGE_MAX_MEMBERS`] members.
    TooManyMembers,
    /// The encoded baggage would be longer than [`BAGGAGE_MAX_BYTES`].
    TooLarge,
}

impl fmt::Display for BaggageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BaggageError::InvalidKey => "baggage key is not an RFC 7230 token",
            BaggageError::InvalidProperties => "baggage properties break the W3C grammar",
            BaggageError::TooManyMembers => "baggage would have more than 180 members",
            BaggageError::TooLarge => "baggage would be longer than 8192 bytes",
        })
    }
}

impl std::error::Error for BaggageError {}

/// Baggage: an ordered set of members, cheap to clone (an `Arc`) and empty without allocating.
///
/// Keys may repeat when received that way (the W3C spec allows it); [`Baggage::get`]
/// returns the first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Baggage(Option<Arc<[BaggageMember]>>);

impl Baggage {
    /// No members.
    pub const fn new() -> Self {
        Baggage(None)
    }

    /// Baggage from members, as given: the caller has validated them and kept the limits.
    pub(crate) fn from_members(members: Vec<BaggageMember>) -> Self {
        if members.is_empty() {
            Baggage(None)
        } else {
            Baggage(Some(members.into()))
        }
    }

    /// No members.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.as_deref().map_or(0, <[_]>::len)
    }

    /// The members in order.
    pub fn iter(&self) -> std::slice::Iter<'_, BaggageMember> {
        self.0.as_deref().unwrap_or(&[]).iter()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.member(key).map(|m| m.value.as_str())
    }

    /// The first member with `key`.
    pub fn member(&self, key: &str) -> Option<&BaggageMember> {
        self.iter().find(|m| m.key == key)
    }

    /// Bytes the `baggage` header for these members takes.
    pub fn encoded_len(&self) -> usize {
        let members: usize = self.iter().map(BaggageMember::encoded_len).sum();
        members + self.len().saturating_sub(1)
    }

    /// A copy with `key` set to `value` (any string; it is percent-encoded on the wire).
    ///
    /// The member takes the place of the first member with the same key, and the others
    /// with that key go; a new key goes last.
    pub fn with(&self, key: &str, value: &str) -> Result<Baggage, BaggageError> {
        self.with_member(BaggageMember::new(key, value))
    }

    /// A copy with `member` set, as [`Baggage::with`] does.
    pub fn with_member(&self, member: BaggageMember) -> Result<Baggage, BaggageError> {
        if !is_token(member.key.as_bytes()) {
            return Err(BaggageError::InvalidKey);
        }
        if !is_normalized_properties(member.properties.as_bytes()) {
            return Err(BaggageError::InvalidProperties);
        }
        let first = self.iter().position(|m| m.key == member.key);
        let mut members = Vec::with_capacity(self.len() + 1);
        let mut pending = Some(member);
        for (i, existing) in self.iter().enumerate() {
            match first {
                Some(p) if i == p => members.extend(pending.take()),
                Some(p) if i > p && members.get(p).is_some_and(|m| m.key == existing.key) => {}
                _ => members.push(existing.clone()),
            }
        }
        members.extend(pending);
        Baggage::checked(members)
    }

    /// A copy without any member with `key`.
    pub fn without(&self, key: &str) -> Baggage {
        if self.member(key).is_none() {
            return self.clone();
        }
        Baggage::from_members(self.iter().filter(|m| m.key != key).cloned().collect())
    }

    /// These members, then those of `other` whose key is not here yet, as far as the limits
    /// allow (a member that does not fit is left out whole).
    pub fn merge(&self, other: &Baggage) -> Baggage {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut merged = BaggageBuilder::default();
        for member in self
            .iter()
            .chain(other.iter().filter(|m| self.member(&m.key).is_none()))
        {
            merged.push(member.clone());
        }
        merged.finish()
    }

    fn checked(members: Vec<BaggageMember>) -> Result<Baggage, BaggageError> {
        if members.len() > BAGGAGE_MAX_MEMBERS {
            return Err(BaggageError::TooManyMembers);
        }
        let baggage = Baggage::from_members(members);
        if baggage.encoded_len() > BAGGAGE_MAX_BYTES {
            return Err(BaggageError::TooLarge);
        }
        Ok(baggage)
    }
}

impl<'a> IntoIterator for &'a Baggage {
    type Item = &'a BaggageMember;
    type IntoIter = std::slice::Iter<'a, BaggageMember>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Bytes percent-encoded in a value: every byte that is not a `baggage-octet` (controls,
/// space, `"`, `,`, `;`, `\`, non-ASCII) and `%` itself.
pub(crate) const VALUE_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// Gathers members, header value by header value (the codec in
/// [`propagation`](crate::propagation) adds those of a `baggage` header), within the limits.
#[derive(Debug, Default)]
pub(crate) struct BaggageBuilder {
    members: Vec<BaggageMember>,
    bytes: usize,
}

impl BaggageBuilder {
    /// Adds a member from elsewhere (another propagator), after checking its key and
    /// properties; `false` when it was refused or did not fit.
    pub(crate) fn push_checked(&mut self, member: BaggageMember) -> bool {
        is_token(member.key.as_bytes())
            && is_normalized_properties(member.properties.as_bytes())
            && self.push(member)
    }

    /// Adds a valid member if it fits; `false` when it does not.
    pub(crate) fn push(&mut self, member: BaggageMember) -> bool {
        let added = encoded_len(&member) + usize::from(!self.members.is_empty());
        if self.members.len() == BAGGAGE_MAX_MEMBERS || self.bytes + added > BAGGAGE_MAX_BYTES {
            return false;
        }
        self.bytes += added;
        self.members.push(member);
        true
    }

    /// No member can be added any more.
    pub(crate) fn is_full(&self) -> bool {
        self.members.len() == BAGGAGE_MAX_MEMBERS
    }

    pub(crate) fn finish(self) -> Baggage {
        Baggage::from_members(self.members)
    }
}

/// Properties in the form the `baggage` header parser normalizes them to (or none).
pub(crate) fn is_normalized_properties(properties: &[u8]) -> bool {
    properties.is_empty()
        || properties.split(|&b| b == b';').all(|property| {
            let (key, value) = match property.iter().position(|&b| b == b'=') {
                Some(eq) => (&property[..eq], &property[eq + 1..]),
                None => (property, &b""[..]),
            };
            is_token(key) && value.iter().all(|&b| is_baggage_octet(b))
        })
}

/// Bytes `member` takes on the wire, value percent-encoded.
pub(crate) fn encoded_len(member: &BaggageMember) -> usize {
    let value: usize = utf8_percent_encode(&member.value, VALUE_ENCODE)
        .map(str::len)
        .sum();
    let properties = if member.properties.is_empty() {
        0
    } else {
        1 + member.properties.len()
    };
    member.key.len() + 1 + value + properties
}

/// An RFC 7230 `token`: one or more `tchar`.
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// `baggage-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E`.
pub(crate) fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}
