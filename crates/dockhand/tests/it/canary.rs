//! Canary deploys through the real binary, under load from 50 clients each on an address of
//! its own: a canary answering 500 is aborted at its first step, its failed requests confined
//! to the clients on its side and none once the abort completed; a good canary takes its share
//! of the requests (each client staying on its side), shows in `status`, and is promoted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dockhand_test_support::{Load, LoadReport};

use crate::crash::http_get;
use crate::{sandbox, testapp_toml};

const CLIENTS: usize = 50;

fn toml(env: &str, deploy: &str) -> String {
    format!(
        "{}\n[monitor]\ninterval = \"500ms\"\n\n[monitor.watch]\nenabled = false\n{deploy}",
        testapp_toml(env, 2, "20s")
    )
}

/// Per client, the answers between two snapshots, by version.
fn delta(a: &LoadReport, b: &LoadReport) -> BTreeMap<usize, BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (client, versions) in &b.by_client {
        let before = a.by_client.get(client);
        let mut d = BTreeMap::new();
        for (v, n) in versions {
            let n = n - before.and_then(|m| m.get(v)).copied().unwrap_or(0);
            if n > 0 {
                d.insert(v.clone(), n);
            }
        }
        out.insert(*client, d);
    }
    out
}

fn total(r: &LoadReport) -> u64 {
    r.ok + r.failures()
}

#[test]
fn a_bad_canary_is_aborted_at_its_first_step_and_a_good_one_is_promoted() {
    let sb = sandbox();
    sb.write("dockhand.toml", &toml("VERSION = \"v1\"", ""));
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    let load = Load::start_spread(&addr, "app.test", "/", CLIENTS);
    std::thread::sleep(Duration::from_secs(2));

    // Release 2 passes its gate (health is not counted) but answers 500 to every request.
    sb.write(
        "dockhand.toml",
        &toml("VERSION = \"v2\", FAIL_PERCENT = \"100\"", ""),
    );
    let before = load.snapshot();
    let (code, report) = sb.json(&["deploy", "--canary", "25%", "--canary-step", "30s"]);
    let after = load.snapshot();
    assert_eq!(code, Some(1), "{report:#}");
    let canary = &report["canary"];
    assert_eq!(canary["promoted"], false, "{report:#}");
    assert_eq!(canary["serving"], 1, "{report:#}");
    let steps = canary["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "aborted at its first step: {report:#}");
    assert_eq!(steps[0]["share"], 2500);
    let why = steps[0]["failed"].as_str().unwrap_or_default();
    assert!(why.contains("answered 5xx on the canary"), "{report:#}");
    assert!(
        report["message"]
            .as_str()
            .is_some_and(|m| m.contains("the canary of release 2 was aborted at 25 %")),
        "{report:#}"
    );

    std::thread::sleep(Duration::from_secs(2));
    let settled = load.snapshot();
    assert!(after.failures() > 0, "the canary got requests: {after:?}");
    assert_eq!(
        settled.failures(),
        after.failures(),
        "no request fails once the canary was aborted"
    );
    // The failures were the canary's clients' only: a sticky quarter of them.
    let during = delta(&before, &after);
    let failed_clients: Vec<usize> = during
        .iter()
        .filter(|(_, v)| v.contains_key("v2"))
        .map(|(c, _)| *c)
        .collect();
    assert!(
        (3..=22).contains(&failed_clients.len()),
        "about a quarter of {CLIENTS} clients reached the canary: {failed_clients:?}"
    );
    let requests = total(&after) - total(&before);
    let failed = after.failures() - before.failures();
    assert!(
        (failed as f64) < 0.5 * requests as f64,
        "{failed} of {requests} requests failed during the canary"
    );
    assert_eq!(http_get(&addr, "app.test", "/version"), "v1");
    let status = sb.json(&["status"]).1;
    assert_eq!(status["current_release"]["id"], 1, "{status:#}");
    assert!(status.get("canary").is_none(), "{status:#}");

    // Release 3 is good: two steps from the configuration, then every request.
    sb.write(
        "dockhand.toml",
        &toml(
            "VERSION = \"v3\"",
            "\n[deploy]\nstrategy = \"canary\"\n\n[deploy.canary]\nsteps = [\"25%\", \"50%\"]\nstep = \"5s\"\n",
        ),
    );
    let good_before = load.snapshot();
    let (code, report, seen) = std::thread::scope(|s| {
        let deploy = s.spawn(|| sb.json(&["deploy"]));
        // Wait for the first step in `status`, then measure a stretch within it.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut progress = None;
        while progress.is_none() && Instant::now() < deadline && !deploy.is_finished() {
            let st = sb.json(&["status"]).1;
            if st["canary"]["step"] == 1 {
                progress = Some(st["canary"].clone());
            } else {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let window = progress.as_ref().map(|_| {
            std::thread::sleep(Duration::from_millis(500));
            let a = load.snapshot();
            std::thread::sleep(Duration::from_millis(1500));
            let b = load.snapshot();
            let still = sb.json(&["status"]).1["canary"]["step"] == 1;
            (a, b, still)
        });
        let (code, report) = deploy.join().expect("deploy thread");
        (code, report, progress.zip(window))
    });
    assert_eq!(code, Some(0), "{report:#}");
    let canary = &report["canary"];
    assert_eq!(canary["promoted"], true, "{report:#}");
    let steps = canary["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{report:#}");
    assert!(
        steps.iter().all(|s| s.get("failed").is_none()),
        "{report:#}"
    );
    assert_eq!(steps[1]["share"], 5000);
    // The monitor's figures: the canary took about its share of the first step's requests.
    let figures = &steps[0]["services"][0];
    let (c, st) = (
        figures["canary"]["requests"].as_f64().unwrap_or(0.0),
        figures["serving"]["requests"].as_f64().unwrap_or(0.0),
    );
    let share = c / (c + st);
    assert!(
        (0.13..=0.40).contains(&share),
        "the canary took {share:.2} of the requests at 25 %: {report:#}"
    );

    let (progress, (a, b, still)) = seen.expect("status showed the canary's first step");
    assert_eq!(progress["release"], 3, "{progress}");
    assert_eq!(progress["serving"], 1, "{progress}");
    assert_eq!(progress["share"], 2500, "{progress}");
    assert_eq!(progress["services"][0], "web", "{progress}");
    if still {
        // Within one step, each client stays on its side.
        let stretch = delta(&a, &b);
        let mut on_canary = 0u64;
        let mut all = 0u64;
        for (client, versions) in &stretch {
            assert!(
                versions.len() <= 1,
                "client {client} was answered by both releases within one step: {versions:?}"
            );
            on_canary += versions.get("v3").copied().unwrap_or(0);
            all += versions.values().sum::<u64>();
        }
        let share = on_canary as f64 / all.max(1) as f64;
        assert!(
            (0.13..=0.40).contains(&share),
            "{share:.2} of the requests reached the canary at 25 %"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let end = load.finish();
    assert_eq!(
        end.failures(),
        good_before.failures(),
        "a good canary fails no request: {end:?}"
    );
    assert_eq!(http_get(&addr, "app.test", "/version"), "v3");
    let events = String::from_utf8_lossy(&sb.run(&["events"]).stdout).into_owned();
    assert!(
        events.contains("canary step 1/2: release 3 takes 25 % of the requests of web")
            && events.contains("the canary of release 3 passed 2 step(s)"),
        "{events}"
    );
}
