//! Integration tests for the proxy: real sockets on 127.0.0.1, upstreams written
//! inline (hyper or raw TCP). One test binary to keep link time down.

mod support;

mod client_side;
mod drain;
mod failures;
mod framing;
mod limits;
mod proxying;
mod routing;
mod tls;
mod upgrade;
