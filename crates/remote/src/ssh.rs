//! The SSH transport: the system OpenSSH client, so the user's `~/.ssh/config`, agent, jump
//! hosts and `known_hosts` apply. One master connection per [`Session`] (`ControlMaster`,
//! with a control socket in a private temporary directory); every command after the first
//! rides it as a new channel, which costs a round trip instead of a handshake. Nothing here
//! passes a secret in an argument: contents go through the command's stdin.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::destination::Destination;
use crate::error::{classify_ssh_failure, RemoteError, SshFailure};

/// Environment variable naming an ssh_config file to use instead of `~/.ssh/config` (`ssh -F`).
pub const SSH_CONFIG_ENV: &str = "DOCKHAND_SSH_CONFIG";

/// How to run `ssh`.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// `ssh -F FILE` (default: `$DOCKHAND_SSH_CONFIG`, else the user's own configuration).
    pub config_file: Option<PathBuf>,
    /// The TCP connect timeout.
    pub connect_timeout: Duration,
    /// Never prompt (for a passphrase, a password or an unknown host key). On by default;
    /// off on a terminal for the first connection, so ssh may ask.
    pub batch: bool,
    /// Accept and remember the host key of a server seen for the first time (never a
    /// changed one): `StrictHostKeyChecking=accept-new`.
    pub accept_new_host_key: bool,
    /// The `ssh` program.
    pub program: PathBuf,
    /// Keep the master connection this long after the last command, shared by the next
    /// `dockhand` commands to the same destination (a status then costs one round trip, not a
    /// handshake). `None`: a private master, closed when the session ends (setup uses one: its
    /// SSH hardening changes who may log in).
    pub persist: Option<Duration>,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            config_file: std::env::var_os(SSH_CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            connect_timeout: Duration::from_secs(10),
            batch: true,
            accept_new_host_key: false,
            program: PathBuf::from("ssh"),
            persist: None,
        }
    }
}

/// The result of a command on the server.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// An open SSH master connection to one destination.
pub struct Session {
    dest: Destination,
    opts: SshOptions,
    control: Control,
}

/// Where the control socket lives.
enum Control {
    /// A private directory, removed (after the master is told to exit) on drop.
    Private(tempfile::TempDir),
    /// A socket shared by the commands to one destination, left for the next one.
    Shared(PathBuf),
}

impl Control {
    fn socket(&self) -> PathBuf {
        match self {
            Control::Private(dir) => dir.path().join("ctl"),
            Control::Shared(path) => path.clone(),
        }
    }
}

/// The shared control socket of `dest` under `opts`: in a directory only this user may enter,
/// named by a hash of what makes the connection (the ssh_config file, the destination), so
/// two aliases of one server with different keys never share a master.
fn shared_socket(dest: &Destination, opts: &SshOptions) -> Result<PathBuf, RemoteError> {
    use sha2::Digest;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = nix::unistd::geteuid().as_raw();
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("dockhand-ssh-{uid}"));
    let err = |e| {
        RemoteError::local(
            format!("cannot prepare {} for SSH control sockets", dir.display()),
            "check that the directory is yours and writable",
            e,
        )
    };
    match std::fs::create_dir(&dir) {
        Ok(()) => {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(err)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(RemoteError::refused(
            format!("{} is not a private directory of this user", dir.display()),
            "remove it (someone else may have made it), then run the command again",
        ));
    }
    let key = format!(
        "{}\n{}\n{:?}\n{}",
        opts.program.display(),
        opts.config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        dest.port,
        dest.ssh_target()
    );
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    Ok(dir.join(&hash[..20]))
}

impl Session {
    /// Opens the master connection (and so proves the destination is reachable and lets us
    /// in). Fails with a classified [`RemoteError::Connect`].
    pub fn open(dest: &Destination, opts: &SshOptions) -> Result<Session, RemoteError> {
        let control = match opts.persist {
            Some(_) => Control::Shared(shared_socket(dest, opts)?),
            None => Control::Private(
                tempfile::Builder::new()
                    .prefix("dockhand-ssh-")
                    .tempdir()
                    .map_err(|e| {
                        RemoteError::local(
                            "cannot create a directory for the SSH control socket",
                            "check that the temporary directory ($TMPDIR) is writable",
                            e,
                        )
                    })?,
            ),
        };
        let session = Session {
            dest: dest.clone(),
            opts: opts.clone(),
            control,
        };
        if matches!(session.control, Control::Shared(_)) && session.master_alive() {
            return Ok(session);
        }
        let logs = tempfile::tempdir().map_err(|e| {
            RemoteError::local("cannot create the SSH log file", "check $TMPDIR", e)
        })?;
        let log = logs.path().join("master.log");
        let log_file = std::fs::File::create(&log).map_err(|e| {
            RemoteError::local("cannot create the SSH log file", "check $TMPDIR", e)
        })?;
        let persist = opts
            .persist
            .unwrap_or(Duration::from_secs(120))
            .as_secs()
            .max(1);
        let mut cmd = session.base_command();
        cmd.args(["-M", "-N", "-f", "-o", &format!("ControlPersist={persist}")]);
        cmd.arg("--").arg(dest.ssh_target());
        cmd.stdin(if opts.batch {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
        let child = cmd.spawn().map_err(|e| session.spawn_error(e))?;
        // Authentication may wait for a passphrase on a terminal: no limit then.
        let limit = opts
            .batch
            .then(|| opts.connect_timeout * 3 + Duration::from_secs(10));
        let status = wait_limited(child, limit).map_err(|e| session.spawn_error(e))?;
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(session),
            Some(_) => Err(session.connect_error(&stderr)),
            None => Err(RemoteError::Timeout {
                target: dest.ssh_target(),
                what: "connecting".into(),
                after: limit.unwrap_or_default(),
                hint: "the server accepted the TCP connection but SSH did not complete: check that sshd answers (`ssh -v`)".into(),
            }),
        }
    }

    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    /// A session whose master was never opened: for tests that only run commands through a
    /// stand-in `ssh` program.
    #[cfg(test)]
    pub(crate) fn unopened(dest: Destination, opts: SshOptions) -> Session {
        Session {
            dest,
            opts,
            control: Control::Private(tempfile::tempdir().expect("a temporary directory")),
        }
    }

    /// `USER@HOST`, for messages.
    pub fn target(&self) -> String {
        self.dest.ssh_target()
    }

    /// The control socket's path.
    pub fn control_path(&self) -> PathBuf {
        self.control.socket()
    }

    /// Whether a master answers on the control socket.
    fn master_alive(&self) -> bool {
        if !self.control_path().exists() {
            return false;
        }
        let mut cmd = self.base_command();
        cmd.args(["-O", "check", "--"])
            .arg(self.dest.ssh_target())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match cmd.spawn() {
            Ok(child) => {
                matches!(wait_limited(child, Some(Duration::from_secs(5))), Ok(Some(s)) if s.success())
            }
            Err(_) => false,
        }
    }

    /// The host name ssh really connects to (after `~/.ssh/config`'s `HostName`), from `ssh -G`.
    pub fn resolved_hostname(&self) -> Option<String> {
        let mut cmd = self.base_command();
        cmd.arg("-G")
            .arg("--")
            .arg(self.dest.ssh_target())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let out = cmd.output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("hostname ").map(|h| h.trim().to_string()))
    }

    /// `ssh` and its arguments to run `remote` (a shell command line) on the server through
    /// the master connection; for a caller that drives the process itself (a stream).
    pub fn command_line(&self, remote: &str) -> (PathBuf, Vec<OsString>) {
        let cmd = self.remote_command(remote);
        let program = PathBuf::from(cmd.get_program());
        let args = cmd.get_args().map(|a| a.to_os_string()).collect();
        (program, args)
    }

    /// A `Command` running `remote` on the server (not started).
    pub fn remote_command(&self, remote: &str) -> Command {
        let mut cmd = self.base_command();
        cmd.args(["-o", "ControlMaster=no", "-T"]);
        cmd.arg("--").arg(self.dest.ssh_target()).arg(remote);
        cmd
    }

    /// Runs `remote` with `stdin` as its input and waits at most `timeout`. `what` names it
    /// in errors. A non-zero exit is returned, not an error; ssh's own failure (255 with
    /// ssh's message) is an error.
    pub fn run(
        &self,
        what: &str,
        remote: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, RemoteError> {
        let mut cmd = self.remote_command(remote);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let writer = match (stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => {
                let data = data.to_vec();
                Some(std::thread::spawn(move || {
                    let _ = pipe.write_all(&data);
                }))
            }
            _ => None,
        };
        let (out, err) = collect(&mut child);
        let status = wait_limited(child, Some(timeout)).map_err(|e| self.spawn_error(e))?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        let Some(status) = status else {
            return Err(RemoteError::Timeout {
                target: self.target(),
                what: what.into(),
                after: timeout,
                hint: "the server is slow or the command hangs; run it by hand over ssh to see"
                    .into(),
            });
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
        let code = status.code().unwrap_or(-1);
        if code == 255 && looks_like_ssh_failure(&stderr) {
            return Err(self.connect_error(&stderr));
        }
        Ok(Output {
            status: code,
            stdout,
            stderr,
        })
    }

    /// Like [`Session::run`], and a non-zero exit is an error with `hint`.
    pub fn run_ok(
        &self,
        what: &str,
        remote: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        hint: &str,
    ) -> Result<Output, RemoteError> {
        let out = self.run(what, remote, stdin, timeout)?;
        if out.status != 0 {
            return Err(RemoteError::Command {
                target: self.target(),
                what: what.into(),
                code: out.status,
                stderr: out.stderr,
                hint: hint.into(),
            });
        }
        Ok(out)
    }

    /// Runs `remote` feeding it everything `input` yields (a stream: a file, a tar), waiting
    /// at most `timeout` in all. Returns the output and the number of bytes sent.
    pub fn run_streaming(
        &self,
        what: &str,
        remote: &str,
        mut input: impl Read + Send + 'static,
        timeout: Duration,
    ) -> Result<(Output, u64), RemoteError> {
        let mut cmd = self.remote_command(remote);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let mut pipe = child.stdin.take().expect("piped stdin");
        let writer = std::thread::spawn(move || -> std::io::Result<u64> {
            let n = std::io::copy(&mut input, &mut pipe)?;
            pipe.flush()?;
            Ok(n)
        });
        let (out, err) = collect(&mut child);
        let status = wait_limited(child, Some(timeout)).map_err(|e| self.spawn_error(e))?;
        let sent = writer.join().ok().and_then(|r| r.ok());
        let Some(status) = status else {
            return Err(RemoteError::Timeout {
                target: self.target(),
                what: what.into(),
                after: timeout,
                hint: "the transfer is too slow for its limit; check the link to the server".into(),
            });
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
        let code = status.code().unwrap_or(-1);
        if code == 255 && looks_like_ssh_failure(&stderr) {
            return Err(self.connect_error(&stderr));
        }
        if code != 0 {
            return Err(RemoteError::Command {
                target: self.target(),
                what: what.into(),
                code,
                stderr,
                hint: "see the server's message above".into(),
            });
        }
        let sent = sent.ok_or_else(|| RemoteError::Command {
            target: self.target(),
            what: what.into(),
            code,
            stderr: "the input could not be read to the end".into(),
            hint: "check the local file or program that produced it".into(),
        })?;
        Ok((
            Output {
                status: code,
                stdout,
                stderr,
            },
            sent,
        ))
    }

    /// The common options of every `ssh` we run.
    fn base_command(&self) -> Command {
        let mut cmd = Command::new(&self.opts.program);
        if let Some(config) = &self.opts.config_file {
            cmd.arg("-F").arg(config);
        }
        if let Some(port) = self.dest.port {
            cmd.arg("-p").arg(port.to_string());
        }
        let secs = self.opts.connect_timeout.as_secs().max(1);
        cmd.args(["-o", &format!("ConnectTimeout={secs}")]);
        cmd.args([
            "-o",
            "ServerAliveInterval=10",
            "-o",
            "ServerAliveCountMax=3",
        ]);
        cmd.args(["-o", "LogLevel=ERROR"]);
        if self.opts.batch {
            cmd.args(["-o", "BatchMode=yes"]);
        }
        if self.opts.accept_new_host_key {
            cmd.args(["-o", "StrictHostKeyChecking=accept-new"]);
        }
        cmd.arg("-o").arg({
            let mut s = OsString::from("ControlPath=");
            s.push(self.control_path());
            s
        });
        cmd
    }

    fn spawn_error(&self, e: std::io::Error) -> RemoteError {
        RemoteError::local(
            format!("cannot run {}", self.opts.program.display()),
            "install the OpenSSH client (Debian/Ubuntu: apt-get install openssh-client)",
            e,
        )
    }

    fn connect_error(&self, stderr: &str) -> RemoteError {
        let target = self.target();
        let (kind, problem, hint) = classify_ssh_failure(stderr, &target);
        RemoteError::Connect {
            target,
            kind,
            problem,
            hint,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if matches!(self.control, Control::Shared(_)) {
            // Left for the next command; ControlPersist ends it when unused.
            return;
        }
        // Tell the master to exit; ControlPersist ends it anyway if this fails.
        let mut cmd = self.base_command();
        cmd.args(["-O", "exit", "--"])
            .arg(self.dest.ssh_target())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(child) = cmd.spawn() {
            let _ = wait_limited(child, Some(Duration::from_secs(5)));
        }
    }
}

/// Proves that `dest` lets us in with a key alone, in a connection of its own (no master, no
/// password, no keyboard-interactive), and that the user may use sudo without a password
/// when `sudo` is set. This is the lock-out guard of SSH hardening.
pub fn prove_key_login(
    dest: &Destination,
    opts: &SshOptions,
    sudo: bool,
) -> Result<(), RemoteError> {
    let mut cmd = Command::new(&opts.program);
    if let Some(config) = &opts.config_file {
        cmd.arg("-F").arg(config);
    }
    if let Some(port) = dest.port {
        cmd.arg("-p").arg(port.to_string());
    }
    let secs = opts.connect_timeout.as_secs().max(1);
    cmd.args([
        "-o",
        &format!("ConnectTimeout={secs}"),
        "-o",
        "ControlPath=none",
        "-o",
        "ControlMaster=no",
        "-o",
        "BatchMode=yes",
        "-o",
        "PreferredAuthentications=publickey",
        "-o",
        "PasswordAuthentication=no",
        "-o",
        "KbdInteractiveAuthentication=no",
        "-o",
        "LogLevel=ERROR",
        "-T",
        "--",
    ]);
    cmd.arg(dest.ssh_target()).arg(if sudo {
        "sudo -n true && echo dockhand-login-ok"
    } else {
        "echo dockhand-login-ok"
    });
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        RemoteError::local(
            format!("cannot run {}", opts.program.display()),
            "install the OpenSSH client",
            e,
        )
    })?;
    let (out, err) = collect(&mut child);
    let limit = opts.connect_timeout * 3 + Duration::from_secs(10);
    let status = wait_limited(child, Some(limit))
        .map_err(|e| RemoteError::local("cannot wait for ssh", "", e))?;
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    let target = dest.ssh_target();
    match status {
        Some(s) if s.success() && stdout.contains("dockhand-login-ok") => Ok(()),
        Some(s)
            if s.code() == Some(255)
                || !stdout.contains("dockhand-login-ok") && stderr.contains("ermission denied") =>
        {
            let (kind, problem, hint) = classify_ssh_failure(&stderr, &target);
            Err(RemoteError::Connect {
                target,
                kind,
                problem,
                hint,
            })
        }
        Some(s) => Err(RemoteError::Command {
            target,
            what: "sudo without a password".into(),
            code: s.code().unwrap_or(-1),
            stderr,
            hint: "the user needs passwordless sudo".into(),
        }),
        None => Err(RemoteError::Timeout {
            target,
            what: "a key login".into(),
            after: limit,
            hint: "check that sshd answers".into(),
        }),
    }
}

/// Whether the failure kind means the key was not accepted.
pub fn is_auth_failure(err: &RemoteError) -> bool {
    matches!(
        err,
        RemoteError::Connect {
            kind: SshFailure::AuthFailed,
            ..
        }
    )
}

/// Quotes `words` into one shell command line for the server.
pub fn shell_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| {
            shlex::try_quote(w.as_ref())
                .map(|q| q.into_owned())
                .unwrap_or_else(|_| "''".into())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// ssh's own failures come with one of its messages on stderr; a remote command that exits
/// 255 by itself does not.
fn looks_like_ssh_failure(stderr: &str) -> bool {
    let l = stderr.to_ascii_lowercase();
    [
        "ssh:",
        "permission denied",
        "host key",
        "connection closed",
        "connection reset",
        "kex_exchange_identification",
        "broken pipe",
        "timeout, server",
        "control socket",
        "mux_client",
    ]
    .iter()
    .any(|n| l.contains(n))
}

type Pipe = std::thread::JoinHandle<Vec<u8>>;

/// Reads the child's stdout and stderr to the end on two threads.
fn collect(child: &mut Child) -> (Pipe, Pipe) {
    fn drain(r: Option<impl Read + Send + 'static>) -> Pipe {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    }
    (drain(child.stdout.take()), drain(child.stderr.take()))
}

/// Waits for `child` at most `limit` (forever with `None`); kills it when the limit passes
/// and returns `None`.
pub fn wait_limited(
    mut child: Child,
    limit: Option<Duration>,
) -> std::io::Result<Option<ExitStatus>> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if limit.is_some_and(|l| start.elapsed() >= l) {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The path of `program` if it is on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| is_executable(p))
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_words_for_the_remote_shell() {
        assert_eq!(
            shell_line(&["echo", "a b", "$HOME", "it's"]),
            r#"echo 'a b' '$HOME' "it's""#
        );
    }

    #[test]
    fn a_command_line_rides_the_master_and_keeps_options_before_the_target() {
        let dest = Destination::parse("ssh://deploy@h:2222").unwrap();
        let opts = SshOptions {
            config_file: Some("/tmp/cfg".into()),
            ..SshOptions::default()
        };
        // A session without a master: only the command line is looked at.
        let session = Session {
            dest,
            opts,
            control: Control::Private(tempfile::tempdir().unwrap()),
        };
        let (program, args) = session.command_line("dockhand status");
        assert_eq!(program, PathBuf::from("ssh"));
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let dashdash = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(&args[dashdash + 1..], ["deploy@h", "dockhand status"]);
        assert!(args[..dashdash].windows(2).any(|w| w == ["-p", "2222"]));
        assert!(args[..dashdash].windows(2).any(|w| w == ["-F", "/tmp/cfg"]));
        assert!(args.iter().any(|a| a.starts_with("ControlPath=")));
        assert!(args.iter().any(|a| a == "BatchMode=yes"));
    }

    #[test]
    fn ssh_failures_are_told_from_commands_exiting_255() {
        assert!(looks_like_ssh_failure(
            "ssh: connect to host h port 22: Connection refused"
        ));
        assert!(!looks_like_ssh_failure("my script failed\n"));
    }
}
