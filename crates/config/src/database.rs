//! The `[databases.NAME]` tables: long-lived PostgreSQL, MySQL, MariaDB, MongoDB and Redis
//! containers with their data volume, credentials (the password a `${secret.…}` reference)
//! and an optional published host address; their connection values become the
//! `${databases.NAME.FIELD}` links the services' `env` values can use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use toml_edit::{Key, TableLike};

use crate::container::{CommandLine, DatabaseConfig, Engine, PullPolicy};
use crate::interpolate::{Links, SecretMode};
use crate::model::{EnvValue, HealthCheck};
use crate::parse::{key_span, name_problem, value_span, Parser, SecretUse, NAME_HELP};

const DATABASE_KEYS: &[&str] = &[
    "engine", "version", "image", "pull", "volume", "volumes", "user", "database", "password",
    "env", "command", "publish", "memory", "cpus", "shm_size", "health",
];

impl Parser<'_> {
    /// Every database of the `[databases]` table.
    pub(crate) fn databases(
        &mut self,
        table: &dyn TableLike,
        app: &str,
    ) -> BTreeMap<String, DatabaseConfig> {
        let mut out = BTreeMap::new();
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            let path = format!("databases.{name}");
            self.sites.insert(path.clone(), key.span().unwrap_or(0..0));
            if let Some(problem) = name_problem(name) {
                self.error(
                    key.span().unwrap_or(0..0),
                    Some(&path),
                    format!("invalid database name `{name}`: {problem}"),
                    Some(NAME_HELP.into()),
                );
            }
            let Some(db) = item.as_table_like() else {
                self.error(
                    key.span().unwrap_or(0..0),
                    Some(&path),
                    format!("database `{name}` must be a table"),
                    Some(format!(
                        "write [databases.{name}] followed by engine = \"postgres\""
                    )),
                );
                continue;
            };
            if let Some(db) = self.database(name, key, db, app) {
                out.insert(name.to_string(), db);
            }
        }
        out
    }

    fn database(
        &mut self,
        name: &str,
        key: &Key,
        table: &dyn TableLike,
        app: &str,
    ) -> Option<DatabaseConfig> {
        let path = format!("databases.{name}");
        let span = key.span().unwrap_or(0..0);
        let fields = self.fields(
            table,
            &path,
            DATABASE_KEYS,
            &format!("in database `{name}`"),
        );
        let engine = match fields.get("engine") {
            Some(f) => {
                let text = self.string(f)?;
                match Engine::parse(&text) {
                    Some(engine) => engine,
                    None => {
                        let help = match crate::parse::suggest(&text, Engine::NAMES) {
                            Some(better) => format!("did you mean \"{better}\"?"),
                            None => format!(
                                "supported engines: {}; run anything else as a service with `image`",
                                Engine::NAMES.join(", ")
                            ),
                        };
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            format!("unknown database engine `{text}`"),
                            Some(help),
                        );
                        return None;
                    }
                }
            }
            None => {
                self.error(
                    span,
                    Some(&format!("{path}.engine")),
                    format!("database `{name}` has no `engine`"),
                    Some(format!(
                        "add engine = \"postgres\" (or {})",
                        Engine::NAMES[1..].join(", ")
                    )),
                );
                return None;
            }
        };
        let image = match (fields.get("image"), fields.get("version")) {
            (Some(i), Some(v)) => {
                self.error(
                    key_span(v),
                    Some(&v.path),
                    "set either `image` or `version`, not both".into(),
                    Some(
                        "`version` picks the official image's tag; `image` names the image in full"
                            .into(),
                    ),
                );
                self.image_ref(i)?
            }
            (Some(i), None) => self.image_ref(i)?,
            (None, Some(v)) => {
                let version = match v.item.as_value() {
                    Some(toml_edit::Value::Integer(n)) => n.value().to_string(),
                    Some(toml_edit::Value::Float(x)) => x.value().to_string(),
                    _ => self.string(v)?,
                };
                format!("{}:{version}", engine.repository())
            }
            (None, None) => format!("{}:{}", engine.repository(), engine.default_version()),
        };
        let pull = fields
            .get("pull")
            .and_then(|f| self.pull(f))
            .unwrap_or(PullPolicy::Missing);
        let volume_name = match fields.get("volume") {
            Some(f) => {
                let v = self.string(f)?;
                let valid = v.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !valid {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("invalid volume name `{v}`"),
                        Some("volume names use letters, digits, `_`, `.` and `-`".into()),
                    );
                }
                v
            }
            None => format!("{name}-data"),
        };
        let volumes = fields
            .get("volumes")
            .map(|f| self.mounts(f, app))
            .unwrap_or_default();

        let mut user = None;
        let mut database = None;
        let mut password = None;
        for (k, slot) in [("user", &mut user), ("database", &mut database)] {
            if let Some(f) = fields.get(k) {
                if !engine.has_credentials() {
                    self.error(
                        key_span(f),
                        Some(&f.path),
                        format!("{} has no `{k}`", engine.as_str()),
                        Some("remove it".into()),
                    );
                } else {
                    *slot = self.string(f);
                }
            }
        }
        if engine.has_credentials() {
            user = user.or_else(|| Some(app.to_string()));
            database = database.or_else(|| Some(app.to_string()));
        }
        match fields.get("password") {
            Some(f) if engine == Engine::Redis => self.error(
                key_span(f),
                Some(&f.path),
                "a password for redis is not supported yet".into(),
                Some("redis is reachable only on the app's own network unless published; remove `password`".into()),
            ),
            Some(f) => {
                if let Some(raw) = self.raw_str(f) {
                    password = self
                        .interpolate(f, raw, SecretMode::Keep)
                        .map(|o| EnvValue::from_template(o.value));
                }
            }
            None if engine.has_credentials() => {
                let secret = format!("{}_PASSWORD", name.to_ascii_uppercase().replace('-', "_"));
                self.secret_uses.push(SecretUse {
                    name: secret.clone(),
                    span: span.clone(),
                    key: format!("{path}.password"),
                });
                password = Some(EnvValue::from_template(format!("${{secret.{secret}}}")));
            }
            None => {}
        }
        let env = fields
            .get("env")
            .and_then(|f| self.table(f))
            .map(|t| self.env(t, &format!("{path}.env")))
            .unwrap_or_default();
        let command = fields.get("command").and_then(|f| self.argv(f));
        let publish = fields.get("publish").and_then(|f| self.publish(f, engine));
        let memory_limit = fields.get("memory").and_then(|f| self.size(f));
        let cpus = fields.get("cpus").and_then(|f| self.cpus(f));
        let shm_size = fields.get("shm_size").and_then(|f| self.size(f));
        let mut health = default_health(engine, user.as_deref(), database.as_deref());
        if let Some(f) = fields.get("health") {
            if let Some(t) = self.table(f) {
                if let Some(h) = self.health(t, f) {
                    if h.command.is_none() {
                        self.error(
                            key_span(f),
                            Some(&f.path),
                            "a database's health check is a `command`".into(),
                            Some("write health = { command = \"pg_isready\" } or remove it for the engine's own check".into()),
                        );
                    }
                    health = h;
                }
            }
        }
        Some(DatabaseConfig {
            name: name.to_string(),
            engine,
            image,
            pull,
            volume: volume_name,
            volumes,
            user,
            database,
            password,
            env,
            command,
            publish,
            memory_limit,
            cpus,
            shm_size,
            health,
        })
    }

    /// `publish = "127.0.0.1:5432"` or `publish = 5432` (loopback); all interfaces warn.
    fn publish(&mut self, f: &crate::parse::Field<'_>, engine: Engine) -> Option<SocketAddr> {
        let addr: SocketAddr = if let Some(port) = f.item.as_integer() {
            let port = u16::try_from(port).ok().filter(|p| *p > 0);
            match port {
                Some(p) => SocketAddr::from(([127, 0, 0, 1], p)),
                None => {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        "`publish` port must be between 1 and 65535".into(),
                        None,
                    );
                    return None;
                }
            }
        } else {
            let text = self.string(f)?;
            match text.parse() {
                Ok(addr) => addr,
                Err(_) => {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("invalid publish address `{text}`"),
                        Some(format!("write \"127.0.0.1:{}\"", engine.port())),
                    );
                    return None;
                }
            }
        };
        if !addr.ip().is_loopback() {
            self.warning(
                value_span(f),
                Some(&f.path),
                format!(
                    "the {} port is published on {}, reachable from other machines",
                    engine.as_str(),
                    addr.ip()
                ),
                Some(format!(
                    "publish on loopback (\"127.0.0.1:{}\") unless something outside this server must connect",
                    addr.port()
                )),
            );
        }
        Some(addr)
    }

    /// The connection values of every database as seen from a container or a process.
    pub(crate) fn links_for(
        databases: &BTreeMap<String, DatabaseConfig>,
        in_container: bool,
    ) -> Links {
        Links {
            values: databases
                .iter()
                .map(|(name, db)| (name.clone(), db.connection(in_container)))
                .collect(),
        }
    }
}

/// The engine's own readiness check.
fn default_health(engine: Engine, user: Option<&str>, database: Option<&str>) -> HealthCheck {
    let command = match engine {
        Engine::Postgres => format!(
            "pg_isready -q -h 127.0.0.1 -U {} -d {}",
            shlex::try_quote(user.unwrap_or("postgres")).unwrap_or_default(),
            shlex::try_quote(database.unwrap_or("postgres")).unwrap_or_default()
        ),
        Engine::Mysql => "mysqladmin ping -h 127.0.0.1 --silent".into(),
        Engine::Mariadb => {
            "mariadb-admin ping -h 127.0.0.1 --silent || mysqladmin ping -h 127.0.0.1 --silent"
                .into()
        }
        Engine::Mongodb => {
            "mongosh --quiet --eval 'db.adminCommand(\"ping\")' || mongo --quiet --eval 'db.adminCommand(\"ping\")'".into()
        }
        Engine::Redis => "redis-cli ping | grep -q PONG".into(),
    };
    HealthCheck {
        interval: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        deploy_timeout: Duration::from_secs(120),
        ..HealthCheck::with_command(CommandLine::Shell(command))
    }
}
