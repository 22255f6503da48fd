//! The typed, fully resolved configuration: defaults applied, variables interpolated, paths
//! absolute. `AppConfig` is stored in the state database as JSON with each release, so it
//! never holds a secret value: `${secret.NAME}` references stay in `EnvValue` templates and
//! are only substituted by [`ServiceConfig::resolved_env`] when a process is started.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::acme::{AcmeSettings, ChallengeKind, Hsts};
use crate::secrets::{Secrets, SecretsError};
pub use crate::static_site::{StaticCache, StaticConfig, StaticSource};

pub use crate::container::{
    BuildConfig, BuildOn, CommandLine, ContainerConfig, DatabaseConfig, Engine, Mount, PullPolicy,
    Ulimit,
};

/// A whole `dockhand.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppConfig {
    pub app: String,
    pub project_dir: PathBuf,
    pub config_path: PathBuf,
    pub secrets_file: PathBuf,
    pub proxy: ProxySettings,
    pub services: BTreeMap<String, ServiceConfig>,
    /// Long-lived database and cache containers (`[databases.NAME]`).
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// The `[backups]` table, when there is one.
    #[serde(default)]
    pub backups: Option<BackupsConfig>,
    /// `[tasks.NAME]`: once, scheduled and on-demand commands.
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskConfig>,
    /// `[update]`: follow a git branch.
    #[serde(default)]
    pub update: Option<UpdateConfig>,
    /// Each release runs its process services from its own copy of the project.
    #[serde(default)]
    pub pin_code: bool,
    /// `[monitor]` (defaults without the table).
    #[serde(default)]
    pub monitor: crate::monitor::MonitorConfig,
    /// `[alerts]` (defaults without the table).
    #[serde(default)]
    pub alerts: crate::monitor::AlertsConfig,
    /// `[cluster]`: the app runs on a Docker Swarm of these servers.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// `[deploy]`: all at once, or a canary (defaults without the table).
    #[serde(default)]
    pub deploy: crate::deploy::DeploySettings,
    /// `[dashboard]` (on, on loopback, without the table).
    #[serde(default)]
    pub dashboard: crate::dashboard::DashboardConfig,
    /// `[secrets]`: secrets fetched from a password manager's CLI, by name.
    #[serde(default)]
    pub secret_sources: BTreeMap<String, crate::secret_sources::SecretSource>,
    /// `[[redirects]]`: answered by the proxy before routing.
    #[serde(default)]
    pub redirects: Vec<RedirectConfig>,
}

/// One `[[redirects]]` entry: `{ from = "www.example.org", to = "https://example.org" }` or
/// a prefix move `{ from = "example.org/old", to = "https://example.org/new", code = 308 }`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RedirectConfig {
    /// Lowercase host without port.
    pub from_host: String,
    /// Path prefix (`/`: the whole host), without trailing `/`.
    pub from_path: String,
    /// An absolute `http://` or `https://` URL.
    pub to: String,
    /// 301 (default), 302, 307 or 308.
    pub code: u16,
    /// Keep the rest of the path and the query (default true).
    pub keep_path: bool,
}

/// The `[update]` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpdateConfig {
    /// The repository (URL or path); `None`: the project's `origin`.
    pub repo: Option<String>,
    pub branch: String,
    /// Poll every this long (`None` with a `schedule`).
    pub poll: Option<Duration>,
    /// Poll at the times of a cron expression (server time zone).
    pub schedule: Option<String>,
    /// Back up before deploying a new revision.
    pub backup: bool,
    /// A push webhook served by the proxy (GitHub, GitLab, Gitea), triggering a check.
    #[serde(default)]
    pub webhook: Option<crate::update::WebhookConfig>,
    /// When automatic updates may deploy (`None`: any time).
    #[serde(default)]
    pub window: Option<crate::update::Window>,
    /// Whether a git branch is followed (`[update] git`; without it, only images are).
    #[serde(default = "crate::update::yes")]
    pub follow_git: bool,
    /// Watch the tags of `image` services: a new image id behind a tag deploys it.
    #[serde(default)]
    pub images: bool,
}

impl AppConfig {
    /// The services that run something (not static sites).
    pub fn running_services(&self) -> impl Iterator<Item = &ServiceConfig> {
        self.services.values().filter(|s| s.static_site.is_none())
    }

    /// The services that listen on a port (and so can be health-checked and routed to).
    pub fn web_services(&self) -> impl Iterator<Item = &ServiceConfig> {
        self.services.values().filter(|s| s.port.is_some())
    }

    /// Whether anything of the app runs in a container (and so needs the Docker Engine).
    pub fn uses_containers(&self) -> bool {
        !self.databases.is_empty() || self.services.values().any(|s| s.container.is_some())
    }

    /// The Docker network of the app's containers.
    pub fn network(&self) -> String {
        format!("dockhand-{}", self.app)
    }
}

/// One `[tasks.NAME]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskConfig {
    pub name: String,
    /// The service whose environment, working directory (or image) the task runs in.
    pub service: String,
    /// Run through `/bin/sh -c`.
    pub command: String,
    pub when: TaskWhen,
    /// The longest one attempt may take.
    pub timeout: Duration,
    /// Further attempts after a failed one.
    pub retries: u32,
    pub overlap: Overlap,
}

/// When a task runs by itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskWhen {
    /// Once per app, after the first successful deploy (again only with `run --force`).
    Once,
    /// At the times of a cron expression, in the server's time zone.
    Schedule(String),
    /// Only on demand (`dockhand run NAME`).
    Manual,
}

/// What happens to a run that falls due while the task runs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Refused (on demand) or skipped and recorded (scheduled).
    Skip,
    /// Runs beside the other.
    Allow,
}

/// The `[backups]` table, its sources resolved: what it names is what is backed up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupsConfig {
    /// Cron expression (server time zone) of the backups; `None`: only on demand.
    pub schedule: Option<String>,
    /// Cron expression of the restore drills; `None`: only on demand.
    pub verify: Option<String>,
    /// age X25519 recipients (`age1…`).
    pub recipients: Vec<String>,
    /// Instead of recipients: a passphrase (a `${secret.…}` template).
    pub passphrase: Option<EnvValue>,
    /// An age identity file on this server, which lets it run restore drills.
    pub identity: Option<PathBuf>,
    pub keep: BackupKeep,
    /// The databases backed up (by name).
    pub databases: Vec<String>,
    /// The services' named volumes backed up (short names).
    pub volumes: Vec<String>,
    /// SQLite files of process services, by source name.
    pub sqlite: BTreeMap<String, PathBuf>,
    /// Host directories, by source name.
    pub directories: BTreeMap<String, PathBuf>,
    /// Whether the app itself (dockhand.toml, .env, the secrets file) is backed up.
    pub app: bool,
    pub targets: Vec<BackupTarget>,
    /// An image with `sh` and `tar`, for the volume helper containers.
    pub helper_image: String,
    /// The longest one source's dump or restore may take.
    pub timeout: Duration,
    /// PostgreSQL databases with point-in-time recovery: their WAL is archived continuously
    /// and each backup takes a base backup of them (`pg_basebackup`).
    pub pitr: Vec<String>,
    /// PostgreSQL's `archive_timeout` for them: the longest a written change waits before
    /// its WAL segment is archived (the recovery point objective).
    pub archive_timeout: Duration,
}

/// `keep = { last, hourly, daily, weekly, monthly, yearly }`; all zero keeps everything.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupKeep {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
}

/// One `[backups.targets.NAME]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupTarget {
    pub name: String,
    pub kind: BackupTargetKind,
}

/// A local directory or S3-compatible storage; credentials stay `${secret.…}` templates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum BackupTargetKind {
    Local {
        dir: PathBuf,
    },
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: String,
        access_key_id: Option<EnvValue>,
        secret_access_key: Option<EnvValue>,
        path_style: bool,
        retries: u32,
        timeout: Duration,
    },
}

impl BackupsConfig {
    /// Whether any value refers to a secret.
    pub fn has_secrets(&self) -> bool {
        self.passphrase.is_some()
            || self.targets.iter().any(|t| match &t.kind {
                BackupTargetKind::S3 {
                    access_key_id,
                    secret_access_key,
                    ..
                } => [access_key_id, secret_access_key]
                    .iter()
                    .any(|v| v.as_ref().is_some_and(|v| v.has_secrets())),
                BackupTargetKind::Local { .. } => false,
            })
    }
}

/// The `[proxy]` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProxySettings {
    pub listen: SocketAddr,
    pub workers: Option<usize>,
    pub max_request_body: u64,
    pub client_header_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
    pub drain_timeout: Duration,
    /// Where the HTTPS listener binds; `None`: no HTTPS.
    #[serde(default)]
    pub https_listen: Option<SocketAddr>,
    /// Certificates from files, in file order (the first is the default one).
    #[serde(default)]
    pub certificates: Vec<CertificateFiles>,
    /// Redirect plain HTTP to HTTPS for hosts with a certificate (routes may override).
    #[serde(default = "yes")]
    pub https_redirect: bool,
    /// HSTS on HTTPS responses of hosts with a certificate (routes may override).
    #[serde(default = "default_hsts")]
    pub hsts: Hsts,
    /// Automatic certificates (`[proxy.acme]`).
    #[serde(default)]
    pub acme: AcmeSettings,
    /// Compression of text responses of at least this many bytes (`None`: off).
    #[serde(default = "default_compression")]
    pub compression: Option<u64>,
    /// Peers (ranges) whose `X-Forwarded-For` names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// `X-Content-Type-Options`, `Referrer-Policy` and `X-Frame-Options` on every response
    /// that lacks them (routes may override).
    #[serde(default = "yes")]
    pub security_headers: bool,
    /// The HTML page answered during maintenance mode (absolute).
    #[serde(default)]
    pub maintenance_page: Option<PathBuf>,
    /// One line per request (`None`: off, the default).
    #[serde(default)]
    pub access_log: Option<AccessLogSettings>,
    /// HTML pages (absolute paths) for the proxy's own 502, 503 and 504 answers.
    #[serde(default)]
    pub error_pages: BTreeMap<u16, PathBuf>,
}

/// `[proxy] access_log = true` or `{ format, output, max_size, keep }`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessLogSettings {
    /// `json` (JSON lines) or `combined`.
    pub format: String,
    /// `file` (the state directory's `logs/access.log`, rotated) or `stdout`.
    pub output: String,
    pub max_size: u64,
    pub keep: u32,
}

impl Default for AccessLogSettings {
    fn default() -> AccessLogSettings {
        AccessLogSettings {
            format: "json".into(),
            output: "file".into(),
            max_size: 100 * 1000 * 1000,
            keep: 5,
        }
    }
}

/// The smallest response compressed by default.
pub const DEFAULT_COMPRESS_MIN: u64 = 1024;

fn default_compression() -> Option<u64> {
    Some(DEFAULT_COMPRESS_MIN)
}

fn yes() -> bool {
    true
}

fn default_hsts() -> Hsts {
    Hsts::MaxAge(crate::acme::DEFAULT_HSTS)
}

/// One `{ cert = "…", key = "…" }` of `[proxy] certificates`: absolute paths of a PEM
/// certificate chain and its PEM private key (read with [`crate::load_certificate`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for ProxySettings {
    fn default() -> ProxySettings {
        ProxySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: None,
            max_request_body: 10 * 1024 * 1024,
            client_header_timeout: Duration::from_secs(10),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            https_listen: None,
            certificates: Vec::new(),
            https_redirect: true,
            hsts: default_hsts(),
            acme: AcmeSettings::default(),
            compression: default_compression(),
            trusted_proxies: Vec::new(),
            security_headers: true,
            maintenance_page: None,
            access_log: None,
            error_pages: BTreeMap::new(),
        }
    }
}

/// One `[services.<name>]` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    pub command: String,
    pub workdir: PathBuf,
    pub port: Option<u16>,
    pub env: BTreeMap<String, EnvValue>,
    pub health: Option<HealthCheck>,
    /// Where the proxy sends requests to this service (`route = { … }` or
    /// `route = [{ … }, { … }]`); empty: not routed.
    #[serde(default, alias = "route", deserialize_with = "one_or_many_routes")]
    pub routes: Vec<Route>,
    pub replicas: u32,
    pub restart: RestartPolicy,
    pub memory_limit: Option<u64>,
    pub stop_timeout: Duration,
    pub hooks: Hooks,
    /// `Some` for a service that runs as a container (`image` or `build`).
    #[serde(default)]
    pub container: Option<ContainerConfig>,
    /// Services and databases started before this one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// The dependencies (among `depends_on`) that must pass their gate before this service
    /// starts (`{ service = "api", condition = "healthy" }`); the others only start first.
    #[serde(default)]
    pub healthy_first: Vec<String>,
    /// `Some` for a static service: files the proxy serves itself (nothing runs; from a
    /// directory, or from `container`'s image when it has one).
    #[serde(default)]
    pub static_site: Option<StaticConfig>,
}

impl ServiceConfig {
    /// The environment of the service with every `${secret.NAME}` substituted.
    pub fn resolved_env(
        &self,
        secrets: &Secrets,
    ) -> Result<BTreeMap<String, String>, SecretsError> {
        self.env
            .iter()
            .map(|(name, value)| Ok((name.clone(), value.resolve(secrets)?)))
            .collect()
    }

    /// The names of the secrets the service's environment (and its routes' basic auth)
    /// refer to.
    pub fn secret_names(&self) -> BTreeSet<String> {
        self.env
            .values()
            .chain(
                self.routes
                    .iter()
                    .filter_map(|r| r.basic_auth.as_ref().map(|a| &a.users)),
            )
            .flat_map(|value| value.secret_names())
            .collect()
    }

    /// What to show for the service's command: the process command, or the container's
    /// image and command.
    pub fn describe(&self) -> String {
        match &self.container {
            None => self.command.clone(),
            Some(c) => match &c.command {
                Some(cmd) => format!("{} {}", c.image, cmd.join(" ")),
                None => c.image.clone(),
            },
        }
    }
}

/// An environment value after interpolation, as a template: `${secret.NAME}` stands for a
/// secret and `$$` for a literal `$` (so a `$` that came from a variable or from `$$` in the
/// file can never be mistaken for a secret reference). Every other character is literal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct EnvValue(String);

impl EnvValue {
    /// Wraps a template (see the type's documentation for its syntax).
    pub fn from_template(template: impl Into<String>) -> EnvValue {
        EnvValue(template.into())
    }

    /// A value with no secret in it; any `$` is escaped.
    pub fn literal(value: &str) -> EnvValue {
        EnvValue(value.replace('$', "$$"))
    }

    /// The template text, with secret references unresolved.
    pub fn template(&self) -> &str {
        &self.0
    }

    /// Whether the value refers to any secret.
    pub fn has_secrets(&self) -> bool {
        !self.secret_names().is_empty()
    }

    /// The names of the secrets referred to, in order.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let _ = render(&self.0, |name| {
            names.push(name.to_string());
            Some("")
        });
        names
    }

    /// The final value, with secrets substituted from `secrets`.
    pub fn resolve(&self, secrets: &Secrets) -> Result<String, SecretsError> {
        render(&self.0, |name| secrets.get(name)).map_err(|name| SecretsError::Missing {
            name,
            path: secrets.path().to_path_buf(),
        })
    }
}

/// Expands a template, asking `secret` for each secret; fails with the first unknown name.
fn render<'s>(
    template: &str,
    mut secret: impl FnMut(&str) -> Option<&'s str>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some((name, after)) = rest
            .strip_prefix("${secret.")
            .and_then(|r| r.split_once('}'))
        {
            out.push_str(secret(name).ok_or_else(|| name.to_string())?);
            rest = after;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A service's `health` table: an HTTP GET to each instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub expected_status: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub deploy_timeout: Duration,
    /// A command instead of the HTTP GET of `path` (which is then empty): exit 0 is healthy.
    #[serde(default)]
    pub command: Option<CommandLine>,
    /// Failures this soon after an instance starts do not count.
    #[serde(default)]
    pub start_period: Duration,
}

impl HealthCheck {
    /// The defaults for a check of `path`.
    pub fn with_path(path: impl Into<String>) -> HealthCheck {
        HealthCheck {
            path: path.into(),
            expected_status: 200,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
            deploy_timeout: Duration::from_secs(60),
            command: None,
            start_period: Duration::ZERO,
        }
    }

    /// The defaults for a check by `command`.
    pub fn with_command(command: CommandLine) -> HealthCheck {
        HealthCheck {
            command: Some(command),
            ..HealthCheck::with_path("")
        }
    }
}

/// A service's `route` table: which requests the proxy sends to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Route {
    /// Lowercase host name without a port; `None` matches every host.
    pub host: Option<String>,
    /// Path prefix, starting with `/`, without a trailing `/` unless it is `/` itself.
    pub path: String,
    pub strip_prefix: bool,
    /// Overrides `[proxy] https_redirect` for this route.
    #[serde(default)]
    pub https_redirect: Option<bool>,
    /// Overrides `[proxy] hsts` for this route.
    #[serde(default)]
    pub hsts: Option<Hsts>,
    /// Overrides `[proxy.acme] challenge` for this route's host.
    #[serde(default)]
    pub challenge: Option<Vec<ChallengeKind>>,
    /// Response headers set unless the app sets them.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Overrides `[proxy] security_headers` for this route.
    #[serde(default)]
    pub security_headers: Option<bool>,
    /// Only clients in these ranges (empty: everyone).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Never clients in these ranges.
    #[serde(default)]
    pub deny: Vec<String>,
    /// A token bucket per client.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Ask for a user's credentials.
    #[serde(default)]
    pub basic_auth: Option<BasicAuthConfig>,
    /// Set on the request to the upstream (an empty value removes the header).
    #[serde(default)]
    pub request_headers: BTreeMap<String, String>,
    /// Put in front of the path (after `strip_prefix`); starts with `/`, no trailing `/`.
    #[serde(default)]
    pub add_prefix: Option<String>,
    /// Overrides `[proxy] max_body` for this route.
    #[serde(default)]
    pub max_body: Option<u64>,
    /// Overrides `[proxy] upstream_response_timeout` for this route.
    #[serde(default)]
    pub upstream_response_timeout: Option<Duration>,
}

impl Route {
    /// A route for `path` on `host` with nothing else set.
    pub fn new(host: Option<String>, path: &str) -> Route {
        Route {
            host,
            path: path.to_string(),
            strip_prefix: false,
            https_redirect: None,
            hsts: None,
            challenge: None,
            headers: BTreeMap::new(),
            security_headers: None,
            allow: Vec::new(),
            deny: Vec::new(),
            rate_limit: None,
            basic_auth: None,
            request_headers: BTreeMap::new(),
            add_prefix: None,
            max_body: None,
            upstream_response_timeout: None,
        }
    }

    /// `host` + `path` as written in `dockhand.toml` (`*` for any host).
    pub fn describe(&self) -> String {
        let host = self.host.as_deref().unwrap_or("*");
        if self.path == "/" {
            host.to_string()
        } else {
            format!("{host}{}", self.path)
        }
    }
}

/// `basic_auth = { realm = "Restricted", users = "${secret.NAME}" }`: the secret holds
/// htpasswd lines (`user:hash`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BasicAuthConfig {
    pub realm: String,
    /// A template that is exactly one `${secret.NAME}` (never a literal).
    pub users: EnvValue,
}

/// Release snapshots stored before routes became a list hold `"route": null` or one table.
fn one_or_many_routes<'de, D>(deserializer: D) -> Result<Vec<Route>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<Route>),
        One(Box<Route>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::Many(routes)) => routes,
        Some(OneOrMany::One(route)) => vec![*route],
    })
}

/// `rate_limit = { rate = "10/s", burst = 20 }`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct RateLimitConfig {
    pub per_second: f64,
    pub burst: u32,
}

/// What the supervisor does when a process exits.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// Commands run around a deploy, in the service's working directory and environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Hooks {
    pub pre_deploy: Option<String>,
    pub post_deploy: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_escape_dollars_and_keep_secrets() {
        let value = EnvValue::from_template("a$$b ${secret.X} $${secret.Y} $");
        assert_eq!(value.secret_names(), vec!["X".to_string()]);
        let secrets = Secrets::empty();
        assert!(matches!(
            value.resolve(&secrets),
            Err(SecretsError::Missing { name, .. }) if name == "X"
        ));
        let literal = EnvValue::literal("p$ss");
        assert_eq!(literal.template(), "p$$ss");
        assert_eq!(literal.resolve(&secrets).unwrap(), "p$ss");
        assert_eq!(
            EnvValue::from_template("$${secret.Y}")
                .resolve(&secrets)
                .unwrap(),
            "${secret.Y}"
        );
    }
}
