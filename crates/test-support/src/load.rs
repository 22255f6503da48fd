//! A keep-alive HTTP load generator for zero-downtime tests: N clients, each on its own
//! connection, sending GETs back to back and counting every answer by status and by the
//! `x-version` header, and every connection error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub ok: u64,
    pub non_2xx: BTreeMap<u16, u64>,
    pub errors: Vec<String>,
    pub by_version: BTreeMap<String, u64>,
    /// Per client (by index): every answer by `x-version`, whatever its status.
    pub by_client: BTreeMap<usize, BTreeMap<String, u64>>,
}

/// What a client records when the server closed a keep-alive connection between two
/// requests: no request was lost (the client opens a new connection).
pub const CLOSED_BETWEEN_REQUESTS: &str = "connection closed by the proxy";

impl LoadReport {
    pub fn failures(&self) -> u64 {
        self.non_2xx.values().sum::<u64>() + self.errors.len() as u64
    }

    /// The errors of requests that failed or were refused, leaving out keep-alive connections
    /// the server closed between two requests (a server that stops closes them all).
    pub fn failed_requests(&self) -> Vec<&str> {
        self.errors
            .iter()
            .map(String::as_str)
            .filter(|e| *e != CLOSED_BETWEEN_REQUESTS)
            .collect()
    }
}

/// Load running on its own thread and runtime.
pub struct Load {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` keep-alive clients sending `GET path` with `Host: host` to `addr`.
    pub fn start(addr: &str, host: &str, path: &str, clients: usize) -> Load {
        Load::spawn(addr, host, path, clients, false)
    }

    /// [`Load::start`] with each client connecting from an address of its own
    /// (`127.0.1.N`, all loopback on Linux), so the proxy sees `clients` different clients.
    pub fn start_spread(addr: &str, host: &str, path: &str, clients: usize) -> Load {
        Load::spawn(addr, host, path, clients, true)
    }

    fn spawn(addr: &str, host: &str, path: &str, clients: usize, spread: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let (addr, host, path) = (addr.to_string(), host.to_string(), path.to_string());
        let (s, r) = (stop.clone(), report.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut set = tokio::task::JoinSet::new();
                for index in 0..clients {
                    let source = spread.then(|| {
                        std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                            0x7f00_0100 + u32::try_from(index).unwrap_or(0),
                        ))
                    });
                    set.spawn(client(
                        index,
                        source,
                        addr.clone(),
                        host.clone(),
                        path.clone(),
                        s.clone(),
                        r.clone(),
                    ));
                }
                while set.join_next().await.is_some() {}
            });
        });
        Load {
            stop,
            report,
            thread: Some(thread),
        }
    }

    /// A snapshot of the counts so far.
    pub fn snapshot(&self) -> LoadReport {
        self.report.lock().unwrap().clone()
    }

    /// Stops the clients and returns the final counts.
    pub fn finish(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.snapshot()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn connect(addr: &str, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr).await;
    };
    let target: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| std::io::Error::other(format!("{addr}: {e}")))?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

async fn client(
    index: usize,
    source: Option<std::net::IpAddr>,
    addr: String,
    host: String,
    path: String,
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
) {
    let err = |msg: String| report.lock().unwrap().errors.push(msg);
    'connect: while !stop.load(Ordering::SeqCst) {
        let stream =
            match tokio::time::timeout(Duration::from_secs(5), connect(&addr, source)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    err(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(_) => {
                    err("connect: timeout".into());
                    continue;
                }
            };
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
            {
                Ok(x) => x,
                Err(e) => {
                    err(format!("handshake: {e}"));
                    continue;
                }
            };
        let driver = tokio::spawn(conn);
        while !stop.load(Ordering::SeqCst) {
            let req = hyper::Request::get(path.as_str())
                .header(hyper::header::HOST, host.as_str())
                .body(Empty::new())
                .expect("request");
            let resp =
                tokio::time::timeout(Duration::from_secs(30), sender.send_request(req)).await;
            let resp = match resp {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    err(format!("request: {e}"));
                    driver.abort();
                    continue 'connect;
                }
                Err(_) => {
                    err("request: no answer within 30s".into());
                    driver.abort();
                    continue 'connect;
                }
            };
            let status = resp.status().as_u16();
            let version = resp
                .headers()
                .get("x-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = resp.into_body().collect().await;
            {
                let mut r = report.lock().unwrap();
                *r.by_client
                    .entry(index)
                    .or_default()
                    .entry(version.clone())
                    .or_default() += 1;
                match body {
                    Err(e) => r.errors.push(format!("body: {e}")),
                    Ok(_) if (200..300).contains(&status) => {
                        r.ok += 1;
                        *r.by_version.entry(version).or_default() += 1;
                    }
                    Ok(_) => *r.non_2xx.entry(status).or_default() += 1,
                }
            }
            if sender.ready().await.is_err() {
                err(CLOSED_BETWEEN_REQUESTS.into());
                continue 'connect;
            }
        }
        driver.abort();
    }
}
