//! Where everything lives under the agent's state directory. The one owner of that layout:
//! no other code joins path pieces onto the state directory.
//!
//! ```text
//! <state>/state.db                          the state database (0600)
//! <state>/agent.sock                        the default socket
//! <state>/logs/<service>/<instance>.log     one file per instance (rotated: .1, .2, …)
//! <state>/logs/<service>/<phase>-r<N>.log   a deploy hook's output
//! <state>/logs/<database>/<database>.log    a database container's output
//! <state>/example/                          the bundled example (`dockhand up` with no project)
//! ```
//!
//! A project's state directory is `<project>/.dockhand` unless the agent is told otherwise.

use std::path::{Path, PathBuf};

use crate::error::{AgentError, Result};

/// The paths of one state directory.
#[derive(Debug, Clone)]
pub struct StateLayout {
    root: PathBuf,
}

impl StateLayout {
    /// Creates the state directory and its log directory (owner only) and resolves the root.
    pub fn create(root: &Path) -> Result<StateLayout> {
        create_private_dir(root)?;
        let root = root.canonicalize().map_err(|e| {
            AgentError::environment(format!("failed to resolve {}: {e}", root.display()))
        })?;
        let layout = StateLayout { root };
        create_private_dir(&layout.logs())?;
        Ok(layout)
    }

    /// A layout over `root` as given, creating nothing (tests, and paths only).
    pub fn at(root: &Path) -> StateLayout {
        StateLayout {
            root: root.to_path_buf(),
        }
    }

    /// The layout of a project directory's own state directory, `<project>/.dockhand`.
    pub fn of_project(project: &Path) -> StateLayout {
        StateLayout::at(&project.join(dockhand_api::STATE_DIR_NAME))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// The socket's place when no other is configured.
    pub fn default_socket(&self) -> PathBuf {
        self.root.join(dockhand_api::SOCKET_NAME)
    }

    /// The root of every log file.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The log directory of a service or database.
    pub fn service_logs(&self, service: &str) -> PathBuf {
        self.logs().join(service)
    }

    /// The log file of one instance.
    pub fn instance_log(&self, service: &str, instance: &str) -> PathBuf {
        self.service_logs(service).join(format!("{instance}.log"))
    }

    /// The log file of a deploy hook (`phase` is `pre_deploy` or `post_deploy`).
    pub fn hook_log(&self, service: &str, phase: &str, release: i64) -> PathBuf {
        self.service_logs(service)
            .join(format!("{phase}-r{release}.log"))
    }

    /// Where `dockhand up` writes the bundled example when run outside a project.
    pub fn example(&self) -> PathBuf {
        self.root.join("example")
    }

    /// Where a database container's output is copied while the agent runs.
    pub fn database_log(&self, name: &str) -> PathBuf {
        self.service_logs(name).join(format!("{name}.log"))
    }
}

/// Creates the parent directory of a file about to be written.
pub fn ensure_parent(file: &Path) -> Result<()> {
    let Some(dir) = file.parent() else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        AgentError::environment(format!(
            "failed to create log directory {}: {e}",
            dir.display()
        ))
        .with_source(e)
    })
}

/// Restricts a file to its owner (the state database, which holds the release history).
pub fn restrict_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        AgentError::environment(format!(
            "failed to restrict {} to its owner: {e}",
            path.display()
        ))
    })
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| AgentError::environment(format!("failed to create {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        AgentError::environment(format!(
            "failed to restrict {} to its owner: {e}",
            dir.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_under_the_root() {
        let l = StateLayout::at(Path::new("/s"));
        assert_eq!(l.database(), Path::new("/s/state.db"));
        assert_eq!(l.default_socket(), Path::new("/s/agent.sock"));
        assert_eq!(
            l.instance_log("web", "d3r2-web-0"),
            Path::new("/s/logs/web/d3r2-web-0.log")
        );
        assert_eq!(
            l.hook_log("api", "pre_deploy", 7),
            Path::new("/s/logs/api/pre_deploy-r7.log")
        );
        assert_eq!(l.database_log("db"), Path::new("/s/logs/db/db.log"));
        assert_eq!(
            StateLayout::of_project(Path::new("/p")).default_socket(),
            Path::new("/p/.dockhand/agent.sock")
        );
    }
}
