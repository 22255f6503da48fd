//! The executor against the real process runtime: real processes (the testapp), a real
//! proxy on a loopback port, a real state database — a deploy's steps as they happen, a
//! failed gate, a failing migration, and the restart after a crash.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dockhand_api::Progress;
use dockhand_config::AppConfig;
use dockhand_state::{ReleaseStatus, Store};
use dockhand_test_support::{processes_with_env, testapp_bin};

use super::*;
use crate::layout::StateLayout;
use crate::proxy::ProxyService;
use crate::secrets::Redactor;

/// A deployer over a temporary project and state directory, with its own agent id.
struct Harness {
    dir: tempfile::TempDir,
    agent_id: String,
    d: Deployer,
    proxy: ProxyService,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let agent_id = format!("t{:x}", fastrand_id());
        Harness::on(dir, agent_id)
    }

    /// A deployer on an existing state directory and agent id (the agent started again).
    fn on(dir: tempfile::TempDir, agent_id: String) -> Harness {
        let layout = Arc::new(StateLayout::create(&dir.path().join("state")).unwrap());
        let store = Arc::new(Store::open(&layout.database()).unwrap());
        let events = Events::new(store.clone(), Redactor::default());
        let fleet = Fleet::default();
        let boot = config_in(dir.path(), "v0", "");
        let (proxy, _) = ProxyService::bind(
            &boot,
            fleet.clone(),
            &dir.path().join("access.log"),
            &Default::default(),
        )
        .unwrap();
        // The agent opens its proxy once it has restarted the committed release; these tests
        // drive the deployer alone, on a proxy open from the start.
        proxy.handle().open();
        let d = Deployer {
            layout,
            store,
            events: events.clone(),
            runtimes: Runtimes::new(&agent_id),
            proxy: proxy.handle().clone(),
            fleet,
            prober: Prober::new(events),
            webhook: None,
            dashboard: None,
            failpoint: None,
            monitor: None,
            canary: Default::default(),
        };
        Harness {
            dir,
            agent_id,
            d,
            proxy,
        }
    }

    fn config(&self, version: &str, extra: &str) -> AppConfig {
        config_in(self.dir.path(), version, extra)
    }

    async fn deploy(&self, config: AppConfig) -> (DeployOutcome, Vec<Progress>) {
        let steps = Mutex::new(Vec::new());
        let sink = |p: Progress| steps.lock().unwrap().push(p);
        let outcome = self
            .d
            .deploy_new(config, DeployKind::Deploy, "test", &sink)
            .await
            .unwrap();
        (outcome, steps.into_inner().unwrap())
    }

    /// GET `path` through the proxy (host `app.test`): status and body.
    async fn get(&self, path: &str) -> (u16, String) {
        let addr = self.d.proxy.local_addr();
        let path = path.to_string();
        tokio::task::spawn_blocking(move || http_get(addr, &path))
            .await
            .unwrap()
    }

    /// The processes of this agent whose instance id starts with `prefix`.
    fn processes(&self, prefix: &str) -> Vec<dockhand_test_support::Proc> {
        processes_with_env(
            dockhand_runtime::INSTANCE_ENV,
            &format!("{}/{prefix}", self.agent_id),
        )
    }

    /// Stops every instance and the proxy, as the agent does when it stops.
    async fn stop(self) -> tempfile::TempDir {
        let all = self.d.fleet.take_all();
        stop_all(&self.d.prober, &all).await;
        self.d.proxy.shutdown(Duration::from_secs(1)).await;
        drop(self.proxy);
        self.dir
    }
}

fn config_in(dir: &std::path::Path, version: &str, extra: &str) -> AppConfig {
    let toml = format!(
        r#"app = "it"
[proxy]
listen = "127.0.0.1:0"
drain_timeout = "5s"
[services.web]
command = "{bin}"
port = 8000
env = {{ VERSION = "{version}" }}
health = {{ path = "/health", interval = "100ms", timeout = "5s", unhealthy_threshold = 5, deploy_timeout = "20s" }}
route = {{ host = "app.test", path = "/" }}
replicas = 2
stop_timeout = "5s"
{extra}"#,
        bin = testapp_bin().display()
    );
    dockhand_config::load_str(
        &dir.join("dockhand.toml"),
        &toml,
        &dockhand_config::LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .config
}

/// A random id (std's hasher keys are random per process and per call).
fn fastrand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (status, body.unwrap_or_default())
}

/// How many instances have processes (a command's shell and its child count once).
fn instances_running(h: &Harness, prefix: &str) -> usize {
    let mut values: Vec<String> = h.processes(prefix).into_iter().map(|p| p.value).collect();
    values.sort();
    values.dedup();
    values.len()
}

fn ids(h: &Harness) -> Vec<String> {
    let mut ids: Vec<String> = h.d.fleet.live_ids().into_iter().collect();
    ids.sort();
    ids
}

/// The position of the first progress line of `step` whose message contains `text`.
fn at(steps: &[Progress], step: &str, text: &str) -> usize {
    steps
        .iter()
        .position(|p| p.step == step && p.message.contains(text))
        .unwrap_or_else(|| panic!("no `{step}` progress with {text:?} in {steps:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_migrates_before_it_starts_and_replaces_the_serving_release() {
    let h = Harness::new();
    let (first, _) = h.deploy(h.config("v1", "")).await;
    assert!(first.succeeded, "{first:?}");
    assert_eq!(h.get("/version").await, (200, "v1".into()));
    assert_eq!(instances_running(&h, "d1r1-web-"), 2);

    let marker = h.dir.path().join("migrated");
    let hooks = format!(
        "hooks = {{ pre_deploy = \"echo $VERSION > {m}\", post_deploy = \"echo done >> {m}\" }}",
        m = marker.display()
    );
    let (second, steps) = h.deploy(h.config("v2", &hooks)).await;
    assert!(second.succeeded, "{second:?}");
    assert_eq!(second.release, 2);
    // The order of a deploy, as it happened.
    let order = [
        at(&steps, "hook", "pre_deploy"),
        at(&steps, "start", "starting release 2 beside release 1"),
        at(&steps, "start", "d2r2-web-1 started"),
        at(&steps, "health", "d2r2-web-0 is healthy"),
        at(&steps, "swap", "release 2 now serves all traffic"),
        at(&steps, "drain", "draining release 1"),
        at(&steps, "stop", "stopping release 1"),
        at(&steps, "hook", "post_deploy"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?}: {steps:#?}"
    );
    // The migration ran in the new release's environment, before its instances.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "v2\ndone\n");

    assert_eq!(h.get("/version").await, (200, "v2".into()));
    assert_eq!(ids(&h), ["d2r2-web-0", "d2r2-web-1"]);
    assert!(
        h.processes("d1r1-").is_empty(),
        "the old release is stopped"
    );
    let store = &h.d.store;
    assert_eq!(store.current_release().unwrap().unwrap().id, 2);
    assert_eq!(
        store.release(1).unwrap().unwrap().status,
        ReleaseStatus::Retired
    );
    let records: Vec<String> = store
        .instances()
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(records, ["d2r2-web-0", "d2r2-web-1"]);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_gate_removes_the_new_release_and_the_old_one_keeps_serving() {
    let h = Harness::new();
    assert!(h.deploy(h.config("v1", "")).await.0.succeeded);
    let broken = h
        .config("v2", "")
        .services
        .into_values()
        .map(|mut s| {
            s.env.insert(
                "HEALTHY".into(),
                dockhand_config::EnvValue::literal("false"),
            );
            if let Some(health) = &mut s.health {
                health.deploy_timeout = Duration::from_secs(1);
            }
            (s.name.clone(), s)
        })
        .collect();
    let config = AppConfig {
        services: broken,
        ..h.config("v2", "")
    };
    let (outcome, steps) = h.deploy(config).await;
    assert!(!outcome.succeeded);
    assert!(
        outcome
            .message
            .starts_with("release 2 failed its health gate"),
        "{}",
        outcome.message
    );
    let failure = &outcome.failures[0];
    assert!(
        failure.reason.contains("not healthy within 1s"),
        "{failure:?}"
    );
    assert!(
        failure.last_probes.iter().any(|p| p.contains("503")),
        "{failure:?}"
    );
    at(&steps, "abort", "the current release keeps serving");
    // Nothing of release 2 is left; release 1 serves as before.
    assert!(h.processes("d2r2-").is_empty());
    assert_eq!(ids(&h), ["d1r1-web-0", "d1r1-web-1"]);
    assert_eq!(h.get("/version").await, (200, "v1".into()));
    let store = &h.d.store;
    assert_eq!(
        store.release(2).unwrap().unwrap().status,
        ReleaseStatus::Failed
    );
    assert_eq!(store.current_release().unwrap().unwrap().id, 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_deploy_hook_starts_no_instance_of_the_new_release() {
    let h = Harness::new();
    assert!(h.deploy(h.config("v1", "")).await.0.succeeded);
    let hooks = "hooks = { pre_deploy = \"echo cannot migrate >&2; exit 3\" }";
    let (outcome, steps) = h.deploy(h.config("v2", hooks)).await;
    assert!(!outcome.succeeded);
    assert!(
        outcome.message.contains("pre_deploy hook of web")
            && outcome.message.contains("exit code 3")
            && outcome.message.contains("cannot migrate"),
        "{}",
        outcome.message
    );
    assert!(!steps.iter().any(|p| p.step == "start"), "{steps:#?}");
    // No instance of release 2 ever ran: no process, no log file; the hook's log is there.
    assert!(h.processes("d2r2-").is_empty());
    let logs: Vec<PathBuf> = std::fs::read_dir(h.d.layout.service_logs("web"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        !logs.iter().any(|p| p.to_string_lossy().contains("r2-web")),
        "{logs:?}"
    );
    assert!(h.d.layout.hook_log("web", "pre_deploy", 2).exists());
    assert_eq!(h.get("/version").await, (200, "v1".into()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_restart_after_a_crash_reaps_what_was_left_and_serves_the_committed_release() {
    let h = Harness::new();
    assert!(h.deploy(h.config("v1", "")).await.0.succeeded);
    // A crash mid-deploy: release 2 committed as pending, its deployment running, and the
    // processes of release 1 still alive with no agent.
    h.d.store.begin_deploy("{}", "test", "deploy").unwrap();
    let orphans = h.processes("d1r1-");
    assert_eq!(instances_running(&h, "d1r1-"), 2);
    let (dir, agent_id) = (h.dir, h.agent_id);
    h.d.proxy.shutdown(Duration::from_secs(1)).await;
    drop(h.proxy);

    let h = Harness::on(dir, agent_id);
    let quiet = |_: Progress| {};
    h.d.restart(&quiet).await.unwrap();
    assert!(
        h.processes("d1r1-").is_empty(),
        "survived the restart: {orphans:?}"
    );
    assert_eq!(ids(&h), ["d0r1-web-0", "d0r1-web-1"]);
    let store = &h.d.store;
    assert_eq!(
        store.release(2).unwrap().unwrap().status,
        ReleaseStatus::Failed
    );
    assert_eq!(store.current_release().unwrap().unwrap().id, 1);
    // Routed at once; each instance takes traffic once it passes its health check.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while h.get("/version").await != (200, "v1".into()) {
        assert!(
            std::time::Instant::now() < deadline,
            "release 1 never served again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events: Vec<String> = store
        .events(20)
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert!(
        events.iter().any(|m| m.contains(
            "recovered from an unclean stop: 1 deployment(s) aborted, 1 release(s) marked failed"
        )),
        "{events:#?}"
    );
    h.stop().await;
}
