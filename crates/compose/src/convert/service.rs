//! One `[services.NAME]` table: the walk over a compose service's keys, in the order the
//! table is written — image and build, command, port, env, volumes, replicas and limits,
//! the shared container settings, depends_on, health, route — handing each concern to its
//! module, then reporting every key no step handled.

use toml_edit::{Array, Table};

use super::names::Names;
use super::unsupported::{other_key, TableKind};
use super::{health, image, ports, resources, volumes, Converter, Notes};
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

        // port (the route comes last)
        let web_port = ports::web_port(&mut self.notes, name, get("ports"));
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
        resources::scaling_and_limits(&mut self.notes, name, svc, &mut t);
        resources::common(&mut self.notes, name, svc, &mut t);

        if let Some(Value::Map(deps)) = get("depends_on") {
            if let Some(arr) = depends_on(&mut self.notes, &self.names, name, deps, databases) {
                t.insert("depends_on", toml_edit::value(arr));
            }
        }

        if let Some(hc) = get("healthcheck") {
            if let Some(h) = health::health(&mut self.notes, name, hc, web_port) {
                t.insert("health", toml_edit::value(h));
            }
        }

        if let Some(port) = web_port {
            let host = if *first_web {
                format!("{}.localhost", self.app)
            } else {
                format!("{}.{}.localhost", self.names.dockhand(name), self.app)
            };
            *first_web = false;
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
        t
    }
}

/// `depends_on` of service `name`: the imported services it names that are not databases
/// (databases always start first), as an array; conditions are reported, since dockhand
/// keeps only the start order.
fn depends_on(
    notes: &mut Notes,
    names: &Names,
    name: &str,
    deps: &[(String, Value)],
    databases: &[String],
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
                format!("`{dep}` is not imported (profile or no image)"),
            );
            continue;
        };
        let cond = spec
            .get("condition")
            .and_then(Value::scalar)
            .unwrap_or_default();
        if databases.contains(dep) {
            db_deps.push(new);
            continue;
        }
        if cond != "service_started" && !cond.is_empty() {
            conditions.push(format!("{dep}: {cond}"));
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
            NoteKind::NotCarried,
            format!(
                "conditions are not supported, only the start order: {}",
                conditions.join(", ")
            ),
        );
    }
    (!arr.is_empty()).then_some(arr)
}
