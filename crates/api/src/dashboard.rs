//! The dashboard's requests: a one-time login link (`dockhand dashboard`) and the metric
//! series its charts are drawn from.

use serde::{Deserialize, Serialize};

/// What the dashboard lets a session do.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum DashboardRole {
    /// Reads every page; performs no action.
    #[serde(rename = "viewer")]
    Viewer,
    /// Also deploys, rolls back, runs and restores backups, runs tasks, silences alerts.
    #[serde(rename = "operator")]
    Operator,
}

impl DashboardRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DashboardRole::Viewer => "viewer",
            DashboardRole::Operator => "operator",
        }
    }
}

/// `dockhand dashboard`: a login link for one browser.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DashboardRequest {
    /// A one-time login URL for `role`, in the name of `requested_by`.
    Login {
        role: DashboardRole,
        requested_by: String,
    },
}

/// The answer to [`DashboardRequest::Login`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DashboardLogin {
    /// Opens a session once; useless afterwards or after `expires_in_secs`.
    pub url: String,
    /// The same link through the app's proxy (`[dashboard] route`), over HTTPS: the token
    /// opens one session, on whichever of the two it is used first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_url: Option<String>,
    /// Where the dashboard listens.
    pub listen: String,
    pub role: DashboardRole,
    pub expires_in_secs: u64,
}

/// The answer to `Request::ReleaseConfig`: the resolved configuration of `release`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseConfig {
    pub release: i64,
    pub config: serde_json::Value,
}

/// Points of the monitor's series (`Request::Metrics`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsRequest {
    /// Series names as the monitor stores them (`service:web:requests_per_second`,
    /// `host:cpu_ratio`, …); empty: every series' name, without points.
    pub series: Vec<String>,
    /// How far back, in seconds (an hour or less: raw samples; 48 hours: 5-minute points;
    /// beyond: hourly points).
    pub window_secs: u64,
}

/// The answer to a `MetricsRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MetricsReport {
    pub series: Vec<SeriesPoints>,
}

/// One series over the window, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SeriesPoints {
    pub name: String,
    /// (unix seconds, value): raw samples, or the average of each rolled-up interval.
    pub points: Vec<(u64, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_keep_their_words() {
        for (role, word) in [
            (DashboardRole::Viewer, "viewer"),
            (DashboardRole::Operator, "operator"),
        ] {
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{word}\""));
            assert_eq!(role.as_str(), word);
            let back: DashboardRole = serde_json::from_str(&format!("\"{word}\"")).unwrap();
            assert_eq!(back, role);
        }
    }
}
