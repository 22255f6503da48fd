//! Disposable target hosts for the remote tests: the Debian 12 root file system that
//! `scripts/test-target` builds (debootstrap, systemd, OpenSSH), run as a container with
//! systemd as PID 1. Its sshd is reached through a port published on 127.0.0.1, under a host
//! alias of an ssh_config file of the test's own (key, known_hosts), which the tests hand to
//! `dockhand` as `$DOCKHAND_SSH_CONFIG`. The container and its Docker volume are removed on
//! drop, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::docker::{docker, docker_ok, require_docker, workspace_root};

/// The image `scripts/test-target` builds.
pub const TARGET_IMAGE: &str = "dockhand-test/target:bookworm";

/// Builds the target image if it is missing or stale (once per test process; the script is
/// idempotent and locked against parallel runs).
pub fn ensure_target_image() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        require_docker();
        remove_dead_targets();
        let script = workspace_root().join("scripts/test-target");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("failed to run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed (it needs root, debootstrap and Debian's mirror: apt-get install debootstrap):\n{}{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Removes the targets (and their Docker volumes) that stopped without being removed: their
/// test died with the Docker Engine (another suite restarting it) before its drop ran.
fn remove_dead_targets() {
    let out = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=dockhand.test.target=1",
        "--filter",
        "status=exited",
        "--format",
        "{{.Names}}",
    ]);
    for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = docker(&["rm", "-f", "-v", name]);
        let _ = docker(&["volume", "rm", "-f", &format!("{name}-docker")]);
    }
}

/// One running target host.
pub struct Target {
    alias: String,
    name: String,
    volume: String,
    dir: tempfile::TempDir,
    ssh_port: u16,
    http_port: u16,
}

impl Target {
    /// Starts a fresh target named after `test` and waits until root can log in with the
    /// test's key.
    pub fn start(test: &str) -> Target {
        Target::start_as(test, "target")
    }

    /// Like [`Target::start`], its ssh_config's aliases named `alias`, `alias-wrongkey` and
    /// `alias-mismatch` (two targets of one test share one ssh_config: see
    /// [`Target::ssh_config_of`]).
    pub fn start_as(test: &str, alias: &str) -> Target {
        ensure_target_image();
        let name = format!("dockhand-it-target-{}-{test}", std::process::id());
        let volume = format!("{name}-docker");
        let _ = docker(&["rm", "-f", &name]);
        let dir = tempfile::Builder::new()
            .prefix("dockhand-target-")
            .tempdir()
            .expect("temp dir");
        keygen(&dir.path().join("id"));
        keygen(&dir.path().join("other"));
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--hostname",
            "target",
            "--label",
            "dockhand.test.target=1",
            // systemd as PID 1 and a Docker Engine inside: every capability this machine's
            // root has (CAP_SYS_RESOURCE is not among them, so no --privileged), no seccomp or
            // AppArmor filter, all devices, its own cgroup namespace.
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "--device-cgroup-rule",
            "a *:* rwm",
            "--cgroupns",
            "private",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            "-v",
            &format!("{volume}:/var/lib/docker"),
            "-p",
            "127.0.0.1::22",
            "-p",
            "127.0.0.1::80",
            TARGET_IMAGE,
        ]);
        let port = |inner: &str| -> u16 {
            let text = docker_ok(&["port", &name, inner]);
            let first = text.lines().next().unwrap_or_default();
            first
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no published port for {inner}: {text}"))
        };
        let target = Target {
            alias: alias.to_string(),
            ssh_port: port("22/tcp"),
            http_port: port("80/tcp"),
            name,
            volume,
            dir,
        };
        target.authorize("root", &target.public_key());
        target.write_ssh_config();
        // sshd is up when a key login works.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = target.ssh("root", "true");
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the target's sshd did not let root in within 90s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        target
    }

    /// The host alias of [`Target::ssh_config`] (`ssh://USER@ALIAS`).
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// One ssh_config file at `path` holding the aliases of every target of `targets`.
    pub fn ssh_config_of(targets: &[&Target], path: &Path) -> PathBuf {
        let text: String = targets
            .iter()
            .map(|t| std::fs::read_to_string(t.ssh_config()).expect("ssh_config"))
            .collect();
        std::fs::write(path, text).expect("write ssh_config");
        path.to_path_buf()
    }

    /// The ssh_config file for `$DOCKHAND_SSH_CONFIG`: aliases `target` (the test's key),
    /// `target-wrongkey` (a key the server does not know) and `target-mismatch` (a
    /// known_hosts entry with another host key, strict checking) — `target` being the alias
    /// the target was started with.
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The port of the target's HTTP (80) on 127.0.0.1.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The port of the target's sshd on 127.0.0.1.
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    /// The test key's public half.
    pub fn public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("id.pub")).expect("public key")
    }

    /// A second key's public half (one the target does not know unless told).
    pub fn other_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("other.pub")).expect("public key")
    }

    /// Writes `key` as the only authorized key of `user` (created if needed).
    pub fn authorize(&self, user: &str, key: &str) {
        let home = if user == "root" {
            "/root".to_string()
        } else {
            format!("/home/{user}")
        };
        self.exec_ok(&format!(
            "id {user} >/dev/null 2>&1 || useradd -m -s /bin/bash {user}\n\
             install -d -m 700 -o {user} -g {user} {home}/.ssh\n\
             printf '%s\\n' '{key}' > {home}/.ssh/authorized_keys\n\
             chown {user}:{user} {home}/.ssh/authorized_keys\n\
             chmod 600 {home}/.ssh/authorized_keys",
            key = key.trim()
        ));
    }

    /// Runs `script` as root in the target (through `docker exec`, not SSH).
    pub fn exec(&self, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .expect("docker exec")
    }

    /// Like [`Target::exec`]; panics unless it succeeds, returns stdout.
    pub fn exec_ok(&self, script: &str) -> String {
        let out = self.exec(script);
        assert!(
            out.status.success(),
            "in the target: {script}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `command` over SSH as `user` with the test's key.
    pub fn ssh(&self, user: &str, command: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.ssh_config())
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"])
            .arg(format!("{user}@{}", self.alias()))
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    fn write_ssh_config(&self) {
        let d = self.dir.path();
        // A host key that is not the target's, for the mismatch alias.
        let other_host_key = std::fs::read_to_string(d.join("other.pub")).expect("key");
        std::fs::write(
            d.join("known_hosts_mismatch"),
            format!("[127.0.0.1]:{} {}", self.ssh_port, other_host_key.trim()),
        )
        .expect("write known_hosts");
        let block = |alias: &str, key: &str, known: &str, strict: &str| {
            format!(
                "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking {strict}\n  LogLevel ERROR\n\n",
                port = self.ssh_port,
                key = d.join(key).display(),
                known = d.join(known).display(),
            )
        };
        let a = &self.alias;
        let text = [
            block(a, "id", "known_hosts", "accept-new"),
            block(
                &format!("{a}-wrongkey"),
                "other",
                "known_hosts",
                "accept-new",
            ),
            block(
                &format!("{a}-mismatch"),
                "id",
                "known_hosts_mismatch",
                "yes",
            ),
        ]
        .concat();
        std::fs::write(self.ssh_config(), text).expect("write ssh_config");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
        let _ = docker(&["volume", "rm", "-f", &self.volume]);
    }
}

/// An ed25519 key pair without a passphrase at `path` (and `path.pub`), for the test hosts
/// (remote targets, swarm nodes) and their clients.
pub(crate) fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "dockhand-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen is missing: apt-get install openssh-client");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
