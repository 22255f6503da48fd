//! HTTPS on the cluster's ingress, on a real swarm (a manager and two workers, the ingress on
//! m1 and w1) with a real pebble: the ACME certificate is ordered once by the issuer (the
//! ingress task with the lowest overlay address) while pebble's DNS sends the validation to the
//! *other* ingress node, which answers because the issuer pushed it the HTTP-01 answer over the
//! peer port; both nodes then serve the same certificate, and again without a new order after
//! the ingress tasks are replaced. The peer port answers nothing to a request without the key,
//! sent from a container on the app's overlay. A `[proxy] certificates` file is served by every
//! ingress node, and its key is on no node's disk outside Swarm's store and the task's tmpfs.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use dockhand_test_support::docker::TESTAPP_SHELL_IMAGE;
use dockhand_test_support::pebble::{Pebble, PebbleOptions};
use dockhand_test_support::swarm::{destinations_toml, Cluster, TESTAPP_SWARM_HEALTH};

use crate::acme::{client, Conn};
use crate::cluster::{json, swarm_sandbox};

const HTTP_PORT: u16 = 18180;
const HTTPS_PORT: u16 = 18543;
const ACME_HOST: &str = "shop.ingress-it.dev";
const FILE_HOST: &str = "files.own-it.dev";
/// The ingress tasks' peer port (`dockhand_agent::ingress::peer::PEER_PORT`).
const PEER_PORT: u16 = 7944;

/// A CA and a certificate for `FILE_HOST` signed by it: (ca pem, cert pem, key pem).
fn own_certificate() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "own test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![FILE_HOST.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn toml(app: &str, directory: &str) -> String {
    let destinations = destinations_toml(&["m1", "w1", "w2"]);
    format!(
        r#"app = "{app}"

{destinations}
[cluster]
engine = "swarm"
managers = ["m1"]
workers = ["w1", "w2"]
ingress = ["m1", "w1"]

[proxy]
listen = "0.0.0.0:{HTTP_PORT}"
https_listen = "0.0.0.0:{HTTPS_PORT}"
certificates = [{{ cert = "own/cert.pem", key = "own/key.pem" }}]

[proxy.acme]
directory = "{directory}"
ca = "pebble-api-ca.pem"
challenge = "http-01"

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
route = [{{ host = "{ACME_HOST}" }}, {{ host = "{FILE_HOST}" }}]
env = {{ VERSION = "v1" }}
{TESTAPP_SWARM_HEALTH}
"#
    )
}

/// The overlay address of the running ingress task on `node`, if one runs.
fn overlay_addr(cluster: &Cluster, node: &str, app: &str) -> Option<Ipv4Addr> {
    let n = cluster.node(node);
    let ids = n.docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={app}-ingress"),
    ]);
    let id = ids.lines().next()?;
    let format = format!("{{{{(index .NetworkSettings.Networks \"dockhand-{app}\").IPAddress}}}}");
    n.docker_ok(&["inspect", "--format", &format, id])
        .trim()
        .parse()
        .ok()
}

fn wait_overlay_addrs(cluster: &Cluster, app: &str) -> [Ipv4Addr; 2] {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let (Some(m1), Some(w1)) = (
            overlay_addr(cluster, "m1", app),
            overlay_addr(cluster, "w1", app),
        ) {
            return [m1, w1];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ingress task on m1 and w1 within 120s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The serial of the certificate the ingress on `node` serves for `host`, verified against
/// `root`, once it serves one (and answers a request through it).
fn wait_serial(cluster: &Cluster, app: &str, node: &str, host: &str, root: &str) -> String {
    let config = client(root);
    let addr = SocketAddr::from((cluster.node(node).addr(), HTTPS_PORT));
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let last;
        match Conn::open(&config, addr, host) {
            Ok(mut conn) => match conn.get(host, "/version") {
                Ok((200, body)) if body.trim() == "v1" => return conn.serial(),
                other => last = format!("{other:?}"),
            },
            Err(e) => last = e.to_string(),
        }
        if std::time::Instant::now() > deadline {
            let logs =
                cluster
                    .manager()
                    .docker(&["service", "logs", "--raw", &format!("{app}-ingress")]);
            panic!(
                "the ingress on {node} never served {host} over HTTPS: {last}\n{}{}",
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn cluster_ingress_gets_one_acme_certificate_for_every_node_and_serves_the_files() {
    let (cluster, sb, app) = swarm_sandbox("tls");
    // pebble listens where the nodes' tasks reach the host, and validates HTTP-01 on the
    // ingress nodes' published port.
    let pebble = Pebble::start(
        HTTP_PORT,
        HTTPS_PORT,
        PebbleOptions {
            listen_ip: Some(cluster.bridge_addr()),
            ..PebbleOptions::default()
        },
    );
    std::fs::copy(&pebble.api_ca, sb.path().join("pebble-api-ca.pem")).unwrap();
    let (own_ca, own_cert, own_key) = own_certificate();
    sb.write("own/cert.pem", &own_cert);
    sb.write("own/key.pem", &own_key);
    std::fs::set_permissions(
        sb.path().join("own/key.pem"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    sb.write("dockhand.toml", &toml(&app, &pebble.directory));
    // Until the test points pebble's DNS at a node, validations fail: retried within seconds.
    let sb = sb.with_env("DOCKHAND_ACME_RETRY_BASE_MS", "1000");

    let (code, report, out) = json(&sb, &["deploy"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["ok"], true, "{report:#}");

    // The issuer is the task with the lowest overlay address; the CA is sent to the other.
    let [m1_ip, w1_ip] = wait_overlay_addrs(&cluster, &app);
    let (issuer, other) = if m1_ip < w1_ip {
        ("m1", "w1")
    } else {
        ("w1", "m1")
    };
    pebble.set_a(ACME_HOST, cluster.node(other).addr());

    let root = pebble.root_pem();
    let first = wait_serial(&cluster, &app, other, ACME_HOST, &root);
    let second = wait_serial(&cluster, &app, issuer, ACME_HOST, &root);
    assert_eq!(first, second, "both ingress nodes serve one certificate");
    let orders = pebble.orders();

    // The certificate file: served by every ingress node, verified against its own CA.
    let file_serials: Vec<String> = ["m1", "w1"]
        .iter()
        .map(|n| wait_serial(&cluster, &app, n, FILE_HOST, &own_ca))
        .collect();
    assert_eq!(file_serials[0], file_serials[1]);

    // The peer port gives nothing to a request without the key, from a task's network.
    let target = if issuer == "m1" { m1_ip } else { w1_ip };
    let probe = format!(
        "printf '\\000\\000\\000\\045{{\"at\":0,\"body\":{{\"op\":\"certificates\"}}}}' | nc -w 3 {target} {PEER_PORT} | wc -c; printf '' | nc -w 3 {target} {PEER_PORT} && echo open"
    );
    let answered = cluster.manager().docker_ok(&[
        "run",
        "--rm",
        "--network",
        &format!("dockhand-{app}"),
        "--entrypoint",
        "sh",
        TESTAPP_SHELL_IMAGE,
        "-c",
        &probe,
    ]);
    let mut lines = answered.lines().map(str::trim);
    assert_eq!(
        lines.next(),
        Some("0"),
        "the peer port answered: {answered}"
    );
    assert_eq!(
        lines.next(),
        Some("open"),
        "the peer port is not listening: {answered}"
    );
    let logs = cluster
        .manager()
        .docker(&["service", "logs", "--raw", &format!("{app}-ingress")]);
    let logs =
        String::from_utf8_lossy(&logs.stdout).to_string() + &String::from_utf8_lossy(&logs.stderr);
    assert!(
        logs.contains("refused a request on the peer port"),
        "{logs}"
    );

    // The ingress tasks replaced: the same certificate is served again, with no new order.
    cluster.manager().docker_ok(&[
        "service",
        "update",
        "--force",
        "--detach=false",
        &format!("{app}-ingress"),
    ]);
    for node in ["m1", "w1"] {
        let again = wait_serial(&cluster, &app, node, ACME_HOST, &root);
        assert_eq!(again, first, "{node} serves the certificate it had");
    }
    assert_eq!(pebble.orders(), orders, "no new order after the restart");

    // The private key of the file is on no node's disk (the task's tmpfs is not the disk).
    let body_line = own_key
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 40)
        .expect("a key body line")
        .to_string();
    for node in cluster.nodes() {
        let found = std::process::Command::new("grep")
            .args(["-rlsIF", "--devices=skip", "-e", &body_line])
            .arg(node.dir())
            .output()
            .unwrap();
        let files = String::from_utf8_lossy(&found.stdout).to_string();
        let disk = std::fs::metadata(node.dir()).unwrap().dev();
        let on_disk: Vec<&str> = files
            .lines()
            .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.dev() == disk))
            .collect();
        assert!(on_disk.is_empty(), "{}: {on_disk:?}", node.hostname());
    }
    drop(cluster);
}
