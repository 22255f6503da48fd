//! `dockhand import compose`: turns an existing docker-compose project into a `dockhand.toml`.
//!
//! The compose files are read the way `docker compose` reads them (file discovery, `.env`,
//! interpolation, merging of several files, profiles), then each service is translated into a
//! `[services.NAME]` or, for well-known database images, a `[databases.NAME]` table. Every key
//! that has no dockhand equivalent, and every assumption made, is a [`Note`] in the
//! [`Report`], so nothing is dropped silently. Secret-looking environment values go to the
//! secrets file, never into `dockhand.toml`.
//!
//! [`convert`] does the translation without writing anything; [`import`] also writes the
//! files.

mod convert;
pub mod edge;
mod interpolate;
mod load;
mod output;
mod syntax;
mod value;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use interpolate::{interpolate, Expanded, Vars};
pub use load::{discover, DEFAULT_FILES};
pub use output::import;
pub use value::Value;

/// What to import and where the result goes.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The compose files (`-f`), in merge order; empty: discover them in `dir`.
    pub files: Vec<PathBuf>,
    /// The directory to discover compose files in (usually the current directory).
    pub dir: PathBuf,
    /// `--env-file`: instead of the project's `.env`.
    pub env_file: Option<PathBuf>,
    /// `--profile`, added to those in `COMPOSE_PROFILES`.
    pub profiles: Vec<String>,
    pub output: Output,
    /// Overwrite an existing output file.
    pub force: bool,
    /// The process environment (it wins over `.env`, as with compose).
    pub env: BTreeMap<String, String>,
    /// `--cluster`: the target is a Docker Swarm; a stack's `deploy:` section becomes
    /// `[cluster]` (placement, node label hints) instead of being left out.
    pub cluster: Option<ClusterImport>,
}

/// The servers of a `--cluster` import (`--manager NAME=HOST`, `--worker NAME=HOST`), each
/// written as `[destinations.NAME]`. With no manager, a placeholder the user must edit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterImport {
    /// `(destination name, SSH host)`, in the order given.
    pub managers: Vec<(String, String)>,
    pub workers: Vec<(String, String)>,
}

/// Where the generated file goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Output {
    /// `dockhand.toml` beside the (first) compose file.
    #[default]
    Beside,
    /// This path.
    File(PathBuf),
    /// Printed by the caller; nothing is written (not even the secrets file).
    Stdout,
}

/// The result of a conversion: the file's text, the report, and the secret values that
/// belong in the secrets file (kept out of `Debug` output).
pub struct Conversion {
    pub toml: String,
    pub report: Report,
    secrets: Vec<(String, String)>,
}

impl Conversion {
    /// The names of the secrets the generated file refers to.
    pub fn secret_names(&self) -> Vec<&str> {
        self.secrets.iter().map(|(n, _)| n.as_str()).collect()
    }
}

impl std::fmt::Debug for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversion")
            .field("toml", &self.toml)
            .field("report", &self.report)
            .field("secrets", &self.secret_names())
            .finish()
    }
}

/// What an import did and everything it did not carry over.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The compose files read, in merge order.
    pub sources: Vec<PathBuf>,
    pub app: String,
    /// The file written (none with `--stdout`).
    pub output: Option<PathBuf>,
    /// The secrets file written or appended to (none with `--stdout`, or without secrets).
    pub secrets_file: Option<PathBuf>,
    /// Names of the secrets the generated file uses (never their values).
    pub secrets: Vec<String>,
    /// Compose services that became `[services.NAME]` (by their dockhand name).
    pub services: Vec<String>,
    /// Compose services that became `[databases.NAME]`.
    pub databases: Vec<String>,
    pub notes: Vec<Note>,
    /// What the user still has to do before a deploy (domains, secrets, files), one line each.
    pub todo: Vec<String>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// The compose service it is about (none for top-level keys).
    pub service: Option<String>,
    /// The compose key, e.g. `container_name` or `healthcheck.start_interval`.
    pub key: String,
    pub kind: NoteKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// The key was not carried over.
    NotCarried,
    /// The importer chose something the compose file did not say (a route host, a port).
    Assumed,
    /// Carried over, but something needs the user's attention.
    Warning,
}

impl NoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::NotCarried => "not carried over",
            NoteKind::Assumed => "assumed",
            NoteKind::Warning => "warning",
        }
    }
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("no compose file in {}: looked for {}; name one with -f", dir.display(), DEFAULT_FILES.join(", "))]
    NoComposeFile { dir: PathBuf },
    #[error("compose file {} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", file.display())]
    Yaml {
        file: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    /// A malformed `.env` (or `--env-file`); docker compose refuses it too.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Dotenv {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {at}: {message}", file.display())]
    Interpolation {
        file: PathBuf,
        at: String,
        message: String,
    },
    #[error("{}: {message}", file.display())]
    Invalid { file: PathBuf, message: String },
    #[error("{} already exists; pass --force to overwrite it, or -o to write elsewhere", path.display())]
    OutputExists { path: PathBuf },
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ImportError {
    /// True when the compose project itself is at fault (a usage or configuration error),
    /// false for I/O failures while writing.
    pub fn is_input_error(&self) -> bool {
        !matches!(self, ImportError::Write { .. } | ImportError::Read { .. })
    }
}

/// Reads and translates the compose project without writing anything.
pub fn convert(opts: &ImportOptions) -> Result<Conversion, ImportError> {
    convert::run(opts)
}

impl Report {
    /// The notes as text, grouped by service (top-level notes first), one line each:
    /// `  key: kind: message`.
    pub fn notes_text(&self) -> String {
        let mut groups: Vec<(Option<&str>, Vec<&Note>)> = Vec::new();
        for note in &self.notes {
            let service = note.service.as_deref();
            match groups.iter_mut().find(|(s, _)| *s == service) {
                Some((_, list)) => list.push(note),
                None => groups.push((service, vec![note])),
            }
        }
        groups.sort_by_key(|(s, _)| s.is_some());
        let mut out = String::new();
        for (service, notes) in groups {
            match service {
                Some(s) => out.push_str(&format!("service {s}:\n")),
                None => out.push_str("project:\n"),
            }
            for n in notes {
                out.push_str(&format!(
                    "  {} ({}): {}\n",
                    n.key,
                    n.kind.as_str(),
                    n.message
                ));
            }
        }
        out
    }
}
