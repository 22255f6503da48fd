//! `dockhand secrets set|get|list|rm|edit` on a project: values from stdin only, the file
//! kept 0600, other lines kept, and a broken edit refused.

use std::io::Write;
use std::process::Stdio;

use crate::{expect, mode_of, sandbox, show};

fn set(sb: &dockhand_test_support::Sandbox, name: &str, value: &str) -> std::process::Output {
    let mut child = sb
        .cmd(&["secrets", "set", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn secrets_are_set_from_stdin_listed_by_name_and_kept_0600() {
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        "app = \"it\"\n[services.web]\ncommand = \"true\"\n",
    );
    let out = set(&sb, "DB_PASSWORD", "s3cret'with\"quotes\n");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let file = sb.path().join(".dockhand/secrets.env");
    assert_eq!(mode_of(&file), 0o600);
    assert_eq!(set(&sb, "API_KEY", "k1").status.code(), Some(0));
    assert_eq!(set(&sb, "API_KEY", "k2").status.code(), Some(0));

    let (code, list) = sb.json(&["secrets", "list"]);
    assert_eq!(code, Some(0));
    assert_eq!(list["names"], serde_json::json!(["API_KEY", "DB_PASSWORD"]));
    assert!(
        !list.to_string().contains("k2"),
        "list shows no value: {list}"
    );
    let out = expect(&sb, &["secrets", "get", "DB_PASSWORD"], 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "s3cret'with\"quotes\n"
    );
    let out = expect(&sb, &["secrets", "get", "API_KEY"], 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "k2\n");

    // A value on the command line is refused, and nothing is written.
    let before = std::fs::read_to_string(&file).unwrap();
    let out = expect(&sb, &["secrets", "set", "TOKEN=abc"], 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("never goes on the command line"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    expect(&sb, &["secrets", "rm", "API_KEY"], 0);
    expect(&sb, &["secrets", "get", "API_KEY"], 5);
    expect(&sb, &["secrets", "rm", "API_KEY"], 5);

    // An edit that leaves a malformed file is refused; the file stays as it was.
    let before = std::fs::read_to_string(&file).unwrap();
    let out = sb
        .cmd(&["secrets", "edit"])
        .env("EDITOR", "sh -c 'echo \"BROKEN LINE\" >> \"$0\"'")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    let out = sb
        .cmd(&["secrets", "edit"])
        .env("EDITOR", "sh -c 'echo \"NEW_ONE=x\" >> \"$0\"'")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(mode_of(&file), 0o600);
    let out = expect(&sb, &["secrets", "get", "NEW_ONE"], 0);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n");
    // No scratch copy is left behind.
    let left: Vec<_> = std::fs::read_dir(sb.path().join(".dockhand"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["secrets.env".to_string()]);
}

#[test]
fn a_readable_env_with_secrets_is_refused_and_a_tracked_one_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        "app = \"it\"\n[services.web]\ncommand = \"true\"\n",
    );
    let env = sb.write(".env", "LOG_LEVEL=info\nDB_PASSWORD=hunter2-real\n");
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, report) = sb.json(&["check"]);
    assert_eq!(code, Some(2), "{report}");
    let text = report.to_string();
    assert!(
        text.contains("DB_PASSWORD") && text.contains("chmod 600"),
        "{report}"
    );
    assert!(!text.contains("hunter2"), "a value leaked: {report}");

    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
    crate::revisions::git(sb.path(), &["init", "-q"]);
    crate::revisions::git(sb.path(), &["add", ".env", "dockhand.toml"]);
    let (code, report) = sb.json(&["check"]);
    assert_eq!(code, Some(0), "{report}");
    let warned = report["warnings"].as_array().unwrap().iter().any(|w| {
        w["message"]
            .as_str()
            .unwrap_or_default()
            .contains("tracked by git")
    });
    assert!(warned, "{report}");
}
