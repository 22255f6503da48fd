//! `/metrics`: the monitor's figures in Prometheus' text exposition format (version 0.0.4),
//! rendered from the last sample (`render`, pure), and the small HTTP server that answers
//! scrapes on `[monitor] metrics_listen` (loopback by default: expose it through an SSH
//! tunnel or a scraper on the same host).
//!
//! Names follow `dockhand_<thing>_<unit>[_total]`. Written by hand rather than through
//! `prometheus-client`'s registry: our figures are snapshots the monitor already holds, not
//! live metric objects, and the format is a few lines of rules, checked in the tests by
//! Prometheus' own `promtool check metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dockhand_proxy::{BackendSnapshot, ProxyMetrics, LATENCY_BUCKETS_MS};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{HostSample, InstanceSample, MonitorHandle};
use crate::subsystem::Shutdown;

/// What `render` writes.
pub(super) struct Exposition<'a> {
    pub routes: &'a BTreeMap<(String, String), BackendSnapshot>,
    pub proxy: &'a ProxyMetrics,
    pub instances: &'a [InstanceSample],
    pub host: &'a HostSample,
    pub certificates: &'a [(String, i64)],
    pub samples: u64,
    pub dropped_series: u64,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub(super) fn render(e: &Exposition<'_>) -> String {
    let mut out = String::with_capacity(4096);
    let o = &mut out;

    header(
        o,
        "dockhand_proxy_requests_total",
        "counter",
        "Requests the proxy forwarded, by service, route and status class.",
    );
    for ((service, route), s) in e.routes {
        for (i, class) in CLASSES.iter().enumerate() {
            line(
                o,
                "dockhand_proxy_requests_total",
                &[("service", service), ("route", route), ("code", class)],
                s.status[i] as f64,
            );
        }
    }
    header(
        o,
        "dockhand_proxy_request_duration_seconds",
        "histogram",
        "Time until the upstream's response head, by service and route.",
    );
    for ((service, route), s) in e.routes {
        let labels = [("service", service.as_str()), ("route", route.as_str())];
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS_MS.iter().enumerate() {
            cumulative += s.latency[i];
            let le = format!("{}", *bound as f64 / 1000.0);
            line(
                o,
                "dockhand_proxy_request_duration_seconds_bucket",
                &[labels[0], labels[1], ("le", &le)],
                cumulative as f64,
            );
        }
        let count: u64 = s.latency.iter().sum();
        line(
            o,
            "dockhand_proxy_request_duration_seconds_bucket",
            &[labels[0], labels[1], ("le", "+Inf")],
            count as f64,
        );
        line(
            o,
            "dockhand_proxy_request_duration_seconds_sum",
            &labels,
            s.latency_sum_us as f64 / 1e6,
        );
        line(
            o,
            "dockhand_proxy_request_duration_seconds_count",
            &labels,
            count as f64,
        );
    }
    header(o, "dockhand_proxy_upstream_errors_total", "counter", "Requests that failed because of the upstream (connect, timeout, protocol), by service and route.");
    for ((service, route), s) in e.routes {
        line(
            o,
            "dockhand_proxy_upstream_errors_total",
            &[("service", service), ("route", route)],
            s.upstream_errors as f64,
        );
    }
    header(o, "dockhand_proxy_responses_total", "counter", "Every response of the proxy (forwarded or its own: redirects, 404 without a route, 503 without a backend), by status class.");
    let p = e.proxy;
    for (class, n) in CLASSES.iter().zip([
        p.status_1xx,
        p.status_2xx,
        p.status_3xx,
        p.status_4xx,
        p.status_5xx,
    ]) {
        line(
            o,
            "dockhand_proxy_responses_total",
            &[("code", class)],
            n as f64,
        );
    }

    header(
        o,
        "dockhand_instance_up",
        "gauge",
        "1 while the instance runs.",
    );
    for i in e.instances {
        line(
            o,
            "dockhand_instance_up",
            &inst(i),
            f64::from(u8::from(i.running)),
        );
    }
    header(o, "dockhand_instance_healthy", "gauge", "The instance's last health verdict (1 healthy, 0 not; absent before the first or without a check).");
    for i in e.instances {
        if let Some(h) = i.healthy {
            line(
                o,
                "dockhand_instance_healthy",
                &inst(i),
                f64::from(u8::from(h)),
            );
        }
    }
    header(
        o,
        "dockhand_instance_restarts_total",
        "counter",
        "Times the instance was started again after it exited.",
    );
    for i in e.instances {
        line(
            o,
            "dockhand_instance_restarts_total",
            &inst(i),
            f64::from(i.restarts),
        );
    }
    header(
        o,
        "dockhand_instance_cpu_seconds_total",
        "counter",
        "CPU time of the instance's main process (user and system).",
    );
    for i in e.instances {
        if let Some(c) = i.cpu_seconds {
            line(o, "dockhand_instance_cpu_seconds_total", &inst(i), c);
        }
    }
    header(
        o,
        "dockhand_instance_memory_bytes",
        "gauge",
        "Resident memory of the instance's main process.",
    );
    for i in e.instances {
        if let Some(m) = i.rss_bytes {
            line(o, "dockhand_instance_memory_bytes", &inst(i), m as f64);
        }
    }

    let h = e.host;
    header(
        o,
        "dockhand_host_cpu_seconds_total",
        "counter",
        "CPU time of the host, busy or idle, over all cores.",
    );
    let hz = 100.0;
    line(
        o,
        "dockhand_host_cpu_seconds_total",
        &[("mode", "busy")],
        h.cpu_busy as f64 / hz,
    );
    line(
        o,
        "dockhand_host_cpu_seconds_total",
        &[("mode", "idle")],
        h.cpu_total.saturating_sub(h.cpu_busy) as f64 / hz,
    );
    header(
        o,
        "dockhand_host_memory_bytes",
        "gauge",
        "Host memory: total and available; swap: total and free.",
    );
    line(
        o,
        "dockhand_host_memory_bytes",
        &[("kind", "total")],
        h.mem_total as f64,
    );
    line(
        o,
        "dockhand_host_memory_bytes",
        &[("kind", "available")],
        h.mem_available as f64,
    );
    line(
        o,
        "dockhand_host_memory_bytes",
        &[("kind", "swap_total")],
        h.swap_total as f64,
    );
    line(
        o,
        "dockhand_host_memory_bytes",
        &[("kind", "swap_free")],
        h.swap_free as f64,
    );
    header(
        o,
        "dockhand_host_load",
        "gauge",
        "Load average over 1, 5 and 15 minutes.",
    );
    for (period, v) in [("1m", h.load1), ("5m", h.load5), ("15m", h.load15)] {
        line(o, "dockhand_host_load", &[("period", period)], v);
    }
    header(
        o,
        "dockhand_host_disk_bytes",
        "gauge",
        "Disk size and space available, per mount.",
    );
    for d in &h.disks {
        line(
            o,
            "dockhand_host_disk_bytes",
            &[("mount", &d.mount), ("kind", "total")],
            d.total as f64,
        );
        line(
            o,
            "dockhand_host_disk_bytes",
            &[("mount", &d.mount), ("kind", "available")],
            d.available as f64,
        );
    }
    header(
        o,
        "dockhand_host_disk_inodes",
        "gauge",
        "Inodes and inodes free, per mount.",
    );
    for d in &h.disks {
        line(
            o,
            "dockhand_host_disk_inodes",
            &[("mount", &d.mount), ("kind", "total")],
            d.inodes_total as f64,
        );
        line(
            o,
            "dockhand_host_disk_inodes",
            &[("mount", &d.mount), ("kind", "free")],
            d.inodes_free as f64,
        );
    }
    header(
        o,
        "dockhand_host_network_bytes_total",
        "counter",
        "Bytes received and sent by every interface but loopback.",
    );
    line(
        o,
        "dockhand_host_network_bytes_total",
        &[("direction", "receive")],
        h.net_rx as f64,
    );
    line(
        o,
        "dockhand_host_network_bytes_total",
        &[("direction", "transmit")],
        h.net_tx as f64,
    );

    header(
        o,
        "dockhand_certificate_days_left",
        "gauge",
        "Days until each served certificate ends.",
    );
    for (host, days) in e.certificates {
        line(
            o,
            "dockhand_certificate_days_left",
            &[("host", host)],
            *days as f64,
        );
    }
    header(
        o,
        "dockhand_monitor_samples_total",
        "counter",
        "Samples the monitor took since the agent started.",
    );
    line(o, "dockhand_monitor_samples_total", &[], e.samples as f64);
    header(
        o,
        "dockhand_monitor_dropped_samples_total",
        "counter",
        "Samples of series refused because the metric store was full.",
    );
    line(
        o,
        "dockhand_monitor_dropped_samples_total",
        &[],
        e.dropped_series as f64,
    );
    out
}

fn inst(i: &InstanceSample) -> [(&str, &str); 2] {
    [("service", &i.service), ("instance", &i.instance)]
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Serves `GET /metrics` on `addr` until `shutdown`; returns the bound address.
/// Serves `GET /metrics` on `addr`. With `token` (the listener behind `[monitor]
/// metrics_route`, reached through the proxy), every path answers the metrics, and only to a
/// request with `Authorization: Bearer TOKEN`.
pub(super) async fn serve(
    addr: SocketAddr,
    handle: MonitorHandle,
    mut shutdown: Shutdown,
    token: Option<Arc<String>>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("metrics listener: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = shutdown.wait() => return,
            };
            let handle = handle.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handle = handle.clone();
                    let token = token.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(match token {
                            Some(t) => answer_with_token(&req, &handle, &t),
                            None => answer(&req, &handle),
                        })
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                // A scrape is one small answer: a connection lives at most this long.
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            });
        }
    });
    Ok((bound, task))
}

/// The route's answer: 401 without the right bearer token, else the metrics at any path.
fn answer_with_token<B>(
    req: &Request<B>,
    handle: &MonitorHandle,
    token: &str,
) -> Response<Full<Bytes>> {
    if !bearer_matches(req.headers().get(http::header::AUTHORIZATION), token) {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"401 unauthorized: send Authorization: Bearer <token>\n",
        )));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    if !matches!(req.method().as_str(), "GET" | "HEAD") {
        let mut r = Response::new(Full::new(Bytes::from_static(b"only GET\n")));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        return r;
    }
    let mut response = Response::new(Full::new(Bytes::from(handle.render_prometheus())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Whether `header` is `Bearer TOKEN`, compared in constant time.
fn bearer_matches(header: Option<&http::HeaderValue>, token: &str) -> bool {
    let Some(given) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    if a.len() != b.len() || b.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer<B>(req: &Request<B>, handle: &MonitorHandle) -> Response<Full<Bytes>> {
    let (status, kind, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET" | "HEAD", "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            handle.render_prometheus(),
        ),
        ("GET" | "HEAD", _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(kind),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_needs_the_bearer_token() {
        let h = |v: &str| http::HeaderValue::from_str(v).unwrap();
        assert!(bearer_matches(Some(&h("Bearer s3cret")), "s3cret"));
        assert!(!bearer_matches(Some(&h("Bearer s3creT")), "s3cret"));
        assert!(!bearer_matches(Some(&h("Bearer s3cret2")), "s3cret"));
        assert!(!bearer_matches(Some(&h("Basic s3cret")), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
        assert!(!bearer_matches(Some(&h("Bearer ")), ""));
    }

    #[test]
    fn renders_counters_histograms_and_escaped_labels() {
        let mut routes = BTreeMap::new();
        let mut s = BackendSnapshot {
            status: [0, 3, 0, 1, 2],
            ..Default::default()
        };
        s.latency[0] = 4;
        s.latency[3] = 2;
        s.latency_sum_us = 30_000;
        routes.insert(("web".to_string(), "shop\"x\"/api".to_string()), s);
        let text = render(&Exposition {
            routes: &routes,
            proxy: &ProxyMetrics::default(),
            instances: &[],
            host: &HostSample::default(),
            certificates: &[("example.org".into(), 42)],
            samples: 3,
            dropped_series: 0,
        });
        assert!(text.contains("dockhand_proxy_requests_total{service=\"web\",route=\"shop\\\"x\\\"/api\",code=\"5xx\"} 2\n"), "{text}");
        assert!(text.contains("le=\"0.001\"} 4\n"), "{text}");
        assert!(text.contains("le=\"0.01\"} 6\n"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 6\n"), "{text}");
        assert!(text.contains("dockhand_proxy_request_duration_seconds_sum{service=\"web\",route=\"shop\\\"x\\\"/api\"} 0.03\n"), "{text}");
        assert!(text.contains("dockhand_certificate_days_left{host=\"example.org\"} 42\n"));
        assert!(text.contains("# TYPE dockhand_proxy_request_duration_seconds histogram\n"));
    }
}
