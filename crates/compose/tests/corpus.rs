//! Every compose project of the test corpus (real files of public projects, see
//! tests/corpus/README.md) imports; the generated dockhand.toml and the report are compared
//! with the snapshots in tests/snapshots/ (`UPDATE_EXPECT=1` rewrites them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dockhand_compose::{convert, ClusterImport, Conversion, ImportOptions, NoteKind, Output};

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(rel)
}

/// Compares `actual` with the snapshot `name`, or rewrites it when `UPDATE_EXPECT=1`.
fn expect_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "snapshot {} is missing; run with UPDATE_EXPECT=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "snapshot {} differs from line {}:\n--- expected\n{}\n--- actual\n{}\n(run with UPDATE_EXPECT=1 to accept the new output)",
            path.display(),
            first + 1,
            expected.lines().skip(first).take(5).collect::<Vec<_>>().join("\n"),
            actual.lines().skip(first).take(5).collect::<Vec<_>>().join("\n"),
        );
    }
}

/// Imports `files` (relative to the corpus) with an empty process environment.
fn import(files: &[&str]) -> Conversion {
    let opts = ImportOptions {
        files: files.iter().map(|f| corpus(f)).collect(),
        dir: corpus(""),
        output: Output::Stdout,
        env: BTreeMap::new(),
        ..ImportOptions::default()
    };
    convert(&opts).unwrap_or_else(|e| panic!("import of {files:?} failed: {e}"))
}

/// Snapshots the file and the report of one import under `name`.
fn snapshot(name: &str, conv: &Conversion) {
    expect_snapshot(&format!("{name}.dockhand.toml"), &conv.toml);
    let mut report = format!(
        "app: {}\nservices: {}\ndatabases: {}\nsecrets: {}\n",
        conv.report.app,
        conv.report.services.join(", "),
        conv.report.databases.join(", "),
        conv.secret_names().join(", ")
    );
    report.push_str(&conv.report.notes_text());
    expect_snapshot(&format!("{name}.report.txt"), &report);
}

fn has_note(conv: &Conversion, service: Option<&str>, key: &str, kind: NoteKind) -> bool {
    conv.report
        .notes
        .iter()
        .any(|n| n.service.as_deref() == service && n.key == key && n.kind == kind)
}

fn assert_note(conv: &Conversion, service: Option<&str>, key: &str, kind: NoteKind) {
    assert!(
        has_note(conv, service, key, kind),
        "no {kind:?} note for {service:?} {key}:\n{}",
        conv.report.notes_text()
    );
}

#[test]
fn nginx_flask_mysql() {
    let c = import(&["awesome-compose/nginx-flask-mysql/compose.yaml"]);
    snapshot("nginx-flask-mysql", &c);
    assert_eq!(c.report.databases, ["db"]);
    assert!(c.toml.contains("engine = \"mariadb\""), "{}", c.toml);
    assert!(c.toml.contains("image = \"mariadb:10-focal\""));
    assert!(c.toml.contains("volume = \"db-data\""));
    // the secret file is mounted read-only at /run/secrets/<name>
    assert!(c
        .toml
        .contains("\"./db/password.txt:/run/secrets/db-password:ro\""));
    assert_note(&c, Some("db"), "networks", NoteKind::NotCarried);
    assert_note(&c, Some("db"), "expose", NoteKind::NotCarried);
    assert_note(&c, Some("backend"), "depends_on", NoteKind::Assumed);
    assert_note(&c, None, "networks", NoteKind::NotCarried);
    // `$$(cat …)` in the healthcheck stays a literal `$` for dockhand (`$$`)
    assert!(
        c.toml.contains("$$(cat /run/secrets/db-password)"),
        "{}",
        c.toml
    );
}

#[test]
fn nginx_golang_postgres() {
    let c = import(&["awesome-compose/nginx-golang-postgres/compose.yaml"]);
    snapshot("nginx-golang-postgres", &c);
    assert_eq!(c.report.databases, ["db"]);
    assert!(c.toml.contains("database = \"example\""));
    assert_note(&c, Some("db"), "user", NoteKind::NotCarried);
    // nginx is left out: its one location became the backend's route
    assert_note(&c, Some("proxy"), "image", NoteKind::Assumed);
    assert!(!c.report.services.contains(&"proxy".to_owned()));
    assert!(c.toml.contains("port = 8000"), "{}", c.toml);
    assert!(c.toml.contains("route = { path = \"/\" }"), "{}", c.toml);
}

#[test]
fn plausible_compose_yml() {
    let c = import(&["plausible/compose.yml"]);
    snapshot("plausible-compose", &c);
    assert_eq!(c.report.databases, ["plausible-db"]);
    assert!(c
        .report
        .services
        .contains(&"plausible-events-db".to_owned()));
    assert_note(&c, Some("plausible_db"), "name", NoteKind::Assumed);
    // secret-looking values never reach dockhand.toml
    assert!(c
        .toml
        .contains("SECRET_KEY_BASE = \"${secret.SECRET_KEY_BASE}\""));
    assert!(c.secret_names().contains(&"PLAUSIBLE_DB_PASSWORD"));
    assert!(!c.toml.contains("password = \"postgres\""));
    // BASE_URL is unset: it became empty, and the report says so
    assert_note(&c, Some("plausible"), "environment", NoteKind::Warning);
    assert!(c.toml.contains("nofile = { soft = 65535, hard = 65535 }"));
}

#[test]
fn plausible_docker_compose_with_traefik_override() {
    let c = import(&[
        "plausible/docker-compose.yml",
        "plausible/reverse-proxy/traefik/docker-compose.traefik.yml",
    ]);
    snapshot("plausible-docker-compose-traefik", &c);
    // the router's rule is the route
    assert_note(
        &c,
        Some("plausible"),
        "traefik.http.routers.plausible",
        NoteKind::Assumed,
    );
    assert_note(&c, Some("plausible"), "env_file", NoteKind::Assumed);
    assert_note(&c, None, "version", NoteKind::NotCarried);
    assert!(c.toml.contains("port = 8000"));
    assert!(c
        .toml
        .contains("route = { host = \"example.com\", path = \"/\" }"));
}

#[test]
fn umami() {
    let c = import(&["umami/docker-compose.yml"]);
    snapshot("umami", &c);
    assert!(
        c.toml.contains("health = { path = \"/api/heartbeat\""),
        "{}",
        c.toml
    );
    assert!(c.toml.contains("init = true"));
    assert!(c.toml.contains("user = \"umami\""));
    // the database URL refers to the imported database
    assert!(c.toml.contains("DATABASE_URL = \"${databases.db.url}\""));
    assert!(c.toml.contains("APP_SECRET = \"${secret.APP_SECRET}\""));
    assert!(!c.toml.contains("replace-me"));
    // `$${POSTGRES_USER}` reaches the shell as `${POSTGRES_USER}`, written `$${…}` for dockhand
    assert!(
        c.toml.contains("pg_isready -U $${POSTGRES_USER}"),
        "{}",
        c.toml
    );
}

#[test]
fn immich() {
    let c = import(&["immich/docker/docker-compose.yml"]);
    snapshot("immich", &c);
    assert_eq!(c.report.app, "immich");
    assert!(c.report.databases.contains(&"redis".to_owned()));
    assert!(c.report.databases.contains(&"database".to_owned()));
    assert!(c
        .toml
        .contains("@sha256:bcf63357191b76a916ae5eb93464d65c07511da41e3bf7a8416db519b40b1c23"));
    assert!(c.toml.contains("shm_size = \"128MiB\""));
    assert_note(
        &c,
        Some("immich-server"),
        "container_name",
        NoteKind::NotCarried,
    );
    assert_note(
        &c,
        Some("immich-server"),
        "healthcheck",
        NoteKind::NotCarried,
    );
    assert_note(&c, Some("immich-server"), "env_file", NoteKind::Warning);
}

#[test]
fn immich_with_its_example_env() {
    let opts = ImportOptions {
        files: vec![corpus("immich/docker/docker-compose.yml")],
        dir: corpus(""),
        env_file: Some(corpus("immich/docker/example.env")),
        output: Output::Stdout,
        ..ImportOptions::default()
    };
    let c = convert(&opts).unwrap();
    assert!(c.toml.contains("immich-server:release"), "{}", c.toml);
}

#[test]
fn paperless_postgres() {
    let c = import(&["paperless-ngx/docker/compose/docker-compose.postgres.yml"]);
    snapshot("paperless-postgres", &c);
    assert_eq!(c.report.databases, ["broker", "db"]);
    assert!(c.toml.contains("image = \"docker.io/library/postgres:16\""));
    assert!(c.toml.contains("restart = \"always\""));
    assert_note(&c, Some("webserver"), "restart", NoteKind::Assumed);
    assert!(c.toml.contains("\"./export:/usr/src/paperless/export\""));
}

#[test]
fn nextcloud_with_nginx_proxy() {
    let c = import(&[
        "nextcloud/.examples/docker-compose/with-nginx-proxy/postgres/apache/compose.yaml",
    ]);
    snapshot("nextcloud", &c);
    assert_note(&c, Some("proxy"), "volumes", NoteKind::NotCarried);
    assert_note(&c, Some("proxy"), "labels", NoteKind::NotCarried);
    assert!(c.toml.contains("entrypoint = \"/cron.sh\""));
    assert!(c.toml.contains("\"nextcloud:/var/www/html\""));
    // the :Z flag is dropped with a note
    assert!(c.report.notes.iter().any(|n| n.message.contains("SELinux")));
}

/// Traefik labels, v3 forms on `labels` and v2 forms in `deploy.labels`: routers become
/// routes of the services behind them, middlewares their policies, the entrypoint redirect
/// and the cert resolver dockhand's HTTPS; Traefik itself is left out; one-shot jobs become
/// once tasks.
#[test]
fn traefik_labels_become_routes() {
    let c = import(&["dockhand/traefik/compose.yaml"]);
    snapshot("dockhand-traefik", &c);
    assert!(!c.report.services.contains(&"traefik".to_owned()));
    assert_note(&c, Some("traefik"), "image", NoteKind::Assumed);
    let t = &c.toml;
    assert!(
        t.contains("[services.backend]\nimage = \"example/backend:1.4\"\nport = 8080"),
        "{t}"
    );
    assert!(t.contains("route = [{ host = \"api.example.org\", path = \"/api\", https_redirect = true, hsts = \"365d\", security_headers = true, headers = { X-Robots-Tag = \"noindex\" }, request_headers = { X-Forwarded-Prefix = \"/api\" }, rate_limit = { rate = \"10/s\", burst = 20 } }, { host = \"api.example.org\", path = \"/ws\""), "{t}");
    assert!(t.contains("health = { path = \"/api/v1/health\""), "{t}");
    assert!(
        t.contains("route = { host = \"example.org\", path = \"/\", https_redirect = true }"),
        "{t}"
    );
    assert!(t.contains("route = { host = \"admin.example.org\", path = \"/\", https_redirect = true, allow = [\"10.0.0.0/8\", \"203.0.113.7\"], basic_auth = { realm = \"Admin area\", users = \"${secret.ADMIN_AUTH_HTPASSWD}\" }, max_body = \"50MiB\" }"), "{t}");
    assert!(t.contains("route = { host = \"example.org\", path = \"/docs\", strip_prefix = true, https_redirect = true, allow = [\"192.168.0.0/16\"] }"), "{t}");
    assert!(
        t.contains("[proxy]\nlisten = \"0.0.0.0:80\"\nhttps_listen = \"0.0.0.0:443\""),
        "{t}"
    );
    assert!(
        t.contains("[proxy.acme]\nemail = \"ops@example.org\""),
        "{t}"
    );
    assert!(
        t.contains(
            "[[redirects]]\nfrom = \"www.example.org\"\nto = \"https://example.org\"\ncode = 301"
        ),
        "{t}"
    );
    assert!(t.contains("[[redirects]]\nfrom = \"example.org/blog\"\nto = \"https://blog.example.org\"\ncode = 302"), "{t}");
    // the hashes go to the secrets file, never into dockhand.toml
    assert!(c.secret_names().contains(&"ADMIN_AUTH_HTPASSWD"));
    assert!(!t.contains("apr1"), "{t}");
    // one-shot jobs: the migration the backend waits for (service_completed_successfully)
    // runs in the backend's image before it starts, every deploy; minio/mc has no service
    assert!(
        t.contains("hooks = { pre_deploy = \"./backend migrate --yes\" }"),
        "{t}"
    );
    assert!(!t.contains("[tasks.migrate]"), "{t}");
    assert!(t.contains("# [tasks.minio-bootstrap]"), "{t}");
    assert!(!c.report.services.contains(&"migrate".to_owned()));
    // untranslated labels are in the report
    assert_note(
        &c,
        Some("admin"),
        "traefik.http.middlewares.admin-retry",
        NoteKind::NotCarried,
    );
    assert_note(
        &c,
        Some("docs"),
        "traefik.http.routers.tenants.rule",
        NoteKind::NotCarried,
    );
    assert_note(
        &c,
        Some("backend"),
        "traefik.http.middlewares.secure-headers.headers.stsincludesubdomains",
        NoteKind::NotCarried,
    );
    assert_note(&c, Some("backend"), "labels", NoteKind::NotCarried);
    assert_note(
        &c,
        Some("backend"),
        "traefik.http.routers.backend",
        NoteKind::Assumed,
    );
}

/// nginx configuration mounted into the proxy: `upstream`, `/api/` rewritten to `/v1/`,
/// basic auth, `limit_req`, headers, a static SPA root, HTTPS and redirects.
#[test]
fn nginx_config_becomes_routes_and_a_static_site() {
    let c = import(&["dockhand/nginx/compose.yaml"]);
    snapshot("dockhand-nginx", &c);
    let t = &c.toml;
    assert!(t.contains("route = { host = \"app.example.org\", path = \"/api\", strip_prefix = true, add_prefix = \"/v1\", hsts = \"365d\", headers = { X-Frame-Options = \"SAMEORIGIN\" }, request_headers = { X-App = \"dockhand\" }, rate_limit = { rate = \"10/s\", burst = 21 }, max_body = \"50MiB\", upstream_response_timeout = \"120s\" }"), "{t}");
    assert!(
        t.contains("[services.backend]\nimage = \"example/api:2.0\"\nport = 4000"),
        "{t}"
    );
    assert!(t.contains("health = { path = \"/api/health\" }"), "{t}");
    assert!(
        t.contains("basic_auth = { realm = \"Reports\", users = \"${secret.PROXY_HTPASSWD}\" }"),
        "{t}"
    );
    assert!(t.contains("[services.proxy]\nstatic = { dir = \"./frontend/dist\", fallback = \"/index.html\" }\nroute = { host = \"app.example.org\", path = \"/\" }"), "{t}");
    assert!(t.contains("[[redirects]]\nfrom = \"www.app.example.org\"\nto = \"https://app.example.org\"\ncode = 301"), "{t}");
    assert!(t.contains("[[redirects]]\nfrom = \"app.example.org/old-pricing\"\nto = \"https://example.org/pricing\"\ncode = 301"), "{t}");
    assert!(t.contains("https_listen = \"0.0.0.0:443\""), "{t}");
    assert!(c.secret_names().contains(&"PROXY_HTPASSWD"));
    assert!(!t.contains("apr1"));
    assert!(
        c.report
            .notes
            .iter()
            .any(|n| n.message.contains("not translated: expires")),
        "{}",
        c.report.notes_text()
    );
    assert!(
        c.report
            .notes
            .iter()
            .any(|n| n.key.contains("location ~ \\.php$") && n.kind == NoteKind::NotCarried),
        "{}",
        c.report.notes_text()
    );
}

/// A Caddyfile: site addresses, `handle_path` (a stripped prefix) and `handle`.
#[test]
fn caddyfile_becomes_routes() {
    let c = import(&["dockhand/caddy/compose.yaml"]);
    snapshot("dockhand-caddy", &c);
    let t = &c.toml;
    assert!(!c.report.services.contains(&"caddy".to_owned()));
    assert!(
        t.contains("route = { host = \"shop.example.org\", path = \"/api\", strip_prefix = true"),
        "{t}"
    );
    assert!(
        t.contains("route = { host = \"shop.example.org\", path = \"/\""),
        "{t}"
    );
    assert!(t.contains("[[redirects]]\nfrom = \"www.shop.example.org\"\nto = \"https://shop.example.org\"\ncode = 301"), "{t}");
}

/// Imports the seed-style Swarm stack (tests/corpus/dockhand/swarm-stack) with `cluster`.
fn import_stack(cluster: Option<ClusterImport>) -> Conversion {
    let dir = corpus("dockhand/swarm-stack");
    convert(&ImportOptions {
        files: vec![dir.join("docker-stack.yml")],
        dir: dir.clone(),
        output: Output::Stdout,
        cluster,
        ..ImportOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `--cluster` keeps a stack's `deploy:` meaning: the placement constraints become
/// `[cluster] placement` (the database's by its name), the node label they compare is a
/// commented `[cluster.labels.NODE]` hint, the restart policy becomes `restart`, what matches
/// Dockhand's update policy (start-first, one at a time, rollback) passes silently and every
/// difference is a note; with no `--manager`, the manager is a placeholder destination.
#[test]
fn a_swarm_stack_imported_for_a_cluster_keeps_its_placement() {
    let c = import_stack(Some(ClusterImport::default()));
    snapshot("dockhand-swarm-stack", &c);
    assert_eq!(c.report.services, ["web", "worker"]);
    assert_eq!(c.report.databases, ["db"]);
    let t = &c.toml;
    for line in [
        "[destinations.manager]\nhost = \"ssh://root@manager.invalid\"",
        "[cluster]\nengine = \"swarm\"\nmanagers = [\"manager\"]\nworkers = []\n",
        "[cluster.placement]\nworker = [\"node.role == worker\"]\ndb = [\"node.labels.db == main\"]\n",
        "# [cluster.labels.NODE]\n# db = \"main\"\n",
    ] {
        assert!(t.contains(line), "no {line:?} in\n{t}");
    }
    // web: two replicas, on-failure from its restart policy; its update policy matches
    // Dockhand's, so it has no update note.
    assert!(t.contains("replicas = 2"), "{t}");
    assert!(t.contains("restart = \"on-failure\""), "{t}");
    assert!(
        !c.report
            .notes
            .iter()
            .any(|n| n.service.as_deref() == Some("web")
                && (n.key.starts_with("deploy.update_config")
                    || n.key.starts_with("deploy.rollback_config")
                    || n.key == "deploy.placement")),
        "{}",
        c.report.notes_text()
    );
    assert_note(
        &c,
        Some("web"),
        "deploy.restart_policy.max_attempts",
        NoteKind::NotCarried,
    );
    // worker: what differs from Dockhand's policy is said, key by key.
    for key in [
        "deploy.update_config.parallelism",
        "deploy.update_config.delay",
        "deploy.update_config.order",
        "deploy.update_config.failure_action",
        "deploy.endpoint_mode",
    ] {
        assert_note(&c, Some("worker"), key, NoteKind::Assumed);
    }
    assert_note(
        &c,
        Some("worker"),
        "deploy.placement.preferences",
        NoteKind::NotCarried,
    );
    // The database is pinned, so no warning about it; the secrets stay in the secrets file.
    assert!(
        !has_note(&c, Some("db"), "deploy.placement", NoteKind::Warning),
        "{}",
        c.report.notes_text()
    );
    assert!(
        !t.contains("stack-db-pw-3c9e1") && !t.contains("stack-api-t0ken-81d2"),
        "{t}"
    );
    assert_eq!(c.secret_names(), ["DB_PASSWORD", "API_TOKEN"]);
    assert!(
        c.report
            .todo
            .iter()
            .any(|l| l.contains("[destinations.manager] (a placeholder)")),
        "{:?}",
        c.report.todo
    );
    assert!(
        c.report.todo.iter().any(|l| l.contains("db=main")),
        "{:?}",
        c.report.todo
    );
}

/// The nodes given on the command line become the destinations and roles.
#[test]
fn a_swarm_stack_imported_with_named_nodes() {
    let c = import_stack(Some(ClusterImport {
        managers: vec![("m1".into(), "ssh://root@203.0.113.10".into())],
        workers: vec![
            ("w1".into(), "ssh://root@203.0.113.11".into()),
            ("w2".into(), "deploy@w2-box".into()),
        ],
    }));
    let t = &c.toml;
    for line in [
        "[destinations.m1]\nhost = \"ssh://root@203.0.113.10\"\n",
        "[destinations.w2]\nhost = \"deploy@w2-box\"\n",
        "managers = [\"m1\"]\nworkers = [\"w1\", \"w2\"]\n",
    ] {
        assert!(t.contains(line), "no {line:?} in\n{t}");
    }
    assert!(!t.contains("placeholder"), "{t}");
    assert!(
        !c.report.todo.iter().any(|l| l.contains("placeholder")),
        "{:?}",
        c.report.todo
    );
}

/// Without `--cluster` nothing of the swarm is written, and the Swarm-only keys hint at the
/// flag.
#[test]
fn a_swarm_stack_imported_for_one_host_hints_at_cluster() {
    let c = import_stack(None);
    assert!(!c.toml.contains("[cluster"), "{}", c.toml);
    assert!(!c.toml.contains("[destinations"), "{}", c.toml);
    for (service, key) in [
        ("web", "deploy.update_config"),
        ("web", "deploy.rollback_config"),
        ("worker", "deploy.placement"),
        ("db", "deploy.placement"),
    ] {
        assert!(
            c.report
                .notes
                .iter()
                .any(|n| n.service.as_deref() == Some(service)
                    && n.key == key
                    && n.kind == NoteKind::NotCarried
                    && n.message.contains("--cluster")),
            "no --cluster hint on {service} {key}:\n{}",
            c.report.notes_text()
        );
    }
}

/// A stack whose database has no placement: a warning, and a commented template line where
/// the placement goes.
#[test]
fn an_unpinned_stack_database_gets_a_template_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-stack.yml"),
        "services:\n  api:\n    image: example/api:1\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: x\n    volumes: [data:/var/lib/postgresql/data]\n    deploy:\n      placement:\n        constraints: [\"node.label.db == main\"]\nvolumes:\n  data:\n",
    )
    .unwrap();
    let c = convert(&ImportOptions {
        files: vec![dir.path().join("docker-stack.yml")],
        dir: dir.path().to_path_buf(),
        output: Output::Stdout,
        cluster: Some(ClusterImport::default()),
        ..ImportOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // `node.label.db` (a typo of node.labels) is refused by [cluster]'s own rule.
    assert!(
        c.report
            .notes
            .iter()
            .any(|n| n.key == "deploy.placement.constraints"
                && n.kind == NoteKind::Warning
                && n.message
                    .contains("`node.label.db` is not a node attribute")),
        "{}",
        c.report.notes_text()
    );
    assert_note(&c, Some("db"), "deploy.placement", NoteKind::Warning);
    assert!(
        c.toml
            .contains("[cluster.placement]\n# db = [\"node.labels.db == yes\"]  # required"),
        "{}",
        c.toml
    );
    assert!(
        c.report
            .todo
            .iter()
            .any(|l| l.contains("pin the database db")),
        "{:?}",
        c.report.todo
    );
}
