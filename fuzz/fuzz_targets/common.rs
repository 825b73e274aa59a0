//! Helpers shared by the targets (included with `#[path]`, not a crate of its own).
#![allow(dead_code)]

use http::{HeaderMap, HeaderName, HeaderValue};

/// `data` cut at `\n` into header values; values `http` refuses are left out.
pub fn values(data: &[u8]) -> Vec<HeaderValue> {
    data.split(|&b| b == b'\n')
        .filter_map(|v| HeaderValue::from_bytes(v).ok())
        .collect()
}

/// A header map with every value of `values` appended under `name`.
pub fn headers(name: &'static str, values: &[HeaderValue]) -> HeaderMap {
    let mut map = HeaderMap::new();
    let name = HeaderName::from_static(name);
    for value in values {
        map.append(name.clone(), value.clone());
    }
    map
}
