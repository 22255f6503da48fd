//! Static sites served by the proxy itself, with no process behind them.
//!
//! A [`StaticSite`] is a directory that never changes while it is served: the agent copies
//! a release's files into a directory of their own before the release is swapped in, so the
//! site is indexed once when it is loaded — every file's length, dates, `ETag`, content type,
//! cache rule and precompressed `.br`/`.gz` siblings, and the contents of small files — and
//! a request is a lookup in that index. A request path is never joined to the file system:
//! a name that is not in the index does not exist, so `..`, encoded separators, absolute
//! paths and symlinks that leave the root (skipped while indexing) cannot reach outside it.
//! Bad forms are still answered 400 rather than 404, so probes show up as such.
//!
//! Served: `GET` and `HEAD`; `index.html` for directories (a directory without its trailing
//! `/` is redirected to it); an optional SPA fallback for paths without a file extension;
//! an optional 404 page; `If-None-Match`/`If-Modified-Since` (304); one `Range` (206/416,
//! with `If-Range`); the `.br` or `.gz` sibling when the client accepts it.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{FileSlice, ResponseBody};

/// Files up to this size are kept in memory.
const MEMORY_FILE: u64 = 256 * 1024;
/// At most this much of a site is kept in memory; larger files are read per request.
const MEMORY_SITE: u64 = 64 * 1024 * 1024;
/// Directory depth and file count limits while indexing.
const MAX_DEPTH: usize = 64;
const MAX_FILES: usize = 1_000_000;
/// Chunk size for files read per request.
pub(crate) const FILE_CHUNK: usize = 128 * 1024;
/// Files from this size keep a descriptor open in the index, so that plain HTTP sends them from
/// the page cache with `sendfile(2)` (no copy through user space, no `open(2)` per request),
/// held in memory or not. Below it, one write of the head and the bytes costs less than the
/// extra system call.
pub(crate) const SENDFILE_FROM: u64 = 64 * 1024;
/// At most this many descriptors kept open per site (a deploy holds two sites for a moment);
/// larger files past it are opened per request.
const HELD_FILES: usize = 512;

/// How a static site answers; plain data from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticOptions {
    /// The file served for a directory (`index.html`).
    pub index: String,
    /// Served (status 200) for a path without a file extension that matches no file: the SPA
    /// fallback, e.g. `/index.html`.
    pub fallback: Option<String>,
    /// Served with status 404 for a path that matches nothing, e.g. `/404.html`.
    pub not_found: Option<String>,
    pub cache: CacheRules,
}

impl Default for StaticOptions {
    fn default() -> StaticOptions {
        StaticOptions {
            index: "index.html".into(),
            fallback: None,
            not_found: None,
            cache: CacheRules::default(),
        }
    }
}

/// `Cache-Control` values by kind of file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRules {
    /// HTML pages (and the fallback): revalidated on every use by default.
    pub html: String,
    /// Files whose name carries a content hash (`app.3f2a9c1b.js`, `index-BxY12abc.css`).
    pub fingerprinted: String,
    /// Everything else.
    pub other: String,
}

impl Default for CacheRules {
    fn default() -> CacheRules {
        CacheRules {
            html: "no-cache".into(),
            fingerprinted: "public, max-age=31536000, immutable".into(),
            other: "no-cache".into(),
        }
    }
}

/// Why a site could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    #[error("static site {}: {source}", root.display())]
    Io {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("static site {}: {what}", root.display())]
    Invalid { root: PathBuf, what: String },
}

/// An indexed, immutable directory of files.
pub struct StaticSite {
    root: PathBuf,
    files: HashMap<String, Arc<Entry>>,
    dirs: HashSet<String>,
    index: String,
    fallback: Option<Arc<Entry>>,
    not_found: Option<Arc<Entry>>,
    /// Symlinks skipped because they lead outside the root (or to a directory).
    skipped: Vec<String>,
}

impl std::fmt::Debug for StaticSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticSite")
            .field("root", &self.root)
            .field("files", &self.files.len())
            .finish()
    }
}

/// One servable file.
struct Entry {
    path: PathBuf,
    len: u64,
    mtime: SystemTime,
    etag: HeaderValue,
    last_modified: HeaderValue,
    content_type: HeaderValue,
    cache: HeaderValue,
    /// Whether compressing it on the fly is worth it (a text type).
    compressible: bool,
    data: Option<Bytes>,
    /// Kept open from [`SENDFILE_FROM`] bytes (up to [`HELD_FILES`] per site).
    fd: Option<Arc<File>>,
    br: Option<Arc<Entry>>,
    gz: Option<Arc<Entry>>,
}

impl StaticSite {
    /// Indexes `root` (blocking: call it off the request path).
    pub fn load(root: &Path, options: &StaticOptions) -> Result<StaticSite, StaticError> {
        let io_err = |source| StaticError::Io {
            root: root.to_path_buf(),
            source,
        };
        let canonical = root.canonicalize().map_err(io_err)?;
        if !canonical.is_dir() {
            return Err(StaticError::Invalid {
                root: root.to_path_buf(),
                what: "is not a directory".into(),
            });
        }
        let mut found: Vec<(String, PathBuf, std::fs::Metadata)> = Vec::new();
        let mut dirs = HashSet::new();
        let mut skipped = Vec::new();
        walk(
            &canonical,
            &canonical,
            "",
            0,
            &mut found,
            &mut dirs,
            &mut skipped,
        )
        .map_err(io_err)?;
        let rules = CacheValues::new(&options.cache).map_err(|what| StaticError::Invalid {
            root: root.to_path_buf(),
            what,
        })?;
        let mut budget = Budget {
            memory: MEMORY_SITE,
            descriptors: HELD_FILES,
        };
        let mut plain: HashMap<String, (PathBuf, std::fs::Metadata)> = HashMap::new();
        for (key, path, meta) in found {
            plain.insert(key, (path, meta));
        }
        let mut files = HashMap::with_capacity(plain.len());
        let mut keys: Vec<&String> = plain.keys().collect();
        keys.sort();
        for key in keys {
            let (path, meta) = &plain[key];
            let variant = |suffix: &str, budget: &mut Budget| -> io::Result<Option<Arc<Entry>>> {
                match plain.get(&format!("{key}{suffix}")) {
                    Some((p, m)) => Ok(Some(Arc::new(entry(key, p, m, &rules, budget, true)?))),
                    None => Ok(None),
                }
            };
            let br = variant(".br", &mut budget).map_err(io_err)?;
            let gz = variant(".gz", &mut budget).map_err(io_err)?;
            let mut e = entry(key, path, meta, &rules, &mut budget, false).map_err(io_err)?;
            e.br = br;
            e.gz = gz;
            files.insert(key.clone(), Arc::new(e));
        }
        let page = |name: &Option<String>, what: &str| -> Result<Option<Arc<Entry>>, StaticError> {
            let Some(name) = name else { return Ok(None) };
            let key = name.trim_start_matches('/');
            match files.get(key) {
                Some(e) => Ok(Some(e.clone())),
                None => Err(StaticError::Invalid {
                    root: root.to_path_buf(),
                    what: format!("the {what} page {name} is not among its files"),
                }),
            }
        };
        let fallback = page(&options.fallback, "fallback")?;
        let not_found = page(&options.not_found, "not_found")?;
        Ok(StaticSite {
            root: canonical,
            files,
            dirs,
            index: options.index.clone(),
            fallback,
            not_found,
            skipped,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many files it serves.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Symlinks not served: they lead outside the root, or to a directory.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

/// The parts of a request a static answer depends on (from either request path).
#[derive(Default)]
pub(crate) struct StaticRequest<'a> {
    pub(crate) head: bool,
    pub(crate) get: bool,
    /// The path as sent, without the query, after the route's prefix.
    pub(crate) path: &'a str,
    /// The full path and query as sent (for a directory's redirect).
    pub(crate) full_path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) accept_encoding: Option<&'a [u8]>,
    pub(crate) if_none_match: Option<&'a [u8]>,
    pub(crate) if_modified_since: Option<&'a [u8]>,
    pub(crate) range: Option<&'a [u8]>,
    pub(crate) if_range: Option<&'a [u8]>,
}

impl<'a> StaticRequest<'a> {
    /// Notes one request header if it matters here.
    pub(crate) fn header(&mut self, name: &[u8], value: &'a [u8]) {
        let slot = match name.len() {
            5 if name.eq_ignore_ascii_case(b"range") => &mut self.range,
            8 if name.eq_ignore_ascii_case(b"if-range") => &mut self.if_range,
            13 if name.eq_ignore_ascii_case(b"if-none-match") => &mut self.if_none_match,
            15 if name.eq_ignore_ascii_case(b"accept-encoding") => &mut self.accept_encoding,
            17 if name.eq_ignore_ascii_case(b"if-modified-since") => &mut self.if_modified_since,
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
}

/// Answers a request for `site`.
pub(crate) fn serve(site: &StaticSite, req: &StaticRequest<'_>) -> Response<ResponseBody> {
    if !req.get && !req.head {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let key = match decode_path(req.path) {
        Ok(key) => key,
        Err(why) => return plain(StatusCode::BAD_REQUEST, format!("400 bad request: {why}\n")),
    };
    let trailing = key.is_empty() || key.ends_with('/');
    let key = key.trim_end_matches('/');
    let (entry, status) = if trailing {
        let index = if key.is_empty() {
            site.index.clone()
        } else {
            format!("{key}/{}", site.index)
        };
        match site.files.get(&index) {
            Some(e) => (Some(e), StatusCode::OK),
            None => (None, StatusCode::NOT_FOUND),
        }
    } else if let Some(e) = site.files.get(key) {
        (Some(e), StatusCode::OK)
    } else if site.dirs.contains(key) {
        // `/docs` → `/docs/`, as a browser resolves relative links against the slash.
        let mut location = String::with_capacity(req.full_path.len() + 1);
        location.push_str(req.path_before_query());
        location.push('/');
        if let Some(q) = req.query {
            location.push('?');
            location.push_str(q);
        }
        let mut r = plain(StatusCode::MOVED_PERMANENTLY, "301 moved permanently\n");
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    } else {
        (None, StatusCode::NOT_FOUND)
    };
    let (entry, status) = match entry {
        Some(e) => (e, status),
        None => {
            let last = key.rsplit('/').next().unwrap_or("");
            match (&site.fallback, &site.not_found) {
                (Some(f), _) if !last.contains('.') => (f, StatusCode::OK),
                (_, Some(nf)) => (nf, StatusCode::NOT_FOUND),
                _ => return plain(StatusCode::NOT_FOUND, "404 not found\n"),
            }
        }
    };
    respond(entry, status, req)
}

impl StaticRequest<'_> {
    fn path_before_query(&self) -> &str {
        self.full_path
            .split_once('?')
            .map_or(self.full_path, |(p, _)| p)
    }
}

/// The answer with `entry`'s file (or its precompressed sibling), after the conditions.
fn respond(
    entry: &Arc<Entry>,
    status: StatusCode,
    req: &StaticRequest<'_>,
) -> Response<ResponseBody> {
    // A range or a non-200 answer is served from the file itself.
    let ranged = req.range.is_some() && status == StatusCode::OK;
    let (chosen, encoding) = if ranged {
        (entry, None)
    } else {
        match req.accept_encoding {
            Some(ae) => {
                if entry.br.is_some() && accepts(ae, b"br") {
                    (entry.br.as_ref().unwrap_or(entry), Some("br"))
                } else if entry.gz.is_some() && accepts(ae, b"gzip") {
                    (entry.gz.as_ref().unwrap_or(entry), Some("gzip"))
                } else {
                    (entry, None)
                }
            }
            None => (entry, None),
        }
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, entry.content_type.clone())
        .header(header::CACHE_CONTROL, entry.cache.clone())
        .header(header::LAST_MODIFIED, chosen.last_modified.clone())
        .header(header::ETAG, chosen.etag.clone())
        .header(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if entry.br.is_some() || entry.gz.is_some() || entry.compressible {
        builder = builder.header(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if let Some(enc) = encoding {
        builder = builder.header(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
    }
    if status == StatusCode::OK && not_modified(chosen, req) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(ResponseBody::empty())
            .unwrap_or_else(|_| internal());
    }
    let len = chosen.len;
    let mut start = 0u64;
    let mut end = len; // exclusive
    let mut status = status;
    if ranged && if_range_holds(chosen, req.if_range) {
        match parse_range(req.range.unwrap_or_default(), len) {
            RangeSpec::None => {}
            RangeSpec::Unsatisfiable => {
                let mut r = plain(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "416 range not satisfiable\n",
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
            RangeSpec::One(a, b) => {
                start = a;
                end = b + 1;
                status = StatusCode::PARTIAL_CONTENT;
                builder = builder.header(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"));
            }
        }
    }
    let count = end - start;
    builder = builder.header(header::CONTENT_LENGTH, count);
    let slice = |file| FileSlice {
        file,
        offset: start,
        len: count,
    };
    let body = if req.head || count == 0 {
        ResponseBody::empty()
    } else {
        let data = chosen
            .data
            .as_ref()
            .map(|d| d.slice(start as usize..end as usize));
        match (data, &chosen.fd) {
            (Some(data), Some(fd)) if count >= SENDFILE_FROM => {
                ResponseBody::indexed(data, slice(fd.clone()))
            }
            (Some(data), _) => ResponseBody::full(data),
            (None, Some(fd)) => ResponseBody::file(slice(fd.clone())),
            (None, None) => match File::open(&chosen.path) {
                Ok(file) => ResponseBody::file(slice(Arc::new(file))),
                Err(e) => {
                    tracing::warn!(path = %chosen.path.display(), error = %e, "static file could not be read");
                    return plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "500 internal server error\n",
                    );
                }
            },
        }
    };
    builder
        .status(status)
        .body(body)
        .unwrap_or_else(|_| internal())
}

/// Reads the next chunk of a file body and moves past it (blocking: the file is a local,
/// usually cached file, as nginx reads without `aio`).
pub(crate) fn read_chunk(file: &mut FileSlice) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let want = file.len.min(FILE_CHUNK as u64) as usize;
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match file
            .file
            .read_at(&mut buf[filled..], file.offset + filled as u64)
        {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "static file shrank while being served",
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    file.offset += want as u64;
    file.len -= want as u64;
    Ok(Bytes::from(buf))
}

fn internal() -> Response<ResponseBody> {
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 internal server error\n",
    )
}

fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The index key of a request path, or why the path is refused: percent-decoded, split on
/// `/` with empty segments dropped; refused when it has an encoded `/` or `\`, a `\`, a NUL
/// or other control byte, a `.` or `..` segment (plain or encoded), invalid UTF-8 or a bad
/// escape. The result keeps a trailing `/` (a directory).
pub(crate) fn decode_path(path: &str) -> Result<String, &'static str> {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            ) else {
                return Err("malformed percent-encoding");
            };
            let c = (h * 16 + l) as u8;
            if c == b'/' || c == b'\\' {
                return Err("encoded path separator");
            }
            decoded.push(c);
            i += 3;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    if decoded.contains(&b'\\') {
        return Err("backslash in path");
    }
    if decoded.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return Err("control character in path");
    }
    let text = String::from_utf8(decoded).map_err(|_| "path is not UTF-8")?;
    let mut out = String::with_capacity(text.len());
    for segment in text.split('/') {
        if segment == "." || segment == ".." {
            return Err("dot segment in path");
        }
        if segment.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(segment);
    }
    if text.ends_with('/') && !out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether `accept` (an Accept-Encoding value) accepts `coding` with q > 0 (`*` counts).
pub(crate) fn accepts(accept: &[u8], coding: &[u8]) -> bool {
    q_value(accept, coding) > 0
}

/// The q-value (0–1000) `accept` gives `coding`: its own entry, else `*`'s, else 0.
pub(crate) fn q_value(accept: &[u8], coding: &[u8]) -> u16 {
    let mut star = None;
    for item in accept.split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        let mut q = 1000u16;
        for p in parts {
            let p = p.trim_ascii();
            if p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=") {
                q = parse_q(&p[2..]);
            }
        }
        if name.eq_ignore_ascii_case(coding) {
            return q;
        }
        if name == b"*" {
            star = Some(q);
        }
    }
    star.unwrap_or(0)
}

fn parse_q(v: &[u8]) -> u16 {
    let v = v.trim_ascii();
    let text = std::str::from_utf8(v).unwrap_or("0");
    match text.parse::<f32>() {
        Ok(q) if (0.0..=1.0).contains(&q) => (q * 1000.0).round() as u16,
        _ => 0,
    }
}

fn not_modified(entry: &Entry, req: &StaticRequest<'_>) -> bool {
    if let Some(inm) = req.if_none_match {
        return etag_listed(inm, entry.etag.as_bytes());
    }
    if let Some(ims) = req.if_modified_since {
        if let Some(since) = std::str::from_utf8(ims)
            .ok()
            .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
        {
            return secs(entry.mtime) <= secs(since);
        }
    }
    false
}

/// Weak comparison against a list of entity tags (or `*`).
fn etag_listed(list: &[u8], etag: &[u8]) -> bool {
    let strip = |t: &[u8]| -> Vec<u8> {
        let t = t.trim_ascii();
        t.strip_prefix(b"W/").unwrap_or(t).to_vec()
    };
    let mine = strip(etag);
    list.split(|&b| b == b',').any(|t| {
        let t = t.trim_ascii();
        t == b"*" || strip(t) == mine
    })
}

fn if_range_holds(entry: &Entry, if_range: Option<&[u8]>) -> bool {
    let Some(v) = if_range else { return true };
    let v = v.trim_ascii();
    if v.starts_with(b"\"") {
        return v == entry.etag.as_bytes();
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
        .is_some_and(|d| secs(d) == secs(entry.mtime))
}

enum RangeSpec {
    /// Not a single byte range we serve: answer with the whole file.
    None,
    Unsatisfiable,
    /// First and last byte, inclusive.
    One(u64, u64),
}

fn parse_range(value: &[u8], len: u64) -> RangeSpec {
    let Some(spec) = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeSpec::None;
    };
    if spec.contains(',') {
        return RangeSpec::None; // several ranges: the whole file (RFC 9110 allows it)
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeSpec::None;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return RangeSpec::None;
        };
        if n == 0 || len == 0 {
            return RangeSpec::Unsatisfiable;
        }
        return RangeSpec::One(len.saturating_sub(n), len - 1);
    }
    let Ok(first) = a.parse::<u64>() else {
        return RangeSpec::None;
    };
    if first >= len {
        return RangeSpec::Unsatisfiable;
    }
    let last = if b.is_empty() {
        len - 1
    } else {
        match b.parse::<u64>() {
            Ok(l) if l >= first => l.min(len - 1),
            _ => return RangeSpec::None,
        }
    };
    RangeSpec::One(first, last)
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Collects the regular files under `dir` (dotfiles skipped, except `.well-known`).
#[allow(clippy::too_many_arguments)]
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    depth: usize,
    found: &mut Vec<(String, PathBuf, std::fs::Metadata)>,
    dirs: &mut HashSet<String>,
    skipped: &mut Vec<String>,
) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            skipped.push(format!("{prefix}{}", e.file_name().to_string_lossy()));
            continue;
        };
        if name.starts_with('.') && !(depth == 0 && name == ".well-known") {
            continue;
        }
        if name.contains('\\') || name.chars().any(char::is_control) {
            skipped.push(format!("{prefix}{name}"));
            continue;
        }
        let key = format!("{prefix}{name}");
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            // Followed only to a regular file inside the root.
            match path.canonicalize() {
                Ok(target) if target.starts_with(root) => match std::fs::metadata(&target) {
                    Ok(m) if m.is_file() => {
                        if found.len() < MAX_FILES {
                            found.push((key, target, m));
                        }
                    }
                    _ => skipped.push(key),
                },
                _ => skipped.push(key),
            }
        } else if meta.is_dir() {
            dirs.insert(key.clone());
            walk(
                root,
                &path,
                &format!("{key}/"),
                depth + 1,
                found,
                dirs,
                skipped,
            )?;
        } else if meta.is_file() && found.len() < MAX_FILES {
            found.push((key, path, meta));
        }
    }
    Ok(())
}

/// The header values of the cache rules, checked once.
struct CacheValues {
    html: HeaderValue,
    fingerprinted: HeaderValue,
    other: HeaderValue,
}

impl CacheValues {
    fn new(rules: &CacheRules) -> Result<CacheValues, String> {
        let v = |s: &str| {
            HeaderValue::from_str(s).map_err(|_| format!("invalid Cache-Control value {s:?}"))
        };
        Ok(CacheValues {
            html: v(&rules.html)?,
            fingerprinted: v(&rules.fingerprinted)?,
            other: v(&rules.other)?,
        })
    }
}

/// What the index may still hold: bytes in memory and open descriptors.
struct Budget {
    memory: u64,
    descriptors: usize,
}

fn entry(
    key: &str,
    path: &Path,
    meta: &std::fs::Metadata,
    rules: &CacheValues,
    budget: &mut Budget,
    variant: bool,
) -> io::Result<Entry> {
    let len = meta.len();
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let mtime_secs = secs(mtime);
    let etag = format!(
        "\"{:x}-{:x}{}\"",
        mtime_secs,
        len,
        if variant {
            if key.ends_with(".br") {
                "-br"
            } else {
                "-gz"
            }
        } else {
            ""
        }
    );
    let (content_type, compressible) = content_type(key);
    let name = key.rsplit('/').next().unwrap_or(key);
    let cache = if content_type.starts_with("text/html") {
        rules.html.clone()
    } else if is_fingerprinted(name) {
        rules.fingerprinted.clone()
    } else {
        rules.other.clone()
    };
    let mut file = File::open(path)?;
    let data = if len <= MEMORY_FILE && len <= budget.memory {
        // From the descriptor that is kept: both always hold the same file.
        let mut bytes = Vec::with_capacity(len as usize);
        (&mut file).take(len).read_to_end(&mut bytes)?;
        budget.memory -= len;
        Some(Bytes::from(bytes))
    } else {
        None
    };
    let fd = if len >= SENDFILE_FROM && budget.descriptors > 0 {
        budget.descriptors -= 1;
        Some(Arc::new(file))
    } else {
        None
    };
    Ok(Entry {
        path: path.to_path_buf(),
        len,
        mtime,
        etag: HeaderValue::from_str(&etag).expect("hex etag is a valid header value"),
        last_modified: HeaderValue::from_str(&httpdate::fmt_http_date(mtime))
            .expect("an HTTP date is a valid header value"),
        content_type: HeaderValue::from_static(content_type),
        cache,
        compressible,
        data,
        fd,
        br: None,
        gz: None,
    })
}

/// Whether a file name carries a content hash: a part (between `.` or `-`, not the first
/// part nor the extension) of 8 to 64 letters, digits or `_` with at least one digit.
pub(crate) fn is_fingerprinted(name: &str) -> bool {
    let Some((stem, _ext)) = name.rsplit_once('.') else {
        return false;
    };
    stem.split(['.', '-']).skip(1).any(|part| {
        (8..=64).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && part.bytes().any(|b| b.is_ascii_digit())
    })
}

/// The content type of a file by its extension (a precompressed `.br`/`.gz` sibling keeps
/// the type of the file it encodes), and whether it is worth compressing.
pub(crate) fn content_type(key: &str) -> (&'static str, bool) {
    let name = key.rsplit('/').next().unwrap_or(key);
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => ("text/html; charset=utf-8", true),
        "css" => ("text/css; charset=utf-8", true),
        "js" | "mjs" | "cjs" => ("text/javascript; charset=utf-8", true),
        "json" | "map" => ("application/json", true),
        "webmanifest" => ("application/manifest+json", true),
        "xml" => ("application/xml", true),
        "txt" => ("text/plain; charset=utf-8", true),
        "md" => ("text/markdown; charset=utf-8", true),
        "csv" => ("text/csv; charset=utf-8", true),
        "svg" => ("image/svg+xml", true),
        "wasm" => ("application/wasm", true),
        "ico" => ("image/x-icon", true),
        "png" => ("image/png", false),
        "jpg" | "jpeg" => ("image/jpeg", false),
        "gif" => ("image/gif", false),
        "webp" => ("image/webp", false),
        "avif" => ("image/avif", false),
        "woff" => ("font/woff", false),
        "woff2" => ("font/woff2", false),
        "ttf" => ("font/ttf", true),
        "otf" => ("font/otf", true),
        "pdf" => ("application/pdf", false),
        "mp4" => ("video/mp4", false),
        "webm" => ("video/webm", false),
        "mp3" => ("audio/mpeg", false),
        "ogg" => ("audio/ogg", false),
        "wav" => ("audio/wav", false),
        "zip" => ("application/zip", false),
        "gz" => ("application/gzip", false),
        "br" => ("application/octet-stream", false),
        "zst" => ("application/zstd", false),
        _ => ("application/octet-stream", false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_decode_to_index_keys_or_are_refused() {
        assert_eq!(decode_path("/").unwrap(), "");
        assert_eq!(decode_path("/a/b.js").unwrap(), "a/b.js");
        assert_eq!(decode_path("//etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(decode_path("/docs/").unwrap(), "docs/");
        assert_eq!(decode_path("/a%20b").unwrap(), "a b");
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/x",
            "/.%2e/x",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00b",
            "/./a",
            "/a%zz",
            "/a%",
            "/%ff",
        ] {
            assert!(decode_path(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn q_values_decide_what_is_accepted() {
        assert!(accepts(b"gzip, br", b"br"));
        assert!(!accepts(b"gzip;q=0, br", b"gzip"));
        assert!(accepts(b"*", b"zstd"));
        assert!(!accepts(b"*;q=0", b"gzip"));
        assert!(!accepts(b"identity", b"gzip"));
        assert_eq!(q_value(b"gzip;q=0.5, br;q=1.0", b"gzip"), 500);
        assert_eq!(q_value(b"GZIP", b"gzip"), 1000);
    }

    #[test]
    fn fingerprints_are_recognised() {
        assert!(is_fingerprinted("app.3f2a9c1b.js"));
        assert!(is_fingerprinted("index-BxY12abc.css"));
        assert!(is_fingerprinted("main.3f2a9c1b.chunk.js"));
        assert!(!is_fingerprinted("index.html"));
        assert!(!is_fingerprinted("favicon.ico"));
        assert!(!is_fingerprinted("jquery-standalone.js"));
    }

    #[test]
    fn ranges_parse() {
        assert!(matches!(
            parse_range(b"bytes=0-9", 100),
            RangeSpec::One(0, 9)
        ));
        assert!(matches!(
            parse_range(b"bytes=90-", 100),
            RangeSpec::One(90, 99)
        ));
        assert!(matches!(
            parse_range(b"bytes=-10", 100),
            RangeSpec::One(90, 99)
        ));
        assert!(matches!(
            parse_range(b"bytes=0-1000", 100),
            RangeSpec::One(0, 99)
        ));
        assert!(matches!(
            parse_range(b"bytes=100-", 100),
            RangeSpec::Unsatisfiable
        ));
        assert!(matches!(
            parse_range(b"bytes=0-1,5-6", 100),
            RangeSpec::None
        ));
        assert!(matches!(parse_range(b"items=0-1", 100), RangeSpec::None));
    }

    #[test]
    fn etags_compare_weakly() {
        assert!(etag_listed(b"\"a\", W/\"b\"", b"\"b\""));
        assert!(etag_listed(b"*", b"\"b\""));
        assert!(!etag_listed(b"\"a\"", b"\"b\""));
    }
}
