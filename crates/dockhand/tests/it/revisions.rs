//! Releases pin the code: each release of a process service runs from its own copy of the
//! project, and records the git commit it was made from — so a rollback runs the old code.

use std::path::Path;
use std::process::Command;

use crate::{expect, sandbox};

pub const APP: &str = r#"import http.server, os

ANSWER = "{answer}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ANSWER.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

const TOML: &str = r#"app = "it"
pin_code = true

[proxy]
listen = "127.0.0.1:0"
drain_timeout = "5s"

[services.web]
command = "python3 app.py"
port = 8000
health = { path = "/", interval = "100ms", timeout = "5s", healthy_threshold = 1, unhealthy_threshold = 5, deploy_timeout = "30s" }
route = { host = "app.test", path = "/" }
stop_timeout = "5s"
"#;

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.org")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.org")
        .output()
        .expect("git is installed (apt install git)");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn answer(addr: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-H", "Host: app.test"])
        .arg(format!("http://{addr}/"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_rollback_of_a_process_service_runs_the_old_code() {
    let sb = sandbox();
    sb.write(".gitignore", ".dockhand/\nagent-*.log\n");
    sb.write("dockhand.toml", TOML);
    sb.write("app.py", &APP.replace("{answer}", "one"));
    git(sb.path(), &["init", "-q", "-b", "main"]);
    git(sb.path(), &["add", "."]);
    git(sb.path(), &["commit", "-q", "-m", "first answer"]);
    let first = git(sb.path(), &["rev-parse", "HEAD"]);
    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    assert_eq!(answer(&addr), "one");

    sb.write("app.py", &APP.replace("{answer}", "two"));
    git(sb.path(), &["commit", "-q", "-am", "second answer"]);
    let second = git(sb.path(), &["rev-parse", "HEAD"]);
    expect(&sb, &["deploy"], 0);
    assert_eq!(answer(&addr), "two");

    // The project directory holds the new code; the rollback runs release 1's own copy.
    expect(&sb, &["rollback"], 0);
    assert_eq!(answer(&addr), "one");
    assert!(std::fs::read_to_string(sb.path().join("app.py"))
        .unwrap()
        .contains("\"two\""));

    let (_, releases) = sb.json(&["releases"]);
    let revision = |id: i64| {
        releases
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == id))
            .map(|r| r["revision"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(revision(1), format!("git:{first}"), "{releases}");
    assert_eq!(revision(2), format!("git:{second}"), "{releases}");
    let r2 = releases
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == 2))
        .unwrap();
    assert_eq!(r2["revision_message"], "second answer");
    assert_eq!(r2["revision_author"], "Ada <ada@example.org>");

    // Uncommitted changes are deployed too, and the revision says so.
    sb.write("app.py", &APP.replace("{answer}", "three"));
    expect(&sb, &["deploy"], 0);
    assert_eq!(answer(&addr), "three");
    let (_, releases) = sb.json(&["releases"]);
    assert_eq!(releases[0]["revision"], format!("git:{second}+dirty"));
}

#[test]
fn without_git_a_release_records_a_content_hash() {
    let sb = sandbox();
    // The agent's log in the project changes all the time: ignored, it does not count.
    sb.write(".dockhandignore", "agent-*.log\n");
    sb.write("dockhand.toml", TOML);
    sb.write("app.py", &APP.replace("{answer}", "one"));
    let _agent = sb.start_agent();
    expect(&sb, &["deploy"], 0);
    let (_, releases) = sb.json(&["releases"]);
    let a = releases[0]["revision"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let b = releases[1]["revision"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{releases}");
    // Nothing changed between the two releases: the same content, the same hash.
    assert_eq!(a, b);
    sb.write("app.py", &APP.replace("{answer}", "two"));
    expect(&sb, &["deploy"], 0);
    let (_, releases) = sb.json(&["releases"]);
    assert_ne!(releases[0]["revision"], a.as_str());
    // Each retained release has its own copy under the state directory.
    for id in 1..=3 {
        assert!(sb
            .state_dir()
            .join(format!("releases/r{id}/app.py"))
            .is_file());
    }
}
