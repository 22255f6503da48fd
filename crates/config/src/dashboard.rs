//! The `[dashboard]` table: where the agent serves its web dashboard and how long a browser
//! session lasts. Without the table the dashboard is on, on `127.0.0.1:9465` (loopback: a
//! person reaches it on the server itself or through `ssh -L`), with 12-hour sessions.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml_edit::TableLike;

use crate::parse::{value_span, Parser};

const DASHBOARD_KEYS: &[&str] = &["enabled", "listen", "session"];

/// `[dashboard]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DashboardConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// How long a browser stays logged in after its login link was used.
    pub session: Duration,
}

impl Default for DashboardConfig {
    fn default() -> DashboardConfig {
        DashboardConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9465)),
            session: Duration::from_secs(12 * 3600),
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
        out
    }
}
