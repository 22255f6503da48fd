//! The `[services.<name>]` tables: command, working directory, port, environment (the only
//! place secrets are allowed), health check, route, restart policy, limits and hooks; then
//! the checks that span services (duplicate routes) and the warnings about risky settings.

use std::collections::BTreeMap;
use std::ops::Range;

use toml_edit::{Key, TableLike, Value};

use crate::dotenv::is_valid_name;
use crate::interpolate::SecretMode;
use crate::model::{EnvValue, HealthCheck, Hooks, RestartPolicy, Route, ServiceConfig};
use crate::parse::{key_span, name_problem, value_span, Field, Parser, RouteSite, NAME_HELP};

pub(crate) const SERVICE_KEYS: &[&str] = &[
    "command",
    "workdir",
    "port",
    "env",
    "health",
    "route",
    "replicas",
    "restart",
    "memory",
    "stop_timeout",
    "hooks",
    "image",
    "build",
];
const HEALTH_KEYS: &[&str] = &[
    "path",
    "expected_status",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
    "deploy_timeout",
];
const ROUTE_KEYS: &[&str] = &["host", "path", "strip_prefix"];
const HOOK_KEYS: &[&str] = &["pre_deploy", "post_deploy"];
const RESTART_VALUES: &[&str] = &["always", "on-failure", "never"];

impl Parser<'_> {
    /// Every service of the `[services]` table.
    pub(crate) fn services(
        &mut self,
        table: &dyn TableLike,
        services_span: Range<usize>,
    ) -> BTreeMap<String, ServiceConfig> {
        let mut services = BTreeMap::new();
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            let path = format!("services.{name}");
            let span = key.span().unwrap_or(0..0);
            if let Some(problem) = name_problem(name) {
                self.error(
                    span.clone(),
                    Some(&path),
                    format!("invalid service name `{name}`: {problem}"),
                    Some(NAME_HELP.into()),
                );
            }
            let Some(service) = item.as_table_like() else {
                self.error(
                    span,
                    Some(&path),
                    format!("service `{name}` must be a table"),
                    Some(format!(
                        "write [services.{name}] followed by its keys, or {name} = {{ command = \"...\" }}"
                    )),
                );
                continue;
            };
            services.insert(name.to_string(), self.service(name, key, service));
        }
        if services.is_empty() && table.is_empty() {
            self.error(
                services_span,
                Some("services"),
                "no services defined".into(),
                Some("add a service, e.g. [services.web] with command = \"./server\"".into()),
            );
        }
        services
    }

    fn service(&mut self, name: &str, key: &Key, table: &dyn TableLike) -> ServiceConfig {
        let path = format!("services.{name}");
        let service_span = key.span().unwrap_or(0..0);
        let fields = self.fields(table, &path, SERVICE_KEYS, &format!("in service `{name}`"));
        let mut service = ServiceConfig {
            name: name.to_string(),
            command: String::new(),
            workdir: self.project_dir.to_path_buf(),
            port: None,
            env: BTreeMap::new(),
            health: None,
            route: None,
            replicas: 1,
            restart: RestartPolicy::Always,
            memory_limit: None,
            stop_timeout: std::time::Duration::from_secs(10),
            hooks: Hooks::default(),
        };

        let mut container = false;
        for unsupported in ["image", "build"] {
            if let Some(f) = fields.get(unsupported) {
                container = true;
                self.error(
                    key_span(f),
                    Some(&f.path),
                    format!("containers are not supported yet: `{unsupported}` is recognised, but the container runtime is not available"),
                    Some("use `command` to run a native process".into()),
                );
            }
        }
        match fields.get("command") {
            Some(f) => {
                if let Some(command) = self.string(f) {
                    if command.trim().is_empty() {
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            format!("`command` of service `{name}` is empty"),
                            None,
                        );
                    }
                    service.command = command;
                }
            }
            None if !container => self.error(
                service_span.clone(),
                Some(&format!("{path}.command")),
                format!("service `{name}` has no `command`"),
                Some("add command = \"...\": the process to run, through /bin/sh -c".into()),
            ),
            None => {}
        }
        if let Some(f) = fields.get("workdir") {
            if let Some(dir) = self.path(f) {
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
                        format!("workdir {} {problem}", dir.display()),
                        Some("workdir is relative to the directory of dockhand.toml; create it or fix the path".into()),
                    );
                }
                service.workdir = dir;
            }
        }
        if let Some(f) = fields.get("port") {
            service.port = self.integer_in(f, 1, 65535);
        }
        if let Some(table) = fields.get("env").and_then(|f| self.table(f)) {
            service.env = self.env(table, &format!("{path}.env"));
        }
        let port_missing = fields.get("port").is_none();
        if let Some(f) = fields.get("health") {
            if port_missing {
                self.error(
                    key_span(f),
                    Some(&f.path),
                    format!("service `{name}` has a health check but no `port`"),
                    Some("health checks are HTTP requests to the service's port: add port = 8000 (the process must listen on $PORT) or remove `health`".into()),
                );
            }
            if let Some(table) = self.table(f) {
                service.health = self.health(table, f);
            }
        }
        if let Some(f) = fields.get("route") {
            if port_missing {
                self.error(
                    key_span(f),
                    Some(&f.path),
                    format!("service `{name}` has a route but no `port`"),
                    Some("the proxy forwards requests to the service's port: add port = 8000 (the process must listen on $PORT) or remove `route`".into()),
                );
            }
            if let Some(table) = self.table(f) {
                service.route = self.route(name, table, f);
            }
        }
        if let Some(f) = fields.get("replicas") {
            service.replicas = self.integer_in(f, 1, 1000).unwrap_or(1);
        }
        if let Some(f) = fields.get("restart") {
            if let Some(text) = self.string(f) {
                match text.as_str() {
                    "always" => service.restart = RestartPolicy::Always,
                    "on-failure" => service.restart = RestartPolicy::OnFailure,
                    "never" => service.restart = RestartPolicy::Never,
                    _ => {
                        let help = match crate::parse::suggest(&text, RESTART_VALUES) {
                            Some(better) => format!("did you mean \"{better}\"?"),
                            None => "use \"always\", \"on-failure\" or \"never\"".into(),
                        };
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            format!("unknown restart policy `{text}`"),
                            Some(help),
                        );
                    }
                }
            }
        }
        if let Some(f) = fields.get("memory") {
            service.memory_limit = self.size(f);
        }
        if let Some(f) = fields.get("stop_timeout") {
            if let Some(timeout) = self.duration(f, true) {
                service.stop_timeout = timeout;
            }
        }
        if let Some(table) = fields.get("hooks").and_then(|f| self.table(f)) {
            let hooks = self.fields(
                table,
                &format!("{path}.hooks"),
                HOOK_KEYS,
                &format!("in the hooks of service `{name}`"),
            );
            service.hooks.pre_deploy = hooks.get("pre_deploy").and_then(|f| self.string(f));
            service.hooks.post_deploy = hooks.get("post_deploy").and_then(|f| self.string(f));
        }

        if service.port.is_some() && fields.get("health").is_none() {
            self.warning(
                service_span,
                Some(&path),
                format!("web service `{name}` has no health check"),
                Some("deploys will only wait for the port to accept connections; add health = { path = \"/health\" }".into()),
            );
        }
        if let (Some(route), Some(f)) = (&service.route, fields.get("route")) {
            if route.host.is_none() {
                self.warning(
                    key_span(f),
                    Some(&f.path),
                    format!("the route of service `{name}` has no `host`, so it matches every host name"),
                    Some("add host = \"example.com\" to route only that host".into()),
                );
            }
        }
        if let (RestartPolicy::Never, Some(f), Some(_)) =
            (service.restart, fields.get("restart"), &service.route)
        {
            self.warning(
                value_span(f),
                Some(&f.path),
                format!("service `{name}` receives traffic but is never restarted"),
                Some("if it exits, its route fails until the next deploy; use restart = \"on-failure\" or \"always\"".into()),
            );
        }
        service
    }

    fn env(&mut self, table: &dyn TableLike, path: &str) -> BTreeMap<String, EnvValue> {
        let mut env = BTreeMap::new();
        let fields = self.fields_any(table, path);
        for f in &fields {
            if !is_valid_name(f.name) {
                self.error(
                    key_span(f),
                    Some(&f.path),
                    format!("invalid environment variable name `{}`", f.name),
                    Some("use letters, digits and `_`, not starting with a digit".into()),
                );
                continue;
            }
            let value = match f.item.as_value() {
                Some(Value::String(s)) => self
                    .interpolate(f, s.value(), SecretMode::Keep)
                    .map(|out| EnvValue::from_template(out.value)),
                Some(Value::Integer(n)) => Some(EnvValue::literal(&n.value().to_string())),
                Some(Value::Float(n)) => Some(EnvValue::literal(&n.value().to_string())),
                Some(Value::Boolean(b)) => Some(EnvValue::literal(&b.value().to_string())),
                _ => {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!(
                            "expected a string for env `{}`, found a {}",
                            f.name,
                            kind(f)
                        ),
                        Some("environment values are strings, numbers or booleans".into()),
                    );
                    None
                }
            };
            if let Some(value) = value {
                env.insert(f.name.to_string(), value);
            }
        }
        env
    }

    /// Every field of a table whose keys are free-form (such as `env`).
    fn fields_any<'t>(&mut self, table: &'t dyn TableLike, path: &str) -> Vec<Field<'t>> {
        table
            .iter()
            .filter_map(|(name, _)| {
                let (key, item) = table.get_key_value(name)?;
                Some(Field {
                    name,
                    key,
                    item,
                    path: format!("{path}.{name}"),
                })
            })
            .collect()
    }

    fn health(&mut self, table: &dyn TableLike, at: &Field<'_>) -> Option<HealthCheck> {
        let fields = self.fields(table, &at.path, HEALTH_KEYS, "in the health check");
        let mut health = HealthCheck::with_path("/");
        match fields.get("path") {
            Some(f) => {
                if let Some(path) = self.string(f) {
                    if !path.starts_with('/') {
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            format!("health check path `{path}` must start with `/`"),
                            Some(format!("write path = \"/{path}\"")),
                        );
                    }
                    health.path = path;
                }
            }
            None => self.error(
                key_span(at),
                Some(&format!("{}.path", at.path)),
                "the health check has no `path`".into(),
                Some(
                    "add path = \"/health\": the URL path dockhand requests on each instance"
                        .into(),
                ),
            ),
        }
        if let Some(f) = fields.get("expected_status") {
            if let Some(status) = self.integer_in(f, 100, 599) {
                health.expected_status = status;
            }
        }
        for (name, slot) in [
            ("interval", &mut health.interval),
            ("timeout", &mut health.timeout),
            ("deploy_timeout", &mut health.deploy_timeout),
        ] {
            if let Some(value) = fields.get(name).and_then(|f| self.duration(f, false)) {
                *slot = value;
            }
        }
        for (name, slot) in [
            ("healthy_threshold", &mut health.healthy_threshold),
            ("unhealthy_threshold", &mut health.unhealthy_threshold),
        ] {
            if let Some(value) = fields.get(name).and_then(|f| self.integer_in(f, 1, 1000)) {
                *slot = value;
            }
        }
        Some(health)
    }

    fn route(&mut self, service: &str, table: &dyn TableLike, at: &Field<'_>) -> Option<Route> {
        let fields = self.fields(table, &at.path, ROUTE_KEYS, "in the route");
        let mut route = Route {
            host: None,
            path: "/".into(),
            strip_prefix: false,
        };
        if let Some(f) = fields.get("host") {
            if let Some(host) = self.string(f) {
                let host = host.to_ascii_lowercase();
                let problem = if host.contains(':') {
                    Some("must not include a port (the proxy listens on proxy.listen)")
                } else if host.is_empty()
                    || host.starts_with(['.', '-'])
                    || !host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                {
                    Some("is not a valid host name")
                } else {
                    None
                };
                match problem {
                    Some(problem) => self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("route host `{host}` {problem}"),
                        Some("write a host name such as \"shop.example.com\"".into()),
                    ),
                    None => route.host = Some(host),
                }
            }
        }
        if let Some(f) = fields.get("path") {
            if let Some(path) = self.string(f) {
                if !path.starts_with('/') {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("route path `{path}` must start with `/`"),
                        Some(format!("write path = \"/{path}\"")),
                    );
                } else if path.contains(['?', '#']) || path.contains(char::is_whitespace) {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("route path `{path}` must be a plain path prefix"),
                        Some("remove the query, fragment or spaces".into()),
                    );
                } else {
                    let trimmed = path.trim_end_matches('/');
                    route.path = if trimmed.is_empty() {
                        "/".into()
                    } else {
                        trimmed.into()
                    };
                }
            }
        }
        if let Some(f) = fields.get("strip_prefix") {
            route.strip_prefix = self.boolean(f).unwrap_or(false);
        }
        self.routes.push(RouteSite {
            service: service.to_string(),
            host: route.host.clone(),
            path: route.path.clone(),
            span: key_span(at),
            key: at.path.clone(),
        });
        Some(route)
    }

    /// Reports every route whose host and path prefix equal an earlier one.
    pub(crate) fn check_routes(&mut self) {
        let routes = std::mem::take(&mut self.routes);
        for (i, later) in routes.iter().enumerate() {
            if let Some(earlier) = routes[..i]
                .iter()
                .find(|r| r.host == later.host && r.path == later.path)
            {
                let host = match &later.host {
                    Some(host) => format!("host `{host}`"),
                    None => "any host".into(),
                };
                self.error(
                    later.span.clone(),
                    Some(&later.key),
                    format!(
                        "duplicate route: services `{}` and `{}` both route {host} path `{}`",
                        earlier.service, later.service, later.path
                    ),
                    Some("give one of them a different host or path".into()),
                );
            }
        }
    }
}

fn kind(f: &Field<'_>) -> &'static str {
    match f.item.as_value() {
        Some(Value::Array(_)) => "array",
        Some(Value::Datetime(_)) => "date-time",
        _ => "table",
    }
}
