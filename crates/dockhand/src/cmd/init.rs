//! `dockhand init`: a first dockhand.toml for the project in the current directory. A compose
//! file is imported (`dockhand import compose`); otherwise what is there decides the one
//! service — a Dockerfile (a container built here), `package.json`, `requirements.txt` or
//! `pyproject.toml`, `Cargo.toml` (a process), or a built static site (`dist/`, `build/`,
//! `public/`). The names in `.env.example` become the service's `env` and `env_required`:
//! secret-looking ones get a strong random value in the secrets file (mode 0600), the rest
//! take `--set NAME=VALUE`, the example's value when it is not a placeholder, or a prompt.
//! `.gitignore` gets the secrets file and `.env`. An existing dockhand.toml is never replaced.
//!
//! Detection and rendering (`detect`, `render`) are pure; `run` does the I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use console::style;
use serde::Serialize;

use crate::output::{self, print_json};
use crate::Global;

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// The app's name (default: the directory's name).
    #[arg(long)]
    pub app: Option<String>,
    /// A value for a variable of .env.example (repeatable); secret-looking names go to the
    /// secrets file, never to dockhand.toml. Without it a variable takes the example's value
    /// unless that is a placeholder, else is asked for on a terminal.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

/// What the directory holds, in the order it decides the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detected {
    Compose {
        file: String,
    },
    Dockerfile {
        port: u16,
    },
    Node {
        command: String,
    },
    Python {
        command: String,
    },
    Rust {
        command: String,
    },
    Static {
        dir: String,
    },
    /// Nothing at the top, but subdirectories that each hold one (e.g. `api/` and `web/`):
    /// one service each.
    Several {
        services: Vec<Part>,
    },
}

/// One service of a project made of several directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part {
    pub name: String,
    /// The subdirectory, relative to the project.
    pub dir: String,
    pub detected: Detected,
}

#[derive(Serialize)]
struct Report {
    file: PathBuf,
    app: String,
    detected: Detected,
    /// Names given a generated value in the secrets file.
    generated: Vec<String>,
    /// Names stored in the secrets file.
    secrets: Vec<String>,
    secrets_file: Option<PathBuf>,
    /// Names still without a value: `check` reports them until they are set.
    missing: Vec<String>,
    gitignore_added: Vec<String>,
}

const COMPOSE_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];
const ENV_EXAMPLES: &[&str] = &[".env.example", ".env.sample", "env.example"];
const SECRETS_FILE: &str = ".dockhand/secrets.env";
const IGNORED: &[&str] = &[".dockhand/", ".env"];

pub fn run(g: &Global, args: InitArgs) -> anyhow::Result<ExitCode> {
    let dir = std::env::current_dir().context("cannot read the current directory")?;
    let toml_path = dir.join("dockhand.toml");
    if toml_path.exists() {
        return Err(output::usage(
            format!(
                "{} already exists; dockhand init never replaces it (edit it, or move it away and run init again)",
                toml_path.display()
            ),
            g.json,
        ));
    }
    let mut sets = BTreeMap::new();
    for s in &args.set {
        let Some((name, value)) = s.split_once('=') else {
            return Err(output::usage(
                format!("--set `{s}` is not NAME=VALUE"),
                g.json,
            ));
        };
        sets.insert(name.to_string(), value.to_string());
    }
    let detected = detect(&dir).ok_or_else(|| {
        output::usage(
            format!(
                "found nothing to run in {}: no compose file, Dockerfile, package.json, requirements.txt, pyproject.toml, Cargo.toml or static site (dist/, build/, public/ with index.html), here or in a subdirectory; write dockhand.toml by hand (see docs/configuration.md)",
                dir.display()
            ),
            g.json,
        )
    })?;
    let app = args.app.clone().unwrap_or_else(|| app_name(&dir));
    let gitignore_added = ensure_gitignore(&dir)?;
    if let Detected::Compose { file } = &detected {
        let opts = dockhand_compose::ImportOptions {
            files: vec![dir.join(file)],
            dir: dir.clone(),
            env_file: None,
            profiles: Vec::new(),
            output: dockhand_compose::Output::File(toml_path.clone()),
            force: false,
            env: std::env::vars().collect(),
            cluster: None,
        };
        let done = dockhand_compose::import(&opts)
            .map_err(|e| output::usage(format!("importing {file}: {e}"), g.json))?;
        let generated = match &done.report.secrets_file {
            Some(path) => generate_placeholders(path, &sets)
                .with_context(|| format!("failed to update {}", path.display()))?,
            None => Vec::new(),
        };
        let report = Report {
            file: toml_path,
            app: done.report.app.clone(),
            detected,
            generated,
            secrets: done.report.secrets.clone(),
            secrets_file: done.report.secrets_file.clone(),
            missing: Vec::new(),
            gitignore_added,
        };
        return finish(g, &report);
    }

    // The environment from .env.example.
    let example = ENV_EXAMPLES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file());
    let mut env: Vec<(String, EnvSource)> = Vec::new();
    let mut generated = Vec::new();
    let mut missing = Vec::new();
    let mut secret_values: Vec<(String, String)> = Vec::new();
    if let Some(path) = &example {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        for entry in dockhand_dotenv::parse(&text).entries {
            let name = entry.name;
            let given = sets.remove(&name);
            let example_value = entry
                .value
                .filter(|v| !v.is_empty() && dockhand_config::placeholder(v).is_none());
            if dockhand_dotenv::looks_secret(&name) {
                let value = match given {
                    Some(v) => v,
                    None => {
                        generated.push(name.clone());
                        random_secret()?
                    }
                };
                secret_values.push((name.clone(), value));
                env.push((name, EnvSource::Secret));
                continue;
            }
            let value = given
                .or(example_value)
                .or_else(|| ask(&name).ok().flatten());
            match value {
                Some(v) => env.push((name, EnvSource::Literal(v))),
                None => {
                    missing.push(name.clone());
                    env.push((name, EnvSource::Missing));
                }
            }
        }
    }
    if let Some(name) = sets.keys().next() {
        return Err(output::usage(
            format!(
                "--set {name}: `{name}` is not in {}",
                example
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "a .env.example (there is none)".into())
            ),
            g.json,
        ));
    }

    let secrets_file = if secret_values.is_empty() {
        None
    } else {
        let path = dir.join(SECRETS_FILE);
        let mut text = dockhand_config::read_for_edit(&path)
            .map_err(|e| output::usage(e.to_string(), g.json))?;
        let existing = dockhand_config::Secrets::load(&path).ok();
        for (name, value) in &secret_values {
            // A secret already set is kept: init never replaces a value.
            if existing.as_ref().and_then(|s| s.get(name)).is_none() {
                text = dockhand_config::set_entry(&text, name, value);
            }
        }
        dockhand_config::write_secrets(&path, &text)
            .with_context(|| format!("failed to write {}", path.display()))?;
        Some(path)
    };
    let toml = render(&app, &detected, &env, example.as_deref());
    write_new(&toml_path, &toml)?;
    let report = Report {
        file: toml_path,
        app,
        detected,
        generated,
        secrets: secret_values.into_iter().map(|(n, _)| n).collect(),
        secrets_file,
        missing,
        gitignore_added,
    };
    finish(g, &report)
}

/// In the secrets file an import wrote: every value that is empty or a placeholder
/// (`change_me`, `replace-me-with-a-random-string`…) becomes `--set`'s value or a strong
/// random one. Returns the names given a generated value.
fn generate_placeholders(
    path: &Path,
    sets: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<String>> {
    let secrets = dockhand_config::Secrets::load(path)?;
    let mut text = dockhand_config::read_for_edit(path)?;
    let mut generated = Vec::new();
    let mut changed = false;
    for name in secrets.names() {
        let value = secrets.get(name).unwrap_or_default();
        if let Some(given) = sets.get(name) {
            text = dockhand_config::set_entry(&text, name, given);
            changed = true;
        } else if dockhand_config::placeholder(value).is_some()
            || (value.is_empty() && !issued_elsewhere(name))
        {
            text = dockhand_config::set_entry(&text, name, &random_secret()?);
            generated.push(name.to_string());
            changed = true;
        }
    }
    if changed {
        dockhand_config::write_secrets(path, &text)?;
    }
    Ok(generated)
}

/// A secret some other service issues (an API key, an OAuth client secret, a licence key, an
/// SMTP account's password): a random value would be wrong, so it is left for the user.
fn issued_elsewhere(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "API_KEY",
        "APIKEY",
        "CLIENT_SECRET",
        "LICENSE",
        "LICENCE",
        "ACCESS_KEY",
        "SMTP",
        "MAIL",
        "TOKEN",
    ]
    .iter()
    .any(|w| n.contains(w))
}

fn finish(g: &Global, report: &Report) -> anyhow::Result<ExitCode> {
    if g.json {
        print_json(report);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} wrote {} for app `{}` ({})",
        style("✓").green(),
        report.file.display(),
        report.app,
        describe(&report.detected)
    );
    if let Some(path) = &report.secrets_file {
        println!(
            "secrets {} are in {} (mode 0600){}",
            report.secrets.join(", "),
            path.display(),
            if report.generated.is_empty() {
                String::new()
            } else {
                format!("; generated: {}", report.generated.join(", "))
            }
        );
    }
    if !report.gitignore_added.is_empty() {
        println!("added to .gitignore: {}", report.gitignore_added.join(", "));
    }
    if !report.missing.is_empty() {
        println!(
            "{} still without a value: {} (set each in dockhand.toml's env, or run init again with --set NAME=VALUE)",
            style("!").yellow(),
            report.missing.join(", ")
        );
    }
    println!("next: review the file, then `dockhand check` and `dockhand up`");
    Ok(ExitCode::SUCCESS)
}

fn describe(d: &Detected) -> String {
    match d {
        Detected::Compose { file } => format!("imported from {file}"),
        Detected::Dockerfile { port } => {
            format!("a container built from the Dockerfile, port {port}")
        }
        Detected::Node { command } | Detected::Python { command } | Detected::Rust { command } => {
            format!("a process: {command}")
        }
        Detected::Static { dir } => format!("the static site in {dir}/"),
        Detected::Several { services } => services
            .iter()
            .map(|p| format!("{}: {}", p.name, describe(&p.detected)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Where a variable of the service's `env` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    Secret,
    Literal(String),
    Missing,
}

/// Subdirectories never taken for a service.
const NOT_SERVICES: &[&str] = &[
    "node_modules",
    "target",
    "venv",
    "env",
    "docs",
    "doc",
    "test",
    "tests",
    "scripts",
    "examples",
    "vendor",
];

/// What `dir` holds, first match wins; with nothing at the top, what its subdirectories hold.
/// Pure apart from reading the directory.
pub fn detect(dir: &Path) -> Option<Detected> {
    if let Some(file) = COMPOSE_FILES.iter().find(|f| dir.join(f).is_file()) {
        return Some(Detected::Compose {
            file: file.to_string(),
        });
    }
    if let Some(d) = detect_one(dir, false) {
        return Some(d);
    }
    let mut subdirs: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !NOT_SERVICES.contains(&n.as_str()))
        .collect();
    subdirs.sort();
    let services: Vec<Part> = subdirs
        .into_iter()
        .filter_map(|sub| {
            let detected = detect_one(&dir.join(&sub), true)?;
            // A static site's directory is relative to the project, like every other path.
            let detected = match detected {
                Detected::Static { dir: d } if d.is_empty() => {
                    Detected::Static { dir: sub.clone() }
                }
                Detected::Static { dir: d } => Detected::Static {
                    dir: format!("{sub}/{d}"),
                },
                other => other,
            };
            Some(Part {
                name: app_name(Path::new(&sub)),
                dir: sub,
                detected,
            })
        })
        .collect();
    (!services.is_empty()).then_some(Detected::Several { services })
}

/// What one directory holds. `part`: a subdirectory of a project of several, where a lone
/// Python module and an `index.html` (or `static/index.html`) are enough.
fn detect_one(dir: &Path, part: bool) -> Option<Detected> {
    let has = |name: &str| dir.join(name).is_file();
    if has("Dockerfile") {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap_or_default();
        return Some(Detected::Dockerfile {
            port: exposed_port(&text).unwrap_or(8080),
        });
    }
    if has("package.json") {
        let json: serde_json::Value = std::fs::read_to_string(dir.join("package.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let command = if json["scripts"]["start"].is_string() {
            "npm start".to_string()
        } else if let Some(main) = json["main"].as_str() {
            format!("node {main}")
        } else {
            let file = ["server.js", "index.js", "app.js"]
                .into_iter()
                .find(|f| has(f))
                .unwrap_or("index.js");
            format!("node {file}")
        };
        return Some(Detected::Node { command });
    }
    let python_module = ["app.py", "main.py", "server.py"].into_iter().any(&has);
    if has("requirements.txt") || has("pyproject.toml") || (part && python_module) {
        let reqs = std::fs::read_to_string(dir.join("requirements.txt"))
            .unwrap_or_default()
            .to_ascii_lowercase()
            + &std::fs::read_to_string(dir.join("pyproject.toml"))
                .unwrap_or_default()
                .to_ascii_lowercase();
        let module = ["app.py", "main.py", "wsgi.py", "server.py"]
            .into_iter()
            .find(|f| has(f));
        let command = if has("manage.py") {
            "python3 manage.py runserver 127.0.0.1:$PORT".to_string()
        } else if reqs.contains("gunicorn") {
            let m = module.unwrap_or("app.py").trim_end_matches(".py");
            format!("gunicorn --bind 127.0.0.1:$PORT {m}:app")
        } else if reqs.contains("uvicorn") {
            let m = module.unwrap_or("main.py").trim_end_matches(".py");
            format!("uvicorn --host 127.0.0.1 --port $PORT {m}:app")
        } else {
            format!("python3 {}", module.unwrap_or("app.py"))
        };
        return Some(Detected::Python { command });
    }
    if has("Cargo.toml") {
        return Some(Detected::Rust {
            command: "cargo run --release --quiet".into(),
        });
    }
    if part && has("index.html") {
        return Some(Detected::Static { dir: String::new() });
    }
    let built: &[&str] = if part {
        &["dist", "build", "public", "static"]
    } else {
        &["dist", "build", "public"]
    };
    built
        .iter()
        .find(|d| dir.join(d).join("index.html").is_file())
        .map(|d| Detected::Static { dir: d.to_string() })
}

/// The first port an `EXPOSE` line names.
fn exposed_port(dockerfile: &str) -> Option<u16> {
    dockerfile.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if !words.next()?.eq_ignore_ascii_case("EXPOSE") {
            return None;
        }
        words.next()?.split('/').next()?.parse().ok()
    })
}

/// The directory's name as an app name: lowercase letters, digits and `-`.
fn app_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let mut name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name = name.trim_matches('-').to_string();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name = format!("app-{name}").trim_end_matches('-').to_string();
    }
    name
}

/// The commented dockhand.toml. Pure.
pub fn render(
    app: &str,
    detected: &Detected,
    env: &[(String, EnvSource)],
    example: Option<&Path>,
) -> String {
    let mut t = String::new();
    t.push_str(
        "# dockhand.toml: everything Dockhand needs to run this app on one server, written by\n\
         # `dockhand init` from what it found here. `dockhand check` validates it, `dockhand up`\n\
         # runs it on this machine, `dockhand deploy` rolls out a change without dropping a request.\n\
         # The reference of every key: docs/configuration.md.\n\n",
    );
    let _ = writeln!(
        t,
        "# The app's name, used in logs, status output and the state database."
    );
    let _ = writeln!(t, "app = {}\n", quote(app));
    t.push_str(
        "# The proxy in front of the app. Plain HTTP on localhost to try it out; on a server, set\n\
         # listen = \"0.0.0.0:80\" and https_listen = \"0.0.0.0:443\" and give the route your domain:\n\
         # its certificate comes from Let's Encrypt.\n\
         [proxy]\n\
         listen = \"${DOCKHAND_LISTEN:-127.0.0.1:8080}\"\n\n",
    );
    let host = format!("{app}.localhost");
    let parts: Vec<Part> = match detected {
        Detected::Several { services } => services.clone(),
        other => vec![Part {
            name: "web".into(),
            dir: String::new(),
            detected: other.clone(),
        }],
    };
    let paths = route_paths(&parts);
    for (part, path) in parts.iter().zip(&paths) {
        service(&mut t, part, &host, path, env, example);
    }
    t
}

/// The route path of each part: the single one, a static site or a front-end-named one at
/// `/`, the others under `/NAME`.
fn route_paths(parts: &[Part]) -> Vec<String> {
    if parts.len() == 1 {
        return vec!["/".into()];
    }
    let front = parts
        .iter()
        .position(|p| matches!(p.detected, Detected::Static { .. }))
        .or_else(|| {
            parts.iter().position(|p| {
                ["web", "frontend", "front", "ui", "site", "client", "app"]
                    .contains(&p.name.as_str())
            })
        })
        .unwrap_or(0);
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == front {
                "/".to_string()
            } else {
                format!("/{}", p.name)
            }
        })
        .collect()
}

/// One `[services.NAME]` table.
fn service(
    t: &mut String,
    part: &Part,
    host: &str,
    path: &str,
    env: &[(String, EnvSource)],
    example: Option<&Path>,
) {
    let detected = &part.detected;
    let _ = writeln!(t, "[services.{}]", part.name);
    let within = if part.dir.is_empty() {
        "this directory".to_string()
    } else {
        format!("{}/", part.dir)
    };
    match detected {
        Detected::Static { dir } => {
            let _ = writeln!(
                t,
                "# The built site in {dir}/, served by the proxy itself (no process). Each deploy copies it,\n\
                 # so a rollback brings the old files back. Build it before `dockhand deploy`.\n\
                 static = {}",
                quote(dir)
            );
        }
        Detected::Dockerfile { port } => {
            let context = if part.dir.is_empty() {
                ".".to_string()
            } else {
                format!("./{}", part.dir)
            };
            let _ = writeln!(
                t,
                "# A container built from the Dockerfile in {within} at each deploy (the image is kept per\n\
                 # release, so a rollback runs the old build). The app listens on this port inside the container.\n\
                 build = {}\n\
                 port = {port}",
                quote(&context)
            );
        }
        Detected::Node { command } | Detected::Python { command } | Detected::Rust { command } => {
            let _ = writeln!(
                t,
                "# Run through /bin/sh in {within}. Dockhand gives each instance the port to listen\n\
                 # on in $PORT (old and new instances run side by side during a deploy): make the app\n\
                 # listen on 127.0.0.1:$PORT. Install dependencies before the first deploy, or in a\n\
                 # hook: hooks = {{ pre_deploy = \"…\" }}.\n\
                 command = {}\n\
                 port = 8000",
                quote(command)
            );
            if !part.dir.is_empty() {
                let _ = writeln!(t, "workdir = {}", quote(&part.dir));
            }
        }
        Detected::Compose { .. } | Detected::Several { .. } => {}
    }
    if !matches!(detected, Detected::Static { .. }) {
        let health = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/health")
        };
        let _ = writeln!(
            t,
            "# A new instance gets traffic only once this path answers; if that does not happen in\n\
             # time the deploy stops and the old release keeps serving. Point it at a cheap route.\n\
             health = {{ path = {}, deploy_timeout = \"60s\" }}",
            quote(&health)
        );
    }
    let _ = writeln!(
        t,
        "# Requests for this host reach the service (change it to your domain on a server){}.\n\
         route = {{ host = {}, path = {} }}",
        if path == "/" {
            ""
        } else {
            "; the longest matching path wins"
        },
        quote(host),
        quote(path)
    );
    if !env.is_empty() && !matches!(detected, Detected::Static { .. }) {
        let from = example
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| ".env.example".into());
        let _ = writeln!(
            t,
            "# The variables of {from}. `${{secret.NAME}}` comes from .dockhand/secrets.env (mode 0600,\n\
             # never committed: `dockhand secrets set NAME` changes one); a value is never logged."
        );
        t.push_str("env = { ");
        let mut first = true;
        for (name, source) in env {
            let value = match source {
                EnvSource::Secret => format!("\"${{secret.{name}}}\""),
                EnvSource::Literal(v) => quote(&v.replace('$', "$$")),
                EnvSource::Missing => continue,
            };
            if !first {
                t.push_str(", ");
            }
            first = false;
            let _ = write!(t, "{name} = {value}");
        }
        t.push_str(" }\n");
        let _ = writeln!(
            t,
            "# Every one of these must be set: `dockhand check` lists the missing ones before a deploy."
        );
        let names: Vec<String> = env.iter().map(|(n, _)| quote(n)).collect();
        let _ = writeln!(t, "env_required = [{}]", names.join(", "));
    }
    t.push('\n');
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// 32 random bytes from the kernel, hex-encoded.
fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("failed to read /dev/urandom for a generated secret")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Asks for a variable's value on a terminal (`None` when not on one, or left empty).
fn ask(name: &str) -> anyhow::Result<Option<String>> {
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    eprint!("value for {name} (empty to set it later): ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let v = line.trim().to_string();
    Ok((!v.is_empty()).then_some(v))
}

/// Adds `.dockhand/` and `.env` to `.gitignore` unless it ignores them already; the lines added.
fn ensure_gitignore(dir: &Path) -> anyhow::Result<Vec<String>> {
    let path = dir.join(".gitignore");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    let present: Vec<&str> = text.lines().map(str::trim).collect();
    let added: Vec<String> = IGNORED
        .iter()
        .filter(|want| {
            let bare = want.trim_end_matches('/');
            !present.iter().any(|l| {
                *l == **want || *l == bare || *l == format!("/{bare}") || *l == format!("/{want}")
            })
        })
        .map(|s| s.to_string())
        .collect();
    if added.is_empty() {
        return Ok(added);
    }
    let mut out = text;
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# dockhand: secrets and local state, never committed\n");
    for line in &added {
        out.push_str(line);
        out.push('\n');
    }
    std::fs::write(&path, out).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(added)
}

/// Creates `path` with `text`; refuses when it exists (even if it appeared since the check).
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposed_port_is_read_from_the_dockerfile() {
        assert_eq!(exposed_port("FROM x\nEXPOSE 3000/tcp\n"), Some(3000));
        assert_eq!(exposed_port("FROM x\n"), None);
    }

    #[test]
    fn an_app_name_is_made_from_any_directory_name() {
        assert_eq!(app_name(Path::new("/x/My_Shop")), "my-shop");
        assert_eq!(app_name(Path::new("/x/2048")), "app-2048");
    }

    #[test]
    fn secrets_are_referenced_and_missing_names_only_required() {
        let env = vec![
            ("DB_PASSWORD".to_string(), EnvSource::Secret),
            ("MODE".to_string(), EnvSource::Literal("prod $x".into())),
            ("REGION".to_string(), EnvSource::Missing),
        ];
        let toml = render(
            "shop",
            &Detected::Node {
                command: "npm start".into(),
            },
            &env,
            None,
        );
        assert!(
            toml.contains(r#"env = { DB_PASSWORD = "${secret.DB_PASSWORD}", MODE = "prod $$x" }"#),
            "{toml}"
        );
        assert!(
            toml.contains(r#"env_required = ["DB_PASSWORD", "MODE", "REGION"]"#),
            "{toml}"
        );
    }
}
