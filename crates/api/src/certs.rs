//! The wire types of `dockhand certs`: every certificate the proxy serves or the agent is
//! getting, per host, and the local CA a developer's machine may trust.

use serde::{Deserialize, Serialize};

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum CertSource {
    /// `[proxy] certificates`: renewed by whoever replaces the file.
    #[serde(rename = "file")]
    File,
    /// An ACME CA, renewed by the agent.
    #[serde(rename = "acme")]
    Acme,
    /// The agent's local CA (`localhost`, `*.localhost`, IP addresses).
    #[serde(rename = "local-ca")]
    LocalCa,
}

impl CertSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CertSource::File => "file",
            CertSource::Acme => "acme",
            CertSource::LocalCa => "local-ca",
        }
    }
}

/// How a host's certificate is doing.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum CertState {
    /// Served and not due for renewal.
    #[serde(rename = "valid")]
    Valid,
    /// Not issued yet (the first order is under way or waiting for its retry).
    #[serde(rename = "pending")]
    Pending,
    /// Served, but the last renewal attempt failed (retried with back-off).
    #[serde(rename = "failing")]
    Failing,
    /// Past its end: clients refuse it.
    #[serde(rename = "expired")]
    Expired,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Valid => "valid",
            CertState::Pending => "pending",
            CertState::Failing => "failing",
            CertState::Expired => "expired",
        }
    }
}

/// One host and the certificate that serves (or will serve) it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertStatus {
    pub host: String,
    pub source: CertSource,
    pub state: CertState,
    /// Every name of the certificate (the order's names).
    pub names: Vec<String>,
    /// The issuer's common or organization name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// When the agent next tries to renew (or issue) it, RFC 3339; none for files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_renewal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The file, for a certificate from `[proxy] certificates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The answer to `certs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CertsReport {
    pub certificates: Vec<CertStatus>,
    /// The local CA, once the agent created one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ca: Option<LocalCa>,
}

/// The local CA's certificate (public; its key never leaves the state directory).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LocalCa {
    pub path: String,
    pub pem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_words_on_the_wire() {
        for (value, word) in [
            (CertSource::File, "file"),
            (CertSource::Acme, "acme"),
            (CertSource::LocalCa, "local-ca"),
        ] {
            assert_eq!(
                serde_json::to_string(&value).unwrap(),
                format!("\"{word}\"")
            );
            assert_eq!(value.as_str(), word);
            assert_eq!(
                serde_json::from_str::<CertSource>(&format!("\"{word}\"")).unwrap(),
                value
            );
        }
        for (value, word) in [
            (CertState::Valid, "valid"),
            (CertState::Pending, "pending"),
            (CertState::Failing, "failing"),
            (CertState::Expired, "expired"),
        ] {
            assert_eq!(
                serde_json::to_string(&value).unwrap(),
                format!("\"{word}\"")
            );
            assert_eq!(value.as_str(), word);
            assert_eq!(
                serde_json::from_str::<CertState>(&format!("\"{word}\"")).unwrap(),
                value
            );
        }
    }
}
