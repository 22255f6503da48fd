//! DNS-01: setting and removing the `_acme-challenge` TXT record through a provider, and
//! waiting until the record is visible at the zone's authoritative nameservers (or the
//! configured ones) before telling the CA to look.
//!
//! Providers: `command` (a user's program, run as `COMMAND set|unset RECORD VALUE`, as lego's
//! `exec` provider and acme.sh hooks are) and `cloudflare` (Cloudflare's documented v4 API:
//! find the zone, create the TXT record, delete it). Every step has a timeout.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use dockhand_config::{DnsProvider, DnsSettings, Secrets};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use http_body_util::BodyExt;

/// A hook may run this long.
const HOOK_TIMEOUT: Duration = Duration::from_secs(60);
const API_TIMEOUT: Duration = Duration::from_secs(30);
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Sets, checks and removes DNS-01 records for one order.
pub struct DnsSolver {
    provider: Provider,
    nameservers: Vec<SocketAddr>,
    propagation_timeout: Duration,
}

enum Provider {
    Command { command: String, dir: PathBuf },
    Cloudflare(Cloudflare),
}

impl DnsSolver {
    /// The solver of `[proxy.acme.dns]`; the Cloudflare token is resolved from `secrets`.
    pub fn new(
        settings: &DnsSettings,
        secrets: &Secrets,
        project_dir: &std::path::Path,
    ) -> Result<DnsSolver, String> {
        let provider = match &settings.provider {
            DnsProvider::Command { command } => Provider::Command {
                command: command.clone(),
                dir: project_dir.to_path_buf(),
            },
            DnsProvider::Cloudflare {
                api_token,
                zone_id,
                api,
            } => Provider::Cloudflare(Cloudflare {
                token: api_token.resolve(secrets).map_err(|e| e.to_string())?,
                zone_id: zone_id.clone(),
                api: api.trim_end_matches('/').to_string(),
            }),
        };
        Ok(DnsSolver {
            provider,
            nameservers: settings.nameservers.clone(),
            propagation_timeout: settings.propagation_timeout,
        })
    }

    pub async fn set(&self, record: &str, value: &str) -> Result<(), String> {
        match &self.provider {
            Provider::Command { command, dir } => {
                run_hook(command, dir, "set", record, value).await
            }
            Provider::Cloudflare(cf) => cf.set(record, value).await,
        }
    }

    pub async fn unset(&self, record: &str, value: &str) -> Result<(), String> {
        match &self.provider {
            Provider::Command { command, dir } => {
                run_hook(command, dir, "unset", record, value).await
            }
            Provider::Cloudflare(cf) => cf.unset(record, value).await,
        }
    }

    /// Waits until every nameserver (the configured ones, else the zone's authoritative
    /// ones) answers `record` with `value`.
    pub async fn wait_visible(&self, record: &str, value: &str) -> Result<(), String> {
        let servers = if self.nameservers.is_empty() {
            authoritative_servers(record).await?
        } else {
            self.nameservers.clone()
        };
        let deadline = tokio::time::Instant::now() + self.propagation_timeout;
        loop {
            let mut missing = Vec::new();
            for server in &servers {
                match txt_values(*server, record).await {
                    Ok(values) if values.iter().any(|v| v == value) => {}
                    Ok(_) => missing.push(format!("{server} (not there yet)")),
                    Err(e) => missing.push(format!("{server} ({e})")),
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "not visible within {} at {}; check the provider, or raise `propagation_timeout` in [proxy.acme.dns]",
                    humantime::format_duration(self.propagation_timeout),
                    missing.join(", ")
                ));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// Runs the hook as `COMMAND ACTION RECORD VALUE` (arguments, never pasted into the shell
/// text), in the project directory, with a timeout.
async fn run_hook(
    command: &str,
    dir: &std::path::Path,
    action: &str,
    record: &str,
    value: &str,
) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("{command} \"$@\""))
        .arg("dockhand-dns-hook")
        .args([action, record, value])
        .current_dir(dir)
        .env("DOCKHAND_DNS_ACTION", action)
        .env("DOCKHAND_DNS_RECORD", record)
        .env("DOCKHAND_DNS_VALUE", value)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(HOOK_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            format!(
                "the DNS hook `{command} {action}` did not finish within {}s",
                HOOK_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("cannot run the DNS hook `{command}`: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let code = output
        .status
        .code()
        .map_or_else(|| "a signal".to_string(), |c| format!("exit code {c}"));
    Err(format!(
        "the DNS hook `{command} {action} {record} …` failed with {code}{}",
        if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", tail.join(" / "))
        }
    ))
}

/// Cloudflare's v4 API with a bearer token.
struct Cloudflare {
    token: String,
    zone_id: Option<String>,
    api: String,
}

impl Cloudflare {
    async fn set(&self, record: &str, value: &str) -> Result<(), String> {
        let zone = self.zone(record).await?;
        let body = serde_json::json!({
            "type": "TXT",
            "name": record,
            "content": value,
            "ttl": 120,
        });
        self.call(
            http::Method::POST,
            &format!("/zones/{zone}/dns_records"),
            Some(body),
        )
        .await
        .map(|_| ())
    }

    async fn unset(&self, record: &str, value: &str) -> Result<(), String> {
        let zone = self.zone(record).await?;
        let found = self
            .call(
                http::Method::GET,
                &format!("/zones/{zone}/dns_records?type=TXT&name={record}"),
                None,
            )
            .await?;
        let ids: Vec<String> = found["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["content"].as_str().map(|c| c.trim_matches('"')) == Some(value))
            .filter_map(|r| r["id"].as_str().map(String::from))
            .collect();
        for id in ids {
            self.call(
                http::Method::DELETE,
                &format!("/zones/{zone}/dns_records/{id}"),
                None,
            )
            .await?;
        }
        Ok(())
    }

    /// The zone holding `record`: the configured id, else the longest suffix Cloudflare
    /// knows as a zone.
    async fn zone(&self, record: &str) -> Result<String, String> {
        if let Some(id) = &self.zone_id {
            return Ok(id.clone());
        }
        let labels: Vec<&str> = record.trim_end_matches('.').split('.').collect();
        for start in 1..labels.len().saturating_sub(1) {
            let candidate = labels[start..].join(".");
            let found = self
                .call(http::Method::GET, &format!("/zones?name={candidate}"), None)
                .await?;
            if let Some(id) = found["result"]
                .as_array()
                .and_then(|a| a.first())
                .and_then(|z| z["id"].as_str())
            {
                return Ok(id.to_string());
            }
        }
        Err(format!(
            "no Cloudflare zone holds {record} for this token; check the token's zones, or set `zone_id` in [proxy.acme.dns]"
        ))
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", self.api);
        let http = crate::certs::acme::Http::new(None).map_err(|e| e.message)?;
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        let request = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(instant_acme::BodyWrapper::from(bytes))
            .map_err(|e| format!("invalid Cloudflare API URL {url}: {e}"))?;
        let exchange = async {
            let response = http
                .send(request)
                .await
                .map_err(|e| format!("cannot reach the Cloudflare API at {}: {e}", self.api))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the Cloudflare API's answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(API_TIMEOUT, exchange)
                .await
                .map_err(|_| {
                    format!(
                        "the Cloudflare API did not answer {method} {path} within {}s",
                        API_TIMEOUT.as_secs()
                    )
                })??;
        let json: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        if status.is_success() && json["success"].as_bool() != Some(false) {
            return Ok(json);
        }
        let errors: Vec<String> = json["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{} ({})", e["message"].as_str().unwrap_or("?"), e["code"]))
            .collect();
        Err(format!(
            "the Cloudflare API answered {method} {path} with {status}{}",
            if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join("; "))
            }
        ))
    }
}

/// The TXT strings of `record` at `server` (asked non-recursively when it is authoritative).
pub async fn txt_values(server: SocketAddr, record: &str) -> Result<Vec<String>, String> {
    let answer = query(server, record, RecordType::TXT, true).await?;
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// The addresses of the authoritative nameservers of `record`'s zone, found through the
/// system's resolvers (`/etc/resolv.conf`).
async fn authoritative_servers(record: &str) -> Result<Vec<SocketAddr>, String> {
    let resolvers = system_resolvers();
    let Some(&resolver) = resolvers.first() else {
        return Err("no nameserver in /etc/resolv.conf to find the zone's authoritative servers; set `nameservers` in [proxy.acme.dns]".into());
    };
    let labels: Vec<&str> = record.trim_end_matches('.').split('.').collect();
    for start in 0..labels.len().saturating_sub(1) {
        let zone = labels[start..].join(".");
        let answer = query(resolver, &zone, RecordType::NS, true).await?;
        let names: Vec<Name> = answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::NS(ns) => Some(ns.0.clone()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            continue;
        }
        let mut out = Vec::new();
        for name in names {
            let a = query(resolver, &name.to_ascii(), RecordType::A, true).await?;
            for r in &a.answers {
                if let RData::A(ip) = &r.data {
                    out.push(SocketAddr::new(IpAddr::V4(ip.0), 53));
                }
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    Err(format!(
        "found no authoritative nameserver for {record}; set `nameservers` in [proxy.acme.dns]"
    ))
}

fn system_resolvers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// One DNS query over UDP, with a timeout and one retry.
async fn query(
    server: SocketAddr,
    name: &str,
    kind: RecordType,
    recursive: bool,
) -> Result<Message, String> {
    let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("`{name}` is not a DNS name: {e}"))?;
    let id: u16 = fastrand::u16(..);
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = recursive;
    message.add_query(Query::query(fqdn, kind));
    let bytes = message
        .to_vec()
        .map_err(|e| format!("encoding a DNS query: {e}"))?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap_or(server)
    } else {
        "[::]:0".parse().unwrap_or(server)
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    for _ in 0..2 {
        socket
            .send_to(&bytes, server)
            .await
            .map_err(|e| format!("cannot query {server}: {e}"))?;
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(QUERY_TIMEOUT, socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from == server => {
                let answer = Message::from_vec(&buf[..n])
                    .map_err(|e| format!("bad DNS answer from {server}: {e}"))?;
                if answer.metadata.id != id {
                    continue;
                }
                return match answer.metadata.response_code {
                    ResponseCode::NoError | ResponseCode::NXDomain => Ok(answer),
                    code => Err(format!("{server} answered {code}")),
                };
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(format!("cannot query {server}: {e}")),
            Err(_) => continue,
        }
    }
    Err(format!(
        "{server} did not answer within {}s",
        QUERY_TIMEOUT.as_secs() * 2
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hook_gets_action_record_and_value_as_arguments_and_a_failure_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let command = format!("printf '%s|%s|%s\\n' >> {}", log.display());
        run_hook(
            &command,
            dir.path(),
            "set",
            "_acme-challenge.a.example",
            "v$1;x",
        )
        .await
        .unwrap();
        run_hook(
            &command,
            dir.path(),
            "unset",
            "_acme-challenge.a.example",
            "v$1;x",
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "set|_acme-challenge.a.example|v$1;x\nunset|_acme-challenge.a.example|v$1;x\n"
        );
        let e = run_hook("echo nope >&2; exit 3; :", dir.path(), "set", "r", "v")
            .await
            .unwrap_err();
        assert!(e.contains("exit code 3") && e.contains("nope"), "{e}");
    }
}
