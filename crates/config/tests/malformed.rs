//! Table-driven tests of malformed configurations: each case asserts the severity, line,
//! column and key of the diagnostic whose message or help contains the expected text.

mod support;

use dockhand_config::Severity::{self, Error};
use support::Project;

struct Case {
    name: &'static str,
    toml: &'static str,
    setup: fn(&Project),
    env: &'static [(&'static str, &'static str)],
    severity: Severity,
    line: usize,
    column: usize,
    key: Option<&'static str>,
    text: &'static str,
}

fn nothing(_: &Project) {}

const SECRET_ENV: &str =
    "app = \"shop\"\n[services.api]\ncommand = \"x\"\nenv = { TOKEN = \"${secret.API_TOKEN}\" }\n";

const CASES: &[Case] = &[
    Case {
        name: "unknown key with suggestion",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nprot = 8080\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 1,
        key: Some("services.api.prot"),
        text: "did you mean `port`?",
    },
    Case {
        name: "misspelled command",
        toml: "app = \"shop\"\n[services.api]\ncomand = \"x\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 3,
        column: 1,
        key: Some("services.api.comand"),
        text: "did you mean `command`?",
    },
    Case {
        name: "misspelled health in a service",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = 1\nhalth = { path = \"/\" }\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 5,
        column: 1,
        key: Some("services.api.halth"),
        text: "did you mean `health`?",
    },
    Case {
        name: "unknown top-level key lists valid keys",
        toml: "app = \"shop\"\ncolour = \"blue\"\n[services.api]\ncommand = \"x\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 2,
        column: 1,
        key: Some("colour"),
        text: "valid keys here are `app`, `secrets_file`, `proxy`, `services`",
    },
    Case {
        name: "unknown key in a health sub-table",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = 1\n[services.api.health]\npath = \"/\"\nintervall = \"2s\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 7,
        column: 1,
        key: Some("services.api.health.intervall"),
        text: "did you mean `interval`?",
    },
    Case {
        name: "port of the wrong type",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = \"abc\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 8,
        key: Some("services.api.port"),
        text: "expected an integer for `port`, found a string",
    },
    Case {
        name: "replicas as a word",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nreplicas = \"two\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 12,
        key: Some("services.api.replicas"),
        text: "expected an integer for `replicas`",
    },
    Case {
        name: "quoted number suggests removing the quotes",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = \"8000\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 8,
        key: Some("services.api.port"),
        text: "remove the quotes: port = 8000",
    },
    Case {
        name: "duration with a space and a long unit",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nstop_timeout = \"5 sec\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 16,
        key: Some("services.api.stop_timeout"),
        text: "bad duration `5 sec` for `stop_timeout`: spaces are not allowed",
    },
    Case {
        name: "negative duration",
        toml: "app = \"shop\"\n[proxy]\ndrain_timeout = \"-1s\"\n[services.api]\ncommand = \"x\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 3,
        column: 17,
        key: Some("proxy.drain_timeout"),
        text: "durations cannot be negative",
    },
    Case {
        name: "duration without a unit",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = 1\nhealth = { path = \"/\", interval = 5 }\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 5,
        column: 35,
        key: Some("services.api.health.interval"),
        text: "write it as a string with a unit, e.g. interval = \"5s\"",
    },
    Case {
        name: "duplicate route after normalising host case and trailing slash",
        toml: "app = \"shop\"\n[services.a]\ncommand = \"x\"\nport = 1\nhealth = { path = \"/h\" }\nroute = { host = \"shop.localhost\", path = \"/api\" }\n[services.b]\ncommand = \"y\"\nport = 2\nhealth = { path = \"/h\" }\nroute = { host = \"Shop.localhost\", path = \"/api/\" }\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 11,
        column: 1,
        key: Some("services.b.route"),
        text: "duplicate route: services `a` and `b` both route host `shop.localhost` path `/api`",
    },
    Case {
        name: "missing command",
        toml: "app = \"shop\"\n[services.api]\nport = 8000\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 2,
        column: 11,
        key: Some("services.api.command"),
        text: "service `api` has no `command`",
    },
    Case {
        name: "secrets file is a directory",
        toml: SECRET_ENV,
        setup: |p| std::fs::create_dir_all(p.dir().join(".dockhand/secrets.env")).unwrap(),
        env: &[],
        severity: Error,
        line: 4,
        column: 18,
        key: Some("services.api.env.TOKEN"),
        text: "is not a regular file",
    },
    Case {
        name: "secrets file missing",
        toml: SECRET_ENV,
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 18,
        key: Some("services.api.env.TOKEN"),
        text: "install -m 600 /dev/null",
    },
    Case {
        name: "secrets file readable by others",
        toml: SECRET_ENV,
        setup: |p| p.secrets("API_TOKEN=hunter2\n", 0o644),
        env: &[],
        severity: Error,
        line: 4,
        column: 18,
        key: Some("services.api.env.TOKEN"),
        text: "chmod 600",
    },
    Case {
        name: "unknown secret name",
        toml: SECRET_ENV,
        setup: |p| p.secrets("OTHER=1\n", 0o600),
        env: &[],
        severity: Error,
        line: 4,
        column: 18,
        key: Some("services.api.env.TOKEN"),
        text: "secret `API_TOKEN` is not defined in",
    },
    Case {
        name: "secret used in command",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"run ${secret.T}\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 3,
        column: 16,
        key: Some("services.api.command"),
        text: "secrets may only be used in `env` values",
    },
    Case {
        name: "secret used in a hook",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nhooks = { pre_deploy = \"${secret.T}\" }\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 25,
        key: Some("services.api.hooks.pre_deploy"),
        text: "secrets may only be used in `env` values",
    },
    Case {
        name: "undefined variable without default",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"run ${NOPE}\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 3,
        column: 16,
        key: Some("services.api.command"),
        text: "variable `NOPE` is not set",
    },
    Case {
        name: "required variable with message",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nenv = { DB = \"${DB_URL?point it at the database}\" }\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 15,
        key: Some("services.api.env.DB"),
        text: "required variable `DB_URL` is not set: point it at the database",
    },
    Case {
        name: "container-only key on a native service",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nvolumes = [\"data:/data\"]\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 1,
        key: Some("services.api.volumes"),
        text: "`volumes` applies to containers",
    },
    Case {
        name: "native command as an array",
        toml: "app = \"shop\"\n[services.api]\ncommand = [\"a\", \"b\"]\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 3,
        column: 11,
        key: Some("services.api.command"),
        text: "must be a string",
    },
    Case {
        name: "port out of range",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = 70000\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 8,
        key: Some("services.api.port"),
        text: "`port` must be between 1 and 65535, found 70000",
    },
    Case {
        name: "port zero",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = 0\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 8,
        key: Some("services.api.port"),
        text: "`port` must be between 1 and 65535, found 0",
    },
    Case {
        name: "replicas zero",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nreplicas = 0\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 12,
        key: Some("services.api.replicas"),
        text: "`replicas` must be between 1 and 1000, found 0",
    },
    Case {
        name: "route path without slash",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = 1\nroute = { host = \"a.b\", path = \"api\" }\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 5,
        column: 32,
        key: Some("services.api.route.path"),
        text: "route path `api` must start with `/`",
    },
    Case {
        name: "health path without slash",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = 1\n[services.api.health]\npath = \"health\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 6,
        column: 8,
        key: Some("services.api.health.path"),
        text: "write path = \"/health\"",
    },
    Case {
        name: "health without port",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nhealth = { path = \"/h\" }\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 1,
        key: Some("services.api.health"),
        text: "has an HTTP health check but no `port`",
    },
    Case {
        name: "route without port",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\n[services.api.route]\nhost = \"a.b\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 15,
        key: Some("services.api.route"),
        text: "has a route but no `port`",
    },
    Case {
        name: "expected status out of range",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = 1\nhealth = { path = \"/\", expected_status = 700 }\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 5,
        column: 42,
        key: Some("services.api.health.expected_status"),
        text: "must be between 100 and 599",
    },
    Case {
        name: "healthy threshold zero",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = 1\nhealth = { path = \"/\", healthy_threshold = 0 }\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 5,
        column: 44,
        key: Some("services.api.health.healthy_threshold"),
        text: "`healthy_threshold` must be between 1",
    },
    Case {
        name: "bad size",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nmemory = \"12 parsecs\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 10,
        key: Some("services.api.memory"),
        text: "bad size `12 parsecs` for `memory`: unknown unit `parsecs`",
    },
    Case {
        name: "invalid app name",
        toml: "app = \"My_Shop\"\n[services.api]\ncommand = \"x\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 1,
        column: 7,
        key: Some("app"),
        text: "invalid app name `My_Shop`",
    },
    Case {
        name: "missing app",
        toml: "[services.api]\ncommand = \"x\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 1,
        column: 1,
        key: Some("app"),
        text: "missing required key `app`",
    },
    Case {
        name: "invalid service name",
        toml: "app = \"shop\"\n[services.My_Api]\ncommand = \"x\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 2,
        column: 11,
        key: Some("services.My_Api"),
        text: "invalid service name `My_Api`",
    },
    Case {
        name: "toml syntax error",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\npory = 1\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 3,
        column: 13,
        key: None,
        text: "invalid TOML",
    },
    Case {
        name: "duplicate key is a toml error",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\ncommand = \"y\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 1,
        key: None,
        text: "duplicate key `command`",
    },
    Case {
        name: "invalid listen address",
        toml: "app = \"shop\"\n[proxy]\nlisten = \"localhost:8080\"\n[services.api]\ncommand = \"x\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 3,
        column: 10,
        key: Some("proxy.listen"),
        text: "invalid listen address `localhost:8080`",
    },
    Case {
        name: "workdir that does not exist",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nworkdir = \"nope\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 11,
        key: Some("services.api.workdir"),
        text: "does not exist",
    },
    Case {
        name: "unknown restart policy",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nrestart = \"on_failure\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 11,
        key: Some("services.api.restart"),
        text: "did you mean \"on-failure\"?",
    },
    Case {
        name: "unreadable .env",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\n",
        setup: |p| std::fs::create_dir(p.dir().join(".env")).unwrap(),
        env: &[],
        severity: Error,
        line: 1,
        column: 1,
        key: None,
        text: "cannot read",
    },
    Case {
        name: "invalid env name",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nenv = { \"MY-VAR\" = \"1\" }\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 4,
        column: 9,
        key: Some("services.api.env.MY-VAR"),
        text: "invalid environment variable name `MY-VAR`",
    },
    Case {
        name: "no services",
        toml: "app = \"shop\"\n",
        setup: nothing,
        env: &[],
        severity: Error,
        line: 1,
        column: 1,
        key: Some("services"),
        text: "no services defined",
    },
    Case {
        name: "route host with a port",
        toml: "app = \"shop\"\n[services.api]\ncommand = \"x\"\nport = 1\nroute = { host = \"a.b:80\" }\n",
        setup: nothing,
        env: &[("UNUSED", "1")],
        severity: Error,
        line: 5,
        column: 18,
        key: Some("services.api.route.host"),
        text: "must not include a port",
    },
];

#[test]
fn malformed_inputs_point_at_the_problem() {
    let mut failures = Vec::new();
    for case in CASES {
        let project = Project::new();
        (case.setup)(&project);
        let diagnostics = match project.load_with_env(case.toml, case.env) {
            Ok(loaded) => {
                failures.push(format!("{}: loaded without error", case.name));
                loaded.warnings
            }
            Err(error) => error.diagnostics,
        };
        let found = diagnostics.iter().find(|d| {
            d.message.contains(case.text)
                || d.help.as_deref().is_some_and(|h| h.contains(case.text))
        });
        let Some(d) = found else {
            failures.push(format!(
                "{}: no diagnostic contains {:?}; got:\n{}",
                case.name,
                case.text,
                support::render(&diagnostics)
            ));
            continue;
        };
        let got = (d.severity, d.line, d.column, d.key.as_deref());
        let want = (case.severity, case.line, case.column, case.key);
        if got != want {
            failures.push(format!(
                "{}: expected {want:?}, got {got:?}:\n{d}",
                case.name
            ));
        }
        if !d.file.starts_with(project.dir()) {
            failures.push(format!(
                "{}: diagnostic names {}",
                case.name,
                d.file.display()
            ));
        }
    }
    assert!(CASES.len() >= 20);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let project = Project::new();
    let toml = "app = \"Bad\"\n[services.api]\nprot = 1\nport = 0\nreplicas = 0\nstop_timeout = \"soon\"\n";
    let error = project.load(toml).unwrap_err();
    let lines: Vec<usize> = error.errors().map(|d| d.line).collect();
    assert_eq!(lines, vec![1, 2, 3, 4, 5, 6], "{error}");
}

#[test]
fn secret_values_never_appear_in_diagnostics() {
    let project = Project::new();
    project.secrets("API_TOKEN=hunter2\n", 0o644);
    let error = project.load(SECRET_ENV).unwrap_err();
    let text = format!(
        "{error}\n{error:?}\n{}",
        serde_json::to_string(&error.diagnostics).unwrap()
    );
    assert!(!text.contains("hunter2"), "{text}");
}
