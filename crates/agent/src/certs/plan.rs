//! The certificate manager's rules, pure and tested with plain data: which certificates an
//! app needs (the route hosts no file covers, grouped into sets that share one order), which
//! challenge each name uses, when a certificate is renewed, how a failure backs off, and
//! what to say as the end of a certificate approaches.

use std::collections::BTreeMap;
use std::time::Duration;

use dockhand_config::{covers, host_kind, AppConfig, ChallengeKind, HostKind};

/// Where a managed certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Acme,
    LocalCa,
}

/// One certificate the app needs: its names (the first one names the set on disk) and the
/// challenges each name may use, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The set's key: its registered-domain-like suffix (`example.org` for `www.example.org`
    /// and `api.example.org`), or `local` for the local CA's certificate.
    pub id: String,
    pub source: Source,
    pub names: Vec<String>,
    pub challenges: BTreeMap<String, Vec<ChallengeKind>>,
}

/// The certificates `config` needs beyond those of `file_names` (the names of the served
/// certificate files): none without HTTPS. Route hosts and `[proxy.acme] domains` that no
/// file covers are grouped by their last two labels, one ACME order per group; `localhost`,
/// `*.localhost` and IP addresses share one certificate from the local CA.
pub fn wanted(config: &AppConfig, file_names: &[Vec<String>]) -> Vec<Wanted> {
    let proxy = &config.proxy;
    if proxy.https_listen.is_none() {
        return Vec::new();
    }
    let acme = &proxy.acme;
    let covered = |host: &str| file_names.iter().any(|names| covers(names, host));
    let mut hosts: Vec<(String, Vec<ChallengeKind>)> = Vec::new();
    for svc in config.services.values() {
        for route in &svc.routes {
            let Some(host) = &route.host else { continue };
            let challenges = route
                .challenge
                .clone()
                .unwrap_or_else(|| acme.challenges.clone());
            hosts.push((host.clone(), challenges));
        }
    }
    if let Some(route) = &config.dashboard.route {
        hosts.push((route.host.clone(), acme.challenges.clone()));
    }
    for name in &acme.domains {
        let challenges = if name.starts_with("*.") {
            vec![ChallengeKind::Dns01]
        } else {
            acme.challenges.clone()
        };
        hosts.push((name.clone(), challenges));
    }
    let mut sets: BTreeMap<String, Wanted> = BTreeMap::new();
    for (host, challenges) in hosts {
        if covered(&host) {
            continue;
        }
        let kind = host_kind(&host);
        let (id, source) = match kind {
            HostKind::Local => ("local".to_string(), Source::LocalCa),
            _ if !acme.enabled => continue,
            _ => (group_of(&host), Source::Acme),
        };
        // A name an earlier wildcard of the set covers needs no authorization of its own.
        let set = sets.entry(id.clone()).or_insert_with(|| Wanted {
            id,
            source,
            names: Vec::new(),
            challenges: BTreeMap::new(),
        });
        if set.names.contains(&host) {
            continue;
        }
        set.names.push(host.clone());
        set.challenges.insert(host, challenges);
    }
    let mut out: Vec<Wanted> = sets.into_values().collect();
    for set in &mut out {
        // Wildcards first, then by name: a stable order whatever the services' order.
        set.names.sort_by(|a, b| {
            b.starts_with("*.")
                .cmp(&a.starts_with("*."))
                .then_with(|| a.cmp(b))
        });
        let wildcards: Vec<String> = set
            .names
            .iter()
            .filter(|n| n.starts_with("*."))
            .cloned()
            .collect();
        set.names.retain(|n| {
            n.starts_with("*.") || !wildcards.iter().any(|w| covers(std::slice::from_ref(w), n))
        });
        set.challenges.retain(|n, _| set.names.contains(n));
    }
    out
}

/// The group a host's certificate belongs to: its last two labels (`*.` removed).
pub fn group_of(host: &str) -> String {
    let bare = host.strip_prefix("*.").unwrap_or(host);
    let labels: Vec<&str> = bare.rsplitn(3, '.').collect();
    match labels.as_slice() {
        [tld, domain, ..] => format!("{domain}.{tld}"),
        _ => bare.to_string(),
    }
}

/// When a certificate valid from `not_before` to `not_after` (Unix seconds) is renewed: at
/// two thirds of its lifetime, or at `ari` (a time the CA's renewal information chose) when
/// that is earlier.
pub fn renew_at(not_before: i64, not_after: i64, ari: Option<i64>) -> i64 {
    let two_thirds = not_before + (not_after - not_before).max(0) * 2 / 3;
    match ari {
        Some(at) => at.min(two_thirds),
        None => two_thirds,
    }
}

/// A point in the CA's suggested renewal window (RFC 9773 §4.2: uniformly random), given a
/// random fraction in `[0, 1)`.
pub fn ari_pick(start: i64, end: i64, fraction: f64) -> i64 {
    let span = (end - start).max(0) as f64;
    start + (span * fraction.clamp(0.0, 1.0)) as i64
}

/// How long to wait after the `failures`-th failure in a row: `base` doubling up to six hours,
/// with ±`jitter` (a fraction, from the caller's randomness: -1..1 times 20 %), and never
/// before the CA's `Retry-After`.
pub fn backoff(
    failures: u32,
    base: Duration,
    jitter: f64,
    retry_after: Option<Duration>,
) -> Duration {
    const MAX: Duration = Duration::from_secs(6 * 3600);
    let exp = failures.saturating_sub(1).min(20);
    let delay = base.saturating_mul(1u32 << exp.min(16)).min(MAX);
    let factor = 1.0 + 0.2 * jitter.clamp(-1.0, 1.0);
    let delay = delay.mul_f64(factor);
    match retry_after {
        Some(ra) if ra > delay => ra,
        _ => delay,
    }
}

/// The days before the end at which an event is recorded.
pub const NOTICE_DAYS: [i64; 3] = [14, 7, 3];

/// Which notice (14, 7 or 3 days, or 0 once expired) is due for a certificate ending at
/// `not_after` at `now`, if it is more urgent than `last` (the last one given).
pub fn notice_due(not_after: i64, now: i64, last: Option<i64>) -> Option<i64> {
    let left = not_after - now;
    let due = if left <= 0 {
        0
    } else {
        *NOTICE_DAYS.iter().rev().find(|d| left <= **d * 86_400)?
    };
    match last {
        Some(l) if l <= due => None,
        _ => Some(due),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockhand_config::{LoadOptions, Loaded};

    fn config(text: &str) -> AppConfig {
        let dir = tempfile::tempdir().unwrap();
        let Loaded { config, .. } = dockhand_config::load_str(
            &dir.path().join("dockhand.toml"),
            text,
            &LoadOptions::default(),
        )
        .expect("valid config");
        config
    }

    fn app(proxy: &str, hosts: &[&str]) -> AppConfig {
        let mut text = format!("app = \"shop\"\n[proxy]\n{proxy}\n");
        for (i, host) in hosts.iter().enumerate() {
            text.push_str(&format!(
                "[services.s{i}]\ncommand = \"x\"\nport = 80\nroute = {{ host = \"{host}\" }}\n"
            ));
        }
        config(&text)
    }

    #[test]
    fn the_dashboards_route_host_gets_a_certificate_like_a_routes() {
        let c = config(
            "app = \"shop\"\n[proxy]\nhttps_listen = \"127.0.0.1:8443\"\n[services.web]\ncommand = \"x\"\nport = 80\nroute = { host = \"shop.example.org\" }\n[dashboard]\nroute = { host = \"ops.example.org\" }\n",
        );
        let sets = wanted(&c, &[]);
        assert_eq!(sets.len(), 1);
        assert_eq!(
            sets[0].names,
            vec![
                "ops.example.org".to_string(),
                "shop.example.org".to_string()
            ]
        );
    }

    #[test]
    fn route_hosts_are_grouped_into_one_order_per_domain_and_local_hosts_get_the_local_ca() {
        let c = app(
            "https_listen = \"127.0.0.1:8443\"",
            &[
                "www.example.org",
                "example.org",
                "api.example.org",
                "shop.other.net",
                "shop.localhost",
                "127.0.0.1",
            ],
        );
        let sets = wanted(&c, &[]);
        let summary: Vec<(String, Source, Vec<String>)> = sets
            .iter()
            .map(|s| (s.id.clone(), s.source, s.names.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "example.org".into(),
                    Source::Acme,
                    vec![
                        "api.example.org".into(),
                        "example.org".into(),
                        "www.example.org".into()
                    ]
                ),
                (
                    "local".into(),
                    Source::LocalCa,
                    vec!["127.0.0.1".into(), "shop.localhost".into()]
                ),
                (
                    "other.net".into(),
                    Source::Acme,
                    vec!["shop.other.net".into()]
                ),
            ]
        );
        assert_eq!(
            sets[0].challenges["example.org"],
            [ChallengeKind::Http01, ChallengeKind::TlsAlpn01]
        );
    }

    #[test]
    fn nothing_is_wanted_without_https_for_a_host_a_file_covers_or_with_acme_off() {
        let c = app("", &["www.example.org"]);
        assert!(wanted(&c, &[]).is_empty());
        let c = app(
            "https_listen = \"127.0.0.1:8443\"",
            &["www.example.org", "shop.localhost"],
        );
        let sets = wanted(&c, &[vec!["*.example.org".into()]]);
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].source, Source::LocalCa);
        let c = app(
            "https_listen = \"127.0.0.1:8443\"\n[proxy.acme]\nenabled = false",
            &["www.example.org", "shop.localhost"],
        );
        let sets = wanted(&c, &[]);
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].source, Source::LocalCa);
    }

    #[test]
    fn a_wildcard_domain_takes_dns01_and_covers_its_hosts() {
        let c = app(
            "https_listen = \"127.0.0.1:8443\"\n[proxy.acme]\ndomains = [\"*.example.org\"]\n[proxy.acme.dns]\nprovider = \"command\"\ncommand = \"true\"",
            &["www.example.org", "example.org"],
        );
        let sets = wanted(&c, &[]);
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].names, ["*.example.org", "example.org"]);
        assert_eq!(sets[0].challenges["*.example.org"], [ChallengeKind::Dns01]);
    }

    #[test]
    fn groups_are_the_last_two_labels() {
        assert_eq!(group_of("a.b.example.org"), "example.org");
        assert_eq!(group_of("*.example.org"), "example.org");
        assert_eq!(group_of("example.org"), "example.org");
        assert_eq!(group_of("localhost"), "localhost");
    }

    #[test]
    fn renewal_is_at_two_thirds_or_earlier_when_the_ca_says_so() {
        let day = 86_400;
        assert_eq!(renew_at(0, 90 * day, None), 60 * day);
        assert_eq!(renew_at(0, 90 * day, Some(30 * day)), 30 * day);
        assert_eq!(renew_at(0, 90 * day, Some(80 * day)), 60 * day);
        assert_eq!(ari_pick(100, 200, 0.5), 150);
        assert_eq!(ari_pick(100, 200, 0.0), 100);
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_and_respect_retry_after() {
        let base = Duration::from_secs(60);
        assert_eq!(backoff(1, base, 0.0, None), Duration::from_secs(60));
        assert_eq!(backoff(2, base, 0.0, None), Duration::from_secs(120));
        assert_eq!(backoff(4, base, 0.0, None), Duration::from_secs(480));
        assert_eq!(backoff(30, base, 0.0, None), Duration::from_secs(6 * 3600));
        assert_eq!(backoff(1, base, 1.0, None), Duration::from_secs(72));
        assert_eq!(backoff(1, base, -1.0, None), Duration::from_secs(48));
        let ra = Duration::from_secs(3600);
        assert_eq!(backoff(1, base, 0.0, Some(ra)), ra);
        assert_eq!(
            backoff(10, base, 0.0, Some(ra)),
            Duration::from_secs(6 * 3600)
        );
    }

    #[test]
    fn notices_come_once_each_at_14_7_and_3_days_and_at_the_end() {
        let day = 86_400;
        let end = 100 * day;
        assert_eq!(notice_due(end, end - 20 * day, None), None);
        assert_eq!(notice_due(end, end - 13 * day, None), Some(14));
        assert_eq!(notice_due(end, end - 12 * day, Some(14)), None);
        assert_eq!(notice_due(end, end - 6 * day, Some(14)), Some(7));
        assert_eq!(notice_due(end, end - 2 * day, Some(7)), Some(3));
        assert_eq!(notice_due(end, end - 2 * day, Some(3)), None);
        assert_eq!(notice_due(end, end + 1, Some(3)), Some(0));
        assert_eq!(notice_due(end, end + 1, Some(0)), None);
        // A renewed certificate starts over.
        assert_eq!(notice_due(end + 90 * day, end, None), None);
    }
}
