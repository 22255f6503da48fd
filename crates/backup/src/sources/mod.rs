//! The sources a backup dumps and a restore or drill puts back, one module per kind:
//! PostgreSQL, MariaDB and MySQL, MongoDB and Redis inside their containers (`exec`, streamed), SQLite through the online
//! backup API, Docker volumes through a helper container, host directories and the app's own
//! files as tar streams. Each dump is a [`Dump`]: its raw bytes on a bounded channel, and a
//! future that says how the dumping program ended.

pub mod files;
pub mod mariadb;
pub mod mongodb;
pub mod postgres;
pub mod redis;
pub mod scratch;
pub mod sqlite;
pub mod volume;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use dockhand_runtime::{ContainerRuntime, ExecEnd};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::error::{BackupError, Result};
use crate::manifest::SourceKind;

/// A boxed future of how a dump ended: `Err` says why it failed.
pub type Ending = Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send>>;

/// A dump in progress.
pub struct Dump {
    pub kind: SourceKind,
    /// The raw bytes.
    pub bytes: mpsc::Receiver<io::Result<Bytes>>,
    /// Resolves when the dumping program ended.
    pub ending: Ending,
}

/// What is known about a source when it is dumped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub version: String,
    pub image: String,
    pub source_bytes: Option<u64>,
    pub counts: BTreeMap<String, u64>,
}

/// What dumps, drills and restores of container sources act through.
#[derive(Clone)]
pub struct Docker<'a> {
    pub rt: &'a ContainerRuntime,
    pub app: &'a str,
    /// The app's Docker network (a drill's scratch database joins nothing; a volume helper none).
    pub network: &'a str,
    /// The image with `sh` and `tar` for volume helpers.
    pub helper_image: &'a str,
    /// The longest one dump or restore may take.
    pub timeout: Duration,
}

/// Runs `cmd` in `container` to its end; its stdout, or why it failed (with stderr).
pub(crate) async fn exec_text(
    rt: &ContainerRuntime,
    container: &str,
    cmd: &[&str],
    env: &[(String, String)],
    user: Option<&str>,
    timeout: Duration,
) -> Result<String> {
    let pipe = rt
        .exec_pipe(
            container,
            cmd.iter().map(|s| s.to_string()).collect(),
            env.to_vec(),
            user,
            false,
            timeout,
        )
        .await?;
    let (_, mut out, done) = pipe.into_parts();
    let mut text = Vec::new();
    while let Some(chunk) = out.recv().await {
        if text.len() < 16 << 20 {
            text.extend_from_slice(&chunk);
        }
    }
    let end = done.wait().await;
    let program = program_of(cmd);
    match judge_end(program, &end) {
        None => Ok(String::from_utf8_lossy(&text).into_owned()),
        Some(why) => Err(BackupError::source(why)),
    }
}

/// The program a command runs, for messages: a shell wrapper `sh -c SCRIPT NAME ARGS…` whose
/// `$0` is not `sh` runs NAME (the wrapper prepares what NAME needs, then runs `"$0" "$@"`).
fn program_of<S: AsRef<str>>(cmd: &[S]) -> &str {
    match cmd {
        [sh, c, _, name, ..]
            if sh.as_ref() == "sh" && c.as_ref() == "-c" && name.as_ref() != "sh" =>
        {
            name.as_ref()
        }
        [first, ..] => first.as_ref(),
        [] => "",
    }
}

/// Why a command failed, from how it ended (exit code, timeout), if it did.
pub(crate) fn judge_end(program: &str, end: &ExecEnd) -> Option<String> {
    let stderr = last_lines(&end.stderr, 3);
    match (end.timed_out, end.code) {
        (true, _) => Some(format!("`{program}` did not finish in time{stderr}")),
        (false, Some(0)) => None,
        (false, Some(c)) => Some(format!("`{program}` exited with {c}{stderr}")),
        (false, None) => Some(format!("`{program}` was killed{stderr}")),
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    format!(": {}", lines[lines.len().saturating_sub(n)..].join(" / "))
}

/// Starts `cmd` in `container` and turns its stdout into a [`Dump`]; the ending judges its
/// exit code and the engine errors on its stderr.
pub(crate) async fn exec_dump(
    rt: &ContainerRuntime,
    kind: SourceKind,
    container: &str,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    user: Option<&str>,
    timeout: Duration,
) -> Result<Dump> {
    let program = program_of(&cmd).to_string();
    let pipe = rt
        .exec_pipe(container, cmd, env, user, false, timeout)
        .await?;
    let (_, mut out, done) = pipe.into_parts();
    let (tx, rx) = crate::pipeline::feed();
    let forward = tokio::spawn(async move {
        while let Some(chunk) = out.recv().await {
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    let ending: Ending = Box::pin(async move {
        let end = done.wait().await;
        let _ = forward.await;
        if let Some(why) = judge_end(&program, &end) {
            return Err(why);
        }
        if let Some(line) = crate::checks::engine_error(kind, &end.stderr) {
            return Err(format!("`{program}` reported an error: {line}"));
        }
        Ok(())
    });
    Ok(Dump {
        kind,
        bytes: rx,
        ending,
    })
}

/// Streams a plaintext reader (a decrypted, decompressed backup) into `cmd`'s stdin in
/// `container`; fails unless it exits 0 (engine errors on stderr fail it too, when `strict`).
pub(crate) async fn exec_restore(
    rt: &ContainerRuntime,
    container: &str,
    cmd: Vec<String>,
    env: Vec<(String, String)>,
    user: Option<&str>,
    input: mpsc::Receiver<io::Result<Bytes>>,
    timeout: Duration,
) -> Result<ExecEnd> {
    let program = program_of(&cmd).to_string();
    let pipe = rt
        .exec_pipe(container, cmd, env, user, true, timeout)
        .await?;
    let (stdin, mut out, done) = pipe.into_parts();
    let drain = tokio::spawn(async move { while out.recv().await.is_some() {} });
    let mut stdin = stdin.ok_or_else(|| BackupError::restore("no stdin to restore through"))?;
    let mut input = input;
    let mut failed = None;
    while let Some(chunk) = input.recv().await {
        match chunk {
            Ok(b) => {
                if let Err(e) = stdin.write_all(&b).await {
                    failed = Some(format!("`{program}` stopped reading its input: {e}"));
                    break;
                }
            }
            Err(e) => {
                failed = Some(format!("reading the backup failed: {e}"));
                break;
            }
        }
    }
    let _ = stdin.shutdown().await;
    drop(stdin);
    let end = done.wait().await;
    let _ = drain.await;
    if let Some(why) = judge_end(&program, &end) {
        return Err(BackupError::restore(why));
    }
    if let Some(why) = failed {
        return Err(BackupError::restore(why));
    }
    Ok(end)
}

/// A bounded channel fed from a blocking reader on its own thread (the plaintext of a
/// backup), for restores that stream into a container.
pub fn reader_feed(
    mut reader: impl io::Read + Send + 'static,
) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = crate::pipeline::feed();
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// A writer that sends what is written as chunks on a channel (a tar builder's output).
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub(crate) fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(256 * 1024),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(256 * 1024),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::other("the backup stopped reading"))
    }
}

impl io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 * 1024 {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Creates `dir` (owner only) for scratch files.
pub(crate) fn scratch_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| crate::error::io(format_args!("failed to create {}", dir.display()), e))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    Ok(())
}

/// Compares row counts recorded at dump time with those of a restored copy; the differences,
/// one line each.
pub fn compare_counts(
    recorded: &BTreeMap<String, u64>,
    restored: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (table, want) in recorded {
        match restored.get(table) {
            Some(got) if got == want => {}
            Some(got) => out.push(format!("{table}: {got} row(s), {want} at dump time")),
            None => out.push(format!("{table}: missing ({want} row(s) at dump time)")),
        }
    }
    for table in restored.keys().filter(|t| !recorded.contains_key(*t)) {
        out.push(format!("{table}: not in the dump's record"));
    }
    out
}
