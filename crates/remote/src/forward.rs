//! A server's Docker Engine socket reached through SSH, the way `docker -H ssh://HOST` does
//! it: a Unix socket in a private directory here, and for every connection made to it one
//! channel of the [`Session`]'s master running a command on the server that joins its stdin
//! and stdout to the Engine's socket there (`dockhand remote dial-stdio`, as docker's
//! `docker system dial-stdio`). A local client (bollard) then talks to the server's Engine as
//! to a local one: no Engine port is ever opened on the server, and the SSH options,
//! `~/.ssh/config` and known hosts are the other commands' own.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::RemoteError;
use crate::ssh::Session;

/// A forwarded Engine socket; stops forwarding (and ends its channels) when dropped.
pub struct EngineForward {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    children: Arc<Mutex<Vec<Child>>>,
    last_error: Arc<Mutex<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
    // Removed last: the socket lives in it.
    _dir: tempfile::TempDir,
}

impl EngineForward {
    /// Listens on a fresh socket here; each connection runs `remote` (a shell command line
    /// that joins its stdin and stdout to the Engine) on the server through `session`.
    pub fn start(session: Arc<Session>, remote: String) -> Result<EngineForward, RemoteError> {
        let dir = tempfile::Builder::new()
            .prefix("dockhand-engine-")
            .tempdir()
            .map_err(|e| {
                RemoteError::local(
                    "cannot create a directory for the forwarded Engine socket",
                    "check that the temporary directory ($TMPDIR) is writable",
                    e,
                )
            })?;
        // tempfile makes the directory 0700: only this user reaches the socket.
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).map_err(|e| {
            RemoteError::local(
                format!("cannot listen on {}", socket.display()),
                "check that the temporary directory ($TMPDIR) is writable",
                e,
            )
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let children = Arc::new(Mutex::new(Vec::new()));
        let last_error = Arc::new(Mutex::new(String::new()));
        let thread = {
            let (stop, children, last_error) = (stop.clone(), children.clone(), last_error.clone());
            std::thread::Builder::new()
                .name("engine-forward".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let Ok(conn) = conn else { continue };
                        channel(&session, &remote, conn, &children, &last_error);
                    }
                })
                .map_err(|e| {
                    RemoteError::local(
                        "cannot start the Engine forwarding thread",
                        "this is a bug in dockhand; please report it",
                        e,
                    )
                })?
        };
        Ok(EngineForward {
            socket,
            stop,
            children,
            last_error,
            thread: Some(thread),
            _dir: dir,
        })
    }

    /// The local socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The local socket as a `DOCKER_HOST` value (`unix:///…`).
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// What the server's side of the last channel that failed said on stderr (why the Engine
    /// could not be reached there), if anything.
    pub fn last_error(&self) -> Option<String> {
        let text = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .trim()
            .to_string();
        (!text.is_empty()).then_some(text)
    }
}

impl Drop for EngineForward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for mut child in self
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Joins `conn` to a new channel running `remote` on the server.
fn channel(
    session: &Session,
    remote: &str,
    conn: UnixStream,
    children: &Arc<Mutex<Vec<Child>>>,
    last_error: &Arc<Mutex<String>>,
) {
    let mut cmd = session.remote_command(remote);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            *last_error.lock().unwrap_or_else(|p| p.into_inner()) = format!("cannot run ssh: {e}");
            return;
        }
    };
    let (Some(mut to_server), Some(mut from_server), Some(mut errors)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    let (Ok(mut conn_in), mut conn_out) = (conn.try_clone(), conn) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    {
        let mut all = children.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the channels that ended.
        all.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        all.push(child);
    }
    std::thread::spawn(move || {
        pump(&mut conn_in, &mut to_server);
        // The client is done sending: the server sees EOF (its half of the socket shuts).
        drop(to_server);
    });
    std::thread::spawn(move || {
        pump(&mut from_server, &mut conn_out);
        let _ = conn_out.shutdown(std::net::Shutdown::Both);
    });
    let last_error = last_error.clone();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = errors.read_to_string(&mut text);
        if !text.trim().is_empty() {
            *last_error.lock().unwrap_or_else(|p| p.into_inner()) = text;
        }
    });
}

/// Copies `from` to `to` as the bytes come, until either end closes. A plain read/write loop:
/// `std::io::copy` would splice a socket into ssh's stdin pipe, which ssh's multiplexing
/// client (it hands the pipe to the master) was seen to forward only at the end of the stream.
fn pump(from: &mut impl Read, to: &mut impl Write) {
    let mut buf = [0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|_| to.flush()).is_err() {
                    return;
                }
            }
        }
    }
}

/// The server side of a forward: joins stdin and stdout to the Unix socket at `path` until
/// both directions end. Blocks.
pub fn dial_stdio(path: &Path) -> std::io::Result<()> {
    let stream = UnixStream::connect(path)?;
    let mut to_engine = stream.try_clone()?;
    std::thread::spawn(move || {
        pump(&mut std::io::stdin().lock(), &mut to_engine);
        let _ = to_engine.shutdown(std::net::Shutdown::Write);
    });
    let mut from_engine = stream;
    pump(&mut from_engine, &mut std::io::stdout().lock());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Through a fake `ssh` that runs the command line locally (`sh -c`), what is written to
    /// the forwarded socket reaches the command and its answer comes back.
    #[test]
    fn a_connection_to_the_socket_is_joined_to_a_channel() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("ssh");
        // The last argument is the remote command line.
        std::fs::write(
            &fake,
            "#!/bin/sh\nfor a; do last=$a; done\nexec sh -c \"$last\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let opts = crate::SshOptions {
            program: fake,
            ..crate::SshOptions::default()
        };
        let session = Arc::new(Session::unopened(
            crate::Destination::parse("root@example.invalid").unwrap(),
            opts,
        ));
        let forward = EngineForward::start(session, "tr a-z A-Z".into()).unwrap();
        let mut conn = UnixStream::connect(forward.socket()).unwrap();
        conn.write_all(b"ping engine").unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "PING ENGINE");
        assert!(forward.docker_host().starts_with("unix:///"));
        assert!(forward.last_error().is_none());
    }
}
