//! Performs a [`SetupPlan`] step by step over one SSH session. Stops at the first failure: the
//! steps before it are complete and idempotent, so the next run picks up where this one
//! stopped. The project upload and the agent start belong to the caller (they need the
//! project and the agent's protocol), through [`Observer`].

use std::path::Path;
use std::time::Duration;

use crate::destination::Destination;
use crate::error::RemoteError;
use crate::server;
use crate::setup::plan::{Op, SetupPlan, Step, StepState};
use crate::ssh::{prove_key_login, shell_line, Session, SshOptions};

/// What happened to a step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum StepOutcome {
    Unchanged,
    Changed { message: Option<String> },
}

/// The caller's part: progress, and the steps that need the project or the agent.
pub trait Observer {
    fn started(&mut self, step: &Step);
    fn finished(&mut self, step: &Step, outcome: &StepOutcome);
    fn upload_project(&mut self, session: &Session) -> Result<String, RemoteError>;
    /// Waits until the agent answers; returns what it said.
    fn agent_answers(&mut self, session: &Session) -> Result<String, RemoteError>;
}

/// Everything the executor needs besides the plan.
pub struct Context<'a> {
    pub session: &'a Session,
    /// `""` as root, `"sudo -n "` otherwise.
    pub root: &'a str,
    /// The local `dockhand` binary to upload.
    pub binary: &'a Path,
    pub ssh: &'a SshOptions,
}

/// Runs every step of `plan` that is a change, in order.
pub fn execute(
    plan: &SetupPlan,
    cx: &Context<'_>,
    observer: &mut dyn Observer,
) -> Result<Vec<(&'static str, StepOutcome)>, RemoteError> {
    let mut outcomes = Vec::new();
    for step in &plan.steps {
        observer.started(step);
        let outcome = if step.state == StepState::Done {
            StepOutcome::Unchanged
        } else {
            let mut message = None;
            for op in &step.ops {
                if let Some(m) = run_op(op, step, cx, observer)? {
                    message = Some(m);
                }
            }
            StepOutcome::Changed { message }
        };
        observer.finished(step, &outcome);
        outcomes.push((step.id, outcome));
    }
    Ok(outcomes)
}

fn run_op(
    op: &Op,
    step: &Step,
    cx: &Context<'_>,
    observer: &mut dyn Observer,
) -> Result<Option<String>, RemoteError> {
    let s = cx.session;
    let what = format!("setup step `{}`", step.id);
    match op {
        Op::Run { script } => {
            let timeout = if script.contains("apt-get") {
                Duration::from_secs(20 * 60)
            } else {
                Duration::from_secs(120)
            };
            run_root(cx, &what, script, timeout)?;
            Ok(None)
        }
        Op::Write {
            path,
            mode,
            owner,
            content,
        } => {
            write_file(cx, &what, path, *mode, owner, content.as_bytes())?;
            Ok(None)
        }
        Op::UploadBinary => {
            let file = std::fs::File::open(cx.binary).map_err(|e| {
                RemoteError::local(
                    format!("cannot read {}", cx.binary.display()),
                    "pass the binary for the server with --binary PATH",
                    e,
                )
            })?;
            let script = format!(
                "umask 022; t=$(mktemp {dir}/.dockhand.XXXXXX) || exit 1; \
                 if cat > \"$t\" && chmod 0755 \"$t\" && mv -f \"$t\" {bin}; then {bin} --version; else rm -f \"$t\"; exit 1; fi",
                dir = Path::new(server::BINARY).parent().unwrap_or(Path::new("/")).display(),
                bin = server::BINARY,
            );
            let remote = format!("{}sh -c {}", cx.root, shell_line(&[script.as_str()]));
            let (out, sent) = s
                .run_streaming(&what, &remote, file, Duration::from_secs(15 * 60))
                .map_err(disk_hint)?;
            Ok(Some(format!(
                "{} ({} bytes)",
                out.stdout_text().trim(),
                sent
            )))
        }
        Op::ProveKeyLogin { user } => {
            prove(cx, user, "refusing to disable password and root login")?;
            Ok(None)
        }
        Op::HardenSsh { content, user } => {
            harden_ssh(cx, &what, content, user)?;
            Ok(Some(
                "password and root login disabled; key login proven after the reload".into(),
            ))
        }
        Op::UploadProject => Ok(Some(observer.upload_project(s)?)),
        Op::StartAgent { restart } => {
            run_root(
                cx,
                &what,
                &format!(
                    "systemctl daemon-reload\nsystemctl enable {u} >/dev/null 2>&1\nsystemctl {verb} {u}\n",
                    u = server::UNIT,
                    verb = if *restart { "restart" } else { "start" }
                ),
                Duration::from_secs(120),
            )?;
            Ok(Some(observer.agent_answers(s)?))
        }
    }
}

/// Runs `script` as root with `sh -e`.
pub fn run_root(
    cx: &Context<'_>,
    what: &str,
    script: &str,
    timeout: Duration,
) -> Result<String, RemoteError> {
    let remote = format!("{}sh -ec {}", cx.root, shell_line(&[script]));
    cx.session
        .run_ok(
            what,
            &remote,
            None,
            timeout,
            "see the server's message above; fix it and run setup again (finished steps are kept)",
        )
        .map(|o| o.stdout_text())
        .map_err(disk_hint)
}

/// Writes `content` to `path` as root, atomically, with `mode` and `owner`; the content goes
/// through stdin.
pub fn write_file(
    cx: &Context<'_>,
    what: &str,
    path: &str,
    mode: u32,
    owner: &str,
    content: &[u8],
) -> Result<(), RemoteError> {
    let dir = Path::new(path)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/".into());
    let script = format!(
        "umask 077; mkdir -p {dir_q}; t=$(mktemp {dir_q}/.dockhand.XXXXXX) || exit 1; \
         if cat > \"$t\" && chmod {mode:o} \"$t\" && chown {owner_q} \"$t\" && mv -f \"$t\" {path_q}; then :; else rm -f \"$t\"; exit 1; fi",
        dir_q = shell_line(&[dir.as_str()]),
        owner_q = shell_line(&[owner]),
        path_q = shell_line(&[path]),
    );
    let remote = format!("{}sh -c {}", cx.root, shell_line(&[script.as_str()]));
    cx.session
        .run_ok(
            what,
            &remote,
            Some(content),
            Duration::from_secs(60),
            &format!("could not write {path}"),
        )
        .map_err(disk_hint)?;
    Ok(())
}

fn prove(cx: &Context<'_>, user: &str, refusing: &str) -> Result<(), RemoteError> {
    let dest: Destination = cx.session.destination().with_user(user);
    prove_key_login(&dest, cx.ssh, true).map_err(|e| {
        let why = match &e {
            RemoteError::Connect { problem, .. } => problem.clone(),
            RemoteError::Command { stderr, .. } => format!(
                "{user} cannot use sudo without a password ({})",
                stderr.trim().lines().last().unwrap_or("")
            ),
            other => other.to_string(),
        };
        RemoteError::refused(
            format!(
                "{refusing}: a key login as {} in a second connection failed: {why}",
                dest.ssh_target()
            ),
            format!(
                "add your public key to ~{user}/.ssh/authorized_keys on the server (e.g. `ssh-copy-id {}`) and check `ssh {} sudo -n true` works, then run setup again; the SSH configuration was not changed",
                dest.ssh_target(),
                dest.ssh_target()
            ),
        )
    })
}

fn harden_ssh(cx: &Context<'_>, what: &str, content: &str, user: &str) -> Result<(), RemoteError> {
    let path = server::SSHD_DROPIN;
    // Keep the previous drop-in (if any) to restore it.
    run_root(
        cx,
        what,
        &format!(
            "if [ -f {path} ]; then cp -p {path} {path}.previous; else rm -f {path}.previous; fi"
        ),
        Duration::from_secs(30),
    )?;
    write_file(cx, what, path, 0o644, "root:root", content.as_bytes())?;
    let restore = format!(
        "if [ -f {path}.previous ]; then mv -f {path}.previous {path}; else rm -f {path}; fi\n\
         systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || true"
    );
    if let Err(e) = run_root(cx, what, "sshd -t", Duration::from_secs(30)) {
        let _ = run_root(cx, what, &restore, Duration::from_secs(30));
        return Err(RemoteError::refused(
            format!("sshd rejects the configuration with the hardening drop-in, so it was taken back: {e}"),
            "fix the server's sshd configuration (`sshd -t` shows the problem), then run setup again",
        ));
    }
    run_root(
        cx,
        what,
        "systemctl reload ssh 2>/dev/null || systemctl reload sshd",
        Duration::from_secs(60),
    )?;
    // sshd re-executes itself on reload: for a moment it resets new connections. Only a
    // refused login counts, not the restart.
    let mut attempt = 0;
    let proven = loop {
        attempt += 1;
        let dest = cx.session.destination().with_user(user);
        match prove_key_login(&dest, cx.ssh, true) {
            Err(RemoteError::Connect {
                kind: crate::error::SshFailure::Unreachable,
                ..
            }) if attempt < 30 => std::thread::sleep(Duration::from_millis(500)),
            _ => {
                break prove(
                    cx,
                    user,
                    "the key login failed after hardening SSH, so it was taken back",
                )
            }
        }
    };
    if let Err(e) = proven {
        let _ = run_root(cx, what, &restore, Duration::from_secs(30));
        return Err(e);
    }
    let _ = run_root(
        cx,
        what,
        &format!("rm -f {path}.previous"),
        Duration::from_secs(30),
    );
    Ok(())
}

/// Adds what to do to an error that ran out of disk space.
fn disk_hint(e: RemoteError) -> RemoteError {
    match e {
        RemoteError::Command {
            target,
            what,
            code,
            stderr,
            ..
        } if stderr.contains("No space left on device") => RemoteError::Command {
            target,
            what,
            code,
            stderr,
            hint: "the server's disk is full: free some space (apt-get clean, old logs, unused Docker images) or grow the disk, then run setup again; nothing half-written was left in place".into(),
        },
        other => other,
    }
}
