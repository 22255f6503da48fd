//! The web dashboard in a real browser: Debian's Chromium driven headless over WebDriver
//! (chromedriver, started here) through the real agent, with the process runtime and the
//! testapp. One scenario, in the order a person on call would meet it: log in with a
//! one-time link, read the overview after real requests and a deploy, see a live update
//! arrive, roll back from the UI, back up and restore with a typed confirmation, deploy from
//! the UI, have a
//! forged POST and a viewer's rollback refused — with axe-core run on every page (on a
//! desktop in the light, then on a phone's width in the dark, where no page may be wider than
//! the screen), a screenshot of every page kept under `target/dashboard-artifacts/`, and a
//! secret's value looked for in every page, event stream and asset.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dockhand_test_support::{free_port, wait_until, Sandbox};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::backups::{keygen, secrets};
use crate::crash::http_get;
use crate::{expect, sandbox, testapp_bin};

const CANARY: &str = "canary-Okapi-7f3e9a";

/// The pages and what names each (for screenshots and axe).
const PAGES: &[(&str, &str)] = &[
    ("/", "overview"),
    ("/deploys", "deploys"),
    ("/backups", "backups"),
    ("/services/web", "service"),
    ("/alerts", "alerts"),
    ("/tasks", "tasks"),
    ("/certificates", "certificates"),
    ("/config", "configuration"),
    ("/deploys/diff?from=1&to=2", "diff"),
    ("/events", "events"),
];

fn config(app: &str, version: &str, recipient: &str, key: &Path) -> String {
    format!(
        r#"app = "{app}"

[proxy]
listen = "127.0.0.1:0"
drain_timeout = "5s"

[monitor]
interval = "500ms"

[services.web]
command = "echo the token is $TOKEN; exec {bin}"
port = 8000
env = {{ VERSION = "{version}", TOKEN = "${{secret.TOKEN}}" }}
health = {{ path = "/health", interval = "100ms", timeout = "5s", healthy_threshold = 1, unhealthy_threshold = 5, deploy_timeout = "20s" }}
route = {{ host = "app.test", path = "/" }}
stop_timeout = "5s"
hooks = {{ pre_deploy = "echo migrating with $TOKEN" }}

[tasks.report]
service = "web"
command = "echo report with $TOKEN"
when = "manual"

[backups]
recipients = ["{recipient}"]
identity = "{key}"
directories = {{ files = "files" }}
include = ["files"]

[backups.targets.local]
dir = "backups"
"#,
        bin = testapp_bin().display(),
        key = key.display(),
    )
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

/// How a browser session looks at the pages: a desktop in the light, or a phone in the dark.
#[derive(Clone, Copy)]
enum Screen {
    DesktopLight,
    PhoneDark,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("chromedriver is missing: install Debian's browser and its driver with `apt-get install -y chromium chromium-driver` (scripts/test does)")
        });
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    wait_until("chromedriver listens", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Driver { child, port }
}

/// A headless Chromium session on `screen`, with a profile of its own (kept until the
/// session's end: the returned directory).
async fn browser(driver: &Driver, screen: Screen) -> (Client, tempfile::TempDir) {
    let profile = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    let mut options = serde_json::json!({ "binary": "/usr/bin/chromium" });
    match screen {
        Screen::DesktopLight => args.push("--window-size=1280,1000".into()),
        // A phone's screen (390 by 844 CSS pixels; a headless window cannot be made that
        // narrow), and `prefers-color-scheme: dark`.
        Screen::PhoneDark => {
            options["mobileEmulation"] = serde_json::json!({
                "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2, "touch": true }
            });
            args.push("--force-dark-mode".into());
        }
    }
    options["args"] = serde_json::json!(args);
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with headless Chromium");
    (client, profile)
}

/// axe-core's script, installed from npm into a cache outside the checkout when missing.
fn axe_source() -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let dir = PathBuf::from(home).join(".cache/dockhand/npm");
    let file = dir.join("node_modules/axe-core/axe.min.js");
    if !file.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("axe-core")
            .output()
            .expect("npm is missing: install it with `apt-get install -y npm` (scripts/test does)");
        assert!(
            out.status.success(),
            "npm install axe-core failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::read_to_string(&file).unwrap()
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn login_url(sb: &Sandbox, role: &str) -> String {
    let (code, login) = sb.json(&["dashboard", "--role", role, "--no-open"]);
    assert_eq!(code, Some(0), "{login}");
    login["url"].as_str().unwrap().to_string()
}

fn base(url: &str) -> String {
    url.split("/login").next().unwrap().to_string()
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn eventually(c: &Client, what: &str, mut cond: impl FnMut(String) -> bool) -> String {
    let start = Instant::now();
    loop {
        let source = c.source().await.unwrap();
        if cond(source.clone()) {
            return source;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} within 30s; the page:\n{source}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs axe-core in the page; returns its serious and critical violations.
async fn axe(c: &Client, axe: &str) -> Vec<serde_json::Value> {
    c.execute(axe, vec![]).await.expect("inject axe-core");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { resultTypes: ['violations'] })
               .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html) }))))
               .catch(e => done([{ id: 'axe-failed', impact: 'critical', help: String(e) }]));",
            vec![],
        )
        .await
        .expect("axe.run");
    found
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .cloned()
        .collect()
}

/// Presses and releases `key` on the keyboard.
async fn press(c: &Client, key: Key) {
    let k: char = key.into();
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: k })
        .then(KeyAction::Up { value: k });
    c.perform_actions(keys).await.unwrap();
}

/// A POST from the page itself (same origin, with its cookie): the status it got.
async fn post_from_page(c: &Client, path: &str, body: &str) -> u64 {
    let status = c
        .execute_async(
            "const [path, body, done] = arguments;
             fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body, redirect: 'manual' })
               .then(r => done(r.status)).catch(e => done(-1));",
            vec![path.into(), body.into()],
        )
        .await
        .unwrap();
    status.as_u64().unwrap_or(0)
}

fn current_release(sb: &Sandbox) -> i64 {
    let (_, status) = sb.json(&["status"]);
    status["current_release"]["id"].as_i64().unwrap()
}

#[test]
fn the_dashboard_in_a_real_browser_logs_in_shows_the_app_rolls_back_restores_and_refuses_what_it_must(
) {
    let sb = sandbox();
    let app = "dash";
    let (key, recipient) = keygen(&sb);
    secrets(&sb, &format!("TOKEN={CANARY}\n"));
    sb.write("files/a.txt", "original\n");
    sb.write("dockhand.toml", &config(app, "v1", &recipient, &key));
    let _agent = sb.start_agent();
    let proxy = sb.proxy_addr();
    // A second release, and real requests through the proxy.
    sb.write("dockhand.toml", &config(app, "v2", &recipient, &key));
    expect(&sb, &["deploy"], 0);
    for _ in 0..40 {
        assert!(http_get(&proxy, "app.test", "/version").contains("v2"));
    }
    let axe_js = axe_source();
    let shots = artifacts();
    let driver = chromedriver();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (c, _profile) = browser(&driver, Screen::DesktopLight).await;
        let url = login_url(&sb, "operator");
        let home = base(&url);

        // Without a session: the page says how to log in.
        c.goto(&home).await.unwrap();
        assert!(c.source().await.unwrap().contains("dockhand dashboard"));

        // The login link opens a session once, and lands on the overview.
        c.goto(&url).await.unwrap();
        assert_eq!(c.current_url().await.unwrap().path(), "/");
        assert_eq!(text_of(&c, "h1").await, format!("Overview of {app}"));
        c.goto(&url).await.unwrap();
        assert!(c.source().await.unwrap().contains("unknown, used or expired"));

        // The overview: the real app after the requests and the deploy.
        c.goto(&home).await.unwrap();
        let page = eventually(&c, "the request-rate sparkline drawn", |s| {
            s.contains("class=\"line\"")
        })
        .await;
        assert!(page.contains("Release 2"), "{page}");
        assert!(page.contains("healthy 1/1"), "{page}");
        assert!(page.contains("web requests/s, last hour: now"), "{page}");

        // The keyboard: from the top of a page the first Tab reaches the skip link, and
        // following it takes the next Tab into the page's content.
        c.goto(&home).await.unwrap();
        press(&c, Key::Tab).await;
        let first = c.active_element().await.unwrap();
        assert_eq!(first.text().await.unwrap(), "Skip to content");
        press(&c, Key::Enter).await;
        press(&c, Key::Tab).await;
        let inside = c
            .execute("return document.getElementById('main').contains(document.activeElement)", vec![])
            .await
            .unwrap();
        assert_eq!(inside, serde_json::json!(true), "the focus after the skip link");

        // The service's figures (p50 and p99, 5xx, CPU, memory) and the host's (CPU, memory,
        // disks) over the last hour; the window picker for a day (whose 5-minute points the
        // store has only after the first five minutes).
        c.goto(&format!("{home}/services/web")).await.unwrap();
        let page = eventually(&c, "the service's and the host's charts", |s| {
            s.contains("p50 latency: now") && s.contains("CPU: now") && s.contains("CPU (% of a core): now")
        })
        .await;
        assert!(page.contains("web-0 is healthy"), "the health history: {page}");
        for chart in ["Requests/s: now", "p99 latency: now", "5xx responses: now", "Memory used: now", "Disk / used: now"] {
            assert!(page.contains(chart), "{chart}: {page}");
        }
        c.goto(&format!("{home}/services/web?window=24h")).await.unwrap();
        assert_eq!(text_of(&c, "#h-charts").await, "Figures, last 24 hours");
        assert_eq!(text_of(&c, "nav.windows a[aria-current]").await, "24h");
        c.goto(&home).await.unwrap();

        // A live update over SSE: a backup taken from the CLI appears without a reload.
        eventually(&c, "the live feed open", |s| s.contains("Live: updates appear")).await;
        let loaded = c.execute("return window.dockhandLoadedAt", vec![]).await.unwrap();
        assert!(c.source().await.unwrap().contains("No backup yet."));
        let (code, taken) = sb.json(&["backup", "run"]);
        assert_eq!(code, Some(0), "{taken}");
        eventually(&c, "the backup shown live", |s| s.contains("Last backup ")).await;
        let after = c.execute("return window.dockhandLoadedAt", vec![]).await.unwrap();
        assert_eq!(loaded, after, "the page was reloaded, not updated live");

        // Every page: a screenshot, and axe-core finds nothing serious.
        let mut sources = Vec::new();
        for (path, name) in PAGES {
            c.goto(&format!("{home}{path}")).await.unwrap();
            let png = c.screenshot().await.unwrap();
            std::fs::write(shots.join(format!("{name}.png")), png).unwrap();
            let bad = axe(&c, &axe_js).await;
            assert!(bad.is_empty(), "axe-core on {path}: {bad:#?}");
            sources.push((path.to_string(), c.source().await.unwrap()));
        }

        // The configuration, read-only, with the secret as a reference; the changes of
        // release 2 from release 1.
        c.goto(&format!("{home}/config")).await.unwrap();
        let shown = text_of(&c, "#config").await;
        assert!(shown.contains(r#""TOKEN": "${secret.TOKEN}""#), "{shown}");
        assert!(shown.contains(r#""VERSION": "v2""#), "{shown}");
        c.goto(&format!("{home}/deploys")).await.unwrap();
        c.find(Locator::Css("a[href='/deploys/diff?from=1&to=2']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let del = text_of(&c, "#diff del").await;
        let ins = text_of(&c, "#diff ins").await;
        assert!(del.contains(r#"- "#) && del.contains(r#""VERSION": "v1""#), "{del}");
        assert!(ins.contains(r#"+ "#) && ins.contains(r#""VERSION": "v2""#), "{ins}");

        // A rollback clicked in the UI really rolls back.
        c.goto(&format!("{home}/deploys")).await.unwrap();
        c.find(Locator::Css("a.button[href='/deploys/rollback?release=1']"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(shots.join("rollback-confirm.png"), png).unwrap();
        c.find(Locator::Id("confirm-rollback")).await.unwrap().click().await.unwrap();
        eventually(&c, "the rollback's outcome", |s| s.contains("Rolled back: release 1 serves.")).await;
        assert!(http_get(&proxy, "app.test", "/version").contains("v1"));
        assert_eq!(current_release(&sb), 1);
        let (_, events) = sb.json(&["events", "-n", "200"]);
        assert!(
            events.to_string().contains("(dashboard)"),
            "the rollback is recorded with who asked: {events}"
        );

        // A restore needs the app's name typed.
        c.goto(&format!("{home}/backups")).await.unwrap();
        c.find(Locator::Id("backup-now")).await.unwrap().click().await.unwrap();
        eventually(&c, "the backup's outcome", |s| s.contains(" taken.")).await;
        let id = c
            .find(Locator::Css("#backups tbody tr th"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sb.write("files/a.txt", "changed\n");
        c.goto(&format!("{home}/backups/restore?id={id}")).await.unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(shots.join("restore-confirm.png"), png).unwrap();
        let bad = axe(&c, &axe_js).await;
        assert!(bad.is_empty(), "axe-core on the restore page: {bad:#?}");
        c.find(Locator::Id("confirm")).await.unwrap().send_keys("dahs").await.unwrap();
        c.find(Locator::Id("confirm-restore")).await.unwrap().click().await.unwrap();
        eventually(&c, "the refusal", |s| s.contains("not the app's: nothing was restored")).await;
        assert_eq!(std::fs::read_to_string(sb.path().join("files/a.txt")).unwrap(), "changed\n");
        c.find(Locator::Id("confirm")).await.unwrap().send_keys(app).await.unwrap();
        c.find(Locator::Id("confirm-restore")).await.unwrap().click().await.unwrap();
        let done = format!("Backup {id} restored.");
        eventually(&c, "the restore's outcome", |s| s.contains(&done)).await;
        assert_eq!(std::fs::read_to_string(sb.path().join("files/a.txt")).unwrap(), "original\n");

        // A deploy clicked in the UI really deploys the configuration as it is now.
        sb.write("dockhand.toml", &config(app, "v3", &recipient, &key));
        c.goto(&format!("{home}/deploys")).await.unwrap();
        c.find(Locator::Id("deploy-now")).await.unwrap().click().await.unwrap();
        eventually(&c, "the deploy's outcome", |s| s.contains("Deployed: release 3 serves.")).await;
        assert!(http_get(&proxy, "app.test", "/version").contains("v3"));
        assert_eq!(current_release(&sb), 3);

        // A forged POST (no CSRF token, or a wrong one) is refused and changes nothing.
        assert_eq!(post_from_page(&c, "/deploys/rollback", "release=2").await, 403);
        assert_eq!(post_from_page(&c, "/deploys/rollback", "release=2&csrf=forged").await, 403);
        assert_eq!(current_release(&sb), 3);

        // The secrets canary, part one: what the browser saw as an operator, and the live
        // feed (a deploy whose hook prints the secret, and the service's log stream).
        c.goto(&format!("{home}/services/web")).await.unwrap();
        c.execute(
            "window.seen = []; const es = new EventSource('/live'); es.onmessage = es.onerror = null;
             ['event', 'tick', 'hello'].forEach(k => es.addEventListener(k, m => window.seen.push(m.data)));
             const ls = new EventSource('/services/web/logs');
             ls.addEventListener('log', m => window.seen.push(m.data));",
            vec![],
        )
        .await
        .unwrap();
        expect(&sb, &["deploy"], 0);
        expect(&sb, &["run", "report"], 0);
        let start = Instant::now();
        let seen = loop {
            let seen = c.execute("return window.seen.join('\\n')", vec![]).await.unwrap();
            let seen = seen.as_str().unwrap().to_string();
            if seen.contains("the token is ******") && seen.contains("\"kind\":\"deploy\"") {
                break seen;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the live feeds within 30s: {seen}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(!seen.contains(CANARY), "a secret in the event stream: {seen}");
        sources.push(("/services/web (after)".into(), c.source().await.unwrap()));
        for (path, name) in PAGES {
            c.goto(&format!("{home}{path}")).await.unwrap();
            sources.push((format!("{path} ({name}, later)"), c.source().await.unwrap()));
        }
        for asset in ["/assets/app.css", "/assets/app.js"] {
            c.goto(&format!("{home}{asset}")).await.unwrap();
            sources.push((asset.into(), c.source().await.unwrap()));
        }
        for (path, source) in &sources {
            assert!(!source.contains(CANARY), "the secret's value on {path}");
        }

        // A viewer reads but cannot roll back: no button, and its own token does not help.
        let viewer = login_url(&sb, "viewer");
        c.goto(&viewer).await.unwrap();
        c.goto(&format!("{home}/deploys")).await.unwrap();
        let page = c.source().await.unwrap();
        assert!(page.contains("viewer"), "{page}");
        assert!(c.find(Locator::Css("a.button[href^='/deploys/rollback']")).await.is_err());
        let csrf = c
            .find(Locator::Css("input[name=csrf]"))
            .await
            .unwrap()
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            post_from_page(&c, "/deploys/rollback", &format!("release=2&csrf={csrf}")).await,
            403
        );
        let png = c.screenshot().await.unwrap();
        std::fs::write(shots.join("deploys-viewer.png"), png).unwrap();
        c.close().await.unwrap();

        // On a phone, in the dark: every page fits the screen's width (wide tables scroll in
        // their own box), and axe-core (contrast included) finds nothing serious there either.
        let (c, _profile) = browser(&driver, Screen::PhoneDark).await;
        c.goto(&login_url(&sb, "operator")).await.unwrap();
        assert_eq!(c.current_url().await.unwrap().path(), "/");
        let dark = c
            .execute("return matchMedia('(prefers-color-scheme: dark)').matches", vec![])
            .await
            .unwrap();
        assert_eq!(dark, serde_json::json!(true), "the browser prefers the dark scheme");
        for (path, name) in PAGES {
            c.goto(&format!("{home}{path}")).await.unwrap();
            let png = c.screenshot().await.unwrap();
            std::fs::write(shots.join(format!("{name}-phone-dark.png")), png).unwrap();
            let widths = c
                .execute(
                    "const d = document.documentElement;
                     return [d.scrollWidth, d.clientWidth, getComputedStyle(document.body).backgroundColor];",
                    vec![],
                )
                .await
                .unwrap();
            let (scroll, client) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
            assert!(client <= 400, "a phone's width, not {client}px");
            assert!(scroll <= client, "{path} is {scroll}px wide on a {client}px screen");
            assert_eq!(widths[2], "rgb(13, 17, 23)", "{path}: the dark background");
            let bad = axe(&c, &axe_js).await;
            assert!(bad.is_empty(), "axe-core on {path} (phone, dark): {bad:#?}");
        }
        c.close().await.unwrap();
    });
    assert_eq!(current_release(&sb), 4);
    // The secrets canary, part two: the agent did see the secret (redacted) in the logs.
    let logs = crate::service_logs(&sb, "web");
    assert!(
        logs.iter().any(|(_, t)| t.contains(CANARY)),
        "the app printed the secret to its log"
    );
}

/// `curl` over HTTPS to the proxy's `https` port as `host`, trusting only `ca`; the status,
/// the response headers and the body.
fn curl_https(
    https: std::net::SocketAddr,
    host: &str,
    path: &str,
    ca: &Path,
    cookie: Option<&str>,
) -> (String, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-m",
        "10",
        "-D",
        "-",
        "-w",
        "\n%{http_code}",
        "--cacert",
    ])
    .arg(ca)
    .arg("--resolve")
    .arg(format!("{host}:{}:127.0.0.1", https.port()));
    if let Some(c) = cookie {
        cmd.args(["-H", &format!("Cookie: {c}")]);
    }
    let out = cmd
        .arg(format!("https://{host}:{}{path}", https.port()))
        .output()
        .expect("curl is installed (apt-get install -y curl)");
    split_curl(&String::from_utf8_lossy(&out.stdout))
}

/// `curl` over plain HTTP to the proxy at `addr` with `Host: host`.
fn curl_http(addr: &str, host: &str, path: &str, cookie: Option<&str>) -> (String, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "10", "-D", "-", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {host}"));
    if let Some(c) = cookie {
        cmd.args(["-H", &format!("Cookie: {c}")]);
    }
    let out = cmd
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl is installed (apt-get install -y curl)");
    split_curl(&String::from_utf8_lossy(&out.stdout))
}

/// `curl -D - -w '\n%{http_code}'`'s output as (status, headers, body).
fn split_curl(text: &str) -> (String, String, String) {
    let (rest, code) = text.rsplit_once('\n').unwrap_or((text, ""));
    let (headers, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (code.to_string(), headers.to_string(), body.to_string())
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn the_dashboard_on_a_proxy_route_is_https_only_behind_login_with_a_secure_cookie() {
    let sb = sandbox();
    // One certificate for the app's host and the dashboard's.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["app.test".to_string(), "ops.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let ca = sb.write("certs/site.pem", &cert.pem());
    let key_path = sb.write("certs/site.key", &key.serialize_pem());
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let base_toml = crate::testapp_toml("VERSION = \"v1\"", 1, "20s");

    // Without HTTPS, `check` refuses the route, at its host.
    sb.write(
        "dockhand.toml",
        &format!("{base_toml}\n[dashboard]\nroute = {{ host = \"ops.test\" }}\n"),
    );
    let out = expect(&sb, &["check"], 2);
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let line = base_toml.lines().count() + 3;
    assert!(
        err.contains(&format!("dockhand.toml:{line}:18"))
            && err.contains("only over HTTPS")
            && err.contains("https_listen"),
        "{err}"
    );

    let toml = base_toml.replace(
        "drain_timeout = \"10s\"\n",
        "drain_timeout = \"10s\"\nhttps_listen = \"127.0.0.1:0\"\ncertificates = [{ cert = \"certs/site.pem\", key = \"certs/site.key\" }]\n",
    ) + "\n[dashboard]\nroute = { host = \"ops.test\" }\n";
    sb.write("dockhand.toml", &toml);
    expect(&sb, &["check"], 0);
    let _agent = sb.start_agent();
    let (_, status) = sb.json(&["status"]);
    let https: std::net::SocketAddr = status["agent"]["https_listen"]
        .as_str()
        .unwrap_or_else(|| panic!("status has no https_listen: {status:#}"))
        .parse()
        .unwrap();
    let http = sb.proxy_addr();

    // Plain HTTP never serves it: a redirect to HTTPS, with or without a session.
    let (code, headers, body) = curl_http(&http, "ops.test", "/", None);
    assert_eq!(code, "301", "{headers}\n{body}");
    assert_eq!(
        header(&headers, "location"),
        Some(format!("https://ops.test:{}/", https.port()).as_str()),
        "{headers}"
    );
    // No session: the page that says how to log in, nothing of the app.
    let (code, _, body) = curl_https(https, "ops.test", "/", &ca, None);
    assert_eq!(code, "401", "{body}");
    assert!(!body.contains("web"), "{body}");
    let (code, _, _) = curl_https(https, "ops.test", "/config", &ca, None);
    assert_eq!(code, "401");

    // The login link names the public host; its token opens a session with a Secure cookie.
    let (code, login) = sb.json(&["dashboard", "--no-open"]);
    assert_eq!(code, Some(0), "{login}");
    let route_url = login["route_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no route_url: {login:#}"));
    let prefix = format!("https://ops.test:{}/login?token=", https.port());
    assert!(route_url.starts_with(&prefix), "{route_url}");
    let path = &route_url[prefix.len() - "/login?token=".len()..];
    let (code, headers, _) = curl_https(https, "ops.test", path, &ca, None);
    assert_eq!(code, "303", "{headers}");
    let set_cookie = header(&headers, "set-cookie").unwrap_or_else(|| panic!("{headers}"));
    for attr in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    let session = set_cookie.split(';').next().unwrap().to_string();
    // The token worked once: a second use is refused.
    let (code, _, _) = curl_https(https, "ops.test", path, &ca, None);
    assert_eq!(code, "401");

    let (code, headers, body) = curl_https(https, "ops.test", "/", &ca, Some(&session));
    assert_eq!(code, "200", "{headers}\n{body}");
    assert!(body.contains("/services/web"), "{body}");
    assert!(
        header(&headers, "content-security-policy").is_some(),
        "{headers}"
    );
    let (code, _, _) = curl_http(&http, "ops.test", "/", Some(&session));
    assert_eq!(code, "301");
    // A service's page has the monitor's latest figures, its CPU among them.
    let (code, _, body) = curl_https(https, "ops.test", "/services/web", &ca, Some(&session));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("Now: CPU"), "{body}");

    // The app's own host is unaffected: its own HTTPS redirect, and served over HTTPS.
    let (code, headers, _) = curl_http(&http, "app.test", "/version", None);
    assert_eq!(code, "301", "{headers}");
    assert_eq!(
        header(&headers, "location"),
        Some(format!("https://app.test:{}/version", https.port()).as_str())
    );
    let (code, _, body) = curl_https(https, "app.test", "/version", &ca, None);
    assert_eq!((code.as_str(), body.as_str()), ("200", "v1"));
}
