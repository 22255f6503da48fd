//! The layout of a server set up by Dockhand, and the files `setup` (and cloud-init) write
//! there — one source for both, so a provisioned server and a set-up one are the same.
//! Pure: every file's content is computed from [`HostSettings`].

/// The `dockhand` binary on the server.
pub const BINARY: &str = "/usr/local/bin/dockhand";
/// The project directory the agent deploys from (`dockhand.toml`, `.env`, secrets, code).
pub const PROJECT_DIR: &str = "/srv/dockhand";
/// The configuration the agent reads.
pub const CONFIG: &str = "/srv/dockhand/dockhand.toml";
/// The agent's state directory (database, logs).
pub const STATE_DIR: &str = "/var/lib/dockhand";
/// The agent's socket (group `dockhand`, mode 0660).
pub const SOCKET: &str = "/run/dockhand/agent.sock";
/// The system user and group the agent runs as; members of the group may use the CLI.
pub const USER: &str = "dockhand";
/// The agent's systemd unit.
pub const UNIT: &str = "dockhand.service";
pub const UNIT_PATH: &str = "/etc/systemd/system/dockhand.service";
/// The proxy's listening sockets, held by systemd across agent restarts (socket activation).
pub const SOCKET_UNIT: &str = "dockhand.socket";
pub const SOCKET_UNIT_PATH: &str = "/etc/systemd/system/dockhand.socket";
/// The firewall's rules (an nftables table of our own, beside Docker's) and its unit.
pub const FIREWALL_RULES: &str = "/etc/dockhand/firewall.nft";
pub const FIREWALL_UNIT: &str = "dockhand-firewall.service";
pub const FIREWALL_UNIT_PATH: &str = "/etc/systemd/system/dockhand-firewall.service";
/// SSH hardening: first in `sshd_config.d` so that it wins (sshd keeps the first value).
pub const SSHD_DROPIN: &str = "/etc/ssh/sshd_config.d/00-dockhand.conf";
pub const FAIL2BAN_JAIL: &str = "/etc/fail2ban/jail.d/dockhand.conf";
pub const AUTO_UPGRADES: &str = "/etc/apt/apt.conf.d/20auto-upgrades";
pub const SUDOERS: &str = "/etc/sudoers.d/dockhand";
pub const SWAPFILE: &str = "/swapfile";

/// What the server's files depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// The SSH port the firewall keeps open.
    pub ssh_port: u16,
    /// Addresses or networks allowed to reach SSH (empty: anyone).
    pub ssh_from: Vec<String>,
    /// The user that deploys (key login, passwordless sudo, member of `dockhand`).
    pub deploy_user: String,
    /// Whether the app has container services (Docker is installed and the agent may use it).
    pub docker: bool,
    /// Whether the firewall is ufw (already installed and active) rather than our nftables table.
    pub ufw: bool,
    /// The proxy's addresses (`[proxy] listen`, `https_listen`) that `dockhand.socket` holds;
    /// empty when setup has no `dockhand.toml` (then the agent binds them itself).
    pub proxy_listen: Vec<std::net::SocketAddr>,
    /// The server is a node of a `[cluster]`: the swarm ports open to the other nodes only.
    pub swarm: Option<SwarmFirewall>,
}

/// The swarm's ports on a node of a cluster, open to the other nodes only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwarmFirewall {
    /// The other nodes' addresses (IPv4 or IPv6).
    pub peers: Vec<String>,
    /// Encrypted overlays: IPsec's ESP between the nodes too.
    pub encrypted: bool,
}

/// The swarm's TCP ports: 2377 (managers' API and Raft), 7946 (gossip).
pub const SWARM_TCP_PORTS: &str = "2377, 7946";
/// The swarm's UDP ports: 7946 (gossip), 4789 (the overlays' VXLAN).
pub const SWARM_UDP_PORTS: &str = "7946, 4789";

impl SwarmFirewall {
    /// The nftables rules that accept the swarm's traffic from the peers (for the input chain
    /// of a table whose policy drops the rest).
    pub fn accept_rules(&self) -> Vec<String> {
        let (v6, v4): (Vec<&String>, Vec<&String>) =
            self.peers.iter().partition(|a| a.contains(':'));
        let mut rules = Vec::new();
        for (family, set) in [("ip", v4), ("ip6", v6)] {
            if set.is_empty() {
                continue;
            }
            let set = set
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            rules.push(format!(
                "{family} saddr {{ {set} }} tcp dport {{ {SWARM_TCP_PORTS} }} accept"
            ));
            rules.push(format!(
                "{family} saddr {{ {set} }} udp dport {{ {SWARM_UDP_PORTS} }} accept"
            ));
            if self.encrypted {
                rules.push(format!(
                    "{family} saddr {{ {set} }} meta l4proto esp accept"
                ));
            }
        }
        rules
    }

    /// The swarm's own table, `inet dockhand-swarm`, for a node whatever its firewall: its
    /// chain lets everything through but the swarm's ports from anywhere else than the peers
    /// (and loopback), which it drops. Loaded by `dockhand setup` on every node of a cluster;
    /// where setup's own table (policy drop) is the firewall, that one accepts the peers too.
    /// The first rule's comment carries a digest of the rules, so a second setup sees they
    /// are loaded already.
    pub fn guard_table(&self) -> String {
        let body = self.guard_rules();
        let digest = guard_digest(&body);
        format!(
            "table inet dockhand-swarm
delete table inet dockhand-swarm
table inet dockhand-swarm {{
	chain input {{
		type filter hook input priority filter - 1; policy accept;
		iif lo accept comment \"{GUARD_COMMENT}{digest}\"
{body}	}}
}}
"
        )
    }

    /// The digest [`SwarmFirewall::guard_table`] writes into its comment.
    pub fn guard_digest(&self) -> String {
        guard_digest(&self.guard_rules())
    }

    fn guard_rules(&self) -> String {
        let (v6, v4): (Vec<&String>, Vec<&String>) =
            self.peers.iter().partition(|a| a.contains(':'));
        let mut rules = Vec::new();
        for (family, nfproto, set) in [("ip", "ipv4", v4), ("ip6", "ipv6", v6)] {
            let from = if set.is_empty() {
                String::new()
            } else {
                format!(
                    "{family} saddr != {{ {} }} ",
                    set.iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            rules.push(format!(
                "meta nfproto {nfproto} {from}tcp dport {{ {SWARM_TCP_PORTS} }} drop"
            ));
            rules.push(format!(
                "meta nfproto {nfproto} {from}udp dport {{ {SWARM_UDP_PORTS} }} drop"
            ));
        }
        rules.iter().map(|r| format!("\t\t{r}\n")).collect()
    }
}

/// The comment prefix marking the guard table's digest.
pub const GUARD_COMMENT: &str = "dockhand-swarm:";

fn guard_digest(body: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(body.as_bytes())[..8])
}

/// The agent's unit: runs as `dockhand` with the hardening its job allows. It needs to bind
/// 80/443 (one capability), write its state and project directories, talk to Docker (the
/// `docker` group) and put process services in cgroups (`Delegate`).
pub fn unit(s: &HostSettings) -> String {
    let groups = if s.docker {
        "SupplementaryGroups=docker\n"
    } else {
        ""
    };
    let mut after = String::from("network-online.target");
    if s.docker {
        after.push_str(" docker.service");
    }
    let mut requires = String::new();
    if socket_unit(s).is_some() {
        after.push_str(&format!(" {SOCKET_UNIT}"));
        requires = format!("Requires={SOCKET_UNIT}\n");
    }
    format!(
        "# Written by `dockhand setup`; a second setup rewrites it.
[Unit]
Description=Dockhand agent (proxy, deploys, health)
Documentation=https://github.com/dockhand/dockhand
Wants=network-online.target
{requires}After={after}
ConditionPathExists={CONFIG}
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
Type=simple
User={USER}
Group={USER}
{groups}ExecStart={BINARY} agent -f {CONFIG} --state-dir {STATE_DIR} --group {USER} --socket {SOCKET} --no-initial-deploy
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2
TimeoutStopSec=90
KillMode=mixed
Delegate=yes
StateDirectory=dockhand
StateDirectoryMode=0750
RuntimeDirectory=dockhand
RuntimeDirectoryMode=0750
WorkingDirectory={PROJECT_DIR}
UMask=0027
LimitNOFILE=65536
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={PROJECT_DIR} {STATE_DIR}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
ProtectHostname=yes
ProtectControlGroups=no
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
"
    )
}

/// The socket unit: systemd binds the proxy's addresses and passes them to the agent at each
/// start (`LISTEN_FDS`), so connections that arrive while the agent restarts (an upgrade,
/// `systemctl restart`, a crash) wait in the backlog instead of being refused. `None` when
/// there are no addresses to hold (no `dockhand.toml` at setup, or only port 0).
pub fn socket_unit(s: &HostSettings) -> Option<String> {
    let listen: Vec<String> = s
        .proxy_listen
        .iter()
        .filter(|a| a.port() != 0)
        .map(|a| format!("ListenStream={a}\n"))
        .collect();
    if listen.is_empty() {
        return None;
    }
    Some(format!(
        "# Written by `dockhand setup` from `[proxy] listen` / `https_listen`; a second setup
# rewrites it. The agent serves on these sockets; they stay open while it restarts.
[Unit]
Description=Dockhand proxy sockets (held across agent restarts)
Documentation=https://github.com/dockhand/dockhand

[Socket]
{listen}Service={UNIT}
NoDelay=yes
Backlog=4096
# An IPv6 wildcard takes IPv4 too, as the proxy's own sockets would.
BindIPv6Only=default

[Install]
WantedBy=sockets.target
",
        listen = listen.concat()
    ))
}

/// The firewall as an nftables table of our own: it does not flush the ruleset, so Docker's
/// tables stay; inbound traffic is dropped but for loopback, established connections, ICMP,
/// SSH (optionally from given sources only), 80 and 443.
pub fn firewall_rules(s: &HostSettings) -> String {
    let port = s.ssh_port;
    let (ssh4, ssh6) = if s.ssh_from.is_empty() {
        (format!("tcp dport {port} accept"), String::new())
    } else {
        let (v6, v4): (Vec<&String>, Vec<&String>) =
            s.ssh_from.iter().partition(|a| a.contains(':'));
        let set = |v: &[&String]| v.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ");
        let four = if v4.is_empty() {
            String::new()
        } else {
            format!("ip saddr {{ {} }} tcp dport {port} accept", set(&v4))
        };
        let six = if v6.is_empty() {
            String::new()
        } else {
            format!("ip6 saddr {{ {} }} tcp dport {port} accept", set(&v6))
        };
        (four, six)
    };
    let rules: Vec<String> = [
        "ct state established,related accept".to_string(),
        "ct state invalid drop".into(),
        "iif lo accept".into(),
        "ip protocol icmp accept".into(),
        "ip6 nexthdr icmpv6 accept".into(),
        ssh4,
        ssh6,
        "tcp dport { 80, 443 } accept".into(),
        "udp dport 443 accept".into(),
    ]
    .into_iter()
    .chain(s.swarm.iter().flat_map(SwarmFirewall::accept_rules))
    .filter(|r| !r.is_empty())
    .map(|r| format!("\t\t{r}\n"))
    .collect();
    format!(
        "#!/usr/sbin/nft -f
# Written by `dockhand setup`: inbound SSH, HTTP and HTTPS only (and a cluster's swarm
# ports from its other nodes). Docker's own tables are left alone (this file never
# flushes the ruleset).
table inet dockhand
delete table inet dockhand
table inet dockhand {{
\tchain input {{
\t\ttype filter hook input priority filter; policy drop;
{}\t}}
}}
",
        rules.concat()
    )
}

/// Loads [`firewall_rules`] at boot, before the network comes up.
pub fn firewall_unit() -> String {
    format!(
        "# Written by `dockhand setup`.
[Unit]
Description=Dockhand firewall (nftables table inet dockhand)
DefaultDependencies=no
Before=network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f {FIREWALL_RULES}
ExecReload=/usr/sbin/nft -f {FIREWALL_RULES}
ExecStop=/usr/sbin/nft delete table inet dockhand

[Install]
WantedBy=multi-user.target
"
    )
}

/// The ufw commands giving the same policy where ufw is the firewall already in use.
pub fn ufw_commands(s: &HostSettings) -> Vec<String> {
    let mut cmds = vec![
        "ufw default deny incoming".to_string(),
        "ufw default allow outgoing".into(),
    ];
    if s.ssh_from.is_empty() {
        cmds.push(format!("ufw allow {}/tcp", s.ssh_port));
    } else {
        for from in &s.ssh_from {
            cmds.push(format!(
                "ufw allow from {from} to any port {} proto tcp",
                s.ssh_port
            ));
        }
    }
    cmds.push("ufw allow 80/tcp".into());
    cmds.push("ufw allow 443/tcp".into());
    if let Some(swarm) = &s.swarm {
        for peer in &swarm.peers {
            for (port, proto) in [(2377, "tcp"), (7946, "tcp"), (7946, "udp"), (4789, "udp")] {
                cmds.push(format!(
                    "ufw allow from {peer} to any port {port} proto {proto}"
                ));
            }
            if swarm.encrypted {
                cmds.push(format!("ufw allow from {peer} proto esp"));
            }
        }
    }
    cmds.push("ufw --force enable".into());
    cmds
}

/// No password or keyboard-interactive login, no root login, keys only.
pub fn sshd_dropin() -> String {
    "# Written by `dockhand setup` once a key login of the deploy user was proven.
# First in sshd_config.d, so these values win over later files and sshd_config.
PasswordAuthentication no
KbdInteractiveAuthentication no
ChallengeResponseAuthentication no
PermitRootLogin no
PubkeyAuthentication yes
PermitEmptyPasswords no
X11Forwarding no
MaxAuthTries 4
"
    .to_string()
}

/// fail2ban's sshd jail, reading the journal (Debian 12 has no auth.log by default).
pub fn fail2ban_jail(s: &HostSettings) -> String {
    format!(
        "# Written by `dockhand setup`.
[sshd]
enabled = true
port = {}
backend = systemd
maxretry = 5
findtime = 10m
bantime = 1h
",
        s.ssh_port
    )
}

/// Debian's and Ubuntu's switch for daily unattended security upgrades.
pub fn auto_upgrades() -> String {
    "// Written by `dockhand setup`: update the package lists and apply security upgrades daily.
APT::Periodic::Update-Package-Lists \"1\";
APT::Periodic::Unattended-Upgrade \"1\";
"
    .to_string()
}

/// The deploy user may become root (for `setup`) and the agent's user (to write the
/// project, whose secrets file belongs to the agent) without a password.
pub fn sudoers(s: &HostSettings) -> String {
    format!(
        "# Written by `dockhand setup`.
{user} ALL=(ALL:ALL) NOPASSWD: ALL
",
        user = s.deploy_user
    )
}

/// The swap size for a server with `mem_kib` of memory and no swap: as much as the memory
/// up to 2 GiB; `None` when the server has 4 GiB or more (no swap file needed).
pub fn swap_size_mib(mem_kib: u64) -> Option<u64> {
    let mem_mib = mem_kib / 1024;
    if mem_mib >= 3900 {
        return None;
    }
    Some(mem_mib.clamp(512, 2048))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HostSettings {
        HostSettings {
            ssh_port: 22,
            ssh_from: vec![],
            deploy_user: "deploy".into(),
            docker: true,
            ufw: false,
            proxy_listen: vec![],
            swarm: None,
        }
    }

    #[test]
    fn a_cluster_nodes_swarm_ports_are_open_to_its_peers_only() {
        let swarm = SwarmFirewall {
            peers: vec!["10.0.0.2".into(), "10.0.0.3".into(), "2001:db8::4".into()],
            encrypted: true,
        };
        let rules = firewall_rules(&HostSettings {
            swarm: Some(swarm.clone()),
            ..settings()
        });
        for line in [
            "\t\tip saddr { 10.0.0.2, 10.0.0.3 } tcp dport { 2377, 7946 } accept\n",
            "\t\tip saddr { 10.0.0.2, 10.0.0.3 } udp dport { 7946, 4789 } accept\n",
            "\t\tip saddr { 10.0.0.2, 10.0.0.3 } meta l4proto esp accept\n",
            "\t\tip6 saddr { 2001:db8::4 } tcp dport { 2377, 7946 } accept\n",
        ] {
            assert!(rules.contains(line), "missing {line:?}:\n{rules}");
        }
        assert!(!firewall_rules(&settings()).contains("2377"));
        let guard = swarm.guard_table();
        for line in [
            "type filter hook input priority filter - 1; policy accept;",
            "meta nfproto ipv4 ip saddr != { 10.0.0.2, 10.0.0.3 } tcp dport { 2377, 7946 } drop",
            "meta nfproto ipv4 ip saddr != { 10.0.0.2, 10.0.0.3 } udp dport { 7946, 4789 } drop",
            "meta nfproto ipv6 ip6 saddr != { 2001:db8::4 } tcp dport { 2377, 7946 } drop",
        ] {
            assert!(guard.contains(line), "missing {line:?}:\n{guard}");
        }
        assert!(guard.contains(&format!("{GUARD_COMMENT}{}", swarm.guard_digest())));
        assert!(!guard.contains("flush ruleset"));
        // A lone node: the swarm's ports closed to everyone but itself.
        let alone = SwarmFirewall::default().guard_table();
        assert!(
            alone.contains("\t\tmeta nfproto ipv4 tcp dport { 2377, 7946 } drop\n"),
            "{alone}"
        );
        assert_ne!(
            SwarmFirewall::default().guard_digest(),
            swarm.guard_digest()
        );
        let ufw = ufw_commands(&HostSettings {
            swarm: Some(swarm),
            ..settings()
        });
        assert!(ufw.contains(&"ufw allow from 10.0.0.3 to any port 4789 proto udp".to_string()));
        assert!(ufw.contains(&"ufw allow from 10.0.0.2 proto esp".to_string()));
    }

    #[test]
    fn the_socket_unit_holds_the_proxys_addresses_and_the_agent_requires_it() {
        assert_eq!(socket_unit(&settings()), None);
        assert!(!unit(&settings()).contains(SOCKET_UNIT));
        let s = HostSettings {
            proxy_listen: vec![
                "0.0.0.0:80".parse().unwrap(),
                "[::]:443".parse().unwrap(),
                "127.0.0.1:0".parse().unwrap(),
            ],
            ..settings()
        };
        let socket = socket_unit(&s).unwrap();
        let listens: Vec<&str> = socket
            .lines()
            .filter(|l| l.starts_with("ListenStream="))
            .collect();
        assert_eq!(
            listens,
            ["ListenStream=0.0.0.0:80", "ListenStream=[::]:443"]
        );
        assert!(socket.lines().any(|l| l == "Service=dockhand.service"));
        let unit = unit(&s);
        assert!(
            unit.lines().any(|l| l == "Requires=dockhand.socket"),
            "{unit}"
        );
        assert!(
            unit.lines()
                .any(|l| l == "After=network-online.target docker.service dockhand.socket"),
            "{unit}"
        );
        let only_port_zero = HostSettings {
            proxy_listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..settings()
        };
        assert_eq!(socket_unit(&only_port_zero), None);
    }

    #[test]
    fn the_unit_is_hardened_and_runs_the_agent_as_its_own_user() {
        let unit = unit(&settings());
        for line in [
            "User=dockhand",
            "SupplementaryGroups=docker",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/srv/dockhand /var/lib/dockhand",
            "Restart=on-failure",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
            "ConditionPathExists=/srv/dockhand/dockhand.toml",
            "ExecStart=/usr/local/bin/dockhand agent -f /srv/dockhand/dockhand.toml --state-dir /var/lib/dockhand --group dockhand --socket /run/dockhand/agent.sock --no-initial-deploy",
        ] {
            assert!(unit.lines().any(|l| l == line), "missing {line}:\n{unit}");
        }
        let without = super::unit(&HostSettings {
            docker: false,
            ..settings()
        });
        assert!(!without.contains("docker"), "{without}");
    }

    #[test]
    fn the_firewall_allows_ssh_http_https_only_and_never_flushes_docker() {
        let rules = firewall_rules(&settings());
        assert!(rules.contains("policy drop;"));
        assert!(rules.contains("\t\ttcp dport 22 accept\n"));
        assert!(rules.contains("tcp dport { 80, 443 } accept"));
        assert!(!rules.contains("flush ruleset"));
        let limited = firewall_rules(&HostSettings {
            ssh_port: 2222,
            ssh_from: vec!["198.51.100.0/24".into(), "2001:db8::/32".into()],
            ..settings()
        });
        assert!(
            limited.contains("ip saddr { 198.51.100.0/24 } tcp dport 2222 accept"),
            "{limited}"
        );
        assert!(
            limited.contains("ip6 saddr { 2001:db8::/32 } tcp dport 2222 accept"),
            "{limited}"
        );
        assert!(!limited.contains("\t\ttcp dport 2222 accept"), "{limited}");
        let ufw = ufw_commands(&HostSettings {
            ssh_from: vec!["198.51.100.7".into()],
            ..settings()
        });
        assert!(ufw.contains(&"ufw allow from 198.51.100.7 to any port 22 proto tcp".to_string()));
        assert_eq!(ufw.last().unwrap(), "ufw --force enable");
    }

    #[test]
    fn swap_only_on_small_servers() {
        assert_eq!(swap_size_mib(1024 * 1024), Some(1024));
        assert_eq!(swap_size_mib(512 * 1024), Some(512));
        assert_eq!(swap_size_mib(256 * 1024), Some(512));
        assert_eq!(swap_size_mib(2 * 1024 * 1024), Some(2048));
        assert_eq!(swap_size_mib(4 * 1024 * 1024), None);
    }
}
