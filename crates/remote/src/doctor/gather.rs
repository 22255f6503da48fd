//! Reads this machine for the doctor: `/proc` and `statvfs` for resources and sockets, and a
//! few commands (timedatectl, nft, ufw, sshd -T, docker, systemctl), each under a timeout. A
//! fact that cannot be read (not root, not installed) stays `None`, never guessed.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Disk, Facts, Listener};
use crate::server;

/// The file systems worth looking at.
pub const DISK_PATHS: &[&str] = &[
    "/",
    server::STATE_DIR,
    server::PROJECT_DIR,
    "/var/lib/docker",
];

/// Gathers the facts of this machine.
pub fn gather() -> Facts {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    let (firewall, firewall_detail) = firewall();
    Facts {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        disks: DISK_PATHS.iter().filter_map(|p| disk(p)).collect(),
        mem_total_kib: mem("MemTotal:"),
        mem_available_kib: mem("MemAvailable:"),
        swap_total_kib: mem("SwapTotal:"),
        swap_free_kib: mem("SwapFree:"),
        ntp_synchronized: run("timedatectl", &["show", "-p", "NTPSynchronized", "--value"])
            .and_then(|(ok, out)| match (ok, out.trim()) {
                (true, "yes") => Some(true),
                (true, "no") => Some(false),
                _ => None,
            }),
        firewall,
        firewall_detail,
        listeners: ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .flat_map(|p| parse_listeners(&std::fs::read_to_string(p).unwrap_or_default()))
            .collect(),
        sshd: run("sshd", &["-T"]).and_then(|(ok, out)| {
            ok.then(|| {
                out.lines()
                    .filter_map(|l| l.split_once(' '))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_ascii_lowercase()))
                    .collect::<BTreeMap<_, _>>()
            })
        }),
        docker: docker(),
        unit: unit(),
        addresses: run("hostname", &["-I"])
            .map(|(_, out)| out.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

fn disk(path: &str) -> Option<Disk> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = st.fragment_size() as u64;
    Some(Disk {
        path: path.to_string(),
        total_bytes: st.blocks() as u64 * frag,
        avail_bytes: st.blocks_available() as u64 * frag,
        inodes: st.files() as u64,
        inodes_free: st.files_available() as u64,
    })
}

fn firewall() -> (Option<bool>, String) {
    if let Some((true, _)) = run("nft", &["list", "table", "inet", "dockhand"]) {
        return (
            Some(true),
            "nftables table inet dockhand drops inbound traffic but SSH, 80 and 443".into(),
        );
    }
    if let Some((true, out)) = run("ufw", &["status"]) {
        if out
            .lines()
            .next()
            .is_some_and(|l| l.trim() == "Status: active")
        {
            return (Some(true), "ufw is active".into());
        }
    }
    if nix::unistd::geteuid().is_root() {
        (
            Some(false),
            "no firewall: no nftables table inet dockhand and no active ufw".into(),
        )
    } else {
        (None, "reading the firewall needs root".into())
    }
}

fn docker() -> Option<Result<String, String>> {
    if !std::path::Path::new("/var/run/docker.sock").exists() {
        return None;
    }
    Some(
        match run("docker", &["version", "--format", "{{.Server.Version}}"]) {
            Some((true, out)) => Ok(out.trim().to_string()),
            Some((false, out)) => Err(out.lines().last().unwrap_or("no answer").trim().to_string()),
            None => Err("the docker CLI is missing or did not answer within 10s".into()),
        },
    )
}

fn unit() -> Option<(String, String, u32)> {
    if !std::path::Path::new("/run/systemd/system").exists() {
        return None;
    }
    let word = |args: &[&str]| {
        run("systemctl", args)
            .map(|(_, o)| o.trim().to_string())
            .unwrap_or_default()
    };
    Some((
        word(&["is-active", server::UNIT]),
        word(&["is-enabled", server::UNIT]),
        word(&["show", "-p", "NRestarts", "--value", server::UNIT])
            .parse()
            .unwrap_or(0),
    ))
}

/// Runs `program args` with a 10 s limit; `(success, stdout + stderr)`, `None` when it could
/// not run or timed out.
fn run(program: &str, args: &[&str]) -> Option<(bool, String)> {
    let child = Command::new(program)
        .args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let mut child = child;
    let mut stdout = child.stdout.take()?;
    let mut stderr = child.stderr.take()?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let status = crate::ssh::wait_limited(child, Some(Duration::from_secs(10))).ok()??;
    let mut text = out.join().unwrap_or_default();
    text.push_str(&err.join().unwrap_or_default());
    Some((status.success(), text))
}

/// The listening sockets of a `/proc/net/tcp{,6}` table.
pub fn parse_listeners(table: &str) -> Vec<Listener> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 4 || cols[3] != "0A" {
            continue;
        }
        let Some((addr, port)) = cols[1].split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        let (address, loopback) = decode_address(addr);
        out.push(Listener {
            address,
            port,
            loopback,
        });
    }
    out
}

/// `/proc/net/tcp` writes addresses as little-endian 32-bit words in hex.
fn decode_address(hex: &str) -> (String, bool) {
    let words: Vec<u32> = (0..hex.len() / 8)
        .filter_map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).ok())
        .collect();
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    match bytes.len() {
        4 => {
            let ip = std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
            (ip.to_string(), ip.is_loopback())
        }
        16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&bytes);
            let ip = std::net::Ipv6Addr::from(b);
            let loopback =
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback());
            (ip.to_string(), loopback)
        }
        _ => (hex.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets_of_both_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 2 1 0 100 0 0 10 0
   2: 0100007F:0016 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
";
        let got = parse_listeners(v4);
        assert_eq!(
            got,
            [
                Listener {
                    address: "0.0.0.0".into(),
                    port: 22,
                    loopback: false
                },
                Listener {
                    address: "127.0.0.1".into(),
                    port: 5432,
                    loopback: true
                },
            ]
        );
        let v6 =
            "  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A
   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A
";
        let got = parse_listeners(v6);
        assert_eq!(
            got[0],
            Listener {
                address: "::".into(),
                port: 80,
                loopback: false
            }
        );
        assert_eq!(
            got[1],
            Listener {
                address: "::1".into(),
                port: 8080,
                loopback: true
            }
        );
    }
}
