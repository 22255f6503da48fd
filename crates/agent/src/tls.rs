//! The agent's side of HTTPS: loading `[proxy] certificates` from their files (with the
//! same checks as `dockhand check`) into what the proxy serves, and what `status` says
//! about them (names and validity, never the key).

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
                    names: cert.names.clone(),
                    not_before: rfc3339(cert.not_before),
                    not_after: rfc3339(cert.not_after),
                });
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

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
