//! The bundled example app, embedded in the binary so `dockhand up` works from anywhere with
//! nothing but the binary and Python 3 (for its API; the page is static files).

use std::path::Path;

use anyhow::Context as _;
use dockhand_backup::crypto::ExposeSecret as _;

/// `(path relative to the app directory, contents)`.
const FILES: &[(&str, &str)] = &[
    (
        "dockhand.toml",
        include_str!("../../../examples/hello/dockhand.toml"),
    ),
    (
        "api/app.py",
        include_str!("../../../examples/hello/api/app.py"),
    ),
    (
        "web/static/index.html",
        include_str!("../../../examples/hello/web/static/index.html"),
    ),
    (
        "web/static/app.js",
        include_str!("../../../examples/hello/web/static/app.js"),
    ),
    (
        "web/static/style.css",
        include_str!("../../../examples/hello/web/static/style.css"),
    ),
];

/// Where the example's `[backups] recipients` gets the public key of the pair made for it.
const RECIPIENT_MARKER: &str = "@BACKUP_RECIPIENT@";
/// The example's backup identity, relative to its directory (as its dockhand.toml names it).
const IDENTITY: &str = ".dockhand/backup.key";

/// Writes the example into `dir` unless it is already there (so edits made to try a deploy
/// survive a restart of `dockhand up`), with a fresh age key pair for its backups: the
/// identity at `.dockhand/backup.key` (mode 0600), its public key in `dockhand.toml`.
pub fn extract(dir: &Path) -> anyhow::Result<()> {
    if dir.join("dockhand.toml").exists() {
        return Ok(());
    }
    let (identity, recipient) = dockhand_backup::crypto::generate();
    for (rel, contents) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create {}", parent.display()))?;
        }
        let contents = contents.replace(RECIPIENT_MARKER, &recipient);
        std::fs::write(&path, contents)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    let key = dir.join(IDENTITY);
    if let Some(parent) = key.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    crate::private_file::create(&key, identity.expose_secret().as_bytes())
        .with_context(|| format!("failed to write {}", key.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_extracted_example_passes_check_with_its_own_key_pair() {
        let dir = tempfile::tempdir().unwrap();
        super::extract(dir.path()).unwrap();
        let toml = std::fs::read_to_string(dir.path().join("dockhand.toml")).unwrap();
        assert!(!toml.contains(super::RECIPIENT_MARKER), "{toml}");
        let key = dir.path().join(super::IDENTITY);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = dockhand_config::load(
            &dir.path().join("dockhand.toml"),
            &dockhand_config::LoadOptions::default(),
        )
        .unwrap();
        let backups = loaded.config.backups.expect("the example has [backups]");
        let identity = std::fs::read_to_string(&key).unwrap();
        assert!(
            identity.contains(&format!("public key: {}", backups.recipients[0])),
            "the identity file is the pair of the recipient in dockhand.toml"
        );
    }
}
