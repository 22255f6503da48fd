//! The push webhook of `[update] webhook`: GitHub, GitLab and Gitea tell the agent that a
//! branch moved, and the agent checks the remote at once instead of at the next poll.
//!
//! The proxy serves the hook: each routing table gets a route for the webhook's path (on its
//! host, else on every routed host) whose one backend is this module's loopback listener —
//! the proxy needs no code of its own for it, and the hook gets the proxy's HTTPS, allow
//! lists and rate limits. Here a request is verified by its forge's own scheme (GitHub's
//! `X-Hub-Signature-256` and Gitea's `X-Gitea-Signature`, both an HMAC-SHA256 of the body
//! with the shared secret; GitLab's `X-Gitlab-Token`, the secret itself), its delivery id is
//! remembered (a replay is answered and ignored), a push to another branch is ignored, and a
//! push to the followed branch starts the same check a poll makes (`Updater::check`), which
//! reads the branch's head from the remote itself: what the payload claims is never deployed.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dockhand_proxy::Backend;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

use super::Updater;
use crate::error::{AgentError, Result};
use crate::events::EventKind;
use crate::subsystem::Shutdown;

/// The backend id of the hook's route.
pub const BACKEND_ID: u64 = crate::routes::backend_ids::UPDATE_WEBHOOK;
/// The service name the hook's route carries (in the access log); no service can have it.
pub const ROUTE_NAME: &str = "update webhook";
/// The largest body accepted (GitHub caps a payload at 25 MB, but a push is a few KB).
const MAX_BODY: usize = 1 << 20;
/// How many delivery ids are remembered.
const REMEMBERED: usize = 512;
const DELIVERIES: &str = "update.webhook.deliveries";

/// Binds the hook's loopback listener (at agent start, before any routing table is built):
/// the listener for the updater, the backend for the routing tables.
pub fn bind() -> Result<(std::net::TcpListener, Arc<Backend>)> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| {
        AgentError::environment(format!(
            "could not listen on a loopback port for the update webhook: {e}"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| AgentError::environment(format!("update webhook listener: {e}")))?;
    Ok((listener, Backend::new(BACKEND_ID, addr)))
}

/// The forge a request came from, by its event header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    GitLab,
    Gitea,
}

impl Forge {
    fn as_str(self) -> &'static str {
        match self {
            Forge::GitHub => "GitHub",
            Forge::GitLab => "GitLab",
            Forge::Gitea => "Gitea",
        }
    }
}

/// A request whose signature (or token) is right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub forge: Forge,
    /// The forge's event name (`push`, `ping`, `Push Hook`…).
    pub event: String,
    /// The delivery id, or the body's SHA-256 when the forge sent none.
    pub delivery: String,
}

/// Checks `body` against `secret` by the scheme of the forge the headers name. Pure.
/// Gitea also sends GitHub's headers, so its own are looked at first.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
) -> std::result::Result<Verified, String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (forge, event) = if let Some(e) = header("x-gitea-event") {
        (Forge::Gitea, e)
    } else if let Some(e) = header("x-github-event") {
        (Forge::GitHub, e)
    } else if let Some(e) = header("x-gitlab-event") {
        (Forge::GitLab, e)
    } else {
        return Err("not a GitHub, GitLab or Gitea webhook (no event header)".into());
    };
    let signed = match forge {
        Forge::GitHub => header("x-hub-signature-256")
            .and_then(|s| s.strip_prefix("sha256="))
            .is_some_and(|sig| hmac_matches(secret, body, sig)),
        Forge::Gitea => {
            header("x-gitea-signature").is_some_and(|sig| hmac_matches(secret, body, sig))
        }
        // Digests compared, so the time taken says nothing about the secret. The header's
        // bytes: a secret with non-ASCII characters is sent as its UTF-8 bytes, which
        // `to_str` refuses (found by the webhook fuzz target).
        Forge::GitLab => headers.get("x-gitlab-token").is_some_and(|token| {
            !secret.is_empty() && Sha256::digest(token.as_bytes()) == Sha256::digest(secret)
        }),
    };
    if !signed {
        return Err(format!(
            "the {} {} is missing or wrong",
            forge.as_str(),
            match forge {
                Forge::GitHub => "signature (X-Hub-Signature-256)",
                Forge::Gitea => "signature (X-Gitea-Signature)",
                Forge::GitLab => "token (X-Gitlab-Token)",
            }
        ));
    }
    let delivery = match forge {
        Forge::GitHub => header("x-github-delivery"),
        Forge::Gitea => header("x-gitea-delivery"),
        Forge::GitLab => header("idempotency-key").or(header("x-gitlab-event-uuid")),
    }
    // An empty id would make every later request without one look like its replay.
    .filter(|id| !id.trim().is_empty())
    .map(str::to_string)
    .unwrap_or_else(|| hex::encode(Sha256::digest(body)));
    Ok(Verified {
        forge,
        event: event.to_string(),
        delivery,
    })
}

fn hmac_matches(secret: &str, body: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    // Constant time.
    mac.verify_slice(&signature).is_ok()
}

/// The `ref` a push payload names (the same field in all three forges' push events).
pub fn pushed_ref(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("ref")?.as_str().map(str::to_string)
}

/// Whether an event name is a push (GitHub and Gitea say `push`, GitLab `Push Hook`).
fn is_push(event: &str) -> bool {
    event.eq_ignore_ascii_case("push") || event.eq_ignore_ascii_case("push hook")
}

/// The delivery ids seen, newest last (kept in the state's settings across restarts).
#[derive(Default)]
pub(super) struct Deliveries {
    ids: VecDeque<String>,
    loaded: bool,
}

impl Updater {
    /// Serves the hook's listener until `shutdown`.
    pub(super) fn serve_webhook(&self, listener: std::net::TcpListener, mut shutdown: Shutdown) {
        let updater = self.clone();
        tokio::spawn(async move {
            let listener = match listener
                .set_nonblocking(true)
                .and_then(|()| tokio::net::TcpListener::from_std(listener))
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("update webhook listener: {e}");
                    return;
                }
            };
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((s, _)) => s,
                        Err(e) => {
                            tracing::debug!("update webhook listener: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = shutdown.wait() => return,
                };
                let updater = updater.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let updater = updater.clone();
                        async move { Ok::<_, std::convert::Infallible>(updater.hook_request(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
                });
            }
        });
    }

    async fn hook_request(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if let Some(refused) = self.refusal() {
            return answer(StatusCode::CONFLICT, refused.message());
        }
        let Some(config) = self.serving() else {
            return answer(StatusCode::NOT_FOUND, "nothing is deployed");
        };
        let Some((update, hook)) = config
            .update
            .as_ref()
            .and_then(|u| Some((u, u.webhook.as_ref()?)))
        else {
            return answer(StatusCode::NOT_FOUND, "no webhook is configured");
        };
        if req.uri().path().trim_end_matches('/') != hook.path {
            return answer(StatusCode::NOT_FOUND, "not the webhook's path");
        }
        if req.method() != http::Method::POST {
            return answer(
                StatusCode::METHOD_NOT_ALLOWED,
                "a webhook is delivered with POST",
            );
        }
        let (parts, body) = req.into_parts();
        let body = match tokio::time::timeout(
            Duration::from_secs(10),
            Limited::new(body, MAX_BODY).collect(),
        )
        .await
        {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(_)) => return answer(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large"),
            Err(_) => return answer(StatusCode::REQUEST_TIMEOUT, "the body took too long"),
        };
        let d = &self.inner.deployer;
        let secret = crate::secrets::load(&config, d.events.redactor()).and_then(|s| {
            hook.secret
                .resolve(&s)
                .map_err(|e| AgentError::config(e.to_string()))
        });
        let secret = match secret {
            Ok(s) => s,
            Err(e) => {
                d.events.error(
                    EventKind::Update,
                    None,
                    None,
                    &format!("a webhook request could not be verified: {}", e.message()),
                );
                return answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the webhook's secret is not available on the server",
                );
            }
        };
        let verified = match verify(&parts.headers, &body, &secret) {
            Ok(v) => v,
            Err(why) => {
                tracing::warn!("update webhook request refused: {why}");
                return answer(StatusCode::UNAUTHORIZED, &format!("refused: {why}"));
            }
        };
        let who = format!(
            "{} webhook (delivery {})",
            verified.forge.as_str(),
            verified.delivery
        );
        if !self.remember_delivery(&verified.delivery) {
            d.events.info(
                EventKind::Update,
                None,
                None,
                &format!("{who} was already received; ignored"),
            );
            return answer(
                StatusCode::OK,
                "this delivery was already received; ignored",
            );
        }
        if !is_push(&verified.event) {
            return answer(
                StatusCode::OK,
                &format!("`{}` events are ignored; only pushes", verified.event),
            );
        }
        let followed = format!("refs/heads/{}", update.branch);
        match pushed_ref(&body) {
            Some(r) if r == followed => {}
            Some(r) => {
                d.events.info(
                    EventKind::Update,
                    None,
                    None,
                    &format!("{who}: a push to {r} ignored (following {followed})"),
                );
                return answer(
                    StatusCode::OK,
                    &format!("a push to {r} is ignored: following {followed}"),
                );
            }
            None => return answer(StatusCode::BAD_REQUEST, "the push payload has no `ref`"),
        }
        d.events.info(
            EventKind::Update,
            None,
            None,
            &format!("{who}: a push to {followed}; checking for updates"),
        );
        let updater = self.clone();
        let by = format!("{} webhook", verified.forge.as_str());
        tokio::spawn(async move {
            let _ = updater.check(&by, false).await;
        });
        answer(StatusCode::ACCEPTED, "checking for updates")
    }

    /// Records a delivery id; false when it was seen before.
    fn remember_delivery(&self, id: &str) -> bool {
        let mut seen = self
            .inner
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !seen.loaded {
            if let Ok(Some(stored)) = self.store().setting(DELIVERIES) {
                seen.ids = stored.lines().map(str::to_string).collect();
            }
            seen.loaded = true;
        }
        if seen.ids.iter().any(|s| s == id) {
            return false;
        }
        seen.ids.push_back(id.to_string());
        while seen.ids.len() > REMEMBERED {
            seen.ids.pop_front();
        }
        let joined: Vec<&str> = seen.ids.iter().map(String::as_str).collect();
        if let Err(e) = self.store().set_setting(DELIVERIES, &joined.join("\n")) {
            tracing::warn!("could not record a webhook delivery: {e}");
        }
        true
    }
}

fn answer(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"abc"}"#;

    #[test]
    fn github_is_verified_by_its_hmac_header() {
        let sig = format!("sha256={}", sign("s3cret", BODY));
        let h = headers(&[
            ("x-github-event", "push"),
            ("x-github-delivery", "d-1"),
            ("x-hub-signature-256", &sig),
        ]);
        let v = verify(&h, BODY, "s3cret").unwrap();
        assert_eq!(
            (v.forge, v.event.as_str(), v.delivery.as_str()),
            (Forge::GitHub, "push", "d-1")
        );
        assert!(verify(&h, BODY, "other").is_err());
        assert!(verify(&h, b"{}", "s3cret").is_err(), "another body");
    }

    #[test]
    fn gitea_is_verified_by_its_own_header_before_github_compatibility() {
        let h = headers(&[
            ("x-gitea-event", "push"),
            ("x-github-event", "push"),
            ("x-gitea-delivery", "g-1"),
            ("x-gitea-signature", &sign("k", BODY)),
        ]);
        let v = verify(&h, BODY, "k").unwrap();
        assert_eq!((v.forge, v.delivery.as_str()), (Forge::Gitea, "g-1"));
        let bad = headers(&[("x-gitea-event", "push"), ("x-gitea-signature", "zz")]);
        assert!(verify(&bad, BODY, "k").is_err());
    }

    #[test]
    fn an_empty_delivery_id_is_keyed_by_the_body_instead() {
        // Found by the webhook fuzz target: an empty id, remembered, made every later request
        // without one a "replay".
        let h = headers(&[
            ("x-gitea-event", "push"),
            ("x-gitea-delivery", " "),
            ("x-gitea-signature", &sign("k", BODY)),
        ]);
        let v = verify(&h, BODY, "k").unwrap();
        assert_eq!(v.delivery, hex::encode(Sha256::digest(BODY)));
    }

    #[test]
    fn gitlab_is_verified_by_its_token_and_keyed_by_its_idempotency_key() {
        let h = headers(&[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "tok"),
            ("idempotency-key", "i-1"),
        ]);
        let v = verify(&h, BODY, "tok").unwrap();
        assert_eq!((v.forge, v.delivery.as_str()), (Forge::GitLab, "i-1"));
        assert!(is_push(&v.event));
        assert!(verify(&h, BODY, "toke").is_err());
        // Without any id, the body's digest is the delivery.
        let h = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "tok")]);
        assert_eq!(
            verify(&h, BODY, "tok").unwrap().delivery,
            hex::encode(Sha256::digest(BODY))
        );
    }

    #[test]
    fn a_gitlab_token_with_non_ascii_characters_is_verified_by_its_bytes() {
        let mut h = headers(&[("x-gitlab-event", "Push Hook")]);
        h.insert(
            "x-gitlab-token",
            http::HeaderValue::from_bytes("tök-ü".as_bytes()).unwrap(),
        );
        assert!(verify(&h, BODY, "tök-ü").is_ok());
        assert!(verify(&h, BODY, "tok-u").is_err());
    }

    #[test]
    fn an_unknown_sender_is_refused() {
        assert!(verify(&HeaderMap::new(), BODY, "k").is_err());
    }

    #[test]
    fn the_pushed_ref_is_read_from_the_payload() {
        assert_eq!(pushed_ref(BODY).as_deref(), Some("refs/heads/main"));
        assert_eq!(pushed_ref(b"not json"), None);
    }
}
