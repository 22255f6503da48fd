//! `[secrets]` from password managers: a real `pass` store encrypted to a throwaway GnuPG key,
//! and 1Password's `op` and Bitwarden's `bw` replayed by stand-in executables that answer as
//! their documented CLIs do (`op read --no-newline REF`, `bw get password ITEM`; no real
//! peer can run here). The value reaches the service's environment, never the process
//! arguments, the events or the agent's answers; a tool that cannot answer stops the deploy
//! with the secret named.

use std::path::Path;
use std::process::Command;

use crate::{expect, sandbox, show, testapp_toml};

const DB: &str = "pass-Value-9931";
const STRIPE: &str = "op-Value-5520";
const SMTP: &str = "bw-Value-7714";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the program is installed");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A password store in `dir` encrypted to a new key without passphrase; (GNUPGHOME, store).
fn pass_store(dir: &Path) -> (String, String) {
    assert!(
        which("pass") && which("gpg"),
        "pass or gpg is not installed: apt-get install -y pass"
    );
    let gnupg = dir.join("gnupg");
    let store = dir.join("store");
    std::fs::create_dir_all(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let env = |c: &mut Command| {
        c.env("GNUPGHOME", &gnupg).env("PASSWORD_STORE_DIR", &store);
    };
    let mut gen = Command::new("gpg");
    env(&mut gen);
    run(gen.args([
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-gen-key",
        "Dockhand Test <test@example.invalid>",
        "default",
        "default",
        "never",
    ]));
    let mut list = Command::new("gpg");
    env(&mut list);
    let keys = run(list.args(["--list-keys", "--with-colons"]));
    let fpr = keys
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').find(|f| !f.is_empty()))
        .expect("a fingerprint")
        .to_string();
    let mut init = Command::new("pass");
    env(&mut init);
    run(init.args(["init", &fpr]));
    let mut insert = Command::new("pass");
    env(&mut insert);
    let mut child = insert
        .args(["insert", "-m", "shop/db"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{DB}\nuser: shop\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    (gnupg.display().to_string(), store.display().to_string())
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Stand-ins for `op` and `bw` in `bin`: each checks its arguments and its session variable
/// as the real CLI needs them, and prints the value as the real one does.
fn fake_tools(bin: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    let op = format!(
        r#"#!/bin/sh
# op read --no-newline op://vault/item/field, with a service account token.
[ -n "$OP_SERVICE_ACCOUNT_TOKEN" ] || {{ echo '[ERROR] no account found' >&2; exit 1; }}
[ "$1 $2 $3" = "read --no-newline op://Production/Stripe/credential" ] || {{ echo "[ERROR] unexpected: $*" >&2; exit 1; }}
printf %s '{STRIPE}'
"#
    );
    let bw = format!(
        r#"#!/bin/sh
# bw get password ITEM, with an unlocked vault's session.
[ -n "$BW_SESSION" ] || {{ echo 'You are not logged in.' >&2; exit 1; }}
[ "$1 $2 $3 $4" = "get password smtp-login --nointeraction" ] || {{ echo "unexpected: $*" >&2; exit 1; }}
printf %s '{SMTP}'
"#
    );
    for (name, text) in [("op", op), ("bw", bw)] {
        let path = bin.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
}

#[test]
fn secrets_from_pass_op_and_bw_reach_the_service_and_nothing_else() {
    let sb = sandbox();
    let tools = tempfile::tempdir().unwrap();
    let (gnupg, store) = pass_store(tools.path());
    let bin = tools.path().join("bin");
    fake_tools(&bin);
    let toml = testapp_toml(
        "DB = \"${secret.DB_PASSWORD}\", STRIPE = \"${secret.STRIPE_KEY}\", SMTP = \"${secret.SMTP_PASSWORD}\"",
        1,
        "20s",
    ) + r#"
[secrets]
DB_PASSWORD = { pass = "shop/db" }
STRIPE_KEY = { op = "op://Production/Stripe/credential" }
SMTP_PASSWORD = { bw = "smtp-login" }
"#;
    sb.write("dockhand.toml", &toml);
    // No secrets file at all: check runs no password manager and finds nothing missing.
    expect(&sb, &["check"], 0);

    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut agent = sb.start_agent_with_env(&[
        ("GNUPGHOME", &gnupg),
        ("PASSWORD_STORE_DIR", &store),
        ("PATH", &path),
        ("OP_SERVICE_ACCOUNT_TOKEN", "ops_test"),
        ("BW_SESSION", "session-test"),
    ]);
    expect(
        &sb,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            &format!(
                "test \"$DB\" = {DB} && test \"$STRIPE\" = {STRIPE} && test \"$SMTP\" = {SMTP}"
            ),
        ],
        0,
    );
    let (_, status) = sb.json(&["status"]);
    let pid = status["services"][0]["instances"][0]["pid"]
        .as_u64()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    for value in [DB, STRIPE, SMTP] {
        assert!(!String::from_utf8_lossy(&cmdline).contains(value));
    }
    for args in [&["status"][..], &["releases"], &["events"]] {
        let text = show(&sb.run(&[args, &["--json"]].concat()));
        for value in [DB, STRIPE, SMTP] {
            assert!(!text.contains(value), "{args:?} leaks a secret: {text}");
        }
    }
    assert_eq!(agent.terminate(), Some(0));
    for value in [DB, STRIPE, SMTP] {
        assert!(!agent.output().contains(value), "{}", agent.output());
    }

    // Without the Bitwarden session the deploy stops before anything starts, naming the secret.
    let mut agent = sb.start_agent_with_env(&[
        ("GNUPGHOME", &gnupg),
        ("PASSWORD_STORE_DIR", &store),
        ("PATH", &path),
        ("OP_SERVICE_ACCOUNT_TOKEN", "ops_test"),
    ]);
    let out = sb.run(&["deploy"]);
    assert!(!out.status.success());
    let text = show(&out);
    assert!(text.contains("SMTP_PASSWORD"), "{text}");
    assert!(text.contains("BW_SESSION"), "{text}");
    assert_eq!(agent.terminate(), Some(0));
}
