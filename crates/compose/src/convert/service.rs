//! One `[services.NAME]` table: the walk over a compose service's keys, in the order the
//! table is written — image and build, command, port, env, volumes, replicas and limits,
//! the shared container settings, depends_on, health, route — handing each concern to its
//! module, then reporting every key no step handled.

use toml_edit::{Array, Table};

use super::names::Names;
use super::unsupported::{other_key, TableKind};
use super::{health, image, ports, proxy, resources, volumes, Converter, Notes};
use crate::syntax::command_item;
use crate::value::Value;
use crate::NoteKind;

impl Converter<'_> {
    /// The table of compose service `name`. `first_web` is whether no web service got its
    /// route yet (the first one is routed at the app's host); `databases` are the compose
    /// names of the services that became databases.
    pub(super) fn service(
        &mut self,
        name: &str,
        svc: &Value,
        first_web: &mut bool,
        databases: &[String],
    ) -> Table {
        let mut t = Table::new();
        self.edge.flush_notes(&mut self.notes, Some(name));
        let entries = svc.as_map().unwrap_or_default().to_vec();
        let get = |k: &str| svc.get(k);

        // image, build, pull
        if let Some(image) = get("image").and_then(Value::scalar) {
            t.insert("image", toml_edit::value(image.clone()));
            image::check_image(&mut self.notes, name, &image);
        }
        if let Some(build) = get("build") {
            if let Some(item) = image::build(&mut self.notes, &self.paths, self.vars, name, build) {
                t.insert("build", item);
            }
        }
        if let Some(p) = get("pull_policy").and_then(Value::scalar) {
            if let Some(pull) = image::pull(&mut self.notes, name, &p) {
                t.insert("pull", toml_edit::value(pull));
            }
        }
        for key in ["command", "entrypoint"] {
            if let Some(v) = get(key) {
                if let Some(item) = command_item(v) {
                    t.insert(key, item);
                } else if v != &Value::Null {
                    self.notes.add(
                        Some(name),
                        key,
                        NoteKind::NotCarried,
                        "an empty command cannot be written; the image's default is used",
                    );
                }
            }
        }

        // port (the route comes last): where the old proxy reached the service, else the
        // first published web port, else the port its HTTP health probe fetches.
        let edge_routes = self.edge.routes.get(name).cloned();
        let mut web_port =
            ports::web_port(&mut self.notes, name, get("ports"), self.stack.enabled());
        if let Some(routes) = &edge_routes {
            let proxied = routes.iter().find_map(|r| r.port).or_else(|| {
                get("expose")
                    .and_then(Value::as_seq)
                    .and_then(|e| e.first())
                    .and_then(Value::scalar)
                    .and_then(|p| p.split('/').next().and_then(|n| n.parse().ok()))
            });
            if proxied.is_some() {
                web_port = proxied;
            }
        }
        let published_web = web_port.is_some();
        if web_port.is_none() {
            if let Some(p) = get("healthcheck").and_then(health::probe_port) {
                self.notes.add(Some(name), "healthcheck.test", NoteKind::Assumed, format!("the health probe fetches port {p}: it became the service's `port`, so the agent checks it over HTTP"));
                web_port = Some(p);
            }
        }
        if let Some(port) = web_port {
            t.insert("port", toml_edit::value(i64::from(port)));
        }

        let env = self.environment(name, svc);
        if let Some(item) = self.env_table(name, env) {
            t.insert("env", item);
        }

        // volumes, secrets, configs, tmpfs
        if let Some(item) = volumes::service_volumes(
            &mut self.notes,
            &self.paths,
            self.vars,
            &self.files,
            name,
            svc,
        ) {
            t.insert("volumes", item);
        }

        // deploy and resources
        let new = self.names.dockhand(name).to_owned();
        resources::scaling_and_limits(&mut self.notes, &mut self.stack, name, &new, svc, &mut t);
        resources::common(&mut self.notes, name, svc, &mut t);

        if let Some(Value::Map(deps)) = get("depends_on") {
            if let Some(arr) = depends_on(
                &mut self.notes,
                &self.names,
                name,
                deps,
                databases,
                &self.one_shots,
                &self.hooked,
            ) {
                t.insert("depends_on", toml_edit::value(arr));
            }
        }

        if let Some(hc) = get("healthcheck") {
            if let Some(h) = health::health(&mut self.notes, name, hc, web_port) {
                t.insert("health", toml_edit::value(h));
            }
        }

        if let Some(routes) = edge_routes.filter(|r| !r.is_empty()) {
            if web_port.is_some() {
                t.insert("route", crate::edge::routes_item(&routes));
            } else {
                self.notes.add(Some(name), "route", NoteKind::Warning, format!("the proxy routed {} here but no port is known (no port in the proxy rule, `expose` or `ports`); add `port` and the route", routes.iter().map(|r| r.describe()).collect::<Vec<_>>().join(", ")));
            }
        } else if let Some(port) = web_port.filter(|_| published_web) {
            let host = if *first_web {
                format!("{}.localhost", self.app)
            } else {
                format!("{}.{}.localhost", self.names.dockhand(name), self.app)
            };
            *first_web = false;
            self.assumed_hosts
                .push(self.names.dockhand(name).to_owned());
            t.insert("route", ports::route(&mut self.notes, name, &host, port));
        }

        // Everything else.
        for (key, value) in entries {
            other_key(
                &mut self.notes,
                &self.names,
                name,
                &key,
                &value,
                TableKind::Service,
            );
        }
        if self.edge.labelled.iter().any(|l| l == name) {
            proxy::other_labels_note(&mut self.notes, name, svc);
        }
        t
    }
}

/// `depends_on` of service `name`: the imported services it names that are not databases
/// (databases always start first), as an array; `service_healthy` becomes
/// `{ service = "…", condition = "healthy" }` (the dependent starts once it passed its gate),
/// other conditions are reported and kept as start order.
fn depends_on(
    notes: &mut Notes,
    names: &Names,
    name: &str,
    deps: &[(String, Value)],
    databases: &[String],
    one_shots: &[String],
    hooked: &std::collections::BTreeMap<String, String>,
) -> Option<Array> {
    let mut arr = Array::new();
    let mut conditions = Vec::new();
    let mut db_deps = Vec::new();
    for (dep, spec) in deps {
        let Some(new) = names.get(dep).map(String::from) else {
            notes.add(
                Some(name),
                "depends_on",
                NoteKind::NotCarried,
                format!("`{dep}` is not imported (a profile, no image, or the reverse proxy dockhand replaces)"),
            );
            continue;
        };
        if let Some(host) = hooked.get(dep) {
            notes.add(
                Some(name),
                "depends_on",
                NoteKind::Assumed,
                format!("`{dep}` became `{host}`'s pre_deploy hook: it runs, and must succeed, before `{name}` starts, on every deploy"),
            );
            continue;
        }
        if one_shots.contains(dep) {
            notes.add(
                Some(name),
                "depends_on",
                NoteKind::Warning,
                format!("`{dep}` became a once task, which runs when the release serves: `{name}` no longer starts after it; make `{name}` tolerate starting first"),
            );
            continue;
        }
        let cond = spec
            .get("condition")
            .and_then(Value::scalar)
            .unwrap_or_default();
        if databases.contains(dep) {
            db_deps.push(new);
            continue;
        }
        if cond == "service_healthy" {
            let mut t = toml_edit::InlineTable::new();
            t.insert("service", new.into());
            t.insert("condition", "healthy".into());
            arr.push(t);
            continue;
        }
        if cond != "service_started" && !cond.is_empty() {
            conditions.push(format!("{dep} ({cond})"));
        }
        arr.push(new);
    }
    if !db_deps.is_empty() {
        notes.add(
            Some(name),
            "depends_on",
            NoteKind::Assumed,
            format!(
                "left out {}: databases are always started (and ready) before services",
                db_deps.join(", ")
            ),
        );
    }
    if !conditions.is_empty() {
        notes.add(
            Some(name),
            "depends_on",
            NoteKind::Warning,
            format!(
                "kept as start order: {} starts first; dockhand does not wait for that condition before starting `{name}` (the deploy gate waits for both)",
                conditions.join(", ")
            ),
        );
    }
    (!arr.is_empty()).then_some(arr)
}
