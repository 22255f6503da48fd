//! `dockhand certs`: every host's certificate (source, issuer, end, next renewal, last
//! error); `certs renew [HOST]` renews now; `certs trust [--install]` shows how to trust the
//! local CA (and installs it into the system store).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use console::style;
use dockhand_api::{CertState, CertStatus, CertsReport, Request};

use super::client::{call_with_progress, client, requested_by};
use crate::output::{self, paint, print_json, StateWord, Tone};
use crate::Global;

#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Renew a host's certificate now (every automatic certificate without HOST).
    ///
    /// Waits for the CA's answer; the certificate in use keeps serving if it fails.
    Renew {
        /// A host name as routed (`dockhand certs` lists them).
        #[arg(value_name = "HOST")]
        name: Option<String>,
    },
    /// Show how to trust the local CA (localhost HTTPS), or install it with --install.
    ///
    /// The local CA issues the certificates of localhost, *.localhost and IP addresses. It is
    /// limited to localhost names by a name constraint. --install adds it to the system's
    /// store (Debian/Ubuntu: update-ca-certificates; macOS: the System keychain) and to
    /// Firefox profiles when `certutil` is installed; it needs root.
    Trust {
        #[arg(long)]
        install: bool,
    },
}

pub fn run(g: &Global, command: Option<CertsCommand>) -> anyhow::Result<ExitCode> {
    match command {
        None => list(g),
        Some(CertsCommand::Renew { name }) => renew(g, name),
        Some(CertsCommand::Trust { install }) => trust(g, install),
    }
}

fn list(g: &Global) -> anyhow::Result<ExitCode> {
    let report: CertsReport = client(g)?
        .call_typed(&Request::Certs, |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    if g.json {
        print_json(&report);
    } else {
        print_table(&report.certificates);
    }
    Ok(exit_for(&report.certificates))
}

fn renew(g: &Global, host: Option<String>) -> anyhow::Result<ExitCode> {
    let report: CertsReport = call_with_progress(
        g,
        &Request::CertsRenew {
            host: host.clone(),
            requested_by: requested_by(),
        },
    )?;
    let rows: Vec<CertStatus> = report
        .certificates
        .into_iter()
        .filter(|c| {
            host.as_deref()
                .is_none_or(|h| c.names.iter().any(|n| n == h) || c.host == h)
        })
        .filter(|c| c.source != dockhand_api::CertSource::File)
        .collect();
    if g.json {
        print_json(&rows);
    } else {
        print_table(&rows);
    }
    // A renewal that failed leaves an error behind: say so with the exit code.
    if rows.iter().any(|c| c.last_error.is_some()) {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// 1 when a certificate is expired or failing, so scripts notice.
fn exit_for(rows: &[CertStatus]) -> ExitCode {
    if rows
        .iter()
        .any(|c| matches!(c.state, CertState::Expired | CertState::Failing))
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_table(rows: &[CertStatus]) {
    if rows.is_empty() {
        println!(
            "no certificates: HTTPS is off (set `https_listen` in [proxy]) or no route has a host"
        );
        return;
    }
    let width = rows.iter().map(|r| r.host.len()).max().unwrap_or(4).max(4);
    println!(
        "{}",
        style(format!(
            "{:width$}  {:8}  {:8}  {:20}  {:>4}  {:20}  {}",
            "HOST", "SOURCE", "STATE", "NOT AFTER", "DAYS", "NEXT RENEWAL", "ISSUER"
        ))
        .bold()
    );
    for r in rows {
        let state = format!("{:8}", r.state.word());
        println!(
            "{:width$}  {:8}  {}  {:20}  {:>4}  {:20}  {}",
            r.host,
            r.source.as_str(),
            paint(&state, r.state.tone()),
            r.not_after.as_deref().unwrap_or("-"),
            r.days_left.map_or("-".to_string(), |d| d.to_string()),
            r.next_renewal.as_deref().unwrap_or("-"),
            r.issuer.as_deref().or(r.file.as_deref()).unwrap_or("-"),
        );
        if let Some(e) = &r.last_error {
            println!("{:width$}  {} {e}", "", style("last error:").red());
        }
    }
}

impl StateWord for CertState {
    fn word(&self) -> &str {
        self.as_str()
    }

    fn tone(&self) -> Tone {
        match self {
            CertState::Valid => Tone::Good,
            CertState::Pending => Tone::Warning,
            CertState::Failing | CertState::Expired => Tone::Bad,
        }
    }
}

/// Where Debian and Ubuntu take extra CA certificates from.
const DEBIAN_STORE: &str = "/usr/local/share/ca-certificates";

fn trust(g: &Global, install: bool) -> anyhow::Result<ExitCode> {
    let report: CertsReport = client(g)?
        .call_typed(&Request::Certs, |_| {})
        .map_err(|e| output::from_client(e, g.json))?;
    let Some(ca) = report.local_ca else {
        let message = "the agent has no local CA yet: it creates one when a route host is localhost, *.localhost or an IP address and `https_listen` is set";
        return Err(anyhow::Error::new(output::Exit {
            code: 5,
            message: message.into(),
            json: g.json.then(
                || serde_json::json!({ "error": { "code": "not_found", "message": message } }),
            ),
        }));
    };
    let path = PathBuf::from(&ca.path);
    let mut installed = Vec::new();
    if install {
        installed = install_ca(&ca.pem)?;
    }
    if g.json {
        print_json(&serde_json::json!({
            "path": ca.path,
            "pem": ca.pem,
            "installed": installed,
            "instructions": instructions(&path),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    if install {
        for place in &installed {
            println!("{} trusted in {place}", style("✓").green());
        }
        println!("restart the browser for it to notice");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "The local CA's certificate is {}",
        style(path.display()).bold()
    );
    for (system, steps) in instructions(&path) {
        println!("\n{}", style(system).bold());
        for s in steps {
            println!("  {s}");
        }
    }
    println!("\nOr run `sudo dockhand certs trust --install` (system store, and Firefox profiles when certutil is installed).");
    Ok(ExitCode::SUCCESS)
}

/// How to trust the CA at `path`, per system.
fn instructions(path: &Path) -> Vec<(&'static str, Vec<String>)> {
    let p = path.display();
    vec![
        (
            "Debian / Ubuntu",
            vec![
                format!("sudo cp {p} {DEBIAN_STORE}/dockhand-local-ca.crt"),
                "sudo update-ca-certificates".into(),
            ],
        ),
        (
            "macOS",
            vec![format!(
                "sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {p}"
            )],
        ),
        (
            "Firefox (its own store)",
            vec![
                "Settings → Privacy & Security → Certificates → View Certificates → Authorities → Import…".into(),
                format!("or: certutil -A -d sql:$HOME/.mozilla/firefox/PROFILE -t C,, -n \"Dockhand local CA\" -i {p}   (certutil: Debian's libnss3-tools)"),
            ],
        ),
    ]
}

/// Installs the CA into the system store (and Firefox profiles); returns where.
fn install_ca(pem: &str) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    if cfg!(target_os = "macos") {
        let file = std::env::temp_dir().join("dockhand-local-ca.pem");
        std::fs::write(&file, pem)
            .with_context(|| format!("failed to write {}", file.display()))?;
        run_tool(
            "security",
            &[
                "add-trusted-cert",
                "-d",
                "-r",
                "trustRoot",
                "-k",
                "/Library/Keychains/System.keychain",
            ],
            &file,
        )?;
        done.push("the macOS System keychain".to_string());
    } else {
        let dir = Path::new(DEBIAN_STORE);
        if !dir.is_dir() {
            anyhow::bail!(
                "{DEBIAN_STORE} does not exist: install Debian's ca-certificates package, or trust the CA by hand (`dockhand certs trust` prints how)"
            );
        }
        let file = dir.join("dockhand-local-ca.crt");
        std::fs::write(&file, pem).map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                anyhow::anyhow!(
                    "permission denied writing {}: run `sudo dockhand certs trust --install`",
                    file.display()
                )
            } else {
                anyhow::anyhow!("failed to write {}: {e}", file.display())
            }
        })?;
        run_tool("update-ca-certificates", &[], Path::new(""))?;
        done.push(format!("the system store ({})", file.display()));
    }
    done.extend(install_firefox(pem));
    Ok(done)
}

/// Imports the CA into every Firefox profile of the invoking user, when `certutil` exists.
fn install_firefox(pem: &str) -> Vec<String> {
    let home = std::env::var("SUDO_USER")
        .ok()
        .map(|u| PathBuf::from("/home").join(u))
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from));
    let Some(home) = home else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(home.join(".mozilla/firefox")) else {
        return Vec::new();
    };
    let file = std::env::temp_dir().join("dockhand-local-ca-firefox.pem");
    if std::fs::write(&file, pem).is_err() {
        return Vec::new();
    }
    let mut done = Vec::new();
    for profile in entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cert9.db").exists())
    {
        let db = format!("sql:{}", profile.display());
        let status = std::process::Command::new("certutil")
            .args([
                "-A",
                "-d",
                &db,
                "-t",
                "C,,",
                "-n",
                "Dockhand local CA",
                "-i",
            ])
            .arg(&file)
            .status();
        if matches!(status, Ok(s) if s.success()) {
            done.push(format!("Firefox profile {}", profile.display()));
        }
    }
    done
}

fn run_tool(program: &str, args: &[&str], file: &Path) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    if !file.as_os_str().is_empty() {
        cmd.arg(file);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to run {program}: is it installed?"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            anyhow::bail!("{program} failed ({status}); run it by hand to see why");
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            anyhow::bail!("{program} did not finish within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
