//! `[update]`: GitOps. The agent watches a git remote's branch (by polling it, on an interval
//! or a cron schedule) and deploys each new commit through the normal health gate, after a
//! backup when `[backups]` exists; a commit that fails is rolled back and not tried again
//! until a newer one arrives. A push webhook (`webhook`) triggers the same check at once, and
//! a maintenance window (`window`) holds automatic updates to certain hours.

use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Timelike};
use serde::{Deserialize, Serialize};
use toml_edit::TableLike;

use crate::interpolate::SecretMode;
use crate::model::{EnvValue, UpdateConfig};
use crate::parse::{key_span, value_span, Parser};

const UPDATE_KEYS: &[&str] = &[
    "git", "poll", "schedule", "backup", "webhook", "window", "images",
];
const GIT_KEYS: &[&str] = &["repo", "branch"];
const WEBHOOK_KEYS: &[&str] = &["path", "host", "secret"];

pub(crate) fn yes() -> bool {
    true
}

/// Where the webhook is served when `path` is left out.
pub const DEFAULT_WEBHOOK_PATH: &str = "/_dockhand/hook";

/// `[update] webhook`: the proxy serves `path` (on `host`, else on every routed host) and
/// hands the request to the agent, which verifies it with `secret`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WebhookConfig {
    pub path: String,
    pub host: Option<String>,
    /// A `${secret.NAME}` template, resolved only when a request is verified.
    pub secret: EnvValue,
}

/// `[update] window`: when automatic updates may deploy, in the server's time zone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Window {
    /// Days of the week and a time range; a range that ends before it starts runs past
    /// midnight into the next day (`Fri 22:00-02:00` includes Saturday 01:00).
    Weekly {
        spec: String,
        /// Bit 0 is Monday.
        days: u8,
        /// Minutes after midnight.
        start: u16,
        end: u16,
    },
    /// The minutes a cron expression matches (`* 2-4 * * 1-5`).
    Cron { spec: String },
}

impl Window {
    /// The window as written.
    pub fn spec(&self) -> &str {
        match self {
            Window::Weekly { spec, .. } | Window::Cron { spec } => spec,
        }
    }

    /// Whether `at` (in the time zone the window is read in) is inside the window.
    pub fn contains<Tz: TimeZone>(&self, at: &DateTime<Tz>) -> bool {
        match self {
            Window::Weekly {
                days, start, end, ..
            } => {
                let minute = (at.hour() * 60 + at.minute()) as u16;
                let today = at.weekday().num_days_from_monday();
                let yesterday = (today + 6) % 7;
                let on = |d: u32| days & (1 << d) != 0;
                if start < end {
                    on(today) && (*start..*end).contains(&minute)
                } else {
                    (on(today) && minute >= *start) || (on(yesterday) && minute < *end)
                }
            }
            Window::Cron { spec } => crate::cron::parse_cron(spec)
                .ok()
                .and_then(|c| c.is_time_matching(at).ok())
                .unwrap_or(false),
        }
    }

    /// The first minute at or after `after` inside the window (within eight days).
    pub fn next_open<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let start = after.clone() - chrono::Duration::seconds(i64::from(after.second()));
        (0..8 * 24 * 60)
            .map(|m| start.clone() + chrono::Duration::minutes(m))
            .find(|t| t >= after && self.contains(t))
            .or_else(|| self.contains(after).then(|| after.clone()))
    }
}

/// Parses `Mon-Fri 02:00-05:00`, `Sat,Sun 00:00-06:00`, `daily 03:00-04:00` or
/// `02:00-05:00` (every day); the error says what is wrong.
pub fn parse_weekly(spec: &str) -> Result<Window, String> {
    let mut parts = spec.split_whitespace();
    let (days, range) = match (parts.next(), parts.next(), parts.next()) {
        (Some(range), None, None) => ("daily", range),
        (Some(days), Some(range), None) => (days, range),
        _ => return Err("write the days and the hours, e.g. \"Mon-Fri 02:00-05:00\"".into()),
    };
    let mut mask = 0u8;
    if days.eq_ignore_ascii_case("daily") || days == "*" {
        mask = 0x7f;
    } else {
        for item in days.split(',') {
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            let (a, b) = (day(a)?, day(b)?);
            let mut d = a;
            loop {
                mask |= 1 << d;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
        }
    }
    let (from, to) = range
        .split_once('-')
        .ok_or_else(|| format!("`{range}` is not a time range; write it as 02:00-05:00"))?;
    let (start, end) = (clock(from)?, clock(to)?);
    if start == end {
        return Err(format!(
            "the window `{range}` is empty; write a range such as 02:00-05:00"
        ));
    }
    Ok(Window::Weekly {
        spec: spec.to_string(),
        days: mask,
        start,
        end,
    })
}

fn day(name: &str) -> Result<u32, String> {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let lower = name.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| lower.len() >= 3 && d.starts_with(&lower))
        .map(|d| d as u32)
        .ok_or_else(|| format!("`{name}` is not a day; write Mon, Tue, Wed, Thu, Fri, Sat or Sun"))
}

fn clock(text: &str) -> Result<u16, String> {
    let bad = || format!("`{text}` is not a time; write HH:MM (24-hour), e.g. 02:00");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m != 0) || text.len() > 5 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// How often the remote is polled by default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(60);

impl Parser<'_> {
    pub(crate) fn update(
        &mut self,
        table: &dyn TableLike,
        span: std::ops::Range<usize>,
        has_backups: bool,
    ) -> Option<UpdateConfig> {
        let fields = self.fields(table, "update", UPDATE_KEYS, "in [update]");
        let mut repo = None;
        let mut branch = "main".to_string();
        match fields.get("git") {
            Some(f) => {
                let t = self.table(f)?;
                let git = self.fields(t, "update.git", GIT_KEYS, "in [update] git");
                if let Some(f) = git.get("repo") {
                    let r = self.string(f)?;
                    if r.trim().is_empty() {
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            "the git repository is empty".into(),
                            Some("write its URL or path, or leave `repo` out to use the project's `origin`".into()),
                        );
                        return None;
                    }
                    repo = Some(r);
                }
                if let Some(f) = git.get("branch") {
                    let b = self.string(f)?;
                    if b.is_empty()
                        || b.starts_with('-')
                        || b.contains([' ', '~', '^', ':', '?', '*', '[', '\\'])
                        || b.contains("..")
                    {
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            format!("`{b}` is not a valid branch name"),
                            Some("write the branch to follow, e.g. branch = \"main\"".into()),
                        );
                        return None;
                    }
                    branch = b;
                }
            }
            None => {
                let images = fields
                    .get("images")
                    .and_then(|f| f.item.as_bool())
                    .unwrap_or(false);
                if !images {
                    self.error(
                        span.clone(),
                        Some("update.git"),
                        "[update] needs `git` (the repository and branch to follow) or `images = true`".into(),
                        Some("add git = { branch = \"main\" } (the project's `origin`), or git = { repo = \"https://…\", branch = \"main\" }; or images = true to follow the tags of `image` services".into()),
                    );
                    return None;
                }
            }
        }
        let follow_git = fields.get("git").is_some();
        let images = match fields.get("images") {
            Some(f) => self.boolean(f)?,
            None => false,
        };
        let poll = fields.get("poll").and_then(|f| {
            let d = self.duration(f, false)?;
            if d < Duration::from_secs(1) {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    "`poll` must be at least 1s".into(),
                    Some("a poll costs one `git ls-remote`; \"1m\" is a good interval".into()),
                );
                return None;
            }
            Some(d)
        });
        let schedule = fields.get("schedule").and_then(|f| self.cron(f));
        if let (Some(_), Some(_), Some(f)) = (&poll, &schedule, fields.get("schedule")) {
            self.error(
                key_span(f),
                Some(&f.path),
                "set either `poll` or `schedule` in [update], not both".into(),
                Some("`poll` checks on an interval; `schedule` at cron times".into()),
            );
            return None;
        }
        let backup = match fields.get("backup") {
            Some(f) => {
                let b = self.boolean(f)?;
                if b && !has_backups {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        "`backup = true` needs a [backups] table".into(),
                        Some(
                            "add [backups] (see the configuration reference), or remove `backup`"
                                .into(),
                        ),
                    );
                    return None;
                }
                b
            }
            None => has_backups,
        };
        let webhook = match fields.get("webhook") {
            Some(f) => Some(self.webhook(f)?),
            None => None,
        };
        let window = match fields.get("window") {
            Some(f) => Some(self.window(f)?),
            None => None,
        };
        if webhook.is_some() && !follow_git {
            self.error(
                span,
                Some("update.webhook"),
                "a push webhook needs `git`: the branch whose pushes it announces".into(),
                Some("add git = { branch = \"main\" }, or remove `webhook`".into()),
            );
            return None;
        }
        Some(UpdateConfig {
            follow_git,
            images,
            webhook,
            window,
            repo,
            branch,
            poll: if schedule.is_some() {
                None
            } else {
                Some(poll.unwrap_or(DEFAULT_POLL))
            },
            schedule,
            backup,
        })
    }
}

impl Parser<'_> {
    fn webhook(&mut self, at: &crate::parse::Field<'_>) -> Option<WebhookConfig> {
        let table = self.table(at)?;
        let fields = self.fields(table, "update.webhook", WEBHOOK_KEYS, "in [update] webhook");
        let mut path = DEFAULT_WEBHOOK_PATH.to_string();
        if let Some(f) = fields.get("path") {
            let p = self.string(f)?;
            if !p.starts_with('/')
                || p.len() < 2
                || p.contains(['?', '#'])
                || p.contains(char::is_whitespace)
            {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("webhook path `{p}` must be a plain path such as /_dockhand/hook"),
                    Some("write path = \"/_dockhand/hook\" (no query, fragment or spaces)".into()),
                );
                return None;
            }
            path = p.trim_end_matches('/').to_string();
        }
        let host = match fields.get("host") {
            Some(f) => {
                let h = self.string(f)?.to_ascii_lowercase();
                if h.is_empty()
                    || h.starts_with(['.', '-'])
                    || !h
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("webhook host `{h}` is not a valid host name"),
                        Some("write a host name such as \"shop.example.com\", or leave `host` out to serve the path on every routed host".into()),
                    );
                    return None;
                }
                Some(h)
            }
            None => None,
        };
        let Some(f) = fields.get("secret") else {
            self.error(
                key_span(at),
                Some(&at.path),
                "the webhook needs `secret`: the shared secret its requests are verified with"
                    .into(),
                Some("write secret = \"${secret.UPDATE_WEBHOOK}\" and put the same value in the secrets file and in the forge's webhook settings".into()),
            );
            return None;
        };
        let raw = self.raw_str(f)?;
        let out = self.interpolate(f, raw, SecretMode::Keep)?;
        let secret = EnvValue::from_template(out.value);
        if !secret.has_secrets() {
            self.error(
                value_span(f),
                Some(&f.path),
                "the webhook secret must come from the secrets file".into(),
                Some("write secret = \"${secret.UPDATE_WEBHOOK}\" and run `dockhand secrets set UPDATE_WEBHOOK`".into()),
            );
            return None;
        }
        let clash = self
            .routes
            .iter()
            .find(|r| r.path == path && (host.is_none() || r.host == host))
            .map(|r| r.service.clone());
        if let Some(service) = clash {
            self.error(
                key_span(at),
                Some(&at.path),
                format!("the webhook path `{path}` is also the route of service `{service}`"),
                Some("choose another webhook path, e.g. path = \"/_dockhand/hook\"".into()),
            );
            return None;
        }
        Some(WebhookConfig { path, host, secret })
    }

    fn window(&mut self, f: &crate::parse::Field<'_>) -> Option<Window> {
        let spec = self.string(f)?;
        if spec.contains(':') {
            return match parse_weekly(&spec) {
                Ok(w) => Some(w),
                Err(problem) => {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("invalid maintenance window `{spec}`: {problem}"),
                        Some("write days and hours, e.g. window = \"Mon-Fri 02:00-05:00\", or a cron expression whose matching minutes are the window, e.g. \"* 2-4 * * 1-5\"".into()),
                    );
                    None
                }
            };
        }
        self.cron(f).map(|spec| Window::Cron { spec })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_weekday_window_holds_its_hours_on_its_days_only() {
        let w = parse_weekly("Mon-Fri 02:00-05:00").unwrap();
        // 2026-12-07 is a Monday.
        assert!(w.contains(&at("2026-12-07T02:00:00Z")));
        assert!(w.contains(&at("2026-12-07T04:59:00Z")));
        assert!(!w.contains(&at("2026-12-07T05:00:00Z")));
        assert!(!w.contains(&at("2026-12-07T01:59:00Z")));
        assert!(!w.contains(&at("2026-12-06T03:00:00Z")), "a Sunday");
        assert_eq!(
            w.next_open(&at("2026-12-05T12:00:30Z")),
            Some(at("2026-12-07T02:00:00Z"))
        );
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_starts() {
        let w = parse_weekly("Fri 22:00-02:00").unwrap();
        assert!(w.contains(&at("2026-12-11T23:00:00Z")), "Friday night");
        assert!(w.contains(&at("2026-12-12T01:00:00Z")), "Saturday morning");
        assert!(!w.contains(&at("2026-12-12T23:00:00Z")), "Saturday night");
        assert!(!w.contains(&at("2026-12-11T01:00:00Z")), "Friday morning");
    }

    #[test]
    fn day_lists_ranges_and_every_day() {
        let Window::Weekly { days, .. } = parse_weekly("Sat,Sun 00:00-06:00").unwrap() else {
            panic!()
        };
        assert_eq!(days, 0b110_0000);
        let Window::Weekly { days, .. } = parse_weekly("Fri-Mon 01:00-02:00").unwrap() else {
            panic!()
        };
        assert_eq!(days, 0b111_0001);
        let Window::Weekly { days, .. } = parse_weekly("03:00-04:00").unwrap() else {
            panic!()
        };
        assert_eq!(days, 0x7f);
        for bad in [
            "Mon-Fri",
            "Moon 01:00-02:00",
            "Mon 1-2",
            "Mon 02:00-02:00",
            "Mon 25:00-26:00",
        ] {
            assert!(parse_weekly(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_cron_window_is_the_minutes_it_matches() {
        let w = Window::Cron {
            spec: "* 2-4 * * 1-5".into(),
        };
        assert!(w.contains(&at("2026-12-07T04:59:00Z")));
        assert!(!w.contains(&at("2026-12-07T05:00:00Z")));
        assert!(!w.contains(&at("2026-12-06T03:00:00Z")));
    }
}
