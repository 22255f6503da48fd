//! Health probing: one HTTP GET (or TCP connect) against an instance, and the prober task
//! that repeats it on the service's interval and turns results into a healthy flag.
//!
//! The prober is the only writer of an instance's health and of its backend's `healthy` flag,
//! so the proxy's round-robin skips an instance as soon as it fails `unhealthy_threshold`
//! probes in a row, and takes it back after `healthy_threshold` successes.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dockhand_config::HealthCheck;
use dockhand_proxy::Backend;
use http_body_util::{BodyExt, Empty};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How an instance's health is judged.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// GET `path`, expect `status`.
    Http { path: String, status: u16 },
    /// The port accepts a TCP connection (a web service without a health check).
    Tcp,
    /// A command exits 0 (run in the container, or in the service's environment).
    Command(CommandProbe),
}

/// What a command probe runs: given a timeout, the command's exit code (None: killed or
/// timed out) and the end of its output.
pub type CommandRunner = Arc<
    dyn Fn(Duration) -> Pin<Box<dyn Future<Output = Result<(Option<i32>, String), String>> + Send>>
        + Send
        + Sync,
>;

/// A health command and how to run it.
#[derive(Clone)]
pub struct CommandProbe {
    pub display: String,
    pub run: CommandRunner,
}

impl std::fmt::Debug for CommandProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommandProbe({:?})", self.display)
    }
}

#[derive(Debug, Clone)]
pub struct ProbePlan {
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Failures this soon after the prober starts do not count.
    pub start_period: Duration,
}

impl ProbePlan {
    /// The plan of a web service (HTTP or TCP).
    pub fn for_service(health: Option<&HealthCheck>) -> ProbePlan {
        match health {
            Some(h) => ProbePlan {
                kind: ProbeKind::Http {
                    path: h.path.clone(),
                    status: h.expected_status,
                },
                ..Self::timing(h)
            },
            None => ProbePlan {
                kind: ProbeKind::Tcp,
                interval: Duration::from_secs(2),
                timeout: Duration::from_secs(2),
                healthy_threshold: 1,
                unhealthy_threshold: 3,
                start_period: Duration::ZERO,
            },
        }
    }

    /// The plan of a health command.
    pub fn for_command(h: &HealthCheck, probe: CommandProbe) -> ProbePlan {
        ProbePlan {
            kind: ProbeKind::Command(probe),
            ..Self::timing(h)
        }
    }

    fn timing(h: &HealthCheck) -> ProbePlan {
        ProbePlan {
            kind: ProbeKind::Tcp,
            interval: h.interval,
            timeout: h.timeout,
            healthy_threshold: h.healthy_threshold.max(1),
            unhealthy_threshold: h.unhealthy_threshold.max(1),
            start_period: h.start_period,
        }
    }
}

/// The result of one probe, kept for `status` and for gate-failure reports.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub ok: bool,
    pub at: String,
    pub detail: String,
    pub status: Option<u16>,
}

/// What the prober knows of one instance.
#[derive(Debug, Clone, Default)]
pub struct HealthState {
    /// `None` until the first threshold is crossed either way.
    pub healthy: Option<bool>,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    pub recent: VecDeque<ProbeResult>,
}

const RECENT: usize = 5;

/// Shared health of one instance; cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Mutex<HealthState>>,
    changed: watch::Sender<u64>,
}

impl Health {
    pub fn new() -> Health {
        Health {
            inner: Arc::new(Mutex::new(HealthState::default())),
            changed: watch::channel(0).0,
        }
    }

    pub fn snapshot(&self) -> HealthState {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The current verdict (`None` until the first), without copying the probe history.
    pub fn verdict(&self) -> Option<bool> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).healthy
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Keeps a result for display without counting it.
    fn note(&self, result: ProbeResult) {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        st.recent.push_back(result);
        while st.recent.len() > RECENT {
            st.recent.pop_front();
        }
        drop(st);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Records one result; returns the new healthy verdict if it changed.
    fn record(&self, plan: &ProbePlan, result: ProbeResult) -> Option<bool> {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if result.ok {
            st.consecutive_ok += 1;
            st.consecutive_fail = 0;
        } else {
            st.consecutive_fail += 1;
            st.consecutive_ok = 0;
        }
        st.recent.push_back(result);
        while st.recent.len() > RECENT {
            st.recent.pop_front();
        }
        let verdict = if st.consecutive_ok >= plan.healthy_threshold {
            Some(true)
        } else if st.consecutive_fail >= plan.unhealthy_threshold {
            Some(false)
        } else {
            st.healthy
        };
        let changed = verdict != st.healthy;
        st.healthy = verdict;
        drop(st);
        self.changed.send_modify(|n| *n += 1);
        changed.then_some(verdict.unwrap_or(false))
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

/// Probes `addr` once according to `plan`.
pub async fn probe(addr: SocketAddr, plan: &ProbePlan) -> ProbeResult {
    if let ProbeKind::Command(cmd) = &plan.kind {
        return probe_command(cmd, plan.timeout).await;
    }
    let outcome = tokio::time::timeout(plan.timeout, probe_inner(addr, &plan.kind)).await;
    let at = dockhand_state::now();
    match outcome {
        Ok(Ok((status, detail))) => ProbeResult {
            ok: match &plan.kind {
                ProbeKind::Http { status: want, .. } => status == Some(*want),
                ProbeKind::Tcp | ProbeKind::Command(_) => true,
            },
            at,
            detail,
            status,
        },
        Ok(Err(e)) => ProbeResult {
            ok: false,
            at,
            detail: e,
            status: None,
        },
        Err(_) => ProbeResult {
            ok: false,
            at,
            detail: format!("no answer within {}", humanize(plan.timeout)),
            status: None,
        },
    }
}

/// Runs a health command once (its runner enforces the timeout; a margin guards a stuck
/// engine).
async fn probe_command(cmd: &CommandProbe, timeout: Duration) -> ProbeResult {
    let outcome = tokio::time::timeout(timeout + Duration::from_secs(5), (cmd.run)(timeout)).await;
    let at = dockhand_state::now();
    let (ok, detail) = match outcome {
        Ok(Ok((Some(0), _))) => (true, format!("`{}` exited with 0", cmd.display)),
        Ok(Ok((Some(code), out))) => (
            false,
            format!("`{}` exited with {code}{}", cmd.display, tail(&out)),
        ),
        Ok(Ok((None, out))) => (
            false,
            format!(
                "`{}` did not finish within {}{}",
                cmd.display,
                humanize(timeout),
                tail(&out)
            ),
        ),
        Ok(Err(e)) => (false, format!("`{}` could not run: {e}", cmd.display)),
        Err(_) => (
            false,
            format!("`{}`: no answer within {}", cmd.display, humanize(timeout)),
        ),
    };
    ProbeResult {
        ok,
        at,
        detail,
        status: None,
    }
}

/// The last line of a command's output, for a probe's detail.
fn tail(output: &str) -> String {
    match output.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => {
            let line: String = line.trim().chars().take(200).collect();
            format!(": {line}")
        }
        None => String::new(),
    }
}

async fn probe_inner(addr: SocketAddr, kind: &ProbeKind) -> Result<(Option<u16>, String), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::ConnectionRefused {
            " (nothing listens there yet: does the service listen on $PORT?)"
        } else {
            ""
        };
        format!("connect to {addr}: {e}{hint}")
    })?;
    let path = match kind {
        ProbeKind::Tcp | ProbeKind::Command(_) => {
            return Ok((None, format!("{addr} accepts connections")))
        }
        ProbeKind::Http { path, .. } => path,
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| format!("http handshake with {addr}: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(path.as_str())
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::USER_AGENT, "dockhand-health")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| format!("bad health path {path:?}: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    let mut incoming = resp.into_body();
    while body.len() < 200 {
        match incoming.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    body.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    driver.abort();
    body.truncate(200);
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    let mut detail = format!("GET {path} → {status}");
    if !text.is_empty() {
        detail.push_str(&format!(": {}", text.replace(['\n', '\r'], " ")));
    }
    if status == 404 {
        detail.push_str(&format!(
            " (the service has no route {path}: is `health.path` right?)"
        ));
    }
    Ok((Some(status), detail))
}

/// Health routes apps commonly have, tried when the configured one answers 404.
const COMMON_HEALTH_ROUTES: &[&str] = &[
    "/health",
    "/healthz",
    "/api/health",
    "/api/healthz",
    "/health/ready",
    "/ready",
    "/readyz",
    "/livez",
    "/up",
    "/ping",
    "/status",
    "/api/heartbeat",
    "/api/v1/health",
    "/_health",
];

/// The first common health route (other than `configured`) that answers 2xx, if any.
pub async fn find_health_route(addr: SocketAddr, configured: &str) -> Option<String> {
    for path in COMMON_HEALTH_ROUTES.iter().filter(|p| **p != configured) {
        let plan = ProbePlan {
            kind: ProbeKind::Http {
                path: path.to_string(),
                status: 200,
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            start_period: Duration::ZERO,
        };
        if probe(addr, &plan)
            .await
            .status
            .is_some_and(|s| (200..300).contains(&s))
        {
            return Some(path.to_string());
        }
    }
    None
}

/// Runs probes forever (until aborted), updating `health` and the backend's flag.
pub async fn run_prober(
    addr: SocketAddr,
    plan: ProbePlan,
    health: Health,
    backend: Option<Arc<Backend>>,
    on_change: impl Fn(bool, &ProbeResult) + Send + 'static,
) {
    let started = Instant::now();
    let mut startup = Startup::new(&plan);
    loop {
        let result = probe(addr, &plan).await;
        let last = result.clone();
        if !result.ok && startup.forgives(started.elapsed(), health.verdict()) {
            // Still starting: the failure is shown but does not count.
            health.note(result);
            tokio::time::sleep(startup.next_pause()).await;
            continue;
        }
        if let Some(verdict) = health.record(&plan, result) {
            if let Some(b) = &backend {
                b.set_healthy(verdict);
            }
            on_change(verdict, &last);
        }
        // Until the first verdict (a starting instance, a deploy waiting on it), probe often
        // so the gate opens as soon as the instance is up.
        let pause = match health.verdict() {
            None => startup.next_pause(),
            Some(_) => plan.interval,
        };
        tokio::time::sleep(pause).await;
    }
}

/// How the prober treats an instance before its first verdict. It probes after 20 ms,
/// doubling up to 250 ms (never above the service's interval): most apps listen within
/// tens of milliseconds, and a deploy cuts over then instead of a whole 250 ms later. Its
/// failures count no sooner than they did when every startup probe was 250 ms apart
/// (`unhealthy_threshold` × 250 ms, or `start_period` if longer), so a starting app is not
/// called unhealthy (a warning event) just because it was probed more often.
struct Startup {
    probes: u32,
    interval: Duration,
    start_period: Duration,
    grace: Duration,
}

impl Startup {
    const FIRST: Duration = Duration::from_millis(20);
    const MAX: Duration = Duration::from_millis(250);

    fn new(plan: &ProbePlan) -> Startup {
        Startup {
            probes: 0,
            interval: plan.interval,
            start_period: plan.start_period,
            grace: plan
                .start_period
                .max(Self::MAX.saturating_mul(plan.unhealthy_threshold)),
        }
    }

    /// Whether a failed probe `elapsed` after the prober started is only shown, not counted.
    fn forgives(&self, elapsed: Duration, verdict: Option<bool>) -> bool {
        elapsed < self.start_period || (verdict.is_none() && elapsed < self.grace)
    }

    fn next_pause(&mut self) -> Duration {
        let pause = Self::FIRST.saturating_mul(1 << self.probes.min(8));
        self.probes = self.probes.saturating_add(1);
        pause.min(Self::MAX).min(self.interval)
    }
}

pub fn humanize(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(h: u32, u: u32) -> ProbePlan {
        ProbePlan {
            kind: ProbeKind::Tcp,
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(10),
            healthy_threshold: h,
            unhealthy_threshold: u,
            start_period: Duration::ZERO,
        }
    }

    fn r(ok: bool) -> ProbeResult {
        ProbeResult {
            ok,
            at: String::new(),
            detail: String::new(),
            status: None,
        }
    }

    #[test]
    fn startup_probes_start_fast_and_back_off_to_250ms_or_the_interval() {
        let ms = Duration::from_millis;
        let mut s = Startup::new(&ProbePlan {
            interval: ms(1000),
            ..plan(1, 3)
        });
        let got: Vec<_> = (0..7).map(|_| s.next_pause()).collect();
        assert_eq!(got, [20, 40, 80, 160, 250, 250, 250].map(ms));
        let mut s = Startup::new(&ProbePlan {
            interval: ms(50),
            ..plan(1, 3)
        });
        let got: Vec<_> = (0..3).map(|_| s.next_pause()).collect();
        assert_eq!(got, [20, 40, 50].map(ms));
    }

    #[test]
    fn startup_failures_count_only_after_threshold_times_250ms_or_the_start_period() {
        let ms = Duration::from_millis;
        // Three failures to be unhealthy: not before 750 ms, and not once a verdict exists.
        let s = Startup::new(&plan(1, 3));
        assert!(s.forgives(ms(0), None));
        assert!(s.forgives(ms(749), None));
        assert!(!s.forgives(ms(750), None));
        assert!(!s.forgives(ms(100), Some(true)));
        // A longer start_period forgives every failure within it, verdict or not.
        let s = Startup::new(&ProbePlan {
            start_period: ms(2000),
            ..plan(1, 3)
        });
        assert!(s.forgives(ms(1500), Some(true)));
        assert!(!s.forgives(ms(2000), None));
    }

    #[test]
    fn thresholds_decide_verdict_changes() {
        let h = Health::new();
        let p = plan(2, 3);
        assert_eq!(h.record(&p, r(true)), None);
        assert_eq!(h.record(&p, r(true)), Some(true));
        assert_eq!(h.record(&p, r(false)), None);
        assert_eq!(h.record(&p, r(false)), None);
        assert_eq!(h.record(&p, r(true)), None);
        assert_eq!(h.record(&p, r(false)), None);
        assert_eq!(h.record(&p, r(false)), None);
        assert_eq!(h.record(&p, r(false)), Some(false));
        assert_eq!(h.snapshot().recent.len(), RECENT);
    }

    #[tokio::test]
    async fn probe_of_a_closed_port_fails_with_the_reason() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let p = ProbePlan {
            kind: ProbeKind::Http {
                path: "/health".into(),
                status: 200,
            },
            ..plan(1, 1)
        };
        let res = probe(addr, &p).await;
        assert!(!res.ok);
        assert!(res.detail.contains("connect"), "{}", res.detail);
    }
}
