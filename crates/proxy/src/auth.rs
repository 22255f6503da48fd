//! HTTP basic authentication for a route: the users of an htpasswd file (bcrypt `$2y$`,
//! `$2b$`, `$2a$`; Apache MD5 `$apr1$`; `{SHA}`), a cache of verified credentials so a
//! request does not redo bcrypt, and a per-client limit on failed attempts.
//!
//! The cache is keyed by an HMAC-SHA-256 of `user:password` under a key drawn when the
//! policy is built, so it never holds a password or anything a password could be
//! recovered from offline. Nothing here logs or returns a password or a hash: a parse
//! error names the line and the user only.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::header::HeaderValue;
use http::{Response, StatusCode};
use md5::{Digest as _, Md5};

use crate::body::ResponseBody;
use crate::policy::{Buckets, RateLimit};

/// Failed attempts a client may make at once before it is locked out…
const FAILURE_BURST: u32 = 10;
/// …and how many more it gets per minute after that.
const FAILURES_PER_MINUTE: f64 = 6.0;
/// Verified credentials remembered (the cache is cleared when full).
const CACHE_ENTRIES: usize = 1024;

/// The route's realm and users, with their verification cache and failure limiter.
pub struct BasicAuth {
    realm: String,
    challenge: HeaderValue,
    users: HashMap<String, Hash>,
    key: ring::hmac::Key,
    verified: Mutex<HashSet<[u8; 32]>>,
    failures: Buckets,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// A password hash of an htpasswd line.
#[derive(Clone)]
enum Hash {
    Bcrypt(String),
    AprMd5 { salt: String, full: String },
    Sha1(String),
}

/// Why htpasswd text was refused; never contains a hash or a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HtpasswdError {
    #[error("line {line} is not `user:hash`")]
    Malformed { line: usize },
    #[error("line {line}: user `{user}` has a plaintext password or an unsupported hash (use bcrypt: `htpasswd -nB {user}`)")]
    Plaintext { line: usize, user: String },
    #[error("line {line}: user `{user}` appears more than once")]
    Duplicate { line: usize, user: String },
    #[error("no users (an htpasswd file has one `user:hash` line per user)")]
    Empty,
    #[error("the realm must be printable text without `\"`")]
    Realm,
}

/// What [`BasicAuth::check`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    /// No or wrong credentials: 401 with the challenge.
    Denied,
    /// Too many failed attempts from this client: 429, retry after this long.
    LockedOut(Duration),
}

impl BasicAuth {
    /// Parses htpasswd text (one `user:hash` per line; blank lines and `#` comments
    /// skipped).
    pub fn from_htpasswd(realm: &str, text: &str) -> Result<BasicAuth, HtpasswdError> {
        if realm
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b))
        {
            return Err(HtpasswdError::Realm);
        }
        let challenge =
            HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
                .map_err(|_| HtpasswdError::Realm)?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(HtpasswdError::Malformed { line: line_no });
            };
            if user.is_empty() {
                return Err(HtpasswdError::Malformed { line: line_no });
            }
            let hash = parse_hash(hash).ok_or_else(|| HtpasswdError::Plaintext {
                line: line_no,
                user: user.to_string(),
            })?;
            if users.insert(user.to_string(), hash).is_some() {
                return Err(HtpasswdError::Duplicate {
                    line: line_no,
                    user: user.to_string(),
                });
            }
        }
        if users.is_empty() {
            return Err(HtpasswdError::Empty);
        }
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map_err(|_| HtpasswdError::Empty)?;
        Ok(BasicAuth {
            realm: realm.to_string(),
            challenge,
            users,
            key,
            verified: Mutex::new(HashSet::new()),
            failures: Buckets::default(),
        })
    }

    /// The realm shown by browsers.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Checks a request's `Authorization` header for `client`.
    pub(crate) fn check(&self, authorization: Option<&[u8]>, client: IpAddr) -> Verdict {
        let limit = failure_limit();
        if let Err(wait) = self.failures.peek(client, limit, Instant::now()) {
            return Verdict::LockedOut(wait);
        }
        let Some(header) = authorization else {
            // A browser's first request comes without credentials: not a failure.
            return Verdict::Denied;
        };
        if self.verify(header) {
            return Verdict::Allowed;
        }
        if let Err(wait) = self.failures.take(client, limit, Instant::now()) {
            return Verdict::LockedOut(wait);
        }
        Verdict::Denied
    }

    /// The 401 answer.
    pub(crate) fn challenge(&self) -> Response<ResponseBody> {
        let mut r = Response::new(ResponseBody::full("401 unauthorized\n"));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(http::header::WWW_AUTHENTICATE, self.challenge.clone());
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        r
    }

    fn verify(&self, header: &[u8]) -> bool {
        let Some(encoded) = strip_scheme(header) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let Some(hash) = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.users.get(u))
        else {
            return false;
        };
        let tag = ring::hmac::sign(&self.key, &decoded);
        let mut id = [0u8; 32];
        id.copy_from_slice(tag.as_ref());
        if self.cache().contains(&id) {
            return true;
        }
        if !hash.verify(password) {
            return false;
        }
        let mut cache = self.cache();
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(id);
        true
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn failure_limit() -> RateLimit {
    RateLimit {
        per_second: FAILURES_PER_MINUTE / 60.0,
        burst: FAILURE_BURST,
    }
}

/// `Basic <credentials>`, the scheme case-insensitive.
fn strip_scheme(header: &[u8]) -> Option<&[u8]> {
    let header = header.trim_ascii();
    let (scheme, rest) = header.split_at_checked(6)?;
    scheme
        .eq_ignore_ascii_case(b"basic ")
        .then(|| rest.trim_ascii())
}

fn parse_hash(hash: &str) -> Option<Hash> {
    let hash = hash.trim();
    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        // Parsing it once here refuses a truncated or otherwise broken bcrypt hash early.
        hash.parse::<bcrypt::HashParts>().ok()?;
        return Some(Hash::Bcrypt(hash.to_string()));
    }
    if let Some(rest) = hash.strip_prefix("$apr1$") {
        let (salt, digest) = rest.split_once('$')?;
        if salt.is_empty() || salt.len() > 8 || digest.len() != 22 {
            return None;
        }
        return Some(Hash::AprMd5 {
            salt: salt.to_string(),
            full: hash.to_string(),
        });
    }
    if let Some(digest) = hash.strip_prefix("{SHA}") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(digest)
            .ok()?;
        return (bytes.len() == 20).then(|| Hash::Sha1(digest.to_string()));
    }
    None
}

impl Hash {
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Hash::AprMd5 { salt, full } => {
                let computed = apr1(password, salt.as_bytes());
                same(computed.as_bytes(), full.as_bytes())
            }
            Hash::Sha1(digest) => {
                let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password);
                let computed = base64::engine::general_purpose::STANDARD.encode(d.as_ref());
                same(computed.as_bytes(), digest.as_bytes())
            }
        }
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Apache's MD5-crypt (`$apr1$salt$digest`), as `htpasswd -m` and `openssl passwd -apr1`.
fn apr1(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(password);
        }
        fin = c.finalize();
    }
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(37);
    out.push_str("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut push = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(char::from(ITOA64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push(
            (u32::from(fin[a]) << 16) | (u32::from(fin[b]) << 8) | u32::from(fin[c]),
            4,
        );
    }
    push(u32::from(fin[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> Vec<u8> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}").into_bytes()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn apache_md5_matches_openssl() {
        // `openssl passwd -apr1 -salt abcdefgh 'p@ss w0rd'` and `… -salt r31….. password`.
        assert_eq!(
            apr1(b"p@ss w0rd", b"abcdefgh"),
            "$apr1$abcdefgh$UkZoB0qp2g9KE9.krwnMP0"
        );
        assert_eq!(
            apr1(b"password", b"r31....."),
            "$apr1$r31.....$ARC3pREO82RIm0aQ2zszC0"
        );
    }

    #[test]
    fn every_hash_kind_verifies_its_password_only() {
        let bcrypt_y = bcrypt::hash_with_result("b-secret", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let bcrypt_b = bcrypt::hash("b2-secret", 4).unwrap();
        let text = format!(
            "# users\nann:{bcrypt_y}\nbob:$apr1$abcdefgh$UkZoB0qp2g9KE9.krwnMP0\n\ncid:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=\ndee:{bcrypt_b}\n"
        );
        let auth = BasicAuth::from_htpasswd("Restricted", &text).unwrap();
        let c = ip("192.0.2.1");
        for (user, good) in [
            ("ann", "b-secret"),
            ("bob", "p@ss w0rd"),
            ("cid", "secret"),
            ("dee", "b2-secret"),
        ] {
            assert_eq!(
                auth.check(Some(&basic(user, good)), c),
                Verdict::Allowed,
                "{user}"
            );
            // Twice: the second comes from the cache.
            assert_eq!(auth.check(Some(&basic(user, good)), c), Verdict::Allowed);
            assert_eq!(
                auth.check(Some(&basic(user, "wrong")), ip("192.0.2.99")),
                Verdict::Denied,
                "{user}"
            );
        }
        assert_eq!(
            auth.check(Some(&basic("eve", "secret")), c),
            Verdict::Denied
        );
        assert_eq!(auth.check(None, c), Verdict::Denied);
        assert_eq!(auth.check(Some(b"Bearer x"), c), Verdict::Denied);
        assert_eq!(
            auth.check(Some(&basic("ann", "b-secret")[..]), c),
            Verdict::Allowed
        );
    }

    #[test]
    fn plaintext_and_broken_lines_are_refused_without_showing_them() {
        let err = BasicAuth::from_htpasswd("R", "ann:hunter2\n").unwrap_err();
        assert_eq!(
            err,
            HtpasswdError::Plaintext {
                line: 1,
                user: "ann".into()
            }
        );
        assert!(!err.to_string().contains("hunter2"));
        assert_eq!(
            BasicAuth::from_htpasswd("R", "# only a comment\n").unwrap_err(),
            HtpasswdError::Empty
        );
        assert_eq!(
            BasicAuth::from_htpasswd("R", "\nno colon here\n").unwrap_err(),
            HtpasswdError::Malformed { line: 2 }
        );
        assert!(matches!(
            BasicAuth::from_htpasswd("R", "a:$2y$05$short\n").unwrap_err(),
            HtpasswdError::Plaintext { .. }
        ));
        assert_eq!(
            BasicAuth::from_htpasswd("say \"hi\"", "cid:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=")
                .unwrap_err(),
            HtpasswdError::Realm
        );
    }

    #[test]
    fn repeated_failures_lock_the_client_out_but_not_others() {
        let auth = BasicAuth::from_htpasswd("R", "cid:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=").unwrap();
        let attacker = ip("198.51.100.7");
        for _ in 0..FAILURE_BURST {
            assert_eq!(
                auth.check(Some(&basic("cid", "guess")), attacker),
                Verdict::Denied
            );
        }
        // Locked out, even with the right password.
        assert!(matches!(
            auth.check(Some(&basic("cid", "secret")), attacker),
            Verdict::LockedOut(wait) if wait >= Duration::from_secs(1)
        ));
        assert_eq!(
            auth.check(Some(&basic("cid", "secret")), ip("198.51.100.8")),
            Verdict::Allowed
        );
    }
}
