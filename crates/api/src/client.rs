//! The client end of the agent socket: discovery, one request, the stream of frames back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
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

/// A connection to the agent carrying one request.
pub struct Client {
    path: PathBuf,
    /// How long to wait for the next frame before giving up (`None`: forever, for follow).
    pub read_timeout: Option<Duration>,
}

impl Client {
    pub fn new(path: PathBuf) -> Client {
        Client {
            path,
            read_timeout: Some(Duration::from_secs(15 * 60)),
        }
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
