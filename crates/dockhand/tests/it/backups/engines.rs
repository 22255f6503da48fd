//! Container sources on the real Docker Engine: a Redis database and a named volume round trip
//! (seed → backup → change → restore → the same keys and files), and the disaster-recovery
//! path — the app's backup on a real S3-compatible server, the server lost (containers and
//! volumes gone), and `dockhand backup restore --app` in a fresh directory bringing back the
//! configuration, the secrets and the data, deployed and serving.

use std::time::Duration;

use dockhand_test_support::docker::{
    cleanup_app, docker, docker_ok, ensure_test_images, unique_app, AppCleanup, BUSYBOX_IMAGE,
    REDIS_IMAGE, TESTAPP_SHELL_IMAGE,
};
use dockhand_test_support::s3::{S3Server, ACCESS_KEY, SECRET_KEY};

use super::postgres::{config, psql, rows};
use super::{events, keygen, secrets};
use crate::crash::http_get;
use crate::{expect, sandbox, show};

fn redis(app: &str, args: &[&str]) -> String {
    let container = format!("{app}-cache");
    let mut all = vec!["exec", container.as_str(), "redis-cli"];
    all.extend_from_slice(args);
    docker_ok(&all).trim().to_string()
}

/// Runs Redis commands, one a line, through one `redis-cli`.
fn redis_batch(app: &str, commands: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("docker")
        .args(["exec", "-i", &format!("{app}-cache"), "redis-cli"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(commands.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// Every key of db 0 with its value, sorted.
fn keys(app: &str) -> String {
    let mut names: Vec<String> = redis(app, &["--raw", "KEYS", "*"])
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    let mut args = vec!["--raw", "MGET"];
    args.extend(names.iter().map(String::as_str));
    let values = redis(app, &args);
    names
        .iter()
        .zip(values.lines())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn web_sh(app: &str, script: &str) -> String {
    let id = docker_ok(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=dockhand.app={app}"),
        "--filter",
        "label=dockhand.service=web",
    ]);
    let id = id.lines().next().expect("a web container").to_string();
    docker_ok(&["exec", "-u", "0", &id, "sh", "-c", script])
}

#[test]
fn a_redis_database_and_a_named_volume_restore_key_by_key_and_file_by_file() {
    ensure_test_images();
    let app = unique_app("bkrv");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    sb.write(
        "dockhand.toml",
        &format!(
            r#"app = "{app}"

[proxy]
listen = "127.0.0.1:0"

[databases.cache]
engine = "redis"
image = "{REDIS_IMAGE}"

[services.web]
image = "{TESTAPP_SHELL_IMAGE}"
port = 8080
health = {{ path = "/health", interval = "200ms", timeout = "5s", deploy_timeout = "60s" }}
route = {{ host = "app.test" }}
volumes = ["media:/data/media"]
depends_on = ["cache"]
stop_timeout = "5s"

[backups]
recipients = ["{recipient}"]
identity = "{key}"
helper_image = "{BUSYBOX_IMAGE}"
exclude = ["app"]

[backups.targets.local]
dir = "backups"
"#,
            key = key.display()
        ),
    );
    let _agent = sb.start_agent();
    let seed: String = (0..200)
        .map(|i| format!("SET key:{i} \"value {i}\"\n"))
        .collect();
    redis_batch(&app, &seed);
    web_sh(
        &app,
        "mkdir -p /data/media/photos && echo one > /data/media/a.txt && echo two > /data/media/photos/b.jpg",
    );
    let seeded = keys(&app);
    assert_eq!(seeded.matches("key:").count(), 200);

    let (code, taken) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{taken}");
    let id = taken["id"].as_str().unwrap().to_string();
    let (_, shown) = sb.json(&["backup", "show", &id]);
    let items = shown["manifest"]["items"].as_array().unwrap().clone();
    let cache = items.iter().find(|i| i["kind"] == "redis").unwrap();
    assert_eq!(cache["counts"]["db0"], 200, "{cache}");
    let media = items.iter().find(|i| i["kind"] == "volume").unwrap();
    assert_eq!(media["counts"]["files"], 2, "{media}");
    let (code, drill) = sb.json(&["backup", "verify", &id]);
    assert_eq!(code, Some(0), "{drill}");
    assert!(
        drill["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["source"] == "cache" && r["message"].as_str().unwrap().contains("200 key")),
        "{drill}"
    );

    // Change both, then restore.
    redis(&app, &["DEL", "key:1", "key:2"]);
    redis(&app, &["SET", "key:new", "after the backup"]);
    web_sh(
        &app,
        "echo changed > /data/media/a.txt && rm /data/media/photos/b.jpg && echo new > /data/media/c.txt",
    );
    assert_ne!(keys(&app), seeded);
    let out = expect(&sb, &["backup", "restore", &id], 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored"),
        "{}",
        show(&out)
    );
    assert_eq!(keys(&app), seeded);
    let files = web_sh(
        &app,
        "cd /data/media && find . -type f | sort && cat a.txt photos/b.jpg",
    );
    assert_eq!(files, "./a.txt\n./photos/b.jpg\none\ntwo");
    // The app came back through its health gate and serves.
    let addr = sb.proxy_addr();
    assert_eq!(http_get(&addr, "app.test", "/health"), "ok");
}

#[test]
fn restore_app_on_a_fresh_server_brings_back_config_secrets_and_data_and_serves() {
    ensure_test_images();
    let s3 = S3Server::start();
    s3.create_bucket("dockhand-dr");
    let app = unique_app("bkdr");
    let _cleanup = AppCleanup::new(&app);
    let old = sandbox();
    let (key, recipient) = keygen(&old);
    secrets(
        &old,
        &format!("DB_PASSWORD=dr-password-5151\nS3_KEY_ID={ACCESS_KEY}\nS3_SECRET={SECRET_KEY}\n"),
    );
    old.write("files/a.txt", "kept\n");
    let target = format!(
        r#"[backups.targets.offsite]
s3 = "s3://dockhand-dr/prod"
endpoint = "{}"
access_key_id = "${{secret.S3_KEY_ID}}"
secret_access_key = "${{secret.S3_SECRET}}"
"#,
        s3.endpoint()
    );
    old.write("dockhand.toml", &config(&app, &old, &recipient, &target));
    let mut agent = old.start_agent();
    psql(
        &app,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)",
    );
    psql(
        &app,
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g",
    );
    let seeded = rows(&app);
    let (code, taken) = old.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{taken}");
    let id = taken["id"].as_str().unwrap().to_string();

    // The server is lost: the agent, its containers, the database's volume.
    agent.terminate();
    cleanup_app(&app);
    assert!(docker(&["volume", "inspect", &format!("{app}_db")])
        .stdout
        .starts_with(b"[]"));

    // A fresh server: an empty directory, the identity, and the target's address.
    let new = sandbox();
    let identity = new.path().join("restored.key");
    std::fs::copy(&key, &identity).unwrap();
    let out = new
        .cmd(&[
            "backup",
            "restore",
            "--app",
            "--from",
            "s3://dockhand-dr/prod",
            "--endpoint",
            &s3.endpoint(),
            "--identity",
            identity.to_str().unwrap(),
            "--json",
        ])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap();
    let done: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)));
    let pid = done["agent_pid"].as_u64().unwrap_or(0) as i32;
    let _stop = StopAgent(pid);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(done["id"], id.as_str(), "{done}");
    assert!(pid > 0, "{done}");
    let restored = new.path().join(".dockhand/secrets.env");
    assert_eq!(
        std::fs::metadata(&restored).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&restored)
        .unwrap()
        .contains("DB_PASSWORD=dr-password-5151"));
    assert!(!out.stdout.windows(16).any(|w| w == b"dr-password-5151"));

    // The same data, served by the restored app.
    assert_eq!(rows(&app), seeded);
    assert_eq!(
        std::fs::read_to_string(new.path().join("files/a.txt")).unwrap(),
        "kept\n"
    );
    let addr = new.proxy_addr();
    assert_eq!(http_get(&addr, "app.test", "/health"), "ok");
    assert!(events(&new).contains(&format!("from backup {id}")));
}

use std::os::unix::fs::PermissionsExt;

/// Stops the agent `restore --app` started in the background (SIGTERM, then waits).
struct StopAgent(i32);

impl Drop for StopAgent {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if self.0 <= 0 {
            return;
        }
        let pid = Pid::from_raw(self.0);
        let _ = kill(pid, Signal::SIGTERM);
        // Gone, or a zombie nobody reaped yet.
        let gone = || {
            kill(pid, None).is_err()
                || std::fs::read_to_string(format!("/proc/{}/stat", self.0))
                    .map(|s| {
                        s.rsplit(')')
                            .next()
                            .unwrap_or("")
                            .trim_start()
                            .starts_with('Z')
                    })
                    .unwrap_or(true)
        };
        let start = std::time::Instant::now();
        while !gone() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !gone() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}
