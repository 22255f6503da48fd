//! The compose forms the importer understands, each on a small project written to a
//! temporary directory: profiles, env_file, environment, healthchecks, ports, volumes,
//! secrets, interpolation and the errors a broken project gives.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dockhand_compose::{convert, import, Conversion, ImportError, ImportOptions, Output};

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(compose: &str) -> Project {
        let dir = tempfile::Builder::new().prefix("shop").tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
        Project { dir }
    }

    fn write(&self, rel: &str, text: &str) -> &Project {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn opts(&self) -> ImportOptions {
        ImportOptions {
            dir: self.path().to_path_buf(),
            output: Output::Stdout,
            ..ImportOptions::default()
        }
    }

    fn convert(&self) -> Conversion {
        convert(&self.opts()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn convert_with(&self, f: impl FnOnce(&mut ImportOptions)) -> Result<Conversion, ImportError> {
        let mut opts = self.opts();
        f(&mut opts);
        convert(&opts)
    }
}

fn notes(c: &Conversion) -> String {
    c.report.notes_text()
}

#[test]
fn profiles_select_services_and_skipped_ones_are_reported() {
    let p = Project::new(
        "name: shop\nservices:\n  web:\n    image: a\n  debug:\n    image: b\n    profiles: [debug]\n",
    );
    let c = p.convert();
    assert_eq!(c.report.services, ["web"]);
    assert!(notes(&c).contains("only in profile debug"), "{}", notes(&c));
    let c = p
        .convert_with(|o| o.profiles = vec!["debug".into()])
        .unwrap();
    assert_eq!(c.report.services, ["web", "debug"]);
    let c = p
        .convert_with(|o| {
            o.env.insert("COMPOSE_PROFILES".into(), "debug".into());
        })
        .unwrap();
    assert_eq!(c.report.services, ["web", "debug"]);
}

#[test]
fn env_file_forms_and_environment_override() {
    let p = Project::new(
        "services:\n  a:\n    image: a\n    env_file: one.env\n  b:\n    image: b\n    env_file: [one.env, two.env]\n    environment:\n      - FROM=compose\n  c:\n    image: c\n    env_file:\n      - path: missing.env\n        required: false\n      - path: two.env\n",
    );
    p.write("one.env", "FROM=one\nONE=1\n")
        .write("two.env", "# comment\nFROM=two\nTWO='2'\n");
    let c = p.convert();
    let t = &c.toml;
    assert!(
        t.contains("[services.a]\nimage = \"a\"\nenv = { FROM = \"one\", ONE = \"1\" }"),
        "{t}"
    );
    assert!(
        t.contains("env = { FROM = \"compose\", ONE = \"1\", TWO = \"2\" }"),
        "{t}"
    );
    assert!(t.contains("env = { FROM = \"two\", TWO = \"2\" }"), "{t}");
    assert!(
        !notes(&c).contains("missing.env"),
        "an optional env_file is not reported"
    );
}

#[test]
fn a_missing_required_env_file_is_reported() {
    let p = Project::new("services:\n  a:\n    image: a\n    env_file: nope.env\n");
    let c = p.convert();
    assert!(
        notes(&c).contains("`nope.env` does not exist"),
        "{}",
        notes(&c)
    );
}

#[test]
fn env_files_are_read_with_compose_escapes() {
    let p = Project::new("services:\n  a:\n    image: a\n    env_file: a.env\n");
    p.write(
        "a.env",
        "ESCAPED=\"a\\\\nb \\$5 tab\\tend\"\nSINGLE='it\\'s'\nHASH=x\t# not a comment\nMULTI=\"one\ntwo\"\n",
    );
    let c = p.convert();
    let doc: toml_edit::DocumentMut = c.toml.parse().unwrap();
    let get = |k: &str| doc["services"]["a"]["env"][k].as_str().unwrap().to_owned();
    // In double quotes `\\` is a backslash, so `\\n` is a backslash and `n`; `\$` is `$`
    // (written `$$` for dockhand's interpolation), `\t` a tab.
    assert_eq!(get("ESCAPED"), "a\\nb $$5 tab\tend");
    assert_eq!(get("SINGLE"), "it's");
    assert_eq!(get("HASH"), "x\t# not a comment");
    assert_eq!(get("MULTI"), "one\ntwo");
}

#[test]
fn a_malformed_env_file_is_reported_and_not_imported() {
    let p = Project::new("services:\n  a:\n    image: a\n    env_file: bad.env\n");
    p.write("bad.env", "OK=1\nTOKEN=\"hunter2\n");
    let c = p.convert();
    assert!(
        notes(&c).contains(
            "`bad.env` line 2, column 7: unterminated double-quoted value (compose would refuse to start); its variables were not imported"
        ),
        "{}",
        notes(&c)
    );
    assert!(!c.toml.contains("OK"), "{}", c.toml);
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn a_malformed_dotenv_fails_with_its_position() {
    let p = Project::new("services:\n  a:\n    image: \"app:${TAG}\"\n");
    p.write(".env", "# settings\nTAG='1.0\n");
    let err = p.convert_with(|_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            ImportError::Dotenv {
                line: 2,
                column: 5,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_input_error());
    let text = err.to_string();
    assert!(
        text.ends_with(".env:2:5: unterminated single-quoted value"),
        "{text}"
    );
    assert!(!text.contains("1.0"), "{text}");
}

#[test]
fn environment_list_map_and_pass_through() {
    let p = Project::new(
        "services:\n  a:\n    image: a\n    environment:\n      - PLAIN=x\n      - FROM_SHELL\n      - NOT_SET\n  b:\n    image: b\n    environment:\n      N: 3\n      B: true\n      COST: $$5\n",
    );
    let c = p
        .convert_with(|o| {
            o.env.insert("FROM_SHELL".into(), "hello".into());
        })
        .unwrap();
    let t = &c.toml;
    assert!(
        t.contains("PLAIN = \"x\", FROM_SHELL = \"hello\", NOT_SET = \"${NOT_SET:-}\""),
        "{t}"
    );
    assert!(t.contains("N = \"3\", B = \"true\", COST = \"$$5\""), "{t}");
    assert!(notes(&c).contains("NOT_SET"));
}

#[test]
fn interpolation_uses_the_process_env_over_dotenv_and_reports_unset() {
    let p = Project::new(
        "services:\n  a:\n    image: \"app:${TAG:-latest}\"\n    command: \"run ${MODE} ${FLAG:+--flag} $OTHER\"\n",
    );
    p.write(".env", "TAG=1.0\nMODE=dev\nFLAG=\n");
    let c = p.convert();
    assert!(c.toml.contains("image = \"app:1.0\""), "{}", c.toml);
    assert!(c.toml.contains("command = \"run dev  \""), "{}", c.toml);
    assert!(
        notes(&c).contains("variable OTHER is not set"),
        "{}",
        notes(&c)
    );
    let c = p
        .convert_with(|o| {
            o.env.insert("MODE".into(), "prod".into());
        })
        .unwrap();
    assert!(c.toml.contains("command = \"run prod  \""), "{}", c.toml);
    p.write("other.env", "TAG=2.0\n");
    let c = p
        .convert_with(|o| o.env_file = Some(p.path().join("other.env")))
        .unwrap();
    assert!(c.toml.contains("image = \"app:2.0\""), "{}", c.toml);
}

#[test]
fn a_required_variable_fails_with_its_message() {
    let p = Project::new("services:\n  a:\n    image: \"app:${TAG:?set TAG to the release}\"\n");
    let err = p.convert_with(|_| {}).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("set TAG to the release"), "{text}");
    assert!(text.contains("services.a.image"), "{text}");
    assert!(err.is_input_error());
}

#[test]
fn healthcheck_forms() {
    let p = Project::new(concat!(
        "services:\n",
        "  web:\n    image: a\n    ports: ['8080:3000']\n    healthcheck:\n      test: [CMD, curl, -f, 'http://localhost:3000/api/heartbeat']\n      interval: 10s\n      timeout: 2s\n      retries: 4\n      start_period: 1m30s\n",
        "  api:\n    image: a\n    ports: ['8000']\n    healthcheck:\n      test: wget -qO- http://127.0.0.1:8000/health || exit 1\n",
        "  worker:\n    image: a\n    healthcheck:\n      test: [CMD, celery, inspect, ping]\n",
        "  shell:\n    image: a\n    healthcheck:\n      test: [CMD-SHELL, 'test -f /tmp/ok && echo $$HOME']\n",
        "  none:\n    image: a\n    healthcheck:\n      test: [NONE]\n",
        "  off:\n    image: a\n    healthcheck:\n      disable: true\n      test: [CMD, x]\n",
    ));
    let c = p.convert();
    let t = &c.toml;
    assert!(t.contains("health = { path = \"/api/heartbeat\", interval = \"10s\", timeout = \"2s\", unhealthy_threshold = 4, start_period = \"1m30s\" }"), "{t}");
    assert!(t.contains("health = { path = \"/health\" }"), "{t}");
    assert!(
        t.contains("health = { command = [\"celery\", \"inspect\", \"ping\"] }"),
        "{t}"
    );
    assert!(
        t.contains("health = { command = \"test -f /tmp/ok && echo $$HOME\" }"),
        "{t}"
    );
    let n = notes(&c);
    assert!(n.contains("NONE disables"), "{n}");
    assert!(n.contains("disabled in compose"), "{n}");
}

#[test]
fn port_syntaxes_and_routes() {
    let p = Project::new(concat!(
        "services:\n",
        "  web:\n    image: a\n    ports:\n      - target: 3000\n        published: 80\n        host_ip: 127.0.0.1\n      - '9000-9001:9000-9001'\n",
        "  admin:\n    image: a\n    ports: ['127.0.0.1:8081:8080', '53:53/udp']\n    expose: [9100]\n",
        "  cache:\n    image: memcached\n    ports: ['11211:11211']\n",
    ));
    let c = p.convert();
    let t = &c.toml;
    let app = &c.report.app;
    assert!(app.starts_with("shop"), "{app}");
    assert!(t.contains("port = 3000"), "{t}");
    assert!(
        t.contains(&format!(
            "route = {{ host = \"{app}.localhost\", path = \"/\" }}"
        )),
        "{t}"
    );
    assert!(t.contains("port = 8080"), "{t}");
    assert!(
        t.contains(&format!("host = \"admin.{app}.localhost\"")),
        "{t}"
    );
    assert!(!t.contains("port = 11211"), "{t}");
    let n = notes(&c);
    assert!(
        n.contains("port range `9000-9001:9000-9001` is not supported"),
        "{n}"
    );
    assert!(n.contains("port 53/udp not carried"), "{n}");
    assert!(
        n.contains("port 11211 not carried: not an HTTP port"),
        "{n}"
    );
    assert!(n.contains("expose (not carried over)"), "{n}");
    assert!(
        n.contains(&format!("routed at http://{app}.localhost/")),
        "{n}"
    );
}

#[test]
fn volume_syntaxes() {
    let p = Project::new(concat!(
        "services:\n  a:\n    image: a\n    volumes:\n",
        "      - data:/data\n      - ./conf:/conf:ro\n      - /srv/x:/x:rw,z\n      - /anon\n",
        "      - type: bind\n        source: static\n        target: /static\n        read_only: true\n",
        "      - type: tmpfs\n        target: /tmp\n",
        "      - type: volume\n        source: cache\n        target: /cache\n        volume:\n          nocopy: true\n",
        "    tmpfs: /run\n",
        "volumes:\n  data:\n  cache:\n    external: true\n",
    ));
    let c = p.convert();
    let t = &c.toml;
    for v in [
        "\"data:/data\"",
        "\"./conf:/conf:ro\"",
        "\"/srv/x:/x\"",
        "\"./static:/static:ro\"",
        "{ type = \"tmpfs\", target = \"/tmp\" }",
        "\"cache:/cache\"",
        "{ type = \"tmpfs\", target = \"/run\" }",
    ] {
        assert!(t.contains(v), "{v} missing:\n{t}");
    }
    let n = notes(&c);
    assert!(n.contains("anonymous volume `/anon`"), "{n}");
    assert!(n.contains("`z` dropped from /x: SELinux"), "{n}");
    assert!(n.contains("volumes.cache.external"), "{n}");
}

#[test]
fn build_restart_resources_and_the_rest() {
    let p = Project::new(concat!(
        "services:\n  a:\n    build:\n      context: ./api\n      dockerfile: Dockerfile.prod\n      target: runtime\n      args: [PY=3.12]\n      cache_from: [x]\n",
        "    image: api:dev\n    restart: unless-stopped\n    command: [gunicorn, -b, '0.0.0.0:8000']\n    entrypoint: /entrypoint.sh\n",
        "    deploy:\n      replicas: 2\n      resources:\n        limits:\n          memory: 512m\n          cpus: '1.5'\n      placement:\n        constraints: [x]\n",
        "    user: '1000:1000'\n    init: true\n    shm_size: 256m\n    stop_grace_period: 1m30s\n    ulimits:\n      nproc: 4096\n      nofile:\n        soft: 1024\n        hard: 2048\n",
        "    container_name: a1\n    hostname: a\n    labels: [x=1]\n    logging:\n      driver: json-file\n    cap_add: [NET_ADMIN]\n    privileged: true\n    devices: ['/dev/fuse']\n    working_dir: /app\n    extends:\n      service: base\n    x-note: hi\n",
        "  b:\n    image: b\n    restart: 'no'\n",
    ));
    let c = p.convert();
    let t = &c.toml;
    for line in [
        "build = { context = \"./api\", dockerfile = \"Dockerfile.prod\", target = \"runtime\", args = { PY = \"3.12\" } }",
        "image = \"api:dev\"",
        "command = [\"gunicorn\", \"-b\", \"0.0.0.0:8000\"]",
        "entrypoint = \"/entrypoint.sh\"",
        "replicas = 2",
        "restart = \"always\"",
        "memory = \"512MiB\"",
        "cpus = 1.5",
        "user = \"1000:1000\"",
        "init = true",
        "shm_size = \"256MiB\"",
        "stop_timeout = \"1m30s\"",
        "ulimits = { nproc = 4096, nofile = { soft = 1024, hard = 2048 } }",
        "restart = \"never\"",
    ] {
        assert!(t.contains(line), "{line} missing:\n{t}");
    }
    let n = notes(&c);
    for key in [
        "build.cache_from",
        "deploy.placement",
        "container_name",
        "hostname",
        "labels",
        "logging",
        "cap_add",
        "privileged",
        "devices",
        "working_dir",
        "extends",
        "x-note",
    ] {
        assert!(
            c.report
                .notes
                .iter()
                .any(|note| note.service.as_deref() == Some("a") && note.key == key),
            "no note for {key}:\n{n}"
        );
    }
}

#[test]
fn secrets_go_to_the_secrets_file_and_never_into_the_toml() {
    let p = Project::new(concat!(
        "services:\n  web:\n    image: a\n    environment:\n      API_TOKEN: s3cret-token\n      STRIPE_KEY: \"sk live 'x'\"\n      MODE: prod\n",
        "  db:\n    image: postgres:16\n    environment:\n      POSTGRES_USER: shop\n      POSTGRES_PASSWORD: hunter2\n    ports: ['5432:5432']\n",
        "  app:\n    image: a\n    environment:\n      DATABASE_URL: postgres://shop:hunter2@db:5432/shop\n      OTHER_URL: https://u:pw@example.org/\n",
    ));
    let c = p.convert();
    for secret in ["s3cret-token", "hunter2", "sk live", ":pw@"] {
        assert!(!c.toml.contains(secret), "{secret} leaked:\n{}", c.toml);
        assert!(
            !notes(&c).contains(secret),
            "{secret} leaked into the report"
        );
        assert!(
            !format!("{c:?}").contains(secret),
            "{secret} leaked into Debug"
        );
    }
    assert!(
        c.toml.contains("API_TOKEN = \"${secret.API_TOKEN}\""),
        "{}",
        c.toml
    );
    assert!(
        c.toml.contains("password = \"${secret.DB_PASSWORD}\""),
        "{}",
        c.toml
    );
    assert!(c.toml.contains("publish = \"0.0.0.0:5432\""), "{}", c.toml);
    assert!(notes(&c).contains("published on all interfaces"));
    // postgres:16 without a database name: DATABASE_URL names one, so it is not the db's URL
    assert!(
        c.toml.contains("DATABASE_URL = \"${secret.DATABASE_URL}\""),
        "{}",
        c.toml
    );
    assert!(
        c.toml.contains("OTHER_URL = \"${secret.OTHER_URL}\""),
        "{}",
        c.toml
    );
    assert_eq!(
        c.secret_names(),
        [
            "API_TOKEN",
            "STRIPE_KEY",
            "DB_PASSWORD",
            "DATABASE_URL",
            "OTHER_URL"
        ]
    );

    // Written: 0600, dotenv, appended without repeating names.
    p.write(".dockhand/secrets.env", "API_TOKEN=kept\n");
    let mut opts = p.opts();
    opts.output = Output::Beside;
    let done = import(&opts).unwrap();
    let secrets_path = p.path().join(".dockhand/secrets.env");
    assert_eq!(
        done.report.secrets_file.as_deref(),
        Some(secrets_path.as_path())
    );
    let text = std::fs::read_to_string(&secrets_path).unwrap();
    assert!(text.starts_with("API_TOKEN=kept\n"), "{text}");
    assert_eq!(text.matches("API_TOKEN=").count(), 1, "{text}");
    assert!(text.contains("STRIPE_KEY=\"sk live 'x'\"\n"), "{text}");
    assert!(text.contains("DB_PASSWORD=hunter2\n"), "{text}");
    let mode = std::fs::metadata(&secrets_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(done
        .report
        .notes
        .iter()
        .any(|n| n.message.contains("API_TOKEN")));
    assert!(p.path().join("dockhand.toml").is_file());
}

#[test]
fn the_output_is_not_overwritten_without_force() {
    let p = Project::new("services:\n  a:\n    image: a\n");
    p.write("dockhand.toml", "app = \"mine\"\n");
    let mut opts = p.opts();
    opts.output = Output::Beside;
    let err = import(&opts).unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(
        std::fs::read_to_string(p.path().join("dockhand.toml")).unwrap(),
        "app = \"mine\"\n"
    );
    opts.force = true;
    import(&opts).unwrap();
    assert!(std::fs::read_to_string(p.path().join("dockhand.toml"))
        .unwrap()
        .contains("[services.a]"));
}

#[test]
fn stdout_writes_nothing() {
    let p = Project::new("services:\n  a:\n    image: a\n    environment:\n      SECRET: x\n");
    let done = import(&p.opts()).unwrap();
    assert_eq!(done.secret_names(), ["SECRET"]);
    assert!(done.report.output.is_none());
    assert!(!p.path().join("dockhand.toml").exists());
    assert!(!p.path().join(".dockhand").exists());
}

#[test]
fn output_elsewhere_makes_relative_paths_absolute() {
    let p = Project::new("services:\n  a:\n    build: ./api\n    volumes: ['./conf:/conf']\n");
    std::fs::create_dir(p.path().join("api")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let c = p
        .convert_with(|o| o.output = Output::File(out.path().join("dockhand.toml")))
        .unwrap();
    let root = std::fs::canonicalize(p.path()).unwrap();
    assert!(
        c.toml
            .contains(&format!("build = \"{}\"", root.join("api").display())),
        "{}",
        c.toml
    );
    assert!(c
        .toml
        .contains(&format!("\"{}:/conf\"", root.join("conf").display())));
}

#[test]
fn override_files_merge() {
    let p = Project::new(
        "services:\n  web:\n    image: a:1\n    ports: ['8000:8000']\n    environment: [A=1, B=2]\n",
    );
    p.write(
        "compose.override.yaml",
        "services:\n  web:\n    image: a:2\n    ports: ['9000:9000']\n    environment:\n      B: 3\n",
    );
    let c = p.convert();
    assert_eq!(c.report.sources.len(), 2);
    assert!(c.toml.contains("image = \"a:2\""), "{}", c.toml);
    assert!(
        c.toml.contains("env = { A = \"1\", B = \"3\" }"),
        "{}",
        c.toml
    );
    assert!(notes(&c).contains("port 9000 not carried"), "{}", notes(&c));
}

#[test]
fn broken_projects_fail_with_where_and_why() {
    let p = Project::new("services:\n  web:\n    image: [a\n    ports: x\n");
    let err = p.convert_with(|_| {}).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("compose.yaml:"), "{text}");
    assert!(
        matches!(err, ImportError::Yaml { line, .. } if line > 0),
        "{text}"
    );

    let err = p
        .convert_with(|o| o.files = vec!["nope.yml".into()])
        .unwrap_err();
    assert!(err.to_string().contains("nope.yml"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = convert(&ImportOptions {
        dir: empty.path().to_path_buf(),
        env: BTreeMap::new(),
        ..ImportOptions::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("compose.yaml"), "{err}");
}

#[test]
fn anchors_merge_keys_and_extension_fields() {
    let p = Project::new(concat!(
        "x-common: &common\n  restart: always\n  environment:\n    TZ: UTC\n",
        "services:\n  a:\n    <<: *common\n    image: a\n  b:\n    <<: *common\n    image: b\n    restart: 'no'\n",
    ));
    let c = p.convert();
    assert!(
        c.toml
            .contains("[services.a]\nimage = \"a\"\nenv = { TZ = \"UTC\" }\nrestart = \"always\""),
        "{}",
        c.toml
    );
    assert!(c.toml.contains("restart = \"never\""), "{}", c.toml);
    assert!(notes(&c).contains("x-common"), "{}", notes(&c));
}

#[test]
fn renamed_services_keep_their_host_names_in_env_values() {
    let p = Project::new(concat!(
        "services:\n  events_db:\n    image: clickhouse/clickhouse-server\n",
        "  web:\n    image: a\n    depends_on: [events_db]\n    environment:\n",
        "      CLICKHOUSE_URL: http://events_db:8123/x\n      OTHER: my_events_db_x\n      HOST: events_db\n",
    ));
    let c = p.convert();
    assert!(c.toml.contains("[services.events-db]"), "{}", c.toml);
    assert!(
        c.toml
            .contains("CLICKHOUSE_URL = \"http://events-db:8123/x\""),
        "{}",
        c.toml
    );
    assert!(c.toml.contains("OTHER = \"my_events_db_x\""), "{}", c.toml);
    assert!(c.toml.contains("HOST = \"events-db\""), "{}", c.toml);
    assert!(
        c.toml.contains("depends_on = [\"events-db\"]"),
        "{}",
        c.toml
    );
    assert!(
        c.toml.contains("# compose service `events_db`"),
        "{}",
        c.toml
    );
}

#[test]
fn keys_of_the_wrong_shape_and_empty_projects_are_errors() {
    for (compose, expected) in [
        (
            "services:\n  web:\n    image: a\n    ports: 80\n",
            "services.web.ports cannot be a number",
        ),
        (
            "services:\n  web:\n    image: a\n    environment: FOO\n",
            "services.web.environment cannot be a string",
        ),
        (
            "services:\n  web:\n    image: a\n    healthcheck: x\n",
            "services.web.healthcheck cannot be a string",
        ),
        ("services:\n  web: foo\n", "service `web` is a string"),
        ("services:\n", "no service to import"),
        ("", "no service to import"),
    ] {
        let p = Project::new(compose);
        let err = p.convert_with(|_| {}).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(expected), "{compose:?}: {text}");
        assert!(text.contains("compose.yaml"), "{text}");
        assert!(err.is_input_error());
    }
}

#[test]
fn a_secret_variable_used_outside_the_environment_is_a_warning() {
    let p = Project::new(
        "services:\n  cache:\n    image: valkey/valkey\n    command: valkey-server --requirepass ${REDIS_PASSWORD}\n  web:\n    image: a\n    environment:\n      REDIS_PASSWORD: ${REDIS_PASSWORD}\n",
    );
    p.write(".env", "REDIS_PASSWORD=pw-value-123\n");
    let c = p.convert();
    let n = notes(&c);
    assert!(
        n.contains("command (warning): uses ${REDIS_PASSWORD}, which looks secret"),
        "{n}"
    );
    assert!(!n.contains("pw-value-123"), "{n}");
    assert!(
        c.toml
            .contains("REDIS_PASSWORD = \"${secret.REDIS_PASSWORD}\""),
        "{}",
        c.toml
    );
}
