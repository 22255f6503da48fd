//! The planner with plain data: configurations written as TOML, observations as values.

use super::*;

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let secrets = dir.path().join(".dockhand/secrets.env");
        std::fs::create_dir_all(secrets.parent().unwrap()).unwrap();
        std::fs::write(&secrets, "DB_PASSWORD=pw\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        Project { dir }
    }

    fn config(&self, toml: &str) -> AppConfig {
        dockhand_config::load_str(
            &self.dir.path().join("dockhand.toml"),
            toml,
            &dockhand_config::LoadOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .config
    }
}

const WEB_AND_WORKER: &str = r#"
app = "shop"
[services.web]
command = "web"
port = 8000
health = { path = "/health", deploy_timeout = "20s" }
route = { path = "/" }
replicas = 2
depends_on = ["worker"]
hooks = { pre_deploy = "migrate", post_deploy = "notify" }
[services.worker]
command = "work"
"#;

fn target(kind: DeployKind, release: i64, deployment: i64, config: &AppConfig) -> Target<'_> {
    Target {
        kind,
        release,
        deployment,
        config,
        prebuilt: &NO_PREBUILT,
    }
}

static NO_PREBUILT: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

fn labels(plan: &Plan) -> Vec<&'static str> {
    plan.steps.iter().map(Step::label).collect()
}

fn serving(
    release: i64,
    deployment: i64,
    proxy: &ProxySettings,
    svcs: &[(&str, u32, bool)],
) -> Serving {
    Serving {
        release,
        proxy: proxy.clone(),
        instances: svcs
            .iter()
            .flat_map(|(svc, n, routed)| {
                (0..*n).map(move |i| ServingInstance {
                    id: instance_id(deployment, release, svc, i),
                    service: svc.to_string(),
                    routed: *routed,
                })
            })
            .collect(),
    }
}

#[test]
fn a_first_deploy_runs_the_migration_before_anything_starts_then_gates_commits_and_swaps() {
    let p = Project::new();
    let config = p.config(WEB_AND_WORKER);
    let plan = plan(
        target(DeployKind::Deploy, 1, 1, &config),
        &Observed::default(),
    );
    assert_eq!(
        labels(&plan),
        [
            "pre_deploy",
            "start",
            "start",
            "gate",
            "commit",
            "swap",
            "post_deploy",
            "prune"
        ]
    );
    assert_eq!(
        plan.steps[0],
        Step::Hook {
            service: "web".into(),
            phase: HookPhase::PreDeploy,
            command: "migrate".into()
        }
    );
    // depends_on: the worker starts before the web service that needs it.
    assert_eq!(
        plan.steps[1],
        Step::Start {
            service: "worker".into(),
            instances: vec!["d1r1-worker-0".into()]
        }
    );
    assert_eq!(
        plan.steps[2],
        Step::Start {
            service: "web".into(),
            instances: vec!["d1r1-web-0".into(), "d1r1-web-1".into()]
        }
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
}

#[test]
fn a_web_service_is_gated_on_health_and_a_worker_on_staying_up() {
    let p = Project::new();
    let config = p.config(WEB_AND_WORKER);
    let plan = plan(
        target(DeployKind::Deploy, 1, 1, &config),
        &Observed::default(),
    );
    let Step::Gate { checks } = &plan.steps[3] else {
        panic!("{:?}", plan.steps[3])
    };
    let by_instance: Vec<(&str, GateKind, u64)> = checks
        .iter()
        .map(|c| (c.instance.as_str(), c.kind, c.deadline.as_secs()))
        .collect();
    assert_eq!(
        by_instance,
        [
            ("d1r1-worker-0", GateKind::StaysUp, 60),
            ("d1r1-web-0", GateKind::Healthy, 20),
            ("d1r1-web-1", GateKind::Healthy, 20),
        ]
    );
}

#[test]
fn a_service_that_waits_for_a_dependency_s_health_starts_after_its_gate() {
    let p = Project::new();
    let config = p.config(
        r#"
app = "shop"
[services.api]
command = "api"
port = 8001
[services.cache]
command = "cache"
[services.web]
command = "web"
port = 8000
depends_on = ["cache", { service = "api", condition = "healthy" }]
[services.admin]
command = "admin"
port = 8002
depends_on = [{ service = "web", condition = "started" }]
"#,
    );
    let plan = plan(
        target(DeployKind::Deploy, 1, 1, &config),
        &Observed::default(),
    );
    let order: Vec<String> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Start { service, .. } => Some(format!("start {service}")),
            Step::Gate { checks } => Some(format!(
                "gate {}",
                checks
                    .iter()
                    .map(|c| c.service.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            _ => None,
        })
        .collect();
    // `api` (and `cache`, started before it in depends_on order) pass their gate before `web` starts; `admin`
    // only starts after `web`, and the release's gate covers what is left.
    assert_eq!(
        order,
        [
            "start cache",
            "start api",
            "gate cache,api",
            "start web",
            "start admin",
            "gate web,admin",
        ]
    );
    // A restart keeps the order and has no gate.
    let restart = plan_restart(Some((1, &config)), &Observed::default());
    assert!(!restart.steps.iter().any(|s| matches!(s, Step::Gate { .. })));
}

#[test]
fn a_deploy_that_adds_a_replica_starts_a_whole_new_release_and_drains_the_old_one() {
    let p = Project::new();
    let config = p.config(&WEB_AND_WORKER.replace("replicas = 2", "replicas = 3"));
    let observed = Observed {
        serving: Some(serving(
            4,
            7,
            &config.proxy,
            &[("web", 2, true), ("worker", 1, false)],
        )),
        ..Observed::default()
    };
    let plan = plan(target(DeployKind::Deploy, 5, 8, &config), &observed);
    assert_eq!(
        labels(&plan),
        [
            "pre_deploy",
            "start",
            "start",
            "gate",
            "commit",
            "swap",
            "drain",
            "stop",
            "post_deploy",
            "prune"
        ]
    );
    assert_eq!(
        plan.steps[2],
        Step::Start {
            service: "web".into(),
            instances: vec![
                "d8r5-web-0".into(),
                "d8r5-web-1".into(),
                "d8r5-web-2".into()
            ]
        }
    );
    // Only routed instances are drained; every old one is stopped.
    assert_eq!(
        plan.steps[6],
        Step::Drain {
            release: 4,
            instances: vec!["d7r4-web-0".into(), "d7r4-web-1".into()],
            timeout: config.proxy.drain_timeout,
        }
    );
    assert_eq!(
        plan.steps[7],
        Step::Stop {
            release: 4,
            instances: vec![
                "d7r4-web-0".into(),
                "d7r4-web-1".into(),
                "d7r4-worker-0".into()
            ]
        }
    );
}

#[test]
fn a_removed_service_is_stopped_and_not_started_again() {
    let p = Project::new();
    let config = p.config(
        "app = \"shop\"\n[services.web]\ncommand = \"web\"\nport = 8000\nroute = { path = \"/\" }\n",
    );
    let observed = Observed {
        serving: Some(serving(
            2,
            2,
            &config.proxy,
            &[("web", 1, true), ("worker", 1, false)],
        )),
        ..Observed::default()
    };
    let plan = plan(target(DeployKind::Deploy, 3, 3, &config), &observed);
    assert_eq!(
        labels(&plan),
        ["start", "gate", "commit", "swap", "drain", "stop", "prune"]
    );
    assert!(!plan
        .steps
        .iter()
        .any(|s| matches!(s, Step::Start { service, .. } if service == "worker")));
    assert_eq!(
        plan.steps[5],
        Step::Stop {
            release: 2,
            instances: vec!["d2r2-web-0".into(), "d2r2-worker-0".into()]
        }
    );
    // A web service without a health table is gated on its port (TCP).
    let Step::Gate { checks } = &plan.steps[1] else {
        panic!()
    };
    assert_eq!(checks[0].kind, GateKind::Healthy);
}

const CONTAINERS: &str = r#"
app = "shop"
[databases.db]
engine = "postgres"
version = "15"
[services.api]
build = { context = "." }
port = 8000
route = { path = "/api" }
[services.web]
image = "nginx:1.27"
port = 80
route = { path = "/" }
"#;

#[test]
fn a_new_release_builds_and_a_rollback_reuses_the_retained_build() {
    let p = Project::new();
    let config = p.config(CONTAINERS);
    let running = Observed {
        databases: [("db".to_string(), DatabaseSeen::Running { current: true })].into(),
        ..Observed::default()
    };
    let deploy = plan(target(DeployKind::Deploy, 6, 9, &config), &running);
    assert_eq!(
        &deploy.steps[..3],
        [
            Step::Database {
                name: "db".into(),
                action: DatabaseAction::Keep
            },
            Step::Image {
                service: "api".into(),
                source: ImagePlan::Build {
                    tag: "dockhand/shop-api:r6".into()
                }
            },
            Step::Image {
                service: "web".into(),
                source: ImagePlan::Reference {
                    image: "nginx:1.27".into(),
                    pull: PullPolicy::Missing
                }
            },
        ]
    );
    let rollback = plan(target(DeployKind::Rollback, 3, 10, &config), &running);
    assert_eq!(
        rollback.steps[1],
        Step::Image {
            service: "api".into(),
            source: ImagePlan::Retained {
                tag: "dockhand/shop-api:r3".into()
            }
        }
    );
    assert!(!rollback.steps.iter().any(|s| matches!(
        s,
        Step::Image {
            source: ImagePlan::Build { .. },
            ..
        }
    )));
    assert_eq!(
        labels(&rollback)[3..],
        ["start", "start", "gate", "commit", "swap", "prune"]
    );
}

#[test]
fn a_database_whose_table_changed_is_reported_and_left_running() {
    let p = Project::new();
    let config = p.config(CONTAINERS);
    for (seen, action, warned) in [
        (DatabaseSeen::Missing, DatabaseAction::Create, false),
        (
            DatabaseSeen::Stopped { current: true },
            DatabaseAction::Start,
            false,
        ),
        (
            DatabaseSeen::Running { current: true },
            DatabaseAction::Keep,
            false,
        ),
        (
            DatabaseSeen::Running { current: false },
            DatabaseAction::Keep,
            true,
        ),
        (
            DatabaseSeen::Stopped { current: false },
            DatabaseAction::Start,
            true,
        ),
    ] {
        let observed = Observed {
            databases: [("db".to_string(), seen)].into(),
            ..Observed::default()
        };
        let plan = plan(target(DeployKind::Deploy, 2, 2, &config), &observed);
        assert_eq!(
            plan.steps[0],
            Step::Database {
                name: "db".into(),
                action
            },
            "{seen:?}"
        );
        assert!(!plan.steps.iter().any(|s| matches!(
            s,
            Step::Database {
                action: DatabaseAction::Recreate,
                ..
            }
        )));
        assert_eq!(
            plan.warnings.len(),
            usize::from(warned),
            "{seen:?}: {:?}",
            plan.warnings
        );
        if warned {
            assert!(
                plan.warnings[0].contains("dockhand db upgrade db"),
                "{:?}",
                plan.warnings
            );
        }
    }
}

#[test]
fn a_restart_after_a_crash_abandons_the_pending_release_and_starts_the_committed_one() {
    let p = Project::new();
    let config = p.config(WEB_AND_WORKER);
    let observed = Observed {
        unfinished: Unfinished {
            pending: vec![5],
            instances: vec!["d7r4-web-0".into(), "d8r5-web-0".into()],
        },
        ..Observed::default()
    };
    let plan = plan_restart(Some((4, &config)), &observed);
    assert_eq!(plan.kind, DeployKind::Restart);
    assert_eq!(
        plan.steps[..2],
        [
            Step::Recover {
                abandon: vec![5],
                forget: vec!["d7r4-web-0".into(), "d8r5-web-0".into()]
            },
            Step::Reap { containers: false },
        ]
    );
    // The committed release, as deployment 0; no hooks, no gate, no commit.
    assert_eq!(labels(&plan)[2..], ["start", "start", "swap"]);
    assert_eq!(
        plan.steps[3],
        Step::Start {
            service: "web".into(),
            instances: vec!["d0r4-web-0".into(), "d0r4-web-1".into()]
        }
    );
    // Nothing committed yet: only the clean-up.
    let nothing = plan_restart(None, &observed);
    assert_eq!(labels(&nothing), ["recover", "reap"]);
}

#[test]
fn a_restart_of_a_container_app_reaps_containers_and_reuses_its_build() {
    let p = Project::new();
    let config = p.config(CONTAINERS);
    let plan = plan_restart(Some((3, &config)), &Observed::default());
    assert_eq!(plan.steps[1], Step::Reap { containers: true });
    assert_eq!(
        plan.steps[3],
        Step::Image {
            service: "api".into(),
            source: ImagePlan::Retained {
                tag: "dockhand/shop-api:r3".into()
            }
        }
    );
}

#[test]
fn changed_proxy_settings_are_reported_as_needing_a_restart() {
    let p = Project::new();
    let config = p.config(WEB_AND_WORKER);
    let mut old_proxy = config.proxy.clone();
    old_proxy.drain_timeout = Duration::from_secs(1);
    let observed = Observed {
        serving: Some(serving(1, 1, &old_proxy, &[("web", 1, true)])),
        ..Observed::default()
    };
    let plan = plan(target(DeployKind::Reload, 2, 2, &config), &observed);
    assert_eq!(
        plan.warnings,
        ["the [proxy] settings changed; they take effect when the agent restarts"]
    );
}

#[test]
fn start_order_puts_dependencies_first_and_survives_unknown_names() {
    let p = Project::new();
    let config = p.config(
        r#"
app = "a"
[databases.db]
engine = "redis"
[services.a]
command = "x"
depends_on = ["c", "db"]
[services.b]
command = "x"
[services.c]
command = "x"
depends_on = ["b"]
"#,
    );
    let names: Vec<&str> = start_order(&config)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["b", "c", "a"]);
}

#[test]
fn build_tags_replace_the_tag_and_keep_registry_ports() {
    let mut svc = ServiceConfig {
        name: "api".into(),
        command: String::new(),
        workdir: std::path::PathBuf::from("/"),
        port: None,
        env: std::collections::BTreeMap::new(),
        health: None,
        routes: Vec::new(),
        replicas: 1,
        restart: dockhand_config::RestartPolicy::Always,
        memory_limit: None,
        stop_timeout: Duration::from_secs(10),
        hooks: Default::default(),
        container: None,
        depends_on: Vec::new(),
        healthy_first: Vec::new(),
        static_site: None,
    };
    assert_eq!(build_tag(&svc, 3), None);
    let mut c = dockhand_config::ContainerConfig {
        image: "registry.local:5000/shop/api".into(),
        build: Some(dockhand_config::BuildConfig {
            on: Default::default(),
            context: "/x".into(),
            dockerfile: "/x/Dockerfile".into(),
            target: None,
            args: std::collections::BTreeMap::new(),
        }),
        pull: PullPolicy::Missing,
        command: None,
        entrypoint: None,
        volumes: Vec::new(),
        cpus: None,
        user: None,
        init: false,
        shm_size: None,
        ulimits: Vec::new(),
    };
    svc.container = Some(c.clone());
    assert_eq!(
        build_tag(&svc, 3).as_deref(),
        Some("registry.local:5000/shop/api:r3")
    );
    c.image = "shop/api:1.2".into();
    svc.container = Some(c);
    assert_eq!(build_tag(&svc, 12).as_deref(), Some("shop/api:r12"));
}

#[test]
fn a_static_service_is_copied_for_a_new_release_reused_by_a_rollback_and_never_started() {
    let p = Project::new();
    std::fs::create_dir_all(p.dir.path().join("dist")).unwrap();
    let config = p.config(
        "app = \"site\"\n[services.web]\nstatic = \"dist\"\nroute = { path = \"/\" }\n[services.api]\ncommand = \"api\"\nport = 8000\nhealth = { path = \"/h\" }\nroute = { path = \"/api\" }\n",
    );
    let deploy = plan(
        target(DeployKind::Deploy, 2, 3, &config),
        &Observed::default(),
    );
    assert_eq!(
        labels(&deploy),
        ["static", "start", "gate", "commit", "swap", "prune"]
    );
    assert_eq!(
        deploy.steps[0],
        Step::Static {
            service: "web".into(),
            source: StaticPlan::CopyDir(p.dir.path().join("dist")),
        }
    );
    assert!(matches!(&deploy.steps[1], Step::Start { service, .. } if service == "api"));
    let rollback = plan(
        target(DeployKind::Rollback, 1, 4, &config),
        &Observed::default(),
    );
    assert_eq!(
        rollback.steps[0],
        Step::Static {
            service: "web".into(),
            source: StaticPlan::Retained,
        }
    );
    let restart = plan_restart(Some((2, &config)), &Observed::default());
    assert_eq!(
        labels(&restart),
        ["recover", "reap", "static", "start", "swap"]
    );
}

#[test]
fn a_canary_deploy_splits_traffic_between_the_gate_and_the_commit_and_a_rollback_never_does() {
    let p = Project::new();
    let config = p.config(&format!(
        "{WEB_AND_WORKER}\n[deploy]\nstrategy = \"canary\"\n[deploy.canary]\nsteps = [\"5%\", \"25%\"]\nstep = \"30s\"\n"
    ));
    let observed = Observed {
        serving: Some(serving(
            4,
            7,
            &config.proxy,
            &[("web", 2, true), ("worker", 1, false)],
        )),
        ..Observed::default()
    };
    let plan = plan(target(DeployKind::Deploy, 5, 8, &config), &observed);
    assert_eq!(
        labels(&plan),
        [
            "pre_deploy",
            "start",
            "start",
            "gate",
            "canary",
            "commit",
            "swap",
            "drain",
            "stop",
            "post_deploy",
            "prune"
        ]
    );
    let Step::Canary {
        serving: 4,
        services,
        canary,
    } = &plan.steps[4]
    else {
        panic!("{:?}", plan.steps[4]);
    };
    // Only the routed service is split; the worker has no requests to compare.
    assert_eq!(services, &["web".to_string()]);
    assert_eq!(canary.steps, [500, 2500]);
    assert_eq!(canary.step, std::time::Duration::from_secs(30));

    // A rollback puts a known release back at once.
    let rollback = super::plan(target(DeployKind::Rollback, 3, 9, &config), &observed);
    assert!(!labels(&rollback).contains(&"canary"));
    // A first deploy has nothing to compare with: all at once, and it says so.
    let first = super::plan(
        target(DeployKind::Deploy, 1, 1, &config),
        &Observed::default(),
    );
    assert!(!labels(&first).contains(&"canary"));
    assert!(
        first.warnings.iter().any(|w| w.contains("canary")),
        "{:?}",
        first.warnings
    );
}
