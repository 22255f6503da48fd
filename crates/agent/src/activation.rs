//! Socket activation: listening sockets handed to the agent by its service manager.
//!
//! With `dockhand.socket` (written by `dockhand setup`), systemd binds the proxy's addresses
//! and keeps them bound across agent restarts, passing them by the `LISTEN_FDS` protocol
//! (descriptors from 3, `LISTEN_PID` naming the process they are for). Connections that
//! arrive while no agent runs wait in the socket's backlog instead of being refused, and the
//! restarted agent answers them once its release is back (it starts with the proxy closed).
//!
//! The sockets are matched to `[proxy] listen` and `https_listen` by their bound address; an
//! address without a handed socket is bound by the agent as usual, and a handed socket that
//! matches no address is reported and closed.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

/// The sockets handed to this process, taken once by the proxy as it starts.
#[derive(Clone, Default)]
pub struct Handed {
    sockets: Arc<Mutex<Vec<(SocketAddr, TcpListener)>>>,
}

impl std::fmt::Debug for Handed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.addresses()).finish()
    }
}

impl Handed {
    /// Takes the sockets of the `LISTEN_FDS` protocol from the environment and removes its
    /// variables, so no child process sees them. Call it before any thread starts (the
    /// environment is process-wide). A descriptor that is not a listening TCP socket is
    /// left alone with a warning.
    pub fn from_env() -> Handed {
        let mut fds = listenfd::ListenFd::from_env();
        for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
            std::env::remove_var(var);
        }
        let mut sockets = Vec::new();
        for i in 0..fds.len() {
            match fds.take_tcp_listener(i) {
                Ok(Some(socket)) => match socket.local_addr() {
                    Ok(addr) => {
                        // Not inherited by the processes the agent starts.
                        let _ = nix::fcntl::fcntl(
                            socket.as_fd(),
                            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                        );
                        sockets.push((addr, socket));
                    }
                    Err(e) => tracing::warn!(
                        "handed socket {} has no address ({e}); it is not used",
                        i + 3
                    ),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    "handed descriptor {} is not a TCP listening socket ({e}); it is not used",
                    i + 3
                ),
            }
        }
        Handed::new(sockets)
    }

    /// Sockets handed by other means (tests).
    pub fn new(sockets: Vec<(SocketAddr, TcpListener)>) -> Handed {
        Handed {
            sockets: Arc::new(Mutex::new(sockets)),
        }
    }

    /// The addresses of the sockets not yet taken.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.lock().iter().map(|(a, _)| *a).collect()
    }

    /// The socket bound to `addr`, if one was handed: the same address, or for an
    /// unspecified address (`0.0.0.0`, `[::]`) a socket on any unspecified address of the
    /// same port (systemd's `ListenStream=80` binds `[::]:80`, which takes IPv4 too).
    pub fn take(&self, addr: SocketAddr) -> Option<TcpListener> {
        let mut sockets = self.lock();
        let i = sockets.iter().position(|(a, _)| *a == addr).or_else(|| {
            sockets.iter().position(|(a, _)| {
                addr.ip().is_unspecified() && a.ip().is_unspecified() && a.port() == addr.port()
            })
        })?;
        Some(sockets.remove(i).1)
    }

    /// Closes the sockets nothing took, with a warning naming them and what to do.
    pub fn close_rest(&self, config_path: &std::path::Path) {
        let rest: Vec<_> = std::mem::take(&mut *self.lock());
        for (addr, _) in rest {
            tracing::warn!(
                "the service manager handed a socket on {addr}, which neither `[proxy] listen` nor `https_listen` of {} names; it is closed. Run `dockhand setup` again to rewrite dockhand.socket, or fix the addresses",
                config_path.display()
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(SocketAddr, TcpListener)>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }
}
