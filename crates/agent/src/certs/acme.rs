//! One ACME order (RFC 8555, `instant-acme`): the account (created once per CA and kept in
//! the state directory, registered again if the CA forgot it), the order for a set of names,
//! one challenge per authorization — answered by our own proxy (HTTP-01 tokens, TLS-ALPN-01
//! certificates) or by the DNS provider —, the CSR for a fresh key, and the chain.
//!
//! Every request goes through [`Http`]: our roots (webpki's, plus `[proxy.acme] ca`), a
//! connect and a per-request timeout, and the CA's `Retry-After` kept for the back-off.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dockhand_config::{AcmeSettings, ChallengeKind, Secrets};
use dockhand_proxy::rustls;
use dockhand_proxy::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use dockhand_proxy::Challenges;
use http_body_util::BodyExt;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    ExternalAccountKey, HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

use crate::certs::dns::DnsSolver;
use crate::certs::store::{check_private, write_private};
use crate::layout::StateLayout;

/// One request to the CA may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The CA has this long to validate every challenge of an order…
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(90);
/// …and this long to issue once finalized.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why an order failed, for the back-off and the message.
#[derive(Debug)]
pub struct IssueError {
    pub message: String,
    /// The CA said when to come back (a rate limit).
    pub retry_after: Option<Duration>,
    /// The challenge type that failed, per name.
    pub failed: Vec<(String, ChallengeKind)>,
}

impl IssueError {
    fn new(message: impl Into<String>) -> IssueError {
        IssueError {
            message: message.into(),
            retry_after: None,
            failed: Vec::new(),
        }
    }
}

/// A certificate the CA issued: its PEM chain and the PEM key of its fresh key pair.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// What one order needs.
pub struct Order<'a> {
    pub acme: &'a AcmeSettings,
    pub secrets: &'a Secrets,
    pub layout: &'a StateLayout,
    pub challenges: &'a Challenges,
    pub dns: Option<&'a DnsSolver>,
    pub names: &'a [String],
    /// The challenge types each name may use, in order.
    pub preferences: &'a (dyn Fn(&str) -> Vec<ChallengeKind> + Sync),
    /// Other proxies that must answer the HTTP-01 challenges too (the cluster's ingress
    /// peers): told before the CA is, removed afterwards.
    pub relay: Option<&'a dyn Relay>,
}

/// Where an order's HTTP-01 answers are also published, besides `Order::challenges`: the
/// other proxies a validation request may reach (every ingress node of a cluster).
pub trait Relay: Sync {
    /// Publishes the answer and returns once every peer acknowledged it (or said why not).
    fn add_http01<'a>(
        &'a self,
        token: &'a str,
        key_authorization: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
    /// Takes the answer back (best effort).
    fn remove_http01<'a>(&'a self, token: &'a str)
        -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Places one order for `order.names` and returns the certificate.
pub async fn issue(order: &Order<'_>) -> Result<Issued, IssueError> {
    let http = Http::new(order.acme.ca.as_deref())?;
    let retry_after = http.retry_after.clone();
    let outcome = issue_with(order, http).await;
    outcome.map_err(|mut e| {
        if e.retry_after.is_none() {
            e.retry_after = lock(&retry_after)
                .take()
                .and_then(|t| t.duration_since(crate::clock::now()).ok());
        }
        e
    })
}

async fn issue_with(order: &Order<'_>, http: Http) -> Result<Issued, IssueError> {
    let account = account(order, http.clone(), false).await?;
    let identifiers: Vec<Identifier> = order
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let new_order = NewOrder::new(&identifiers);
    let mut acme_order = match account.new_order(&new_order).await {
        Ok(o) => o,
        // The CA no longer knows the account (a test CA restarted, an account deleted).
        Err(instant_acme::Error::Api(p)) if is_problem(&p, "accountDoesNotExist") => {
            let account = account_fresh(order, http.clone()).await?;
            account
                .new_order(&new_order)
                .await
                .map_err(|e| acme_error("placing the order", e))?
        }
        Err(e) => return Err(acme_error("placing the order", e)),
    };

    // Answer every pending authorization; undo the answers whatever happens next.
    let mut answers = Answers {
        challenges: order.challenges,
        relay: order.relay,
        dns: order.dns,
        http01: Vec::new(),
        alpn: Vec::new(),
        dns_records: Vec::new(),
    };
    let mut chosen: Vec<(String, ChallengeKind)> = Vec::new();
    let result = async {
        let mut authorizations = acme_order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| acme_error("reading an authorization", e))?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(IssueError::new(format!(
                        "the authorization of {} is {other:?}",
                        authz.identifier()
                    )))
                }
            }
            let name = authz.identifier().to_string();
            let offered: Vec<ChallengeKind> = authz
                .challenges
                .iter()
                .filter_map(|c| kind_of(&c.r#type))
                .collect();
            let wanted = (order.preferences)(&name);
            let Some(kind) = wanted.iter().copied().find(|k| offered.contains(k)) else {
                return Err(IssueError::new(format!(
                    "the CA offers {} for {name}, and it is configured for {}; set `challenge` in [proxy.acme] or on the route",
                    list(&offered),
                    list(&wanted)
                )));
            };
            let mut challenge = authz
                .challenge(challenge_type(kind))
                .ok_or_else(|| IssueError::new("the chosen challenge disappeared"))?;
            let key_auth = challenge.key_authorization();
            let bare = name.strip_prefix("*.").unwrap_or(&name).to_string();
            match kind {
                ChallengeKind::Http01 => {
                    answers.add_http01(&challenge.token, key_auth.as_str()).await?
                }
                ChallengeKind::TlsAlpn01 => {
                    answers.add_alpn(&bare, key_auth.digest().as_ref())?
                }
                ChallengeKind::Dns01 => {
                    answers.add_dns(&bare, &key_auth.dns_value()).await?
                }
            }
            chosen.push((name.clone(), kind));
            challenge
                .set_ready()
                .await
                .map_err(|e| acme_error(&format!("starting the {} validation of {name}", kind.as_str()), e))?;
        }
        let status = acme_order
            .poll_ready(&RetryPolicy::new().timeout(VALIDATION_TIMEOUT))
            .await
            .map_err(|e| acme_error("waiting for the validation", e))?;
        if status != OrderStatus::Ready {
            return Err(validation_failure(&mut acme_order, &chosen).await);
        }
        Ok(())
    }
    .await;
    answers.undo().await;
    if let Err(mut e) = result {
        if e.failed.is_empty() && e.message.contains("validation") {
            e.failed = chosen;
        }
        return Err(e);
    }

    let key = rcgen::KeyPair::generate()
        .map_err(|e| IssueError::new(format!("generating the certificate key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(order.names.to_vec())
        .map_err(|e| IssueError::new(format!("preparing the request: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| IssueError::new(format!("signing the request: {e}")))?;
    acme_order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| acme_error("finalizing the order", e))?;
    let chain_pem = acme_order
        .poll_certificate(&RetryPolicy::new().timeout(ISSUE_TIMEOUT))
        .await
        .map_err(|e| acme_error("downloading the certificate", e))?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The account for the configured CA: the stored one, else a new one (stored 0600).
async fn account(order: &Order<'_>, http: Http, _fresh: bool) -> Result<Account, IssueError> {
    let path = order.layout.acme_account(&order.acme.directory);
    if path.exists() {
        check_private(&path).map_err(|e| IssueError::new(e.message().to_string()))?;
        let bytes = std::fs::read(&path)
            .map_err(|e| IssueError::new(format!("failed to read {}: {e}", path.display())))?;
        let credentials: AccountCredentials = serde_json::from_slice(&bytes).map_err(|e| {
            IssueError::new(format!(
                "{} is not an ACME account file ({e}); move it away to register a new account",
                path.display()
            ))
        })?;
        return Account::builder_with_http(Box::new(http))
            .from_credentials(credentials)
            .await
            .map_err(|e| acme_error(&format!("reaching the CA at {}", order.acme.directory), e));
    }
    account_fresh(order, http).await
}

/// Registers a new account with the CA and stores it.
async fn account_fresh(order: &Order<'_>, http: Http) -> Result<Account, IssueError> {
    let contact = order.acme.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let eab = match &order.acme.eab {
        Some(eab) => {
            let value = eab
                .hmac_key
                .resolve(order.secrets)
                .map_err(|e| IssueError::new(e.to_string()))?;
            use base64::Engine as _;
            let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(value.trim().trim_end_matches('='))
                .map_err(|_| {
                    IssueError::new("the external account binding's hmac_key is not base64url; copy it as your CA shows it")
                })?;
            Some(ExternalAccountKey::new(eab.kid.clone(), &key))
        }
        None => None,
    };
    let (account, credentials) = Account::builder_with_http(Box::new(http))
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            order.acme.directory.clone(),
            eab.as_ref(),
        )
        .await
        .map_err(|e| {
            acme_error(
                &format!(
                    "registering an account with the CA at {}",
                    order.acme.directory
                ),
                e,
            )
        })?;
    let json = serde_json::to_vec(&credentials)
        .map_err(|e| IssueError::new(format!("saving the account: {e}")))?;
    let path = order.layout.acme_account(&order.acme.directory);
    write_private(&path, &json).map_err(|e| IssueError::new(e.message().to_string()))?;
    Ok(account)
}

/// Why the order did not become ready: each failed authorization's problem.
async fn validation_failure(
    acme_order: &mut instant_acme::Order,
    chosen: &[(String, ChallengeKind)],
) -> IssueError {
    let mut reasons = Vec::new();
    let mut failed = Vec::new();
    let mut authorizations = acme_order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let _ = authz.refresh().await;
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let name = authz.identifier().to_string();
        let detail = authz
            .challenges
            .iter()
            .find_map(|c| c.error.as_ref())
            .map(problem_text)
            .unwrap_or_else(|| format!("{:?}", authz.status).to_lowercase());
        if let Some((_, kind)) = chosen.iter().find(|(n, _)| *n == name) {
            failed.push((name.clone(), *kind));
            reasons.push(format!("{name} ({}): {detail}", kind.as_str()));
        } else {
            reasons.push(format!("{name}: {detail}"));
        }
    }
    let mut e = IssueError::new(format!(
        "the CA could not validate {}",
        if reasons.is_empty() {
            "the order".to_string()
        } else {
            reasons.join("; ")
        }
    ));
    e.failed = failed;
    e
}

/// The answers set up for one order, removed again by `undo`.
struct Answers<'a> {
    challenges: &'a Challenges,
    relay: Option<&'a dyn Relay>,
    dns: Option<&'a DnsSolver>,
    http01: Vec<String>,
    alpn: Vec<String>,
    dns_records: Vec<(String, String)>,
}

impl Answers<'_> {
    async fn add_http01(&mut self, token: &str, key_auth: &str) -> Result<(), IssueError> {
        self.challenges.add_http01(token, key_auth);
        self.http01.push(token.to_string());
        if let Some(relay) = self.relay {
            relay.add_http01(token, key_auth).await.map_err(|e| {
                IssueError::new(format!("publishing the HTTP-01 answer to the peers: {e}"))
            })?;
        }
        Ok(())
    }

    fn add_alpn(&mut self, name: &str, digest: &[u8]) -> Result<(), IssueError> {
        let key = alpn_certificate(name, digest)?;
        self.challenges.add_tls_alpn01(name, key);
        self.alpn.push(name.to_string());
        Ok(())
    }

    async fn add_dns(&mut self, name: &str, value: &str) -> Result<(), IssueError> {
        let Some(dns) = self.dns else {
            return Err(IssueError::new(format!(
                "{name} uses dns-01 but no DNS provider is configured; add [proxy.acme.dns]"
            )));
        };
        let record = format!("_acme-challenge.{name}");
        // Remember it before setting it: a hook that half-worked is undone too.
        self.dns_records.push((record.clone(), value.to_string()));
        dns.set(&record, value)
            .await
            .map_err(|e| IssueError::new(format!("setting the DNS-01 record {record}: {e}")))?;
        dns.wait_visible(&record, value)
            .await
            .map_err(|e| IssueError::new(format!("DNS-01 record {record}: {e}")))
    }

    async fn undo(self) {
        for token in &self.http01 {
            self.challenges.remove_http01(token);
            if let Some(relay) = self.relay {
                relay.remove_http01(token).await;
            }
        }
        for name in &self.alpn {
            self.challenges.remove_tls_alpn01(name);
        }
        if let Some(dns) = self.dns {
            for (record, value) in &self.dns_records {
                if let Err(e) = dns.unset(record, value).await {
                    tracing::warn!(record = %record, "failed to remove the DNS-01 record: {e}");
                }
            }
        }
    }
}

/// The TLS-ALPN-01 certificate for `name` (RFC 8737): self-signed, naming `name` alone,
/// with the critical acmeIdentifier extension holding the key authorization's digest.
pub fn alpn_certificate(
    name: &str,
    digest: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, IssueError> {
    let fail =
        |e: rcgen::Error| IssueError::new(format!("making the TLS-ALPN-01 certificate: {e}"));
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(fail)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| IssueError::new(format!("making the TLS-ALPN-01 key: {e}")))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    )))
}

fn kind_of(t: &ChallengeType) -> Option<ChallengeKind> {
    match t {
        ChallengeType::Http01 => Some(ChallengeKind::Http01),
        ChallengeType::TlsAlpn01 => Some(ChallengeKind::TlsAlpn01),
        ChallengeType::Dns01 => Some(ChallengeKind::Dns01),
        _ => None,
    }
}

fn challenge_type(k: ChallengeKind) -> ChallengeType {
    match k {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        ChallengeKind::Dns01 => ChallengeType::Dns01,
    }
}

fn list(kinds: &[ChallengeKind]) -> String {
    if kinds.is_empty() {
        return "nothing usable".into();
    }
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_problem(p: &instant_acme::Problem, kind: &str) -> bool {
    p.r#type
        .as_deref()
        .is_some_and(|t| t.ends_with(&format!(":{kind}")))
}

fn problem_text(p: &instant_acme::Problem) -> String {
    let kind = p
        .r#type
        .as_deref()
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or("error");
    match &p.detail {
        Some(d) => format!("{kind}: {d}"),
        None => kind.to_string(),
    }
}

/// An instant-acme error as a sentence about what was being done.
fn acme_error(doing: &str, e: instant_acme::Error) -> IssueError {
    let message = match &e {
        instant_acme::Error::Api(p) if is_problem(p, "rateLimited") => {
            format!("the CA refused {doing} because of a rate limit ({}); the next attempt waits as long as it asks", problem_text(p))
        }
        instant_acme::Error::Api(p) => format!("the CA refused {doing}: {}", problem_text(p)),
        instant_acme::Error::Timeout(_) => format!("the CA did not finish {doing} in time"),
        instant_acme::Error::Other(inner) if inner.is::<Unreachable>() => {
            format!("{inner}; is the CA up, and is `directory` in [proxy.acme] right?")
        }
        instant_acme::Error::Other(inner) => format!("{doing} failed: {inner}"),
        other => format!("{doing} failed: {other}"),
    };
    IssueError::new(message)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The HTTP client instant-acme talks to the CA through.
#[derive(Clone)]
pub struct Http {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        BodyWrapper<Bytes>,
    >,
    /// The latest `Retry-After` of an error answer (429, 503).
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl Http {
    /// A client trusting webpki's roots and the PEM certificates in `ca`.
    pub fn new(ca: Option<&std::path::Path>) -> Result<Http, IssueError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = ca {
            use rustls::pki_types::pem::PemObject;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .map_err(|e| IssueError::new(format!("failed to read {}: {e}", ca.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    IssueError::new(format!(
                        "{} is not a PEM certificate file: {e}",
                        ca.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(IssueError::new(format!(
                    "{} holds no PEM certificate; `ca` must be the root certificate(s) of the ACME server",
                    ca.display()
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| IssueError::new(format!("{}: {e}", ca.display())))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| IssueError::new(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Http {
            client,
            retry_after: Arc::default(),
        })
    }
}

impl Http {
    /// Sends one request (the caller bounds it with a timeout).
    pub async fn send(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        self.client.request(request).await.map_err(|e| describe(&e))
    }
}

impl HttpClient for Http {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        let retry_after = self.retry_after.clone();
        let uri = req.uri().clone();
        Box::pin(async move {
            let exchange = async {
                let response = client.request(req).await.map_err(|e| {
                    instant_acme::Error::Other(Box::new(Unreachable(uri.to_string(), describe(&e))))
                })?;
                let (parts, body) = response.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(|e| instant_acme::Error::Other(Box::new(e)))?
                    .to_bytes();
                Ok::<_, instant_acme::Error>((parts, body))
            };
            let (parts, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .map_err(|_| {
                    instant_acme::Error::Other(Box::new(Unreachable(
                        uri.to_string(),
                        format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
                    )))
                })??;
            if parts.status.as_u16() == 429 || parts.status.as_u16() == 503 {
                if let Some(at) = parts
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                {
                    *lock(&retry_after) = Some(at);
                }
            }
            Ok(BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}

/// `Retry-After`: seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(secs) => Some(crate::clock::now() + Duration::from_secs(secs)),
        Err(_) => httpdate::parse_http_date(value).ok(),
    }
}

/// The innermost cause of a client error (the refused connection, the bad certificate).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[derive(Debug)]
struct Unreachable(String, String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot reach {}: {}", self.0, self.1)
    }
}

impl std::error::Error for Unreachable {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alpn_certificate_names_the_host_and_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let key = alpn_certificate("shop.example.org", &digest).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&key.cert[0]).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(&ext.value[..2], &[0x04, 0x20]);
        assert_eq!(&ext.value[2..], &digest);
    }

    #[tokio::test]
    async fn a_rate_limited_answer_keeps_its_retry_after_for_the_back_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let body = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates"}"#;
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3600\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        });
        let http = Http::new(None).unwrap();
        let request = http::Request::get(format!("http://{addr}/new-order"))
            .body(BodyWrapper::default())
            .unwrap();
        let response = HttpClient::request(&http, request).await.unwrap();
        assert_eq!(response.parts.status, 429);
        let at = lock(&http.retry_after).expect("Retry-After kept");
        let wait = at.duration_since(crate::clock::now()).unwrap();
        assert!(wait > Duration::from_secs(3500), "{wait:?}");
        // The back-off never retries before it.
        let delay = crate::certs::plan::backoff(1, Duration::from_secs(60), 0.0, Some(wait));
        assert!(delay >= wait);
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let soon = parse_retry_after("120").unwrap();
        let left = soon.duration_since(crate::clock::now()).unwrap();
        assert!(left > Duration::from_secs(100) && left <= Duration::from_secs(120));
        assert!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
        assert!(parse_retry_after("soon").is_none());
    }
}
