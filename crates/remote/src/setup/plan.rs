//! The setup plan as data. [`plan`] is pure: from what the server is ([`HostFacts`]) and what
//! is wanted ([`Wanted`]) it returns the ordered steps, each either already done (with the
//! reason) or a change (what it will do, as [`Op`]s the executor performs). Everything a step
//! does is idempotent, so an interrupted run is completed by the next one.

use serde::Serialize;

use crate::facts::{supported_os, HostFacts, Privilege};
use crate::server::{self, HostSettings};

/// What the user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub settings: HostSettings,
    /// The user we log in as.
    pub ssh_user: String,
    /// How that user gets root.
    pub privilege: Privilege,
    /// SHA-256 and size of the `dockhand` binary to install.
    pub binary_sha256: String,
    pub binary_size: u64,
    /// Disable password and root login (after proving a key login of the deploy user).
    pub harden_ssh: bool,
    /// A project is synced at the end and the agent started: `Some(true)` when the server's
    /// copy differs (or cannot be compared yet), `Some(false)` when it is the same.
    pub project: Option<bool>,
}

/// One thing the executor does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A shell script run as root (its text goes through stdin, not arguments).
    Run { script: String },
    /// A file written as root, atomically (temporary file, then rename), with its mode and owner.
    Write {
        path: String,
        mode: u32,
        owner: String,
        #[serde(skip)]
        content: String,
    },
    /// Upload the `dockhand` binary to [`server::BINARY`].
    UploadBinary,
    /// The lock-out guard: a key login of `user` in a connection of its own, with sudo.
    ProveKeyLogin { user: String },
    /// The SSH hardening drop-in: written, checked with `sshd -t`, reloaded, then a key login
    /// proven again; taken back if that fails.
    HardenSsh {
        #[serde(skip)]
        content: String,
        user: String,
    },
    /// Upload the project (configuration, `.env`, secrets, code).
    UploadProject,
    /// Start (or restart) the agent and wait until it answers `status`.
    StartAgent { restart: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Nothing to do.
    Done,
    /// The step changes the server.
    Change,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// A stable name (`packages`, `firewall`, `ssh`, …).
    pub id: &'static str,
    pub title: String,
    pub state: StepState,
    /// For a change, what it does; for a done step, why it is done.
    pub details: Vec<String>,
    #[serde(skip)]
    pub ops: Vec<Op>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupPlan {
    pub steps: Vec<Step>,
    /// Things the plan noticed and does not change.
    pub notes: Vec<String>,
}

impl SetupPlan {
    pub fn changes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.state == StepState::Change)
            .count()
    }
}

/// Why the server cannot be set up (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub message: String,
    pub hint: String,
}

fn refuse(message: impl Into<String>, hint: impl Into<String>) -> Refusal {
    Refusal {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Free space setup needs: the binary twice (temporary copy), packages, some slack.
pub fn space_needed_kib(w: &Wanted, f: &HostFacts) -> u64 {
    let mut kib = w.binary_size / 1024 * 2 + 64 * 1024;
    if w.settings.docker && !f.installed("docker.io") {
        kib += 400 * 1024;
    }
    kib
}

/// The plan. Refuses (before anything changes) a server that is not a supported system with
/// systemd, a user who cannot become root without a password, and a full disk.
pub fn plan(f: &HostFacts, w: &Wanted) -> Result<SetupPlan, Refusal> {
    supported_os(f).map_err(|m| {
        refuse(
            m,
            "install one of those systems on the server (a fresh image from your provider), then run setup again",
        )
    })?;
    if f.init != "systemd" {
        return Err(refuse(
            format!("the server's init is `{}`, not systemd", f.init),
            "dockhand runs its agent as a systemd service; use a system booted with systemd",
        ));
    }
    match w.privilege {
        Privilege::Root | Privilege::Sudo => {}
        Privilege::SudoNeedsPassword => {
            return Err(refuse(
                format!(
                    "{} needs a password for sudo, and setup runs commands without a terminal to type it",
                    w.ssh_user
                ),
                format!(
                    "allow it without a password (as root: echo '{u} ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/{u}; chmod 440 /etc/sudoers.d/{u}), or run setup as root (ssh://root@HOST)",
                    u = w.ssh_user
                ),
            ))
        }
        Privilege::None => {
            return Err(refuse(
                format!("{} is not root and sudo is not installed", w.ssh_user),
                "run setup as root (ssh://root@HOST), or install sudo and allow this user",
            ))
        }
    }
    let need = space_needed_kib(w, f);
    if f.disk_free_kib < need {
        return Err(refuse(
            format!(
                "not enough disk space on the server: {} has {} MiB free, setup needs about {} MiB",
                f.disk_tightest,
                f.disk_free_kib / 1024,
                need / 1024
            ),
            "free some space (apt-get clean, old logs, unused Docker images) or grow the disk, then run setup again",
        ));
    }

    let s = &w.settings;
    let mut steps = Vec::new();
    let mut notes = Vec::new();

    // Packages.
    let mut want: Vec<&str> = vec!["sudo", "fail2ban", "python3-systemd", "unattended-upgrades"];
    if !s.ufw {
        want.push("nftables");
    }
    let chrony = f.installed("chrony") || f.installed("ntp");
    if !chrony {
        want.push("systemd-timesyncd");
    }
    if s.docker {
        want.push("docker.io");
    }
    let missing: Vec<&str> = want.iter().copied().filter(|p| !f.installed(p)).collect();
    steps.push(if missing.is_empty() {
        done("packages", "system packages", format!("installed: {}", want.join(", ")))
    } else {
        change(
            "packages",
            "system packages",
            vec![format!("apt-get install {}", missing.join(" "))],
            vec![Op::Run {
                script: format!(
                    "export DEBIAN_FRONTEND=noninteractive\n\
                     apt-get update -qq\n\
                     apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold {}\n",
                    missing.join(" ")
                ),
            }],
        )
    });

    // The agent's user and group, the deploy user, the project directory.
    let mut user_ops = Vec::new();
    let mut user_details = Vec::new();
    if !f.dockhand_user || !f.project_dir || (s.docker && !f.dockhand_in_docker) {
        user_details.push(format!(
            "system user and group `{}`, {} owned by it",
            server::USER,
            server::PROJECT_DIR
        ));
        let docker = if s.docker {
            format!("usermod -aG docker {}\n", server::USER)
        } else {
            String::new()
        };
        user_ops.push(Op::Run {
            script: format!(
                "getent group {u} >/dev/null || groupadd --system {u}\n\
                 getent passwd {u} >/dev/null || useradd --system --gid {u} --home-dir {state} --no-create-home --shell /usr/sbin/nologin {u}\n\
                 {docker}\
                 install -d -o {u} -g {u} -m 0750 {project}\n",
                u = server::USER,
                state = server::STATE_DIR,
                project = server::PROJECT_DIR,
            ),
        });
    }
    let deploy = &s.deploy_user;
    let need_keys = w.ssh_user == "root" && deploy != "root" && !f.deploy_keys;
    if deploy != "root" && (!f.deploy_user || !f.deploy_in_group || need_keys) {
        let mut script = format!(
            "getent passwd {d} >/dev/null || useradd --create-home --shell /bin/bash {d}\n\
             usermod -aG {u} {d}\n",
            d = deploy,
            u = server::USER
        );
        let mut what = format!("deploy user `{deploy}` in group `{}`", server::USER);
        if need_keys {
            what.push_str(", with root's authorized SSH keys");
            script.push_str(&format!(
                "home=$(getent passwd {d} | cut -d: -f6)\n\
                 if [ ! -s \"$home/.ssh/authorized_keys\" ] && [ -s /root/.ssh/authorized_keys ]; then\n\
                 \x20 install -d -m 0700 -o {d} -g {d} \"$home/.ssh\"\n\
                 \x20 install -m 0600 -o {d} -g {d} /root/.ssh/authorized_keys \"$home/.ssh/authorized_keys\"\n\
                 fi\n",
                d = deploy
            ));
        }
        user_details.push(what);
        user_ops.push(Op::Run { script });
    }
    steps.push(if user_ops.is_empty() {
        done(
            "users",
            "users",
            format!("`{}` and deploy user `{deploy}` exist", server::USER),
        )
    } else {
        change("users", "users", user_details, user_ops)
    });

    // Sudo for the deploy user (when it is not the one we log in as).
    if deploy != "root" {
        steps.push(file_step(
            f,
            "sudo",
            "passwordless sudo for the deploy user",
            server::SUDOERS,
            0o440,
            "root:root",
            server::sudoers(s),
            Some(format!("visudo -cf {} >/dev/null", server::SUDOERS)),
        ));
    }

    // The binary.
    steps.push(
        if f.binary_sha256.as_deref() == Some(w.binary_sha256.as_str()) {
            done(
                "binary",
                "dockhand binary",
                format!("{} is this version", server::BINARY),
            )
        } else {
            change(
                "binary",
                "dockhand binary",
                vec![format!(
                    "upload {} ({} MiB)",
                    server::BINARY,
                    w.binary_size.div_ceil(1024 * 1024)
                )],
                vec![Op::UploadBinary],
            )
        },
    );

    // The agent's unit.
    let unit = server::unit(s);
    let mut unit_step = file_step(
        f,
        "unit",
        "systemd unit of the agent",
        server::UNIT_PATH,
        0o644,
        "root:root",
        unit,
        Some(format!(
            "systemctl daemon-reload\nsystemctl enable {} >/dev/null 2>&1",
            server::UNIT
        )),
    );
    if unit_step.state == StepState::Done && !f.is_enabled(server::UNIT) {
        unit_step = change(
            "unit",
            "systemd unit of the agent",
            vec![format!("enable {}", server::UNIT)],
            vec![Op::Run {
                script: format!("systemctl enable {} >/dev/null 2>&1", server::UNIT),
            }],
        );
    }
    steps.push(unit_step);

    // The proxy's sockets, held by systemd so that an agent restart refuses no connection.
    if let Some(socket) = server::socket_unit(s) {
        // The running agent holds the ports itself: it stops, systemd binds them, and it
        // starts again on systemd's sockets.
        let switch = format!(
            "systemctl daemon-reload
systemctl enable {socket_unit} >/dev/null 2>&1
if systemctl is-active --quiet {unit}; then
  systemctl stop {unit}
  systemctl restart {socket_unit}
  systemctl start {unit}
else
  systemctl restart {socket_unit}
fi",
            socket_unit = server::SOCKET_UNIT,
            unit = server::UNIT
        );
        let mut step = file_step(
            f,
            "socket",
            "systemd socket of the proxy",
            server::SOCKET_UNIT_PATH,
            0o644,
            "root:root",
            socket,
            Some(switch.clone()),
        );
        if step.state == StepState::Done && !f.is_enabled(server::SOCKET_UNIT) {
            step = change(
                "socket",
                "systemd socket of the proxy",
                vec![format!("enable {}", server::SOCKET_UNIT)],
                vec![Op::Run { script: switch }],
            );
        }
        steps.push(step);
    }

    // The firewall.
    if s.ufw {
        let cmds = server::ufw_commands(s);
        steps.push(change(
            "firewall",
            "firewall (ufw)",
            vec![format!("allow SSH ({}), 80 and 443 only", s.ssh_port)],
            vec![Op::Run {
                script: cmds.join("\n") + "\n",
            }],
        ));
        // ufw keeps its own state; re-applying the same rules changes nothing.
        if f.ufw_active() {
            if let Some(last) = steps.last_mut() {
                last.details
                    .push("(re-applied: ufw ignores rules it has)".into());
            }
        }
    } else {
        let rules = server::firewall_rules(s);
        let mut st = file_step(
            f,
            "firewall",
            "firewall (nftables)",
            server::FIREWALL_RULES,
            0o644,
            "root:root",
            rules,
            Some(format!("nft -c -f {}", server::FIREWALL_RULES)),
        );
        let unit_same =
            f.file_sha(server::FIREWALL_UNIT_PATH) == Some(&sha(&server::firewall_unit()));
        let live = f.is_active(server::FIREWALL_UNIT) && f.is_enabled(server::FIREWALL_UNIT);
        if st.state == StepState::Done && unit_same && live {
            st.details = vec![format!("inbound SSH ({}), 80 and 443 only", s.ssh_port)];
        } else {
            st.state = StepState::Change;
            st.details = vec![format!(
                "drop inbound traffic but SSH ({}{}), 80 and 443 (table inet dockhand; Docker's tables untouched)",
                s.ssh_port,
                if s.ssh_from.is_empty() {
                    String::new()
                } else {
                    format!(" from {}", s.ssh_from.join(", "))
                }
            )];
            if let Some(swarm) = &s.swarm {
                st.details.push(format!(
                    "the swarm's ports ({}/tcp, {}/udp) from the other nodes only: {}",
                    server::SWARM_TCP_PORTS,
                    server::SWARM_UDP_PORTS,
                    if swarm.peers.is_empty() {
                        "none".to_string()
                    } else {
                        swarm.peers.join(", ")
                    }
                ));
            }
            st.ops = vec![
                write_op(server::FIREWALL_RULES, 0o644, "root:root", server::firewall_rules(s)),
                Op::Run {
                    script: format!("nft -c -f {}", server::FIREWALL_RULES),
                },
                write_op(server::FIREWALL_UNIT_PATH, 0o644, "root:root", server::firewall_unit()),
                Op::Run {
                    script: format!(
                        "systemctl daemon-reload\nsystemctl enable {u} >/dev/null 2>&1\nsystemctl restart {u}\n",
                        u = server::FIREWALL_UNIT
                    ),
                },
            ];
        }
        steps.push(st);
    }

    // fail2ban.
    let mut jail = file_step(
        f,
        "fail2ban",
        "fail2ban for sshd",
        server::FAIL2BAN_JAIL,
        0o644,
        "root:root",
        server::fail2ban_jail(s),
        Some("systemctl enable fail2ban >/dev/null 2>&1\nsystemctl restart fail2ban".into()),
    );
    if jail.state == StepState::Done && !f.is_active("fail2ban.service") {
        jail = change(
            "fail2ban",
            "fail2ban for sshd",
            vec!["start fail2ban".into()],
            vec![Op::Run {
                script: "systemctl enable fail2ban >/dev/null 2>&1\nsystemctl restart fail2ban"
                    .into(),
            }],
        );
    }
    steps.push(jail);

    // Unattended security upgrades.
    steps.push(file_step(
        f,
        "upgrades",
        "unattended security upgrades",
        server::AUTO_UPGRADES,
        0o644,
        "root:root",
        server::auto_upgrades(),
        None,
    ));

    // Swap on small servers.
    match server::swap_size_mib(f.mem_kib) {
        Some(mib) if f.swap_kib == 0 && !f.swapfile => steps.push(change(
            "swap",
            "swap file",
            vec![format!(
                "{} of {mib} MiB ({} MiB of memory, no swap)",
                server::SWAPFILE,
                f.mem_kib / 1024
            )],
            vec![Op::Run {
                script: format!(
                    "set -e\nf={sw}\nfallocate -l {mib}M $f.new 2>/dev/null || dd if=/dev/zero of=$f.new bs=1M count={mib} status=none\n\
                     chmod 600 $f.new\nmkswap $f.new >/dev/null\nmv $f.new $f\nswapon $f\n\
                     grep -q '^{sw} ' /etc/fstab || echo '{sw} none swap sw 0 0' >> /etc/fstab\n",
                    sw = server::SWAPFILE
                ),
            }],
        )),
        Some(_) => steps.push(done(
            "swap",
            "swap file",
            format!("{} MiB of swap", f.swap_kib / 1024),
        )),
        None => steps.push(done(
            "swap",
            "swap file",
            format!("{} MiB of memory: no swap file needed", f.mem_kib / 1024),
        )),
    }

    // Time sync.
    let sync_unit = if chrony {
        "chrony.service"
    } else {
        "systemd-timesyncd.service"
    };
    if f.is_enabled(sync_unit) || f.is_active(sync_unit) {
        steps.push(done("time", "time sync", format!("{sync_unit} is enabled")));
    } else {
        steps.push(change(
            "time",
            "time sync",
            vec![format!("enable {sync_unit}")],
            vec![Op::Run {
                // In a container timesyncd declines to run (its condition); enabling is what we can do.
                script: format!("systemctl enable {sync_unit} >/dev/null 2>&1\nsystemctl start {sync_unit} || true\n"),
            }],
        ));
    }

    // SSH hardening, gated on a proven key login of the deploy user.
    if w.harden_ssh {
        let content = server::sshd_dropin();
        let effective_ok = f.sshd.get("passwordauthentication").map(String::as_str) == Some("no")
            && f.sshd.get("permitrootlogin").map(String::as_str) == Some("no");
        let file_ok = f.file_sha(server::SSHD_DROPIN) == Some(&sha(&content));
        steps.push(if file_ok && effective_ok {
            done(
                "ssh",
                "SSH hardening",
                "no password or root login, keys only".to_string(),
            )
        } else {
            change(
                "ssh",
                "SSH hardening",
                vec![
                    format!("prove a key login of `{deploy}` in a second connection first"),
                    "then: no password login, no root login, keys only".into(),
                ],
                vec![
                    Op::ProveKeyLogin {
                        user: deploy.clone(),
                    },
                    Op::HardenSsh {
                        content,
                        user: deploy.clone(),
                    },
                ],
            )
        });
    } else {
        notes.push(
            "SSH hardening skipped (--no-harden-ssh): password and root logins stay as they are"
                .into(),
        );
    }

    // The project and the agent.
    if let Some(differs) = w.project {
        steps.push(if differs {
            change(
                "project",
                "project files",
                vec![format!(
                    "sync the project to {} (changed files only; secrets mode 0600)",
                    server::PROJECT_DIR
                )],
                vec![Op::UploadProject],
            )
        } else {
            done(
                "project",
                "project files",
                format!("{} has the project as it is here", server::PROJECT_DIR),
            )
        });
        // Restart when what the agent runs changed; else start it if it is not running.
        let changed = |id: &str| {
            steps
                .iter()
                .any(|st| st.id == id && st.state == StepState::Change)
        };
        let restart =
            f.is_active(server::UNIT) && (changed("binary") || changed("unit") || changed("users"));
        if restart || !f.is_active(server::UNIT) {
            steps.push(change(
                "agent",
                "agent",
                vec![format!(
                    "{} {} and wait until it answers",
                    if restart { "restart" } else { "start" },
                    server::UNIT
                )],
                vec![Op::StartAgent { restart }],
            ));
        } else {
            steps.push(done(
                "agent",
                "agent",
                format!("{} is running", server::UNIT),
            ));
        }
    } else if !f.project_config {
        notes.push(
            "no project here yet: the agent starts with the first `dockhand deploy --host …` (or run setup in the project directory)"
                .to_string(),
        );
    }
    Ok(SetupPlan { steps, notes })
}

/// The SHA-256 of `text`, as the facts report file contents.
pub fn sha(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn done(id: &'static str, title: &str, why: String) -> Step {
    Step {
        id,
        title: title.into(),
        state: StepState::Done,
        details: vec![why],
        ops: vec![],
    }
}

fn change(id: &'static str, title: &str, details: Vec<String>, ops: Vec<Op>) -> Step {
    Step {
        id,
        title: title.into(),
        state: StepState::Change,
        details,
        ops,
    }
}

fn write_op(path: &str, mode: u32, owner: &str, content: String) -> Op {
    Op::Write {
        path: path.into(),
        mode,
        owner: owner.into(),
        content,
    }
}

/// A step that writes one file (and runs `then` after writing it), done when the file on the
/// server has exactly this content.
#[allow(clippy::too_many_arguments)]
fn file_step(
    f: &HostFacts,
    id: &'static str,
    title: &str,
    path: &str,
    mode: u32,
    owner: &str,
    content: String,
    then: Option<String>,
) -> Step {
    if f.file_sha(path) == Some(&sha(&content)) {
        return done(id, title, format!("{path} is up to date"));
    }
    let verb = if f.file_sha(path).is_some() {
        "rewrite"
    } else {
        "write"
    };
    let mut ops = vec![write_op(path, mode, owner, content)];
    if let Some(script) = then {
        ops.push(Op::Run { script });
    }
    change(id, title, vec![format!("{verb} {path}")], ops)
}

#[cfg(test)]
mod tests;
