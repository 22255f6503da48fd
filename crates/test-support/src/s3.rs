//! A real S3-compatible server for tests: moto's server mode (`python3 -m moto.server`, from
//! PyPI's `moto[server]`, which `scripts/test` installs), one per test on a free loopback
//! port, stopped on drop. It speaks S3's REST API (multipart uploads, path-style addressing,
//! signatures accepted from any key) and keeps everything in memory.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The access key the tests use (moto accepts any).
pub const ACCESS_KEY: &str = "dockhand-test-key";
/// The secret key the tests use.
pub const SECRET_KEY: &str = "dockhand-test-secret-0123456789";

/// A running moto server.
pub struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    /// Starts a server and waits until it answers (at most 30 s).
    pub fn start() -> S3Server {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run python3 (install python3)");
        let mut server = S3Server { child, port };
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "moto's S3 server exited with {status}: install it with `python3 -m pip install 'moto[server]'` (scripts/test does)"
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto's S3 server did not listen within 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel, nothing answers.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// Stops the server for good: its port refuses connections from now on.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal the S3 server");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (names: 3 to 63 lowercase letters, digits and `-`).
    pub fn create_bucket(&self, bucket: &str) {
        let out = Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT"])
            .arg(format!("{}/{bucket}", self.endpoint()))
            .output()
            .expect("run curl (install curl)");
        assert!(
            out.status.success(),
            "creating bucket {bucket}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The keys stored under `prefix` in `bucket` (complete objects only: an unfinished
    /// multipart upload is not an object).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = Command::new("curl")
            .args(["-sS", "-f"])
            .arg(format!(
                "{}/{bucket}?list-type=2&max-keys=1000&prefix={prefix}",
                self.endpoint()
            ))
            .output()
            .expect("run curl (install curl)");
        assert!(
            out.status.success(),
            "listing {bucket}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let xml = String::from_utf8_lossy(&out.stdout);
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }

    /// The bytes of one object.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = Command::new("curl")
            .args(["-sS", "-f"])
            .arg(format!("{}/{bucket}/{key}", self.endpoint()))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "reading {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Replaces one object's bytes.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), bytes).expect("write temp file");
        let out = Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT", "--data-binary"])
            .arg(format!("@{}", file.path().display()))
            .arg(format!("{}/{bucket}/{key}", self.endpoint()))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "writing {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl S3Server {
    fn resume_quietly(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.resume_quietly();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
