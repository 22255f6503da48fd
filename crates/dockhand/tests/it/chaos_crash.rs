//! The crash points outside the deploy executor: kill -9 of the agent at each named point of a
//! certificate renewal (`DOCKHAND_CRASH_AFTER=<point>@certs`: the order finalized, the new
//! certificate stored, the new certificate served) and of a GitOps update (`<point>@update`:
//! the commit fetched, the checkout moved, the deploy committed its release, the deploy
//! succeeded), then a restart, and the invariant checked: a certificate old or new served and
//! the same one on disk, with no order placed by the restart; exactly one release serving, the
//! update retried once or recorded once. ARCHITECTURE.md lists the points beside the executor.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use dockhand_test_support::pebble::PebbleOptions;
use dockhand_test_support::{wait_until, Sandbox};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::acme::{client, events, https_addr, row, site, wait_valid, Conn, A, B};
use crate::revisions::{answer, git, APP};
use crate::{sandbox, show};

/// The serial of the first certificate of the PEM bundle at `path`.
fn serial_on_disk(path: &Path) -> String {
    let pem = std::fs::read(path).unwrap();
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .expect("a certificate in the bundle")
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.tbs_certificate.raw_serial_as_string()
}

/// Issues the certificate of A and B, then renews it by hand with the agent set to kill
/// itself at `point`; starts it again and checks what is served. `renewed`: whether the new
/// certificate had reached the disk at the point.
fn renewal_killed_at(point: &str, renewed: bool) {
    let s = site("challenge = \"http-01\"", PebbleOptions::default());
    let mut agent = s.sb.start_agent();
    wait_valid(&s.sb, &[A, B], Duration::from_secs(90));
    let config = client(&s.pebble.root_pem());
    let old = Conn::open(&config, https_addr(&s), A).unwrap().serial();
    let bundle = s.sb.state_dir().join("certs/acme/shop-it.dev/bundle.pem");
    assert_eq!(serial_on_disk(&bundle), old);
    agent.terminate();

    let crash = format!("{point}@certs");
    let mut agent =
        s.sb.start_agent_with_env(&[("DOCKHAND_CRASH_AFTER", crash.as_str())]);
    let out = s.sb.run(&["certs", "renew", A]);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let ended = agent.wait_exit(Duration::from_secs(90));
    assert_eq!(
        ended.signal(),
        Some(9),
        "killed at `{point}`: {}",
        agent.output()
    );
    let orders = s.pebble.orders();
    assert_eq!(
        orders,
        2,
        "the renewal placed its order: {}",
        s.pebble.log()
    );

    let _agent = s.sb.start_agent();
    wait_valid(&s.sb, &[A, B], Duration::from_secs(30));
    let on_disk = serial_on_disk(&bundle);
    for host in [A, B] {
        let mut conn = Conn::open(&config, https_addr(&s), host).expect("verified TLS");
        assert_eq!(conn.serial(), on_disk, "{host} is served what is stored");
        assert_eq!(conn.get(host, "/").unwrap(), (200, host.to_string()));
    }
    if renewed {
        assert_ne!(on_disk, old, "the stored renewal serves after the restart");
    } else {
        assert_eq!(on_disk, old, "the old certificate keeps serving");
    }
    let a = row(&s.sb, A);
    assert_eq!(a["state"], "valid", "{a}");
    // The restart placed no order: what is on disk is valid and not due.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.pebble.orders(), orders, "{}", events(&s.sb));

    // And the next renewal works.
    crate::expect(&s.sb, &["certs", "renew", A], 0);
    let renewed_now = Conn::open(&config, https_addr(&s), A).unwrap().serial();
    assert_ne!(renewed_now, on_disk);
    assert_eq!(serial_on_disk(&bundle), renewed_now);
}

#[test]
fn kill_9_after_a_renewal_order_is_finalized_keeps_the_old_certificate() {
    renewal_killed_at("finalized", false);
}

#[test]
fn kill_9_after_a_renewed_certificate_is_stored_serves_it_after_restart() {
    renewal_killed_at("stored", true);
}

#[test]
fn kill_9_after_a_renewed_certificate_is_served_serves_it_after_restart() {
    renewal_killed_at("served", true);
}

const UPDATE_TOML: &str = r#"app = "it"

[proxy]
listen = "127.0.0.1:0"
drain_timeout = "5s"

[services.web]
command = "python3 app.py"
port = 8000
health = { path = "/", interval = "100ms", timeout = "5s", healthy_threshold = 1, unhealthy_threshold = 3, deploy_timeout = "20s" }
route = { host = "app.test", path = "/" }
stop_timeout = "5s"

[update]
git = { branch = "main" }
poll = "1s"
"#;

/// A bare remote, a work clone pushing to it, and the sandbox's project as a clone of it
/// (answering "one"); returns the temporary directory and the work clone.
fn followed_remote(sb: &Sandbox) -> (tempfile::TempDir, std::path::PathBuf) {
    let remotes = tempfile::tempdir().unwrap();
    let bare = remotes.path().join("app.git");
    let work = remotes.path().join("work");
    git(
        remotes.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(
        remotes.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    std::fs::write(work.join(".gitignore"), ".dockhand/\nagent-*.log\n").unwrap();
    std::fs::write(work.join("dockhand.toml"), UPDATE_TOML).unwrap();
    std::fs::write(work.join("app.py"), APP.replace("{answer}", "one")).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let clone = remotes.path().join("clone");
    git(
        remotes.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    for entry in std::fs::read_dir(&clone).unwrap().flatten() {
        std::fs::rename(entry.path(), sb.path().join(entry.file_name())).unwrap();
    }
    (remotes, work)
}

/// Starts the agent with the crash point `crash` set, pushes a new commit, waits for the
/// kill, starts the agent again and checks that the new commit ends up serving as exactly one
/// release, recorded once as deployed, with no other release left pending or failed.
fn update_killed_at(crash: &str) {
    let sb = sandbox();
    let (_remotes, work) = followed_remote(&sb);
    let mut agent = sb.start_agent_with_env(&[("DOCKHAND_CRASH_AFTER", crash)]);
    let addr = sb.proxy_addr();
    assert_eq!(answer(&addr), "one");

    std::fs::write(work.join("app.py"), APP.replace("{answer}", "two")).unwrap();
    git(&work, &["commit", "-q", "-am", "second"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let two = git(&work, &["rev-parse", "HEAD"]);
    let ended = agent.wait_exit(Duration::from_secs(90));
    assert_eq!(
        ended.signal(),
        Some(9),
        "killed at `{crash}`: {}",
        agent.output()
    );

    let _agent = sb.start_agent();
    let addr = sb.proxy_addr();
    wait_until("the new commit to serve", Duration::from_secs(60), || {
        answer(&addr) == "two"
    });
    wait_until(
        "a poll that finds it serving",
        Duration::from_secs(30),
        || sb.json(&["update", "status"]).1["last_check"]["result"] == "unchanged",
    );
    let (_, st) = sb.json(&["update", "status"]);
    assert_eq!(st["current_revision"], format!("git:{two}"), "{st:#}");
    assert!(
        st["failed"].as_array().is_none_or(|f| f.is_empty()),
        "nothing recorded as failed: {st:#}"
    );
    let (_, releases) = sb.json(&["releases"]);
    let releases = releases.as_array().unwrap().clone();
    let of = |status: &str| releases.iter().filter(|r| r["status"] == status).count();
    assert_eq!(of("current"), 1, "{releases:#?}");
    assert_eq!(of("pending"), 0, "{releases:#?}");
    assert_eq!(of("failed"), 0, "{releases:#?}");
    assert_eq!(
        releases
            .iter()
            .filter(|r| r["revision"] == format!("git:{two}").as_str())
            .count(),
        1,
        "the commit deployed as one release: {releases:#?}"
    );
    assert_eq!(git(sb.path(), &["rev-parse", "HEAD"]), two);
    let (_, events) = sb.json(&["events", "-n", "500"]);
    let updated = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["kind"] == "update"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&format!("updated to {}", &two[..12])))
        })
        .count();
    assert!(
        updated <= 1,
        "the update is reported once at most: {events:#}"
    );
}

#[test]
fn kill_9_after_an_update_fetched_the_commit_retries_it_once() {
    update_killed_at("fetched@update");
}

#[test]
fn kill_9_after_an_update_moved_the_checkout_retries_it_once() {
    update_killed_at("checked-out@update");
}

#[test]
fn kill_9_after_an_update_deploy_committed_serves_the_commit_once() {
    // The deploy executor's own point: release 2 (the update's) committed.
    update_killed_at("commit@2");
}

#[test]
fn kill_9_after_an_update_deployed_records_it_once() {
    update_killed_at("deployed@update");
}
