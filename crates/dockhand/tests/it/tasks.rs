//! Tasks through the real binary: a once task runs exactly once across deploys, a rollback
//! and an agent restart (and again only with `--force`); scheduled tasks run and their
//! failures are events; `dockhand run` streams output, returns the exit code, and refuses a
//! run that would overlap one in progress.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use dockhand_test_support::{wait_until, Sandbox};

use crate::{expect, sandbox, show, testapp_toml};

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn task<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no task {name} in {report}"))
}

fn config(sb: &Sandbox, version: &str, tasks: &str) -> String {
    let _ = sb;
    format!(
        "{}\n{tasks}",
        testapp_toml(&format!("VERSION = \"{version}\""), 1, "30s")
    )
}

fn idle(sb: &Sandbox) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_until("no task runs", Duration::from_secs(60), || {
        let (_, report) = sb.json(&["tasks"]);
        let busy = report["tasks"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["running"].as_u64() != Some(0)));
        last = report;
        !busy
    });
    last
}

#[test]
fn a_once_task_runs_exactly_once_across_deploys_a_rollback_and_a_restart() {
    let sb = sandbox();
    let seed = sb.path().join("seed.log");
    let later = sb.path().join("later.log");
    let tasks = format!(
        "[tasks.seed]\ncommand = \"echo seeded >> {}\"\nwhen = \"once\"\n",
        seed.display()
    );
    sb.write("dockhand.toml", &config(&sb, "v1", &tasks));
    let mut agent = sb.start_agent();
    wait_until("the once task ran", Duration::from_secs(30), || {
        let (_, report) = sb.json(&["tasks"]);
        !task(&report, "seed")["once_done_at"].is_null()
    });
    assert_eq!(lines(&seed), 1);
    for version in ["v2", "v3", "v4"] {
        sb.write("dockhand.toml", &config(&sb, version, &tasks));
        expect(&sb, &["deploy"], 0);
    }
    expect(&sb, &["rollback"], 0);
    assert_eq!(agent.terminate(), Some(0));
    let _agent = sb.start_agent();
    // A new once task, added by a deploy after the restart, runs in the same pass over the
    // once tasks that would run `seed` again if its record were lost.
    let both = format!(
        "{tasks}[tasks.later]\ncommand = \"echo later >> {}\"\nwhen = \"once\"\n",
        later.display()
    );
    sb.write("dockhand.toml", &config(&sb, "v5", &both));
    expect(&sb, &["deploy"], 0);
    wait_until("the new once task ran", Duration::from_secs(30), || {
        let (_, report) = sb.json(&["tasks"]);
        !task(&report, "later")["once_done_at"].is_null()
    });
    let report = idle(&sb);
    assert_eq!(lines(&later), 1);
    assert_eq!(lines(&seed), 1, "the once task ran again: {report}");
    let (_, runs) = sb.json(&["tasks", "seed"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["trigger"], "once");
    assert_eq!(runs[0]["state"], "succeeded");

    // Again only by name, with --force.
    let out = expect(&sb, &["run", "seed"], 4);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        show(&out)
    );
    assert_eq!(lines(&seed), 1);
    expect(&sb, &["run", "seed", "--force"], 0);
    assert_eq!(lines(&seed), 2);
}

#[test]
fn scheduled_tasks_run_and_a_failure_is_an_event() {
    let sb = sandbox();
    let ticks = sb.path().join("ticks.log");
    let tasks = format!(
        "[tasks.tick]\ncommand = \"echo tick >> {}\"\nschedule = \"* * * * * *\"\n\n\
         [tasks.broken]\ncommand = \"echo about to fail; exit 3\"\nschedule = \"* * * * * *\"\nretries = 1\n",
        ticks.display()
    );
    sb.write("dockhand.toml", &config(&sb, "v1", &tasks));
    let _agent = sb.start_agent();
    wait_until("two scheduled runs", Duration::from_secs(30), || {
        lines(&ticks) >= 2
    });
    let mut failed = serde_json::Value::Null;
    wait_until("a failed scheduled run", Duration::from_secs(30), || {
        let (_, runs) = sb.json(&["tasks", "broken"]);
        failed = runs
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["state"] == "failed").cloned())
            .unwrap_or_default();
        !failed.is_null()
    });
    assert_eq!(failed["exit_code"], 3, "{failed}");
    assert_eq!(failed["attempts"], 2, "{failed}");
    assert_eq!(failed["trigger"], "schedule");
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or_default()
            .contains("exit code 3: about to fail"),
        "{failed}"
    );
    let (_, events) = sb.json(&["events", "-n", "500"]);
    let event = events
        .as_array()
        .and_then(|es| {
            es.iter().find(|e| {
                e["kind"] == "task"
                    && e["level"] == "error"
                    && e["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("task `broken` failed")
            })
        })
        .unwrap_or_else(|| panic!("no failure event in {events}"));
    assert!(event["message"].as_str().unwrap().contains("exit code 3"));
    let (_, report) = sb.json(&["tasks"]);
    let tick = task(&report, "tick");
    assert_eq!(tick["when"], "schedule");
    assert!(tick["next_run"].is_string(), "{tick}");
}

#[test]
fn run_streams_output_returns_the_exit_code_and_refuses_an_overlap() {
    let sb = sandbox();
    let go = sb.path().join("go");
    let tasks = format!(
        "[tasks.slow]\ncommand = \"echo first; while [ ! -e {} ]; do sleep 0.05; done; echo second; echo to-stderr >&2\"\n",
        go.display()
    );
    sb.write("dockhand.toml", &config(&sb, "v1", &tasks));
    let _agent = sb.start_agent();

    let mut first = sb
        .cmd(&["run", "slow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dockhand run");
    let mut out = BufReader::new(first.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("read the streamed output");
    // The task is still waiting for `go`: this line was streamed, not sent at the end.
    assert_eq!(line, "first\n");
    assert!(first.try_wait().unwrap().is_none());

    let refused = expect(&sb, &["run", "slow"], 4);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("already running"),
        "{}",
        show(&refused)
    );
    std::fs::write(&go, "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut err).unwrap();
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{rest}{err}");
    assert_eq!(rest, "second\n");
    assert!(err.contains("to-stderr"), "{err}");
    let (_, runs) = sb.json(&["tasks", "slow"]);
    assert_eq!(runs[0]["state"], "succeeded", "{runs}");
    assert_eq!(runs[0]["trigger"], "manual");

    // A one-off command in the service's environment: its exit code is ours.
    let out = expect(
        &sb,
        &[
            "run",
            "web",
            "--",
            "sh",
            "-c",
            "echo $VERSION; echo oops >&2; exit 7",
        ],
        7,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v1\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("oops"));
    let out = expect(&sb, &["run", "nosuch"], 5);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tasks: slow"),
        "{}",
        show(&out)
    );
}

#[test]
fn tasks_of_a_container_service_run_in_one_off_containers_of_its_image() {
    use dockhand_test_support::docker::{
        docker_ok, ensure_test_images, unique_app, AppCleanup, TESTAPP_SHELL_IMAGE,
    };
    ensure_test_images();
    let app = unique_app("tasks");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        &format!(
            r#"app = "{app}"

[proxy]
listen = "127.0.0.1:0"

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
env = {{ VERSION = "c1" }}
health = {{ path = "/health", interval = "200ms", timeout = "5s", unhealthy_threshold = 5, deploy_timeout = "60s" }}
route = {{ host = "app.test", path = "/" }}
stop_timeout = "5s"

[tasks.seed]
command = "echo seeded-$VERSION in $(hostname)"
when = "once"
"#
        ),
    );
    let _agent = sb.start_agent();
    let mut runs = serde_json::Value::Null;
    wait_until("the once task ran", Duration::from_secs(60), || {
        runs = sb.json(&["tasks", "seed"]).1;
        runs[0]["state"] == "succeeded"
    });
    let log = runs[0]["log"].as_str().expect("the run's log");
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("seeded-c1"), "{text}");

    let out = expect(
        &sb,
        &["run", "web", "--", "sh", "-c", "echo in-$VERSION; exit 4"],
        4,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in-c1\n");
    // The one-off containers are gone.
    let left = docker_ok(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=dockhand.app={app}"),
        "--filter",
        "label=dockhand.kind=job",
    ]);
    assert!(left.trim().is_empty(), "job containers left: {left}");
}
