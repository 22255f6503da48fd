//! The `[dashboard]` table: where the agent serves its web dashboard, how long a browser
//! session lasts, and optionally a `route` that publishes it through the app's own proxy, on
//! a host of its own and only over HTTPS. Without the table the dashboard is on, on
//! `127.0.0.1:9465` (loopback: a person reaches it on the server itself or through
//! `ssh -L`), with 12-hour sessions.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml_edit::TableLike;

use crate::acme::{host_kind, HostKind, LETSENCRYPT, LETSENCRYPT_STAGING, ZEROSSL};
use crate::certs::covers;
use crate::parse::{key_span, value_span, Field, Parser};

const DASHBOARD_KEYS: &[&str] = &["enabled", "listen", "session", "route"];
const ROUTE_KEYS: &[&str] = &["host", "path"];
const ROUTE_EXAMPLE: &str = "route = { host = \"ops.example.com\" }";

/// `[dashboard]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DashboardConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// How long a browser stays logged in after its login link was used.
    pub session: Duration,
    /// Also published through the app's proxy, on this host, only over HTTPS.
    #[serde(default)]
    pub route: Option<DashboardRoute>,
}

/// `[dashboard] route = { host }`: the proxy forwards `https://HOST/` to the dashboard;
/// plain HTTP for the host is redirected to HTTPS (never served).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DashboardRoute {
    /// Lowercase, without a port.
    pub host: String,
}

impl Default for DashboardConfig {
    fn default() -> DashboardConfig {
        DashboardConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9465)),
            session: Duration::from_secs(12 * 3600),
            route: None,
        }
    }
}

impl Parser<'_> {
    pub(crate) fn dashboard(&mut self, table: &dyn TableLike) -> DashboardConfig {
        let mut out = DashboardConfig::default();
        let fields = self.fields(table, "dashboard", DASHBOARD_KEYS, "in [dashboard]");
        if let Some(b) = fields.get("enabled").and_then(|f| self.boolean(f)) {
            out.enabled = b;
        }
        if let Some(f) = fields.get("listen") {
            if let Some(addr) = self.socket_addr(f, "9465") {
                if !addr.ip().is_loopback() {
                    self.warning(
                        value_span(f),
                        Some(&f.path),
                        format!("the dashboard listens on {addr}, beyond this machine, over plain HTTP"),
                        Some("keep it on 127.0.0.1 and reach it with `ssh -L 9465:127.0.0.1:9465 SERVER`; login links and session cookies would cross the network unencrypted".into()),
                    );
                }
                out.listen = addr;
            }
        }
        if let Some(f) = fields.get("session") {
            if let Some(d) = self.duration(f, false) {
                if d < Duration::from_secs(60) || d > Duration::from_secs(30 * 24 * 3600) {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        "`session` must be between 1m and 30d".into(),
                        Some("12h is the default: a working day on call".into()),
                    );
                } else {
                    out.session = d;
                }
            }
        }
        if let Some(f) = fields.get("route") {
            if let Some(t) = self.table(f) {
                out.route = self.dashboard_route(t, f);
            }
        }
        out
    }

    /// `route = { host, path }`: a host of its own (no service routed on it), at `/`, with a
    /// certificate: refused where the proxy could not serve it over HTTPS.
    fn dashboard_route(&mut self, table: &dyn TableLike, at: &Field<'_>) -> Option<DashboardRoute> {
        let f = self.fields(table, "dashboard.route", ROUTE_KEYS, "in [dashboard] route");
        if let Some(p) = f.get("path") {
            if let Some(path) = self.string(p) {
                if path != "/" {
                    self.error(
                        value_span(p),
                        Some(&p.path),
                        format!("the dashboard is served at the root of its host, not at `{path}`"),
                        Some(format!("give it a host of its own: {ROUTE_EXAMPLE}")),
                    );
                    return None;
                }
            }
        }
        let Some(h) = f.get("host") else {
            self.error(
                key_span(at),
                Some("dashboard.route"),
                "the dashboard route needs a `host`".into(),
                Some(format!(
                    "{ROUTE_EXAMPLE}: a name of its own, pointing at this server"
                )),
            );
            return None;
        };
        let host = self.string(h)?.to_ascii_lowercase();
        if host.is_empty()
            || host.contains(':')
            || host.starts_with(['.', '-'])
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            self.error(
                value_span(h),
                Some(&h.path),
                format!("`{host}` is not a host name"),
                Some("write a host name without a port, such as \"ops.example.com\"".into()),
            );
            return None;
        }
        if let Some(r) = self
            .routes
            .iter()
            .find(|r| r.host.as_deref() == Some(&host))
        {
            let service = r.service.clone();
            self.error(
                value_span(h),
                Some(&h.path),
                format!("the dashboard's host `{host}` is also a route of service `{service}`"),
                Some("give the dashboard a host of its own, such as \"ops.example.com\"".into()),
            );
            return None;
        }
        if let Some(why) = self.no_tls_for(&host) {
            self.error(
                value_span(h),
                Some(&h.path),
                format!("the dashboard is published only over HTTPS, and `{host}` would have no certificate: {why}"),
                Some("set [proxy] https_listen and give the host a certificate ([proxy] certificates or [proxy.acme]), or remove `route` and use `ssh -L`".into()),
            );
            return None;
        }
        Some(DashboardRoute { host })
    }

    /// Why the proxy would serve no certificate for `host` (`None`: it would, or a problem
    /// with the certificates is already reported).
    fn no_tls_for(&self, host: &str) -> Option<String> {
        let Some(acme) = &self.acme else {
            return Some("[proxy] https_listen is not set".into());
        };
        let Some(names) = &self.certificate_names else {
            return None;
        };
        if names.iter().any(|n| covers(n, host)) {
            return None;
        }
        let public_ca =
            [LETSENCRYPT, LETSENCRYPT_STAGING, ZEROSSL].contains(&acme.directory.as_str());
        match host_kind(host) {
            HostKind::Local => None,
            HostKind::Private(what) if acme.enabled && public_ca => Some(format!(
                "it is {what}, which a public CA does not issue for"
            )),
            _ if acme.enabled => None,
            _ => Some(
                "no certificate in [proxy] certificates names it, and [proxy.acme] is disabled"
                    .into(),
            ),
        }
    }
}
