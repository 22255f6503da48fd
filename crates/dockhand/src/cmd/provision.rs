//! `dockhand provision cloud-init` and `dockhand provision terraform --provider …`: files
//! that create a server the way `dockhand setup` leaves one (see `dockhand_remote::provision`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use dockhand_remote::provision::{self, BinarySource, CloudInit, Provider};

use crate::output::{self, print_json};
use crate::Global;

#[derive(Subcommand, Debug)]
pub enum ProvisionCommand {
    /// Print cloud-init user-data that sets a fresh server up on first boot (any provider).
    ///
    /// The deploy user with your key and passwordless sudo, Docker when the app has container
    /// services, the firewall (SSH, 80, 443), fail2ban, SSH hardening, unattended upgrades, swap
    /// on small servers, and the agent's unit; with --binary-url, the dockhand binary (checked
    /// against its SHA-256). Validate it with `cloud-init schema --config-file FILE`.
    CloudInit(CloudInitArgs),
    /// Write a minimal Terraform module: one server, a firewall, optional DNS, the user-data.
    Terraform(TerraformArgs),
}

#[derive(Args, Debug)]
pub struct CloudInitArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The deploy user's public key file (repeat for several; default ~/.ssh/id_ed25519.pub,
    /// else ~/.ssh/id_rsa.pub).
    #[arg(long = "ssh-key", value_name = "FILE")]
    pub ssh_keys: Vec<PathBuf>,
    /// Write the user-data to FILE instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TerraformArgs {
    /// The provider of the module.
    #[arg(long, value_enum)]
    pub provider: ProviderArg,
    #[command(flatten)]
    pub server: ServerArgs,
    /// The directory to write (default terraform/PROVIDER).
    #[arg(short = 'o', long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Overwrite files that differ.
    #[arg(long)]
    pub force: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ProviderArg {
    Ovh,
    Digitalocean,
    Aws,
}

/// What the server gets, shared by both commands.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// The user that deploys.
    #[arg(long, value_name = "NAME", default_value = "deploy")]
    pub deploy_user: String,
    /// Let SSH in only from this address or network (repeat for several).
    #[arg(long = "ssh-from", value_name = "ADDRESS")]
    pub ssh_from: Vec<String>,
    /// Install Docker (default: when dockhand.toml here has container services or databases).
    #[arg(long, conflicts_with = "no_docker")]
    pub docker: bool,
    /// Do not install Docker.
    #[arg(long)]
    pub no_docker: bool,
    /// Where the server downloads the dockhand binary on first boot (https). Without it,
    /// `dockhand setup` uploads the binary afterwards.
    #[arg(long, value_name = "URL")]
    pub binary_url: Option<String>,
    /// The SHA-256 the downloaded binary must have (default: this dockhand's, so the URL must
    /// serve this very build).
    #[arg(long, value_name = "HEX", requires = "binary_url")]
    pub binary_sha256: Option<String>,
}

pub fn run(g: &Global, cmd: ProvisionCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ProvisionCommand::CloudInit(args) => cloud_init(g, args),
        ProvisionCommand::Terraform(args) => terraform(g, args),
    }
}

fn cloud_init(g: &Global, args: CloudInitArgs) -> anyhow::Result<ExitCode> {
    let keys = read_keys(g, &args.ssh_keys)?;
    let init = cloud_init_options(g, &args.server, keys)?;
    let text = provision::user_data(&init);
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|e| anyhow::anyhow!("failed to write {}: {e}", path.display()))?;
            if g.json {
                print_json(&serde_json::json!({ "path": path, "bytes": text.len() }));
            } else {
                eprintln!("wrote {} ({} bytes)", path.display(), text.len());
            }
        }
        None if g.json => print_json(&serde_json::json!({ "user_data": text })),
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn terraform(g: &Global, args: TerraformArgs) -> anyhow::Result<ExitCode> {
    let provider = match args.provider {
        ProviderArg::Ovh => Provider::Ovh,
        ProviderArg::Digitalocean => Provider::DigitalOcean,
        ProviderArg::Aws => Provider::Aws,
    };
    // The key is a variable of the module; the user-data gets it through the template.
    let init = cloud_init_options(g, &args.server, Vec::new())?;
    let app = project_config()
        .map(|c| c.app)
        .unwrap_or_else(|| "app".to_string());
    let dir = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("terraform").join(provider.to_string()));
    let files = provision::module(provider, &app, &init);
    // Nothing is written when one file would be overwritten.
    if !args.force {
        for f in &files {
            let path = dir.join(f.name);
            if let Ok(old) = std::fs::read_to_string(&path) {
                if old != f.content {
                    return Err(output::usage(
                        format!("{} exists and differs: pass --force to overwrite it (or -o another directory)", path.display()),
                        g.json,
                    ));
                }
            }
        }
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("failed to create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for f in &files {
        let path = dir.join(f.name);
        std::fs::write(&path, &f.content)
            .map_err(|e| anyhow::anyhow!("failed to write {}: {e}", path.display()))?;
        written.push(path);
    }
    if g.json {
        print_json(
            &serde_json::json!({ "provider": provider.to_string(), "dir": dir, "files": written }),
        );
    } else {
        for p in &written {
            println!("wrote {}", p.display());
        }
        println!(
            "next: read {}, then `terraform init && terraform apply` there",
            dir.join("README.md").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cloud_init_options(g: &Global, s: &ServerArgs, keys: Vec<String>) -> anyhow::Result<CloudInit> {
    let docker = if s.docker {
        true
    } else if s.no_docker {
        false
    } else {
        project_config().is_some_and(|c| {
            !c.databases.is_empty() || c.services.values().any(|s| s.container.is_some())
        })
    };
    let binary = match &s.binary_url {
        None => None,
        Some(url) => {
            if !url.starts_with("https://") {
                return Err(output::usage(
                    format!("--binary-url {url}: use an https:// URL (the server checks the SHA-256 too)"),
                    g.json,
                ));
            }
            let sha256 = match &s.binary_sha256 {
                Some(h) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => h.to_ascii_lowercase(),
                Some(h) => {
                    return Err(output::usage(
                        format!("--binary-sha256 {h}: expected 64 hexadecimal digits (`sha256sum dockhand`)"),
                        g.json,
                    ))
                }
                None => dockhand_remote::project::sha256_file(&std::env::current_exe()?)?,
            };
            Some(BinarySource {
                url: url.clone(),
                sha256,
            })
        }
    };
    if s.deploy_user == "root"
        || !s
            .deploy_user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(output::usage(
            format!(
                "--deploy-user {}: use a plain user name other than root",
                s.deploy_user
            ),
            g.json,
        ));
    }
    Ok(CloudInit {
        deploy_user: s.deploy_user.clone(),
        ssh_keys: keys,
        ssh_from: s.ssh_from.clone(),
        docker,
        binary,
    })
}

fn read_keys(g: &Global, files: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let files: Vec<PathBuf> = if files.is_empty() {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let found = ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"]
            .iter()
            .map(|n| home.join(".ssh").join(n))
            .find(|p| p.is_file());
        match found {
            Some(p) => vec![p],
            None => {
                return Err(output::usage(
                    "no public key found in ~/.ssh: pass --ssh-key FILE (create one with `ssh-keygen -t ed25519`)",
                    g.json,
                ))
            }
        }
    } else {
        files.to_vec()
    };
    let mut keys = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| {
            output::usage(
                format!("cannot read the public key {}: {e}", f.display()),
                g.json,
            )
        })?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            provision::check_public_key(line).map_err(|e| {
                output::usage(
                    format!(
                        "{}: {e} (pass the .pub file, never the private key)",
                        f.display()
                    ),
                    g.json,
                )
            })?;
            keys.push(line.to_string());
        }
    }
    Ok(keys)
}

/// The project's configuration here, if it loads (to name things and decide on Docker).
fn project_config() -> Option<dockhand_config::AppConfig> {
    let cwd = std::env::current_dir().ok()?;
    let path = super::remote::find_config(&cwd)?;
    let _: &Path = &path;
    dockhand_config::load(&path, &dockhand_config::LoadOptions::from_process_env())
        .ok()
        .map(|l| l.config)
}
