//! A full disk: a deploy that cannot record its release fails clearly, the running release
//! keeps serving, and deploys work again once space is freed; a deploy whose copy of the
//! project fills the disk fails the same way and leaves no partial copy; a backup whose
//! database snapshot fills the state directory's disk fails, leaves no partial object or
//! scratch file, and the last good backup stays whole. (A backup filling its target's disk:
//! `backups/failures.rs`.)

use std::process::Command;

use crate::backups::{entries, keygen};
use crate::crash::http_get;
use crate::{expect, sandbox, show, testapp_toml};

/// A small tmpfs mounted over a directory, unmounted on drop.
pub(crate) struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    pub(crate) fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it and needs root (or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir.to_path_buf())
    }

    /// Writes a file until the disk is full.
    pub(crate) fn fill(&self) -> std::path::PathBuf {
        let path = self.0.join("filler");
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", path.display()))
            .output();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_deploy_cleanly_and_the_release_keeps_serving() {
    let sb = sandbox();
    let disk = SmallDisk::mount(&sb.state_dir(), "8M");
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v1\"", 1, "20s"));
    let mut agent = sb.start_agent();
    let addr = sb.proxy_addr();

    let filler = disk.fill();
    sb.write("dockhand.toml", &testapp_toml("VERSION = \"v2\"", 1, "20s"));
    let out = expect(&sb, &["deploy"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("full"), "the error names the cause: {err}");
    assert!(!err.contains("bug"), "a full disk is not a bug: {err}");
    assert_eq!(http_get(&addr, "app.test", "/version"), "v1");

    std::fs::remove_file(filler).unwrap();
    expect(&sb, &["deploy"], 0);
    assert_eq!(http_get(&addr, "app.test", "/version"), "v2");
    agent.terminate();
}

/// Writes `n` bytes that do not compress.
fn random_bytes(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes
}

/// What takes space on the disk at `dir`, in KiB (`du`).
fn used_kib(dir: &std::path::Path) -> u64 {
    let out = Command::new("du").arg("-sk").arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_deploy_whose_project_copy_fills_the_disk_fails_cleanly_and_the_old_release_serves() {
    let sb = sandbox();
    let _disk = SmallDisk::mount(&sb.state_dir(), "8M");
    // Each release runs from its own copy of the project.
    let pinned = |v: &str| {
        testapp_toml(&format!("VERSION = \"{v}\""), 1, "20s")
            .replace("app = \"it\"", "app = \"it\"\npin_code = true")
    };
    sb.write("dockhand.toml", &pinned("v1"));
    let mut agent = sb.start_agent();
    let addr = sb.proxy_addr();
    let (_, releases) = sb.json(&["releases"]);
    let before = releases.as_array().unwrap().len();
    let releases_dir = sb.state_dir().join("releases");
    let copies = entries(&releases_dir);

    // 12 MiB in the project: the release's copy of it cannot fit on the 8 MiB disk.
    std::fs::write(sb.path().join("assets.bin"), random_bytes(12 << 20)).unwrap();
    sb.write("dockhand.toml", &pinned("v2"));
    let out = expect(&sb, &["deploy"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("disk holding the state directory is full"),
        "the error names the cause and what to do: {err}"
    );
    assert!(!err.contains("bug"), "a full disk is not a bug: {err}");
    assert_eq!(http_get(&addr, "app.test", "/version"), "v1");
    let (_, status) = sb.json(&["status"]);
    assert_eq!(status["current_release"]["id"], 1, "{status:#}");
    // No partial copy is left to fill the disk for the next deploy.
    assert_eq!(entries(&releases_dir), copies, "{}", show(&out));
    let (_, releases) = sb.json(&["releases"]);
    let releases = releases.as_array().unwrap();
    assert!(
        releases.len() <= before + 1
            && releases
                .iter()
                .all(|r| r["id"] == 1 || r["status"] == "failed"),
        "{releases:#?}"
    );

    std::fs::remove_file(sb.path().join("assets.bin")).unwrap();
    expect(&sb, &["deploy"], 0);
    assert_eq!(http_get(&addr, "app.test", "/version"), "v2");
    agent.terminate();
}

#[test]
fn a_backup_whose_snapshot_fills_the_state_disk_fails_and_the_last_good_backup_stays() {
    let sb = sandbox();
    let (key, recipient) = keygen(&sb);
    let _disk = SmallDisk::mount(&sb.state_dir(), "8M");
    let db = sb.path().join("data/app.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let sqlite = |sql: &str| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()",
            ])
            .arg(&db)
            .arg(sql)
            .output()
            .expect("python3 is installed");
        assert!(out.status.success(), "{}", show(&out));
    };
    sqlite("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB); INSERT INTO blobs (data) VALUES (x'00');");
    let app = "diskbk";
    sb.write(
        "dockhand.toml",
        &format!(
            "{}\n[backups]\nrecipients = [\"{recipient}\"]\nidentity = \"{key}\"\nsqlite = {{ main = \"data/app.db\" }}\n\n[backups.targets.local]\ndir = \"backups\"\n",
            testapp_toml("VERSION = \"v1\"", 1, "20s").replace("app = \"it\"", &format!("app = \"{app}\"")),
            key = key.display()
        ),
    );
    let _agent = sb.start_agent();
    let (code, first) = sb.json(&["backup", "run"]);
    assert_eq!(code, Some(0), "{first}");
    let first = first["id"].as_str().unwrap().to_string();
    let target = sb.path().join("backups").join(app);
    let kept = entries(&target);
    let scratch = sb.state_dir().join("backup-scratch");
    let scratch_before = used_kib(&scratch);

    // 12 MiB of rows: the snapshot staged in the state directory cannot fit on its 8 MiB disk.
    sqlite("INSERT INTO blobs (data) VALUES (randomblob(12582912));");
    let out = sb.run(&["backup", "run"]);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("full"),
        "the error names the cause: {}",
        show(&out)
    );
    assert!(!err.contains("bug"), "a full disk is not a bug: {err}");

    // Nothing of the failed backup reached the target, and its scratch copy is gone.
    assert_eq!(entries(&target), kept);
    assert!(
        used_kib(&scratch) <= scratch_before,
        "a scratch file is left: {:?} ({} KiB, {scratch_before} KiB before)",
        entries(&scratch),
        used_kib(&scratch)
    );
    let (_, list) = sb.json(&["backup", "list"]);
    let list = list.as_array().unwrap().clone();
    assert!(
        list.iter()
            .any(|b| b["id"] == first.as_str() && b["state"] == "complete"),
        "{list:#?}"
    );
    assert!(
        list.iter()
            .all(|b| b["id"] == first.as_str() || b["state"] == "failed"),
        "{list:#?}"
    );
    // The last good backup is whole: its drill passes.
    let (code, drill) = sb.json(&["backup", "verify", &first]);
    assert_eq!(code, Some(0), "{drill}");
}
