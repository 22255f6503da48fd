//! The client end of the agent socket: discovery, one request, the stream of frames back.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{ApiError, Frame, Request, SOCKET_NAME, STATE_DIR_NAME, SYSTEM_SOCKET};

/// Environment variable naming the agent socket.
pub const SOCKET_ENV: &str = "DOCKHAND_SOCKET";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no dockhand agent found: looked for {searched}\n  start one with `dockhand up` in your project directory, or point at it with --socket or ${SOCKET_ENV}")]
    NotFound { searched: String },
    #[error("cannot reach the dockhand agent at {path}: {source}\n  is it running? start it with `dockhand up` or `systemctl start dockhand`")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lost the connection to the agent at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent closed the connection without an answer (did it stop?)")]
    NoAnswer,
    #[error("the agent sent something this client does not understand: {0}; are the client and agent the same version?")]
    Protocol(String),
    /// The command that carries the request to a remote agent (`ssh … dockhand remote
    /// bridge`) failed before the agent answered.
    #[error("cannot reach the dockhand agent through {through}: {message}")]
    Transport { through: String, message: String },
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Finds the agent socket: `explicit`, then `$DOCKHAND_SOCKET`, then `.dockhand/agent.sock`
/// in `cwd` or any parent, then the system socket.
pub fn discover_socket(explicit: Option<&Path>, cwd: &Path) -> Result<PathBuf, ClientError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut searched = Vec::new();
    for dir in cwd.ancestors() {
        let candidate = dir.join(STATE_DIR_NAME).join(SOCKET_NAME);
        if candidate.exists() {
            return Ok(candidate);
        }
        if searched.len() < 2 {
            searched.push(candidate.display().to_string());
        }
    }
    let system = PathBuf::from(SYSTEM_SOCKET);
    if system.exists() {
        return Ok(system);
    }
    searched.push("…(parent directories)".into());
    searched.push(SYSTEM_SOCKET.into());
    Err(ClientError::NotFound {
        searched: searched.join(", "),
    })
}

/// A connection to the agent carrying one request: its Unix socket, or a command whose stdin
/// and stdout are joined to the socket of a remote agent (`ssh HOST dockhand remote bridge`),
/// which speaks the same JSON lines.
pub struct Client {
    path: PathBuf,
    command: Option<(PathBuf, Vec<OsString>)>,
    /// How long to wait for the next frame before giving up (`None`: forever, for follow).
    pub read_timeout: Option<Duration>,
    /// Whatever must live as long as the client (an SSH master connection).
    guard: Option<Box<dyn std::any::Any + Send>>,
}

impl Client {
    pub fn new(path: PathBuf) -> Client {
        Client {
            path,
            command: None,
            read_timeout: Some(Duration::from_secs(15 * 60)),
            guard: None,
        }
    }

    /// A client whose requests go through `program args…` (one process per request);
    /// `label` names it in errors.
    pub fn over_command(label: &str, program: PathBuf, args: Vec<OsString>) -> Client {
        Client {
            path: PathBuf::from(label),
            command: Some((program, args)),
            read_timeout: Some(Duration::from_secs(15 * 60)),
            guard: None,
        }
    }

    /// Keeps `guard` alive as long as the client.
    pub fn keep_alive(mut self, guard: impl std::any::Any + Send) -> Client {
        self.guard = Some(Box::new(guard));
        self
    }

    /// Whether requests go to a remote agent through a command.
    pub fn is_remote(&self) -> bool {
        self.command.is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `req`, passes every non-final frame to `on_frame`, and returns the final result.
    pub fn call(
        &self,
        req: &Request,
        mut on_frame: impl FnMut(&Frame),
    ) -> Result<serde_json::Value, ClientError> {
        if let Some((program, args)) = &self.command {
            return self.call_command(program, args, req, &mut on_frame);
        }
        let io_err = |source| ClientError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let mut stream =
            UnixStream::connect(&self.path).map_err(|source| ClientError::Connect {
                path: self.path.display().to_string(),
                source,
            })?;
        stream.set_read_timeout(self.read_timeout).map_err(io_err)?;
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .map_err(io_err)?;
        let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        stream.write_all(&line).map_err(io_err)?;
        let reader = BufReader::new(stream);
        for line in reader.lines() {
            let line = line.map_err(io_err)?;
            if line.trim().is_empty() {
                continue;
            }
            let frame: Frame = serde_json::from_str(&line)
                .map_err(|e| ClientError::Protocol(format!("{e}: {line}")))?;
            match frame {
                Frame::Result { data } => return Ok(data),
                Frame::Error(err) => return Err(ClientError::Api(err)),
                other => on_frame(&other),
            }
        }
        Err(ClientError::NoAnswer)
    }

    fn call_command(
        &self,
        program: &Path,
        args: &[OsString],
        req: &Request,
        on_frame: &mut dyn FnMut(&Frame),
    ) -> Result<serde_json::Value, ClientError> {
        let through = self.path.display().to_string();
        let transport = |message: String| ClientError::Transport {
            through: through.clone(),
            message,
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| transport(format!("cannot run {}: {e}", program.display())))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        // Lines are read on a thread so that the wait for each has a limit.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut line = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        // stdin stays open until the answer is complete: closing it is hanging up.
        let written = stdin.write_all(&line).and_then(|_| stdin.flush());
        // A command that failed at once (ssh could not connect) closed its stdin: what it
        // said on stderr is the better message, so read on until it ends.
        let result = (|| loop {
            let next = match self.read_timeout {
                Some(limit) => match rx.recv_timeout(limit) {
                    Ok(l) => Some(l),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        return Err(transport(format!("no answer within {}s", limit.as_secs())))
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                },
                None => rx.recv().ok(),
            };
            let Some(line) = next else {
                return Err(ClientError::NoAnswer);
            };
            let line = line.map_err(|e| transport(format!("reading the answer: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let frame: Frame = serde_json::from_str(&line)
                .map_err(|e| ClientError::Protocol(format!("{e}: {line}")))?;
            match frame {
                Frame::Result { data } => return Ok(data),
                Frame::Error(err) => return Err(ClientError::Api(err)),
                other => on_frame(&other),
            }
        })();
        drop(stdin);
        let _ = child.kill();
        let status = child.wait().ok();
        match result {
            Err(ClientError::NoAnswer) => {
                let stderr = err_reader.join().unwrap_or_default();
                let said = stderr.trim();
                let code = status.and_then(|s| s.code());
                Err(transport(match (said.is_empty(), written) {
                    (false, _) => said.to_string(),
                    (true, Err(e)) => format!("cannot send the request: {e}"),
                    (true, Ok(())) => {
                        format!("it ended without an answer (exit {})", code.unwrap_or(-1))
                    }
                }))
            }
            other => other,
        }
    }

    /// Like [`Client::call`], decoding the result into `T`.
    pub fn call_typed<T: serde::de::DeserializeOwned>(
        &self,
        req: &Request,
        on_frame: impl FnMut(&Frame),
    ) -> Result<T, ClientError> {
        let value = self.call(req, on_frame)?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_socket_in_a_parent_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(STATE_DIR_NAME);
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join(SOCKET_NAME), "").unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        if std::env::var_os(SOCKET_ENV).is_none() {
            assert_eq!(
                discover_socket(None, &nested).unwrap(),
                state.join(SOCKET_NAME)
            );
        }
        let explicit = Path::new("/x/y.sock");
        assert_eq!(discover_socket(Some(explicit), &nested).unwrap(), explicit);
    }

    #[test]
    fn a_command_endpoint_carries_the_request_and_the_frames() {
        // `sh` plays the bridge: it reads the request line and answers two frames.
        let script = r#"read -r line; case "$line" in *'"cmd":"ping"'*) ;; *) exit 9 ;; esac
printf '%s\n' '{"type":"progress","step":"x","message":"hello"}' '{"type":"result","data":{"ok":true}}'"#;
        let client = Client::over_command(
            "test bridge",
            PathBuf::from("sh"),
            vec!["-c".into(), script.into()],
        );
        assert!(client.is_remote());
        let mut seen = Vec::new();
        let data = client
            .call(&Request::Ping, |f| seen.push(f.clone()))
            .unwrap();
        assert_eq!(data, serde_json::json!({ "ok": true }));
        assert_eq!(seen.len(), 1);
        let failing = Client::over_command(
            "test bridge",
            PathBuf::from("sh"),
            vec![
                "-c".into(),
                "echo 'ssh: connect to host h port 22: Connection refused' >&2; exit 255".into(),
            ],
        );
        let err = failing.call(&Request::Ping, |_| {}).unwrap_err();
        assert!(
            err.to_string()
                .contains("through test bridge: ssh: connect to host h"),
            "{err}"
        );
    }

    #[test]
    fn frames_round_trip_as_tagged_json() {
        let f = Frame::Progress(crate::Progress {
            step: "health".into(),
            message: "waiting".into(),
            service: Some("api".into()),
        });
        let s = serde_json::to_string(&f).unwrap();
        assert!(s.contains("\"type\":\"progress\""), "{s}");
        assert_eq!(serde_json::from_str::<Frame>(&s).unwrap(), f);
        let r = Request::Rollback {
            release: Some(3),
            requested_by: "me".into(),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("\"cmd\":\"rollback\""), "{s}");
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
    }
}
