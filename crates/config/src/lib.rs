//! `dockhand_config` reads `dockhand.toml` into a typed, fully resolved [`AppConfig`]:
//! variables interpolated from the process environment and the project's `.env`, defaults
//! applied, paths made absolute, and every problem reported as a [`Diagnostic`] pointing at
//! file, line and column. Secrets (`${secret.NAME}`) are checked against the secrets file
//! but never copied into the config; [`ServiceConfig::resolved_env`] substitutes them when a
//! process is started. The only I/O is reading the config, `.env`, secrets and TLS
//! certificate files (and checking that working directories exist).

mod acme;
mod backups;
mod certs;
mod cluster;
mod container;
mod container_keys;
mod cron;
mod dashboard;
mod database;
mod deploy;
mod destinations;
mod diagnostic;
mod dockerfile;
mod dotenv;
mod edge;
mod https;
mod interpolate;
mod model;
mod monitor;
mod parse;
mod placeholder;
mod secret_sources;
mod secrets;
mod secrets_edit;
mod service;
mod static_site;
mod tasks;
mod units;
mod update;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use acme::{
    host_kind, AcmeSettings, ChallengeKind, DnsProvider, DnsSettings, ExternalAccount, HostKind,
    Hsts, CLOUDFLARE_API, DEFAULT_HSTS, LETSENCRYPT, LETSENCRYPT_STAGING, ZEROSSL,
};
pub use certs::{covers, load_certificate, CertificateError, CertificateFile, LoadedCertificate};
pub use cluster::{
    constraint_problem, declares_cluster, label_problem, ClusterConfig, ClusterEngine, ClusterNode,
    NodeRole,
};
pub use cron::parse_cron;
pub use dashboard::{DashboardConfig, DashboardRoute};
pub use deploy::{parse_share, share_text, CanaryConfig, DeploySettings, Strategy};
pub use destinations::DestinationConfig;
pub use diagnostic::{Diagnostic, Severity};
pub use dockerfile::stages as dockerfile_stages;
pub use model::{
    AccessLogSettings, AppConfig, BackupKeep, BackupTarget, BackupTargetKind, BackupsConfig,
    BasicAuthConfig, BuildConfig, BuildOn, CertificateFiles, CommandLine, ContainerConfig,
    DatabaseConfig, Engine, EnvValue, HealthCheck, Hooks, Mount, Overlap, ProxySettings,
    PullPolicy, RateLimitConfig, RedirectConfig, RestartPolicy, Route, ServiceConfig, StaticCache,
    StaticConfig, StaticSource, TaskConfig, TaskWhen, Ulimit, UpdateConfig,
};
pub use monitor::{
    AlertsConfig, Channel, CheckConfig, CheckProbe, MetricsRoute, MonitorConfig, RuleOverride,
    SmtpConfig, SmtpSecurity, WatchConfig, RULE_NAMES,
};
pub use placeholder::placeholder;
pub use secret_sources::{SecretSource, SecretTool};
pub use secrets::{Secrets, SecretsError};
pub use secrets_edit::{read_for_edit, remove_entry, set_entry, valid_secret_name, write_secrets};
pub use tasks::DEFAULT_TASK_TIMEOUT;
pub use update::{parse_weekly, WebhookConfig, Window, DEFAULT_POLL, DEFAULT_WEBHOOK_PATH};

/// Where the secrets file of the project whose configuration is `config_path` is: its
/// top-level `secrets_file` (relative to the project), else `.dockhand/secrets.env`. Reads
/// only that key, so it works while the rest of the file (or the secrets file) is broken.
pub fn secrets_path(config_path: &Path) -> PathBuf {
    let project = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let configured = fs::read_to_string(config_path)
        .ok()
        .and_then(|text| text.parse::<toml_edit::ImDocument<String>>().ok())
        .and_then(|doc| doc.get("secrets_file")?.as_str().map(str::to_string));
    match configured {
        Some(file) => project.join(file),
        None => project.join(".dockhand").join("secrets.env"),
    }
}

use diagnostic::{render_all, SourceMap};
use interpolate::Vars;

/// What loading needs besides the files: a snapshot of the process environment.
#[derive(Clone, Default)]
pub struct LoadOptions {
    pub env: BTreeMap<String, String>,
}

impl LoadOptions {
    /// A snapshot of the current process environment (variables that are not UTF-8 are
    /// skipped).
    pub fn from_process_env() -> Self {
        LoadOptions {
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }
}

impl fmt::Debug for LoadOptions {
    /// Names only: the environment may hold credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A configuration that loaded, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: AppConfig,
    pub warnings: Vec<Diagnostic>,
    /// Where each key is in the file, for checks made after loading.
    pub sites: Sites,
}

/// The position and source line of every known key of a loaded file, so checks made later
/// (`dockhand check`'s preflight) point at `file:line:column` like the parser does.
#[derive(Debug, Clone, Default)]
pub struct Sites {
    file: PathBuf,
    keys: BTreeMap<String, (usize, usize, String)>,
}

impl Sites {
    /// A diagnostic at `key` (a dotted path such as `services.api.volumes`), or at the
    /// nearest enclosing key that is known, or at the top of the file.
    pub fn diagnostic(
        &self,
        severity: Severity,
        key: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        let mut probe = key;
        let found = loop {
            if let Some(site) = self.keys.get(probe) {
                break Some(site);
            }
            match probe.rsplit_once('.') {
                Some((parent, _)) => probe = parent,
                None => break None,
            }
        };
        let (line, column, source_line) = match found {
            Some((l, c, s)) => (*l, *c, Some(s.clone())),
            None => (1, 1, None),
        };
        Diagnostic {
            severity,
            file: self.file.clone(),
            line,
            column,
            key: Some(key.to_string()),
            message: message.into(),
            help,
            source_line,
        }
    }
}

/// A configuration that did not load: every error, and the warnings, in file order.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render_all(&self.diagnostics))]
pub struct ConfigError {
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    /// The diagnostics of severity error.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// Reads and validates the config file at `config_path`.
pub fn load(config_path: &Path, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let config_path = absolute(config_path);
    match fs::read_to_string(&config_path) {
        Ok(text) => load_str(&config_path, &text, opts),
        Err(error) => {
            let help = if error.kind() == io::ErrorKind::NotFound {
                "run dockhand in the project directory, or pass the path of dockhand.toml"
            } else {
                "make the file readable by the user running dockhand"
            };
            Err(ConfigError {
                diagnostics: vec![Diagnostic::whole_file(
                    Severity::Error,
                    &config_path,
                    format!("cannot read config file {}: {error}", config_path.display()),
                )
                .with_help(help)],
            })
        }
    }
}

/// Validates `text` as if it were the content of `config_path`; the `.env` and secrets files
/// are still read relative to the directory of `config_path`.
pub fn load_str(config_path: &Path, text: &str, opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let config_path = absolute(config_path);
    let project_dir = config_path
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let dotenv_path = project_dir.join(".env");
    let mut diagnostics = Vec::new();
    let dotenv = read_dotenv(&dotenv_path, &mut diagnostics);
    let vars = Vars {
        process: &opts.env,
        dotenv: &dotenv,
        dotenv_path: &dotenv_path,
    };
    let map = SourceMap::new(&config_path, text);
    let (config, found, spans) = parse::parse(&map, &vars, &config_path, &project_dir);
    diagnostics.extend(found);
    let sites = Sites {
        file: config_path.clone(),
        keys: spans
            .into_iter()
            .map(|(key, span)| {
                let (line, column) = map.position(span.start);
                (key, (line, column, map.line_text(line).to_string()))
            })
            .collect(),
    };
    diagnostics.sort_by_key(|d| (d.file != config_path, d.line, d.column));
    if diagnostics.iter().any(Diagnostic::is_error) {
        Err(ConfigError { diagnostics })
    } else {
        Ok(Loaded {
            config,
            warnings: diagnostics,
            sites,
        })
    }
}

/// The `[destinations]` of the config file at `config_path`, read without the rest of the
/// file (its secrets and services), with `${VAR}` from the environment and `.env`.
pub fn load_destinations(
    config_path: &Path,
    opts: &LoadOptions,
) -> Result<BTreeMap<String, DestinationConfig>, ConfigError> {
    let config_path = absolute(config_path);
    let text = fs::read_to_string(&config_path).map_err(|error| ConfigError {
        diagnostics: vec![Diagnostic::whole_file(
            Severity::Error,
            &config_path,
            format!("cannot read config file {}: {error}", config_path.display()),
        )
        .with_help("run dockhand in the project directory (where [destinations] are), or use --host ssh://USER@HOST")],
    })?;
    let project_dir = config_path
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let dotenv_path = project_dir.join(".env");
    let mut diagnostics = Vec::new();
    let dotenv = read_dotenv(&dotenv_path, &mut diagnostics);
    let vars = Vars {
        process: &opts.env,
        dotenv: &dotenv,
        dotenv_path: &dotenv_path,
    };
    let map = SourceMap::new(&config_path, &text);
    let (destinations, found) = parse::parse_destinations(&map, &vars, &project_dir);
    diagnostics.extend(found);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(ConfigError { diagnostics });
    }
    Ok(destinations)
}

/// The variables of the project's `.env`; a missing file has none.
fn read_dotenv(path: &Path, diagnostics: &mut Vec<Diagnostic>) -> BTreeMap<String, String> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(error) => {
            diagnostics.push(
                Diagnostic::whole_file(
                    Severity::Error,
                    path,
                    format!("cannot read {}: {error}", path.display()),
                )
                .with_help("make it a readable file, or remove it"),
            );
            return BTreeMap::new();
        }
    };
    match dotenv::parse(&text) {
        Ok(entries) => {
            // Secret values in a file others can read: refused, as for the secrets file.
            let secret: Vec<&str> = entries
                .iter()
                .filter(|(name, value)| !value.is_empty() && dockhand_dotenv::looks_secret(name))
                .map(|(name, _)| name.as_str())
                .collect();
            let mode = fs::metadata(path)
                .ok()
                .and_then(|m| secrets::loose_mode(&m));
            if let (false, Some(mode)) = (secret.is_empty(), mode) {
                diagnostics.push(
                    Diagnostic::whole_file(
                        Severity::Error,
                        path,
                        format!(
                            "{} holds secret-looking values ({}) and other users can read it (mode {mode:04o})",
                            path.display(),
                            secret.join(", ")
                        ),
                    )
                    .with_help(format!(
                        "{}; better, move them to the secrets file with `dockhand secrets set NAME`",
                        secrets::chmod_help(path)
                    )),
                );
            }
            entries.into_iter().collect()
        }
        Err(errors) => {
            for error in errors {
                let mut diagnostic = Diagnostic::whole_file(Severity::Error, path, error.message);
                diagnostic.line = error.line;
                diagnostic.column = error.column;
                diagnostics.push(diagnostic.with_help(
                    "each line must be NAME=value; quote values that contain spaces or `#`",
                ));
            }
            BTreeMap::new()
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
