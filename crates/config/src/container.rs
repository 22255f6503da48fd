//! The container side of the model: how a service runs as a Docker container (image or
//! build, command, mounts, limits) and the long-lived `[databases.NAME]` containers, with
//! the engine knowledge (data directory, port, environment, readiness command, connection
//! URL) that lets an app refer to `${databases.NAME.url}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{EnvValue, HealthCheck};

/// A command as written: a string (run by a shell) or an array (exec'd as is).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<String>),
}

impl CommandLine {
    /// The argument vector: a shell command becomes `/bin/sh -c <command>`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            CommandLine::Exec(v) => v.clone(),
        }
    }

    /// The program the command starts: the first word of a shell command that is not a
    /// variable assignment, or the first element of an exec command.
    pub fn program(&self) -> Option<String> {
        match self {
            CommandLine::Exec(v) => v.first().cloned(),
            CommandLine::Shell(s) => shlex::split(s)
                .unwrap_or_default()
                .into_iter()
                .find(|w| !w.contains('=') || w.starts_with('=')),
        }
    }

    /// The command as one line, for messages.
    pub fn display(&self) -> String {
        match self {
            CommandLine::Shell(s) => s.clone(),
            CommandLine::Exec(v) => v.join(" "),
        }
    }
}

/// How a service runs as a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerConfig {
    /// The image to run; for a build, the repository the built image is tagged in (the agent
    /// adds `:r<release>`).
    pub image: String,
    pub build: Option<BuildConfig>,
    pub pull: PullPolicy,
    /// Replaces the image's CMD.
    pub command: Option<Vec<String>>,
    /// Replaces the image's ENTRYPOINT.
    pub entrypoint: Option<Vec<String>>,
    pub volumes: Vec<Mount>,
    pub cpus: Option<f64>,
    pub user: Option<String>,
    pub init: bool,
    pub shm_size: Option<u64>,
    pub ulimits: Vec<Ulimit>,
}

/// `build = { context, dockerfile, target, args }`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildConfig {
    pub context: PathBuf,
    /// Absolute path of the Dockerfile.
    pub dockerfile: PathBuf,
    pub target: Option<String>,
    pub args: BTreeMap<String, String>,
    /// Where a remote deploy builds it (`on = "local" | "server"`).
    #[serde(default)]
    pub on: BuildOn,
}

/// Where a remote deploy builds an image: on the machine running `dockhand deploy --host`
/// (then only the layers the server lacks travel), or on the server from the synced context.
/// A deploy on the agent's own machine builds there either way.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BuildOn {
    #[default]
    Local,
    Server,
}

/// When an image is pulled from its registry.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Only when the image is not present locally.
    #[default]
    Missing,
    /// At every deploy (a failure with the image present locally is a warning).
    Always,
    /// Never: the image must be present locally.
    Never,
}

/// A filesystem mounted into a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Mount {
    /// A named Docker volume; the Docker volume is `<app>_<name>`.
    Volume {
        name: String,
        target: String,
        read_only: bool,
    },
    /// A host path (absolute).
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
    },
}

impl Mount {
    pub fn target(&self) -> &str {
        match self {
            Mount::Volume { target, .. } | Mount::Bind { target, .. } | Mount::Tmpfs { target } => {
                target
            }
        }
    }
}

/// One `ulimits` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// The database engines Dockhand knows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Postgres,
    Mysql,
    Mariadb,
    Mongodb,
    Redis,
}

impl Engine {
    pub const NAMES: &'static [&'static str] =
        &["postgres", "mysql", "mariadb", "mongodb", "redis"];

    pub fn parse(name: &str) -> Option<Engine> {
        Some(match name {
            "postgres" | "postgresql" => Engine::Postgres,
            "mysql" => Engine::Mysql,
            "mariadb" => Engine::Mariadb,
            "mongodb" | "mongo" => Engine::Mongodb,
            "redis" | "valkey" => Engine::Redis,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Mariadb => "mariadb",
            Engine::Mongodb => "mongodb",
            Engine::Redis => "redis",
        }
    }

    /// The image repository on Docker Hub.
    pub fn repository(self) -> &'static str {
        match self {
            Engine::Mongodb => "mongo",
            other => other.as_str(),
        }
    }

    pub fn default_version(self) -> &'static str {
        match self {
            Engine::Postgres => "16",
            Engine::Mysql => "8.4",
            Engine::Mariadb => "11",
            Engine::Mongodb => "7",
            Engine::Redis => "7",
        }
    }

    /// The port the engine listens on inside its container.
    pub fn port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mysql | Engine::Mariadb => 3306,
            Engine::Mongodb => 27017,
            Engine::Redis => 6379,
        }
    }

    /// Where the official image keeps its data.
    pub fn data_dir(self) -> &'static str {
        match self {
            Engine::Postgres => "/var/lib/postgresql/data",
            Engine::Mysql | Engine::Mariadb => "/var/lib/mysql",
            Engine::Mongodb => "/data/db",
            Engine::Redis => "/data",
        }
    }

    /// Whether the engine has users, passwords and named databases.
    pub fn has_credentials(self) -> bool {
        self != Engine::Redis
    }

    fn scheme(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql | Engine::Mariadb => "mysql",
            Engine::Mongodb => "mongodb",
            Engine::Redis => "redis",
        }
    }
}

/// One `[databases.NAME]` table: a long-lived container, never restarted by an app deploy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseConfig {
    pub name: String,
    pub engine: Engine,
    pub image: String,
    pub pull: PullPolicy,
    /// The data volume's name; the Docker volume is `<app>_<volume>`.
    pub volume: String,
    pub volumes: Vec<Mount>,
    pub user: Option<String>,
    pub database: Option<String>,
    /// A template (usually `${secret.NAME}`).
    pub password: Option<EnvValue>,
    pub env: BTreeMap<String, EnvValue>,
    pub command: Option<Vec<String>>,
    pub publish: Option<SocketAddr>,
    pub memory_limit: Option<u64>,
    pub cpus: Option<f64>,
    pub shm_size: Option<u64>,
    pub health: HealthCheck,
}

impl DatabaseConfig {
    /// Every mount: the data volume first.
    pub fn mounts(&self) -> Vec<Mount> {
        let mut mounts = vec![Mount::Volume {
            name: self.volume.clone(),
            target: self.engine.data_dir().to_string(),
            read_only: false,
        }];
        mounts.extend(self.volumes.iter().cloned());
        mounts
    }

    /// The container's environment: the engine's credential variables, then `env` (which
    /// wins).
    pub fn container_env(&self) -> BTreeMap<String, EnvValue> {
        let mut env = BTreeMap::new();
        let user = self.user.clone().unwrap_or_default();
        let db = self.database.clone().unwrap_or_default();
        let mut put = |k: &str, v: EnvValue| {
            env.insert(k.to_string(), v);
        };
        match self.engine {
            Engine::Postgres => {
                put("POSTGRES_USER", EnvValue::literal(&user));
                put("POSTGRES_DB", EnvValue::literal(&db));
                if let Some(p) = &self.password {
                    put("POSTGRES_PASSWORD", p.clone());
                }
            }
            Engine::Mysql => {
                put("MYSQL_USER", EnvValue::literal(&user));
                put("MYSQL_DATABASE", EnvValue::literal(&db));
                put("MYSQL_RANDOM_ROOT_PASSWORD", EnvValue::literal("yes"));
                if let Some(p) = &self.password {
                    put("MYSQL_PASSWORD", p.clone());
                }
            }
            Engine::Mariadb => {
                put("MARIADB_USER", EnvValue::literal(&user));
                put("MARIADB_DATABASE", EnvValue::literal(&db));
                put("MARIADB_RANDOM_ROOT_PASSWORD", EnvValue::literal("yes"));
                if let Some(p) = &self.password {
                    put("MARIADB_PASSWORD", p.clone());
                }
            }
            Engine::Mongodb => {
                put("MONGO_INITDB_ROOT_USERNAME", EnvValue::literal(&user));
                put("MONGO_INITDB_DATABASE", EnvValue::literal(&db));
                if let Some(p) = &self.password {
                    put("MONGO_INITDB_ROOT_PASSWORD", p.clone());
                }
            }
            Engine::Redis => {}
        }
        for (k, v) in &self.env {
            env.insert(k.clone(), v.clone());
        }
        env
    }

    /// The connection values a service sees: from a container on the app network
    /// (`in_container`), or from a native process through the published address.
    /// `Err` says why a process cannot reach the database.
    pub fn connection(
        &self,
        in_container: bool,
    ) -> Result<BTreeMap<&'static str, EnvValue>, String> {
        let (host, port) = if in_container {
            (self.name.clone(), self.engine.port())
        } else {
            match self.publish {
                Some(addr) if addr.ip().is_unspecified() => ("127.0.0.1".to_string(), addr.port()),
                Some(addr) => (addr.ip().to_string(), addr.port()),
                None => {
                    return Err(format!(
                        "database `{}` is not published on the host, and this service runs as a native process",
                        self.name
                    ))
                }
            }
        };
        let host_part = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let mut values = BTreeMap::new();
        values.insert("host", EnvValue::literal(&host));
        values.insert("port", EnvValue::literal(&port.to_string()));
        let password = self.password.clone();
        let userinfo = match (&self.user, &password) {
            (Some(u), Some(p)) => format!("{}:{}@", escape(u), p.template()),
            (Some(u), None) => format!("{}@", escape(u)),
            (None, Some(p)) => format!(":{}@", p.template()),
            (None, None) => String::new(),
        };
        let path = self
            .database
            .as_ref()
            .map(|d| format!("/{}", escape(d)))
            .unwrap_or_default();
        let url = format!(
            "{}://{userinfo}{}:{port}{path}",
            self.engine.scheme(),
            escape(&host_part)
        );
        values.insert("url", EnvValue::from_template(url));
        if let Some(u) = &self.user {
            values.insert("user", EnvValue::literal(u));
        }
        if let Some(d) = &self.database {
            values.insert("database", EnvValue::literal(d));
        }
        if let Some(p) = password {
            values.insert("password", p);
        }
        Ok(values)
    }
}

/// Escapes `$` for an `EnvValue` template.
fn escape(text: &str) -> String {
    text.replace('$', "$$")
}

/// The connection value names of `${databases.NAME.FIELD}`.
pub(crate) const LINK_FIELDS: &[&str] = &["url", "host", "port", "user", "password", "database"];

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pg() -> DatabaseConfig {
        DatabaseConfig {
            name: "db".into(),
            engine: Engine::Postgres,
            image: "postgres:16".into(),
            pull: PullPolicy::Missing,
            volume: "db-data".into(),
            volumes: vec![],
            user: Some("shop".into()),
            database: Some("shop".into()),
            password: Some(EnvValue::from_template("${secret.DB_PASSWORD}")),
            env: BTreeMap::new(),
            command: None,
            publish: Some("0.0.0.0:5433".parse().unwrap()),
            memory_limit: None,
            cpus: None,
            shm_size: None,
            health: HealthCheck {
                start_period: Duration::ZERO,
                ..HealthCheck::with_command(CommandLine::Shell("pg_isready".into()))
            },
        }
    }

    #[test]
    fn connection_values_keep_the_password_a_secret_reference() {
        let db = pg();
        let inside = db.connection(true).unwrap();
        assert_eq!(
            inside["url"].template(),
            "postgres://shop:${secret.DB_PASSWORD}@db:5432/shop"
        );
        assert!(inside["url"].has_secrets());
        let outside = db.connection(false).unwrap();
        assert_eq!(
            outside["url"].template(),
            "postgres://shop:${secret.DB_PASSWORD}@127.0.0.1:5433/shop"
        );
        let mut unpublished = pg();
        unpublished.publish = None;
        assert!(unpublished
            .connection(false)
            .unwrap_err()
            .contains("not published"));
    }

    #[test]
    fn engine_env_and_mounts() {
        let db = pg();
        let env = db.container_env();
        assert_eq!(env["POSTGRES_USER"].template(), "shop");
        assert_eq!(env["POSTGRES_PASSWORD"].template(), "${secret.DB_PASSWORD}");
        assert_eq!(db.mounts()[0].target(), "/var/lib/postgresql/data");
    }

    #[test]
    fn programs_of_commands() {
        assert_eq!(
            CommandLine::Shell("FOO=1 curl -f http://x".into()).program(),
            Some("curl".into())
        );
        assert_eq!(
            CommandLine::Exec(vec!["pg_isready".into(), "-q".into()]).program(),
            Some("pg_isready".into())
        );
        assert_eq!(
            CommandLine::Shell("echo hi".into()).argv(),
            vec!["/bin/sh", "-c", "echo hi"]
        );
    }
}
