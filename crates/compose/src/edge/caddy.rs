//! Caddyfiles: site addresses, `reverse_proxy` (in the site or inside `handle` and
//! `handle_path`), `root` + `file_server`, `encode`, `header`, `redir`, `basicauth`, the
//! global `email`; every other directive is listed in a note. Read line by line: the
//! Caddyfile puts one directive on a line and opens blocks with a trailing `{`.

use super::{EdgeRead, EdgeRoute, Redirect, StaticSite};
use crate::NoteKind;

#[derive(Debug, Clone)]
enum Frame {
    Global,
    Site {
        hosts: Vec<String>,
        first_route: usize,
        headers: Vec<(String, String)>,
        auth: Option<(String, String)>,
    },
    Handle {
        path: Option<String>,
        strip: bool,
    },
    BasicAuth {
        users: Vec<String>,
    },
    Other,
}

/// Reads the Caddyfile of proxy service `proxy`; `services` are those `reverse_proxy` may name.
pub fn read(proxy: &str, text: &str, services: &[String]) -> EdgeRead {
    let mut out = EdgeRead::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut root: Option<String> = None;
    for raw in text.lines() {
        let line = raw.split(" #").next().unwrap_or(raw).trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if line == "}" {
            match stack.pop() {
                Some(Frame::Site {
                    headers,
                    auth,
                    first_route,
                    ..
                }) => {
                    let from = first_route.min(out.routes.len());
                    for r in &mut out.routes[from..] {
                        r.headers.extend(headers.iter().cloned());
                        if r.basic_auth.is_none() {
                            r.basic_auth = auth.clone();
                        }
                    }
                }
                Some(Frame::BasicAuth { users }) => {
                    let name = out.secret_name(&format!("{proxy}_htpasswd"));
                    if users
                        .iter()
                        .any(|u| !u.split_once(':').is_some_and(|(_, h)| h.starts_with('$')))
                    {
                        out.note(proxy, "Caddyfile", NoteKind::Warning, format!("basicauth hashes in Caddy's base64 form: decode them to htpasswd lines (`user:$2a$…`) in the secret {name}"));
                    }
                    out.note(proxy, "Caddyfile", NoteKind::Assumed, format!("basicauth → basic_auth; its {} user hash(es) went to the secrets file as {name}", users.len()));
                    out.secrets.push((name.clone(), users.join("\n")));
                    if let Some(Frame::Site { auth, .. }) = stack
                        .iter_mut()
                        .rev()
                        .find(|f| matches!(f, Frame::Site { .. }))
                    {
                        *auth = Some(("Restricted".into(), name));
                    }
                }
                _ => {}
            }
            continue;
        }
        let opens = line.ends_with('{');
        let head: Vec<&str> = if opens {
            words[..words.len() - 1].to_vec()
        } else {
            words.clone()
        };
        // Where we are: the innermost site and handle.
        let site = stack.iter().rev().find_map(|f| match f {
            Frame::Site { hosts, .. } => Some(hosts.clone()),
            _ => None,
        });
        let handle = stack.iter().rev().find_map(|f| match f {
            Frame::Handle { path, strip } => Some((path.clone(), *strip)),
            _ => None,
        });
        if opens && stack.is_empty() {
            if head.is_empty() {
                stack.push(Frame::Global);
            } else {
                let hosts: Vec<String> = head
                    .iter()
                    .map(|h| h.trim_end_matches(','))
                    .filter(|h| !h.starts_with(':'))
                    .map(|h| {
                        h.trim_start_matches("https://")
                            .trim_start_matches("http://")
                    })
                    // `host[:port][/path]`: the path part matches requests, it is no host.
                    .map(|h| h.split(['/', ':']).next().unwrap_or(h).to_ascii_lowercase())
                    // A name dockhand can route: no placeholder (`{$DOMAIN}`), no stray brace.
                    .filter(|h| {
                        h != "localhost"
                            && !h.is_empty()
                            && h.chars().all(|c| {
                                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*' | '_')
                            })
                    })
                    .collect();
                if head
                    .iter()
                    .any(|h| !h.starts_with("http://") && !h.starts_with(':'))
                {
                    out.https = true;
                }
                stack.push(Frame::Site {
                    hosts,
                    first_route: out.routes.len(),
                    headers: Vec::new(),
                    auth: None,
                });
            }
            continue;
        }
        if let Some(Frame::Global) = stack.last() {
            match head.as_slice() {
                ["email", e] => out.acme_email = Some((*e).to_owned()),
                _ => skipped.push(format!("global {}", head.first().unwrap_or(&""))),
            }
            if opens {
                stack.push(Frame::Other);
            }
            continue;
        }
        if let Some(Frame::BasicAuth { users }) = stack.last_mut() {
            if head.len() == 2 {
                users.push(format!("{}:{}", head[0], head[1]));
            }
            if opens {
                stack.push(Frame::Other);
            }
            continue;
        }
        if let Some(Frame::Other) = stack.last() {
            if opens {
                stack.push(Frame::Other);
            }
            continue;
        }
        // A bare `{` inside a block (or `word{`, which Caddy reads as one token): a block with
        // nothing dockhand reads.
        let Some(&directive) = head.first() else {
            if opens {
                stack.push(Frame::Other);
            }
            continue;
        };
        let hosts = site.unwrap_or_default();
        let host_list: Vec<Option<String>> = if hosts.is_empty() {
            vec![None]
        } else {
            hosts.iter().cloned().map(Some).collect()
        };
        let (path, strip) = handle.clone().unwrap_or((None, false));
        match directive {
            "handle" | "handle_path" | "route" if opens => {
                // A path matcher; a named one (`@api`) or anything else is not read.
                let matcher = head.get(1).filter(|m| **m != "{");
                if matcher.is_some_and(|m| !m.starts_with('/')) {
                    out.note(
                        proxy,
                        "Caddyfile",
                        NoteKind::Assumed,
                        format!("`{line}`: only path matchers are read; this block is taken as the whole site"),
                    );
                }
                let p = matcher
                    .filter(|m| m.starts_with('/'))
                    .map(|p| p.trim_end_matches('*').trim_end_matches('/').to_owned())
                    .filter(|p| !p.is_empty());
                stack.push(Frame::Handle {
                    path: p,
                    strip: head[0] == "handle_path",
                });
                continue;
            }
            "basicauth" | "basic_auth" if opens => {
                if head.len() > 1 {
                    out.note(
                        proxy,
                        "Caddyfile",
                        NoteKind::Assumed,
                        format!(
                            "`{line}`: the matcher is ignored, the whole site asks for credentials"
                        ),
                    );
                }
                stack.push(Frame::BasicAuth { users: Vec::new() });
                continue;
            }
            "reverse_proxy" => {
                let Some(target) = head
                    .iter()
                    .skip(1)
                    .find(|w| !w.starts_with('/') && !w.starts_with('*'))
                else {
                    continue;
                };
                let target = target.trim_start_matches("http://");
                let (svc, port) = match target.rsplit_once(':') {
                    Some((h, p)) => (h.to_owned(), p.parse::<u16>().ok()),
                    None => (target.to_owned(), Some(80)),
                };
                if !services.contains(&svc) {
                    out.note(
                        proxy,
                        "Caddyfile",
                        NoteKind::NotCarried,
                        format!("`{line}`: `{svc}` is not an imported service"),
                    );
                    continue;
                }
                for h in &host_list {
                    let r = EdgeRoute {
                        service: svc.clone(),
                        port,
                        host: h.clone(),
                        path: path.clone(),
                        strip_prefix: strip && path.is_some(),
                        origin: line.to_owned(),
                        ..EdgeRoute::default()
                    };
                    out.note(
                        proxy,
                        "Caddyfile",
                        NoteKind::Assumed,
                        format!("`{line}` → route {} of `{svc}`", r.describe()),
                    );
                    out.routes.push(r);
                }
            }
            "root" => root = head.last().map(|s| (*s).to_owned()),
            "file_server" => {
                if let Some(dir) = &root {
                    for h in &host_list {
                        out.statics.push(StaticSite {
                            container_dir: dir.trim_end_matches('/').to_owned(),
                            host: h.clone(),
                            path: path.clone(),
                            fallback: None,
                            origin: line.to_owned(),
                        });
                    }
                } else {
                    out.note(
                        proxy,
                        "Caddyfile",
                        NoteKind::NotCarried,
                        "file_server without `root`",
                    );
                }
            }
            "try_files" => {
                if let (Some(last), Some(s)) = (head.last(), out.statics.last_mut()) {
                    if last.ends_with(".html") {
                        s.fallback = Some((*last).to_owned());
                    }
                }
            }
            "encode" => {}
            "header" if head.len() >= 3 && !head[1].starts_with('-') => {
                let value = head[2..].join(" ").trim_matches('"').to_owned();
                if let Some(Frame::Site { headers, .. }) = stack
                    .iter_mut()
                    .rev()
                    .find(|f| matches!(f, Frame::Site { .. }))
                {
                    headers.push((head[1].to_owned(), value));
                }
            }
            "redir" if head.len() >= 2 => {
                let to = head[1]
                    .trim_end_matches("{uri}")
                    .trim_end_matches('/')
                    .to_owned();
                let code = match head.get(2) {
                    Some(&"permanent") | Some(&"301") => 301,
                    Some(&"308") => 308,
                    _ => 302,
                };
                if to.contains('{') || !to.starts_with("http") {
                    out.note(
                        proxy,
                        "Caddyfile",
                        NoteKind::NotCarried,
                        format!("`{line}` is not a plain host move"),
                    );
                } else {
                    for h in hosts.iter() {
                        let from = format!("{h}{}", path.clone().unwrap_or_default());
                        out.note(
                            proxy,
                            "Caddyfile",
                            NoteKind::Assumed,
                            format!("`{line}` → [[redirects]] from {from} to {to}"),
                        );
                        out.redirects.push(Redirect {
                            from,
                            to: to.clone(),
                            code,
                        });
                    }
                }
            }
            other => {
                skipped.push(other.to_owned());
                if opens {
                    stack.push(Frame::Other);
                }
            }
        }
    }
    skipped.sort();
    skipped.dedup();
    if !skipped.is_empty() {
        out.note(
            proxy,
            "Caddyfile",
            NoteKind::NotCarried,
            format!("not translated: {}", skipped.join(", ")),
        );
    }
    out
}
