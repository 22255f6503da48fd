//! A service's environment: `env_file` contents with `environment` on top, pass-through
//! variables taken from the import's variables, and the `env` table written from it —
//! secret-looking values moved to the secrets file as `${secret.NAME}`, database URLs and
//! credentials replaced by `${databases.NAME.…}`, renamed hosts followed, `$` escaped.

use std::collections::BTreeMap;
use std::path::Path;

use toml_edit::{InlineTable, Item};

use super::{Converter, Notes};
use crate::syntax::{escape, small_or_table};
use crate::value::Value;
use crate::NoteKind;

/// Whether an environment variable's name says it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    dockhand_dotenv::looks_secret(name)
}

/// The secret values found, by the name the generated file refers to them with, in the
/// order they were found. They end up in the secrets file and nowhere else.
#[derive(Default)]
pub(super) struct SecretValues(Vec<(String, String)>);

impl SecretValues {
    /// Adds `value` under `preferred` (or a service-prefixed name when that name already
    /// holds another value) and returns the name used.
    pub(super) fn add(&mut self, service: &str, preferred: &str, value: &str) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let mut name = clean(preferred);
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            name.insert(0, '_');
        }
        match self.0.iter().find(|(n, _)| *n == name) {
            Some((_, v)) if v == value => return name,
            Some(_) => {
                name = format!("{}_{name}", clean(service));
                if let Some((_, v)) = self.0.iter().find(|(n, _)| *n == name) {
                    if v == value {
                        return name;
                    }
                }
            }
            None => {}
        }
        self.0.push((name.clone(), value.to_owned()));
        name
    }

    pub(super) fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

/// The environment of service `name`: `env_file` entries, then `environment` on top.
/// Values are `None` for pass-through keys that are unset in `vars`.
pub(super) fn read(
    notes: &mut Notes,
    project_dir: &Path,
    vars: &BTreeMap<String, String>,
    name: &str,
    svc: &Value,
) -> Vec<(String, Option<String>)> {
    let mut env: Vec<(String, Option<String>)> = Vec::new();
    let set = |env: &mut Vec<(String, Option<String>)>, k: String, v: Option<String>| match env
        .iter_mut()
        .find(|(e, _)| *e == k)
    {
        Some(slot) => slot.1 = v,
        None => env.push((k, v)),
    };
    if let Some(files) = svc.get("env_file").and_then(Value::as_seq) {
        for entry in files {
            let (path, required) = match &entry {
                Value::Map(_) => (
                    entry
                        .get("path")
                        .and_then(Value::scalar)
                        .unwrap_or_default(),
                    entry
                        .get("required")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                ),
                other => (other.scalar().unwrap_or_default(), true),
            };
            if let Some(format) = entry.get("format").and_then(Value::scalar) {
                notes.add(
                    Some(name),
                    "env_file.format",
                    NoteKind::NotCarried,
                    format!(
                        "format `{format}` is not supported; the file was read as a dotenv file"
                    ),
                );
            }
            let full = project_dir.join(&path);
            match std::fs::read_to_string(&full) {
                Ok(text) => {
                    let parsed = dockhand_dotenv::parse(&text);
                    if let Some(e) = parsed.errors.first() {
                        notes.add(
                            Some(name),
                            "env_file",
                            NoteKind::Warning,
                            format!("`{path}` line {}, column {}: {} (compose would refuse to start); its variables were not imported", e.line, e.column, e.message),
                        );
                        continue;
                    }
                    for var in parsed.entries {
                        let v = var.value.or_else(|| vars.get(&var.name).cloned());
                        set(&mut env, var.name, v);
                    }
                    notes.add(
                        Some(name),
                        "env_file",
                        NoteKind::Assumed,
                        format!("the variables of `{path}` were copied into env (dockhand has no env_file)"),
                    );
                }
                Err(_) if !required => {}
                Err(_) => notes.add(
                    Some(name),
                    "env_file",
                    NoteKind::Warning,
                    format!("`{path}` does not exist (compose would refuse to start); its variables were not imported"),
                ),
            }
        }
    }
    if let Some(Value::Map(m)) = svc.get("environment") {
        for (k, v) in m.clone() {
            let v = match v {
                Value::Null => vars.get(&k).cloned(),
                other => Some(other.scalar().unwrap_or_default()),
            };
            set(&mut env, k, v);
        }
    }
    env
}

impl Converter<'_> {
    /// The environment of service `name` (see [`read`]), with its notes in the report.
    pub(super) fn environment(&mut self, name: &str, svc: &Value) -> Vec<(String, Option<String>)> {
        read(
            &mut self.notes,
            &self.paths.project_dir,
            self.vars,
            name,
            svc,
        )
    }

    /// Writes `env` into an env table (secrets moved out, `$` escaped).
    pub(super) fn env_table(
        &mut self,
        name: &str,
        env: Vec<(String, Option<String>)>,
    ) -> Option<Item> {
        if env.is_empty() {
            return None;
        }
        let mut table = InlineTable::new();
        let mut passthrough = Vec::new();
        let mut empty_secrets = Vec::new();
        for (k, v) in env {
            if let Some(reference) = self.database_reference(name, &k, v.as_deref()) {
                table.insert(&k, reference.into());
                continue;
            }
            let secret = looks_secret(&k) || v.as_deref().is_some_and(has_url_password);
            let text = match (v, secret) {
                (Some(v), true) => {
                    if v.is_empty() {
                        empty_secrets.push(k.clone());
                    }
                    let v = self.names.rename_hosts(&v);
                    let s = self.secrets.add(name, &k, &v);
                    format!("${{secret.{s}}}")
                }
                (None, true) => {
                    empty_secrets.push(k.clone());
                    let s = self.secrets.add(name, &k, "");
                    format!("${{secret.{s}}}")
                }
                (Some(v), false) => escape(&self.names.rename_hosts(&v)),
                (None, false) => {
                    passthrough.push(k.clone());
                    format!("${{{k}:-}}")
                }
            };
            table.insert(&k, text.into());
        }
        if !passthrough.is_empty() {
            self.notes.add(
                Some(name),
                "environment",
                NoteKind::Assumed,
                format!(
                    "pass-through variables not set now, written as `${{NAME:-}}` so dockhand takes them from its environment or .env at deploy time: {}",
                    passthrough.join(", ")
                ),
            );
        }
        if !empty_secrets.is_empty() {
            self.notes.add(
                Some(name),
                "environment",
                NoteKind::Warning,
                format!(
                    "secret-looking variables with no value; fill them in the secrets file: {}",
                    empty_secrets.join(", ")
                ),
            );
        }
        Some(small_or_table(table))
    }
}

/// Whether a value is a URL with a password in it (`scheme://user:password@host`).
fn has_url_password(value: &str) -> bool {
    let Some((_, rest)) = value.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => userinfo.split_once(':').is_some_and(|(_, p)| !p.is_empty()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in [
            "DB_PASSWORD",
            "SECRET_KEY_BASE",
            "API_TOKEN",
            "SMTP_USER_PWD",
            "AWS_CREDENTIALS",
            "MAILGUN_API_KEY",
        ] {
            assert!(looks_secret(n), "{n}");
        }
        for n in [
            "DATABASE_HOST",
            "POSTGRES_PASSWORD_FILE",
            "PORT",
            "BASE_URL",
        ] {
            assert!(!looks_secret(n), "{n}");
        }
        assert!(has_url_password("postgresql://u:p@db:5432/x"));
        assert!(!has_url_password("redis://broker:6379"));
        assert!(!has_url_password("postgres://user@db/x"));
    }
}
