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
use crate::parse::{key_span, value_span, Field, Parser};

const MONITOR_KEYS: &[&str] = &[
    "interval",
    "metrics_listen",
    "proxy_metrics",
    "watch",
    "checks",
    "metrics_route",
];
const METRICS_ROUTE_KEYS: &[&str] = &["host", "path", "token"];
const CHECK_KEYS: &[&str] = &[
    "http",
    "tcp",
    "command",
    "interval",
    "timeout",
    "status",
    "body",
    "threshold",
    "ca",
];
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
    "check",
    "backup_missed",
    "backup_unverified",
    "node_down",
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
    /// `[monitor.checks.NAME]`: checks of what users see, beyond the instances.
    #[serde(default)]
    pub checks: BTreeMap<String, CheckConfig>,
    /// `/metrics` published on a route of the app's proxy, behind a bearer token.
    #[serde(default)]
    pub metrics_route: Option<MetricsRoute>,
}

/// `[monitor] metrics_route = { host, path, token }`: the proxy routes `host` + `path` to the
/// agent's metrics, and only a request with `Authorization: Bearer TOKEN` gets them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsRoute {
    pub host: Option<String>,
    pub path: String,
    /// A `${secret.NAME}` template.
    pub token: EnvValue,
}

/// `[monitor.checks.NAME]`: an HTTP(S) URL (through DNS and TLS, as a visitor reaches it), a
/// TCP address, or a command, checked from the server on its own interval; its state changes
/// only after `threshold` results in a row agree (against flapping), and a failing check fires
/// the `check` alert rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckConfig {
    pub name: String,
    pub probe: CheckProbe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Results in a row that change the check's state.
    pub threshold: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckProbe {
    Http {
        url: String,
        /// The status wanted (`None`: any 2xx or 3xx; redirects are not followed).
        status: Option<u16>,
        /// Text the body must contain.
        body: Option<String>,
        /// A PEM file of extra CA certificates to trust (besides the public roots).
        ca: Option<std::path::PathBuf>,
    },
    Tcp {
        /// `host:port`, resolved at each check.
        address: String,
    },
    /// Passes when it exits 0 (run by `/bin/sh -c` for a string).
    Command { argv: Vec<String> },
}

impl CheckProbe {
    /// What is checked, for messages (a URL's query is left out: it may hold a token).
    pub fn target(&self) -> String {
        match self {
            CheckProbe::Http { url, .. } => url.split('?').next().unwrap_or(url).to_string(),
            CheckProbe::Tcp { address } => format!("tcp {address}"),
            CheckProbe::Command { argv } => argv.last().cloned().unwrap_or_default(),
        }
    }
}

impl Default for MonitorConfig {
    fn default() -> MonitorConfig {
        MonitorConfig {
            interval: Duration::from_secs(5),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            proxy_metrics: true,
            watch: WatchConfig::default(),
            checks: BTreeMap::new(),
            metrics_route: None,
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
        if let Some(f) = fields.get("metrics_route") {
            if let Some(t) = self.table(f) {
                out.metrics_route = self.metrics_route(t, value_span(f));
            }
        }
        if let Some(table) = fields.get("checks").and_then(|f| self.table(f)) {
            for (name, _) in table.iter() {
                let Some((key, item)) = table.get_key_value(name) else {
                    continue;
                };
                let f = Field {
                    name,
                    key,
                    item,
                    path: format!("monitor.checks.{name}"),
                };
                let Some(t) = self.table(&f) else { continue };
                if let Some(check) = self.check(name, &f.path, t, key_span(&f)) {
                    out.checks.insert(name.to_string(), check);
                }
            }
        }
        out
    }

    fn metrics_route(
        &mut self,
        table: &dyn TableLike,
        span: std::ops::Range<usize>,
    ) -> Option<MetricsRoute> {
        let f = self.fields(
            table,
            "monitor.metrics_route",
            METRICS_ROUTE_KEYS,
            "in [monitor] metrics_route",
        );
        let host = f.get("host").and_then(|h| self.string(h));
        let path = f
            .get("path")
            .and_then(|p| self.string(p))
            .unwrap_or_else(|| "/metrics".into());
        if !path.starts_with('/') {
            let field = f.get("path").expect("a path that is not the default");
            self.error(
                value_span(field),
                Some(&field.path),
                format!("the metrics path `{path}` must start with /"),
                None,
            );
            return None;
        }
        let Some(field) = f.get("token") else {
            self.error(
                span,
                Some("monitor.metrics_route"),
                "the metrics route needs a bearer `token`".into(),
                Some("metrics_route = { host = \"app.example.org\", path = \"/metrics\", token = \"${secret.METRICS_TOKEN}\" } (and `dockhand secrets set METRICS_TOKEN`)".into()),
            );
            return None;
        };
        let token = self.secret_string(field)?;
        if !token.has_secrets() {
            self.error(
                value_span(field),
                Some(&field.path),
                "the metrics token must come from the secrets file".into(),
                Some("write token = \"${secret.METRICS_TOKEN}\" and set it with `dockhand secrets set METRICS_TOKEN`".into()),
            );
            return None;
        }
        Some(MetricsRoute { host, path, token })
    }

    fn check(
        &mut self,
        name: &str,
        path: &str,
        table: &dyn TableLike,
        span: std::ops::Range<usize>,
    ) -> Option<CheckConfig> {
        let f = self.fields(table, path, CHECK_KEYS, "in a check");
        let mut probes = Vec::new();
        if let Some(field) = f.get("http") {
            if let Some(url) = self.string(field) {
                if url.starts_with("http://") || url.starts_with("https://") {
                    probes.push(CheckProbe::Http {
                        url,
                        status: f
                            .get("status")
                            .and_then(|s| self.integer_in::<u16>(s, 100, 599)),
                        body: f.get("body").and_then(|b| self.string(b)),
                        ca: f
                            .get("ca")
                            .and_then(|c| self.string(c))
                            .map(|c| self.project_dir.join(c)),
                    });
                } else {
                    self.error(
                        value_span(field),
                        Some(&field.path),
                        format!("`{url}` is not an http:// or https:// URL"),
                        Some("http = \"https://example.org/\"".into()),
                    );
                }
            }
        }
        if let Some(field) = f.get("tcp") {
            if let Some(address) = self.string(field) {
                if address
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                {
                    probes.push(CheckProbe::Tcp { address });
                } else {
                    self.error(
                        value_span(field),
                        Some(&field.path),
                        format!("`{address}` is not a host:port address"),
                        Some("tcp = \"db.example.org:5432\"".into()),
                    );
                }
            }
        }
        if let Some(field) = f.get("command") {
            if let Some(c) = self.command_line(field) {
                probes.push(CheckProbe::Command { argv: c.argv() });
            }
        }
        if probes.len() > 1 {
            self.error(
                span,
                Some(path),
                format!("check `{name}` has more than one of `http`, `tcp` and `command`"),
                Some("one check checks one thing: split it into two checks".into()),
            );
            return None;
        }
        let Some(probe) = probes.pop() else {
            if f.get("http").is_none() && f.get("tcp").is_none() && f.get("command").is_none() {
                self.error(
                    span,
                    Some(path),
                    format!("check `{name}` needs one of `http`, `tcp` or `command`"),
                    Some(format!(
                        "[monitor.checks.{name}]\nhttp = \"https://example.org/\""
                    )),
                );
            }
            return None;
        };
        if !matches!(probe, CheckProbe::Http { .. }) {
            for key in ["status", "body", "ca"] {
                if let Some(field) = f.get(key) {
                    self.error(
                        value_span(field),
                        Some(&field.path),
                        format!("`{key}` only applies to an `http` check"),
                        None,
                    );
                }
            }
        }
        let interval = f
            .get("interval")
            .and_then(|d| self.duration(d, false))
            .unwrap_or(Duration::from_secs(60));
        let timeout = f
            .get("timeout")
            .and_then(|d| self.duration(d, false))
            .unwrap_or(Duration::from_secs(10));
        let threshold = f
            .get("threshold")
            .and_then(|t| self.integer_in::<u32>(t, 1, 100))
            .unwrap_or(2);
        Some(CheckConfig {
            name: name.to_string(),
            probe,
            interval,
            timeout,
            threshold,
        })
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
    pub(crate) fn number(&mut self, f: &Field<'_>) -> Option<f64> {
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
    pub(crate) fn ratio(&mut self, f: &Field<'_>) -> Option<f64> {
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
