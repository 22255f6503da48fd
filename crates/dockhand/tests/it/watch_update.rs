//! The watch after a deploy and GitOps together: a pushed commit whose app passes its health
//! check but fails real requests is deployed by the update watcher, rolled back by the watch,
//! and then skipped by the update watcher until a newer commit arrives — not deployed again
//! at every poll.

use std::time::Duration;

use dockhand_test_support::{wait_until, Load};

use crate::revisions::{answer, git};
use crate::sandbox;

/// Healthy on `/health`; `/` answers `{answer}` with `{status}`.
const APP: &str = r#"import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        status = 200 if self.path == "/health" else {status}
        body = b"{answer}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

// `pin_code`: the rollback runs the old release's code, not the checkout of the bad commit.
const TOML: &str = r#"app = "it"
pin_code = true

[proxy]
listen = "127.0.0.1:0"
drain_timeout = "5s"

[services.web]
command = "python3 app.py"
port = 8000
health = { path = "/health", interval = "100ms", timeout = "5s", healthy_threshold = 1, unhealthy_threshold = 3, deploy_timeout = "10s" }
route = { host = "app.test", path = "/" }
stop_timeout = "5s"

[update]
git = { branch = "main" }
poll = "1s"

[monitor]
interval = "500ms"

[monitor.watch]
window = "1m"
min_requests = 5
"#;

fn app(answer: &str, status: u16) -> String {
    APP.replace("{answer}", answer)
        .replace("{status}", &status.to_string())
}

#[test]
fn a_commit_the_watch_rolled_back_is_not_deployed_again_by_the_update_watcher() {
    let sb = sandbox();
    let remotes = tempfile::tempdir().unwrap();
    let bare = remotes.path().join("app.git");
    let work = remotes.path().join("work");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    git(
        remotes.path(),
        &["init", "-q", "--bare", "-b", "main", &path(&bare)],
    );
    git(remotes.path(), &["clone", "-q", &path(&bare), &path(&work)]);
    std::fs::write(work.join(".gitignore"), ".dockhand/\nagent-*.log\n").unwrap();
    std::fs::write(work.join("dockhand.toml"), TOML).unwrap();
    std::fs::write(work.join("app.py"), app("one", 200)).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let clone = remotes.path().join("clone");
    git(
        remotes.path(),
        &["clone", "-q", &path(&bare), &path(&clone)],
    );
    for entry in std::fs::read_dir(&clone).unwrap().flatten() {
        std::fs::rename(entry.path(), sb.path().join(entry.file_name())).unwrap();
    }
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    assert_eq!(answer(&addr), "one");
    let load = Load::start(&addr, "app.test", "/", 4);

    // A commit that passes its gate and answers 500 to every real request.
    std::fs::write(work.join("app.py"), app("bad", 500)).unwrap();
    git(&work, &["commit", "-q", "-am", "bad"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let bad = git(&work, &["rev-parse", "HEAD"]);
    wait_until(
        "the watch rolls the bad commit back",
        Duration::from_secs(90),
        || {
            let events =
                String::from_utf8_lossy(&sb.run(&["events", "-n", "500"]).stdout).into_owned();
            events.contains("failed its watch after the cutover") && answer(&addr) == "one"
        },
    );
    let update = sb.json(&["update", "status"]).1;
    assert!(
        update["failed"]
            .as_array()
            .is_some_and(|f| f.iter().any(|r| r["commit"] == bad.as_str()
                && r["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("rolled back by the watch"))),
        "{update:#}"
    );
    let releases = sb.json(&["releases"]).1.as_array().unwrap().len();
    // Later polls see the commit and skip it.
    wait_until(
        "a poll that skips the bad commit",
        Duration::from_secs(30),
        || sb.json(&["update", "status"]).1["last_check"]["result"] == "known_bad",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        sb.json(&["releases"]).1.as_array().unwrap().len(),
        releases,
        "the rolled-back commit was deployed again"
    );
    assert_eq!(answer(&addr), "one");
    drop(load);

    // A newer commit deploys.
    std::fs::write(work.join("app.py"), app("three", 200)).unwrap();
    git(&work, &["commit", "-q", "-am", "fixed"]);
    git(&work, &["push", "-q", "origin", "main"]);
    wait_until("the newer commit serves", Duration::from_secs(60), || {
        answer(&addr) == "three"
    });
}
