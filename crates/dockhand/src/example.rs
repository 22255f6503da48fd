//! The bundled example app, embedded in the binary so `dockhand up` works from anywhere with
//! nothing but the binary and Python 3.

use std::path::Path;

use anyhow::Context as _;

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
        "web/serve.py",
        include_str!("../../../examples/hello/web/serve.py"),
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

/// Writes the example into `dir` unless it is already there (so edits made to try a deploy
/// survive a restart of `dockhand up`).
pub fn extract(dir: &Path) -> anyhow::Result<()> {
    if dir.join("dockhand.toml").exists() {
        return Ok(());
    }
    for (rel, contents) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}
