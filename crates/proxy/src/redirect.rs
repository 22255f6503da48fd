//! Redirects answered before routing (`[[redirects]]`): a whole host (`www.example.org` →
//! `https://example.org`) or a path prefix of one (`example.org/old` →
//! `https://example.org/new`), with 301, 302, 307 or 308, keeping the rest of the path and
//! the query unless told not to. ACME challenges are answered before these, so a host that
//! moves can still prove it owns its name.

use http::header::HeaderValue;
use http::{Response, StatusCode};

use crate::body::ResponseBody;
use crate::error::RouteError;
use crate::table::{normalize_host, prefix_matches};

/// One redirect rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The host it applies to (lowercase, without port).
    pub from_host: String,
    /// The path prefix it applies to (`/`: the whole host).
    pub from_path: String,
    /// The absolute URL requests go to (`http://` or `https://`).
    pub to: String,
    /// 301, 302, 307 or 308.
    pub code: u16,
    /// Append the rest of the path and the query to `to`.
    pub keep_path: bool,
}

impl Redirect {
    /// Validates and normalizes a rule.
    pub(crate) fn normalized(mut self) -> Result<Redirect, RouteError> {
        let from = format!("{}{}", self.from_host, self.from_path);
        let bad = |problem: &str| RouteError::InvalidRedirect {
            from: from.clone(),
            problem: problem.to_string(),
        };
        if !matches!(self.code, 301 | 302 | 307 | 308) {
            return Err(bad("the code must be 301, 302, 307 or 308"));
        }
        let host = normalize_host(&self.from_host).into_owned();
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(bad("the host is empty or invalid"));
        }
        self.from_host = host;
        if !self.from_path.starts_with('/') || self.from_path.contains(['?', '#', ' ']) {
            return Err(bad("the path must be a plain prefix starting with '/'"));
        }
        let trimmed = self.from_path.trim_end_matches('/');
        self.from_path = if trimmed.is_empty() {
            "/".into()
        } else {
            trimmed.into()
        };
        if !(self.to.starts_with("http://") || self.to.starts_with("https://"))
            || HeaderValue::from_str(&self.to).is_err()
            || self.to.contains(['?', '#'])
        {
            return Err(bad(
                "the target must be an http:// or https:// URL without query",
            ));
        }
        Ok(self)
    }

    /// Whether the rule applies to a request for `host` (normalized) and `path`.
    pub(crate) fn matches(&self, host: &str, path: &str) -> bool {
        self.from_host == host && prefix_matches(&self.from_path, path)
    }

    /// The answer for a request whose path and query are `path_and_query`.
    pub(crate) fn response(&self, path_and_query: &str) -> Response<ResponseBody> {
        let location = if self.keep_path {
            let rest = if self.from_path == "/" {
                path_and_query
            } else {
                path_and_query.get(self.from_path.len()..).unwrap_or("")
            };
            let after_scheme = self.to.find("://").map_or(0, |i| i + 3);
            let has_path = self.to[after_scheme..].contains('/');
            match rest.strip_prefix('/') {
                Some(tail) if self.to.ends_with('/') => format!("{}{tail}", self.to),
                Some(_) => format!("{}{rest}", self.to),
                // `/old` or `/old?q`: the target itself (with the query).
                None if has_path => format!("{}{rest}", self.to),
                None => format!("{}/{rest}", self.to),
            }
        } else {
            self.to.clone()
        };
        let mut r = Response::new(ResponseBody::full(format!("redirecting to {location}\n")));
        *r.status_mut() = StatusCode::from_u16(self.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Ok(v) = HeaderValue::from_str(&location) {
            h.insert(http::header::LOCATION, v);
        }
        r
    }
}

/// The first rule for this request, if any.
pub(crate) fn find<'a>(
    rules: &'a [Redirect],
    host: Option<&str>,
    path: &str,
) -> Option<&'a Redirect> {
    if rules.is_empty() {
        return None;
    }
    let host = normalize_host(host?);
    rules.iter().find(|r| r.matches(&host, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(from_host: &str, from_path: &str, to: &str, keep_path: bool) -> Redirect {
        Redirect {
            from_host: from_host.into(),
            from_path: from_path.into(),
            to: to.into(),
            code: 301,
            keep_path,
        }
        .normalized()
        .unwrap()
    }

    fn location(r: &Redirect, pq: &str) -> String {
        r.response(pq).headers()[http::header::LOCATION]
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn hosts_keep_path_and_query() {
        let r = rule("WWW.example.org", "/", "https://example.org", true);
        assert!(r.matches("www.example.org", "/a"));
        assert_eq!(location(&r, "/a/b?c=1"), "https://example.org/a/b?c=1");
        assert_eq!(location(&r, "/"), "https://example.org/");
        let r = rule("www.example.org", "/", "https://example.org/", true);
        assert_eq!(location(&r, "/x"), "https://example.org/x");
    }

    #[test]
    fn prefixes_move_the_rest_of_the_path() {
        let r = rule("example.org", "/old/", "https://example.org/new", true);
        assert!(r.matches("example.org", "/old"));
        assert!(r.matches("example.org", "/old/x"));
        assert!(!r.matches("example.org", "/older"));
        assert_eq!(location(&r, "/old/x/y?q"), "https://example.org/new/x/y?q");
        assert_eq!(location(&r, "/old"), "https://example.org/new");
        assert_eq!(location(&r, "/old?q=1"), "https://example.org/new?q=1");
        let r = rule("example.org", "/old", "https://example.org/new", false);
        assert_eq!(location(&r, "/old/x?q"), "https://example.org/new");
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut r = rule("a.example", "/", "https://b.example", true);
        r.code = 303;
        assert!(r.clone().normalized().is_err());
        r.code = 308;
        r.to = "b.example".into();
        assert!(r.normalized().is_err());
    }
}
