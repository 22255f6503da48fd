//! Starting the proxy and controlling it: [`Proxy::start`] binds and spawns the
//! workers; [`ProxyHandle`] swaps routes, drains backends, reads metrics and
//! shuts down.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

use crate::acme::Challenges;
use crate::backend::Backend;
use crate::config::ProxyConfig;
use crate::metrics::{Counters, ProxyMetrics};
use crate::server::{self, Active, Shared, Tracker, WorkerCtx};
use crate::table::RouteTable;
use crate::tls::{self, CertStore, TlsCertificate};

/// How often `drain` re-checks.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Entry point; see [`Proxy::start`].
pub struct Proxy;

impl Proxy {
    /// Binds `config.listen` now (so "address in use" is returned right away) and
    /// starts `config.workers` worker threads. Works inside or outside a Tokio runtime.
    ///
    /// With `config.https`, also binds its listener (one per worker) and serves TLS
    /// there with the certificates of its store.
    pub fn start(config: ProxyConfig, table: RouteTable) -> io::Result<ProxyHandle> {
        Proxy::start_with(config, table, Inherited::default())
    }

    /// [`Proxy::start`], serving on listening sockets it was handed (socket activation: a
    /// service manager holds them across restarts, so a restart refuses no connection)
    /// instead of binding `config.listen` or the HTTPS address where one is given. Every
    /// worker accepts on the one handed socket.
    pub fn start_with(
        config: ProxyConfig,
        table: RouteTable,
        mut inherited: Inherited,
    ) -> io::Result<ProxyHandle> {
        let workers = config.workers.max(1);
        let listeners = server::listeners(config.listen, workers, inherited.http.take())?;
        let local_addr = listeners[0].local_addr()?;
        let (tls_listeners, https_addr, tls, certificates) = match &config.https {
            Some(https) => {
                let listeners = server::listeners(https.listen, workers, inherited.https.take())?;
                let addr = listeners[0].local_addr()?;
                let tls = tls::server_config(https.certificates.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let acceptor = TlsAcceptor::from(Arc::new(tls));
                let listeners: Vec<_> = listeners.into_iter().map(Some).collect();
                (
                    listeners,
                    Some(addr),
                    Some(acceptor),
                    Some(https.certificates.clone()),
                )
            }
            None => ((0..workers).map(|_| None).collect(), None, None, None),
        };
        let challenges = match &certificates {
            Some(store) => store.challenges().clone(),
            None => Arc::default(),
        };
        let access_log = match &config.access_log {
            Some(c) => Some(crate::access_log::AccessLog::start(c)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            table: ArcSwap::from_pointee(Active::new(Arc::new(table), certificates.as_deref())),
            config,
            tls,
            https_port: https_addr.map(|a| a.port()),
            challenges,
            maintenance: arc_swap::ArcSwapOption::empty(),
            access_log,
            load: crate::server::Load::new(crate::server::connection_budget()),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(None);
        let (open_tx, open_rx) = watch::channel(!shared.config.start_closed);
        let mut counters = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        let pairs = listeners.into_iter().zip(tls_listeners);
        for (i, (listener, tls_listener)) in pairs.enumerate() {
            let ctx = Arc::new(WorkerCtx {
                shared: shared.clone(),
                counters: Arc::new(Counters::default()),
                tracker: Arc::new(Tracker::default()),
            });
            counters.push(ctx.counters.clone());
            let rx = shutdown_rx.clone();
            let open = open_rx.clone();
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let thread = std::thread::Builder::new()
                .name(format!("dockhand-proxy-{i}"))
                .spawn(move || {
                    runtime.block_on(server::run_worker(listener, tls_listener, ctx, rx, open));
                    drop(runtime);
                    let _ = done_tx.send(());
                });
            match thread {
                Ok(t) => threads.push((t, done_rx)),
                Err(e) => {
                    let _ = shutdown_tx.send(Some(Duration::ZERO));
                    return Err(e);
                }
            }
        }
        Ok(ProxyHandle {
            inner: Arc::new(Inner {
                shared,
                local_addr,
                https_addr,
                certificates,
                counters,
                shutdown_tx,
                open_tx,
                retired: Mutex::new(Vec::new()),
                write: Mutex::new(()),
                threads: Mutex::new(threads),
            }),
        })
    }
}

/// Listening sockets handed to [`Proxy::start_with`] instead of bound by it.
#[derive(Debug, Default)]
pub struct Inherited {
    /// Serves plain HTTP in place of `ProxyConfig::listen`.
    pub http: Option<std::net::TcpListener>,
    /// Serves HTTPS in place of `HttpsConfig::listen` (ignored without HTTPS).
    pub https: Option<std::net::TcpListener>,
}

/// Controls a running proxy; cheap to clone.
#[derive(Clone)]
pub struct ProxyHandle {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    https_addr: Option<SocketAddr>,
    certificates: Option<Arc<CertStore>>,
    counters: Vec<Arc<Counters>>,
    shutdown_tx: watch::Sender<Option<Duration>>,
    /// Whether the workers accept connections (`ProxyConfig::start_closed`).
    open_tx: watch::Sender<bool>,
    /// Tables replaced by `set_routes` that requests may still be selecting from.
    retired: Mutex<Vec<Arc<Active>>>,
    /// Serialises `set_routes` and `set_certificates` (never taken by a request).
    write: Mutex<()>,
    threads: Mutex<Vec<(JoinHandle<()>, oneshot::Receiver<()>)>>,
}

/// Result of [`ProxyHandle::drain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainOutcome {
    /// No request or tunnel uses the backends any more.
    pub idle: bool,
    /// Requests and tunnels still using them (plus requests still selecting from
    /// a replaced table) when `drain` returned.
    pub remaining: usize,
}

impl ProxyHandle {
    /// The bound address (with the real port when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The bound HTTPS address, when the proxy serves HTTPS.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.inner.https_addr
    }

    /// Replaces every certificate the HTTPS listener serves (the first is the
    /// default); handshakes from now on use them. Returns false, changing nothing,
    /// when the proxy was started without HTTPS.
    pub fn set_certificates(&self, certificates: Vec<TlsCertificate>) -> bool {
        match &self.inner.certificates {
            Some(store) => {
                let _w = lock(&self.inner.write);
                store.replace(certificates);
                // Which hosts redirect and send HSTS follows the names served.
                let table = self.inner.shared.table.load().table.clone();
                self.publish(Active::new(table, Some(store)));
                true
            }
            None => false,
        }
    }

    /// The ACME challenges the proxy answers (HTTP-01 on both listeners, before
    /// routing; TLS-ALPN-01 on the HTTPS listener).
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.inner.shared.challenges
    }

    /// The certificates served now (empty without HTTPS).
    pub fn certificates(&self) -> Vec<TlsCertificate> {
        self.inner
            .certificates
            .as_ref()
            .map_or_else(Vec::new, |s| s.certificates())
    }

    /// Replaces the routing table atomically; returns the previous one.
    pub fn set_routes(&self, table: RouteTable) -> Arc<RouteTable> {
        let _w = lock(&self.inner.write);
        let active = Active::new(Arc::new(table), self.inner.certificates.as_deref());
        self.publish(active)
    }

    /// Publishes a new table generation; returns the previous table. The old
    /// generation is kept until no request selects from it (see `drain`).
    fn publish(&self, active: Active) -> Arc<RouteTable> {
        let old = self.inner.shared.table.swap(Arc::new(active));
        let previous = old.table.clone();
        lock(&self.inner.retired).push(old);
        previous
    }

    /// The current routing table.
    /// Turns maintenance mode on (the routes of its services answer 503 with its page) or
    /// off (`None`). ACME challenges are still answered.
    pub fn set_maintenance(&self, maintenance: Option<crate::policy::Maintenance>) {
        self.inner
            .shared
            .maintenance
            .store(maintenance.map(Arc::new));
    }

    /// The maintenance mode in force.
    pub fn maintenance(&self) -> Option<crate::policy::Maintenance> {
        self.inner.shared.maintenance.load().as_deref().cloned()
    }

    pub fn routes(&self) -> Arc<RouteTable> {
        self.inner.shared.table.load().table.clone()
    }

    /// Waits until no request or upgraded connection uses any of `backends`, and no
    /// request is still choosing from a table replaced by `set_routes`; polls every
    /// 20 ms up to `timeout`.
    pub async fn drain(&self, backends: &[Arc<Backend>], timeout: Duration) -> DrainOutcome {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let selecting = {
                let mut retired = lock(&self.inner.retired);
                // A request's arc-swap guard on a replaced table counts as a strong
                // reference (arc-swap settles its debts on swap).
                retired.retain(|a| Arc::strong_count(a) > 1);
                retired.len()
            };
            fence(Ordering::Acquire);
            let inflight: usize = backends.iter().map(|b| b.inflight()).sum();
            if selecting == 0 && inflight == 0 {
                return DrainOutcome {
                    idle: true,
                    remaining: 0,
                };
            }
            if tokio::time::Instant::now() >= deadline {
                return DrainOutcome {
                    idle: false,
                    remaining: inflight + selecting,
                };
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }

    /// Starts accepting connections, for a proxy started with `start_closed` (those that
    /// arrived meanwhile are served now, in the order the kernel queued them). Idempotent.
    pub fn open(&self) {
        self.inner.open_tx.send_replace(true);
    }

    /// Stops accepting on every worker, lets in-flight requests finish for up to
    /// `grace`, then closes what is left and joins the worker threads.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown_tx.send_replace(Some(grace));
        let threads = std::mem::take(&mut *lock(&self.inner.threads));
        for (thread, done) in threads {
            let _ = done.await;
            let _ = thread.join();
        }
    }

    /// Totals over all workers.
    pub fn metrics(&self) -> ProxyMetrics {
        let mut m = ProxyMetrics::default();
        for c in &self.inner.counters {
            c.add_to(&mut m);
        }
        m
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
