//! The project as a whole: the app's name, the top-level keys, variables that were unset or
//! looked secret where compose substituted them, which services are imported (profiles, an
//! image or build to run) and in which order, and whether each becomes a `[databases.NAME]`
//! or a `[services.NAME]` table. The tables themselves are `service`'s and `database`'s.

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table};

use super::database::{engine_of, Engine};
use super::environment::looks_secret;
use super::names::sanitise_name;
use super::{Converter, Notes};
use crate::load::Project;
use crate::syntax::strip_indexes;
use crate::value::Value;
use crate::{ImportError, ImportOptions, NoteKind};

/// The app's name: `COMPOSE_PROJECT_NAME`, the top-level `name`, or the project directory's
/// name, made a valid dockhand name (with a note when that changed it).
pub(super) fn app_name(
    notes: &mut Notes,
    project: &Project,
    project_dir: &Path,
    opts: &ImportOptions,
) -> String {
    let (raw, from) = if let Some(n) = opts.env.get("COMPOSE_PROJECT_NAME") {
        (n.clone(), "COMPOSE_PROJECT_NAME")
    } else if let Some(n) = top(project, "name").and_then(Value::scalar) {
        (n, "the top-level `name`")
    } else {
        let dir = std::fs::canonicalize(project_dir).unwrap_or_else(|_| project_dir.to_path_buf());
        (
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "app".into()),
            "the project directory's name",
        )
    };
    let app = sanitise_name(&raw);
    if app != raw {
        notes.add(
            None,
            "name",
            NoteKind::Assumed,
            format!(
                "app name `{app}` made from {from} `{raw}` (dockhand names use lowercase letters, digits and `-`); compose named its volumes `{}_*`, dockhand uses `{app}_*`",
                raw.to_lowercase()
            ),
        );
    }
    app
}

impl Converter<'_> {
    /// The whole document: `(document, services, databases)`.
    pub(super) fn document(
        &mut self,
    ) -> Result<(DocumentMut, Vec<String>, Vec<String>), ImportError> {
        let mut doc = DocumentMut::new();
        doc["app"] = toml_edit::value(self.app.clone());

        self.top_level_keys();
        self.variable_notes();

        let active = self.active_services();
        self.names.assign(&mut self.notes, &active);

        let mut databases = Table::new();
        databases.set_implicit(true);
        let mut services_t = Table::new();
        services_t.set_implicit(true);
        let mut db_names = Vec::new();
        let mut svc_names = Vec::new();
        let mut first_web = true;
        let mut position = 0;
        let engines: Vec<Option<Engine>> = active
            .iter()
            .map(|(_, svc)| {
                svc.get("image")
                    .and_then(Value::scalar)
                    .and_then(|i| engine_of(&i))
            })
            .collect();
        let db_set: Vec<String> = active
            .iter()
            .zip(&engines)
            .filter(|(_, e)| e.is_some())
            .map(|((n, _), _)| n.clone())
            .collect();
        for ((name, svc), engine) in active.iter().zip(&engines) {
            if let Some(engine) = engine {
                self.remember_database(name, svc, engine);
            }
        }
        for ((name, svc), engine) in active.iter().zip(engines) {
            let new = self.names.dockhand(name).to_owned();
            position += 1;
            let origin = (new != *name).then(|| format!("\n# compose service `{name}`\n"));
            match engine {
                Some(engine) => {
                    let mut t = self.database(name, svc, &engine);
                    t.set_position(position);
                    if let Some(o) = &origin {
                        t.decor_mut().set_prefix(o);
                    }
                    databases.insert(&new, Item::Table(t));
                    db_names.push(new);
                }
                None => {
                    let mut t = self.service(name, svc, &mut first_web, &db_set);
                    t.set_position(position + 1000);
                    if let Some(o) = &origin {
                        t.decor_mut().set_prefix(o);
                    }
                    services_t.insert(&new, Item::Table(t));
                    svc_names.push(new);
                }
            }
        }
        if svc_names.is_empty() && db_names.is_empty() {
            return Err(ImportError::Invalid {
                file: self.first_file.clone(),
                message: "there is no service to import (the report of a run with --profile may show skipped ones)".into(),
            });
        }
        if !databases.is_empty() {
            doc.insert("databases", Item::Table(databases));
        }
        doc.insert("services", Item::Table(services_t));
        Ok((doc, svc_names, db_names))
    }

    fn top_level_keys(&mut self) {
        let root = self.project.root.clone();
        for (key, value) in &root {
            match key.as_str() {
                "services" | "name" => {}
                "version" => self.notes.add(
                    None,
                    "version",
                    NoteKind::NotCarried,
                    "obsolete in the Compose specification; ignored",
                ),
                "networks" => self.notes.add(
                    None,
                    "networks",
                    NoteKind::NotCarried,
                    "dockhand gives each app one network (`dockhand-<app>`) on which every service and database reaches the others by name",
                ),
                "volumes" => {
                    for (name, def) in value.as_map().unwrap_or_default() {
                        for (k, v) in def.as_map().unwrap_or_default() {
                            if k == "driver" && v.scalar().as_deref() == Some("local") {
                                continue;
                            }
                            let why = match k.as_str() {
                                "external" => "external volumes are not supported: dockhand creates `<app>_<name>` itself; copy the data over".to_string(),
                                "name" => format!("a custom volume name is not supported: dockhand names it `{}_{name}`", self.app),
                                _ => "volume drivers and their options are not supported (local volumes only)".to_string(),
                            };
                            self.notes.add(None, &format!("volumes.{name}.{k}"), NoteKind::NotCarried, why);
                        }
                    }
                }
                "secrets" | "configs" => {
                    for (name, def) in value.as_map().unwrap_or_default() {
                        if let Some(file) = def.get("file").and_then(Value::scalar) {
                            self.files.insert(key, name, file);
                        } else {
                            let what = def
                                .as_map()
                                .and_then(|m| m.first())
                                .map(|(k, _)| k.clone())
                                .unwrap_or_default();
                            self.notes.add(
                                None,
                                &format!("{key}.{name}"),
                                NoteKind::NotCarried,
                                format!("only file-based {key} are imported (this one uses `{what}`); put the value in a file or, for secrets, in the secrets file and the service's env"),
                            );
                        }
                    }
                }
                "include" => self.notes.add(
                    None,
                    "include",
                    NoteKind::NotCarried,
                    "included compose files are not read; import them with more -f options",
                ),
                k if k.starts_with("x-") => self.notes.add(
                    None,
                    k,
                    NoteKind::NotCarried,
                    "extension field: ignored, as compose does (its anchors were expanded)",
                ),
                other => self.notes.add(
                    None,
                    other,
                    NoteKind::NotCarried,
                    "not a key dockhand knows",
                ),
            }
        }
    }

    /// Warnings about variables: unset ones (they became empty strings), and secret-looking
    /// ones substituted anywhere but the environment.
    fn variable_notes(&mut self) {
        let unset = self.project.unset.clone();
        let mut seen: Vec<(Option<String>, String)> = Vec::new();
        for u in &unset {
            let service =
                u.at.strip_prefix("services.")
                    .and_then(|rest| rest.split(['.', '[']).next())
                    .map(String::from);
            if seen.contains(&(service.clone(), u.var.clone())) {
                continue;
            }
            seen.push((service.clone(), u.var.clone()));
            let key = match &service {
                Some(s) => u.at[("services.".len() + s.len())..]
                    .trim_start_matches('.')
                    .to_owned(),
                None => u.at.clone(),
            };
            let key = strip_indexes(&key);
            self.notes.add(
                service.as_deref(),
                &key,
                NoteKind::Warning,
                format!(
                    "variable {} is not set; it became an empty string (set it in the environment or {})",
                    u.var, self.env_name
                ),
            );
        }

        // A secret-looking variable substituted anywhere but the environment ends up in
        // dockhand.toml (commands, images…), where dockhand does not allow secrets.
        let used = self.project.used.clone();
        for u in &used {
            let Some(rest) = u.at.strip_prefix("services.") else {
                continue;
            };
            let (service, key) = rest.split_once('.').unwrap_or((rest, ""));
            let key = strip_indexes(key);
            if key.starts_with("environment") || !looks_secret(&u.var) {
                continue;
            }
            self.notes.add(
                Some(service),
                &key,
                NoteKind::Warning,
                format!(
                    "uses ${{{}}}, which looks secret: its value is now written in dockhand.toml; dockhand allows secrets only in env values, so pass it through an env variable instead",
                    u.var
                ),
            );
        }
    }

    /// The services that are in, in the file's order: those of an active profile (or none)
    /// with an image or build to run; the others are reported as skipped.
    fn active_services(&mut self) -> Vec<(String, Value)> {
        let services: Vec<(String, Value)> = match top(self.project, "services") {
            Some(Value::Map(m)) => m.clone(),
            _ => Vec::new(),
        };
        let mut active: Vec<(String, Value)> = Vec::new();
        for (name, svc) in services {
            if let Some(p) = svc.get("profiles").and_then(Value::as_seq) {
                let names: Vec<String> = p.iter().filter_map(Value::scalar).collect();
                if !names.is_empty() && !names.iter().any(|n| self.profiles.contains(n)) {
                    self.notes.add(
                        Some(&name),
                        "profiles",
                        NoteKind::NotCarried,
                        format!(
                            "skipped: only in profile {} (pass --profile {} to import it)",
                            names.join(", "),
                            names[0]
                        ),
                    );
                    continue;
                }
            }
            if svc.get("image").is_none() && svc.get("build").is_none() {
                self.notes.add(
                    Some(&name),
                    "image",
                    NoteKind::NotCarried,
                    "skipped: the service has neither `image` nor `build`",
                );
                continue;
            }
            active.push((name, svc));
        }
        active
    }
}

/// A top-level key of the merged project.
fn top<'p>(project: &'p Project, key: &str) -> Option<&'p Value> {
    project.root.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}
