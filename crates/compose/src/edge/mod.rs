//! The reverse-proxy layer of a compose project, read into dockhand's edge: Traefik labels
//! and static flags (`traefik`), nginx configuration files (`nginx`) and Caddyfiles
//! (`caddy`). Each reader is pure — text in, [`EdgeRoute`]s, [`Redirect`]s, proxy settings
//! and report notes out — so it is tested (and fuzzed) with plain data; `convert::proxy`
//! finds the proxy services of a project, feeds the readers and writes their routes into the
//! services behind them.

pub mod caddy;
pub mod nginx;
pub mod traefik;

use toml_edit::{Array, InlineTable, Item, Value as TomlValue};

use crate::{Note, NoteKind};

/// One route of a service as the old proxy had it, in dockhand's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeRoute {
    /// The compose service the route reaches.
    pub service: String,
    /// The container port the proxy reached it on (none: from `expose` or `ports`).
    pub port: Option<u16>,
    pub host: Option<String>,
    /// The path prefix (none: `/`).
    pub path: Option<String>,
    pub strip_prefix: bool,
    pub add_prefix: Option<String>,
    pub https_redirect: Option<bool>,
    /// `"180d"`-style, or `Some(None)` for `hsts = false`.
    pub hsts: Option<Option<String>>,
    pub security_headers: Option<bool>,
    pub headers: Vec<(String, String)>,
    pub request_headers: Vec<(String, String)>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// `(rate, burst)`: `("10/s", 20)`.
    pub rate_limit: Option<(String, u32)>,
    /// `(realm, secret name)`.
    pub basic_auth: Option<(String, String)>,
    pub max_body: Option<String>,
    pub upstream_response_timeout: Option<String>,
    /// Where it came from, for the report (`router \`api\``, `server api.example.org location /api/`).
    pub origin: String,
}

impl EdgeRoute {
    /// The route as an inline table, keys in the order the reference lists them.
    pub fn to_inline(&self) -> InlineTable {
        let mut t = InlineTable::new();
        if let Some(h) = &self.host {
            t.insert("host", h.as_str().into());
        }
        t.insert("path", self.path.as_deref().unwrap_or("/").into());
        if self.strip_prefix {
            t.insert("strip_prefix", true.into());
        }
        if let Some(p) = &self.add_prefix {
            t.insert("add_prefix", p.as_str().into());
        }
        if let Some(r) = self.https_redirect {
            t.insert("https_redirect", r.into());
        }
        match &self.hsts {
            Some(Some(v)) => {
                t.insert("hsts", v.as_str().into());
            }
            Some(None) => {
                t.insert("hsts", false.into());
            }
            None => {}
        }
        if let Some(s) = self.security_headers {
            t.insert("security_headers", s.into());
        }
        for (key, list) in [
            ("headers", &self.headers),
            ("request_headers", &self.request_headers),
        ] {
            if !list.is_empty() {
                let mut h = InlineTable::new();
                for (k, v) in list {
                    h.insert(k, v.as_str().into());
                }
                t.insert(key, TomlValue::InlineTable(h));
            }
        }
        for (key, list) in [("allow", &self.allow), ("deny", &self.deny)] {
            if !list.is_empty() {
                let arr: Array = list.iter().map(String::as_str).collect();
                t.insert(key, TomlValue::Array(arr));
            }
        }
        if let Some((rate, burst)) = &self.rate_limit {
            let mut r = InlineTable::new();
            r.insert("rate", rate.as_str().into());
            r.insert("burst", i64::from(*burst).into());
            t.insert("rate_limit", TomlValue::InlineTable(r));
        }
        if let Some((realm, secret)) = &self.basic_auth {
            let mut b = InlineTable::new();
            b.insert("realm", realm.as_str().into());
            b.insert("users", format!("${{secret.{secret}}}").into());
            t.insert("basic_auth", TomlValue::InlineTable(b));
        }
        if let Some(m) = &self.max_body {
            t.insert("max_body", m.as_str().into());
        }
        if let Some(m) = &self.upstream_response_timeout {
            t.insert("upstream_response_timeout", m.as_str().into());
        }
        t
    }

    /// `host/path` for the report.
    pub fn describe(&self) -> String {
        format!(
            "{}{}",
            self.host.as_deref().unwrap_or("(any host)"),
            self.path.as_deref().unwrap_or("/")
        )
    }
}

/// The `route` item of a service: one table, or an array of them.
pub fn routes_item(routes: &[EdgeRoute]) -> Item {
    match routes {
        [one] => toml_edit::value(one.to_inline()),
        many => {
            let mut arr = Array::new();
            for r in many {
                arr.push(r.to_inline());
            }
            toml_edit::value(arr)
        }
    }
}

/// A top-level `[[redirects]]` entry: a host (or host and prefix) moved elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub from: String,
    pub to: String,
    pub code: u16,
}

/// A static site the old proxy served from a directory (nginx `root`, Caddy `file_server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSite {
    /// The directory inside the proxy container.
    pub container_dir: String,
    pub host: Option<String>,
    pub path: Option<String>,
    /// `try_files … /index.html`: the SPA fallback.
    pub fallback: Option<String>,
    pub origin: String,
}

/// What a reader found: routes, redirects, sites, `[proxy]` settings, secrets and notes.
#[derive(Debug, Default)]
pub struct EdgeRead {
    pub routes: Vec<EdgeRoute>,
    pub redirects: Vec<Redirect>,
    pub statics: Vec<StaticSite>,
    /// Some route is served over HTTPS (a cert resolver, `listen 443 ssl`, a TLS site).
    pub https: bool,
    pub acme_email: Option<String>,
    /// `false` when the old proxy compressed nothing (dockhand compresses by default).
    pub compression: Option<bool>,
    /// `(NAME, value)` for the secrets file: htpasswd lines.
    pub secrets: Vec<(String, String)>,
    pub notes: Vec<Note>,
}

impl EdgeRead {
    pub(crate) fn note(
        &mut self,
        service: &str,
        key: &str,
        kind: NoteKind,
        msg: impl Into<String>,
    ) {
        self.notes.push(Note {
            service: Some(service.to_owned()),
            key: key.to_owned(),
            kind,
            message: msg.into(),
        });
    }

    /// A secret name not used yet, from `base` (upper-cased, `-` → `_`).
    pub(crate) fn secret_name(&self, base: &str) -> String {
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = base.clone();
        let mut n = 2;
        while self.secrets.iter().any(|(s, _)| *s == name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }
}

/// `31536000` seconds as dockhand writes a long duration (`365d`), else `Ns`.
pub(crate) fn seconds_text(secs: u64) -> String {
    if secs > 0 && secs.is_multiple_of(86400) {
        format!("{}d", secs / 86400)
    } else {
        format!("{secs}s")
    }
}

/// An nginx/Traefik/Caddy size (`50m`, `10M`, `1g`, `512k`, bytes) as dockhand's (`50MiB`).
pub(crate) fn size_text(s: &str) -> Option<String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let unit = match unit.to_ascii_lowercase().as_str() {
        "" if n > 0 && n.is_multiple_of(1 << 20) => return Some(format!("{}MiB", n >> 20)),
        "" if n > 0 && n.is_multiple_of(1 << 10) => return Some(format!("{}KiB", n >> 10)),
        "" => return Some(format!("{n}B")),
        "k" | "kb" | "kib" => "KiB",
        "m" | "mb" | "mib" => "MiB",
        "g" | "gb" | "gib" => "GiB",
        _ => return None,
    };
    Some(format!("{n}{unit}"))
}

/// An nginx-style duration (`120s`, `2m`, `60`, `1h`) as dockhand's.
pub(crate) fn duration_text(s: &str) -> Option<String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    match unit {
        "" | "s" => Some(format!("{n}s")),
        "m" => Some(format!("{n}m")),
        "h" => Some(format!("{n}h")),
        "ms" => Some(format!("{n}ms")),
        _ => None,
    }
}
