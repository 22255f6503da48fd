//! Mounts: `volumes` entries (short and long syntax) become dockhand's `source:target[:ro]`
//! with bind sources rebased for where `dockhand.toml` is written; file-based `secrets` and
//! `configs` are mounted read-only from their files; `tmpfs` carries over without options.
//! Anonymous volumes, other volume types and mount options are reported.

use std::collections::BTreeMap;

use toml_edit::{Array, InlineTable, Item};

use super::{Notes, Paths};
use crate::syntax::array_item;
use crate::value::Value;
use crate::NoteKind;

/// The top-level `secrets` and `configs` that name a file: name → file (as written in the
/// compose file).
#[derive(Default)]
pub(super) struct FileSources {
    secrets: BTreeMap<String, String>,
    configs: BTreeMap<String, String>,
}

impl FileSources {
    /// Records the file of top-level `key` (`secrets` or `configs`) entry `name`.
    pub(super) fn insert(&mut self, key: &str, name: &str, file: String) {
        self.of(key).insert(name.to_owned(), file);
    }

    /// The file of the top-level secret `name`.
    pub(super) fn secret(&self, name: &str) -> Option<&str> {
        self.secrets.get(name).map(String::as_str)
    }

    fn get(&self, key: &str, name: &str) -> Option<&str> {
        let files = if key == "secrets" {
            &self.secrets
        } else {
            &self.configs
        };
        files.get(name).map(String::as_str)
    }

    fn of(&mut self, key: &str) -> &mut BTreeMap<String, String> {
        if key == "secrets" {
            &mut self.secrets
        } else {
            &mut self.configs
        }
    }
}

/// The `volumes` array of service `name`: its volumes, then its file-based secrets and
/// configs, then its tmpfs mounts.
pub(super) fn service_volumes(
    notes: &mut Notes,
    paths: &Paths,
    vars: &BTreeMap<String, String>,
    files: &FileSources,
    name: &str,
    svc: &Value,
) -> Option<Item> {
    let mut volumes = Array::new();
    if let Some(list) = svc.get("volumes").and_then(Value::as_seq) {
        for v in list {
            if let Some(item) = volume(notes, paths, vars, name, v) {
                volumes.push_formatted(item);
            }
        }
    }
    for key in ["secrets", "configs"] {
        if let Some(list) = svc.get(key).and_then(Value::as_seq) {
            for s in list {
                if let Some(v) = file_mount(notes, paths, files, name, key, s) {
                    volumes.push(v);
                }
            }
        }
    }
    if let Some(list) = svc.get("tmpfs").and_then(Value::as_seq) {
        for s in list.iter().filter_map(Value::scalar) {
            let (target, opts) = s.split_once(':').unwrap_or((&s, ""));
            let mut it = InlineTable::new();
            it.insert("type", "tmpfs".into());
            it.insert("target", target.into());
            volumes.push(it);
            if !opts.is_empty() {
                notes.add(
                    Some(name),
                    "tmpfs",
                    NoteKind::NotCarried,
                    format!("tmpfs options `{opts}` of {target} are not supported"),
                );
            }
        }
    }
    (!volumes.is_empty()).then(|| array_item(volumes))
}

/// One `volumes` entry of service `name` as dockhand writes it: `source:target[:ro]`, or a
/// `{ type = "tmpfs", target }` table; `None` (with a note) when it cannot be carried over.
/// `~` in a bind source is expanded with `$HOME` from `vars`.
pub(super) fn volume(
    notes: &mut Notes,
    paths: &Paths,
    vars: &BTreeMap<String, String>,
    name: &str,
    v: &Value,
) -> Option<toml_edit::Value> {
    let (kind, source, target, read_only, dropped): (String, String, String, bool, Vec<String>) =
        match v {
            Value::Str(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                if parts.len() == 1 {
                    notes.add(
                        Some(name),
                        "volumes",
                        NoteKind::NotCarried,
                        format!(
                            "anonymous volume `{s}` is not supported; give it a name (`data:{s}`)"
                        ),
                    );
                    return None;
                }
                let (src, dst) = (parts[0].to_owned(), parts[1].to_owned());
                let modes: Vec<String> = parts
                    .get(2)
                    .map(|m| m.split(',').map(String::from).collect())
                    .unwrap_or_default();
                let ro = modes.iter().any(|m| m == "ro");
                let dropped = modes
                    .into_iter()
                    .filter(|m| m != "ro" && m != "rw")
                    .collect();
                let kind = if src.starts_with(['.', '/', '~']) || src.is_empty() {
                    "bind"
                } else {
                    "volume"
                };
                (kind.into(), src, dst, ro, dropped)
            }
            Value::Map(_) => {
                let kind = v
                    .get("type")
                    .and_then(Value::scalar)
                    .unwrap_or_else(|| "volume".into());
                let src = v.get("source").and_then(Value::scalar).unwrap_or_default();
                let dst = v.get("target").and_then(Value::scalar).unwrap_or_default();
                let ro = v.get("read_only").and_then(Value::as_bool).unwrap_or(false);
                let mut dropped = Vec::new();
                for (k, _) in v.as_map().unwrap_or_default() {
                    if !["type", "source", "target", "read_only"].contains(&k.as_str()) {
                        dropped.push(k.clone());
                    }
                }
                if kind == "tmpfs" {
                    let mut it = InlineTable::new();
                    it.insert("type", "tmpfs".into());
                    it.insert("target", dst.as_str().into());
                    if !dropped.is_empty() {
                        notes.add(
                            Some(name),
                            "volumes",
                            NoteKind::NotCarried,
                            format!(
                                "options {} of tmpfs {dst} are not supported",
                                dropped.join(", ")
                            ),
                        );
                    }
                    return Some(it.into());
                }
                if kind == "volume" && src.is_empty() {
                    notes.add(
                        Some(name),
                        "volumes",
                        NoteKind::NotCarried,
                        format!(
                            "anonymous volume at {dst} is not supported; give it a source name"
                        ),
                    );
                    return None;
                }
                if kind != "volume" && kind != "bind" {
                    notes.add(
                        Some(name),
                        "volumes",
                        NoteKind::NotCarried,
                        format!("volume type `{kind}` at {dst} is not supported"),
                    );
                    return None;
                }
                (kind, src, dst, ro, dropped)
            }
            other => {
                notes.add(
                    Some(name),
                    "volumes",
                    NoteKind::NotCarried,
                    format!("a volume entry that is {} cannot be read", other.kind()),
                );
                return None;
            }
        };
    if !dropped.is_empty() {
        let selinux = dropped.iter().all(|d| d == "z" || d == "Z");
        let why = if selinux {
            "SELinux relabel flags are not supported (label the host directory yourself if SELinux enforces)".to_string()
        } else {
            "these mount options are not supported".to_string()
        };
        notes.add(
            Some(name),
            "volumes",
            NoteKind::NotCarried,
            format!("`{}` dropped from {target}: {why}", dropped.join(",")),
        );
    }
    if source.is_empty() {
        notes.add(Some(name), "volumes", NoteKind::NotCarried, format!("the mount at {target} has an empty source (an unset variable?); set the variable and import again, or add the volume by hand"));
        return None;
    }
    let source = if kind == "bind" {
        if let Some(rest) = source.strip_prefix('~') {
            notes.add(Some(name), "volumes", NoteKind::Warning, format!("`{source}` is relative to the home directory, which dockhand does not expand; written with $HOME of this import"));
            let home = vars.get("HOME").cloned().unwrap_or_default();
            format!("{home}{rest}")
        } else {
            paths.rebase(&source)
        }
    } else {
        source
    };
    Some(format!("{source}:{target}{}", if read_only { ":ro" } else { "" }).into())
}

/// A service's `secrets` or `configs` entry (`key`) as a read-only bind mount of the file
/// behind the top-level entry it names, at `/run/secrets/NAME` (secrets) or `/NAME`
/// (configs) unless it gives a target.
pub(super) fn file_mount(
    notes: &mut Notes,
    paths: &Paths,
    files: &FileSources,
    name: &str,
    key: &str,
    s: &Value,
) -> Option<String> {
    let default_dir = if key == "secrets" {
        "/run/secrets/"
    } else {
        "/"
    };
    let (source, target) = match s {
        Value::Map(_) => {
            for extra in ["uid", "gid", "mode"] {
                if s.get(extra).is_some() {
                    notes.add(
                        Some(name),
                        &format!("{key}.{extra}"),
                        NoteKind::NotCarried,
                        "ownership and mode of mounted files are not supported",
                    );
                }
            }
            (
                s.get("source").and_then(Value::scalar).unwrap_or_default(),
                s.get("target").and_then(Value::scalar),
            )
        }
        other => (other.scalar().unwrap_or_default(), None),
    };
    let Some(file) = files.get(key, &source) else {
        notes.add(
            Some(name),
            key,
            NoteKind::NotCarried,
            format!("`{source}` is not a file-based top-level {key} entry"),
        );
        return None;
    };
    let target = match target {
        Some(t) if t.starts_with('/') => t,
        Some(t) => format!("{default_dir}{t}"),
        None => format!("{default_dir}{source}"),
    };
    notes.add(
        Some(name),
        key,
        NoteKind::Assumed,
        format!("`{source}` is mounted read-only from {file} at {target}"),
    );
    Some(format!("{}:{target}:ro", paths.rebase(file)))
}
