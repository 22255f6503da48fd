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
}

impl CertStore {
    /// A store serving `certificates`; the first one is the default for a client that
    /// sends no SNI or a name no certificate covers.
    pub fn new(certificates: Vec<TlsCertificate>) -> CertStore {
        CertStore {
            current: ArcSwap::from_pointee(CertSet::new(certificates)),
        }
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
/// `h2` then `http/1.1`, TLS 1.2 and 1.3 with ring, session resumption by cache and
/// tickets.
pub(crate) fn server_config(store: Arc<CertStore>) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
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
