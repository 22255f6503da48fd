//! The command line itself: `check`, exit codes, `--json`, help and completions.

use crate::{expect, sandbox, show};

#[test]
fn check_reports_file_line_column_and_suggestion_for_a_near_miss_key() {
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        "app = \"shop\"\n\n[services.api]\ncommand = \"true\"\nprot = 8080\n",
    );
    let out = expect(&sb, &["check"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dockhand.toml:5:1"), "{err}");
    assert!(err.contains("`port`"), "{err}");

    let (code, json) = sb.json(&["check"]);
    assert_eq!(code, Some(2));
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"][0]["line"], 5);
    assert_eq!(json["errors"][0]["column"], 1);
}

#[test]
fn check_accepts_a_valid_file_and_lists_warnings() {
    let sb = sandbox();
    sb.write(
        "dockhand.toml",
        "app = \"shop\"\n\n[services.api]\ncommand = \"true\"\nport = 8080\nroute = { path = \"/\" }\n",
    );
    let (code, json) = sb.json(&["check"]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["valid"], true);
    let warnings = json["warnings"].to_string();
    assert!(warnings.contains("health"), "{warnings}");
    assert!(warnings.contains("host"), "{warnings}");
}

#[test]
fn check_of_a_missing_file_says_which_file() {
    let sb = sandbox();
    let out = expect(&sb, &["check", "-f", "nope.toml"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope.toml"),
        "{}",
        show(&out)
    );
}

#[test]
fn client_commands_without_an_agent_exit_3_with_a_hint() {
    let sb = sandbox();
    for cmd in [
        &["status"][..],
        &["deploy"],
        &["logs"],
        &["releases"],
        &["rollback"],
    ] {
        let out = sb.run(cmd);
        assert_eq!(out.status.code(), Some(3), "{cmd:?}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("dockhand up"), "{cmd:?}: {err}");
    }
    let (code, json) = sb.json(&["status"]);
    assert_eq!(code, Some(3));
    assert_eq!(json["error"]["code"], "unreachable");
}

#[test]
fn help_explains_and_completions_are_generated() {
    let sb = sandbox();
    let out = sb.run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "up", "deploy", "rollback", "status", "logs", "exec", "check", "--json",
    ] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
    let out = sb.run(&["completions", "bash"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("rollback"));
    let out = sb.run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}
