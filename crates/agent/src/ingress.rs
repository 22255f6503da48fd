//! The cluster's ingress proxy: `dockhand ingress`, which Swarm runs as a global service on
//! the ingress nodes, attached to the app's overlay network and publishing the proxy's port
//! in host mode (this kernel has no IPVS, and a process on a host cannot reach overlay
//! addresses: whatever routes to tasks must sit on the overlay).
//!
//! It serves the app's routes (the same [`routes::build_table`] as the agent's proxy) with
//! every routed service's backends found, every `interval`, as the task addresses Swarm's
//! DNS gives for `tasks.<app>-<service>` (services are `dnsrr`), each probed by Dockhand
//! like an instance on one server. An address enters the table once it passed
//! `healthy_threshold` probes in a row and leaves it after `unhealthy_threshold` failures, or
//! at once when Swarm's DNS no longer lists it: Swarm takes a task out of its DNS before it
//! stops its container and, for a task with a health check, adds it only once healthy, so an
//! update moves the table ahead of the tasks instead of behind them.
//!
//! The routing state per service is [`Pool`], pure and tested with plain data.
//!
//! With `https_listen`, the task also runs the proxy's TLS listener with the `[proxy]
//! certificates` files (Swarm secrets) and the ACME certificates the ingress tasks obtain
//! once for all of them (`certs.rs`), talking to each other over the peer port (`peer.rs`).
//!
//! A route with `basic_auth` gets its users as on one server (`build_table` with the
//! secrets), the values read from the Swarm secrets the deploy mounted
//! (`dockhand_cluster::auth_target`): the configuration holds only the `${secret.NAME}`
//! references.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dockhand_config::{AppConfig, Secrets};
use dockhand_proxy::{Backend, CertStore, HttpsConfig, Proxy, ProxyConfig, RouteTable};

pub mod certs;
pub mod peer;

use crate::error::{AgentError, Result};
use crate::health::{probe, ProbePlan};

/// What `dockhand ingress` runs with.
#[derive(Debug, Clone)]
pub struct IngressOptions {
    /// The app's configuration as JSON (a Swarm config mounted into the task).
    pub config: PathBuf,
    /// Where the proxy listens inside the task (the published port's target).
    pub listen: SocketAddr,
    /// How often the task addresses are looked up and probed.
    pub interval: Duration,
    /// Where the TLS listener listens inside the task (with `[proxy] https_listen`).
    pub https_listen: Option<SocketAddr>,
    /// The node-local volume holding the ACME account and certificates.
    pub state: PathBuf,
    /// The peer key (a Swarm secret): without it the task gets no ACME certificate.
    pub peer_key: Option<PathBuf>,
}

/// One address Swarm's DNS listed for a service, and what its probes said.
#[derive(Debug)]
struct Member {
    backend: Arc<Backend>,
    in_table: bool,
    oks: u32,
    fails: u32,
}

/// The backends of one service: the addresses seen, and which of them are routed to.
#[derive(Debug, Default)]
pub struct Pool {
    members: BTreeMap<SocketAddr, Member>,
}

/// A change of the routing table, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Passed its probes: routed to from now on.
    In(SocketAddr),
    /// Failed its probes: no longer routed to.
    Unhealthy(SocketAddr),
    /// No longer in Swarm's DNS (its task is stopping or gone).
    Gone(SocketAddr),
}

impl Pool {
    /// One round: `seen` are the addresses DNS lists now, `probed` what each one's probe
    /// said. Returns the changes of the routed set (empty: the table stays as it is).
    pub fn step(
        &mut self,
        seen: &[SocketAddr],
        probed: &BTreeMap<SocketAddr, bool>,
        healthy_threshold: u32,
        unhealthy_threshold: u32,
        next_id: &mut u64,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        self.members.retain(|addr, m| {
            let keep = seen.contains(addr);
            if !keep && m.in_table {
                changes.push(Change::Gone(*addr));
            }
            keep
        });
        for addr in seen {
            let m = self.members.entry(*addr).or_insert_with(|| {
                *next_id += 1;
                Member {
                    backend: Backend::new(*next_id, *addr),
                    in_table: false,
                    oks: 0,
                    fails: 0,
                }
            });
            match probed.get(addr) {
                Some(true) => {
                    m.oks += 1;
                    m.fails = 0;
                    // The proxy stops picking an address it could not connect to
                    // (`eject_unreachable`); a passed probe puts it back.
                    m.backend.set_healthy(true);
                    if !m.in_table && m.oks >= healthy_threshold.max(1) {
                        m.in_table = true;
                        changes.push(Change::In(*addr));
                    }
                }
                Some(false) => {
                    m.fails += 1;
                    m.oks = 0;
                    if m.in_table && m.fails >= unhealthy_threshold.max(1) {
                        m.in_table = false;
                        changes.push(Change::Unhealthy(*addr));
                    }
                }
                None => {}
            }
        }
        changes
    }

    /// The backends routed to.
    pub fn backends(&self) -> Vec<Arc<Backend>> {
        self.members
            .values()
            .filter(|m| m.in_table)
            .map(|m| m.backend.clone())
            .collect()
    }
}

/// The Swarm service of `service` of `app`, as the cluster crate names it.
pub fn swarm_service(app: &str, service: &str) -> String {
    format!("{app}-{service}")
}

/// Runs the ingress proxy until the process is stopped.
pub fn run(opts: IngressOptions) -> Result<()> {
    // The configuration the deploy checked, as JSON (no file of the project is here).
    let text = std::fs::read(&opts.config).map_err(|e| {
        AgentError::usage(format!(
            "cannot read the ingress configuration {}: {e}",
            opts.config.display()
        ))
    })?;
    let config: AppConfig = serde_json::from_slice(&text).map_err(|e| {
        AgentError::usage(format!(
            "the ingress configuration {} is not valid: {e}",
            opts.config.display()
        ))
    })?;
    // The users of the routes' basic auth: a route never serves without its authentication,
    // so a secret that cannot be read stops the task (Swarm says why and rolls back).
    let secrets = auth_secrets(&config, dockhand_cluster::auth_target)?;
    // The certificate files are Swarm secrets in the task's tmpfs; one that does not load is
    // left out and said (HTTP and the other certificates keep serving).
    let https_listen = opts
        .https_listen
        .filter(|_| config.proxy.https_listen.is_some());
    let files = crate::tls::load(&config.proxy, crate::clock::now());
    for problem in &files.problems {
        tracing::error!("{problem}");
    }
    let https = https_listen.map(|listen| HttpsConfig {
        listen,
        certificates: Arc::new(CertStore::new(files.serve.clone())),
    });
    let proxy_config = ProxyConfig {
        listen: opts.listen,
        https,
        max_request_body: config.proxy.max_request_body,
        client_header_timeout: config.proxy.client_header_timeout,
        upstream_connect_timeout: config.proxy.upstream_connect_timeout,
        upstream_response_timeout: config.proxy.upstream_response_timeout,
        // A lost node's tasks: the first request that cannot connect takes the address out
        // of the picking at once, before its probes fail `unhealthy_threshold` times.
        eject_unreachable: true,
        ..ProxyConfig::default()
    };
    let handle = Proxy::start(proxy_config, RouteTable::empty()).map_err(|e| {
        AgentError::environment(format!(
            "the ingress proxy cannot listen on {}: {e}",
            opts.listen
        ))
    })?;
    tracing::info!(listen = %opts.listen, https = ?https_listen, app = %config.app, "ingress proxy ready");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AgentError::environment(format!("starting the ingress runtime: {e}")))?;
    if https_listen.is_some() {
        let _guard = rt.enter();
        start_certificates(&config, &opts, &handle, files.serve)?;
    }
    rt.block_on(async move {
        let mut pools: BTreeMap<String, Pool> = BTreeMap::new();
        let mut next_id = 0u64;
        let mut first = true;
        // A round starts every `interval`, or as soon as the last one ended when its probes
        // took longer (a dead node's addresses answer nothing until the probe's timeout).
        let mut tick = tokio::time::interval(opts.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let changed = round(&config, &mut pools, &mut next_id).await;
            if changed || first {
                let backends: BTreeMap<String, Vec<Arc<Backend>>> = pools
                    .iter()
                    .map(|(name, pool)| (name.clone(), pool.backends()))
                    .collect();
                match crate::routes::build_table(&config, &backends, &BTreeMap::new(), &secrets) {
                    Ok(table) => {
                        handle.set_routes(table);
                    }
                    Err(e) => tracing::error!("the routes cannot be built: {e}"),
                }
                first = false;
            }
        }
    })
}

/// Whether the cluster's ingress can build the routes of `config` with `secrets` (the users
/// of a route's `basic_auth` among them): what `dockhand deploy` checks on a cluster before
/// it changes anything, so a missing or invalid users secret is refused there and not
/// found by the ingress tasks. The error names secrets, never their values.
pub fn check_routes(config: &AppConfig, secrets: &Secrets) -> Result<()> {
    let config = dockhand_cluster::ingress_config(config);
    crate::routes::build_table(&config, &BTreeMap::new(), &BTreeMap::new(), secrets)
        .map(|_| ())
        .map_err(|e| AgentError::usage(format!("the ingress cannot route: {e}")))
}

/// The values of the secrets the routes' `basic_auth` name, each read from the file `path`
/// gives for its name (a Swarm secret, in the task: `dockhand_cluster::auth_target`).
fn auth_secrets(config: &AppConfig, path: impl Fn(&str) -> PathBuf) -> Result<Secrets> {
    let mut secrets = Secrets::empty();
    for name in dockhand_cluster::auth_secrets(config) {
        let file = path(&name);
        let value = std::fs::read_to_string(&file).map_err(|e| {
            AgentError::environment(format!(
                "cannot read secret {name} (the users of a route's basic_auth) at {}: {e}; deploy the app again so its ingress gets the secret",
                file.display()
            ))
        })?;
        secrets.insert(&name, value);
    }
    Ok(secrets)
}

/// Starts the certificate keeper and the peer port on the current runtime: ACME needs the
/// peer key (without it the task serves the files alone, and says so).
fn start_certificates(
    config: &AppConfig,
    opts: &IngressOptions,
    handle: &dockhand_proxy::ProxyHandle,
    files: Vec<dockhand_proxy::TlsCertificate>,
) -> Result<()> {
    let Some(path) = &opts.peer_key else {
        handle.set_certificates(files);
        tracing::warn!("no peer key: only the certificate files are served");
        return Ok(());
    };
    let secret = std::fs::read(path).map_err(|e| {
        AgentError::environment(format!("cannot read the peer key {}: {e}", path.display()))
    })?;
    let key = Arc::new(peer::PeerKey::from_secret(&secret));
    let layout = crate::layout::StateLayout::at(&opts.state);
    let keeper = Arc::new(certs::Keeper::new(
        config.clone(),
        layout,
        handle.clone(),
        files,
        key.clone(),
    ));
    keeper.publish();
    let listener = std::net::TcpListener::bind(("0.0.0.0", peer::PEER_PORT))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| {
            AgentError::environment(format!(
                "the ingress cannot listen on its peer port {}: {e}",
                peer::PEER_PORT
            ))
        })?;
    let answering = keeper.clone();
    tokio::spawn(peer::serve(
        listener,
        key,
        Arc::new(move |request| answering.handle(request)),
    ));
    tokio::spawn(keeper.run());
    Ok(())
}

/// Looks up and probes every routed service's tasks once, all services at once (a dead
/// node's addresses, which answer no probe until its timeout, hold up no other service);
/// whether a routed set changed.
async fn round(config: &AppConfig, pools: &mut BTreeMap<String, Pool>, next_id: &mut u64) -> bool {
    let routed: Vec<_> = config
        .services
        .values()
        .filter(|s| !s.routes.is_empty() && s.port.is_some())
        .collect();
    let looked = futures_util::future::join_all(routed.iter().map(|svc| look(config, svc))).await;
    let mut changed = false;
    for (svc, (seen, probed, plan)) in routed.iter().zip(looked) {
        let pool = pools.entry(svc.name.clone()).or_default();
        for change in pool.step(
            &seen,
            &probed,
            plan.healthy_threshold,
            plan.unhealthy_threshold,
            next_id,
        ) {
            changed = true;
            match change {
                Change::In(a) => tracing::info!(service = %svc.name, "{a} routed to (healthy)"),
                Change::Unhealthy(a) => {
                    tracing::warn!(service = %svc.name, "{a} no longer routed to (failed its probes)")
                }
                Change::Gone(a) => {
                    tracing::info!(service = %svc.name, "{a} no longer routed to (its task is stopping or gone)")
                }
            }
        }
    }
    changed
}

/// One service's task addresses as Swarm's DNS lists them, each one's probe result, and the
/// probe plan (for its thresholds).
async fn look(
    config: &AppConfig,
    svc: &dockhand_config::ServiceConfig,
) -> (Vec<SocketAddr>, BTreeMap<SocketAddr, bool>, ProbePlan) {
    let port = svc.port.unwrap_or_default();
    let name = format!("tasks.{}", swarm_service(&config.app, &svc.name));
    // No task: the name does not resolve, which is an empty set, not an error.
    let mut seen: Vec<SocketAddr> = match tokio::net::lookup_host((name.as_str(), port)).await {
        Ok(addrs) => addrs.collect(),
        Err(_) => Vec::new(),
    };
    seen.sort();
    seen.dedup();
    // A health command runs in the task (Swarm's check); Dockhand probes the port.
    let plan = ProbePlan::for_service(svc.health.as_ref().filter(|h| h.command.is_none()));
    let results = futures_util::future::join_all(seen.iter().map(|addr| {
        let plan = &plan;
        async move { (*addr, probe(*addr, plan).await.ok) }
    }))
    .await;
    (seen, results.into_iter().collect(), plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 1, n], 8080))
    }

    #[test]
    fn an_address_enters_after_its_healthy_probes_and_leaves_on_failures_or_at_once_when_gone() {
        let mut pool = Pool::default();
        let mut id = 0;
        let ok = |addrs: &[SocketAddr], v: bool| -> BTreeMap<SocketAddr, bool> {
            addrs.iter().map(|a| (*a, v)).collect()
        };
        // Two probes in a row before it is routed to.
        assert_eq!(
            pool.step(&[addr(1)], &ok(&[addr(1)], true), 2, 2, &mut id),
            vec![]
        );
        assert!(pool.backends().is_empty());
        assert_eq!(
            pool.step(&[addr(1)], &ok(&[addr(1)], true), 2, 2, &mut id),
            vec![Change::In(addr(1))]
        );
        assert_eq!(pool.backends().len(), 1);
        // One failure is tolerated, the second takes it out.
        assert_eq!(
            pool.step(&[addr(1)], &ok(&[addr(1)], false), 2, 2, &mut id),
            vec![]
        );
        assert_eq!(
            pool.step(&[addr(1)], &ok(&[addr(1)], false), 2, 2, &mut id),
            vec![Change::Unhealthy(addr(1))]
        );
        assert!(pool.backends().is_empty());
        // Back, and a second task: each on its own probes.
        pool.step(
            &[addr(1), addr(2)],
            &ok(&[addr(1), addr(2)], true),
            1,
            2,
            &mut id,
        );
        assert_eq!(pool.backends().len(), 2);
        // Gone from DNS: out at once, whatever its probes said.
        assert_eq!(
            pool.step(&[addr(2)], &ok(&[addr(2)], true), 1, 2, &mut id),
            vec![Change::Gone(addr(1))]
        );
        let left: Vec<SocketAddr> = pool.backends().iter().map(|b| b.addr()).collect();
        assert_eq!(left, vec![addr(2)]);
    }

    #[test]
    fn basic_auth_routes_get_their_users_from_the_mounted_secrets_and_never_serve_without() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(project.join(".dockhand")).unwrap();
        let hash = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="; // "password"
        let secrets_file = project.join(".dockhand/secrets.env");
        std::fs::write(&secrets_file, format!("STAFF='ann:{hash}'\n")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&secrets_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            project.join("dockhand.toml"),
            "app = \"shop\"\n[services.web]\nimage = \"w\"\nport = 8080\nroute = [{ path = \"/\" }, { path = \"/staff\", basic_auth = { realm = \"Staff\", users = \"${secret.STAFF}\" } }]\n",
        )
        .unwrap();
        let config = dockhand_config::load(
            &project.join("dockhand.toml"),
            &dockhand_config::LoadOptions::default(),
        )
        .unwrap()
        .config;
        let sent = dockhand_cluster::ingress_config(&config);
        // The task's secrets directory: only the mounted file is read.
        let mounted = dir.path().join("run-secrets");
        std::fs::create_dir_all(&mounted).unwrap();
        let at = |name: &str| mounted.join(dockhand_cluster::auth_file(name));
        let missing = auth_secrets(&sent, at).unwrap_err().to_string();
        assert!(missing.contains("secret STAFF"), "{missing}");
        assert!(missing.contains("ingress-auth-STAFF"), "{missing}");
        assert!(!missing.contains(hash), "{missing}");
        std::fs::write(at("STAFF"), format!("ann:{hash}")).unwrap();
        let secrets = auth_secrets(&sent, at).unwrap();
        assert_eq!(secrets.get("STAFF"), Some(format!("ann:{hash}").as_str()));
        let table = crate::routes::build_table(&sent, &BTreeMap::new(), &BTreeMap::new(), &secrets)
            .unwrap();
        let staff = table
            .routes()
            .iter()
            .find(|r| r.path_prefix == "/staff")
            .unwrap();
        assert_eq!(
            staff.policy.basic_auth.as_ref().map(|a| a.realm()),
            Some("Staff")
        );
        // What the deploy checks first: the same table, refused without the secret or with
        // a plaintext password, naming the secret and not its value.
        check_routes(&config, &secrets).unwrap();
        let e = check_routes(&config, &Secrets::empty())
            .unwrap_err()
            .to_string();
        assert!(e.contains("STAFF"), "{e}");
        let mut plain = Secrets::empty();
        plain.insert("STAFF", "ann:hunter2".into());
        let e = check_routes(&config, &plain).unwrap_err().to_string();
        assert!(e.contains("STAFF") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_returning_address_is_a_new_backend() {
        let mut pool = Pool::default();
        let mut id = 0;
        let yes: BTreeMap<SocketAddr, bool> = [(addr(1), true)].into();
        pool.step(&[addr(1)], &yes, 1, 1, &mut id);
        let first = pool.backends()[0].id();
        pool.step(&[], &BTreeMap::new(), 1, 1, &mut id);
        pool.step(&[addr(1)], &yes, 1, 1, &mut id);
        // A new task on a reused address gets its own upstream connections.
        assert_ne!(pool.backends()[0].id(), first);
    }
}
