//! Planning a deploy: from the release wanted and what the agent observed, the ordered steps
//! that take the server there. Pure — no I/O, no clock — so the order of a deploy is data a
//! test reads ([`plan`], [`plan_restart`]); `execute.rs` performs the steps.
//!
//! A deploy, reload or rollback:
//!
//! ```text
//! database…  image…  static…  pre_deploy…  start… (depends_on order, a gate before a service that waits for a dependency's health)  gate  commit  swap  drain  stop  post_deploy…  prune
//! ```
//!
//! A canary deploy (`[deploy] strategy = "canary"`, a deploy or reload beside a serving
//! release) has a `canary` step between the gate and the commit: a share of requests to the
//! new release, step by step, judged against the serving release. Its failure aborts like the
//! gate's, after the canary's requests have been sent back and its instances drained.
//!
//! Every step before `commit` is undone by stopping what the plan started: the serving release
//! never stops serving. After `commit` nothing aborts: `post_deploy` failing is a warning. The
//! restart of the committed release when the agent starts skips the hooks, the gate and the
//! commit (it is already committed), and routes to the instances at once (each takes traffic
//! once it passes its health check):
//!
//! ```text
//! recover  reap  database…  image…  static…  start…  swap
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use dockhand_config::{
    AppConfig, CanaryConfig, ProxySettings, PullPolicy, ServiceConfig, StaticSource, Strategy,
};

/// Releases retained for rollback beyond the current one.
pub const KEEP_RELEASES: usize = 10;
/// How long a health-checked instance may take to pass when its service sets no
/// `deploy_timeout`.
const DEFAULT_GATE: Duration = Duration::from_secs(60);

/// Why a release is being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployKind {
    /// `dockhand deploy`: the configuration file as a new release (builds its images).
    Deploy,
    /// A changed configuration file through the startup path (`dockhand reload`, SIGHUP,
    /// `dockhand up`): a new release like a deploy.
    Reload,
    /// A retained release again, on its retained builds.
    Rollback,
    /// The committed release, when the agent starts.
    Restart,
}

impl DeployKind {
    /// Whether the release is new, so its images are built rather than reused.
    pub fn builds(self) -> bool {
        matches!(self, DeployKind::Deploy | DeployKind::Reload)
    }

    /// The word used in messages and events (a reload reports as a deploy).
    pub fn word(self) -> &'static str {
        match self {
            DeployKind::Deploy | DeployKind::Reload => "deploy",
            DeployKind::Rollback => "rollback",
            DeployKind::Restart => "restart",
        }
    }

    /// The note stored with a new release.
    pub fn note(self) -> &'static str {
        match self {
            DeployKind::Reload => "reload",
            _ => "deploy",
        }
    }
}

/// The release wanted.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub kind: DeployKind,
    pub release: i64,
    /// The deployment record of this attempt (0 for a restart, which has none).
    pub deployment: i64,
    pub config: &'a AppConfig,
    /// Images already built elsewhere (a remote deploy's local build, sent layer by layer),
    /// by service: tagged as the release's build instead of building.
    pub prebuilt: &'a BTreeMap<String, String>,
}

/// What the agent saw before planning.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The release that serves now, if any.
    pub serving: Option<Serving>,
    /// The wanted configuration's databases as the Docker Engine has them.
    pub databases: BTreeMap<String, DatabaseSeen>,
    /// What a previous run left unfinished (only looked for when the agent starts).
    pub unfinished: Unfinished,
}

/// The serving release.
#[derive(Debug, Clone)]
pub struct Serving {
    pub release: i64,
    pub proxy: ProxySettings,
    pub instances: Vec<ServingInstance>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingInstance {
    pub id: String,
    pub service: String,
    /// Whether the proxy routes to it (a web instance), so it is drained before it stops.
    pub routed: bool,
}

/// A database container as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseSeen {
    Missing,
    /// `current`: it was made from the wanted table (the spec hashes match).
    Stopped {
        current: bool,
    },
    Running {
        current: bool,
    },
}

/// Records of a run that stopped without finishing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unfinished {
    /// Releases left `pending` by a deploy the agent did not finish.
    pub pending: Vec<i64>,
    /// Instance records of the previous run (their processes may still be alive).
    pub instances: Vec<String>,
}

/// The ordered steps, and what the plan already knows to warn about.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub kind: DeployKind,
    pub release: i64,
    pub deployment: i64,
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Mark what a crash left unfinished: pending releases fail, running deployments abort,
    /// instance records are forgotten.
    Recover {
        abandon: Vec<i64>,
        forget: Vec<String>,
    },
    /// Kill every process, and remove every service and job container, of a previous run of
    /// this agent (databases stay). `containers`: the app needs the Docker Engine.
    Reap { containers: bool },
    /// Make a database run, and be ready, before any service starts.
    Database {
        name: String,
        action: DatabaseAction,
    },
    /// Make a container service's image present.
    Image { service: String, source: ImagePlan },
    /// Make a static service's files for this release ready for the proxy: copied for a new
    /// release, the retained copy for a rollback or restart.
    Static { service: String, source: StaticPlan },
    /// A deploy hook in a one-off job of the new release (its environment, image, volumes).
    Hook {
        service: String,
        phase: HookPhase,
        command: String,
    },
    /// Start the replicas of one service, with these instance ids.
    Start {
        service: String,
        instances: Vec<String>,
    },
    /// Wait until every new instance passes its gate (all at once; the first failure ends it).
    Gate { checks: Vec<GateCheck> },
    /// Send `canary.steps` shares of the requests of `services` (sticky per client) to the new
    /// release, each for `canary.step`, comparing it with `serving` after every monitor sample;
    /// a worse figure aborts the deploy.
    Canary {
        serving: i64,
        services: Vec<String>,
        canary: CanaryConfig,
    },
    /// Build the new routing table, then record the release as current: from here on a
    /// restart of the agent serves it.
    Commit,
    /// Route to the new instances (one atomic swap) and make them the serving release.
    Swap,
    /// Wait until no request or WebSocket holds the old routed instances, or the timeout.
    Drain {
        release: i64,
        instances: Vec<String>,
        timeout: Duration,
    },
    /// Stop the old instances.
    Stop {
        release: i64,
        instances: Vec<String>,
    },
    /// Forget releases beyond retention, their builds, and old log files.
    Prune,
}

impl Step {
    /// A short name: the failpoint label, and how tests and messages refer to the step.
    pub fn label(&self) -> &'static str {
        match self {
            Step::Recover { .. } => "recover",
            Step::Reap { .. } => "reap",
            Step::Database { .. } => "database",
            Step::Image { .. } => "image",
            Step::Static { .. } => "static",
            Step::Hook {
                phase: HookPhase::PreDeploy,
                ..
            } => "pre_deploy",
            Step::Hook {
                phase: HookPhase::PostDeploy,
                ..
            } => "post_deploy",
            Step::Start { .. } => "start",
            Step::Gate { .. } => "gate",
            Step::Canary { .. } => "canary",
            Step::Commit => "commit",
            Step::Swap => "swap",
            Step::Drain { .. } => "drain",
            Step::Stop { .. } => "stop",
            Step::Prune => "prune",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseAction {
    Create,
    Start,
    /// Running: leave it alone (a changed table is only reported).
    Keep,
    /// `dockhand db upgrade`: replace the container from its new table, on the same volume.
    Recreate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagePlan {
    /// Build the service's `build` context as `tag` (a new release).
    Build { tag: String },
    /// Tag `image`, built elsewhere and already here, as `tag` (a new release of a remote
    /// deploy that built locally).
    Prebuilt { image: String, tag: String },
    /// The build of an earlier release, which must still be there (never rebuilt).
    Retained { tag: String },
    /// An image reference, pulled per its policy.
    Reference { image: String, pull: PullPolicy },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticPlan {
    /// Copy the directory into the release's own (a new release).
    CopyDir(std::path::PathBuf),
    /// Copy this directory out of the service's image (a new release).
    CopyFromImage(String),
    /// The copy made when the release was new.
    Retained,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPhase {
    PreDeploy,
    PostDeploy,
}

impl HookPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            HookPhase::PreDeploy => "pre_deploy",
            HookPhase::PostDeploy => "post_deploy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateCheck {
    pub instance: String,
    pub service: String,
    pub kind: GateKind,
    pub deadline: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateKind {
    /// Passes its health threshold (an HTTP path, a TCP connect, or a health command).
    Healthy,
    /// A worker: stays up, unrestarted, for a moment.
    StaysUp,
}

/// The plan of a deploy, reload or rollback of `target`, beside what `observed` serves.
pub fn plan(target: Target<'_>, observed: &Observed) -> Plan {
    let config = target.config;
    let mut plan = Plan {
        kind: target.kind,
        release: target.release,
        deployment: target.deployment,
        steps: Vec::new(),
        warnings: Vec::new(),
    };
    if let Some(serving) = &observed.serving {
        if serving.proxy != config.proxy {
            plan.warnings.push(
                "the [proxy] settings changed; they take effect when the agent restarts".into(),
            );
        }
    }
    prepare(&mut plan, config, observed, target.prebuilt);
    hooks(&mut plan, config, HookPhase::PreDeploy);
    let started = start(&mut plan, config, true);
    plan.steps.push(Step::Gate {
        checks: started
            .iter()
            .map(|(svc, id)| gate_check(svc, id))
            .collect(),
    });
    if target.kind.builds() && config.deploy.strategy == Strategy::Canary {
        canary(&mut plan, config, observed);
    }
    plan.steps.push(Step::Commit);
    plan.steps.push(Step::Swap);
    if let Some(old) = &observed.serving {
        let routed: Vec<String> = old
            .instances
            .iter()
            .filter(|i| i.routed)
            .map(|i| i.id.clone())
            .collect();
        if !routed.is_empty() {
            plan.steps.push(Step::Drain {
                release: old.release,
                instances: routed,
                timeout: config.proxy.drain_timeout,
            });
        }
        plan.steps.push(Step::Stop {
            release: old.release,
            instances: old.instances.iter().map(|i| i.id.clone()).collect(),
        });
    }
    hooks(&mut plan, config, HookPhase::PostDeploy);
    plan.steps.push(Step::Prune);
    plan
}

/// The plan of the agent's start: clean up what a previous run left, then start the committed
/// release (`None`: nothing was ever committed; only the clean-up runs).
pub fn plan_restart(committed: Option<(i64, &AppConfig)>, observed: &Observed) -> Plan {
    let mut plan = Plan {
        kind: DeployKind::Restart,
        release: committed.map(|(r, _)| r).unwrap_or(0),
        deployment: 0,
        steps: vec![Step::Recover {
            abandon: observed.unfinished.pending.clone(),
            forget: observed.unfinished.instances.clone(),
        }],
        warnings: Vec::new(),
    };
    plan.steps.push(Step::Reap {
        containers: committed.is_some_and(|(_, c)| c.uses_containers()),
    });
    if let Some((_, config)) = committed {
        prepare(&mut plan, config, observed, &BTreeMap::new());
        // No gate on a restart: what was committed passed its gates; the order stays.
        start(&mut plan, config, false);
        plan.steps.push(Step::Swap);
    }
    plan
}

/// The services with every service before the ones that depend on it (the configuration
/// has no cycles); otherwise in name order.
pub fn start_order(config: &AppConfig) -> Vec<&ServiceConfig> {
    fn visit<'c>(
        config: &'c AppConfig,
        name: &str,
        order: &mut Vec<&'c ServiceConfig>,
        depth: usize,
    ) {
        let Some(svc) = config.services.get(name) else {
            return;
        };
        if depth > config.services.len() || order.iter().any(|s| s.name == svc.name) {
            return;
        }
        for dep in &svc.depends_on {
            visit(config, dep, order, depth + 1);
        }
        if !order.iter().any(|s| s.name == svc.name) {
            order.push(svc);
        }
    }
    let mut order = Vec::new();
    for name in config.services.keys() {
        visit(config, name, &mut order, 0);
    }
    order
}

/// The instance id of replica `index` of `service`: `d<deployment>r<release>-<service>-<index>`.
pub fn instance_id(deployment: i64, release: i64, service: &str, index: u32) -> String {
    format!("d{deployment}r{release}-{service}-{index}")
}

/// The tag of a service's build for `release`: its image's repository, tagged `r<release>`.
pub fn build_tag(svc: &ServiceConfig, release: i64) -> Option<String> {
    let c = svc.container.as_ref()?;
    c.build.as_ref()?;
    let repo = match c.image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => c.image.as_str(),
    };
    Some(format!("{repo}:r{release}"))
}

/// The databases, then the images of the container services.
fn prepare(
    plan: &mut Plan,
    config: &AppConfig,
    observed: &Observed,
    prebuilt: &BTreeMap<String, String>,
) {
    for db in config.databases.values() {
        let seen = observed
            .databases
            .get(&db.name)
            .copied()
            .unwrap_or(DatabaseSeen::Missing);
        let action = match seen {
            DatabaseSeen::Missing => DatabaseAction::Create,
            DatabaseSeen::Stopped { .. } => DatabaseAction::Start,
            DatabaseSeen::Running { .. } => DatabaseAction::Keep,
        };
        if matches!(
            seen,
            DatabaseSeen::Stopped { current: false } | DatabaseSeen::Running { current: false }
        ) {
            plan.warnings.push(format!(
                "database `{}` changed in dockhand.toml and keeps running as it was; `dockhand db upgrade {}` applies the change (the data volume stays)",
                db.name, db.name
            ));
        }
        plan.steps.push(Step::Database {
            name: db.name.clone(),
            action,
        });
    }
    for svc in config.services.values() {
        let Some(c) = &svc.container else { continue };
        let source = match build_tag(svc, plan.release) {
            Some(tag) if plan.kind.builds() => match prebuilt.get(&svc.name) {
                Some(image) => ImagePlan::Prebuilt {
                    image: image.clone(),
                    tag,
                },
                None => ImagePlan::Build { tag },
            },
            Some(tag) => ImagePlan::Retained { tag },
            None => ImagePlan::Reference {
                image: c.image.clone(),
                pull: c.pull,
            },
        };
        plan.steps.push(Step::Image {
            service: svc.name.clone(),
            source,
        });
    }
    for svc in config.services.values() {
        let Some(site) = &svc.static_site else {
            continue;
        };
        let source = match (&site.source, plan.kind.builds()) {
            (StaticSource::Dir(dir), true) => StaticPlan::CopyDir(dir.clone()),
            (StaticSource::Image(path), true) => StaticPlan::CopyFromImage(path.clone()),
            (_, false) => StaticPlan::Retained,
        };
        plan.steps.push(Step::Static {
            service: svc.name.clone(),
            source,
        });
    }
}

/// The canary step: the routed services the serving release routes too (a new service has no
/// traffic to compare with, so it takes its requests at the swap).
fn canary(plan: &mut Plan, config: &AppConfig, observed: &Observed) {
    let Some(serving) = &observed.serving else {
        plan.warnings.push(
            "no release serves yet, so there is nothing to compare a canary with: deployed all at once"
                .into(),
        );
        return;
    };
    let services: Vec<String> = config
        .services
        .values()
        .filter(|s| !s.routes.is_empty() && s.static_site.is_none())
        .filter(|s| {
            serving
                .instances
                .iter()
                .any(|i| i.routed && i.service == s.name)
        })
        .map(|s| s.name.clone())
        .collect();
    if services.is_empty() {
        plan.warnings.push(format!(
            "no routed service of release {} is served by release {} too: deployed all at once",
            plan.release, serving.release
        ));
        return;
    }
    plan.steps.push(Step::Canary {
        serving: serving.release,
        services,
        canary: config.deploy.canary.clone(),
    });
}

fn hooks(plan: &mut Plan, config: &AppConfig, phase: HookPhase) {
    for svc in config.services.values() {
        let command = match phase {
            HookPhase::PreDeploy => &svc.hooks.pre_deploy,
            HookPhase::PostDeploy => &svc.hooks.post_deploy,
        };
        if let Some(command) = command {
            plan.steps.push(Step::Hook {
                service: svc.name.clone(),
                phase,
                command: command.clone(),
            });
        }
    }
}

/// One start step per service, in `depends_on` order. With `gates`, a service that waits for
/// a dependency's health (`condition = "healthy"`) is preceded by a gate step of the
/// instances started so far and not yet gated. Returns the new instances no gate step covers.
fn start<'c>(
    plan: &mut Plan,
    config: &'c AppConfig,
    gates: bool,
) -> Vec<(&'c ServiceConfig, String)> {
    let mut all: Vec<(&ServiceConfig, String)> = Vec::new();
    for svc in start_order(config) {
        if svc.static_site.is_some() {
            continue; // served by the proxy: nothing runs
        }
        let waits = svc
            .healthy_first
            .iter()
            .any(|dep| all.iter().any(|(s, _)| &s.name == dep));
        if gates && waits {
            plan.steps.push(Step::Gate {
                checks: all.iter().map(|(s, id)| gate_check(s, id)).collect(),
            });
            all.clear();
        }
        let ids: Vec<String> = (0..svc.replicas)
            .map(|i| instance_id(plan.deployment, plan.release, &svc.name, i))
            .collect();
        all.extend(ids.iter().map(|id| (svc, id.clone())));
        plan.steps.push(Step::Start {
            service: svc.name.clone(),
            instances: ids,
        });
    }
    all
}

/// The gate of one new instance of `svc`.
fn gate_check(svc: &ServiceConfig, instance: &str) -> GateCheck {
    GateCheck {
        instance: instance.to_string(),
        service: svc.name.clone(),
        kind: gate_kind(svc),
        deadline: svc
            .health
            .as_ref()
            .map(|h| h.deploy_timeout)
            .unwrap_or(DEFAULT_GATE),
    }
}

/// A service with a port or a health command is gated on its health, a worker on staying up.
fn gate_kind(svc: &ServiceConfig) -> GateKind {
    let has_command = svc.health.as_ref().is_some_and(|h| h.command.is_some());
    if svc.port.is_some() || has_command {
        GateKind::Healthy
    } else {
        GateKind::StaysUp
    }
}

#[cfg(test)]
mod tests;
