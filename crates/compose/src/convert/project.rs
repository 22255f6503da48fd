//! The project as a whole: the app's name, the top-level keys, variables that were unset or
//! looked secret where compose substituted them, which services are imported (profiles, an
//! image or build to run) and in which order, and whether each becomes a `[databases.NAME]`
//! or a `[services.NAME]` table. The tables themselves are `service`'s and `database`'s.

use std::collections::BTreeMap;
use std::path::Path;

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table};

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

        let mut active = self.active_services();
        self.edge = self.read_edge(&active);
        let edge_proxies: Vec<(String, &'static str)> = self.edge.proxies.clone();
        active.retain(|(name, _)| {
            match edge_proxies.iter().find(|(p, _)| p == name) {
                Some(_) if self.edge.statics.contains_key(name) => true,
                Some((_, kind)) => {
                    self.edge.flush_notes(&mut self.notes, Some(name));
                    self.notes.add(
                        Some(name),
                        "image",
                        NoteKind::Assumed,
                        format!("left out: the {kind} reverse proxy; dockhand's proxy serves its routes (each rule's translation is listed in this report)"),
                    );
                    false
                }
                None => true,
            }
        });
        let awaited = awaited(&active);
        let one_shots = self.one_shots(&active, &awaited);
        self.one_shots = one_shots.clone();
        self.names.assign(&mut self.notes, &active);
        for (name, svc) in &active {
            if one_shots.contains(name) && awaited.contains(name) {
                if let Some(host) = self.task_host(name, svc, &active, &one_shots) {
                    self.hooked.insert(name.clone(), host);
                }
            }
        }
        let mut hooks: BTreeMap<String, Vec<String>> = BTreeMap::new();

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
        let mut tasks = Table::new();
        tasks.set_implicit(true);
        for ((name, svc), engine) in active.iter().zip(engines) {
            let new = self.names.dockhand(name).to_owned();
            self.edge.flush_notes(&mut self.notes, Some(name));
            if engine.is_none() && one_shots.contains(name) {
                match self.hooked.get(name).cloned() {
                    Some(host) => {
                        let command = one_shot_command(svc);
                        self.drop_one_shot_keys(name, svc, &host);
                        self.notes.add(Some(name), "restart", NoteKind::Assumed, format!("a one-shot job another service waits for (service_completed_successfully): became `{host}`'s pre_deploy hook, run on every deploy before any new instance starts, in `{host}`'s image with its env; a failure stops the deploy"));
                        hooks.entry(host).or_default().push(command);
                    }
                    None => self.task(name, svc, &active, &one_shots, &mut tasks),
                }
                continue;
            }
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
                    let mut t = if self.edge.statics.contains_key(name) {
                        self.static_service(name, svc)
                    } else {
                        self.service(name, svc, &mut first_web, &db_set)
                    };
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
        for (host, commands) in hooks {
            if let Some(t) = services_t.get_mut(&host).and_then(Item::as_table_mut) {
                let mut h = toml_edit::InlineTable::new();
                h.insert(
                    "pre_deploy",
                    crate::syntax::escape(&commands.join(" && ")).into(),
                );
                t.insert("hooks", toml_edit::value(h));
            }
        }
        if !databases.is_empty() {
            doc.insert("databases", Item::Table(databases));
        }
        doc.insert("services", Item::Table(services_t));
        if !tasks.is_empty() {
            doc.insert("tasks", Item::Table(tasks));
        }
        self.edge.flush_notes(&mut self.notes, None);
        self.edge_tables(&mut doc);
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

impl Converter<'_> {
    /// The services that run once and exit by design: `restart: "no"`,
    /// `deploy.restart_policy.condition: none`, a service another waits for with
    /// `service_completed_successfully`, or, with no restart policy and no published port,
    /// a bootstrap/migrate/seed/init command or name. `awaited`: the services another waits
    /// for that way.
    fn one_shots(&self, active: &[(String, Value)], awaited: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for (name, svc) in active {
            let restart = svc.get("restart").and_then(crate::syntax::restart_text);
            let policy_none = svc
                .get("deploy")
                .and_then(|d| d.get("restart_policy"))
                .and_then(|r| r.get("condition"))
                .and_then(Value::scalar)
                .as_deref()
                == Some("none");
            let words = format!(
                "{name} {} {}",
                svc.get("command").map(command_text).unwrap_or_default(),
                svc.get("entrypoint").map(command_text).unwrap_or_default()
            )
            .to_ascii_lowercase();
            let looks = [
                "bootstrap",
                "migrate",
                "migration",
                "seed",
                "createbucket",
                "create-bucket",
                "setup",
                "-init",
                "init-",
            ]
            .iter()
            .any(|w| words.contains(w));
            let published = svc
                .get("ports")
                .and_then(Value::as_seq)
                .is_some_and(|p| !p.is_empty());
            let one_shot = matches!(restart.as_deref(), Some("no") | Some("false"))
                || policy_none
                || awaited.contains(name)
                || (restart.is_none() && looks && !published);
            let has_command = svc.get("command").is_some() || svc.get("entrypoint").is_some();
            if one_shot && has_command {
                out.push(name.clone());
            }
        }
        out
    }

    /// One-shot service `name` as a `[tasks.NAME]` with `when = "once"`, run in the image of
    /// an imported service with the same image or build; without one, a commented-out table
    /// and a warning.
    fn task(
        &mut self,
        name: &str,
        svc: &Value,
        active: &[(String, Value)],
        one_shots: &[String],
        tasks: &mut Table,
    ) {
        let new = self.names.dockhand(name).to_owned();
        let command = one_shot_command(svc);
        let mine = image_key(svc);
        let host = self.task_host(name, svc, active, one_shots);
        let waits: Vec<String> = svc
            .get("depends_on")
            .and_then(Value::as_map)
            .unwrap_or_default()
            .iter()
            .map(|(d, _)| d.clone())
            .collect();
        let after = if waits.is_empty() {
            String::new()
        } else {
            format!(" (compose ran it after {} was ready; a once task runs when the release serves, so after every service is healthy)", waits.join(", "))
        };
        if let Some(h) = &host {
            self.drop_one_shot_keys(name, svc, h);
        }
        match host {
            Some(host) => {
                let mut t = Table::new();
                t.insert("service", toml_edit::value(host.clone()));
                t.insert("command", toml_edit::value(crate::syntax::escape(&command)));
                t.insert("when", toml_edit::value("once"));
                tasks.insert(&new, Item::Table(t));
                self.notes.add(Some(name), "restart", NoteKind::Assumed, format!("a one-shot job: became [tasks.{new}] with when = \"once\", run in `{host}`'s image with its env{after}"));
            }
            None => {
                let image = mine.unwrap_or_default();
                self.trailer.push_str(&format!(
                    "\n# compose service `{name}` is a one-shot job ({image}); a task runs in a service's image,\n# and no service here has that image. Add one, or run the command from another service:\n# [tasks.{new}]\n# service = \"…\"\n# command = {}\n# when = \"once\"\n",
                    toml_edit::Value::from(crate::syntax::escape(&command))
                ));
                self.notes.add(Some(name), "restart", NoteKind::Warning, format!("a one-shot job, not a service: written as a commented-out [tasks.{new}] at the end of the file, since a task runs in a service's image and no imported service has {image}{after}"));
            }
        }
    }

    /// The imported service whose image (or build) one-shot `name` shares, to run it in.
    fn task_host(
        &self,
        name: &str,
        svc: &Value,
        active: &[(String, Value)],
        one_shots: &[String],
    ) -> Option<String> {
        let mine = image_key(svc);
        active
            .iter()
            .filter(|(n, s)| n != name && !one_shots.contains(n) && image_key(s) == mine)
            .find(|(_, s)| {
                s.get("image")
                    .and_then(Value::scalar)
                    .and_then(|i| engine_of(&i))
                    .is_none()
            })
            .map(|(n, _)| self.names.dockhand(n).to_owned())
    }

    /// Reports the keys of one-shot `name` that do not carry over to a task or hook run in
    /// `host`.
    fn drop_one_shot_keys(&mut self, name: &str, svc: &Value, host: &str) {
        let dropped: Vec<&str> = svc
            .as_map()
            .unwrap_or_default()
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| {
                ![
                    "image",
                    "build",
                    "command",
                    "entrypoint",
                    "restart",
                    "depends_on",
                    "deploy",
                    "container_name",
                    "networks",
                    "profiles",
                ]
                .contains(k)
            })
            .collect();
        if !dropped.is_empty() {
            self.notes.add(
                Some(name),
                &dropped.join(", "),
                NoteKind::NotCarried,
                format!("it runs with the env, volumes and settings of `{host}`; move what it needs there"),
            );
        }
    }

    /// `[proxy]`, `[proxy.acme]` and `[[redirects]]` from the proxy layer.
    fn edge_tables(&mut self, doc: &mut DocumentMut) {
        let edge = &self.edge;
        let mut proxy = Table::new();
        if edge.https {
            proxy.insert("listen", toml_edit::value("0.0.0.0:80"));
            proxy.insert("https_listen", toml_edit::value("0.0.0.0:443"));
        }
        if edge.compression == Some(false) {
            proxy.insert("compression", toml_edit::value(false));
        }
        if edge.https {
            if let Some(email) = &edge.acme_email {
                let mut acme = Table::new();
                acme.insert("email", toml_edit::value(email.clone()));
                proxy.insert("acme", Item::Table(acme));
            }
        }
        if !proxy.is_empty() {
            proxy.set_position(0);
            doc.insert("proxy", Item::Table(proxy));
            if edge.https {
                self.notes.add(None, "proxy", NoteKind::Assumed, "the old proxy served HTTPS: dockhand listens on 0.0.0.0:80 and 0.0.0.0:443 and gets a certificate for each route host automatically");
            }
        }
        if !edge.redirects.is_empty() {
            let mut arr = ArrayOfTables::new();
            for r in &edge.redirects {
                let mut t = Table::new();
                t.insert("from", toml_edit::value(r.from.clone()));
                t.insert("to", toml_edit::value(r.to.clone()));
                t.insert("code", toml_edit::value(i64::from(r.code)));
                arr.push(t);
            }
            doc.insert("redirects", Item::ArrayOfTables(arr));
        }
    }
}

/// A `command`/`entrypoint` as words.
fn command_words(v: &Value) -> Vec<String> {
    match v {
        Value::Seq(items) => items.iter().filter_map(Value::scalar).collect(),
        other => other.scalar().map(|s| split_shell(&s)).unwrap_or_default(),
    }
}

/// A command line split as a POSIX shell splits words (quotes and backslashes).
fn split_shell(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    word.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                if !matches!(e, '"' | '\\' | '$' | '`') {
                                    word.push('\\');
                                }
                                word.push(e);
                            }
                        }
                        d => word.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    word.push(e);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

fn command_text(v: &Value) -> String {
    command_words(v).join(" ")
}

/// Words as one shell command: `sh -c SCRIPT` is the script, else the words quoted.
fn shell_command(words: &[String]) -> String {
    if let [sh, c, script, ..] = words {
        if (sh == "/bin/sh" || sh == "sh" || sh == "/bin/bash" || sh == "bash") && c == "-c" {
            return script.clone();
        }
    }
    words
        .iter()
        .map(|w| {
            if w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,%+".contains(c))
                && !w.is_empty()
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A top-level key of the merged project.
fn top<'p>(project: &'p Project, key: &str) -> Option<&'p Value> {
    project.root.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The services another waits for with `condition: service_completed_successfully`.
fn awaited(active: &[(String, Value)]) -> Vec<String> {
    active
        .iter()
        .filter_map(|(_, svc)| svc.get("depends_on").and_then(Value::as_map))
        .flat_map(|deps| deps.iter())
        .filter(|(_, spec)| {
            spec.get("condition").and_then(Value::scalar).as_deref()
                == Some("service_completed_successfully")
        })
        .map(|(d, _)| d.clone())
        .collect()
}

/// What identifies a service's image: its `image`, else its `build`.
fn image_key(v: &Value) -> Option<String> {
    v.get("image")
        .and_then(Value::scalar)
        .map(|i| format!("image {i}"))
        .or_else(|| v.get("build").map(|b| format!("build {b:?}")))
}

/// A one-shot service's command (entrypoint and command) as one shell line.
fn one_shot_command(svc: &Value) -> String {
    match (svc.get("entrypoint"), svc.get("command")) {
        (Some(e), c) => {
            let mut words = command_words(e);
            words.extend(c.map(command_words).unwrap_or_default());
            shell_command(&words)
        }
        (None, Some(c)) => match c {
            Value::Seq(_) => shell_command(&command_words(c)),
            other => other.scalar().unwrap_or_default(),
        },
        (None, None) => String::new(),
    }
}
