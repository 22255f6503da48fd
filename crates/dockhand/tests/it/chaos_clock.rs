//! The wall clock stepped by an hour while the agent runs (NTP correcting a clock that was an
//! hour off, a VM restored from a snapshot). A debug build of the agent reads its one wall
//! clock (`dockhand_agent::clock`) with the offset written in `DOCKHAND_CLOCK_OFFSET_FILE`,
//! re-read at most once a second, so a test steps it without touching the machine's clock.
//! Each test checks the invariant of one time-based part: a task scheduled in a skipped hour
//! runs once (with an event saying so); one that just ran does not run again in a repeated
//! hour; a certificate's days left and its expiry alert follow the clock; a deploy gated on
//! health passes across a step and the monitor's figures stay sane; a pending alert and a
//! silence keep their real durations. ARCHITECTURE.md lists
//! them in the chaos table.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dockhand_test_support::{wait_until, Load, Sandbox};

use crate::{expect, sandbox, show, testapp_toml};

const OFFSET_ENV: &str = "DOCKHAND_CLOCK_OFFSET_FILE";
const HOUR: i64 = 3600;

/// The agent's clock offset, in a file of the sandbox.
struct Clock {
    file: PathBuf,
}

impl Clock {
    fn new(sb: &Sandbox, offset: i64) -> Clock {
        let clock = Clock {
            file: sb.path().join("clock-offset"),
        };
        clock.set(offset);
        clock
    }

    /// Steps the agent's clock to real time plus `offset` seconds (seen within a second).
    fn set(&self, offset: i64) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    fn env(&self) -> (&'static str, String) {
        (OFFSET_ENV, self.file.display().to_string())
    }
}

fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The offset that puts the agent's clock `at` seconds past a multiple of `period`.
fn offset_to(at: i64, period: i64) -> i64 {
    at - real_now().rem_euclid(period)
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn start(sb: &Sandbox, clock: &Clock, extra: &[(&str, &str)]) -> dockhand_test_support::AgentProc {
    let (name, value) = clock.env();
    let mut env = vec![(name, value.as_str())];
    env.extend_from_slice(extra);
    sb.start_agent_with_env(&env)
}

/// The agent process still runs and answers.
fn assert_alive(sb: &Sandbox, agent: &dockhand_test_support::AgentProc) {
    let pid = nix::unistd::Pid::from_raw(agent.pid() as i32);
    assert!(
        nix::sys::signal::kill(pid, None).is_ok(),
        "the agent died:\n{}",
        agent.output()
    );
    expect(sb, &["status"], 0);
}

fn events(sb: &Sandbox) -> Vec<serde_json::Value> {
    let (_, events) = sb.json(&["events", "-n", "500"]);
    events.as_array().cloned().unwrap_or_default()
}

fn task_report(sb: &Sandbox, name: &str) -> serde_json::Value {
    let (_, report) = sb.json(&["tasks"]);
    report["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no task {name} in {report}"))
}

fn parse_time(v: &serde_json::Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp()
}

fn task_config(ticks: &Path, schedule: &str) -> String {
    format!(
        "{}\n[tasks.tick]\ncommand = \"echo tick >> {}\"\nschedule = \"{schedule}\"\n",
        testapp_toml("VERSION = \"v1\"", 1, "30s"),
        ticks.display()
    )
}

#[test]
fn a_clock_stepped_forward_an_hour_runs_a_task_of_the_skipped_hour_once_and_says_so() {
    let sb = sandbox();
    let ticks = sb.path().join("ticks.log");
    // Every five minutes; the agent's clock a minute past a five-minute mark, so the next
    // run is four minutes away.
    sb.write("dockhand.toml", &task_config(&ticks, "*/5 * * * *"));
    let offset = offset_to(60, 300);
    let clock = Clock::new(&sb, offset);
    let agent = start(&sb, &clock, &[]);
    let next = parse_time(&task_report(&sb, "tick")["next_run"]);
    assert!(next > real_now() + offset, "next run {next} is ahead");
    assert_eq!(lines(&ticks), 0, "not due yet");

    // Forward an hour: twelve five-minute times passed at once.
    clock.set(offset + HOUR);
    wait_until("the skipped run", Duration::from_secs(30), || {
        lines(&ticks) >= 1
    });
    let mut said = serde_json::Value::Null;
    wait_until("the event about the jump", Duration::from_secs(30), || {
        said = events(&sb)
            .into_iter()
            .find(|e| {
                e["kind"] == "schedule"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("`task:tick`") && m.contains("jumped forward"))
            })
            .unwrap_or_default();
        !said.is_null()
    });
    assert_eq!(said["level"], "warn", "{said}");
    assert!(
        said["message"].as_str().unwrap().contains("runs once now"),
        "{said}"
    );
    // Once, not once per skipped time: give a run per slot the time to show up.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(lines(&ticks), 1, "one run for the whole skipped hour");
    let (_, runs) = sb.json(&["tasks", "tick"]);
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["trigger"], "schedule", "{runs}");
    // The next run is the next five-minute time of the stepped clock.
    let agent_now = real_now() + offset + HOUR;
    let next = parse_time(&task_report(&sb, "tick")["next_run"]);
    assert!(
        next > agent_now - 5 && next <= agent_now + 300,
        "next run {next}, agent clock {agent_now}"
    );
    assert_alive(&sb, &agent);
}

#[test]
fn a_clock_stepped_back_an_hour_does_not_run_a_task_again_in_the_repeated_hour() {
    let sb = sandbox();
    let ticks = sb.path().join("ticks.log");
    // Every 15 seconds: a scheduler that forgot its last run would run again within 15
    // seconds of the step back.
    sb.write("dockhand.toml", &task_config(&ticks, "*/15 * * * * *"));
    let clock = Clock::new(&sb, 0);
    let agent = start(&sb, &clock, &[]);
    wait_until("a run", Duration::from_secs(40), || lines(&ticks) >= 1);
    let ran = lines(&ticks);
    clock.set(-HOUR);
    // Two slots of the repeated hour pass.
    std::thread::sleep(Duration::from_secs(35));
    assert_eq!(lines(&ticks), ran, "no run in the repeated hour");
    let (_, runs) = sb.json(&["tasks", "tick"]);
    let last = parse_time(&runs[0]["started_at"]);
    let next = parse_time(&task_report(&sb, "tick")["next_run"]);
    assert!(
        next > last,
        "the next run ({next}) is after the last one ({last}), not in the repeated hour"
    );
    assert!(
        !events(&sb)
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains("jumped"))),
        "a step back is no missed run"
    );

    // The clock set right again: the task runs at its next time.
    clock.set(0);
    wait_until("the next real run", Duration::from_secs(40), || {
        lines(&ticks) > ran
    });
    assert_alive(&sb, &agent);
}

/// `certs/site.pem` and `certs/site.key` for `app.test`, ending `valid_for` from now.
fn write_certificate(sb: &Sandbox, valid_for: time::Duration) {
    use std::os::unix::fs::PermissionsExt;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["app.test".to_string()]).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + valid_for;
    let cert = params.self_signed(&key).unwrap();
    sb.write("certs/site.pem", &cert.pem());
    let key_path = sb.write("certs/site.key", &key.serialize_pem());
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn cert_row(sb: &Sandbox) -> serde_json::Value {
    let (_, report) = sb.json(&["certs"]);
    report["certificates"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["host"] == "app.test").cloned())
        .unwrap_or_else(|| panic!("no app.test in {report}"))
}

fn certificate_alert_firing(sb: &Sandbox) -> bool {
    let (_, listed) = sb.json(&["alerts"]);
    listed["firing"]
        .as_array()
        .is_some_and(|f| f.iter().any(|a| a["rule"] == "certificate"))
}

#[test]
fn a_certificates_days_left_and_its_expiry_alert_follow_a_clock_stepped_by_an_hour() {
    let sb = sandbox();
    // Half an hour more than the alert's 14 days.
    write_certificate(&sb, time::Duration::days(14) + time::Duration::minutes(30));
    let toml = testapp_toml("VERSION = \"v1\"", 1, "20s").replace(
        "drain_timeout = \"10s\"\n",
        "drain_timeout = \"10s\"\nhttps_listen = \"127.0.0.1:0\"\ncertificates = [{ cert = \"certs/site.pem\", key = \"certs/site.key\" }]\n",
    );
    sb.write(
        "dockhand.toml",
        &format!("{toml}\n[monitor]\ninterval = \"500ms\"\n"),
    );
    let clock = Clock::new(&sb, 0);
    let agent = start(&sb, &clock, &[]);
    let row = cert_row(&sb);
    assert_eq!(row["days_left"], 14, "{row}");
    assert_eq!(row["state"], "valid", "{row}");
    // A few monitor ticks: nothing to alert about yet.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!certificate_alert_firing(&sb), "{}", sb.json(&["alerts"]).1);

    clock.set(HOUR);
    wait_until("13 days left", Duration::from_secs(20), || {
        cert_row(&sb)["days_left"] == 13
    });
    wait_until("the certificate alert", Duration::from_secs(30), || {
        certificate_alert_firing(&sb)
    });
    assert!(
        events(&sb).iter().any(|e| e["kind"] == "alert"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("certificate of app.test: 13 days left"))),
        "{:#?}",
        events(&sb)
    );
    let (_, status) = sb.json(&["status"]);
    assert!(
        status.to_string().contains("\"days_left\":13"),
        "status follows the clock too: {status}"
    );

    // Back an hour: 14 days again, and the alert recovers.
    clock.set(0);
    wait_until("14 days left again", Duration::from_secs(20), || {
        cert_row(&sb)["days_left"] == 14
    });
    wait_until("the alert recovers", Duration::from_secs(30), || {
        !certificate_alert_firing(&sb)
    });
    assert_eq!(cert_row(&sb)["state"], "valid");
    assert_alive(&sb, &agent);
}

fn alert_rules(sb: &Sandbox, key: &str) -> Vec<String> {
    let (_, listed) = sb.json(&["alerts"]);
    listed[key]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|a| a["rule"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn stepped_event(sb: &Sandbox, direction: &str) -> bool {
    let wanted = format!("the wall clock was stepped {direction} by 3600 s");
    events(sb).iter().any(|e| {
        e["kind"] == "alert"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&wanted))
    })
}

#[test]
fn a_pending_alert_and_a_silence_keep_their_real_durations_across_a_clock_stepped_by_an_hour() {
    let sb = sandbox();
    let toml = testapp_toml("VERSION = \"v1\"", 1, "20s");
    // Memory and disk at any use: memory fires at once (the control that the rules are
    // evaluated), disk only after 30 minutes of it, which an hour's step must not shorten.
    sb.write(
        "dockhand.toml",
        &format!(
            "{toml}\n[monitor]\ninterval = \"500ms\"\n\n[alerts.rules.memory]\nthreshold = 0.0\nfor = \"0s\"\n\n[alerts.rules.disk]\nthreshold = 0.0\nfor = \"30m\"\n"
        ),
    );
    let clock = Clock::new(&sb, 0);
    let agent = start(&sb, &clock, &[]);
    wait_until("the memory alert", Duration::from_secs(30), || {
        alert_rules(&sb, "firing").contains(&"memory".to_string())
    });
    expect(&sb, &["alerts", "silence", "memory", "30m"], 0);
    assert_eq!(alert_rules(&sb, "silences"), ["memory"]);
    assert!(!alert_rules(&sb, "firing").contains(&"disk".to_string()));

    clock.set(HOUR);
    wait_until("the step noticed", Duration::from_secs(20), || {
        stepped_event(&sb, "forward")
    });
    // Several evaluations (every 500 ms) on the stepped clock.
    std::thread::sleep(Duration::from_secs(3));
    let firing = alert_rules(&sb, "firing");
    assert!(
        !firing.contains(&"disk".to_string()),
        "a 30-minute `for` fired seconds after it began, on an hour's step: {}",
        sb.json(&["alerts"]).1
    );
    assert!(firing.contains(&"memory".to_string()), "{firing:?}");
    assert_eq!(
        alert_rules(&sb, "silences"),
        ["memory"],
        "a 30-minute silence ended on an hour's step"
    );

    clock.set(0);
    wait_until("the step back noticed", Duration::from_secs(20), || {
        stepped_event(&sb, "back")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(!alert_rules(&sb, "firing").contains(&"disk".to_string()));
    assert_eq!(alert_rules(&sb, "silences"), ["memory"]);
    assert_alive(&sb, &agent);
}

/// Every number in `v` that is negative, by path (durations, rates, counts and ages are
/// never negative).
fn negatives(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Number(n) if n.as_f64().is_some_and(|f| f < 0.0 || !f.is_finite()) => {
            out.push(format!("{path} = {n}"));
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                negatives(x, &format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                negatives(x, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// Each series' rolled-up points in the stored metrics, in time order.
fn assert_stored_series_in_order(sb: &Sandbox) {
    let path = sb.state_dir().join("metrics.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let store: serde_json::Value = serde_json::from_str(&text).unwrap();
    fn walk(v: &serde_json::Value, path: &str) {
        if let serde_json::Value::Object(o) = v {
            for (k, x) in o {
                if let (true, Some(points)) = (k == "fine" || k == "coarse", x.as_array()) {
                    let ts: Vec<u64> = points.iter().filter_map(|p| p["t"].as_u64()).collect();
                    assert!(
                        ts.windows(2).all(|w| w[1] > w[0]),
                        "{path}.{k} out of order: {ts:?}"
                    );
                } else {
                    walk(x, &format!("{path}.{k}"));
                }
            }
        }
    }
    walk(&store, "metrics.json");
}

#[test]
fn a_deploy_gated_on_health_passes_across_clock_steps_and_the_monitor_stays_sane() {
    let sb = sandbox();
    let config = |version: &str, delay: u32| {
        format!(
            "{}\n[monitor]\ninterval = \"500ms\"\n",
            testapp_toml(
                &format!("VERSION = \"{version}\", STARTUP_DELAY_MS = \"{delay}\""),
                2,
                "60s"
            )
        )
    };
    sb.write("dockhand.toml", &config("v1", 0));
    let clock = Clock::new(&sb, 0);
    let agent = start(&sb, &clock, &[("DOCKHAND_METRICS_PERSIST_MS", "500")]);
    let load = Load::start(&sb.proxy_addr(), "app.test", "/version", 2);
    wait_until("traffic", Duration::from_secs(30), || {
        load.snapshot().ok > 50
    });

    // Back an hour while release 2's instances start (they take 3 s), forward again during
    // release 3's.
    for (version, offset) in [("v2", -HOUR), ("v3", 0)] {
        sb.write("dockhand.toml", &config(version, 3000));
        let stepper = {
            let file = clock.file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500));
                let tmp = file.with_extension("tmp");
                std::fs::write(&tmp, format!("{offset}\n")).unwrap();
                std::fs::rename(&tmp, &file).unwrap();
            })
        };
        let out = sb.run(&["deploy"]);
        stepper.join().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "deploy {version}: {}",
            show(&out)
        );
        assert_eq!(
            crate::crash::http_get(&sb.proxy_addr(), "app.test", "/version"),
            version
        );
        let seen = load.snapshot().ok;
        wait_until("traffic after the deploy", Duration::from_secs(30), || {
            load.snapshot().ok > seen + 50
        });
    }
    // A few monitor ticks on the corrected clock, and the store written.
    std::thread::sleep(Duration::from_secs(2));
    let report = load.finish();
    assert_eq!(
        report.failures(),
        0,
        "no request failed across the steps: {:?}",
        report.errors
    );

    let (_, releases) = sb.json(&["releases"]);
    assert_eq!(releases[0]["status"], "current", "{releases}");
    let mut bad = Vec::new();
    for args in [&["status"][..], &["top"][..], &["releases"][..]] {
        let (code, v) = sb.json(args);
        assert_eq!(code, Some(0), "{args:?}: {v}");
        negatives(&v, &args.join(" "), &mut bad);
    }
    assert!(bad.is_empty(), "negative figures: {bad:#?}");
    let (_, status) = sb.json(&["status"]);
    assert!(
        status["services"][0]["instances"]
            .as_array()
            .is_some_and(|is| is.iter().all(|i| i["health"] == "healthy")),
        "{status:#}"
    );
    assert_stored_series_in_order(&sb);
    assert_alive(&sb, &agent);
}
