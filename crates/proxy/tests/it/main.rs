//! Integration tests for the proxy: real sockets on 127.0.0.1, upstreams written
//! inline (hyper or raw TCP). One test binary to keep link time down.

mod support;

mod acme;
mod client_side;
mod compression;
mod drain;
mod failures;
mod framing;
mod hostile;
mod limits;
mod policies;
mod proxying;
mod routing;
mod static_site;
mod tls;
mod upgrade;
