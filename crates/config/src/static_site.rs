//! A service's `static` key: files the proxy serves itself, with no process.
//!
//! ```toml
//! [services.web]
//! static = "web/dist"                      # a directory next to dockhand.toml
//! route = { host = "shop.example.org" }
//!
//! [services.docs]
//! build = "docs"                           # or image = "…": the files come from the image,
//! static = { path = "/usr/share/nginx/html", fallback = "/index.html" }   # copied out once per release
//! route = { host = "docs.example.org" }
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::parse::{key_span, value_span, Field, Parser};

const STATIC_KEYS: &[&str] = &["dir", "path", "index", "fallback", "not_found", "cache"];
const CACHE_KEYS: &[&str] = &["html", "fingerprinted", "other"];

/// Keys a static service may not have (it runs nothing).
pub(crate) const NOT_FOR_STATIC: &[&str] = &[
    "command",
    "workdir",
    "port",
    "env",
    "health",
    "replicas",
    "restart",
    "memory",
    "stop_timeout",
    "hooks",
    "entrypoint",
    "volumes",
    "cpus",
    "user",
    "init",
    "shm_size",
    "ulimits",
];

/// What the proxy serves for a static service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StaticConfig {
    pub source: StaticSource,
    /// The file served for a directory.
    pub index: String,
    /// Served for a path without a file extension that matches no file (an SPA's routes).
    pub fallback: Option<String>,
    /// Served with status 404 for a path that matches nothing.
    pub not_found: Option<String>,
    pub cache: StaticCache,
}

/// Where the files come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum StaticSource {
    /// A directory on this machine (absolute), copied for each release.
    Dir(PathBuf),
    /// A directory (absolute) inside the service's image, copied out for each release.
    Image(String),
}

/// `Cache-Control` by kind of file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StaticCache {
    pub html: String,
    pub fingerprinted: String,
    pub other: String,
}

impl Default for StaticCache {
    fn default() -> StaticCache {
        StaticCache {
            html: "no-cache".into(),
            fingerprinted: "public, max-age=31536000, immutable".into(),
            other: "no-cache".into(),
        }
    }
}

impl Parser<'_> {
    /// `static = "dir"` or `static = { dir | path, index, fallback, not_found, cache }`.
    pub(crate) fn static_site(
        &mut self,
        service: &str,
        f: &Field<'_>,
        container: bool,
    ) -> Option<StaticConfig> {
        let mut config = StaticConfig {
            source: StaticSource::Dir(PathBuf::new()),
            index: "index.html".into(),
            fallback: None,
            not_found: None,
            cache: StaticCache::default(),
        };
        if f.item.is_str() {
            if container {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("service `{service}` takes its files from its image, so `static` needs the `path` inside it"),
                    Some("write static = { path = \"/usr/share/nginx/html\" }, or remove `image`/`build` to serve a local directory".into()),
                );
                return None;
            }
            config.source = StaticSource::Dir(self.static_dir(f)?);
            return Some(config);
        }
        let table = self.table(f)?;
        let fields = self.fields(table, &f.path, STATIC_KEYS, "in `static`");
        match (fields.get("dir"), fields.get("path"), container) {
            (Some(d), None, false) => config.source = StaticSource::Dir(self.static_dir(d)?),
            (None, Some(p), true) => {
                let path = self.string(p)?;
                if !path.starts_with('/') {
                    self.error(
                        value_span(p),
                        Some(&p.path),
                        format!("`static.path` `{path}` must be an absolute path inside the image"),
                        Some(format!("write path = \"/{path}\"")),
                    );
                    return None;
                }
                config.source = StaticSource::Image(path);
            }
            (Some(d), _, true) => {
                self.error(
                    key_span(d),
                    Some(&d.path),
                    format!("service `{service}` has an image, so its static files come from `path` inside it"),
                    Some("use path = \"/dir/in/image\", or remove `image`/`build` to serve a local directory".into()),
                );
                return None;
            }
            (_, Some(p), false) => {
                self.error(
                    key_span(p),
                    Some(&p.path),
                    format!("`static.path` is a directory inside an image, and service `{service}` has none"),
                    Some("use dir = \"web/dist\" for a local directory, or add image = \"…\" or build = \"…\"".into()),
                );
                return None;
            }
            (None, None, _) => {
                self.error(
                    key_span(f),
                    Some(&format!("{}.dir", f.path)),
                    "`static` says neither `dir` nor `path`".into(),
                    Some("add dir = \"web/dist\" (relative to dockhand.toml)".into()),
                );
                return None;
            }
        }
        if let Some(i) = fields.get("index") {
            if let Some(index) = self.string(i) {
                if index.is_empty() || index.contains('/') {
                    self.error(
                        value_span(i),
                        Some(&i.path),
                        format!("`static.index` `{index}` must be a file name"),
                        Some("write index = \"index.html\"".into()),
                    );
                } else {
                    config.index = index;
                }
            }
        }
        for (name, slot) in [
            ("fallback", &mut config.fallback),
            ("not_found", &mut config.not_found),
        ] {
            if let Some(p) = fields.get(name) {
                if let Some(page) = self.string(p) {
                    if page.starts_with('/') && !page.contains("..") {
                        *slot = Some(page);
                    } else {
                        self.error(
                            value_span(p),
                            Some(&p.path),
                            format!("`static.{name}` `{page}` must be a path in the site starting with `/`"),
                            Some("for example \"/index.html\"".into()),
                        );
                    }
                }
            }
        }
        if let Some(c) = fields.get("cache") {
            if let Some(table) = self.table(c) {
                let cache = self.fields(table, &c.path, CACHE_KEYS, "in `static.cache`");
                for (name, slot) in [
                    ("html", &mut config.cache.html),
                    ("fingerprinted", &mut config.cache.fingerprinted),
                    ("other", &mut config.cache.other),
                ] {
                    if let Some(v) = cache.get(name) {
                        if let Some(value) = self.string(v) {
                            if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                                *slot = value;
                            } else {
                                self.error(
                                    value_span(v),
                                    Some(&v.path),
                                    format!("`{value}` is not a valid Cache-Control value"),
                                    Some("for example \"public, max-age=3600\"".into()),
                                );
                            }
                        }
                    }
                }
            }
        }
        if let (StaticSource::Dir(dir), Some(page)) = (&config.source, &config.fallback) {
            let file = dir.join(page.trim_start_matches('/'));
            if dir.is_dir() && !file.is_file() {
                if let Some(p) = fields.get("fallback") {
                    self.error(
                        value_span(p),
                        Some(&p.path),
                        format!("the fallback page {} does not exist", file.display()),
                        Some("build the site first, or fix the path".into()),
                    );
                }
            }
        }
        Some(config)
    }

    fn static_dir(&mut self, f: &Field<'_>) -> Option<PathBuf> {
        let dir = self.path(f)?;
        let problem = if !dir.exists() {
            Some("does not exist")
        } else if !dir.is_dir() {
            Some("is not a directory")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("static directory {} {problem}", dir.display()),
                Some("it is relative to the directory of dockhand.toml; build the site first (e.g. npm run build) or fix the path".into()),
            );
            return None;
        }
        Some(dir)
    }
}

impl Parser<'_> {
    /// A route's policy keys: `headers`, `security_headers`, `allow`, `deny`, `rate_limit`.
    pub(crate) fn route_policy(
        &mut self,
        fields: &crate::parse::Fields<'_>,
        route: &mut crate::model::Route,
    ) {
        if let Some(f) = fields.get("headers") {
            if let Some(table) = self.table(f) {
                for (name, item) in table.iter() {
                    let value = item.as_str();
                    let name_ok = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    match value {
                        Some(v)
                            if name_ok
                                && v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) =>
                        {
                            route
                                .headers
                                .insert(name.to_ascii_lowercase(), v.to_string());
                        }
                        _ => self.error(
                            value_span(f),
                            Some(&format!("{}.{name}", f.path)),
                            format!("`{name}` is not a valid response header with a text value"),
                            Some("write headers = { \"Cache-Control\" = \"no-store\" }".into()),
                        ),
                    }
                }
            }
        }
        if let Some(f) = fields.get("security_headers") {
            route.security_headers = self.boolean(f);
        }
        if let Some(f) = fields.get("allow") {
            route.allow = self.ranges(f);
        }
        if let Some(f) = fields.get("deny") {
            route.deny = self.ranges(f);
        }
        if let Some(f) = fields.get("rate_limit") {
            route.rate_limit = self.rate_limit(f);
        }
    }

    /// A list of IP addresses or CIDR ranges.
    pub(crate) fn ranges(&mut self, f: &Field<'_>) -> Vec<String> {
        let Some(list) = self.string_array(f) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for text in list {
            let valid = match text.split_once('/') {
                Some((a, p)) => match (a.parse::<std::net::IpAddr>(), p.parse::<u8>()) {
                    (Ok(ip), Ok(p)) => p <= if ip.is_ipv4() { 32 } else { 128 },
                    _ => false,
                },
                None => text.parse::<std::net::IpAddr>().is_ok(),
            };
            if valid {
                out.push(text);
            } else {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("`{text}` is not an IP address or range"),
                    Some(
                        "write addresses like \"203.0.113.7\" or ranges like \"10.0.0.0/8\"".into(),
                    ),
                );
            }
        }
        out
    }

    fn rate_limit(&mut self, f: &Field<'_>) -> Option<crate::model::RateLimitConfig> {
        let table = self.table(f)?;
        let fields = self.fields(table, &f.path, &["rate", "burst"], "in `rate_limit`");
        let Some(r) = fields.get("rate") else {
            self.error(
                key_span(f),
                Some(&format!("{}.rate", f.path)),
                "`rate_limit` has no `rate`".into(),
                Some("add rate = \"10/s\" (requests per second, minute or hour per client)".into()),
            );
            return None;
        };
        let text = self.string(r)?;
        let per_second = text.split_once('/').and_then(|(n, unit)| {
            let n: f64 = n.trim().parse().ok().filter(|n: &f64| *n > 0.0)?;
            let secs = match unit.trim() {
                "s" | "sec" | "second" => 1.0,
                "m" | "min" | "minute" => 60.0,
                "h" | "hour" => 3600.0,
                _ => return None,
            };
            Some(n / secs)
        });
        let Some(per_second) = per_second else {
            self.error(
                value_span(r),
                Some(&r.path),
                format!("bad rate `{text}`"),
                Some("write a count per unit: \"10/s\", \"600/m\" or \"1000/h\"".into()),
            );
            return None;
        };
        let burst = match fields.get("burst") {
            Some(b) => self.integer_in(b, 1, 1_000_000)?,
            None => (per_second.ceil() as u32).max(1),
        };
        Some(crate::model::RateLimitConfig { per_second, burst })
    }
}

impl Parser<'_> {
    /// `[proxy] access_log = true | false | { format, output, max_size, keep }`.
    pub(crate) fn access_log(&mut self, f: &Field<'_>) -> Option<crate::model::AccessLogSettings> {
        let mut out = crate::model::AccessLogSettings::default();
        if let Some(on) = f.item.as_bool() {
            return on.then_some(out);
        }
        let table = self.table(f)?;
        let fields = self.fields(
            table,
            &f.path,
            &["format", "output", "max_size", "keep"],
            "in `access_log`",
        );
        for (name, allowed, slot) in [
            ("format", &["json", "combined"][..], &mut out.format),
            ("output", &["file", "stdout"][..], &mut out.output),
        ] {
            if let Some(v) = fields.get(name) {
                if let Some(text) = self.string(v) {
                    if allowed.contains(&text.as_str()) {
                        *slot = text;
                    } else {
                        self.error(
                            value_span(v),
                            Some(&v.path),
                            format!("unknown access log {name} `{text}`"),
                            Some(format!(
                                "use {}",
                                allowed
                                    .iter()
                                    .map(|a| format!("\"{a}\""))
                                    .collect::<Vec<_>>()
                                    .join(" or ")
                            )),
                        );
                    }
                }
            }
        }
        if let Some(v) = fields.get("max_size") {
            if let Some(size) = self.size(v) {
                out.max_size = size;
            }
        }
        if let Some(v) = fields.get("keep") {
            if let Some(keep) = self.integer_in(v, 0, 1000) {
                out.keep = keep;
            }
        }
        Some(out)
    }
}
