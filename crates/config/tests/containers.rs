//! The container schema: services with `image` or `build`, `[databases.*]` and their
//! connection values, and the preflight rules `dockhand check` applies before any deploy —
//! one table-driven case per rule, each asserting severity, line, column and key.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use dockhand_config::Severity::{self, Error, Warning};
use dockhand_config::{CommandLine, Engine, Mount, PullPolicy, Ulimit};
use support::Project;

const DOCKERFILE: &str =
    "FROM python:3.12 AS build\nRUN make\nFROM scratch AS runtime\nCOPY --from=build /app /app\n";

fn app_tree(p: &Project) {
    p.write("api/Dockerfile.prod", DOCKERFILE);
    p.write("config/app.ini", "x=1\n");
    p.secrets("DB_PASSWORD=s3cret\nSECRET_KEY=k\n", 0o600);
}

const FULL: &str = r#"app = "shop"

[databases.db]
engine = "postgres"
version = "16"
publish = "127.0.0.1:5433"

[databases.cache]
engine = "redis"
image = "redis:7.2-alpine"
command = "redis-server --appendonly yes"

[services.api]
build = { context = "api", dockerfile = "Dockerfile.prod", target = "runtime", args = { PY = "3.12" } }
command = "gunicorn -b '0.0.0.0:8000' app:wsgi"
port = 8000
env = { DATABASE_URL = "${databases.db.url}", REDIS = "${databases.cache.url}", KEY = "${secret.SECRET_KEY}" }
volumes = ["media:/app/media", "./config:/app/config:ro", { type = "tmpfs", target = "/tmp" }]
cpus = 1.5
memory = "512MB"
init = true
shm_size = "64MB"
ulimits = { nofile = { soft = 1024, hard = 65536 }, nproc = 512 }
depends_on = ["db", { service = "cache", condition = "healthy" }]
health = { path = "/health" }

[services.worker]
image = "ghcr.io/acme/worker:1.4.2"
pull = "never"
entrypoint = ["/bin/worker"]
health = { command = ["worker", "ping"], start_period = "20s" }

[services.tool]
command = "./tool"
env = { DB = "${databases.db.url}", HOST = "${databases.db.host}" }
"#;

#[test]
fn containers_and_databases_parse_every_field() {
    let project = Project::new();
    app_tree(&project);
    let loaded = project.load(FULL).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        loaded.warnings.is_empty(),
        "{}",
        support::render(&loaded.warnings)
    );
    let config = &loaded.config;
    let dir = project.dir();
    assert!(config.uses_containers());
    assert_eq!(config.network(), "dockhand-shop");

    let api = &config.services["api"];
    let c = api.container.as_ref().unwrap();
    assert_eq!(c.image, "dockhand/shop-api");
    let build = c.build.as_ref().unwrap();
    assert_eq!(build.context, dir.join("api"));
    assert_eq!(build.dockerfile, dir.join("api/Dockerfile.prod"));
    assert_eq!(build.target.as_deref(), Some("runtime"));
    assert_eq!(build.args, BTreeMap::from([("PY".into(), "3.12".into())]));
    assert_eq!(
        c.command.as_deref(),
        Some(
            &[
                "gunicorn".to_string(),
                "-b".into(),
                "0.0.0.0:8000".into(),
                "app:wsgi".into()
            ][..]
        )
    );
    assert_eq!(
        c.volumes,
        vec![
            Mount::Volume {
                name: "media".into(),
                target: "/app/media".into(),
                read_only: false
            },
            Mount::Bind {
                source: dir.join("config"),
                target: "/app/config".into(),
                read_only: true
            },
            Mount::Tmpfs {
                target: "/tmp".into()
            },
        ]
    );
    assert_eq!(c.cpus, Some(1.5));
    assert!(c.init);
    assert_eq!(c.shm_size, Some(64_000_000));
    assert_eq!(
        c.ulimits,
        vec![
            Ulimit {
                name: "nofile".into(),
                soft: 1024,
                hard: 65536
            },
            Ulimit {
                name: "nproc".into(),
                soft: 512,
                hard: 512
            },
        ]
    );
    assert_eq!(api.depends_on, vec!["db", "cache"]);
    assert_eq!(api.healthy_first, vec!["cache"]);
    assert_eq!(
        api.env["DATABASE_URL"].template(),
        "postgres://shop:${secret.DB_PASSWORD}@db:5432/shop"
    );
    assert_eq!(api.env["REDIS"].template(), "redis://cache:6379");
    // The password stays a reference: nothing secret is in the stored config.
    let json = serde_json::to_string(config).unwrap();
    assert!(!json.contains("s3cret"), "{json}");

    let worker = &config.services["worker"];
    let w = worker.container.as_ref().unwrap();
    assert_eq!(w.image, "ghcr.io/acme/worker:1.4.2");
    assert_eq!(w.pull, PullPolicy::Never);
    assert_eq!(
        w.entrypoint.as_deref(),
        Some(&["/bin/worker".to_string()][..])
    );
    let h = worker.health.as_ref().unwrap();
    assert_eq!(
        h.command,
        Some(CommandLine::Exec(vec!["worker".into(), "ping".into()]))
    );
    assert_eq!(h.start_period, Duration::from_secs(20));

    // A native process reaches the database through its published address.
    let tool = &config.services["tool"];
    assert!(tool.container.is_none());
    assert_eq!(
        tool.env["DB"].template(),
        "postgres://shop:${secret.DB_PASSWORD}@127.0.0.1:5433/shop"
    );
    assert_eq!(tool.env["HOST"].template(), "127.0.0.1");

    let db = &config.databases["db"];
    assert_eq!(db.engine, Engine::Postgres);
    assert_eq!(db.image, "postgres:16");
    assert_eq!(db.volume, "db-data");
    assert_eq!(db.user.as_deref(), Some("shop"));
    assert_eq!(
        db.password.as_ref().unwrap().template(),
        "${secret.DB_PASSWORD}"
    );
    assert!(db
        .health
        .command
        .as_ref()
        .unwrap()
        .display()
        .contains("pg_isready"));
    let cache = &config.databases["cache"];
    assert_eq!(
        cache.command.as_deref(),
        Some(
            &[
                "redis-server".to_string(),
                "--appendonly".into(),
                "yes".into()
            ][..]
        )
    );
    assert!(cache.password.is_none());

    // Later checks can point into the file.
    let d = loaded
        .sites
        .diagnostic(Warning, "services.worker.health.command", "x", None);
    assert_eq!((d.line, d.column), (31, 12), "{d}");
}

#[test]
fn old_release_snapshots_without_container_fields_still_load() {
    let project = Project::new();
    let loaded = project
        .load("app = \"shop\"\n[services.api]\ncommand = \"x\"\n")
        .unwrap();
    let mut json: serde_json::Value = serde_json::to_value(&loaded.config).unwrap();
    json.as_object_mut().unwrap().remove("databases");
    let api = json["services"]["api"].as_object_mut().unwrap();
    api.remove("container");
    api.remove("depends_on");
    let back: dockhand_config::AppConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, loaded.config);
}

struct Rule {
    name: &'static str,
    toml: &'static str,
    setup: fn(&Project),
    severity: Severity,
    line: usize,
    column: usize,
    key: &'static str,
    text: &'static str,
}

fn nothing(_: &Project) {}
fn secrets(p: &Project) {
    p.secrets("DB_PASSWORD=x\n", 0o600);
}
fn dockerfile(p: &Project) {
    p.write("api/Dockerfile", DOCKERFILE);
}
fn context_only(p: &Project) {
    p.write("api/README", "no Dockerfile here\n");
}

const RULES: &[Rule] = &[
    Rule {
        name: "bind-mount source that does not exist",
        toml: "app = \"shop\"\n[services.api]\nimage = \"a:1\"\nvolumes = [\"./conf/ipv4-only.xml:/etc/x.xml:ro\"]\n",
        setup: nothing,
        severity: Error,
        line: 4,
        column: 12,
        key: "services.api.volumes",
        text: "bind mount source",
    },
    Rule {
        name: "missing build context",
        toml: "app = \"shop\"\n[services.api]\nbuild = { context = \"frontend\" }\n",
        setup: nothing,
        severity: Error,
        line: 3,
        column: 21,
        key: "services.api.build.context",
        text: "build context",
    },
    Rule {
        name: "missing Dockerfile",
        toml: "app = \"shop\"\n[services.api]\nbuild = { context = \"api\", dockerfile = \"Dockerfile.prod\" }\n",
        setup: context_only,
        severity: Error,
        line: 3,
        column: 41,
        key: "services.api.build.dockerfile",
        text: "Dockerfile.prod does not exist",
    },
    Rule {
        name: "missing Dockerfile of a bare context",
        toml: "app = \"shop\"\n[services.api]\nbuild = \"api\"\n",
        setup: context_only,
        severity: Error,
        line: 3,
        column: 9,
        key: "services.api.build",
        text: "api/Dockerfile does not exist",
    },
    Rule {
        name: "build target the Dockerfile does not define",
        toml: "app = \"shop\"\n[services.api]\nbuild = { context = \"api\", target = \"builder\" }\n",
        setup: dockerfile,
        severity: Error,
        line: 3,
        column: 37,
        key: "services.api.build.target",
        text: "stages defined there: build, runtime",
    },
    Rule {
        name: "required variable with no value",
        toml: "app = \"shop\"\n[services.api]\nimage = \"acme/api:${TAG?set the release tag}\"\n",
        setup: nothing,
        severity: Error,
        line: 3,
        column: 19,
        key: "services.api.image",
        text: "required variable `TAG` is not set: set the release tag",
    },
    Rule {
        name: "database port published to the world",
        toml: "app = \"shop\"\n[databases.db]\nengine = \"postgres\"\npublish = \"0.0.0.0:5432\"\n[services.api]\nimage = \"a:1\"\n",
        setup: secrets,
        severity: Warning,
        line: 4,
        column: 11,
        key: "databases.db.publish",
        text: "reachable from other machines",
    },
    Rule {
        name: "latest tag",
        toml: "app = \"shop\"\n[services.api]\nimage = \"nginx:latest\"\n",
        setup: nothing,
        severity: Warning,
        line: 3,
        column: 9,
        key: "services.api.image",
        text: "uses the `latest` tag",
    },
    Rule {
        name: "untagged image",
        toml: "app = \"shop\"\n[services.api]\nimage = \"registry.example.org:5000/nginx\"\n",
        setup: nothing,
        severity: Warning,
        line: 3,
        column: 9,
        key: "services.api.image",
        text: "has no tag",
    },
    Rule {
        name: "unknown engine with a suggestion",
        toml: "app = \"shop\"\n[databases.db]\nengine = \"postgress\"\n[services.api]\nimage = \"a:1\"\n",
        setup: nothing,
        severity: Error,
        line: 3,
        column: 10,
        key: "databases.db.engine",
        text: "did you mean \"postgres\"?",
    },
    Rule {
        name: "database password missing from the secrets file",
        toml: "app = \"shop\"\n[databases.main-db]\nengine = \"postgres\"\n[services.api]\nimage = \"a:1\"\n",
        setup: secrets,
        severity: Error,
        line: 2,
        column: 12,
        key: "databases.main-db.password",
        text: "secret `MAIN_DB_PASSWORD` is not defined",
    },
    Rule {
        name: "native service linking an unpublished database",
        toml: "app = \"shop\"\n[databases.db]\nengine = \"redis\"\n[services.api]\ncommand = \"x\"\nenv = { R = \"${databases.db.url}\" }\n",
        setup: nothing,
        severity: Error,
        line: 6,
        column: 14,
        key: "services.api.env.R",
        text: "add publish = \"127.0.0.1:PORT\"",
    },
    Rule {
        name: "database password outside env",
        toml: "app = \"shop\"\n[databases.db]\nengine = \"postgres\"\n[services.api]\nimage = \"a:1\"\ncommand = \"migrate ${databases.db.url}\"\n",
        setup: secrets,
        severity: Error,
        line: 6,
        column: 20,
        key: "services.api.command",
        text: "contains the database password",
    },
    Rule {
        name: "unknown database",
        toml: "app = \"shop\"\n[databases.db]\nengine = \"redis\"\n[services.api]\nimage = \"a:1\"\nenv = { R = \"${databases.cache.url}\" }\n",
        setup: nothing,
        severity: Error,
        line: 6,
        column: 14,
        key: "services.api.env.R",
        text: "unknown database `cache`",
    },
    Rule {
        name: "depends_on an undefined name",
        toml: "app = \"shop\"\n[services.api]\nimage = \"a:1\"\ndepends_on = [\"wroker\"]\n[services.worker]\nimage = \"a:1\"\n",
        setup: nothing,
        severity: Error,
        line: 4,
        column: 14,
        key: "services.api.depends_on",
        text: "did you mean `worker`?",
    },
    Rule {
        name: "depends_on with an unknown condition",
        toml: "app = \"shop\"\n[services.api]\nimage = \"a:1\"\ndepends_on = [{ service = \"worker\", condition = \"helthy\" }]\n[services.worker]\nimage = \"a:1\"\n",
        setup: nothing,
        severity: Error,
        line: 4,
        column: 49,
        key: "services.api.depends_on.condition",
        text: "did you mean \"healthy\"?",
    },
    Rule {
        name: "dependency cycle",
        toml: "app = \"shop\"\n[services.a]\nimage = \"a:1\"\ndepends_on = [\"b\"]\n[services.b]\nimage = \"a:1\"\ndepends_on = [\"a\"]\n",
        setup: nothing,
        severity: Error,
        line: 4,
        column: 14,
        key: "services.a.depends_on",
        text: "dependency cycle: a -> b -> a",
    },
    Rule {
        name: "service and database with one name",
        toml: "app = \"shop\"\n[databases.db]\nengine = \"redis\"\n[services.db]\nimage = \"a:1\"\n",
        setup: nothing,
        severity: Error,
        line: 4,
        column: 11,
        key: "services.db",
        text: "is both a service and a database",
    },
    Rule {
        name: "health with path and command",
        toml: "app = \"shop\"\n[services.api]\nimage = \"a:1\"\nport = 80\nhealth = { path = \"/h\", command = \"true\" }\n",
        setup: nothing,
        severity: Error,
        line: 5,
        column: 12,
        key: "services.api.health.path",
        text: "both `path` and `command`",
    },
    Rule {
        name: "unclosed quote in a container command",
        toml: "app = \"shop\"\n[services.api]\nimage = \"a:1\"\ncommand = \"sh -c 'echo\"\n",
        setup: nothing,
        severity: Error,
        line: 4,
        column: 11,
        key: "services.api.command",
        text: "unclosed quote",
    },
    Rule {
        name: "relative volume target",
        toml: "app = \"shop\"\n[services.api]\nimage = \"a:1\"\nvolumes = [\"data:data\"]\n",
        setup: nothing,
        severity: Error,
        line: 4,
        column: 12,
        key: "services.api.volumes",
        text: "must be an absolute path",
    },
];

#[test]
fn preflight_rules_point_at_the_problem() {
    let mut failures = Vec::new();
    for rule in RULES {
        let project = Project::new();
        (rule.setup)(&project);
        let diagnostics = match project.load(rule.toml) {
            Ok(loaded) => {
                if rule.severity == Error {
                    failures.push(format!("{}: loaded without error", rule.name));
                }
                loaded.warnings
            }
            Err(error) => error.diagnostics,
        };
        let found = diagnostics.iter().find(|d| {
            d.message.contains(rule.text)
                || d.help.as_deref().is_some_and(|h| h.contains(rule.text))
        });
        let Some(d) = found else {
            failures.push(format!(
                "{}: no diagnostic contains {:?}; got:\n{}",
                rule.name,
                rule.text,
                support::render(&diagnostics)
            ));
            continue;
        };
        let got = (d.severity, d.line, d.column, d.key.as_deref());
        let want = (rule.severity, rule.line, rule.column, Some(rule.key));
        if got != want {
            failures.push(format!(
                "{}: expected {want:?}, got {got:?}:\n{d}",
                rule.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `dockhand check` once refused `[backups]` with a MySQL or MongoDB database ("backups of …
/// databases are not supported yet"); every engine is a backup source now.
#[test]
fn every_database_engine_is_a_backup_source() {
    let project = Project::new();
    project.secrets(
        "MY_PASSWORD=a\nMARIA_PASSWORD=b\nMONGO_PASSWORD=c\nPG_PASSWORD=d\n",
        0o600,
    );
    let recipient = format!("age1{}", "q".repeat(58));
    let toml = format!(
        r#"app = "shop"

[databases.my]
engine = "mysql"

[databases.maria]
engine = "mariadb"

[databases.mongo]
engine = "mongodb"

[databases.pg]
engine = "postgres"

[databases.cache]
engine = "redis"

[services.api]
image = "ghcr.io/acme/api:1.0.0"
port = 8000

[backups]
recipients = ["{recipient}"]

[backups.targets.local]
dir = "backups"
"#
    );
    let loaded = project.load(&toml).unwrap_or_else(|e| panic!("{e}"));
    let backups = loaded.config.backups.as_ref().expect("[backups] parsed");
    let mut sources = backups.databases.clone();
    sources.sort();
    assert_eq!(sources, ["cache", "maria", "mongo", "my", "pg"]);
    assert_eq!(loaded.config.databases["mongo"].engine, Engine::Mongodb);
    assert_eq!(loaded.config.databases["my"].engine, Engine::Mysql);
}
