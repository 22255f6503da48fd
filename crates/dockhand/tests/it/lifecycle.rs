//! Everyday commands against a running agent: status, releases, logs, exec, rollback to a
//! named release, the deploy lock, reload, and a clean SIGTERM.

use std::time::Duration;

use dockhand_test_support::{processes_with_env, wait_until};

use crate::{expect, sandbox, show, testapp_toml};

#[test]
fn status_logs_exec_releases_and_rollback_to_a_named_release() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 2, "20s"));
    let mut agent = sb.start_agent();

    let (code, status) = sb.json(&["status"]);
    assert_eq!(code, Some(0), "{status}");
    assert_eq!(status["app"], "it");
    let first = status["current_release"]["id"].as_i64().unwrap();
    let web = &status["services"][0];
    assert_eq!(web["name"], "web");
    assert_eq!(web["instances"].as_array().unwrap().len(), 2);
    wait_until("healthy instances", Duration::from_secs(20), || {
        let (_, s) = sb.json(&["status"]);
        s["services"][0]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["health"] == "healthy")
    });
    let addr = sb.proxy_addr();
    assert_eq!(crate::crash::http_get(&addr, "app.test", "/version"), "v1");
    assert!(
        status["urls"][0]
            .as_str()
            .unwrap()
            .starts_with("http://app.test:"),
        "{status}"
    );

    // Human status mentions the service and its health.
    let out = sb.run(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web") && text.contains("healthy"), "{text}");

    // Logs: the testapp logged the request we made.
    let out = sb.run(&["logs", "web", "-n", "50"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("request GET /version"),
        "{}",
        show(&out)
    );
    let out = sb.run(&["logs", "web", "--since", "1h"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("request GET /version"),
        "{}",
        show(&out)
    );
    let out = sb.run(&["logs", "web", "--since", "2999-01-01T00:00:00Z"]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        show(&out)
    );
    let out = sb.run(&["logs", "web", "--level", "error"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("request GET"),
        "{}",
        show(&out)
    );
    expect(&sb, &["logs", "--since", "last tuesday"], 2);
    // The socket is the owner's alone.
    assert_eq!(crate::mode_of(&sb.state_dir().join("agent.sock")), 0o600);
    expect(&sb, &["logs", "nope"], 5);
    let out = sb.run(&["logs", "--json", "-n", "1"]);
    let line: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["service"], "web");

    // Exec runs in the service's environment and passes the exit code through.
    let out = expect(
        &sb,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "echo version=$VERSION; exit 7",
        ],
        7,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("version=v1"),
        "{}",
        show(&out)
    );

    // Deploy v2, then roll back to the first release by id.
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v2\"", 2, "20s"));
    let out = sb.run(&["deploy"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(crate::crash::http_get(&addr, "app.test", "/version"), "v2");
    // An unchanged config deploys a new release all the same.
    let out = sb.run(&["deploy"]);
    assert!(out.status.success(), "{}", show(&out));
    // Reload of an unchanged config does nothing.
    let (code, reload) = sb.json(&["reload"]);
    assert_eq!(code, Some(0));
    assert_eq!(reload["changed"], false, "{reload}");

    let (_, releases) = sb.json(&["releases"]);
    assert_eq!(releases.as_array().unwrap().len(), 3, "{releases}");
    let (code, report) = sb.json(&["rollback", &first.to_string()]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["release"].as_i64(), Some(first));
    assert_eq!(crate::crash::http_get(&addr, "app.test", "/version"), "v1");
    expect(&sb, &["rollback", "999"], 5);

    // SIGTERM stops every instance and exits cleanly.
    let (_, status) = sb.json(&["status"]);
    let marker = format!("{}/", status["agent"]["id"].as_str().unwrap());
    assert!(!processes_with_env("DOCKHAND_INSTANCE", &marker).is_empty());
    assert_eq!(agent.terminate(), Some(0), "{}", agent.output());
    assert!(processes_with_env("DOCKHAND_INSTANCE", &marker).is_empty());
}

#[test]
fn a_concurrent_deploy_is_refused_with_the_holder() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    let _agent = sb.start_agent();
    sb.write(
        "dockhand.toml",
        &testapp_toml("VERSION = \"slow\", STARTUP_DELAY_MS = \"3000\"", 1, "20s"),
    );
    let slow = sb.spawn_quiet(&["deploy"]);
    wait_until(
        "the first deploy to hold the lock",
        Duration::from_secs(20),
        || {
            let (_, s) = sb.json(&["status"]);
            !s["deploying"].is_null()
        },
    );
    let out = expect(&sb, &["deploy"], 4);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in progress") && err.contains("since"),
        "{err}"
    );
    let out = slow.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn an_invalid_config_is_refused_by_deploy_and_the_release_keeps_serving() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    sb.write(
        "dockhand.toml",
        "app = \"it\"\n[services.web]\ncomand = \"x\"\n",
    );
    let out = expect(&sb, &["deploy"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dockhand.toml:3:1") && err.contains("`command`"),
        "{err}"
    );
    assert_eq!(crate::crash::http_get(&addr, "app.test", "/version"), "v1");
}

#[test]
fn logs_follow_streams_new_lines_and_a_hung_up_exec_is_killed() {
    use std::io::{BufRead, BufReader};
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();

    let mut follow = sb
        .cmd(&["logs", "web", "-f", "-n", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    // Requests made after the follow started show up in it.
    let reader = std::thread::spawn(move || {
        lines.find(|l| {
            l.as_ref()
                .is_ok_and(|l| l.contains("request GET /followed"))
        })
    });
    wait_until(
        "the followed request to be logged",
        Duration::from_secs(20),
        || {
            crate::crash::http_get(&addr, "app.test", "/followed");
            reader.is_finished()
        },
    );
    assert!(reader.join().unwrap().is_some());
    follow.kill().unwrap();
    let _ = follow.wait();

    // `exec` whose client goes away (Ctrl-C) does not leave its command running.
    let (_, status) = sb.json(&["status"]);
    let marker = format!("{}/exec-", status["agent"]["id"].as_str().unwrap());
    let mut exec = sb
        .cmd(&["exec", "web", "--", "sleep", "300"])
        .spawn()
        .unwrap();
    wait_until("the exec'd command to run", Duration::from_secs(20), || {
        !processes_with_env("DOCKHAND_INSTANCE", &marker).is_empty()
    });
    exec.kill().unwrap();
    let _ = exec.wait();
    wait_until(
        "the exec'd command to be killed",
        Duration::from_secs(20),
        || processes_with_env("DOCKHAND_INSTANCE", &marker).is_empty(),
    );
}

#[test]
fn a_second_agent_on_the_same_state_is_refused() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    let _agent = sb.start_agent();
    let out = expect(&sb, &["agent"], 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already running"),
        "{}",
        show(&out)
    );
    // The first agent still answers.
    let (code, _) = sb.json(&["status"]);
    assert_eq!(code, Some(0));
}

#[test]
fn events_follow_prints_each_event_as_it_is_recorded() {
    use std::io::{BufRead, BufReader};
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    let _agent = sb.start_agent();
    let mut follow = sb
        .cmd(&["events", "-f", "-n", "1", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let event = serde_json::from_str(&line).expect("one JSON event per line");
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    // First the newest event recorded so far, then what happens from now on.
    let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(first["id"].as_i64().is_some(), "{first}");
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v2\"", 1, "20s"));
    expect(&sb, &["deploy"], 0);
    let mut seen = Vec::new();
    let live = loop {
        let e = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no `release 2 is live` event; got {seen:#?}"));
        if e["message"]
            .as_str()
            .is_some_and(|m| m.contains("release 2 is live"))
        {
            break e;
        }
        seen.push(e);
    };
    assert_eq!(live["kind"], "deploy", "{live}");
    assert_eq!(live["level"], "info", "{live}");
    assert!(
        seen.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("deploy of release 2 started"))),
        "{seen:#?}"
    );
    // Each event once, in order.
    let ids: Vec<i64> = seen.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids.iter().all(|id| *id > first["id"].as_i64().unwrap()));
    follow.kill().unwrap();
    let _ = follow.wait();
}

#[test]
fn status_shows_the_agents_subsystems_ready() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    let _agent = sb.start_agent();
    let (_, status) = sb.json(&["status"]);
    let subsystems: Vec<(String, String)> = status["agent"]["subsystems"]
        .as_array()
        .unwrap_or_else(|| panic!("no subsystems in {status:#}"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        subsystems,
        [
            ("proxy".to_string(), "ready".to_string()),
            ("certificates".into(), "ready".into()),
            ("health prober".into(), "ready".into()),
            ("scheduler".into(), "ready".into()),
            ("backups".into(), "ready".into()),
            ("tasks".into(), "ready".into()),
            ("updates".into(), "ready".into()),
            ("monitor".into(), "ready".into()),
            ("alerter".into(), "ready".into()),
            ("release watch".into(), "ready".into()),
            ("socket server".into(), "ready".into()),
            ("dashboard".into(), "ready".into()),
        ]
    );
    // Ready parts are not listed in the human status; only problems are.
    let out = expect(&sb, &["status"], 0);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("subsystem"));
}

/// A restarted agent binds its proxy's port at once but accepts only once the committed
/// release's instances are back: a request sent the moment the port takes connections is
/// answered by the app, never with the empty routing table's 404 or a 503.
#[test]
fn a_request_during_an_agent_restart_waits_for_the_release_instead_of_failing() {
    use std::io::{Read, Write};
    let sb = sandbox();
    let port = dockhand_test_support::free_port();
    sb.write(
        "dockhand.toml",
        &testapp_toml("VERSION = \"v1\"", 1, "20s").replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        ),
    );
    let mut agent = sb.start_agent();
    let addr = format!("127.0.0.1:{port}");
    assert!(crate::crash::http_get(&addr, "app.test", "/version").contains("v1"));
    agent.terminate();

    let log = std::fs::File::create(sb.path().join("agent-restart.log")).unwrap();
    let mut restarted = sb
        .cmd(&["agent"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // The first connection the new agent's port takes.
    let mut stream = None;
    wait_until(
        "the restarted agent's port",
        Duration::from_secs(30),
        || {
            stream = std::net::TcpStream::connect(&addr).ok();
            stream.is_some()
        },
    );
    let mut stream = stream.unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /version HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(restarted.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = restarted.wait();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("v1"),
        "the first request after the restart: {answer}"
    );
}

/// Under socket activation (systemd's `dockhand.socket`) the proxy's listening socket is the
/// service manager's and outlives the agent: a restart under load refuses no connection and
/// fails no request. The test holds the socket as systemd would; an agent that ignored it
/// could not even start, since the test's socket holds the port.
#[test]
fn an_agent_restart_on_a_handed_socket_refuses_no_connection_and_fails_no_request() {
    let sb = sandbox();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    sb.write(
        "dockhand.toml",
        &testapp_toml("VERSION = \"v1\"", 1, "20s")
            .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\"")),
    );
    let mut agent = sb.start_agent_handed(&socket);
    assert!(
        agent
            .output()
            .contains("a socket handed over by the service manager"),
        "{}",
        agent.output()
    );
    let load = dockhand_test_support::Load::start(&addr, "app.test", "/version", 4);
    wait_until(
        "answers before the restart",
        Duration::from_secs(20),
        || load.snapshot().ok > 50,
    );

    assert_eq!(agent.terminate(), Some(0), "{}", agent.output());
    // No agent runs now: connections wait in the socket's backlog.
    let during = load.snapshot().ok;
    std::thread::sleep(Duration::from_millis(500));
    let _agent = sb.start_agent_handed(&socket);
    wait_until("answers after the restart", Duration::from_secs(30), || {
        load.snapshot().ok > during + 50
    });
    let report = load.finish();
    // A keep-alive connection the stopping agent closed between two requests loses nothing.
    let failed = report.failed_requests();
    assert!(
        failed.is_empty() && report.non_2xx.is_empty(),
        "requests failed across the restart: {failed:?}, statuses {:?}",
        report.non_2xx
    );
}
