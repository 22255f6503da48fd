//! Following a log file as it grows (`dockhand logs -f`), across rotations: when the path
//! names a new file, the rest of the old one is read first, then the new one from its start.

use std::io::{self, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::logread::LogLine;

/// How often the file is checked for new data.
const POLL: Duration = Duration::from_millis(100);

/// Sends every line appended to `path` to `tx` until `tx` is closed. With `from_end` only lines
/// written after the call are sent, otherwise the current file is sent from its start first.
/// A file that does not exist yet is waited for. Returns an error only when the file cannot be
/// read at all.
pub async fn follow_log(path: &Path, from_end: bool, tx: mpsc::Sender<LogLine>) -> io::Result<()> {
    let mut skip_existing = from_end;
    let mut current: Option<(File, u64)> = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while !tx.is_closed() {
        if current.is_none() {
            match File::open(path).await {
                Ok(mut f) => {
                    let ino = f.metadata().await?.ino();
                    if skip_existing {
                        f.seek(SeekFrom::End(0)).await?;
                    }
                    current = Some((f, ino));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            // Whatever appears after the first open is new.
            skip_existing = false;
        }
        let Some((file, ino)) = current.as_mut() else {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = tx.closed() => {}
            }
            continue;
        };
        let n = file.read(&mut chunk).await?;
        if n > 0 {
            pending.extend_from_slice(&chunk[..n]);
            if !send_complete_lines(&mut pending, &tx).await {
                return Ok(());
            }
            continue;
        }
        // At the end of the file we hold: has the path moved on to a new file?
        let rotated = match tokio::fs::metadata(path).await {
            Ok(meta) => meta.ino() != *ino || meta.len() < file.stream_position().await?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if rotated {
            // Lines may have reached the old file after the read above: drain it.
            loop {
                let n = file.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&chunk[..n]);
            }
            // A partial last line of a rotated file will not be completed.
            if !pending.is_empty() {
                if pending.last() != Some(&b'\n') {
                    pending.push(b'\n');
                }
                if !send_complete_lines(&mut pending, &tx).await {
                    return Ok(());
                }
            }
            current = None;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => {}
        }
    }
    Ok(())
}

/// Sends the complete lines at the front of `pending`; false once the receiver is gone.
async fn send_complete_lines(pending: &mut Vec<u8>, tx: &mpsc::Sender<LogLine>) -> bool {
    let Some(last_nl) = pending.iter().rposition(|&b| b == b'\n') else {
        return true;
    };
    let rest = pending.split_off(last_nl + 1);
    let complete = std::mem::replace(pending, rest);
    for raw in complete[..complete.len() - 1].split(|&b| b == b'\n') {
        let line = LogLine::parse(&String::from_utf8_lossy(raw));
        if tx.send(line).await.is_err() {
            return false;
        }
    }
    true
}
