//! What the monitor reads of the machine: host CPU, memory, swap, load, disk use and inodes
//! per mount, network bytes, and one process's CPU time and resident memory (a native
//! instance, or a container's main process, which runs on the same kernel). Straight from
//! `/proc` and `statvfs`: a handful of small files per sample, where `sysinfo` would scan
//! every process of the machine. The parsers are pure and tested with sample text.

use std::path::Path;

/// One reading of the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSample {
    /// Cumulative CPU jiffies: busy and total (from `/proc/stat`'s `cpu` line).
    pub cpu_busy: u64,
    pub cpu_total: u64,
    pub mem_total: u64,
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub disks: Vec<DiskSample>,
    /// Bytes received and sent by every interface but loopback.
    pub net_rx: u64,
    pub net_tx: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiskSample {
    pub mount: String,
    pub total: u64,
    pub available: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

impl DiskSample {
    pub fn used_ratio(&self) -> f64 {
        ratio(self.total - self.available.min(self.total), self.total)
    }

    pub fn inodes_used_ratio(&self) -> f64 {
        ratio(
            self.inodes_total - self.inodes_free.min(self.inodes_total),
            self.inodes_total,
        )
    }
}

impl HostSample {
    pub fn mem_used_ratio(&self) -> f64 {
        ratio(
            self.mem_total - self.mem_available.min(self.mem_total),
            self.mem_total,
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Reads the host; what cannot be read stays zero.
pub fn read_host(state_dir: &Path) -> HostSample {
    let mut out = HostSample::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat") {
        if let Some((busy, total)) = parse_cpu(&stat) {
            out.cpu_busy = busy;
            out.cpu_total = total;
        }
    }
    if let Ok(mem) = std::fs::read_to_string("/proc/meminfo") {
        let kb = |key: &str| meminfo(&mem, key).unwrap_or(0) * 1024;
        out.mem_total = kb("MemTotal:");
        out.mem_available = kb("MemAvailable:");
        out.swap_total = kb("SwapTotal:");
        out.swap_free = kb("SwapFree:");
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let mut it = load.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
        out.load1 = it.next().unwrap_or(0.0);
        out.load5 = it.next().unwrap_or(0.0);
        out.load15 = it.next().unwrap_or(0.0);
    }
    if let Ok(net) = std::fs::read_to_string("/proc/net/dev") {
        (out.net_rx, out.net_tx) = parse_net(&net);
    }
    let mut mounts: Vec<String> = vec!["/".into()];
    let state = state_dir.to_string_lossy().into_owned();
    if let Ok(text) = std::fs::read_to_string("/proc/self/mounts") {
        // The state directory's file system (whatever it is: a tmpfs, an overlay), and every
        // real block device's.
        let real = parse_mounts(&text);
        if let Some(m) = state_mount(&text, Path::new(&state)) {
            mounts.push(m);
        }
        mounts.extend(real);
    }
    mounts.sort();
    mounts.dedup();
    for mount in mounts.into_iter().take(16) {
        if let Ok(st) = nix::sys::statvfs::statvfs(mount.as_str()) {
            let frag = st.fragment_size();
            out.disks.push(DiskSample {
                mount,
                total: st.blocks() * frag,
                available: st.blocks_available() * frag,
                inodes_total: st.files(),
                inodes_free: st.files_available(),
            });
        }
    }
    out
}

/// One process: cumulative CPU seconds (user + system) and resident bytes.
pub fn read_process(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ticks = parse_pid_cpu(&stat)?;
    let rss = meminfo(&status, "VmRSS:").unwrap_or(0) * 1024;
    Some((ticks as f64 / clock_ticks(), rss))
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |n| n as f64)
}

/// `/proc/stat`'s first line: (busy, total) jiffies.
pub fn parse_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user)
    let total: u64 = nums.iter().take(8).sum();
    let idle = nums.get(3).copied().unwrap_or(0) + nums.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// A `Key:   123 kB` line of `/proc/meminfo` or `/proc/PID/status`, in kB.
pub fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// utime + stime of `/proc/PID/stat` (fields 14 and 15, counted after the `(comm)`).
pub fn parse_pid_cpu(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ')' the fields start at 3 (state): utime is field 14 → index 11.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Received and sent bytes of every interface but `lo`.
pub fn parse_net(text: &str) -> (u64, u64) {
    let mut rx = 0;
    let mut tx = 0;
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

/// The mount point holding `dir`: the longest one it lies within, of any file system.
pub fn state_mount(mounts: &str, dir: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|l| Some(l.split_whitespace().nth(1)?.replace("\\040", " ")))
        .filter(|m| dir.starts_with(m.as_str()))
        .max_by_key(String::len)
}

/// Mount points of real file systems (block devices), from `/proc/self/mounts`: one per
/// device, its shortest mount point. The same device mounted again (bind mounts such as
/// `/var/lib/docker`, `/run/netns` or a test's directory) is the same disk, not another
/// one to chart.
pub fn parse_mounts(text: &str) -> Vec<String> {
    let mut by_device: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(dev), Some(mount)) = (f.next(), f.next()) else {
            continue;
        };
        if !dev.starts_with("/dev/") || mount.starts_with("/etc/") || mount.starts_with("/proc") {
            continue;
        }
        let mount = mount.replace("\\040", " ");
        match by_device.iter_mut().find(|(d, _)| *d == dev) {
            Some((_, kept)) if mount.len() < kept.len() => *kept = mount,
            Some(_) => {}
            None => by_device.push((dev, mount)),
        }
    }
    by_device.into_iter().map(|(_, m)| m).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_directory_is_on_the_longest_mount_holding_it() {
        let mounts = "overlay / overlay rw 0 0\n/dev/sda1 /srv ext4 rw 0 0\ntmpfs /srv/state tmpfs rw 0 0\ntmpfs /srv/statex tmpfs rw 0 0\n";
        assert_eq!(
            state_mount(mounts, Path::new("/srv/state/dockhand")).as_deref(),
            Some("/srv/state")
        );
        assert_eq!(
            state_mount(mounts, Path::new("/srv/stat")).as_deref(),
            Some("/srv")
        );
        assert_eq!(
            state_mount(mounts, Path::new("/home/x")).as_deref(),
            Some("/")
        );
    }

    #[test]
    fn parses_proc_files() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_cpu(stat), Some((161, 981)));
        let mem = "MemTotal:        4000000 kB\nMemAvailable:    1000000 kB\n";
        assert_eq!(meminfo(mem, "MemAvailable:"), Some(1_000_000));
        let pid = "1234 (my (odd) app) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_pid_cpu(pid), Some(300));
        let net = "Inter-|   Receive\n face |bytes\n    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n";
        assert_eq!(parse_net(net), (1000, 2000));
        let mounts = "/dev/sda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/sdb1 /srv/my\\040data xfs rw 0 0\n/dev/sda1 /etc/hosts ext4 rw 0 0\n";
        assert_eq!(parse_mounts(mounts), vec!["/", "/srv/my data"]);
        // Bind mounts of a device already listed are the same disk, whichever comes first.
        let binds = "/dev/vda /run/netns ext4 rw 0 0\n/dev/vda / ext4 rw 0 0\n/dev/vda /var/lib/docker ext4 rw 0 0\n/dev/vda /tmp/.tmpXYZ ext4 rw 0 0\n/dev/vdb /data xfs rw 0 0\n";
        assert_eq!(parse_mounts(binds), vec!["/", "/data"]);
    }

    #[test]
    fn reads_this_machine() {
        let host = read_host(Path::new("/"));
        assert!(host.cpu_total > 0 && host.mem_total > 0, "{host:?}");
        assert!(
            host.disks.iter().any(|d| d.mount == "/" && d.total > 0),
            "{host:?}"
        );
        let (cpu, rss) = read_process(std::process::id()).expect("own process");
        assert!(cpu >= 0.0 && rss > 0);
    }
}
