//! The proxy layer of a compose project, imported and deployed for real: a Traefik-labelled
//! stack and an nginx-fronted stack, built from the test images, each route answering
//! through dockhand's proxy with the old proxy container gone, a rate limit answering 429
//! past its burst, and a one-shot bootstrap job run once as a task.

use std::time::Duration;

use dockhand_test_support::docker::{
    docker_ok, ensure_test_images, unique_app, AppCleanup, TESTAPP_IMAGE, TESTAPP_SHELL_IMAGE,
};
use dockhand_test_support::{wait_until, Sandbox};

use crate::{expect, sandbox};

/// `curl` through the sandbox's proxy with `Host: host`: `(status, body)`.
fn fetch(sb: &Sandbox, host: &str, path: &str, extra: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .args(extra)
        .arg(format!("http://{}{path}", sb.proxy_addr()))
        .output()
        .expect("curl (apt-get install -y curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Imports the compose project in the sandbox, then points the proxy at a free loopback
/// port (the import writes no `[proxy]` for a plain-HTTP stack) as a user would edit it.
fn import(sb: &Sandbox) -> String {
    let out = expect(sb, &["import", "compose"], 0);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    let path = sb.path().join("dockhand.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("[proxy]"), "{text}");
    std::fs::write(
        &path,
        format!("{text}\n[proxy]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    report
}

/// The containers of `app` (any kind) whose image is `image`.
fn containers_of(app: &str, image: &str) -> usize {
    docker_ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label=dockhand.app={app}"),
        "--filter",
        &format!("ancestor={image}"),
    ])
    .split_whitespace()
    .count()
}

fn task_runs(sb: &Sandbox, name: &str) -> serde_json::Value {
    sb.json(&["tasks", name]).1
}

#[test]
fn a_traefik_labelled_stack_serves_on_its_routes_through_dockhand() {
    ensure_test_images();
    let app = unique_app("trf");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    sb.write(
        "compose.yaml",
        &format!(
            r#"name: {app}
services:
  traefik:
    image: traefik:v3.1
    command:
      - --providers.docker=true
      - --entrypoints.web.address=:80
    ports:
      - "80:80"
    volumes:
      - /var/run/docker.sock:/var/run/docker.sock:ro
  api:
    image: {TESTAPP_IMAGE}
    environment:
      VERSION: api-v1
    healthcheck:
      test: ["CMD-SHELL", "curl -f http://localhost:8080/health || exit 1"]
      interval: 1s
    labels:
      traefik.enable: "true"
      traefik.http.routers.api.rule: "Host(`shop.test`) && PathPrefix(`/api`)"
      traefik.http.routers.api.entrypoints: web
      traefik.http.routers.api.middlewares: api-strip,api-limit
      traefik.http.middlewares.api-strip.stripprefix.prefixes: /api
      traefik.http.middlewares.api-limit.ratelimit.average: "1"
      traefik.http.middlewares.api-limit.ratelimit.period: 1m
      traefik.http.middlewares.api-limit.ratelimit.burst: "3"
      traefik.http.services.api.loadbalancer.server.port: "8080"
  web:
    image: {TESTAPP_SHELL_IMAGE}
    environment:
      VERSION: web-v1
    depends_on:
      migrate:
        condition: service_completed_successfully
    deploy:
      labels:
        - traefik.http.routers.web.rule=Host(`shop.test`)
        - traefik.http.routers.web.middlewares=web-headers,web-retry
        - traefik.http.middlewares.web-headers.headers.customresponseheaders.X-Shop=imported
        - traefik.http.middlewares.web-retry.retry.attempts=3
        - traefik.http.services.web.loadbalancer.server.port=8080
  migrate:
    image: {TESTAPP_SHELL_IMAGE}
    command: ["sh", "-c", "echo migrated $$VERSION"]
  bootstrap:
    image: {TESTAPP_SHELL_IMAGE}
    restart: "no"
    depends_on:
      api:
        condition: service_healthy
    command: ["sh", "-c", "wget -q -O - http://api:8080/version && echo bootstrapped"]
"#
        ),
    );
    let report = import(&sb);
    // The report says what each router became and what it did not translate.
    assert!(report.contains("router `api`"), "{report}");
    assert!(
        report.contains("left out: the Traefik reverse proxy"),
        "{report}"
    );
    assert!(
        report.contains("the retry middleware has no dockhand equivalent"),
        "{report}"
    );
    assert!(report.contains("[tasks.bootstrap]"), "{report}");
    let toml = std::fs::read_to_string(sb.path().join("dockhand.toml")).unwrap();
    assert!(!toml.contains("traefik:v3"), "{toml}");

    let _agent = sb.start_agent();
    wait_until("the web route answers", Duration::from_secs(90), || {
        fetch(&sb, "shop.test", "/version", &[])
            .1
            .contains("web-v1")
    });
    // Traefik never ran: dockhand's proxy answers every route.
    assert_eq!(containers_of(&app, "traefik:v3.1"), 0);
    let (status, headers) = fetch(&sb, "shop.test", "/", &["-D", "-", "-o", "/dev/null"]);
    assert_eq!(status, 200, "{headers}");
    assert!(
        headers.to_ascii_lowercase().contains("x-shop: imported"),
        "{headers}"
    );
    // /api/version reaches the api with the prefix stripped; three in the burst, then 429.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, body) = fetch(&sb, "shop.test", "/api/version", &[]);
        if status == 200 {
            assert!(body.contains("api-v1"), "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert_eq!(statuses[3], 429, "{statuses:?}");

    // The migration web waited for became a hook that ran, in web's image and env, before
    // web started.
    assert!(report.contains("`web`'s pre_deploy hook"), "{report}");
    let hook_log = std::fs::read_to_string(sb.state_dir().join("logs/web/pre_deploy-r1.log"))
        .unwrap_or_else(|e| panic!("the pre_deploy hook's log: {e}"));
    assert!(hook_log.contains("migrated web-v1"), "{hook_log}");

    // The bootstrap job ran once, as a task, after the api answered on the app network.
    wait_until("the bootstrap task ran", Duration::from_secs(60), || {
        task_runs(&sb, "bootstrap")
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["state"] == "succeeded"))
    });
    let log_dir = sb.state_dir().join("logs/tasks/bootstrap");
    let log: String = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        log.contains("api-v1") && log.contains("bootstrapped"),
        "{log}"
    );
    // A second deploy does not run it again, and nothing restarts it.
    expect(&sb, &["deploy"], 0);
    std::thread::sleep(Duration::from_secs(3));
    let runs = task_runs(&sb, "bootstrap");
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
}

#[test]
fn an_nginx_fronted_stack_serves_its_locations_through_dockhand() {
    ensure_test_images();
    let app = unique_app("ngx");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    sb.write(
        "compose.yaml",
        &format!(
            r#"name: {app}
services:
  proxy:
    image: nginx:1.27-alpine
    ports:
      - "80:80"
    volumes:
      - ./nginx/default.conf:/etc/nginx/conf.d/default.conf:ro
      - ./site:/usr/share/nginx/html:ro
    depends_on:
      - backend
  backend:
    image: {TESTAPP_IMAGE}
    environment:
      VERSION: backend-v1
    expose:
      - "8080"
    healthcheck:
      test: wget -q --spider http://localhost:8080/health || exit 1
"#
        ),
    );
    sb.write(
        "nginx/default.conf",
        r#"limit_req_zone $binary_remote_addr zone=api:10m rate=1r/m;
upstream backend_up {
    server backend:8080;
}
server {
    listen 80;
    server_name app.test;
    location /api/ {
        limit_req zone=api burst=2 nodelay;
        proxy_pass http://backend_up/;
        proxy_set_header Host $host;
    }
    location / {
        root /usr/share/nginx/html;
        try_files $uri $uri/ /index.html;
        expires 1h;
    }
}
"#,
    );
    sb.write(
        "site/index.html",
        "<!doctype html><title>imported site</title>\n",
    );
    let report = import(&sb);
    assert!(report.contains("location /api/"), "{report}");
    assert!(report.contains("not translated: expires"), "{report}");

    let _agent = sb.start_agent();
    wait_until("the static root answers", Duration::from_secs(90), || {
        fetch(&sb, "app.test", "/", &[]).1.contains("imported site")
    });
    assert_eq!(containers_of(&app, "nginx:1.27-alpine"), 0);
    // An SPA route falls back to index.html.
    let (status, body) = fetch(&sb, "app.test", "/orders/42", &[]);
    assert_eq!(status, 200);
    assert!(body.contains("imported site"), "{body}");
    // /api/ → the backend with the prefix replaced by `/`; rate 1/m with a burst of 2: one
    // request and two more at once, as nginx lets through, then 429.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, body) = fetch(&sb, "app.test", "/api/version", &[]);
        if status == 200 {
            assert!(body.contains("backend-v1"), "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert_eq!(statuses[3], 429, "{statuses:?}");
}

/// Needs the `edge` branch (route `basic_auth`): a Traefik basicauth router, imported,
/// asks for credentials through dockhand's proxy; the hash went to the secrets file.
#[test]
fn a_traefik_basicauth_router_asks_for_credentials_through_dockhand() {
    ensure_test_images();
    let app = unique_app("tba");
    let _cleanup = AppCleanup::new(&app);
    let sb = sandbox();
    // `s3cret`, bcrypt; `$$` is a literal `$` in compose.
    let hash = "$$2b$$05$$F6Tsas4.6rOBubdSQ5VpOe/qoPU9l.5vlh4LnaoZNLU5d/tNChxsi";
    sb.write(
        "compose.yaml",
        &format!(
            r#"name: {app}
services:
  traefik:
    image: traefik:v2.11
    command: ["--providers.docker=true", "--entrypoints.web.address=:80"]
  admin:
    image: {TESTAPP_IMAGE}
    environment:
      VERSION: admin-v1
    labels:
      - traefik.http.routers.admin.rule=Host(`admin.test`)
      - traefik.http.routers.admin.middlewares=admin-auth
      - traefik.http.middlewares.admin-auth.basicauth.users=ops:{hash}
      - traefik.http.middlewares.admin-auth.basicauth.realm=Admin
      - traefik.http.services.admin.loadbalancer.server.port=8080
"#
        ),
    );
    import(&sb);
    let toml = std::fs::read_to_string(sb.path().join("dockhand.toml")).unwrap();
    assert!(
        toml.contains(
            "basic_auth = { realm = \"Admin\", users = \"${secret.ADMIN_AUTH_HTPASSWD}\" }"
        ),
        "{toml}"
    );
    assert!(!toml.contains("$2b$"), "{toml}");
    let secrets = sb.path().join(".dockhand/secrets.env");
    assert_eq!(crate::mode_of(&secrets), 0o600);
    assert!(std::fs::read_to_string(&secrets)
        .unwrap()
        .contains("ops:$2b$05$"));

    let _agent = sb.start_agent();
    wait_until("the admin route answers", Duration::from_secs(90), || {
        fetch(&sb, "admin.test", "/version", &[]).0 == 401
    });
    let (status, headers) = fetch(
        &sb,
        "admin.test",
        "/version",
        &["-D", "-", "-o", "/dev/null"],
    );
    assert_eq!(status, 401);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"admin\""),
        "{headers}"
    );
    let (status, _) = fetch(&sb, "admin.test", "/version", &["-u", "ops:wrong"]);
    assert_eq!(status, 401);
    let (status, body) = fetch(&sb, "admin.test", "/version", &["-u", "ops:s3cret"]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("admin-v1"), "{body}");
}
