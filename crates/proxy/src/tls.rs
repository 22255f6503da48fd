//! HTTPS termination: the certificate store the TLS handshake picks a certificate
//! from (by SNI: exact name, then a `*.` wildcard one label deep, then the first
//! certificate as the default), and the rustls server configuration built once per
//! proxy around it (ring provider, ALPN `h2` and `http/1.1`, session tickets).
//!
//! The store's contents sit behind an `ArcSwap`, so a running proxy can be given new
//! certificates ([`crate::ProxyHandle::set_certificates`]) without a restart; a
//! handshake in progress keeps the set it started with.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::acme::{Challenges, ACME_TLS_ALPN};

/// How many TLS 1.2 sessions the proxy remembers for resumption by session id
/// (TLS 1.3 resumes through stateless tickets).
const SESSION_CACHE_SIZE: usize = 4096;

/// One certificate chain with its private key, and the DNS names it serves.
#[derive(Clone)]
pub struct TlsCertificate {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

impl TlsCertificate {
    /// `names` are the certificate's DNS names (`example.org`, `*.example.org`);
    /// they are matched case-insensitively against the client's SNI.
    pub fn new(names: Vec<String>, key: Arc<CertifiedKey>) -> TlsCertificate {
        let names = names.into_iter().map(|n| n.to_ascii_lowercase()).collect();
        TlsCertificate { names, key }
    }

    /// The DNS names this certificate is selected for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The chain and signing key handed to rustls.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.key
    }
}

impl fmt::Debug for TlsCertificate {
    /// Names only: never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsCertificate")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// The certificates the proxy serves; shared by every worker, replaceable while the
/// proxy runs.
pub struct CertStore {
    current: ArcSwap<CertSet>,
    /// TLS-ALPN-01 challenge certificates (and HTTP-01 tokens, which the proxy serves
    /// from the same set).
    challenges: Arc<Challenges>,
}

impl CertStore {
    /// A store serving `certificates`; the first one is the default for a client that
    /// sends no SNI or a name no certificate covers.
    pub fn new(certificates: Vec<TlsCertificate>) -> CertStore {
        CertStore {
            current: ArcSwap::from_pointee(CertSet::new(certificates)),
            challenges: Arc::default(),
        }
    }

    /// The ACME challenges answered by the proxy this store belongs to.
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// Whether a served certificate names `host` (exactly or by a wildcard one label
    /// deep), as opposed to `host` getting the default certificate.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        self.current.load().lookup(&host).is_some()
    }

    /// Replaces every certificate at once; new handshakes use the new set.
    pub fn replace(&self, certificates: Vec<TlsCertificate>) {
        self.current.store(Arc::new(CertSet::new(certificates)));
    }

    /// The certificates served now, in order (the first is the default).
    pub fn certificates(&self) -> Vec<TlsCertificate> {
        self.current.load().all.clone()
    }

    /// The certificate a client asking for `server_name` gets (`None`: no SNI).
    pub fn select(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.current.load().select(server_name)
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("certificates", &self.current.load().all)
            .finish()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A TLS-ALPN-01 validation offers `acme-tls/1` alone; browsers never offer it.
        if let Some(mut alpn) = hello.alpn() {
            if alpn.any(|p| p == ACME_TLS_ALPN) {
                return self.challenges.tls_alpn01_certificate(hello.server_name());
            }
        }
        self.select(hello.server_name())
    }
}

/// One immutable generation of the store, indexed for the handshake.
struct CertSet {
    all: Vec<TlsCertificate>,
    /// Lowercase exact name → certificate.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `example.org` for a certificate naming `*.example.org`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertSet {
    fn new(all: Vec<TlsCertificate>) -> CertSet {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in &all {
            for name in &cert.names {
                // The first certificate to name a host wins, like the file's order.
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard
                        .entry(parent.to_owned())
                        .or_insert_with(|| cert.key.clone()),
                    None => exact
                        .entry(name.clone())
                        .or_insert_with(|| cert.key.clone()),
                };
            }
        }
        CertSet {
            all,
            exact,
            wildcard,
        }
    }

    fn select(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            let name = name.strip_suffix('.').unwrap_or(name);
            let found = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                self.lookup(&name.to_ascii_lowercase())
            } else {
                self.lookup(name)
            };
            if found.is_some() {
                return found;
            }
        }
        self.all.first().map(|c| c.key.clone())
    }

    fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(key) = self.exact.get(name) {
            return Some(key.clone());
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).cloned()
    }
}

/// The rustls server configuration of a proxy: certificates from `store`, ALPN
/// `h2` then `http/1.1` (and `acme-tls/1` for validations), TLS 1.2 and 1.3 with ring, session resumption by cache and
/// tickets.
pub(crate) fn server_config(store: Arc<CertStore>) -> Result<ServerConfig, rustls::Error> {
    use rustls::crypto::ring::{cipher_suite as cs, default_provider};
    // The server's order decides (`ignore_client_order`): AES-128-GCM and ChaCha20 with
    // SHA-256 first. Their key schedule runs on SHA-256, which has instructions of its own on
    // current CPUs, while OpenSSL clients ask for AES-256-GCM-SHA384 first, whose SHA-384
    // (SHA-512) HMACs were a tenth of a resumed handshake's CPU (bench: handshakes).
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ],
        kx_groups: kx_groups(),
        ..default_provider()
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store);
    // The server's order decides; `acme-tls/1` is chosen only by a client offering
    // nothing else (a TLS-ALPN-01 validation), and such a connection is closed after the
    // handshake.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.ignore_client_order = true;
    // One ticket per handshake: a client resuming gets a fresh one each time (OpenSSL sends
    // one on resumption too); the default two cost a second encryption and record each.
    config.send_tls13_tickets = 1;
    Ok(config)
}

/// The key exchange groups (X25519, P-256, P-384, in that order): graviola's where the CPU has
/// what its assembly needs (x86-64 with AES-NI, CLMUL, AVX2, BMI1/2 and ADX: since about 2013),
/// else ring's. Every handshake, resumed ones too, runs one X25519 exchange, the largest part
/// of a resumed handshake's CPU with ring's portable field arithmetic (bench: handshakes).
/// Only the key exchange: signatures, ciphers, tickets and hashes stay ring's.
fn kx_groups() -> Vec<&'static dyn rustls::crypto::SupportedKxGroup> {
    if graviola_runs_here() {
        vec![
            &rustls_graviola::kx::X25519,
            &rustls_graviola::kx::P256,
            &rustls_graviola::kx::P384,
        ]
    } else {
        rustls::crypto::ring::default_provider().kx_groups
    }
}

/// Whether this CPU has the features graviola asserts at its first use.
fn graviola_runs_here() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("avx")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("adx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    fn cert(names: &[&str]) -> TlsCertificate {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.clone()).unwrap();
        let c = params.self_signed(&key).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        let chain = vec![CertificateDer::from(c.der().to_vec())];
        TlsCertificate::new(names, Arc::new(CertifiedKey::new(chain, signing)))
    }

    fn same(a: &Option<Arc<CertifiedKey>>, b: &TlsCertificate) -> bool {
        a.as_ref().is_some_and(|a| Arc::ptr_eq(a, &b.key))
    }

    #[test]
    fn selects_exact_then_wildcard_then_default() {
        let first = cert(&["first.test"]);
        let wild = cert(&["*.example.test"]);
        let apex = cert(&["example.test", "www.example.test"]);
        let store = CertStore::new(vec![first.clone(), wild.clone(), apex.clone()]);
        assert!(same(&store.select(Some("www.example.test")), &apex));
        assert!(same(&store.select(Some("WWW.Example.Test.")), &apex));
        assert!(same(&store.select(Some("api.example.test")), &wild));
        assert!(same(&store.select(Some("example.test")), &apex));
        // A wildcard covers one label only.
        assert!(same(&store.select(Some("a.b.example.test")), &first));
        assert!(same(&store.select(Some("other.test")), &first));
        assert!(same(&store.select(None), &first));
    }

    #[test]
    fn replace_swaps_the_whole_set() {
        let old = cert(&["a.test"]);
        let new = cert(&["b.test"]);
        let store = CertStore::new(vec![old.clone()]);
        store.replace(vec![new.clone()]);
        assert!(same(&store.select(Some("a.test")), &new));
        assert_eq!(store.certificates()[0].names(), ["b.test"]);
        assert!(CertStore::new(Vec::new()).select(Some("a.test")).is_none());
        assert!(!format!("{store:?}").contains("PRIVATE"));
    }
}
