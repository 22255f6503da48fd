//! `dockhand provision cloud-init`: `#cloud-config` user-data. It writes the files `setup`
//! writes (agent unit, firewall, fail2ban jail, SSH hardening, unattended upgrades), creates
//! the deploy user with its key and passwordless sudo, installs the packages, and runs one
//! first-boot script (users, the binary checked against its SHA-256, swap on small servers,
//! services). The key comes from the user-data itself, so the hardening cannot lock its
//! owner out the way a hand-edited sshd_config can.

use crate::server::{self, HostSettings};

/// Where the first boot fetches the `dockhand` binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinarySource {
    pub url: String,
    pub sha256: String,
}

/// What the user-data sets up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudInit {
    pub deploy_user: String,
    /// Public key lines (or a template placeholder, for Terraform).
    pub ssh_keys: Vec<String>,
    pub ssh_from: Vec<String>,
    pub docker: bool,
    pub binary: Option<BinarySource>,
}

/// The first-boot script's path.
pub const FIRSTBOOT: &str = "/usr/local/sbin/dockhand-firstboot";

/// The user-data text.
pub fn user_data(c: &CloudInit) -> String {
    let settings = HostSettings {
        ssh_port: 22,
        ssh_from: c.ssh_from.clone(),
        deploy_user: c.deploy_user.clone(),
        docker: c.docker,
        ufw: false,
        // No dockhand.toml here: the agent binds the proxy itself until `setup` runs with one.
        proxy_listen: vec![],
        swarm: None,
    };
    let mut packages = vec![
        "sudo",
        "curl",
        "ca-certificates",
        "nftables",
        "fail2ban",
        "python3-systemd",
        "unattended-upgrades",
        "systemd-timesyncd",
    ];
    if c.docker {
        packages.push("docker.io");
    }
    let mut out = String::new();
    out.push_str("#cloud-config\n");
    out.push_str(&format!(
        "# Written by `dockhand provision cloud-init` (dockhand {}): the server `dockhand setup`\n\
         # makes, on first boot. Then: `dockhand deploy --host ssh://{}@SERVER` from the project.\n",
        env!("CARGO_PKG_VERSION"),
        c.deploy_user
    ));
    out.push_str("package_update: true\npackage_upgrade: true\npackages:\n");
    for p in &packages {
        out.push_str(&format!("  - {p}\n"));
    }
    out.push_str("groups:\n  - dockhand\n");
    out.push_str("users:\n");
    out.push_str(&format!("  - name: {}\n", quote(&c.deploy_user)));
    out.push_str("    shell: /bin/bash\n");
    out.push_str("    groups: [dockhand]\n");
    out.push_str("    lock_passwd: true\n");
    out.push_str(&format!(
        "    sudo: {}\n",
        quote("ALL=(ALL:ALL) NOPASSWD: ALL")
    ));
    out.push_str("    ssh_authorized_keys:\n");
    for key in &c.ssh_keys {
        out.push_str(&format!("      - {}\n", quote(key.trim())));
    }
    out.push_str("disable_root: true\nssh_pwauth: false\n");
    out.push_str("write_files:\n");
    let files: Vec<(&str, &str, String)> = vec![
        (server::UNIT_PATH, "0644", server::unit(&settings)),
        (
            server::FIREWALL_RULES,
            "0644",
            server::firewall_rules(&settings),
        ),
        (server::FIREWALL_UNIT_PATH, "0644", server::firewall_unit()),
        (
            server::FAIL2BAN_JAIL,
            "0644",
            server::fail2ban_jail(&settings),
        ),
        (server::AUTO_UPGRADES, "0644", server::auto_upgrades()),
        (server::SSHD_DROPIN, "0644", server::sshd_dropin()),
        (FIRSTBOOT, "0755", firstboot(c)),
    ];
    for (path, mode, content) in files {
        out.push_str(&format!(
            "  - path: {path}\n    owner: root:root\n    permissions: '{mode}'\n    content: |\n"
        ));
        for line in content.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str("      ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.push_str(&format!("runcmd:\n  - [sh, {FIRSTBOOT}]\n"));
    out
}

fn firstboot(c: &CloudInit) -> String {
    let u = server::USER;
    let mut s = format!(
        "#!/bin/sh
# Written by `dockhand provision cloud-init`: run once by cloud-init on first boot.
set -eu
getent group {u} >/dev/null || groupadd --system {u}
getent passwd {u} >/dev/null || useradd --system --gid {u} --home-dir {state} --no-create-home --shell /usr/sbin/nologin {u}
usermod -aG {u} {deploy}
install -d -o {u} -g {u} -m 0750 {project}
",
        state = server::STATE_DIR,
        project = server::PROJECT_DIR,
        deploy = c.deploy_user,
    );
    if c.docker {
        s.push_str(&format!("usermod -aG docker {u}\n"));
    }
    match &c.binary {
        Some(b) => s.push_str(&format!(
            "tmp={dir}/.dockhand.new
curl --fail --silent --show-error --location --retry 3 --max-time 600 -o \"$tmp\" '{url}'
echo '{sha}  '\"$tmp\" | sha256sum -c --quiet -
chmod 0755 \"$tmp\"
mv -f \"$tmp\" {bin}
",
            dir = "/usr/local/bin",
            url = b.url.replace('\'', ""),
            sha = b.sha256,
            bin = server::BINARY
        )),
        None => s.push_str(
            "# No binary URL was given: `dockhand setup ssh://USER@SERVER` uploads it (and finds the rest done).\n",
        ),
    }
    s.push_str(&format!(
        "# Swap on servers with less than 4 GiB of memory and none yet.
mem=$(awk '/^MemTotal:/ {{ print int($2 / 1024) }}' /proc/meminfo)
swap=$(awk '/^SwapTotal:/ {{ print $2 }}' /proc/meminfo)
if [ \"$mem\" -lt 3900 ] && [ \"$swap\" = 0 ] && [ ! -f {sw} ]; then
  size=$mem
  [ \"$size\" -ge 512 ] || size=512
  [ \"$size\" -le 2048 ] || size=2048
  fallocate -l \"$size\"M {sw} || dd if=/dev/zero of={sw} bs=1M count=\"$size\" status=none
  chmod 600 {sw}
  mkswap {sw} >/dev/null
  swapon {sw}
  echo '{sw} none swap sw 0 0' >> /etc/fstab
fi
systemctl daemon-reload
systemctl enable --now {fw}
systemctl enable fail2ban.service
systemctl restart fail2ban.service
systemctl enable --now systemd-timesyncd.service || true
systemctl enable {unit}
systemctl reload ssh || systemctl restart ssh
",
        sw = server::SWAPFILE,
        fw = server::FIREWALL_UNIT,
        unit = server::UNIT,
    ));
    s
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CloudInit {
        CloudInit {
            deploy_user: "deploy".into(),
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExample me@laptop".into()],
            ssh_from: vec![],
            docker: true,
            binary: Some(BinarySource {
                url: "https://downloads.example.org/dockhand-x86_64".into(),
                sha256: "ab".repeat(32),
            }),
        }
    }

    #[test]
    fn user_data_carries_the_same_files_as_setup() {
        let text = user_data(&sample());
        assert!(text.starts_with("#cloud-config\n"));
        for needle in [
            "  - docker.io\n",
            "    sudo: \"ALL=(ALL:ALL) NOPASSWD: ALL\"\n",
            "  - path: /etc/systemd/system/dockhand.service\n",
            "      NoNewPrivileges=yes\n",
            "  - path: /etc/ssh/sshd_config.d/00-dockhand.conf\n",
            "      PermitRootLogin no\n",
            "sha256sum -c --quiet -",
            "runcmd:\n  - [sh, /usr/local/sbin/dockhand-firstboot]\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        let no_docker = user_data(&CloudInit {
            docker: false,
            binary: None,
            ..sample()
        });
        assert!(!no_docker.contains("docker"), "{no_docker}");
        assert!(no_docker.contains("dockhand setup ssh://USER@SERVER` uploads it"));
    }
}
