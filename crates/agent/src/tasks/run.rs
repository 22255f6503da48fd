//! One attempt of a task (or a one-off command): a process in the service's working
//! directory, or a throwaway container of the release's image, with the release's
//! environment; its output appended to the run's log file and, for `dockhand run`, streamed
//! to the client as it is written (the file is followed, so process and container runs stream
//! the same way, redacted).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use dockhand_api::{Frame, OutputStream};
use dockhand_config::{AppConfig, ServiceConfig};
use dockhand_runtime::{OneShot, OneShotOutput};
use tokio::sync::mpsc;

use crate::containers;
use crate::error::{AgentError, ErrorKind, Result};
use crate::runtimes::Runtimes;
use crate::secrets::Redactor;

/// How often a streamed run's log is read for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(50);

/// What one attempt needs.
pub(super) struct Job<'a> {
    pub runtimes: &'a Runtimes,
    pub layout: &'a crate::layout::StateLayout,
    pub redactor: &'a Redactor,
    pub config: &'a AppConfig,
    pub svc: &'a ServiceConfig,
    pub release: i64,
    /// Names the container of a container run.
    pub id: &'a str,
    pub command: &'a str,
    pub timeout: Duration,
    pub log: &'a Path,
}

/// Runs one attempt to its end or timeout; streams its output to `stream` when given.
pub(super) async fn execute(
    job: Job<'_>,
    stream: Option<&mpsc::UnboundedSender<Frame>>,
) -> Result<OneShotOutput> {
    crate::layout::ensure_parent(job.log)?;
    let start = std::fs::metadata(job.log).map(|m| m.len()).unwrap_or(0);
    let run = attempt(&job);
    let Some(tx) = stream else {
        return run.await;
    };
    let mut follower = Follower {
        offset: start,
        partial: Vec::new(),
    };
    tokio::pin!(run);
    loop {
        tokio::select! {
            out = &mut run => {
                follower.read(job.log, job.redactor, tx);
                return out;
            }
            _ = tokio::time::sleep(FOLLOW_EVERY) => follower.read(job.log, job.redactor, tx),
        }
    }
}

async fn attempt(job: &Job<'_>) -> Result<OneShotOutput> {
    let secrets = crate::secrets::load(job.config, job.redactor)?;
    let env = crate::deploy::service_env(job.config, job.svc, job.release, &secrets)?;
    let ran = match &job.svc.container {
        Some(c) => {
            let rt = job.runtimes.containers().await?;
            // The release's own build, or the image reference it was deployed with.
            let image = crate::deploy::plan::build_tag(job.svc, job.release)
                .unwrap_or_else(|| c.image.clone());
            let stamp = crate::clock::utc().format("%H%M%S%3f");
            let spec = containers::job_spec(
                job.config,
                job.svc,
                job.release,
                &format!("r{}-task-{}-{stamp}", job.release, job.id),
                &image,
                env,
                job.command,
                job.log.to_path_buf(),
            );
            rt.run_once(spec, job.timeout).await
        }
        None => {
            job.runtimes
                .process()
                .run_once(OneShot {
                    command: job.command.to_string(),
                    workdir: crate::snapshot::workdir(job.layout, job.config, job.release, job.svc),
                    env,
                    timeout: job.timeout,
                    log_path: Some(job.log.to_path_buf()),
                })
                .await
        }
    };
    ran.map_err(|e| {
        let kind = if e.is_environmental() {
            ErrorKind::Environment
        } else {
            ErrorKind::Runtime
        };
        AgentError::new(kind, format!("`{}` could not run: {e}", job.id))
    })
}

/// Appends a system line to a run's log (between attempts).
pub(super) fn note(log: &Path, text: &str) {
    use std::io::Write;
    let line = format!(
        "{} sys {text}\n",
        crate::clock::utc().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Reads what was appended to a log file since the last read and sends its output lines.
struct Follower {
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    fn read(&mut self, path: &Path, redactor: &Redactor, tx: &mpsc::UnboundedSender<Frame>) {
        let Ok(mut file) = std::fs::File::open(path) else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        let Ok(n) = file.read_to_end(&mut buf) else {
            return;
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            if let Some((stream, text)) = parse_line(&line) {
                let _ = tx.send(Frame::Output {
                    stream,
                    data: format!("{}\n", redactor.redact(text)),
                });
            }
        }
    }
}

/// `<timestamp> <out|err|sys> <text>` → the stream and text of an output line (`sys` lines
/// are the runtime's own and are not sent).
fn parse_line(line: &str) -> Option<(OutputStream, &str)> {
    let (_, rest) = line.split_once(' ')?;
    let (tag, text) = rest.split_once(' ').unwrap_or((rest, ""));
    match tag {
        "out" => Some((OutputStream::Out, text)),
        "err" => Some((OutputStream::Err, text)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_become_output_of_their_stream() {
        assert_eq!(
            parse_line("2026-01-01T00:00:00.000000Z out hello world"),
            Some((OutputStream::Out, "hello world"))
        );
        assert_eq!(
            parse_line("2026-01-01T00:00:00.000000Z err "),
            Some((OutputStream::Err, ""))
        );
        assert_eq!(
            parse_line("2026-01-01T00:00:00.000000Z sys started pid 3"),
            None
        );
    }

    #[test]
    fn the_follower_sends_whole_lines_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run.log");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let redactor = Redactor::default();
        let mut f = Follower {
            offset: 0,
            partial: Vec::new(),
        };
        std::fs::write(&log, "t out one\nt err tw").unwrap();
        f.read(&log, &redactor, &tx);
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(b"o\nt sys x\n").unwrap();
        f.read(&log, &redactor, &tx);
        f.read(&log, &redactor, &tx);
        drop(tx);
        let mut got = Vec::new();
        while let Ok(Frame::Output { stream, data }) = rx.try_recv() {
            got.push((stream, data));
        }
        assert_eq!(
            got,
            vec![
                (OutputStream::Out, "one\n".to_string()),
                (OutputStream::Err, "two\n".to_string())
            ]
        );
    }
}
