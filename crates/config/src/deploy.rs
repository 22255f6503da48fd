//! The `[deploy]` table: how a new release takes over from the serving one. By default all
//! at once, after its health gate; with `strategy = "canary"` (or `dockhand deploy --canary
//! 10%`), a share of requests — sticky per client — first goes to the new release for a
//! step, compared with the serving release's on the same traffic by the monitor's figures,
//! then a larger share, and the release is promoted, or aborted and drained, by itself.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml_edit::TableLike;

use crate::parse::{value_span, Parser};

const DEPLOY_KEYS: &[&str] = &["strategy", "canary"];
const CANARY_KEYS: &[&str] = &["steps", "step", "error_ratio", "p99_factor", "min_requests"];

/// `[deploy]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DeploySettings {
    pub strategy: Strategy,
    pub canary: CanaryConfig,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every request moves to the new release at once, after its gate.
    #[default]
    AllAtOnce,
    /// A share of the requests first, step by step (`[deploy.canary]`).
    Canary,
}

/// `[deploy.canary]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CanaryConfig {
    /// The canary's share of requests at each step, in ten-thousandths (1000 = 10 %),
    /// increasing; after the last step the release takes every request.
    pub steps: Vec<u32>,
    /// How long each step lasts.
    pub step: Duration,
    /// Abort when the canary's 5xx ratio exceeds the serving release's by this much.
    pub error_ratio: f64,
    /// Abort when the canary's p99 latency exceeds the serving release's times this factor.
    pub p99_factor: f64,
    /// No verdict on fewer canary requests than this within a step.
    pub min_requests: u64,
}

impl Default for CanaryConfig {
    fn default() -> CanaryConfig {
        CanaryConfig {
            steps: vec![1000, 5000],
            step: Duration::from_secs(60),
            error_ratio: 0.05,
            p99_factor: 2.0,
            min_requests: 20,
        }
    }
}

impl CanaryConfig {
    /// The steps starting at `first` (`dockhand deploy --canary 10%`): `first`, then the
    /// configured steps above it.
    pub fn starting_at(&self, first: u32) -> Vec<u32> {
        let mut out = vec![first];
        out.extend(self.steps.iter().copied().filter(|s| *s > first));
        out
    }
}

/// A share written `"10%"`, `"2.5%"` or `10` (per cent), as ten-thousandths; `None` unless
/// strictly between 0 and 100 %.
pub fn parse_share(text: &str) -> Option<u32> {
    let t = text.trim();
    let number = t.strip_suffix('%').unwrap_or(t).trim();
    let pct: f64 = number.parse().ok()?;
    if !(pct > 0.0 && pct < 100.0) {
        return None;
    }
    Some((pct * 100.0).round() as u32)
}

/// Ten-thousandths as a percentage for messages (`10 %`, `2.5 %`).
pub fn share_text(share: u32) -> String {
    if share.is_multiple_of(100) {
        format!("{} %", share / 100)
    } else {
        format!("{} %", f64::from(share) / 100.0)
    }
}

impl Parser<'_> {
    pub(crate) fn deploy(&mut self, table: &dyn TableLike) -> DeploySettings {
        let mut out = DeploySettings::default();
        let fields = self.fields(table, "deploy", DEPLOY_KEYS, "in [deploy]");
        if let Some(f) = fields.get("strategy") {
            match self.string(f).as_deref() {
                Some("canary") => out.strategy = Strategy::Canary,
                Some("all_at_once") => out.strategy = Strategy::AllAtOnce,
                Some(other) => self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("unknown deploy strategy `{other}`"),
                    Some("use \"all_at_once\" (the default) or \"canary\"".into()),
                ),
                None => {}
            }
        }
        let Some(table) = fields.get("canary").and_then(|f| self.table(f)) else {
            return out;
        };
        let c = self.fields(table, "deploy.canary", CANARY_KEYS, "in [deploy.canary]");
        if let Some(f) = c.get("steps") {
            let items: Option<Vec<Option<u32>>> = f.item.as_array().map(|a| {
                a.iter()
                    .map(|v| match (v.as_str(), v.as_integer(), v.as_float()) {
                        (Some(s), _, _) => parse_share(s),
                        (_, Some(n), _) => parse_share(&n.to_string()),
                        (_, _, Some(x)) => parse_share(&x.to_string()),
                        _ => None,
                    })
                    .collect()
            });
            let steps: Option<Vec<u32>> = items.and_then(|v| v.into_iter().collect());
            match steps {
                Some(s) if !s.is_empty() && s.windows(2).all(|w| w[0] < w[1]) => {
                    out.canary.steps = s;
                }
                _ => self.error(
                    value_span(f),
                    Some(&f.path),
                    "`steps` must be a non-empty list of increasing shares below 100 %".into(),
                    Some("steps = [\"10%\", \"50%\"]".into()),
                ),
            }
        }
        if let Some(d) = c.get("step").and_then(|f| self.duration(f, false)) {
            out.canary.step = d;
        }
        if let Some(r) = c.get("error_ratio").and_then(|f| self.ratio(f)) {
            out.canary.error_ratio = r;
        }
        if let Some(f) = c.get("p99_factor") {
            match self.number(f) {
                Some(x) if x >= 1.0 => out.canary.p99_factor = x,
                Some(_) => self.error(
                    value_span(f),
                    Some(&f.path),
                    "`p99_factor` must be at least 1".into(),
                    Some(
                        "2 means: abort when the canary's p99 is twice the serving release's"
                            .into(),
                    ),
                ),
                None => {}
            }
        }
        if let Some(n) = c
            .get("min_requests")
            .and_then(|f| self.integer_in::<u64>(f, 1, 1_000_000))
        {
            out.canary.min_requests = n;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares() {
        assert_eq!(parse_share("10%"), Some(1000));
        assert_eq!(parse_share(" 2.5 % "), Some(250));
        assert_eq!(parse_share("50"), Some(5000));
        assert_eq!(parse_share("0%"), None);
        assert_eq!(parse_share("100%"), None);
        assert_eq!(parse_share("ten"), None);
        assert_eq!(share_text(1000), "10 %");
        assert_eq!(share_text(250), "2.5 %");
        let c = CanaryConfig::default();
        assert_eq!(c.starting_at(2500), vec![2500, 5000]);
        assert_eq!(c.starting_at(7000), vec![7000]);
    }
}
