//! Checks beyond the instances (`[monitor.checks.NAME]`): what a visitor sees at a public URL
//! (through DNS and TLS from the server: certificate, status, body text; redirects are not
//! followed, so one shows as its 3xx), whether a TCP address accepts connections, whether a
//! command exits 0 — each on its own interval and under its timeout. A check's state changes
//! only after `threshold` results in a row agree (`advance`, pure), so one lost packet does not
//! page anyone; a failing check fires the `check` alert rule.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dockhand_config::{CheckConfig, CheckProbe};
use dockhand_proxy::rustls;
use http_body_util::{BodyExt, Empty};

/// How much of a body is read to look for the wanted text.
const BODY_LIMIT: usize = 1 << 20;

/// One check's result.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub ok: bool,
    /// What was seen (`200 OK in 12 ms`, or why it failed).
    pub detail: String,
    pub latency: Duration,
}

/// A check's state across results.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckState {
    pub name: String,
    pub target: String,
    /// `None` until `threshold` results agreed once.
    pub ok: Option<bool>,
    /// Results in a row that disagree with `ok` (or, before the first verdict, agree with
    /// each other).
    pub streak: u32,
    pub streak_ok: bool,
    pub last: Option<CheckResult>,
    /// Unix seconds of the last result.
    pub checked_at: u64,
    /// Unix seconds since `ok` holds.
    pub since: u64,
}

impl CheckState {
    pub fn new(cfg: &CheckConfig) -> CheckState {
        CheckState {
            name: cfg.name.clone(),
            target: cfg.probe.target(),
            ok: None,
            streak: 0,
            streak_ok: true,
            last: None,
            checked_at: 0,
            since: 0,
        }
    }

    /// Whether the check is failing (after its threshold).
    pub fn failing(&self) -> bool {
        self.ok == Some(false)
    }
}

/// Adds one result: the state flips once `threshold` results in a row say so. Returns
/// whether it flipped.
pub fn advance(state: &mut CheckState, result: CheckResult, threshold: u32, now: u64) -> bool {
    state.checked_at = now;
    let ok = result.ok;
    state.last = Some(result);
    if state.ok == Some(ok) {
        state.streak = 0;
        return false;
    }
    if state.streak > 0 && state.streak_ok == ok {
        state.streak += 1;
    } else {
        state.streak = 1;
        state.streak_ok = ok;
    }
    if state.streak >= threshold.max(1) {
        state.ok = Some(ok);
        state.streak = 0;
        state.since = now;
        return true;
    }
    false
}

/// Runs one check under its timeout.
pub async fn probe(cfg: &CheckConfig) -> CheckResult {
    let started = Instant::now();
    let outcome = tokio::time::timeout(cfg.timeout, run(&cfg.probe)).await;
    let latency = started.elapsed();
    match outcome {
        Ok(Ok(detail)) => CheckResult {
            ok: true,
            detail: format!("{detail} in {} ms", latency.as_millis()),
            latency,
        },
        Ok(Err(why)) => CheckResult {
            ok: false,
            detail: why,
            latency,
        },
        Err(_) => CheckResult {
            ok: false,
            detail: format!("no answer within {}", crate::health::humanize(cfg.timeout)),
            latency,
        },
    }
}

async fn run(probe: &CheckProbe) -> Result<String, String> {
    match probe {
        CheckProbe::Http {
            url,
            status,
            body,
            ca,
        } => http(url, *status, body.as_deref(), ca.as_deref()).await,
        CheckProbe::Tcp { address } => tokio::net::TcpStream::connect(address.as_str())
            .await
            .map(|_| "connected".to_string())
            .map_err(|e| format!("cannot connect to {address}: {e}")),
        CheckProbe::Command { argv } => command(argv).await,
    }
}

async fn http(
    url: &str,
    want: Option<u16>,
    text: Option<&str>,
    ca: Option<&Path>,
) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("`{url}` is not a valid URL"))?;
    let client = client(ca)?;
    let req = http::Request::get(uri)
        .header(http::header::USER_AGENT, "dockhand-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = client.request(req).await.map_err(|e| source_chain(&e))?;
    let status = response.status();
    let good = match want {
        Some(w) => status.as_u16() == w,
        None => status.is_success() || status.is_redirection(),
    };
    if !good {
        return Err(match want {
            Some(w) => format!("answered {status}, expected {w}"),
            None => format!("answered {status}"),
        });
    }
    if let Some(text) = text {
        let mut body = response.into_body();
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
            if let Some(data) = frame.data_ref() {
                seen.extend_from_slice(data);
            }
            if seen.len() >= BODY_LIMIT {
                break;
            }
        }
        if !String::from_utf8_lossy(&seen).contains(text) {
            return Err(format!("answered {status} without the text `{text}`"));
        }
    }
    Ok(format!("answered {status}"))
}

/// An error with its causes (a TLS or DNS failure is in a source, not the message).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// An HTTP(S) client trusting the public roots (and `ca`'s certificates).
fn client(ca: Option<&Path>) -> Result<Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = ca {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("bad certificate in {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("bad certificate in {}: {e}", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    connector.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(https),
    )
}

/// Runs `argv`; passes when it exits 0. Killed when the check's timeout drops it.
async fn command(argv: &[String]) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the command is empty".into());
    };
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let last = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.chars().take(200).collect::<String>())
    };
    let said = last(&out.stderr).or_else(|| last(&out.stdout));
    if out.status.success() {
        return Ok("exited 0".into());
    }
    let code = out
        .status
        .code()
        .map_or_else(|| "was killed".to_string(), |c| format!("exited {c}"));
    Err(match said {
        Some(s) => format!("{code}: {s}"),
        None => code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ok: bool) -> CheckResult {
        CheckResult {
            ok,
            detail: String::new(),
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn state_flips_only_after_threshold_results_in_a_row() {
        let cfg = CheckConfig {
            name: "home".into(),
            probe: CheckProbe::Tcp {
                address: "localhost:1".into(),
            },
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            threshold: 2,
        };
        let mut s = CheckState::new(&cfg);
        assert!(!advance(&mut s, r(true), 2, 1));
        assert_eq!(s.ok, None);
        assert!(advance(&mut s, r(true), 2, 2));
        assert_eq!(s.ok, Some(true));
        // One failure between successes: a flap, not a state.
        assert!(!advance(&mut s, r(false), 2, 3));
        assert!(!advance(&mut s, r(true), 2, 4));
        assert!(!advance(&mut s, r(false), 2, 5));
        assert!(!s.failing());
        assert!(advance(&mut s, r(false), 2, 6));
        assert!(s.failing());
        assert_eq!(s.since, 6);
        assert!(!advance(&mut s, r(true), 2, 7));
        assert!(advance(&mut s, r(true), 2, 8));
        assert!(!s.failing());
    }

    #[tokio::test]
    async fn a_command_check_passes_on_exit_0_and_says_why_it_failed() {
        let ok = command(&["/bin/sh".into(), "-c".into(), "true".into()]).await;
        assert_eq!(ok, Ok("exited 0".into()));
        let bad = command(&[
            "/bin/sh".into(),
            "-c".into(),
            "echo nope >&2; exit 3".into(),
        ])
        .await;
        assert_eq!(bad, Err("exited 3: nope".into()));
    }
}
