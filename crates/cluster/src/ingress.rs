//! Dockhand's proxy in front of the tasks: a global Swarm service `<app>-ingress` on the
//! ingress nodes (`[cluster] ingress`, the managers by default, labelled
//! `dockhand.ingress=true`), attached to the app's overlay, publishing `[proxy] listen`'s port
//! in host mode (no routing mesh: this kernel class has no IPVS, and host mode keeps the
//! client's address). Each task runs `dockhand ingress` (`dockhand_agent::ingress`), which
//! finds every routed service's tasks through Swarm's DNS and probes them itself.
//!
//! The image is the running `dockhand` binary and the shared libraries it loads, imported
//! into the manager's Engine as `dockhand-ingress:<version>-<digest>` (no registry, no build
//! chain); the configuration is the app's checked configuration as JSON ([`ingress_config`]:
//! what routing reads, without env, databases, backups or tasks, and no secret value — the
//! file only ever held references), as a Swarm config named by a digest of what routing
//! reads, so a deploy that changes only env or images leaves the ingress tasks alone (they
//! are replaced stop-first, their port being bound on the host).
//!
//! With `[proxy] https_listen`, the service also publishes that port in host mode and its task
//! runs the proxy's TLS listener. The `[proxy] certificates` files (chain and key) and the
//! `[proxy.acme] ca` roots travel as Swarm secrets (`ingress-cert-N`, `ingress-key-N`,
//! `ingress-ca`, each named by a digest of its content), mounted into the task's tmpfs:
//! the key is never in a config, the env, an argument or an image. ACME certificates are
//! obtained by the tasks themselves, once for every ingress node (`dockhand_agent::ingress`),
//! kept in the node-local volume `dockhand-<app>-ingress`; the tasks talk to each other
//! over a peer port sealed with a random key the deploy creates once per app as the secret
//! `ingress-peer`. What they cannot do is refused by [`check_https`] before any change.
//!
//! A route with `basic_auth` reads its users (htpasswd lines) from a secret: each secret the
//! routes' `basic_auth` names travels the same way, as the Swarm secret `ingress-auth-NAME`
//! (named by a digest of its value), mounted at [`auth_target`]; the configuration keeps
//! only the `${secret.NAME}` reference, and the task reads the value from the file.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use bollard::models;
use dockhand_config::AppConfig;
use serde::Serialize;
use sha2::Digest as _;

/// The Swarm service of the ingress proxy of `app`.
pub fn ingress_name(app: &str) -> String {
    format!("{app}-ingress")
}

/// The node label that marks the ingress nodes.
pub const INGRESS_LABEL: &str = "dockhand.ingress";

/// Where the configuration is mounted in the ingress task.
pub const CONFIG_TARGET: &str = "/etc/dockhand/ingress.json";

/// Where the node-local volume (ACME account and certificates) is mounted in the task.
pub const STATE_TARGET: &str = "/var/lib/dockhand-ingress";

/// The name (within the app's secrets) of the peer key of the ingress tasks.
pub const PEER_KEY_SECRET: &str = "ingress-peer";

/// The ports inside the task: HTTP and, with `https_listen`, HTTPS.
const HTTP_TARGET: u16 = 80;
const HTTPS_TARGET: u16 = 443;

/// The node-local volume of `app`'s ingress tasks.
pub fn volume_name(app: &str) -> String {
    format!("dockhand-{app}-ingress")
}

/// The secrets (by their name in the secrets file) the routes' `basic_auth` read their users
/// from, sorted: the ingress task gets each one as a Swarm secret.
pub fn auth_secrets(config: &AppConfig) -> Vec<String> {
    let mut names: Vec<String> = config
        .services
        .values()
        .flat_map(|s| s.routes.iter())
        .filter_map(|r| r.basic_auth.as_ref())
        .flat_map(|a| a.users.secret_names())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The name (within the app's secrets, and the file under `/run/secrets`) of the Swarm secret
/// holding the value of secret `name` of a route's `basic_auth`.
pub fn auth_file(name: &str) -> String {
    format!("ingress-auth-{name}")
}

/// Where the ingress task reads the value of secret `name` of a route's `basic_auth` (the
/// task's tmpfs).
pub fn auth_target(name: &str) -> PathBuf {
    Path::new("/run/secrets").join(auth_file(name))
}

/// A file of the deploying machine the ingress task gets as a Swarm secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngressFile {
    /// The secret's name within the app (`ingress-cert-0`, …); the Swarm secret adds a
    /// digest of the content.
    pub secret: String,
    /// The file on the deploying machine.
    pub source: PathBuf,
}

impl IngressFile {
    /// Where the task reads it: `/run/secrets/<secret>` (the task's tmpfs).
    pub fn target(&self) -> String {
        format!("/run/secrets/{}", self.secret)
    }
}

/// A Swarm secret mounted into the ingress task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedSecret {
    pub id: String,
    /// The Swarm secret's full name.
    pub name: String,
    /// The file name under `/run/secrets`.
    pub file: String,
}

/// The files the ingress of `config` gets as secrets: each certificate's chain and key, and
/// the ACME CA's roots; none without `https_listen`.
pub fn ingress_files(config: &AppConfig) -> Vec<IngressFile> {
    let proxy = &config.proxy;
    if proxy.https_listen.is_none() {
        return Vec::new();
    }
    let mut files = Vec::new();
    for (i, c) in proxy.certificates.iter().enumerate() {
        files.push(IngressFile {
            secret: format!("ingress-cert-{i}"),
            source: c.cert.clone(),
        });
        files.push(IngressFile {
            secret: format!("ingress-key-{i}"),
            source: c.key.clone(),
        });
    }
    if let Some(ca) = proxy.acme.ca.as_ref().filter(|_| proxy.acme.enabled) {
        files.push(IngressFile {
            secret: "ingress-ca".into(),
            source: ca.clone(),
        });
    }
    files
}

/// Refuses what the cluster's ingress cannot do with HTTPS: a DNS provider, external account
/// binding, a host that cannot use http-01 (a wildcard), a host only the local CA serves that
/// no certificate file covers. Reads the certificate files for their names.
pub fn check_https(config: &AppConfig) -> Result<(), crate::plan::PlanError> {
    use crate::plan::PlanError;
    use dockhand_config::{ChallengeKind, HostKind};
    let proxy = &config.proxy;
    if proxy.https_listen.is_none() {
        return Ok(());
    }
    let mut file_names: Vec<Vec<String>> = Vec::new();
    for files in &proxy.certificates {
        let loaded = dockhand_config::load_certificate(files, std::time::SystemTime::now())
            .map_err(|e| PlanError::IngressFile {
                path: files.cert.display().to_string(),
                reason: e.to_string(),
            })?;
        file_names.push(loaded.names);
    }
    let covered = |host: &str| {
        file_names
            .iter()
            .any(|names| dockhand_config::covers(names, host))
    };
    let acme = &proxy.acme;
    if acme.enabled && acme.dns.is_some() {
        return Err(PlanError::IngressDns);
    }
    if acme.enabled && acme.eab.is_some() {
        return Err(PlanError::IngressEab);
    }
    let mut hosts: Vec<(String, Vec<ChallengeKind>)> = Vec::new();
    for svc in config.services.values() {
        for route in &svc.routes {
            if let Some(host) = &route.host {
                let kinds = route
                    .challenge
                    .clone()
                    .unwrap_or_else(|| acme.challenges.clone());
                hosts.push((host.clone(), kinds));
            }
        }
    }
    for name in &acme.domains {
        hosts.push((name.clone(), acme.challenges.clone()));
    }
    for (host, kinds) in hosts {
        if covered(&host) {
            continue;
        }
        match dockhand_config::host_kind(&host) {
            HostKind::Local => return Err(PlanError::IngressLocalHost { host }),
            _ if !acme.enabled => {}
            _ if host.starts_with("*.") || !kinds.contains(&ChallengeKind::Http01) => {
                let challenges = if host.starts_with("*.") {
                    "dns-01 (a wildcard)".to_string()
                } else {
                    kinds
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(PlanError::IngressChallenge { host, challenges });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The ingress proxy of an app, planned as data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngressPlan {
    /// `<app>-ingress`.
    pub name: String,
    pub app: String,
    pub image: String,
    pub network: String,
    /// The port published on every ingress node (`[proxy] listen`'s).
    pub published: u16,
    /// The HTTPS port published on every ingress node (`[proxy] https_listen`'s).
    pub https_published: Option<u16>,
    /// The files the task gets as Swarm secrets.
    pub files: Vec<IngressFile>,
    /// The secrets of the routes' `basic_auth` the task gets as Swarm secrets (their names in
    /// the secrets file: see [`auth_file`]).
    pub auth: Vec<String>,
    /// The node-local volume holding the ACME account and certificates.
    pub volume: String,
    /// Environment of the task (debug builds pass the tests' ACME back-off).
    pub env: Vec<String>,
    /// The Swarm config holding the app's `dockhand.toml`, `dockhand-<app>-ingress-<digest>`.
    pub config_name: String,
    /// The digest of what routing reads.
    pub digest: String,
}

/// The configuration the ingress gets: `config` without what only the services, the
/// databases or an agent use (the metrics and dashboard routes lead to an agent).
pub fn ingress_config(config: &AppConfig) -> AppConfig {
    let mut c = config.clone();
    for s in c.services.values_mut() {
        s.env.clear();
    }
    c.databases.clear();
    c.backups = None;
    c.tasks.clear();
    c.update = None;
    c.secret_sources.clear();
    c.monitor.metrics_route = None;
    c.dashboard.route = None;
    // The files are where the task has their secrets.
    let files = ingress_files(config);
    let target = |secret: &str| {
        files
            .iter()
            .find(|f| f.secret == secret)
            .map(|f| PathBuf::from(f.target()))
    };
    for (i, cert) in c.proxy.certificates.iter_mut().enumerate() {
        if let (Some(chain), Some(key)) = (
            target(&format!("ingress-cert-{i}")),
            target(&format!("ingress-key-{i}")),
        ) {
            cert.cert = chain;
            cert.key = key;
        }
    }
    if c.proxy.acme.ca.is_some() {
        c.proxy.acme.ca = target("ingress-ca");
    }
    c
}

/// The ingress of `config` running `image`, or `None` when no service is routed.
pub fn plan_ingress(config: &AppConfig, image: &str) -> Option<IngressPlan> {
    if !config.services.values().any(|s| !s.routes.is_empty()) {
        return None;
    }
    let digest = routing_digest(config);
    Some(IngressPlan {
        name: ingress_name(&config.app),
        app: config.app.clone(),
        image: image.to_string(),
        network: crate::plan::network_name(&config.app),
        published: config.proxy.listen.port(),
        https_published: config.proxy.https_listen.map(|a| a.port()),
        files: ingress_files(config),
        auth: auth_secrets(config),
        volume: volume_name(&config.app),
        env: test_env(),
        config_name: format!("dockhand-{}-ingress-{}", config.app, &digest[..12]),
        digest,
    })
}

/// A digest of what the ingress reads: the proxy table, the redirects, and each service's
/// port, routes and health check (not its env, image or replicas, which change with every
/// release and are none of the ingress's business).
pub fn routing_digest(config: &AppConfig) -> String {
    #[derive(Serialize)]
    struct Service<'a> {
        name: &'a str,
        port: Option<u16>,
        routes: &'a [dockhand_config::Route],
        health: Option<&'a dockhand_config::HealthCheck>,
    }
    #[derive(Serialize)]
    struct Routing<'a> {
        app: &'a str,
        proxy: &'a dockhand_config::ProxySettings,
        redirects: &'a [dockhand_config::RedirectConfig],
        services: Vec<Service<'a>>,
    }
    let routing = Routing {
        app: &config.app,
        proxy: &config.proxy,
        redirects: &config.redirects,
        services: config
            .services
            .values()
            .map(|s| Service {
                name: &s.name,
                port: s.port,
                routes: &s.routes,
                health: s.health.as_ref(),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&routing).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(json))
}

/// What a debug build passes its ingress tasks from its own environment: the tests' short
/// ACME back-off. Release builds pass nothing.
fn test_env() -> Vec<String> {
    #[cfg(debug_assertions)]
    if let Ok(ms) = std::env::var("DOCKHAND_ACME_RETRY_BASE_MS") {
        return vec![format!("DOCKHAND_ACME_RETRY_BASE_MS={ms}")];
    }
    Vec::new()
}

impl IngressPlan {
    /// The digest the service is labelled with: what routing reads, and which secrets (by
    /// their content-named Swarm names) the task mounts.
    pub fn label_digest(&self, secrets: &[MountedSecret]) -> String {
        if secrets.is_empty() {
            return self.digest.clone();
        }
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.digest.as_bytes());
        for s in secrets {
            hasher.update(b"\0");
            hasher.update(s.name.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// The Engine API's spec, mounting the Swarm config `config_id` and `secrets` (the routes'
    /// users, and with HTTPS the files' and the peer key).
    pub fn to_spec(&self, config_id: &str, secrets: &[MountedSecret]) -> models::ServiceSpec {
        let digest = self.label_digest(secrets);
        let labels: HashMap<String, String> = [
            ("dockhand.app", self.app.as_str()),
            ("dockhand.ingress", digest.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut args: Vec<String> = vec![
            "--config".into(),
            CONFIG_TARGET.into(),
            "--listen".into(),
            format!("0.0.0.0:{HTTP_TARGET}"),
            "--state".into(),
            STATE_TARGET.into(),
        ];
        let mut ports = vec![models::EndpointPortConfig {
            protocol: Some(models::EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(i64::from(HTTP_TARGET)),
            published_port: Some(i64::from(self.published)),
            publish_mode: Some(models::EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        }];
        if let Some(https) = self.https_published {
            args.extend(["--https-listen".into(), format!("0.0.0.0:{HTTPS_TARGET}")]);
            if secrets.iter().any(|s| s.file == PEER_KEY_SECRET) {
                args.extend([
                    "--peer-key".into(),
                    format!("/run/secrets/{PEER_KEY_SECRET}"),
                ]);
            }
            ports.push(models::EndpointPortConfig {
                protocol: Some(models::EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(i64::from(HTTPS_TARGET)),
                published_port: Some(i64::from(https)),
                publish_mode: Some(models::EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            });
        }
        let secret_mounts: Vec<models::TaskSpecContainerSpecSecrets> = secrets
            .iter()
            .map(|s| models::TaskSpecContainerSpecSecrets {
                file: Some(models::TaskSpecContainerSpecFile {
                    name: Some(s.file.clone()),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(0o400),
                }),
                secret_id: Some(s.id.clone()),
                secret_name: Some(s.name.clone()),
            })
            .collect();
        let container = models::TaskSpecContainerSpec {
            image: Some(self.image.clone()),
            labels: Some(labels.clone()),
            command: Some(vec!["/dockhand".into(), "ingress".into()]),
            args: Some(args),
            env: (!self.env.is_empty()).then(|| self.env.clone()),
            secrets: (!secret_mounts.is_empty()).then_some(secret_mounts),
            mounts: Some(vec![models::Mount {
                target: Some(STATE_TARGET.into()),
                source: Some(self.volume.clone()),
                typ: Some(models::MountType::VOLUME),
                ..Default::default()
            }]),
            configs: Some(vec![models::TaskSpecContainerSpecConfigs {
                file: Some(models::TaskSpecContainerSpecFile1 {
                    name: Some(CONFIG_TARGET.into()),
                    uid: Some("0".into()),
                    gid: Some("0".into()),
                    mode: Some(0o444),
                }),
                config_id: Some(config_id.to_string()),
                config_name: Some(self.config_name.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let task = models::TaskSpec {
            container_spec: Some(container),
            restart_policy: Some(models::TaskSpecRestartPolicy {
                condition: Some(models::TaskSpecRestartPolicyConditionEnum::ANY),
                delay: Some(1_000_000_000),
                ..Default::default()
            }),
            placement: Some(models::TaskSpecPlacement {
                constraints: Some(vec![format!("node.labels.{INGRESS_LABEL} == true")]),
                ..Default::default()
            }),
            networks: Some(vec![models::NetworkAttachmentConfig {
                target: Some(self.network.clone()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        models::ServiceSpec {
            name: Some(self.name.clone()),
            labels: Some(labels),
            task_template: Some(task),
            mode: Some(models::ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            }),
            update_config: Some(models::ServiceSpecUpdateConfig {
                parallelism: Some(1),
                // The port is bound on the node: the old task must let go of it first.
                order: Some(models::ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
                failure_action: Some(models::ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
                ..Default::default()
            }),
            endpoint_spec: Some(models::EndpointSpec {
                mode: Some(models::EndpointSpecModeEnum::DNSRR),
                ports: Some(ports),
            }),
            ..Default::default()
        }
    }
}

/// The ingress image's tag for the binary `exe`: the version and a digest of the file, so a
/// new build is a new image and the same build is imported once. The digest of a file is kept
/// in `cache` (a small file, e.g. under the user's cache directory) keyed by the file's path,
/// size, modification time and inode, so a deploy reads the whole binary only once per build.
pub fn image_tag(exe: &Path, cache: Option<&Path>) -> io::Result<String> {
    let digest = binary_digest(exe, cache)?;
    Ok(format!(
        "dockhand-ingress:{}-{}",
        env!("CARGO_PKG_VERSION"),
        &digest[..12]
    ))
}

/// The SHA-256 of `exe`, from `cache` when its key matches (see [`image_tag`]).
fn binary_digest(exe: &Path, cache: Option<&Path>) -> io::Result<String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(exe)?;
    let key = format!(
        "{} {} {}.{} {}",
        exe.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    );
    if let Some(cache) = cache {
        if let Ok(text) = std::fs::read_to_string(cache) {
            if let Some((digest, cached_key)) = text.trim_end().split_once(' ') {
                if cached_key == key && digest.len() == 64 {
                    return Ok(digest.to_string());
                }
            }
        }
    }
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(exe)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = io::Read::read(&mut file, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hex::encode(hasher.finalize());
    if let Some(cache) = cache {
        // Best effort: a cache that cannot be written costs the next deploy one read.
        if let Some(dir) = cache.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, format!("{digest} {key}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, cache);
        }
    }
    Ok(digest)
}

/// A root file system holding `exe` as `/dockhand` and the shared libraries it loads (as
/// `ldd` lists them, at the same paths), as a tar for `docker import`, written to `out`.
pub fn write_rootfs(exe: &Path, out: impl io::Write) -> io::Result<()> {
    let mut files: Vec<(PathBuf, PathBuf)> = vec![(exe.to_path_buf(), "dockhand".into())];
    for lib in shared_libraries(exe)? {
        let inside = lib.strip_prefix("/").unwrap_or(&lib).to_path_buf();
        files.push((lib, inside));
    }
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(true);
    // A linker may leave holes in the binary; the tar crate writes such a file as a GNU sparse
    // entry (type 'S'), which the Engine's import refuses ("unhandled tar header type 83").
    builder.sparse(false);
    for dir in ["etc", "tmp"] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        header.set_size(0);
        builder.append_data(&mut header, dir, io::empty())?;
    }
    for (from, inside) in files {
        builder.append_path_with_name(&from, &inside)?;
    }
    builder.into_inner()?.flush()
}

/// [`write_rootfs`] as a stream of chunks, written by a thread of its own as the stream is
/// read (the import's request body: the image is never whole in memory).
pub fn rootfs_stream(
    exe: &Path,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, io::Error>>(8);
    let exe = exe.to_path_buf();
    std::thread::spawn(move || {
        let mut out = io::BufWriter::with_capacity(256 * 1024, ChannelWriter(tx.clone()));
        let written = write_rootfs(&exe, &mut out).and_then(|()| out.flush());
        drop(out);
        if let Err(e) = written {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// A writer whose writes become chunks of a channel (a closed channel: the reader is gone).
struct ChannelWriter(tokio::sync::mpsc::Sender<Result<bytes::Bytes, io::Error>>);

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the import stopped reading"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The shared libraries `exe` loads, from `ldd`'s output (the dynamic loader included).
fn shared_libraries(exe: &Path) -> io::Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd").arg(exe).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary: "not a dynamic executable".
        return Ok(Vec::new());
    }
    Ok(parse_ldd(&text))
}

/// The absolute paths in `ldd` output: `libc.so.6 => /lib/…/libc.so.6 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO has none.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn a_file_with_holes_is_stored_whole_since_the_engine_refuses_sparse_entries() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("holey");
        let mut file = std::fs::File::create(&exe).unwrap();
        file.write_all(b"start").unwrap();
        file.seek(SeekFrom::Start(4 << 20)).unwrap();
        file.write_all(b"end").unwrap();
        drop(file);
        let mut tar = Vec::new();
        write_rootfs(&exe, &mut tar).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = false;
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let kind = entry.header().entry_type();
            assert_ne!(kind, tar::EntryType::GNUSparse, "{:?}", entry.path());
            if entry.path().unwrap() == Path::new("dockhand") {
                assert_eq!(kind, tar::EntryType::Regular);
                assert_eq!(entry.size(), (4 << 20) + 3);
                seen = true;
            }
        }
        assert!(seen, "the binary is in the image as /dockhand");
    }

    #[test]
    fn the_binary_digest_is_read_from_the_cache_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("dockhand");
        std::fs::write(&exe, b"build one").unwrap();
        let cache = dir.path().join("cache/ingress-digest");
        let first = binary_digest(&exe, Some(&cache)).unwrap();
        assert_eq!(first, hex::encode(sha2::Sha256::digest(b"build one")));
        // The cache holds the digest under the file's key: a planted digest under that key is
        // what the next call answers, so the file was not read again.
        let text = std::fs::read_to_string(&cache).unwrap();
        let planted = text.replacen(&first, &"a".repeat(64), 1);
        std::fs::write(&cache, planted).unwrap();
        assert_eq!(binary_digest(&exe, Some(&cache)).unwrap(), "a".repeat(64));
        // A new build (another size and time) is hashed again.
        std::fs::write(&exe, b"build number two").unwrap();
        let second = binary_digest(&exe, Some(&cache)).unwrap();
        assert_eq!(
            second,
            hex::encode(sha2::Sha256::digest(b"build number two"))
        );
        assert!(image_tag(&exe, None).unwrap().ends_with(&second[..12]));
    }

    #[test]
    fn the_streamed_root_file_system_is_the_written_one() {
        use futures_util::StreamExt as _;
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("static");
        std::fs::write(&exe, vec![7u8; 700 * 1024]).unwrap();
        let mut whole = Vec::new();
        write_rootfs(&exe, &mut whole).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let streamed = rt.block_on(async {
            let mut out = Vec::new();
            let mut stream = std::pin::pin!(rootfs_stream(&exe));
            let mut chunks = 0;
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk.unwrap());
                chunks += 1;
            }
            assert!(chunks > 1, "the tar comes in pieces");
            out
        });
        assert_eq!(streamed, whole);
    }

    fn config(toml: &str) -> AppConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dockhand.toml");
        std::fs::write(&path, toml).unwrap();
        dockhand_config::load(&path, &dockhand_config::LoadOptions::default())
            .unwrap()
            .config
    }

    #[test]
    fn https_publishes_its_port_mounts_the_files_as_secrets_and_points_the_config_at_them() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["own.example.org".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.path().join("k.pem"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        let text = "app = \"shop\"\n[proxy]\nlisten = \"0.0.0.0:80\"\nhttps_listen = \"0.0.0.0:443\"\ncertificates = [{ cert = \"c.pem\", key = \"k.pem\" }]\n[proxy.acme]\ndirectory = \"https://ca.example/dir\"\nca = \"ca.pem\"\n[services.web]\nimage = \"w\"\nport = 8080\nroute = [{ host = \"shop.example.org\" }, { host = \"own.example.org\" }]\n";
        std::fs::write(dir.path().join("dockhand.toml"), text).unwrap();
        let config = dockhand_config::load(
            &dir.path().join("dockhand.toml"),
            &dockhand_config::LoadOptions::default(),
        )
        .unwrap()
        .config;
        check_https(&config).unwrap();
        let plan = plan_ingress(&config, "img").unwrap();
        assert_eq!(plan.https_published, Some(443));
        assert_eq!(plan.volume, "dockhand-shop-ingress");
        let names: Vec<&str> = plan.files.iter().map(|f| f.secret.as_str()).collect();
        assert_eq!(names, ["ingress-cert-0", "ingress-key-0", "ingress-ca"]);
        // The task reads the files where the secrets are mounted.
        let sent = ingress_config(&config);
        assert_eq!(
            sent.proxy.certificates[0].key,
            PathBuf::from("/run/secrets/ingress-key-0")
        );
        assert_eq!(
            sent.proxy.acme.ca,
            Some(PathBuf::from("/run/secrets/ingress-ca"))
        );
        let secrets: Vec<MountedSecret> = ["ingress-cert-0", "ingress-key-0", PEER_KEY_SECRET]
            .iter()
            .map(|f| MountedSecret {
                id: format!("id-{f}"),
                name: format!("shop-{f}-abc"),
                file: f.to_string(),
            })
            .collect();
        let spec = plan.to_spec("cfg", &secrets);
        let ports = spec.endpoint_spec.clone().unwrap().ports.unwrap();
        assert_eq!(ports[1].published_port, Some(443));
        assert_eq!(ports[1].target_port, Some(443));
        let container = spec.task_template.unwrap().container_spec.unwrap();
        let args = container.args.unwrap();
        assert!(
            args.windows(2)
                .any(|w| w == ["--peer-key", "/run/secrets/ingress-peer"]),
            "{args:?}"
        );
        assert!(
            args.windows(2)
                .any(|w| w == ["--https-listen", "0.0.0.0:443"]),
            "{args:?}"
        );
        let mounted = container.secrets.unwrap();
        assert!(mounted
            .iter()
            .all(|s| s.file.as_ref().unwrap().mode == Some(0o400)));
        assert_eq!(
            container.mounts.unwrap()[0].source.as_deref(),
            Some("dockhand-shop-ingress")
        );
        // No key material in the spec: only the secrets' names and ids.
        let json = serde_json::to_string(&plan.to_spec("cfg", &secrets)).unwrap();
        assert!(!json.contains("PRIVATE KEY"));
        // Another file content is another secret name, so another label digest.
        let mut other = secrets.clone();
        other[1].name = "shop-ingress-key-0-def".into();
        assert_ne!(plan.label_digest(&secrets), plan.label_digest(&other));
    }

    #[test]
    fn basic_auth_users_travel_as_secrets_the_config_only_names() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join(".dockhand/secrets.env");
        std::fs::create_dir_all(secrets.parent().unwrap()).unwrap();
        let canary = "ann:$2y$05$zQ7markerVALUEzQ7markerVALUEzQ7markerVALUEzQ7markerVA";
        std::fs::write(&secrets, format!("STAFF='{canary}'\nOPS=x\n")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = "app = \"shop\"\n[services.web]\nimage = \"w\"\nport = 8080\nroute = [{ host = \"a.example.org\" }, { host = \"staff.example.org\", basic_auth = { realm = \"Staff\", users = \"${secret.STAFF}\" } }]\n[services.admin]\nimage = \"a\"\nport = 8081\nroute = { path = \"/admin\", basic_auth = { users = \"${secret.STAFF}\" } }\n[services.ops]\nimage = \"o\"\nport = 8082\nroute = { path = \"/ops\", basic_auth = { users = \"${secret.OPS}\" } }\n";
        std::fs::write(dir.path().join("dockhand.toml"), text).unwrap();
        let config = dockhand_config::load(
            &dir.path().join("dockhand.toml"),
            &dockhand_config::LoadOptions::default(),
        )
        .unwrap()
        .config;
        // Each secret once, sorted, whichever routes share it.
        assert_eq!(auth_secrets(&config), ["OPS", "STAFF"]);
        assert_eq!(auth_file("STAFF"), "ingress-auth-STAFF");
        assert_eq!(
            auth_target("STAFF"),
            PathBuf::from("/run/secrets/ingress-auth-STAFF")
        );
        let plan = plan_ingress(&config, "img").unwrap();
        assert_eq!(plan.auth, ["OPS", "STAFF"]);
        // Without https_listen: no file, no peer key, only the users.
        assert!(plan.files.is_empty());
        // The configuration the task reads keeps the reference, never the value.
        let sent = serde_json::to_string(&ingress_config(&config)).unwrap();
        assert!(sent.contains("${secret.STAFF}"), "{sent}");
        assert!(!sent.contains("zQ7marker"), "{sent}");
        let secrets: Vec<MountedSecret> = plan
            .auth
            .iter()
            .map(|n| MountedSecret {
                id: format!("id-{n}"),
                name: format!("shop-{}-abc", auth_file(n)),
                file: auth_file(n),
            })
            .collect();
        let spec = plan.to_spec("cfg", &secrets);
        let container = spec.task_template.clone().unwrap().container_spec.unwrap();
        let mounted = container.secrets.unwrap();
        let files: Vec<String> = mounted
            .iter()
            .map(|s| s.file.as_ref().unwrap().name.clone().unwrap())
            .collect();
        assert_eq!(files, ["ingress-auth-OPS", "ingress-auth-STAFF"]);
        // Where the task reads them: the file the spec mounts is the one `auth_target` names.
        assert_eq!(
            Path::new("/run/secrets").join(&files[1]),
            auth_target("STAFF")
        );
        assert!(mounted.iter().all(|s| {
            let f = s.file.as_ref().unwrap();
            f.mode == Some(0o400) && f.uid.as_deref() == Some("0")
        }));
        assert_eq!(mounted[1].secret_id.as_deref(), Some("id-STAFF"));
        let args = container.args.unwrap();
        assert!(!args.iter().any(|a| a == "--peer-key"), "{args:?}");
        assert!(container.env.is_none());
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("zQ7marker"), "{json}");
        // A new value is a new Swarm secret name: a new label digest, so new tasks.
        let mut rotated = secrets.clone();
        rotated[1].name = "shop-ingress-auth-STAFF-def".into();
        assert_ne!(plan.label_digest(&secrets), plan.label_digest(&rotated));
        // No route asks for basic auth: no secret.
        let plain = config_without_auth();
        assert!(plan_ingress(&plain, "img").unwrap().auth.is_empty());
    }

    fn config_without_auth() -> AppConfig {
        config("app = \"q\"\n[services.web]\nimage = \"w\"\nport = 1\nroute = { path = \"/\" }\n")
    }

    #[test]
    fn what_the_ingress_cannot_do_with_https_is_refused_with_help() {
        let refused = |extra: &str, route: &str| {
            let c = config(&format!(
                "app = \"shop\"\n[proxy]\nhttps_listen = \"0.0.0.0:443\"\n{extra}\n[services.web]\nimage = \"w\"\nport = 8080\nroute = {{ {route} }}\n"
            ));
            check_https(&c).err()
        };
        assert_eq!(refused("", "host = \"shop.example.org\""), None);
        let e = refused(
            "[proxy.acme]\nchallenge = \"tls-alpn-01\"",
            "host = \"shop.example.org\"",
        )
        .unwrap();
        assert!(
            matches!(e, crate::plan::PlanError::IngressChallenge { .. }),
            "{e}"
        );
        assert!(e.help().contains("http-01"));
        let e = refused("", "host = \"localhost\"").unwrap();
        assert!(
            matches!(e, crate::plan::PlanError::IngressLocalHost { .. }),
            "{e}"
        );
        let e = refused(
            "[proxy.acme]\ndomains = [\"*.example.org\"]\n[proxy.acme.dns]\nprovider = \"command\"\ncommand = \"./hook\"",
            "host = \"shop.example.org\"",
        )
        .unwrap();
        assert_eq!(e, crate::plan::PlanError::IngressDns);
        // Without https_listen nothing is asked of the ingress.
        let c = config("app = \"q\"\n[services.web]\nimage = \"w\"\nport = 1\nroute = { host = \"localhost\" }\n");
        assert_eq!(check_https(&c), Ok(()));
    }

    #[test]
    fn only_routing_changes_the_ingress() {
        let app = |version: &str, path: &str| {
            config(&format!(
                "app = \"shop\"\n[services.web]\nimage = \"web:{version}\"\nport = 8080\nenv = {{ VERSION = \"{version}\" }}\nroute = {{ path = \"{path}\" }}\n[services.worker]\nimage = \"w\"\n"
            ))
        };
        let a = plan_ingress(&app("v1", "/"), "img").unwrap();
        let b = plan_ingress(&app("v2", "/"), "img").unwrap();
        assert_eq!(a.digest, b.digest, "a new release's env and image");
        let c = plan_ingress(&app("v2", "/shop"), "img").unwrap();
        assert_ne!(a.digest, c.digest, "a route changed");
        assert_ne!(a.config_name, c.config_name);
        assert_eq!(a.name, "shop-ingress");
        let spec = a.to_spec("cfg-id", &[]);
        let ports = spec.endpoint_spec.unwrap().ports.unwrap();
        assert_eq!(
            ports[0].publish_mode,
            Some(models::EndpointPortConfigPublishModeEnum::HOST)
        );
        assert!(spec.mode.unwrap().global.is_some());
        // What the ingress reads survives the trip through its Swarm config, without env.
        let sent = ingress_config(&app("v1", "/"));
        let back: AppConfig = serde_json::from_slice(&serde_json::to_vec(&sent).unwrap()).unwrap();
        assert_eq!(back, sent);
        assert!(back.services["web"].env.is_empty());
        assert_eq!(
            back.services["web"].routes,
            app("v1", "/").services["web"].routes
        );
        // Nothing routed: no ingress.
        assert!(plan_ingress(
            &config("app = \"q\"\n[services.worker]\nimage = \"w\"\n"),
            "img"
        )
        .is_none());
    }
}
