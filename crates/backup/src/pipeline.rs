//! The streaming pipeline: a dump's bytes → zstd → age → SHA-256 → every target, in bounded
//! chunks, so a dump never has to fit in memory or be staged on disk. The CPU-bound middle
//! (compression, encryption, hashing) runs on one blocking thread; the source feeds it and
//! the targets drain it through bounded channels, so a slow side slows the other instead of
//! filling memory.
//!
//! [`seal`] is the pure middle (a `Read` in, chunks out). [`store`] runs the whole thing and
//! returns a [`Pending`] object: the caller judges the dump (exit code, stderr, plausible
//! size) and then commits it — completing every upload — or aborts it, which leaves no object
//! behind on any target.

use std::io::{self, Read, Write};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::crypto::Encryption;
use crate::error::{BackupError, ErrorKind, Result};
use crate::target::{Target, Upload};

/// Stored bytes are handed to the targets in chunks of this size.
pub const CHUNK: usize = 1 << 20;
/// Chunks in flight between the sealing thread and the uploads.
const DEPTH: usize = 8;
/// zstd's level: its default, fast with a good ratio.
const LEVEL: i32 = 3;
/// How long one chunk may take to be accepted by a target.
const WRITE_TIMEOUT: Duration = Duration::from_secs(300);

/// What sealing a stream produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Bytes read from the source (the dump's size).
    pub raw_bytes: u64,
    /// Bytes of the stored object (compressed and encrypted).
    pub stored_bytes: u64,
    /// SHA-256 of the stored object, hex.
    pub sha256: String,
}

/// Compresses, encrypts and hashes `input` to its end, handing the stored bytes to `out`.
/// A failure to read is a [`ErrorKind::Source`] error; a failure of `out`, a target one.
pub fn seal<R: Read>(
    input: R,
    encryption: &Encryption,
    out: impl FnMut(Bytes) -> io::Result<()>,
) -> Result<Sealed> {
    let mut reader = Counting {
        inner: input,
        n: 0,
        failed: false,
    };
    let sink = Chunks {
        buf: BytesMut::with_capacity(CHUNK),
        hasher: Sha256::new(),
        n: 0,
        out,
    };
    let classify = |e: io::Error, reading: bool| {
        if reading {
            BackupError::source(format!("reading the dump failed: {e}"))
        } else {
            BackupError::target(format!("{e}"))
        }
    };
    let age = encryption.wrap(sink)?;
    let mut zstd = zstd::stream::write::Encoder::new(age, LEVEL)
        .map_err(|e| BackupError::environment(format!("zstd: {e}")))?;
    if let Err(e) = io::copy(&mut reader, &mut zstd) {
        return Err(classify(e, reader.failed));
    }
    let age = zstd.finish().map_err(|e| classify(e, false))?;
    let mut sink = age.finish().map_err(|e| classify(e, false))?;
    sink.flush_chunk().map_err(|e| classify(e, false))?;
    Ok(Sealed {
        raw_bytes: reader.n,
        stored_bytes: sink.n,
        sha256: hex::encode(sink.hasher.finalize()),
    })
}

/// The source side of [`store`]: send the dump's bytes, then drop it. An `Err` item says the
/// source failed.
pub type Feed = mpsc::Sender<io::Result<Bytes>>;

/// A bounded channel for a source to feed [`store`].
pub fn feed() -> (Feed, mpsc::Receiver<io::Result<Bytes>>) {
    mpsc::channel(DEPTH)
}

/// An object written to its targets but not yet completed.
pub struct Pending {
    pub sealed: Sealed,
    uploads: Vec<(String, Upload)>,
    /// The targets that failed while writing, and why.
    pub failed: Vec<(String, BackupError)>,
}

impl Pending {
    /// Completes the object on every target that took it; returns the targets that hold it
    /// and those that failed (with why).
    pub async fn commit(self) -> (Vec<String>, Vec<(String, BackupError)>) {
        let mut ok = Vec::new();
        let mut failed = self.failed;
        for (name, upload) in self.uploads {
            match upload.finish().await {
                Ok(()) => ok.push(name),
                Err(e) => failed.push((name, e)),
            }
        }
        (ok, failed)
    }

    /// Abandons the object: nothing of it stays on any target.
    pub async fn abort(self) {
        for (_, upload) in self.uploads {
            upload.abort().await;
        }
    }
}

/// Streams what arrives on `input` through [`seal`] to `object` on every target. Fails when
/// the source fails or no target takes the object (every partial upload is aborted then).
pub async fn store(
    input: mpsc::Receiver<io::Result<Bytes>>,
    encryption: &Encryption,
    targets: &[Target],
    object: &str,
) -> Result<Pending> {
    let mut uploads: Vec<(String, Option<Upload>)> = Vec::new();
    let mut failed = Vec::new();
    for t in targets {
        match t.upload(object).await {
            Ok(u) => uploads.push((t.name.clone(), Some(u))),
            Err(e) => failed.push((t.name.clone(), e)),
        }
    }
    if uploads.is_empty() {
        return Err(all_failed(&failed));
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
    let encryption = encryption.clone();
    let sealing = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx: input,
            current: Bytes::new(),
        };
        seal(reader, &encryption, |chunk| {
            tx.blocking_send(chunk)
                .map_err(|_| io::Error::other("every target failed"))
        })
    });
    while let Some(chunk) = rx.recv().await {
        for (name, slot) in uploads.iter_mut() {
            let Some(upload) = slot.as_mut() else {
                continue;
            };
            let wrote = tokio::time::timeout(WRITE_TIMEOUT, upload.write(chunk.clone())).await;
            let err = match wrote {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(_) => {
                    BackupError::target(format!("no progress within {}s", WRITE_TIMEOUT.as_secs()))
                }
            };
            if let Some(upload) = slot.take() {
                upload.abort().await;
            }
            failed.push((name.clone(), err));
        }
        if uploads.iter().all(|(_, u)| u.is_none()) {
            break;
        }
    }
    drop(rx);
    let sealed = sealing
        .await
        .map_err(|e| BackupError::environment(format!("the sealing thread failed: {e}")));
    let live: Vec<(String, Upload)> = uploads
        .into_iter()
        .filter_map(|(n, u)| u.map(|u| (n, u)))
        .collect();
    let sealed = match sealed.and_then(|s| s) {
        Ok(s) if !live.is_empty() => s,
        outcome => {
            for (_, u) in live {
                u.abort().await;
            }
            return Err(match outcome {
                Err(e) if e.kind == ErrorKind::Source => e,
                _ => all_failed(&failed),
            });
        }
    };
    Ok(Pending {
        sealed,
        uploads: live,
        failed,
    })
}

fn all_failed(failed: &[(String, BackupError)]) -> BackupError {
    let why: Vec<String> = failed.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    BackupError::target(format!("no target took the backup ({})", why.join("; ")))
}

/// Counts what is read and remembers whether reading failed.
struct Counting<R> {
    inner: R,
    n: u64,
    failed: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.n += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }
}

/// Hashes what is written and hands it on in chunks.
struct Chunks<F> {
    buf: BytesMut,
    hasher: Sha256,
    n: u64,
    out: F,
}

impl<F: FnMut(Bytes) -> io::Result<()>> Chunks<F> {
    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.buf.reserve(CHUNK);
        (self.out)(chunk)
    }
}

impl<F: FnMut(Bytes) -> io::Result<()>> Write for Chunks<F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.n += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A blocking `Read` over the chunks a source sends.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{generate, parse_recipient, Decryption};
    use age::secrecy::ExposeSecret;

    #[test]
    fn sealed_bytes_open_with_age_and_zstd_and_match_their_checksum() {
        let (id, recipient) = generate();
        let enc = Encryption::Recipients(vec![parse_recipient(&recipient).unwrap()]);
        let data: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut stored = Vec::new();
        let mut chunks = 0;
        let sealed = seal(&data[..], &enc, |c| {
            assert!(c.len() <= CHUNK + 64 * 1024);
            chunks += 1;
            stored.extend_from_slice(&c);
            Ok(())
        })
        .unwrap();
        assert_eq!(sealed.raw_bytes, data.len() as u64);
        assert_eq!(sealed.stored_bytes, stored.len() as u64);
        assert!(chunks >= 1);
        assert_eq!(sealed.sha256, hex::encode(Sha256::digest(&stored)));
        let dec = Decryption::from_identities(id.expose_secret()).unwrap();
        let plain = dec.wrap(&stored[..]).unwrap();
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(plain)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn a_failing_reader_is_the_sources_fault_and_a_failing_sink_the_targets() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("pipe closed"))
            }
        }
        let (_, recipient) = generate();
        let enc = Encryption::Recipients(vec![parse_recipient(&recipient).unwrap()]);
        let e = seal(Broken, &enc, |_| Ok(())).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Source);
        let e = seal(&[0u8; 10][..], &enc, |_| {
            Err(io::Error::other("No space left"))
        })
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Target);
    }
}
