//! Integration tests: the real `dockhand` binary, real processes, real sockets. One test
//! binary (to keep link time down); each test has its own sandbox directory, state and ports,
//! so they run in parallel.

mod acme;
mod backups;
mod canary;
mod chaos_clock;
mod chaos_crash;
mod chaos_engine;
mod checks;
mod cli;
mod cluster;
mod cluster_nodes;
mod cluster_remote;
mod cluster_setup;
mod cluster_tasks;
mod cluster_tls;
mod containers;
mod crash;
mod dashboard;
mod disk;
mod edge_policies;
mod gates;
mod https;
mod import;
mod import_edge;
mod init;
mod lifecycle;
mod loadtest;
mod metric_store;
mod metrics_route;
mod migrations;
mod monitoring;
mod remote;
mod revisions;
mod secret_tools;
mod secrets;
mod secrets_cmd;
mod static_sites;
mod tasks;
mod top;
mod up;
mod update;
mod update_images;
mod update_triggers;
mod watch_only;
mod watch_update;
mod websocket;
mod zero_downtime;

use dockhand_test_support::{testapp_bin, Sandbox};

pub fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_dockhand"))
}

/// A dockhand.toml running `replicas` testapp instances as service `web` behind host
/// `app.test`, with frequent health checks (patient ones: two loaded cores must not make a
/// healthy instance look dead). `env` is inserted into the service's env table.
pub fn testapp_toml(env: &str, replicas: u32, deploy_timeout: &str) -> String {
    format!(
        r#"app = "it"

[proxy]
listen = "127.0.0.1:0"
drain_timeout = "10s"

[services.web]
command = "{bin}"
port = 8000
env = {{ {env}, DOCKHAND_TEST_CANARY = "${{secret.DOCKHAND_TEST_CANARY}}" }}
health = {{ path = "/health", interval = "100ms", timeout = "5s", healthy_threshold = 1, unhealthy_threshold = 5, deploy_timeout = "{deploy_timeout}" }}
route = {{ host = "app.test", path = "/" }}
replicas = {replicas}
stop_timeout = "5s"
"#,
        bin = testapp_bin().display()
    )
}

/// The text of every log file of `service` in the sandbox, by instance file name.
pub fn service_logs(sb: &Sandbox, service: &str) -> Vec<(String, String)> {
    let dir = sb.state_dir().join("logs").join(service);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Runs `dockhand ARGS` in the sandbox and asserts its exit code (showing its output if not).
pub fn expect(sb: &Sandbox, args: &[&str], code: i32) -> std::process::Output {
    let out = sb.run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "dockhand {args:?}: {}",
        show(&out)
    );
    out
}

/// The permission bits of a file.
pub fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn show(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
