//! `dockhand-swarm-bench`: the cluster stage of `bench/run` (issue 24), on test-support's real
//! three-node swarm (one manager, two workers, each a namespaced `dockerd` on this machine,
//! reached over SSH), driven through the `dockhand` binary under test. It prints one JSON
//! object on stdout (progress goes to stderr); `bench/harness.py` turns it into the "Swarm
//! cluster" section of BENCHMARKS.md. Needs root, Docker, the test images
//! (`scripts/test-images`) and `wrk`.
//!
//! The app: three copies of the test app behind the ingress proxy, which runs on every node,
//! each service on a host of its own and differing only in placement — `local` on the
//! manager `m1`, `remote` on the worker `w1`, `spread` twice on the workers (one task each).
//! Each task's `VERSION` is `<release>-<node>` (a Swarm template), so every answer's
//! `x-version` header says which release and which node served it. Requests ask `/health`,
//! which the test app answers without writing a log line (a log line per request would be
//! the node's `dockerd` working, not the proxy).
//!
//! 1. `overlay`: `wrk` through m1's ingress to `local` (a task on m1) and to `remote` (a task
//!    on w1, reached over the overlay), alternating, `--rounds` times each; for each run, the
//!    wrk output and the CPU time of m1's ingress container (its cgroup's `cpuacct.usage`)
//!    and of the task's container.
//! 2. `deploys`: `--deploys` releases that change every service's env; for each, from the
//!    start of `dockhand deploy` until each node's ingress answers only the new release on
//!    all three hosts (polled every 50 ms per node).
//! 3. `dead_node`: `spread` set to one task per worker (`--replicas-max-per-node 1` with the
//!    docker CLI: start-first updates may have put both on one worker); clients through m1's
//!    ingress to it, half on a connection per request, half keep-alive; w1's `dockerd` is
//!    killed; every failed request and the last answer from w1's task are timed from the
//!    kill, and when the manager saw w1 down.
//!
//! And the capacity figures (`capacity.rs`, issue 24 item 7): each node's engine processes
//! and containers over an idle window (`--idle` seconds) before the first deploy and after
//! it (with the watch-only agent running on this host, as on the first manager's), the first
//! manager's Raft store and the swarm's configs after each release, and — before the dead
//! node — `spread` scaled through `--scale`'s steps with the docker CLI (each step's time to
//! converge and a `--scale-window` window after it), then back to two replicas.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod capacity;

use dockhand_test_support::docker::{docker, unique_app, TESTAPP_SHELL_IMAGE};
use dockhand_test_support::swarm::{destinations_toml, Cluster, Node, TESTAPP_SWARM_HEALTH};
use dockhand_test_support::Sandbox;
use serde_json::{json, Value};

/// The port the ingress publishes on every node (each node has an address of its own).
const PORT: u16 = 18090;
/// The hosts of the three services.
const HOSTS: [&str; 3] = ["local.test", "remote.test", "spread.test"];
/// What every request asks (answered without a log line, with `x-version`).
const PATH: &str = "/health";
const USAGE: &str = "usage: dockhand-swarm-bench --dockhand-bin PATH [--rounds N] [--duration SECONDS] [--conns N] [--deploys N] [--clients N] [--wrk PATH] [--idle SECONDS] [--scale N,N,…] [--scale-window SECONDS]";

struct Args {
    dockhand_bin: PathBuf,
    rounds: usize,
    duration: u64,
    conns: usize,
    deploys: usize,
    clients: usize,
    wrk: String,
    /// Seconds of each idle window of the capacity figures.
    idle: u64,
    /// The replica counts `spread` is scaled to, in turn (from its two).
    scale: Vec<usize>,
    /// Seconds of the window after each scale step.
    scale_window: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        dockhand_bin: PathBuf::new(),
        rounds: 3,
        duration: 5,
        conns: 32,
        deploys: 3,
        clients: 8,
        wrk: "wrk".into(),
        idle: 30,
        scale: vec![10, 20],
        scale_window: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag} takes a whole number above 0, not {v:?}"))
        };
        match flag.as_str() {
            "--dockhand-bin" => args.dockhand_bin = PathBuf::from(value),
            "--rounds" => args.rounds = number(&value)?,
            "--duration" => args.duration = number(&value)? as u64,
            "--conns" => args.conns = number(&value)?,
            "--deploys" => args.deploys = number(&value)?,
            "--clients" => args.clients = number(&value)?,
            "--wrk" => args.wrk = value,
            "--idle" => args.idle = number(&value)? as u64,
            "--scale-window" => args.scale_window = number(&value)? as u64,
            "--scale" => {
                args.scale = value
                    .split(',')
                    .map(|v| number(v.trim()))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    if !args.dockhand_bin.is_file() {
        return Err(format!(
            "--dockhand-bin {:?} is not a file (the dockhand binary to measure)\n{USAGE}",
            args.dockhand_bin
        ));
    }
    args.dockhand_bin = args
        .dockhand_bin
        .canonicalize()
        .map_err(|e| format!("{}: {e}", args.dockhand_bin.display()))?;
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dockhand-swarm-bench: {e}");
            std::process::exit(2);
        }
    };
    if !docker(&["image", "inspect", TESTAPP_SHELL_IMAGE])
        .status
        .success()
    {
        eprintln!(
            "dockhand-swarm-bench: the image {TESTAPP_SHELL_IMAGE} is missing: scripts/test-images --testapp target/debug/dockhand-testapp"
        );
        std::process::exit(2);
    }
    let result = run(&args);
    println!("{result}");
}

fn log(msg: &str) {
    eprintln!("[swarm-bench] {msg}");
}

fn run(args: &Args) -> Value {
    let t0 = Instant::now();
    log("starting a swarm of one manager and two workers");
    let mut cluster = Cluster::start(1, 2);
    cluster.load_images_into(&["m1"], &[TESTAPP_SHELL_IMAGE]);
    let ssh_config = cluster.start_ssh(&args.dockhand_bin);
    let cluster_ms = ms(t0.elapsed());
    let app = unique_app("swb");
    log(&format!(
        "capacity: {} s idle with no app deployed",
        args.idle
    ));
    let idle_empty = capacity::idle(&cluster, &app, args.idle, &[]);
    let mut raft = vec![capacity::raft(cluster.manager(), "no release")];
    let sb = Sandbox::new(args.dockhand_bin.to_str().expect("utf-8 path"))
        .with_env("DOCKER_HOST", &cluster.manager().docker_host())
        .with_env("DOCKHAND_SSH_CONFIG", ssh_config.to_str().expect("utf-8"));
    let nodes: Vec<(String, SocketAddr)> = cluster
        .nodes()
        .iter()
        .map(|n| (n.hostname().to_string(), SocketAddr::from((n.addr(), PORT))))
        .collect();
    let m1 = nodes[0].1;

    // Release 1: the images travel to the workers, the ingress starts on every node.
    sb.write("dockhand.toml", &toml(&app, "r1"));
    let first = deploy(&sb, &nodes, "r1");
    log(&format!(
        "release 1 deployed in {:.0} ms, every ingress serving it after {:.0} ms",
        first["command_ms"].as_f64().unwrap_or(0.0),
        first["all_nodes_ms"].as_f64().unwrap_or(0.0)
    ));
    let placed = placement(&cluster, &app);
    raft.push(capacity::raft(cluster.manager(), "r1"));
    let network = capacity::overlay(&cluster, &format!("dockhand-{app}"));
    let idle_app = idle_with_app(args, &cluster, &sb, &app);

    // 1. Through m1's ingress to a task on m1, against one on w1 over the overlay.
    let ingress = container_of(cluster.manager(), &format!("{app}-ingress"));
    let local_task = container_of(cluster.manager(), &format!("{app}-local"));
    let remote_task = container_of(cluster.node("w1"), &format!("{app}-remote"));
    let mut overlay = Vec::new();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [("local", &local_task), ("remote", &remote_task)]
        } else {
            [("remote", &remote_task), ("local", &local_task)]
        };
        for (target, task) in order {
            let host = format!("{target}.test");
            // A second's warm-up: connections open, the proxy's upstream pool filled.
            wrk(args, m1, &host, args.conns, 1);
            let (i0, b0) = (ingress.cpu_ns(), task.cpu_ns());
            let out = wrk(args, m1, &host, args.conns, args.duration);
            let (i1, b1) = (ingress.cpu_ns(), task.cpu_ns());
            log(&format!("overlay round {}: {target} done", round + 1));
            overlay.push(json!({
                "round": round + 1,
                "target": target,
                "conns": args.conns,
                "seconds": args.duration,
                "wrk": out,
                "ingress_cpu_ns": i1.saturating_sub(i0),
                "task_cpu_ns": b1.saturating_sub(b0),
            }));
        }
    }

    // 2. Deploys: from the command to every node's ingress serving the new release.
    let mut deploys = Vec::new();
    for n in 0..args.deploys {
        let version = format!("r{}", n + 2);
        sb.write("dockhand.toml", &toml(&app, &version));
        let d = deploy(&sb, &nodes, &version);
        log(&format!(
            "deploy {version}: command {:.0} ms, every ingress serving it after {:.0} ms",
            d["command_ms"].as_f64().unwrap_or(0.0),
            d["all_nodes_ms"].as_f64().unwrap_or(0.0)
        ));
        deploys.push(d);
        raft.push(capacity::raft(cluster.manager(), &version));
    }
    let release = format!("r{}", args.deploys + 1);

    // Capacity: spread scaled through the steps, then back to its two replicas.
    let spread = format!("{app}-spread");
    let mut steps = vec![2];
    steps.extend(&args.scale);
    let settle = Duration::from_secs(5);
    let mut scaled = capacity::scale(
        &cluster,
        &app,
        &spread,
        &steps,
        settle,
        args.scale_window,
        &log,
    );
    let network_scaled = capacity::overlay(&cluster, &format!("dockhand-{app}"));
    scaled.extend(capacity::scale(
        &cluster,
        &app,
        &spread,
        &[2],
        settle,
        0,
        &log,
    ));

    // 3. A worker's Engine killed under load.
    let dead = dead_node(args, &mut cluster, &app, m1, &release);
    let out = json!({
        "app": app,
        "cluster_start_ms": cluster_ms,
        "nodes": nodes.iter().map(|(h, a)| json!({"hostname": h, "ingress": a.to_string()})).collect::<Vec<_>>(),
        "placement": placed,
        "first_deploy": first,
        "overlay": overlay,
        "deploys": deploys,
        "dead_node": dead,
        "capacity": {
            "idle_seconds": args.idle,
            "idle_empty": idle_empty,
            "idle_app": idle_app,
            "raft": raft,
            "overlay": network,
            "overlay_scaled": network_scaled,
            "scale_service": "spread",
            "scale": scaled,
        },
        "total_ms": ms(t0.elapsed()),
    });
    log("removing the swarm");
    drop(cluster);
    out
}

/// The project: three copies of the test app differing only in placement, the ingress on
/// every node. The health command is the cluster tests' (Swarm runs it in each task; the
/// ingress probes the port itself).
fn toml(app: &str, version: &str) -> String {
    let health = TESTAPP_SWARM_HEALTH;
    let mut services = String::new();
    for (name, replicas) in [("local", 1), ("remote", 1), ("spread", 2)] {
        services += &format!(
            r#"
[services.{name}]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
replicas = {replicas}
route = {{ host = "{name}.test" }}
env = {{ VERSION = "{version}-{{{{.Node.Hostname}}}}" }}
{health}
"#
        );
    }
    let destinations = destinations_toml(&["m1", "w1", "w2"]);
    format!(
        r#"app = "{app}"

{destinations}
[cluster]
engine = "swarm"
managers = ["m1"]
workers = ["w1", "w2"]
ingress = ["m1", "w1", "w2"]
placement = {{ local = ["node.hostname == m1"], remote = ["node.hostname == w1"], spread = ["node.role == worker"] }}

[proxy]
listen = "0.0.0.0:{PORT}"
{services}"#
    )
}

/// The idle window with the app deployed and serving, the watch-only agent running in the
/// project on this host (the first manager's, as `cluster_nodes` runs it): `dockhand agent`
/// started, given until it answers `dockhand alerts`, measured, stopped. An agent that does
/// not answer within 60 s is reported, and the window measured without it.
fn idle_with_app(args: &Args, cluster: &Cluster, sb: &Sandbox, app: &str) -> Value {
    let log_path = sb.path().join("agent.log");
    let file = std::fs::File::create(&log_path).expect("create the agent log");
    let mut agent = sb
        .cmd(&["agent"])
        .stdout(file.try_clone().expect("dup the agent log"))
        .stderr(file)
        .spawn()
        .expect("spawn dockhand agent");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = false;
    while Instant::now() < deadline && !ready {
        ready = sb.json(&["alerts"]).0 == Some(0);
        if !ready {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    // Its start-up settled (the agent gives start-up's pages back 10 s after it starts).
    std::thread::sleep(Duration::from_secs(12));
    log(&format!(
        "capacity: {} s idle with the app deployed{}",
        args.idle,
        if ready {
            " and the watch-only agent running"
        } else {
            " (the watch-only agent did not answer)"
        }
    ));
    let pid = agent.id() as i32;
    let extra: &[(&str, i32)] = if ready { &[("agent", pid)] } else { &[] };
    let mut window = capacity::idle(cluster, app, args.idle, extra);
    let _ = dockhand_test_support::signal_and_wait(&mut agent, nix::sys::signal::Signal::SIGTERM);
    if !ready {
        window["agent_error"] = json!(std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>());
    }
    window
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `dockhand deploy --json` of the project as written, timed, with every node's ingress
/// polled on every host until it answers only `version` (see [`serving_since`]).
fn deploy(sb: &Sandbox, nodes: &[(String, SocketAddr)], version: &str) -> Value {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let pollers: Vec<_> = nodes
        .iter()
        .map(|(hostname, addr)| {
            let (stop, addr, hostname) = (stop.clone(), *addr, hostname.clone());
            let want = format!("{version}-");
            std::thread::spawn(move || {
                let mut polls: Vec<(f64, bool)> = Vec::new();
                let deadline = start + Duration::from_secs(600);
                'poll: while Instant::now() < deadline {
                    for host in HOSTS {
                        let new = get(addr, host)
                            .is_ok_and(|(status, v)| status == 200 && v.starts_with(&want));
                        polls.push((ms(start.elapsed()), new));
                    }
                    // Done once the command returned and the last two seconds were all new.
                    if stop.load(Ordering::SeqCst) {
                        let now = ms(start.elapsed());
                        let recent = polls.iter().rev().take_while(|(t, _)| now - t < 2000.0);
                        let (mut n, mut all_new) = (0, true);
                        for (_, new) in recent {
                            n += 1;
                            all_new &= *new;
                        }
                        if n >= 3 * HOSTS.len() && all_new {
                            break 'poll;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                (hostname, serving_since(&polls), first_new(&polls))
            })
        })
        .collect();
    let out = sb.run_for(&["deploy", "--json"], Duration::from_secs(600));
    let command_ms = ms(start.elapsed());
    stop.store(true, Ordering::SeqCst);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "dockhand deploy --json printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && report["ok"] == true,
        "dockhand deploy of {version} failed: {report:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut per_node = BTreeMap::new();
    let mut all_nodes: f64 = 0.0;
    for p in pollers {
        let (hostname, since, first) = p.join().expect("poller");
        let since = since.unwrap_or_else(|| {
            panic!("the ingress on {hostname} never answered only {version} within 600 s")
        });
        all_nodes = all_nodes.max(since);
        per_node.insert(
            hostname,
            json!({"serving_ms": since, "first_new_ms": first}),
        );
    }
    json!({
        "version": version,
        "release": report["release"],
        "command_ms": command_ms,
        "all_nodes_ms": all_nodes,
        "nodes": per_node,
    })
}

/// When a node started answering only the new release: the time of the first poll after the
/// last one that did not (any host), or `None` when the last poll was not new.
fn serving_since(polls: &[(f64, bool)]) -> Option<f64> {
    match polls.iter().rposition(|(_, new)| !new) {
        None => polls.first().map(|(t, _)| *t),
        Some(i) => polls.get(i + 1).map(|(t, _)| *t),
    }
}

/// The first poll that answered the new release.
fn first_new(polls: &[(f64, bool)]) -> Option<f64> {
    polls.iter().find(|(_, new)| *new).map(|(t, _)| *t)
}

/// One `GET /health` with `Host: host` on a new connection: the status and `x-version`.
fn get(addr: SocketAddr, host: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader)
}

/// Reads one response (head and `Content-Length` body): the status and `x-version`.
fn read_response(reader: &mut impl BufRead) -> Result<(u16, String), String> {
    let mut line = String::new();
    if reader
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?
        == 0
    {
        return Err("closed before the response".into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {line:?}"))?;
    let (mut length, mut version) = (0usize, String::new());
    loop {
        line.clear();
        if reader
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?
            == 0
        {
            return Err("closed inside the response head".into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().map_err(|_| format!("bad {l:?}"))?;
            } else if k.eq_ignore_ascii_case("x-version") {
                version = v.trim().to_string();
            }
        }
    }
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| format!("body: {e}"))?;
    Ok((status, version))
}

/// `wrk -t1 -cN -dS --latency` through `addr` with `Host: host`: its output.
fn wrk(args: &Args, addr: SocketAddr, host: &str, conns: usize, seconds: u64) -> String {
    let out = Command::new(&args.wrk)
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{seconds}s"),
            "--latency",
        ])
        .args(["-H", &format!("Host: {host}")])
        .arg(format!("http://{addr}{PATH}"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} is missing ({e}): apt-get install wrk", args.wrk));
    assert!(
        out.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running container of a service on a node, for its CPU time.
struct Container {
    cpuacct: PathBuf,
}

impl Container {
    /// The container's CPU time so far (user and system, every process in it), in ns.
    fn cpu_ns(&self) -> u64 {
        let text = std::fs::read_to_string(&self.cpuacct)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.cpuacct.display()));
        cgroup_cpu_ns(&self.cpuacct, &text)
            .unwrap_or_else(|| panic!("no CPU time in {}: {text:?}", self.cpuacct.display()))
    }
}

/// The CPU time in a cgroup file: v1 `cpuacct.usage` (ns), or v2 `cpu.stat`'s `usage_usec`.
fn cgroup_cpu_ns(file: &Path, text: &str) -> Option<u64> {
    if file.ends_with("cpu.stat") {
        text.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|us| us * 1000)
    } else {
        text.trim().parse().ok()
    }
}

/// The running container of `service` on `node`, with the file holding its cgroup's CPU time.
fn container_of(node: &Node, service: &str) -> Container {
    let id = node.docker_ok(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
    ]);
    let id = id
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no container of {service} runs on {}", node.hostname()));
    let pid = node.docker_ok(&["inspect", "--format", "{{.State.Pid}}", id]);
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    Container {
        cpuacct: cpuacct_file(&cgroups).unwrap_or_else(|| {
            panic!("no cpuacct (v1) or unified (v2) cgroup for {service}: {cgroups}")
        }),
    }
}

/// The file with a process's CPU time, from its `/proc/PID/cgroup`: the v1 `cpuacct`
/// hierarchy's `cpuacct.usage`, else (cgroup v2) `cpu.stat`.
fn cpuacct_file(cgroups: &str) -> Option<PathBuf> {
    let mut unified = None;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "cpuacct") {
            let dir = if Path::new("/sys/fs/cgroup/cpuacct").is_dir() {
                Path::new("/sys/fs/cgroup/cpuacct").join(rel)
            } else {
                Path::new("/sys/fs/cgroup").join(controllers).join(rel)
            };
            return Some(dir.join("cpuacct.usage"));
        }
        if controllers.is_empty() {
            unified = Some(Path::new("/sys/fs/cgroup").join(rel).join("cpu.stat"));
        }
    }
    unified
}

/// Which node runs each service's tasks (service name → node hostnames).
fn placement(cluster: &Cluster, app: &str) -> Value {
    let mut out = BTreeMap::new();
    for service in ["local", "remote", "spread"] {
        let mut on: Vec<String> = Vec::new();
        for node in cluster.nodes() {
            let ids = node.docker_ok(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.swarm.service.name={app}-{service}"),
            ]);
            for _ in ids.lines().filter(|l| !l.is_empty()) {
                on.push(node.hostname().to_string());
            }
        }
        on.sort();
        out.insert(service, on);
    }
    json!(out)
}

/// What the dead-node clients of one kind saw, timed from the kill (negative: before it).
#[derive(Default)]
struct Seen {
    ok_by_node: BTreeMap<String, u64>,
    /// (ms from the kill, what failed)
    failures: Vec<(f64, String)>,
    last_w1_ms: Option<f64>,
}

impl Seen {
    fn report(&self) -> Value {
        let after: Vec<&(f64, String)> = self.failures.iter().filter(|(t, _)| *t >= 0.0).collect();
        let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, what) in &after {
            *kinds.entry(what.as_str()).or_default() += 1;
        }
        let times = after.iter().map(|(t, _)| *t);
        json!({
            "answers": self.ok_by_node,
            "failed_after_kill": after.len(),
            "failed_before_kill": self.failures.len() - after.len(),
            "failure_kinds": kinds,
            "first_failure_ms": times.clone().reduce(f64::min),
            "last_failure_ms": times.reduce(f64::max),
            "last_w1_answer_ms": self.last_w1_ms.filter(|t| *t >= 0.0),
        })
    }
}

/// Clients through m1's ingress to `spread` (a task on each worker), half of them keeping
/// their connection alive, half opening one per request (so each request is routed anew);
/// w1's `dockerd` killed after a few seconds; the load runs until the manager saw w1 down and
/// then 15 s more (at most 240 s after the kill).
fn dead_node(
    args: &Args,
    cluster: &mut Cluster,
    app: &str,
    m1: SocketAddr,
    release: &str,
) -> Value {
    // Start-first rolling updates may have put both of spread's tasks on one worker (the new
    // task is placed while the old one still runs): one per worker, set with the docker CLI
    // (stop-first, or an update would find no room), so w1 holds one.
    cluster.manager().docker_ok(&[
        "service",
        "update",
        "--detach=false",
        "--quiet",
        "--replicas-max-per-node",
        "1",
        "--update-order",
        "stop-first",
        &format!("{app}-spread"),
    ]);
    // The ingress routes to a task once its probes pass, a little after Swarm started it:
    // wait until both workers' tasks answer, so the keep-alive clients spread over both.
    let w1 = format!("{release}-w1");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen_nodes = std::collections::BTreeSet::new();
    while seen_nodes.len() < 2 && Instant::now() < deadline {
        if let Ok((200, v)) = get(m1, "spread.test") {
            seen_nodes.insert(v);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    log(&format!(
        "dead node: m1's ingress routes spread to {seen_nodes:?}"
    ));
    // What m1's ingress said about spread's tasks, for when it did not route to both.
    let ingress_log: Vec<String> = {
        let m = cluster.manager();
        let id = m.docker_ok(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={app}-ingress"),
        ]);
        let out = m.docker(&["logs", id.lines().next().unwrap_or_default()]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
            .filter(|l| l.contains("spread"))
            .map(str::to_string)
            .collect()
    };
    let tasks = cluster.manager().docker(&[
        "service",
        "ps",
        "--no-trunc",
        "--format",
        "{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}",
        &format!("{app}-spread"),
    ]);
    let tasks = String::from_utf8_lossy(&tasks.stdout).into_owned();
    let kinds = [
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    // The kill's instant, shared by the clients once known; before it they time from start.
    let start = Instant::now();
    let kill_at = Arc::new(Mutex::new(None::<Instant>));
    let clients: Vec<_> = (0..args.clients)
        .map(|i| {
            let keep_alive = i % 2 == 0;
            let seen = kinds[usize::from(keep_alive)].clone();
            let (stop, kill_at) = (stop.clone(), kill_at.clone());
            std::thread::spawn(move || client(m1, keep_alive, &seen, &stop, &kill_at, start))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));
    let before: Vec<BTreeMap<String, u64>> = kinds
        .iter()
        .map(|k| k.lock().unwrap().ok_by_node.clone())
        .collect();
    log(&format!(
        "dead node: before the kill, answers by task (new connections, keep-alive) {before:?}"
    ));
    let killed = Instant::now();
    cluster.node_mut("w1").kill_dockerd();
    *kill_at.lock().unwrap() = Some(killed);
    log("dead node: w1's dockerd killed");
    // The manager's view of w1.
    let mut down_ms = None;
    let deadline = killed + Duration::from_secs(240);
    while Instant::now() < deadline {
        let state =
            cluster
                .manager()
                .docker(&["node", "inspect", "--format", "{{.Status.State}}", "w1"]);
        let elapsed = ms(killed.elapsed());
        if down_ms.is_none() && String::from_utf8_lossy(&state.stdout).trim() == "down" {
            down_ms = Some(elapsed);
            log(&format!(
                "dead node: the manager saw w1 down after {elapsed:.0} ms"
            ));
        }
        if let Some(d) = down_ms {
            if elapsed > d + 15_000.0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let observed_ms = ms(killed.elapsed());
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.join();
    }
    let [fresh, kept] = &kinds;
    json!({
        "clients": args.clients,
        "served_by_w1_before": before.iter().any(|b| b.contains_key(&w1)),
        "routed_before": seen_nodes,
        "ingress_log": ingress_log,
        "tasks": tasks,
        "answers_before_kill": before[0].iter().chain(&before[1]).fold(BTreeMap::new(), |mut m: BTreeMap<String, u64>, (k, v)| { *m.entry(k.clone()).or_default() += v; m }),
        "node_down_ms": down_ms,
        "observed_ms": observed_ms,
        "new_connections": fresh.lock().unwrap().report(),
        "keep_alive": kept.lock().unwrap().report(),
    })
}

/// One client: GETs back to back, on one connection (`keep_alive`, a new one after any
/// failure) or on a new connection each.
fn client(
    addr: SocketAddr,
    keep_alive: bool,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
    kill_at: &Mutex<Option<Instant>>,
    start: Instant,
) {
    let since_kill = || {
        let k = *kill_at.lock().unwrap();
        match k {
            Some(k) => {
                let now = Instant::now();
                if now >= k {
                    ms(now - k)
                } else {
                    -ms(k - now)
                }
            }
            None => ms(start.elapsed()) - 1e9,
        }
    };
    let fail = |what: String| {
        let t = since_kill();
        seen.lock().unwrap().failures.push((t, what));
    };
    let connection = if keep_alive { "keep-alive" } else { "close" };
    while !stop.load(Ordering::SeqCst) {
        let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(e) => {
                fail(format!("connect: {}", e.kind()));
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let Ok(mut writer) = stream.try_clone() else {
            continue;
        };
        let mut reader = BufReader::new(stream);
        let mut sent = 0u64;
        while !stop.load(Ordering::SeqCst) && (keep_alive || sent == 0) {
            sent += 1;
            if write!(
                writer,
                "GET {PATH} HTTP/1.1\r\nHost: spread.test\r\nConnection: {connection}\r\n\r\n"
            )
            .is_err()
            {
                fail("write".into());
                break;
            }
            match read_response(&mut reader) {
                Ok((200, version)) => {
                    let t = since_kill();
                    let mut s = seen.lock().unwrap();
                    if version.ends_with("-w1") {
                        s.last_w1_ms = Some(t);
                    }
                    *s.ok_by_node.entry(version).or_default() += 1;
                }
                Ok((status, _)) => fail(format!("status {status}")),
                Err(e) => {
                    // A keep-alive connection the proxy closed between two requests lost no
                    // request: reconnect without counting it.
                    if sent == 1 || e != "closed before the response" {
                        fail(e.split(':').next().unwrap_or("read").to_string());
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_serves_the_new_release_from_the_poll_after_its_last_old_answer() {
        let polls = [
            (10.0, false),
            (20.0, true),
            (30.0, false),
            (40.0, true),
            (50.0, true),
        ];
        assert_eq!(serving_since(&polls), Some(40.0));
        assert_eq!(first_new(&polls), Some(20.0));
        assert_eq!(serving_since(&[(5.0, true), (6.0, true)]), Some(5.0));
        assert_eq!(serving_since(&[(5.0, true), (6.0, false)]), None);
        assert_eq!(first_new(&[(5.0, false)]), None);
    }

    #[test]
    fn the_cpu_time_file_is_found_for_cgroup_v1_and_v2() {
        let v2 = cpuacct_file("0::/system.slice/docker-abc.scope\n").unwrap();
        assert_eq!(
            v2,
            Path::new("/sys/fs/cgroup/system.slice/docker-abc.scope/cpu.stat")
        );
        assert_eq!(
            cgroup_cpu_ns(&v2, "usage_usec 1500\nuser_usec 1000\n"),
            Some(1_500_000)
        );
        let v1 =
            cpuacct_file("12:pids:/n/abc\n4:cpu,cpuacct:/n/abc\n1:name=systemd:/n/abc\n").unwrap();
        assert!(v1.ends_with("n/abc/cpuacct.usage"), "{v1:?}");
        assert_eq!(cgroup_cpu_ns(&v1, "123456789\n"), Some(123_456_789));
    }

    #[test]
    fn a_response_gives_its_status_and_version_and_leaves_the_next_one() {
        let mut r = BufReader::new(
            &b"HTTP/1.1 200 OK\r\nx-version: r2-w1\r\ncontent-length: 3\r\n\r\nok\nHTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"[..],
        );
        assert_eq!(read_response(&mut r), Ok((200, "r2-w1".to_string())));
        assert_eq!(read_response(&mut r), Ok((502, String::new())));
        assert_eq!(
            read_response(&mut r),
            Err("closed before the response".to_string())
        );
    }
}
