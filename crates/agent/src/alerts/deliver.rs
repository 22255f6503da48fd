//! Sending one grouped alert message to one channel: the payload shapes (`payload`, pure: a
//! generic JSON webhook, Slack, Discord, ntfy, Telegram) over an HTTP client with our own
//! roots and timeouts, and mail over SMTP with `lettre` (STARTTLS or TLS, authentication).
//! Secrets in URLs, tokens and the SMTP password are resolved just before sending and never
//! appear in an error (the caller's redactor knows them).

use std::time::Duration;

use bytes::Bytes;
use dockhand_config::{Channel, SmtpConfig, SmtpSecurity};
use dockhand_proxy::rustls;
use http_body_util::{BodyExt as _, Full};
use serde::{Deserialize, Serialize};

use super::rules::{Notice, NoticeKind};

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Resolves a `${secret.NAME}` template.
pub type SecretFn = dyn Fn(&dockhand_config::EnvValue) -> Result<String, String> + Send + Sync;

/// One grouped message: the notices of a burst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub app: String,
    pub notices: Vec<Notice>,
    /// Unix seconds.
    pub at: u64,
    /// A test message (`dockhand alerts test`).
    #[serde(default)]
    pub test: bool,
}

impl Message {
    /// `[shop] FIRING: web: 0 of 2 instances up` (and `+N more`).
    pub fn title(&self) -> String {
        if self.test {
            return format!("[{}] test notice from dockhand", self.app);
        }
        let firing = self
            .notices
            .iter()
            .filter(|n| n.kind != NoticeKind::Resolved)
            .count();
        let first = self.notices.first();
        let word = match first.map(|n| n.kind) {
            Some(NoticeKind::Resolved) => "RESOLVED",
            Some(NoticeKind::Event) => "ALERT",
            _ => "FIRING",
        };
        let more = if self.notices.len() > 1 {
            format!(" (+{} more)", self.notices.len() - 1)
        } else {
            String::new()
        };
        let _ = firing;
        format!(
            "[{}] {word}: {}{more}",
            self.app,
            first.map_or("", |n| n.summary.as_str())
        )
    }

    /// One line per notice.
    pub fn text(&self) -> String {
        if self.test {
            return format!(
                "This is a test notice from the dockhand agent of {}: this channel works.",
                self.app
            );
        }
        self.notices
            .iter()
            .map(|n| {
                let word = match n.kind {
                    NoticeKind::Firing => "firing",
                    NoticeKind::Repeat => "still firing",
                    NoticeKind::Resolved => "resolved",
                    NoticeKind::Event => "event",
                };
                format!("[{word}] {} ({}): {}", n.rule, n.subject, n.summary)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An HTTP request to make: (url, content type, extra headers, body).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPayload {
    pub url: String,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The request a webhook-like channel gets for `msg`; `secret` resolves a template.
pub fn payload(
    channel: &Channel,
    msg: &Message,
    secret: &SecretFn,
) -> Result<Option<HttpPayload>, String> {
    let json = |url: String, body: serde_json::Value| HttpPayload {
        url,
        content_type: "application/json",
        headers: Vec::new(),
        body: body.to_string(),
    };
    let full = format!("{}\n{}", msg.title(), msg.text());
    Ok(Some(match channel {
        Channel::Webhook { url } => json(
            secret(url)?,
            serde_json::json!({
                "app": msg.app,
                "title": msg.title(),
                "text": msg.text(),
                "test": msg.test,
                "at": msg.at,
                "alerts": msg.notices,
            }),
        ),
        Channel::Slack { url } => json(secret(url)?, serde_json::json!({ "text": full })),
        Channel::Discord { url } => {
            // Discord refuses content over 2000 characters.
            let content: String = full.chars().take(1990).collect();
            json(secret(url)?, serde_json::json!({ "content": content }))
        }
        Channel::Telegram {
            token,
            chat_id,
            api,
        } => json(
            format!("{api}/bot{}/sendMessage", secret(token)?),
            serde_json::json!({ "chat_id": chat_id, "text": full }),
        ),
        Channel::Ntfy { url } => {
            let resolved = msg
                .notices
                .first()
                .is_some_and(|n| n.kind == NoticeKind::Resolved);
            HttpPayload {
                url: secret(url)?,
                content_type: "text/plain; charset=utf-8",
                headers: vec![
                    ("Title", msg.title()),
                    (
                        "Priority",
                        if resolved || msg.test {
                            "default"
                        } else {
                            "high"
                        }
                        .into(),
                    ),
                    (
                        "Tags",
                        if resolved {
                            "white_check_mark"
                        } else {
                            "warning"
                        }
                        .into(),
                    ),
                ],
                body: msg.text(),
            }
        }
        Channel::Email { .. } => return Ok(None),
    }))
}

/// Sends `msg` to `channel`; the error says what failed (no secret in it).
pub async fn send(channel: &Channel, msg: &Message, secret: &SecretFn) -> Result<(), String> {
    if let Channel::Email { to, smtp } = channel {
        return send_mail(smtp, to, msg, secret).await;
    }
    let Some(p) = payload(channel, msg, secret)? else {
        return Ok(());
    };
    tokio::time::timeout(TIMEOUT, post(&p))
        .await
        .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
}

async fn post(p: &HttpPayload) -> Result<(), String> {
    let uri: http::Uri = p
        .url
        .parse()
        .map_err(|_| "the URL is not valid".to_string())?;
    let mut req = http::Request::post(uri.clone())
        .header(http::header::CONTENT_TYPE, p.content_type)
        .header(http::header::USER_AGENT, "dockhand");
    for (k, v) in &p.headers {
        // A header value cannot hold a newline; titles are one line anyway.
        req = req.header(*k, v.replace(['\r', '\n'], " "));
    }
    let req = req
        .body(Full::new(Bytes::from(p.body.clone())))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = client()
        .request(req)
        .await
        .map_err(|e| format!("cannot reach {}: {}", host_of(&uri), source_chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
    Err(format!(
        "{} answered {status}: {}",
        host_of(&uri),
        text.trim()
    ))
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn client() -> Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

fn host_of(uri: &http::Uri) -> String {
    // Never the path: a webhook's path is its secret.
    match (uri.host(), uri.port_u16()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => "the server".into(),
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

async fn send_mail(
    smtp: &SmtpConfig,
    to: &[String],
    msg: &Message,
    secret: &SecretFn,
) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

    let mut builder = lettre::Message::builder()
        .from(
            smtp.from
                .parse()
                .map_err(|e| format!("invalid `from` address {}: {e}", smtp.from))?,
        )
        .subject(msg.title())
        .header(ContentType::TEXT_PLAIN);
    for addr in to {
        builder = builder.to(addr
            .parse()
            .map_err(|e| format!("invalid address {addr}: {e}"))?);
    }
    let mail = builder
        .body(msg.text())
        .map_err(|e| format!("cannot build the mail: {e}"))?;
    let mut transport = match smtp.security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
        SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            &smtp.host,
        )),
    }
    .map_err(|e| format!("SMTP setup for {}: {e}", smtp.host))?
    .port(smtp.port)
    .timeout(Some(smtp.timeout));
    if let Some(user) = &smtp.username {
        let password = match &smtp.password {
            Some(p) => secret(p)?,
            None => String::new(),
        };
        transport = transport.credentials(Credentials::new(user.clone(), password));
    }
    let transport = transport.build();
    tokio::time::timeout(smtp.timeout + Duration::from_secs(5), transport.send(mail))
        .await
        .map_err(|_| format!("{}:{} did not answer in time", smtp.host, smtp.port))?
        .map(|_| ())
        .map_err(|e| format!("{}:{}: {}", smtp.host, smtp.port, source_chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockhand_config::EnvValue;

    fn msg() -> Message {
        Message {
            app: "shop".into(),
            notices: vec![Notice {
                rule: "service_down".into(),
                subject: "web".into(),
                kind: NoticeKind::Firing,
                summary: "web: 0 of 2 instances up".into(),
                since: 100,
            }],
            at: 100,
            test: false,
        }
    }

    fn resolve(v: &EnvValue) -> Result<String, String> {
        Ok(v.template().replace("${secret.T}", "SECRET"))
    }

    #[test]
    fn every_shape() {
        let m = msg();
        assert_eq!(m.title(), "[shop] FIRING: web: 0 of 2 instances up");
        let url = EnvValue::from_template("https://h.example/${secret.T}");
        let p = payload(&Channel::Slack { url: url.clone() }, &m, &resolve)
            .unwrap()
            .unwrap();
        assert_eq!(p.url, "https://h.example/SECRET");
        let v: serde_json::Value = serde_json::from_str(&p.body).unwrap();
        assert!(v["text"]
            .as_str()
            .unwrap()
            .contains("[firing] service_down (web)"));
        let p = payload(&Channel::Discord { url: url.clone() }, &m, &resolve)
            .unwrap()
            .unwrap();
        assert!(
            serde_json::from_str::<serde_json::Value>(&p.body).unwrap()["content"]
                .as_str()
                .unwrap()
                .starts_with("[shop] FIRING")
        );
        let p = payload(&Channel::Webhook { url: url.clone() }, &m, &resolve)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&p.body).unwrap();
        assert_eq!(v["alerts"][0]["rule"], "service_down");
        assert_eq!(v["alerts"][0]["kind"], "firing");
        let p = payload(
            &Channel::Telegram {
                token: EnvValue::from_template("${secret.T}"),
                chat_id: "42".into(),
                api: "http://127.0.0.1:1".into(),
            },
            &m,
            &resolve,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.url, "http://127.0.0.1:1/botSECRET/sendMessage");
        assert!(p.body.contains("\"chat_id\":\"42\""));
        let p = payload(&Channel::Ntfy { url }, &m, &resolve)
            .unwrap()
            .unwrap();
        assert_eq!(p.content_type, "text/plain; charset=utf-8");
        assert!(p.headers.contains(&("Priority", "high".into())));
    }
}
