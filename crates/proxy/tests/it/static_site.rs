//! Static sites served by the proxy: a small SPA build served with its index, fallback,
//! conditional requests, ranges and precompressed siblings; and every traversal form refused.

use std::path::Path;
use std::sync::Arc;

use dockhand_proxy::{StaticOptions, StaticSite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// A build directory like Vite's, plus a file outside it that must never be served.
fn spa(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("dist");
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(
        root.join("index.html"),
        "<!doctype html><title>spa</title>INDEX",
    )
    .unwrap();
    std::fs::write(root.join("404.html"), "<h1>NOT FOUND PAGE</h1>").unwrap();
    std::fs::write(root.join("docs/index.html"), "DOCS INDEX").unwrap();
    std::fs::write(root.join("robots.txt"), "User-agent: *\n").unwrap();
    std::fs::write(
        root.join("assets/app-3f2a9c1b.js"),
        "console.log('plain');".repeat(50),
    )
    .unwrap();
    std::fs::write(root.join("assets/app-3f2a9c1b.js.br"), "BROTLI BYTES").unwrap();
    std::fs::write(root.join("assets/app-3f2a9c1b.js.gz"), "GZIP BYTES").unwrap();
    std::fs::write(root.join(".env"), "SECRET=dotfile").unwrap();
    let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::fs::write(dir.join("secret.txt"), "TOP SECRET OUTSIDE").unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    std::os::unix::fs::symlink(root.join("robots.txt"), root.join("robots-link.txt")).unwrap();
    root
}

fn site_route(root: &Path, prefix: &str) -> dockhand_proxy::Route {
    let options = StaticOptions {
        fallback: Some("/index.html".into()),
        not_found: Some("/404.html".into()),
        ..StaticOptions::default()
    };
    let site = StaticSite::load(root, &options).unwrap();
    let mut r = route(prefix, Vec::new());
    r.site = Some(Arc::new(site));
    r
}

/// A raw request on a new connection; the whole answer as (status, head, body bytes).
pub async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut out))
        .await
        .expect("answer timed out")
        .unwrap();
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    (status, head, out[end + 4..].to_vec())
}

fn get_req(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: site.test\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn an_spa_build_is_served_with_index_fallback_conditionals_ranges_and_precompressed_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = spa(dir.path());
    let proxy = start(config(), vec![site_route(&root, "/")]);
    let addr = proxy.local_addr();

    let (status, head, body) = raw(addr, &get_req("/", "")).await;
    assert_eq!(status, 200, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("INDEX"));
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&head, "cache-control"), Some("no-cache"));
    let etag = header(&head, "etag").unwrap().to_string();
    let modified = header(&head, "last-modified").unwrap().to_string();

    // SPA fallback for client-side routes; a missing asset gets the 404 page.
    let (status, _, body) = raw(addr, &get_req("/dashboard/users?tab=2", "")).await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).contains("INDEX")),
        (200, true)
    );
    let (status, _, body) = raw(addr, &get_req("/assets/missing-12345678.js", "")).await;
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("NOT FOUND PAGE"));
    // Dotfiles are not served.
    let (status, _, body) = raw(addr, &get_req("/.env", "")).await;
    assert_eq!(status, 404);
    assert!(!String::from_utf8_lossy(&body).contains("dotfile"));

    // A directory: redirected to its slash, then its index.
    let (status, head, _) = raw(addr, &get_req("/docs?x=1", "")).await;
    assert_eq!(
        (status, header(&head, "location")),
        (301, Some("/docs/?x=1"))
    );
    let (status, _, body) = raw(addr, &get_req("/docs/", "")).await;
    assert_eq!((status, body), (200, b"DOCS INDEX".to_vec()));

    // Conditional requests.
    let (status, head, body) =
        raw(addr, &get_req("/", &format!("If-None-Match: {etag}\r\n"))).await;
    assert_eq!((status, body.len()), (304, 0), "{head}");
    let (status, _, _) = raw(
        addr,
        &get_req("/", &format!("If-Modified-Since: {modified}\r\n")),
    )
    .await;
    assert_eq!(status, 304);
    let (status, _, _) = raw(addr, &get_req("/", "If-None-Match: \"other\"\r\n")).await;
    assert_eq!(status, 200);

    // Precompressed siblings by Accept-Encoding, with Vary; fingerprinted names cache long.
    let js = "/assets/app-3f2a9c1b.js";
    let (_, head, body) = raw(addr, &get_req(js, "Accept-Encoding: gzip, br\r\n")).await;
    assert_eq!(body, b"BROTLI BYTES");
    assert_eq!(header(&head, "content-encoding"), Some("br"));
    assert_eq!(header(&head, "vary"), Some("Accept-Encoding"));
    assert_eq!(
        header(&head, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        header(&head, "cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let (_, head, body) = raw(addr, &get_req(js, "Accept-Encoding: gzip, br;q=0\r\n")).await;
    assert_eq!(
        (body.as_slice(), header(&head, "content-encoding")),
        (&b"GZIP BYTES"[..], Some("gzip"))
    );
    let (_, head, body) = raw(addr, &get_req(js, "")).await;
    assert!(body.starts_with(b"console.log"));
    assert_eq!(header(&head, "content-encoding"), None);

    // Ranges, from memory and from a file read per request.
    let (status, head, body) = raw(addr, &get_req("/robots.txt", "Range: bytes=0-9\r\n")).await;
    assert_eq!((status, body.as_slice()), (206, &b"User-agent"[..]));
    assert_eq!(header(&head, "content-range"), Some("bytes 0-9/14"));
    let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let (status, _, body) = raw(addr, &get_req("/big.bin", "Range: bytes=1000-1999\r\n")).await;
    assert_eq!((status, body.as_slice()), (206, &big[1000..2000]));
    // A range too big to go out with the head: sent from the file's offset (sendfile on plain
    // TCP).
    let (status, _, body) = raw(addr, &get_req("/big.bin", "Range: bytes=100001-300000\r\n")).await;
    assert_eq!(status, 206);
    assert!(body == big[100_001..300_001], "the range's bytes, in order");
    let (status, head, _) = raw(addr, &get_req("/big.bin", "Range: bytes=5000000-\r\n")).await;
    assert_eq!(
        (status, header(&head, "content-range")),
        (416, Some("bytes */1048576"))
    );
    let (status, _, body) = raw(
        addr,
        &get_req("/big.bin", "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n"),
    )
    .await;
    assert_eq!(
        (status, body.len()),
        (200, big.len()),
        "a stale If-Range gets the whole file"
    );
    let (status, _, body) = raw(addr, &get_req("/big.bin", "")).await;
    assert_eq!(status, 200);
    assert!(body == big, "the 1 MiB file arrives whole");

    // HEAD: headers, no body; other methods: 405 (a POST goes through hyper).
    let (status, head, body) = raw(
        addr,
        b"HEAD /robots.txt HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(header(&head, "content-length"), Some("14"));
    let (status, head, _) = raw(
        addr,
        b"POST / HTTP/1.1\r\nHost: site.test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    .await;
    assert_eq!((status, header(&head, "allow")), (405, Some("GET, HEAD")));

    // A symlink inside the root is followed.
    let (status, _, body) = raw(addr, &get_req("/robots-link.txt", "")).await;
    assert_eq!((status, body), (200, b"User-agent: *\n".to_vec()));
}

#[tokio::test]
async fn a_site_mounted_under_a_prefix_serves_its_root_there() {
    let dir = tempfile::tempdir().unwrap();
    let root = spa(dir.path());
    let proxy = start(config(), vec![site_route(&root, "/app")]);
    let (status, _, body) = raw(proxy.local_addr(), &get_req("/app/robots.txt", "")).await;
    assert_eq!((status, body), (200, b"User-agent: *\n".to_vec()));
    let (status, _, body) = raw(proxy.local_addr(), &get_req("/app/", "")).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("INDEX"));
}

/// Each form of path traversal, one request each: refused (400) or not found (404), and the
/// file outside the root never appears.
#[tokio::test]
async fn every_traversal_form_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = spa(dir.path());
    let options = StaticOptions::default(); // no fallback: misses are plain 404s
    let site = StaticSite::load(&root, &options).unwrap();
    assert!(
        site.skipped().contains(&"leak.txt".to_string()),
        "{:?}",
        site.skipped()
    );
    assert!(
        site.skipped().contains(&"etc".to_string()),
        "{:?}",
        site.skipped()
    );
    let mut r = route("/", Vec::new());
    r.site = Some(Arc::new(site));
    let proxy = start(config(), vec![r]);
    let addr = proxy.local_addr();
    let absolute = dir.path().join("secret.txt");
    let cases: Vec<(&str, String, u16)> = vec![
        ("dot-dot", "/../secret.txt".into(), 400),
        ("nested dot-dot", "/assets/../../secret.txt".into(), 400),
        ("encoded dot-dot", "/%2e%2e/secret.txt".into(), 400),
        (
            "upper-case encoded dot-dot",
            "/%2E%2E/secret.txt".into(),
            400,
        ),
        ("half-encoded dot-dot", "/.%2e/secret.txt".into(), 400),
        ("encoded slash", "/..%2fsecret.txt".into(), 400),
        (
            "encoded slash alone",
            "/assets%2f..%2f..%2fsecret.txt".into(),
            400,
        ),
        ("backslash", "/..\\secret.txt".into(), 400),
        ("encoded backslash", "/..%5csecret.txt".into(), 400),
        ("NUL", "/index.html%00.txt".into(), 400),
        ("absolute path", absolute.display().to_string(), 404),
        ("double-slash absolute path", "//etc/passwd".into(), 404),
        ("symlink leaving the root", "/leak.txt".into(), 404),
        (
            "symlinked directory leaving the root",
            "/etc/passwd".into(),
            404,
        ),
    ];
    for (form, path, want) in cases {
        let (status, head, body) = raw(addr, &get_req(&path, "")).await;
        let body = String::from_utf8_lossy(&body);
        assert!(
            !body.contains("TOP SECRET") && !body.contains("root:"),
            "{form}: leaked: {body}"
        );
        // httparse refuses some raw bytes outright (hyper answers 400 then).
        assert_eq!(status, want, "{form} ({path}): {head}");
    }
    // An absolute-form target (hyper's path) is refused the same way.
    let (status, _, body) = raw(
        addr,
        b"GET http://site.test/%2e%2e/secret.txt HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    assert!(!String::from_utf8_lossy(&body).contains("TOP SECRET"));
}

/// A file between 64 KiB and the in-memory limit is held both ways: plain HTTP sends it from
/// the index's open descriptor with sendfile(2) (the head corked in front of it), TLS sends the
/// bytes held in memory. Two whole answers and a range back to back on one kept-alive
/// connection each arrive framed and whole: the shared descriptor is read by offset only.
#[tokio::test]
async fn a_mid_sized_file_arrives_whole_on_one_kept_alive_connection_and_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let root = spa(dir.path());
    let mid: String = (0..100_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    std::fs::write(root.join("mid.txt"), &mid).unwrap();
    let config = crate::tls::https_config(vec![crate::tls::certificate(&["site.test"])]);
    let proxy = start(config, vec![site_route(&root, "/")]);

    let keep = "GET /mid.txt HTTP/1.1\r\nHost: site.test\r\n";
    let request =
        format!("{keep}\r\n{keep}Range: bytes=70000-70009\r\n\r\n{keep}Connection: close\r\n\r\n");
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut out))
        .await
        .expect("answers timed out")
        .unwrap();
    let mut rest = out.as_slice();
    for (i, (status, want)) in [
        (200, &mid[..]),
        (206, &mid[70_000..70_010]),
        (200, &mid[..]),
    ]
    .into_iter()
    .enumerate()
    {
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("answer {i} has a head"));
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}")),
            "{i}: {head}"
        );
        let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
        assert_eq!(len, want.len(), "{i}: {head}");
        let body = &rest[end + 4..end + 4 + len];
        assert!(body == want.as_bytes(), "answer {i}'s bytes, in order");
        rest = &rest[end + 4 + len..];
    }
    assert!(rest.is_empty(), "nothing after the third answer");

    let tls =
        crate::tls::connect(crate::tls::https_addr(&proxy), "site.test", &[b"http/1.1"]).await;
    let answer = crate::tls::get_over(tls, "site.test", "/mid.txt").await;
    assert_eq!(answer.status, 200);
    assert!(answer.body == mid, "the same bytes over TLS");
}
