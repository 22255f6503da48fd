//! The Docker Engine restarted in the middle of a container deploy (an engine upgrade, an
//! OOM-killed dockerd): the deploy ends — it fails with a clear message or succeeds —, then
//! exactly one release serves and `status` says which, no container of a failed release is
//! left, the releases list agrees, the agent stayed up, and the next deploy succeeds.
//! It restarts the shared engine, so its name holds `daemon_restart`: `scripts/test` runs
//! those alone, after everything else.

use std::time::Duration;

use dockhand_test_support::docker::{
    docker_ok, ensure_test_images, unique_app, AppCleanup, TESTAPP_IMAGE,
};
use dockhand_test_support::{wait_until, Load};

use crate::containers::{get, running, web_toml};
use crate::{expect, sandbox, show};

/// The ids of the app's containers, running or not, of release `release`.
fn containers_of(app: &str, release: i64) -> Vec<String> {
    docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=dockhand.app={app}"),
        "--filter",
        "label=dockhand.kind=service",
        "--filter",
        &format!("label=dockhand.release={release}"),
    ])
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

fn release_of(container: &str) -> String {
    docker_ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"dockhand.release\"}}",
        container,
    ])
}

#[test]
fn a_deploy_interrupted_by_a_daemon_restart_ends_with_exactly_one_release_serving() {
    ensure_test_images();
    let app = unique_app("drmid");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &web_toml(&app, TESTAPP_IMAGE, "VERSION = \"one\"", 1, "90s"),
    );
    let agent = sb.start_agent();
    let load = Load::start(&sb.proxy_addr(), "app.test", "/version", 2);
    wait_until("the first answers", Duration::from_secs(30), || {
        load.snapshot().ok > 20
    });

    // Release 2 takes 8 s to listen: the engine restarts during its health gate.
    sb.write(
        "dockhand.toml",
        &web_toml(
            &app,
            TESTAPP_IMAGE,
            "VERSION = \"two\", STARTUP_DELAY_MS = \"8000\"",
            1,
            "90s",
        ),
    );
    let deploy = {
        let mut cmd = sb.cmd(&["deploy"]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("spawn dockhand deploy")
    };
    wait_until("release 2's container", Duration::from_secs(60), || {
        !containers_of(&app, 2).is_empty()
    });
    let script = dockhand_test_support::docker::workspace_root().join("scripts/dockerd");
    let restart = std::process::Command::new(&script)
        .arg("restart")
        .output()
        .expect("scripts/dockerd");
    assert!(
        restart.status.success(),
        "scripts/dockerd restart: {}",
        show(&restart)
    );

    // The deploy ends.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(deploy.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(240))
        .expect("the deploy ended within 4 minutes of the engine restart")
        .expect("dockhand deploy");
    let code = out.status.code();
    assert!(
        code == Some(0) || code == Some(1),
        "the deploy succeeds or fails clearly: {}",
        show(&out)
    );
    if code == Some(1) {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.trim().is_empty(), "a failure says why: {}", show(&out));
    }

    // The agent stayed up, and `status` says which release serves.
    let pid = nix::unistd::Pid::from_raw(agent.pid() as i32);
    assert!(
        nix::sys::signal::kill(pid, None).is_ok(),
        "the agent died:\n{}",
        agent.output()
    );
    let (_, status) = sb.json(&["status"]);
    let current = status["current_release"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("a current release: {status:#}"));
    let (want, failed) = match (code, current) {
        (Some(0), 2) => ("two", None),
        (Some(1), 1) => ("one", Some(2)),
        _ => panic!(
            "deploy exit {code:?} but release {current} current: {}\n{status:#}",
            show(&out)
        ),
    };
    wait_until(
        "the current release serves",
        Duration::from_secs(120),
        || get(&sb, "/version").trim() == want,
    );
    // Exactly the current release's containers run; none of the failed one is left.
    wait_until(
        "exactly one container of the current release",
        Duration::from_secs(60),
        || {
            let ids = running(&app, "service");
            ids.len() == 1 && ids.iter().all(|id| release_of(id) == current.to_string())
        },
    );
    if let Some(failed) = failed {
        let left = containers_of(&app, failed);
        assert!(
            left.is_empty(),
            "containers of the failed release {failed} are left: {left:?}\n{}",
            agent.output()
        );
    }
    let (_, releases) = sb.json(&["releases"]);
    let list = releases.as_array().expect("a list of releases");
    let currents: Vec<_> = list.iter().filter(|r| r["status"] == "current").collect();
    assert_eq!(currents.len(), 1, "{releases:#}");
    assert_eq!(currents[0]["id"].as_i64(), Some(current), "{releases:#}");
    assert!(
        !list.iter().any(|r| r["status"] == "pending"),
        "{releases:#}"
    );
    if let Some(failed) = failed {
        let row = list.iter().find(|r| r["id"] == failed).unwrap();
        assert_eq!(row["status"], "failed", "{releases:#}");
    }
    let (_, status) = sb.json(&["status"]);
    assert!(status["deploying"].is_null(), "{status:#}");

    // Serving again under the light load, and the next deploy succeeds.
    let seen = load.snapshot().ok;
    wait_until(
        "requests after the restart",
        Duration::from_secs(60),
        || load.snapshot().ok > seen + 20,
    );
    sb.write(
        "dockhand.toml",
        &web_toml(&app, TESTAPP_IMAGE, "VERSION = \"three\"", 1, "90s"),
    );
    expect(&sb, &["deploy"], 0);
    assert_eq!(get(&sb, "/version").trim(), "three");
    let ids = running(&app, "service");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(release_of(&ids[0]), "3");
    let report = load.finish();
    assert!(report.ok > 0);
}
