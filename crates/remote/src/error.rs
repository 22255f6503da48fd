//! `RemoteError`: what went wrong on the way to a server or on it, classified by what the user
//! can do about it (the CLI turns the class into an exit code).

use std::time::Duration;

/// What the user can do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The server cannot be reached or will not let us in (exit 3).
    Unreachable,
    /// The input is wrong: a destination, a flag, the configuration (exit 2).
    Usage,
    /// The operation ran and failed (exit 1).
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// `ssh` itself failed: the connection, the host key or the authentication.
    #[error("cannot connect to {target}: {problem}\n  {hint}")]
    Connect {
        target: String,
        kind: SshFailure,
        problem: String,
        hint: String,
    },
    /// A command on the server exited with a failure.
    #[error("{what} failed on {target} (exit {code}){}\n  {hint}", detail(.stderr))]
    Command {
        target: String,
        what: String,
        code: i32,
        stderr: String,
        hint: String,
    },
    /// Something took longer than its limit.
    #[error("{what} on {target} did not finish within {}s\n  {hint}", .after.as_secs())]
    Timeout {
        target: String,
        what: String,
        after: Duration,
        hint: String,
    },
    /// A local program or file needed for the operation.
    #[error("{what}: {source}\n  {hint}")]
    Local {
        what: String,
        hint: String,
        #[source]
        source: std::io::Error,
    },
    /// The server is not one we can work on, or a step refused to go on.
    #[error("{message}\n  {hint}")]
    Refused { message: String, hint: String },
    /// Bad input.
    #[error("{message}\n  {hint}")]
    Usage { message: String, hint: String },
}

fn detail(stderr: &str) -> String {
    let tail: Vec<&str> = stderr.trim().lines().rev().take(6).collect();
    if tail.is_empty() {
        String::new()
    } else {
        let lines: Vec<&str> = tail.into_iter().rev().collect();
        format!(":\n    {}", lines.join("\n    "))
    }
}

impl RemoteError {
    pub fn class(&self) -> ErrorClass {
        match self {
            RemoteError::Connect { .. } => ErrorClass::Unreachable,
            RemoteError::Usage { .. } => ErrorClass::Usage,
            RemoteError::Command { .. }
            | RemoteError::Timeout { .. }
            | RemoteError::Local { .. }
            | RemoteError::Refused { .. } => ErrorClass::Failed,
        }
    }

    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> RemoteError {
        RemoteError::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn refused(message: impl Into<String>, hint: impl Into<String>) -> RemoteError {
        RemoteError::Refused {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn local(
        what: impl Into<String>,
        hint: impl Into<String>,
        source: std::io::Error,
    ) -> RemoteError {
        RemoteError::Local {
            what: what.into(),
            hint: hint.into(),
            source,
        }
    }
}

/// Why `ssh` could not run a command, read from its messages (exit status 255).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshFailure {
    /// Name resolution, refused, timed out, no route.
    Unreachable,
    /// The server's host key differs from the one in known_hosts.
    HostKeyChanged,
    /// The server's host key is not in known_hosts (and we may not ask).
    HostKeyUnknown,
    /// No key (or password) was accepted.
    AuthFailed,
    /// Anything else `ssh` said.
    Other,
}

/// Classifies `ssh`'s stderr; returns the kind, a one-line problem and what to do.
pub fn classify_ssh_failure(stderr: &str, target: &str) -> (SshFailure, String, String) {
    let lower = stderr.to_ascii_lowercase();
    let first = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("@@@") && !l.starts_with("Warning: Permanently"))
        .unwrap_or("ssh exited without a message")
        .to_string();
    let has = |needle: &str| lower.contains(needle);
    if has("remote host identification has changed") || has("offending") {
        return (
            SshFailure::HostKeyChanged,
            "the server's host key does not match the one in known_hosts".into(),
            format!(
                "if the server was reinstalled, remove the old key with `ssh-keygen -R {}` and check the new one; otherwise someone may be intercepting the connection: do not go on",
                host_of(target)
            ),
        );
    }
    if has("host key verification failed")
        || has("no ed25519 host key is known")
        || has("host key is not known")
    {
        return (
            SshFailure::HostKeyUnknown,
            "the server's host key is not known yet".into(),
            format!(
                "connect once with `ssh {target}` to check and accept its key (or pass --accept-new-host-key to setup)"
            ),
        );
    }
    if has("permission denied") || has("too many authentication failures") {
        return (
            SshFailure::AuthFailed,
            first,
            format!(
                "check that your key is loaded (`ssh-add -l`) and listed in ~/.ssh/authorized_keys of that user on the server; try `ssh {target} true`"
            ),
        );
    }
    if has("could not resolve hostname") || has("name or service not known") {
        return (
            SshFailure::Unreachable,
            first,
            "check the host name (and your DNS)".into(),
        );
    }
    if has("connection refused") {
        return (
            SshFailure::Unreachable,
            first,
            "is sshd running on the server, and is this the right port (ssh://USER@HOST:PORT)?"
                .into(),
        );
    }
    if has("timed out") || has("no route to host") || has("network is unreachable") {
        return (
            SshFailure::Unreachable,
            first,
            "check the address, that the server is up, and that a firewall lets SSH through".into(),
        );
    }
    if has("connection closed") || has("connection reset") || has("kex_exchange_identification") {
        return (
            SshFailure::Unreachable,
            first,
            "the server closed the connection: sshd may be starting, overloaded, or refusing your address (fail2ban?)".into(),
        );
    }
    (
        SshFailure::Other,
        first,
        format!("run `ssh -v {target} true` to see what ssh does"),
    )
}

fn host_of(target: &str) -> &str {
    target.rsplit_once('@').map(|(_, h)| h).unwrap_or(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_what_ssh_says() {
        let cases = [
            ("ssh: connect to host 127.0.0.1 port 2222: Connection refused\r\n", SshFailure::Unreachable, "right port"),
            ("ssh: Could not resolve hostname nope.invalid: Name or service not known\r\n", SshFailure::Unreachable, "host name"),
            ("ssh: connect to host 192.0.2.1 port 22: Connection timed out\r\n", SshFailure::Unreachable, "firewall"),
            ("root@127.0.0.1: Permission denied (publickey).\r\n", SshFailure::AuthFailed, "ssh-add"),
            (
                "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nOffending ED25519 key in /tmp/k:1\nHost key verification failed.\n",
                SshFailure::HostKeyChanged,
                "ssh-keygen -R",
            ),
            ("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\nHost key verification failed.\r\n", SshFailure::HostKeyUnknown, "accept"),
            ("kex_exchange_identification: read: Connection reset by peer\r\n", SshFailure::Unreachable, "fail2ban"),
            ("something new\n", SshFailure::Other, "ssh -v"),
        ];
        for (stderr, kind, hint) in cases {
            let (got, problem, help) = classify_ssh_failure(stderr, "root@host");
            assert_eq!(got, kind, "{stderr}");
            assert!(help.contains(hint), "{stderr}: {help}");
            assert!(
                !problem.is_empty() && !problem.starts_with("@@@"),
                "{problem}"
            );
        }
    }

    #[test]
    fn command_errors_show_the_end_of_stderr() {
        let err = RemoteError::Command {
            target: "root@h".into(),
            what: "installing packages".into(),
            code: 100,
            stderr: "E: Unable to locate package nope\n".into(),
            hint: "check the package name".into(),
        };
        let text = err.to_string();
        assert!(
            text.contains("installing packages failed on root@h (exit 100):\n    E: Unable"),
            "{text}"
        );
        assert_eq!(err.class(), ErrorClass::Failed);
    }
}
