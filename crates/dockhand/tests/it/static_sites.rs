//! Static services through the real binary: a deploy that changes the files under keep-alive
//! load serves each request wholly old or wholly new files and fails none; a rollback serves
//! the old files again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{expect, sandbox, show};

const TOML: &str = r#"app = "site"

[proxy]
listen = "127.0.0.1:0"

[services.web]
static = { dir = "dist", fallback = "/index.html" }
route = { host = "site.test", path = "/" }
"#;

/// Writes the site at version `v`: every byte of `big.txt` (in memory) and `huge.txt` (read
/// per request) is `v`.
fn write_site(sb: &dockhand_test_support::Sandbox, v: char) {
    sb.write(
        "dist/index.html",
        &format!("<!doctype html><p>version {v}</p>"),
    );
    sb.write("dist/big.txt", &v.to_string().repeat(200_000));
    sb.write("dist/huge.txt", &v.to_string().repeat(1_000_000));
}

/// One keep-alive GET; the status and body.
fn get(stream: &mut BufReader<TcpStream>, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    write!(
        stream.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: site.test\r\n\r\n"
    )?;
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status: u16 = line
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut len = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body)?;
    Ok((status, body))
}

#[test]
fn a_deploy_under_load_serves_each_request_wholly_old_or_new_and_rollback_restores() {
    let sb = sandbox();
    sb.write("dockhand.toml", TOML);
    write_site(&sb, 'a');
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let seen_b = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (stop, ok, seen_b, failures, addr) = (
            stop.clone(),
            ok.clone(),
            seen_b.clone(),
            failures.clone(),
            addr.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let connect = || {
                let s = TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                BufReader::new(s)
            };
            let mut stream = connect();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let (path, len) = if (n + w).is_multiple_of(2) {
                    ("/big.txt", 200_000)
                } else {
                    ("/huge.txt", 1_000_000)
                };
                match get(&mut stream, path) {
                    Ok((200, body)) => {
                        let first = body.first().copied().unwrap_or(0);
                        if body.len() != len || !body.iter().all(|&b| b == first) {
                            failures.lock().unwrap().push(format!(
                                "{path}: a mixed or short body ({} bytes)",
                                body.len()
                            ));
                        } else {
                            if first == b'b' {
                                seen_b.fetch_add(1, Ordering::Relaxed);
                            }
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok((status, _)) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{path}: status {status}")),
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{path}: {e}"));
                        stream = connect();
                    }
                }
            }
        }));
    }
    let wait_more = |what: &str, n: u64| {
        let seen = ok.load(Ordering::Relaxed);
        dockhand_test_support::wait_until(what, Duration::from_secs(30), || {
            ok.load(Ordering::Relaxed) > seen + n
        });
    };
    wait_more("the first answers", 50);

    write_site(&sb, 'b');
    let out = sb.run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    dockhand_test_support::wait_until("version b is served", Duration::from_secs(30), || {
        seen_b.load(Ordering::Relaxed) > 20
    });
    // The release's copy is what serves: editing the directory changes nothing until a deploy.
    write_site(&sb, 'c');
    wait_more("answers after the deploy", 50);
    let page = crate::crash::http_get(&addr, "site.test", "/");
    assert!(page.contains("version b"), "{page}");

    expect(&sb, &["rollback"], 0);
    wait_more("answers after the rollback", 50);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "failed requests: {:?}",
        &failures[..failures.len().min(10)]
    );
    let page = crate::crash::http_get(&addr, "site.test", "/");
    assert!(
        page.contains("version a"),
        "the rollback serves release 1's files: {page}"
    );
    // The SPA fallback through the agent's configuration.
    let page = crate::crash::http_get(&addr, "site.test", "/some/client/route");
    assert!(page.contains("version a"), "{page}");
    assert!(
        !sb.state_dir().join("logs/access.log").exists(),
        "the access log is off by default"
    );
}

#[test]
fn a_static_service_with_bad_keys_or_a_missing_directory_is_refused_with_its_position() {
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        "app = \"site\"\n[services.web]\nstatic = \"nope\"\nport = 80\nroute = { path = \"/\" }\n",
    );
    let out = expect(&sb, &["check"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dockhand.toml:3:"), "{err}");
    assert!(
        err.contains("static directory") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        err.contains("`port` does not apply to static service `web`"),
        "{err}"
    );
}

#[test]
fn maintenance_on_and_off_for_one_service_and_all_survives_an_agent_restart() {
    let sb = sandbox();
    sb.write("dockhand.toml", TOML);
    write_site(&sb, 'a');
    let mut agent = sb.start_agent();
    let status = |addr: &str, path: &str| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let addr = sb.proxy_addr();
    assert!(status(&addr, "/").starts_with("HTTP/1.1 200"));
    let (code, report) = sb.json(&["maintenance", "on", "web"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["services"], serde_json::json!(["web"]));
    let answer = status(&addr, "/");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 120"),
        "{answer}"
    );
    assert!(answer.contains("maintenance"), "{answer}");
    expect(&sb, &["maintenance", "on", "nope"], 5);
    // It survives a restart of the agent.
    drop(agent);
    agent = sb.start_agent();
    let addr = sb.proxy_addr();
    let (_, report) = sb.json(&["maintenance"]);
    assert_eq!(report["services"], serde_json::json!(["web"]), "{report}");
    assert!(status(&addr, "/").starts_with("HTTP/1.1 503"));
    expect(&sb, &["maintenance", "off"], 0);
    assert!(status(&addr, "/").starts_with("HTTP/1.1 200"));
    drop(agent);
}

#[test]
fn the_access_log_is_off_by_default_and_logs_access_reads_it_with_filters() {
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &TOML.replace("[proxy]\n", "[proxy]\naccess_log = true\n"),
    );
    write_site(&sb, 'a');
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    let page = crate::crash::http_get(&addr, "site.test", "/");
    assert!(page.contains("version a"), "{page}");
    let _ = crate::crash::http_get(&addr, "site.test", "/missing.txt");
    let mut lines: Vec<serde_json::Value> = Vec::new();
    dockhand_test_support::wait_until("two access lines", Duration::from_secs(20), || {
        let out = sb.run(&["logs", "--access", "--json", "-n", "10"]);
        lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        lines.len() >= 2
    });
    let first: serde_json::Value =
        serde_json::from_str(lines[0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(first["path"], "/");
    assert_eq!(first["status"], 200);
    assert_eq!(first["service"], "web");
    assert_eq!(first["host"], "site.test");
    // --level warn keeps the 404 only.
    let out = sb.run(&["logs", "--access", "--json", "--level", "warn"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("missing.txt"), "{text}");
    assert!(sb.state_dir().join("logs/access.log").exists());
}
