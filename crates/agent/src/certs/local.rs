//! The local CA: generated once per state directory, it issues the certificates of
//! `localhost`, `*.localhost` and IP addresses, which no public CA can validate, so `dockhand
//! up` serves HTTPS on a laptop. Its key is mode 0600; its certificate is what `dockhand
//! certs trust` installs. A name constraint limits it to `localhost` names (and addresses),
//! so a copied key cannot impersonate a public site to a machine that trusts it.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};

use crate::certs::store::{check_private, write_private};
use crate::error::{AgentError, Result};
use crate::layout::StateLayout;

/// How long a local leaf certificate is valid (renewed at two thirds, like any other).
pub const LEAF_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The local CA, loaded or created.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

impl LocalCa {
    /// The CA of `layout`, created on first use.
    pub fn load_or_create(layout: &StateLayout) -> Result<LocalCa> {
        let cert_path = layout.local_ca();
        let key_path = cert_path.with_file_name("ca.key");
        if cert_path.exists() && key_path.exists() {
            check_private(&key_path)?;
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).map_err(|e| {
                    AgentError::environment(format!("failed to read {}: {e}", p.display()))
                })
            };
            let cert_pem = read(&cert_path)?;
            let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| {
                AgentError::environment(format!(
                    "{} is not a private key ({e}); move the local-ca directory away to create a new CA",
                    key_path.display()
                ))
            })?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| {
                AgentError::environment(format!(
                    "{} is not a CA certificate ({e}); move the local-ca directory away to create a new CA",
                    cert_path.display()
                ))
            })?;
            return Ok(LocalCa { issuer, cert_pem });
        }
        let key = KeyPair::generate().map_err(internal)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Dockhand");
        dn.push(
            DnType::CommonName,
            format!("Dockhand local CA ({})", hostname()),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName("localhost".into())],
            excluded_subtrees: Vec::new(),
        });
        let now = crate::clock::offset_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + CA_LIFETIME;
        let cert = params.self_signed(&key).map_err(internal)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_private(&cert_path, cert.pem().as_bytes())?;
        // The certificate is public: others may read it (to trust it).
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&cert_path, std::fs::Permissions::from_mode(0o644));
        let issuer = Issuer::new(params, key);
        Ok(LocalCa {
            issuer,
            cert_pem: cert.pem(),
        })
    }

    /// A certificate for `names` (DNS names and IP addresses): its PEM chain and key.
    pub fn issue(&self, names: &[String]) -> Result<(String, String)> {
        let key = KeyPair::generate().map_err(internal)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(internal)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = crate::clock::offset_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + LEAF_LIFETIME;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(internal)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn internal(e: rcgen::Error) -> AgentError {
    AgentError::internal(format!("local CA: {e}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_ca_is_created_once_and_issues_for_localhost_and_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::at(dir.path());
        let ca = LocalCa::load_or_create(&layout).unwrap();
        let key = layout.local_ca().with_file_name("ca.key");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = LocalCa::load_or_create(&layout).unwrap();
        assert_eq!(ca.cert_pem, again.cert_pem);
        let (chain, leaf_key) = again
            .issue(&["shop.localhost".into(), "127.0.0.1".into()])
            .unwrap();
        assert!(leaf_key.contains("PRIVATE KEY"));
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(chain.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c)
            .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(
            names.iter().any(|n| n.contains("shop.localhost")),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n.contains("7f:00:00:01")), "{names:?}");
        // A loose key is refused.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = LocalCa::load_or_create(&layout).err().unwrap();
        assert!(e.message().contains("chmod 600"), "{e}");
    }
}
