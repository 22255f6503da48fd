//! The edge policies of a route that change what reaches the upstream — `basic_auth`,
//! `request_headers`, `add_prefix`, and the per-route `max_body` and
//! `upstream_response_timeout` — and the top-level `[[redirects]]`.
//!
//! `basic_auth.users` names a secret (htpasswd lines); the config keeps the
//! `${secret.NAME}` template and the agent reads the users when it builds the routing
//! table, so no hash enters the config, a release snapshot or an error.

use std::ops::Range;

use toml_edit::{Item, TableLike, Value};

use crate::interpolate::SecretMode;
use crate::model::{BasicAuthConfig, EnvValue, RedirectConfig, Route};
use crate::parse::{key_span, value_span, Field, Fields, Parser};

const BASIC_AUTH_KEYS: &[&str] = &["realm", "users"];
const REDIRECT_KEYS: &[&str] = &["from", "to", "code", "keep_path"];
const REDIRECT_EXAMPLE: &str =
    "[[redirects]] from = \"www.example.org\" to = \"https://example.org\"";
/// Request headers the proxy itself sets or that frame the message: a route may not set them.
const RESERVED_REQUEST_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

impl Parser<'_> {
    /// `basic_auth`, `request_headers`, `add_prefix`, `max_body`, `upstream_response_timeout`.
    pub(crate) fn route_edge(&mut self, fields: &Fields<'_>, route: &mut Route) {
        if let Some(f) = fields.get("basic_auth") {
            route.basic_auth = self.basic_auth(f);
        }
        if let Some(f) = fields.get("request_headers") {
            if let Some(table) = self.table(f) {
                for (name, item) in table.iter() {
                    let key = format!("{}.{name}", f.path);
                    let span = item
                        .as_value()
                        .and_then(Value::span)
                        .unwrap_or_else(|| value_span(f));
                    let lower = name.to_ascii_lowercase();
                    let name_ok = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    let value = item
                        .as_str()
                        .filter(|v| v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)));
                    if RESERVED_REQUEST_HEADERS.contains(&lower.as_str()) {
                        self.error(
                            span,
                            Some(&key),
                            format!("`{name}` is set by the proxy and cannot be changed per route"),
                            Some("remove it; the proxy sends Host, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and X-Request-Id itself".into()),
                        );
                        continue;
                    }
                    match value {
                        Some(v) if name_ok => {
                            route.request_headers.insert(lower, v.to_string());
                        }
                        _ => self.error(
                            span,
                            Some(&key),
                            format!("`{name}` is not a valid request header with a text value"),
                            Some("write request_headers = { \"X-Forwarded-Prefix\" = \"/api\", \"X-Unwanted\" = \"\" } (an empty value removes the header)".into()),
                        ),
                    }
                }
            }
        }
        if let Some(f) = fields.get("add_prefix") {
            if let Some(prefix) = self.string(f) {
                let trimmed = prefix.trim_end_matches('/');
                if !prefix.starts_with('/')
                    || prefix.contains(['?', '#', '%'])
                    || prefix.contains(char::is_whitespace)
                    || prefix.split('/').any(|s| s == "." || s == "..")
                {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("`add_prefix` `{prefix}` must be a plain path starting with `/`"),
                        Some("write add_prefix = \"/v1\"".into()),
                    );
                } else if !trimmed.is_empty() {
                    route.add_prefix = Some(trimmed.to_string());
                }
            }
        }
        if let Some(f) = fields.get("max_body") {
            route.max_body = self.size(f);
        }
        if let Some(f) = fields.get("upstream_response_timeout") {
            route.upstream_response_timeout = self.duration(f, false);
        }
    }

    fn basic_auth(&mut self, f: &Field<'_>) -> Option<BasicAuthConfig> {
        let table = self.table(f)?;
        let fields = self.fields(table, &f.path, BASIC_AUTH_KEYS, "in `basic_auth`");
        let realm = match fields.get("realm") {
            Some(r) => {
                let realm = self.string(r)?;
                if realm.is_empty()
                    || realm
                        .bytes()
                        .any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b))
                {
                    self.error(
                        value_span(r),
                        Some(&r.path),
                        "the realm must be printable text without `\"` or `\\`".into(),
                        Some("write realm = \"Restricted\"".into()),
                    );
                    return None;
                }
                realm
            }
            None => "Restricted".to_string(),
        };
        let Some(u) = fields.get("users") else {
            self.error(
                key_span(f),
                Some(&f.path),
                "`basic_auth` needs `users`".into(),
                Some(USERS_HELP.into()),
            );
            return None;
        };
        let raw = self.raw_str(u)?;
        let out = self.interpolate(u, raw, SecretMode::Keep)?;
        let users = EnvValue::from_template(out.value);
        let names = users.secret_names();
        if names.len() != 1 || users.template() != format!("${{secret.{}}}", names[0]) {
            self.error(
                value_span(u),
                Some(&u.path),
                "`users` must be a reference to a secret, not the users themselves".into(),
                Some(USERS_HELP.into()),
            );
            return None;
        }
        Some(BasicAuthConfig { realm, users })
    }

    /// `[[redirects]]` (or `redirects = [{ … }]`).
    pub(crate) fn redirects(&mut self, f: &Field<'_>) -> Vec<RedirectConfig> {
        let mut tables: Vec<(&dyn TableLike, Range<usize>)> = Vec::new();
        match f.item {
            Item::Value(Value::Array(array)) => {
                for value in array.iter() {
                    let span = value.span().unwrap_or_else(|| value_span(f));
                    match value {
                        Value::InlineTable(t) => tables.push((t, span)),
                        _ => self.error(
                            span,
                            Some(&f.path),
                            "each redirect is a table with `from` and `to`".into(),
                            Some(format!("write {REDIRECT_EXAMPLE}")),
                        ),
                    }
                }
            }
            Item::ArrayOfTables(array) => {
                for table in array.iter() {
                    tables.push((table, table.span().unwrap_or_else(|| key_span(f))));
                }
            }
            _ => {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    "expected an array of tables for `redirects`".into(),
                    Some(format!("write {REDIRECT_EXAMPLE}")),
                );
                return Vec::new();
            }
        }
        let mut out: Vec<RedirectConfig> = Vec::new();
        for (i, (table, span)) in tables.into_iter().enumerate() {
            let path = format!("{}[{i}]", f.path);
            let fields = self.fields(table, &path, REDIRECT_KEYS, "in a redirect");
            let (Some(from_f), Some(to_f)) = (fields.get("from"), fields.get("to")) else {
                self.error(
                    span,
                    Some(&path),
                    "a redirect needs `from` and `to`".into(),
                    Some(format!("write {REDIRECT_EXAMPLE}")),
                );
                continue;
            };
            let Some((from_host, from_path)) = self.redirect_from(from_f) else {
                continue;
            };
            let Some(to) = self.redirect_to(to_f) else {
                continue;
            };
            let code = match fields.get("code") {
                Some(c) => match self.integer_in::<u16>(c, 0, 999) {
                    Some(code @ (301 | 302 | 307 | 308)) => code,
                    Some(code) => {
                        self.error(
                            value_span(c),
                            Some(&c.path),
                            format!("unknown redirect code {code}"),
                            Some("use 301 (permanent, the default), 302 (temporary), 307 or 308 (the same, keeping the method and body)".into()),
                        );
                        continue;
                    }
                    None => continue,
                },
                None => 301,
            };
            let keep_path = fields
                .get("keep_path")
                .and_then(|k| self.boolean(k))
                .unwrap_or(true);
            let rule = RedirectConfig {
                from_host,
                from_path,
                to,
                code,
                keep_path,
            };
            if let Some(problem) = loop_problem(&rule) {
                self.error(
                    value_span(to_f),
                    Some(&to_f.path),
                    problem,
                    Some("point `to` at another host or at a path outside `from`".into()),
                );
                continue;
            }
            if out
                .iter()
                .any(|r| r.from_host == rule.from_host && r.from_path == rule.from_path)
            {
                self.error(
                    value_span(from_f),
                    Some(&from_f.path),
                    format!("a redirect from `{}` is already defined", from_text(&rule)),
                    Some("keep one of them".into()),
                );
                continue;
            }
            out.push(rule);
        }
        out
    }

    fn redirect_from(&mut self, f: &Field<'_>) -> Option<(String, String)> {
        let text = self.string(f)?;
        let (host, path) = match text.find('/') {
            Some(i) => (&text[..i], &text[i..]),
            None => (text.as_str(), "/"),
        };
        let host = host.to_ascii_lowercase();
        let host_ok = !host.is_empty()
            && !host.starts_with(['.', '-'])
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        let path_ok = !path.contains(['?', '#']) && !path.contains(char::is_whitespace);
        if text.contains("://") || !host_ok || !path_ok {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("redirect `from` `{text}` is not a host or a host and path"),
                Some("write from = \"www.example.org\" or from = \"example.org/old\" (no scheme, port or query)".into()),
            );
            return None;
        }
        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.is_empty() { "/" } else { trimmed };
        Some((host, path.to_string()))
    }

    fn redirect_to(&mut self, f: &Field<'_>) -> Option<String> {
        let to = self.string(f)?;
        let rest = to
            .strip_prefix("https://")
            .or_else(|| to.strip_prefix("http://"));
        let ok = rest.is_some_and(|r| {
            let host = r.split('/').next().unwrap_or("");
            !host.is_empty()
                && r.bytes().all(|b| (0x21..0x7f).contains(&b))
                && !r.contains(['?', '#'])
        });
        if !ok {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("redirect `to` `{to}` is not an http:// or https:// URL"),
                Some("write to = \"https://example.org\" or to = \"https://example.org/new\" (the rest of the path and the query are appended)".into()),
            );
            return None;
        }
        Some(to)
    }
}

const USERS_HELP: &str = "store the htpasswd lines (user:bcrypt-hash, from `htpasswd -nB USER`) with `dockhand secrets set BASIC_AUTH_USERS` and write users = \"${secret.BASIC_AUTH_USERS}\"";

fn from_text(rule: &RedirectConfig) -> String {
    if rule.from_path == "/" {
        rule.from_host.clone()
    } else {
        format!("{}{}", rule.from_host, rule.from_path)
    }
}

/// Whether following `rule` once leads back into it (a redirect onto itself).
fn loop_problem(rule: &RedirectConfig) -> Option<String> {
    let rest = rule
        .to
        .strip_prefix("https://")
        .or_else(|| rule.to.strip_prefix("http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    if host != rule.from_host {
        return None;
    }
    let trimmed = path.trim_end_matches('/');
    let path = if trimmed.is_empty() { "/" } else { trimmed };
    let inside = rule.from_path == "/"
        || path == rule.from_path
        || path.starts_with(&format!("{}/", rule.from_path));
    inside.then(|| {
        format!(
            "redirect from `{}` to `{}` leads back to itself (a redirect loop)",
            from_text(rule),
            rule.to
        )
    })
}
