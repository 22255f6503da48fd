//! What the proxy does for automatic HTTPS, given by the agent as data: the ACME challenge
//! answers it serves (HTTP-01 tokens on every listener, before routing and for every host;
//! TLS-ALPN-01 certificates for handshakes that offer `acme-tls/1`, see `tls.rs`), and the
//! HTTP → HTTPS redirect and HSTS of routes whose host a served certificate names.
//!
//! The challenges sit behind `ArcSwap`s of immutable maps, replaced whole when one is added
//! or removed (a few times per issuance): a request pays for them only when its path starts
//! with `/.well-known/acme-challenge/`, a handshake only when it offers `acme-tls/1`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use rustls::sign::CertifiedKey;

use crate::body::ResponseBody;

/// The path prefix of HTTP-01 challenge requests (RFC 8555 §8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
/// The ALPN protocol of TLS-ALPN-01 validation handshakes (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The ACME challenges the proxy answers now. Cheap to share; every method is safe to call
/// while the proxy serves.
#[derive(Default)]
pub struct Challenges {
    http01: ArcSwap<HashMap<String, Bytes>>,
    tls_alpn01: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    /// Serialises writers (readers never wait).
    write: Mutex<()>,
}

impl Challenges {
    /// Answers `GET /.well-known/acme-challenge/<token>` with `key_authorization`.
    pub fn add_http01(&self, token: &str, key_authorization: &str) {
        let _w = self.lock();
        let mut map = HashMap::clone(&self.http01.load());
        map.insert(
            token.to_owned(),
            Bytes::copy_from_slice(key_authorization.as_bytes()),
        );
        self.http01.store(Arc::new(map));
    }

    pub fn remove_http01(&self, token: &str) {
        let _w = self.lock();
        let mut map = HashMap::clone(&self.http01.load());
        if map.remove(token).is_some() {
            self.http01.store(Arc::new(map));
        }
    }

    /// Serves `certificate` (with the acmeIdentifier extension) to a handshake for `name`
    /// that offers `acme-tls/1`.
    pub fn add_tls_alpn01(&self, name: &str, certificate: Arc<CertifiedKey>) {
        let _w = self.lock();
        let mut map = HashMap::clone(&self.tls_alpn01.load());
        map.insert(name.to_ascii_lowercase(), certificate);
        self.tls_alpn01.store(Arc::new(map));
    }

    pub fn remove_tls_alpn01(&self, name: &str) {
        let _w = self.lock();
        let mut map = HashMap::clone(&self.tls_alpn01.load());
        if map.remove(&name.to_ascii_lowercase()).is_some() {
            self.tls_alpn01.store(Arc::new(map));
        }
    }

    /// How many challenges are being answered (tests, status).
    pub fn pending(&self) -> usize {
        self.http01.load().len() + self.tls_alpn01.load().len()
    }

    /// The key authorization for a challenge path, when the path is one.
    pub(crate) fn http01_answer(&self, path: &str) -> Option<Option<Bytes>> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        Some(self.http01.load().get(token).cloned())
    }

    /// The challenge certificate for `name`.
    pub(crate) fn tls_alpn01_certificate(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let name = name?;
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        self.tls_alpn01.load().get(&name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The answer to a request on the challenge path: the key authorization, or 404 for a
/// token not (or no longer) pending. `None`: not a challenge request.
pub(crate) fn http01_response(
    challenges: &Challenges,
    path: &str,
) -> Option<Response<ResponseBody>> {
    let answer = challenges.http01_answer(path)?;
    let (status, body) = match answer {
        Some(key_auth) => (StatusCode::OK, key_auth),
        None => (
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"no such challenge\n"),
        ),
    };
    let mut response = Response::new(ResponseBody::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(response)
}

/// A route's HTTPS policy as the configuration gives it; the proxy applies it only while a
/// served certificate names the route's host (so a host still waiting for its certificate
/// keeps working over plain HTTP).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteHttps {
    /// Redirect plain-HTTP requests to HTTPS (301 for GET and HEAD, 308 otherwise).
    pub redirect: bool,
    /// `Strict-Transport-Security: max-age=<seconds>` on responses served over HTTPS.
    pub hsts_max_age: Option<u64>,
    /// Never served over plain HTTP: redirected to HTTPS once a certificate names the host,
    /// 404 until then (the agent's dashboard).
    pub https_only: bool,
}

/// One route's policy as applied now: computed from its [`RouteHttps`] and the served
/// certificates whenever either changes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Applied {
    pub(crate) redirect: bool,
    pub(crate) hsts: Option<HeaderValue>,
    pub(crate) https_only: bool,
}

impl Applied {
    pub(crate) fn new(policy: &RouteHttps, covered: bool) -> Applied {
        if !covered {
            return Applied {
                https_only: policy.https_only,
                ..Applied::default()
            };
        }
        Applied {
            https_only: policy.https_only,
            redirect: policy.redirect || policy.https_only,
            hsts: policy
                .hsts_max_age
                .and_then(|age| HeaderValue::from_str(&format!("max-age={age}")).ok()),
        }
    }
}

/// The redirect of a plain-HTTP request to the same host and target over HTTPS (on
/// `https_port`, left out when it is 443).
pub(crate) fn redirect_response(
    host: &str,
    path_and_query: &str,
    method_is_get_or_head: bool,
    https_port: u16,
) -> Response<ResponseBody> {
    let host = crate::table::normalize_host(host);
    let location = if https_port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{https_port}{path_and_query}")
    };
    let status = if method_is_get_or_head {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_answers_pending_tokens_only() {
        let c = Challenges::default();
        assert!(http01_response(&c, "/index.html").is_none());
        let r = http01_response(&c, "/.well-known/acme-challenge/abc").unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        c.add_http01("abc", "abc.thumb");
        assert_eq!(c.pending(), 1);
        let r = http01_response(&c, "/.well-known/acme-challenge/abc").unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        c.remove_http01("abc");
        assert_eq!(c.pending(), 0);
        let r = http01_response(&c, "/.well-known/acme-challenge/abc").unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn redirects_keep_host_and_target_and_use_308_for_other_methods() {
        let r = redirect_response("Shop.Example:80", "/a?b=1", true, 443);
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.headers()[header::LOCATION], "https://shop.example/a?b=1");
        let r = redirect_response("shop.example", "/", false, 8443);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], "https://shop.example:8443/");
    }

    #[test]
    fn a_policy_applies_only_to_a_covered_host() {
        let policy = RouteHttps {
            redirect: true,
            hsts_max_age: Some(31_536_000),
            https_only: false,
        };
        let off = Applied::new(&policy, false);
        assert!(!off.redirect && off.hsts.is_none() && !off.https_only);
        let on = Applied::new(&policy, true);
        assert!(on.redirect);
        assert_eq!(on.hsts.unwrap(), "max-age=31536000");
    }

    #[test]
    fn an_https_only_route_redirects_when_covered_and_stays_https_only_when_not() {
        let policy = RouteHttps {
            redirect: false,
            hsts_max_age: None,
            https_only: true,
        };
        let off = Applied::new(&policy, false);
        assert!(!off.redirect && off.https_only);
        let on = Applied::new(&policy, true);
        assert!(on.redirect && on.https_only);
    }
}
