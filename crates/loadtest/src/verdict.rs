//! Thresholds and the verdict of a run: PASS, WARN or FAIL.
//!
//! A load test is useful in CI only if it ends in a decision. The success rate decides between
//! PASS (at or above `success_pass`), WARN (at or above `success_warn`) and FAIL; each latency
//! limit that is exceeded fails the run. Pure: known numbers in, a known verdict out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::summary::{format_us, LatencySummary, Percentile};

/// The outcome of a run, worst of all checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

/// A latency percentile that must stay at or below a limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyLimit {
    pub percentile: Percentile,
    pub limit_us: u64,
}

/// What a run must achieve. Success rates are percentages (0–100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub success_pass: f64,
    pub success_warn: f64,
    pub latency: Vec<LatencyLimit>,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            success_pass: 95.0,
            success_warn: 90.0,
            latency: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ThresholdError {
    #[error("--success-{which} {value} is not a percentage: use a number from 0 to 100")]
    NotAPercentage { which: &'static str, value: f64 },
    #[error("--success-warn {warn} is above --success-pass {pass}: the warn level must be at or below the pass level")]
    WarnAbovePass { warn: f64, pass: f64 },
}

impl Thresholds {
    /// Thresholds with the given success levels and latency limits, checked for sense.
    pub fn new(
        success_pass: f64,
        success_warn: f64,
        latency: Vec<(Percentile, Duration)>,
    ) -> Result<Thresholds, ThresholdError> {
        for (which, value) in [("pass", success_pass), ("warn", success_warn)] {
            if !(0.0..=100.0).contains(&value) {
                return Err(ThresholdError::NotAPercentage { which, value });
            }
        }
        if success_warn > success_pass {
            return Err(ThresholdError::WarnAbovePass {
                warn: success_warn,
                pass: success_pass,
            });
        }
        Ok(Thresholds {
            success_pass,
            success_warn,
            latency: latency
                .into_iter()
                .map(|(percentile, d)| LatencyLimit {
                    percentile,
                    limit_us: u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
                })
                .collect(),
        })
    }
}

/// One threshold compared with what was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `success_rate`, or a percentile label (`p99`).
    pub name: String,
    pub verdict: Verdict,
    pub message: String,
}

/// The verdict and the checks it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: Verdict,
    pub checks: Vec<Check>,
}

/// Judges a run of `requests` attempts of which `succeeded` got a 2xx or 3xx answer.
/// No attempt at all is a FAIL: nothing was shown to work.
pub fn judge(t: &Thresholds, requests: u64, succeeded: u64, latency: &LatencySummary) -> Judgement {
    let mut checks = Vec::new();
    let rate = success_rate(requests, succeeded);
    // Compare in integers scaled by 100 where possible so 180 of 200 is exactly 90 %.
    let ok_scaled = succeeded as f64 * 100.0;
    let total = requests as f64;
    let verdict = if requests == 0 {
        Verdict::Fail
    } else if ok_scaled >= t.success_pass * total {
        Verdict::Pass
    } else if ok_scaled >= t.success_warn * total {
        Verdict::Warn
    } else {
        Verdict::Fail
    };
    let message = if requests == 0 {
        "no request was made".to_string()
    } else {
        let level = match verdict {
            Verdict::Pass => format!("at or above {}% (pass)", t.success_pass),
            Verdict::Warn => format!(
                "below {}% (pass) but at or above {}% (warn)",
                t.success_pass, t.success_warn
            ),
            Verdict::Fail => format!("below {}% (warn)", t.success_warn),
        };
        format!("success rate {rate:.2}% ({succeeded} of {requests}) is {level}")
    };
    checks.push(Check {
        name: "success_rate".into(),
        verdict,
        message,
    });
    for limit in &t.latency {
        let label = limit.percentile.label();
        let actual = latency.get(limit.percentile);
        let (verdict, message) = if latency.count == 0 {
            (
                Verdict::Fail,
                format!("{label}: no response was received to measure"),
            )
        } else if actual <= limit.limit_us {
            (
                Verdict::Pass,
                format!(
                    "{label} {} is within {}",
                    format_us(actual),
                    format_us(limit.limit_us)
                ),
            )
        } else {
            (
                Verdict::Fail,
                format!(
                    "{label} {} is above the limit of {}",
                    format_us(actual),
                    format_us(limit.limit_us)
                ),
            )
        };
        checks.push(Check {
            name: label.into(),
            verdict,
            message,
        });
    }
    Judgement {
        verdict: checks
            .iter()
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Fail),
        checks,
    }
}

/// `succeeded` of `requests` as a percentage (0 when nothing was attempted).
pub fn success_rate(requests: u64, succeeded: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        succeeded as f64 * 100.0 / requests as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency(p50: u64, p99: u64) -> LatencySummary {
        LatencySummary {
            count: 100,
            p50_us: p50,
            p99_us: p99,
            max_us: p99,
            ..LatencySummary::default()
        }
    }

    #[test]
    fn success_rate_levels_are_inclusive() {
        let t = Thresholds::default();
        let l = latency(1, 1);
        assert_eq!(judge(&t, 100, 100, &l).verdict, Verdict::Pass);
        assert_eq!(judge(&t, 100, 95, &l).verdict, Verdict::Pass);
        assert_eq!(judge(&t, 1000, 949, &l).verdict, Verdict::Warn);
        assert_eq!(judge(&t, 200, 180, &l).verdict, Verdict::Warn);
        assert_eq!(judge(&t, 1000, 899, &l).verdict, Verdict::Fail);
        assert_eq!(judge(&t, 10, 0, &l).verdict, Verdict::Fail);
    }

    #[test]
    fn no_request_at_all_fails() {
        let j = judge(&Thresholds::default(), 0, 0, &LatencySummary::default());
        assert_eq!(j.verdict, Verdict::Fail);
        assert_eq!(j.checks[0].message, "no request was made");
    }

    #[test]
    fn configured_levels_replace_the_defaults() {
        let t = Thresholds::new(99.0, 98.0, vec![]).unwrap();
        let l = latency(1, 1);
        assert_eq!(judge(&t, 100, 99, &l).verdict, Verdict::Pass);
        assert_eq!(judge(&t, 100, 98, &l).verdict, Verdict::Warn);
        assert_eq!(judge(&t, 100, 97, &l).verdict, Verdict::Fail);
    }

    #[test]
    fn a_latency_limit_above_its_percentile_fails_a_run_that_would_pass() {
        let t = Thresholds::new(
            95.0,
            90.0,
            vec![
                (Percentile::P50, Duration::from_millis(10)),
                (Percentile::P99, Duration::from_millis(200)),
            ],
        )
        .unwrap();
        let fine = judge(&t, 100, 100, &latency(5_000, 200_000));
        assert_eq!(fine.verdict, Verdict::Pass, "{:?}", fine.checks);
        let slow = judge(&t, 100, 100, &latency(5_000, 200_001));
        assert_eq!(slow.verdict, Verdict::Fail);
        assert_eq!(slow.checks[2].name, "p99");
        assert_eq!(
            slow.checks[2].message,
            "p99 200.00ms is above the limit of 200.00ms"
        );
        // The worst check wins: WARN on success and FAIL on latency is FAIL.
        assert_eq!(
            judge(&t, 100, 92, &latency(20_000, 1)).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn levels_out_of_range_or_inverted_are_refused() {
        assert!(matches!(
            Thresholds::new(101.0, 90.0, vec![]),
            Err(ThresholdError::NotAPercentage { which: "pass", .. })
        ));
        assert_eq!(
            Thresholds::new(90.0, 95.0, vec![]).unwrap_err().to_string(),
            "--success-warn 95 is above --success-pass 90: the warn level must be at or below the pass level"
        );
    }
}
