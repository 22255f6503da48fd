//! `dockhand alerts`' request and answer.

use serde::{Deserialize, Serialize};

/// What `dockhand alerts …` asks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AlertsRequest {
    /// What fires, the silences, the channels and what waits for delivery.
    List,
    /// Send a test notice to every channel now.
    Test { requested_by: String },
    /// Silence a rule for `seconds` (0 lifts the silence).
    Silence {
        rule: String,
        seconds: u64,
        requested_by: String,
    },
}

/// The answer to every `AlertsRequest`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AlertsReport {
    pub firing: Vec<AlertInfo>,
    pub silences: Vec<SilenceInfo>,
    /// The channels alerts go to (`webhook`, `email`…).
    pub channels: Vec<String>,
    /// The rules in effect.
    pub rules: Vec<String>,
    /// Messages waiting for (another) delivery attempt.
    pub undelivered: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// `alerts test`: each channel and its error, if it failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<ChannelResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertInfo {
    pub rule: String,
    pub subject: String,
    pub summary: String,
    /// RFC 3339, UTC.
    pub since: String,
    pub silenced: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SilenceInfo {
    pub rule: String,
    /// RFC 3339, UTC.
    pub until: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChannelResult {
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
