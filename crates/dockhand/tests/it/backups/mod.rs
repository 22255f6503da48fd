//! Backups judged by restores, through the real binary: every source kind round-trips (seed →
//! backup → change → restore → the data equals the backed-up state), drills catch damage, the
//! failures the issue names (a full target disk, an unreachable S3 server, a wrong database
//! password, the agent killed mid-backup, a run missed while the agent was down) are seen, and
//! a new server comes back from the target with `restore --app`.

mod engines;
mod failures;
mod files;
mod mariadb;
mod mongodb;
mod pitr;
mod postgres;
mod restore_crash;

use dockhand_test_support::Sandbox;

/// Makes an age key pair with `dockhand backup keygen` in the sandbox: (identity file,
/// recipient).
pub fn keygen(sb: &Sandbox) -> (std::path::PathBuf, String) {
    let key = sb.path().join("backup.key");
    let (code, made) = sb.json(&["backup", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{made}");
    (key, made["recipient"].as_str().unwrap().to_string())
}

/// Writes the secrets file (mode 0600).
pub fn secrets(sb: &Sandbox, text: &str) {
    let path = sb.write(".dockhand/secrets.env", text);
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
}

/// The events the agent recorded, as one text.
pub fn events(sb: &Sandbox) -> String {
    let (_, events) = sb.json(&["events", "-n", "500"]);
    events.to_string()
}

/// Names of the entries of a directory (empty if it does not exist).
pub fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A process service (the testapp) so a release serves, plus `rest` (the `[backups]` table).
pub fn process_app(app: &str, rest: &str) -> String {
    let base = crate::testapp_toml("VERSION = \"v1\"", 1, "20s")
        .replace("app = \"it\"", &format!("app = \"{app}\""));
    format!("{base}\n{rest}")
}
