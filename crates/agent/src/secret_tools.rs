//! Secrets fetched from a password manager's CLI (`[secrets]` in dockhand.toml): `pass`,
//! 1Password's `op` and Bitwarden's `bw`, run as the agent's user with the agent's
//! environment (`PASSWORD_STORE_DIR` and `GNUPGHOME`, `OP_SERVICE_ACCOUNT_TOKEN`, `BW_SESSION`)
//! and no terminal: a tool that wants to ask something fails instead of waiting. The value
//! arrives on the tool's stdout and goes nowhere but the returned string (the caller teaches
//! it to the `Redactor`); only the entry's name or reference is an argument — none of the
//! three reads it from stdin — never a value.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dockhand_config::{SecretSource, SecretTool};

use crate::error::{AgentError, Result};

/// The longest a password manager may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The value of secret `name` from its password manager.
pub fn fetch(name: &str, source: &SecretSource) -> Result<String> {
    let program = source.tool.program();
    let args: Vec<&str> = match source.tool {
        // The first line of the entry is the password (pass's own convention, as `pass -c`).
        SecretTool::Pass => vec!["show", source.reference.as_str()],
        SecretTool::Op => vec!["read", "--no-newline", source.reference.as_str()],
        SecretTool::Bw => vec![
            "get",
            "password",
            source.reference.as_str(),
            "--nointeraction",
        ],
    };
    let shown = format!("{program} {}", args.join(" "));
    let failed = |why: String| {
        AgentError::runtime(format!(
            "secret `{name}` could not be fetched with `{shown}`: {why}"
        ))
    };
    let mut child = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => AgentError::environment(format!(
                "secret `{name}` comes from {program}, which is not installed for the agent ({})",
                install_hint(source.tool)
            )),
            _ => failed(e.to_string()),
        })?;
    // Read both pipes on threads so a chatty tool cannot block on a full pipe.
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "no answer within {}s (is it waiting for a passphrase or a login?)",
                    TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(failed(e.to_string())),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let said = String::from_utf8_lossy(&stderr);
        let last = said.trim().lines().last().unwrap_or("").to_string();
        return Err(failed(format!(
            "{status}{}; {}",
            if last.is_empty() {
                String::new()
            } else {
                format!(" ({last})")
            },
            login_hint(source.tool)
        )));
    }
    let text = String::from_utf8(stdout).map_err(|_| failed("the value is not UTF-8".into()))?;
    let value = match source.tool {
        SecretTool::Pass => text.lines().next().unwrap_or("").to_string(),
        SecretTool::Op | SecretTool::Bw => text.strip_suffix('\n').unwrap_or(&text).to_string(),
    };
    if value.is_empty() {
        return Err(failed("the value is empty".into()));
    }
    Ok(value)
}

fn install_hint(tool: SecretTool) -> &'static str {
    match tool {
        SecretTool::Pass => "apt install pass",
        SecretTool::Op => {
            "install the 1Password CLI: https://developer.1password.com/docs/cli/get-started/"
        }
        SecretTool::Bw => "install the Bitwarden CLI: npm install -g @bitwarden/cli",
    }
}

fn login_hint(tool: SecretTool) -> &'static str {
    match tool {
        SecretTool::Pass => "check that the entry exists and that the agent's user can decrypt it (its GnuPG key, no passphrase prompt)",
        SecretTool::Op => "give the agent a service account: OP_SERVICE_ACCOUNT_TOKEN in its environment",
        SecretTool::Bw => "unlock the vault for the agent: BW_SESSION in its environment (`bw unlock --raw`)",
    }
}
