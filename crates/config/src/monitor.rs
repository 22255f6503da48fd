//! The `[monitor]` table (how often the agent samples its metrics, where it serves them in
//! Prometheus' format, the watch after each deploy) and the `[alerts]` table (where alerts
//! go, how they are grouped and repeated, and per-rule overrides of the day-one defaults).
//!
//! Everything has a default: without either table the agent samples every 5 s, serves
//! `/metrics` on `127.0.0.1:9464`, watches each release for three minutes after its cutover
//! and evaluates the default rules, recording alerts as events (no channel: nothing is sent).
//! Channel URLs and tokens may be `${secret.NAME}` (a Slack or Discord webhook URL is a
//! credential): they stay templates here, like `env` values.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml_edit::TableLike;

use crate::interpolate::SecretMode;
use crate::model::EnvValue;
use crate::parse::{value_span, Field, Parser};

const MONITOR_KEYS: &[&str] = &["interval", "metrics_listen", "proxy_metrics", "watch"];
const WATCH_KEYS: &[&str] = &[
    "enabled",
    "window",
    "error_ratio",
    "p99_factor",
    "min_requests",
];
const ALERTS_KEYS: &[&str] = &[
    "webhook",
    "slack",
    "discord",
    "ntfy",
    "telegram",
    "email",
    "smtp",
    "group_wait",
    "repeat",
    "rules",
];
const TELEGRAM_KEYS: &[&str] = &["token", "chat_id", "api"];
const SMTP_KEYS: &[&str] = &[
    "host", "port", "security", "username", "password", "from", "timeout",
];
const RULE_KEYS: &[&str] = &["enabled", "threshold", "for", "window"];

/// The names of the alert rules (`[alerts.rules.NAME]`).
pub const RULE_NAMES: &[&str] = &[
    "service_down",
    "error_ratio",
    "latency_p99",
    "crash_loop",
    "disk",
    "memory",
    "certificate",
    "backup",
    "deploy",
    "agent_restart",
];

/// `[monitor]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MonitorConfig {
    /// How often metrics are sampled (and alert rules evaluated).
    pub interval: Duration,
    /// Where `/metrics` is served (Prometheus' text format); `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether the proxy counts requests per backend (per route, service and release).
    pub proxy_metrics: bool,
    /// The watch after each deploy's cutover.
    pub watch: WatchConfig,
}

impl Default for MonitorConfig {
    fn default() -> MonitorConfig {
        MonitorConfig {
            interval: Duration::from_secs(5),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            proxy_metrics: true,
            watch: WatchConfig::default(),
        }
    }
}

/// `[monitor.watch]`: after a deploy's cutover, the new release is compared with the one it
/// replaced; crossing a threshold puts the previous release back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WatchConfig {
    pub enabled: bool,
    /// How long after the cutover the release is watched.
    pub window: Duration,
    /// Roll back when the 5xx ratio exceeds the previous release's by this much (0.05: five
    /// points).
    pub error_ratio: f64,
    /// Roll back when p99 latency exceeds the previous release's times this factor.
    pub p99_factor: f64,
    /// No verdict on fewer requests than this.
    pub min_requests: u64,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            enabled: true,
            window: Duration::from_secs(180),
            error_ratio: 0.05,
            p99_factor: 3.0,
            min_requests: 20,
        }
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertsConfig {
    pub channels: Vec<Channel>,
    /// Alerts firing within this time of the first go out as one message.
    pub group_wait: Duration,
    /// A firing alert is sent again after this long.
    pub repeat: Duration,
    /// Per-rule overrides, by rule name (one of [`RULE_NAMES`]).
    pub rules: BTreeMap<String, RuleOverride>,
}

impl Default for AlertsConfig {
    fn default() -> AlertsConfig {
        AlertsConfig {
            channels: Vec::new(),
            group_wait: Duration::from_secs(5),
            repeat: Duration::from_secs(4 * 3600),
            rules: BTreeMap::new(),
        }
    }
}

impl AlertsConfig {
    /// Whether a channel refers to a secret (a URL, a token, the SMTP password).
    pub fn has_secrets(&self) -> bool {
        self.channels.iter().any(|c| match c {
            Channel::Webhook { url }
            | Channel::Slack { url }
            | Channel::Discord { url }
            | Channel::Ntfy { url } => url.has_secrets(),
            Channel::Telegram { token, .. } => token.has_secrets(),
            Channel::Email { smtp, .. } => smtp.password.as_ref().is_some_and(|p| p.has_secrets()),
        })
    }
}

/// Where alerts go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Channel {
    /// A generic JSON POST.
    Webhook {
        url: EnvValue,
    },
    Slack {
        url: EnvValue,
    },
    Discord {
        url: EnvValue,
    },
    /// `url` is the topic's URL (`https://ntfy.sh/TOPIC`).
    Ntfy {
        url: EnvValue,
    },
    Telegram {
        token: EnvValue,
        chat_id: String,
        /// The Bot API's base URL (default `https://api.telegram.org`).
        api: String,
    },
    Email {
        to: Vec<String>,
        smtp: SmtpConfig,
    },
}

impl Channel {
    /// The channel's name in reports (`webhook`, `email`…).
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Slack { .. } => "slack",
            Channel::Discord { .. } => "discord",
            Channel::Ntfy { .. } => "ntfy",
            Channel::Telegram { .. } => "telegram",
            Channel::Email { .. } => "email",
        }
    }
}

/// How mail is sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<EnvValue>,
    pub from: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required), port 587.
    Starttls,
    /// TLS from the start, port 465.
    Tls,
    /// No encryption (a relay on the same host).
    None,
}

/// `[alerts.rules.NAME]`: what a user changed of a rule's defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RuleOverride {
    pub enabled: Option<bool>,
    pub threshold: Option<f64>,
    pub r#for: Option<Duration>,
    pub window: Option<Duration>,
}

impl Parser<'_> {
    pub(crate) fn monitor(&mut self, table: &dyn TableLike) -> MonitorConfig {
        let mut out = MonitorConfig::default();
        let fields = self.fields(table, "monitor", MONITOR_KEYS, "in [monitor]");
        if let Some(d) = fields.get("interval").and_then(|f| self.duration(f, false)) {
            if d < Duration::from_millis(500) {
                let f = fields.get("interval").expect("just read");
                self.error(
                    value_span(f),
                    Some(&f.path),
                    "the monitor interval must be at least 500ms".into(),
                    Some("5s is the default; a shorter interval costs CPU for little".into()),
                );
            } else {
                out.interval = d;
            }
        }
        if let Some(f) = fields.get("metrics_listen") {
            if f.item.as_bool() == Some(false) {
                out.metrics_listen = None;
            } else if let Some(addr) = self.socket_addr(f, "9464") {
                out.metrics_listen = Some(addr);
            }
        }
        if let Some(b) = fields.get("proxy_metrics").and_then(|f| self.boolean(f)) {
            out.proxy_metrics = b;
        }
        if let Some(table) = fields.get("watch").and_then(|f| self.table(f)) {
            let w = self.fields(table, "monitor.watch", WATCH_KEYS, "in [monitor.watch]");
            if let Some(b) = w.get("enabled").and_then(|f| self.boolean(f)) {
                out.watch.enabled = b;
            }
            if let Some(d) = w.get("window").and_then(|f| self.duration(f, false)) {
                out.watch.window = d;
            }
            if let Some(r) = w.get("error_ratio").and_then(|f| self.ratio(f)) {
                out.watch.error_ratio = r;
            }
            if let Some(f) = w.get("p99_factor") {
                match self.number(f) {
                    Some(x) if x >= 1.0 => out.watch.p99_factor = x,
                    Some(_) => self.error(
                        value_span(f),
                        Some(&f.path),
                        "`p99_factor` must be at least 1".into(),
                        Some(
                            "3 means: roll back when p99 is three times the previous release's"
                                .into(),
                        ),
                    ),
                    None => {}
                }
            }
            if let Some(n) = w
                .get("min_requests")
                .and_then(|f| self.integer_in::<u64>(f, 1, 1_000_000))
            {
                out.watch.min_requests = n;
            }
        }
        out
    }

    pub(crate) fn alerts(&mut self, table: &dyn TableLike) -> AlertsConfig {
        let mut out = AlertsConfig::default();
        let fields = self.fields(table, "alerts", ALERTS_KEYS, "in [alerts]");
        for (key, make) in [
            (
                "webhook",
                (|url| Channel::Webhook { url }) as fn(EnvValue) -> Channel,
            ),
            ("slack", |url| Channel::Slack { url }),
            ("discord", |url| Channel::Discord { url }),
            ("ntfy", |url| Channel::Ntfy { url }),
        ] {
            if let Some(f) = fields.get(key) {
                if let Some(url) = self.secret_url(f) {
                    out.channels.push(make(url));
                }
            }
        }
        if let Some(f) = fields.get("telegram") {
            if let Some(t) = self.table(f) {
                let tf = self.fields(t, "alerts.telegram", TELEGRAM_KEYS, "in [alerts] telegram");
                let token = tf.get("token").and_then(|f| self.secret_string(f));
                let chat_id = tf.get("chat_id").and_then(|f| match f.item.as_integer() {
                    Some(n) => Some(n.to_string()),
                    None => self.string(f),
                });
                let api = tf
                    .get("api")
                    .and_then(|f| self.string(f))
                    .unwrap_or_else(|| "https://api.telegram.org".into());
                match (token, chat_id) {
                    (Some(token), Some(chat_id)) => out.channels.push(Channel::Telegram {
                        token,
                        chat_id,
                        api: api.trim_end_matches('/').to_string(),
                    }),
                    _ => self.error(
                        value_span(f),
                        Some(&f.path),
                        "telegram needs `token` and `chat_id`".into(),
                        Some("telegram = { token = \"${secret.TELEGRAM_TOKEN}\", chat_id = \"123456\" }".into()),
                    ),
                }
            }
        }
        let smtp = fields
            .get("smtp")
            .and_then(|f| self.table(f))
            .and_then(|t| self.smtp(t));
        if let Some(f) = fields.get("email") {
            let to = match f.item.as_str() {
                Some(_) => self.string(f).map(|s| vec![s]),
                None => self.string_array(f),
            };
            if let Some(to) = to {
                for addr in &to {
                    if !addr.contains('@') {
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            format!("`{addr}` is not an e-mail address"),
                            Some("write email = \"ops@example.org\" (or a list)".into()),
                        );
                    }
                }
                match smtp {
                    Some(smtp) => out.channels.push(Channel::Email { to, smtp }),
                    None if fields.get("smtp").is_none() => self.error(
                        value_span(f),
                        Some(&f.path),
                        "alert e-mail needs an SMTP server".into(),
                        Some("add smtp = { host = \"smtp.example.org\", port = 587, username = \"…\", password = \"${secret.SMTP_PASSWORD}\", from = \"dockhand@example.org\" } to [alerts]".into()),
                    ),
                    None => {}
                }
            }
        }
        if let Some(d) = fields
            .get("group_wait")
            .and_then(|f| self.duration(f, true))
        {
            out.group_wait = d;
        }
        if let Some(d) = fields.get("repeat").and_then(|f| self.duration(f, false)) {
            out.repeat = d;
        }
        if let Some(rules) = fields.get("rules").and_then(|f| self.table(f)) {
            let rf = self.fields(rules, "alerts.rules", RULE_NAMES, "in [alerts.rules]");
            for f in rf.iter() {
                let Some(t) = self.table(f) else { continue };
                let path = f.path.clone();
                let kf = self.fields(t, &path, RULE_KEYS, "in an alert rule");
                let o = RuleOverride {
                    enabled: kf.get("enabled").and_then(|f| self.boolean(f)),
                    threshold: kf.get("threshold").and_then(|f| self.number(f)),
                    r#for: kf.get("for").and_then(|f| self.duration(f, true)),
                    window: kf.get("window").and_then(|f| self.duration(f, false)),
                };
                out.rules.insert(f.name.to_string(), o);
            }
        }
        out
    }

    fn smtp(&mut self, table: &dyn TableLike) -> Option<SmtpConfig> {
        let f = self.fields(table, "alerts.smtp", SMTP_KEYS, "in [alerts] smtp");
        let host = f.get("host").and_then(|f| self.string(f));
        let security = match f.get("security") {
            None => SmtpSecurity::Starttls,
            Some(field) => match self.string(field).as_deref() {
                Some("starttls") => SmtpSecurity::Starttls,
                Some("tls") => SmtpSecurity::Tls,
                Some("none") => SmtpSecurity::None,
                Some(other) => {
                    self.error(
                        value_span(field),
                        Some(&field.path),
                        format!("unknown SMTP security `{other}`"),
                        Some("use \"starttls\" (port 587), \"tls\" (port 465) or \"none\" (a local relay)".into()),
                    );
                    SmtpSecurity::Starttls
                }
                None => SmtpSecurity::Starttls,
            },
        };
        let default_port = match security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        };
        let port = f
            .get("port")
            .and_then(|f| self.integer_in::<u16>(f, 1, 65535))
            .unwrap_or(default_port);
        let username = f.get("username").and_then(|f| self.string(f));
        let password = f.get("password").and_then(|f| self.secret_string(f));
        let from = f.get("from").and_then(|f| self.string(f));
        let timeout = f
            .get("timeout")
            .and_then(|f| self.duration(f, false))
            .unwrap_or(Duration::from_secs(10));
        let Some(host) = host else {
            self.error(
                0..0,
                Some("alerts.smtp.host"),
                "the SMTP server needs a `host`".into(),
                Some("smtp = { host = \"smtp.example.org\", … }".into()),
            );
            return None;
        };
        let from = from.unwrap_or_else(|| format!("dockhand@{host}"));
        Some(SmtpConfig {
            host,
            port,
            security,
            username,
            password,
            from,
            timeout,
        })
    }

    /// A string that may hold `${secret.NAME}`, kept as a template.
    fn secret_string(&mut self, f: &Field<'_>) -> Option<EnvValue> {
        let raw = self.raw_str(f)?;
        let out = self.interpolate(f, raw, SecretMode::Keep)?;
        Some(EnvValue::from_template(out.value))
    }

    /// An http(s) URL that may hold secrets.
    fn secret_url(&mut self, f: &Field<'_>) -> Option<EnvValue> {
        let value = self.secret_string(f)?;
        let t = value.template();
        if !(t.starts_with("http://") || t.starts_with("https://") || t.starts_with("${secret.")) {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("`{}` must be an http:// or https:// URL", f.name),
                Some(format!(
                    "write {} = \"https://…\" (or \"${{secret.NAME}}\" to keep it in the secrets file)",
                    f.name
                )),
            );
            return None;
        }
        Some(value)
    }

    /// A number (integer or float).
    fn number(&mut self, f: &Field<'_>) -> Option<f64> {
        match (f.item.as_float(), f.item.as_integer()) {
            (Some(x), _) => Some(x),
            (None, Some(n)) => Some(n as f64),
            _ => {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("expected a number for `{}`", f.name),
                    None,
                );
                None
            }
        }
    }

    /// A number between 0 and 1.
    fn ratio(&mut self, f: &Field<'_>) -> Option<f64> {
        let x = self.number(f)?;
        if !(0.0..=1.0).contains(&x) {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("`{}` must be between 0 and 1, found {x}", f.name),
                Some("0.05 means five per cent".into()),
            );
            return None;
        }
        Some(x)
    }
}
