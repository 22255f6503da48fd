//! The proxy as a subsystem: bound when the agent starts (from the committed release's
//! `[proxy]` table, else the file's — read only then), with the certificates of
//! `[proxy] certificates` loaded; on stop it stops accepting and lets in-flight requests
//! finish for the serving release's drain timeout.

use std::sync::Arc;
use std::time::Duration;

use dockhand_config::AppConfig;
use dockhand_proxy::{
    CertStore, HttpsConfig, Inherited, Proxy, ProxyConfig, ProxyHandle, RouteTable,
};

use crate::activation::Handed;
use crate::error::{AgentError, Result};
use crate::fleet::Fleet;
use crate::subsystem::{BoxFuture, Context, Subsystem};
use crate::tls;

/// The drain grace when nothing serves.
const DEFAULT_GRACE: Duration = Duration::from_secs(10);

pub struct ProxyService {
    handle: ProxyHandle,
    fleet: Fleet,
    /// Certificates that could not be loaded: the proxy serves, degraded.
    problems: Vec<String>,
}

impl ProxyService {
    /// Binds the proxy of `config` with an empty routing table; returns it with what loading
    /// the certificates gave.
    /// Addresses among `handed` sockets (socket activation) are served on those; the rest
    /// are bound here.
    pub fn bind(
        config: &AppConfig,
        fleet: Fleet,
        access_log: &std::path::Path,
        handed: &Handed,
    ) -> Result<(ProxyService, tls::LoadedCertificates)> {
        let p = &config.proxy;
        let defaults = ProxyConfig::default();
        let certificates = tls::load(p, crate::clock::now());
        let https = p.https_listen.map(|listen| HttpsConfig {
            listen,
            certificates: Arc::new(CertStore::new(certificates.serve.clone())),
        });
        let proxy_config = ProxyConfig {
            listen: p.listen,
            https,
            workers: p.workers.unwrap_or(defaults.workers),
            max_request_body: p.max_request_body,
            client_header_timeout: p.client_header_timeout,
            upstream_connect_timeout: p.upstream_connect_timeout,
            upstream_response_timeout: p.upstream_response_timeout,
            compression: p
                .compression
                .map(|min_size| dockhand_proxy::Compression { min_size }),
            access_log: p
                .access_log
                .as_ref()
                .map(|a| dockhand_proxy::AccessLogConfig {
                    path: (a.output != "stdout").then(|| access_log.to_path_buf()),
                    format: if a.format == "combined" {
                        dockhand_proxy::AccessFormat::Combined
                    } else {
                        dockhand_proxy::AccessFormat::Json
                    },
                    max_bytes: a.max_size,
                    keep: a.keep as usize,
                }),
            error_pages: p
                .error_pages
                .iter()
                .filter_map(|(status, path)| match std::fs::read(path) {
                    Ok(page) => Some((*status, bytes::Bytes::from(page))),
                    Err(e) => {
                        tracing::warn!("error page {}: {e}", path.display());
                        None
                    }
                })
                .collect(),
            trusted_proxies: p
                .trusted_proxies
                .iter()
                .filter_map(|c| dockhand_proxy::Cidr::parse(c))
                .collect(),
            // The agent opens it once the committed release's routes are back (or after
            // `OPEN_AT_THE_LATEST`): a request arriving during a restart waits for them instead
            // of meeting an empty routing table (404) or instances not yet started (503).
            start_closed: true,
            ..defaults
        };
        let inherited = Inherited {
            http: handed.take(p.listen),
            https: p.https_listen.and_then(|a| handed.take(a)),
        };
        for (what, socket) in [("HTTP", &inherited.http), ("HTTPS", &inherited.https)] {
            if let Some(addr) = socket.as_ref().and_then(|s| s.local_addr().ok()) {
                tracing::info!("the proxy serves {what} on {addr}, a socket handed over by the service manager");
            }
        }
        handed.close_rest(&config.config_path);
        let handle = Proxy::start_with(proxy_config, RouteTable::empty(), inherited).map_err(|e| {
            let addresses = match p.https_listen {
                Some(https) => format!("{} (HTTP) or {https} (HTTPS)", p.listen),
                None => p.listen.to_string(),
            };
            AgentError::environment(format!(
                "failed to listen on {addresses} for the proxy: {e}; is another server using it? set `[proxy] listen` / `https_listen` in {}",
                config.config_path.display()
            ))
            .with_source(e)
        })?;
        let service = ProxyService {
            handle,
            fleet,
            problems: certificates.problems.clone(),
        };
        Ok((service, certificates))
    }

    pub fn handle(&self) -> &ProxyHandle {
        &self.handle
    }

    fn grace(&self) -> Duration {
        self.fleet
            .serving_config()
            .map(|c| c.proxy.drain_timeout)
            .unwrap_or(DEFAULT_GRACE)
    }
}

impl Subsystem for ProxyService {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn run(self: Arc<Self>, mut ctx: Context) -> BoxFuture<Result<()>> {
        Box::pin(async move {
            if self.problems.is_empty() {
                ctx.ready();
            } else {
                ctx.degraded(self.problems.join("; "));
            }
            ctx.shutdown.wait().await;
            self.handle.shutdown(self.grace()).await;
            Ok(())
        })
    }

    fn stop_timeout(&self) -> Duration {
        self.grace() + Duration::from_secs(5)
    }
}
