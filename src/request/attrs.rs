//! Request-side attribute values shared by the server and client layers: method, protocol
//! version, host and port, and URLs with secrets redacted.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{OnceLock, RwLock};

use http::{HeaderMap, HeaderValue, Method, Uri, Version};

use super::methods;
use crate::config::{QueryRedaction, REDACTED};
use crate::semconv;

/// `http.request.method`: the method when it is a known one (see [`methods`]), else `_OTHER`
/// (and `false`, so the caller records `http.request.method_original`).
pub(crate) fn method(method: &Method) -> (&'static str, bool) {
    let table = methods::table();
    let index = table.index(method);
    (table.value(index), table.is_known(index))
}

/// The method as span names use it: `HTTP` for a method that is not known.
pub(crate) fn span_method(method: &Method) -> &'static str {
    let table = methods::table();
    table.span_method(table.index(method))
}

/// Span names (`{method} {route}`) and `http.route` values, built once per route template
/// instead of once per request. Route templates come from the application (axum's
/// `MatchedPath`), so they are few; the table still stops growing at `MAX_ROUTES`, after which
/// names are built per request. Entries live for the rest of the process.
const MAX_ROUTES: usize = 4096;

struct RouteNames {
    route: &'static str,
    /// By the index of [`methods::table`].
    names: Box<[OnceLock<&'static str>]>,
}

/// Looked up only when a service meets a route other than its first (see [`FirstRoute`]), so
/// std's hasher is fine.
type RouteTable = HashMap<&'static str, &'static RouteNames>;

fn routes() -> &'static RwLock<RouteTable> {
    static ROUTES: OnceLock<RwLock<RouteTable>> = OnceLock::new();
    ROUTES.get_or_init(|| RwLock::new(HashMap::default()))
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The names of `route`, from the table (added when there is room).
fn route_names(route: &str) -> Option<&'static RouteNames> {
    let found = routes()
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(route)
        .copied();
    if found.is_some() {
        return found;
    }
    let mut table = routes().write().unwrap_or_else(|e| e.into_inner());
    if let Some(names) = table.get(route) {
        return Some(*names);
    }
    if table.len() >= MAX_ROUTES {
        return None;
    }
    let route: &'static str = leak(route.to_owned());
    let names: &'static RouteNames = Box::leak(Box::new(RouteNames {
        route,
        names: (0..methods::table().len())
            .map(|_| OnceLock::new())
            .collect(),
    }));
    table.insert(route, names);
    Some(names)
}

impl RouteNames {
    /// The span name for the method at `index` of [`methods::table`], and the route.
    fn name(&'static self, index: u8) -> (&'static str, &'static str) {
        let name = self.names[usize::from(index)].get_or_init(|| {
            let method = methods::table().span_method(index);
            leak(format!("{method} {}", self.route))
        });
        (name, self.route)
    }
}

/// The span name `{method} {route}` and the route, as `'static` strings when the table
/// holds (or has room for) the route.
#[cfg(test)]
fn route_name(method: &Method, route: &str) -> Option<(&'static str, &'static str)> {
    Some(route_names(route)?.name(methods::table().index(method)))
}

/// The first route a server layer's service saw, by the address and length of axum's route
/// string. axum gives each route its own layered service, which then sees the same template
/// on every request: a comparison instead of a table lookup, and nothing written after the
/// first request, so cores share it without contention.
#[derive(Default)]
pub(crate) struct FirstRoute(OnceLock<(usize, usize, &'static RouteNames)>);

impl FirstRoute {
    /// The span name `{method} {route}` and the route, as `'static` strings (see
    /// [`MAX_ROUTES`] for when they are not).
    pub(crate) fn route_name(
        &self,
        method: &Method,
        route: &str,
    ) -> Option<(&'static str, &'static str)> {
        let index = methods::table().index(method);
        let key = (route.as_ptr() as usize, route.len());
        if let Some((ptr, len, names)) = self.0.get() {
            // The text is compared too: another string may live where a freed one did.
            if (*ptr, *len) == key && names.route == route {
                return Some(names.name(index));
            }
        }
        let names = route_names(route)?;
        let _ = self.0.set((key.0, key.1, names));
        Some(names.name(index))
    }
}

/// `network.protocol.version`.
pub(crate) fn version(version: Version) -> &'static str {
    semconv::PROTOCOL_VERSIONS[usize::from(semconv::protocol_version_index(version))]
}

/// `url.scheme`: the URI's when it has one (absolute form, HTTP/2), else `http`.
pub(crate) fn scheme(uri: &Uri) -> &'static str {
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => "https",
        Some(s) if s.eq_ignore_ascii_case("grpcs") => "https",
        _ => "http",
    }
}

/// Lives with the facts, which split a `Host` header on the reporter's thread.
pub(crate) use crate::record::facts::split_host_port;

/// The default port of a scheme.
pub(crate) fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// Host and port of a server: the URI's authority (absolute form, HTTP/2 `:authority`), else
/// the `Host` header. The port is `None` when not given.
pub(crate) fn server_host_port<'a>(
    uri: &'a Uri,
    headers: &'a HeaderMap,
) -> Option<(&'a str, Option<u16>)> {
    server_host_port_of(uri, headers.get(http::header::HOST))
}

/// [`server_host_port`] with the `Host` header already looked up.
pub(crate) fn server_host_port_of<'a>(
    uri: &'a Uri,
    host: Option<&'a HeaderValue>,
) -> Option<(&'a str, Option<u16>)> {
    if let Some(authority) = uri.authority() {
        return Some((trim_brackets(authority.host()), authority.port_u16()));
    }
    split_host_port(host?.to_str().ok()?)
}

/// The standard request headers a server span reads, each the first of its name, as
/// `HeaderMap::get` finds it.
#[derive(Clone, Copy, Default)]
pub(crate) struct SpanHeaders<'h> {
    pub(crate) content_type: Option<&'h HeaderValue>,
    pub(crate) host: Option<&'h HeaderValue>,
    pub(crate) user_agent: Option<&'h HeaderValue>,
}

impl<'h> SpanHeaders<'h> {
    /// Requests with up to this many header values are read in one pass.
    const SCAN_UP_TO: usize = 8;

    /// Finds the headers in one pass over a small map: a lookup hashes the name and probes
    /// the table, and three of them cost more than comparing each of a handful of names
    /// (standard names compare as one byte). Larger maps are looked up.
    pub(crate) fn of(headers: &'h HeaderMap) -> Self {
        use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
        if headers.len() > Self::SCAN_UP_TO {
            return SpanHeaders {
                content_type: headers.get(CONTENT_TYPE),
                host: headers.get(HOST),
                user_agent: headers.get(USER_AGENT),
            };
        }
        let mut found = SpanHeaders::default();
        for (name, value) in headers {
            let slot = if *name == CONTENT_TYPE {
                &mut found.content_type
            } else if *name == HOST {
                &mut found.host
            } else if *name == USER_AGENT {
                &mut found.user_agent
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        found
    }
}

fn trim_brackets(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// A query string with the values of `redacted` parameters replaced by `REDACTED`.
pub(crate) fn redact_query<'q>(query: &'q str, redacted: &QueryRedaction) -> Cow<'q, str> {
    let key_of = |pair: &'q str| pair.split_once('=').map(|(k, _)| k);
    if !query
        .split('&')
        .filter_map(key_of)
        .any(|k| redacted.covers(k))
    {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match key_of(pair) {
            Some(key) if redacted.covers(key) => {
                out.push_str(key);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    Cow::Owned(out)
}

/// Free text (an error message) with the secrets of any URL in it redacted by the same policy
/// as `url.full`: user info becomes `REDACTED:REDACTED`, redacted query values `REDACTED`.
///
/// Error messages quote URLs in their own ways (reqwest's `for url (…)`, a connector's
/// `http://…: connection refused`, a bare `/path?query`), so the text is read as words that
/// end at white space or at a character that the `url` crate escapes in every part of an
/// `http` URL. Brackets and backticks do not end a word: a query may hold them unescaped
/// (`?name=(1)&sig=…`), so a word wrapped in a pair of them loses only that pair. A closing
/// bracket left at the end of a query value is redacted with the value: too much, never
/// too little.
pub(crate) fn redact_text<'t>(text: &'t str, redacted: &QueryRedaction) -> Cow<'t, str> {
    fn ends_word(c: char) -> bool {
        c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>')
    }
    fn unwrapped(word: &str) -> &str {
        for (open, close) in [("(", ")"), ("{", "}"), ("`", "`")] {
            if let Some(inner) = word.strip_prefix(open).and_then(|w| w.strip_suffix(close)) {
                return inner;
            }
        }
        word
    }
    let mut out = String::new();
    let mut copied = 0;
    for word in text.split(ends_word).map(unwrapped) {
        // Where the word starts in `text` (words are subslices of it).
        let at = word.as_ptr() as usize - text.as_ptr() as usize;
        let mut replace = |from: usize, to: usize, with: &str| {
            out.push_str(&text[copied..at + from]);
            out.push_str(with);
            copied = at + to;
        };
        let mut after_authority = 0;
        if let Some(scheme_end) = word.find("://") {
            let authority = scheme_end + 3;
            let authority_end = word[authority..]
                .find(['/', '?', '#'])
                .map_or(word.len(), |i| authority + i);
            if let Some(user_end) = word[authority..authority_end].rfind('@') {
                replace(authority, authority + user_end, "REDACTED:REDACTED");
            }
            after_authority = authority_end;
        }
        if let Some(q) = word[after_authority..].find('?') {
            let query = after_authority + q + 1;
            let query_end = word[query..].find('#').map_or(word.len(), |i| query + i);
            if let Cow::Owned(clean) = redact_query(&word[query..query_end], redacted) {
                replace(query, query_end, &clean);
            }
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// `url.full` as the semantic conventions want it: credentials replaced by
/// `REDACTED:REDACTED`, redacted query values replaced, no fragment.
pub(crate) struct UrlFull<'a> {
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) redacted_query_params: &'a QueryRedaction,
}

impl<'a> UrlFull<'a> {
    /// The URL as a string, sized exactly and built without the formatting machinery.
    pub(crate) fn render(&self) -> String {
        let authority = self.uri.authority().map(|a| authority_parts(a.as_str()));
        let query = self.query();
        self.parts(authority.as_ref(), query.as_deref()).concat()
    }

    /// The query, its redacted parameters' values replaced.
    pub(crate) fn query(&self) -> Option<Cow<'a, str>> {
        let query = self.uri.query()?;
        Some(redact_query(query, self.redacted_query_params))
    }

    /// The pieces of the URL, in order (some empty): `authority` is the URI's, read with
    /// [`authority_parts`], and `query` is [`Self::query`].
    pub(crate) fn parts<'p>(
        &self,
        authority: Option<&AuthorityParts<'p>>,
        query: Option<&'p str>,
    ) -> [&'p str; 9]
    where
        'a: 'p,
    {
        let scheme = self.uri.scheme_str().unwrap_or("http");
        let (userinfo, host, colon, port) = match authority {
            Some(a) => (
                if a.userinfo { "REDACTED:REDACTED@" } else { "" },
                a.host,
                if a.port.is_some() { ":" } else { "" },
                a.port.map_or("", |(text, _)| text),
            ),
            None => (
                "",
                self.headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or(""),
                "",
                "",
            ),
        };
        let (mark, query) = match query {
            Some(query) => ("?", query),
            None => ("", ""),
        };
        [
            scheme,
            "://",
            userinfo,
            host,
            colon,
            port,
            self.uri.path(),
            mark,
            query,
        ]
    }
}

/// What `url.full` and `server.*` take from a URI's authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AuthorityParts<'a> {
    /// It has user info (which `url.full` redacts).
    pub(crate) userinfo: bool,
    /// The host, as [`http::uri::Authority::host`] gives it (IPv6 literals in brackets).
    pub(crate) host: &'a str,
    /// The port, as text and as a number, as [`http::uri::Authority::port`] gives it.
    pub(crate) port: Option<(&'a str, u16)>,
}

/// The parts of an authority (`Authority::as_str`), read in one pass over its bytes instead
/// of the three that `contains('@')`, `Authority::host` and `Authority::port` take.
pub(crate) fn authority_parts(authority: &str) -> AuthorityParts<'_> {
    let mut at = None;
    let mut last_colon = None;
    for (i, byte) in authority.bytes().enumerate() {
        match byte {
            b'@' => at = Some(i),
            b':' => last_colon = Some(i),
            _ => {}
        }
    }
    let host_port = &authority[at.map_or(0, |at| at + 1)..];
    let host = if host_port.starts_with('[') {
        match host_port.find(']') {
            Some(end) => &host_port[..=end],
            None => host_port,
        }
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    let port = last_colon.and_then(|i| {
        let text = &authority[i + 1..];
        Some((text, text.parse().ok()?))
    });
    AuthorityParts {
        userinfo: at.is_some(),
        host,
        port,
    }
}

/// [`server_host_port`] with the URI's authority already read: the host without brackets.
pub(crate) fn server_host_port_with<'a>(
    authority: Option<&AuthorityParts<'a>>,
    headers: &'a HeaderMap,
) -> Option<(&'a str, Option<u16>)> {
    match authority {
        Some(a) => Some((trim_brackets(a.host), a.port.map(|(_, port)| port))),
        None => split_host_port(headers.get(http::header::HOST)?.to_str().ok()?),
    }
}

impl fmt::Display for UrlFull<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_headers_are_the_first_values_get_finds_in_small_and_large_maps() {
        use http::header::{HeaderName, CONTENT_TYPE, HOST, USER_AGENT};
        let names = [CONTENT_TYPE, HOST, USER_AGENT];
        // From none of them to all of them repeated, among up to 20 other headers, so both
        // the one-pass read and the lookups run.
        for others in [0usize, 1, 5, 8, 20] {
            for present in 0..8u8 {
                let mut headers = HeaderMap::new();
                for i in 0..others {
                    let name = HeaderName::try_from(format!("x-other-{i}")).unwrap();
                    headers.append(name, HeaderValue::from_static("v"));
                }
                for (bit, name) in names.iter().enumerate() {
                    if present & (1 << bit) != 0 {
                        headers.append(name.clone(), HeaderValue::from_static("first"));
                        headers.append(name.clone(), HeaderValue::from_static("second"));
                    }
                }
                headers.append(http::header::ACCEPT, HeaderValue::from_static("*/*"));
                let found = SpanHeaders::of(&headers);
                let case = format!("{others} others, present {present:#05b}");
                assert_eq!(found.content_type, headers.get(CONTENT_TYPE), "{case}");
                assert_eq!(found.host, headers.get(HOST), "{case}");
                assert_eq!(found.user_agent, headers.get(USER_AGENT), "{case}");
            }
        }
    }

    fn params() -> QueryRedaction {
        QueryRedaction::default().with(["token".into()])
    }

    #[test]
    fn route_names_are_built_once() {
        let (name, route) = route_name(&Method::GET, "/interned/{id}").unwrap();
        assert_eq!((name, route), ("GET /interned/{id}", "/interned/{id}"));
        let (again, _) = route_name(&Method::GET, "/interned/{id}").unwrap();
        assert!(std::ptr::eq(name, again));
        assert_eq!(
            route_name(&Method::POST, "/interned/{id}").unwrap().0,
            "POST /interned/{id}"
        );
        assert_eq!(
            route_name(&Method::from_bytes(b"PURGE").unwrap(), "/interned/{id}")
                .unwrap()
                .0,
            "HTTP /interned/{id}"
        );
    }

    #[test]
    fn methods_outside_the_standard_set_are_other() {
        assert_eq!(method(&Method::GET), ("GET", true));
        let custom = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(method(&custom), ("_OTHER", false));
        assert_eq!(span_method(&custom), "HTTP");
    }

    #[test]
    fn host_and_port_parse_ipv4_ipv6_and_names() {
        assert_eq!(
            split_host_port("example.com:8080"),
            Some(("example.com", Some(8080)))
        );
        assert_eq!(split_host_port("example.com"), Some(("example.com", None)));
        assert_eq!(split_host_port("[::1]:9000"), Some(("::1", Some(9000))));
        assert_eq!(split_host_port("[::1]"), Some(("::1", None)));
        assert_eq!(split_host_port("::1"), Some(("::1", None)));
        assert_eq!(split_host_port("h:notaport"), None);
        assert_eq!(split_host_port("[::1"), None);
        assert_eq!(split_host_port(""), None);
    }

    #[test]
    fn query_values_are_redacted_by_name() {
        assert_eq!(redact_query("a=1&b=2", &params()), "a=1&b=2");
        assert_eq!(
            redact_query("a=1&sig=abc&token=x&sig", &params()),
            "a=1&sig=REDACTED&token=REDACTED&sig"
        );
    }

    #[test]
    fn default_redaction_covers_the_conventions_and_sigv4_after_decoding() {
        let defaults = QueryRedaction::default();
        let query = "AWSAccessKeyId=a&Signature=b&sig=c&X-Goog-Signature=d&X-Amz-Signature=e\
                     &X-Amz-Credential=f&X-Amz-Security-Token=g&x-amz-signature=h\
                     &X%2DAmz%2DSignature=i&access_token=k&client_secret=l&API_KEY=m&keep=j";
        assert_eq!(
            redact_query(query, &defaults),
            "AWSAccessKeyId=REDACTED&Signature=REDACTED&sig=REDACTED&X-Goog-Signature=REDACTED\
             &X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED\
             &x-amz-signature=REDACTED&X%2DAmz%2DSignature=REDACTED&access_token=REDACTED\
             &client_secret=REDACTED&API_KEY=REDACTED&keep=j"
        );
        // Added names follow the same rule.
        let more = defaults.with(["password".into()]);
        assert_eq!(redact_query("pass%77ord=1", &more), "pass%77ord=REDACTED");
        assert_eq!(redact_query("password=1", &defaults), "password=1");
    }

    #[test]
    fn urls_inside_text_lose_their_secrets() {
        let p = params();
        let reqwest = "error sending request for url \
                       (http://127.0.0.1:1/upload?X-Amz-Signature=deadbeef&part=1)";
        assert_eq!(
            redact_text(reqwest, &p),
            "error sending request for url \
             (http://127.0.0.1:1/upload?X-Amz-Signature=REDACTED&part=1)"
        );
        assert_eq!(
            redact_text(
                "connect to https://ana:pw@h.example/x?token=t#frag failed",
                &p
            ),
            "connect to https://REDACTED:REDACTED@h.example/x?token=REDACTED#frag failed"
        );
        assert_eq!(
            redact_text("a: http://h/?sig=1 b: ftp://u@h/?sig=2", &p),
            "a: http://h/?sig=REDACTED b: ftp://REDACTED:REDACTED@h/?sig=REDACTED"
        );
        // Nothing to redact: the text comes back as it was, without a copy.
        for plain in [
            "",
            "no url here",
            "://",
            "x://",
            "http://h/?",
            "http://h/?sig",
            "é://é",
        ] {
            assert!(matches!(redact_text(plain, &p), Cow::Borrowed(t) if t == plain));
        }
        assert_eq!(
            redact_text("é://é@é?sig=1", &p),
            "é://REDACTED:REDACTED@é?sig=REDACTED"
        );
        assert_eq!(
            redact_text("PUT /up?sig=1&a=2: refused", &p),
            "PUT /up?sig=REDACTED&a=2: refused"
        );
        // Brackets and backticks stand unescaped in a query (the `url` crate leaves them).
        for (text, clean) in [
            (
                "for url (http://h/p?q=(x)&sig=s1)",
                "for url (http://h/p?q=(x)&sig=REDACTED)",
            ),
            (
                "url {http://h/p?q={x}&X-Amz-Signature=s2} failed",
                "url {http://h/p?q={x}&X-Amz-Signature=REDACTED} failed",
            ),
            (
                "`http://h/p?q=`x`&Signature=s3`",
                "`http://h/p?q=`x`&Signature=REDACTED`",
            ),
            (
                "see http://h/p?q=(1)&sig=s4)",
                "see http://h/p?q=(1)&sig=REDACTED",
            ),
            ("(http://u:pa(ss@h/)", "(http://REDACTED:REDACTED@h/)"),
        ] {
            assert_eq!(redact_text(text, &p), clean);
        }
    }

    #[test]
    fn authority_parts_read_as_the_http_crate_reads_them() {
        for text in [
            "example.com",
            "example.com:8080",
            "example.com:",
            "user@example.com",
            "user:pw@example.com",
            "user:pw@example.com:443",
            "[::1]",
            "[::1]:8080",
            "u:p@[2001:db8::1]:65535",
            "example.com:65536",
            "127.0.0.1:0",
        ] {
            let Ok(authority) = text.parse::<http::uri::Authority>() else {
                continue;
            };
            let parts = authority_parts(authority.as_str());
            assert_eq!(parts.host, authority.host(), "{text}");
            let port = authority.port();
            let expected = port.as_ref().map(|p| (p.as_str(), p.as_u16()));
            assert_eq!(parts.port, expected, "{text}");
            assert_eq!(parts.userinfo, text.contains('@'), "{text}");
            let uri: Uri = format!("http://{text}/p").parse().unwrap();
            let headers = HeaderMap::new();
            assert_eq!(
                server_host_port_with(Some(&parts), &headers),
                server_host_port(&uri, &headers),
                "{text}"
            );
        }
    }

    #[test]
    fn url_full_strips_credentials_and_secrets() {
        let uri: Uri = "https://user:pw@example.com:8443/pay?token=s3cret&x=1"
            .parse()
            .unwrap();
        let headers = HeaderMap::new();
        let full = UrlFull {
            uri: &uri,
            headers: &headers,
            redacted_query_params: &params(),
        }
        .to_string();
        assert_eq!(
            full,
            "https://REDACTED:REDACTED@example.com:8443/pay?token=REDACTED&x=1"
        );
        assert!(!full.contains("pw") && !full.contains("s3cret"));
    }
}
