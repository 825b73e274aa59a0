//! The HTTP methods the layers and metrics know by name.
//!
//! The HTTP semantic conventions record a method they do not know as `_OTHER` (span name
//! `HTTP {route}`), so that callers cannot make up span names and metric series, and they ask
//! that users can replace the list: `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`, read by
//! [`EnvConfig`](crate::env::EnvConfig), or [`KnownMethods::install`] in code.
//!
//! The list is one per process: span names are interned per route and method, and metric
//! series are kept per method, for the life of the process. It is fixed by the first request a
//! layer sees (as the standard list, if nothing was installed before).

use std::fmt;
use std::sync::OnceLock;

use http::Method;

/// The most methods a list may hold. Each one is a span name per route and a metric series
/// per route, so the list stays small; the standard list has nine.
pub const MAX_KNOWN_METHODS: usize = 32;

/// A list of known HTTP methods, replacing the standard one (the methods of RFC 9110 and
/// `PATCH`).
///
/// Methods are case-sensitive, as the conventions say: `get` is not `GET`.
///
/// ```
/// use tracewire::config::KnownMethods;
///
/// // WebDAV's methods besides the standard ones: `PROPFIND /files/{*path}` instead of
/// // `HTTP /files/{*path}`.
/// let methods = KnownMethods::parse(
///     "GET,HEAD,POST,PUT,DELETE,CONNECT,OPTIONS,TRACE,PATCH,PROPFIND,MKCOL,COPY,MOVE",
/// )?;
/// assert_eq!(methods.methods().len(), 13);
/// methods.install()?;
/// # Ok::<(), tracewire::config::KnownMethodsError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownMethods {
    methods: Vec<Method>,
}

impl KnownMethods {
    /// The standard list: `GET`, `POST`, `PUT`, `DELETE`, `HEAD`, `OPTIONS`, `PATCH`,
    /// `CONNECT`, `TRACE`.
    pub fn standard() -> Self {
        KnownMethods {
            methods: STANDARD.to_vec(),
        }
    }

    /// The methods of `methods`, in order, without repeats.
    pub fn new<I>(methods: I) -> Result<Self, KnownMethodsError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut list: Vec<Method> = Vec::new();
        for method in methods {
            let method = method.as_ref();
            let parsed = Method::from_bytes(method.as_bytes())
                .map_err(|_| KnownMethodsError::Invalid(shorten(method)))?;
            if !list.contains(&parsed) {
                if list.len() == MAX_KNOWN_METHODS {
                    return Err(KnownMethodsError::TooMany);
                }
                list.push(parsed);
            }
        }
        if list.is_empty() {
            return Err(KnownMethodsError::Empty);
        }
        Ok(KnownMethods { methods: list })
    }

    /// A comma-separated list, as `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` holds it. Space
    /// around a method is ignored.
    pub fn parse(list: &str) -> Result<Self, KnownMethodsError> {
        Self::new(list.split(',').map(str::trim).filter(|m| !m.is_empty()))
    }

    /// The methods, in order.
    pub fn methods(&self) -> &[Method] {
        &self.methods
    }

    /// Makes this the process's list. It must come before the first request through a
    /// layer, which fixes the list; installing the list already fixed succeeds.
    pub fn install(self) -> Result<(), KnownMethodsError> {
        let mut table = Some(Table::new(self));
        let fixed = TABLE.get_or_init(|| table.take().expect("initialised once"));
        match table {
            Some(refused) if refused.methods() != fixed.methods() => {
                Err(KnownMethodsError::AlreadyFixed)
            }
            _ => Ok(()),
        }
    }
}

impl Default for KnownMethods {
    fn default() -> Self {
        Self::standard()
    }
}

/// Why a list of known methods was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KnownMethodsError {
    /// Not an HTTP method (a token of RFC 9110); the text is cut to 64 bytes.
    Invalid(String),
    /// More than [`MAX_KNOWN_METHODS`] methods.
    TooMany,
    /// No method at all.
    Empty,
    /// A request already fixed another list (see [`KnownMethods::install`]).
    AlreadyFixed,
}

impl fmt::Display for KnownMethodsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnownMethodsError::Invalid(method) => write!(f, "{method:?} is not an HTTP method"),
            KnownMethodsError::TooMany => {
                write!(f, "more than {MAX_KNOWN_METHODS} known HTTP methods")
            }
            KnownMethodsError::Empty => f.write_str("no known HTTP method"),
            KnownMethodsError::AlreadyFixed => {
                f.write_str("the known HTTP methods were fixed by an earlier request")
            }
        }
    }
}

impl std::error::Error for KnownMethodsError {}

fn shorten(text: &str) -> String {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// In the order of [`standard_index`].
const STANDARD: [Method; 9] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
    Method::PATCH,
    Method::CONNECT,
    Method::TRACE,
];

/// [`STANDARD`]'s names, then `_OTHER`; and as span names use them, `HTTP` for the others:
/// looked up by index on every request, where a method's `as_str` is a match.
const STANDARD_VALUES: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "_OTHER",
];
const STANDARD_SPAN_METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE", "HTTP",
];

/// The index of `method` in [`STANDARD`], else 9: a match, not a search.
#[inline]
fn standard_index(method: &Method) -> u8 {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::HEAD => 4,
        Method::OPTIONS => 5,
        Method::PATCH => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

static TABLE: OnceLock<Table> = OnceLock::new();

/// The process's list, fixed now if it was not yet.
#[inline]
pub(crate) fn table() -> &'static Table {
    TABLE.get_or_init(|| Table::new(KnownMethods::standard()))
}

/// A method list as the layers use it: a method by index, the last index (`len() - 1`)
/// meaning every other method.
pub(crate) struct Table {
    /// `None` for the standard list, which [`standard_index`] matches without a search.
    custom: Option<Box<[Method]>>,
}

impl Table {
    fn new(known: KnownMethods) -> Self {
        let standard = known.methods.len() == STANDARD.len()
            && known.methods.iter().all(|m| STANDARD.contains(m));
        Table {
            custom: (!standard).then(|| known.methods.into_boxed_slice()),
        }
    }

    #[inline]
    fn methods(&self) -> &[Method] {
        self.custom.as_deref().unwrap_or(&STANDARD)
    }

    /// The number of indexes: the known methods, and one for the others.
    pub(crate) fn len(&self) -> usize {
        self.methods().len() + 1
    }

    /// The index of `method`: its place in the list, else `len() - 1`.
    #[inline]
    pub(crate) fn index(&self, method: &Method) -> u8 {
        match &self.custom {
            None => standard_index(method),
            Some(list) => {
                let found = list.iter().position(|m| m == method).unwrap_or(list.len());
                // At most `MAX_KNOWN_METHODS`.
                found as u8
            }
        }
    }

    /// `http.request.method` of the method at `index`: its name, or `_OTHER`.
    #[inline]
    pub(crate) fn value(&'static self, index: u8) -> &'static str {
        match &self.custom {
            None => STANDARD_VALUES[usize::from(index)],
            Some(list) => list
                .get(usize::from(index))
                .map_or("_OTHER", Method::as_str),
        }
    }

    /// The method of a span name (`{method} {route}`) at `index`: its name, or `HTTP`.
    #[inline]
    pub(crate) fn span_method(&'static self, index: u8) -> &'static str {
        match &self.custom {
            None => STANDARD_SPAN_METHODS[usize::from(index)],
            Some(list) => list.get(usize::from(index)).map_or("HTTP", Method::as_str),
        }
    }

    /// Whether `index` is that of a known method.
    #[inline]
    pub(crate) fn is_known(&self, index: u8) -> bool {
        usize::from(index) < self.methods().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_list_is_matched_in_its_order() {
        let table = Table::new(KnownMethods::standard());
        assert!(table.custom.is_none());
        for (i, method) in STANDARD.iter().enumerate() {
            assert_eq!(usize::from(table.index(method)), i);
            assert_eq!(table.value_of(i as u8), method.as_str());
        }
        assert_eq!(table.index(&Method::from_bytes(b"QUERY").unwrap()), 9);
        assert_eq!(table.value_of(9), "_OTHER");
        // The tables the standard list is read from agree with it.
        for (i, method) in STANDARD.iter().enumerate() {
            assert_eq!(STANDARD_VALUES[i], method.as_str());
            assert_eq!(STANDARD_SPAN_METHODS[i], method.as_str());
        }
        assert_eq!(STANDARD_SPAN_METHODS[9], "HTTP");
        // The same methods in another order are the standard list.
        let mut reordered = STANDARD.map(|m| m.as_str().to_owned());
        reordered.reverse();
        assert!(Table::new(KnownMethods::new(reordered).unwrap())
            .custom
            .is_none());
    }

    #[test]
    fn a_custom_list_replaces_the_standard_one() {
        let table = Table::new(KnownMethods::parse(" PROPFIND , GET,,GET ").unwrap());
        assert_eq!(table.len(), 3);
        let propfind = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(table.index(&propfind), 0);
        assert_eq!(table.index(&Method::GET), 1);
        // A full override: POST is no longer known, and methods are case-sensitive.
        assert_eq!(table.index(&Method::POST), 2);
        assert_eq!(table.index(&Method::from_bytes(b"get").unwrap()), 2);
        assert_eq!(table.value_of(0), "PROPFIND");
        assert_eq!(table.value_of(2), "_OTHER");
        assert!(!table.is_known(2));
    }

    #[test]
    fn bad_lists_are_refused() {
        assert_eq!(
            KnownMethods::parse("GET,BAD METHOD"),
            Err(KnownMethodsError::Invalid("BAD METHOD".into()))
        );
        assert_eq!(KnownMethods::parse(" , "), Err(KnownMethodsError::Empty));
        let many: Vec<String> = (0..=MAX_KNOWN_METHODS).map(|i| format!("M{i}")).collect();
        assert_eq!(KnownMethods::new(&many), Err(KnownMethodsError::TooMany));
        assert!(KnownMethods::new(&many[..MAX_KNOWN_METHODS]).is_ok());
        let long = "é".repeat(100);
        match KnownMethods::parse(&long) {
            Err(KnownMethodsError::Invalid(text)) => assert!(text.len() <= 64),
            other => panic!("{other:?}"),
        }
    }

    impl Table {
        fn value_of(&self, index: u8) -> &str {
            self.methods()
                .get(usize::from(index))
                .map_or("_OTHER", Method::as_str)
        }
    }
}
