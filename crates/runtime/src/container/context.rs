//! The build context as a tar archive, the way the Docker CLI sends it: every file under the
//! context directory except what `.dockerignore` excludes (Go `filepath.Match` patterns with
//! `**`, `!` exceptions, the last matching line wins, a pattern excluding a directory excludes
//! what is in it), and always the Dockerfile and `.dockerignore` themselves.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// The name under which a Dockerfile from outside the context is added.
const OUTSIDE_DOCKERFILE: &str = ".dockhand.Dockerfile";

/// The archive and the Dockerfile's path inside it.
pub(crate) fn context_tar(
    context: &Path,
    dockerfile: Option<&Path>,
) -> io::Result<(Vec<u8>, String)> {
    let ignore = match fs::read_to_string(context.join(".dockerignore")) {
        Ok(text) => DockerIgnore::parse(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(e),
    };
    let dockerfile_path = match dockerfile {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => context.join(p),
        None => context.join("Dockerfile"),
    };
    if !dockerfile_path.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "Dockerfile {} does not exist: create it or fix `build.dockerfile`",
                dockerfile_path.display()
            ),
        ));
    }
    let inside = dockerfile_path.strip_prefix(context).ok().map(slash_path);
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    let always: Vec<String> = [Some(".dockerignore".to_string()), inside.clone()]
        .into_iter()
        .flatten()
        .collect();
    walk(context, Path::new(""), &ignore, &always, &mut builder)?;
    let name = match inside {
        Some(rel) => rel,
        None => {
            builder.append_path_with_name(&dockerfile_path, OUTSIDE_DOCKERFILE)?;
            OUTSIDE_DOCKERFILE.to_string()
        }
    };
    Ok((builder.into_inner()?, name))
}

fn walk(
    root: &Path,
    rel: &Path,
    ignore: &DockerIgnore,
    always: &[String],
    builder: &mut tar::Builder<Vec<u8>>,
) -> io::Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let child_rel = rel.join(entry.file_name());
        let name = slash_path(&child_rel);
        let file_type = entry.file_type()?;
        let excluded = ignore.excludes(&name) && !always.contains(&name);
        if file_type.is_dir() {
            if excluded && !ignore.has_exceptions() {
                continue;
            }
            if !excluded {
                builder.append_dir(&name, entry.path())?;
            }
            walk(root, &child_rel, ignore, always, builder)?;
        } else if !excluded {
            builder.append_path_with_name(entry.path(), &name)?;
        }
    }
    Ok(())
}

fn slash_path(p: &Path) -> String {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The patterns of a `.dockerignore`.
#[derive(Default)]
pub(crate) struct DockerIgnore {
    patterns: Vec<(GlobMatcher, bool)>,
}

impl DockerIgnore {
    pub(crate) fn parse(text: &str) -> DockerIgnore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negated, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = slash_path(&PathBuf::from(pattern.trim_start_matches('/')));
            if cleaned.is_empty() {
                continue;
            }
            match GlobBuilder::new(&cleaned).literal_separator(true).build() {
                Ok(glob) => patterns.push((glob.compile_matcher(), negated)),
                Err(err) => {
                    tracing::warn!(pattern = line, error = %err, "ignoring invalid .dockerignore pattern")
                }
            }
        }
        DockerIgnore { patterns }
    }

    fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(_, negated)| *negated)
    }

    /// Whether the context-relative, `/`-separated path is excluded.
    pub(crate) fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for (glob, negated) in &self.patterns {
            if matches_or_parent(glob, path) {
                excluded = !negated;
            }
        }
        excluded
    }
}

fn matches_or_parent(glob: &GlobMatcher, path: &str) -> bool {
    if glob.is_match(path) {
        return true;
    }
    let mut prefix = path;
    while let Some(i) = prefix.rfind('/') {
        prefix = &prefix[..i];
        if glob.is_match(prefix) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_semantics() {
        let ig = DockerIgnore::parse(
            "# comment\n\ntarget\n*.log\n!keep.log\n**/node_modules\n/secret.txt\ndocs/*.md\n!docs/README.md\n",
        );
        assert!(ig.excludes("target"));
        assert!(ig.excludes("target/debug/x"));
        assert!(
            !ig.excludes("src/target"),
            "patterns are anchored at the root"
        );
        assert!(ig.excludes("a.log"));
        assert!(!ig.excludes("keep.log"));
        assert!(!ig.excludes("sub/a.log"), "* does not cross /");
        assert!(ig.excludes("web/node_modules/x/y.js"));
        assert!(ig.excludes("secret.txt"));
        assert!(ig.excludes("docs/guide.md"));
        assert!(!ig.excludes("docs/README.md"));
        assert!(!ig.excludes("src/main.rs"));
    }

    #[test]
    fn tar_respects_dockerignore_but_keeps_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(d.join(".dockerignore"), "Dockerfile\nsecret\n*.tmp\n").unwrap();
        fs::write(d.join("secret"), "x").unwrap();
        fs::write(d.join("a.tmp"), "x").unwrap();
        fs::create_dir(d.join("src")).unwrap();
        fs::write(d.join("src/app.txt"), "hello").unwrap();
        let (bytes, name) = context_tar(d, None).unwrap();
        assert_eq!(name, "Dockerfile");
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "src", "src/app.txt"]);
    }
}
