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
//! <state>/certs/acme/accounts/<ca>/account.json   an ACME account: URL and key (0600)
//! <state>/certs/acme/<set>/bundle.pem       an ACME certificate chain and its key (0600)
//! <state>/certs/acme/<set>/state.json       its renewal state: attempts, errors, ARI, notices
//! <state>/certs/local-ca/ca.pem, ca.key     the local CA (key 0600)
//! <state>/certs/local/bundle.pem            the local CA's certificate for local hosts (0600)
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

    /// Where each release's copy of the project lives (`r<id>` each).
    pub fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }

    /// Release `release`'s copy of the project, which its process services run from.
    pub fn release_src(&self, release: i64) -> PathBuf {
        self.releases_dir().join(format!("r{release}"))
    }

    /// The output of run `run` of task `task`.
    pub fn task_log(&self, task: &str, run: i64) -> PathBuf {
        self.root
            .join("logs")
            .join("tasks")
            .join(task)
            .join(format!("run-{run}.log"))
    }

    /// The output of a one-off `dockhand run SERVICE -- CMD` started at `stamp`.
    pub fn command_log(&self, service: &str, stamp: &str) -> PathBuf {
        self.root
            .join("logs")
            .join("tasks")
            .join(format!("run-{service}"))
            .join(format!("{stamp}.log"))
    }

    /// The proxy's access log (rotated to `access.log.1`, …).
    pub fn access_log(&self) -> PathBuf {
        self.logs().join("access.log")
    }

    /// Which services are in maintenance mode.
    pub fn maintenance(&self) -> PathBuf {
        self.root.join("maintenance.json")
    }

    /// The staged files of every static service.
    pub fn static_root(&self) -> PathBuf {
        self.root.join("static")
    }

    /// The files a static service serves in `release` (staged before the release swaps in).
    pub fn static_release(&self, service: &str, release: i64) -> PathBuf {
        self.static_root().join(service).join(format!("r{release}"))
    }

    /// Where `dockhand up` writes the bundled example when run outside a project.
    pub fn example(&self) -> PathBuf {
        self.root.join("example")
    }

    /// The monitor's metric store (roll-ups).
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.json")
    }

    /// The alerter's state: what fires, silences, and notifications not yet delivered.
    pub fn alerts(&self) -> PathBuf {
        self.root.join("alerts.json")
    }

    /// Every certificate the agent manages.
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    /// The ACME account for the CA at `directory` (one per directory URL).
    pub fn acme_account(&self, directory: &str) -> PathBuf {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(directory.as_bytes());
        self.certs()
            .join("acme/accounts")
            .join(hex::encode(&digest[..6]))
            .join("account.json")
    }

    /// The directory of one managed certificate set (`acme/<set>` or `local`).
    pub fn cert_set(&self, source: crate::certs::Source, id: &str) -> PathBuf {
        match source {
            crate::certs::Source::Acme => self.certs().join("acme").join(sanitize(id)),
            crate::certs::Source::LocalCa => self.certs().join("local"),
        }
    }

    /// The local CA's certificate (its key is `ca.key` beside it).
    pub fn local_ca(&self) -> PathBuf {
        self.certs().join("local-ca").join("ca.pem")
    }

    /// Where a database container's output is copied while the agent runs.
    pub fn database_log(&self, name: &str) -> PathBuf {
        self.service_logs(name).join(format!("{name}.log"))
    }
}

/// A file name for a certificate set's id (a host name, or `*.` for a wildcard).
fn sanitize(id: &str) -> String {
    id.replace('*', "_wildcard")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
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
            l.cert_set(crate::certs::Source::Acme, "example.org"),
            Path::new("/s/certs/acme/example.org")
        );
        assert_eq!(l.local_ca(), Path::new("/s/certs/local-ca/ca.pem"));
        assert!(l
            .acme_account("https://ca.test/dir")
            .starts_with("/s/certs/acme/accounts"));
        assert_eq!(
            StateLayout::of_project(Path::new("/p")).default_socket(),
            Path::new("/p/.dockhand/agent.sock")
        );
    }
}
