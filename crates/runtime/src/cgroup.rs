//! Memory limits through cgroup v2: `/sys/fs/cgroup/dockhand/<instance-id>` with `memory.max`.
//! Used only when the unified hierarchy is mounted at `/sys/fs/cgroup` and writable; the
//! supervisor falls back to `RLIMIT_DATA` otherwise.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ROOT: &str = "/sys/fs/cgroup";

/// One instance's cgroup; removed with [`Cgroup::remove`] after the instance stopped.
#[derive(Debug)]
pub(crate) struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Whether cgroup v2 with the memory controller is mounted at `/sys/fs/cgroup`.
    pub(crate) fn available() -> bool {
        fs::read_to_string(Path::new(ROOT).join("cgroup.controllers"))
            .map(|c| c.split_whitespace().any(|c| c == "memory"))
            .unwrap_or(false)
    }

    /// Creates (or reuses) the instance's cgroup and sets `memory.max`.
    pub(crate) fn create(instance_id: &str, memory_max: u64) -> io::Result<Cgroup> {
        let root = Path::new(ROOT);
        let parent = root.join("dockhand");
        enable_memory(root)?;
        mkdir(&parent)?;
        enable_memory(&parent)?;
        let path = parent.join(sanitize(instance_id));
        mkdir(&path)?;
        fs::write(path.join("memory.max"), memory_max.to_string())?;
        Ok(Cgroup { path })
    }

    /// Moves a process into the cgroup.
    pub(crate) fn add(&self, pid: u32) -> io::Result<()> {
        fs::write(self.path.join("cgroup.procs"), pid.to_string())
    }

    /// Removes the cgroup right away (nothing was started in it).
    pub(crate) fn discard(&self) {
        let _ = fs::remove_dir(&self.path);
    }

    /// Removes the cgroup once its processes are gone (retrying briefly while they exit).
    pub(crate) async fn remove(&self) {
        for _ in 0..20 {
            match fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        tracing::warn!(path = %self.path.display(), "failed to remove cgroup");
    }
}

fn enable_memory(dir: &Path) -> io::Result<()> {
    let control = dir.join("cgroup.subtree_control");
    let current = fs::read_to_string(&control)?;
    if current.split_whitespace().any(|c| c == "memory") {
        return Ok(());
    }
    fs::write(control, "+memory")
}

fn mkdir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// A path component made of `[A-Za-z0-9_.-]` only.
fn sanitize(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("i{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sanitize_keeps_ids_path_safe() {
        assert_eq!(super::sanitize("r12-api-0"), "r12-api-0");
        assert_eq!(super::sanitize("../x/y"), "i.._x_y");
    }
}
