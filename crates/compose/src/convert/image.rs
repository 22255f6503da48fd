//! Where a service's image comes from: `image` (with a warning for reverse proxies that
//! dockhand's own proxy replaces), `build` (context rebased, dockerfile, target, args) and
//! `pull_policy`.

use std::collections::BTreeMap;

use toml_edit::{InlineTable, Item};

use super::database::image_name;
use super::{Notes, Paths};
use crate::load::list_to_map;
use crate::syntax::escape;
use crate::value::Value;
use crate::NoteKind;

/// Warns when service `name`'s `image` is a reverse proxy.
pub(super) fn check_image(notes: &mut Notes, name: &str, image: &str) {
    if PROXY_IMAGES.contains(&image_name(image).as_str()) {
        notes.add(Some(name), "image", NoteKind::Warning, format!("`{image}` looks like a reverse proxy; dockhand's own proxy routes to each service (`route`), so this service may be unnecessary"));
    }
}

/// The `build` of service `name` (a mapping; loading made `build: DIR` one): a context
/// string, or a table when there is more than the context. `None` for a remote context.
pub(super) fn build(
    notes: &mut Notes,
    paths: &Paths,
    vars: &BTreeMap<String, String>,
    name: &str,
    build: &Value,
) -> Option<Item> {
    let Value::Map(entries) = build else {
        return None;
    };
    let mut it = InlineTable::new();
    for (k, v) in entries {
        match k.as_str() {
            "context" => {
                let ctx = v.scalar().unwrap_or_default();
                if ctx.contains("://") || ctx.starts_with("git@") {
                    notes.add(Some(name), "build.context", NoteKind::NotCarried, "remote build contexts are not supported; clone it and point build at the directory");
                    return None;
                }
                it.insert("context", paths.rebase(&ctx).into());
            }
            "dockerfile" | "target" => {
                it.insert(k, v.scalar().unwrap_or_default().into());
            }
            "args" => {
                let mut args = InlineTable::new();
                if let Value::Map(m) = list_to_map(v.clone(), '=') {
                    for (ak, av) in m {
                        let val = match av {
                            Value::Null => vars.get(&ak).cloned().unwrap_or_default(),
                            other => other.scalar().unwrap_or_default(),
                        };
                        args.insert(&ak, escape(&val).into());
                    }
                }
                it.insert("args", args.into());
            }
            other => notes.add(
                Some(name),
                &format!("build.{other}"),
                NoteKind::NotCarried,
                "dockhand builds with context, dockerfile, target and args only",
            ),
        }
    }
    if it.len() == 1 {
        if let Some(ctx) = it.get("context") {
            return Some(toml_edit::value(ctx.clone()));
        }
    }
    Some(toml_edit::value(it))
}

/// dockhand's `pull` for compose's `pull_policy` `policy`; `None` (with a note) when there
/// is no equivalent.
pub(super) fn pull(notes: &mut Notes, name: &str, policy: &str) -> Option<&'static str> {
    match policy {
        "always" => Some("always"),
        "never" => Some("never"),
        "missing" | "if_not_present" => Some("missing"),
        other => {
            notes.add(
                Some(name),
                "pull_policy",
                NoteKind::NotCarried,
                format!("`{other}` has no dockhand equivalent (always, missing, never)"),
            );
            None
        }
    }
}

/// Reverse proxies that dockhand's own proxy usually replaces.
const PROXY_IMAGES: [&str; 6] = [
    "nginx",
    "traefik",
    "caddy",
    "haproxy",
    "nginx-proxy",
    "envoy",
];
