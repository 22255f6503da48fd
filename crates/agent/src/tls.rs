//! The agent's side of HTTPS certificates from files: loading `[proxy] certificates` (with
//! the same checks as `dockhand check`) into what the proxy serves at start, and what
//! `status` says about them (names and validity, never the key). The certificate manager
//! (`certs/`) serves them first, beside the certificates it gets itself, and warns before
//! any of them expires — a certificate from a file renews only when someone replaces it.

use std::time::SystemTime;

use dockhand_api::CertificateInfo;
use dockhand_config::{load_certificate, ProxySettings};
use dockhand_proxy::TlsCertificate;

/// What loading the certificates gave: the ones to serve (in file order), their
/// descriptions for `status`, and one message per certificate that could not be used.
#[derive(Default)]
pub(crate) struct LoadedCertificates {
    pub serve: Vec<TlsCertificate>,
    pub info: Vec<CertificateInfo>,
    pub problems: Vec<String>,
    /// Each served certificate's file and end of validity (Unix seconds).
    pub expiries: Vec<(String, i64)>,
}

/// Loads every certificate of `proxy` as of `now`. A certificate that fails (its file
/// changed since the release was checked, say) is left out and reported: the agent
/// keeps serving HTTP and the other certificates rather than refusing to start.
pub(crate) fn load(proxy: &ProxySettings, now: SystemTime) -> LoadedCertificates {
    let mut out = LoadedCertificates::default();
    for files in &proxy.certificates {
        match load_certificate(files, now) {
            Ok(cert) => {
                out.info.push(CertificateInfo {
                    cert: files.cert.display().to_string(),
                    source: dockhand_api::CertSource::File,
                    names: cert.names.clone(),
                    not_before: rfc3339(cert.not_before),
                    not_after: rfc3339(cert.not_after),
                });
                out.expiries
                    .push((files.cert.display().to_string(), cert.not_after));
                out.serve.push(TlsCertificate::new(cert.names, cert.key));
            }
            Err(e) => out.problems.push(format!(
                "certificate {} is not served: {e}",
                files.cert.display()
            )),
        }
    }
    out
}

pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use dockhand_config::CertificateFiles;

    use super::*;

    fn write(dir: &std::path::Path, name: &str, host: &str) -> CertificateFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = CertificateFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        files
    }

    #[test]
    fn a_certificate_that_no_longer_loads_is_left_out_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "good", "good.test");
        let bad = write(dir.path(), "bad", "bad.test");
        std::fs::remove_file(&bad.key).unwrap();
        let proxy = ProxySettings {
            https_listen: Some("127.0.0.1:0".parse().unwrap()),
            certificates: vec![bad.clone(), good.clone()],
            ..ProxySettings::default()
        };
        let loaded = load(&proxy, crate::clock::now());
        assert_eq!(loaded.serve.len(), 1);
        assert_eq!(loaded.serve[0].names(), ["good.test"]);
        assert_eq!(loaded.info.len(), 1);
        assert_eq!(loaded.info[0].names, ["good.test"]);
        assert_eq!(loaded.info[0].cert, good.cert.display().to_string());
        assert!(
            loaded.info[0].not_after.ends_with('Z'),
            "{:?}",
            loaded.info[0]
        );
        assert_eq!(loaded.problems.len(), 1);
        assert!(
            loaded.problems[0].contains("bad.pem is not served")
                && loaded.problems[0].contains("does not exist"),
            "{:?}",
            loaded.problems
        );
    }
}
