//! What a process or a container holds: resident memory and CPU time, read from `/proc` and
//! the cgroup files, for the benchmarks' footprint figures (the cluster bench's capacity
//! phase: each node's `dockerd`, `containerd` and shims, the ingress and the tasks). The
//! parsers are pure and tested with plain text.

use std::path::{Path, PathBuf};

/// Resident memory of one process or a sum of them, in KiB (`/proc/PID/status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mem {
    /// `VmRSS`: every resident page.
    pub rss_kib: u64,
    /// `RssAnon`: heap and stacks, the process's own memory.
    pub anon_kib: u64,
    /// `RssFile`: mapped files (the executable and libraries), shared and given back under
    /// memory pressure.
    pub file_kib: u64,
    /// `Pss` (`/proc/PID/smaps_rollup`): the resident pages with each shared one divided
    /// among the processes that map it — what summing many processes of one executable (the
    /// shims, a service's replicas) should count.
    pub pss_kib: u64,
}

impl std::ops::AddAssign for Mem {
    fn add_assign(&mut self, other: Mem) {
        self.rss_kib += other.rss_kib;
        self.anon_kib += other.anon_kib;
        self.file_kib += other.file_kib;
        self.pss_kib += other.pss_kib;
    }
}

/// The memory lines of a `/proc/PID/status`; `None` for a process without memory (a kernel
/// thread or a zombie has no `VmRSS`).
pub fn parse_status(text: &str) -> Option<Mem> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some(Mem {
        rss_kib: field("VmRSS:")?,
        anon_kib: field("RssAnon:").unwrap_or(0),
        file_kib: field("RssFile:").unwrap_or(0),
        pss_kib: 0,
    })
}

/// The `Pss` line of a `/proc/PID/smaps_rollup`, in KiB.
pub fn parse_pss(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix("Pss:")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// The CPU time (user + system, clock ticks) in a `/proc/PID/stat` line: fields 14 and 15,
/// counted after the command name's closing parenthesis (the name may hold spaces).
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest: " S ppid …": field 3 (state) is the first after the name.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A process's memory and CPU time so far (ms), or `None` once it is gone.
pub fn process(pid: i32) -> Option<(Mem, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut mem = parse_status(&status)?;
    mem.pss_kib = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| parse_pss(&t))
        .unwrap_or(0);
    let ticks = parse_stat_ticks(&stat)?;
    Some((mem, ticks as f64 * 1000.0 / clock_ticks()))
}

/// The process's command name (`/proc/PID/comm`: at most 15 bytes).
pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The directory of a process's cgroup in the v1 hierarchy holding `controller` (`memory`,
/// `cpuacct`, …), from its `/proc/PID/cgroup`, or in the unified (v2) hierarchy when there
/// is no v1 one.
pub fn cgroup_dir(cgroups: &str, controller: &str) -> Option<PathBuf> {
    let mut unified = None;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == controller) {
            let named = Path::new("/sys/fs/cgroup").join(controller);
            let root = if named.is_dir() {
                named
            } else {
                Path::new("/sys/fs/cgroup").join(controllers)
            };
            return Some(root.join(rel));
        }
        if controllers.is_empty() {
            unified = Some(Path::new("/sys/fs/cgroup").join(rel));
        }
    }
    unified
}

/// Every process in a cgroup directory and the ones below it.
pub fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut out: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(cgroup_pids(&e.path()));
            }
        }
    }
    out
}

fn clock_ticks() -> f64 {
    // The kernel's USER_HZ: 100 on every Linux architecture we run on (sysconf(_SC_CLK_TCK)
    // says so; nix's `unistd` feature is not in our build for this one value).
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_resident_anonymous_and_file_memory() {
        let text = "Name:\tdockerd\nVmPeak:\t  900000 kB\nVmRSS:\t   51234 kB\nRssAnon:\t   30000 kB\nRssFile:\t   21234 kB\nRssShmem:\t       0 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Mem {
                rss_kib: 51234,
                anon_kib: 30000,
                file_kib: 21234,
                pss_kib: 0,
            })
        );
        let rollup = "55d0c000-7ffd1000 ---p 00000000 00:00 0  [rollup]\nRss:               13544 kB\nPss:                4120 kB\nPss_Anon:           2100 kB\n";
        assert_eq!(parse_pss(rollup), Some(4120));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
        // A kernel thread has no memory lines.
        assert_eq!(parse_status("Name:\tkthreadd\nState:\tS\n"), None);
    }

    #[test]
    fn stat_ticks_are_user_and_system_time_after_the_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime …
        let text = "4242 (containerd-shim) S 1 4242 4242 0 -1 4194560 1200 0 3 0 157 43 0 0 20 0 12 0 900 1000000 2000\n";
        assert_eq!(parse_stat_ticks(text), Some(200));
        // A command name with a space and a parenthesis.
        let odd = "7 (a b) c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1\n";
        assert_eq!(parse_stat_ticks(odd), Some(11));
        assert_eq!(parse_stat_ticks("7 (x) R 1"), None);
    }

    #[test]
    fn the_cgroup_of_a_controller_is_found_in_v1_and_v2() {
        let v1 = "12:pids:/n/abc\n9:memory:/n/abc\n4:cpu,cpuacct:/n/abc\n";
        let mem = cgroup_dir(v1, "memory").unwrap();
        assert!(mem.ends_with("memory/n/abc"), "{mem:?}");
        let cpu = cgroup_dir(v1, "cpuacct").unwrap();
        assert!(cpu.ends_with("n/abc"), "{cpu:?}");
        assert_eq!(
            cgroup_dir("0::/system.slice/docker-abc.scope\n", "memory"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/system.slice/docker-abc.scope"
            ))
        );
        assert_eq!(cgroup_dir("12:pids:/n/abc\n", "memory"), None);
    }
}
