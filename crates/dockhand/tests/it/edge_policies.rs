//! Per-route edge policies through the real binary: one service answering on two hosts, one
//! of them behind basic auth whose users come from the secrets file, and a host redirect.

use std::io::{Read, Write};
use std::time::Duration;

use crate::{sandbox, testapp_toml};

/// `ann` with password `secret`, as `htpasswd -s` writes it.
const USERS: &str = "ann:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
const WRONG: &str = "Wr0ng-Pa55word-77";

/// A raw request; the answer's status, head and body.
fn request(addr: &str, host: &str, path: &str, extra: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").expect("a complete head");
    let status = head[9..12].parse().unwrap();
    (status, head.to_string(), body.to_string())
}

fn basic(user_password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn two_routes_basic_auth_from_a_secret_and_a_redirect() {
    let sb = sandbox();
    let secrets = sb.write(".dockhand/secrets.env", &format!("STAFF_USERS={USERS}\n"));
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let toml = testapp_toml("VERSION = \"v1\"", 1, "30s").replace(
        "route = { host = \"app.test\", path = \"/\" }\n",
        "route = [\n  { host = \"app.test\" },\n  { host = \"admin.test\", basic_auth = { realm = \"Staff only\", users = \"${secret.STAFF_USERS}\" }, request_headers = { \"X-Admin\" = \"1\" } },\n]\n",
    ) + "\n[[redirects]]\nfrom = \"www.app.test\"\nto = \"http://app.test\"\n";
    sb.write("dockhand.toml", &toml);
    crate::expect(&sb, &["check"], 0);
    let mut agent = sb.start_agent();
    let addr = sb.proxy_addr();

    // The open host.
    let (status, _, body) = request(&addr, "app.test", "/version", "");
    assert_eq!((status, body.as_str()), (200, "v1"));
    // The protected host: a challenge, then the user's password passes.
    let (status, head, _) = request(&addr, "admin.test", "/version", "");
    assert_eq!(status, 401, "{head}");
    assert_eq!(
        header(&head, "www-authenticate"),
        Some("Basic realm=\"Staff only\", charset=\"UTF-8\"")
    );
    let (status, _, body) = request(&addr, "admin.test", "/version", &basic("ann:secret"));
    assert_eq!((status, body.as_str()), (200, "v1"));
    let (status, _, body) = request(&addr, "admin.test", "/headers", &basic("ann:secret"));
    assert_eq!(status, 200);
    assert!(body.to_ascii_lowercase().contains("x-admin"), "{body}");
    let (status, _, _) = request(
        &addr,
        "admin.test",
        "/version",
        &basic(&format!("ann:{WRONG}")),
    );
    assert_eq!(status, 401);
    // The redirect, path and query kept.
    let (status, head, _) = request(&addr, "www.app.test", "/a/b?c=1", "");
    assert_eq!(status, 301, "{head}");
    assert_eq!(header(&head, "location"), Some("http://app.test/a/b?c=1"));

    // Both routes are reported.
    let (_, status) = sb.json(&["status"]);
    let routes = &status["services"][0]["routes"];
    assert_eq!(
        routes,
        &serde_json::json!(["app.test/", "admin.test/"]),
        "{status}"
    );
    assert_eq!(agent.terminate(), Some(0));
    let output = agent.output();
    assert!(!output.contains(WRONG), "{output}");
    assert!(!output.contains("5en6G6"), "{output}");
}
