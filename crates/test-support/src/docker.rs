//! Docker for the container tests: a loud failure with an install hint when no Docker Engine
//! answers, the locally built test images (`scripts/test-images`), per-test app names, and
//! cleanup of everything a test created (containers, volumes, networks, images carry the
//! `dockhand.app=<app>` label).
//!
//! The images (built with no registry, see `scripts/test-images`):
//! [`TESTAPP_IMAGE`] (the testapp, FROM scratch, no shell, listens on `0.0.0.0:$PORT`),
//! [`TESTAPP_SHELL_IMAGE`] (the same plus busybox), [`BUSYBOX_IMAGE`] (sh and coreutils),
//! [`POSTGRES_IMAGE`], [`REDIS_IMAGE`] and [`MARIADB_IMAGE`] (the official images' contracts,
//! from Debian's packages), and two stand-ins for engines that cannot run here:
//! [`MYSQL_STANDIN_IMAGE`] and [`MONGO_STANDIN_IMAGE`].

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The testapp in a FROM-scratch image: `ENTRYPOINT dockhand-testapp`, `HOST=0.0.0.0`,
/// `PORT=8080`, user 65534, no shell.
pub const TESTAPP_IMAGE: &str = "dockhand-testapp:latest";
/// [`TESTAPP_IMAGE`] plus busybox (`/bin/sh` and coreutils).
pub const TESTAPP_SHELL_IMAGE: &str = "dockhand-testapp:shell";
/// Busybox: `/bin/sh`, coreutils, `wget`, `nc`; `CMD ["/bin/sh"]`.
pub const BUSYBOX_IMAGE: &str = "dockhand-test/busybox:latest";
/// PostgreSQL 15 with the official image's contract (`POSTGRES_USER`, `POSTGRES_PASSWORD`,
/// `POSTGRES_DB`, `PGDATA=/var/lib/postgresql/data`, port 5432, user `postgres`).
pub const POSTGRES_IMAGE: &str = "dockhand-test/postgres:15";
/// Redis 7: `redis-server` as user `redis` in `/data`, port 6379, `redis-cli` included.
pub const REDIS_IMAGE: &str = "dockhand-test/redis:7";
/// MariaDB 10.11 with the official image's contract (`MARIADB_USER`, `MARIADB_PASSWORD`,
/// `MARIADB_DATABASE`, `MARIADB_RANDOM_ROOT_PASSWORD`, `/var/lib/mysql`, port 3306, user
/// `mysql`); `mariadb`, `mariadb-dump` and `mariadb-admin` inside.
pub const MARIADB_IMAGE: &str = "dockhand-test/mariadb:10.11";
/// A MySQL-protocol stand-in, **not MySQL** (whose server is not in Debian): the MariaDB 10.11
/// server of [`MARIADB_IMAGE`] with the official mysql image's contract (`MYSQL_USER`,
/// `MYSQL_PASSWORD`, `MYSQL_DATABASE`, `MYSQL_RANDOM_ROOT_PASSWORD`, `mysqld`) and only the
/// MySQL client names inside: `mysql`, `mysqldump`, `mysqladmin`.
pub const MYSQL_STANDIN_IMAGE: &str = "dockhand-test/mysql:10.11-mariadb";
/// A MongoDB stand-in, **not MongoDB** (`scripts/mongo-standin/`): `mongod`, `mongodump`,
/// `mongorestore` and `mongosh` are scripts replaying the documented CLI and the official
/// image's `MONGO_INITDB_*` contract; collections are `/data/db/<db>/<name>.jsonl` files, one
/// document a line. `/data/db/.standin/empty-dump` makes `mongodump` succeed with no output.
pub const MONGO_STANDIN_IMAGE: &str = "dockhand-test/mongo-standin:7";

/// Panics with an install hint unless a Docker Engine answers.
pub fn require_docker() {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "no Docker Engine answers ({}): this test needs one; install it with `apt-get install docker.io` and start `dockerd` (scripts/test does both)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(err) => panic!(
            "the docker CLI is missing ({err}): this test needs a Docker Engine; install it with `apt-get install docker.io` and start `dockerd` (scripts/test does both)"
        ),
    }
}

/// Makes sure the test images exist and are up to date (runs `scripts/test-images` once per
/// test process; the script is idempotent and locked against parallel runs).
pub fn ensure_test_images() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        require_docker();
        let script = workspace_root().join("scripts/test-images");
        let out = Command::new(&script)
            .arg("--testapp")
            .arg(crate::testapp_bin())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The workspace root (where `scripts/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/test-support lives two levels below the workspace root")
        .to_path_buf()
}

/// An app name no other test (or test run) uses: `t<pid>-<name>`.
pub fn unique_app(name: &str) -> String {
    format!("t{}-{name}", std::process::id())
}

/// Runs the docker CLI; panics if it cannot be spawned.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to run docker {args:?}: {e}"))
}

/// Runs the docker CLI and returns its trimmed stdout; panics when it fails.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes every container, volume, network and image labelled `dockhand.app=<app>`.
pub fn cleanup_app(app: &str) {
    let filter = format!("label=dockhand.app={app}");
    let ids = |args: &[&str]| -> Vec<String> {
        String::from_utf8_lossy(&docker(args).stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let containers = ids(&["ps", "-aq", "--filter", &filter]);
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(String::as_str));
        docker(&args);
    }
    let volumes = ids(&["volume", "ls", "-q", "--filter", &filter]);
    if !volumes.is_empty() {
        let mut args = vec!["volume", "rm", "-f"];
        args.extend(volumes.iter().map(String::as_str));
        docker(&args);
    }
    let networks = ids(&["network", "ls", "-q", "--filter", &filter]);
    if !networks.is_empty() {
        let mut args = vec!["network", "rm"];
        args.extend(networks.iter().map(String::as_str));
        docker(&args);
    }
    let images = ids(&["image", "ls", "-q", "--filter", &filter]);
    if !images.is_empty() {
        let mut args = vec!["rmi", "-f"];
        args.extend(images.iter().map(String::as_str));
        docker(&args);
    }
}

/// Cleans up an app's Docker objects when dropped (also when the test panics).
pub struct AppCleanup {
    pub app: String,
}

impl AppCleanup {
    /// Cleans up leftovers of an earlier run of the same test first.
    pub fn new(app: &str) -> AppCleanup {
        cleanup_app(app);
        AppCleanup {
            app: app.to_string(),
        }
    }
}

impl Drop for AppCleanup {
    fn drop(&mut self) {
        cleanup_app(&self.app);
    }
}

/// A Docker daemon of the test's own (own socket, data and exec roots, own network namespace,
/// no iptables), so a test can stop and start it without touching the shared one. Stopped and
/// its directories removed when dropped.
pub struct PrivateDockerd {
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateDockerd {
    /// Starts the daemon and waits (at most 60 s) until it answers.
    pub fn start() -> PrivateDockerd {
        let dir = tempfile::Builder::new()
            .prefix("dockhand-dockerd-")
            .tempdir()
            .expect("create a directory for a private dockerd");
        let mut d = PrivateDockerd { dir, child: None };
        d.restart();
        d
    }

    /// `unix:///…/docker.sock`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// Runs the docker CLI against this daemon; panics when it fails.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.host())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("failed to run docker {args:?}: {e}"));
        assert!(
            out.status.success(),
            "docker {args:?} (private daemon) failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The daemon's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Copies an image of the shared daemon into this one.
    pub fn load_image(&self, image: &str) {
        let tar = self.dir.path().join("image.tar");
        let tar = tar.to_str().expect("utf-8 temp path");
        docker_ok(&["save", "-o", tar, image]);
        self.docker_ok(&["load", "-i", tar]);
        let _ = std::fs::remove_file(tar);
    }

    /// Stops the daemon (SIGTERM, as systemd does) and waits until it exited and its socket
    /// no longer answers.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::signal_and_wait(&mut child, nix::sys::signal::Signal::SIGTERM);
            let sock = self.dir.path().join("docker.sock");
            crate::wait_until(
                "the private dockerd's socket to go away",
                std::time::Duration::from_secs(60),
                || std::os::unix::net::UnixStream::connect(&sock).is_err(),
            );
        }
    }

    /// Starts the daemon (again) and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let root = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("dockerd.log"))
            .expect("open the dockerd log");
        // In a network namespace of its own: a second daemon in the host's namespace would
        // fight the shared one over `docker0` and iptables (`--bridge=none` even deletes
        // `docker0`). Its Unix socket is a file, reachable from here all the same.
        let child = Command::new("unshare")
            .args(["--net", "dockerd"])
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("docker.pid"))
            .arg("-H")
            .arg(self.host())
            .args(["--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("failed to start `unshare --net dockerd` ({e}): install docker.io and util-linux")
            });
        self.child = Some(child);
        let host = self.host();
        crate::wait_until(
            "the private dockerd to answer",
            std::time::Duration::from_secs(60),
            || {
                Command::new("docker")
                    .args(["version"])
                    .env("DOCKER_HOST", &host)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Containers first, so no mount outlives the daemon.
            let ids = Command::new("docker")
                .args(["ps", "-aq"])
                .env("DOCKER_HOST", self.host())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            for id in ids.split_whitespace() {
                let _ = Command::new("docker")
                    .args(["rm", "-f", id])
                    .env("DOCKER_HOST", self.host())
                    .output();
            }
        }
        self.stop();
    }
}
