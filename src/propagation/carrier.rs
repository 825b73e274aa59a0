//! `http::HeaderMap` as a carrier, and the [`NoOverwrite`] injector wrapper.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{Extractor, Injector};

impl Extractor for HeaderMap {
    fn get_each(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for value in self.get_all(name) {
            f(value.as_bytes());
        }
    }

    fn get_each_header(&self, name: &HeaderName, f: &mut dyn FnMut(&[u8])) {
        for value in self.get_all(name) {
            f(value.as_bytes());
        }
    }

    fn keys(&self) -> Vec<&str> {
        HeaderMap::keys(self).map(HeaderName::as_str).collect()
    }

    fn header_map(&self) -> Option<&HeaderMap> {
        Some(self)
    }
}

impl Injector for HeaderMap {
    fn contains(&self, name: &str) -> bool {
        self.contains_key(name)
    }

    fn contains_header(&self, name: &HeaderName) -> bool {
        self.contains_key(name)
    }

    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.insert(name, value);
    }

    fn remove(&mut self, name: &str) {
        HeaderMap::remove(self, name);
    }
}

/// An injector that never replaces nor removes a header already present.
///
/// The client layer wraps outgoing headers in it so that a header the caller set on
/// purpose wins over the propagator's. The rule is per header: a caller who sets
/// `traceparent` but no `tracestate` still gets the propagator's `tracestate`.
pub struct NoOverwrite<'a>(pub &'a mut dyn Injector);

impl<'a> NoOverwrite<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a mut dyn Injector) -> Self {
        NoOverwrite(inner)
    }
}

impl std::fmt::Debug for NoOverwrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoOverwrite").finish_non_exhaustive()
    }
}

impl Injector for NoOverwrite<'_> {
    fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    fn contains_header(&self, name: &HeaderName) -> bool {
        self.0.contains_header(name)
    }

    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        if !self.0.contains_header(&name) {
            self.0.set(name, value);
        }
    }

    fn remove(&mut self, _name: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_map_extractor_yields_every_value_in_order() {
        let mut map = HeaderMap::new();
        map.append("tracestate", HeaderValue::from_static("a=1"));
        map.append("tracestate", HeaderValue::from_static("b=2"));
        map.append("other", HeaderValue::from_static("x"));
        let mut seen = Vec::new();
        map.get_each("tracestate", &mut |v| seen.push(v.to_vec()));
        assert_eq!(seen, vec![b"a=1".to_vec(), b"b=2".to_vec()]);
        let mut none = 0;
        map.get_each("missing", &mut |_| none += 1);
        assert_eq!(none, 0);
        let mut keys = Extractor::keys(&map);
        keys.sort_unstable();
        assert_eq!(keys, ["other", "tracestate"]);
    }

    #[test]
    fn header_map_extractor_passes_non_utf8_bytes_through() {
        let mut map = HeaderMap::new();
        map.insert("baggage", HeaderValue::from_bytes(b"k=\xff").unwrap());
        let mut seen = Vec::new();
        map.get_each("baggage", &mut |v| seen.push(v.to_vec()));
        assert_eq!(seen, vec![b"k=\xff".to_vec()]);
    }

    #[test]
    fn header_map_injector_replaces_and_removes() {
        let mut map = HeaderMap::new();
        map.append("tracestate", HeaderValue::from_static("old=1"));
        map.append("tracestate", HeaderValue::from_static("old=2"));
        Injector::set(
            &mut map,
            HeaderName::from_static("tracestate"),
            HeaderValue::from_static("new=1"),
        );
        assert_eq!(map.get_all("tracestate").iter().count(), 1);
        assert_eq!(map["tracestate"], "new=1");
        assert!(Injector::contains(&map, "tracestate"));
        Injector::remove(&mut map, "tracestate");
        assert!(!Injector::contains(&map, "tracestate"));
    }

    #[test]
    fn no_overwrite_keeps_headers_the_caller_set() {
        let mut map = HeaderMap::new();
        map.insert("traceparent", HeaderValue::from_static("caller"));
        let mut guarded = NoOverwrite::new(&mut map);
        guarded.set(
            HeaderName::from_static("traceparent"),
            HeaderValue::from_static("ours"),
        );
        guarded.set(
            HeaderName::from_static("tracestate"),
            HeaderValue::from_static("a=1"),
        );
        guarded.remove("traceparent");
        assert!(guarded.contains("tracestate"));
        assert_eq!(map["traceparent"], "caller");
        assert_eq!(map["tracestate"], "a=1");
    }
}
