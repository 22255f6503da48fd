//! Deploying an app to the swarm and rolling it back: the order of the work, with the swarm as
//! the record (each release is a Swarm config holding its services' specs, see
//! [`ReleaseRecord`]), so any manager knows what serves and what served before.
//!
//! A deploy: plan every service and database (pure, [`plan_app`]) → the images on every node
//! that may run them (the ingress image imported into the manager first; see [`crate::images`]:
//! a node that cannot be reached stops the deploy here, before any change) → label the nodes →
//! the overlay → the secrets → the databases (each until its one task runs, healthy) → every
//! service updated at once, Swarm replacing tasks start-first and rolling a failed one back by
//! itself → wait for each. If any service did not converge, every service that did goes back
//! to the last live release (or is removed, on a first deploy): the whole app stays on the
//! previous release. A deploy that converged then runs the `when = "once"` tasks that never
//! succeeded on this swarm ([`crate::jobs::run_once_tasks`]), still holding the lock.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models;
use dockhand_config::{AppConfig, Secrets};
use serde::Serialize;

use crate::error::ClusterError;
use crate::images::{send_images, wanted_images, ImageNeed, NodeAccess, NodeImages, TransferError};
use crate::ingress::{plan_ingress, IngressPlan, INGRESS_LABEL};
use crate::plan::{plan_database, plan_service, PlanError, PlanKind, ServicePlan};
use crate::swarm::{ReleaseRecord, Swarm, UpdateOutcome};

/// Every service and database of an app at one release, planned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppPlan {
    pub app: String,
    pub release: u64,
    pub network: String,
    pub encrypted: bool,
    /// Each node's destination name and its labels.
    pub nodes: Vec<(String, BTreeMap<String, String>)>,
    pub databases: Vec<ServicePlan>,
    pub services: Vec<ServicePlan>,
}

impl AppPlan {
    /// The names of the secrets the plan's tasks mount.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .databases
            .iter()
            .chain(&self.services)
            .flat_map(|p| p.secrets.iter().map(|s| s.secret.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Why an app cannot be deployed to its cluster.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the configuration has no [cluster] table")]
    NoCluster,
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("secret `{name}` is not set (the services use it as ${{secret.{name}}})")]
    MissingSecret { name: String },
    #[error("there is no earlier live release of `{app}` to roll back to")]
    NothingToRollBack { app: String },
    /// An image could not be put on a node; nothing of the release changed.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Swarm(#[from] ClusterError),
}

impl DeployError {
    /// What to do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            DeployError::NoCluster => None,
            DeployError::Plan(e) => Some(e.help()),
            DeployError::MissingSecret { name } => Some(format!(
                "add {name}=... to the secrets file (`dockhand secrets set {name}`)"
            )),
            DeployError::NothingToRollBack { .. } => {
                Some("`dockhand status` shows what runs; deploy a release first".into())
            }
            DeployError::Transfer(e) => Some(format!(
                "no service was changed: the app stays on the release it runs; fix what stops node `{}` (reached with ssh at its [destinations.{}] host, through ~/.ssh/config or $DOCKHAND_SSH_CONFIG), or take it out of [cluster], and deploy again",
                e.node, e.node
            )),
            DeployError::Swarm(_) => None,
        }
    }

    /// Whether the cause is the user's input (configuration, secrets, history).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            DeployError::NoCluster | DeployError::Plan(_) | DeployError::MissingSecret { .. }
        )
    }
}

/// How one service or database fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceOutcome {
    /// The name in the config.
    pub service: String,
    /// The Swarm service, `<app>-<service>`.
    pub swarm_service: String,
    pub kind: PlanKind,
    pub outcome: Outcome,
    /// Swarm's word on a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What became of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every replica runs the release.
    Converged,
    /// A new task failed; Swarm put the previous spec back by itself.
    RolledBackBySwarm,
    /// Swarm paused the update.
    Paused,
    /// Not every replica ran the release in time.
    TimedOut,
    /// It had converged, and went back to the previous release because another did not.
    Reverted,
    /// It was new with this release and was removed because another service did not converge.
    Removed,
}

/// What a deploy or a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterReport {
    pub app: String,
    /// The release deployed (or rolled back to).
    pub release: u64,
    /// The release that served before (none on a first deploy).
    pub previous: Option<u64>,
    /// Every service converged on `release`.
    pub ok: bool,
    pub services: Vec<ServiceOutcome>,
    /// What each node got before any service changed (empty when the images were not sent:
    /// no [`DeployOptions::nodes`], or every node is the manager).
    pub images: Vec<NodeImages>,
    /// The `when = "once"` tasks a successful deploy ran (those that never succeeded on this
    /// swarm), with their output: the caller redacts it before showing it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<crate::jobs::JobReport>,
}

/// Limits of a deploy, and what the ingress runs.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// How long each service gets to converge (or to be rolled back by Swarm).
    pub service_timeout: Duration,
    /// The `dockhand` binary the ingress image is made of (the running one, for the CLI);
    /// `None` deploys no ingress proxy.
    pub ingress_exe: Option<std::path::PathBuf>,
    /// Where the digest of `ingress_exe` is kept between deploys (see
    /// [`crate::ingress::image_tag`]); `None` reads the binary every time.
    pub digest_cache: Option<std::path::PathBuf>,
    /// The nodes and how to reach them over SSH, to send them the images they lack before
    /// any service changes; `None` sends nothing (the images must be on every node already).
    pub nodes: Option<NodeAccess>,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            service_timeout: Duration::from_secs(300),
            ingress_exe: None,
            digest_cache: None,
            nodes: None,
        }
    }
}

/// Plans every service and database of `config` at `release` (pure).
pub fn plan_app(config: &AppConfig, release: u64) -> Result<AppPlan, DeployError> {
    let cluster = config.cluster.as_ref().ok_or(DeployError::NoCluster)?;
    crate::ingress::check_https(config)?;
    let release_text = release.to_string();
    let databases = config
        .databases
        .values()
        .map(|db| plan_database(&config.app, db, cluster.constraints(&db.name)))
        .collect::<Result<Vec<_>, _>>()?;
    let services = config
        .services
        .values()
        .map(|s| {
            let image = s
                .container
                .as_ref()
                .map(|c| c.image.clone())
                .unwrap_or_default();
            plan_service(
                &config.app,
                s,
                &release_text,
                &image,
                cluster.constraints(&s.name),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppPlan {
        app: config.app.clone(),
        release,
        network: crate::plan::network_name(&config.app),
        encrypted: cluster.encrypted,
        nodes: cluster
            .nodes
            .iter()
            .map(|n| {
                let mut labels = n.labels.clone();
                labels.insert(INGRESS_LABEL.into(), n.ingress.to_string());
                (n.destination.clone(), labels)
            })
            .collect(),
        databases,
        services,
    })
}

/// A deploy lock older than this was left by a holder that died.
pub const LOCK_STALE_AFTER: Duration = Duration::from_secs(3600);

/// Deploys `config` to the swarm: a new release, gated on every service converging;
/// `progress` hears each step. Holds the app's deploy lock throughout.
pub async fn deploy(
    swarm: &Swarm,
    config: &AppConfig,
    secrets: &Secrets,
    options: DeployOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<ClusterReport, DeployError> {
    locked(swarm, &config.app, progress, async |progress| {
        let mut report = deploy_locked(swarm, config, secrets, options, progress).await?;
        if report.ok {
            // Under the lock: two deploys never both run a once task.
            report.tasks = crate::jobs::run_once_tasks(swarm, config, progress).await;
        }
        Ok(report)
    })
    .await
}

/// Runs `work` holding `app`'s deploy lock, and gives the lock back whatever came of it.
async fn locked(
    swarm: &Swarm,
    app: &str,
    progress: &mut (dyn FnMut(&str) + Send),
    work: impl AsyncFnOnce(&mut (dyn FnMut(&str) + Send)) -> Result<ClusterReport, DeployError>,
) -> Result<ClusterReport, DeployError> {
    if let Some(stale) = swarm.lock(app, &lock_holder(), LOCK_STALE_AFTER).await? {
        progress(&format!(
            "took over the deploy lock {} left at {} (older than an hour: its deploy died)",
            stale.holder,
            crate::error::since_text(stale.since)
        ));
    }
    let result = work(progress).await;
    let unlocked = swarm.unlock(app).await;
    let report = result?;
    unlocked?;
    Ok(report)
}

/// Who takes a lock, as another deploy's error names it: user, host and process.
fn lock_holder() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "an unknown host".into());
    format!("{user}@{host}, pid {}", std::process::id())
}

async fn deploy_locked(
    swarm: &Swarm,
    config: &AppConfig,
    secrets: &Secrets,
    options: DeployOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<ClusterReport, DeployError> {
    let app = &config.app;
    // What the configuration and the secrets say is checked before the swarm is touched.
    let needed = plan_app(config, 0)?.secret_names();
    for name in needed
        .into_iter()
        .chain(crate::ingress::auth_secrets(config))
    {
        if secrets.get(&name).is_none() {
            return Err(DeployError::MissingSecret { name });
        }
    }
    let history = swarm.releases(app).await?;
    let serving = serving_release(swarm, app).await?;
    let release = history
        .iter()
        .map(|r| r.release)
        .chain(serving)
        .max()
        .unwrap_or(0)
        + 1;
    let plan = plan_app(config, release)?;
    let mut values = BTreeMap::new();
    for name in plan.secret_names() {
        let Some(value) = secrets.get(&name) else {
            return Err(DeployError::MissingSecret { name });
        };
        values.insert(name, value.to_string());
    }
    progress(&format!(
        "release {release} of {app}: {} service(s), {} database(s)",
        plan.services.len(),
        plan.databases.len()
    ));

    // The ingress image in the manager's Engine, then every image on every node that may run
    // it: a node that cannot be reached stops the deploy here, before anything changed.
    let ingress = match &options.ingress_exe {
        Some(exe) => {
            Some(import_ingress(swarm, config, exe, options.digest_cache.as_deref()).await?)
        }
        None => None,
    };
    let mut needs: Vec<ImageNeed> = plan
        .databases
        .iter()
        .chain(&plan.services)
        .map(|p| ImageNeed {
            image: p.image.clone(),
            constraints: p.constraints.clone(),
            ingress_only: false,
        })
        .collect();
    if let Some(Some(ingress)) = &ingress {
        needs.push(ImageNeed {
            image: ingress.image.clone(),
            constraints: Vec::new(),
            ingress_only: true,
        });
    }
    let images = transfer(swarm, options.nodes.as_ref(), needs, progress).await?;

    swarm.label_nodes(&plan.nodes).await?;
    swarm.ensure_network(&plan.network, plan.encrypted).await?;
    let mut ids = BTreeMap::new();
    for (name, value) in &values {
        ids.insert(name.clone(), swarm.ensure_secret(app, name, value).await?);
    }

    if let Some(ingress) = &ingress {
        ensure_ingress(swarm, config, secrets, ingress.as_ref(), progress).await?;
    }

    let mut outcomes = Vec::new();
    // Databases first, each until its task runs (and passes its health command).
    for db in &plan.databases {
        progress(&format!(
            "database {}: on the node matching {}",
            db.service,
            db.constraints.join(", ")
        ));
        swarm.apply(db.to_spec(&ids)).await?;
        let outcome = swarm
            .wait_converged(&db.name, None, options.service_timeout)
            .await;
        let outcome = outcome_of(db, outcome)?;
        let failed = outcome.outcome != Outcome::Converged;
        outcomes.push(outcome);
        if failed {
            // Nothing of the new release started: the app serves as before.
            return Ok(ClusterReport {
                app: app.clone(),
                release,
                previous: serving,
                ok: false,
                services: outcomes,
                images,
                tasks: Vec::new(),
            });
        }
    }

    // Every service at once: Swarm replaces their tasks side by side.
    let mut existed = BTreeMap::new();
    let mut specs = BTreeMap::new();
    for service in &plan.services {
        existed.insert(
            service.name.clone(),
            swarm.service_spec(&service.name).await?.is_some(),
        );
        let spec = service.to_spec(&ids);
        specs.insert(service.name.clone(), spec.clone());
        progress(&format!(
            "service {}: {} replica(s) of {}",
            service.service, service.replicas, service.image
        ));
        swarm.apply(spec).await?;
    }
    let release_text = release.to_string();
    let mut converged = Vec::new();
    for service in &plan.services {
        let result = swarm
            .wait_converged(&service.name, Some(&release_text), options.service_timeout)
            .await;
        let outcome = outcome_of(service, result)?;
        progress(&format!(
            "service {}: {}",
            service.service,
            word(outcome.outcome)
        ));
        if outcome.outcome == Outcome::Converged {
            converged.push(outcomes.len());
        }
        outcomes.push(outcome);
    }
    let ok = outcomes.iter().all(|o| o.outcome == Outcome::Converged);
    if !ok {
        // The whole app goes back to the last live release.
        let last_live = history.iter().rev().find(|r| r.live);
        for at in converged {
            let name = outcomes[at].swarm_service.clone();
            match last_live.and_then(|r| r.services.get(&name)) {
                Some(spec) => {
                    progress(&format!(
                        "service {}: back to release {}",
                        outcomes[at].service,
                        last_live.map(|r| r.release).unwrap_or(0)
                    ));
                    swarm.apply(spec.clone()).await?;
                    outcomes[at].outcome = Outcome::Reverted;
                }
                None if !existed.get(&name).copied().unwrap_or(true) => {
                    progress(&format!(
                        "service {}: removed (new with this release)",
                        outcomes[at].service
                    ));
                    swarm.remove_service(&name).await?;
                    outcomes[at].outcome = Outcome::Removed;
                }
                None => {}
            }
        }
        if let Some(previous) = last_live {
            let text = previous.release.to_string();
            for o in outcomes.iter().filter(|o| o.outcome == Outcome::Reverted) {
                swarm
                    .wait_converged(&o.swarm_service, Some(&text), options.service_timeout)
                    .await?;
            }
        }
    }
    swarm
        .record_release(&ReleaseRecord {
            app: app.clone(),
            release,
            live: ok,
            services: specs,
        })
        .await?;
    Ok(ClusterReport {
        app: app.clone(),
        release,
        previous: serving,
        ok,
        services: outcomes,
        images,
        tasks: Vec::new(),
    })
}

/// The ingress of `config` planned on the image of the binary `exe`, that image imported into
/// the manager's Engine (once per build; streamed as it is assembled); `None` when nothing
/// is routed.
async fn import_ingress(
    swarm: &Swarm,
    config: &AppConfig,
    exe: &std::path::Path,
    digest_cache: Option<&std::path::Path>,
) -> Result<Option<IngressPlan>, DeployError> {
    let tag = crate::ingress::image_tag(exe, digest_cache).map_err(|e| {
        DeployError::Swarm(ClusterError::Api {
            host: swarm.shown().to_string(),
            call: "read the dockhand binary",
            reason: e.to_string(),
        })
    })?;
    let Some(plan) = plan_ingress(config, &tag) else {
        return Ok(None);
    };
    swarm
        .ensure_imported(&tag, "[\"/dockhand\"]", || {
            crate::ingress::rootfs_stream(exe)
        })
        .await?;
    Ok(Some(plan))
}

/// Sends every node of `nodes` the images of `needs` it may run and lacks, from the manager's
/// Engine (the node the swarm handle talks to gets none), the nodes in parallel on blocking
/// threads while `progress` hears each line.
async fn transfer(
    swarm: &Swarm,
    nodes: Option<&NodeAccess>,
    needs: Vec<ImageNeed>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<NodeImages>, DeployError> {
    let Some(access) = nodes else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = access.nodes.iter().map(|n| n.destination.clone()).collect();
    let source = swarm.local_node(&names).await?;
    let wanted = wanted_images(&access.nodes, &needs, source.as_deref());
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    progress(&format!(
        "images: from {} to {}, only what each lacks",
        source.as_deref().unwrap_or("the manager"),
        wanted.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let host = swarm.host().to_string();
    let access = access.clone();
    let task = tokio::task::spawn_blocking(move || {
        send_images(&host, &access, &wanted, &mut |line: &str| {
            let _ = tx.send(line.to_string());
        })
    });
    while let Some(line) = rx.recv().await {
        progress(&line);
    }
    let sent = task.await.map_err(|e| {
        DeployError::Swarm(ClusterError::Api {
            host: swarm.shown().to_string(),
            call: "send the images to the nodes",
            reason: format!("the transfer stopped: {e}"),
        })
    })??;
    Ok(sent)
}

/// The ingress proxy `plan` (its image already imported): its configuration stored, and the
/// global service created or updated when what routing reads changed (a release that changes
/// only env or images leaves its tasks alone); removed when nothing is routed (`None`).
async fn ensure_ingress(
    swarm: &Swarm,
    config: &AppConfig,
    values: &Secrets,
    plan: Option<&IngressPlan>,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), DeployError> {
    let name = crate::ingress::ingress_name(&config.app);
    let api = |call: &'static str, e: std::io::Error| {
        DeployError::Swarm(ClusterError::Api {
            host: swarm.shown().to_string(),
            call,
            reason: e.to_string(),
        })
    };
    let Some(plan) = plan else {
        if swarm.service_spec(&name).await?.is_some() {
            progress("ingress: nothing is routed any more, removed");
            swarm.remove_service(&name).await?;
        }
        return Ok(());
    };
    let secrets = ingress_secrets(swarm, config, values, plan).await?;
    let digest = plan.label_digest(&secrets);
    let current = swarm.service_spec(&name).await?;
    let unchanged = current.as_ref().is_some_and(|spec| {
        let labels = spec.labels.clone().unwrap_or_default();
        let image = spec
            .task_template
            .as_ref()
            .and_then(|t| t.container_spec.as_ref())
            .and_then(|c| c.image.clone());
        labels.get(INGRESS_LABEL) == Some(&digest) && image.as_deref() == Some(plan.image.as_str())
    });
    if unchanged {
        return Ok(());
    }
    progress(&format!(
        "ingress: {} on the ingress nodes, port {}",
        plan.image, plan.published
    ));
    let text = serde_json::to_vec(&crate::ingress::ingress_config(config))
        .map_err(|e| api("encode the ingress configuration", std::io::Error::other(e)))?;
    let labels =
        std::collections::HashMap::from([("dockhand.ingress-of".to_string(), config.app.clone())]);
    let id = swarm
        .ensure_config(&plan.config_name, &text, labels)
        .await?;
    swarm.apply(plan.to_spec(&id, &secrets)).await?;
    Ok(())
}

/// The Swarm secrets the ingress task mounts: the users of the routes' `basic_auth` (their
/// values from `values`, sent only in the request body), and with HTTPS each file of `plan`
/// (read here, sent the same way) and the app's peer key — created once, random, and found
/// again by its labels at every later deploy so the tasks keep it.
async fn ingress_secrets(
    swarm: &Swarm,
    config: &AppConfig,
    values: &Secrets,
    plan: &IngressPlan,
) -> Result<Vec<crate::ingress::MountedSecret>, DeployError> {
    use crate::ingress::{MountedSecret, PEER_KEY_SECRET};
    let mut out = Vec::new();
    for name in &plan.auth {
        let value = values
            .get(name)
            .ok_or_else(|| DeployError::MissingSecret { name: name.clone() })?;
        let file = crate::ingress::auth_file(name);
        let (id, full) = swarm.ensure_secret(&config.app, &file, value).await?;
        out.push(MountedSecret {
            id,
            name: full,
            file,
        });
    }
    if plan.https_published.is_none() {
        return Ok(out);
    }
    for file in &plan.files {
        let text = std::fs::read_to_string(&file.source).map_err(|e| PlanError::IngressFile {
            path: file.source.display().to_string(),
            reason: e.to_string(),
        })?;
        let (id, name) = swarm
            .ensure_secret(&config.app, &file.secret, &text)
            .await?;
        out.push(MountedSecret {
            id,
            name,
            file: file.secret.clone(),
        });
    }
    let (id, name) = match swarm.find_secret(&config.app, PEER_KEY_SECRET).await? {
        Some(found) => found,
        None => {
            let key = random_key().map_err(|e| {
                DeployError::Swarm(ClusterError::Api {
                    host: swarm.host().to_string(),
                    call: "make the ingress peer key",
                    reason: e.to_string(),
                })
            })?;
            swarm
                .ensure_secret(&config.app, PEER_KEY_SECRET, &key)
                .await?
        }
    };
    out.push(MountedSecret {
        id,
        name,
        file: PEER_KEY_SECRET.into(),
    });
    Ok(out)
}

/// 32 random bytes from the kernel, hex.
fn random_key() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Puts every service of `app` back to the live release before the one serving (or to
/// `to`), gated like a deploy.
pub async fn rollback(
    swarm: &Swarm,
    app: &str,
    to: Option<u64>,
    options: DeployOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<ClusterReport, DeployError> {
    locked(swarm, app, progress, async |progress| {
        rollback_locked(swarm, app, to, options, progress).await
    })
    .await
}

async fn rollback_locked(
    swarm: &Swarm,
    app: &str,
    to: Option<u64>,
    options: DeployOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<ClusterReport, DeployError> {
    let history = swarm.releases(app).await?;
    let serving = serving_release(swarm, app).await?;
    let target = match to {
        Some(to) => history.iter().find(|r| r.release == to && r.live),
        None => history
            .iter()
            .rev()
            .find(|r| r.live && serving.is_none_or(|s| r.release < s)),
    };
    let Some(target) = target else {
        return Err(DeployError::NothingToRollBack {
            app: app.to_string(),
        });
    };
    // The images of the release on every node that may run them, before any service changes.
    let needs: Vec<ImageNeed> = target
        .services
        .values()
        .filter_map(|spec| {
            let task = spec.task_template.as_ref()?;
            Some(ImageNeed {
                image: task.container_spec.as_ref()?.image.clone()?,
                constraints: task
                    .placement
                    .as_ref()
                    .and_then(|p| p.constraints.clone())
                    .unwrap_or_default(),
                ingress_only: false,
            })
        })
        .collect();
    let images = transfer(swarm, options.nodes.as_ref(), needs, progress).await?;
    progress(&format!(
        "release {} of {app} back on every service",
        target.release
    ));
    for spec in target.services.values() {
        swarm.apply(spec.clone()).await?;
    }
    let text = target.release.to_string();
    let mut outcomes = Vec::new();
    for (name, spec) in &target.services {
        let result = swarm
            .wait_converged(name, Some(&text), options.service_timeout)
            .await;
        let outcome = match result {
            Ok(UpdateOutcome::Converged) => (Outcome::Converged, None),
            Ok(UpdateOutcome::RolledBack { message }) => {
                (Outcome::RolledBackBySwarm, Some(message))
            }
            Ok(UpdateOutcome::Paused { message }) => (Outcome::Paused, Some(message)),
            Err(ClusterError::Timeout { .. }) => (Outcome::TimedOut, None),
            Err(e) => return Err(e.into()),
        };
        let service = spec
            .labels
            .as_ref()
            .and_then(|l| l.get("dockhand.service").cloned())
            .unwrap_or_else(|| name.clone());
        progress(&format!("service {service}: {}", word(outcome.0)));
        outcomes.push(ServiceOutcome {
            service,
            swarm_service: name.clone(),
            kind: PlanKind::Service,
            outcome: outcome.0,
            message: outcome.1,
        });
    }
    Ok(ClusterReport {
        app: app.to_string(),
        release: target.release,
        previous: serving,
        ok: outcomes.iter().all(|o| o.outcome == Outcome::Converged),
        services: outcomes,
        images,
        tasks: Vec::new(),
    })
}

/// The release the app's services' specs name (the highest, if they differ).
async fn serving_release(swarm: &Swarm, app: &str) -> Result<Option<u64>, ClusterError> {
    let services = swarm.app_services(app).await?;
    Ok(services
        .iter()
        .filter_map(|s| spec_release(s.spec.as_ref()?))
        .max())
}

fn spec_release(spec: &models::ServiceSpec) -> Option<u64> {
    spec.labels.as_ref()?.get("dockhand.release")?.parse().ok()
}

fn outcome_of(
    plan: &ServicePlan,
    result: Result<UpdateOutcome, ClusterError>,
) -> Result<ServiceOutcome, DeployError> {
    let (outcome, message) = match result {
        Ok(UpdateOutcome::Converged) => (Outcome::Converged, None),
        Ok(UpdateOutcome::RolledBack { message }) => (Outcome::RolledBackBySwarm, Some(message)),
        Ok(UpdateOutcome::Paused { message }) => (Outcome::Paused, Some(message)),
        Err(ClusterError::Timeout { .. }) => (Outcome::TimedOut, None),
        Err(e) => return Err(e.into()),
    };
    Ok(ServiceOutcome {
        service: plan.service.clone(),
        swarm_service: plan.name.clone(),
        kind: plan.kind,
        outcome,
        message,
    })
}

/// The outcome in a few words.
pub fn word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Converged => "every replica runs the release",
        Outcome::RolledBackBySwarm => "a new task failed; Swarm rolled it back",
        Outcome::Paused => "Swarm paused the update",
        Outcome::TimedOut => "not every replica ran the release in time",
        Outcome::Reverted => "back on the previous release",
        Outcome::Removed => "removed",
    }
}
