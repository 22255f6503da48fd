//! The ingress tasks' peer port: how the issuer of a cluster's certificates hands its HTTP-01
//! answers to the other ingress tasks before the CA validates (a validation request may reach
//! any ingress node), and how the others fetch the certificates it got.
//!
//! One request per TCP connection on the overlay: a 4-byte big-endian length, then the
//! request sealed with ChaCha20-Poly1305 (ring) under a key derived from the app's peer key
//! (a Swarm secret mounted into the ingress tasks only); the answer comes back the same way.
//! Sealing is the authentication — a request that does not open under the key (no key, a
//! wrong key, a changed byte) gets no answer at all — and keeps the certificates' private keys
//! unreadable on an overlay the app's own tasks share. A request carries its time and is
//! refused when it is more than [`MAX_SKEW`] away from the receiver's clock.

use std::net::SocketAddr;
use std::time::Duration;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The port every ingress task listens on for its peers (on the overlay, never published).
pub const PEER_PORT: u16 = 7944;
/// A request this far from the receiver's clock is refused.
pub const MAX_SKEW: i64 = 300;
/// The largest frame read (certificates of many hosts fit easily).
const MAX_FRAME: usize = 4 << 20;
/// One exchange with a peer may take this long.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The key the peers seal their messages with.
pub struct PeerKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey([peer key])")
    }
}

impl PeerKey {
    /// The key derived from the peer secret's bytes (surrounding whitespace ignored).
    pub fn from_secret(secret: &[u8]) -> PeerKey {
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"dockhand ingress peer v1\0");
        hasher.update(secret.trim_ascii());
        let digest = hasher.finalize();
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &digest).expect("a 32-byte ChaCha20 key");
        PeerKey {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// `plain` sealed: a fresh nonce, then the ciphertext and its tag.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the system's random source");
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .expect("sealing fits");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    /// What `sealed` holds, if it was sealed under this key and not changed since.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = body.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::empty(), &mut buf).ok()?;
        Some(plain.to_vec())
    }
}

/// What a peer asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Answer this HTTP-01 challenge until told otherwise.
    PutHttp01 {
        token: String,
        key_authorization: String,
    },
    RemoveHttp01 {
        token: String,
    },
    /// Every certificate you got from the CA (chain and key, PEM).
    Certificates,
    /// New certificates were issued: fetch them now.
    Nudge,
}

/// One certificate set as it travels: the set's id and its bundle (chain then key, PEM).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBundle {
    pub id: String,
    pub bundle_pem: String,
}

impl std::fmt::Debug for SetBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetBundle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What a peer answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "kebab-case")]
pub enum Response {
    Ok,
    Certificates { sets: Vec<SetBundle> },
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    /// When it was sent (Unix seconds).
    at: i64,
    body: T,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It does not open under the peer key: no key, another key, or changed on the way.
    NotSealed,
    /// It opened, but is not a request this version knows.
    Malformed,
    /// Sent too long ago or too far ahead (a replay, or a clock far off).
    Stale { skew: i64 },
}

/// A request sealed at `now`, ready for the wire (without the length).
pub fn seal_request(key: &PeerKey, request: &Request, now: i64) -> Vec<u8> {
    let json = serde_json::to_vec(&Envelope {
        at: now,
        body: request,
    })
    .expect("a request serializes");
    key.seal(&json)
}

/// The request in `sealed` received at `now`, if it is authentic and fresh.
pub fn open_request(key: &PeerKey, sealed: &[u8], now: i64) -> Result<Request, Refusal> {
    let plain = key.open(sealed).ok_or(Refusal::NotSealed)?;
    let envelope: Envelope<Request> =
        serde_json::from_slice(&plain).map_err(|_| Refusal::Malformed)?;
    let skew = now - envelope.at;
    if skew.abs() > MAX_SKEW {
        return Err(Refusal::Stale { skew });
    }
    Ok(envelope.body)
}

fn seal_response(key: &PeerKey, response: &Response, now: i64) -> Vec<u8> {
    let json = serde_json::to_vec(&Envelope {
        at: now,
        body: response,
    })
    .expect("a response serializes");
    key.seal(&json)
}

fn open_response(key: &PeerKey, sealed: &[u8]) -> Result<Response, String> {
    let plain = key
        .open(sealed)
        .ok_or("the answer does not open under the peer key")?;
    let envelope: Envelope<Response> =
        serde_json::from_slice(&plain).map_err(|e| format!("the answer is not valid: {e}"))?;
    Ok(envelope.body)
}

/// Sends `request` to the peer at `addr` and returns its answer (within [`CALL_TIMEOUT`]).
pub async fn call(addr: SocketAddr, key: &PeerKey, request: &Request) -> Result<Response, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        write_frame(&mut stream, &seal_request(key, request, unix_now()))
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        let answer = read_frame(&mut stream)
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        open_response(key, &answer)
    };
    match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
        Ok(result) => result.map_err(|e| format!("peer {addr}: {e}")),
        Err(_) => Err(format!(
            "peer {addr}: no answer within {}s",
            CALL_TIMEOUT.as_secs()
        )),
    }
}

/// Serves the peer port until the runtime stops: each authentic request goes to `handle`;
/// any other gets no answer (the connection is closed).
pub async fn serve(
    listener: tokio::net::TcpListener,
    key: std::sync::Arc<PeerKey>,
    handle: std::sync::Arc<dyn Fn(Request) -> Response + Send + Sync>,
) {
    loop {
        let Ok((mut stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let key = key.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            let exchange = async {
                let frame = read_frame(&mut stream).await.ok()?;
                match open_request(&key, &frame, unix_now()) {
                    Ok(request) => {
                        let response = handle(request);
                        let sealed = seal_response(&key, &response, unix_now());
                        write_frame(&mut stream, &sealed).await.ok()
                    }
                    Err(refusal) => {
                        tracing::warn!(peer = %from, "refused a request on the peer port: {refusal:?}");
                        None
                    }
                }
            };
            let _ = tokio::time::timeout(CALL_TIMEOUT, exchange).await;
        });
    }
}

async fn write_frame(stream: &mut tokio::net::TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

async fn read_frame(stream: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("a frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

fn unix_now() -> i64 {
    crate::clock::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_sealed_under_the_peer_key_and_fresh_is_accepted() {
        let key = PeerKey::from_secret(b"the app's peer key\n");
        let request = Request::PutHttp01 {
            token: "tok".into(),
            key_authorization: "tok.thumb".into(),
        };
        let sealed = seal_request(&key, &request, 1_000);
        // The same secret (whitespace aside) opens it.
        let same = PeerKey::from_secret(b"the app's peer key");
        assert_eq!(open_request(&same, &sealed, 1_010), Ok(request.clone()));
        // Another key, no seal at all, a changed byte: refused.
        let other = PeerKey::from_secret(b"another app's key");
        assert_eq!(
            open_request(&other, &sealed, 1_010),
            Err(Refusal::NotSealed)
        );
        let plain =
            serde_json::to_vec(&serde_json::json!({"at": 1000, "body": {"op": "certificates"}}))
                .unwrap();
        assert_eq!(open_request(&key, &plain, 1_000), Err(Refusal::NotSealed));
        let mut changed = sealed.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert_eq!(open_request(&key, &changed, 1_000), Err(Refusal::NotSealed));
        assert_eq!(open_request(&key, &[], 1_000), Err(Refusal::NotSealed));
        // A replay long after, or a clock far ahead.
        assert_eq!(
            open_request(&key, &sealed, 1_000 + MAX_SKEW + 1),
            Err(Refusal::Stale { skew: MAX_SKEW + 1 })
        );
        assert!(open_request(&key, &sealed, 1_000 - MAX_SKEW - 5).is_err());
        // Two seals of one request differ (a fresh nonce each time).
        assert_ne!(seal_request(&key, &request, 1_000), sealed);
    }

    #[tokio::test]
    async fn the_port_answers_the_key_holder_and_nothing_to_anyone_else() {
        let key = std::sync::Arc::new(PeerKey::from_secret(b"k"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle: std::sync::Arc<dyn Fn(Request) -> Response + Send + Sync> =
            std::sync::Arc::new(|r| match r {
                Request::Certificates => Response::Certificates {
                    sets: vec![SetBundle {
                        id: "example.org".into(),
                        bundle_pem: "PEM".into(),
                    }],
                },
                _ => Response::Ok,
            });
        tokio::spawn(serve(listener, key.clone(), handle));
        let got = call(addr, &key, &Request::Certificates).await.unwrap();
        assert!(matches!(got, Response::Certificates { sets } if sets[0].bundle_pem == "PEM"));
        let wrong = PeerKey::from_secret(b"not it");
        let err = call(addr, &wrong, &Request::Certificates)
            .await
            .unwrap_err();
        assert!(err.contains("no answer"), "{err}");
        // A plain request, as a curious task on the overlay would send.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = br#"{"at":0,"body":{"op":"certificates"}}"#;
        s.write_all(&(body.len() as u32).to_be_bytes())
            .await
            .unwrap();
        s.write_all(body).await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "answered {} bytes", rest.len());
    }
}
