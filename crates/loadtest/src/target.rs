//! Where the load goes: parsing the target URL, resolving it, and deciding whether it is this
//! machine.
//!
//! Sending load to someone else's server is an attack, so the CLI asks before it does that.
//! The decision is made here, on addresses, before any connection: an IP literal or
//! `localhost` is decided without DNS; a name is resolved once (with a timeout) and the run
//! connects to exactly the addresses that were checked, so a later DNS answer cannot redirect
//! it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::uri::{PathAndQuery, Scheme, Uri};

use crate::LoadError;

/// The scheme, host and port every request of a run goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub tls: bool,
    /// Host name or IP literal, without brackets or port (also the TLS server name).
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// The `Host` header value: the host, with the port when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `https://host:port`, for reports.
    pub fn display(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.host_header()
        )
    }
}

/// Splits an `http://` or `https://` URL into its origin and its path and query.
pub fn parse_url(url: &str) -> Result<(Origin, PathAndQuery), LoadError> {
    let bad = |why: &str| LoadError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    let tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTP => false,
        Some(s) if *s == Scheme::HTTPS => true,
        Some(_) => return Err(bad("only http:// and https:// URLs can be load-tested")),
        None => {
            return Err(bad(
                "the URL needs a scheme: http://HOST/PATH or https://HOST/PATH",
            ))
        }
    };
    let authority = uri.authority().ok_or_else(|| bad("the URL has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "user:password@ in the URL is not supported; use --bearer or -H 'Authorization: …'",
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(bad("the URL has no host"));
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Ok((
        Origin {
            tls,
            host: host.to_ascii_lowercase(),
            port,
        },
        path,
    ))
}

/// Whether `host` is this machine by its name alone: a loopback IP literal or `localhost`
/// (and `*.localhost`, RFC 6761). `None`: a name that only DNS can tell.
pub fn loopback_by_name(host: &str) -> Option<bool> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(ip.is_loopback());
    }
    let host = host.trim_end_matches('.');
    if host == "localhost" || host.ends_with(".localhost") {
        return Some(true);
    }
    None
}

/// Whether every address is a loopback address (an empty list is not).
pub fn all_loopback(addrs: &[SocketAddr]) -> bool {
    !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
}

/// The addresses of `origin`: an IP literal as is, `localhost` as 127.0.0.1 (and ::1), any
/// other name through the system resolver within `timeout`.
pub async fn resolve(origin: &Origin, timeout: Duration) -> Result<Vec<SocketAddr>, LoadError> {
    if let Ok(ip) = origin.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, origin.port)]);
    }
    if loopback_by_name(&origin.host) == Some(true) {
        return Ok(vec![
            SocketAddr::from(([127, 0, 0, 1], origin.port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, origin.port)),
        ]);
    }
    let lookup = tokio::net::lookup_host((origin.host.as_str(), origin.port));
    let addrs: Vec<SocketAddr> = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| LoadError::Resolve {
            host: origin.host.clone(),
            why: format!("no answer within {}", humantime::format_duration(timeout)),
        })?
        .map_err(|e| LoadError::Resolve {
            host: origin.host.clone(),
            why: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(LoadError::Resolve {
            host: origin.host.clone(),
            why: "no address".into(),
        });
    }
    Ok(addrs)
}

/// The address to connect to for a proxy listening on `listen`: an unspecified address
/// (`0.0.0.0`, `::`) is reached through loopback.
pub fn connect_addr_for_listen(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], listen.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_origin_and_path() {
        let (o, p) = parse_url("http://127.0.0.1:8080/api/items?page=2").unwrap();
        assert_eq!(
            o,
            Origin {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8080
            }
        );
        assert_eq!(p.as_str(), "/api/items?page=2");
        assert_eq!(o.host_header(), "127.0.0.1:8080");
        let (o, p) = parse_url("https://Example.org").unwrap();
        assert_eq!(
            (o.tls, o.port, o.host.as_str(), p.as_str()),
            (true, 443, "example.org", "/")
        );
        assert_eq!(o.host_header(), "example.org");
        let (o, _) = parse_url("http://[::1]:9000/").unwrap();
        assert_eq!(o.host, "::1");
        assert_eq!(o.host_header(), "[::1]:9000");
    }

    #[test]
    fn urls_without_scheme_or_with_other_schemes_are_refused() {
        for bad in [
            "localhost:8080/",
            "ftp://x/",
            "http://user:pw@host/",
            "not a url",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_is_decided_by_name_only_for_literals_and_localhost() {
        assert_eq!(loopback_by_name("127.0.0.1"), Some(true));
        assert_eq!(loopback_by_name("127.8.9.10"), Some(true));
        assert_eq!(loopback_by_name("::1"), Some(true));
        assert_eq!(loopback_by_name("localhost"), Some(true));
        assert_eq!(loopback_by_name("app.localhost"), Some(true));
        assert_eq!(loopback_by_name("192.0.2.1"), Some(false));
        assert_eq!(loopback_by_name("10.0.0.1"), Some(false));
        assert_eq!(loopback_by_name("example.org"), None);
        assert_eq!(loopback_by_name("localhost.example.org"), None);
    }

    #[test]
    fn a_mixed_address_list_is_not_loopback() {
        let lo: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let far: SocketAddr = "192.0.2.1:80".parse().unwrap();
        assert!(all_loopback(&[lo]));
        assert!(!all_loopback(&[lo, far]));
        assert!(!all_loopback(&[]));
    }

    #[test]
    fn an_unspecified_listen_address_is_reached_through_loopback() {
        assert_eq!(
            connect_addr_for_listen("0.0.0.0:80".parse().unwrap()),
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            connect_addr_for_listen("[::]:80".parse().unwrap()),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            connect_addr_for_listen("127.0.0.1:8080".parse().unwrap()),
            "127.0.0.1:8080".parse().unwrap()
        );
    }
}
