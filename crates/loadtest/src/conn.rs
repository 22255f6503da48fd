//! Connections to the target: TCP (and TLS) connect within a timeout. The request loop
//! talks HTTP/1.1 over them with its own small client (`wire.rs`); the one login request
//! uses hyper's connection-level client, driven inside the task that sends it.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::wire::Wire;

pub type ReqBody = Full<Bytes>;

/// Why a connection could not be made (counted as a `connect` error).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connect to {addr} failed: {source}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with {addr} failed: {source}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("HTTP/1.1 handshake failed: {0}")]
    Http(#[from] hyper::Error),
}

/// Makes connections to the checked addresses of one origin.
#[derive(Clone)]
pub struct Connector {
    addrs: Arc<[SocketAddr]>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl Connector {
    /// A connector to `addrs` (tried in order); with `tls`, a TLS client with that config and
    /// server name.
    pub fn new(
        addrs: Vec<SocketAddr>,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
        timeout: Duration,
    ) -> Connector {
        Connector {
            addrs: addrs.into(),
            tls: tls.map(|(cfg, name)| (TlsConnector::from(cfg), name)),
            timeout,
        }
    }

    /// A new connection, ready for requests.
    pub async fn connect(&self) -> Result<Conn, ConnectError> {
        let mut last = None;
        for addr in self.addrs.iter().copied() {
            match self.connect_one(addr).await {
                Ok(conn) => return Ok(conn),
                // The server is there but the handshake failed: another address of the same
                // name would not help, and its error (refused) would hide this one.
                Err(e @ (ConnectError::Tls { .. } | ConnectError::Http(_))) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("a connector has at least one address"))
    }

    /// A new connection for the request loop's own client (`wire.rs`).
    pub async fn connect_wire(&self) -> Result<Wire, ConnectError> {
        let mut last = None;
        for addr in self.addrs.iter().copied() {
            match self.connect_stream(addr).await {
                Ok(stream) => return Ok(Wire::new(stream)),
                Err(e @ ConnectError::Tls { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("a connector has at least one address"))
    }

    async fn connect_one(&self, addr: SocketAddr) -> Result<Conn, ConnectError> {
        let stream = self.connect_stream(addr).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        Ok(Conn {
            sender,
            driver: Driver {
                conn: Box::pin(conn),
                done: false,
                error: None,
            },
        })
    }

    async fn connect_stream(&self, addr: SocketAddr) -> Result<Stream, ConnectError> {
        let timeout = self.timeout;
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout { addr, timeout })?
            .map_err(|source| ConnectError::Tcp { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some((tls, name)) => {
                let tls = tokio::time::timeout(timeout, tls.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| ConnectError::Timeout { addr, timeout })?
                    .map_err(|source| ConnectError::Tls { addr, source })?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok(stream)
    }
}

/// A live connection: the request sender and the connection state machine it feeds.
pub struct Conn {
    pub sender: http1::SendRequest<ReqBody>,
    pub driver: Driver,
}

/// The connection half of a [`Conn`], polled alongside the request that uses it.
pub struct Driver {
    conn: Pin<Box<http1::Connection<TokioIo<Stream>, ReqBody>>>,
    done: bool,
    /// The error the connection ended with, if it did (for error classification).
    pub error: Option<hyper::Error>,
}

impl Driver {
    /// Runs `fut` (which uses this connection's sender) while driving the connection in this
    /// same task.
    pub async fn drive<T>(&mut self, fut: impl Future<Output = T>) -> T {
        let Driver { conn, done, error } = self;
        let mut fut = pin!(fut);
        poll_fn(|cx: &mut Context<'_>| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(v);
            }
            if !*done {
                if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                    *done = true;
                    *error = r.err();
                }
                // The connection may just have handed the request its answer.
                return fut.as_mut().poll(cx);
            }
            Poll::Pending
        })
        .await
    }
}

/// A plain or TLS TCP stream.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The TLS client configuration: the webpki roots, or (`insecure`) any certificate at all,
/// for self-signed test servers. HTTP/1.1 only (ALPN).
pub fn tls_config(insecure: bool) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `--insecure`: accepts any certificate but still checks the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
