//! Where a remote command goes: `ssh://USER@HOST[:PORT]`, `USER@HOST` or a bare host (which
//! may be an alias of the user's `~/.ssh/config`). Pure parsing, no I/O.

use std::fmt;

/// An SSH destination. `user` and `port` are left to the user's SSH configuration when absent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Destination {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// Why a destination does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid destination `{input}`: {problem}")]
pub struct DestinationError {
    pub input: String,
    pub problem: String,
}

/// The shape a destination is written in, for help texts.
pub const DESTINATION_HELP: &str =
    "write it as ssh://USER@HOST[:PORT] (e.g. ssh://deploy@203.0.113.10), USER@HOST, or a host alias of ~/.ssh/config";

impl Destination {
    /// Parses `ssh://USER@HOST[:PORT]`, `USER@HOST[:PORT]` is not accepted (ambiguous with
    /// scp's `HOST:PATH`), `USER@HOST` or `HOST`. IPv6 addresses go in brackets with a port.
    pub fn parse(input: &str) -> Result<Destination, DestinationError> {
        let fail = |problem: &str| DestinationError {
            input: input.to_string(),
            problem: problem.to_string(),
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        let (rest, url) = match text.split_once("://") {
            Some(("ssh", rest)) => (rest, true),
            Some((scheme, _)) => {
                return Err(fail(&format!(
                    "the scheme `{scheme}://` is not supported, only ssh://"
                )))
            }
            None => (text, false),
        };
        let rest = if url {
            rest.strip_suffix('/').unwrap_or(rest)
        } else {
            rest
        };
        if rest.contains('/') {
            return Err(fail("a destination has no path"));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((user, hostport)) => {
                if user.is_empty() {
                    return Err(fail("the user before `@` is empty"));
                }
                if let Some(c) = user.chars().find(|c| !valid_user_char(*c)) {
                    return Err(fail(&format!("the user name contains `{c}`")));
                }
                (Some(user.to_string()), hostport)
            }
            None => (None, rest),
        };
        let (host, port) = split_port(hostport, url).map_err(|p| fail(&p))?;
        if host.is_empty() {
            return Err(fail("the host is empty"));
        }
        if host.starts_with('-') {
            return Err(fail("a host cannot start with `-`"));
        }
        if let Some(c) = host.chars().find(|c| !valid_host_char(*c)) {
            return Err(fail(&format!("the host contains `{c}`")));
        }
        Ok(Destination {
            user,
            host: host.to_string(),
            port,
        })
    }

    /// `USER@HOST` (or `HOST`), the destination argument of `ssh`.
    pub fn ssh_target(&self) -> String {
        match &self.user {
            Some(user) => format!("{user}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// The same host reached as another user (the port is kept).
    pub fn with_user(&self, user: &str) -> Destination {
        Destination {
            user: Some(user.to_string()),
            ..self.clone()
        }
    }

    /// Whether the user logs in as root (`None`: decided by the SSH configuration).
    pub fn is_root(&self) -> Option<bool> {
        self.user.as_deref().map(|u| u == "root")
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ssh://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

fn split_port(hostport: &str, url: bool) -> Result<(&str, Option<u16>), String> {
    if let Some(inner) = hostport.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err("a `[` without its `]`".into());
        };
        return match after {
            "" => Ok((host, None)),
            p => match p.strip_prefix(':') {
                Some(p) => Ok((host, Some(parse_port(p)?))),
                None => Err(format!("unexpected `{p}` after the address")),
            },
        };
    }
    match hostport.matches(':').count() {
        0 => Ok((hostport, None)),
        1 if url => {
            let (host, port) = hostport.split_once(':').unwrap_or((hostport, ""));
            Ok((host, Some(parse_port(port)?)))
        }
        1 => Err("a port needs the ssh:// form (ssh://USER@HOST:PORT)".into()),
        // A bare IPv6 address.
        _ => Ok((hostport, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{p}` is not a port (1-65535)")),
        Ok(port) => Ok(port),
    }
}

fn valid_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn valid_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '%')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(user: Option<&str>, host: &str, port: Option<u16>) -> Destination {
        Destination {
            user: user.map(str::to_string),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_the_accepted_forms() {
        let cases = [
            (
                "ssh://deploy@203.0.113.10",
                d(Some("deploy"), "203.0.113.10", None),
            ),
            (
                "ssh://deploy@203.0.113.10:2222",
                d(Some("deploy"), "203.0.113.10", Some(2222)),
            ),
            ("ssh://example.org/", d(None, "example.org", None)),
            ("root@vps1", d(Some("root"), "vps1", None)),
            ("prod-box", d(None, "prod-box", None)),
            (
                "ssh://root@[2001:db8::1]:22",
                d(Some("root"), "2001:db8::1", Some(22)),
            ),
            ("admin@2001:db8::1", d(Some("admin"), "2001:db8::1", None)),
        ];
        for (input, want) in cases {
            assert_eq!(Destination::parse(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "ssh://deploy@203.0.113.10:2222",
            "ssh://root@[2001:db8::1]:22",
            "ssh://h",
        ] {
            let parsed = Destination::parse(input).unwrap();
            assert_eq!(parsed.to_string(), input);
            assert_eq!(Destination::parse(&parsed.to_string()).unwrap(), parsed);
        }
    }

    #[test]
    fn rejects_malformed_destinations_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("https://example.org", "scheme `https://`"),
            ("ssh://@host", "user before `@` is empty"),
            ("ssh://deploy@", "host is empty"),
            ("ssh://deploy@host:0", "not a port"),
            ("ssh://deploy@host:http", "not a port"),
            ("deploy@host:22", "ssh:// form"),
            ("ssh://deploy@host/path", "no path"),
            ("-oProxyCommand=x", "cannot start with `-`"),
            ("de ploy@host", "contains ` `"),
            ("host;rm", "contains `;`"),
        ];
        for (input, want) in cases {
            let err = Destination::parse(input).unwrap_err();
            assert!(err.to_string().contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn ssh_target_and_user() {
        let dest = Destination::parse("ssh://root@h:2200").unwrap();
        assert_eq!(dest.ssh_target(), "root@h");
        assert_eq!(dest.is_root(), Some(true));
        let deploy = dest.with_user("deploy");
        assert_eq!(deploy.to_string(), "ssh://deploy@h:2200");
        assert_eq!(Destination::parse("h").unwrap().is_root(), None);
    }
}
