//! The container driver against the real Docker Engine: service containers (ports, logs,
//! env, mounts, stop, restarts, crash loops), one-off jobs and exec. Every test uses its own
//! app name and removes what it created.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use dockhand_runtime::{
    ContainerKind, ContainerRuntime, ContainerSpec, DockerTimeouts, ExecEvent, InstanceState,
    LogRotation, Mount, PublishedPort, RestartPolicy, Stream,
};
use dockhand_test_support::docker::{
    docker_ok, ensure_test_images, unique_app, AppCleanup, PrivateDockerd, BUSYBOX_IMAGE,
    TESTAPP_IMAGE,
};
use dockhand_test_support::free_port;

use crate::*;

/// A connected runtime and an app whose Docker objects are removed at the end of the test.
pub async fn docker_runtime(name: &str) -> (ContainerRuntime, AppCleanup) {
    ensure_test_images();
    let app = unique_app(name);
    let cleanup = AppCleanup::new(&app);
    let rt = ContainerRuntime::connect(&agent_id(name), LogRotation::default())
        .await
        .expect("connect to the Docker Engine");
    (rt, cleanup)
}

/// The testapp on a free loopback port, logging to `dir/<id>.log`.
pub fn testapp(app: &str, id: &str, dir: &Path) -> (ContainerSpec, u16) {
    let port = free_port();
    let mut spec = ContainerSpec::new(app, "web", id, ContainerKind::Service, TESTAPP_IMAGE);
    spec.env = vec![("PORT".into(), "8080".into())];
    spec.ports = vec![PublishedPort {
        host_ip: "127.0.0.1".into(),
        host_port: port,
        container_port: 8080,
    }];
    spec.log_path = Some(dir.join(format!("{id}.log")));
    spec.stop_grace = Duration::from_secs(5);
    (spec, port)
}

/// A busybox container running `script` with /bin/sh.
pub fn busybox(app: &str, id: &str, dir: &Path, script: &str) -> ContainerSpec {
    let mut spec = ContainerSpec::new(app, "worker", id, ContainerKind::Service, BUSYBOX_IMAGE);
    spec.command = Some(vec!["/bin/sh".into(), "-c".into(), script.into()]);
    spec.log_path = Some(dir.join(format!("{id}.log")));
    spec.stop_grace = Duration::from_secs(2);
    spec
}

/// `GET path` on loopback; the status line and body, or None when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

pub async fn wait_http(port: u16, path: &str) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(answer) = tokio::task::spawn_blocking({
            let path = path.to_string();
            move || http_get(port, &path)
        })
        .await
        .unwrap()
        {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing answered on 127.0.0.1:{port}{path}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn container_exists(name: &str) -> bool {
    !docker_ok(&["ps", "-aq", "--filter", &format!("name=^{name}$")]).is_empty()
}

#[tokio::test]
async fn a_testapp_container_serves_on_its_published_port_logs_and_is_removed_on_stop() {
    let (rt, cleanup) = docker_runtime("serve").await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spec, port) = testapp(&cleanup.app, "d1r1-web-0", dir.path());
    spec.env.push(("VERSION".into(), "v-container".into()));
    let name = spec.container_name();
    let log = spec.log_path.clone().unwrap();
    let inst = rt.start(spec).await.expect("start");
    assert_eq!(inst.id(), "d1r1-web-0");
    assert!(inst.pid().is_some_and(|p| p > 1), "{:?}", inst.status());
    assert_eq!(inst.status().state, InstanceState::Running);

    let (status, _) = wait_http(port, "/health").await;
    assert_eq!(status, 200);
    let (_, body) = wait_http(port, "/version").await;
    assert!(body.contains("v-container"), "{body}");
    wait_until("the listening line in the log", || {
        log_lines(&log)
            .iter()
            .any(|l| l.stream == Stream::Out && l.text.contains("listening on 0.0.0.0:8080"))
    })
    .await;
    assert!(has_line(&log, "started container"));

    within("stop", inst.stop()).await;
    assert_eq!(inst.status().state, InstanceState::Stopped);
    assert!(!container_exists(&name), "container {name} still exists");
    assert!(has_line(&log, "stopped"));
}

#[tokio::test]
async fn a_container_killed_from_outside_is_restarted_per_policy() {
    let (rt, cleanup) = docker_runtime("kill").await;
    let dir = tempfile::tempdir().unwrap();
    let (mut spec, port) = testapp(&cleanup.app, "d1r1-web-0", dir.path());
    spec.restart = RestartPolicy::OnFailure;
    let name = spec.container_name();
    let log = spec.log_path.clone().unwrap();
    let inst = rt.start(spec).await.expect("start");
    wait_http(port, "/health").await;
    let first_pid = inst.pid().unwrap();

    docker_ok(&["kill", &name]);
    let status = wait_status(&inst, "a restart", |s| {
        s.restarts == 1 && s.state == InstanceState::Running
    })
    .await;
    assert_ne!(status.pid, Some(first_pid));
    let exit = status.last_exit.expect("last exit");
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert!(has_line(
        &log,
        "killed by signal 9 (SIGKILL), restarting in"
    ));
    let (code, _) = wait_http(port, "/health").await;
    assert_eq!(code, 200, "the restarted container serves on the same port");
    within("stop", inst.stop()).await;
    assert!(!container_exists(&name));
}

#[tokio::test]
async fn a_container_that_keeps_crashing_enters_the_crash_loop() {
    let (rt, cleanup) = docker_runtime("crash").await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = busybox(
        &cleanup.app,
        "d1r1-worker-0",
        dir.path(),
        "echo crashing; exit 3",
    );
    spec.restart = RestartPolicy::Always;
    let log = spec.log_path.clone().unwrap();
    let inst = rt.start(spec).await.expect("start");
    let mut rx = inst.watch();
    let status = tokio::time::timeout(
        Duration::from_secs(120),
        rx.wait_for(|s| s.state == InstanceState::CrashLoop),
    )
    .await
    .expect("crash loop within 2 minutes")
    .unwrap()
    .clone();
    assert!(status.restarts >= 4, "{status:?}");
    assert_eq!(status.last_exit.unwrap().code, Some(3));
    assert!(has_line(&log, "crash loop: exited with code 3"));
    assert!(
        log_lines(&log)
            .iter()
            .filter(|l| l.text == "crashing")
            .count()
            >= 5,
        "each run's output is in the log once"
    );
    within("stop", inst.stop()).await;
}

#[tokio::test]
async fn env_reaches_the_container_but_not_the_specs_debug_output() {
    let (rt, cleanup) = docker_runtime("env").await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = busybox(
        &cleanup.app,
        "d1r1-worker-0",
        dir.path(),
        "echo \"secret is $SECRET_KEY\"",
    );
    spec.env = vec![("SECRET_KEY".into(), "s3cr3t-value-42".into())];
    assert!(!format!("{spec:?}").contains("s3cr3t-value-42"));
    assert!(format!("{spec:?}").contains("SECRET_KEY"));
    let log = spec.log_path.clone().unwrap();
    let inst = rt.start(spec).await.expect("start");
    wait_state(&inst, InstanceState::Exited).await;
    wait_until("the output", || has_line(&log, "secret is s3cr3t-value-42")).await;
    within("stop", inst.stop()).await;
}

#[tokio::test]
async fn a_named_volume_keeps_its_data_across_containers_and_a_read_only_bind_mount_is_read_only() {
    let (rt, cleanup) = docker_runtime("volumes").await;
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("config");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("app.conf"), "from-the-host\n").unwrap();
    let mounts = vec![
        Mount::Volume {
            name: "data".into(),
            target: "/data".into(),
            read_only: false,
        },
        Mount::Bind {
            source: host.clone(),
            target: "/config".into(),
            read_only: true,
        },
        Mount::Tmpfs {
            target: "/scratch".into(),
            size: Some(1 << 20),
        },
    ];
    let mut first = busybox(
        &cleanup.app,
        "d1r1-worker-0",
        dir.path(),
        "echo kept > /data/file && cat /config/app.conf && (echo x > /config/new || echo bind is read-only) && echo y > /scratch/t && echo tmpfs ok",
    );
    first.mounts = mounts.clone();
    let log1 = first.log_path.clone().unwrap();
    let inst = rt.start(first).await.expect("start first");
    wait_state(&inst, InstanceState::Exited).await;
    within("stop", inst.stop()).await;
    for text in ["from-the-host", "bind is read-only", "tmpfs ok"] {
        assert!(has_line(&log1, text), "{text}: {:?}", log_lines(&log1));
    }
    assert!(!host.join("new").exists());
    let volume = format!("{}_data", cleanup.app);
    assert_eq!(
        docker_ok(&[
            "volume",
            "inspect",
            "-f",
            "{{ index .Labels \"dockhand.app\" }}",
            &volume
        ]),
        cleanup.app
    );

    let mut second = busybox(&cleanup.app, "d1r2-worker-0", dir.path(), "cat /data/file");
    second.mounts = mounts;
    let log2 = second.log_path.clone().unwrap();
    let inst = rt.start(second).await.expect("start second");
    wait_state(&inst, InstanceState::Exited).await;
    within("stop", inst.stop()).await;
    wait_until("the volume's content", || has_line(&log2, "kept")).await;
}

#[tokio::test]
async fn run_once_reports_exit_code_and_output_and_removes_the_container() {
    let (rt, cleanup) = docker_runtime("once").await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = busybox(
        &cleanup.app,
        "hook-1",
        dir.path(),
        "echo migrating; echo oops >&2; exit 7",
    );
    spec.kind = ContainerKind::Job;
    let name = spec.container_name();
    let log = spec.log_path.clone().unwrap();
    let out = rt
        .run_once(spec.clone(), Duration::from_secs(60))
        .await
        .expect("run_once");
    assert_eq!(out.exit_code, Some(7));
    assert!(!out.timed_out);
    assert!(out.output.contains("migrating\n"), "{}", out.output);
    assert!(out.output.contains("oops\n"), "{}", out.output);
    assert!(has_line(&log, "exited with code 7"));
    assert!(!container_exists(&name));

    spec.command = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        "echo started; sleep 600".into(),
    ]);
    let out = rt
        .run_once(spec, Duration::from_secs(3))
        .await
        .expect("run_once with timeout");
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert!(!container_exists(&name));
}

#[tokio::test]
async fn exec_runs_in_the_container_and_streams_lines_and_the_exit_code() {
    let (rt, cleanup) = docker_runtime("exec").await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = busybox(&cleanup.app, "d1r1-worker-0", dir.path(), "sleep 600");
    spec.env = vec![("IN_CONTAINER".into(), "yes".into())];
    let name = spec.container_name();
    let inst = rt.start(spec).await.expect("start");
    let sh = |script: &str| vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()];

    let out = rt
        .exec(
            &name,
            sh("echo $IN_CONTAINER $EXTRA; exit 4"),
            vec![("EXTRA".into(), "more".into())],
            Duration::from_secs(30),
        )
        .await
        .expect("exec");
    assert_eq!(out.exit_code, Some(4));
    assert_eq!(out.output, "yes more\n");

    let mut stream = rt
        .exec_stream(
            &name,
            sh("echo one; echo two >&2; exit 0"),
            Vec::new(),
            Duration::from_secs(30),
        )
        .await
        .expect("exec_stream");
    let mut events = Vec::new();
    while let Some(e) = within("exec events", stream.next()).await {
        events.push(e);
    }
    assert!(
        events.contains(&ExecEvent::Line(Stream::Out, "one".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&ExecEvent::Line(Stream::Err, "two".into())),
        "{events:?}"
    );
    assert_eq!(
        events.last(),
        Some(&ExecEvent::Exit {
            code: Some(0),
            timed_out: false
        })
    );

    let out = rt
        .exec(&name, sh("sleep 600"), Vec::new(), Duration::from_secs(2))
        .await
        .expect("exec with timeout");
    assert!(out.timed_out);
    within("stop", inst.stop()).await;
}

#[tokio::test]
async fn connect_to_a_socket_where_no_engine_listens_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nothing.sock");
    let err = ContainerRuntime::connect_to(
        &format!("unix://{}", sock.display()),
        "test-unreachable",
        LogRotation::default(),
        DockerTimeouts::default(),
    )
    .await
    .err()
    .expect("no engine there");
    let text = err.to_string();
    assert!(
        text.starts_with("cannot reach the Docker Engine at unix://"),
        "{text}"
    );
    assert!(text.contains("is dockerd running?"), "{text}");
}

// Multi-threaded: stopping and starting the daemon blocks the test's thread, and the
// supervisor must see the daemon go away while it happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_docker_daemon_is_ridden_out_and_the_container_runs_again() {
    ensure_test_images();
    // A daemon of the test's own: stopping the shared one would disturb every other test.
    let mut daemon = PrivateDockerd::start();
    daemon.load_image(BUSYBOX_IMAGE);
    let timeouts = DockerTimeouts {
        api: Duration::from_secs(10),
        ..DockerTimeouts::default()
    };
    let rt = ContainerRuntime::connect_to(
        &daemon.host(),
        &agent_id("dockerd"),
        LogRotation::default(),
        timeouts,
    )
    .await
    .expect("connect to the private daemon");
    let dir = tempfile::tempdir().unwrap();
    // Exits 0 on the daemon's SIGTERM: `on_failure` alone would not restart it, but the app
    // did not fail, the daemon went away.
    let mut spec = busybox(
        "dockerd",
        "d1r1-worker-0",
        dir.path(),
        "trap 'echo got TERM; exit 0' TERM; echo running; while true; do sleep 1; done",
    );
    spec.network = Some("none".into());
    spec.restart = RestartPolicy::OnFailure;
    let name = spec.container_name();
    let log = spec.log_path.clone().unwrap();
    let inst = rt.start(spec).await.expect("start");
    wait_until("the first run's output", || has_line(&log, "running")).await;

    daemon.stop();
    daemon.restart();
    // The container runs again on the restarted daemon, supervised by the same instance.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let running = daemon.docker_ok(&["inspect", "-f", "{{ .State.Running }}", &name]) == "true";
        let status = inst.status();
        let runs = log_lines(&log)
            .iter()
            .filter(|l| l.text == "running")
            .count();
        if running && status.state == InstanceState::Running && runs >= 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the container did not run again: {status:?}\nlog: {:#?}",
            log_lines(&log)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(inst.status().restarts >= 1);
    assert!(
        has_line(&log, "lost the Docker Engine"),
        "{:#?}",
        log_lines(&log)
    );
    within("stop", inst.stop()).await;
    assert!(
        daemon.docker_ok(&["ps", "-aq"]).is_empty(),
        "the container is removed"
    );
}
