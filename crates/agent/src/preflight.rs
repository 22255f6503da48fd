//! The preflight checks of `dockhand check` that need the machine, not just the file: host
//! ports that something else already holds, and health commands whose program the image
//! does not contain (when the image is present locally), backup targets that do not answer or
//! refuse a write, and a backup identity that does not decrypt what the recipients encrypt.
//! They run before any deploy, so a compose file's `curl` health check in a `FROM scratch`
//! image is caught at check time, not when a deploy times out, and an unreachable backup
//! target at check time, not at the first night's backup.

use std::net::{SocketAddr, TcpListener};

use dockhand_config::{AppConfig, Diagnostic, Loaded, Severity};
use dockhand_runtime::{ContainerRuntime, LogRotation};

/// Every problem found; `agent_running`: an agent of this project answers on its socket (it
/// holds the proxy port and the published database ports itself, so those are not checked).
pub async fn check(loaded: &Loaded, agent_running: bool) -> Vec<Diagnostic> {
    let config = &loaded.config;
    let mut out = Vec::new();
    if !agent_running {
        if let Some(problem) = port_taken(config.proxy.listen) {
            out.push(loaded.sites.diagnostic(
                Severity::Error,
                "proxy.listen",
                format!("the proxy address {} is already in use{problem}", config.proxy.listen),
                Some("stop what listens there (`ss -ltnp` shows it), or choose another `listen` address".into()),
            ));
        }
        if let Some(https) = config.proxy.https_listen {
            if let Some(problem) = port_taken(https) {
                out.push(loaded.sites.diagnostic(
                    Severity::Error,
                    "proxy.https_listen",
                    format!("the proxy's HTTPS address {https} is already in use{problem}"),
                    Some("stop what listens there (`ss -ltnp` shows it), or choose another `https_listen` address".into()),
                ));
            }
        }
        for db in config.databases.values() {
            let Some(addr) = db.publish else { continue };
            if let Some(problem) = port_taken(addr) {
                out.push(loaded.sites.diagnostic(
                    Severity::Error,
                    &format!("databases.{}.publish", db.name),
                    format!("the host port {addr} of database `{}` is already in use{problem}", db.name),
                    Some("stop what listens there (`ss -ltnp` shows it), or publish on another port".into()),
                ));
            }
        }
    }
    if config.uses_containers() {
        out.extend(images(loaded, config).await);
    }
    out.extend(backups(loaded).await);
    out.extend(tracked_dotenv(config).await);
    out
}

/// A `.env` with secret-looking names that git tracks: everyone with the repository has them.
async fn tracked_dotenv(config: &dockhand_config::AppConfig) -> Option<Diagnostic> {
    let path = config.project_dir.join(".env");
    let text = std::fs::read_to_string(&path).ok()?;
    let names: Vec<String> = dockhand_dotenv::parse(&text)
        .entries
        .into_iter()
        .filter(|e| e.value.as_deref().is_some_and(|v| !v.is_empty()))
        .map(|e| e.name)
        .filter(|n| dockhand_dotenv::looks_secret(n))
        .collect();
    if names.is_empty() {
        return None;
    }
    crate::snapshot::git(
        &config.project_dir,
        &["ls-files", "--error-unmatch", "--", ".env"],
    )
    .await?;
    let mut d = Diagnostic::whole_file(
        Severity::Warning,
        &path,
        format!(
            "{} is tracked by git and holds secret-looking values ({}): everyone with the repository has them",
            path.display(),
            names.join(", ")
        ),
    );
    d.help = Some("run `git rm --cached .env`, add `.env` to .gitignore, rotate those values, and keep secrets in the secrets file (`dockhand secrets set NAME`)".into());
    Some(d)
}

/// How long `check` waits for one backup target.
const TARGET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Each backup target takes a small test object (written, then deleted) within
/// [`TARGET_TIMEOUT`]; an `identity` on this server decrypts what the `recipients` encrypt.
async fn backups(loaded: &Loaded) -> Vec<Diagnostic> {
    let Some(b) = loaded.config.backups.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(path) = &b.identity {
        match dockhand_backup::crypto::Decryption::from_identity_file(path) {
            Err(e) => out.push(loaded.sites.diagnostic(
                Severity::Error,
                "backups.identity",
                e.message,
                Some("point `identity` at the file `dockhand backup keygen` wrote, or remove it (drills then need --identity)".into()),
            )),
            Ok(d) if !b.recipients.is_empty()
                && !d.recipients().iter().any(|r| b.recipients.contains(r)) =>
            {
                out.push(loaded.sites.diagnostic(
                    Severity::Error,
                    "backups.identity",
                    format!(
                        "the identity {} decrypts none of the `recipients`: drills and restores would fail",
                        path.display()
                    ),
                    Some("add the identity's public key to `recipients` (`age-keygen -y FILE` prints it), or fix `identity`".into()),
                ));
            }
            Ok(_) => {}
        }
    }
    // Secrets problems are the configuration check's to report.
    let redactor = crate::secrets::Redactor::default();
    let Ok(secrets) = crate::secrets::load(&loaded.config, &redactor) else {
        return out;
    };
    for t in &b.targets {
        let key = format!("backups.targets.{}", t.name);
        let problem = match crate::backups::target_spec(t, &secrets) {
            Err(e) => Some(e.to_string()),
            Ok(spec) => match dockhand_backup::target::Target::open(&spec) {
                Err(e) => Some(e.message),
                Ok(target) => match tokio::time::timeout(TARGET_TIMEOUT, target.check()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.message),
                    Err(_) => Some(format!(
                        "target `{}` ({}) did not answer within {}s",
                        t.name,
                        spec.describe(),
                        TARGET_TIMEOUT.as_secs()
                    )),
                },
            },
        };
        if let Some(problem) = problem {
            out.push(loaded.sites.diagnostic(
                Severity::Error,
                &key,
                redactor.redact(&problem),
                Some("check the address, the credentials and that the bucket or directory exists and is writable; backups go nowhere until then".into()),
            ));
        }
    }
    out
}

/// Whether binding `addr` fails because it is taken (other failures are not this check's).
fn port_taken(addr: SocketAddr) -> Option<String> {
    if addr.port() == 0 {
        return None;
    }
    match TcpListener::bind(addr) {
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Some(String::new()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => None,
        Err(e) => Some(format!(" ({e})")),
    }
}

/// Health commands whose program is missing from a local image.
async fn images(loaded: &Loaded, config: &AppConfig) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let rt = match ContainerRuntime::connect("dockhand-check", LogRotation::default()).await {
        Ok(rt) => rt,
        Err(e) => {
            out.push(loaded.sites.diagnostic(
                Severity::Warning,
                "services",
                format!("the images were not checked: {e}"),
                Some("start the Docker Engine to check that each health command's program is in its image".into()),
            ));
            return out;
        }
    };
    let mut probes: Vec<(String, String, String)> = Vec::new();
    for svc in config.services.values() {
        let (Some(c), Some(h)) = (&svc.container, &svc.health) else {
            continue;
        };
        // A build's image does not exist before the deploy builds it.
        if c.build.is_some() {
            continue;
        }
        if let Some(cmd) = &h.command {
            if let Some(program) = cmd.program() {
                probes.push((
                    format!("services.{}.health.command", svc.name),
                    c.image.clone(),
                    program,
                ));
            }
        }
    }
    for db in config.databases.values() {
        if let Some(program) = db.health.command.as_ref().and_then(|c| c.program()) {
            // Points at the database's own `health` if it has one, else at the table.
            let key = format!("databases.{}.health.command", db.name);
            probes.push((key, db.image.clone(), program));
        }
    }
    for (key, image, program) in probes {
        match rt.image_has_binary(&image, &program).await {
            Ok(Some(false)) => out.push(loaded.sites.diagnostic(
                Severity::Error,
                &key,
                format!("the health command runs `{program}`, which image `{image}` does not contain"),
                Some(if matches!(program.as_str(), "curl" | "wget") {
                    "use health = { path = \"/health\" } instead: the agent sends the HTTP request from outside, so the image needs no curl".to_string()
                } else {
                    format!("install `{program}` in the image, or check health another way (an HTTP `path` for web services)")
                }),
            )),
            Ok(_) => {}
            Err(e) => out.push(loaded.sites.diagnostic(
                Severity::Warning,
                &key,
                format!("could not look into image `{image}`: {e}"),
                None,
            )),
        }
    }
    out
}
