//! Header rewriting between client and upstream: hop-by-hop headers removed,
//! `X-Forwarded-*` set, `X-Request-Id` kept or generated. Pure functions over a
//! `HeaderMap`, so every rule is unit-tested without sockets.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// How the client reached the proxy, for `X-Forwarded-Proto`. Known per
/// connection, so a request costs no lookup or allocation for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn header_value(self) -> HeaderValue {
        match self {
            Scheme::Http => HeaderValue::from_static("http"),
            Scheme::Https => HeaderValue::from_static("https"),
        }
    }
}

/// Whether the request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"upgrade"))
}

/// A client address as an `X-Forwarded-For` element (computed once per connection).
pub fn client_ip_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&ip.to_canonical().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Headers [`prepare_response`] may add (X-Request-Id).
pub const ADDED_RESPONSE_HEADERS: usize = 1;

/// Rewrites request headers for the upstream and returns the request id to echo
/// to the client. `host` is the original host (Host header or `:authority`).
pub fn prepare_request(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    scheme: Scheme,
    host: Option<&str>,
    upgrade: bool,
) -> HeaderValue {
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    remove_hop_by_hop(headers);
    if let Some(value) = upgrade_value {
        headers.insert(header::UPGRADE, value);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }

    let mut forwarded_for: Option<Vec<u8>> = None;
    for v in headers.get_all(&X_FORWARDED_FOR) {
        let v = v.as_bytes().trim_ascii();
        if !v.is_empty() {
            let list = forwarded_for.get_or_insert_with(Vec::new);
            list.extend_from_slice(v);
            list.extend_from_slice(b", ");
        }
    }
    let forwarded_for = match forwarded_for {
        None => Some(client_ip.clone()),
        Some(mut list) => {
            list.extend_from_slice(client_ip.as_bytes());
            HeaderValue::from_bytes(&list).ok()
        }
    };
    if let Some(v) = forwarded_for {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), scheme.header_value());
    match host.and_then(|h| HeaderValue::from_str(h).ok()) {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST.clone(), h);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }

    match headers.get(&X_REQUEST_ID) {
        Some(id) if valid_request_id(id) => id.clone(),
        _ => {
            let id = new_request_id();
            headers.insert(X_REQUEST_ID.clone(), id.clone());
            id
        }
    }
}

/// [`prepare_request`]'s request id for a head given as its header lines: the
/// first `X-Request-Id` when it is valid and not named in `Connection`, else a
/// new one.
pub fn raw_request_id<'a, I>(lines: I) -> HeaderValue
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let first = lines
        .clone()
        .find(|(n, _)| n.eq_ignore_ascii_case(b"x-request-id"));
    match first {
        Some((name, value)) if !named_in_connection(lines, name) => {
            match HeaderValue::from_bytes(value) {
                Ok(id) if valid_request_id(&id) => id,
                _ => new_request_id(),
            }
        }
        _ => new_request_id(),
    }
}

/// Whether a `Connection` line of `lines` lists `name`.
fn named_in_connection<'a, I>(lines: I, name: &[u8]) -> bool
where
    I: Iterator<Item = (&'a [u8], &'a [u8])>,
{
    lines
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
        .any(|(_, v)| has_token(v, name))
}

/// [`prepare_request`]'s rules applied while writing a request head straight
/// from the client's header lines (the fast path's `h1server.rs`, which builds
/// no `HeaderMap`): hop-by-hop headers and those `Connection` names are left
/// out, any `X-Forwarded-*` and `X-Request-Id` lines are replaced by the
/// proxy's own (earlier `X-Forwarded-For` values kept in front of the client's
/// address), in the client's order otherwise. `host` is the original Host; without one (an
/// HTTP/1.0 client may send none) the request, forwarded as HTTP/1.1, gets `Host: upstream`,
/// the upstream's address, as nginx's `$proxy_host`.
#[allow(clippy::too_many_arguments)]
pub fn encode_request<'a, I>(
    out: &mut Vec<u8>,
    request_line: (&[u8], &[u8]),
    lines: I,
    client_ip: &HeaderValue,
    scheme: Scheme,
    host: Option<&[u8]>,
    upstream: std::net::SocketAddr,
    request_id: &HeaderValue,
) where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let (method, path) = request_line;
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let has_connection = lines
        .clone()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"connection"));
    let dropped = |name: &[u8]| {
        is_hop_by_hop(name) || (has_connection && named_in_connection(lines.clone(), name))
    };
    let mut forwarded_for = false;
    for (name, value) in lines.clone() {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        forwarded_for |= is(b"x-forwarded-for");
        if !(is(b"x-forwarded-for")
            || is(b"x-forwarded-proto")
            || is(b"x-forwarded-host")
            || is(b"x-request-id")
            || dropped(name))
        {
            put_header(out, name, value);
        }
    }
    if host.is_none() {
        put_header(out, b"host", upstream.to_string().as_bytes());
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if forwarded_for {
        for (name, value) in lines.clone() {
            let value = value.trim_ascii();
            if name.eq_ignore_ascii_case(b"x-forwarded-for") && !value.is_empty() && !dropped(name)
            {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
        }
    }
    out.extend_from_slice(client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    put_header(out, b"x-forwarded-proto", scheme.header_value().as_bytes());
    if let Some(host) = host.filter(|h| visible_ascii(h)) {
        put_header(out, b"x-forwarded-host", host);
    }
    put_header(out, b"x-request-id", request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// What `HeaderValue::to_str` accepts: visible ASCII, space and tab.
pub fn visible_ascii(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Writes one `name: value` header line.
pub(crate) fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Rewrites upstream response headers for the client.
pub fn prepare_response(headers: &mut HeaderMap, upgrade: bool, request_id: HeaderValue) {
    if !upgrade {
        remove_hop_by_hop(headers);
    }
    headers.entry(X_REQUEST_ID.clone()).or_insert(request_id);
}

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of a lookup per
    // hop-by-hop header.
    if !headers
        .keys()
        .any(|name| is_hop_by_hop(name.as_str().as_bytes()))
    {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        if let Ok(v) = v.to_str() {
            for token in v.split(',') {
                if let Ok(name) = HeaderName::from_bytes(token.trim().as_bytes()) {
                    named.push(name);
                }
            }
        }
    }
    for name in named {
        headers.remove(name);
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// An incoming request id is kept when it is 1..=128 visible ASCII characters
/// from `[A-Za-z0-9._:-]`.
pub fn valid_request_id(value: &HeaderValue) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// A random 16-hex-digit request id.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u64(..);
    let mut out = [0u8; 16];
    for slot in out.iter_mut().rev() {
        *slot = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Whether a comma-separated header value (`Connection`, …) lists `token`,
/// ignoring case and surrounding whitespace.
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_hop_by_hop_and_sets_forwarded() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("x-forwarded-for", "10.0.0.1"),
            ("accept", "*/*"),
        ]);
        let id = prepare_request(
            &mut h,
            &client_ip_value("192.0.2.7".parse().unwrap()),
            Scheme::Http,
            Some("Example.com"),
            false,
        );
        for gone in [
            "connection",
            "keep-alive",
            "x-secret-hop",
            "te",
            "transfer-encoding",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        assert_eq!(h["accept"], "*/*");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "Example.com");
        assert_eq!(h["x-request-id"], id);
        assert_eq!(id.len(), 16);
    }

    #[test]
    fn forwarded_proto_is_the_client_scheme_not_the_clients_claim() {
        let mut h = map(&[("x-forwarded-proto", "http")]);
        prepare_request(
            &mut h,
            &client_ip_value("127.0.0.1".parse().unwrap()),
            Scheme::Https,
            None,
            false,
        );
        assert_eq!(h["x-forwarded-proto"], "https");
        let mut h = map(&[("x-forwarded-proto", "https")]);
        prepare_request(
            &mut h,
            &client_ip_value("127.0.0.1".parse().unwrap()),
            Scheme::Http,
            None,
            false,
        );
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn keeps_upgrade_headers_for_upgrades() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        prepare_request(
            &mut h,
            &client_ip_value("127.0.0.1".parse().unwrap()),
            Scheme::Http,
            None,
            true,
        );
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key("x-forwarded-host"));
    }

    #[test]
    fn keeps_valid_request_ids_only() {
        let mut h = map(&[("x-request-id", "abc-123")]);
        let id = prepare_request(
            &mut h,
            &client_ip_value("127.0.0.1".parse().unwrap()),
            Scheme::Http,
            None,
            false,
        );
        assert_eq!(id, "abc-123");
        let mut h = map(&[("x-request-id", "bad id with spaces")]);
        let id = prepare_request(
            &mut h,
            &client_ip_value("127.0.0.1".parse().unwrap()),
            Scheme::Http,
            None,
            false,
        );
        assert_ne!(id, "bad id with spaces");
        assert_eq!(h["x-request-id"], id);
        assert!(!valid_request_id(&HeaderValue::from_static("")));
    }

    /// The raw encoder's head, parsed back: (request line, headers in order).
    fn encode_raw(
        lines: &[(&str, &str)],
        scheme: Scheme,
        host: Option<&str>,
        id: &str,
    ) -> (String, Vec<(String, String)>) {
        let mut out = Vec::new();
        encode_request(
            &mut out,
            (b"GET", b"/p?q"),
            lines.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &client_ip_value("192.0.2.7".parse().unwrap()),
            scheme,
            host.map(str::as_bytes),
            "127.0.0.1:9".parse().unwrap(),
            &HeaderValue::from_str(id).unwrap(),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n\r\n"), "{text:?}");
        let mut it = text.trim_end().split("\r\n");
        let first = it.next().unwrap().to_owned();
        let headers = it
            .map(|l| {
                let (n, v) = l
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("{l:?} in {text:?}"));
                (n.to_owned(), v.to_owned())
            })
            .collect();
        (first, headers)
    }

    #[test]
    fn raw_encoding_applies_the_same_rules_as_the_header_map() {
        let cases: &[&[(&str, &str)]] = &[
            &[("Host", "Example.com"), ("Accept", "*/*")],
            &[
                ("Host", "a"),
                ("Connection", "keep-alive, X-Secret-Hop"),
                ("keep-alive", "timeout=5"),
                ("x-secret-hop", "1"),
                ("TE", "trailers"),
                ("X-Forwarded-For", "10.0.0.1"),
                ("x-forwarded-for", " 10.0.0.2 "),
                ("x-forwarded-for", ""),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "evil"),
                ("accept", "*/*"),
            ],
            &[
                ("connection", "x-forwarded-for"),
                ("x-forwarded-for", "1.2.3.4"),
            ],
            &[("x-request-id", "kept-1"), ("x-request-id", "second")],
            &[("x-request-id", "bad id"), ("A", "1"), ("a", "2")],
            &[("Connection", "X-Request-Id"), ("x-request-id", "dropped")],
        ];
        for &lines in cases {
            for scheme in [Scheme::Http, Scheme::Https] {
                let mut h = map(lines);
                let host = lines
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("host"))
                    .map(|(_, v)| *v);
                let id = prepare_request(
                    &mut h,
                    &client_ip_value("192.0.2.7".parse().unwrap()),
                    scheme,
                    host,
                    false,
                );
                let raw_id =
                    raw_request_id(lines.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
                let kept = |id: &HeaderValue| id.len() != 16 || lines.iter().any(|(_, v)| v == id);
                assert_eq!(kept(&raw_id), kept(&id), "{lines:?}: {raw_id:?} vs {id:?}");
                if kept(&id) {
                    assert_eq!(raw_id, id);
                }
                let (first, raw) = encode_raw(lines, scheme, host, id.to_str().unwrap());
                assert_eq!(first, "GET /p?q HTTP/1.1");
                // The same set of (lower-cased name, value) pairs, each name's
                // values in the same order.
                let mut want: Vec<(String, String)> = h
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                    .collect();
                let mut got: Vec<(String, String)> = raw
                    .iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                    .collect();
                if host.is_none() {
                    // Without a Host the raw head names the upstream (the hyper path adds
                    // the same in `select`, after `prepare_request`).
                    want.push(("host".into(), "127.0.0.1:9".into()));
                }
                if lines.iter().filter(|(n, _)| *n == "x-request-id").count() > 1 {
                    // The map keeps every incoming id line; the raw head sends the one it uses.
                    want.retain(|(n, v)| n != "x-request-id" || *v == id.to_str().unwrap());
                }
                want.sort_by(|a, b| a.0.cmp(&b.0));
                got.sort_by(|a, b| a.0.cmp(&b.0));
                assert_eq!(got, want, "{lines:?} over {scheme:?}");
            }
        }
    }

    #[test]
    fn raw_encoding_keeps_the_clients_order() {
        let (_, raw) = encode_raw(
            &[("Host", "h"), ("B", "1"), ("A", "2")],
            Scheme::Http,
            Some("h"),
            "id",
        );
        let names: Vec<&str> = raw.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Host",
                "B",
                "A",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-forwarded-host",
                "x-request-id"
            ]
        );
    }

    #[test]
    fn response_gets_request_id_and_loses_hop_headers() {
        let mut h = map(&[("connection", "close"), ("content-type", "text/plain")]);
        prepare_response(&mut h, false, HeaderValue::from_static("id1"));
        assert!(!h.contains_key("connection"));
        assert_eq!(h["x-request-id"], "id1");
    }
}
