//! The `[services.<name>]` tables: command, working directory, port, environment (the only
//! place secrets are allowed), health check, route, restart policy, limits and hooks; then
//! the checks that span services (duplicate routes) and the warnings about risky settings.

use std::collections::BTreeMap;
use std::ops::Range;

use toml_edit::{Item, Key, TableLike, Value};

use crate::container::{ContainerConfig, PullPolicy};
use crate::dotenv::is_valid_name;
use crate::interpolate::SecretMode;
use crate::model::{EnvValue, HealthCheck, Hooks, RestartPolicy, Route, ServiceConfig};
use crate::parse::{
    key_span, name_problem, value_span, Field, Fields, Parser, RouteSite, NAME_HELP,
};

pub(crate) const SERVICE_KEYS: &[&str] = &[
    "command",
    "workdir",
    "port",
    "env",
    "env_required",
    "health",
    "route",
    "replicas",
    "restart",
    "memory",
    "stop_timeout",
    "hooks",
    "image",
    "build",
    "pull",
    "entrypoint",
    "volumes",
    "cpus",
    "user",
    "init",
    "shm_size",
    "ulimits",
    "depends_on",
    "static",
];
/// Keys only a container service may have.
const CONTAINER_ONLY: &[&str] = &[
    "pull",
    "entrypoint",
    "volumes",
    "cpus",
    "user",
    "init",
    "shm_size",
    "ulimits",
];
const HEALTH_KEYS: &[&str] = &[
    "path",
    "expected_status",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
    "deploy_timeout",
    "command",
    "start_period",
];
const ROUTE_KEYS: &[&str] = &[
    "host",
    "path",
    "strip_prefix",
    "https_redirect",
    "hsts",
    "challenge",
    "headers",
    "security_headers",
    "allow",
    "deny",
    "rate_limit",
    "basic_auth",
    "request_headers",
    "add_prefix",
    "max_body",
    "upstream_response_timeout",
];
const HOOK_KEYS: &[&str] = &["pre_deploy", "post_deploy"];
const DEPENDS_KEYS: &[&str] = &["service", "condition"];
const RESTART_VALUES: &[&str] = &["always", "on-failure", "never"];

impl Parser<'_> {
    /// Every service of the `[services]` table.
    pub(crate) fn services(
        &mut self,
        table: &dyn TableLike,
        services_span: Range<usize>,
        app: &str,
    ) -> BTreeMap<String, ServiceConfig> {
        let mut services = BTreeMap::new();
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            let path = format!("services.{name}");
            let span = key.span().unwrap_or(0..0);
            self.sites.insert(path.clone(), span.clone());
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
            services.insert(name.to_string(), self.service(name, key, service, app));
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

    fn service(
        &mut self,
        name: &str,
        key: &Key,
        table: &dyn TableLike,
        app: &str,
    ) -> ServiceConfig {
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
            routes: Vec::new(),
            replicas: 1,
            restart: RestartPolicy::Always,
            memory_limit: None,
            stop_timeout: std::time::Duration::from_secs(10),
            hooks: Hooks::default(),
            container: None,
            depends_on: Vec::new(),
            healthy_first: Vec::new(),
            static_site: None,
        };

        let container = fields.get("image").is_some() || fields.get("build").is_some();
        let is_static = fields.get("static").is_some();
        if let Some(f) = fields.get("static") {
            service.static_site = self.static_site(name, f, container);
            for not in crate::static_site::NOT_FOR_STATIC {
                if let Some(k) = fields.get(not) {
                    self.error(
                        key_span(k),
                        Some(&k.path),
                        format!("`{not}` does not apply to static service `{name}`: the proxy serves its files and nothing runs"),
                        Some("remove the key, or remove `static` to run a process".into()),
                    );
                }
            }
            if fields.get("route").is_none() {
                self.error(
                    key_span(f),
                    Some(&format!("{path}.route")),
                    format!("static service `{name}` has no `route`"),
                    Some("add route = { host = \"example.com\" } (or path = \"/\"): the requests it answers".into()),
                );
            }
        }
        self.links = Self::links_for(&self.databases, container);
        if container {
            service.container = Some(self.container(name, &fields, app));
        } else {
            for only in CONTAINER_ONLY {
                if let Some(f) = fields.get(only) {
                    self.error(
                        key_span(f),
                        Some(&f.path),
                        format!("`{only}` applies to containers, and service `{name}` runs as a native process"),
                        Some("add image = \"...\" or build = \"dir\" to run it in a container, or remove the key".into()),
                    );
                }
            }
        }
        match fields.get("command") {
            Some(f) if container => {
                if let (Some(c), Some(argv)) = (service.container.as_mut(), self.argv(f)) {
                    service.command = argv.join(" ");
                    c.command = Some(argv);
                }
            }
            Some(f) => {
                if f.item.is_array() {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("`command` of native service `{name}` must be a string"),
                        Some("a native command runs through /bin/sh -c: write it as one string".into()),
                    );
                } else if let Some(command) = self.string(f) {
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
            None if !container && !is_static => self.error(
                service_span.clone(),
                Some(&format!("{path}.command")),
                format!("service `{name}` has no `command`"),
                Some("add command = \"...\" (the process to run, through /bin/sh -c), or image = \"...\" to run a container".into()),
            ),
            None => {}
        }
        if let (true, Some(f)) = (container, fields.get("workdir")) {
            self.error(
                key_span(f),
                Some(&f.path),
                "`workdir` is for native processes; a container starts in its image's WORKDIR"
                    .into(),
                Some("remove it, or set WORKDIR in the Dockerfile".into()),
            );
        }
        if let (false, Some(f)) = (container, fields.get("workdir")) {
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
        if let Some(f) = fields.get("env_required") {
            self.env_required(f, name, &service.env);
        }
        let port_missing = fields.get("port").is_none();
        if let Some(f) = fields.get("health") {
            if let Some(table) = self.table(f) {
                service.health = self.health(table, f);
            }
            if port_missing && service.health.as_ref().is_some_and(|h| h.command.is_none()) {
                self.error(
                    key_span(f),
                    Some(&f.path),
                    format!("service `{name}` has an HTTP health check but no `port`"),
                    Some("an HTTP check requests the service's port: add port = 8000, or check a worker with health = { command = \"...\" }".into()),
                );
            }
        }
        if let Some(f) = fields.get("depends_on") {
            if let Some((names, healthy)) = self.depends_on(f) {
                self.depends.push((
                    name.to_string(),
                    names.clone(),
                    value_span(f),
                    f.path.clone(),
                ));
                service.depends_on = names;
                service.healthy_first = healthy;
            }
        }
        if let Some(f) = fields.get("route") {
            if port_missing && !is_static {
                self.error(
                    key_span(f),
                    Some(&f.path),
                    format!("service `{name}` has a route but no `port`"),
                    Some("the proxy forwards requests to the service's port: add port = 8000 (the process must listen on $PORT) or remove `route`".into()),
                );
            }
            service.routes = self.routes(name, f);
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
        if let Some(f) = fields.get("route") {
            if service.routes.iter().any(|r| r.host.is_none()) {
                self.warning(
                    key_span(f),
                    Some(&f.path),
                    format!("the route of service `{name}` has no `host`, so it matches every host name"),
                    Some("add host = \"example.com\" to route only that host".into()),
                );
            }
        }
        if let (RestartPolicy::Never, Some(f), false) = (
            service.restart,
            fields.get("restart"),
            service.routes.is_empty(),
        ) {
            self.warning(
                value_span(f),
                Some(&f.path),
                format!("service `{name}` receives traffic but is never restarted"),
                Some("if it exits, its route fails until the next deploy; use restart = \"on-failure\" or \"always\"".into()),
            );
        }
        self.links = Default::default();
        service
    }

    /// The container keys of a service with `image` or `build`.
    fn container(&mut self, name: &str, fields: &Fields<'_>, app: &str) -> ContainerConfig {
        let mut c = ContainerConfig {
            image: format!("dockhand/{app}-{name}"),
            build: None,
            pull: PullPolicy::Missing,
            command: None,
            entrypoint: None,
            volumes: Vec::new(),
            cpus: None,
            user: None,
            init: false,
            shm_size: None,
            ulimits: Vec::new(),
        };
        if let Some(f) = fields.get("build") {
            c.build = self.build(f);
        }
        if let Some(f) = fields.get("image") {
            if c.build.is_some() {
                // The tag to give the build: no pinning warning, it is ours.
                if let Some(image) = self.string(f) {
                    c.image = image;
                }
            } else if let Some(image) = self.image_ref(f) {
                c.image = image;
            }
        }
        if let Some(f) = fields.get("pull") {
            if let Some(p) = self.pull(f) {
                c.pull = p;
            }
        }
        if let Some(f) = fields.get("entrypoint") {
            c.entrypoint = self.argv(f);
        }
        if let Some(f) = fields.get("volumes") {
            c.volumes = self.mounts(f, app);
        }
        if let Some(f) = fields.get("cpus") {
            c.cpus = self.cpus(f);
        }
        if let Some(f) = fields.get("user") {
            c.user = self.string(f);
        }
        if let Some(f) = fields.get("init") {
            c.init = self.boolean(f).unwrap_or(false);
        }
        if let Some(f) = fields.get("shm_size") {
            c.shm_size = self.size(f);
        }
        if let Some(f) = fields.get("ulimits") {
            c.ulimits = self.ulimits(f);
        }
        c
    }

    /// `depends_on = ["worker", { service = "api", condition = "healthy" }]`: every name (the
    /// start order), and those whose health gates this service's start.
    fn depends_on(&mut self, f: &Field<'_>) -> Option<(Vec<String>, Vec<String>)> {
        let Some(array) = f.item.as_array() else {
            self.error(
                value_span(f),
                Some(&f.path),
                "expected an array for `depends_on`".into(),
                Some("write depends_on = [\"worker\", { service = \"api\", condition = \"healthy\" }]".into()),
            );
            return None;
        };
        let mut names = Vec::new();
        let mut healthy = Vec::new();
        for value in array.iter() {
            let span = value.span().unwrap_or_else(|| value_span(f));
            match value {
                toml_edit::Value::String(s) => names.push(s.value().clone()),
                toml_edit::Value::InlineTable(t) => {
                    let fields = self.fields(t, &f.path, DEPENDS_KEYS, "in a depends_on entry");
                    let Some(service) = fields.get("service").and_then(|g| self.string(g)) else {
                        self.error(
                            span,
                            Some(&f.path),
                            "a depends_on table needs `service`".into(),
                            Some("write { service = \"api\", condition = \"healthy\" }".into()),
                        );
                        return None;
                    };
                    match fields.get("condition") {
                        None => {}
                        Some(c) => match self.string(c).as_deref() {
                            Some("started") => {}
                            Some("healthy") => healthy.push(service.clone()),
                            Some(other) => {
                                let help = match crate::parse::suggest(other, &["started", "healthy"]) {
                                    Some(better) => format!("did you mean \"{better}\"?"),
                                    None => "write \"started\" (start after it, the default) or \"healthy\" (start once it is healthy)".into(),
                                };
                                self.error(
                                    value_span(c),
                                    Some(&c.path),
                                    format!("unknown depends_on condition `{other}`"),
                                    Some(help),
                                );
                                return None;
                            }
                            None => return None,
                        },
                    }
                    names.push(service);
                }
                _ => {
                    self.error(
                        span,
                        Some(&f.path),
                        "a depends_on entry is a name or a table { service = \"…\", condition = \"healthy\" }".into(),
                        None,
                    );
                    return None;
                }
            }
        }
        Some((names, healthy))
    }

    /// Reports `depends_on` names that are neither a service nor a database, and cycles.
    pub(crate) fn check_depends(&mut self, services: &BTreeMap<String, ServiceConfig>) {
        let depends = std::mem::take(&mut self.depends);
        for (service, names, span, key) in &depends {
            for dep in names {
                if dep == service {
                    self.error(
                        span.clone(),
                        Some(key),
                        format!("service `{service}` depends on itself"),
                        None,
                    );
                } else if !services.contains_key(dep) && !self.databases.contains_key(dep) {
                    let mut known: Vec<&str> = services.keys().map(String::as_str).collect();
                    known.extend(self.databases.keys().map(String::as_str));
                    let help = match crate::parse::suggest(dep, &known) {
                        Some(better) => format!("did you mean `{better}`?"),
                        None => format!("services and databases: {}", known.join(", ")),
                    };
                    self.error(
                        span.clone(),
                        Some(key),
                        format!("service `{service}` depends on `{dep}`, which is not defined"),
                        Some(help),
                    );
                }
            }
        }
        // A cycle makes a start order impossible.
        for start in services.keys() {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            while let Some((at, trail)) = stack.pop() {
                let Some(svc) = services.get(&at) else {
                    continue;
                };
                for dep in &svc.depends_on {
                    if dep == start && trail.len() > 1 {
                        if let Some((_, _, span, key)) = depends.iter().find(|d| &d.0 == start) {
                            let mut cycle = trail.clone();
                            cycle.push(start.clone());
                            self.error(
                                span.clone(),
                                Some(key),
                                format!("dependency cycle: {}", cycle.join(" -> ")),
                                Some("remove one of the depends_on entries".into()),
                            );
                        }
                        return;
                    }
                    if !trail.contains(dep) {
                        let mut next = trail.clone();
                        next.push(dep.clone());
                        stack.push((dep.clone(), next));
                    }
                }
            }
        }
        for name in services.keys() {
            if self.databases.contains_key(name) {
                let span = self
                    .sites
                    .get(&format!("services.{name}"))
                    .cloned()
                    .unwrap_or(0..0);
                self.error(
                    span,
                    Some(&format!("services.{name}")),
                    format!("`{name}` is both a service and a database"),
                    Some(
                        "each name is a host name on the app's network: rename one of them".into(),
                    ),
                );
            }
        }
    }

    pub(crate) fn env(&mut self, table: &dyn TableLike, path: &str) -> BTreeMap<String, EnvValue> {
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
                if let (true, Some(Value::String(_))) =
                    (value.secret_names().is_empty(), f.item.as_value())
                {
                    if let Some(why) = value
                        .resolve(&crate::secrets::Secrets::empty())
                        .ok()
                        .as_deref()
                        .and_then(crate::placeholder::placeholder)
                    {
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            format!("env `{}` holds a placeholder value ({why})", f.name),
                            Some("set the real value (a secret belongs in the secrets file: `${secret.NAME}`)".into()),
                        );
                    }
                }
                env.insert(f.name.to_string(), value);
            }
        }
        env
    }

    /// `env_required = ["NAME", …]`: every name the service's `env` lacks, in one error.
    fn env_required(
        &mut self,
        f: &crate::parse::Field<'_>,
        service: &str,
        env: &BTreeMap<String, EnvValue>,
    ) {
        let Some(names) = self.string_array(f) else {
            return;
        };
        let missing: Vec<&String> = names.iter().filter(|n| !env.contains_key(*n)).collect();
        if missing.is_empty() {
            return;
        }
        let list = missing
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let example = missing[0];
        self.error(
            value_span(f),
            Some(&f.path),
            format!(
                "service `{service}` requires {} not set in its `env`: {list}",
                if missing.len() == 1 { "a variable" } else { "variables" }
            ),
            Some(format!(
                "add each to [services.{service}] env: from the secrets file ({example} = \"${{secret.{example}}}\", set with `dockhand secrets set {example}`), from .env or the environment ({example} = \"${{{example}}}\"), or a literal value"
            )),
        );
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

    pub(crate) fn health(&mut self, table: &dyn TableLike, at: &Field<'_>) -> Option<HealthCheck> {
        let fields = self.fields(table, &at.path, HEALTH_KEYS, "in the health check");
        let mut health = HealthCheck::with_path("/");
        match (fields.get("path"), fields.get("command")) {
            (Some(p), Some(_)) => self.error(
                key_span(p),
                Some(&p.path),
                "the health check has both `path` and `command`".into(),
                Some("use `path` for an HTTP check of a web service, or `command` for a command run in the service's environment".into()),
            ),
            (None, Some(c)) => {
                health.path = String::new();
                health.command = self.command_line(c);
            }
            (Some(f), None) => {
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
            (None, None) => self.error(
                key_span(at),
                Some(&format!("{}.path", at.path)),
                "the health check has no `path`".into(),
                Some(
                    "add path = \"/health\": the URL path dockhand requests on each instance (or command = \"...\" for a worker)"
                        .into(),
                ),
            ),
        }
        if let Some(f) = fields.get("start_period") {
            if let Some(d) = self.duration(f, true) {
                health.start_period = d;
            }
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

    /// `route = { … }`, `route = [{ … }, { … }]` or `[[services.NAME.route]]`.
    fn routes(&mut self, service: &str, f: &Field<'_>) -> Vec<Route> {
        let mut tables: Vec<(&dyn TableLike, Range<usize>, String)> = Vec::new();
        match f.item {
            Item::Value(Value::Array(array)) => {
                for (i, value) in array.iter().enumerate() {
                    let span = value.span().unwrap_or_else(|| value_span(f));
                    match value {
                        Value::InlineTable(t) => tables.push((t, span, format!("{}[{i}]", f.path))),
                        _ => self.error(
                            span,
                            Some(&f.path),
                            "each route is a table".into(),
                            Some("write route = [{ host = \"a.example.org\" }, { host = \"b.example.org\", path = \"/api\" }]".into()),
                        ),
                    }
                }
                if array.is_empty() {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("service `{service}` has an empty list of routes"),
                        Some("give it at least one route, e.g. route = [{ host = \"example.org\" }], or remove `route`".into()),
                    );
                }
            }
            Item::ArrayOfTables(array) => {
                for (i, table) in array.iter().enumerate() {
                    tables.push((
                        table,
                        table.span().unwrap_or_else(|| key_span(f)),
                        format!("{}[{i}]", f.path),
                    ));
                }
            }
            _ => {
                if let Some(table) = self.table(f) {
                    tables.push((table, key_span(f), f.path.clone()));
                }
            }
        }
        tables
            .into_iter()
            .filter_map(|(table, span, path)| self.route(service, table, &path, span))
            .collect()
    }

    fn route(
        &mut self,
        service: &str,
        table: &dyn TableLike,
        at_path: &str,
        at_span: Range<usize>,
    ) -> Option<Route> {
        let fields = self.fields(table, at_path, ROUTE_KEYS, "in the route");
        let mut route = Route::new(None, "/");
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
        if let Some(f) = fields.get("https_redirect") {
            route.https_redirect = self.boolean(f);
        }
        if let Some(f) = fields.get("hsts") {
            route.hsts = self.hsts(f);
        }
        if let Some(f) = fields.get("challenge") {
            route.challenge = self.challenges(f);
        }
        self.route_policy(&fields, &mut route);
        self.route_edge(&fields, &mut route);
        self.routes.push(RouteSite {
            service: service.to_string(),
            host: route.host.clone(),
            path: route.path.clone(),
            span: at_span,
            key: at_path.to_string(),
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
                let message = if earlier.service == later.service {
                    format!(
                        "duplicate route: service `{}` routes {host} path `{}` twice",
                        later.service, later.path
                    )
                } else {
                    format!(
                        "duplicate route: services `{}` and `{}` both route {host} path `{}`",
                        earlier.service, later.service, later.path
                    )
                };
                self.error(
                    later.span.clone(),
                    Some(&later.key),
                    message,
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
