//! A full disk: a deploy that cannot record its release fails clearly, the running release
//! keeps serving, and deploys work again once space is freed.

use std::process::Command;

use crate::crash::http_get;
use crate::{expect, sandbox, testapp_toml};

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
