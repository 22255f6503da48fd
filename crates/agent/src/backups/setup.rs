//! What one backup operation works from: the serving release's `[backups]` table turned into
//! the backup crate's terms — the encryption, the opened targets (credentials resolved from
//! the secrets file), the sources with their containers, and where each restores to.

use std::collections::BTreeMap;
use std::sync::Arc;

use dockhand_backup::crypto::SecretString;
use dockhand_backup::crypto::{parse_recipient, Decryption, Encryption};
use dockhand_backup::manifest::{Item, SourceKind};
use dockhand_backup::restore::Destination;
use dockhand_backup::run::Source;
use dockhand_backup::sources::files::AppFile;
use dockhand_backup::sources::mariadb::Flavor;
use dockhand_backup::sources::postgres::Conn;
use dockhand_backup::sources::Docker;
use dockhand_backup::target::{Target, TargetSpec};
use dockhand_config::{AppConfig, BackupTargetKind, BackupsConfig, Engine, Secrets};
use dockhand_runtime::ContainerRuntime;

use crate::error::{AgentError, Result};
use crate::events::Events;
use crate::layout::StateLayout;
use crate::runtimes::Runtimes;

pub(super) struct Setup {
    pub config: Arc<AppConfig>,
    pub secrets: Secrets,
    pub encryption: Encryption,
    pub targets: Vec<Target>,
}

fn usage(e: impl std::fmt::Display) -> AgentError {
    AgentError::usage(e.to_string())
}

impl Setup {
    pub fn new(config: Arc<AppConfig>, events: &Events, _layout: &StateLayout) -> Result<Setup> {
        let Some(b) = config.backups.as_ref() else {
            return Err(AgentError::usage(
                "no backups are configured: add a [backups] table to dockhand.toml (see docs/configuration.md) and deploy",
            ));
        };
        let secrets = crate::secrets::load(&config, events.redactor())?;
        let encryption = match &b.passphrase {
            Some(p) => Encryption::Passphrase(SecretString::from(
                p.resolve(&secrets)
                    .map_err(|e| AgentError::runtime(e.to_string()))?,
            )),
            None => Encryption::Recipients(
                b.recipients
                    .iter()
                    .map(|r| parse_recipient(r).map_err(usage))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let mut targets = Vec::new();
        for t in &b.targets {
            let spec = target_spec(t, &secrets)?;
            targets.push(Target::open(&spec).map_err(|e| AgentError::environment(e.to_string()))?);
        }
        Ok(Setup {
            config,
            secrets,
            encryption,
            targets,
        })
    }

    pub fn backups(&self) -> &BackupsConfig {
        self.config.backups.as_ref().expect("checked in Setup::new")
    }

    /// What decrypts: `--identity FILE`, else `[backups] identity`, else the passphrase.
    pub fn decryption(&self, identity: Option<&str>) -> Result<Decryption> {
        let b = self.backups();
        if let Some(path) = identity
            .map(std::path::PathBuf::from)
            .or_else(|| b.identity.clone())
        {
            return Decryption::from_identity_file(&path).map_err(usage);
        }
        match &b.passphrase {
            Some(p) => Ok(Decryption::Passphrase(SecretString::from(
                p.resolve(&self.secrets).map_err(|e| AgentError::runtime(e.to_string()))?,
            ))),
            None => Err(AgentError::usage(
                "decrypting a backup needs its identity: pass `--identity FILE`, or set `identity` in [backups] so this server can run restore drills",
            )),
        }
    }

    /// The Docker Engine, when a source needs it.
    pub async fn docker_runtime(&self, runtimes: &Runtimes) -> Result<Option<ContainerRuntime>> {
        let b = self.backups();
        if b.databases.is_empty() && b.volumes.is_empty() {
            return Ok(None);
        }
        Ok(Some(runtimes.containers().await?))
    }

    pub fn docker<'a>(&'a self, rt: &'a ContainerRuntime) -> Docker<'a> {
        let b = self.backups();
        Docker {
            rt,
            app: &self.config.app,
            network: "",
            helper_image: &b.helper_image,
            timeout: b.timeout,
        }
    }

    /// The sources to back up (all, or the one named).
    pub async fn sources(
        &self,
        rt: Option<&ContainerRuntime>,
        only: Option<&str>,
    ) -> Result<Vec<Source>> {
        let b = self.backups();
        let mut out = Vec::new();
        for name in &b.databases {
            let db = &self.config.databases[name];
            let container = match rt {
                Some(rt) => rt
                    .find_database(&self.config.app, name)
                    .await?
                    .map(|c| c.name)
                    .ok_or_else(|| {
                        AgentError::runtime(format!(
                            "database `{name}` has no container: deploy first"
                        ))
                    })?,
                None => continue,
            };
            match db.engine {
                Engine::Postgres => out.push(Source::Postgres {
                    name: name.clone(),
                    conn: self.conn(name, container)?,
                    image: db.image.clone(),
                    base: b.pitr.contains(name),
                }),
                Engine::Mariadb | Engine::Mysql => out.push(Source::Mariadb {
                    name: name.clone(),
                    conn: self.conn(name, container)?,
                    image: db.image.clone(),
                    flavor: if db.engine == Engine::Mysql {
                        Flavor::Mysql
                    } else {
                        Flavor::Mariadb
                    },
                }),
                Engine::Mongodb => out.push(Source::Mongodb {
                    name: name.clone(),
                    conn: self.conn(name, container)?,
                    image: db.image.clone(),
                }),
                Engine::Redis => out.push(Source::Redis {
                    name: name.clone(),
                    container,
                    image: db.image.clone(),
                }),
            }
        }
        for v in &b.volumes {
            out.push(Source::Volume { name: v.clone() });
        }
        for (name, path) in &b.sqlite {
            out.push(Source::Sqlite {
                name: name.clone(),
                path: path.clone(),
            });
        }
        for (name, path) in &b.directories {
            out.push(Source::Directory {
                name: name.clone(),
                path: path.clone(),
            });
        }
        if b.app {
            out.push(Source::App {
                files: self.app_files(),
            });
        }
        if let Some(only) = only {
            let known: Vec<String> = out.iter().map(|s| s.name().to_string()).collect();
            out.retain(|s| s.name() == only);
            if out.is_empty() {
                return Err(AgentError::not_found(format!(
                    "no backup source `{only}`; the sources are {}",
                    known.join(", ")
                )));
            }
        }
        Ok(out)
    }

    pub fn conn(&self, name: &str, container: String) -> Result<Conn> {
        let db = &self.config.databases[name];
        let password = match &db.password {
            Some(p) => p
                .resolve(&self.secrets)
                .map_err(|e| AgentError::runtime(e.to_string()))?,
            None => String::new(),
        };
        Ok(Conn {
            container,
            host: name.to_string(),
            user: db.user.clone().unwrap_or_else(|| "postgres".into()),
            database: db.database.clone().unwrap_or_else(|| "postgres".into()),
            password,
        })
    }

    /// The app's own files, under the names `restore --app` knows.
    pub fn app_files(&self) -> Vec<AppFile> {
        app_places(&self.config)
            .into_iter()
            .map(|(name, path)| AppFile { name, path })
            .collect()
    }

    /// Where an item restores to in this app.
    pub async fn destination(
        &self,
        rt: Option<&ContainerRuntime>,
        item: &Item,
    ) -> Result<Destination> {
        let b = self.backups();
        let name = &item.source;
        let missing = || {
            AgentError::usage(format!("`{name}` is not a backup source of this app any more: restore it by hand (the README shows how)"))
        };
        Ok(match item.kind {
            SourceKind::Postgres
            | SourceKind::PostgresGlobals
            | SourceKind::PostgresBase
            | SourceKind::Redis
            | SourceKind::Mariadb
            | SourceKind::Mysql
            | SourceKind::Mongodb => {
                let rt = rt.ok_or_else(missing)?;
                let container = rt
                    .find_database(&self.config.app, name)
                    .await?
                    .map(|c| c.name)
                    .ok_or_else(|| {
                        AgentError::runtime(format!(
                            "database `{name}` has no container: deploy first"
                        ))
                    })?;
                match item.kind {
                    SourceKind::Redis => Destination::Redis { container },
                    SourceKind::Mariadb | SourceKind::Mysql => {
                        Destination::Mariadb(self.conn(name, container)?)
                    }
                    SourceKind::Mongodb => Destination::Mongodb(self.conn(name, container)?),
                    _ => Destination::Postgres(self.conn(name, container)?),
                }
            }
            SourceKind::Sqlite => Destination::Sqlite {
                path: b.sqlite.get(name).cloned().ok_or_else(missing)?,
            },
            SourceKind::Directory => Destination::Directory {
                path: b.directories.get(name).cloned().ok_or_else(missing)?,
            },
            SourceKind::Volume => Destination::Volume { name: name.clone() },
            SourceKind::App => Destination::App {
                places: app_places(&self.config),
            },
        })
    }
}

/// The app's files by archive name: `dockhand.toml`, `.env`, `secrets.env`.
pub fn app_places(config: &AppConfig) -> BTreeMap<String, std::path::PathBuf> {
    BTreeMap::from([
        ("dockhand.toml".to_string(), config.config_path.clone()),
        (".env".to_string(), config.project_dir.join(".env")),
        ("secrets.env".to_string(), config.secrets_file.clone()),
    ])
}

pub(crate) fn target_spec(
    t: &dockhand_config::BackupTarget,
    secrets: &Secrets,
) -> Result<TargetSpec> {
    let resolve = |v: &Option<dockhand_config::EnvValue>| -> Result<Option<String>> {
        v.as_ref()
            .map(|v| {
                v.resolve(secrets)
                    .map_err(|e| AgentError::runtime(e.to_string()))
            })
            .transpose()
    };
    Ok(match &t.kind {
        BackupTargetKind::Local { dir } => TargetSpec::Local {
            name: t.name.clone(),
            dir: dir.clone(),
        },
        BackupTargetKind::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            path_style,
            retries,
            timeout,
        } => TargetSpec::S3 {
            name: t.name.clone(),
            bucket: bucket.clone(),
            prefix: prefix.clone(),
            endpoint: endpoint.clone(),
            region: region.clone(),
            access_key_id: resolve(access_key_id)?,
            secret_access_key: resolve(secret_access_key)?,
            path_style: *path_style,
            retries: *retries as usize,
            timeout: *timeout,
        },
    })
}
