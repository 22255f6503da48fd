//! Finding and killing processes by their `DOCKHAND_INSTANCE` marker: after an agent crash
//! (`kill -9` leaves its children running) and after an instance stops (descendants that left
//! its process group).

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};

use crate::INSTANCE_ENV;

/// Kills (SIGKILL, with their process groups) every process whose environment carries
/// `DOCKHAND_INSTANCE=<agent_id>/…` and returns their pids. Our own process and process group
/// are spared. Call it when the agent starts, before it starts anything: the processes of the
/// running agent carry the same marker.
pub fn reap_orphans(agent_id: &str) -> Vec<u32> {
    let prefix = format!("{agent_id}/");
    kill_marked(|marker| marker.starts_with(&prefix))
}

/// Kills every process carrying exactly this marker (`<agent-id>/<instance-id>`).
pub(crate) fn kill_marker(marker: &str) -> Vec<u32> {
    kill_marked(|m| m == marker)
}

/// Scans and kills until a scan finds nothing new (a process may fork while we scan).
fn kill_marked(matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let own_pid = std::process::id();
    let own_pgid = getpgid(None).map(|p| p.as_raw()).unwrap_or(0);
    let mut killed = BTreeSet::new();
    for round in 0..5 {
        let found: Vec<u32> = marked_pids(&matches)
            .into_iter()
            .filter(|&pid| pid != own_pid && !killed.contains(&pid))
            .collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            let target = Pid::from_raw(pid as i32);
            if let Ok(pgid) = getpgid(Some(target)) {
                if pgid.as_raw() > 1 && pgid.as_raw() != own_pgid {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
            }
            if kill(target, Signal::SIGKILL).is_ok() {
                tracing::info!(pid, "killed orphaned process");
            }
            killed.insert(pid);
        }
        std::thread::sleep(Duration::from_millis(10 * (round + 1)));
    }
    killed.into_iter().collect()
}

/// Pids of the live processes whose marker satisfies `matches`. Zombies have an empty
/// environment and never match.
fn marked_pids(matches: &impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let key = format!("{INSTANCE_ENV}=");
    let mut pids = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        let marked = environ.split(|&b| b == 0).any(|var| {
            var.strip_prefix(key.as_bytes())
                .and_then(|v| std::str::from_utf8(v).ok())
                .is_some_and(matches)
        });
        if marked {
            pids.push(pid);
        }
    }
    pids
}
