//! What `setup` and `doctor` observe on a server: one POSIX shell script run as root prints
//! `key=value` lines, parsed here into [`HostFacts`]. The parser is pure and tested with
//! plain text; the script is the only thing that runs on the server.

use std::collections::BTreeMap;

use crate::server;

/// Packages whose state the facts report.
pub const PACKAGES: &[&str] = &[
    "sudo",
    "nftables",
    "ufw",
    "fail2ban",
    "python3-systemd",
    "unattended-upgrades",
    "systemd-timesyncd",
    "chrony",
    "ntp",
    "docker.io",
    "openssh-server",
];

/// Units whose state the facts report.
pub const UNITS: &[&str] = &[
    server::UNIT,
    server::SOCKET_UNIT,
    server::FIREWALL_UNIT,
    "fail2ban.service",
    "docker.service",
    "ssh.service",
    "systemd-timesyncd.service",
    "chrony.service",
];

/// Files whose SHA-256 the facts report (what `setup` writes).
pub const FILES: &[&str] = &[
    server::UNIT_PATH,
    server::SOCKET_UNIT_PATH,
    server::FIREWALL_RULES,
    server::FIREWALL_UNIT_PATH,
    server::SSHD_DROPIN,
    server::FAIL2BAN_JAIL,
    server::AUTO_UPGRADES,
    server::SUDOERS,
];

/// How the SSH user gets root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    Root,
    /// `sudo -n` works.
    Sudo,
    /// sudo asks for a password (and we have no terminal for it).
    SudoNeedsPassword,
    /// No sudo at all.
    None,
}

impl Privilege {
    pub fn parse(word: &str) -> Privilege {
        match word.trim() {
            "root" => Privilege::Root,
            "sudo" => Privilege::Sudo,
            "password" => Privilege::SudoNeedsPassword,
            _ => Privilege::None,
        }
    }

    /// The prefix that runs a command as root (`None`: we cannot).
    pub fn root_prefix(self) -> Option<&'static str> {
        match self {
            Privilege::Root => Some(""),
            Privilege::Sudo => Some("sudo -n "),
            _ => None,
        }
    }
}

/// The command that tells who we are and how we get root: prints the user name, then one
/// of `root`, `sudo`, `password`, `none`.
pub const PRIVILEGE_PROBE: &str = "id -un; if [ \"$(id -u)\" = 0 ]; then echo root; elif ! command -v sudo >/dev/null 2>&1; then echo none; elif sudo -n true 2>/dev/null; then echo sudo; else echo password; fi";

/// Everything observed about a server.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostFacts {
    pub os_id: String,
    pub os_version: String,
    pub os_name: String,
    pub arch: String,
    /// The name of PID 1 (`systemd` on a server we can manage).
    pub init: String,
    pub mem_kib: u64,
    pub swap_kib: u64,
    /// Free space of the file systems setup writes to (/, /usr/local/bin, /var/lib, /srv), the least of them.
    pub disk_free_kib: u64,
    /// The mount point with the least free space.
    pub disk_tightest: String,
    /// Package → dpkg status word (`installed`, `config-files`, …); absent packages are missing.
    pub packages: BTreeMap<String, String>,
    /// Unit → `is-active` word.
    pub active: BTreeMap<String, String>,
    /// Unit → `is-enabled` word.
    pub enabled: BTreeMap<String, String>,
    /// Managed file → SHA-256 of its content.
    pub files: BTreeMap<String, String>,
    /// ufw's first status line (`Status: active`), empty without ufw.
    pub ufw: String,
    pub dockhand_user: bool,
    /// The `dockhand` user is in the `docker` group.
    pub dockhand_in_docker: bool,
    pub project_dir: bool,
    pub project_config: bool,
    /// The deploy user exists / is in the `dockhand` group / has authorized keys.
    pub deploy_user: bool,
    pub deploy_in_group: bool,
    pub deploy_keys: bool,
    /// SHA-256 of the installed `dockhand` binary.
    pub binary_sha256: Option<String>,
    /// `sshd -T`'s effective values (lowercase keys).
    pub sshd: BTreeMap<String, String>,
    pub swapfile: bool,
    /// The kernel reports the clock synchronised.
    pub ntp_synchronized: Option<bool>,
}

impl HostFacts {
    pub fn installed(&self, package: &str) -> bool {
        self.packages.get(package).is_some_and(|s| s == "installed")
    }

    pub fn is_active(&self, unit: &str) -> bool {
        self.active.get(unit).is_some_and(|s| s == "active")
    }

    pub fn is_enabled(&self, unit: &str) -> bool {
        self.enabled.get(unit).is_some_and(|s| s == "enabled")
    }

    pub fn file_sha(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    pub fn ufw_active(&self) -> bool {
        self.ufw.trim() == "Status: active"
    }

    /// Parses the script's output; unknown keys are ignored (a newer script, an older CLI).
    pub fn parse(text: &str) -> HostFacts {
        let mut f = HostFacts::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().to_string();
            let yes = value == "yes";
            let num = || value.parse::<u64>().unwrap_or(0);
            match key {
                "os_id" => f.os_id = value,
                "os_version" => f.os_version = value,
                "os_name" => f.os_name = value,
                "arch" => f.arch = value,
                "init" => f.init = value,
                "mem_kib" => f.mem_kib = num(),
                "swap_kib" => f.swap_kib = num(),
                "disk" => {
                    // `disk=<free KiB> <mount point>`, one per file system; keep the least.
                    let mut parts = value.splitn(2, ' ');
                    let free = parts.next().and_then(|n| n.parse::<u64>().ok());
                    let mount = parts.next().unwrap_or("/").to_string();
                    if let Some(free) = free {
                        if f.disk_tightest.is_empty() || free < f.disk_free_kib {
                            f.disk_free_kib = free;
                            f.disk_tightest = mount;
                        }
                    }
                }
                "ufw" => f.ufw = value,
                "dockhand_user" => f.dockhand_user = yes,
                "dockhand_in_docker" => f.dockhand_in_docker = yes,
                "project_dir" => f.project_dir = yes,
                "project_config" => f.project_config = yes,
                "deploy_user" => f.deploy_user = yes,
                "deploy_in_group" => f.deploy_in_group = yes,
                "deploy_keys" => f.deploy_keys = yes,
                "binary" => f.binary_sha256 = (!value.is_empty()).then_some(value),
                "swapfile" => f.swapfile = yes,
                "ntp" => {
                    f.ntp_synchronized = match value.as_str() {
                        "yes" => Some(true),
                        "no" => Some(false),
                        _ => None,
                    }
                }
                _ => {
                    if let Some(p) = key.strip_prefix("pkg.") {
                        if !value.is_empty() && value != "absent" {
                            f.packages.insert(p.to_string(), value);
                        }
                    } else if let Some(u) = key.strip_prefix("active.") {
                        f.active.insert(u.to_string(), value);
                    } else if let Some(u) = key.strip_prefix("enabled.") {
                        f.enabled.insert(u.to_string(), value);
                    } else if let Some(path) = key.strip_prefix("file.") {
                        if !value.is_empty() {
                            f.files.insert(path.to_string(), value);
                        }
                    } else if let Some(k) = key.strip_prefix("sshd.") {
                        f.sshd
                            .insert(k.to_ascii_lowercase(), value.to_ascii_lowercase());
                    }
                }
            }
        }
        f
    }
}

/// The script that prints the facts; run as root with `deploy_user` named.
pub fn script(deploy_user: &str) -> String {
    let deploy = shlex::try_quote(deploy_user)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| "''".into());
    let packages = PACKAGES.join(" ");
    let units = UNITS.join(" ");
    let files = FILES.join(" ");
    format!(
        r#"export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
kv() {{ printf '%s=%s\n' "$1" "$2"; }}
if [ -r /etc/os-release ]; then . /etc/os-release; fi
kv os_id "${{ID:-}}"
kv os_version "${{VERSION_ID:-}}"
kv os_name "${{PRETTY_NAME:-}}"
kv arch "$(uname -m)"
kv init "$(cat /proc/1/comm 2>/dev/null)"
kv mem_kib "$(awk '/^MemTotal:/ {{ print $2 }}' /proc/meminfo)"
kv swap_kib "$(awk '/^SwapTotal:/ {{ print $2 }}' /proc/meminfo)"
for d in / /usr/local/bin /var/lib /srv; do
  [ -d "$d" ] && df -Pk "$d" 2>/dev/null | awk 'NR == 2 {{ print "disk=" $4 " " $6 }}'
done
for p in {packages}; do
  kv "pkg.$p" "$(dpkg-query -W -f='${{db:Status-Status}}' "$p" 2>/dev/null || echo absent)"
done
for u in {units}; do
  kv "active.$u" "$(systemctl is-active "$u" 2>/dev/null)"
  kv "enabled.$u" "$(systemctl is-enabled "$u" 2>/dev/null)"
done
for f in {files}; do
  [ -f "$f" ] && kv "file.$f" "$(sha256sum < "$f" | cut -c1-64)"
done
command -v ufw >/dev/null 2>&1 && kv ufw "$(ufw status 2>/dev/null | head -n 1)"
getent passwd dockhand >/dev/null && kv dockhand_user yes
id -nG dockhand 2>/dev/null | tr ' ' '\n' | grep -qx docker && kv dockhand_in_docker yes
[ -d {project} ] && kv project_dir yes
[ -f {config} ] && kv project_config yes
if getent passwd {deploy} >/dev/null; then
  kv deploy_user yes
  id -nG {deploy} | tr ' ' '\n' | grep -qx dockhand && kv deploy_in_group yes
  home=$(getent passwd {deploy} | cut -d: -f6)
  [ -s "$home/.ssh/authorized_keys" ] && kv deploy_keys yes
fi
[ -x {binary} ] && kv binary "$(sha256sum < {binary} | cut -c1-64)"
sshd -T 2>/dev/null | while read -r k v; do
  case "$k" in passwordauthentication|permitrootlogin|kbdinteractiveauthentication|pubkeyauthentication|port|x11forwarding|maxauthtries) kv "sshd.$k" "$v" ;; esac
done
[ -f {swapfile} ] && kv swapfile yes
kv ntp "$(timedatectl show -p NTPSynchronized --value 2>/dev/null)"
true
"#,
        project = server::PROJECT_DIR,
        config = server::CONFIG,
        binary = server::BINARY,
        swapfile = server::SWAPFILE,
    )
}

/// The operating systems `setup` supports: Debian 12 and 13, Ubuntu 22.04 and 24.04.
pub fn supported_os(facts: &HostFacts) -> Result<(), String> {
    let ok = match facts.os_id.as_str() {
        "debian" => matches!(facts.os_version.as_str(), "12" | "13"),
        "ubuntu" => matches!(facts.os_version.as_str(), "22.04" | "24.04"),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let name = if facts.os_name.is_empty() {
            format!("{} {}", facts.os_id, facts.os_version)
                .trim()
                .to_string()
        } else {
            facts.os_name.clone()
        };
        let name = if name.is_empty() {
            "an unknown system".to_string()
        } else {
            name
        };
        Err(format!(
            "{name} is not supported: dockhand setup supports Debian 12 and 13, Ubuntu 22.04 and 24.04"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "os_id=debian
os_version=12
os_name=Debian GNU/Linux 12 (bookworm)
arch=x86_64
init=systemd
mem_kib=1012344
swap_kib=0
disk=60000000 /
disk=1024 /usr/local
pkg.sudo=installed
pkg.ufw=absent
pkg.fail2ban=config-files
active.ssh.service=active
enabled.ssh.service=enabled
active.dockhand.service=inactive
file./etc/ssh/sshd_config.d/00-dockhand.conf=abc
ufw=
deploy_user=yes
deploy_keys=yes
binary=
sshd.PasswordAuthentication=yes
sshd.permitrootlogin=without-password
ntp=no
garbage line
future_key=1
";

    #[test]
    fn parses_the_script_output() {
        let f = HostFacts::parse(SAMPLE);
        assert_eq!(f.os_id, "debian");
        assert_eq!(f.os_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(f.mem_kib, 1012344);
        assert_eq!(
            (f.disk_free_kib, f.disk_tightest.as_str()),
            (1024, "/usr/local")
        );
        assert!(f.installed("sudo"));
        assert!(!f.installed("fail2ban"), "config-files is not installed");
        assert!(!f.packages.contains_key("ufw"));
        assert!(f.is_active("ssh.service") && f.is_enabled("ssh.service"));
        assert!(!f.is_active("dockhand.service"));
        assert_eq!(f.file_sha(server::SSHD_DROPIN), Some("abc"));
        assert!(f.deploy_user && f.deploy_keys && !f.deploy_in_group);
        assert_eq!(f.binary_sha256, None);
        assert_eq!(
            f.sshd.get("passwordauthentication").map(String::as_str),
            Some("yes")
        );
        assert_eq!(f.ntp_synchronized, Some(false));
        assert!(!f.ufw_active());
    }

    #[test]
    fn supports_debian_and_ubuntu_lts_only() {
        let os = |id: &str, v: &str| HostFacts {
            os_id: id.into(),
            os_version: v.into(),
            ..HostFacts::default()
        };
        assert!(supported_os(&os("debian", "12")).is_ok());
        assert!(supported_os(&os("debian", "13")).is_ok());
        assert!(supported_os(&os("ubuntu", "24.04")).is_ok());
        let err = supported_os(&HostFacts {
            os_name: "Fedora Linux 40".into(),
            ..os("fedora", "40")
        })
        .unwrap_err();
        assert!(err.starts_with("Fedora Linux 40 is not supported"), "{err}");
        assert!(supported_os(&os("debian", "11")).is_err());
        assert!(supported_os(&HostFacts::default())
            .unwrap_err()
            .contains("unknown system"));
    }

    #[test]
    fn the_script_quotes_the_user_name() {
        let s = script("o'brien");
        assert!(s.contains(r#"getent passwd "o'brien""#), "{s}");
    }
}
