//! The report of a run: numbers, verdict and exit code, rendered as markdown or JSON.
//!
//! The JSON form is a stable interface (the benchmark harness and CI read it): fields are
//! only ever added, never renamed or removed; `schema` changes if that promise is broken.
//! Latencies are integers in microseconds, success rates percentages, rates per second.
//! A report never holds a token, a login body or header values.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::summary::{format_us, LatencySummary};
use crate::verdict::{self, success_rate, Check, Thresholds, Verdict};
use crate::{EndpointMeasure, ErrorCounts, Measurements, Plan, Stop, EXIT_WARN};

/// The version of the JSON report's shape.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: u32,
    /// `scheme://host[:port]` of the target.
    pub target: String,
    /// `closed` (each connection waits for its answer) or `open` (constant `rate`).
    pub mode: String,
    pub rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    /// The requested duration in seconds (`-d`), if any.
    pub duration_s: Option<f64>,
    /// The requested number of requests (`-n`), if any.
    pub request_limit: Option<u64>,
    /// How long the load really ran, in seconds.
    pub elapsed_s: f64,
    /// All endpoints together.
    pub totals: Stats,
    /// One entry per endpoint (one entry for a single URL).
    pub endpoints: Vec<EndpointReport>,
    pub thresholds: Thresholds,
    pub checks: Vec<Check>,
    pub verdict: Verdict,
    /// 0 PASS, 6 WARN, 1 FAIL.
    pub exit_code: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointReport {
    pub name: String,
    pub method: String,
    pub path: String,
    pub weight: u32,
    pub stats: Stats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Attempts: answers plus failures.
    pub requests: u64,
    /// Answers of any status.
    pub completed: u64,
    /// Answers with a 2xx or 3xx status.
    pub succeeded: u64,
    /// `requests - succeeded`: error statuses and failed requests.
    pub failed: u64,
    /// `succeeded / requests`, in percent.
    pub success_rate: f64,
    /// Answers per second of elapsed time.
    pub requests_per_sec: f64,
    pub response_body_bytes: u64,
    pub request_body_bytes: u64,
    pub latency_us: LatencySummary,
    /// Answers by status code.
    pub status: BTreeMap<String, u64>,
    /// Requests that got no answer, by kind.
    pub errors: ErrorCounts,
}

impl Stats {
    fn of(m: &EndpointMeasure, elapsed_s: f64) -> Stats {
        let completed = m.completed();
        let succeeded = m.succeeded();
        Stats {
            requests: m.requests,
            completed,
            succeeded,
            failed: m.requests - succeeded,
            success_rate: success_rate(m.requests, succeeded),
            requests_per_sec: if elapsed_s > 0.0 {
                completed as f64 / elapsed_s
            } else {
                0.0
            },
            response_body_bytes: m.response_body_bytes,
            request_body_bytes: m.request_body_bytes,
            latency_us: LatencySummary::of(&m.latency),
            status: m.status.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            errors: m.errors,
        }
    }
}

impl Verdict {
    /// The process exit code of a run with this verdict.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Warn => EXIT_WARN,
            Verdict::Fail => 1,
        }
    }
}

impl Report {
    /// Judges `m`, measured by running `plan`, against `thresholds`.
    pub fn new(plan: &Plan, m: &Measurements, thresholds: &Thresholds) -> Report {
        let elapsed_s = m.elapsed.as_secs_f64();
        let total = m.total();
        let totals = Stats::of(&total, elapsed_s);
        let judgement = verdict::judge(
            thresholds,
            totals.requests,
            totals.succeeded,
            &totals.latency_us,
        );
        Report {
            schema: SCHEMA,
            target: plan.origin.display(),
            mode: if plan.rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .into(),
            rate: plan.rate,
            connections: plan.connections,
            threads: m.threads,
            duration_s: match plan.stop {
                Stop::Duration(d) => Some(d.as_secs_f64()),
                Stop::Requests(_) => None,
            },
            request_limit: match plan.stop {
                Stop::Requests(n) => Some(n),
                Stop::Duration(_) => None,
            },
            elapsed_s,
            totals,
            endpoints: plan
                .endpoints
                .iter()
                .zip(&m.endpoints)
                .map(|(e, em)| EndpointReport {
                    name: e.name.clone(),
                    method: e.method.to_string(),
                    path: e.path.to_string(),
                    weight: e.weight,
                    stats: Stats::of(em, elapsed_s),
                })
                .collect(),
            thresholds: thresholds.clone(),
            checks: judgement.checks,
            verdict: judgement.verdict,
            exit_code: judgement.verdict.exit_code(),
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always encodes as JSON")
    }

    /// The report as a markdown document.
    pub fn to_markdown(&self) -> String {
        let t = &self.totals;
        let mut md = String::new();
        let _ = writeln!(md, "# Load test: {}\n", self.verdict.label());
        let how = match (self.request_limit, self.duration_s) {
            (Some(n), _) => format!("{n} requests"),
            (None, Some(d)) => format!("{d} s"),
            _ => String::new(),
        };
        let mode = match self.rate {
            Some(r) => format!("open loop at {r} requests/s"),
            None => "closed loop".into(),
        };
        let _ = writeln!(
            md,
            "`{}` · {mode} · {} connections · {} threads · {how} (ran {:.2} s)\n",
            self.target, self.connections, self.threads, self.elapsed_s
        );
        let _ = writeln!(
            md,
            "| requests | succeeded | success rate | requests/s | received |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            md,
            "| {} | {} | {:.2}% | {:.1} | {} |\n",
            t.requests,
            t.succeeded,
            t.success_rate,
            t.requests_per_sec,
            bytes(t.response_body_bytes)
        );
        let _ = writeln!(md, "## Latency\n");
        latency_table(&mut md, std::iter::once(("all", &t.latency_us)));
        if self.endpoints.len() > 1 {
            let _ = writeln!(md, "## Endpoints\n");
            let _ = writeln!(
                md,
                "| endpoint | weight | requests | success rate | requests/s | p50 | p99 | max |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
            for e in &self.endpoints {
                let s = &e.stats;
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.2}% | {:.1} | {} | {} | {} |",
                    e.name,
                    e.weight,
                    s.requests,
                    s.success_rate,
                    s.requests_per_sec,
                    format_us(s.latency_us.p50_us),
                    format_us(s.latency_us.p99_us),
                    format_us(s.latency_us.max_us)
                );
            }
            md.push('\n');
        }
        let _ = writeln!(md, "## Answers\n");
        let _ = writeln!(md, "| status | count |");
        let _ = writeln!(md, "|---|---:|");
        for (s, n) in &t.status {
            let _ = writeln!(md, "| {s} | {n} |");
        }
        for (kind, n) in [
            ("connect error", t.errors.connect),
            ("timeout", t.errors.timeout),
            ("reset", t.errors.reset),
            ("other error", t.errors.other),
        ] {
            if n > 0 {
                let _ = writeln!(md, "| {kind} | {n} |");
            }
        }
        let _ = writeln!(md, "\n## Verdict: {}\n", self.verdict.label());
        for c in &self.checks {
            let _ = writeln!(md, "- {} {}", c.verdict.label(), c.message);
        }
        md
    }
}

fn latency_table<'a>(md: &mut String, rows: impl Iterator<Item = (&'a str, &'a LatencySummary)>) {
    let _ = writeln!(md, "| | p50 | p90 | p95 | p99 | p99.9 | max | mean |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, l) in rows {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            format_us(l.p50_us),
            format_us(l.p90_us),
            format_us(l.p95_us),
            format_us(l.p99_us),
            format_us(l.p999_us),
            format_us(l.max_us),
            format_us(l.mean_us.round() as u64)
        );
    }
    md.push('\n');
}

fn bytes(n: u64) -> String {
    if n >= 10 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else if n >= 10 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::summary::new_histogram;
    use crate::{Endpoint, Origin};

    fn plan() -> Plan {
        Plan {
            origin: Origin {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8080,
            },
            addrs: vec!["127.0.0.1:8080".parse().unwrap()],
            endpoints: vec![Endpoint {
                name: "GET /".into(),
                method: http::Method::GET,
                path: "/".parse().unwrap(),
                headers: vec![],
                body: bytes::Bytes::new(),
                weight: 1,
            }],
            login: None,
            bearer: Some("never-shown".into()),
            connections: 4,
            threads: 2,
            stop: Stop::Requests(100),
            rate: None,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            insecure: false,
        }
    }

    fn measured() -> Measurements {
        let mut latency = new_histogram();
        for us in 1..=100 {
            latency.record(us * 10).unwrap();
        }
        Measurements {
            elapsed: Duration::from_secs(2),
            threads: 2,
            endpoints: vec![EndpointMeasure {
                requests: 100,
                latency,
                status: [(200, 90), (500, 10)].into_iter().collect(),
                errors: ErrorCounts::default(),
                response_body_bytes: 1200,
                request_body_bytes: 0,
            }],
        }
    }

    #[test]
    fn ten_percent_of_500s_report_warn_with_exit_code_6() {
        let r = Report::new(&plan(), &measured(), &Thresholds::default());
        assert_eq!(r.verdict, Verdict::Warn);
        assert_eq!(r.exit_code, EXIT_WARN);
        assert_eq!(r.totals.requests_per_sec, 50.0);
        assert_eq!(r.totals.latency_us.p50_us, 500);
        assert_eq!(r.totals.latency_us.p99_us, 990);
        assert_eq!(r.totals.failed, 10);
        let md = r.to_markdown();
        assert!(md.starts_with("# Load test: WARN\n"), "{md}");
        assert!(
            md.contains("| all | 500µs | 900µs | 950µs | 990µs | 1.00ms | 1.00ms | 505µs |"),
            "{md}"
        );
        assert!(
            !md.contains("## Endpoints"),
            "one endpoint needs no table: {md}"
        );
    }

    #[test]
    fn the_json_report_keeps_its_field_names_and_no_secret() {
        let r = Report::new(&plan(), &measured(), &Thresholds::default());
        let json = r.to_json();
        assert!(!json.contains("never-shown"));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in [
            "schema",
            "target",
            "mode",
            "connections",
            "threads",
            "elapsed_s",
            "totals",
            "endpoints",
            "thresholds",
            "checks",
            "verdict",
            "exit_code",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {json}");
        }
        assert_eq!(v["schema"], 1);
        assert_eq!(v["mode"], "closed");
        assert_eq!(v["verdict"], "warn");
        assert_eq!(v["totals"]["status"]["500"], 10);
        assert_eq!(v["totals"]["latency_us"]["p999_us"], 1000);
        assert_eq!(v["endpoints"][0]["stats"]["success_rate"], 90.0);
        // It reads back: the harness can deserialize what the CLI prints.
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
