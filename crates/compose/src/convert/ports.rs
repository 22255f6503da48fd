//! Ports and routes: compose publishes ports on the host, dockhand gives a web service one
//! container `port` behind its proxy and a `route` to it. The first TCP port that looks
//! like HTTP becomes `port`; every other published port is reported with the reason.

use toml_edit::{InlineTable, Item};

use super::Notes;
use crate::syntax::{parse_port, PublishedPort};
use crate::value::Value;
use crate::NoteKind;

/// The published ports of a service (short and long syntax); ranges are reported.
pub(super) fn published(
    notes: &mut Notes,
    name: &str,
    ports: Option<&Value>,
) -> Vec<PublishedPort> {
    let mut out = Vec::new();
    for p in ports.and_then(Value::as_seq).unwrap_or_default().to_vec() {
        match parse_port(&p) {
            Ok(Some(pp)) => out.push(pp),
            Ok(None) => {}
            Err(why) => notes.add(Some(name), "ports", NoteKind::NotCarried, why),
        }
    }
    out
}

/// The web port of service `name` from its `ports`: the first published TCP port that is
/// not a well-known non-HTTP port. The other ports are reported as not carried over.
/// `cluster`: the import is for a swarm, where a task publishes no port at all.
pub(super) fn web_port(
    notes: &mut Notes,
    name: &str,
    ports: Option<&Value>,
    cluster: bool,
) -> Option<u16> {
    let ports = published(notes, name, ports);
    let web = ports
        .iter()
        .find(|p| p.protocol == "tcp" && !NON_WEB_PORTS.contains(&p.container));
    let web_port = web.map(|p| p.container);
    if let Some(p) = web {
        if cluster && p.host_port.is_some() {
            notes.add(Some(name), "ports", NoteKind::Assumed, format!("compose published port {} (the routing mesh); on a cluster no task publishes a port: Dockhand's ingress proxy reaches the tasks over the overlay network", p.host_port.clone().unwrap_or_default()));
        } else if p.host_ip.is_none() && p.host_port.is_some() {
            notes.add(Some(name), "ports", NoteKind::Warning, format!("compose published port {} on all interfaces; dockhand publishes the container port on 127.0.0.1 only and reaches it through its proxy", p.host_port.clone().unwrap_or_default()));
        }
    }
    for p in &ports {
        if Some(p.container) == web_port && p.protocol == "tcp" {
            continue;
        }
        let why = if p.container == 443 {
            "a TLS port: dockhand's proxy terminates TLS itself".to_string()
        } else if p.protocol != "tcp" {
            format!("{} ports are not published by dockhand", p.protocol)
        } else if web_port.is_some() {
            "dockhand gives a service one port (the first web port became `port`)".to_string()
        } else {
            "not an HTTP port; dockhand does not publish non-web ports of services (other services reach it on the app network)".to_string()
        };
        notes.add(
            Some(name),
            "ports",
            NoteKind::NotCarried,
            format!(
                "port {}{} not carried: {why}",
                p.container,
                if p.protocol == "tcp" {
                    String::new()
                } else {
                    format!("/{}", p.protocol)
                }
            ),
        );
    }
    web_port
}

/// The `route` of a web service on `port`, at `host` and `/`, marked as an assumption.
pub(super) fn route(notes: &mut Notes, name: &str, host: &str, port: u16) -> Item {
    let mut route = InlineTable::new();
    route.insert("host", host.into());
    route.insert("path", "/".into());
    let mut item = toml_edit::value(route);
    if let Some(v) = item.as_value_mut() {
        v.decor_mut()
            .set_suffix("  # assumed host: change it to your domain");
    }
    notes.add(Some(name), "ports", NoteKind::Assumed, format!("web service on port {port}, routed at http://{host}/ (change `route.host` to your domain)"));
    item
}

/// Container ports that are not HTTP, so never become a service's `port`.
const NON_WEB_PORTS: [u16; 17] = [
    22, 25, 53, 110, 143, 443, 465, 587, 993, 995, 1883, 3306, 5432, 5672, 6379, 11211, 27017,
];
