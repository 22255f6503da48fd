//! `dockhand doctor`: a server checked the way a seasoned operator would. `gather.rs` reads
//! the machine (file systems, memory, clock, firewall, listening sockets, sshd, Docker, the
//! agent's unit) into [`Facts`]; [`evaluate`] is pure and turns facts into [`Check`]s, each
//! with what to do when it is not fine. The agent's own view (certificates, route hosts) is
//! added by the caller, which talks to the agent.

pub mod gather;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
    /// Could not be checked here (not root, not installed): says why.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// A stable name: `disk`, `inodes`, `memory`, `swap`, `clock`, `firewall`, `ports`, `ssh`,
    /// `docker`, `agent`, `certificates`, `dns`.
    pub name: String,
    pub verdict: Verdict,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub host: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn worst(&self) -> Verdict {
        if self.checks.iter().any(|c| c.verdict == Verdict::Fail) {
            Verdict::Fail
        } else if self.checks.iter().any(|c| c.verdict == Verdict::Warn) {
            Verdict::Warn
        } else {
            Verdict::Ok
        }
    }
}

/// One file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub path: String,
    pub total_bytes: u64,
    pub avail_bytes: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// A listening TCP socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub address: String,
    pub port: u16,
    pub loopback: bool,
}

/// What `gather` found (`None`: could not tell).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    pub disks: Vec<Disk>,
    pub mem_total_kib: u64,
    pub mem_available_kib: u64,
    pub swap_total_kib: u64,
    pub swap_free_kib: u64,
    pub ntp_synchronized: Option<bool>,
    /// `Some(true)` when our nftables table or an active ufw filters inbound traffic.
    pub firewall: Option<bool>,
    pub firewall_detail: String,
    pub listeners: Vec<Listener>,
    /// `sshd -T`'s values (lowercase), when readable (root).
    pub sshd: Option<BTreeMap<String, String>>,
    /// `None`: Docker is not installed; `Some(Ok(version))` / `Some(Err(why))`.
    pub docker: Option<Result<String, String>>,
    /// `systemctl is-active` / `is-enabled` of the agent's unit, and its restart count;
    /// `None` without systemd.
    pub unit: Option<(String, String, u32)>,
    /// This machine's addresses.
    pub addresses: Vec<String>,
}

/// The agent's view, added by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    /// Whether the agent answered (and if not, why).
    pub answered: Option<Result<String, String>>,
    /// Each certificate served: its names and days until it ends.
    pub certificates: Vec<(Vec<String>, i64)>,
    /// Each route host and the addresses it resolves to (`Err`: why it does not).
    pub route_hosts: Vec<(String, Result<Vec<String>, String>)>,
    /// Addresses the route hosts should point at (the server's public ones, when known).
    pub expected_addresses: Vec<String>,
}

const GIB: u64 = 1024 * 1024 * 1024;

/// The checks, from facts. Pure.
pub fn evaluate(f: &Facts, agent: &AgentView) -> Vec<Check> {
    let mut out = Vec::new();
    let mut add = |name: &str, verdict: Verdict, summary: String, fix: Option<&str>| {
        out.push(Check {
            name: name.into(),
            verdict,
            summary,
            fix: fix.map(str::to_string),
        })
    };

    // Disk space and inodes, per file system (each mount point once).
    let mut seen = std::collections::BTreeSet::new();
    for d in &f.disks {
        if !seen.insert((d.total_bytes, d.avail_bytes, d.inodes)) {
            continue;
        }
        let pct = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(100);
        let free = pct(d.avail_bytes, d.total_bytes);
        let (v, fix) = if d.avail_bytes < GIB / 2 || free < 5 {
            (Verdict::Fail, Some("free space now: `apt-get clean`, `journalctl --vacuum-size=200M`, `docker system prune` (unused images), or grow the disk"))
        } else if d.avail_bytes < 2 * GIB || free < 15 {
            (Verdict::Warn, Some("free some space before it fills: old logs, `docker image prune`, or grow the disk"))
        } else {
            (Verdict::Ok, None)
        };
        add(
            "disk",
            v,
            format!(
                "{}: {} free of {} ({free}%)",
                d.path,
                human(d.avail_bytes),
                human(d.total_bytes)
            ),
            fix,
        );
        if d.inodes > 0 {
            let ifree = pct(d.inodes_free, d.inodes);
            let (v, fix) = if ifree < 5 {
                (Verdict::Fail, Some("too many small files: find the directory that holds them (`du --inodes -x / | sort -n | tail`) and clean it"))
            } else if ifree < 15 {
                (Verdict::Warn, Some("inodes are running out: look for directories of many small files (`du --inodes -x /`)"))
            } else {
                (Verdict::Ok, None)
            };
            add(
                "inodes",
                v,
                format!("{}: {ifree}% of {} inodes free", d.path, d.inodes),
                fix,
            );
        }
    }

    // Memory and swap.
    if let Some(avail_pct) = (f.mem_available_kib * 100).checked_div(f.mem_total_kib) {
        let (v, fix) = if avail_pct < 5 {
            (Verdict::Fail, Some("the server is out of memory: lower `replicas` or `memory` limits, or take a bigger server"))
        } else if avail_pct < 15 {
            (
                Verdict::Warn,
                Some("little memory left: check `dockhand status` for a service that grows"),
            )
        } else {
            (Verdict::Ok, None)
        };
        add(
            "memory",
            v,
            format!(
                "{} available of {} ({avail_pct}%)",
                human(f.mem_available_kib * 1024),
                human(f.mem_total_kib * 1024)
            ),
            fix,
        );
        let small = f.mem_total_kib < 3900 * 1024;
        let (v, summary, fix) = if f.swap_total_kib == 0 && small {
            (Verdict::Warn, format!("no swap with {} of memory", human(f.mem_total_kib * 1024)), Some("add a swap file (`dockhand setup` does on small servers) so a memory peak slows the server instead of killing a process"))
        } else if f.swap_total_kib > 0 && f.swap_free_kib * 100 / f.swap_total_kib < 20 {
            (
                Verdict::Warn,
                format!(
                    "swap {}% used",
                    100 - f.swap_free_kib * 100 / f.swap_total_kib
                ),
                Some("the server pages heavily: more memory, or fewer replicas"),
            )
        } else if f.swap_total_kib == 0 {
            (Verdict::Ok, "no swap (enough memory)".into(), None)
        } else {
            (
                Verdict::Ok,
                format!("{} of swap", human(f.swap_total_kib * 1024)),
                None,
            )
        };
        add("swap", v, summary, fix);
    }

    // Clock.
    match f.ntp_synchronized {
        Some(true) => add("clock", Verdict::Ok, "synchronised (NTP)".into(), None),
        Some(false) => add("clock", Verdict::Warn, "not synchronised".into(), Some("enable time sync: `systemctl enable --now systemd-timesyncd` (certificates and logs need a right clock)")),
        None => add("clock", Verdict::Skip, "timedatectl did not say".into(), None),
    }

    // Firewall.
    match f.firewall {
        Some(true) => add("firewall", Verdict::Ok, f.firewall_detail.clone(), None),
        Some(false) => add("firewall", Verdict::Fail, f.firewall_detail.clone(), Some("turn it on: `dockhand setup` installs an nftables table letting in SSH, 80 and 443 only")),
        None => add("firewall", Verdict::Skip, f.firewall_detail.clone(), Some("run doctor as root (sudo) to read the firewall")),
    }

    // Open ports: what listens beyond loopback.
    let ssh_port: u16 = f
        .sshd
        .as_ref()
        .and_then(|s| s.get("port"))
        .and_then(|p| p.parse().ok())
        .unwrap_or(22);
    let mut public: Vec<u16> = f
        .listeners
        .iter()
        .filter(|l| !l.loopback)
        .map(|l| l.port)
        .collect();
    public.sort_unstable();
    public.dedup();
    let unexpected: Vec<u16> = public
        .iter()
        .copied()
        .filter(|p| ![ssh_port, 80, 443].contains(p))
        .collect();
    if unexpected.is_empty() {
        add(
            "ports",
            Verdict::Ok,
            format!("listening beyond loopback: {}", list(&public)),
            None,
        );
    } else {
        let filtered = f.firewall == Some(true);
        add(
            "ports",
            if filtered {
                Verdict::Warn
            } else {
                Verdict::Fail
            },
            format!(
                "listening beyond loopback: {} (unexpected: {})",
                list(&public),
                list(&unexpected)
            ),
            Some(if filtered {
                "the firewall drops them, but bind them to 127.0.0.1 (a database's `publish`, a stray service) or stop them"
            } else {
                "these ports are reachable from the internet: bind them to 127.0.0.1 or stop them, and turn on the firewall"
            }),
        );
    }

    // SSH.
    match &f.sshd {
        Some(s) => {
            let get = |k: &str| s.get(k).map(String::as_str).unwrap_or("?");
            let password = get("passwordauthentication");
            let root = get("permitrootlogin");
            let weak: Vec<String> = [
                (password == "yes").then(|| "password login is allowed".to_string()),
                (root == "yes" || root == "without-password" || root == "prohibit-password")
                    .then(|| format!("root may log in ({root})")),
            ]
            .into_iter()
            .flatten()
            .collect();
            if weak.is_empty() {
                add(
                    "ssh",
                    Verdict::Ok,
                    format!("keys only, no root login (port {ssh_port})"),
                    None,
                );
            } else {
                add("ssh", Verdict::Warn, weak.join("; "), Some("run `dockhand setup` (it disables them once a key login of the deploy user is proven)"));
            }
        }
        None => add(
            "ssh",
            Verdict::Skip,
            "sshd's settings could not be read (they need root; is sshd installed?)".into(),
            Some("run doctor as root (sudo)"),
        ),
    }

    // Docker.
    match &f.docker {
        Some(Ok(v)) => add(
            "docker",
            Verdict::Ok,
            format!("Docker Engine {v} answers"),
            None,
        ),
        Some(Err(why)) => add(
            "docker",
            Verdict::Fail,
            format!("the Docker Engine does not answer: {why}"),
            Some("`systemctl status docker`, then `systemctl restart docker`"),
        ),
        None => add(
            "docker",
            Verdict::Skip,
            "Docker is not installed (needed only by container services)".into(),
            None,
        ),
    }

    // The agent's unit.
    match &f.unit {
        Some((active, enabled, restarts)) => {
            let (v, fix) = match (active.as_str(), enabled.as_str()) {
                ("active", "enabled") if *restarts > 5 => (
                    Verdict::Warn,
                    Some("it restarts often: `journalctl -u dockhand -n 100`"),
                ),
                ("active", "enabled") => (Verdict::Ok, None),
                ("active", _) => (
                    Verdict::Warn,
                    Some("enable it so it starts at boot: `systemctl enable dockhand`"),
                ),
                ("inactive", _) if agent.answered.is_none() => (
                    Verdict::Warn,
                    Some("it starts with the first `dockhand deploy --host …`"),
                ),
                _ => (
                    Verdict::Fail,
                    Some("`journalctl -u dockhand -n 100` says why; `systemctl restart dockhand`"),
                ),
            };
            add(
                "agent",
                v,
                format!("dockhand.service {active}, {enabled}, {restarts} restart(s)"),
                fix,
            );
        }
        None => match &agent.answered {
            Some(Ok(what)) => add("agent", Verdict::Ok, what.clone(), None),
            Some(Err(why)) => add(
                "agent",
                Verdict::Fail,
                why.clone(),
                Some("start it: `dockhand up` here, or `systemctl start dockhand` on a server"),
            ),
            None => add(
                "agent",
                Verdict::Skip,
                "no systemd and no agent socket".into(),
                None,
            ),
        },
    }
    if let (Some(_), Some(Err(why))) = (&f.unit, &agent.answered) {
        add(
            "agent",
            Verdict::Fail,
            format!("the agent does not answer: {why}"),
            Some("`journalctl -u dockhand -n 100`"),
        );
    }

    // Certificates.
    for (names, days) in &agent.certificates {
        let who = names.join(", ");
        let (v, fix) = if *days < 0 {
            (
                Verdict::Fail,
                Some("it has expired: renew it and restart the agent"),
            )
        } else if *days < 3 {
            (Verdict::Fail, Some("renew it now and restart the agent"))
        } else if *days < 14 {
            (Verdict::Warn, Some("renew it soon"))
        } else {
            (Verdict::Ok, None)
        };
        let summary = if *days < 0 {
            format!("{who}: expired {} day(s) ago", -days)
        } else {
            format!("{who}: {days} day(s) left")
        };
        add("certificates", v, summary, fix);
    }

    // DNS of the route hosts.
    let ours: Vec<&str> = agent
        .expected_addresses
        .iter()
        .chain(f.addresses.iter())
        .map(String::as_str)
        .collect();
    for (host, resolved) in &agent.route_hosts {
        match resolved {
            Err(why) => add("dns", Verdict::Fail, format!("{host} does not resolve ({why})"), Some("create an A (and AAAA) record for it pointing at this server")),
            Ok(addrs) if addrs.iter().any(|a| ours.contains(&a.as_str())) => {
                add("dns", Verdict::Ok, format!("{host} → {}", addrs.join(", ")), None)
            }
            Ok(addrs) => add(
                "dns",
                Verdict::Warn,
                format!("{host} → {}, not this server ({})", addrs.join(", "), if ours.is_empty() { "its address is unknown".to_string() } else { ours.join(", ") }),
                Some("point the record at this server (behind a CDN or load balancer this is expected)"),
            ),
        }
    }
    out
}

fn list(ports: &[u16]) -> String {
    if ports.is_empty() {
        "nothing".into()
    } else {
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `1.5 GiB`, `300 MiB`.
pub fn human(bytes: u64) -> String {
    let mib = bytes as f64 / 1024.0 / 1024.0;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.0} MiB")
    }
}

#[cfg(test)]
mod tests;
