//! Compose services that are databases: which images are (postgres, mysql, mariadb, mongo,
//! redis, valkey), their `[databases.NAME]` table (data volume, credentials, publish), and
//! the `${databases.NAME.…}` references that replace their URLs and credentials in other
//! services' env.

use toml_edit::{Array, Table};

use super::environment;
use super::unsupported::{other_key, TableKind};
use super::{health, ports, volumes, Converter, Notes};
use crate::load;
use crate::syntax::{
    array_item, command_item, d_scheme, default_port, docker_size, parse_url, scheme_engine,
};
use crate::value::Value;
use crate::NoteKind;

/// Docker image names of the engines dockhand runs as `[databases.NAME]`, with their engine,
/// data directories and the environment variables that carry user, database and password.
pub(super) struct Engine {
    pub engine: &'static str,
    pub data_dirs: &'static [&'static str],
    pub user: &'static [&'static str],
    pub database: &'static [&'static str],
    pub password: &'static [&'static str],
    pub port: u16,
}

pub(super) fn engine_of(image: &str) -> Option<Engine> {
    let name = image_name(image);
    let e = match name.as_str() {
        "postgres" => Engine {
            engine: "postgres",
            data_dirs: &["/var/lib/postgresql/data", "/var/lib/postgresql"],
            user: &["POSTGRES_USER"],
            database: &["POSTGRES_DB"],
            password: &["POSTGRES_PASSWORD"],
            port: 5432,
        },
        "mysql" | "mariadb" => Engine {
            engine: if name == "mysql" { "mysql" } else { "mariadb" },
            data_dirs: &["/var/lib/mysql"],
            user: &["MYSQL_USER", "MARIADB_USER"],
            database: &["MYSQL_DATABASE", "MARIADB_DATABASE"],
            password: &["MYSQL_PASSWORD", "MARIADB_PASSWORD"],
            port: 3306,
        },
        "mongo" => Engine {
            engine: "mongodb",
            data_dirs: &["/data/db"],
            user: &["MONGO_INITDB_ROOT_USERNAME"],
            database: &["MONGO_INITDB_DATABASE"],
            password: &["MONGO_INITDB_ROOT_PASSWORD"],
            port: 27017,
        },
        "redis" | "valkey" => Engine {
            engine: "redis",
            data_dirs: &["/data"],
            user: &[],
            database: &[],
            password: &[],
            port: 6379,
        },
        _ => return None,
    };
    Some(e)
}

/// The last path component of an image reference without registry, tag or digest:
/// `docker.io/library/postgres:16@sha256:…` → `postgres`.
pub fn image_name(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last).to_ascii_lowercase()
}

/// What services may refer to: a database's names and credentials as compose set them.
pub(super) struct DbInfo {
    compose_name: String,
    name: String,
    engine: &'static str,
    user_vars: &'static [&'static str],
    database_vars: &'static [&'static str],
    password_vars: &'static [&'static str],
    user: Option<String>,
    password: Option<String>,
    database: Option<String>,
}

impl Converter<'_> {
    /// Records compose service `name`, which runs `engine`, with the credentials its
    /// environment sets, so other services' env can refer to it. Reports nothing: its
    /// `[databases.NAME]` table reports its keys.
    pub(super) fn remember_database(&mut self, name: &str, svc: &Value, engine: &Engine) {
        let env = environment::read(
            &mut Notes::default(),
            &self.paths.project_dir,
            self.vars,
            name,
            svc,
        );
        let find = |vars: &[&str]| {
            env.iter()
                .find(|(k, _)| vars.contains(&k.as_str()))
                .and_then(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        self.dbs.push(DbInfo {
            compose_name: name.to_owned(),
            name: self.names.dockhand(name).to_owned(),
            engine: engine.engine,
            user_vars: engine.user,
            database_vars: engine.database,
            password_vars: engine.password,
            user: find(engine.user),
            password: find(engine.password),
            database: find(engine.database),
        });
    }

    /// `${databases.NAME.…}` for an env value that is a database's URL or credential:
    /// a URL naming the database's host with its credentials, or one of the engine's own
    /// variables (`POSTGRES_PASSWORD`, …) when exactly one database has that engine.
    pub(super) fn database_reference(
        &mut self,
        service: &str,
        key: &str,
        value: Option<&str>,
    ) -> Option<String> {
        if self.dbs.iter().any(|d| d.compose_name == service) {
            return None;
        }
        if let Some(url) = value.and_then(parse_url) {
            let db = self.dbs.iter().find(|d| {
                (d.compose_name == url.host || d.name == url.host)
                    && scheme_engine(&url.scheme) == Some(d.engine)
                    && url.port.is_none_or(|p| p == default_port(d.engine))
                    && (d.engine == "redis"
                        || (d.user.as_deref() == url.user.as_deref()
                            && d.password.as_deref() == url.password.as_deref()
                            && d.database.as_deref() == url.database.as_deref()))
            })?;
            let (db, scheme) = (db.name.clone(), url.scheme.clone());
            let mut msg =
                format!("{key}: the URL of database `{db}` became ${{databases.{db}.url}}");
            if d_scheme(scheme_engine(&scheme)) != scheme {
                msg.push_str(&format!(
                    " (its scheme is `{}://`, not `{scheme}://`)",
                    d_scheme(scheme_engine(&scheme))
                ));
            }
            self.notes
                .add(Some(service), "environment", NoteKind::Assumed, msg);
            return Some(format!("${{databases.{db}.url}}"));
        }
        let mut matches = Vec::new();
        for d in &self.dbs {
            let field = if d.user_vars.contains(&key) {
                "user"
            } else if d.password_vars.contains(&key) {
                "password"
            } else if d.database_vars.contains(&key) {
                "database"
            } else {
                continue;
            };
            matches.push((d.name.clone(), field));
        }
        let [(db, field)] = matches.as_slice() else {
            return None;
        };
        self.notes.add(
            Some(service),
            "environment",
            NoteKind::Assumed,
            format!("{key} became ${{databases.{db}.{field}}}, the {field} of database `{db}`"),
        );
        Some(format!("${{databases.{db}.{field}}}"))
    }

    /// The `[databases.NAME]` table of compose service `name`, whose image runs `engine`.
    pub(super) fn database(&mut self, name: &str, svc: &Value, engine: &Engine) -> Table {
        let mut t = Table::new();
        let image = svc.get("image").and_then(Value::scalar).unwrap_or_default();
        t.insert("engine", toml_edit::value(engine.engine));
        t.insert("image", toml_edit::value(image.clone()));
        if image_name(&image) == "valkey" {
            self.notes.add(
                Some(name),
                "image",
                NoteKind::Assumed,
                "valkey speaks the redis protocol: imported as engine `redis` with this image",
            );
        }
        let db = self.names.dockhand(name).to_owned();

        // Data volume and extra mounts.
        let mut extra = Array::new();
        let mut data_volume = None;
        for v in svc
            .get("volumes")
            .and_then(Value::as_seq)
            .unwrap_or_default()
            .to_vec()
        {
            let target = load::volume_target(&v).unwrap_or_default();
            if engine.data_dirs.contains(&target.as_str()) {
                let Some(item) = volumes::volume(&mut self.notes, &self.paths, self.vars, name, &v)
                else {
                    continue;
                };
                let text = item.as_str().unwrap_or_default().to_owned();
                let source = text.split(':').next().unwrap_or_default().to_owned();
                if source.starts_with(['.', '/']) {
                    self.notes.add(Some(name), "volumes", NoteKind::NotCarried, format!("the data directory is the bind mount `{source}`; dockhand keeps database data in a named volume (`{}_{db}-data`), so copy the data into it", self.app));
                } else {
                    if target != engine.data_dirs[0] {
                        self.notes.add(Some(name), "volumes", NoteKind::Warning, format!("the volume was mounted at {target}; dockhand mounts `volume` at the engine's data directory {}", engine.data_dirs[0]));
                    }
                    data_volume = Some(source);
                }
            } else if let Some(item) =
                volumes::volume(&mut self.notes, &self.paths, self.vars, name, &v)
            {
                extra.push_formatted(item);
            }
        }
        if let Some(list) = svc.get("secrets").and_then(Value::as_seq) {
            for s in list {
                if let Some(v) = volumes::file_mount(
                    &mut self.notes,
                    &self.paths,
                    &self.files,
                    name,
                    "secrets",
                    s,
                ) {
                    extra.push(v);
                }
            }
        }
        match data_volume {
            Some(v) => {
                t.insert("volume", toml_edit::value(v));
            }
            None => self.notes.add(
                Some(name),
                "volumes",
                NoteKind::Assumed,
                format!(
                    "no named volume at the data directory; dockhand keeps the data in `{db}-data`"
                ),
            ),
        }
        if !extra.is_empty() {
            t.insert("volumes", array_item(extra));
        }

        // Credentials and the rest of the environment.
        let env = self.environment(name, svc);
        let mut rest = Vec::new();
        let (mut user, mut database, mut password) = (None, None, None);
        for (k, v) in env {
            if engine.user.contains(&k.as_str()) {
                user = v.filter(|v| !v.is_empty()).or(user);
            } else if engine.database.contains(&k.as_str()) {
                database = v.filter(|v| !v.is_empty()).or(database);
            } else if engine
                .password
                .iter()
                .any(|p| k.strip_suffix("_FILE") == Some(*p))
                && password.is_none()
            {
                // `POSTGRES_PASSWORD_FILE=/run/secrets/NAME` of a file-based secret: the
                // password is that file's content.
                let file = v
                    .as_deref()
                    .and_then(|v| v.strip_prefix("/run/secrets/"))
                    .and_then(|n| self.files.secret(n).map(String::from));
                let content = file
                    .as_ref()
                    .and_then(|f| std::fs::read_to_string(self.paths.project_dir.join(f)).ok());
                match (file, content) {
                    (Some(file), Some(content)) => {
                        let secret =
                            format!("{}_PASSWORD", db.to_ascii_uppercase().replace('-', "_"));
                        let value = content.trim_end_matches(['\n', '\r']);
                        password = Some(self.secrets.add(name, &secret, value));
                        self.notes.add(Some(name), &format!("environment.{k}"), NoteKind::Assumed, format!("the password was read from {file} into the secrets file as {secret}; {k} is not needed"));
                    }
                    _ => rest.push((k, v)),
                }
            } else if engine.password.contains(&k.as_str()) {
                let secret = format!("{}_PASSWORD", db.to_ascii_uppercase().replace('-', "_"));
                let v = v.unwrap_or_default();
                if v.is_empty() {
                    self.notes.add(
                        Some(name),
                        &format!("environment.{k}"),
                        NoteKind::Warning,
                        format!("{k} has no value; fill {secret} in the secrets file"),
                    );
                }
                password = Some(self.secrets.add(name, &secret, &v));
            } else {
                rest.push((k, v));
            }
        }
        let (user_set, password_set) = (user.is_some(), password.is_some());
        if let Some(u) = user {
            t.insert("user", toml_edit::value(u));
        }
        if let Some(d) = database {
            t.insert("database", toml_edit::value(d));
        }
        if let Some(p) = password {
            t.insert("password", toml_edit::value(format!("${{secret.{p}}}")));
        }
        if !engine.user.is_empty() && !user_set {
            self.notes.add(Some(name), "environment", NoteKind::Assumed, format!("no {} set: dockhand creates the user `{}` (the app name), not the image's default user; connection values come from ${{databases.{db}.url}}", engine.user[0], self.app));
        }
        if !engine.password.is_empty() && !password_set {
            let secret = format!("{}_PASSWORD", db.to_ascii_uppercase().replace('-', "_"));
            let file_var = rest
                .iter()
                .find(|(k, _)| k.ends_with("PASSWORD_FILE"))
                .map(|(k, _)| k.clone());
            let msg = match file_var {
                Some(fv) => format!("{fv} is kept, but dockhand also sets the password from ${{secret.{secret}}}; fill {secret} in the secrets file (it is empty) with the same password, or remove {fv}"),
                None => format!("no password set: dockhand uses ${{secret.{secret}}}; fill it in the secrets file (it is empty)"),
            };
            self.notes
                .add(Some(name), "environment", NoteKind::Warning, msg);
            let s = self.secrets.add(name, &secret, "");
            t.insert("password", toml_edit::value(format!("${{secret.{s}}}")));
        }
        if let Some(item) = self.env_table(name, rest) {
            t.insert("env", item);
        }
        if let Some(v) = svc.get("command") {
            if let Some(item) = command_item(v) {
                t.insert("command", item);
            }
        }

        // publish
        let ports = ports::published(&mut self.notes, name, svc.get("ports"));
        if let Some(p) = ports.first() {
            let ip = p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into());
            let host_port = p
                .host_port
                .clone()
                .unwrap_or_else(|| p.container.to_string());
            if p.container != engine.port {
                self.notes.add(Some(name), "ports", NoteKind::Warning, format!("container port {} is not the engine's port {}; dockhand publishes the engine port", p.container, engine.port));
            }
            t.insert("publish", toml_edit::value(format!("{ip}:{host_port}")));
            if !ip.starts_with("127.") && ip != "::1" && ip != "localhost" {
                self.notes.add(Some(name), "ports", NoteKind::Warning, format!("published on all interfaces ({ip}:{host_port}): anyone who can reach this host can reach the database; use 127.0.0.1:{host_port} unless that is intended"));
            }
            for extra in &ports[1..] {
                self.notes.add(
                    Some(name),
                    "ports",
                    NoteKind::NotCarried,
                    format!("port {}: a database publishes one port", extra.container),
                );
            }
        }

        // resources
        let mut memory = svc.get("mem_limit").and_then(Value::scalar);
        let mut cpus = svc.get("cpus").and_then(Value::scalar);
        if let Some(deploy) = svc.get("deploy") {
            for (k, v) in deploy.as_map().unwrap_or_default().to_vec() {
                if k == "resources" {
                    if let Some(l) = v.get("limits") {
                        memory = l.get("memory").and_then(Value::scalar).or(memory);
                        cpus = l.get("cpus").and_then(Value::scalar).or(cpus);
                    }
                } else {
                    let new = self.names.dockhand(name).to_owned();
                    self.stack.deploy_key(
                        &mut self.notes,
                        name,
                        &new,
                        &k,
                        &v,
                        super::cluster::Kind::Database,
                    );
                }
            }
        }
        let new = self.names.dockhand(name).to_owned();
        self.stack.database(&mut self.notes, name, &new);
        if let Some(m) = memory.and_then(|m| docker_size(&m)) {
            t.insert("memory", toml_edit::value(m));
        }
        if let Some(c) = cpus.and_then(|c| c.parse::<f64>().ok()) {
            t.insert("cpus", toml_edit::value(c));
        }
        if let Some(s) = svc.get("shm_size").and_then(Value::scalar) {
            if let Some(v) = docker_size(&s) {
                t.insert("shm_size", toml_edit::value(v));
            }
        }
        if let Some(hc) = svc.get("healthcheck") {
            if let Some(h) = health::health(&mut self.notes, name, hc, None) {
                t.insert("health", toml_edit::value(h));
            }
        }
        for (key, value) in svc.as_map().unwrap_or_default().to_vec() {
            other_key(
                &mut self.notes,
                &self.names,
                name,
                &key,
                &value,
                TableKind::Database,
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_without_registry_tag_or_digest() {
        assert_eq!(image_name("postgres"), "postgres");
        assert_eq!(image_name("docker.io/library/postgres:16"), "postgres");
        assert_eq!(image_name("postgres:16-alpine"), "postgres");
        assert_eq!(image_name("ghcr.io/x/postgres:14@sha256:abc"), "postgres");
        assert_eq!(image_name("localhost:5000/redis"), "redis");
        assert!(engine_of("tensorchord/pgvecto-rs:pg16").is_none());
        assert_eq!(
            engine_of("docker.io/valkey/valkey:9@sha256:1")
                .unwrap()
                .engine,
            "redis"
        );
        assert_eq!(engine_of("mongo:7").unwrap().engine, "mongodb");
    }
}
