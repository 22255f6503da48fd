//! Every corpus project, imported for real (dockhand.toml and the secrets file written into a
//! copy of the project), loads with the real configuration parser (`dockhand_config`)
//! without a schema error. The only errors allowed are the preflight checks about files the
//! corpus leaves out on purpose (Dockerfiles and build contexts, absent bind sources; see
//! tests/corpus/README.md).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dockhand_compose::{import, ClusterImport, ImportOptions, Output};
use dockhand_config::{LoadOptions, Severity};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Imports `files` (relative to corpus/`root`) in a copy of `root`; returns the errors of
/// loading the result.
fn import_and_load(root: &str, files: &[&str]) -> Vec<String> {
    import_and_load_with(root, files, None)
}

/// `import_and_load`, with `--cluster`'s nodes.
fn import_and_load_with(root: &str, files: &[&str], cluster: Option<ClusterImport>) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(root);
    let dir = tmp.path().join(Path::new(root).file_name().unwrap());
    copy_dir(&src, &dir);
    // A `.env` holding real values (the swarm stack's) is kept private, as `check` asks.
    let env = dir.join(".env");
    if env.is_file() {
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let done = import(&ImportOptions {
        files: files.iter().map(|f| dir.join(f)).collect(),
        dir: dir.clone(),
        output: Output::Beside,
        cluster,
        ..ImportOptions::default()
    })
    .unwrap_or_else(|e| panic!("{root}: {e}"));
    let path = done.report.output.unwrap();
    match dockhand_config::load(&path, &LoadOptions::default()) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect(),
    }
}

/// An error about a file the corpus does not ship.
fn is_missing_corpus_file(error: &str) -> bool {
    let first = error.lines().next().unwrap_or_default();
    [
        "error: build context ",
        "error: Dockerfile ",
        "error: bind mount source ",
    ]
    .iter()
    .any(|p| first.starts_with(p))
        && first.ends_with("does not exist")
}

/// A secret the corpus leaves empty or as a placeholder (`changeme`): refused until the user
/// sets it (`dockhand secrets set`), as it must be before a deploy.
fn is_secret_to_set(error: &str) -> bool {
    let first = error.lines().next().unwrap_or_default();
    first.starts_with("error: secret `")
        && (first.ends_with("is empty") || first.contains("holds a placeholder value"))
}

#[test]
fn generated_files_load_with_dockhand_config() {
    let projects: &[(&str, &[&str])] = &[
        ("awesome-compose/nginx-flask-mysql", &["compose.yaml"]),
        ("awesome-compose/nginx-golang-postgres", &["compose.yaml"]),
        ("plausible", &["compose.yml"]),
        (
            "plausible",
            &[
                "docker-compose.yml",
                "reverse-proxy/traefik/docker-compose.traefik.yml",
            ],
        ),
        ("umami", &["docker-compose.yml"]),
        ("immich/docker", &["docker-compose.yml"]),
        (
            "paperless-ngx/docker/compose",
            &["docker-compose.postgres.yml"],
        ),
        (
            "nextcloud/.examples/docker-compose/with-nginx-proxy/postgres/apache",
            &["compose.yaml"],
        ),
    ];
    let mut problems = String::new();
    for (root, files) in projects {
        for error in import_and_load(root, files) {
            if !is_missing_corpus_file(&error) && !is_secret_to_set(&error) {
                problems.push_str(&format!("{root} {files:?}:\n{error}\n"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems}");
}

#[test]
fn the_allowed_errors_are_only_the_files_the_corpus_leaves_out() {
    // umami has no build context and no bind mount: its only error is the placeholder its
    // compose file gives APP_SECRET, which the user must replace before a deploy.
    let errors = import_and_load("umami", &["docker-compose.yml"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(is_secret_to_set(&errors[0]), "{errors:?}");
    assert!(
        errors[0].contains("secret `APP_SECRET` holds a placeholder value"),
        "{errors:?}"
    );
}

/// Needs the `edge` branch (route arrays, `basic_auth`, `request_headers`, `add_prefix`,
/// `max_body`, `upstream_response_timeout`, `[[redirects]]`): the stacks written for the
/// proxy layer import into files dockhand loads.
#[test]
fn the_proxy_layer_stacks_load_with_dockhand_config() {
    let mut problems = String::new();
    for root in ["dockhand/traefik", "dockhand/nginx", "dockhand/caddy"] {
        for error in import_and_load(root, &["compose.yaml"]) {
            if !is_missing_corpus_file(&error) && !is_secret_to_set(&error) {
                problems.push_str(&format!("{root}:\n{error}\n"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems}");
}

/// The seed-style Swarm stack imported with `--cluster` loads, `[cluster]` and all, whether
/// the manager is the placeholder or the nodes were named.
#[test]
fn the_swarm_stack_imported_for_a_cluster_loads_with_dockhand_config() {
    let named = ClusterImport {
        managers: vec![("m1".into(), "ssh://root@203.0.113.10".into())],
        workers: vec![("w1".into(), "ssh://root@203.0.113.11".into())],
    };
    for cluster in [ClusterImport::default(), named] {
        let errors = import_and_load_with(
            "dockhand/swarm-stack",
            &["docker-stack.yml"],
            Some(cluster.clone()),
        );
        assert!(errors.is_empty(), "{cluster:?}: {errors:?}");
    }
}
