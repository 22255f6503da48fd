//! Building the shell command of an instance or job (environment, marker, process group,
//! memory rlimit) and signalling process groups.

use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::error::RuntimeError;
use crate::{INSTANCE_ENV, SERVICE_ENV};

/// What to launch: `/bin/sh -c <command>` with a marker in its environment.
pub(crate) struct Launch<'a> {
    pub command: &'a str,
    pub workdir: &'a Path,
    pub env: &'a [(String, String)],
    /// `<agent-id>/<instance-id>`.
    pub marker: &'a str,
    pub service: Option<&'a str>,
    /// Applied as `RLIMIT_DATA` in the child when no cgroup enforces the memory limit.
    pub rlimit_data: Option<u64>,
    pub piped_stdin: bool,
}

impl Launch<'_> {
    /// The command, in its own process group, stdout and stderr piped.
    pub(crate) fn command(&self) -> Result<Command, RuntimeError> {
        if !self.workdir.is_dir() {
            return Err(RuntimeError::Workdir {
                path: self.workdir.to_path_buf(),
            });
        }
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(self.command)
            .current_dir(self.workdir)
            .env_remove(SERVICE_ENV)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(service) = self.service {
            cmd.env(SERVICE_ENV, service);
        }
        cmd.env(INSTANCE_ENV, self.marker)
            .process_group(0)
            .stdin(if self.piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        if let Some(limit) = self.rlimit_data {
            set_rlimit_data(&mut cmd, limit);
        }
        Ok(cmd)
    }
}

/// Whether `RLIMIT_DATA` can be raised or lowered to `limit` by a child of ours.
pub(crate) fn rlimit_data_possible(limit: u64) -> bool {
    use nix::sys::resource::{getrlimit, Resource};
    match getrlimit(Resource::RLIMIT_DATA) {
        Ok((_, hard)) => limit <= hard || nix::unistd::geteuid().is_root(),
        Err(_) => false,
    }
}

#[allow(unsafe_code)]
fn set_rlimit_data(cmd: &mut Command, limit: u64) {
    use nix::sys::resource::{setrlimit, Resource};
    // SAFETY: the closure runs in the forked child before exec; it only calls setrlimit(2)
    // through nix's thin wrapper, which is async-signal-safe, allocates nothing and takes no
    // lock. A failure is ignored so the process still starts (the parent warned already).
    unsafe {
        cmd.pre_exec(move || {
            let _ = setrlimit(Resource::RLIMIT_DATA, limit, limit);
            Ok(())
        });
    }
}

/// Sends `signal` to the process group `pgid`; false when no process is in it.
pub(crate) fn signal_group(pgid: u32, signal: Signal) -> bool {
    if pgid <= 1 {
        return false;
    }
    killpg(Pid::from_raw(pgid as i32), signal).is_ok()
}

/// Whether a live process (not a zombie, which PID 1 may be slow to reap) is in the group.
pub(crate) fn group_has_live_members(pgid: u32) -> bool {
    if pgid <= 1 || killpg(Pid::from_raw(pgid as i32), None).is_err() {
        return false;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    dir.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<u32>().ok());
        pgrp == Some(pgid) && !matches!(state, Some("Z" | "X"))
    })
}
