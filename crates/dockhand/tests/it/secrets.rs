//! Secrets reach the service's environment and nothing else: not the process arguments, the
//! API answers, the events, the agent's own log, or the state database.

use crate::{expect, sandbox, show, testapp_toml};

const SECRET: &str = "s3cr3t-Zebra-42";

#[test]
fn a_secret_reaches_the_process_env_and_nothing_else() {
    let sb = sandbox();
    let secrets = sb.write(".dockhand/secrets.env", &format!("API_TOKEN={SECRET}\n"));
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let toml = testapp_toml(
        "VERSION = \"v1\", TOKEN = \"${secret.API_TOKEN}\"",
        1,
        "20s",
    ) + "hooks = { pre_deploy = \"echo token is $TOKEN\" }\n";
    sb.write("dockhand.toml", &toml);
    let mut agent = sb.start_agent();

    // The process has it in its environment.
    expect(
        &sb,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "test \"$TOKEN\" = s3cr3t-Zebra-42",
        ],
        0,
    );
    let (_, status) = sb.json(&["status"]);
    let pid = status["services"][0]["instances"][0]["pid"]
        .as_u64()
        .unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(String::from_utf8_lossy(&environ).contains(SECRET));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(SECRET));

    // A failing deploy whose hook prints it: the report redacts it.
    sb.write(
        "dockhand.toml",
        &(testapp_toml(
            "VERSION = \"v2\", TOKEN = \"${secret.API_TOKEN}\"",
            1,
            "20s",
        ) + "hooks = { pre_deploy = \"echo token is $TOKEN; exit 1\" }\n"),
    );
    let out = expect(&sb, &["deploy"], 1);
    let text = show(&out);
    assert!(text.contains("token is ******"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    let (_, report) = sb.json(&["deploy"]);
    assert!(!report.to_string().contains(SECRET), "{report}");

    for args in [
        &["status"][..],
        &["releases"],
        &["events"],
        &["logs", "-n", "1000"],
    ] {
        let out = sb.run(&[args, &["--json"]].concat());
        let text = show(&out);
        assert!(!text.contains(SECRET), "{args:?} leaks the secret: {text}");
    }
    assert_eq!(agent.terminate(), Some(0));
    assert!(!agent.output().contains(SECRET), "{}", agent.output());
    let db = std::fs::read(sb.state_dir().join("state.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains(SECRET),
        "the state database holds the secret"
    );
    assert_eq!(crate::mode_of(&sb.state_dir().join("state.db")), 0o600);
}

#[test]
fn a_secrets_file_readable_by_others_is_refused() {
    let sb = sandbox();
    let secrets = sb.write(".dockhand/secrets.env", &format!("API_TOKEN={SECRET}\n"));
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    sb.write(
        "dockhand.toml",
        &testapp_toml("TOKEN = \"${secret.API_TOKEN}\"", 1, "20s"),
    );
    let out = expect(&sb, &["check"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
}

#[test]
fn the_canary_secret_reaches_the_app_and_the_leak_check_finds_any_copy() {
    let sb = sandbox();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    assert_eq!(
        crate::mode_of(&sb.state_dir().join("secrets.env")),
        0o600,
        "the canary's secrets file"
    );
    let _agent = sb.start_agent();
    let (_, status) = sb.json(&["status"]);
    let pid = status["services"][0]["instances"][0]["pid"]
        .as_u64()
        .unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(
        String::from_utf8_lossy(&environ).contains(sb.canary()),
        "the app has the canary in its environment"
    );
    assert_eq!(sb.canary_leaks(), Vec::<String>::new());
    // A copy anywhere in the project is found (and then removed, so the test passes).
    let leak = sb.write(".dockhand/logs/leak.log", &format!("x={}\n", sb.canary()));
    assert_eq!(sb.canary_leaks(), vec![leak.display().to_string()]);
    std::fs::remove_file(&leak).unwrap();
    sb.run(&["secrets", "get", dockhand_test_support::CANARY]);
    assert_eq!(sb.canary_leaks(), vec!["command output".to_string()]);
    assert!(String::from_utf8_lossy(&sb.take_printed()).contains(sb.canary()));
}
