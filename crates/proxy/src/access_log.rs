//! The access log: one line per request (JSON or the combined format) with time, client, host,
//! method, path, status, bytes, upstream and total time, request id, service and backend.
//! Off by default. Workers format the line and hand it to one writer thread over a bounded
//! channel (a full channel drops the line and counts it, so a slow disk never slows requests);
//! the writer appends to a file rotated by size, or to stdout.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

/// Lines waiting for the writer at most.
const QUEUE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    /// One JSON object per line.
    Json,
    /// Apache/nginx "combined" plus request time, request id, service and backend.
    Combined,
}

/// Where and how requests are logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// A file (rotated at `max_bytes`, `keep` old files), or stdout when `None`.
    pub path: Option<PathBuf>,
    pub format: AccessFormat,
    pub max_bytes: u64,
    pub keep: usize,
}

/// One request as logged.
pub(crate) struct Entry<'a> {
    pub(crate) client: &'a str,
    pub(crate) host: &'a str,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) bytes: Option<u64>,
    pub(crate) upstream_ms: f64,
    pub(crate) total_ms: f64,
    pub(crate) request_id: &'a str,
    pub(crate) service: &'a str,
    pub(crate) backend: Option<u64>,
    pub(crate) user_agent: &'a str,
    pub(crate) referer: &'a str,
}

/// The handle workers log through.
#[derive(Debug)]
pub(crate) struct AccessLog {
    tx: SyncSender<String>,
    format: AccessFormat,
    pub(crate) dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Opens the file (or stdout) and starts the writer thread.
    pub(crate) fn start(config: &AccessLogConfig) -> io::Result<AccessLog> {
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let out = match &config.path {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                Sink::File(Rotating::open(path, config.max_bytes, config.keep)?)
            }
            None => Sink::Stdout,
        };
        std::thread::Builder::new()
            .name("dockhand-access-log".into())
            .spawn(move || write_loop(rx, out))?;
        Ok(AccessLog {
            tx,
            format: config.format,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    pub(crate) fn record(&self, e: &Entry<'_>) {
        let line = match self.format {
            AccessFormat::Json => json_line(e),
            AccessFormat::Combined => combined_line(e),
        };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn now_rfc3339() -> String {
    let t = crate::clock::wall();
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // UTC, millisecond precision, without a date crate: civil-from-days (H. Hinnant).
    let ms = (secs % 1000) as u64;
    let s = (secs / 1000) as i64;
    let days = s.div_euclid(86_400);
    let rem = s.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(crate) fn json_line(e: &Entry<'_>) -> String {
    let mut o = String::with_capacity(256);
    o.push_str("{\"time\":");
    json_str(&mut o, &now_rfc3339());
    for (k, v) in [
        ("client", e.client),
        ("host", e.host),
        ("method", e.method),
        ("path", e.path),
    ] {
        o.push_str(&format!(",\"{k}\":"));
        json_str(&mut o, v);
    }
    o.push_str(&format!(",\"status\":{}", e.status));
    match e.bytes {
        Some(b) => o.push_str(&format!(",\"bytes\":{b}")),
        None => o.push_str(",\"bytes\":null"),
    }
    o.push_str(&format!(
        ",\"upstream_ms\":{:.3},\"total_ms\":{:.3}",
        e.upstream_ms, e.total_ms
    ));
    for (k, v) in [
        ("request_id", e.request_id),
        ("service", e.service),
        ("user_agent", e.user_agent),
        ("referer", e.referer),
    ] {
        o.push_str(&format!(",\"{k}\":"));
        json_str(&mut o, v);
    }
    match e.backend {
        Some(b) => o.push_str(&format!(",\"backend\":{b}")),
        None => o.push_str(",\"backend\":null"),
    }
    o.push('}');
    o
}

pub(crate) fn combined_line(e: &Entry<'_>) -> String {
    let clean = |s: &str| s.replace(['"', '\n', '\r'], "_");
    format!(
        "{} - - [{}] \"{} {} HTTP/1.1\" {} {} \"{}\" \"{}\" {:.3} {} {} {}",
        e.client,
        httpdate::fmt_http_date(crate::clock::wall()),
        clean(e.method),
        clean(e.path),
        e.status,
        e.bytes.map_or("-".to_string(), |b| b.to_string()),
        clean(e.referer),
        clean(e.user_agent),
        e.total_ms / 1000.0,
        clean(e.request_id),
        if e.service.is_empty() { "-" } else { e.service },
        e.backend.map_or("-".to_string(), |b| b.to_string()),
    )
}

enum Sink {
    Stdout,
    File(Rotating),
}

/// How long the writer lets lines gather after the first of a batch. The writer then sleeps
/// rather than waits on the channel, so a request's line is a push into the queue and nothing
/// more: no worker wakes the writer, and the file gets one write per window, not one per line
/// (bench: rate limiting and the access log). The queue holds 16 K lines, 800 K lines/s for a
/// window; an idle proxy costs nothing (the writer waits on the channel again).
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(20);

fn write_loop(rx: Receiver<String>, mut out: Sink) {
    while let Ok(line) = rx.recv() {
        std::thread::sleep(BATCH_WINDOW);
        let mut batch = vec![line];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= QUEUE {
                break;
            }
        }
        let result = match &mut out {
            Sink::Stdout => {
                let mut stdout = io::stdout().lock();
                batch
                    .iter()
                    .try_for_each(|l| writeln!(stdout, "{l}"))
                    .and_then(|()| stdout.flush())
            }
            Sink::File(f) => f.write_batch(&batch),
        };
        if let Err(e) = result {
            tracing::warn!("access log: {e}");
        }
    }
}

/// A file rotated by size: `access.log` → `access.log.1` → … → `access.log.<keep>`.
struct Rotating {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max: u64,
    keep: usize,
}

impl Rotating {
    fn open(path: &Path, max: u64, keep: usize) -> io::Result<Rotating> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            size,
            max: max.max(4096),
            keep,
        })
    }

    fn write_batch(&mut self, lines: &[String]) -> io::Result<()> {
        for l in lines {
            if self.size >= self.max {
                self.rotate()?;
            }
            self.file.write_all(l.as_bytes())?;
            self.file.write_all(b"\n")?;
            self.size += l.len() as u64 + 1;
        }
        self.file.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let numbered = |n: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }
}

/// What is known of a request before it is served (owned: the head goes away).
pub(crate) struct Pending {
    client: String,
    host: String,
    method: String,
    path: String,
    user_agent: String,
    referer: String,
    started: std::time::Instant,
}

/// What is known of the response once its head is ready.
pub(crate) struct Answered {
    pending: Pending,
    status: u16,
    bytes: Option<u64>,
    request_id: String,
    served: Option<crate::forward::ServedBy>,
    upstream_ms: f64,
}

impl Pending {
    pub(crate) fn new<'a>(
        client: &[u8],
        method: &[u8],
        path: &str,
        lines: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Pending {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut p = Pending {
            client: text(client),
            host: String::new(),
            method: text(method),
            path: path.to_string(),
            user_agent: String::new(),
            referer: String::new(),
            started: std::time::Instant::now(),
        };
        for (n, v) in lines {
            if n.eq_ignore_ascii_case(b"host") && p.host.is_empty() {
                p.host = text(v);
            } else if n.eq_ignore_ascii_case(b"user-agent") {
                p.user_agent = text(v);
            } else if n.eq_ignore_ascii_case(b"referer") {
                p.referer = text(v);
            }
        }
        p
    }

    pub(crate) fn answered<B: http_body::Body>(self, response: &http::Response<B>) -> Answered {
        let bytes = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .or_else(|| response.body().size_hint().exact());
        Answered {
            status: response.status().as_u16(),
            bytes,
            request_id: response
                .headers()
                .get(&crate::headers::X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            served: response
                .extensions()
                .get::<crate::forward::ServedBy>()
                .cloned(),
            upstream_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            pending: self,
        }
    }
}

impl Answered {
    pub(crate) fn record(self, log: &AccessLog) {
        let p = &self.pending;
        log.record(&Entry {
            client: &p.client,
            host: &p.host,
            method: &p.method,
            path: &p.path,
            status: self.status,
            bytes: self.bytes,
            upstream_ms: self.upstream_ms,
            total_ms: p.started.elapsed().as_secs_f64() * 1000.0,
            request_id: &self.request_id,
            service: self.served.as_ref().map_or("", |s| s.service.as_str()),
            backend: self.served.as_ref().and_then(|s| s.backend),
            user_agent: &p.user_agent,
            referer: &p.referer,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            client: "203.0.113.9",
            host: "shop.example.org",
            method: "GET",
            path: "/a?\"b\"",
            status: 200,
            bytes: Some(12),
            upstream_ms: 1.5,
            total_ms: 2.25,
            request_id: "abc",
            service: "web",
            backend: Some(7),
            user_agent: "curl/8",
            referer: "",
        }
    }

    #[test]
    fn json_lines_parse_and_escape() {
        let line = json_line(&entry());
        assert!(line.starts_with("{\"time\":\"20"), "{line}");
        assert!(line.contains("\"path\":\"/a?\\\"b\\\"\""), "{line}");
        assert!(
            line.contains("\"status\":200,\"bytes\":12,\"upstream_ms\":1.500"),
            "{line}"
        );
        assert!(line.ends_with("\"backend\":7}"), "{line}");
    }

    #[test]
    fn combined_lines_follow_the_format() {
        let line = combined_line(&entry());
        assert!(line.starts_with("203.0.113.9 - - ["), "{line}");
        assert!(
            line.contains("] \"GET /a?_b_ HTTP/1.1\" 200 12 \"\" \"curl/8\" 0.002 abc web 7"),
            "{line}"
        );
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }

    #[test]
    fn files_rotate_by_size_keeping_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut r = Rotating::open(&path, 4096, 2).unwrap();
        let line = "x".repeat(1000);
        for _ in 0..20 {
            r.write_batch(std::slice::from_ref(&line)).unwrap();
        }
        assert!(path.exists());
        assert!(dir.path().join("access.log.1").exists());
        assert!(dir.path().join("access.log.2").exists());
        assert!(!dir.path().join("access.log.3").exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096 + 1001);
    }
}
