//! The reverse proxy of a project: finds the Traefik labels, the nginx configuration files
//! and the Caddyfile of a compose project, hands them to the readers of `crate::edge`, and
//! keeps what they found for the services behind the proxy (`port`, `route`), the proxy
//! container itself (left out, or a static site when it served files), the top-level
//! `[[redirects]]` and the `[proxy]` settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Converter, Notes};
use crate::edge::{self, EdgeRead, EdgeRoute, Redirect, StaticSite};
use crate::syntax::normalise;
use crate::value::Value;
use crate::NoteKind;

/// What the proxy layer became.
#[derive(Debug, Default)]
pub(super) struct Edge {
    /// Compose services that were the proxy and are left out, with the reader's name.
    pub proxies: Vec<(String, &'static str)>,
    /// Compose service → its routes.
    pub routes: BTreeMap<String, Vec<EdgeRoute>>,
    /// Compose proxy service → the static sites it served (it becomes a static service).
    pub statics: BTreeMap<String, Vec<StaticSite>>,
    pub redirects: Vec<Redirect>,
    pub https: bool,
    pub acme_email: Option<String>,
    pub compression: Option<bool>,
    /// Services whose Traefik labels were read.
    pub labelled: Vec<String>,
    /// The readers' notes, moved into the report where their service's notes begin.
    pub pending: Vec<crate::Note>,
}

impl Edge {
    /// Moves the pending notes about `service` (all of them with `None`) into `notes`.
    pub(super) fn flush_notes(&mut self, notes: &mut Notes, service: Option<&str>) {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|n| service.is_none() || n.service.as_deref() == service);
        notes.0.extend(mine);
        self.pending = rest;
    }
}

/// The image's name without registry and tag: `docker.io/library/nginx:1.25` → `nginx`.
pub(super) fn image_base(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last).to_ascii_lowercase()
}

/// The `traefik.*` labels of a service (`labels` and `deploy.labels`, map or list form).
pub(super) fn traefik_labels(svc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for v in [
        svc.get("labels"),
        svc.get("deploy").and_then(|d| d.get("labels")),
    ]
    .into_iter()
    .flatten()
    {
        for (k, v) in labels_of(v) {
            if k.to_ascii_lowercase().starts_with("traefik.") {
                out.push((k, v));
            }
        }
    }
    out
}

/// A `labels` value as pairs.
pub(super) fn labels_of(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.scalar().unwrap_or_default()))
            .collect(),
        Value::Seq(items) => items
            .iter()
            .filter_map(Value::scalar)
            .map(|s| match s.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (s, String::new()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The container ports a service offers: `expose`, then the container side of `ports`.
fn offered_ports(svc: &Value) -> Vec<u16> {
    let mut out = Vec::new();
    for p in svc
        .get("expose")
        .and_then(Value::as_seq)
        .unwrap_or_default()
    {
        if let Some(n) = p
            .scalar()
            .and_then(|s| s.split('/').next().and_then(|n| n.parse().ok()))
        {
            out.push(n);
        }
    }
    for p in svc.get("ports").and_then(Value::as_seq).unwrap_or_default() {
        if let Ok(Some(pp)) = crate::syntax::parse_port(p) {
            if pp.protocol == "tcp" && !out.contains(&pp.container) {
                out.push(pp.container);
            }
        }
    }
    out
}

/// The bind mounts of a service: `(absolute source, container target)`.
pub(super) fn bind_mounts(project_dir: &Path, svc: &Value) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for v in svc
        .get("volumes")
        .and_then(Value::as_seq)
        .unwrap_or_default()
    {
        let (src, dst) = match v {
            Value::Str(s) => {
                let mut parts = s.split(':');
                match (parts.next(), parts.next()) {
                    (Some(a), Some(b)) => (a.to_owned(), b.to_owned()),
                    _ => continue,
                }
            }
            Value::Map(_) => match (
                v.get("source").and_then(Value::scalar),
                v.get("target").and_then(Value::scalar),
            ) {
                (Some(a), Some(b)) => (a, b),
                _ => continue,
            },
            _ => continue,
        };
        if !(src.starts_with('.') || src.starts_with('/')) {
            continue; // a named volume
        }
        out.push((normalise(&project_dir.join(&src)), dst));
    }
    out
}

/// Flattens a YAML tree into Traefik's dotted, lowercased keys.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Map(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.to_ascii_lowercase()
                } else {
                    format!("{prefix}.{}", k.to_ascii_lowercase())
                };
                flatten(&key, v, out);
            }
        }
        Value::Seq(items) => {
            let scalars: Vec<String> = items.iter().filter_map(Value::scalar).collect();
            if scalars.len() == items.len() {
                out.push((prefix.to_owned(), scalars.join(",")));
            } else {
                for (i, item) in items.iter().enumerate() {
                    flatten(&format!("{prefix}[{i}]"), item, out);
                }
            }
        }
        Value::Null => out.push((prefix.to_owned(), "true".into())),
        other => out.push((prefix.to_owned(), other.scalar().unwrap_or_default())),
    }
}

impl Converter<'_> {
    /// Reads the proxy layer of the active services.
    pub(super) fn read_edge(&mut self, active: &[(String, Value)]) -> Edge {
        let mut edge = Edge::default();
        let project_dir = self.paths.project_dir.clone();

        // Traefik: every service's labels, the Traefik container's flags and traefik.yml.
        let containers: Vec<edge::traefik::Container> = active
            .iter()
            .map(|(name, svc)| edge::traefik::Container {
                service: name.clone(),
                labels: traefik_labels(svc),
                ports: offered_ports(svc),
            })
            .filter(|c| !c.labels.is_empty())
            .collect();
        let traefik = active.iter().find(|(_, svc)| {
            svc.get("image")
                .and_then(Value::scalar)
                .is_some_and(|i| image_base(&i) == "traefik")
        });
        if !containers.is_empty() {
            let mut conf = Vec::new();
            let mut proxy_name = String::from("traefik");
            if let Some((name, svc)) = traefik {
                proxy_name = name.clone();
                let args: Vec<String> = match svc.get("command") {
                    Some(Value::Seq(items)) => items.iter().filter_map(Value::scalar).collect(),
                    Some(v) => v
                        .scalar()
                        .map(|s| s.split_whitespace().map(String::from).collect())
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                for a in args {
                    if let Some(flag) = a.strip_prefix("--") {
                        let (k, v) = flag.split_once('=').unwrap_or((flag, "true"));
                        conf.push((k.to_ascii_lowercase(), v.to_owned()));
                    }
                }
                for (src, dst) in bind_mounts(&project_dir, svc) {
                    if dst.ends_with("traefik.yml") || dst.ends_with("traefik.yaml") {
                        match std::fs::read_to_string(&src)
                            .ok()
                            .and_then(|t| crate::load::parse_str(&src, &t).ok())
                        {
                            Some(v) => flatten("", &v, &mut conf),
                            None => self.notes.add(
                                Some(name),
                                "volumes",
                                NoteKind::NotCarried,
                                format!(
                                    "{} (Traefik's static configuration) could not be read as YAML",
                                    src.display()
                                ),
                            ),
                        }
                    } else if dst.ends_with(".toml") && dst.contains("traefik") {
                        self.notes.add(Some(name), "volumes", NoteKind::NotCarried, format!("Traefik's TOML configuration {} is not read; the import reads command flags and traefik.yml", src.display()));
                    }
                }
            }
            let read = edge::traefik::read(&containers, &conf, &proxy_name);
            edge.labelled = containers.iter().map(|c| c.service.clone()).collect();
            if let Some((name, _)) = traefik {
                edge.proxies.push((name.clone(), "Traefik"));
            }
            self.absorb(&mut edge, read);
        }

        // nginx and Caddy: a container of the image with its configuration mounted.
        for (name, svc) in active {
            let image = svc.get("image").and_then(Value::scalar).unwrap_or_default();
            let base = image_base(&image);
            let mounts = bind_mounts(&project_dir, svc);
            let kind = if base == "nginx" || base.starts_with("nginx-") || base == "openresty" {
                "nginx"
            } else if base == "caddy" {
                "Caddy"
            } else {
                continue;
            };
            let services: Vec<String> = active.iter().map(|(n, _)| n.clone()).collect();
            let read = if kind == "nginx" {
                let files: Vec<(PathBuf, String)> = mounts
                    .iter()
                    .filter(|(_, dst)| dst.starts_with("/etc/nginx/"))
                    .cloned()
                    .collect();
                if files.is_empty() {
                    continue;
                }
                let roots: Vec<(PathBuf, String)> = mounts
                    .iter()
                    .filter(|(_, dst)| !dst.starts_with("/etc/nginx/"))
                    .cloned()
                    .collect();
                edge::nginx::read_mounted(name, &files, &roots, &services, &project_dir)
            } else {
                let Some((src, _)) = mounts.iter().find(|(_, d)| d.ends_with("Caddyfile")) else {
                    continue;
                };
                let Ok(text) = std::fs::read_to_string(src) else {
                    continue;
                };
                edge::caddy::read(name, &text, &services)
            };
            if read.routes.is_empty() && read.statics.is_empty() && read.redirects.is_empty() {
                self.notes.add(Some(name), "image", NoteKind::Warning, format!("{kind} configuration found but nothing in it routes to an imported service; the container is kept"));
                for n in read.notes {
                    self.notes.0.push(n);
                }
                continue;
            }
            edge.proxies.push((
                name.clone(),
                if kind == "nginx" { "nginx" } else { "Caddy" },
            ));
            let statics = read.statics.clone();
            if !statics.is_empty() {
                edge.statics.insert(name.clone(), statics);
            }
            self.absorb(&mut edge, read);
        }
        edge
    }

    /// Takes a reader's result into `edge`: secrets into the secrets file, notes into the
    /// report.
    fn absorb(&mut self, edge: &mut Edge, mut read: EdgeRead) {
        let mut renamed = BTreeMap::new();
        for (name, value) in &read.secrets {
            let used = self.secrets.add("proxy", name, value);
            if used != *name {
                renamed.insert(name.clone(), used);
            }
        }
        for mut r in read.routes.drain(..) {
            if let Some((_, secret)) = &mut r.basic_auth {
                if let Some(n) = renamed.get(secret) {
                    *secret = n.clone();
                }
            }
            edge.routes.entry(r.service.clone()).or_default().push(r);
        }
        edge.redirects.append(&mut read.redirects);
        edge.https |= read.https;
        if read.acme_email.is_some() {
            edge.acme_email = read.acme_email.take();
        }
        if read.compression.is_some() {
            edge.compression = read.compression;
        }
        edge.pending.append(&mut read.notes);
    }
}

/// The notes about labels a service had, once Traefik's were translated: the others.
pub(super) fn other_labels_note(notes: &mut Notes, name: &str, svc: &Value) {
    notes.0.retain(|n| {
        !(n.service.as_deref() == Some(name) && (n.key == "labels" || n.key == "deploy.labels"))
    });
    let mut others = Vec::new();
    for v in [
        svc.get("labels"),
        svc.get("deploy").and_then(|d| d.get("labels")),
    ]
    .into_iter()
    .flatten()
    {
        for (k, _) in labels_of(v) {
            if !k.to_ascii_lowercase().starts_with("traefik.") {
                others.push(k);
            }
        }
    }
    if !others.is_empty() {
        notes.add(
            Some(name),
            "labels",
            NoteKind::NotCarried,
            format!(
                "dockhand sets its own container labels; not carried: {}",
                others.join(", ")
            ),
        );
    }
}

impl Converter<'_> {
    /// The proxy service `name` that served static files, as a static service: its mounted
    /// directory (`static = "./dist"`) or the directory inside its image.
    pub(super) fn static_service(&mut self, name: &str, svc: &Value) -> toml_edit::Table {
        self.edge.flush_notes(&mut self.notes, Some(name));
        let sites = self.edge.statics.get(name).cloned().unwrap_or_default();
        let mut t = toml_edit::Table::new();
        let site = &sites[0];
        for extra in &sites[1..] {
            self.notes.add(Some(name), "static", NoteKind::NotCarried, format!("{}: a second static root ({}); dockhand serves one directory per static service, add another service for it", extra.origin, extra.container_dir));
        }
        let project_dir = self.paths.project_dir.clone();
        let mounted = bind_mounts(&project_dir, svc)
            .into_iter()
            .find_map(|(src, dst)| {
                let dst = dst.trim_end_matches('/').to_owned();
                if site.container_dir == dst {
                    Some(src)
                } else {
                    site.container_dir
                        .strip_prefix(&format!("{dst}/"))
                        .map(|rest| src.join(rest))
                }
            });
        let mut st = toml_edit::InlineTable::new();
        match mounted {
            Some(dir) => {
                let rel = crate::syntax::relative_to(&dir, &project_dir);
                st.insert("dir", self.paths.rebase(&rel.display().to_string()).into());
                self.notes.add(Some(name), "volumes", NoteKind::Assumed, format!("{}: the files of {} are served by dockhand's proxy itself (a static service)", site.origin, rel.display()));
            }
            None => {
                if let Some(image) = svc.get("image").and_then(Value::scalar) {
                    t.insert("image", toml_edit::value(image));
                }
                if let Some(build) = svc.get("build") {
                    if let Some(item) =
                        super::image::build(&mut self.notes, &self.paths, self.vars, name, build)
                    {
                        t.insert("build", item);
                    }
                }
                st.insert("path", site.container_dir.as_str().into());
                if svc.get("build").is_none() {
                    self.notes.add(Some(name), "static", NoteKind::Warning, format!("{}: {} is neither mounted from the project nor built; the image's own files are served (build an image with your files, or point `static` at their directory)", site.origin, site.container_dir));
                } else {
                    self.notes.add(Some(name), "static", NoteKind::Assumed, format!("{}: {} of the built image is served by dockhand's proxy itself (a static service)", site.origin, site.container_dir));
                }
            }
        }
        if let Some(f) = &site.fallback {
            st.insert("fallback", f.as_str().into());
        }
        t.insert("static", toml_edit::value(st));
        let mut route = toml_edit::InlineTable::new();
        if let Some(h) = &site.host {
            route.insert("host", h.as_str().into());
        }
        route.insert("path", site.path.as_deref().unwrap_or("/").into());
        t.insert("route", toml_edit::value(route));
        for (k, _) in svc.as_map().unwrap_or_default() {
            if ![
                "image",
                "build",
                "volumes",
                "ports",
                "depends_on",
                "restart",
                "container_name",
                "networks",
            ]
            .contains(&k.as_str())
            {
                self.notes.add(
                    Some(name),
                    k,
                    NoteKind::NotCarried,
                    "the proxy became a static service, which runs nothing",
                );
            }
        }
        t
    }
}
