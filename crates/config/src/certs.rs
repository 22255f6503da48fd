//! TLS certificates from files (`[proxy] certificates`): reading a PEM certificate
//! chain and its private key, and every check `dockhand check` makes on them — the
//! files exist, hold a certificate and a key, the key belongs to the certificate and
//! is mode 0600 or stricter, the certificate is valid now — plus which host names it
//! covers. The agent loads the files through the same [`load_certificate`], so what
//! `check` accepts is what the proxy serves.
//!
//! Nothing here prints key material: errors name the file and the problem only, and
//! [`LoadedCertificate`]'s `Debug` shows names and dates.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use crate::model::CertificateFiles;
use crate::secrets::{chmod_help, loose_mode};

/// A certificate chain with its key, ready for the proxy, and what it says about itself.
#[derive(Clone)]
pub struct LoadedCertificate {
    /// The DNS names of the subject alternative name extension, lowercase, in order.
    pub names: Vec<String>,
    /// Validity, in seconds since the Unix epoch (UTC).
    pub not_before: i64,
    pub not_after: i64,
    /// The chain and the signing key (ring).
    pub key: Arc<CertifiedKey>,
}

impl fmt::Debug for LoadedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCertificate")
            .field("names", &self.names)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Which of the two files a [`CertificateError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateFile {
    Cert,
    Key,
}

/// Why a certificate cannot be served. [`CertificateError::problem`] and
/// [`CertificateError::help`] never include the content of either file.
#[derive(Debug, thiserror::Error)]
#[error("{}; {}", self.problem(), self.help())]
pub enum CertificateError {
    NotFound {
        file: CertificateFile,
        path: PathBuf,
    },
    Unreadable {
        file: CertificateFile,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    LooseKeyPermissions {
        path: PathBuf,
        mode: u32,
    },
    NoCertificate {
        path: PathBuf,
    },
    NoPrivateKey {
        path: PathBuf,
    },
    BadCertificate {
        path: PathBuf,
        detail: String,
    },
    UnsupportedKey {
        path: PathBuf,
    },
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
    },
    Expired {
        path: PathBuf,
        not_after: String,
    },
    NotYetValid {
        path: PathBuf,
        not_before: String,
    },
}

impl CertificateError {
    /// The file the problem is in (so the config error points at its key).
    pub fn file(&self) -> CertificateFile {
        match self {
            CertificateError::NotFound { file, .. } | CertificateError::Unreadable { file, .. } => {
                *file
            }
            CertificateError::LooseKeyPermissions { .. }
            | CertificateError::NoPrivateKey { .. }
            | CertificateError::UnsupportedKey { .. }
            | CertificateError::KeyMismatch { .. } => CertificateFile::Key,
            CertificateError::NoCertificate { .. }
            | CertificateError::BadCertificate { .. }
            | CertificateError::Expired { .. }
            | CertificateError::NotYetValid { .. } => CertificateFile::Cert,
        }
    }

    /// What is wrong, one line.
    pub fn problem(&self) -> String {
        let what = |file: &CertificateFile| match file {
            CertificateFile::Cert => "certificate file",
            CertificateFile::Key => "private key file",
        };
        match self {
            CertificateError::NotFound { file, path } => {
                format!("{} {} does not exist", what(file), path.display())
            }
            CertificateError::Unreadable { file, path, source } => {
                format!("cannot read {} {}: {source}", what(file), path.display())
            }
            CertificateError::LooseKeyPermissions { path, mode } => format!(
                "private key file {} is accessible to other users (mode {mode:04o}); it must be 0600 or stricter",
                path.display()
            ),
            CertificateError::NoCertificate { path } => format!(
                "{} holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)",
                path.display()
            ),
            CertificateError::NoPrivateKey { path } => format!(
                "{} holds no PEM private key (no -----BEGIN PRIVATE KEY----- block)",
                path.display()
            ),
            CertificateError::BadCertificate { path, detail } => {
                format!("{} is not a valid X.509 certificate: {detail}", path.display())
            }
            CertificateError::UnsupportedKey { path } => format!(
                "the private key in {} is not a supported RSA, ECDSA or Ed25519 key",
                path.display()
            ),
            CertificateError::KeyMismatch { cert, key } => format!(
                "the private key in {} does not belong to the certificate in {}",
                key.display(),
                cert.display()
            ),
            CertificateError::Expired { path, not_after } => {
                format!("certificate {} expired on {not_after}", path.display())
            }
            CertificateError::NotYetValid { path, not_before } => format!(
                "certificate {} is not valid before {not_before}",
                path.display()
            ),
        }
    }

    /// What to do about it, one line.
    pub fn help(&self) -> String {
        match self {
            CertificateError::NotFound { .. } => {
                "fix the path (relative to dockhand.toml) or put the file there".into()
            }
            CertificateError::Unreadable { path, .. } => format!(
                "make {} readable by the user running dockhand",
                path.display()
            ),
            CertificateError::LooseKeyPermissions { path, .. } => chmod_help(path),
            CertificateError::NoCertificate { .. } | CertificateError::BadCertificate { .. } => {
                "point `cert` at the PEM certificate (chain) your CA issued, leaf first".into()
            }
            CertificateError::NoPrivateKey { .. } | CertificateError::UnsupportedKey { .. } => {
                "point `key` at the PEM private key the certificate was issued for".into()
            }
            CertificateError::KeyMismatch { .. } => {
                "use the key the certificate was issued for, or the certificate issued for this key"
                    .into()
            }
            CertificateError::Expired { .. } | CertificateError::NotYetValid { .. } => {
                "renew the certificate (or check the machine's clock)".into()
            }
        }
    }
}

/// Reads and checks one certificate and its key, as of `now`.
pub fn load_certificate(
    files: &CertificateFiles,
    now: SystemTime,
) -> Result<LoadedCertificate, CertificateError> {
    let cert_pem = read(&files.cert, CertificateFile::Cert)?;
    let key_metadata = metadata(&files.key, CertificateFile::Key)?;
    if let Some(mode) = loose_mode(&key_metadata) {
        return Err(CertificateError::LooseKeyPermissions {
            path: files.key.clone(),
            mode,
        });
    }
    let key_pem = read(&files.key, CertificateFile::Key)?;

    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    // The PEM error is not shown: it could quote bytes of the key.
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| CertificateError::NoPrivateKey {
            path: files.key.clone(),
        })?;

    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| {
        CertificateError::BadCertificate {
            path: files.cert.clone(),
            detail: e.to_string(),
        }
    })?;
    let validity = leaf.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if now > not_after {
        return Err(CertificateError::Expired {
            path: files.cert.clone(),
            not_after: validity.not_after.to_string(),
        });
    }
    if now < not_before {
        return Err(CertificateError::NotYetValid {
            path: files.cert.clone(),
            not_before: validity.not_before.to_string(),
        });
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }

    let provider = rustls::crypto::ring::default_provider();
    let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertificateError::KeyMismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        },
        rustls::Error::InvalidCertificate(_) => CertificateError::BadCertificate {
            path: files.cert.clone(),
            detail: "its public key cannot be read".into(),
        },
        _ => CertificateError::UnsupportedKey {
            path: files.key.clone(),
        },
    })?;
    Ok(LoadedCertificate {
        names,
        not_before,
        not_after,
        key: Arc::new(key),
    })
}

/// Whether a certificate naming `names` covers `host`: an exact name, or `*.parent`
/// for a host one label below `parent`. Case-insensitive.
pub fn covers(names: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    names.iter().any(|name| {
        let name = name.to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => name == host,
        }
    })
}

fn metadata(path: &Path, file: CertificateFile) -> Result<fs::Metadata, CertificateError> {
    fs::metadata(path).map_err(|source| io_error(path, file, source))
}

fn read(path: &Path, file: CertificateFile) -> Result<Vec<u8>, CertificateError> {
    fs::read(path).map_err(|source| io_error(path, file, source))
}

fn io_error(path: &Path, file: CertificateFile, source: io::Error) -> CertificateError {
    match source.kind() {
        io::ErrorKind::NotFound => CertificateError::NotFound {
            file,
            path: path.to_path_buf(),
        },
        _ => CertificateError::Unreadable {
            file,
            path: path.to_path_buf(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        let names = vec!["example.org".to_string(), "*.example.org".to_string()];
        assert!(covers(&names, "example.org"));
        assert!(covers(&names, "WWW.example.org"));
        assert!(covers(&names, "api.example.org."));
        assert!(!covers(&names, "a.b.example.org"));
        assert!(!covers(&names, "example.com"));
        assert!(!covers(&["*.example.org".to_string()], "example.org"));
    }
}
