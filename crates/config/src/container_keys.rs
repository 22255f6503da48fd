//! The parser side of the container keys shared by services and databases: image references
//! (with a warning for unpinned tags), `build` (context, Dockerfile and target checked on
//! disk before anything is built), commands as strings or arrays, `volumes`, `ulimits`,
//! `cpus` and `pull`.

use std::collections::BTreeMap;

use toml_edit::Value;

use crate::container::{BuildConfig, CommandLine, Mount, PullPolicy, Ulimit};
use crate::parse::{key_span, value_span, Field, Parser};

const BUILD_KEYS: &[&str] = &["context", "dockerfile", "target", "args", "on"];
const MOUNT_KEYS: &[&str] = &["type", "source", "target", "read_only"];
const ULIMIT_KEYS: &[&str] = &["soft", "hard"];
const PULL_VALUES: &[&str] = &["missing", "always", "never"];

impl Parser<'_> {
    /// An image reference; an unpinned one (`:latest`, no tag) is a warning.
    pub(crate) fn image_ref(&mut self, f: &Field<'_>) -> Option<String> {
        let image = self.string(f)?;
        if image.trim().is_empty() || image.contains(char::is_whitespace) {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("invalid image reference `{image}`"),
                Some(
                    "write a reference such as \"postgres:16\" or \"ghcr.io/acme/api:1.4.2\""
                        .into(),
                ),
            );
            return None;
        }
        if !image.contains('@') {
            let last = image.rsplit('/').next().unwrap_or(&image);
            match last.split_once(':') {
                None => self.warning(
                    value_span(f),
                    Some(&f.path),
                    format!("image `{image}` has no tag, so it means `:latest`, which changes under you"),
                    Some(format!("pin a version, e.g. \"{image}:1.2.3\", or a digest (@sha256:…)")),
                ),
                Some((_, "latest")) => self.warning(
                    value_span(f),
                    Some(&f.path),
                    format!("image `{image}` uses the `latest` tag, which changes under you"),
                    Some("pin a version tag or a digest (@sha256:…) so a deploy or rollback runs what you tested".into()),
                ),
                Some(_) => {}
            }
        }
        Some(image)
    }

    /// `build = "dir"` or `build = { context, dockerfile, target, args }`, checked on disk.
    pub(crate) fn build(&mut self, f: &Field<'_>) -> Option<BuildConfig> {
        let mut build = BuildConfig {
            context: self.project_dir.to_path_buf(),
            dockerfile: self.project_dir.join("Dockerfile"),
            target: None,
            args: BTreeMap::new(),
            on: Default::default(),
        };
        let mut dockerfile_field = None;
        let mut target_field = None;
        let table_fields = if f.item.is_str() {
            None
        } else {
            let table = self.table(f)?;
            Some(self.fields(table, &f.path, BUILD_KEYS, "in `build`"))
        };
        let fields = table_fields.as_ref();
        let context_at = if f.item.is_str() {
            Some(f)
        } else {
            fields.and_then(|t| t.get("context"))
        };
        match context_at {
            Some(cf) => build.context = normalize(&self.path(cf)?),
            None => {
                self.error(
                    key_span(f),
                    Some(&format!("{}.context", f.path)),
                    "`build` has no `context`".into(),
                    Some("add context = \".\": the directory sent to the Docker Engine, relative to dockhand.toml".into()),
                );
                return None;
            }
        }
        if let Some(t) = fields {
            dockerfile_field = t.get("dockerfile");
            target_field = t.get("target");
            if let Some(df) = dockerfile_field {
                if let Some(name) = self.string(df) {
                    build.dockerfile = build.context.join(name);
                }
            } else {
                build.dockerfile = build.context.join("Dockerfile");
            }
            if let Some(tf) = target_field {
                build.target = self.string(tf);
            }
            if let Some(of) = t.get("on") {
                match self.string(of).as_deref() {
                    Some("local") => build.on = crate::container::BuildOn::Local,
                    Some("server") => build.on = crate::container::BuildOn::Server,
                    Some(other) => self.error(
                        value_span(of),
                        Some(&of.path),
                        format!("invalid `on` value `{other}`"),
                        Some("use \"local\" (build here, send the missing layers; the default) or \"server\" (build on the server from the synced project)".into()),
                    ),
                    None => {}
                }
            }
            if let Some(af) = t.get("args") {
                if let Some(args) = self.table(af) {
                    for (name, item) in args.iter() {
                        match item.as_value() {
                            Some(Value::String(s)) => {
                                let arg_field = Field {
                                    name,
                                    key: args.get_key_value(name).map(|(k, _)| k).unwrap_or(f.key),
                                    item,
                                    path: format!("{}.{name}", af.path),
                                };
                                if let Some(v) = self.interpolate(
                                    &arg_field,
                                    s.value(),
                                    crate::interpolate::SecretMode::Forbid,
                                ) {
                                    build.args.insert(name.to_string(), v.value);
                                }
                            }
                            Some(Value::Integer(n)) => {
                                build.args.insert(name.to_string(), n.value().to_string());
                            }
                            Some(Value::Boolean(b)) => {
                                build.args.insert(name.to_string(), b.value().to_string());
                            }
                            _ => self.error(
                                value_span(af),
                                Some(&format!("{}.{name}", af.path)),
                                format!("build arg `{name}` must be a string"),
                                None,
                            ),
                        }
                    }
                }
            }
        } else {
            build.dockerfile = build.context.join("Dockerfile");
        }

        // The preflight: everything the Docker Engine would only find out mid-deploy.
        let context_span = context_at.map(value_span).unwrap_or_else(|| key_span(f));
        let context_key = context_at
            .map(|c| c.path.clone())
            .unwrap_or_else(|| f.path.clone());
        if !build.context.is_dir() {
            self.error(
                context_span,
                Some(&context_key),
                format!("build context {} does not exist", build.context.display()),
                Some("the context is relative to the directory of dockhand.toml; create it or fix the path".into()),
            );
            return Some(build);
        }
        let (df_span, df_key) = match dockerfile_field {
            Some(df) => (value_span(df), df.path.clone()),
            None => (context_span.clone(), context_key.clone()),
        };
        let text = match std::fs::read_to_string(&build.dockerfile) {
            Ok(text) => text,
            Err(e) => {
                let problem = if e.kind() == std::io::ErrorKind::NotFound {
                    "does not exist".to_string()
                } else {
                    format!("cannot be read: {e}")
                };
                self.error(
                    df_span,
                    Some(&df_key),
                    format!("Dockerfile {} {problem}", build.dockerfile.display()),
                    Some("add the Dockerfile to the build context, or set build.dockerfile to its path relative to the context".into()),
                );
                return Some(build);
            }
        };
        if let (Some(target), Some(tf)) = (&build.target, target_field) {
            let stages = crate::dockerfile::stages(&text);
            if !stages.contains(&target.to_ascii_lowercase()) {
                let help = if stages.is_empty() {
                    "the Dockerfile names no stages (FROM image AS name); remove `target` or name a stage".to_string()
                } else {
                    format!("stages defined there: {}", stages.join(", "))
                };
                self.error(
                    value_span(tf),
                    Some(&tf.path),
                    format!(
                        "build target `{target}` is not a stage of {}",
                        build.dockerfile.display()
                    ),
                    Some(help),
                );
            }
        }
        Some(build)
    }

    /// A container command: a string split like a shell would (no shell runs), or an array.
    pub(crate) fn argv(&mut self, f: &Field<'_>) -> Option<Vec<String>> {
        match self.command_line(f)? {
            CommandLine::Exec(v) => Some(v),
            CommandLine::Shell(s) => match shlex::split(&s) {
                Some(words) if !words.is_empty() => Some(words),
                Some(_) => {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("`{}` is empty", f.name),
                        None,
                    );
                    None
                }
                None => {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("`{}` has an unclosed quote", f.name),
                        Some("close the quote, or write the command as an array of strings".into()),
                    );
                    None
                }
            },
        }
    }

    /// A string (shell form) or a non-empty array of strings (exec form).
    pub(crate) fn command_line(&mut self, f: &Field<'_>) -> Option<CommandLine> {
        if f.item.is_str() {
            let s = self.string(f)?;
            if s.trim().is_empty() {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("`{}` is empty", f.name),
                    None,
                );
                return None;
            }
            return Some(CommandLine::Shell(s));
        }
        let v = self.string_array(f)?;
        if v.is_empty() {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("`{}` is empty", f.name),
                None,
            );
            return None;
        }
        Some(CommandLine::Exec(v))
    }

    /// An array of strings, each interpolated (secrets refused).
    pub(crate) fn string_array(&mut self, f: &Field<'_>) -> Option<Vec<String>> {
        let Some(array) = f.item.as_array() else {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("expected a string or an array of strings for `{}`", f.name),
                None,
            );
            return None;
        };
        let mut out = Vec::new();
        for value in array.iter() {
            match value.as_str() {
                Some(raw) => {
                    let out_value =
                        self.interpolate(f, raw, crate::interpolate::SecretMode::Forbid)?;
                    out.push(out_value.value);
                }
                None => {
                    self.error(
                        value.span().unwrap_or_else(|| value_span(f)),
                        Some(&f.path),
                        format!("every element of `{}` must be a string", f.name),
                        None,
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    /// `volumes = ["name:/target", "./dir:/target:ro", { type = "tmpfs", target = "/tmp" }]`.
    pub(crate) fn mounts(&mut self, f: &Field<'_>, app: &str) -> Vec<Mount> {
        let mut mounts: Vec<Mount> = Vec::new();
        let Some(array) = f.item.as_array() else {
            self.error(
                value_span(f),
                Some(&f.path),
                "expected an array for `volumes`".into(),
                Some("write volumes = [\"data:/var/lib/data\", \"./config:/etc/app:ro\"]".into()),
            );
            return mounts;
        };
        for value in array.iter() {
            let span = value.span().unwrap_or_else(|| value_span(f));
            let mount = match value {
                Value::String(s) => {
                    let Some(text) = self
                        .interpolate(f, s.value(), crate::interpolate::SecretMode::Forbid)
                        .map(|o| o.value)
                    else {
                        continue;
                    };
                    self.short_mount(&text, span.clone(), &f.path, app)
                }
                Value::InlineTable(t) => self.long_mount(t, span.clone(), &f.path, app),
                _ => {
                    self.error(
                        span,
                        Some(&f.path),
                        "a volume is a string \"SOURCE:TARGET[:ro]\" or a table".into(),
                        None,
                    );
                    continue;
                }
            };
            let Some(mount) = mount else { continue };
            if let Some(earlier) = mounts.iter().find(|m| m.target() == mount.target()) {
                let target = earlier.target().to_string();
                self.error(
                    span.clone(),
                    Some(&f.path),
                    format!("two volumes are mounted at {target}"),
                    Some("give each mount its own target path".into()),
                );
                continue;
            }
            if let Mount::Bind { source, .. } = &mount {
                if !source.exists() {
                    self.error(
                        span,
                        Some(&f.path),
                        format!("bind mount source {} does not exist", source.display()),
                        Some("Docker would create an empty root-owned directory in its place; create the file or directory, or fix the path (relative to dockhand.toml)".into()),
                    );
                    continue;
                }
            }
            mounts.push(mount);
        }
        mounts
    }

    fn short_mount(
        &mut self,
        text: &str,
        span: std::ops::Range<usize>,
        key: &str,
        app: &str,
    ) -> Option<Mount> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, options) = match parts.as_slice() {
            [target] => {
                self.error(
                    span,
                    Some(key),
                    format!("volume `{target}` has no source"),
                    Some(format!("write \"NAME:{target}\" for a named volume or \"./dir:{target}\" for a host directory")),
                );
                return None;
            }
            [source, target] => (*source, *target, ""),
            [source, target, options] => (*source, *target, *options),
            _ => {
                self.error(
                    span,
                    Some(key),
                    format!("cannot read volume `{text}`"),
                    Some("write SOURCE:TARGET or SOURCE:TARGET:ro".into()),
                );
                return None;
            }
        };
        let mut read_only = false;
        for option in options.split(',').filter(|o| !o.is_empty()) {
            match option {
                "ro" => read_only = true,
                "rw" | "z" | "Z" => {}
                other => {
                    self.error(
                        span.clone(),
                        Some(key),
                        format!("unknown volume option `{other}`"),
                        Some("use `ro` for read-only or `rw`".into()),
                    );
                    return None;
                }
            }
        }
        self.make_mount(source, target, read_only, None, span, key, app)
    }

    fn long_mount(
        &mut self,
        table: &toml_edit::InlineTable,
        span: std::ops::Range<usize>,
        key: &str,
        app: &str,
    ) -> Option<Mount> {
        let fields = self.fields(table, key, MOUNT_KEYS, "in a volume");
        let kind = fields.get("type").and_then(|f| self.string(f));
        let source = fields.get("source").and_then(|f| self.string(f));
        let read_only = fields
            .get("read_only")
            .and_then(|f| self.boolean(f))
            .unwrap_or(false);
        let Some(target) = fields.get("target").and_then(|f| self.string(f)) else {
            self.error(
                span,
                Some(key),
                "a volume table needs `target`".into(),
                Some("add target = \"/path/in/the/container\"".into()),
            );
            return None;
        };
        self.make_mount(
            source.as_deref().unwrap_or(""),
            &target,
            read_only,
            kind.as_deref(),
            span,
            key,
            app,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn make_mount(
        &mut self,
        source: &str,
        target: &str,
        read_only: bool,
        kind: Option<&str>,
        span: std::ops::Range<usize>,
        key: &str,
        app: &str,
    ) -> Option<Mount> {
        if !target.starts_with('/') {
            self.error(
                span,
                Some(key),
                format!("volume target `{target}` must be an absolute path in the container"),
                None,
            );
            return None;
        }
        let target = target.to_string();
        let is_path = source.starts_with('.') || source.starts_with('/') || source.starts_with('~');
        let kind = kind.unwrap_or(if is_path { "bind" } else { "volume" });
        match kind {
            "tmpfs" => Some(Mount::Tmpfs { target }),
            "bind" => {
                if source.is_empty() {
                    self.error(span, Some(key), "a bind mount needs `source`".into(), None);
                    return None;
                }
                let source = match source.strip_prefix("~/") {
                    Some(rest) => std::env::var_os("HOME")
                        .map(std::path::PathBuf::from)
                        .unwrap_or_default()
                        .join(rest),
                    None => self.project_dir.join(source),
                };
                Some(Mount::Bind {
                    source: normalize(&source),
                    target,
                    read_only,
                })
            }
            "volume" => {
                let valid = !source.is_empty()
                    && source.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && source
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !valid {
                    self.error(
                        span,
                        Some(key),
                        format!("invalid volume name `{source}`"),
                        Some("volume names use letters, digits, `_`, `.` and `-`; a host path starts with ./ or /".into()),
                    );
                    return None;
                }
                let _ = app;
                Some(Mount::Volume {
                    name: source.to_string(),
                    target,
                    read_only,
                })
            }
            other => {
                self.error(
                    span,
                    Some(key),
                    format!("unknown volume type `{other}`"),
                    Some("use \"volume\", \"bind\" or \"tmpfs\"".into()),
                );
                None
            }
        }
    }

    /// `ulimits = { nofile = 65536 }` or `{ nofile = { soft = 1024, hard = 65536 } }`.
    pub(crate) fn ulimits(&mut self, f: &Field<'_>) -> Vec<Ulimit> {
        let mut out = Vec::new();
        let Some(table) = self.table(f) else {
            return out;
        };
        for (name, item) in table.iter() {
            let path = format!("{}.{name}", f.path);
            let span = item
                .as_value()
                .and_then(|v| v.span())
                .unwrap_or_else(|| key_span(f));
            if let Some(n) = item.as_integer() {
                out.push(Ulimit {
                    name: name.to_string(),
                    soft: n,
                    hard: n,
                });
            } else if let Some(t) = item.as_table_like() {
                let fields = self.fields(t, &path, ULIMIT_KEYS, "in a ulimit");
                let soft = fields
                    .get("soft")
                    .and_then(|f| self.integer_in::<i64>(f, -1, i64::MAX));
                let hard = fields
                    .get("hard")
                    .and_then(|f| self.integer_in::<i64>(f, -1, i64::MAX));
                match (soft, hard) {
                    (Some(soft), Some(hard)) => out.push(Ulimit {
                        name: name.to_string(),
                        soft,
                        hard,
                    }),
                    _ => self.error(
                        span,
                        Some(&path),
                        format!("ulimit `{name}` needs `soft` and `hard`"),
                        None,
                    ),
                }
            } else {
                self.error(
                    span,
                    Some(&path),
                    format!("ulimit `{name}` must be a number or {{ soft, hard }}"),
                    None,
                );
            }
        }
        out
    }

    /// A CPU count such as `1.5`.
    pub(crate) fn cpus(&mut self, f: &Field<'_>) -> Option<f64> {
        let value = match f.item.as_value() {
            Some(Value::Float(x)) => *x.value(),
            Some(Value::Integer(n)) => *n.value() as f64,
            _ => {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    "expected a number of CPUs such as 1.5 for `cpus`".into(),
                    None,
                );
                return None;
            }
        };
        if !(value > 0.0 && value <= 1024.0) {
            self.error(
                value_span(f),
                Some(&f.path),
                format!("`cpus` must be more than 0 and at most 1024, found {value}"),
                None,
            );
            return None;
        }
        Some(value)
    }

    pub(crate) fn pull(&mut self, f: &Field<'_>) -> Option<PullPolicy> {
        let text = self.string(f)?;
        match text.as_str() {
            "missing" => Some(PullPolicy::Missing),
            "always" => Some(PullPolicy::Always),
            "never" => Some(PullPolicy::Never),
            _ => {
                let help = match crate::parse::suggest(&text, PULL_VALUES) {
                    Some(better) => format!("did you mean \"{better}\"?"),
                    None => "use \"missing\", \"always\" or \"never\"".into(),
                };
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("unknown pull policy `{text}`"),
                    Some(help),
                );
                None
            }
        }
    }
}

/// Removes `.` and `..` components without touching the filesystem.
fn normalize(path: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
