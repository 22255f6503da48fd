//! Configurations that load: defaults, every field, interpolation, `.env` precedence,
//! secrets kept out of the stored config, warnings, and the rendering of diagnostics.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use dockhand_config::{
    load, AppConfig, EnvValue, HealthCheck, Hooks, LoadOptions, ProxySettings, RestartPolicy,
    Route, Secrets, ServiceConfig, Severity,
};
use support::Project;

const FULL: &str = r#"app = "shop"
secrets_file = ".dockhand/secrets.env"
[proxy]
listen = "0.0.0.0:9090"
max_body = "1GiB"
client_header_timeout = "11s"
upstream_connect_timeout = "6s"
upstream_response_timeout = "1m"
drain_timeout = "0s"
workers = 2
[services.api]
command = "python3 app.py"
workdir = "api"
port = 8000
env = { DATABASE_URL = "sqlite:///${DATA_DIR:-/tmp}/db.sqlite", TOKEN = "${secret.API_TOKEN}", WORKERS = 4 }
health = { path = "/api/health", expected_status = 204, interval = "3s", timeout = "1500ms", healthy_threshold = 2, unhealthy_threshold = 5, deploy_timeout = "90s" }
route = { host = "Shop.localhost", path = "/api/", strip_prefix = true }
replicas = 2
restart = "on-failure"
memory = "512MB"
stop_timeout = "15s"
hooks = { pre_deploy = "python3 migrate.py", post_deploy = "echo done" }

[services.worker]
command = "python3 worker.py"
"#;

#[test]
fn full_example_parses_every_field() {
    let project = Project::new();
    std::fs::create_dir(project.dir().join("api")).unwrap();
    project.secrets("API_TOKEN=hunter2\n", 0o600);
    let loaded = project.load(FULL).unwrap();
    let dir = project.dir().to_path_buf();
    let api = ServiceConfig {
        name: "api".into(),
        command: "python3 app.py".into(),
        workdir: dir.join("api"),
        port: Some(8000),
        env: BTreeMap::from([
            (
                "DATABASE_URL".to_string(),
                EnvValue::from_template("sqlite:////tmp/db.sqlite"),
            ),
            (
                "TOKEN".to_string(),
                EnvValue::from_template("${secret.API_TOKEN}"),
            ),
            ("WORKERS".to_string(), EnvValue::literal("4")),
        ]),
        health: Some(HealthCheck {
            path: "/api/health".into(),
            expected_status: 204,
            interval: Duration::from_secs(3),
            timeout: Duration::from_millis(1500),
            healthy_threshold: 2,
            unhealthy_threshold: 5,
            deploy_timeout: Duration::from_secs(90),
            command: None,
            start_period: Duration::ZERO,
        }),
        routes: vec![Route {
            strip_prefix: true,
            ..Route::new(Some("shop.localhost".into()), "/api")
        }],
        replicas: 2,
        restart: RestartPolicy::OnFailure,
        memory_limit: Some(512_000_000),
        stop_timeout: Duration::from_secs(15),
        hooks: Hooks {
            pre_deploy: Some("python3 migrate.py".into()),
            post_deploy: Some("echo done".into()),
        },
        container: None,
        depends_on: Vec::new(),
        healthy_first: Vec::new(),
        static_site: None,
    };
    let worker = ServiceConfig {
        name: "worker".into(),
        command: "python3 worker.py".into(),
        workdir: dir.clone(),
        port: None,
        env: BTreeMap::new(),
        health: None,
        routes: Vec::new(),
        replicas: 1,
        restart: RestartPolicy::Always,
        memory_limit: None,
        stop_timeout: Duration::from_secs(10),
        hooks: Hooks::default(),
        container: None,
        depends_on: Vec::new(),
        healthy_first: Vec::new(),
        static_site: None,
    };
    let expected = AppConfig {
        app: "shop".into(),
        project_dir: dir.clone(),
        config_path: dir.join("dockhand.toml"),
        secrets_file: dir.join(".dockhand/secrets.env"),
        proxy: ProxySettings {
            listen: "0.0.0.0:9090".parse().unwrap(),
            workers: Some(2),
            max_request_body: 1 << 30,
            client_header_timeout: Duration::from_secs(11),
            upstream_connect_timeout: Duration::from_secs(6),
            upstream_response_timeout: Duration::from_secs(60),
            drain_timeout: Duration::ZERO,
            https_listen: None,
            certificates: Vec::new(),
            ..ProxySettings::default()
        },
        services: BTreeMap::from([("api".to_string(), api), ("worker".to_string(), worker)]),
        databases: BTreeMap::new(),
        backups: None,
        tasks: Default::default(),
        update: None,
        pin_code: false,
        secret_sources: Default::default(),
        monitor: Default::default(),
        alerts: Default::default(),
        cluster: None,
        deploy: Default::default(),
        redirects: Vec::new(),
        dashboard: Default::default(),
    };
    assert_eq!(loaded.config, expected);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let web: Vec<&str> = loaded
        .config
        .web_services()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(web, vec!["api"]);
    let json = serde_json::to_string(&loaded.config).unwrap();
    let back: AppConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, loaded.config);
    assert!(json.contains("\"restart\":\"on-failure\""), "{json}");
}

#[test]
fn minimal_config_gets_every_default() {
    let project = Project::new();
    let loaded = project
        .load("app = \"shop\"\n[services.web]\ncommand = \"./server\"\nport = 3000\n[services.web.health]\npath = \"/health\"\n")
        .unwrap();
    let config = loaded.config;
    assert_eq!(
        config.secrets_file,
        project.dir().join(".dockhand/secrets.env")
    );
    assert_eq!(config.proxy, ProxySettings::default());
    assert_eq!(
        config.proxy.listen,
        SocketAddr::from(([127, 0, 0, 1], 8080))
    );
    assert_eq!(config.proxy.max_request_body, 10 * 1024 * 1024);
    assert_eq!(config.proxy.client_header_timeout, Duration::from_secs(10));
    assert_eq!(
        config.proxy.upstream_connect_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(
        config.proxy.upstream_response_timeout,
        Duration::from_secs(60)
    );
    assert_eq!(config.proxy.drain_timeout, Duration::from_secs(30));
    assert_eq!(config.proxy.workers, None);
    let web = &config.services["web"];
    assert_eq!(web.health, Some(HealthCheck::with_path("/health")));
    let health = web.health.as_ref().unwrap();
    assert_eq!(
        (health.expected_status, health.interval, health.timeout),
        (200, Duration::from_secs(2), Duration::from_secs(2))
    );
    assert_eq!(
        (
            health.healthy_threshold,
            health.unhealthy_threshold,
            health.deploy_timeout
        ),
        (1, 3, Duration::from_secs(60))
    );
    assert_eq!(web.workdir, project.dir());
    assert_eq!(web.replicas, 1);
    assert_eq!(web.restart, RestartPolicy::Always);
    assert_eq!(web.stop_timeout, Duration::from_secs(10));
    assert_eq!((web.memory_limit, web.routes.first()), (None, None));
    assert!(loaded.warnings.is_empty());
}

#[test]
fn route_defaults_to_root_path() {
    let project = Project::new();
    let toml = "app = \"a\"\n[services.web]\ncommand = \"x\"\nport = 1\nhealth = { path = \"/\" }\nroute = { host = \"a.example\" }\n";
    let routes = project.load(toml).unwrap().config.services["web"]
        .routes
        .clone();
    assert_eq!(routes, [Route::new(Some("a.example".into()), "/")]);
}

#[test]
fn interpolation_forms() {
    let project = Project::new();
    let toml = r#"app = "${APP_NAME}"
[services.web]
command = "serve --root ${ROOT:-/srv} --mode ${MODE-prod} --empty=[${EMPTY-unused}] --price $$5 --home $HOME"
workdir = "${SUBDIR:-.}"
env = { A = "${EMPTY:-fallback}", B = "${NESTED:-${ROOT:-/srv}/x}", C = "cost: $$5", D = "${REQUIRED?must be set}" }
"#;
    let env = [
        ("APP_NAME", "shop"),
        ("EMPTY", ""),
        ("MODE", "dev"),
        ("REQUIRED", "ok"),
    ];
    let config = project.load_with_env(toml, &env).unwrap().config;
    assert_eq!(config.app, "shop");
    let web = &config.services["web"];
    assert_eq!(
        web.command,
        "serve --root /srv --mode dev --empty=[] --price $5 --home $HOME"
    );
    assert_eq!(web.workdir, project.dir().join("."));
    let env = web.resolved_env(&Secrets::empty()).unwrap();
    assert_eq!(env["A"], "fallback");
    assert_eq!(env["B"], "/srv/x");
    assert_eq!(env["C"], "cost: $5");
    assert_eq!(env["D"], "ok");
    assert_eq!(web.env["C"].template(), "cost: $$5");
}

#[test]
fn process_env_wins_over_dotenv() {
    let project = Project::new();
    project.write(
        ".env",
        "# local settings\nexport PORT_A=1\nSHARED='from dotenv'\nONLY_DOTENV=\"dot # not a comment\"\n",
    );
    let toml =
        "app = \"shop\"\n[services.web]\ncommand = \"run ${SHARED} ${ONLY_DOTENV} ${PORT_A}\"\n";
    let config = project
        .load_with_env(toml, &[("SHARED", "from process")])
        .unwrap()
        .config;
    assert_eq!(
        config.services["web"].command,
        "run from process dot # not a comment 1"
    );
}

#[test]
fn malformed_dotenv_points_into_the_dotenv_file() {
    let project = Project::new();
    project.write(".env", "GOOD=1\nthis line has no equals sign\n");
    let error = project
        .load("app = \"shop\"\n[services.web]\ncommand = \"x\"\n")
        .unwrap_err();
    let d = &error.diagnostics[0];
    assert_eq!(d.file, project.dir().join(".env"));
    assert_eq!((d.line, d.column, d.source_line.as_deref()), (2, 6, None));
}

#[test]
fn secrets_are_resolved_for_the_process_but_never_stored() {
    let project = Project::new();
    project.secrets("API_TOKEN=\"hunter2-$ecret\"\nUNUSED=also-secret\n", 0o600);
    let toml = r#"app = "shop"
[services.api]
command = "run"
env = { TOKEN = "Bearer ${secret.API_TOKEN}", PLAIN = "x" }
"#;
    let config = project.load(toml).unwrap().config;
    let api = &config.services["api"];
    assert_eq!(
        api.secret_names().into_iter().collect::<Vec<_>>(),
        vec!["API_TOKEN".to_string()]
    );
    let secrets = Secrets::load(&config.secrets_file).unwrap();
    let env = api.resolved_env(&secrets).unwrap();
    assert_eq!(env["TOKEN"], "Bearer hunter2-$ecret");
    assert_eq!(env["PLAIN"], "x");
    let json = serde_json::to_string(&config).unwrap();
    assert!(!json.contains("hunter2"), "{json}");
    assert!(json.contains("${secret.API_TOKEN}"), "{json}");
    assert!(!format!("{config:?} {secrets:?}").contains("hunter2"));
    let mut values: Vec<&str> = secrets.values().collect();
    values.sort_unstable();
    assert_eq!(values, vec!["also-secret", "hunter2-$ecret"]);
}

#[test]
fn a_variable_cannot_smuggle_in_a_secret_reference() {
    let project = Project::new();
    project.secrets("API_TOKEN=hunter2\n", 0o600);
    let toml = "app = \"shop\"\n[services.api]\ncommand = \"run\"\nenv = { X = \"${SNEAKY}\" }\n";
    let config = project
        .load_with_env(toml, &[("SNEAKY", "${secret.API_TOKEN}")])
        .unwrap()
        .config;
    let secrets = Secrets::load(&config.secrets_file).unwrap();
    let env = config.services["api"].resolved_env(&secrets).unwrap();
    assert_eq!(env["X"], "${secret.API_TOKEN}");
}

#[test]
fn risky_settings_produce_warnings() {
    let project = Project::new();
    let toml = r#"app = "shop"
[services.web]
command = "x"
port = 3000
route = { path = "/" }
restart = "never"
"#;
    let warnings = project.load(toml).unwrap().warnings;
    let summary: Vec<(Severity, usize, usize, Option<&str>)> = warnings
        .iter()
        .map(|w| (w.severity, w.line, w.column, w.key.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (Severity::Warning, 2, 11, Some("services.web")),
            (Severity::Warning, 5, 1, Some("services.web.route")),
            (Severity::Warning, 6, 11, Some("services.web.restart")),
        ]
    );
    assert!(warnings[0]
        .help
        .as_deref()
        .unwrap()
        .contains("deploys will only wait for the port to accept connections"));
    assert!(warnings[1].message.contains("matches every host name"));
    assert!(warnings[2].message.contains("never restarted"));
}

#[test]
fn diagnostic_display_shows_the_line_and_a_caret() {
    let project = Project::new();
    let toml = "app = \"shop\"\n\n[services.api]\ncommand = \"python3 app.py\"\nport = 8000\nhealth = { path = \"/health\" }\nprot = 8080\n";
    let error = project.load(toml).unwrap_err();
    let expected = format!(
        "error: unknown key `prot` in service `api`
  --> {}:7:1
   |
 7 | prot = 8080
   | ^^^^
   = help: did you mean `port`?",
        project.config_path().display()
    );
    assert_eq!(error.to_string(), expected);
}

#[test]
fn diagnostic_display_of_a_value_and_of_a_wide_line_number() {
    let project = Project::new();
    let toml = format!(
        "app = \"shop\"\n[services.api]\ncommand = \"x\"\n{}stop_timeout = \"5 sec\"\n",
        "\n".repeat(7)
    );
    let error = project.load(&toml).unwrap_err();
    let expected = format!(
        "error: bad duration `5 sec` for `stop_timeout`: spaces are not allowed
   --> {}:11:16
    |
 11 | stop_timeout = \"5 sec\"
    |                ^^^^^^^
    = help: write a number followed by a unit (ms, s, m, h, d) without spaces, e.g. \"10s\" or \"1m30s\"",
        project.config_path().display()
    );
    assert_eq!(error.to_string(), expected);
}

#[test]
fn diagnostics_serialize_for_json_output() {
    let project = Project::new();
    let error = project
        .load("app = \"shop\"\n[services.api]\ncommand = \"x\"\nprot = 1\n")
        .unwrap_err();
    let json = serde_json::to_value(&error.diagnostics[0]).unwrap();
    assert_eq!(json["severity"], "error");
    assert_eq!(json["line"], 4);
    assert_eq!(json["column"], 1);
    assert_eq!(json["key"], "services.api.prot");
    assert_eq!(json["source_line"], "prot = 1");
}

#[test]
fn load_reads_the_file_and_reports_a_missing_one() {
    let project = Project::new();
    let path = project.write(
        "dockhand.toml",
        "app = \"shop\"\n[services.api]\ncommand = \"x\"\n",
    );
    let loaded = load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.config.config_path, path);
    let missing = project.dir().join("nope.toml");
    let error = load(&missing, &LoadOptions::default()).unwrap_err();
    let d = &error.diagnostics[0];
    assert_eq!((d.line, d.column, d.severity), (1, 1, Severity::Error));
    assert!(d.message.contains("cannot read config file"), "{d}");
}

#[test]
fn sub_tables_and_dotted_keys_are_accepted() {
    let project = Project::new();
    let toml = r#"app = "shop"
[services.api]
command = "x"
port = 1
health.path = "/h"
health.interval = "5s"
[services.api.env]
A = "1"
[services.api.route]
host = "a.example"
[services.api.hooks]
post_deploy = "echo ok"
"#;
    let api = project.load(toml).unwrap().config.services["api"].clone();
    assert_eq!(api.health.unwrap().interval, Duration::from_secs(5));
    assert_eq!(api.env["A"].template(), "1");
    assert_eq!(api.routes[0].host.as_deref(), Some("a.example"));
    assert_eq!(api.hooks.post_deploy.as_deref(), Some("echo ok"));
}

#[test]
fn process_env_snapshot_is_taken() {
    let opts = LoadOptions::from_process_env();
    assert!(opts.env.contains_key("PATH"));
    assert!(!format!("{opts:?}").contains(&opts.env["PATH"]));
}

#[test]
fn checks_and_a_canary_strategy_load() {
    let project = Project::new();
    let toml = r#"app = "a"
[services.web]
command = "x"
[deploy]
strategy = "canary"
[deploy.canary]
steps = ["5%", 20, "60%"]
step = "30s"
min_requests = 50
[monitor.checks.home]
http = "https://shop.example.org/"
status = 200
body = "Welcome"
[monitor.checks.db]
tcp = "db.internal:5432"
interval = "10s"
threshold = 3
[monitor.checks.queue]
command = "test -f /tmp/ok"
"#;
    let config = project.load(toml).unwrap().config;
    assert_eq!(config.deploy.strategy, dockhand_config::Strategy::Canary);
    assert_eq!(config.deploy.canary.steps, [500, 2000, 6000]);
    assert_eq!(config.deploy.canary.step, Duration::from_secs(30));
    assert_eq!(config.deploy.canary.min_requests, 50);
    let checks = &config.monitor.checks;
    assert_eq!(checks.len(), 3);
    assert_eq!(
        checks["home"].probe,
        dockhand_config::CheckProbe::Http {
            url: "https://shop.example.org/".into(),
            status: Some(200),
            body: Some("Welcome".into()),
            ca: None,
        }
    );
    assert_eq!(checks["home"].interval, Duration::from_secs(60));
    assert_eq!(checks["home"].threshold, 2);
    assert_eq!(checks["db"].threshold, 3);
    assert_eq!(checks["db"].interval, Duration::from_secs(10));
    assert_eq!(
        checks["queue"].probe,
        dockhand_config::CheckProbe::Command {
            argv: vec!["/bin/sh".into(), "-c".into(), "test -f /tmp/ok".into()]
        }
    );
}

#[test]
fn edge_policies_and_redirects_load_in_the_shapes_the_importer_writes() {
    let project = Project::new();
    project.secrets("STAFF=ann:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n", 0o600);
    let toml = r#"app = "shop"
[proxy]
max_body = "10MB"
[services.api]
command = "x"
port = 1
health = { path = "/h" }
route = [
  { host = "a.example.org" },
  { host = "b.example.org", path = "/api", strip_prefix = true, add_prefix = "/v1/", max_body = "50MB", upstream_response_timeout = "120s", request_headers = { "X-Forwarded-Prefix" = "/api", "X-Unwanted" = "" }, basic_auth = { realm = "Restricted", users = "${secret.STAFF}" } },
]

[[redirects]]
from = "www.example.org"
to = "https://example.org"

[[redirects]]
from = "example.org/old/"
to = "https://example.org/new"
code = 308
keep_path = false
"#;
    let loaded = project.load(toml).unwrap();
    let api = &loaded.config.services["api"];
    assert_eq!(api.routes.len(), 2);
    assert_eq!(api.routes[0], Route::new(Some("a.example.org".into()), "/"));
    let b = &api.routes[1];
    assert_eq!(
        (b.host.as_deref(), b.path.as_str()),
        (Some("b.example.org"), "/api")
    );
    assert_eq!(b.add_prefix.as_deref(), Some("/v1"));
    assert_eq!(b.max_body, Some(50_000_000));
    assert_eq!(b.upstream_response_timeout, Some(Duration::from_secs(120)));
    assert_eq!(b.request_headers["x-forwarded-prefix"], "/api");
    assert_eq!(b.request_headers["x-unwanted"], "");
    let auth = b.basic_auth.as_ref().unwrap();
    assert_eq!(auth.realm, "Restricted");
    assert_eq!(auth.users.template(), "${secret.STAFF}");
    assert!(api.secret_names().contains("STAFF"));
    let r = &loaded.config.redirects;
    assert_eq!(r.len(), 2);
    assert_eq!(
        (
            r[0].from_host.as_str(),
            r[0].from_path.as_str(),
            r[0].to.as_str(),
            r[0].code,
            r[0].keep_path
        ),
        ("www.example.org", "/", "https://example.org", 301, true)
    );
    assert_eq!(
        (
            r[1].from_host.as_str(),
            r[1].from_path.as_str(),
            r[1].code,
            r[1].keep_path
        ),
        ("example.org", "/old", 308, false)
    );
    // The stored snapshot keeps the secret's name, never its value.
    let json = serde_json::to_string(&loaded.config).unwrap();
    assert!(!json.contains("5en6G6"), "{json}");
    let back: AppConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back.services["api"].routes, api.routes);
}

#[test]
fn a_release_snapshot_with_the_old_single_route_still_reads() {
    let project = Project::new();
    let loaded = project
        .load("app = \"a\"\n[services.web]\ncommand = \"x\"\nport = 1\nhealth = { path = \"/\" }\nroute = { host = \"a.example\" }\n[services.worker]\ncommand = \"y\"\n")
        .unwrap();
    let mut json: serde_json::Value = serde_json::to_value(&loaded.config).unwrap();
    for (name, route) in [
        (
            "web",
            serde_json::to_value(Route::new(Some("a.example".into()), "/")).unwrap(),
        ),
        ("worker", serde_json::Value::Null),
    ] {
        let svc = json["services"][name].as_object_mut().unwrap();
        svc.remove("routes");
        svc.insert("route".into(), route);
    }
    let old: AppConfig = serde_json::from_value(json).unwrap();
    assert_eq!(
        old.services["web"].routes,
        [Route::new(Some("a.example".into()), "/")]
    );
    assert!(old.services["worker"].routes.is_empty());
}
