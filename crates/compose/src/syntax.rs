//! The pure readers of compose value forms and the writers of dockhand forms: ports,
//! healthcheck URLs, sizes, URLs, commands and paths. No I/O beyond `canonicalize`.

use std::path::{Component, Path, PathBuf};

use toml_edit::{Array, InlineTable, Item, Table};

use crate::value::Value;

/// What a service's ports come to.
pub(crate) struct PublishedPort {
    pub host_ip: Option<String>,
    pub host_port: Option<String>,
    pub container: u16,
    pub protocol: String,
}

pub(crate) struct Url {
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub database: Option<String>,
}

/// `scheme://[user[:password]@]host[:port][/database][?…]`.
pub(crate) fn parse_url(value: &str) -> Option<Url> {
    let (scheme, rest) = value.split_once("://")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (
                Some(u.to_owned()).filter(|u| !u.is_empty()),
                Some(p.to_owned()),
            ),
            None => (Some(u.to_owned()), None),
        },
        None => (None, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), Some(p.parse().ok()?)),
        None => (hostport.to_owned(), None),
    };
    let database = path
        .split('?')
        .next()
        .filter(|d| !d.is_empty())
        .map(String::from);
    Some(Url {
        scheme: scheme.to_owned(),
        user,
        password,
        host,
        port,
        database,
    })
}

pub(crate) fn scheme_engine(scheme: &str) -> Option<&'static str> {
    match scheme {
        "postgres" | "postgresql" => Some("postgres"),
        "mysql" => Some("mysql"),
        "mariadb" => Some("mariadb"),
        "mongodb" => Some("mongodb"),
        "redis" => Some("redis"),
        _ => None,
    }
}

/// The URL scheme dockhand writes for an engine.
pub(crate) fn d_scheme(engine: Option<&str>) -> &'static str {
    match engine {
        Some("postgres") => "postgres",
        Some("mysql") | Some("mariadb") => "mysql",
        Some("mongodb") => "mongodb",
        _ => "redis",
    }
}

pub(crate) fn default_port(engine: &str) -> u16 {
    match engine {
        "postgres" => 5432,
        "mysql" | "mariadb" => 3306,
        "mongodb" => 27017,
        _ => 6379,
    }
}

/// `command`/`entrypoint` as a TOML string or array (`$` escaped for dockhand).
pub(crate) fn command_item(v: &Value) -> Option<Item> {
    match v {
        Value::Seq(items) if !items.is_empty() => {
            let arr: Array = items
                .iter()
                .map(|i| escape(&i.scalar().unwrap_or_default()))
                .collect();
            Some(toml_edit::value(arr))
        }
        Value::Seq(_) | Value::Null => None,
        other => other
            .scalar()
            .filter(|s| !s.is_empty())
            .map(|s| toml_edit::value(escape(&s))),
    }
}

pub(crate) fn restart_text(v: &Value) -> Option<String> {
    match v {
        Value::Bool(false) => Some("no".into()),
        other => other.scalar(),
    }
}

/// A literal string for dockhand.toml, where `$` starts interpolation.
pub(crate) fn escape(s: &str) -> String {
    s.replace('$', "$$")
}

/// One port entry: `Ok(None)` for an entry that publishes nothing and needs no note.
pub(crate) fn parse_port(p: &Value) -> Result<Option<PublishedPort>, String> {
    match p {
        Value::Map(_) => {
            let target = p.get("target").and_then(Value::scalar).unwrap_or_default();
            let container: u16 = target
                .parse()
                .map_err(|_| format!("port `{target}` is not a single port number"))?;
            let published = p.get("published").and_then(Value::scalar);
            if published.as_deref().is_some_and(|s| s.contains('-')) {
                return Err(format!(
                    "port range `{}` is not supported",
                    published.unwrap_or_default()
                ));
            }
            Ok(Some(PublishedPort {
                host_ip: p.get("host_ip").and_then(Value::scalar),
                host_port: published,
                container,
                protocol: p
                    .get("protocol")
                    .and_then(Value::scalar)
                    .unwrap_or_else(|| "tcp".into()),
            }))
        }
        other => {
            let text = other.scalar().unwrap_or_default();
            let (spec, protocol) = match text.rsplit_once('/') {
                Some((s, proto)) => (s.to_owned(), proto.to_owned()),
                None => (text.clone(), "tcp".to_owned()),
            };
            // host_ip may be an IPv6 address in brackets.
            let (host_ip, rest) = if let Some(after) = spec.strip_prefix('[') {
                let (ip, rest) = after.split_once(']').unwrap_or((after, ""));
                (Some(ip.to_owned()), rest.trim_start_matches(':').to_owned())
            } else {
                let parts: Vec<&str> = spec.split(':').collect();
                if parts.len() == 3 {
                    (
                        Some(parts[0].to_owned()),
                        format!("{}:{}", parts[1], parts[2]),
                    )
                } else {
                    (None, spec.clone())
                }
            };
            let (host_port, container) = match rest.split_once(':') {
                Some((h, c)) => (Some(h.to_owned()).filter(|h| !h.is_empty()), c.to_owned()),
                None => (None, rest.clone()),
            };
            if container.contains('-') || host_port.as_deref().is_some_and(|h| h.contains('-')) {
                return Err(format!(
                    "port range `{text}` is not supported; list the ports one by one"
                ));
            }
            let container: u16 = container
                .parse()
                .map_err(|_| format!("port `{text}` cannot be read"))?;
            Ok(Some(PublishedPort {
                host_ip: host_ip.filter(|i| !i.is_empty()),
                host_port,
                container,
                protocol,
            }))
        }
    }
}

/// The path of a healthcheck that only fetches a URL on this container with curl or wget.
pub(crate) fn http_probe(cmd: &str, port: Option<u16>) -> Option<String> {
    let port = port?;
    match probe_url(cmd) {
        Some((p, path)) if p == port => Some(path),
        _ => None,
    }
}

/// `(port, path)` of a healthcheck that only fetches a localhost URL with curl or wget
/// (`curl -f http://localhost:8080/health || exit 1`, `wget -q --spider http://…`).
pub(crate) fn probe_url(cmd: &str) -> Option<(u16, String)> {
    let cmd = cmd.trim();
    let cmd = cmd
        .strip_suffix("|| exit 1")
        .or_else(|| cmd.strip_suffix("|| exit"))
        .unwrap_or(cmd)
        .trim();
    if cmd.contains(['|', ';', '&', '`', '$', '>', '<']) {
        return None;
    }
    let words: Vec<&str> = cmd.split_whitespace().collect();
    if !matches!(words.first(), Some(&"curl") | Some(&"wget")) {
        return None;
    }
    let urls: Vec<&str> = words
        .iter()
        .map(|w| w.trim_matches(['"', '\'']))
        .filter(|w| w.starts_with("http://"))
        .collect();
    let [url] = urls.as_slice() else {
        return None;
    };
    let rest = &url["http://".len()..];
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, url_port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().ok()?)
        }
        _ => (authority, 80),
    };
    if !["localhost", "127.0.0.1", "0.0.0.0", "[::1]"].contains(&host) {
        return None;
    }
    Some((url_port, path.to_owned()))
}

/// Docker's sizes (`512m`, `1g`, `128mb`, bytes) in dockhand's units (powers of 1024).
pub(crate) fn docker_size(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    if num.is_empty() {
        return None;
    }
    let unit = match unit.trim() {
        "" | "b" => "B",
        "k" | "kb" | "kib" => "KiB",
        "m" | "mb" | "mib" => "MiB",
        "g" | "gb" | "gib" => "GiB",
        "t" | "tb" | "tib" => "TiB",
        _ => return None,
    };
    Some(format!("{num}{unit}"))
}

/// Compose durations (`1m30s`, `1h`, `500ms`, `10us` rounded) in dockhand's form.
pub(crate) fn duration(s: &str) -> String {
    s.trim().replace(' ', "")
}

pub(crate) fn small_or_table(table: InlineTable) -> Item {
    let long = table.len() > 3 || table.to_string().len() > 80;
    if long {
        let mut t = Table::new();
        for (k, v) in table.iter() {
            t.insert(k, Item::Value(v.clone()));
        }
        Item::Table(t)
    } else {
        toml_edit::value(table)
    }
}

pub(crate) fn array_item(mut arr: Array) -> Item {
    if arr.len() > 1 || arr.to_string().len() > 60 {
        for v in arr.iter_mut() {
            v.decor_mut().set_prefix("\n  ");
        }
        arr.set_trailing("\n");
        arr.set_trailing_comma(true);
    }
    toml_edit::value(arr)
}

/// `volumes[0].source` → `volumes.source`.
pub(crate) fn strip_indexes(key: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in key.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

pub(crate) fn same_dir(a: &Path, b: &Path) -> bool {
    let b = if b.as_os_str().is_empty() {
        Path::new(".")
    } else {
        b
    };
    absolute(a) == absolute(b)
}

/// Removes `.` and `..` components without touching the filesystem.
pub(crate) fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub(crate) fn relative_to(file: &Path, dir: &Path) -> PathBuf {
    file.strip_prefix(dir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| file.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(text: &str) -> PublishedPort {
        parse_port(&Value::Str(text.into())).unwrap().unwrap()
    }

    #[test]
    fn short_port_syntaxes() {
        let p = port("8000");
        assert_eq!((p.host_port, p.container), (None, 8000));
        let p = port("8080:80");
        assert_eq!((p.host_port.as_deref(), p.container), (Some("8080"), 80));
        let p = port("127.0.0.1:8000:8000");
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        let p = port("127.0.0.1::9000");
        assert_eq!(
            (p.host_ip.as_deref(), p.host_port, p.container),
            (Some("127.0.0.1"), None, 9000)
        );
        let p = port("[::1]:53:53/udp");
        assert_eq!(
            (p.host_ip.as_deref(), p.protocol.as_str()),
            (Some("::1"), "udp")
        );
        assert!(parse_port(&Value::Str("8000-8010:8000-8010".into())).is_err());
        let p = parse_port(&Value::Int(3000)).unwrap().unwrap();
        assert_eq!(p.container, 3000);
    }

    #[test]
    fn long_port_syntax() {
        let v = crate::load::parse_str(
            Path::new("t"),
            "target: 80\npublished: \"8080\"\nhost_ip: 127.0.0.1\nprotocol: tcp\n",
        )
        .unwrap();
        let p = parse_port(&v).unwrap().unwrap();
        assert_eq!(
            (p.container, p.host_port.as_deref(), p.host_ip.as_deref()),
            (80, Some("8080"), Some("127.0.0.1"))
        );
        let v =
            crate::load::parse_str(Path::new("t"), "target: 80\npublished: 8000-8001\n").unwrap();
        assert!(parse_port(&v).is_err());
    }

    #[test]
    fn http_probes_become_paths() {
        assert_eq!(
            http_probe("curl -f http://localhost:3000/api/heartbeat", Some(3000)).as_deref(),
            Some("/api/heartbeat")
        );
        assert_eq!(
            http_probe(
                "wget -qO- http://127.0.0.1:8000/health || exit 1",
                Some(8000)
            )
            .as_deref(),
            Some("/health")
        );
        assert_eq!(
            http_probe("curl -fsS http://localhost/", Some(80)).as_deref(),
            Some("/")
        );
        assert_eq!(
            http_probe("curl -f http://localhost:3000/x", Some(8000)),
            None
        );
        assert_eq!(http_probe("curl -f http://localhost:3000/x", None), None);
        assert_eq!(
            http_probe("curl -f http://localhost:3000/x && touch y", Some(3000)),
            None
        );
        assert_eq!(http_probe("pg_isready", Some(3000)), None);
    }

    #[test]
    fn sizes_in_dockhand_units() {
        assert_eq!(docker_size("128mb").as_deref(), Some("128MiB"));
        assert_eq!(docker_size("1g").as_deref(), Some("1GiB"));
        assert_eq!(docker_size("512M").as_deref(), Some("512MiB"));
        assert_eq!(docker_size("1048576").as_deref(), Some("1048576B"));
        assert_eq!(docker_size("lots"), None);
    }
}
