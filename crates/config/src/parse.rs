//! The walk over the `toml_edit` tree that turns `dockhand.toml` into an [`AppConfig`]. It is
//! hand-written rather than derived with serde so that every problem (unknown key, wrong
//! type, bad value) is reported with the span of the key or value at fault, and so that all
//! problems are collected instead of stopping at the first. This file holds the walker, its
//! typed getters and the top-level and `[proxy]` tables; `service.rs` holds the services.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{ImDocument, Item, Key, TableLike, Value};

use crate::diagnostic::{Diagnostic, Severity, SourceMap};
use crate::interpolate::{interpolate, Interpolated, Links, SecretMode, Vars};
use crate::model::{AppConfig, ProxySettings};
use crate::secrets::Secrets;
use crate::units::{parse_duration, parse_size, DURATION_HELP, SIZE_HELP};

const TOP_KEYS: &[&str] = &[
    "app",
    "secrets_file",
    "secrets",
    "proxy",
    "services",
    "databases",
    "backups",
    "destinations",
    "tasks",
    "update",
    "pin_code",
    "monitor",
    "alerts",
    "cluster",
    "deploy",
    "redirects",
    "dashboard",
];
const PROXY_KEYS: &[&str] = &[
    "listen",
    "workers",
    "max_body",
    "client_header_timeout",
    "upstream_connect_timeout",
    "upstream_response_timeout",
    "drain_timeout",
    "https_listen",
    "certificates",
    "https_redirect",
    "hsts",
    "acme",
    "compression",
    "trusted_proxies",
    "security_headers",
    "maintenance_page",
    "access_log",
    "error_pages",
];

/// Parses and validates `text`; the config is only meaningful when no error was reported.
pub(crate) fn parse(
    map: &SourceMap<'_>,
    vars: &Vars<'_>,
    config_path: &Path,
    project_dir: &Path,
) -> (AppConfig, Vec<Diagnostic>, BTreeMap<String, Range<usize>>) {
    let mut parser = Parser::new(map, vars, project_dir);
    let mut config = AppConfig {
        app: String::new(),
        project_dir: project_dir.to_path_buf(),
        config_path: config_path.to_path_buf(),
        secrets_file: project_dir.join(".dockhand").join("secrets.env"),
        proxy: ProxySettings::default(),
        services: Default::default(),
        databases: Default::default(),
        backups: None,
        tasks: Default::default(),
        update: None,
        pin_code: false,
        monitor: Default::default(),
        alerts: Default::default(),
        cluster: None,
        deploy: Default::default(),
        redirects: Vec::new(),
        secret_sources: Default::default(),
        dashboard: Default::default(),
    };
    match ImDocument::parse(map.text()) {
        Ok(document) => {
            parser.document(document.as_table(), &mut config);
            parser.check_certificate_hosts();
            parser.check_routes();
            parser.check_secrets(&config.secrets_file, &config.secret_sources);
        }
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let mut lines = error.message().trim().lines();
            let message = lines.next().unwrap_or("syntax error");
            let rest: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
            let help = (!rest.is_empty()).then(|| rest.join("; "));
            parser.error(span, None, format!("invalid TOML: {message}"), help);
        }
    }
    (config, parser.diagnostics, parser.sites)
}

/// Only the `[destinations]` table of `text` (the other keys are not looked at).
pub(crate) fn parse_destinations(
    map: &SourceMap<'_>,
    vars: &Vars<'_>,
    project_dir: &Path,
) -> (
    BTreeMap<String, crate::destinations::DestinationConfig>,
    Vec<Diagnostic>,
) {
    let mut parser = Parser::new(map, vars, project_dir);
    let mut out = BTreeMap::new();
    match ImDocument::parse(map.text()) {
        Ok(document) => {
            if let Some((key, item)) = document.as_table().get_key_value("destinations") {
                let field = Field {
                    name: "destinations",
                    key,
                    item,
                    path: "destinations".into(),
                };
                if let Some(table) = parser.table(&field) {
                    out = parser.destinations(table);
                }
            }
        }
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let message = error
                .message()
                .trim()
                .lines()
                .next()
                .unwrap_or("syntax error");
            parser.error(span, None, format!("invalid TOML: {message}"), None);
        }
    }
    (out, parser.diagnostics)
}

/// One `key = value` of a table, with its dotted path from the root.
pub(crate) struct Field<'t> {
    pub name: &'t str,
    pub key: &'t Key,
    pub item: &'t Item,
    pub path: String,
}

/// The known fields of a table, in source order.
pub(crate) struct Fields<'t>(Vec<Field<'t>>);

impl<'t> Fields<'t> {
    pub(crate) fn get(&self, name: &str) -> Option<&Field<'t>> {
        self.0.iter().find(|f| f.name == name)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Field<'t>> {
        self.0.iter()
    }
}

pub(crate) struct SecretUse {
    pub name: String,
    pub span: Range<usize>,
    pub key: String,
}

pub(crate) struct RouteSite {
    pub service: String,
    pub host: Option<String>,
    pub path: String,
    pub span: Range<usize>,
    pub key: String,
}

pub(crate) struct Parser<'p> {
    pub map: &'p SourceMap<'p>,
    pub vars: &'p Vars<'p>,
    pub project_dir: &'p Path,
    pub diagnostics: Vec<Diagnostic>,
    pub secret_uses: Vec<SecretUse>,
    pub routes: Vec<RouteSite>,
    /// The connection values `${databases.…}` refers to in the service being parsed.
    pub links: Links,
    /// The span of every known key, by dotted path (for checks made after loading).
    pub sites: BTreeMap<String, Range<usize>>,
    /// The databases parsed so far (they come before the services).
    pub databases: BTreeMap<String, crate::container::DatabaseConfig>,
    /// Every `depends_on`: service, names, span, key; checked once all are parsed.
    pub depends: Vec<(String, Vec<String>, Range<usize>, String)>,
    /// The DNS names of each certificate served, when HTTPS is on and every
    /// certificate loaded (for the route host coverage warning).
    pub certificate_names: Option<Vec<Vec<String>>>,
    /// The ACME settings when HTTPS is on (for the route host checks).
    pub acme: Option<crate::acme::AcmeSettings>,
}

impl<'p> Parser<'p> {
    fn new(map: &'p SourceMap<'p>, vars: &'p Vars<'p>, project_dir: &'p Path) -> Self {
        Parser {
            map,
            vars,
            project_dir,
            diagnostics: Vec::new(),
            secret_uses: Vec::new(),
            routes: Vec::new(),
            links: Links::default(),
            sites: BTreeMap::new(),
            databases: BTreeMap::new(),
            depends: Vec::new(),
            certificate_names: None,
            acme: None,
        }
    }
}

impl Parser<'_> {
    fn document(&mut self, root: &toml_edit::Table, config: &mut AppConfig) {
        let fields = self.fields(root, "", TOP_KEYS, "at the top level");
        match fields.get("app") {
            Some(f) => {
                if let Some(app) = self.string(f) {
                    if let Some(problem) = name_problem(&app) {
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            format!("invalid app name `{app}`: {problem}"),
                            Some(NAME_HELP.into()),
                        );
                    }
                    config.app = app;
                }
            }
            None => self.error(
                0..0,
                Some("app"),
                "missing required key `app`".into(),
                Some("add a line like app = \"shop\" at the top of the file".into()),
            ),
        }
        if let Some(f) = fields.get("pin_code") {
            if let Some(b) = self.boolean(f) {
                config.pin_code = b;
            }
        }
        if let Some(f) = fields.get("secrets_file") {
            if let Some(file) = self.string(f) {
                config.secrets_file = self.project_dir.join(file);
            }
        }
        if let Some(table) = fields.get("proxy").and_then(|f| self.table(f)) {
            config.proxy = self.proxy(table);
        }
        let mut destinations: Vec<String> = Vec::new();
        if let Some(table) = fields.get("destinations").and_then(|f| self.table(f)) {
            // Validated here; the client commands read them with `parse_destinations`.
            destinations = self.destinations(table).into_keys().collect();
        }
        if let Some(f) = fields.get("cluster") {
            if let Some(table) = self.table(f) {
                config.cluster = self.cluster(table, key_span(f), &destinations);
            }
        }
        if let Some(table) = fields.get("databases").and_then(|f| self.table(f)) {
            config.databases = self.databases(table, &config.app);
            self.databases = config.databases.clone();
        }
        match fields.get("services") {
            Some(f) if matches!(f.item, Item::ArrayOfTables(_)) => self.error(
                key_span(f),
                Some(&f.path),
                "`services` must be a table of named services, not an array".into(),
                Some("write one [services.<name>] table per service, e.g. [services.web]".into()),
            ),
            Some(f) => {
                if let Some(table) = self.table(f) {
                    config.services = self.services(table, key_span(f), &config.app.clone());
                    self.check_depends(&config.services);
                }
            }
            None => self.error(
                0..0,
                Some("services"),
                "no services defined".into(),
                Some("add a service, e.g. [services.web] with command = \"./server\"".into()),
            ),
        }
        self.check_cluster_placement(config);
        if let Some(table) = fields.get("tasks").and_then(|f| self.table(f)) {
            config.tasks = self.tasks(table, &config.services);
        }
        if let Some(f) = fields.get("backups") {
            if let Some(table) = self.table(f) {
                config.backups =
                    self.backups(table, key_span(f), &config.databases, &config.services);
            }
        }
        if let Some(table) = fields.get("secrets").and_then(|f| self.table(f)) {
            config.secret_sources = self.secret_sources(table);
        }
        if let Some(f) = fields.get("update") {
            if let Some(table) = self.table(f) {
                let has_backups = config.backups.is_some() || fields.get("backups").is_some();
                config.update = self.update(table, key_span(f), has_backups);
            }
        }
        if let Some(table) = fields.get("monitor").and_then(|f| self.table(f)) {
            config.monitor = self.monitor(table);
        }
        if let Some(table) = fields.get("alerts").and_then(|f| self.table(f)) {
            config.alerts = self.alerts(table);
        }
        if let Some(table) = fields.get("deploy").and_then(|f| self.table(f)) {
            config.deploy = self.deploy(table);
        }
        if let Some(f) = fields.get("redirects") {
            config.redirects = self.redirects(f);
        }
        if let Some(table) = fields.get("dashboard").and_then(|f| self.table(f)) {
            config.dashboard = self.dashboard(table);
        }
    }

    fn proxy(&mut self, table: &dyn TableLike) -> ProxySettings {
        let fields = self.fields(table, "proxy", PROXY_KEYS, "in [proxy]");
        let mut proxy = ProxySettings::default();
        if let Some(addr) = fields.get("listen").and_then(|f| self.socket_addr(f, "80")) {
            proxy.listen = addr;
        }
        if let Some(f) = fields.get("workers") {
            proxy.workers = self.integer_in(f, 1, 1024);
        }
        if let Some(f) = fields.get("max_body") {
            if let Some(size) = self.size(f) {
                proxy.max_request_body = size;
            }
        }
        for (name, slot) in [
            ("client_header_timeout", &mut proxy.client_header_timeout),
            (
                "upstream_connect_timeout",
                &mut proxy.upstream_connect_timeout,
            ),
            (
                "upstream_response_timeout",
                &mut proxy.upstream_response_timeout,
            ),
        ] {
            if let Some(value) = fields.get(name).and_then(|f| self.duration(f, false)) {
                *slot = value;
            }
        }
        if let Some(value) = fields
            .get("drain_timeout")
            .and_then(|f| self.duration(f, true))
        {
            proxy.drain_timeout = value;
        }
        if let Some(f) = fields.get("error_pages") {
            if let Some(table) = self.table(f) {
                let pages = self.fields(table, &f.path, &["502", "503", "504"], "in `error_pages`");
                for status in ["502", "503", "504"] {
                    if let Some(p) = pages.get(status) {
                        if let Some(path) = self.path(p) {
                            if path.is_file() {
                                proxy
                                    .error_pages
                                    .insert(status.parse().unwrap_or(502), path);
                            } else {
                                self.error(
                                    value_span(p),
                                    Some(&p.path),
                                    format!("the error page {} does not exist", path.display()),
                                    Some("it is relative to the directory of dockhand.toml".into()),
                                );
                            }
                        }
                    }
                }
            }
        }
        if let Some(f) = fields.get("access_log") {
            proxy.access_log = self.access_log(f);
        }
        if let Some(f) = fields.get("maintenance_page") {
            if let Some(page) = self.path(f) {
                if !page.is_file() {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("the maintenance page {} does not exist", page.display()),
                        Some("it is relative to the directory of dockhand.toml".into()),
                    );
                }
                proxy.maintenance_page = Some(page);
            }
        }
        if let Some(f) = fields.get("trusted_proxies") {
            proxy.trusted_proxies = self.ranges(f);
        }
        if let Some(f) = fields.get("security_headers") {
            proxy.security_headers = self.boolean(f).unwrap_or(true);
        }
        if let Some(f) = fields.get("compression") {
            if let Some(on) = f.item.as_bool() {
                proxy.compression = on.then_some(crate::model::DEFAULT_COMPRESS_MIN);
            } else if let Some(table) = self.table(f) {
                let c = self.fields(table, &f.path, &["min_size"], "in `compression`");
                if let Some(size) = c.get("min_size").and_then(|m| self.size(m)) {
                    proxy.compression = Some(size);
                }
            }
        }
        self.https(&fields, &mut proxy);
        self.https_defaults(&fields, &mut proxy);
        if proxy.https_listen.is_some() {
            self.acme = Some(proxy.acme.clone());
        }
        proxy
    }

    /// An `IP:port` listen address.
    pub(crate) fn socket_addr(
        &mut self,
        f: &Field<'_>,
        port: &str,
    ) -> Option<std::net::SocketAddr> {
        let text = self.string(f)?;
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("invalid listen address `{text}`"),
                    Some(format!(
                        "use an IP address and a port, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:{port}\""
                    )),
                );
                None
            }
        }
    }

    /// Loads the secrets file if any secret is referenced and checks every reference.
    fn check_secrets(
        &mut self,
        secrets_file: &Path,
        sources: &BTreeMap<String, crate::secret_sources::SecretSource>,
    ) {
        // A password manager's secrets are fetched by the agent: nothing to read here.
        self.secret_uses.retain(|u| !sources.contains_key(&u.name));
        let Some(first) = self.secret_uses.first() else {
            return;
        };
        let (span, key) = (first.span.clone(), first.key.clone());
        match Secrets::load(secrets_file) {
            Err(error) => self.error(span, Some(&key), error.problem(), Some(error.help())),
            Ok(secrets) => {
                let uses = std::mem::take(&mut self.secret_uses);
                for used in &uses {
                    let problem = match secrets.get(&used.name) {
                        Some("") => Some("is empty".to_string()),
                        Some(v) => crate::placeholder::placeholder(v)
                            .map(|why| format!("holds a placeholder value ({why})")),
                        None => None,
                    };
                    if let Some(problem) = problem {
                        self.error(
                            used.span.clone(),
                            Some(&used.key),
                            format!("secret `{}` {problem}", used.name),
                            Some(format!(
                                "set its real value: `dockhand secrets set {}` (it reads the value from stdin or a prompt)",
                                used.name
                            )),
                        );
                    }
                    if secrets.get(&used.name).is_none() {
                        self.error(
                            used.span.clone(),
                            Some(&used.key),
                            format!(
                                "secret `{}` is not defined in {}",
                                used.name,
                                secrets_file.display()
                            ),
                            Some(format!(
                                "add a line `{}=...` to {}",
                                used.name,
                                secrets_file.display()
                            )),
                        );
                    }
                }
            }
        }
    }

    // ---- reporting ----

    pub(crate) fn report(
        &mut self,
        severity: Severity,
        span: Range<usize>,
        key: Option<&str>,
        message: String,
        help: Option<String>,
    ) {
        let mut diagnostic = self
            .map
            .diagnostic(severity, span, key.map(str::to_string), message);
        diagnostic.help = help;
        self.diagnostics.push(diagnostic);
    }

    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        key: Option<&str>,
        message: String,
        help: Option<String>,
    ) {
        self.report(Severity::Error, span, key, message, help);
    }

    pub(crate) fn warning(
        &mut self,
        span: Range<usize>,
        key: Option<&str>,
        message: String,
        help: Option<String>,
    ) {
        self.report(Severity::Warning, span, key, message, help);
    }

    fn type_error(&mut self, f: &Field<'_>, expected: &str, help: Option<String>) {
        self.error(
            value_span(f),
            Some(&f.path),
            format!(
                "expected {expected} for `{}`, found {}",
                f.name,
                type_name(f.item)
            ),
            help,
        );
    }

    // ---- tables ----

    /// The fields of `table`, reporting each key not in `allowed` (with a suggestion).
    pub(crate) fn fields<'t>(
        &mut self,
        table: &'t dyn TableLike,
        path: &str,
        allowed: &[&str],
        context: &str,
    ) -> Fields<'t> {
        let mut fields = Vec::new();
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            let field = Field {
                name,
                key,
                item,
                path: join(path, name),
            };
            if allowed.contains(&name) {
                self.sites.insert(field.path.clone(), key_span(&field));
                fields.push(field);
                continue;
            }
            let help = match suggest(name, allowed) {
                Some(better) => format!("did you mean `{better}`?"),
                None if path.is_empty() && crate::service::SERVICE_KEYS.contains(&name) => {
                    "service settings belong in a [services.<name>] table".into()
                }
                None => format!(
                    "valid keys here are {}",
                    allowed
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.error(
                key_span(&field),
                Some(&field.path),
                format!("unknown key `{name}` {context}"),
                Some(help),
            );
        }
        Fields(fields)
    }

    pub(crate) fn table<'t>(&mut self, f: &Field<'t>) -> Option<&'t dyn TableLike> {
        let table = f.item.as_table_like();
        if table.is_none() {
            self.type_error(f, "a table", None);
        }
        table
    }

    // ---- scalars ----

    pub(crate) fn raw_str<'t>(&mut self, f: &Field<'t>) -> Option<&'t str> {
        let text = f.item.as_str();
        if text.is_none() {
            self.type_error(f, "a string", None);
        }
        text
    }

    /// A string value, interpolated; secrets are refused.
    pub(crate) fn string(&mut self, f: &Field<'_>) -> Option<String> {
        let raw = self.raw_str(f)?;
        self.interpolate(f, raw, SecretMode::Forbid)
            .map(|out| out.value)
    }

    /// Interpolates `raw`, the value of `f`, reporting problems at their place in the file.
    pub(crate) fn interpolate(
        &mut self,
        f: &Field<'_>,
        raw: &str,
        mode: SecretMode,
    ) -> Option<Interpolated> {
        match interpolate(raw, self.vars, mode, &self.links) {
            Ok(out) => {
                for secret in &out.secrets {
                    let at = self.string_offset(f, raw, secret.offset);
                    self.secret_uses.push(SecretUse {
                        name: secret.name.clone(),
                        span: at..at,
                        key: f.path.clone(),
                    });
                }
                Some(out)
            }
            Err(errors) => {
                for error in errors {
                    let at = self.string_offset(f, raw, error.offset);
                    self.error(at..at, Some(&f.path), error.message, error.help);
                }
                None
            }
        }
    }

    /// The file offset of byte `offset` of string value `value`, when the string is written
    /// without escapes; otherwise the start of the value.
    fn string_offset(&self, f: &Field<'_>, value: &str, offset: usize) -> usize {
        let span = value_span(f);
        let raw = self.map.text().get(span.clone()).unwrap_or("");
        for quote in ["\"\"\"", "'''", "\"", "'"] {
            if let Some(body) = raw.strip_prefix(quote) {
                if body.get(..value.len()) == Some(value) {
                    return span.start + quote.len() + offset;
                }
                break;
            }
        }
        span.start
    }

    fn integer(&mut self, f: &Field<'_>) -> Option<i64> {
        let value = f.item.as_integer();
        if value.is_none() {
            let help = f
                .item
                .as_str()
                .filter(|s| s.trim().parse::<i64>().is_ok())
                .map(|s| format!("remove the quotes: {} = {}", f.name, s.trim()));
            self.type_error(f, "an integer", help);
        }
        value
    }

    /// An integer in `min..=max`, converted to the field's type.
    pub(crate) fn integer_in<T: TryFrom<i64>>(
        &mut self,
        f: &Field<'_>,
        min: i64,
        max: i64,
    ) -> Option<T> {
        let value = self.integer(f)?;
        if value < min || value > max {
            self.error(
                value_span(f),
                Some(&f.path),
                format!(
                    "`{}` must be between {min} and {max}, found {value}",
                    f.name
                ),
                None,
            );
            return None;
        }
        T::try_from(value).ok()
    }

    pub(crate) fn boolean(&mut self, f: &Field<'_>) -> Option<bool> {
        let value = f.item.as_bool();
        if value.is_none() {
            self.type_error(f, "true or false", None);
        }
        value
    }

    pub(crate) fn duration(&mut self, f: &Field<'_>, allow_zero: bool) -> Option<Duration> {
        if let Some(n) = f.item.as_integer() {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("`{}` needs a unit, found the bare number {n}", f.name),
                Some(format!(
                    "write it as a string with a unit, e.g. {} = \"{n}s\"",
                    f.name
                )),
            );
            return None;
        }
        let text = self.string(f)?;
        match parse_duration(&text) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("`{}` must be longer than zero", f.name),
                    None,
                );
                None
            }
            Ok(d) => Some(d),
            Err(problem) => {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("bad duration `{text}` for `{}`: {problem}", f.name),
                    Some(DURATION_HELP.into()),
                );
                None
            }
        }
    }

    /// A byte size: a non-negative integer or a string such as "512MB"; zero is refused.
    pub(crate) fn size(&mut self, f: &Field<'_>) -> Option<u64> {
        let (text, parsed) = match f.item.as_value() {
            Some(Value::Integer(n)) => (
                n.value().to_string(),
                u64::try_from(*n.value()).map_err(|_| "sizes cannot be negative".to_string()),
            ),
            Some(Value::String(_)) => {
                let text = self.string(f)?;
                let parsed = parse_size(&text);
                (text, parsed)
            }
            _ => {
                self.type_error(f, "a size such as \"512MB\"", None);
                return None;
            }
        };
        match parsed {
            Ok(0) => {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("`{}` must be larger than zero", f.name),
                    None,
                );
                None
            }
            Ok(size) => Some(size),
            Err(problem) => {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("bad size `{text}` for `{}`: {problem}", f.name),
                    Some(SIZE_HELP.into()),
                );
                None
            }
        }
    }

    /// A path relative to the project directory, made absolute.
    pub(crate) fn path(&mut self, f: &Field<'_>) -> Option<PathBuf> {
        self.string(f).map(|p| self.project_dir.join(p))
    }
}

pub(crate) const NAME_HELP: &str =
    "use lowercase letters, digits and `-`, starting with a letter, at most 63 characters";

/// Why `name` is not a valid app or service name, if it is not.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        Some("it must start with a lowercase letter")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some("it may only contain lowercase letters, digits and `-`")
    } else {
        None
    }
}

/// The span of a field's key (for tables and unknown keys).
pub(crate) fn key_span(f: &Field<'_>) -> Range<usize> {
    f.key.span().unwrap_or(0..0)
}

/// The span of a field's value, or of its key for tables.
pub(crate) fn value_span(f: &Field<'_>) -> Range<usize> {
    match f.item {
        Item::Value(value) => value.span().unwrap_or_else(|| key_span(f)),
        _ => key_span(f),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(value) => match value {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Array(_) => "an array",
            Value::InlineTable(_) => "a table",
        },
    }
}

/// Common names from other tools for our keys.
const ALIASES: &[(&str, &str)] = &[
    ("cmd", "command"),
    ("run", "command"),
    ("exec", "command"),
    ("cwd", "workdir"),
    ("dir", "workdir"),
    ("working_dir", "workdir"),
    ("environment", "env"),
    ("vars", "env"),
    ("healthcheck", "health"),
    ("ports", "port"),
    ("mem_limit", "memory"),
    ("memory_limit", "memory"),
    ("max_request_body", "max_body"),
    ("restart_policy", "restart"),
    ("scale", "replicas"),
    ("instances", "replicas"),
    ("name", "app"),
    ("bind", "listen"),
];

/// The allowed key closest to `unknown`, if one is close enough to be a typo.
pub(crate) fn suggest<'k>(unknown: &str, allowed: &[&'k str]) -> Option<&'k str> {
    let normal = unknown.to_ascii_lowercase().replace('-', "_");
    if let Some(&(_, target)) = ALIASES.iter().find(|(alias, _)| *alias == normal) {
        if let Some(&found) = allowed.iter().find(|k| **k == target) {
            return Some(found);
        }
    }
    let limit = (normal.chars().count() / 3).max(1);
    allowed
        .iter()
        .map(|&k| (strsim::osa_distance(&normal, k), k))
        .filter(|&(distance, _)| distance <= limit)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let service = crate::service::SERVICE_KEYS;
        assert_eq!(suggest("prot", service), Some("port"));
        assert_eq!(suggest("comand", service), Some("command"));
        assert_eq!(suggest("halth", service), Some("health"));
        assert_eq!(suggest("Replicas", service), Some("replicas"));
        assert_eq!(suggest("environment", service), Some("env"));
        assert_eq!(suggest("stop-timeout", service), Some("stop_timeout"));
        assert_eq!(suggest("zzz", service), None);
    }

    #[test]
    fn names() {
        assert_eq!(name_problem("shop-2"), None);
        assert!(name_problem("Shop").is_some());
        assert!(name_problem("2shop").is_some());
        assert!(name_problem("my_app").is_some());
        assert!(name_problem("").is_some());
    }
}
