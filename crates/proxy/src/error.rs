//! Proxy errors and the one place that maps them to an HTTP status and a short
//! text body. Every failure the proxy answers itself goes through
//! [`ProxyError::status`], so a kind of failure always gets the same status.

use std::fmt;
use std::net::SocketAddr;

use http::StatusCode;

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The backend we forward to.
    Upstream,
    /// The client talking to us.
    Downstream,
    /// A bug or resource problem inside the proxy.
    Internal,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No route matches the request's host and path.
    NoRoute,
    /// A route matched but none of its backends is healthy.
    NoHealthyBackend,
    /// The backend refused the TCP connection.
    ConnectRefused,
    /// Connecting to the backend took longer than the connect timeout.
    ConnectTimeout,
    /// Connecting to the backend failed for another reason.
    ConnectFailed,
    /// The backend did not send response headers in time.
    ResponseTimeout,
    /// The backend closed the connection or sent something invalid.
    UpstreamProtocol,
    /// The request body is larger than the configured limit.
    BodyTooLarge,
    /// The client's request could not be read or is malformed.
    BadRequest,
    /// The client sent its request body too slowly (nothing for the body timeout).
    ClientTimeout,
    /// A bug in the proxy.
    Internal,
}

/// An error the proxy answers itself instead of forwarding a backend response.
#[derive(Debug, Clone)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub source: ErrorSource,
    /// A short, non-secret detail for the body and logs.
    pub detail: String,
    /// The backend concerned: in logs (`Display`), never in the body a client sees.
    pub upstream: Option<SocketAddr>,
}

impl ProxyError {
    pub fn new(kind: ErrorKind, source: ErrorSource, detail: impl Into<String>) -> ProxyError {
        ProxyError {
            kind,
            source,
            detail: detail.into(),
            upstream: None,
        }
    }

    pub fn upstream(kind: ErrorKind, addr: SocketAddr, what: &str) -> ProxyError {
        ProxyError {
            upstream: Some(addr),
            ..ProxyError::new(kind, ErrorSource::Upstream, format!("the upstream {what}"))
        }
    }

    /// The status this error is answered with. The only kind→status mapping.
    pub fn status(&self) -> StatusCode {
        match (self.kind, self.source) {
            (ErrorKind::NoRoute, _) => StatusCode::NOT_FOUND,
            (ErrorKind::NoHealthyBackend, _) => StatusCode::SERVICE_UNAVAILABLE,
            (ErrorKind::ConnectTimeout | ErrorKind::ResponseTimeout, _) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            (
                ErrorKind::ConnectRefused | ErrorKind::ConnectFailed | ErrorKind::UpstreamProtocol,
                _,
            ) => StatusCode::BAD_GATEWAY,
            (ErrorKind::BodyTooLarge, _) => StatusCode::PAYLOAD_TOO_LARGE,
            (ErrorKind::BadRequest, _) => StatusCode::BAD_REQUEST,
            (ErrorKind::ClientTimeout, _) => StatusCode::REQUEST_TIMEOUT,
            (ErrorKind::Internal, _) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether this error counts as an upstream error in the metrics.
    pub fn is_upstream(&self) -> bool {
        self.source == ErrorSource::Upstream
    }

    /// The text/plain body: `"502 bad gateway: the upstream refused the connection"` — never
    /// the upstream's address.
    pub fn body(&self) -> String {
        let status = self.status();
        let reason = status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase();
        if self.detail.is_empty() {
            format!("{} {reason}\n", status.as_u16())
        } else {
            format!("{} {reason}: {}\n", status.as_u16(), self.detail)
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.body().trim_end())?;
        if let Some(addr) = self.upstream {
            write!(f, " ({addr})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {}

/// Why a [`crate::RouteTable`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "route for service {service:?} has path prefix {prefix:?}; a prefix must start with '/'"
    )]
    InvalidPrefix { service: String, prefix: String },
    #[error("route for service {service:?} has an empty or invalid host {host:?}")]
    InvalidHost { service: String, host: String },
    #[error("two routes share host {host:?} and path prefix {prefix:?}; give each route a distinct host or prefix")]
    Duplicate {
        host: Option<String>,
        prefix: String,
    },
    #[error("redirect from {from:?}: {problem}")]
    InvalidRedirect { from: String, problem: String },
    #[error("basic auth of service {service:?}: {problem}")]
    BasicAuth { service: String, problem: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_kinds_to_status() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let refused =
            ProxyError::upstream(ErrorKind::ConnectRefused, addr, "refused the connection");
        assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            refused.body(),
            "502 bad gateway: the upstream refused the connection\n"
        );
        assert_eq!(
            refused.to_string(),
            "502 bad gateway: the upstream refused the connection (127.0.0.1:4000)",
            "logs name the address"
        );
        let cases = [
            (ErrorKind::NoRoute, 404),
            (ErrorKind::NoHealthyBackend, 503),
            (ErrorKind::ConnectTimeout, 504),
            (ErrorKind::ResponseTimeout, 504),
            (ErrorKind::ConnectFailed, 502),
            (ErrorKind::UpstreamProtocol, 502),
            (ErrorKind::BodyTooLarge, 413),
            (ErrorKind::BadRequest, 400),
            (ErrorKind::ClientTimeout, 408),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in cases {
            let e = ProxyError::new(kind, ErrorSource::Internal, "");
            assert_eq!(e.status().as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn body_without_detail() {
        let e = ProxyError::new(ErrorKind::NoRoute, ErrorSource::Downstream, "");
        assert_eq!(e.body(), "404 not found\n");
    }
}
