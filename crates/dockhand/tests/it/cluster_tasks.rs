//! `[tasks.NAME]` on a real swarm (test-support's fixture: a manager and two workers, the
//! images in the manager's Engine only, reached over SSH): each run is a Swarm job of the
//! serving release's image, placed like its service (here on the workers), with the
//! service's Swarm secret. `dockhand run` prints the task's output and exits with its code; a
//! failing task gives its exit code and output after its retries; a task past its timeout is
//! stopped and its job removed; a second run of a task with `overlap = "skip"` is refused
//! while the first runs; a `when = "once"` task runs after the first deploy and not again
//! without `--force`; no job service is left behind; the secret reaches the task and
//! appears in no argument, no kept log and no output (the sandbox's canary check). Last, the
//! watch-only agent on the manager's Engine runs a task on its six-field (seconds) cron
//! schedule and records the run.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dockhand_test_support::docker::TESTAPP_SHELL_IMAGE;
use dockhand_test_support::swarm::destinations_toml;
use dockhand_test_support::CANARY;

use crate::cluster::{json, swarm_sandbox};

fn toml(app: &str) -> String {
    let destinations = destinations_toml(&["m1", "w1", "w2"]);
    format!(
        r#"app = "{app}"

{destinations}
[cluster]
engine = "swarm"
managers = ["m1"]
workers = ["w1", "w2"]
placement = {{ web = ["node.role == worker"] }}

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
env = {{ MODE = "jobs", TOKEN = "${{secret.{CANARY}}}" }}

[tasks.hello]
service = "web"
command = "echo hello from $MODE on $(hostname); sha256sum < \"$TOKEN_FILE\"; cat \"$TOKEN_FILE\"; echo; echo to-stderr >&2"

[tasks.broken]
service = "web"
command = "echo about to fail; echo failing-on-stderr >&2; exit 3"
retries = 1

[tasks.slow]
service = "web"
command = "echo slow started; sleep 600"
timeout = "8s"

[tasks.seed]
service = "web"
when = "once"
command = "echo seeded"

[tasks.tick]
service = "web"
schedule = "*/3 * * * * *"
command = "echo tick at $(date +%s)"
"#
    )
}

/// The Swarm services of `app`'s task jobs (of `task`, or of any).
fn jobs(
    cluster: &dockhand_test_support::swarm::Cluster,
    app: &str,
    task: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
        "service".to_string(),
        "ls".into(),
        "--format".into(),
        "{{.Name}}".into(),
        "--filter".into(),
        format!("label=dockhand.app={app}"),
    ];
    args.push("--filter".into());
    args.push(match task {
        Some(t) => format!("label=dockhand.task={t}"),
        None => "label=dockhand.task".into(),
    });
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster
        .manager()
        .docker_ok(&args)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn sha256_hex(value: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) is installed");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), value.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn lines(value: &serde_json::Value) -> Vec<(String, String)> {
    value["run"]["output"]
        .as_array()
        .unwrap_or_else(|| panic!("no output in {value:#}"))
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_string(),
                l["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn cluster_tasks_run_as_swarm_jobs_with_their_output_exit_code_timeout_and_secret() {
    let (cluster, sb, app) = swarm_sandbox("tj");
    sb.write("dockhand.toml", &toml(&app));
    sb.ensure_canary_secret();
    let canary = sb.canary().to_string();

    // The first deploy converges, then runs the once task (and only it).
    let (code, report, out) = json(&sb, &["deploy"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(report["ok"], true, "{report:#}");
    let tasks = report["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(tasks.len(), 1, "{report:#}");
    assert_eq!(tasks[0]["task"], "seed", "{report:#}");
    assert_eq!(tasks[0]["outcome"], "succeeded", "{report:#}");
    assert!(
        tasks[0]["output"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["text"] == "seeded"),
        "{report:#}"
    );
    let once = cluster.manager().docker_ok(&[
        "config",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        &format!("name=dockhand-{app}-once-seed"),
    ]);
    assert_eq!(once.trim(), format!("dockhand-{app}-once-seed"));
    // Once is once: again only with --force.
    let (code, refused, out) = json(&sb, &["run", "seed"]);
    assert_eq!(code, Some(4), "{out}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--force"),
        "{refused:#}"
    );
    let (code, _, out) = json(&sb, &["run", "seed", "--force"]);
    assert_eq!(code, Some(0), "{out}");

    // A task on a worker: its output, the release, the node; the secret reached it as the
    // service's Swarm secret file (its digest matches) and its value is redacted from what
    // it printed.
    let (code, run, out) = json(&sb, &["run", "hello"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(run["exit_code"], 0, "{run:#}");
    assert_eq!(run["timed_out"], false, "{run:#}");
    assert_eq!(run["run"]["outcome"], "succeeded", "{run:#}");
    assert_eq!(run["run"]["release"], "1", "{run:#}");
    let node = run["run"]["node"].as_str().unwrap_or_default();
    assert!(node == "w1" || node == "w2", "placed on a worker: {run:#}");
    let output = lines(&run);
    assert!(
        output
            .iter()
            .any(|(s, t)| s == "out" && t.starts_with("hello from jobs on ")),
        "{output:?}"
    );
    assert!(
        output.iter().any(|(s, t)| s == "err" && t == "to-stderr"),
        "{output:?}"
    );
    let digest = sha256_hex(&canary);
    assert!(
        output.iter().any(|(_, t)| t.starts_with(&digest)),
        "the secret's digest {digest} in {output:?}"
    );
    assert!(!out.contains(&canary), "{out}");
    let log = run["log"].as_str().unwrap_or_else(|| panic!("{run:#}"));
    let kept = std::fs::read_to_string(log).unwrap();
    assert!(kept.contains(" out hello from jobs on "), "{kept}");
    assert!(kept.contains(" err to-stderr"), "{kept}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(log).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The human form: stdout and stderr as the task wrote them.
    let human = sb.run_for(&["run", "hello"], Duration::from_secs(300));
    assert!(human.status.success(), "{human:?}");
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(stdout.contains("hello from jobs on "), "{stdout}");
    assert!(
        String::from_utf8_lossy(&human.stderr).contains("to-stderr"),
        "{human:?}"
    );
    assert!(jobs(&cluster, &app, None).is_empty(), "no job left behind");

    // A failing task: both attempts, its exit code and its output.
    let (code, failed, out) = json(&sb, &["run", "broken"]);
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(failed["exit_code"], 3, "{failed:#}");
    assert_eq!(failed["run"]["outcome"], "failed", "{failed:#}");
    assert_eq!(failed["run"]["attempts"], 2, "{failed:#}");
    let output = lines(&failed);
    assert_eq!(
        output
            .iter()
            .filter(|(s, t)| s == "out" && t == "about to fail")
            .count(),
        2,
        "{output:?}"
    );
    assert!(
        output
            .iter()
            .any(|(s, t)| s == "err" && t == "failing-on-stderr"),
        "{output:?}"
    );
    let human = sb.run_for(&["run", "broken"], Duration::from_secs(300));
    assert_eq!(human.status.code(), Some(3), "{human:?}");
    assert!(
        String::from_utf8_lossy(&human.stderr).contains("exit code 3"),
        "{human:?}"
    );

    // A task past its timeout is stopped and its job removed; while it runs, a second run
    // of it is refused (overlap = "skip", judged on the swarm).
    let slow = sb
        .cmd(&["run", "slow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while jobs(&cluster, &app, Some("slow")).is_empty() {
        assert!(Instant::now() < deadline, "the slow job never appeared");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, refused, out) = json(&sb, &["run", "slow"]);
    assert_eq!(code, Some(4), "{out}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already running"),
        "{refused:#}"
    );
    let done = slow.wait_with_output().unwrap();
    let timed: serde_json::Value = serde_json::from_slice(&done.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&done.stderr)));
    assert_eq!(done.status.code(), Some(1), "{timed:#}");
    assert_eq!(timed["timed_out"], true, "{timed:#}");
    assert_eq!(timed["run"]["outcome"], "timed_out", "{timed:#}");
    assert!(
        lines(&timed).iter().any(|(_, t)| t == "slow started"),
        "{timed:#}"
    );
    assert!(jobs(&cluster, &app, Some("slow")).is_empty());

    // A one-off command in the service's environment is a job too.
    let one_off = sb.run_for(
        &["run", "web", "--", "sh", "-c", "echo one-off $MODE"],
        Duration::from_secs(300),
    );
    assert!(one_off.status.success(), "{one_off:?}");
    assert!(
        String::from_utf8_lossy(&one_off.stdout).contains("one-off jobs"),
        "{one_off:?}"
    );

    // No job service is left, and the secret is in no job's spec (no argument, no env).
    assert!(jobs(&cluster, &app, None).is_empty());
    let inspect = cluster
        .manager()
        .docker_ok(&["service", "inspect", &format!("{app}-web")]);
    assert!(!inspect.contains(&canary));

    // The watch-only agent on the manager's Engine runs the scheduled task and records it.
    let socket = sb.state_dir().join("agent.sock");
    let log_path = sb.path().join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut agent = sb
        .cmd(&["agent"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn dockhand agent");
    let elsewhere = crate::sandbox();
    let deadline = Instant::now() + Duration::from_secs(120);
    let tick = loop {
        let out = elsewhere
            .cmd(&["--socket", socket.to_str().unwrap(), "tasks", "--json"])
            .output()
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let tick = value["tasks"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "tick").cloned());
        if let Some(tick) = tick {
            if tick["last_run"]["state"] == "succeeded" {
                break tick;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled run of tick succeeded: {value:#}\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(tick["last_run"]["trigger"], "schedule", "{tick:#}");
    let kept = tick["last_run"]["log"]
        .as_str()
        .unwrap_or_else(|| panic!("{tick:#}"));
    let text = std::fs::read_to_string(kept).unwrap();
    assert!(text.contains(" out tick at "), "{text}");
    // Only the scheduled task is the agent's: the others are not listed there.
    let hello = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!hello.contains(&canary));
}
