//! Releases pin the code: before a release of an app with process services is committed, the
//! project directory is copied into the release's own directory (`StateLayout::release_src`,
//! minus `.git` and the state directory), and the release records the revision it was made
//! from — the git commit (with a mark when the work tree had uncommitted changes) when the
//! project is a git repository, else a content hash of what was copied minus what the
//! project's `.gitignore` and `.dockhandignore` ignore (logs and build output should not make
//! two copies of the same code look different). Process services,
//! hooks, tasks and `exec` run from that copy, so a rollback runs the old code with the old
//! configuration. A copy lives as long as its release is retained and is removed with it.
//! (Container services already pin their build: the release's image.)
//!
//! A copy rather than a `git worktree`: what is deployed is what is in the directory, as with
//! the rest of `dockhand deploy` — uncommitted changes, untracked files and ignored ones a
//! process needs (`.venv`, `node_modules`, a built `dist/`) included.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dockhand_config::{AppConfig, ServiceConfig};
use sha2::{Digest, Sha256};

use crate::error::{AgentError, Result};
use crate::layout::StateLayout;

/// The longest one `git` command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a release's code came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// `git:<commit>` (with `+dirty` when the work tree had changes) or `sha256:<hash>`.
    pub id: String,
    /// The commit's author and subject line, for a git revision.
    pub author: Option<String>,
    pub message: Option<String>,
}

/// Whether the app has anything that runs from the project directory (and so a revision
/// worth recording).
pub fn has_process_services(config: &AppConfig) -> bool {
    config.services.values().any(|s| s.container.is_none())
}

/// Whether each release gets its own copy of the project (`pin_code = true`).
pub fn needed(config: &AppConfig) -> bool {
    config.pin_code && has_process_services(config)
}

/// Copies the project into `dest` (which must not exist) and says which revision it is.
pub async fn take(config: &AppConfig, layout: &StateLayout, dest: &Path) -> Result<Revision> {
    let project = config.project_dir.clone();
    let state = layout.root().to_path_buf();
    let target = dest.to_path_buf();
    let hash = tokio::task::spawn_blocking(move || copy_tree(&project, &state, &target))
        .await
        .map_err(|e| AgentError::internal(format!("the snapshot task failed: {e}")))??;
    Ok(match git_revision(&config.project_dir).await {
        Some(rev) => rev,
        None => Revision {
            id: format!("sha256:{hash}"),
            author: None,
            message: None,
        },
    })
}

/// The revision of the project as it is, without copying it (`pin_code` off).
pub async fn revision(config: &AppConfig, layout: &StateLayout) -> Result<Revision> {
    if let Some(rev) = git_revision(&config.project_dir).await {
        return Ok(rev);
    }
    let project = config.project_dir.clone();
    let state = layout.root().to_path_buf();
    let hash = tokio::task::spawn_blocking(move || {
        let mut walk = Walk {
            root: &project,
            state: &state,
            ignored: ignore_rules(&project),
            hasher: Sha256::new(),
        };
        walk.copy_dir(&project, None)
            .map(|()| hex::encode(walk.hasher.finalize()))
    })
    .await
    .map_err(|e| AgentError::internal(format!("the revision task failed: {e}")))??;
    Ok(Revision {
        id: format!("sha256:{hash}"),
        author: None,
        message: None,
    })
}

/// The working directory of `svc` for `release`: inside the release's copy of the project
/// when there is one, else the configured one.
pub fn workdir(
    layout: &StateLayout,
    config: &AppConfig,
    release: i64,
    svc: &ServiceConfig,
) -> PathBuf {
    if svc.container.is_some() {
        return svc.workdir.clone();
    }
    let src = layout.release_src(release);
    match svc.workdir.strip_prefix(&config.project_dir) {
        Ok(rel) if src.is_dir() => src.join(rel),
        _ => svc.workdir.clone(),
    }
}

/// Removes the copies of releases that are not retained (`keep` holds those that are).
pub fn prune(layout: &StateLayout, keep: &[i64]) {
    let Ok(entries) = std::fs::read_dir(layout.releases_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let id = name.strip_prefix('r').and_then(|n| n.parse::<i64>().ok());
        // Leftovers of an interrupted copy (`.tmp-…`) go too.
        if id.is_some_and(|id| keep.contains(&id)) {
            continue;
        }
        if let Err(e) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(path = %entry.path().display(), "could not remove an old release's code: {e}");
        }
    }
}

/// The git commit of `dir`, when it is a git work tree (and `git` is installed).
async fn git_revision(dir: &Path) -> Option<Revision> {
    let out = git(dir, &["log", "-1", "--format=%H%x00%an <%ae>%x00%s"]).await?;
    let mut parts = out.trim_end().splitn(3, '\0');
    let commit = parts.next()?.to_string();
    if commit.len() < 40 {
        return None;
    }
    let author = parts.next().map(str::to_string);
    let message = parts.next().map(str::to_string);
    let dirty = git(dir, &["status", "--porcelain", "--untracked-files=no"])
        .await
        .is_some_and(|s| !s.trim().is_empty());
    Some(Revision {
        id: format!("git:{commit}{}", if dirty { "+dirty" } else { "" }),
        author,
        message,
    })
}

/// `git -C dir ARGS` under a timeout; its stdout when it succeeded.
pub(crate) async fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies `src` into `dest` (made through a temporary sibling and renamed), skipping `.git`
/// and `state` (the agent's own directory, when it is inside the project); returns the
/// SHA-256 of the relative paths, modes and contents, in sorted order.
fn copy_tree(src: &Path, state: &Path, dest: &Path) -> Result<String> {
    let env = |what: String| AgentError::environment(what);
    let parent = dest
        .parent()
        .ok_or_else(|| AgentError::internal("a release directory has no parent"))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| env(format!("failed to create {}: {e}", parent.display())))?;
    let tmp = parent.join(format!(
        ".tmp-{}",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let mut walk = Walk {
        root: src,
        state,
        ignored: ignore_rules(src),
        hasher: Sha256::new(),
    };
    let copied = walk.copy_dir(src, Some(&tmp));
    if let Err(e) = copied {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        env(format!(
            "failed to move the release's code to {}: {e}",
            dest.display()
        ))
    })?;
    Ok(hex::encode(walk.hasher.finalize()))
}

/// The project's `.gitignore` and `.dockhandignore` (at its root), which the content hash
/// leaves out.
fn ignore_rules(root: &Path) -> ignore::gitignore::Gitignore {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    for name in [".gitignore", ".dockhandignore"] {
        let path = root.join(name);
        if path.is_file() {
            // A malformed line is skipped, as git does.
            let _ = builder.add(path);
        }
    }
    builder
        .build()
        .unwrap_or_else(|_| ignore::gitignore::Gitignore::empty())
}

struct Walk<'a> {
    root: &'a Path,
    state: &'a Path,
    ignored: ignore::gitignore::Gitignore,
    hasher: Sha256,
}

impl Walk<'_> {
    /// Walks `dir`, hashing, and copies it into `to` when given (else only hashes).
    fn copy_dir(&mut self, dir: &Path, to: Option<&Path>) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let (root, state) = (self.root, self.state);
        let env = |what: String| AgentError::environment(what);
        if let Some(to) = to {
            std::fs::create_dir_all(to)
                .map_err(|e| env(format!("failed to create {}: {e}", to.display())))?;
        }
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| env(format!("failed to read {}: {e}", dir.display())))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            if name == ".git" || path == state {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| env(format!("failed to read {}: {e}", path.display())))?;
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let target = to.map(|t| t.join(&name));
            let hashed = !self
                .ignored
                .matched_path_or_any_parents(rel, meta.is_dir())
                .is_ignore();
            let mut hasher = Hasher(hashed.then_some(&mut self.hasher));
            hasher.update(rel.as_os_str().as_encoded_bytes());
            hasher.update([0]);
            if meta.file_type().is_symlink() {
                let link = std::fs::read_link(&path)
                    .map_err(|e| env(format!("failed to read {}: {e}", path.display())))?;
                hasher.update(b"l");
                hasher.update(link.as_os_str().as_encoded_bytes());
                if let Some(target) = &target {
                    std::os::unix::fs::symlink(&link, target)
                        .map_err(|e| env(format!("failed to copy {}: {e}", path.display())))?;
                }
            } else if meta.is_dir() {
                hasher.update(b"d");
                self.copy_dir(&path, target.as_deref())?;
            } else if meta.is_file() {
                let mode = meta.permissions().mode();
                hasher.update(mode.to_le_bytes());
                let read_from = match &target {
                    Some(target) => {
                        std::fs::copy(&path, target).map_err(|e| {
                            let full = if e.kind() == std::io::ErrorKind::StorageFull {
                                "; the disk holding the state directory is full: free space \
                                 (each retained release keeps a copy of the project) and \
                                 deploy again"
                            } else {
                                ""
                            };
                            env(format!(
                                "failed to copy {} into the release: {e}{full}",
                                path.display()
                            ))
                        })?;
                        target.clone()
                    }
                    None if hashed => path.clone(),
                    None => continue,
                };
                let mut f = std::fs::File::open(&read_from)
                    .map_err(|e| env(format!("failed to read {}: {e}", read_from.display())))?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = f
                        .read(&mut buf)
                        .map_err(|e| env(format!("failed to read {}: {e}", read_from.display())))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
            }
            // Sockets, fifos and devices are not code: skipped.
        }
        Ok(())
    }
}

/// The hasher of a path that counts, or nothing for an ignored one.
struct Hasher<'h>(Option<&'h mut Sha256>);

impl Hasher<'_> {
    fn update(&mut self, bytes: impl AsRef<[u8]>) {
        if let Some(h) = self.0.as_mut() {
            h.update(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_skips_git_and_the_state_dir_and_its_hash_follows_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("p");
        std::fs::create_dir_all(project.join(".git")).unwrap();
        std::fs::create_dir_all(project.join(".dockhand")).unwrap();
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::write(project.join("src/app.py"), "print(1)").unwrap();
        std::fs::write(project.join(".git/HEAD"), "x").unwrap();
        std::fs::write(project.join(".dockhand/state.db"), "x").unwrap();
        std::os::unix::fs::symlink("src/app.py", project.join("link")).unwrap();
        let state = project.join(".dockhand");
        copy_tree(&project, &state, &dir.path().join("r1")).unwrap();
        assert!(dir.path().join("r1/src/app.py").is_file());
        assert!(dir.path().join("r1/link").is_symlink());
        assert!(!dir.path().join("r1/.git").exists());
        assert!(!dir.path().join("r1/.dockhand").exists());
        std::fs::write(project.join(".gitignore"), "*.log\n").unwrap();
        let a = copy_tree(&project, &state, &dir.path().join("r1b")).unwrap();
        // An ignored file is copied but does not count.
        std::fs::write(project.join("agent.log"), "noise").unwrap();
        let same = copy_tree(&project, &state, &dir.path().join("r2")).unwrap();
        assert_eq!(a, same);
        assert!(dir.path().join("r2/agent.log").is_file());
        std::fs::write(project.join("src/app.py"), "print(2)").unwrap();
        let changed = copy_tree(&project, &state, &dir.path().join("r3")).unwrap();
        assert_ne!(a, changed);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("r1/src/app.py")).unwrap(),
            "print(1)"
        );
    }
}
