//! Traefik's Docker provider, v2 and v3 label forms: routers (`rule`, `entrypoints`, `tls`,
//! `middlewares`, `service`, `priority`), `loadbalancer.server.port`, and the middlewares
//! dockhand's route policies cover; Traefik's static configuration (command flags or a
//! mounted `traefik.yml`, flattened to the same dotted keys) for entrypoints, their HTTP→HTTPS
//! redirection and the ACME e-mail. Everything else is a note.

use std::collections::{BTreeMap, BTreeSet};

use super::{seconds_text, size_text, EdgeRead, EdgeRoute, Redirect};
use crate::NoteKind;

/// The Traefik labels of one compose service.
#[derive(Debug, Clone, Default)]
pub struct Container {
    pub service: String,
    /// `traefik.*` labels (service `labels` and `deploy.labels`), in file order.
    pub labels: Vec<(String, String)>,
    /// Its `expose`d or published container ports, for a router without a port label.
    pub ports: Vec<u16>,
}

/// A router, service or middleware definition, its attributes by lowercased dotted key.
#[derive(Debug, Default)]
struct Def {
    owner: String,
    attrs: BTreeMap<String, String>,
    /// The attribute keys with their original case (header names).
    raw: BTreeMap<String, String>,
}

/// Reads the labels of `containers` with Traefik's static configuration `static_conf`
/// (dotted keys, lowercased: `entrypoints.web.address`) given to proxy service `proxy`.
pub fn read(containers: &[Container], static_conf: &[(String, String)], proxy: &str) -> EdgeRead {
    let mut out = EdgeRead::default();
    let stat = read_static(&mut out, static_conf, proxy);

    let mut routers: BTreeMap<String, Def> = BTreeMap::new();
    let mut services: BTreeMap<String, Def> = BTreeMap::new();
    let mut middlewares: BTreeMap<String, Def> = BTreeMap::new();
    for c in containers {
        let enabled = c
            .labels
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("traefik.enable"))
            .map(|(_, v)| v.trim() != "false");
        if enabled == Some(false) {
            out.note(
                &c.service,
                "labels.traefik.enable",
                NoteKind::Assumed,
                "traefik.enable=false: Traefik did not route this service, nor does dockhand",
            );
            continue;
        }
        for (key, value) in &c.labels {
            let lower = key.to_ascii_lowercase();
            let parts: Vec<&str> = key.split('.').collect();
            let lparts: Vec<&str> = lower.split('.').collect();
            let kind = match lparts.as_slice() {
                ["traefik", "enable"] => continue,
                ["traefik", "http", "routers", _, _, ..] => &mut routers,
                ["traefik", "http", "services", _, _, ..] => &mut services,
                ["traefik", "http", "middlewares", _, _, ..] => &mut middlewares,
                ["traefik", "docker", "network"] | ["traefik", "swarm", "network"] => {
                    out.note(
                        &c.service,
                        key,
                        NoteKind::Assumed,
                        "dockhand's proxy reaches every service on the app's own network",
                    );
                    continue;
                }
                ["traefik", "tcp" | "udp", ..] => {
                    out.note(
                        &c.service,
                        key,
                        NoteKind::NotCarried,
                        "TCP and UDP routing: dockhand's proxy routes HTTP only",
                    );
                    continue;
                }
                _ => {
                    out.note(
                        &c.service,
                        key,
                        NoteKind::NotCarried,
                        "not a Traefik label dockhand translates",
                    );
                    continue;
                }
            };
            let name = parts[3].to_owned();
            let def = kind.entry(name).or_default();
            if def.owner.is_empty() {
                def.owner = c.service.clone();
            }
            def.attrs
                .insert(lparts[4..].join("."), value.trim().to_owned());
            def.raw.insert(lparts[4..].join("."), parts[4..].join("."));
        }
    }

    // The port of each Traefik service, and the compose service it lives on.
    let mut svc_target: BTreeMap<String, (String, Option<u16>)> = BTreeMap::new();
    for (name, def) in &services {
        let mut port = None;
        for (k, v) in &def.attrs {
            match k.as_str() {
                "loadbalancer.server.port" => match v.parse::<u16>() {
                    Ok(p) => port = Some(p),
                    Err(_) => out.note(&def.owner, &label("services", name, k), NoteKind::NotCarried, format!("`{v}` is not a port")),
                },
                "loadbalancer.server.scheme" if v == "http" => {}
                "loadbalancer.passhostheader" if v == "true" => {}
                _ => out.note(&def.owner, &label("services", name, k), NoteKind::NotCarried, "load-balancer setting with no dockhand equivalent (dockhand balances round-robin over healthy instances and checks health itself)"),
            }
        }
        svc_target.insert(name.clone(), (def.owner.clone(), port));
    }

    let mut used_middlewares = BTreeSet::new();
    for (rname, def) in &routers {
        let key = format!("traefik.http.routers.{rname}");
        let at = |k: &str| def.attrs.get(k).map(String::as_str);
        // Which compose service and port.
        let (target, port) = match at("service") {
            Some(s) => {
                let s = s.split('@').next().unwrap_or(s);
                match svc_target.get(s) {
                    Some((owner, port)) => (owner.clone(), *port),
                    None => {
                        out.note(&def.owner, &format!("{key}.service"), NoteKind::NotCarried, format!("router `{rname}` names Traefik service `{s}`, which no imported container defines; not routed"));
                        continue;
                    }
                }
            }
            None => {
                let own: Vec<_> = svc_target
                    .iter()
                    .filter(|(_, (o, _))| *o == def.owner)
                    .collect();
                let port = match own.as_slice() {
                    [(_, (_, p))] => *p,
                    _ => None,
                };
                let port = port.or_else(|| {
                    containers
                        .iter()
                        .find(|c| c.service == def.owner)
                        .and_then(|c| (c.ports.len() == 1).then(|| c.ports[0]))
                });
                (def.owner.clone(), port)
            }
        };
        let Some(rule) = at("rule") else {
            out.note(&def.owner, &key, NoteKind::NotCarried, format!("router `{rname}` has no rule (Traefik's default rule is the container's name as host); give the service a `route`"));
            continue;
        };
        let alts = match parse_rule(rule) {
            Ok(alts) => alts,
            Err(why) => {
                out.note(
                    &def.owner,
                    &format!("{key}.rule"),
                    NoteKind::NotCarried,
                    format!(
                        "rule `{rule}` not translated: {why}; give `{target}` a `route` by hand"
                    ),
                );
                continue;
            }
        };
        // TLS: the router's own, or its entrypoints'.
        let entrypoints: Vec<String> = at("entrypoints")
            .map(|e| {
                e.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let tls = at("tls") == Some("true")
            || at("tls.certresolver").is_some()
            || entrypoints.iter().any(|e| stat.tls_entrypoints.contains(e));
        if tls {
            out.https = true;
        }
        let mut template = EdgeRoute {
            service: target.clone(),
            port,
            origin: format!("router `{rname}`"),
            ..EdgeRoute::default()
        };
        for (k, v) in &def.attrs {
            match k.as_str() {
                "rule" | "service" | "entrypoints" | "middlewares" | "tls" | "tls.certresolver" => {}
                "priority" => out.note(&def.owner, &format!("{key}.priority"), NoteKind::Assumed, format!("priority {v} not needed: dockhand matches the exact host, then the longest path prefix")),
                "tls.domains[0].main" | "tls.domains[0].sans" => out.note(&def.owner, &format!("{key}.{k}"), NoteKind::Assumed, "dockhand gets a certificate for each route host (a wildcard needs `[proxy.acme] domains` and DNS-01)"),
                _ => out.note(&def.owner, &format!("{key}.{k}"), NoteKind::NotCarried, "router setting with no dockhand equivalent"),
            }
        }
        if let Some(resolver) = at("tls.certresolver") {
            out.note(&def.owner, &format!("{key}.tls.certresolver"), NoteKind::Assumed, format!("cert resolver `{resolver}` → dockhand's automatic HTTPS (`[proxy] https_listen`, ACME)"));
        }
        // Entry-point redirection: an entrypoint redirecting plain HTTP to the TLS one
        // sends every request there, so each TLS router is reached through it.
        if tls && !stat.redirecting.is_empty() {
            template.https_redirect = Some(true);
        } else if tls && stat.known {
            template.https_redirect = Some(false);
        }
        let mut redirect_only = None;
        if let Some(list) = at("middlewares") {
            let mut names: Vec<String> = Vec::new();
            expand_chain(list, &middlewares, &mut names, 0);
            for m in names {
                let (mname, provider) = match m.split_once('@') {
                    Some((n, p)) => (n.to_owned(), Some(p.to_owned())),
                    None => (m.clone(), None),
                };
                if provider
                    .as_deref()
                    .is_some_and(|p| p != "docker" && p != "swarm")
                {
                    out.note(&def.owner, &format!("{key}.middlewares"), NoteKind::NotCarried, format!("middleware `{m}` comes from Traefik's {} provider, which the import does not read", provider.unwrap_or_default()));
                    continue;
                }
                let Some(mdef) = middlewares.get(&mname) else {
                    out.note(
                        &def.owner,
                        &format!("{key}.middlewares"),
                        NoteKind::NotCarried,
                        format!("middleware `{mname}` is not defined by any imported container"),
                    );
                    continue;
                };
                used_middlewares.insert(mname.clone());
                if let Some(r) = apply_middleware(&mut out, &mut template, &mname, mdef, &alts) {
                    redirect_only = Some(r);
                }
            }
        }
        if let Some(mut redirects) = redirect_only {
            for r in &redirects {
                out.note(&def.owner, &key, NoteKind::Assumed, format!("router `{rname}` (`{rule}`) only redirects: → [[redirects]] from {} to {} ({})", r.from, r.to, r.code));
            }
            out.redirects.append(&mut redirects);
            continue;
        }
        for alt in alts {
            let mut r = template.clone();
            r.host = alt.host;
            r.path = alt.path;
            if alt.exact {
                out.note(
                    &def.owner,
                    &format!("{key}.rule"),
                    NoteKind::Assumed,
                    format!(
                        "`Path({})` matches one path exactly; dockhand routes match a prefix",
                        r.path.as_deref().unwrap_or("/")
                    ),
                );
            }
            if r.strip_prefix && r.path.is_none() {
                r.strip_prefix = false;
            }
            out.note(
                &def.owner,
                &key,
                NoteKind::Assumed,
                format!(
                    "router `{rname}` (`{rule}`) → route {} of `{target}`{}",
                    r.describe(),
                    port.map(|p| format!(" on port {p}")).unwrap_or_default()
                ),
            );
            out.routes.push(r);
        }
    }
    for (name, def) in &middlewares {
        if !used_middlewares.contains(name) {
            out.note(
                &def.owner,
                &format!("traefik.http.middlewares.{name}"),
                NoteKind::NotCarried,
                "middleware used by no router",
            );
        }
    }
    out
}

fn label(kind: &str, name: &str, attr: &str) -> String {
    format!("traefik.http.{kind}.{name}.{attr}")
}

/// `a,b` with `chain` middlewares replaced by their members (depth-limited).
fn expand_chain(list: &str, defs: &BTreeMap<String, Def>, out: &mut Vec<String>, depth: usize) {
    for m in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let base = m.split('@').next().unwrap_or(m);
        match defs
            .get(base)
            .and_then(|d| d.attrs.get("chain.middlewares"))
        {
            Some(inner) if depth < 8 => expand_chain(inner, defs, out, depth + 1),
            _ => out.push(m.to_owned()),
        }
    }
}

/// Applies middleware `name` to the route template; returns the redirects when the
/// middleware makes the router a pure redirect (a simple `redirectregex`).
fn apply_middleware(
    out: &mut EdgeRead,
    r: &mut EdgeRoute,
    name: &str,
    def: &Def,
    alts: &[Alt],
) -> Option<Vec<Redirect>> {
    let key = format!("traefik.http.middlewares.{name}");
    let owner = def.owner.clone();
    let kind = def
        .attrs
        .keys()
        .next()
        .map(|k| k.split('.').next().unwrap_or("").to_owned())
        .unwrap_or_default();
    let get = |k: &str| def.attrs.get(&format!("{kind}.{k}")).map(String::as_str);
    let not = |out: &mut EdgeRead, k: &str, why: &str| {
        out.note(
            &owner,
            &format!("{key}.{kind}.{k}"),
            NoteKind::NotCarried,
            why.to_owned(),
        )
    };
    let known: &[&str] = match kind.as_str() {
        "ratelimit" => {
            let avg: u64 = get("average").and_then(|v| v.parse().ok()).unwrap_or(0);
            let period = get("period").unwrap_or("1s");
            let unit = match period {
                "1s" | "1" | "" => Some("s"),
                "1m" | "60s" | "60" => Some("m"),
                "1h" | "60m" | "3600s" | "3600" => Some("h"),
                _ => None,
            };
            match (avg, unit) {
                (0, _) => out.note(&owner, &key, NoteKind::NotCarried, "ratelimit with average 0 does not limit"),
                (_, None) => out.note(&owner, &format!("{key}.ratelimit.period"), NoteKind::NotCarried, format!("period `{period}`: dockhand rates are per second, minute or hour; set `rate_limit` by hand")),
                (avg, Some(u)) => {
                    let burst = get("burst").and_then(|v| v.parse::<u32>().ok()).unwrap_or(1).max(1);
                    r.rate_limit = Some((format!("{avg}/{u}"), burst));
                    out.note(&owner, &key, NoteKind::Assumed, format!("ratelimit → rate_limit = {{ rate = \"{avg}/{u}\", burst = {burst} }} per client address"));
                }
            }
            &["average", "period", "burst"]
        }
        "headers" => {
            let mut known = vec![];
            for (k, v) in &def.attrs {
                let Some(attr) = k.strip_prefix("headers.") else {
                    continue;
                };
                let raw = def.raw.get(k).cloned().unwrap_or_default();
                let raw_name = raw.rsplit('.').next().unwrap_or("").to_owned();
                if attr.starts_with("customresponseheaders.") {
                    if v.is_empty() {
                        not(out, attr, "removing a response header is not supported");
                    } else {
                        r.headers.push((raw_name, v.clone()));
                    }
                } else if attr.starts_with("customrequestheaders.") {
                    if v.is_empty() {
                        not(out, attr, "removing a request header is not supported");
                    } else {
                        r.request_headers.push((raw_name, v.clone()));
                    }
                } else {
                    match attr {
                        "stsseconds" => match v.parse::<u64>() {
                            Ok(0) => r.hsts = Some(None),
                            Ok(s) => r.hsts = Some(Some(seconds_text(s))),
                            Err(_) => not(out, attr, "not a number of seconds"),
                        },
                        "forcestsheader" | "stsincludesubdomains" | "stspreload" => {
                            if v == "true" && attr != "forcestsheader" {
                                not(out, attr, "dockhand's HSTS header is `max-age` alone; add includeSubDomains/preload with `headers` if you need them");
                            }
                        }
                        "framedeny" | "contenttypenosniff" | "browserxssfilter" => {
                            if v == "true" {
                                r.security_headers = Some(true);
                            }
                        }
                        "referrerpolicy" => r.headers.push(("Referrer-Policy".into(), v.clone())),
                        "contentsecuritypolicy" => r
                            .headers
                            .push(("Content-Security-Policy".into(), v.clone())),
                        "permissionspolicy" => {
                            r.headers.push(("Permissions-Policy".into(), v.clone()))
                        }
                        "customframeoptionsvalue" => {
                            r.headers.push(("X-Frame-Options".into(), v.clone()))
                        }
                        "sslredirect" if v == "true" => r.https_redirect = Some(true),
                        _ => not(out, attr, "header option with no dockhand equivalent"),
                    }
                }
                known.push(attr.to_owned());
            }
            out.note(
                &owner,
                &key,
                NoteKind::Assumed,
                "headers → the route's `headers`, `request_headers`, `security_headers` and `hsts`",
            );
            return None;
        }
        "basicauth" => {
            match get("users") {
                Some(users) if !users.is_empty() => {
                    let lines: Vec<&str> = users.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
                    let secret = out.secret_name(&format!("{name}_htpasswd"));
                    out.secrets.push((secret.clone(), lines.join("\n")));
                    let realm = get("realm").unwrap_or("traefik").to_owned();
                    r.basic_auth = Some((realm, secret.clone()));
                    out.note(&owner, &key, NoteKind::Assumed, format!("basicauth → basic_auth; its {} user hash(es) went to the secrets file as {secret}", lines.len()));
                }
                _ => out.note(&owner, &key, NoteKind::NotCarried, "basicauth without inline `users` (a `usersfile`?): put the htpasswd lines in a secret and set the route's `basic_auth`"),
            }
            &["users", "realm", "removeheader"]
        }
        "redirectscheme" => {
            if get("scheme") == Some("https") {
                r.https_redirect = Some(true);
                out.note(
                    &owner,
                    &key,
                    NoteKind::Assumed,
                    "redirectscheme https → https_redirect = true",
                );
            } else {
                out.note(
                    &owner,
                    &key,
                    NoteKind::NotCarried,
                    "only a redirect to https is translated",
                );
            }
            &["scheme", "permanent", "port"]
        }
        "redirectregex" => {
            let regex = get("regex").unwrap_or("");
            let repl = get("replacement").unwrap_or("");
            let code = if get("permanent") == Some("true") {
                301
            } else {
                302
            };
            match simple_move(regex, repl) {
                Some((from, to)) => {
                    let _ = alts;
                    return Some(vec![Redirect { from, to, code }]);
                }
                None => out.note(&owner, &key, NoteKind::NotCarried, format!("redirectregex `{regex}` → `{repl}` is not a plain host or prefix move; write a [[redirects]] entry by hand")),
            }
            &["regex", "replacement", "permanent"]
        }
        "stripprefix" => {
            let prefixes: Vec<&str> = get("prefixes")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let paths: BTreeSet<String> = alts.iter().filter_map(|a| a.path.clone()).collect();
            if !prefixes.is_empty()
                && paths.iter().all(|p| {
                    prefixes
                        .iter()
                        .any(|x| x.trim_end_matches('/') == p.trim_end_matches('/'))
                })
                && !paths.is_empty()
            {
                r.strip_prefix = true;
                out.note(
                    &owner,
                    &key,
                    NoteKind::Assumed,
                    "stripprefix → strip_prefix = true",
                );
            } else {
                out.note(&owner, &key, NoteKind::NotCarried, format!("stripprefix {} does not match the router's path prefix; dockhand strips the route's own `path`", prefixes.join(",")));
            }
            &["prefixes", "forceslash"]
        }
        "addprefix" => {
            match get("prefix") {
                Some(p) if p.starts_with('/') => {
                    r.add_prefix = Some(p.to_owned());
                    out.note(
                        &owner,
                        &key,
                        NoteKind::Assumed,
                        format!("addprefix → add_prefix = \"{p}\""),
                    );
                }
                _ => out.note(
                    &owner,
                    &key,
                    NoteKind::NotCarried,
                    "addprefix without a prefix starting with `/`",
                ),
            }
            &["prefix"]
        }
        "compress" => {
            out.note(&owner, &key, NoteKind::Assumed, "compress: dockhand's proxy compresses text responses by default (`[proxy] compression`)");
            return None;
        }
        "ipallowlist" | "ipwhitelist" => {
            let ranges: Vec<String> = get("sourcerange")
                .unwrap_or("")
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            out.note(
                &owner,
                &key,
                NoteKind::Assumed,
                format!("{kind} → allow = [{}]", ranges.join(", ")),
            );
            r.allow.extend(ranges);
            if def.attrs.keys().any(|k| k.contains(".ipstrategy")) {
                out.note(
                    &owner,
                    &format!("{key}.{kind}.ipstrategy"),
                    NoteKind::NotCarried,
                    "set `[proxy] trusted_proxies` to the proxies in front instead",
                );
            }
            return None;
        }
        "buffering" => {
            if let Some(b) = get("maxrequestbodybytes").and_then(size_text) {
                out.note(
                    &owner,
                    &key,
                    NoteKind::Assumed,
                    format!("buffering.maxRequestBodyBytes → max_body = \"{b}\""),
                );
                r.max_body = Some(b);
            }
            &["maxrequestbodybytes"]
        }
        "" => return None,
        other => {
            out.note(
                &owner,
                &key,
                NoteKind::NotCarried,
                format!("the {other} middleware has no dockhand equivalent"),
            );
            return None;
        }
    };
    for k in def.attrs.keys() {
        let attr = k.strip_prefix(&format!("{kind}.")).unwrap_or(k);
        if !known.contains(&attr) {
            not(out, attr, "option not translated");
        }
    }
    None
}

/// A `redirectregex` that moves a host or a prefix: `^https?://www\.example\.org/(.*)` →
/// `https://example.org/${1}` gives `("www.example.org", "https://example.org")`.
pub(crate) fn simple_move(regex: &str, repl: &str) -> Option<(String, String)> {
    let mut re = regex.trim().trim_start_matches('^').trim_end_matches('$');
    for scheme in [
        "https?://",
        "http(s)?://",
        "(https?)://",
        "http://",
        "https://",
        "(?:https?)://",
        "https?:\\/\\/",
    ] {
        if let Some(rest) = re.strip_prefix(scheme) {
            re = rest;
            break;
        }
    }
    let tail = ["/(.*)", "(.*)", "/?(.*)"]
        .iter()
        .find_map(|t| re.strip_suffix(t))?;
    let from = tail.replace("\\.", ".").replace("\\/", "/");
    if from.is_empty()
        || from.contains([
            '(', ')', '[', ']', '*', '+', '?', '|', '\\', '{', '}', '^', '$',
        ])
    {
        return None;
    }
    let to = ["/${1}", "${1}", "/$1", "$1"]
        .iter()
        .find_map(|t| repl.strip_suffix(t))?;
    if !(to.starts_with("https://") || to.starts_with("http://")) || to.contains('$') {
        return None;
    }
    Some((
        from.trim_end_matches('/').to_owned(),
        to.trim_end_matches('/').to_owned(),
    ))
}

/// What Traefik's static configuration says.
#[derive(Debug, Default)]
struct Static {
    /// Any static configuration was found (else defaults are assumed).
    known: bool,
    /// Entrypoints that redirect to HTTPS.
    redirecting: Vec<String>,
    /// Entrypoints with TLS on by default (`http.tls`).
    tls_entrypoints: Vec<String>,
}

fn read_static(out: &mut EdgeRead, conf: &[(String, String)], proxy: &str) -> Static {
    let mut s = Static {
        known: !conf.is_empty(),
        ..Static::default()
    };
    let mut ignored = Vec::new();
    for (k, v) in conf {
        let parts: Vec<&str> = k.split('.').collect();
        match parts.as_slice() {
            ["entrypoints", e, "address"] => {
                if v.ends_with(":443") {
                    s.tls_entrypoints.push((*e).to_owned());
                }
            }
            ["entrypoints", e, "http", "redirections", "entrypoint", "to"] => {
                s.redirecting.push((*e).to_owned());
                out.note(proxy, k, NoteKind::Assumed, format!("entrypoint `{e}` redirects to `{v}` → HTTPS redirect on the routes with certificates"));
            }
            ["entrypoints", _, "http", "redirections", ..] => {}
            ["entrypoints", e, "http", "tls", ..] => s.tls_entrypoints.push((*e).to_owned()),
            ["certificatesresolvers", _, "acme", "email"] => out.acme_email = Some(v.clone()),
            ["certificatesresolvers", r, "acme", rest @ ..] => {
                let rest = rest.join(".");
                if rest.starts_with("dnschallenge") {
                    out.note(proxy, k, NoteKind::NotCarried, format!("resolver `{r}` uses a DNS challenge: set `[proxy.acme] challenge = \"dns-01\"` and `[proxy.acme.dns]` for your provider"));
                } else if rest == "caserver" && v.contains("staging") {
                    out.note(proxy, k, NoteKind::NotCarried, "a staging CA: set `[proxy.acme] directory = \"letsencrypt-staging\"` if you want it");
                }
            }
            ["providers", ..]
            | ["api", ..]
            | ["log", ..]
            | ["accesslog", ..]
            | ["ping", ..]
            | ["global", ..]
            | ["metrics", ..] => ignored.push(k.clone()),
            _ => out.note(
                proxy,
                k,
                NoteKind::NotCarried,
                "Traefik static setting with no dockhand equivalent",
            ),
        }
    }
    s.tls_entrypoints.dedup();
    if !ignored.is_empty() {
        out.note(
            proxy,
            "command",
            NoteKind::NotCarried,
            format!(
                "Traefik's own settings not needed with dockhand's proxy: {}",
                ignored.join(", ")
            ),
        );
    }
    s
}

/// One alternative of a rule: a host and/or a path prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alt {
    pub host: Option<String>,
    pub path: Option<String>,
    /// From `Path`, not `PathPrefix`.
    pub exact: bool,
}

/// A router rule as the alternatives it matches: `Host(a) && (PathPrefix(/x) || Path(/y))`
/// → `[a/x, a/y]`. `Host(a, b)` (v2) is two alternatives.
pub fn parse_rule(rule: &str) -> Result<Vec<Alt>, String> {
    let tokens = tokenize(rule)?;
    let mut p = RuleParser { t: &tokens, i: 0 };
    let alts = p.or()?;
    if p.i != tokens.len() {
        return Err(format!("unexpected `{}`", tokens[p.i].text()));
    }
    if alts.len() > 64 {
        return Err("too many alternatives".into());
    }
    Ok(alts)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    And,
    Or,
    Not,
}

impl Tok {
    fn text(&self) -> String {
        match self {
            Tok::Ident(s) | Tok::Str(s) => s.clone(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::And => "&&".into(),
            Tok::Or => "||".into(),
            Tok::Not => "!".into(),
        }
    }
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Tok::LParen),
            ')' => out.push(Tok::RParen),
            ',' => out.push(Tok::Comma),
            '!' => out.push(Tok::Not),
            '&' if chars.peek().map(|p| p.1) == Some('&') => {
                chars.next();
                out.push(Tok::And);
            }
            '|' if chars.peek().map(|p| p.1) == Some('|') => {
                chars.next();
                out.push(Tok::Or);
            }
            '`' | '"' | '\'' => {
                let mut text = String::new();
                let mut closed = false;
                for (_, d) in chars.by_ref() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    text.push(d);
                }
                if !closed {
                    return Err(format!("unterminated string at {i}"));
                }
                out.push(Tok::Str(text));
            }
            c if c.is_ascii_alphabetic() => {
                let mut text = String::from(c);
                while let Some(&(_, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() {
                        text.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Ident(text));
            }
            other => return Err(format!("unexpected `{other}`")),
        }
    }
    Ok(out)
}

struct RuleParser<'t> {
    t: &'t [Tok],
    i: usize,
}

impl RuleParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }

    fn or(&mut self) -> Result<Vec<Alt>, String> {
        let mut alts = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.i += 1;
            alts.extend(self.and()?);
            if alts.len() > 64 {
                return Err("too many alternatives".into());
            }
        }
        Ok(alts)
    }

    fn and(&mut self) -> Result<Vec<Alt>, String> {
        let mut alts = self.atom()?;
        while self.peek() == Some(&Tok::And) {
            self.i += 1;
            let right = self.atom()?;
            let mut product = Vec::new();
            for a in &alts {
                for b in &right {
                    product.push(merge(a, b)?);
                    if product.len() > 64 {
                        return Err("too many alternatives".into());
                    }
                }
            }
            alts = product;
        }
        Ok(alts)
    }

    fn atom(&mut self) -> Result<Vec<Alt>, String> {
        match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.i += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err("a `(` is not closed".into());
                }
                self.i += 1;
                Ok(inner)
            }
            Some(Tok::Not) => Err("negated matchers (`!`) have no dockhand equivalent".into()),
            Some(Tok::Ident(name)) => {
                self.i += 1;
                if self.peek() != Some(&Tok::LParen) {
                    return Err(format!("`{name}` without arguments"));
                }
                self.i += 1;
                let mut args = Vec::new();
                loop {
                    match self.peek().cloned() {
                        Some(Tok::Str(s)) => {
                            args.push(s);
                            self.i += 1;
                        }
                        Some(Tok::RParen) => {
                            self.i += 1;
                            break;
                        }
                        _ => return Err(format!("malformed arguments of `{name}`")),
                    }
                    match self.peek() {
                        Some(Tok::Comma) => self.i += 1,
                        Some(Tok::RParen) => {}
                        _ => return Err(format!("malformed arguments of `{name}`")),
                    }
                }
                if args.is_empty() {
                    return Err(format!("`{name}` has no argument"));
                }
                let mut alts = Vec::new();
                for a in args {
                    alts.push(match name.as_str() {
                        "Host" => {
                            let h = a.trim().to_ascii_lowercase();
                            if h.is_empty() || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
                                return Err(format!("`{a}` is not a plain host name"));
                            }
                            Alt { host: Some(h), ..Alt::default() }
                        }
                        "PathPrefix" | "Path" => {
                            if !a.starts_with('/') || a.contains(['{', '}', '*', '?', ' ']) {
                                return Err(format!("`{a}` is not a plain path"));
                            }
                            let p = a.trim_end_matches('/');
                            Alt {
                                path: (!p.is_empty()).then(|| p.to_owned()),
                                exact: name == "Path" && !p.is_empty(),
                                ..Alt::default()
                            }
                        }
                        "HostRegexp" => {
                            return Err(format!("`HostRegexp({a})`: dockhand routes match exact host names; add a route per host"))
                        }
                        other => {
                            return Err(format!("the `{other}` matcher has no dockhand equivalent"))
                        }
                    });
                }
                Ok(alts)
            }
            Some(t) => Err(format!("unexpected `{}`", t.text())),
            None => Err("the rule ends early".into()),
        }
    }
}

fn merge(a: &Alt, b: &Alt) -> Result<Alt, String> {
    let host = match (&a.host, &b.host) {
        (Some(x), Some(y)) if x != y => return Err("two different hosts joined by `&&`".into()),
        (x, y) => x.clone().or_else(|| y.clone()),
    };
    let (path, exact) = match (&a.path, &b.path) {
        (Some(_), Some(_)) => return Err("two path matchers joined by `&&`".into()),
        (Some(p), None) => (Some(p.clone()), a.exact),
        (None, Some(p)) => (Some(p.clone()), b.exact),
        (None, None) => (None, false),
    };
    Ok(Alt { host, path, exact })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alt(host: Option<&str>, path: Option<&str>) -> Alt {
        Alt {
            host: host.map(String::from),
            path: path.map(String::from),
            exact: false,
        }
    }

    #[test]
    fn rules_become_host_and_prefix_alternatives() {
        assert_eq!(
            parse_rule("Host(`a.example.org`)").unwrap(),
            [alt(Some("a.example.org"), None)]
        );
        assert_eq!(
            parse_rule("Host(`a.org`) && (PathPrefix(`/api`) || PathPrefix(`/v1/`))").unwrap(),
            [
                alt(Some("a.org"), Some("/api")),
                alt(Some("a.org"), Some("/v1"))
            ]
        );
        // v2's several arguments
        assert_eq!(
            parse_rule("Host(`a.org`, `www.a.org`)").unwrap(),
            [alt(Some("a.org"), None), alt(Some("www.a.org"), None)]
        );
        assert_eq!(
            parse_rule("Host(`a.org`) || Host(`b.org`) && PathPrefix(`/x`)").unwrap(),
            [alt(Some("a.org"), None), alt(Some("b.org"), Some("/x"))]
        );
        let exact = parse_rule("Path(`/health`)").unwrap();
        assert!(exact[0].exact);
        assert!(parse_rule("HostRegexp(`{sub:[a-z]+}.a.org`)").is_err());
        assert!(parse_rule("Host(`a.org`) && Host(`b.org`)").is_err());
        assert!(parse_rule("!Host(`a.org`)").is_err());
        assert!(parse_rule("Host(`a.org`").is_err());
        assert!(parse_rule("Headers(`X`, `y`)").is_err());
        assert!(parse_rule("Host(`a.org`) &&").is_err());
    }

    #[test]
    fn simple_regex_redirects_are_moves() {
        assert_eq!(
            simple_move(
                "^https?://www\\.example\\.org/(.*)",
                "https://example.org/${1}"
            ),
            Some(("www.example.org".into(), "https://example.org".into()))
        );
        assert_eq!(
            simple_move(
                "^https://example\\.org/old/(.*)",
                "https://example.org/new/$1"
            ),
            Some(("example.org/old".into(), "https://example.org/new".into()))
        );
        assert_eq!(
            simple_move("^https?://(.*)\\.example\\.org/(.*)", "https://x/$2"),
            None
        );
    }
}
