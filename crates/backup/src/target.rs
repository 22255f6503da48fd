//! Where backups are stored: a local directory or S3-compatible object storage (a custom
//! endpoint, path-style addressing, multipart uploads, retries with back-off), both through
//! `object_store`. An object is written as a multipart upload that becomes visible only when
//! completed: a local file is staged under a temporary name and renamed, an S3 upload is
//! invisible until `CompleteMultipartUpload` — so a partial object is never left behind as if
//! complete, and an aborted one leaves nothing.
//!
//! Layout under a target's root: `<app>/<backup id>/<source file>` and
//! `<app>/<backup id>/manifest.json`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, WriteMultipart};

use crate::error::{BackupError, ErrorKind, Result};

/// Multipart part size (S3's minimum is 5 MiB).
const PART: usize = 8 << 20;
/// Parts uploaded at once per object.
const CONCURRENCY: usize = 2;
/// How long a small request (a manifest, a delete, a listing) may take.
const SMALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How to reach a target, with its credentials resolved.
#[derive(Clone)]
pub enum TargetSpec {
    Local {
        name: String,
        dir: PathBuf,
    },
    S3 {
        name: String,
        bucket: String,
        /// Key prefix inside the bucket (no leading or trailing `/`).
        prefix: String,
        /// `http://127.0.0.1:9000` for MinIO, moto, Garage…; `None`: AWS.
        endpoint: Option<String>,
        region: String,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        /// Path-style addressing (`endpoint/bucket/key`), what most S3-compatible servers want.
        path_style: bool,
        /// Retries of one request, with exponential back-off.
        retries: usize,
        /// One request's timeout.
        timeout: Duration,
    },
}

impl fmt::Debug for TargetSpec {
    /// Without credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TargetSpec {
    pub fn name(&self) -> &str {
        match self {
            TargetSpec::Local { name, .. } | TargetSpec::S3 { name, .. } => name,
        }
    }

    /// Where it is, for messages (never a credential).
    pub fn describe(&self) -> String {
        match self {
            TargetSpec::Local { dir, .. } => dir.display().to_string(),
            TargetSpec::S3 {
                bucket,
                prefix,
                endpoint,
                ..
            } => {
                let at = endpoint
                    .as_deref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default();
                if prefix.is_empty() {
                    format!("s3://{bucket}{at}")
                } else {
                    format!("s3://{bucket}/{prefix}{at}")
                }
            }
        }
    }
}

/// An opened target. Cheap to clone.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub describe: String,
    store: Arc<dyn ObjectStore>,
    root: ObjPath,
    local: Option<PathBuf>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({} at {})", self.name, self.describe)
    }
}

impl Target {
    /// Opens a target (creating a local directory, owner only). Reaches nothing yet.
    pub fn open(spec: &TargetSpec) -> Result<Target> {
        let describe = spec.describe();
        match spec {
            TargetSpec::Local { name, dir } => {
                create_private_dir(dir)?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| BackupError::environment(format!("{}: {e}", dir.display())))?;
                Ok(Target {
                    name: name.clone(),
                    describe,
                    store: Arc::new(store),
                    root: ObjPath::default(),
                    local: Some(dir.clone()),
                })
            }
            TargetSpec::S3 {
                name,
                bucket,
                prefix,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                path_style,
                retries,
                timeout,
            } => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_virtual_hosted_style_request(!path_style)
                    .with_retry(object_store::RetryConfig {
                        backoff: object_store::BackoffConfig {
                            init_backoff: Duration::from_millis(200),
                            max_backoff: Duration::from_secs(10),
                            base: 2.0,
                        },
                        max_retries: *retries,
                        retry_timeout: Duration::from_secs(180),
                    })
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_timeout(*timeout)
                            .with_connect_timeout(Duration::from_secs(10))
                            .with_allow_http(true),
                    );
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(k) = access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(s) = secret_access_key {
                    b = b.with_secret_access_key(s);
                }
                let store = b.build().map_err(|e| {
                    BackupError::usage(format!("target `{name}` ({describe}): {e}"))
                })?;
                Ok(Target {
                    name: name.clone(),
                    describe,
                    store: Arc::new(store),
                    root: ObjPath::from(prefix.as_str()),
                    local: None,
                })
            }
        }
    }

    fn path(&self, rel: &str) -> ObjPath {
        let mut p = self.root.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.child(part);
        }
        p
    }

    fn err(&self, what: &str, e: object_store::Error) -> BackupError {
        let kind = match e {
            object_store::Error::NotFound { .. } => ErrorKind::Usage,
            _ => ErrorKind::Target,
        };
        let mut text = e.to_string();
        if text.contains("No space left") || text.contains("os error 28") {
            text.push_str("; the disk is full: free space or prune old backups");
        }
        BackupError::new(
            kind,
            format!("target `{}` ({}): {what}: {text}", self.name, self.describe),
        )
    }

    /// Starts writing object `rel`.
    pub async fn upload(&self, rel: &str) -> Result<Upload> {
        let path = self.path(rel);
        let started = tokio::time::timeout(SMALL_TIMEOUT, self.store.put_multipart(&path)).await;
        let upload = match started {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => return Err(self.err(&format!("cannot start writing {rel}"), e)),
            Err(_) => {
                return Err(BackupError::target(format!(
                    "target `{}` ({}): no answer within {}s",
                    self.name,
                    self.describe,
                    SMALL_TIMEOUT.as_secs()
                )))
            }
        };
        Ok(Upload {
            target: self.clone(),
            rel: rel.to_string(),
            writer: WriteMultipart::new_with_chunk_size(upload, PART),
        })
    }

    /// Writes a small object whole.
    pub async fn put_small(&self, rel: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(rel);
        let put = self.store.put(&path, bytes.into());
        match tokio::time::timeout(SMALL_TIMEOUT, put).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.err(&format!("cannot write {rel}"), e)),
            Err(_) => Err(self.timeout()),
        }
    }

    /// Reads a small object whole.
    pub async fn get_small(&self, rel: &str) -> Result<Bytes> {
        let get = async {
            let r = self.store.get(&self.path(rel)).await?;
            r.bytes().await
        };
        match tokio::time::timeout(SMALL_TIMEOUT, get).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(self.err(&format!("cannot read {rel}"), e)),
            Err(_) => Err(self.timeout()),
        }
    }

    /// Streams object `rel` into a local file (created 0600), returning its size. Each chunk
    /// must arrive within the request timeout.
    pub async fn download(&self, rel: &str, to: &Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let got = tokio::time::timeout(SMALL_TIMEOUT, self.store.get(&self.path(rel))).await;
        let got = match got {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => return Err(self.err(&format!("cannot read {rel}"), e)),
            Err(_) => return Err(self.timeout()),
        };
        let mut file = private_file(to).await?;
        let mut stream = got.into_stream();
        let mut n = 0u64;
        loop {
            let next = tokio::time::timeout(SMALL_TIMEOUT, stream.next()).await;
            match next {
                Ok(Some(Ok(chunk))) => {
                    n += chunk.len() as u64;
                    file.write_all(&chunk).await.map_err(|e| {
                        crate::error::io(format_args!("failed to write {}", to.display()), e)
                    })?;
                }
                Ok(Some(Err(e))) => return Err(self.err(&format!("cannot read {rel}"), e)),
                Ok(None) => break,
                Err(_) => return Err(self.timeout()),
            }
        }
        file.flush()
            .await
            .map_err(|e| crate::error::io(format_args!("failed to write {}", to.display()), e))?;
        Ok(n)
    }

    /// The path of a stored object on disk, for a local target (read in place).
    pub fn local_file(&self, rel: &str) -> Option<PathBuf> {
        self.local.as_ref().map(|d| d.join(rel))
    }

    /// Deletes every object under `dir` (a backup's directory), and for a local target the
    /// directory itself with any staging file a killed upload left.
    pub async fn delete_dir(&self, dir: &str) -> Result<()> {
        if let Some(local) = &self.local {
            let path = local.join(dir);
            return match std::fs::remove_dir_all(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(crate::error::io(
                    format_args!("failed to remove {}", path.display()),
                    e,
                )),
            };
        }
        let prefix = self.path(dir);
        let list = async {
            let mut names = Vec::new();
            let mut s = self.store.list(Some(&prefix));
            while let Some(meta) = s.next().await {
                names.push(meta?.location);
            }
            for name in names {
                match self.store.delete(&name).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(SMALL_TIMEOUT, list).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.err(&format!("cannot delete {dir}"), e)),
            Err(_) => Err(self.timeout()),
        }
    }

    /// The directories (backup ids) under `app`, from the manifests stored there.
    pub async fn list_backups(&self, app: &str) -> Result<Vec<String>> {
        let prefix = self.path(app);
        let list = async {
            let mut ids = Vec::new();
            let mut s = self.store.list(Some(&prefix));
            while let Some(meta) = s.next().await {
                let meta = meta?;
                let parts: Vec<String> = meta
                    .location
                    .parts()
                    .map(|p| p.as_ref().to_string())
                    .collect();
                if parts.last().map(String::as_str) == Some(crate::manifest::MANIFEST)
                    && parts.len() >= 2
                {
                    ids.push(parts[parts.len() - 2].clone());
                }
            }
            Ok::<_, object_store::Error>(ids)
        };
        match tokio::time::timeout(SMALL_TIMEOUT, list).await {
            Ok(Ok(mut ids)) => {
                ids.sort();
                Ok(ids)
            }
            Ok(Err(e)) => Err(self.err("cannot list backups", e)),
            Err(_) => Err(self.timeout()),
        }
    }

    /// Every backup stored here, of any app: `(app, id)` from the manifests, oldest first.
    pub async fn all_backups(&self) -> Result<Vec<(String, String)>> {
        let list = async {
            let mut out = Vec::new();
            let mut s = self.store.list(Some(&self.root));
            while let Some(meta) = s.next().await {
                let meta = meta?;
                let parts: Vec<String> = meta
                    .location
                    .parts()
                    .map(|p| p.as_ref().to_string())
                    .collect();
                if parts.len() >= 3 && parts[parts.len() - 1] == crate::manifest::MANIFEST {
                    out.push((
                        parts[parts.len() - 3].clone(),
                        parts[parts.len() - 2].clone(),
                    ));
                }
            }
            Ok::<_, object_store::Error>(out)
        };
        match tokio::time::timeout(SMALL_TIMEOUT, list).await {
            Ok(Ok(mut v)) => {
                v.sort_by(|a, b| a.1.cmp(&b.1));
                Ok(v)
            }
            Ok(Err(e)) => Err(self.err("cannot list backups", e)),
            Err(_) => Err(self.timeout()),
        }
    }

    /// The names of the objects directly under `dir` (none when it does not exist).
    pub async fn list_names(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = self.path(dir);
        let list = async {
            let listed = self.store.list_with_delimiter(Some(&prefix)).await;
            match listed {
                Ok(l) => Ok(l
                    .objects
                    .into_iter()
                    .filter_map(|m| m.location.filename().map(str::to_string))
                    .collect::<Vec<_>>()),
                Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                Err(e) => Err(e),
            }
        };
        match tokio::time::timeout(SMALL_TIMEOUT, list).await {
            Ok(Ok(mut names)) => {
                names.sort();
                Ok(names)
            }
            Ok(Err(e)) => Err(self.err(&format!("cannot list {dir}"), e)),
            Err(_) => Err(self.timeout()),
        }
    }

    /// Deletes one object; a missing one is no error.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match tokio::time::timeout(SMALL_TIMEOUT, self.store.delete(&self.path(rel))).await {
            Ok(Ok(())) | Ok(Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(self.err(&format!("cannot delete {rel}"), e)),
            Err(_) => Err(self.timeout()),
        }
    }

    /// Whether the target answers (and, for a local one, is writable): for `dockhand check`.
    pub async fn check(&self) -> Result<()> {
        let probe = format!(".dockhand-check-{}", std::process::id());
        self.put_small(&probe, Bytes::from_static(b"ok")).await?;
        match tokio::time::timeout(SMALL_TIMEOUT, self.store.delete(&self.path(&probe))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.err("cannot delete a test object", e)),
            Err(_) => Err(self.timeout()),
        }
    }

    fn timeout(&self) -> BackupError {
        BackupError::target(format!(
            "target `{}` ({}): no answer within {}s",
            self.name,
            self.describe,
            SMALL_TIMEOUT.as_secs()
        ))
    }
}

/// An object being written to one target.
pub struct Upload {
    target: Target,
    rel: String,
    writer: WriteMultipart,
}

impl Upload {
    /// Writes a chunk once fewer than [`CONCURRENCY`] parts are in flight.
    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.writer
            .wait_for_capacity(CONCURRENCY)
            .await
            .map_err(|e| self.target.err(&format!("cannot write {}", self.rel), e))?;
        self.writer.put(chunk);
        Ok(())
    }

    /// Completes the object: from now on it exists, whole.
    pub async fn finish(self) -> Result<()> {
        let Upload {
            target,
            rel,
            writer,
        } = self;
        match tokio::time::timeout(SMALL_TIMEOUT, writer.finish()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(target.err(&format!("cannot complete {rel}"), e)),
            Err(_) => Err(target.timeout()),
        }
    }

    /// Abandons the object; nothing of it stays.
    pub async fn abort(self) {
        let _ = tokio::time::timeout(SMALL_TIMEOUT, self.writer.abort()).await;
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| crate::error::io(format_args!("failed to create {}", dir.display()), e))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    Ok(())
}

/// Creates (truncating) a file readable by its owner only.
pub(crate) async fn private_file(path: &Path) -> Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|e| crate::error::io(format_args!("failed to create {}", path.display()), e))
}
