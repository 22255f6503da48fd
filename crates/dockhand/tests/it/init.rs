//! `dockhand init` on projects of each kind it detects: what it writes passes `check`, secrets
//! from `.env.example` land in a 0600 secrets file (generated when secret-looking, never in
//! dockhand.toml), `.gitignore` learns the secrets, and an existing dockhand.toml is never
//! replaced.

use std::os::unix::fs::PermissionsExt;

use crate::{expect, sandbox};

#[test]
fn a_node_project_with_an_env_example_gets_secrets_generated_and_passes_check() {
    let sb = sandbox();
    sb.write(
        "package.json",
        r#"{ "name": "shop", "scripts": { "start": "node server.js" } }"#,
    );
    sb.write(
        "server.js",
        "require('http').createServer().listen(process.env.PORT)\n",
    );
    sb.write(
        ".env.example",
        "DATABASE_PASSWORD=change_me\nJWT_SECRET=\nNODE_ENV=production\nREGION=your-region-here\n",
    );
    sb.write(".gitignore", "node_modules/\n");
    let (code, report) = sb.json(&["init", "--app", "shop", "--set", "REGION=eu-west"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["detected"]["kind"], "node", "{report}");
    assert_eq!(
        report["generated"],
        serde_json::json!(["DATABASE_PASSWORD", "JWT_SECRET"])
    );
    assert_eq!(report["missing"], serde_json::json!([]));

    let toml = std::fs::read_to_string(sb.path().join("dockhand.toml")).unwrap();
    assert!(toml.contains("command = \"npm start\""), "{toml}");
    assert!(toml.contains("${secret.JWT_SECRET}"), "{toml}");
    assert!(toml.contains("REGION = \"eu-west\""), "{toml}");
    assert!(toml.contains("NODE_ENV = \"production\""), "{toml}");
    assert!(toml.lines().any(|l| l.starts_with('#')), "commented");

    let secrets = sb.path().join(".dockhand/secrets.env");
    let mode = std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&secrets).unwrap();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("JWT_SECRET="))
        .unwrap()
        .trim_matches(['"', '\'']);
    assert_eq!(value.len(), 64, "32 random bytes, hex");
    assert!(
        !toml.contains(value),
        "a secret value never reaches dockhand.toml"
    );
    assert!(!text.contains("change_me"), "the placeholder was not kept");

    let ignore = std::fs::read_to_string(sb.path().join(".gitignore")).unwrap();
    assert!(ignore.starts_with("node_modules/\n"), "{ignore}");
    assert!(ignore.lines().any(|l| l == ".dockhand/"), "{ignore}");
    assert!(ignore.lines().any(|l| l == ".env"), "{ignore}");

    expect(&sb, &["check"], 0);

    // Never over an existing file.
    let out = expect(&sb, &["init"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(sb.path().join("dockhand.toml")).unwrap(),
        toml
    );
}

#[test]
fn a_value_left_unset_is_required_and_check_names_it() {
    let sb = sandbox();
    sb.write("requirements.txt", "gunicorn==22.0\nflask\n");
    sb.write("app.py", "app = None\n");
    sb.write(".env.example", "SENTRY_DSN=\n");
    let (code, report) = sb.json(&["init"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["detected"]["kind"], "python");
    assert_eq!(report["missing"], serde_json::json!(["SENTRY_DSN"]));
    let toml = std::fs::read_to_string(sb.path().join("dockhand.toml")).unwrap();
    assert!(
        toml.contains("gunicorn --bind 127.0.0.1:$PORT app:app"),
        "{toml}"
    );
    let out = expect(&sb, &["check"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SENTRY_DSN"),
        "{out:?}"
    );
}

#[test]
fn a_dockerfile_project_becomes_a_built_container_on_its_exposed_port() {
    let sb = sandbox();
    sb.write(
        "Dockerfile",
        "FROM busybox:1.36\nEXPOSE 3000\nCMD [\"httpd\", \"-f\"]\n",
    );
    let (code, report) = sb.json(&["init", "--app", "boxed"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["detected"]["kind"], "dockerfile");
    let toml = std::fs::read_to_string(sb.path().join("dockhand.toml")).unwrap();
    assert!(
        toml.contains("build = \".\"") && toml.contains("port = 3000"),
        "{toml}"
    );
    assert!(
        report["secrets_file"].is_null(),
        "no .env.example, no secrets file"
    );
    expect(&sb, &["check"], 0);
}

#[test]
fn a_compose_project_is_imported() {
    let sb = sandbox();
    sb.write(
        "compose.yaml",
        "services:\n  web:\n    image: nginx:1.27\n    ports: [\"8080:80\"]\n    environment:\n      API_TOKEN: abc123xyz\n",
    );
    let (code, report) = sb.json(&["init"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["detected"]["kind"], "compose");
    assert_eq!(report["secrets"], serde_json::json!(["API_TOKEN"]));
    let mode = std::fs::metadata(sb.path().join(".dockhand/secrets.env"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    expect(&sb, &["check"], 0);
}

#[test]
fn an_empty_directory_is_refused_with_what_init_looks_for() {
    let sb = sandbox();
    let out = expect(&sb, &["init"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("package.json") && err.contains("Dockerfile"),
        "{err}"
    );
    assert!(!sb.path().join("dockhand.toml").exists());
}

#[test]
fn the_bundled_example_without_its_file_gets_one_service_per_directory_and_serves() {
    let sb = sandbox();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello");
    crate::import::copy_tree(&example, sb.path());
    std::fs::remove_file(sb.path().join("dockhand.toml")).unwrap();
    let (code, report) = sb.json(&["init", "--app", "hello"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["detected"]["kind"], "several", "{report}");
    let toml = std::fs::read_to_string(sb.path().join("dockhand.toml")).unwrap();
    // api/app.py is a process run in api/, web/static a static site the proxy serves.
    assert!(toml.contains("[services.api]\n"), "{toml}");
    assert!(toml.contains("command = \"python3 app.py\""), "{toml}");
    assert!(toml.contains("workdir = \"api\""), "{toml}");
    assert!(toml.contains("static = \"web/static\""), "{toml}");
    assert!(toml.contains("path = \"/api\""), "{toml}");
    expect(&sb, &["check"], 0);

    // And it runs: the page from the proxy, the API behind /api.
    let _agent = sb.start_agent_with_env(&[("DOCKHAND_LISTEN", "127.0.0.1:0")]);
    let addr = sb.proxy_addr();
    let page = crate::crash::http_get(&addr, "hello.localhost", "/");
    assert!(
        page.contains("<html") || page.contains("<!doctype"),
        "{page}"
    );
    let health = crate::crash::http_get(&addr, "hello.localhost", "/api/health");
    assert!(health.contains("ok"), "{health}");
}

#[test]
fn two_corpus_projects_pass_check_with_their_placeholders_replaced() {
    for project in ["umami", "immich/docker"] {
        let sb = sandbox();
        crate::import::copy_tree(&crate::import::corpus_dir(project), sb.path());
        let (code, report) = sb.json(&["init"]);
        assert_eq!(code, Some(0), "{project}: {report}");
        assert_eq!(report["detected"]["kind"], "compose", "{report}");
        let out = expect(&sb, &["check"], 0);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("is valid"), "{project}: {text}");
        let secrets = std::fs::read_to_string(sb.path().join(".dockhand/secrets.env")).unwrap();
        assert!(
            !secrets.to_ascii_lowercase().contains("replace-me")
                && !secrets.to_ascii_lowercase().contains("change"),
            "{project}: a placeholder survived: {secrets}"
        );
        assert_eq!(
            crate::mode_of(&sb.path().join(".dockhand/secrets.env")),
            0o600
        );
    }
    // umami's APP_SECRET placeholder became a generated value, and the report says so.
    let sb = sandbox();
    crate::import::copy_tree(&crate::import::corpus_dir("umami"), sb.path());
    let (_, report) = sb.json(&["init"]);
    assert_eq!(
        report["generated"],
        serde_json::json!(["APP_SECRET"]),
        "{report}"
    );
}
