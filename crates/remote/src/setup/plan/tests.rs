//! The setup plan with plain data: a fresh server, a set-up one, and every refusal.

use super::*;
use crate::facts::HostFacts;

fn fresh() -> HostFacts {
    let mut f = HostFacts {
        os_id: "debian".into(),
        os_version: "12".into(),
        os_name: "Debian GNU/Linux 12 (bookworm)".into(),
        arch: "x86_64".into(),
        init: "systemd".into(),
        mem_kib: 8 * 1024 * 1024,
        disk_free_kib: 20 * 1024 * 1024,
        disk_tightest: "/".into(),
        ..HostFacts::default()
    };
    for p in ["sudo", "openssh-server"] {
        f.packages.insert(p.into(), "installed".into());
    }
    f.active.insert("ssh.service".into(), "active".into());
    f.sshd.insert("passwordauthentication".into(), "yes".into());
    f.sshd.insert("permitrootlogin".into(), "yes".into());
    f
}

fn wanted() -> Wanted {
    Wanted {
        settings: HostSettings {
            ssh_port: 22,
            ssh_from: vec![],
            deploy_user: "deploy".into(),
            docker: true,
            ufw: false,
            proxy_listen: vec![],
            swarm: None,
        },
        ssh_user: "root".into(),
        privilege: Privilege::Root,
        binary_sha256: "b1".into(),
        binary_size: 20 * 1024 * 1024,
        harden_ssh: true,
        project: Some(true),
    }
}

/// The facts of the server after `p` was applied to `f` (what the executor's ops make true).
fn applied(f: &HostFacts, w: &Wanted, p: &SetupPlan) -> HostFacts {
    let mut f = f.clone();
    for step in &p.steps {
        for op in &step.ops {
            match op {
                Op::Write { path, content, .. } => {
                    f.files.insert(path.clone(), sha(content));
                }
                Op::HardenSsh { content, .. } => {
                    f.files.insert(server::SSHD_DROPIN.into(), sha(content));
                    f.sshd.insert("passwordauthentication".into(), "no".into());
                    f.sshd.insert("permitrootlogin".into(), "no".into());
                }
                Op::UploadBinary => f.binary_sha256 = Some(w.binary_sha256.clone()),
                Op::StartAgent { .. } => {
                    f.active.insert(server::UNIT.into(), "active".into());
                }
                Op::Run { script } => {
                    for p in [
                        "sudo",
                        "fail2ban",
                        "python3-systemd",
                        "unattended-upgrades",
                        "nftables",
                        "systemd-timesyncd",
                        "docker.io",
                    ] {
                        if script.contains("apt-get install") && script.contains(p) {
                            f.packages.insert(p.into(), "installed".into());
                        }
                    }
                    if script.contains("useradd --system") {
                        f.dockhand_user = true;
                        f.project_dir = true;
                        f.dockhand_in_docker = w.settings.docker;
                    }
                    if script.contains("usermod -aG dockhand") {
                        f.deploy_user = true;
                        f.deploy_in_group = true;
                        f.deploy_keys = true;
                    }
                    for unit in [
                        "dockhand.service",
                        "dockhand.socket",
                        "dockhand-firewall.service",
                        "fail2ban",
                        "systemd-timesyncd.service",
                    ] {
                        if script.contains(&format!("enable {unit}")) {
                            let unit = if unit.contains('.') {
                                unit.to_string()
                            } else {
                                format!("{unit}.service")
                            };
                            f.enabled.insert(unit.clone(), "enabled".into());
                            if script.contains("restart") || script.contains("start") {
                                f.active.insert(unit, "active".into());
                            }
                        }
                    }
                }
                Op::ProveKeyLogin { .. } | Op::UploadProject => {}
            }
        }
    }
    f.project_config = w.project.is_some();
    f
}

fn ids(p: &SetupPlan, state: StepState) -> Vec<&'static str> {
    p.steps
        .iter()
        .filter(|s| s.state == state)
        .map(|s| s.id)
        .collect()
}

#[test]
fn a_fresh_server_gets_every_step_in_order() {
    let p = plan(&fresh(), &wanted()).unwrap();
    let all: Vec<&str> = p.steps.iter().map(|s| s.id).collect();
    assert_eq!(
        all,
        [
            "packages", "users", "sudo", "binary", "unit", "firewall", "fail2ban", "upgrades",
            "swap", "time", "ssh", "project", "agent"
        ]
    );
    assert_eq!(ids(&p, StepState::Done), ["swap"], "8 GiB needs no swap");
    let packages = &p.steps[0].details[0];
    assert!(
        packages.contains("docker.io")
            && packages.contains("nftables")
            && packages.contains("fail2ban"),
        "{packages}"
    );
    // The lock-out guard comes before the hardening, in the same step.
    let ssh = p.steps.iter().find(|s| s.id == "ssh").unwrap();
    assert!(matches!(&ssh.ops[0], Op::ProveKeyLogin { user } if user == "deploy"));
    assert!(matches!(&ssh.ops[1], Op::HardenSsh { .. }));
}

#[test]
fn with_the_proxys_addresses_systemd_holds_its_sockets_and_a_second_run_changes_nothing() {
    let mut w = wanted();
    w.settings.proxy_listen = vec!["0.0.0.0:80".parse().unwrap()];
    let first = plan(&fresh(), &w).unwrap();
    let all: Vec<&str> = first.steps.iter().map(|s| s.id).collect();
    let unit = all.iter().position(|id| *id == "unit").unwrap();
    assert_eq!(all[unit + 1], "socket", "{all:?}");
    let socket = first.steps.iter().find(|s| s.id == "socket").unwrap();
    assert!(
        matches!(&socket.ops[0], Op::Write { path, content, .. }
            if path == server::SOCKET_UNIT_PATH && content.contains("ListenStream=0.0.0.0:80")),
        "{socket:#?}"
    );
    // A running agent holds the ports: it is stopped before systemd binds them.
    let Op::Run { script } = &socket.ops[1] else {
        panic!("{socket:#?}")
    };
    let stop = script.find("systemctl stop dockhand.service").unwrap();
    let bind = script.find("systemctl restart dockhand.socket").unwrap();
    assert!(stop < bind, "{script}");

    let after = applied(&fresh(), &w, &first);
    let synced = Wanted {
        project: Some(false),
        ..w.clone()
    };
    assert_eq!(plan(&after, &synced).unwrap().changes(), 0);

    // The socket unit disabled by hand: setup enables it again, without rewriting it.
    let mut disabled = after.clone();
    disabled.enabled.remove(server::SOCKET_UNIT);
    let again = plan(&disabled, &synced).unwrap();
    assert_eq!(ids(&again, StepState::Change), ["socket"]);
}

#[test]
fn a_second_run_changes_nothing() {
    let w = wanted();
    let first = plan(&fresh(), &w).unwrap();
    let after = applied(&fresh(), &w, &first);
    let second = plan(&after, &w).unwrap();
    // The project differs until it was synced.
    assert_eq!(ids(&second, StepState::Change), ["project"], "{second:#?}");
    let synced = Wanted {
        project: Some(false),
        ..w.clone()
    };
    assert_eq!(plan(&after, &synced).unwrap().changes(), 0);
    let without_project = Wanted { project: None, ..w };
    assert_eq!(plan(&after, &without_project).unwrap().changes(), 0);
}

#[test]
fn docker_only_for_container_apps() {
    let mut w = wanted();
    w.settings.docker = false;
    let p = plan(&fresh(), &w).unwrap();
    assert!(
        !p.steps[0].details[0].contains("docker"),
        "{:?}",
        p.steps[0]
    );
}

#[test]
fn small_servers_get_swap_and_ufw_servers_keep_ufw() {
    let mut f = fresh();
    f.mem_kib = 1024 * 1024;
    f.packages.insert("ufw".into(), "installed".into());
    f.ufw = "Status: active".into();
    let mut w = wanted();
    w.settings.ufw = true;
    let p = plan(&f, &w).unwrap();
    let swap = p.steps.iter().find(|s| s.id == "swap").unwrap();
    assert_eq!(swap.state, StepState::Change);
    assert!(swap.details[0].contains("1024 MiB"), "{swap:?}");
    let fw = p.steps.iter().find(|s| s.id == "firewall").unwrap();
    assert_eq!(fw.title, "firewall (ufw)");
    assert!(!p.steps[0].details[0].contains("nftables"));
}

#[test]
fn a_changed_binary_restarts_the_running_agent() {
    let w = wanted();
    let first = plan(&fresh(), &w).unwrap();
    let after = applied(&fresh(), &w, &first);
    let upgraded = Wanted {
        binary_sha256: "b2".into(),
        project: Some(false),
        ..w
    };
    let p = plan(&after, &upgraded).unwrap();
    assert_eq!(ids(&p, StepState::Change), ["binary", "agent"]);
    assert!(matches!(
        p.steps.last().unwrap().ops[0],
        Op::StartAgent { restart: true }
    ));
}

#[test]
fn refusals_change_nothing_and_say_why() {
    let w = wanted();
    let mut f = fresh();
    f.os_id = "centos".into();
    f.os_version = "7".into();
    f.os_name = "CentOS Linux 7".into();
    let r = plan(&f, &w).unwrap_err();
    assert!(
        r.message.contains("CentOS Linux 7 is not supported"),
        "{r:?}"
    );

    let mut f = fresh();
    f.init = "bash".into();
    assert!(plan(&f, &w).unwrap_err().message.contains("not systemd"));

    let r = plan(
        &fresh(),
        &Wanted {
            privilege: Privilege::SudoNeedsPassword,
            ssh_user: "alice".into(),
            ..w.clone()
        },
    )
    .unwrap_err();
    assert!(
        r.message.contains("alice needs a password for sudo"),
        "{r:?}"
    );
    assert!(r.hint.contains("NOPASSWD"), "{r:?}");

    let r = plan(
        &fresh(),
        &Wanted {
            privilege: Privilege::None,
            ..w.clone()
        },
    )
    .unwrap_err();
    assert!(r.message.contains("sudo is not installed"), "{r:?}");

    let mut f = fresh();
    f.disk_free_kib = 10 * 1024;
    f.disk_tightest = "/usr/local/bin".into();
    let r = plan(&f, &w).unwrap_err();
    assert!(
        r.message.contains("/usr/local/bin has 10 MiB free"),
        "{r:?}"
    );
}

#[test]
fn hardening_is_skipped_when_asked_and_done_when_in_effect() {
    let w = Wanted {
        harden_ssh: false,
        ..wanted()
    };
    let p = plan(&fresh(), &w).unwrap();
    assert!(p.steps.iter().all(|s| s.id != "ssh"));
    assert!(p.notes.iter().any(|n| n.contains("--no-harden-ssh")));
}
