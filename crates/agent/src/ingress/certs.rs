//! HTTPS on the cluster's ingress: the `[proxy] certificates` files (Swarm secrets mounted
//! into the task) and, for the hosts no file covers, ACME certificates **obtained once for
//! every ingress node**.
//!
//! The ingress tasks find each other as `tasks.<app>-ingress` in Swarm's DNS; the one with the
//! lowest overlay address is the issuer ([`issuer`]). It orders with the single-host agent's
//! `certs::acme::issue`, handing each HTTP-01 answer to every peer over the peer port
//! (`peer.rs`) before the CA is told to validate, so the validation request may reach any
//! ingress node. Every task — the issuer too — asks its peers for their certificates every
//! [`FETCH_EVERY`] (and at once when the issuer nudges it after an issuance) and keeps any
//! that lasts longer than its own, so a task that becomes the issuer continues from what it
//! holds. Certificates, their renewal state and the ACME account live mode 0600 in the
//! node-local volume mounted at the state directory, so a restarted task serves them at once
//! without a new order. Renewal is due at two thirds of the lifetime ([`due_at`]), a failure
//! retried with the certificate manager's back-off and jitter.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dockhand_config::{AppConfig, ChallengeKind, LoadedCertificate, Secrets};
use dockhand_proxy::{ProxyHandle, TlsCertificate};
use tokio::sync::Notify;

use super::peer::{self, PeerKey, Request, Response, SetBundle};
use crate::certs::acme::{self, Relay};
use crate::certs::plan::{self, Source};
use crate::certs::store::{self, SetFiles, SetRecord};
use crate::certs::{retry_base, unix_now};
use crate::layout::StateLayout;

/// How often a task asks its peers for their certificates.
pub const FETCH_EVERY: Duration = Duration::from_secs(30);
/// One ACME order may take this long.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// The issuer among the ingress tasks at `seen` (Swarm's DNS) and `own` (this task's
/// address, when the DNS lists it already): the lowest address. `None` while nothing is seen.
pub fn issuer(own: Option<IpAddr>, seen: &[IpAddr]) -> Option<IpAddr> {
    seen.iter().copied().chain(own).min()
}

/// When a set is next due for an order: at once without a certificate (or with one that
/// misses a wanted name), at two thirds of its lifetime otherwise — but after a failure not
/// before the stored retry time.
pub fn due_at(current: Option<(i64, i64)>, covers_all: bool, record: &SetRecord) -> i64 {
    let at = match current {
        Some((not_before, not_after)) if covers_all => plan::renew_at(not_before, not_after, None),
        _ => i64::MIN,
    };
    match record.next_attempt {
        Some(retry) if record.failures > 0 => at.max(retry),
        _ => at,
    }
}

/// One managed certificate set.
struct Held {
    wanted: plan::Wanted,
    files: SetFiles,
    current: Option<LoadedCertificate>,
    record: SetRecord,
}

impl Held {
    fn covers_all(&self) -> bool {
        self.current.as_ref().is_some_and(|c| {
            self.wanted
                .names
                .iter()
                .all(|n| dockhand_config::covers(&c.names, n))
        })
    }
}

/// The ingress task's certificates: what it serves, and how it gets more.
pub struct Keeper {
    config: AppConfig,
    layout: StateLayout,
    proxy: ProxyHandle,
    files: Vec<TlsCertificate>,
    key: Arc<PeerKey>,
    sets: Mutex<BTreeMap<String, Held>>,
    nudge: Notify,
    retry_base: Duration,
}

impl Keeper {
    /// A keeper serving `files` and the certificates stored under `layout` for the hosts of
    /// `config` no file covers (`file_names`: the files' names).
    pub fn new(
        config: AppConfig,
        layout: StateLayout,
        proxy: ProxyHandle,
        files: Vec<TlsCertificate>,
        key: Arc<PeerKey>,
    ) -> Keeper {
        let file_names: Vec<Vec<String>> = files.iter().map(|f| f.names().to_vec()).collect();
        let mut sets = BTreeMap::new();
        for wanted in plan::wanted(&config, &file_names) {
            if wanted.source != Source::Acme {
                tracing::warn!(
                    "{} need the local CA, which a cluster's ingress does not run; they get the default certificate",
                    wanted.names.join(", ")
                );
                continue;
            }
            let files = store::set_files(&layout, wanted.source, &wanted.id);
            let record = files.read_record();
            let current = match files.load_certificate(crate::clock::now()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("{}; a new certificate is requested", e.message());
                    None
                }
            };
            if let Some(c) = &current {
                tracing::info!(
                    names = %c.names.join(", "),
                    "serving the stored certificate (valid until {})",
                    crate::tls::rfc3339(c.not_after)
                );
            }
            sets.insert(
                wanted.id.clone(),
                Held {
                    wanted,
                    files,
                    current,
                    record,
                },
            );
        }
        Keeper {
            config,
            layout,
            proxy,
            files,
            key,
            sets: Mutex::new(sets),
            nudge: Notify::new(),
            retry_base: retry_base(),
        }
    }

    /// Gives the proxy every certificate: the files first (the first is the default), then
    /// the ACME ones.
    pub fn publish(&self) {
        let mut all = self.files.clone();
        for held in lock(&self.sets).values() {
            if let Some(c) = &held.current {
                all.push(TlsCertificate::new(c.names.clone(), c.key.clone()));
            }
        }
        self.proxy.set_certificates(all);
    }

    /// Answers one authentic request of a peer.
    pub fn handle(&self, request: Request) -> Response {
        match request {
            Request::PutHttp01 {
                token,
                key_authorization,
            } => {
                self.proxy
                    .challenges()
                    .add_http01(&token, &key_authorization);
                Response::Ok
            }
            Request::RemoveHttp01 { token } => {
                self.proxy.challenges().remove_http01(&token);
                Response::Ok
            }
            Request::Certificates => {
                let sets = lock(&self.sets)
                    .iter()
                    .filter(|(_, h)| h.current.is_some())
                    .filter_map(|(id, h)| {
                        let bundle_pem = std::fs::read_to_string(h.files.bundle()).ok()?;
                        Some(SetBundle {
                            id: id.clone(),
                            bundle_pem,
                        })
                    })
                    .collect();
                Response::Certificates { sets }
            }
            Request::Nudge => {
                self.nudge.notify_one();
                Response::Ok
            }
        }
    }

    /// Keeps the certificates current until the runtime stops.
    pub async fn run(self: Arc<Self>) {
        if lock(&self.sets).is_empty() {
            return;
        }
        let name = format!("tasks.{}", dockhand_cluster::ingress_name(&self.config.app));
        let mut was_issuer: Option<bool> = None;
        loop {
            let (own, peers) = find_peers(&name).await;
            let mut seen: Vec<IpAddr> = peers.clone();
            seen.extend(own);
            let is_issuer = own.is_some() && issuer(own, &seen) == own;
            if own.is_some() && was_issuer != Some(is_issuer) {
                match is_issuer {
                    true => tracing::info!("this task is the issuer of the ingress certificates"),
                    false => tracing::info!(
                        issuer = ?issuer(own, &seen),
                        "another ingress task issues the certificates; this one fetches them"
                    ),
                }
                was_issuer = Some(is_issuer);
            }
            self.adopt_from(&peers).await;
            let mut next = unix_now() + FETCH_EVERY.as_secs() as i64;
            if is_issuer {
                next = next.min(self.issue_due(&peers).await);
            } else if own.is_none() {
                // Swarm's DNS lists a new task within a moment.
                next = unix_now() + 2;
            }
            let wait = Duration::from_secs(
                (next - unix_now()).clamp(1, FETCH_EVERY.as_secs() as i64) as u64,
            );
            tokio::select! {
                _ = self.nudge.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Asks every peer for its certificates and keeps each that lasts longer than the one
    /// held (and names every wanted host).
    async fn adopt_from(&self, peers: &[IpAddr]) {
        let answers = futures_util::future::join_all(peers.iter().map(|ip| {
            let addr = SocketAddr::new(*ip, peer::PEER_PORT);
            async move {
                (
                    addr,
                    peer::call(addr, &self.key, &Request::Certificates).await,
                )
            }
        }))
        .await;
        let mut changed = false;
        for (addr, answer) in answers {
            let sets = match answer {
                Ok(Response::Certificates { sets }) => sets,
                Ok(other) => {
                    tracing::warn!(peer = %addr, "unexpected answer to a certificate request: {other:?}");
                    continue;
                }
                Err(e) => {
                    tracing::debug!("{e}");
                    continue;
                }
            };
            for set in sets {
                changed |= self.adopt(&addr, &set);
            }
        }
        if changed {
            self.publish();
        }
    }

    /// Keeps `set` from the peer at `from` when it is better than the held one.
    fn adopt(&self, from: &SocketAddr, set: &SetBundle) -> bool {
        let mut sets = lock(&self.sets);
        let Some(held) = sets.get_mut(&set.id) else {
            return false;
        };
        let incoming = held.files.dir.join("incoming.pem");
        if let Err(e) = store::write_private(&incoming, set.bundle_pem.as_bytes()) {
            tracing::error!("{}", e.message());
            return false;
        }
        let files = dockhand_config::CertificateFiles {
            cert: incoming.clone(),
            key: incoming.clone(),
        };
        let loaded = match dockhand_config::load_certificate(&files, crate::clock::now()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(peer = %from, set = %set.id, "a peer's certificate does not load: {}", e.problem());
                let _ = std::fs::remove_file(&incoming);
                return false;
            }
        };
        let names_all = held
            .wanted
            .names
            .iter()
            .all(|n| dockhand_config::covers(&loaded.names, n));
        let better = names_all
            && held
                .current
                .as_ref()
                .is_none_or(|c| loaded.not_after > c.not_after || !held_covers(held));
        if !better {
            let _ = std::fs::remove_file(&incoming);
            return false;
        }
        if let Err(e) = std::fs::rename(&incoming, held.files.bundle()) {
            tracing::error!("failed to store the certificate from {from}: {e}");
            return false;
        }
        tracing::info!(
            peer = %from,
            names = %loaded.names.join(", "),
            "certificate fetched from the issuer (valid until {})",
            crate::tls::rfc3339(loaded.not_after)
        );
        held.current = Some(loaded);
        held.record.failures = 0;
        held.record.next_attempt = None;
        let _ = held.files.write_record(&held.record);
        true
    }

    /// Orders every set that is due; the earliest time one will be due next.
    async fn issue_due(&self, peers: &[IpAddr]) -> i64 {
        let now = unix_now();
        let due: Vec<String> = lock(&self.sets)
            .iter()
            .filter(|(_, h)| {
                due_at(
                    h.current.as_ref().map(|c| (c.not_before, c.not_after)),
                    h.covers_all(),
                    &h.record,
                ) <= now
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut issued = false;
        for id in due {
            issued |= self.attempt(&id, peers).await;
        }
        if issued {
            // The others fetch at once instead of at their next round.
            futures_util::future::join_all(peers.iter().map(|ip| {
                let addr = SocketAddr::new(*ip, peer::PEER_PORT);
                async move {
                    if let Err(e) = peer::call(addr, &self.key, &Request::Nudge).await {
                        tracing::warn!("could not tell a peer about the new certificate: {e}");
                    }
                }
            }))
            .await;
        }
        lock(&self.sets)
            .values()
            .map(|h| {
                due_at(
                    h.current.as_ref().map(|c| (c.not_before, c.not_after)),
                    h.covers_all(),
                    &h.record,
                )
            })
            .min()
            .unwrap_or(i64::MAX)
    }

    /// One order for set `id`: stored, served and recorded, or backed off. Whether it got one.
    async fn attempt(&self, id: &str, peers: &[IpAddr]) -> bool {
        let Some((wanted, files, had, mut record)) = lock(&self.sets).get(id).map(|h| {
            (
                h.wanted.clone(),
                h.files.clone(),
                h.current.as_ref().map(|c| c.not_after),
                h.record.clone(),
            )
        }) else {
            return false;
        };
        let names = wanted.names.join(", ");
        let now = unix_now();
        record.last_attempt = Some(now);
        let relay = PeerRelay {
            peers: peers
                .iter()
                .map(|ip| SocketAddr::new(*ip, peer::PEER_PORT))
                .collect(),
            key: &self.key,
        };
        let http01_only = |_: &str| vec![ChallengeKind::Http01];
        let secrets = Secrets::default();
        let order = acme::Order {
            acme: &self.config.proxy.acme,
            secrets: &secrets,
            layout: &self.layout,
            challenges: self.proxy.challenges(),
            dns: None,
            names: &wanted.names,
            preferences: &http01_only,
            relay: Some(&relay),
        };
        tracing::info!(names = %names, peers = peers.len(), "ordering a certificate");
        let outcome = match tokio::time::timeout(ORDER_TIMEOUT, acme::issue(&order)).await {
            Ok(Ok(issued)) => files
                .write_bundle(&issued.chain_pem, &issued.key_pem)
                .map_err(|e| (e.message().to_string(), None))
                .and_then(|()| match files.load_certificate(crate::clock::now()) {
                    Ok(Some(c)) => Ok(c),
                    Ok(None) => Err((
                        "the new certificate is already expired; check the machine's clock".into(),
                        None,
                    )),
                    Err(e) => Err((e.message().to_string(), None)),
                }),
            Ok(Err(e)) => Err((e.message, e.retry_after)),
            Err(_) => Err((
                format!(
                    "the order did not finish within {}",
                    humantime::format_duration(ORDER_TIMEOUT)
                ),
                None,
            )),
        };
        let got = match outcome {
            Ok(loaded) => {
                tracing::info!(
                    names = %names,
                    "certificate {} (valid until {}); the other ingress tasks fetch it",
                    if had.is_some() { "renewed" } else { "issued" },
                    crate::tls::rfc3339(loaded.not_after)
                );
                record.names = wanted.names.clone();
                record.failures = 0;
                record.next_attempt = None;
                record.last_error = None;
                record.directory = Some(self.config.proxy.acme.directory.clone());
                if let Some(h) = lock(&self.sets).get_mut(id) {
                    h.current = Some(loaded);
                }
                self.publish();
                true
            }
            Err((message, retry_after)) => {
                record.failures += 1;
                let jitter = fastrand::f64() * 2.0 - 1.0;
                let wait = plan::backoff(record.failures, self.retry_base, jitter, retry_after);
                let next = now + wait.as_secs().max(1) as i64;
                record.next_attempt = Some(next);
                record.last_error = Some(message.clone());
                tracing::error!(
                    names = %names,
                    "failed to {} the certificate: {message}; next attempt at {} (attempt {} failed)",
                    if had.is_some() { "renew" } else { "get" },
                    crate::tls::rfc3339(next),
                    record.failures
                );
                false
            }
        };
        if let Err(e) = files.write_record(&record) {
            tracing::error!("{}", e.message());
        }
        if let Some(h) = lock(&self.sets).get_mut(id) {
            h.record = record;
        }
        got
    }
}

fn held_covers(held: &Held) -> bool {
    held.covers_all()
}

/// The HTTP-01 answers handed to every peer over the peer port.
struct PeerRelay<'a> {
    peers: Vec<SocketAddr>,
    key: &'a PeerKey,
}

impl Relay for PeerRelay<'_> {
    fn add_http01<'a>(
        &'a self,
        token: &'a str,
        key_authorization: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let request = Request::PutHttp01 {
                token: token.to_string(),
                key_authorization: key_authorization.to_string(),
            };
            let acks = futures_util::future::join_all(
                self.peers
                    .iter()
                    .map(|addr| peer::call(*addr, self.key, &request)),
            )
            .await;
            // A peer that cannot be reached (its node lost) does not stop the order: the CA
            // may well reach another node, and a failed validation is retried.
            for ack in acks {
                if let Err(e) = ack {
                    tracing::warn!("a peer did not take the HTTP-01 answer: {e}");
                }
            }
            Ok(())
        })
    }

    fn remove_http01<'a>(
        &'a self,
        token: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let request = Request::RemoveHttp01 {
                token: token.to_string(),
            };
            futures_util::future::join_all(
                self.peers
                    .iter()
                    .map(|addr| peer::call(*addr, self.key, &request)),
            )
            .await;
        })
    }
}

/// This task's own address among those Swarm's DNS gives for `name`, and the others'.
async fn find_peers(name: &str) -> (Option<IpAddr>, Vec<IpAddr>) {
    let mut seen: Vec<IpAddr> = match tokio::net::lookup_host((name, peer::PEER_PORT)).await {
        Ok(addrs) => addrs.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    };
    seen.sort();
    seen.dedup();
    // An address is this task's own when a socket can be bound to it.
    let own = seen
        .iter()
        .copied()
        .find(|ip| std::net::UdpSocket::bind((*ip, 0)).is_ok());
    seen.retain(|ip| Some(*ip) != own);
    (own, seen)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 1, last])
    }

    #[test]
    fn the_lowest_overlay_address_issues_and_the_next_takes_over_when_it_goes() {
        // This task (.7) among .9 and .4: .4 issues.
        assert_eq!(issuer(Some(ip(7)), &[ip(9), ip(4)]), Some(ip(4)));
        // .4 went away: the lowest left, this one.
        assert_eq!(issuer(Some(ip(7)), &[ip(9)]), Some(ip(7)));
        // Alone.
        assert_eq!(issuer(Some(ip(7)), &[]), Some(ip(7)));
        // Compared as addresses, not as text (10.0.1.10 > 10.0.1.9).
        assert_eq!(issuer(Some(ip(10)), &[ip(9)]), Some(ip(9)));
        // Not yet in the DNS: someone else issues, or nobody is known yet.
        assert_eq!(issuer(None, &[ip(9)]), Some(ip(9)));
        assert_eq!(issuer(None, &[]), None);
    }

    #[test]
    fn an_order_is_due_without_a_certificate_at_two_thirds_of_its_life_and_not_before_a_retry() {
        let fresh = SetRecord::default();
        // Nothing held, or a certificate missing a wanted name: now.
        assert_eq!(due_at(None, false, &fresh), i64::MIN);
        assert_eq!(due_at(Some((0, 90)), false, &fresh), i64::MIN);
        // Held: at two thirds of its lifetime.
        assert_eq!(due_at(Some((1_000, 1_090)), true, &fresh), 1_060);
        // After a failure, not before the stored retry time…
        let failed = SetRecord {
            failures: 2,
            next_attempt: Some(5_000),
            ..SetRecord::default()
        };
        assert_eq!(due_at(None, false, &failed), 5_000);
        // …nor before the renewal time when the retry time is earlier.
        assert_eq!(due_at(Some((1_000, 91_000)), true, &failed), 61_000);
        // A retry time left from a success does not hold anything up.
        let old = SetRecord {
            failures: 0,
            next_attempt: Some(9_999),
            ..SetRecord::default()
        };
        assert_eq!(due_at(None, false, &old), i64::MIN);
    }
}
