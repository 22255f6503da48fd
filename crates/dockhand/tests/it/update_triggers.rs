//! What starts an automatic update and what holds it back, with real git and the real
//! binary: push webhooks of GitHub, Gitea and GitLab sent over HTTP through the proxy (signed
//! right, signed wrong, replayed, for another branch), a maintenance window that makes a new
//! commit wait until `update now`, and a manual deploy holding the deploy lock, which defers
//! the update until it is done.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dockhand_test_support::{wait_until, Sandbox};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::revisions::{answer, git, APP};
use crate::{expect, sandbox};

const SECRET: &str = "hook-Secret-7731";

fn toml(update: &str, deploy_timeout: &str) -> String {
    format!(
        r#"app = "it"

[proxy]
listen = "127.0.0.1:0"
drain_timeout = "5s"

[services.web]
command = "python3 app.py"
port = 8000
health = {{ path = "/", interval = "100ms", timeout = "5s", healthy_threshold = 1, unhealthy_threshold = 3, deploy_timeout = "{deploy_timeout}" }}
route = {{ host = "app.test", path = "/" }}
stop_timeout = "5s"

[update]
git = {{ branch = "main" }}
{update}
"#
    )
}

/// A bare remote with `toml` and the app answering "one", cloned into the sandbox (the
/// secrets file holds the webhook's secret); returns the remotes' directory and the work clone.
fn follow(sb: &Sandbox, toml: &str) -> (tempfile::TempDir, PathBuf) {
    let remotes = tempfile::tempdir().unwrap();
    let bare = remotes.path().join("app.git");
    let work = remotes.path().join("work");
    git(
        remotes.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(
        remotes.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    std::fs::write(work.join(".gitignore"), ".dockhand/\nagent-*.log\n").unwrap();
    std::fs::write(work.join("dockhand.toml"), toml).unwrap();
    std::fs::write(work.join("app.py"), APP.replace("{answer}", "one")).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let clone = remotes.path().join("clone");
    git(
        remotes.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    for entry in std::fs::read_dir(&clone).unwrap().flatten() {
        std::fs::rename(entry.path(), sb.path().join(entry.file_name())).unwrap();
    }
    let secrets = sb.write(".dockhand/secrets.env", &format!("HOOK={SECRET}\n"));
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    (remotes, work)
}

fn push(work: &Path, app: &str, message: &str) -> String {
    std::fs::write(work.join("app.py"), app).unwrap();
    git(work, &["commit", "-q", "-am", message]);
    git(work, &["push", "-q", "origin", "main"]);
    git(work, &["rev-parse", "HEAD"])
}

fn status(sb: &Sandbox) -> serde_json::Value {
    sb.json(&["update", "status"]).1
}

fn hmac_hex(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// POSTs `body` with `headers` to the webhook path through the proxy; the status and body.
fn deliver(addr: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    std::fs::write(&file, body).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-m",
        "10",
        "-w",
        "\n%{http_code}",
        "-H",
        "Host: app.test",
    ])
    .args(["-H", "Content-Type: application/json"])
    .arg("--data-binary")
    .arg(format!("@{}", file.display()));
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    let out = cmd
        .arg(format!("http://{addr}/_dockhand/hook"))
        .output()
        .expect("curl is installed (apt install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn payload(branch: &str, after: &str) -> String {
    format!(r#"{{"ref":"refs/heads/{branch}","before":"0000","after":"{after}","commits":[]}}"#)
}

fn github(body: &str, secret: &str, delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-GitHub-Event", "push".into()),
        ("X-GitHub-Delivery", delivery.into()),
        (
            "X-Hub-Signature-256",
            format!("sha256={}", hmac_hex(secret, body)),
        ),
    ]
}

fn gitea(body: &str, secret: &str, delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-Gitea-Event", "push".into()),
        ("X-Gitea-Delivery", delivery.into()),
        ("X-Gitea-Signature", hmac_hex(secret, body)),
    ]
}

fn gitlab(token: &str, delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-Gitlab-Event", "Push Hook".into()),
        ("X-Gitlab-Token", token.into()),
        ("Idempotency-Key", delivery.into()),
    ]
}

fn update_events(sb: &Sandbox) -> Vec<String> {
    let (_, events) = sb.json(&["events", "-n", "500"]);
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "update")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn signed_pushes_from_github_gitea_and_gitlab_deploy_and_forgeries_and_replays_do_nothing() {
    let sb = sandbox();
    // Polls are an hour apart: whatever deploys here was started by a webhook.
    let (_remotes, work) = follow(
        &sb,
        &toml(
            "poll = \"1h\"\nwebhook = { path = \"/_dockhand/hook\", secret = \"${secret.HOOK}\" }",
            "10s",
        ),
    );
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    assert_eq!(answer(&addr), "one");
    assert_eq!(status(&sb)["webhook"], "/_dockhand/hook");

    // GitHub. A wrong signature is answered 401, and nothing is checked or deployed.
    let two = push(&work, &APP.replace("{answer}", "two"), "second answer");
    let body = payload("main", &two);
    for headers in [
        github(&body, "not-the-secret", "gh-forged"),
        gitea(&body, "not-the-secret", "gt-forged"),
        gitlab("not-the-secret", "gl-forged"),
        vec![("X-GitHub-Event", "push".to_string())],
    ] {
        let (code, text) = deliver(&addr, &headers, &body);
        assert_eq!(code, 401, "{headers:?}: {text}");
    }
    // Signed right, but the body was changed on the way.
    let tampered = github(&payload("main", "feedface"), SECRET, "gh-tampered");
    assert_eq!(deliver(&addr, &tampered, &body).0, 401);
    // Signed right, for another branch: answered, ignored.
    let other = payload("feature", &two);
    let (code, text) = deliver(&addr, &github(&other, SECRET, "gh-other"), &other);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("ignored"), "{text}");
    assert!(
        status(&sb)["last_check"].is_null(),
        "no check ran: {}",
        status(&sb)
    );
    assert_eq!(answer(&addr), "one");

    // Signed right, for the branch followed: the new commit deploys.
    let signed = github(&body, SECRET, "gh-1");
    let (code, text) = deliver(&addr, &signed, &body);
    assert_eq!(code, 202, "{text}");
    wait_until("the pushed commit serves", Duration::from_secs(60), || {
        answer(&addr) == "two"
    });
    assert_eq!(status(&sb)["current_revision"], format!("git:{two}"));

    // The same delivery again: answered, ignored, nothing checked.
    let checks_before = update_events(&sb)
        .iter()
        .filter(|m| m.contains("checking for updates"))
        .count();
    let (code, text) = deliver(&addr, &signed, &body);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("already received"), "{text}");
    let events = update_events(&sb);
    assert_eq!(
        events
            .iter()
            .filter(|m| m.contains("checking for updates"))
            .count(),
        checks_before,
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|m| m.contains("gh-1") && m.contains("already received")),
        "{events:?}"
    );

    // Gitea: its own signature header.
    let three = push(&work, &APP.replace("{answer}", "three"), "third answer");
    let body = payload("main", &three);
    let (code, text) = deliver(&addr, &gitea(&body, SECRET, "gt-1"), &body);
    assert_eq!(code, 202, "{text}");
    wait_until("the Gitea push serves", Duration::from_secs(60), || {
        answer(&addr) == "three"
    });

    // GitLab: the token, and the delivery keyed by its Idempotency-Key.
    let four = push(&work, &APP.replace("{answer}", "four"), "fourth answer");
    let body = payload("main", &four);
    let (code, text) = deliver(&addr, &gitlab(SECRET, "gl-1"), &body);
    assert_eq!(code, 202, "{text}");
    wait_until("the GitLab push serves", Duration::from_secs(60), || {
        answer(&addr) == "four"
    });
    let (code, text) = deliver(&addr, &gitlab(SECRET, "gl-1"), &body);
    assert_eq!(
        (code, text.contains("already received")),
        (200, true),
        "{text}"
    );

    // The secret never reaches the events or the agent's answers.
    let (_, events) = sb.json(&["events", "-n", "500"]);
    assert!(!events.to_string().contains(SECRET));
    assert!(!status(&sb).to_string().contains(SECRET));
}

/// A window that does not contain the next hours of the local clock (the test and the agent
/// share the machine and its time zone): every day, an hour that ended six hours ago.
fn closed_window() -> String {
    use chrono::Timelike;
    let h = (chrono::Local::now().hour() + 18) % 24;
    format!("{h:02}:00-{:02}:00", (h + 1) % 24)
}

#[test]
fn a_commit_found_outside_the_maintenance_window_waits_until_update_now() {
    let sb = sandbox();
    let (_remotes, work) = follow(
        &sb,
        &toml(
            &format!("poll = \"1s\"\nwindow = \"{}\"", closed_window()),
            "10s",
        ),
    );
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    assert_eq!(answer(&addr), "one");

    let two = push(&work, &APP.replace("{answer}", "two"), "second answer");
    wait_until(
        "a check that finds the commit outside the window",
        Duration::from_secs(30),
        || {
            let st = status(&sb);
            st["last_check"]["result"] == "outside_window"
                && st["last_check"]["remote_head"] == two.as_str()
        },
    );
    assert_eq!(answer(&addr), "one", "nothing deployed outside the window");
    let events = update_events(&sb);
    assert!(
        events
            .iter()
            .any(|m| m.contains("waits for the maintenance window")),
        "{events:?}"
    );

    // `update now` overrides the window.
    let (code, check) = sb.json(&["update", "now"]);
    assert_eq!(code, Some(0), "{check}");
    assert_eq!(check["result"], "deployed", "{check}");
    assert_eq!(answer(&addr), "two");
}

#[test]
fn an_update_waits_while_a_manual_deploy_holds_the_lock_and_follows_it() {
    let sb = sandbox();
    let (_remotes, work) = follow(&sb, &toml("poll = \"1s\"", "60s"));
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    assert_eq!(answer(&addr), "one");
    expect(&sb, &["update", "pause"], 0);

    // A commit whose app takes a while to start, deployed by hand.
    let slow = APP.replace("{answer}", "two").replacen(
        "import http.server, os",
        "import http.server, os, time\ntime.sleep(8)",
        1,
    );
    let two = push(&work, &slow, "slow to start");
    git(sb.path(), &["fetch", "-q", "origin"]);
    let mut manual = sb.spawn_quiet(&["deploy", "--revision", &two]);
    wait_until(
        "the manual deploy holds the lock",
        Duration::from_secs(30),
        || !sb.json(&["status"]).1["deploying"].is_null(),
    );

    // A newer commit arrives and updates resume: the check finds the deploy and waits.
    let three = push(&work, &APP.replace("{answer}", "three"), "third answer");
    expect(&sb, &["update", "resume"], 0);
    wait_until("a deferred check", Duration::from_secs(30), || {
        let st = status(&sb);
        st["last_check"]["result"] == "deferred"
            && st["last_check"]["remote_head"] == three.as_str()
    });
    let status_code = manual.wait().unwrap();
    assert!(status_code.success(), "the manual deploy succeeded");

    // Once the manual deploy is done, the update follows.
    wait_until("the newer commit serves", Duration::from_secs(60), || {
        answer(&addr) == "three"
    });
    assert_eq!(status(&sb)["current_revision"], format!("git:{three}"));
    let events = update_events(&sb);
    assert!(
        events.iter().any(|m| m.contains("waits: a deploy by")),
        "{events:?}"
    );
}

/// The webhook and the metrics route are both the agent's own listeners behind the proxy;
/// each must keep its own upstream connections. (They once shared a backend id, so the
/// proxy's idle connection to one listener could carry a request meant for the other.)
#[test]
fn the_webhook_and_the_metrics_route_each_reach_their_own_listener() {
    let sb = sandbox();
    let (_remotes, _work) = follow(
        &sb,
        &format!(
            "{}\n[monitor]\nmetrics_route = {{ host = \"app.test\", path = \"/metrics\", token = \"${{secret.METRICS}}\" }}\n",
            // One proxy worker: one pool of upstream connections for both listeners.
            toml(
                "poll = \"1h\"\nwebhook = { path = \"/_dockhand/hook\", secret = \"${secret.HOOK}\" }",
                "10s",
            )
            .replace("drain_timeout = \"5s\"", "drain_timeout = \"5s\"\nworkers = 1")
        ),
    );
    let token = "scrape-4471";
    let secrets = sb.write(
        ".dockhand/secrets.env",
        &format!("HOOK={SECRET}\nMETRICS={token}\n"),
    );
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    let get = |path: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-m",
                "10",
                "-w",
                "\n%{http_code}",
                "-H",
                "Host: app.test",
            ])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("http://{addr}{path}"))
            .output()
            .expect("curl is installed (apt install curl)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().to_string(), body.to_string())
    };
    for round in 0..3 {
        // A signed push for another branch: the webhook listener's own answer.
        let body = payload("feature", "feedface");
        let (code, text) = deliver(
            &addr,
            &github(&body, SECRET, &format!("gh-mixed-{round}")),
            &body,
        );
        assert_eq!(code, 200, "round {round}: {text}");
        assert!(text.contains("ignored"), "round {round}: {text}");
        // A GET of the hook: the webhook listener's refusal (on the proxy's plain GET path,
        // like the metrics' GET, so both use the same kind of upstream connection).
        let (code, text) = get("/_dockhand/hook");
        assert_ne!(code, "200", "round {round}: {text}");
        assert!(!text.contains("# TYPE dockhand_"), "round {round}: {text}");
        // Right after it, the metrics route: the exposition, not the webhook's answer.
        let (code, text) = get("/metrics");
        assert_eq!(code, "200", "round {round}: {text}");
        assert!(text.contains("# TYPE dockhand_"), "round {round}: {text}");
    }
}
