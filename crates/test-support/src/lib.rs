//! Helpers for Dockhand's integration tests: a sandbox project directory driving the real
//! `dockhand` binary, the `dockhand-testapp` upstream, process inspection, and a keep-alive
//! HTTP load generator that counts every non-2xx answer and connection error.

pub mod docker;
pub mod footprint;
mod load;
pub mod pebble;
mod procs;
pub mod s3;
pub mod swarm;
pub mod target;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use load::{Load, LoadReport};
pub use procs::{processes_with_env, Proc};

/// The `dockhand-testapp` binary built beside the test binary.
pub fn testapp_bin() -> PathBuf {
    sibling_bin("dockhand-testapp")
}

/// A binary of this workspace in the same target directory as the running test.
pub fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p {name}` (the test script does this)",
        bin.display()
    );
    bin
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `signal` to `child` and waits (at most 60 s) for it to exit; returns the exit code
/// (`None`: killed by a signal). Panics, killing it, if it does not exit in time.
pub fn signal_and_wait(child: &mut Child, signal: nix::sys::signal::Signal) -> Option<i32> {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().ok().flatten() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within 60s of {signal}", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The name of the canary secret every sandbox's secrets file holds (see [`Sandbox`]).
pub const CANARY: &str = "DOCKHAND_TEST_CANARY";

/// A temporary project directory and the `dockhand` binary to run in it.
///
/// Every sandbox has a canary secret: a random value, `DOCKHAND_TEST_CANARY` in every secrets
/// file the test writes (and in the one a `dockhand.toml` that refers to it needs). Apps that
/// use it (the integration tests' `testapp_toml` sets it in the env) carry it in their process
/// environment, where it belongs; when the sandbox is dropped after a passing test, it checks
/// that the value appears nowhere else: no file under the project (state database and its WAL,
/// logs, the access log, metrics, events, backups, release copies — secrets files apart) and
/// no output of a command run through [`Sandbox::run`], no process's arguments.
pub struct Sandbox {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Set in the environment of every command (e.g. `DOCKHAND_SSH_CONFIG`).
    env: Vec<(String, String)>,
    canary: String,
    /// Everything the commands run through `run` printed.
    printed: std::sync::Mutex<Vec<u8>>,
}

impl Sandbox {
    pub fn new(dockhand_bin: &str) -> Sandbox {
        let mut bytes = [0u8; 16];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").expect("open /dev/urandom"),
            &mut bytes,
        )
        .expect("read /dev/urandom");
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("dockhand-it-")
                .tempdir()
                .expect("create a temp dir"),
            bin: PathBuf::from(dockhand_bin),
            env: Vec::new(),
            canary: format!(
                "canary{}",
                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
            printed: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The canary secret's value.
    pub fn canary(&self) -> &str {
        &self.canary
    }

    /// Takes back what the commands printed so far, for a test that prints a secret on
    /// purpose (`dockhand secrets get`): the canary check at drop no longer sees it.
    pub fn take_printed(&self) -> Vec<u8> {
        std::mem::take(&mut *self.printed.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The line that sets the canary in a secrets file.
    fn canary_line(&self) -> String {
        format!("{CANARY}={}\n", self.canary)
    }

    /// Where the canary turns up outside secrets files and the apps' environment: each place
    /// a path (or "command output"). Empty when it leaked nowhere.
    pub fn canary_leaks(&self) -> Vec<String> {
        fn walk(dir: &Path, needle: &[u8], out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let Ok(t) = e.file_type() else { continue };
                let path = e.path();
                if t.is_dir() {
                    walk(&path, needle, out);
                } else if t.is_file() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with("secrets.env") {
                        continue;
                    }
                    if std::fs::read(&path)
                        .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
                    {
                        out.push(path.display().to_string());
                    }
                }
            }
        }
        let needle = self.canary.as_bytes();
        let mut out = Vec::new();
        walk(self.path(), needle, &mut out);
        let printed = self.printed.lock().unwrap_or_else(|p| p.into_inner());
        if printed.windows(needle.len()).any(|w| w == needle) {
            out.push("command output".into());
        }
        // `ps`: no process's arguments.
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
                if cmdline.windows(needle.len()).any(|w| w == needle) {
                    out.push(format!(
                        "the arguments of process {}",
                        e.file_name().to_string_lossy()
                    ));
                }
            }
        }
        out
    }

    /// Sets `name=value` in the environment of every command run in the sandbox.
    pub fn with_env(mut self, name: &str, value: &str) -> Sandbox {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join(".dockhand")
    }

    /// Writes a file of the project. A secrets file gets the canary line too; a
    /// `dockhand.toml` that refers to the canary gets a secrets file holding it (mode 0600).
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        if p.file_name().is_some_and(|n| n == "secrets.env") && !contents.contains(CANARY) {
            let sep = if contents.is_empty() || contents.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            std::fs::write(&p, format!("{contents}{sep}{}", self.canary_line()))
                .expect("write file");
        } else {
            std::fs::write(&p, contents).expect("write file");
        }
        if contents.contains(&format!("${{secret.{CANARY}}}")) {
            self.ensure_canary_secret();
        }
        p
    }

    /// The project's secrets file holds the canary (created, mode 0600, when missing).
    pub fn ensure_canary_secret(&self) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.state_dir().join("secrets.env");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains(CANARY) {
            return;
        }
        std::fs::create_dir_all(self.state_dir()).expect("create the state directory");
        let sep = if text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        let existed = path.exists();
        std::fs::write(&path, format!("{text}{sep}{}", self.canary_line()))
            .expect("write the secrets file");
        if !existed {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the secrets file");
        }
    }

    /// `dockhand ARGS` in the sandbox, colours off, no inherited socket.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .current_dir(self.path())
            .env_remove("DOCKHAND_SOCKET")
            .env("NO_COLOR", "1")
            // Each agent serves /metrics on a port of its own (debug builds read this).
            .env("DOCKHAND_METRICS_LISTEN", "127.0.0.1:0")
            // And the dashboard on a port of its own.
            .env("DOCKHAND_DASHBOARD_LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Starts `dockhand ARGS` in the background, its output discarded.
    pub fn spawn_quiet(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dockhand")
    }

    /// Runs `dockhand ARGS` to completion (at most two minutes).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_for(args, Duration::from_secs(120))
    }

    /// Runs `dockhand ARGS` to completion, at most `limit`.
    pub fn run_for(&self, args: &[&str], limit: Duration) -> Output {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dockhand");
        let deadline = Instant::now() + limit;
        // The pipes are drained while waiting: a chatty command must not block on them.
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
            buf
        });
        let collect = |child: &mut Child,
                       out_reader: std::thread::JoinHandle<Vec<u8>>,
                       err_reader: std::thread::JoinHandle<Vec<u8>>| {
            let out = Output {
                status: child.wait().expect("wait"),
                stdout: out_reader.join().unwrap_or_default(),
                stderr: err_reader.join().unwrap_or_default(),
            };
            let mut printed = self.printed.lock().unwrap_or_else(|p| p.into_inner());
            printed.extend_from_slice(&out.stdout);
            printed.extend_from_slice(&out.stderr);
            out
        };
        loop {
            if child.try_wait().expect("wait").is_some() {
                return collect(&mut child, out_reader, err_reader);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = collect(&mut child, out_reader, err_reader);
                panic!(
                    "dockhand {args:?} did not finish within {limit:?}\nstdout: {}\nstderr: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `dockhand ARGS --json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> (Option<i32>, serde_json::Value) {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "dockhand {all:?}: stdout is not JSON ({e})\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), v)
    }

    /// Starts `dockhand agent` in the sandbox and waits until it answers `status` with a
    /// current release and no deploy in progress.
    pub fn start_agent(&self) -> AgentProc {
        self.start_agent_with_env(&[])
    }

    /// [`Sandbox::start_agent`] with extra environment variables for the agent.
    pub fn start_agent_with_env(&self, env: &[(&str, &str)]) -> AgentProc {
        let mut cmd = self.cmd(&["agent"]);
        cmd.envs(env.iter().copied());
        self.spawn_agent(cmd)
    }

    /// [`Sandbox::start_agent`] with `socket` handed over the way systemd's socket activation
    /// does (descriptor 3, `LISTEN_FDS=1`, `LISTEN_PID` the agent's own pid): the test plays
    /// the service manager and keeps the socket across agent restarts.
    pub fn start_agent_handed(&self, socket: &std::net::TcpListener) -> AgentProc {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let agent = self.cmd(&["agent"]);
        let mut cmd = Command::new("sh");
        // `$$` is the shell's pid, which `exec` hands to the agent.
        cmd.arg("-c")
            .arg(r#"export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@""#)
            .arg(agent.get_program())
            .args(agent.get_args());
        for (key, value) in agent.get_envs() {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = agent.get_current_dir() {
            cmd.current_dir(dir);
        }
        let fd = socket.as_raw_fd();
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                let ok = if fd == 3 {
                    nix::libc::fcntl(3, nix::libc::F_SETFD, 0) == 0
                } else {
                    // dup2 leaves the copy without FD_CLOEXEC.
                    nix::libc::dup2(fd, 3) == 3
                };
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        self.spawn_agent(cmd)
    }

    fn spawn_agent(&self, mut cmd: Command) -> AgentProc {
        let log = self
            .path()
            .join(format!("agent-{}.log", Instant::now().elapsed().as_nanos()));
        let log_file = std::fs::File::create(&log).expect("agent log");
        let child = cmd
            .stdout(log_file.try_clone().expect("dup"))
            .stderr(log_file)
            .spawn()
            .expect("spawn dockhand agent");
        let mut agent = AgentProc {
            child: Some(child),
            log,
        };
        let sock = self.state_dir().join("agent.sock");
        let start = Instant::now();
        loop {
            if sock.exists() {
                let out = self.run(&["status", "--json"]);
                let status: serde_json::Value =
                    serde_json::from_slice(&out.stdout).unwrap_or_default();
                // Ready: answering, and the startup deploy has finished.
                if out.status.code() != Some(3)
                    && status["deploying"].is_null()
                    && !status["current_release"].is_null()
                {
                    break;
                }
            }
            if let Some(status) = agent
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the agent exited with {status} before it was ready:\n{}",
                    agent.output()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the agent did not become ready within 60s:\n{}",
                agent.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }

    /// The proxy address the running agent reports.
    pub fn proxy_addr(&self) -> String {
        let (_, status) = self.json(&["status"]);
        status["agent"]["proxy_listen"]
            .as_str()
            .expect("status has agent.proxy_listen")
            .to_string()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // After a passing test only: a failing one already says what went wrong.
        if std::thread::panicking() {
            return;
        }
        let leaks = self.canary_leaks();
        assert!(
            leaks.is_empty(),
            "the canary secret {CANARY} leaked into: {}",
            leaks.join(", ")
        );
    }
}

/// A running `dockhand agent`; stopped on drop if still running (SIGTERM, so it stops its
/// services too, leaving no process behind).
pub struct AgentProc {
    child: Option<Child>,
    log: PathBuf,
}

impl AgentProc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Everything the agent printed so far.
    pub fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits (at most `timeout`) for the agent to exit on its own; returns how it ended.
    /// Panics, killing it, if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("the agent was already stopped");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = c.try_wait().expect("wait for the agent") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "the agent did not exit within {timeout:?}:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait (at most 60 s) for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        signal_and_wait(&mut c, nix::sys::signal::Signal::SIGTERM)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
