//! nginx configuration files: a small parser of nginx's grammar (words, quoted strings,
//! `;`, `{ }` blocks, `#` comments, `include` of files mounted from the project) and the
//! translation of the subset a reverse proxy in front of an app uses: `upstream`,
//! `server_name`, `listen … ssl`, `location` prefixes (and `=`), `proxy_pass` with its path
//! rewriting, `root`/`alias` + `try_files … /index.html`, `return 301/302`,
//! `limit_req_zone`/`limit_req`, `add_header`, `client_max_body_size`, `proxy_read_timeout`,
//! `gzip`, `auth_basic`, `allow`/`deny`. Every other directive is listed in a note.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{duration_text, size_text, EdgeRead, EdgeRoute, Redirect, StaticSite};
use crate::NoteKind;

/// One directive: `name args… ;` or `name args… { block }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Directive>>,
    pub line: usize,
}

/// Parses nginx configuration text; an error names `line:column`.
pub fn parse(text: &str) -> Result<Vec<Directive>, String> {
    let tokens = tokenize(text)?;
    let mut i = 0;
    let out = block(&tokens, &mut i, 0)?;
    if i < tokens.len() {
        return Err(format!("{}: unexpected `}}`", tokens[i].1));
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<(Tok, String)>, String> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut col = 0;
    let mut chars = text.chars().peekable();
    let mut word = String::new();
    let mut word_at = String::new();
    let flush = |word: &mut String, at: &str, out: &mut Vec<(Tok, String)>| {
        if !word.is_empty() {
            out.push((Tok::Word(std::mem::take(word)), at.to_owned()));
        }
    };
    while let Some(c) = chars.next() {
        col += 1;
        let here = format!("{line}:{col}");
        match c {
            '\n' => {
                flush(&mut word, &word_at, &mut out);
                line += 1;
                col = 0;
            }
            c if c.is_whitespace() => flush(&mut word, &word_at, &mut out),
            '#' if word.is_empty() => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        line += 1;
                        col = 0;
                        break;
                    }
                }
            }
            ';' | '{' | '}' => {
                flush(&mut word, &word_at, &mut out);
                let t = match c {
                    ';' => Tok::Semi,
                    '{' => Tok::Open,
                    _ => Tok::Close,
                };
                out.push((t, here));
            }
            '"' | '\'' if word.is_empty() => {
                let mut s = String::new();
                let mut closed = false;
                while let Some(d) = chars.next() {
                    col += 1;
                    match d {
                        '\\' => {
                            if let Some(e) = chars.next() {
                                col += 1;
                                s.push(e);
                            }
                        }
                        '\n' => {
                            line += 1;
                            col = 0;
                            s.push(d);
                        }
                        d if d == c => {
                            closed = true;
                            break;
                        }
                        d => s.push(d),
                    }
                }
                if !closed {
                    return Err(format!("{here}: unterminated quoted string"));
                }
                out.push((Tok::Word(s), here));
            }
            c => {
                if word.is_empty() {
                    word_at = here;
                }
                word.push(c);
            }
        }
    }
    flush(&mut word, &word_at, &mut out);
    Ok(out)
}

/// At most this many files are read through `include`.
const MAX_LOADS: usize = 64;

fn block(tokens: &[(Tok, String)], i: &mut usize, depth: usize) -> Result<Vec<Directive>, String> {
    if depth > 32 {
        return Err("blocks nested too deeply".into());
    }
    let mut out = Vec::new();
    while *i < tokens.len() {
        let (tok, at) = &tokens[*i];
        let name = match tok {
            Tok::Close => return Ok(out),
            // A quoted empty string, `'' proxy_pass …;`: nginx knows no such directive.
            Tok::Word(w) if w.is_empty() => return Err(format!("{at}: an empty directive name")),
            Tok::Word(w) => w.clone(),
            Tok::Semi => return Err(format!("{at}: unexpected `;`")),
            Tok::Open => return Err(format!("{at}: a block without a directive name")),
        };
        let line = at
            .split(':')
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        *i += 1;
        let mut args = Vec::new();
        loop {
            let Some((tok, at)) = tokens.get(*i) else {
                return Err(format!(
                    "the directive `{name}` is not ended by `;` or `}}`"
                ));
            };
            *i += 1;
            match tok {
                Tok::Word(w) => args.push(w.clone()),
                Tok::Semi => {
                    out.push(Directive {
                        name,
                        args,
                        block: None,
                        line,
                    });
                    break;
                }
                Tok::Open => {
                    let inner = block(tokens, i, depth + 1)?;
                    match tokens.get(*i) {
                        Some((Tok::Close, _)) => *i += 1,
                        _ => return Err(format!("{at}: the block of `{name}` is not closed")),
                    }
                    out.push(Directive {
                        name,
                        args,
                        block: Some(inner),
                        line,
                    });
                    break;
                }
                Tok::Close => return Err(format!("{at}: `}}` inside the directive `{name}`")),
            }
        }
    }
    if depth > 0 {
        return Err("a block is not closed at the end of the file".into());
    }
    Ok(out)
}

/// Where the proxy's files are: container paths mapped to the project's files.
struct Files<'a> {
    mounts: &'a [(PathBuf, String)],
    project_dir: &'a Path,
}

impl Files<'_> {
    /// The project file behind container path `p` (a file mount, or a file in a mounted
    /// directory), only inside the project.
    fn host(&self, p: &str) -> Option<PathBuf> {
        for (src, dst) in self.mounts {
            let dst = dst.trim_end_matches('/');
            let found = if p == dst {
                Some(src.clone())
            } else {
                p.strip_prefix(dst)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(|rest| src.join(rest))
            };
            if let Some(f) = found {
                if f.starts_with(self.project_dir) && !p.contains("..") {
                    return Some(f);
                }
            }
        }
        None
    }

    /// The container paths matching `pattern` (a `*` in the last component), sorted.
    fn glob(&self, pattern: &str) -> Vec<String> {
        let pattern = if pattern.starts_with('/') {
            pattern.to_owned()
        } else {
            format!("/etc/nginx/{pattern}")
        };
        let Some((dir, file)) = pattern.rsplit_once('/') else {
            return Vec::new();
        };
        if !file.contains('*') {
            return vec![pattern.clone()];
        }
        let (pre, post) = file.split_once('*').unwrap_or((file, ""));
        let mut out = Vec::new();
        // Files mounted one by one into `dir`, and the files of a mounted `dir`.
        for (_, dst) in self.mounts {
            if let Some((d, f)) = dst.rsplit_once('/') {
                if d == dir && f.starts_with(pre) && f.ends_with(post) {
                    out.push(dst.clone());
                }
            }
        }
        if let Some(host_dir) = self.host(dir) {
            if let Ok(rd) = std::fs::read_dir(host_dir) {
                for e in rd.flatten() {
                    let f = e.file_name().to_string_lossy().into_owned();
                    if f.starts_with(pre) && f.ends_with(post) && e.path().is_file() {
                        out.push(format!("{dir}/{f}"));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Reads the nginx configuration mounted into proxy service `proxy`: `files` are its mounts
/// under `/etc/nginx/`, `roots` its other mounts (static files), `services` the compose
/// services a `proxy_pass` may name.
pub fn read_mounted(
    proxy: &str,
    files: &[(PathBuf, String)],
    roots: &[(PathBuf, String)],
    services: &[String],
    project_dir: &Path,
) -> EdgeRead {
    let mut all = files.to_vec();
    all.extend(roots.iter().cloned());
    let fs = Files {
        mounts: &all,
        project_dir,
    };
    let mut r = Reader {
        out: EdgeRead::default(),
        proxy: proxy.to_owned(),
        services: services.to_vec(),
        upstreams: BTreeMap::new(),
        zones: BTreeMap::new(),
        roots: roots.to_vec(),
        fs,
        loading: Vec::new(),
        loads: 0,
    };
    // nginx.conf when it is mounted (it includes conf.d), else every conf.d file, as inside `http`.
    let entries: Vec<String> = if files.iter().any(|(_, d)| d == "/etc/nginx/nginx.conf") {
        vec!["/etc/nginx/nginx.conf".into()]
    } else {
        let mut e = Vec::new();
        for (src, dst) in files {
            if src.is_dir() {
                e.extend(r.fs.glob(&format!("{}/*.conf", dst.trim_end_matches('/'))));
                e.extend(r.fs.glob(&format!("{}/*.template", dst.trim_end_matches('/'))));
            } else {
                e.push(dst.clone());
            }
        }
        e
    };
    let mut top = Vec::new();
    for e in &entries {
        top.extend(r.load(e));
    }
    let ctx = Ctx::default();
    if entries.len() == 1 && entries[0] == "/etc/nginx/nginx.conf" {
        r.main(&top, &ctx);
    } else {
        r.http(&top, &ctx);
    }
    r.out
}

/// The settings a `server` or `location` inherits.
#[derive(Debug, Clone, Default)]
struct Ctx {
    headers: Vec<(String, String)>,
    hsts: Option<Option<String>>,
    rate_limit: Option<(String, u32)>,
    max_body: Option<String>,
    timeout: Option<String>,
    basic_auth: Option<(String, String)>,
    allow: Vec<String>,
    deny: Vec<String>,
    request_headers: Vec<(String, String)>,
}

struct Reader<'a> {
    out: EdgeRead,
    proxy: String,
    services: Vec<String>,
    /// upstream name → (service, port).
    upstreams: BTreeMap<String, (String, Option<u16>)>,
    /// limit_req_zone name → rate.
    zones: BTreeMap<String, String>,
    roots: Vec<(PathBuf, String)>,
    fs: Files<'a>,
    /// The files being read, outermost first (an `include` of one of them is a cycle).
    loading: Vec<String>,
    /// Files read so far (bounded: a fan-out of includes is not followed forever).
    loads: usize,
}

impl Reader<'_> {
    fn note(&mut self, key: &str, kind: NoteKind, msg: impl Into<String>) {
        let proxy = self.proxy.clone();
        self.out.note(&proxy, key, kind, msg);
    }

    /// The directives of container file `path`, its `include`s expanded.
    fn load(&mut self, path: &str) -> Vec<Directive> {
        if self.loading.iter().any(|p| p == path) {
            self.note(
                "include",
                NoteKind::NotCarried,
                format!(
                    "{path} includes itself (through `include`); the repeated include is not read"
                ),
            );
            return Vec::new();
        }
        self.loads += 1;
        if self.loads > MAX_LOADS {
            self.note(
                "include",
                NoteKind::NotCarried,
                format!(
                    "more than {MAX_LOADS} files are included; {path} and the rest are not read"
                ),
            );
            return Vec::new();
        }
        let Some(host) = self.fs.host(path) else {
            self.note(
                "volumes",
                NoteKind::NotCarried,
                format!("{path} is not a file of the project; its directives are not read"),
            );
            return Vec::new();
        };
        let text = match std::fs::read_to_string(&host) {
            Ok(t) => t,
            Err(e) => {
                self.note(
                    "volumes",
                    NoteKind::NotCarried,
                    format!("cannot read {}: {e}", host.display()),
                );
                return Vec::new();
            }
        };
        match parse(&text) {
            Ok(d) => {
                self.loading.push(path.to_owned());
                let d = if self.loading.len() > 8 {
                    d
                } else {
                    self.expand(d)
                };
                self.loading.pop();
                d
            }
            Err(e) => {
                self.note(
                    "volumes",
                    NoteKind::NotCarried,
                    format!("{}:{e}; the file was not translated", host.display()),
                );
                Vec::new()
            }
        }
    }

    fn expand(&mut self, ds: Vec<Directive>) -> Vec<Directive> {
        let mut out = Vec::new();
        for mut d in ds {
            if d.name == "include" && d.block.is_none() {
                let pattern = d.args.first().cloned().unwrap_or_default();
                if pattern == "mime.types"
                    || pattern.ends_with("/mime.types")
                    || pattern.contains("modules-enabled")
                    || pattern.ends_with("proxy_params")
                {
                    continue; // the image's own files
                }
                let matched = self.fs.glob(&pattern);
                if matched.is_empty() && !pattern.contains('*') {
                    self.note("include", NoteKind::NotCarried, format!("`include {pattern}` is not a file of the project; its directives are not read"));
                }
                for m in matched {
                    out.extend(self.load(&m));
                }
                continue;
            }
            if let Some(b) = d.block.take() {
                d.block = Some(self.expand(b));
            }
            out.push(d);
        }
        out
    }

    fn main(&mut self, ds: &[Directive], ctx: &Ctx) {
        let mut skipped = Vec::new();
        for d in ds {
            match (d.name.as_str(), &d.block) {
                ("http", Some(b)) => self.http(b, ctx),
                ("events", _)
                | ("user", _)
                | ("worker_processes", _)
                | ("pid", _)
                | ("error_log", _)
                | ("worker_rlimit_nofile", _)
                | ("load_module", _) => {}
                _ => skipped.push(d.name.clone()),
            }
        }
        self.untranslated("nginx.conf", skipped);
    }

    fn untranslated(&mut self, at: &str, mut names: Vec<String>) {
        names.dedup();
        if !names.is_empty() {
            self.note(
                at,
                NoteKind::NotCarried,
                format!("not translated: {}", names.join(", ")),
            );
        }
    }

    /// `http` level (also the top of a conf.d file).
    fn http(&mut self, ds: &[Directive], parent: &Ctx) {
        let mut ctx = parent.clone();
        let mut skipped = Vec::new();
        // upstreams and zones first: servers refer to them wherever they are.
        for d in ds {
            match d.name.as_str() {
                "upstream" => self.upstream(d),
                "limit_req_zone" => self.zone(d),
                _ => {}
            }
        }
        let mut servers = Vec::new();
        for d in ds {
            match d.name.as_str() {
                "upstream" | "limit_req_zone" => {}
                "server" if d.block.is_some() => servers.push(d),
                "gzip" => {
                    self.out.compression = Some(d.args.first().map(String::as_str) == Some("on"));
                }
                _ if self.common(d, &mut ctx) => {}
                name if IGNORED.contains(&name)
                    || name.starts_with("gzip_")
                    || name.starts_with("ssl_") => {}
                name => skipped.push(name.to_owned()),
            }
        }
        self.untranslated("http", skipped);
        for s in servers {
            self.server(s.block.as_deref().unwrap_or_default(), &ctx);
        }
    }

    fn upstream(&mut self, d: &Directive) {
        let name = d.args.first().cloned().unwrap_or_default();
        let servers: Vec<&Directive> = d
            .block
            .iter()
            .flatten()
            .filter(|s| s.name == "server")
            .collect();
        let Some(first) = servers.first() else { return };
        let addr = first.args.first().cloned().unwrap_or_default();
        let (host, port) = split_host_port(&addr);
        if !self.services.contains(&host) {
            self.note(
                &format!("upstream {name}"),
                NoteKind::NotCarried,
                format!("`{addr}` is not an imported service"),
            );
            return;
        }
        if servers.len() > 1 {
            self.note(
                &format!("upstream {name}"),
                NoteKind::Assumed,
                format!(
                    "{} servers: dockhand balances over the `replicas` of `{host}` instead",
                    servers.len()
                ),
            );
        }
        self.upstreams.insert(name, (host, port));
    }

    fn zone(&mut self, d: &Directive) {
        let mut zone = None;
        let mut rate = None;
        for a in &d.args {
            if let Some(z) = a.strip_prefix("zone=") {
                zone = Some(z.split(':').next().unwrap_or(z).to_owned());
            } else if let Some(r) = a.strip_prefix("rate=") {
                rate = r
                    .strip_suffix("r/s")
                    .map(|n| format!("{n}/s"))
                    .or_else(|| r.strip_suffix("r/m").map(|n| format!("{n}/m")));
            }
        }
        if d.args
            .first()
            .is_some_and(|k| k != "$binary_remote_addr" && k != "$remote_addr")
        {
            self.note(
                "limit_req_zone",
                NoteKind::NotCarried,
                format!(
                    "zone keyed by `{}`: dockhand limits per client address",
                    d.args[0]
                ),
            );
        }
        if let (Some(z), Some(r)) = (zone, rate) {
            self.zones.insert(z, r);
        }
    }

    /// The directives servers and locations share; true when `d` was one of them.
    fn common(&mut self, d: &Directive, ctx: &mut Ctx) -> bool {
        let a = |i: usize| d.args.get(i).cloned().unwrap_or_default();
        match d.name.as_str() {
            "add_header" => {
                let (name, value) = (a(0), a(1));
                if name.eq_ignore_ascii_case("strict-transport-security") {
                    let age = value.split(';').find_map(|p| {
                        p.trim()
                            .strip_prefix("max-age=")
                            .and_then(|n| n.parse::<u64>().ok())
                    });
                    ctx.hsts = Some(age.filter(|a| *a > 0).map(super::seconds_text));
                } else {
                    ctx.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
                    ctx.headers.push((name, value));
                }
            }
            "limit_req" => {
                let zone = d
                    .args
                    .iter()
                    .find_map(|x| x.strip_prefix("zone="))
                    .unwrap_or("");
                let burst = d
                    .args
                    .iter()
                    .find_map(|x| x.strip_prefix("burst="))
                    .and_then(|b| b.parse::<u32>().ok());
                match self.zones.get(zone) {
                    Some(rate) => {
                        let per: u32 = rate
                            .split('/')
                            .next()
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(1);
                        // nginx lets one request through plus `burst` more at once; a
                        // token bucket of burst + 1 does the same. Without `burst`: one.
                        let _ = per;
                        ctx.rate_limit = Some((rate.clone(), burst.unwrap_or(0) + 1));
                        if !d.args.iter().any(|x| x == "nodelay") && burst.is_some() {
                            self.note("limit_req", NoteKind::Assumed, "without `nodelay` nginx delays the burst; dockhand answers it at once (429 past it)");
                        }
                    }
                    None => self.note(
                        "limit_req",
                        NoteKind::NotCarried,
                        format!("zone `{zone}` has no `limit_req_zone` with a rate in r/s or r/m"),
                    ),
                }
            }
            "client_max_body_size" => match size_text(&a(0)) {
                Some(s) if s == "0B" => self.note(
                    "client_max_body_size",
                    NoteKind::NotCarried,
                    "0 (no limit): dockhand always has a limit; set `max_body` large enough",
                ),
                Some(s) => ctx.max_body = Some(s),
                None => self.note(
                    "client_max_body_size",
                    NoteKind::NotCarried,
                    format!("cannot read `{}`", a(0)),
                ),
            },
            "proxy_read_timeout" => match duration_text(&a(0)) {
                Some(t) => ctx.timeout = Some(t),
                None => self.note(
                    "proxy_read_timeout",
                    NoteKind::NotCarried,
                    format!("cannot read `{}`", a(0)),
                ),
            },
            "auth_basic" => {
                if a(0) == "off" {
                    ctx.basic_auth = None;
                } else {
                    let realm = a(0);
                    ctx.basic_auth = Some((
                        realm,
                        ctx.basic_auth
                            .as_ref()
                            .map(|b| b.1.clone())
                            .unwrap_or_default(),
                    ));
                }
            }
            "auth_basic_user_file" => {
                let file = a(0);
                let file = if file.starts_with('/') {
                    file
                } else {
                    format!("/etc/nginx/{file}")
                };
                match self.fs.host(&file).and_then(|h| std::fs::read_to_string(h).ok()) {
                    Some(text) => {
                        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
                        let name = self.out.secret_name(&format!("{}_htpasswd", self.proxy));
                        self.out.secrets.push((name.clone(), lines.join("\n")));
                        let realm = ctx.basic_auth.as_ref().map(|b| b.0.clone()).unwrap_or_else(|| "Restricted".into());
                        ctx.basic_auth = Some((realm, name.clone()));
                        self.note("auth_basic_user_file", NoteKind::Assumed, format!("the {} user hash(es) of {file} went to the secrets file as {name}", lines.len()));
                    }
                    None => self.note("auth_basic_user_file", NoteKind::NotCarried, format!("{file} is not a file of the project: put its htpasswd lines in a secret and set the route's `basic_auth`")),
                }
            }
            "allow" => {
                if a(0) != "all" {
                    ctx.allow.push(a(0));
                }
            }
            "deny" => {
                if a(0) != "all" {
                    ctx.deny.push(a(0));
                }
            }
            "proxy_set_header" => {
                let (name, value) = (a(0), a(1));
                let native = [
                    "host",
                    "x-real-ip",
                    "x-forwarded-for",
                    "x-forwarded-proto",
                    "x-forwarded-host",
                    "x-forwarded-port",
                    "upgrade",
                    "connection",
                ];
                if native.contains(&name.to_ascii_lowercase().as_str()) {
                    // dockhand's proxy sets these itself (and passes WebSocket upgrades).
                } else if value.contains('$') {
                    self.note(
                        "proxy_set_header",
                        NoteKind::NotCarried,
                        format!("`{name}` is set from a variable (`{value}`)"),
                    );
                } else {
                    ctx.request_headers.push((name, value));
                }
            }
            _ => return false,
        }
        true
    }

    fn server(&mut self, ds: &[Directive], parent: &Ctx) {
        let mut ctx = parent.clone();
        let mut hosts: Vec<String> = Vec::new();
        let mut tls = false;
        let mut skipped = Vec::new();
        let mut locations = Vec::new();
        let mut ret = None;
        for d in ds {
            match d.name.as_str() {
                "server_name" => {
                    for h in &d.args {
                        let h = h.to_ascii_lowercase();
                        if h == "_" || h == "localhost" || h.is_empty() {
                            continue;
                        }
                        if h.contains(['*', '~']) {
                            self.note(
                                "server_name",
                                NoteKind::NotCarried,
                                format!("`{h}`: dockhand routes match exact host names"),
                            );
                            continue;
                        }
                        hosts.push(h);
                    }
                }
                "listen" => {
                    if d.args.iter().any(|x| x == "ssl")
                        || d.args.first().is_some_and(|x| x.ends_with("443"))
                    {
                        tls = true;
                    }
                }
                "location" => locations.push(d),
                "return" => ret = Some(d.args.clone()),
                "ssl_certificate" | "ssl_certificate_key" => {}
                _ if self.common(d, &mut ctx) => {}
                name if IGNORED.contains(&name)
                    || name.starts_with("ssl_")
                    || name.starts_with("gzip") => {}
                name => skipped.push(name.to_owned()),
            }
        }
        let server_at = format!(
            "server {}",
            hosts.first().map(String::as_str).unwrap_or("_")
        );
        if tls {
            self.out.https = true;
            if ds.iter().any(|d| d.name == "ssl_certificate") {
                self.note(&server_at, NoteKind::Assumed, "TLS certificates from files → dockhand's automatic HTTPS; to keep your own, list them in `[proxy] certificates`");
            }
        }
        self.untranslated(&server_at, skipped);
        // A server that only redirects.
        if let Some(args) = ret {
            let code: u16 = args.first().and_then(|c| c.parse().ok()).unwrap_or(0);
            let target = args.get(1).cloned().unwrap_or_default();
            if (code == 301 || code == 302 || code == 308) && target.starts_with("https://$host")
                || target.starts_with("https://$server_name")
            {
                self.note(&server_at, NoteKind::Assumed, format!("`return {code} {target}` → dockhand's HTTPS redirect (on by default for hosts with a certificate)"));
                self.out.https = true;
            } else if matches!(code, 301 | 302 | 307 | 308) {
                let to = target
                    .trim_end_matches("$request_uri")
                    .trim_end_matches('/')
                    .to_owned();
                if to.contains('$') || hosts.is_empty() {
                    self.note(
                        &server_at,
                        NoteKind::NotCarried,
                        format!("`return {code} {target}` is not a plain host move"),
                    );
                } else {
                    for h in &hosts {
                        self.out.redirects.push(Redirect {
                            from: h.clone(),
                            to: to.clone(),
                            code,
                        });
                        self.note(
                            &server_at,
                            NoteKind::Assumed,
                            format!("`return {code} {target}` → [[redirects]] from {h} to {to}"),
                        );
                    }
                }
            } else {
                self.note(
                    &server_at,
                    NoteKind::NotCarried,
                    format!("`return {}` not translated", args.join(" ")),
                );
            }
            return;
        }
        let hosts: Vec<Option<String>> = if hosts.is_empty() {
            vec![None]
        } else {
            hosts.into_iter().map(Some).collect()
        };
        for loc in locations {
            self.location(loc, &hosts, &ctx, &server_at);
        }
    }

    fn location(&mut self, d: &Directive, hosts: &[Option<String>], parent: &Ctx, server_at: &str) {
        let mut ctx = parent.clone();
        let (modifier, path) = match d.args.as_slice() {
            [p] => ("", p.clone()),
            [m, p] => (m.as_str(), p.clone()),
            _ => ("?", String::new()),
        };
        let at = format!("{server_at} location {}", d.args.join(" "));
        if !matches!(modifier, "" | "=" | "^~") || path.starts_with('@') || !path.starts_with('/') {
            self.note(
                &at,
                NoteKind::NotCarried,
                "regular-expression and named locations have no dockhand equivalent",
            );
            return;
        }
        if modifier == "=" {
            self.note(
                &at,
                NoteKind::Assumed,
                "an exact location (`=`) became a prefix route",
            );
        }
        let mut pass = None;
        let mut root = None;
        let mut fallback = None;
        let mut ret = None;
        let mut skipped = Vec::new();
        for x in d.block.iter().flatten() {
            match x.name.as_str() {
                "proxy_pass" => pass = x.args.first().cloned(),
                "root" | "alias" => {
                    root = Some((x.name.clone(), x.args.first().cloned().unwrap_or_default()))
                }
                "try_files" => fallback = x.args.last().filter(|l| l.starts_with('/')).cloned(),
                "index" => {}
                "return" => ret = Some(x.args.clone()),
                "location" => self.note(
                    &at,
                    NoteKind::NotCarried,
                    "nested locations are not translated",
                ),
                _ if self.common(x, &mut ctx) => {}
                name if IGNORED.contains(&name) || name.starts_with("proxy_") => {}
                name => skipped.push(name.to_owned()),
            }
        }
        self.untranslated(&at, skipped);
        let prefix = path.trim_end_matches('/');
        let route_path = (!prefix.is_empty()).then(|| prefix.to_owned());
        if let Some(args) = ret {
            let code: u16 = args.first().and_then(|c| c.parse().ok()).unwrap_or(0);
            let to = args.get(1).cloned().unwrap_or_default();
            if matches!(code, 301 | 302 | 307 | 308) && !to.contains('$') && to.starts_with("http")
            {
                for h in hosts.iter().flatten() {
                    let from = format!("{h}{}", route_path.clone().unwrap_or_default());
                    self.out.redirects.push(Redirect {
                        from: from.clone(),
                        to: to.trim_end_matches('/').to_owned(),
                        code,
                    });
                    self.note(
                        &at,
                        NoteKind::Assumed,
                        format!("→ [[redirects]] from {from} to {to}"),
                    );
                }
            } else {
                self.note(
                    &at,
                    NoteKind::NotCarried,
                    format!("`return {}` not translated", args.join(" ")),
                );
            }
            return;
        }
        if let Some(url) = pass {
            let Some(rest) = url.strip_prefix("http://") else {
                self.note(
                    &at,
                    NoteKind::NotCarried,
                    format!("`proxy_pass {url}`: only http:// upstreams are translated"),
                );
                return;
            };
            let (authority, uri) = match rest.find('/') {
                Some(i) => (&rest[..i], Some(&rest[i..])),
                None => (rest, None),
            };
            let (host, port) = split_host_port(authority);
            let target = if let Some((svc, p)) = self.upstreams.get(&host) {
                Some((svc.clone(), port.or(*p)))
            } else if self.services.contains(&host) {
                Some((host.clone(), port))
            } else {
                None
            };
            let Some((service, port)) = target else {
                self.note(&at, NoteKind::NotCarried, format!("`proxy_pass {url}`: `{host}` is neither an upstream nor an imported service"));
                return;
            };
            let port = port.or(Some(80));
            // proxy_pass with a URI replaces the location's prefix with it.
            let (strip, add) = match uri {
                None => (false, None),
                Some(u) if u.trim_end_matches('/') == prefix => (false, None),
                Some(u) => {
                    let u = u.trim_end_matches('/');
                    (true, (!u.is_empty()).then(|| u.to_owned()))
                }
            };
            for h in hosts {
                let r = EdgeRoute {
                    service: service.clone(),
                    port,
                    host: h.clone(),
                    path: route_path.clone(),
                    strip_prefix: strip && route_path.is_some(),
                    add_prefix: add.clone(),
                    hsts: ctx.hsts.clone(),
                    headers: ctx.headers.clone(),
                    request_headers: ctx.request_headers.clone(),
                    allow: ctx.allow.clone(),
                    deny: ctx.deny.clone(),
                    rate_limit: ctx.rate_limit.clone(),
                    basic_auth: ctx.basic_auth.clone().filter(|b| !b.1.is_empty()),
                    max_body: ctx.max_body.clone(),
                    upstream_response_timeout: ctx.timeout.clone(),
                    origin: at.clone(),
                    ..EdgeRoute::default()
                };
                self.note(
                    &at,
                    NoteKind::Assumed,
                    format!(
                        "`proxy_pass {url}` → route {} of `{service}` on port {}",
                        r.describe(),
                        port.unwrap_or(80)
                    ),
                );
                self.out.routes.push(r);
            }
            return;
        }
        if let Some((kind, dir)) = root {
            let dir = if kind == "root" {
                format!(
                    "{}{}",
                    dir.trim_end_matches('/'),
                    if prefix.is_empty() { "" } else { prefix }
                )
            } else {
                dir
            };
            let _ = &self.roots;
            for h in hosts {
                self.out.statics.push(StaticSite {
                    container_dir: dir.trim_end_matches('/').to_owned(),
                    host: h.clone(),
                    path: route_path.clone(),
                    fallback: fallback.clone().filter(|f| f.ends_with(".html")),
                    origin: at.clone(),
                });
            }
            return;
        }
        self.note(
            &at,
            NoteKind::NotCarried,
            "neither proxy_pass, root, alias nor return: not translated",
        );
    }
}

/// Directives that need nothing from dockhand (its proxy does it, or it is the image's own).
const IGNORED: &[&str] = &[
    "sendfile",
    "tcp_nopush",
    "tcp_nodelay",
    "keepalive_timeout",
    "types_hash_max_size",
    "default_type",
    "access_log",
    "error_log",
    "log_format",
    "server_tokens",
    "charset",
    "resolver",
    "proxy_http_version",
    "proxy_buffering",
    "proxy_cache_bypass",
    "proxy_redirect",
    "proxy_connect_timeout",
    "proxy_send_timeout",
    "client_body_buffer_size",
    "large_client_header_buffers",
    "map",
    "include",
    "server_names_hash_bucket_size",
    "http2",
    "index",
];

fn split_host_port(addr: &str) -> (String, Option<u16>) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().ok()),
        None => (addr.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_reads_blocks_quotes_and_comments() {
        let d = parse("http { # c\n server { listen 80; add_header X-A \"a b;\"; location / { proxy_pass http://x; } } }\n").unwrap();
        let server = &d[0].block.as_ref().unwrap()[0];
        assert_eq!(server.name, "server");
        let b = server.block.as_ref().unwrap();
        assert_eq!(b[1].args, ["X-A", "a b;"]);
        assert_eq!(b[2].args, ["/"]);
        assert_eq!(b[0].line, 2);
        assert!(parse("server { listen 80;").is_err());
        assert!(parse("server { listen 80 }").is_err());
        assert!(parse("}").is_err());
        assert!(parse("a \"b").is_err());
        // Found by the fuzzer: a quoted empty string where a directive's name goes.
        let e = parse("location / {\n  ''proxy_pass http://b;\n}\n").unwrap_err();
        assert!(e.contains("2:3: an empty directive name"), "{e}");
    }

    #[test]
    fn a_file_that_includes_itself_is_read_once_with_a_note() {
        // Found by the fuzzer: conf.d/default.conf including conf.d/*.conf (itself) several
        // times was expanded again at every level, exponentially.
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("default.conf");
        let include = "include /etc/nginx/conf.d/*.conf;\n".repeat(6);
        std::fs::write(
            &conf,
            format!("{include}server {{ listen 80; location / {{ proxy_pass http://backend:8000; }} {include} }}\n"),
        )
        .unwrap();
        let read = read_mounted(
            "proxy",
            &[(conf, "/etc/nginx/conf.d/default.conf".into())],
            &[],
            &["backend".into()],
            dir.path(),
        );
        assert_eq!(read.routes.len(), 1, "{:?}", read.routes);
        assert!(
            read.notes
                .iter()
                .any(|n| n.message.contains("includes itself")),
            "{:?}",
            read.notes
        );
    }
}
