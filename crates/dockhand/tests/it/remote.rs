//! `dockhand setup` and remote operation against real SSH targets: a debootstrap'd Debian 12
//! with systemd and sshd in a container (`dockhand_test_support::target`), reached through a
//! port on 127.0.0.1 with the test's own ssh_config (`$DOCKHAND_SSH_CONFIG`).

use std::time::Duration;

use dockhand_test_support::docker::{docker, docker_ok, ensure_test_images, unique_app};
use dockhand_test_support::target::Target;
use dockhand_test_support::Sandbox;

use crate::show;

/// Long enough for a setup that installs Docker from the apt cache on two busy cores.
const SETUP: Duration = Duration::from_secs(600);

fn sandbox_for(target: &Target) -> Sandbox {
    crate::sandbox().with_env(
        "DOCKHAND_SSH_CONFIG",
        target.ssh_config().to_str().expect("utf-8 path"),
    )
}

fn run(sb: &Sandbox, args: &[&str], code: i32) -> std::process::Output {
    let out = sb.run_for(args, SETUP);
    assert_eq!(
        out.status.code(),
        Some(code),
        "dockhand {args:?}: {}",
        show(&out)
    );
    out
}

fn json(sb: &Sandbox, args: &[&str], code: i32) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(sb, &all, code);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("dockhand {all:?}: not JSON ({e}): {}", show(&out)))
}

fn http_get(port: u16, path: &str) -> String {
    http_get_host(port, "app.test", path)
}

fn http_get_host(port: u16, host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(text)
}

/// Two local images of the testapp differing in their top layer only, removed on drop.
struct AppImages {
    repo: String,
}

impl AppImages {
    fn build(name: &str) -> AppImages {
        ensure_test_images();
        let repo = unique_app(name);
        let dir = crate::sandbox();
        for version in ["v1", "v2"] {
            dir.write("version.txt", &format!("{version}\n"));
            dir.write(
                "Dockerfile",
                "FROM dockhand-testapp:shell\nCOPY version.txt /version.txt\n",
            );
            docker_ok(&[
                "build",
                "-q",
                "-t",
                &format!("{repo}:{version}"),
                dir.path().to_str().unwrap(),
            ]);
        }
        AppImages { repo }
    }

    fn tag(&self, version: &str) -> String {
        format!("{}:{version}", self.repo)
    }
}

impl Drop for AppImages {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.tag("v1"), &self.tag("v2")]);
    }
}

fn container_app(image: &str, user: &str, target: &Target) -> String {
    format!(
        r#"app = "remote"

[proxy]
listen = "0.0.0.0:80"
drain_timeout = "5s"

[services.web]
image = "{image}"
port = 8080
env = {{ VERSION = "{image}", TOKEN = "${{secret.TOKEN}}" }}
health = {{ path = "/health", interval = "200ms", deploy_timeout = "60s" }}
route = {{ host = "app.test" }}

# Built here (build.on defaults to "local"), its layers sent, tagged as the release's build there.
[services.api]
build = {{ context = "api" }}
port = 8080
env = {{ VERSION = "api-built-here" }}
health = {{ path = "/health", interval = "200ms", deploy_timeout = "60s" }}
route = {{ host = "api.test" }}

[destinations.target]
host = "ssh://{user}@{alias}"
"#,
        alias = target.alias()
    )
}

const SECRET: &str = "s3cret-remote-token-value";

#[test]
fn setup_bootstraps_then_changes_nothing_and_a_container_app_is_run_through_ssh() {
    let target = Target::start("setup");
    let images = AppImages::build("remote-app");
    let sb = sandbox_for(&target);
    sb.write(
        "dockhand.toml",
        &container_app(&images.tag("v1"), "root", &target),
    );
    sb.write(
        "api/Dockerfile",
        "FROM dockhand-testapp:shell\nCOPY hello.txt /hello.txt\n",
    );
    sb.write("api/hello.txt", "built on the laptop\n");
    let secrets = sb.write(".dockhand/secrets.env", &format!("TOKEN={SECRET}\n"));
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    // The plan first; a dry run changes nothing.
    let plan = json(&sb, &["setup", "-d", "target", "--dry-run"], 0);
    let steps: Vec<&str> = plan["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(steps.starts_with(&["packages", "users"]), "{plan:#}");
    assert!(
        plan["plan"]["steps"][0]["details"][0]
            .as_str()
            .unwrap()
            .contains("docker.io"),
        "{plan:#}"
    );
    assert!(
        !target.exec("getent passwd dockhand").status.success(),
        "a dry run created the user"
    );

    // Without a terminal, applying needs --yes.
    let out = run(&sb, &["setup", "-d", "target"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--yes"),
        "{}",
        show(&out)
    );

    let done = json(&sb, &["setup", "-d", "target", "--yes"], 0);
    assert!(done["changed"].as_u64().unwrap() >= 10, "{done:#}");

    // What setup left on the server.
    let unit = target.exec_ok("cat /etc/systemd/system/dockhand.service");
    for line in [
        "User=dockhand",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(line), "{unit}");
    }
    assert_eq!(
        target.exec_ok("systemctl is-active dockhand").trim(),
        "active"
    );
    assert_eq!(
        target.exec_ok("systemctl is-active fail2ban").trim(),
        "active"
    );
    assert_eq!(
        target.exec_ok("systemctl is-active docker").trim(),
        "active"
    );
    let rules = target.exec_ok("nft list table inet dockhand");
    assert!(
        rules.contains("policy drop") && rules.contains("tcp dport { 80, 443 } accept"),
        "{rules}"
    );
    let sshd = target.exec_ok("sshd -T");
    assert!(
        sshd.contains("passwordauthentication no") && sshd.contains("permitrootlogin no"),
        "{sshd}"
    );
    assert!(target
        .exec_ok("cat /etc/apt/apt.conf.d/20auto-upgrades")
        .contains("Unattended-Upgrade \"1\""));
    assert_eq!(
        target
            .exec_ok("stat -c '%a %U' /srv/dockhand/.dockhand/secrets.env")
            .trim(),
        "600 dockhand"
    );
    assert_eq!(
        target
            .exec_ok("stat -c '%a %U' /srv/dockhand/dockhand.toml")
            .trim(),
        "600 dockhand"
    );
    assert!(
        !target
            .exec_ok("ls -a /srv/dockhand/.dockhand")
            .contains("agent.sock"),
        "local state travelled"
    );

    // Root may no longer log in; the deploy user may, with the same key.
    let out = run(
        &sb,
        &["status", "--host", &format!("root@{}", target.alias())],
        3,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        show(&out)
    );
    sb.write(
        "dockhand.toml",
        &container_app(&images.tag("v1"), "deploy", &target),
    );

    // Setup again: only the edited dockhand.toml travels; a third run changes nothing.
    let again = json(&sb, &["setup", "-d", "target", "--yes"], 0);
    let changed: Vec<&str> = again["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "change")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["project"], "{again:#}");
    let third = json(&sb, &["setup", "-d", "target", "--yes"], 0);
    assert_eq!(third["changed"], 0, "{third:#}");

    // Deploy, status, logs, exec, rollback through SSH.
    let first = json(&sb, &["deploy", "-d", "target"], 0);
    assert_eq!(first["succeeded"], true, "{first:#}");
    let pushed = &first["remote"]["images"][0];
    assert_eq!(pushed["layers_sent"], pushed["layers"], "{first:#}");
    assert!(http_get(target.http_port(), "/version").contains("v1"));
    // The build service was built here and its image stood in for a build on the server.
    let built = first["remote"]["prebuilt"]["api"]
        .as_str()
        .expect("api built here")
        .to_string();
    assert!(built.starts_with("sha256:"), "{first:#}");
    let there = target.exec_ok("docker image inspect -f '{{.Id}}' dockhand/remote-api:r1");
    assert_eq!(
        there.trim(),
        built,
        "the release's build is the image built here"
    );
    assert!(http_get_host(target.http_port(), "api.test", "/version").contains("api-built-here"));
    let status = json(&sb, &["status", "-d", "target"], 0);
    assert_eq!(status["app"], "remote");
    assert_eq!(status["current_release"]["id"], 1, "{status:#}");
    let logs = run(&sb, &["logs", "-d", "target", "-n", "20"], 0);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("listening"),
        "{}",
        show(&logs)
    );
    let exec = run(
        &sb,
        &["exec", "-d", "target", "web", "--", "cat", "/version.txt"],
        0,
    );
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "v1\n");

    // `logs -f` streams through the SSH bridge: lines arrive while it keeps following.
    {
        use std::io::BufRead;
        let mut follow = sb
            .cmd(&["logs", "-d", "target", "-f", "-n", "5", "web"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn logs -f");
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = follow.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a streamed log line");
        assert!(!first.is_empty());
        assert!(
            follow.try_wait().unwrap().is_none(),
            "logs -f stopped following"
        );
        let _ = follow.kill();
        let _ = follow.wait();
    }

    // A new image whose only new layer is tiny: only that layer travels.
    sb.write(
        "dockhand.toml",
        &container_app(&images.tag("v2"), "deploy", &target),
    );
    let second = json(&sb, &["deploy", "-d", "target"], 0);
    let pushed = &second["remote"]["images"][0];
    assert_eq!(pushed["layers_sent"], 1, "{second:#}");
    let sent = pushed["bytes_sent"].as_u64().unwrap();
    let saved = pushed["saved_bytes"].as_u64().unwrap();
    assert!(
        sent * 100 < saved,
        "sent {sent} bytes of a {saved}-byte image"
    );
    assert_eq!(
        second["remote"]["project"]["files"], 1,
        "only dockhand.toml changed: {second:#}"
    );
    assert!(http_get(target.http_port(), "/version").contains("v2"));

    let back = json(&sb, &["rollback", "-d", "target"], 0);
    assert_eq!(back["succeeded"], true, "{back:#}");
    assert!(http_get(target.http_port(), "/version").contains("v1"));
    let events = run(&sb, &["events", "-d", "target", "-n", "50"], 0);
    let text = String::from_utf8_lossy(&events.stdout);
    assert!(
        text.contains("rollback") || text.contains("release 2"),
        "{text}"
    );

    // systemd holds the proxy's port (dockhand.socket): the agent restarted under load
    // (an upgrade, `systemctl restart`) refuses no connection and fails no request.
    assert_eq!(
        target.exec_ok("systemctl is-active dockhand.socket").trim(),
        "active"
    );
    assert!(target
        .exec_ok("cat /etc/systemd/system/dockhand.socket")
        .lines()
        .any(|l| l == "ListenStream=0.0.0.0:80"));
    let load = dockhand_test_support::Load::start(
        &format!("127.0.0.1:{}", target.http_port()),
        "app.test",
        "/version",
        2,
    );
    dockhand_test_support::wait_until(
        "answers before the restart",
        Duration::from_secs(30),
        || load.snapshot().ok > 20,
    );
    target.exec_ok("systemctl restart dockhand");
    let before = load.snapshot().ok;
    dockhand_test_support::wait_until("answers after the restart", Duration::from_secs(60), || {
        load.snapshot().ok > before + 20
    });
    let report = load.finish();
    let failed = report.failed_requests();
    assert!(
        failed.is_empty() && report.non_2xx.is_empty(),
        "requests failed across `systemctl restart dockhand`: {failed:?}, statuses {:?}",
        report.non_2xx
    );

    // The doctor, run on the server through SSH, sees what setup did.
    let out = run(&sb, &["doctor", "-d", "target", "--json"], 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor JSON");
    let verdict = |name: &str| -> Vec<String> {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == name)
            .map(|c| c["verdict"].as_str().unwrap().to_string())
            .collect()
    };
    for name in ["firewall", "ssh", "docker", "agent", "ports", "memory"] {
        assert_eq!(verdict(name), ["ok"], "{name}: {report:#}");
    }
    // app.test and api.test are no real names: the doctor says their DNS records are
    // missing (hence exit 1).
    assert_eq!(verdict("dns"), ["fail", "fail"], "{report:#}");

    // The secret reached the app's environment, and nothing else.
    let ps = target.exec_ok("ps -eo args");
    assert!(!ps.contains(SECRET), "a secret in a process listing");
    assert!(!text.contains(SECRET) && !String::from_utf8_lossy(&logs.stdout).contains(SECRET));
}

#[test]
fn setup_refuses_to_harden_ssh_until_the_deploy_user_logs_in_with_a_key() {
    let target = Target::start("lockout");
    let sb = sandbox_for(&target);
    // The deploy user exists with someone else's key: its login with ours fails.
    target.authorize("deploy", &target.other_public_key());
    let dest = format!("ssh://root@{}", target.alias());
    let out = run(&sb, &["setup", &dest, "--yes", "--no-project"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to disable password and root login"),
        "{err}"
    );
    assert!(err.contains("deploy@target"), "{err}");
    assert!(err.contains("authorized_keys"), "{err}");
    // sshd was not touched; the steps before the hardening are done.
    assert!(!target
        .exec("test -e /etc/ssh/sshd_config.d/00-dockhand.conf")
        .status
        .success());
    assert!(!target.exec_ok("sshd -T").contains("permitrootlogin no"));
    assert!(target.exec("getent passwd dockhand").status.success());
    // Root can still log in, as before.
    assert!(target.ssh("root", "true").status.success());

    // Once the key is right, the next run completes.
    target.authorize("deploy", &target.public_key());
    let done = json(&sb, &["setup", &dest, "--yes", "--no-project"], 0);
    assert!(done["changed"].as_u64().unwrap() >= 1, "{done:#}");
    assert!(target.exec_ok("sshd -T").contains("permitrootlogin no"));
    assert!(target.ssh("deploy", "sudo -n true").status.success());
    assert!(
        !target.ssh("root", "true").status.success(),
        "root still logs in"
    );
}

#[test]
fn setup_failures_say_what_and_leave_the_target_as_it_was() {
    let target = Target::start("errors");
    let sb = sandbox_for(&target);
    let nothing_changed = || {
        assert!(
            !target.exec("getent passwd dockhand").status.success(),
            "setup changed the server"
        );
    };

    // Unreachable: nothing listens on that port.
    let closed = dockhand_test_support::free_port();
    let out = run(
        &sb,
        &[
            "setup",
            &format!("ssh://root@127.0.0.1:{closed}"),
            "--yes",
            "--no-project",
        ],
        3,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Connection refused"),
        "{}",
        show(&out)
    );

    // A key the server does not know.
    let out = run(
        &sb,
        &["setup", "root@target-wrongkey", "--yes", "--no-project"],
        3,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Permission denied") && err.contains("ssh-add"),
        "{err}"
    );

    // A host key that differs from known_hosts.
    let out = run(
        &sb,
        &["setup", "root@target-mismatch", "--yes", "--no-project"],
        3,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not match") && err.contains("ssh-keygen -R"),
        "{err}"
    );

    // sudo that wants a password, with no terminal to type it.
    target.authorize("alice", &target.public_key());
    target.exec_ok("usermod -aG sudo alice && echo 'alice:correct-horse' | chpasswd");
    let out = run(
        &sb,
        &["setup", "ssh://alice@target", "--yes", "--no-project"],
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("alice needs a password for sudo") && err.contains("NOPASSWD"),
        "{err}"
    );
    nothing_changed();

    // No room for the binary.
    target.exec_ok("mount -t tmpfs -o size=1m tmpfs /usr/local/bin");
    let out = run(
        &sb,
        &["setup", "ssh://root@target", "--yes", "--no-project"],
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not enough disk space") && err.contains("/usr/local/bin"),
        "{err}"
    );
    nothing_changed();
    target.exec_ok("umount /usr/local/bin");

    // A system setup does not support.
    target.exec_ok("cp -L /etc/os-release /root/os-release && rm /etc/os-release && printf 'ID=fedora\\nVERSION_ID=40\\nPRETTY_NAME=\"Fedora Linux 40\"\\n' > /etc/os-release");
    let out = run(
        &sb,
        &["setup", "ssh://root@target", "--yes", "--no-project"],
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Fedora Linux 40 is not supported") && err.contains("Debian 12"),
        "{err}"
    );
    nothing_changed();
}

#[test]
fn remote_commands_name_their_destination_problems() {
    let sb = crate::sandbox();
    sb.write(
        "dockhand.toml",
        "app = \"x\"\n[services.web]\ncommand = \"true\"\n[destinations.production]\nhost = \"ssh://deploy@203.0.113.10\"\n",
    );
    let out = run(&sb, &["status", "-d", "staging"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no destination `staging`") && err.contains("production"),
        "{err}"
    );
    let out = run(&sb, &["status", "--host", "https://example.org"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only ssh://"),
        "{}",
        show(&out)
    );
    sb.write(
        "dockhand.toml",
        "app = \"x\"\n[services.web]\ncommand = \"true\"\n[destinations.production]\nhots = \"ssh://deploy@h\"\n",
    );
    let out = run(&sb, &["status", "-d", "production"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dockhand.toml:5:1") && err.contains("did you mean `host`?"),
        "{err}"
    );
}

/// The README says which distributions the binary runs on: glibc 2.34 or newer (Debian 12
/// and 13, Ubuntu 22.04 and 24.04). The binary asks for no newer glibc symbol than Ubuntu
/// 22.04's 2.35 has, and it runs in the Debian 12 root file system of the targets.
#[test]
fn the_binary_runs_on_the_oldest_distributions_the_readme_names() {
    let bin = env!("CARGO_BIN_EXE_dockhand");
    let out = std::process::Command::new("objdump")
        .args(["-T", bin])
        .output()
        .expect("objdump is missing: apt-get install binutils");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let newest = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("no GLIBC symbol versions");
    assert!(
        newest <= (2, 35),
        "the binary needs glibc {}.{}, newer than Ubuntu 22.04's 2.35",
        newest.0,
        newest.1
    );

    dockhand_test_support::target::ensure_target_image();
    let out = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{bin}:/usr/local/bin/dockhand:ro"),
        dockhand_test_support::target::TARGET_IMAGE,
        "/usr/local/bin/dockhand",
        "--version",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("dockhand "));
}

/// A web container and a PostgreSQL database backed up to a directory of the project (the
/// same on both servers: paths relative to the project), with the proxy on a free loopback
/// port so the old (this machine) and the new server can run it side by side.
fn moving_app(app: &str, recipient: &str) -> String {
    use dockhand_test_support::docker::{POSTGRES_IMAGE, TESTAPP_SHELL_IMAGE};
    format!(
        r#"app = "{app}"

[proxy]
listen = "127.0.0.1:0"

[databases.db]
engine = "postgres"
image = "{POSTGRES_IMAGE}"

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
env = {{ DATABASE_URL = "${{databases.db.url}}" }}
health = {{ path = "/health", interval = "200ms", timeout = "5s", deploy_timeout = "60s" }}
route = {{ host = "moved.test" }}
depends_on = ["db"]
stop_timeout = "5s"

[backups]
recipients = ["{recipient}"]
keep = {{ last = 5 }}

[backups.targets.local]
dir = ".dockhand/backups"
"#
    )
}

/// `psql` in the app's database container: `on` runs a shell line somewhere (this machine,
/// or the target).
fn moved_rows(app: &str, run_sh: impl Fn(&str) -> String) -> String {
    run_sh(&format!(
        "docker exec -u postgres {app}-db psql -U {app} -d {app} -tA -c \"SELECT count(*) || ':' || md5(string_agg(id || '/' || name, ',' ORDER BY id)) FROM items\""
    ))
    .trim()
    .to_string()
}

fn local_sh(script: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn move_carries_an_app_with_its_postgres_data_to_a_new_server_and_leaves_the_old_one_serving() {
    use dockhand_test_support::docker::AppCleanup;
    ensure_test_images();
    let target = Target::start("move");
    let app = unique_app("mv");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox_for(&target);
    let key = sb.path().join("backup.key");
    let made = json(
        &sb,
        &["backup", "keygen", "--out", key.to_str().unwrap()],
        0,
    );
    let recipient = made["recipient"].as_str().unwrap().to_string();
    let secrets = sb.write(
        ".dockhand/secrets.env",
        "DB_PASSWORD=moving-password-7373\n",
    );
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    sb.write("dockhand.toml", &moving_app(&app, &recipient));
    let _agent = sb.start_agent();
    let psql = |sql: &str| {
        local_sh(&format!(
            "docker exec -u postgres {app}-db psql -U {app} -d {app} -tA -c \"{sql}\""
        ))
    };
    psql("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)");
    psql("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 700) g");
    let seeded = moved_rows(&app, local_sh);
    assert!(seeded.starts_with("700:"), "{seeded}");
    let to = format!("ssh://root@{}", target.alias());
    let id = key.to_str().unwrap();

    // The dry run shows the steps and the new server's plan, and changes nothing anywhere.
    let plan = json(
        &sb,
        &["move", "--to", &to, "--identity", id, "--dry-run"],
        0,
    );
    let steps: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "setup",
            "backup",
            "transfer",
            "restore-app",
            "deploy",
            "restore",
            "check",
            "dns"
        ],
        "{plan:#}"
    );
    assert!(
        plan["setup"]["plan"]["steps"].as_array().unwrap().len() > 3,
        "{plan:#}"
    );
    assert!(!target.exec("getent passwd dockhand").status.success());
    let (_, list) = sb.json(&["backup", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 0, "a dry run took a backup");

    // A new server that refuses the key: exit 3, the old server as it was.
    let out = run(
        &sb,
        &[
            "move",
            "--to",
            "ssh://root@target-wrongkey",
            "--identity",
            id,
            "--yes",
        ],
        3,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keeps serving"),
        "{}",
        show(&out)
    );
    let (_, list) = sb.json(&["backup", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");

    // A new server setup refuses (an unsupported system): exit 1, nothing taken or changed.
    target.exec_ok(
        "cp /etc/os-release /root/os-release && sed -i 's/^ID=.*/ID=plan9/' /etc/os-release",
    );
    let out = run(&sb, &["move", "--to", &to, "--identity", id, "--yes"], 1);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("refusing") && said.contains("keeps serving"),
        "{}",
        show(&out)
    );
    assert!(!target.exec("getent passwd dockhand").status.success());
    let (_, list) = sb.json(&["backup", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
    target.exec_ok("cp /root/os-release /etc/os-release");

    // An identity that is not the recipients': refused before anything.
    let other = sb.path().join("other.key");
    json(
        &sb,
        &["backup", "keygen", "--out", other.to_str().unwrap()],
        0,
    );
    let out = run(
        &sb,
        &[
            "move",
            "--to",
            &to,
            "--identity",
            other.to_str().unwrap(),
            "--yes",
        ],
        2,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("decrypts none"),
        "{}",
        show(&out)
    );

    // The move.
    let moved = json(&sb, &["move", "--to", &to, "--identity", id, "--yes"], 0);
    assert_eq!(moved["app"], app.as_str(), "{moved:#}");
    assert_eq!(
        moved["to"],
        format!("ssh://deploy@{}", target.alias()),
        "{moved:#}"
    );
    assert_eq!(moved["deploy"]["succeeded"], true, "{moved:#}");
    assert_eq!(moved["dns"][0]["host"], "moved.test", "{moved:#}");
    assert_eq!(moved["dns"][0]["value"], "127.0.0.1", "{moved:#}");
    assert_eq!(moved["old_server"]["serving"], true, "{moved:#}");
    let backup = moved["backup"].as_str().unwrap().to_string();

    // The same rows on the new server; the backup is in its own target too; no identity or
    // staging copy left behind; the secrets file 0600.
    let there = moved_rows(&app, |s| target.exec_ok(s));
    assert_eq!(there, seeded);
    assert!(target
        .exec(&format!(
            "test -f /srv/dockhand/.dockhand/backups/{app}/{backup}/manifest.json"
        ))
        .status
        .success());
    assert!(!target
        .exec("test -e /var/lib/dockhand/move")
        .status
        .success());
    assert_eq!(
        target
            .exec_ok("stat -c '%a %U' /srv/dockhand/.dockhand/secrets.env")
            .trim(),
        "600 dockhand"
    );
    let status = json(
        &sb,
        &["status", "--host", &format!("deploy@{}", target.alias())],
        0,
    );
    assert_eq!(status["app"], app.as_str(), "{status:#}");
    assert!(
        status["services"][0]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["health"] == "healthy"),
        "{status:#}"
    );

    // The old server still serves, its data as it was.
    let (code, here) = sb.json(&["status"]);
    assert_eq!(code, Some(0), "{here}");
    assert!(here["current_release"]["id"].as_i64().is_some(), "{here}");
    assert_eq!(moved_rows(&app, local_sh), seeded);
    assert!(!moved.to_string().contains("moving-password-7373"));
    let ps = target.exec_ok("ps -eo args");
    assert!(
        !ps.contains("AGE-SECRET-KEY"),
        "the identity in a process listing"
    );

    // Another app may not move onto a server that serves this one.
    let other = crate::sandbox().with_env(
        "DOCKHAND_SSH_CONFIG",
        target.ssh_config().to_str().expect("utf-8 path"),
    );
    let other_key = other.path().join("backup.key");
    let made = json(
        &other,
        &["backup", "keygen", "--out", other_key.to_str().unwrap()],
        0,
    );
    other.write(
        "dockhand.toml",
        &format!(
            "{}\n[backups]\nrecipients = [\"{}\"]\n\n[backups.targets.local]\ndir = \".dockhand/backups\"\n",
            crate::testapp_toml("VERSION = \"v1\"", 1, "20s")
                .replace("app = \"it\"", "app = \"squatter\""),
            made["recipient"].as_str().unwrap()
        ),
    );
    let _other_agent = other.start_agent();
    let out = run(
        &other,
        &[
            "move",
            "--to",
            &format!("ssh://deploy@{}", target.alias()),
            "--identity",
            other_key.to_str().unwrap(),
            "--yes",
        ],
        1,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("already serves the app `{app}`")),
        "{}",
        show(&out)
    );
    assert_eq!(moved_rows(&app, |s| target.exec_ok(s)), seeded);
}

#[test]
fn move_from_one_server_to_another_over_ssh_carries_the_data_and_the_old_one_keeps_serving() {
    use dockhand_test_support::docker::AppCleanup;
    ensure_test_images();
    let old = Target::start_as("moveold", "old");
    let new = Target::start_as("movenew", "new");
    let app = unique_app("mvr");
    let _cleanup = AppCleanup::new(&app);
    let sb = crate::sandbox();
    let config = Target::ssh_config_of(&[&old, &new], &sb.path().join("ssh_config"));
    let sb = sb.with_env("DOCKHAND_SSH_CONFIG", config.to_str().unwrap());
    let key = sb.path().join("backup.key");
    let made = json(
        &sb,
        &["backup", "keygen", "--out", key.to_str().unwrap()],
        0,
    );
    let recipient = made["recipient"].as_str().unwrap().to_string();
    let secrets = sb.write(".dockhand/secrets.env", "DB_PASSWORD=remote-move-pw-8484\n");
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    sb.write(
        "dockhand.toml",
        &format!(
            "{}\n[destinations.old]\nhost = \"ssh://deploy@old\"\n",
            moving_app(&app, &recipient)
        ),
    );

    // The app runs on the old server, with rows in its database.
    json(&sb, &["setup", "ssh://root@old", "--yes"], 0);
    let first = json(&sb, &["deploy", "-d", "old"], 0);
    assert_eq!(first["succeeded"], true, "{first:#}");
    let psql = |t: &Target, sql: &str| {
        t.exec_ok(&format!(
            "docker exec -u postgres {app}-db psql -U {app} -d {app} -tA -c \"{sql}\""
        ))
    };
    psql(
        &old,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
    );
    psql(
        &old,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 300) g",
    );
    let seeded = moved_rows(&app, |s| old.exec_ok(s));
    assert!(seeded.starts_with("300:"), "{seeded}");

    // From the old server (-d old) to the new one.
    let moved = json(
        &sb,
        &[
            "move",
            "-d",
            "old",
            "--to",
            "ssh://root@new",
            "--identity",
            key.to_str().unwrap(),
            "--yes",
        ],
        0,
    );
    assert_eq!(moved["from"], "ssh://deploy@old", "{moved:#}");
    assert_eq!(moved["to"], "ssh://deploy@new", "{moved:#}");
    assert_eq!(moved_rows(&app, |s| new.exec_ok(s)), seeded);

    // The old server still serves its release and its data; the backup stays in its target.
    let status = json(&sb, &["status", "-d", "old"], 0);
    assert_eq!(status["current_release"]["id"], 1, "{status:#}");
    assert_eq!(moved_rows(&app, |s| old.exec_ok(s)), seeded);
    let backup = moved["backup"].as_str().unwrap();
    old.exec_ok(&format!(
        "test -f /srv/dockhand/.dockhand/backups/{app}/{backup}/manifest.json"
    ));
    new.exec_ok(&format!(
        "test -f /srv/dockhand/.dockhand/backups/{app}/{backup}/manifest.json"
    ));
}
