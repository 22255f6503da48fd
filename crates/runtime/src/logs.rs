//! Writing instance logs: one writer per log file, shared by the stdout and stderr capture
//! tasks and the supervisor, so lines never interleave mid-line; size-based rotation.
//!
//! A line on disk is `<RFC 3339 UTC with micros> <out|err|sys> <text>\n`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::logread::Stream;
use crate::spec::{rfc3339, LogRotation};

/// Longest line kept; longer output is split into several lines.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// A log file with rotation. Share it as [`SharedLog`].
pub(crate) struct LogWriter {
    path: PathBuf,
    rotation: LogRotation,
    file: Option<File>,
    size: u64,
    warned: bool,
}

pub(crate) type SharedLog = Arc<Mutex<LogWriter>>;

impl LogWriter {
    /// Opens (creating it and its directory) the log file for appending.
    pub(crate) fn open(path: &Path, rotation: LogRotation) -> io::Result<LogWriter> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir)?;
            }
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            rotation,
            file: Some(file),
            size,
            warned: false,
        })
    }

    pub(crate) fn shared(self) -> SharedLog {
        Arc::new(Mutex::new(self))
    }

    /// Appends one line, rotating first when it would push the file past `max_bytes`.
    /// Failures are reported once through `tracing` and otherwise ignored: a full disk must not
    /// stop the instance.
    pub(crate) fn write_line(&mut self, stream: Stream, text: &str) {
        let line = format!("{} {} {}\n", rfc3339(SystemTime::now()), stream.tag(), text);
        if let Err(err) = self.try_write(line.as_bytes()) {
            if !self.warned {
                self.warned = true;
                tracing::warn!(path = %self.path.display(), error = %err, "failed to write log");
            }
        }
    }

    fn try_write(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.rotation.max_bytes {
            self.rotate()?;
        }
        if self.file.is_none() {
            let file = open_append(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("log file is open");
        file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let keep = self.rotation.keep;
        if keep == 0 {
            remove_if_exists(&self.path)?;
        } else {
            remove_if_exists(&rotated(&self.path, keep))?;
            for n in (1..keep).rev() {
                rename_if_exists(&rotated(&self.path, n), &rotated(&self.path, n + 1))?;
            }
            rename_if_exists(&self.path, &rotated(&self.path, 1))?;
        }
        self.size = 0;
        Ok(())
    }
}

/// Writes one line through a shared writer.
pub(crate) fn write_shared(log: &SharedLog, stream: Stream, text: &str) {
    let mut w = log.lock().unwrap_or_else(|e| e.into_inner());
    w.write_line(stream, text);
}

/// `log.<n>`: the n-th rotated file (1 is the newest).
pub(crate) fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Copies lines from `reader` into `log` (and hands each to `also`) until end of file.
pub(crate) async fn capture<R, F>(reader: R, stream: Stream, log: Option<SharedLog>, mut also: F)
where
    R: AsyncRead + Unpin,
    F: FnMut(Stream, &str),
{
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_capped_line(&mut reader, &mut buf, MAX_LINE).await {
            Ok(false) => break,
            Ok(true) => {
                let text = String::from_utf8_lossy(&buf);
                let text = text.strip_suffix('\r').unwrap_or(&text);
                if let Some(log) = &log {
                    write_shared(log, stream, text);
                }
                also(stream, text);
            }
            Err(err) => {
                tracing::debug!(error = %err, "log capture ended");
                break;
            }
        }
    }
}

/// Reads one line (without its `\n`) into `buf`, at most `cap` bytes; a longer line is returned
/// in pieces. Returns false at end of input with nothing read.
async fn read_capped_line<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<bool> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(!buf.is_empty());
        }
        let room = cap - buf.len();
        // Look one byte past the room so a line of exactly `cap` bytes keeps its newline.
        let search = &available[..available.len().min(room + 1)];
        if let Some(i) = search.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&available[..i]);
            reader.consume(i + 1);
            return Ok(true);
        }
        let n = available.len().min(room);
        buf.extend_from_slice(&available[..n]);
        reader.consume(n);
        if buf.len() >= cap {
            if reader.fill_buf().await?.first() == Some(&b'\n') {
                reader.consume(1);
            }
            return Ok(true);
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_split_at_the_cap() {
        let input: &[u8] = b"abcdefghij\nxy\n\nlast\nwxyz\n1234";
        let mut r = BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while read_capped_line(&mut r, &mut buf, 4).await.unwrap() {
            out.push(String::from_utf8(buf.clone()).unwrap());
            buf.clear();
        }
        assert_eq!(
            out,
            ["abcd", "efgh", "ij", "xy", "", "last", "wxyz", "1234"]
        );
    }
}
