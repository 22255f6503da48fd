//! Protocol upgrades (WebSocket and any other `Upgrade`): the request goes to the
//! backend on a dedicated connection; on `101 Switching Protocols` both sides are
//! upgraded and bytes are copied until either closes. The request's guard (and
//! so the backend's `inflight` count) lives until the tunnel is closed.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::body::{RequestBody, ResponseBody};
use crate::error::{ErrorKind, ProxyError};
use crate::forward::classify;
use crate::headers;
use crate::server::{RequestGuard, WorkerCtx};

/// Forwards an upgrade request; `req` already carries upstream headers.
pub(crate) async fn forward(
    ctx: &WorkerCtx,
    mut req: Request<Incoming>,
    guard: RequestGuard,
    request_id: &http::HeaderValue,
) -> Result<Response<ResponseBody>, ProxyError> {
    let config = &ctx.shared.config;
    let addr = guard.backend_addr();
    let client_upgrade = hyper::upgrade::on(&mut req);
    let stream = crate::pool::connect_tcp(addr, config.upstream_connect_timeout).await?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ProxyError::upstream(ErrorKind::UpstreamProtocol, addr, "handshake failed"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(upstream = %addr, error = %e, "upstream upgrade connection failed");
        }
    });
    let req =
        req.map(|b| RequestBody::new(b, config.max_request_body, config.client_header_timeout));
    let mut response = match tokio::time::timeout(
        config.upstream_response_timeout,
        sender.send_request(req),
    )
    .await
    {
        Err(_) => {
            return Err(ProxyError::upstream(
                ErrorKind::ResponseTimeout,
                addr,
                "did not send response headers in time",
            ))
        }
        Ok(Err(e)) => return Err(classify(&e, addr)),
        Ok(Ok(response)) => response,
    };

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        headers::prepare_response(response.headers_mut(), false, request_id.clone());
        return Ok(response.map(|body| ResponseBody::upstream(body, None, guard)));
    }

    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let track = ctx.tracker.enter();
    tokio::spawn(async move {
        let _guard = guard;
        let _track = track;
        let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(c), Ok(u)) => (c, u),
            (c, u) => {
                tracing::debug!(
                    upstream = %addr,
                    client_ok = c.is_ok(),
                    upstream_ok = u.is_ok(),
                    "upgrade did not complete"
                );
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(upstream = %addr, error = %e, "upgraded connection ended with an error");
        }
    });
    headers::prepare_response(response.headers_mut(), true, request_id.clone());
    Ok(response.map(|_| ResponseBody::empty()))
}
