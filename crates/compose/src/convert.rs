//! The translation itself: a merged compose project in, a `dockhand.toml` document and a
//! report out. Each service key is either carried over, translated (with an `Assumed` note
//! when the importer had to choose), or listed as not carried over with the reason.
//!
//! This module reads the project and holds what one import accumulates; the work is split by
//! concern: `project` (which services, under which names, the top-level keys), `service`
//! (the key walk of one `[services.NAME]`), `database` (`[databases.NAME]` and references to
//! them), `environment` (env, env_file, secret values), `image`, `ports` (port and route),
//! `volumes` (volumes, file mounts, tmpfs), `health`, `resources` (replicas, restart, limits
//! and the settings services and databases share), `names` and `unsupported` (the keys
//! dockhand has no place for, and why).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod cluster;
mod database;
mod environment;
mod health;
mod image;
mod names;
mod ports;
mod project;
mod proxy;
mod resources;
mod service;
mod unsupported;
mod volumes;

use database::DbInfo;
use environment::SecretValues;
use names::Names;
use volumes::FileSources;

use crate::load::{self, Project};
use crate::syntax::{absolute, normalise, relative_to, same_dir};
use crate::{Conversion, ImportError, ImportOptions, Note, NoteKind, Output, Report};

pub fn run(opts: &ImportOptions) -> Result<Conversion, ImportError> {
    let files = if opts.files.is_empty() {
        load::discover(&opts.dir)?
    } else {
        let mut files = Vec::new();
        for f in &opts.files {
            let path = if f.is_absolute() {
                f.clone()
            } else {
                opts.dir.join(f)
            };
            if !path.is_file() {
                return Err(ImportError::Missing { path });
            }
            files.push(path);
        }
        files
    };
    let project_dir = files[0]
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| opts.dir.clone());

    // Variables: the project's .env (or --env-file), then the process environment on top.
    let mut vars = BTreeMap::new();
    let env_path = match &opts.env_file {
        Some(p) => {
            let p = if p.is_absolute() {
                p.clone()
            } else {
                opts.dir.join(p)
            };
            if !p.is_file() {
                return Err(ImportError::Missing { path: p });
            }
            Some(p)
        }
        None => Some(project_dir.join(".env")).filter(|p| p.is_file()),
    };
    if let Some(p) = &env_path {
        let text = std::fs::read_to_string(p).map_err(|source| ImportError::Read {
            path: p.clone(),
            source,
        })?;
        let parsed = dockhand_dotenv::parse(&text);
        if let Some(e) = parsed.errors.into_iter().next() {
            return Err(ImportError::Dotenv {
                file: p.clone(),
                line: e.line,
                column: e.column,
                message: e.message,
            });
        }
        // A name alone on its line takes the process environment's value, which is added
        // below anyway.
        for entry in parsed.entries {
            if let Some(v) = entry.value {
                vars.insert(entry.name, v);
            }
        }
    }
    for (k, v) in &opts.env {
        vars.insert(k.clone(), v.clone());
    }

    let project = load::load(&files, &vars)?;
    let out_dir = match &opts.output {
        Output::File(p) => {
            let p = if p.is_absolute() {
                p.clone()
            } else {
                opts.dir.join(p)
            };
            p.parent().map(Path::to_path_buf).unwrap_or_default()
        }
        Output::Beside | Output::Stdout => project_dir.clone(),
    };
    let mut profiles: Vec<String> = opts.profiles.clone();
    if let Some(p) = opts.env.get("COMPOSE_PROFILES") {
        profiles.extend(
            p.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    let mut notes = Notes::default();
    let app = project::app_name(&mut notes, &project, &project_dir, opts);
    let mut c = Converter {
        project: &project,
        vars: &vars,
        profiles,
        paths: Paths {
            same_dir: same_dir(&project_dir, &out_dir),
            project_dir: project_dir.clone(),
        },
        app,
        env_name: env_path
            .as_ref()
            .and_then(|p| p.file_name())
            .map_or(".env".into(), |n| n.to_string_lossy().into_owned()),
        first_file: files[0].clone(),
        notes,
        secrets: SecretValues::default(),
        files: FileSources::default(),
        names: Names::default(),
        dbs: Vec::new(),
        edge: proxy::Edge::default(),
        trailer: String::new(),
        one_shots: Vec::new(),
        hooked: std::collections::BTreeMap::new(),
        assumed_hosts: Vec::new(),
        stack: cluster::Stack::new(opts.cluster.clone()),
    };
    let doc = c.document()?;
    let sources = files
        .iter()
        .map(|f| relative_to(f, &project_dir))
        .collect::<Vec<_>>();
    let mut text = String::new();
    text.push_str(&format!(
        "# Generated by `dockhand import compose` from {}.\n",
        sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ")
    ));
    text.push_str("# The import report lists every compose key that was not carried over.\n\n");
    text.push_str(&doc.0.to_string());
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let (cluster_text, cluster_todo) = c.stack.tables();
    text.push_str(&cluster_text);
    text.push_str(&c.trailer);
    let secrets = c.secrets.into_vec();
    let mut todo = cluster_todo;
    if !c.assumed_hosts.is_empty() {
        todo.push(format!(
            "set the route host of {} to your domain (they answer on *.localhost until then)",
            c.assumed_hosts.join(", ")
        ));
    }
    let empty: Vec<&str> = secrets
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(n, _)| n.as_str())
        .collect();
    if !empty.is_empty() {
        todo.push(format!(
            "fill in the secrets {} in the secrets file",
            empty.join(", ")
        ));
    }
    if !c.trailer.is_empty() {
        todo.push("finish or remove the commented-out tasks at the end of dockhand.toml".into());
    }
    let warnings = c
        .notes
        .0
        .iter()
        .filter(|n| n.kind == NoteKind::Warning)
        .count();
    if warnings > 0 {
        todo.push(format!(
            "read the {warnings} warning{} in this report",
            if warnings == 1 { "" } else { "s" }
        ));
    }
    let report = Report {
        sources: files,
        app: c.app.clone(),
        output: None,
        secrets_file: None,
        secrets: secrets.iter().map(|(n, _)| n.clone()).collect(),
        services: doc.1,
        databases: doc.2,
        notes: c.notes.into_vec(),
        todo,
    };
    Ok(Conversion {
        toml: text,
        report,
        secrets,
    })
}

/// One import in progress: the project as loaded (read only), and what the walk over it
/// collects — notes, secret values, the top-level file sources, the dockhand names and the
/// databases found. The concern modules take the parts they need; only the orchestration
/// (`project`, `service`, `database`, `environment`) works on the whole.
struct Converter<'a> {
    project: &'a Project,
    vars: &'a BTreeMap<String, String>,
    profiles: Vec<String>,
    paths: Paths,
    app: String,
    /// The name of the variables file, for notes about unset variables.
    env_name: String,
    first_file: PathBuf,
    notes: Notes,
    secrets: SecretValues,
    files: FileSources,
    names: Names,
    /// The databases found, for `${databases.NAME.*}` references in service env.
    dbs: Vec<DbInfo>,
    /// The proxy layer: routes of the services behind it, redirects, `[proxy]` settings.
    edge: proxy::Edge,
    /// Text appended after the document (commented-out tables the user must finish).
    trailer: String,
    /// Compose one-shot services (tasks, or pre_deploy hooks).
    one_shots: Vec<String>,
    /// One-shots another service waits for with `service_completed_successfully` that run in
    /// an imported service's image: compose name → that service's dockhand name, whose
    /// `pre_deploy` hook they become.
    hooked: std::collections::BTreeMap<String, String>,
    /// Services routed on an assumed `*.localhost` host.
    assumed_hosts: Vec<String>,
    /// `--cluster`: the nodes, and the placement the `deploy:` sections ask for.
    stack: cluster::Stack,
}

/// The report's notes, in the order the translation made them.
#[derive(Default)]
struct Notes(Vec<Note>);

impl Notes {
    fn add(
        &mut self,
        service: Option<&str>,
        key: &str,
        kind: NoteKind,
        message: impl Into<String>,
    ) {
        self.0.push(Note {
            service: service.map(String::from),
            key: key.to_owned(),
            kind,
            message: message.into(),
        });
    }

    fn into_vec(self) -> Vec<Note> {
        self.0
    }
}

/// Where the project is, and whether `dockhand.toml` is written beside the compose file.
struct Paths {
    project_dir: PathBuf,
    same_dir: bool,
}

impl Paths {
    /// A path from the compose file, as dockhand.toml must write it: relative when it is
    /// written beside the compose file, else absolute.
    fn rebase(&self, path: &str) -> String {
        if path.starts_with('/') {
            return path.to_owned();
        }
        if self.same_dir {
            if path.starts_with("./") || path.starts_with("../") || path == "." {
                path.to_owned()
            } else {
                format!("./{path}")
            }
        } else {
            let abs = normalise(&absolute(&self.project_dir).join(path));
            abs.display().to_string()
        }
    }
}
