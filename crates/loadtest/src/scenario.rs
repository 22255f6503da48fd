//! Scenario files: several endpoints with weights, methods, headers and bodies, and an
//! optional login request whose token every other request carries.
//!
//! ```toml
//! url = "http://127.0.0.1:8080"          # the origin (a URL on the command line wins)
//! headers = { accept = "application/json" } # sent with every request
//!
//! [login]                                # optional; sent once before the load
//! method = "POST"                        # default POST
//! path = "/api/login"
//! headers = { content-type = "application/json" }
//! body_file = "login.json"               # or body = "…"; relative to this file
//! token = "data.access_token"            # a JSON field path in the answer, or
//! # token_header = "x-auth-token"        # a response header
//!
//! [[endpoints]]
//! name = "list"                          # default: METHOD PATH
//! path = "/api/items"
//! weight = 3                             # default 1
//!
//! [[endpoints]]
//! method = "POST"
//! path = "/api/items"
//! headers = { content-type = "application/json" }
//! body = '{"name":"x"}'
//! ```
//!
//! Parsed with `toml` + serde (unknown keys are errors that say where); the result is the
//! plain [`crate::Endpoint`] and [`crate::Login`] values the engine runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;

use crate::{Endpoint, Login, TokenSource};

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("failed to read scenario file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid scenario file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A scenario file, parsed and resolved.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The `url` key, if the file names its target.
    pub url: Option<String>,
    pub endpoints: Vec<Endpoint>,
    pub login: Option<Login>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    login: Option<LoginFile>,
    #[serde(default)]
    endpoints: Vec<EndpointFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginFile {
    method: Option<String>,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_file: Option<PathBuf>,
    token: Option<String>,
    token_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointFile {
    name: Option<String>,
    method: Option<String>,
    path: String,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_file: Option<PathBuf>,
}

fn one() -> u32 {
    1
}

/// Reads and resolves the scenario file at `path`.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Resolves scenario `text`; `path` names it in errors and anchors relative `body_file`s.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    let invalid = |message: String| ScenarioError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string().trim().to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    if file.endpoints.is_empty() {
        return Err(invalid(
            "no [[endpoints]]: add at least one, e.g. [[endpoints]] path = \"/\"".into(),
        ));
    }
    let common = headers(&file.headers).map_err(|m| invalid(format!("headers: {m}")))?;
    let mut endpoints = Vec::new();
    for (i, e) in file.endpoints.iter().enumerate() {
        let at = |m: String| invalid(format!("endpoints[{i}]: {m}"));
        let method = method(e.method.as_deref(), Method::GET).map_err(at)?;
        let path_q = path_and_query(&e.path).map_err(at)?;
        if e.weight == 0 {
            return Err(at("weight must be 1 or more".into()));
        }
        let mut hs = common.clone();
        hs.extend(headers(&e.headers).map_err(|m| at(format!("headers: {m}")))?);
        let body = body(e.body.as_deref(), e.body_file.as_deref(), dir).map_err(at)?;
        endpoints.push(Endpoint {
            name: e
                .name
                .clone()
                .unwrap_or_else(|| format!("{method} {}", e.path)),
            method,
            path: path_q,
            headers: hs,
            body,
            weight: e.weight,
        });
    }
    let login = match &file.login {
        None => None,
        Some(l) => {
            let at = |m: String| invalid(format!("login: {m}"));
            let token = match (&l.token, &l.token_header) {
                (Some(field), None) if !field.trim().is_empty() => {
                    TokenSource::JsonField(field.trim().to_string())
                }
                (None, Some(h)) => TokenSource::Header(
                    HeaderName::from_bytes(h.trim().as_bytes())
                        .map_err(|_| at(format!("token_header {h:?} is not a header name")))?,
                ),
                (Some(_), Some(_)) => {
                    return Err(at("set one of token and token_header, not both".into()))
                }
                _ => {
                    return Err(at(
                        "say where the token is: token = \"data.access_token\" (a JSON field) or token_header = \"x-auth-token\"".into(),
                    ))
                }
            };
            let mut hs = common.clone();
            hs.extend(headers(&l.headers).map_err(|m| at(format!("headers: {m}")))?);
            Some(Login {
                method: method(l.method.as_deref(), Method::POST).map_err(at)?,
                path: path_and_query(&l.path).map_err(at)?,
                headers: hs,
                body: body(l.body.as_deref(), l.body_file.as_deref(), dir).map_err(at)?,
                token,
            })
        }
    };
    Ok(Scenario {
        url: file.url,
        endpoints,
        login,
    })
}

/// A method name (`GET`, `post`), or `default`.
pub fn method(raw: Option<&str>, default: Method) -> Result<Method, String> {
    match raw {
        None => Ok(default),
        Some(m) => Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("{m:?} is not an HTTP method")),
    }
}

fn path_and_query(raw: &str) -> Result<PathAndQuery, String> {
    if !raw.starts_with('/') {
        return Err(format!(
            "path {raw:?} must start with `/` (the origin comes from `url` or the command line)"
        ));
    }
    raw.parse()
        .map_err(|e| format!("path {raw:?} is not a valid path: {e}"))
}

fn headers(map: &BTreeMap<String, String>) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    map.iter()
        .map(|(k, v)| {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("{k:?} is not a header name"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("the value of {k:?} is not a valid header value"))?;
            Ok((name, value))
        })
        .collect()
}

fn body(inline: Option<&str>, file: Option<&Path>, dir: &Path) -> Result<Bytes, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err("set one of body and body_file, not both".into()),
        (Some(b), None) => Ok(Bytes::from(b.to_string())),
        (None, Some(f)) => {
            let p = dir.join(f);
            std::fs::read(&p)
                .map(Bytes::from)
                .map_err(|e| format!("failed to read body_file {}: {e}", p.display()))
        }
        (None, None) => Ok(Bytes::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Scenario, ScenarioError> {
        parse(text, Path::new("/nonexistent/scenario.toml"))
    }

    #[test]
    fn endpoints_with_weights_and_a_login() {
        let s = parse_str(
            r#"
url = "http://127.0.0.1:1"
headers = { accept = "application/json" }
[login]
path = "/login"
body = '{"user":"u"}'
token = "data.access_token"
[[endpoints]]
path = "/a"
weight = 3
[[endpoints]]
name = "create"
method = "post"
path = "/b?x=1"
headers = { content-type = "application/json" }
body = "{}"
"#,
        )
        .unwrap();
        assert_eq!(s.url.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(s.endpoints.len(), 2);
        assert_eq!(s.endpoints[0].name, "GET /a");
        assert_eq!(s.endpoints[0].weight, 3);
        assert_eq!(s.endpoints[0].headers.len(), 1);
        assert_eq!(s.endpoints[1].method, Method::POST);
        assert_eq!(s.endpoints[1].path.as_str(), "/b?x=1");
        assert_eq!(s.endpoints[1].headers.len(), 2);
        assert_eq!(&s.endpoints[1].body[..], b"{}");
        let login = s.login.unwrap();
        assert_eq!(login.method, Method::POST);
        assert_eq!(
            login.token,
            TokenSource::JsonField("data.access_token".into())
        );
    }

    #[test]
    fn unknown_keys_say_where_they_are() {
        let err = parse_str("[[endpoints]]\npath = \"/\"\nwieght = 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("wieght"), "{err}");
    }

    #[test]
    fn mistakes_are_refused_with_what_to_do() {
        let cases = [
            ("", "no [[endpoints]]"),
            ("[[endpoints]]\npath = \"a\"\n", "must start with `/`"),
            (
                "[[endpoints]]\npath = \"/\"\nweight = 0\n",
                "weight must be 1 or more",
            ),
            (
                "[login]\npath = \"/l\"\n[[endpoints]]\npath = \"/\"\n",
                "say where the token is",
            ),
            (
                "[[endpoints]]\npath = \"/\"\nbody_file = \"missing.json\"\n",
                "failed to read body_file",
            ),
        ];
        for (text, want) in cases {
            let err = parse_str(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
