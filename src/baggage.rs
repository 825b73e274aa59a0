//! W3C Baggage: application-defined `key=value` pairs that travel with a request.

use std::sync::Arc;

/// One baggage list member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaggageMember {
    /// The key (an RFC 7230 token).
    pub key: String,
    /// The value, percent-decoded.
    pub value: String,
    /// The member's properties (what follows the first `;`), as received.
    pub properties: String,
}

/// Baggage: an ordered set of members, cheap to clone (an `Arc`) and empty without allocating.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Baggage(Option<Arc<[BaggageMember]>>);

impl Baggage {
    /// No members.
    pub const fn new() -> Self {
        Baggage(None)
    }

    /// Baggage from members, as given.
    #[allow(dead_code)] // used by the baggage codec
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
        self.iter().find(|m| m.key == key).map(|m| m.value.as_str())
    }
}
