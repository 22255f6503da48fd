//! Syncing a project directory to a server: both sides list their files with a SHA-256 each
//! ([`scan`]), the client sends only what differs ([`diff`], pure) as one zstd-compressed tar
//! ([`pack`]) whose first entry says what to delete, and the server applies it ([`receive`]):
//! each file written beside its place and renamed over it, with its mode (the secrets file
//! stays 0600). Local state (`.dockhand/` but the secrets file), `.git/` and what
//! `.dockhandignore` lists stay home.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The name of the first tar entry: the [`SyncPlan`]'s deletions.
const PLAN_ENTRY: &str = ".dockhand-sync.json";
/// The ignore file at the project's root (one glob a line, `#` comments).
pub const IGNORE_FILE: &str = ".dockhandignore";

/// One regular file of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    pub sha256: String,
}

/// What to send and what to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPlan {
    pub send: Vec<Entry>,
    pub delete: Vec<String>,
}

impl SyncPlan {
    pub fn is_empty(&self) -> bool {
        self.send.is_empty() && self.delete.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.send.iter().map(|e| e.size).sum()
    }
}

/// What the server did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub written: usize,
    pub deleted: usize,
}

/// Which paths stay home.
pub struct Ignore {
    globs: GlobSet,
    /// Relative paths kept even inside an ignored directory (the secrets file).
    keep: Vec<String>,
}

impl Ignore {
    /// The defaults (`.git`, `.dockhand`) plus `.dockhandignore` of `root`, keeping `keep`.
    pub fn for_project(root: &Path, keep: &[String]) -> io::Result<Ignore> {
        let text = match fs::read_to_string(root.join(IGNORE_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        Ignore::new(&text, keep)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{IGNORE_FILE}: {e}")))
    }

    /// Ignores nothing (the server lists its whole copy).
    pub fn nothing() -> Ignore {
        Ignore {
            globs: GlobSet::empty(),
            keep: Vec::new(),
        }
    }

    /// From the text of an ignore file: a pattern matches the path or any of its parents;
    /// one without `/` matches a name at any depth.
    pub fn new(text: &str, keep: &[String]) -> Result<Ignore, globset::Error> {
        let mut b = GlobSetBuilder::new();
        for pattern in [".git", ".dockhand"]
            .into_iter()
            .chain(text.lines().map(str::trim))
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let p = pattern.trim_start_matches('/').trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            b.add(Glob::new(p)?);
            if !pattern.contains('/') {
                b.add(Glob::new(&format!("**/{p}"))?);
            }
        }
        Ok(Ignore {
            globs: b.build()?,
            keep: keep.to_vec(),
        })
    }

    /// Whether `rel` (a `/`-separated relative path) stays home.
    pub fn ignores(&self, rel: &str) -> bool {
        if self.keep.iter().any(|k| k == rel) {
            return false;
        }
        let mut prefix = String::new();
        for part in rel.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.globs.is_match(&prefix) {
                return true;
            }
        }
        false
    }

    /// Whether a directory may hold a kept file (so the walk goes into it).
    fn holds_kept(&self, rel_dir: &str) -> bool {
        self.keep
            .iter()
            .any(|k| k.starts_with(&format!("{rel_dir}/")))
    }
}

/// Every regular file under `root` that `ignore` lets through, sorted by path. Symbolic links
/// are not followed (and not sent).
pub fn scan(root: &Path, ignore: &Ignore) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    walk(root, root, ignore, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, ignore: &Ignore, out: &mut Vec<Entry>) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for entry in names {
        let path = entry.path();
        let Some(rel) = relative(root, &path) else {
            continue;
        };
        if rel == PLAN_ENTRY || rel.starts_with(".dockhand-sync.") {
            continue;
        }
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            if !ignore.ignores(&rel) || ignore.holds_kept(&rel) {
                walk(root, &path, ignore, out)?;
            }
        } else if meta.is_file() && !ignore.ignores(&rel) {
            out.push(Entry {
                path: rel,
                size: meta.len(),
                mode: meta.permissions().mode() & 0o7777,
                sha256: sha256_file(&path)?,
            });
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<&str> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    Some(parts.join("/"))
}

pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// What to send so that `remote` becomes `local`. Pure.
pub fn diff(local: &[Entry], remote: &[Entry]) -> SyncPlan {
    let there: BTreeMap<&str, &Entry> = remote.iter().map(|e| (e.path.as_str(), e)).collect();
    let here: BTreeMap<&str, &Entry> = local.iter().map(|e| (e.path.as_str(), e)).collect();
    SyncPlan {
        send: local
            .iter()
            .filter(|e| {
                there
                    .get(e.path.as_str())
                    .is_none_or(|r| r.sha256 != e.sha256 || r.mode != e.mode)
            })
            .cloned()
            .collect(),
        delete: remote
            .iter()
            .filter(|e| !here.contains_key(e.path.as_str()))
            .map(|e| e.path.clone())
            .collect(),
    }
}

/// Writes the compressed tar of `plan` (files read from `root`) to `out`.
pub fn pack(root: &Path, plan: &SyncPlan, out: impl Write) -> io::Result<()> {
    let enc = zstd::Encoder::new(out, 3)?;
    let mut tar = tar::Builder::new(enc);
    let deletions = serde_json::to_vec(&plan.delete)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(deletions.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(&mut header, PLAN_ENTRY, deletions.as_slice())?;
    for e in &plan.send {
        let mut file = fs::File::open(root.join(&e.path))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(file.metadata()?.len());
        header.set_mode(e.mode);
        header.set_cksum();
        tar.append_data(&mut header, &e.path, &mut file)?;
    }
    tar.into_inner()?.finish()?.flush()
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Synced {
    pub files: usize,
    pub deleted: usize,
    /// Bytes sent over SSH (compressed).
    pub bytes_sent: u64,
}

impl Synced {
    pub fn describe(&self) -> String {
        if self.files == 0 && self.deleted == 0 {
            "project files up to date".into()
        } else {
            format!(
                "project: {} file(s) sent, {} deleted ({} bytes over SSH)",
                self.files, self.deleted, self.bytes_sent
            )
        }
    }
}

/// Files that may hold secrets or settings (`dockhand.toml`, `.env`, the secrets file): they
/// arrive with mode 0600, whatever their mode here, readable by the agent's user alone.
pub fn private_files(keep: &[String]) -> Vec<String> {
    let mut out = vec!["dockhand.toml".to_string(), ".env".to_string()];
    out.extend(keep.iter().cloned());
    out
}

/// Sets the mode of the entries named in `private` to 0600.
pub fn restrict(entries: &mut [Entry], private: &[String]) {
    for e in entries.iter_mut() {
        if private.contains(&e.path) {
            e.mode = 0o600;
        }
    }
}

/// The sync plan of `root` against the server's copy (listed by `manifest`).
pub fn compare(
    session: &crate::Session,
    root: &Path,
    keep: &[String],
    manifest: &str,
) -> Result<SyncPlan, crate::RemoteError> {
    use crate::RemoteError;
    use std::time::Duration;
    let ignore = Ignore::for_project(root, keep)
        .map_err(|e| RemoteError::local(format!("cannot read {IGNORE_FILE}"), "fix the file", e))?;
    let mut local = scan(root, &ignore).map_err(|e| {
        RemoteError::local(
            format!("cannot list {}", root.display()),
            "check the project's permissions",
            e,
        )
    })?;
    restrict(&mut local, &private_files(keep));
    let out = session.run_ok(
        "listing the project on the server",
        manifest,
        None,
        Duration::from_secs(120),
        "is the server set up? run `dockhand setup` first",
    )?;
    let remote: Vec<Entry> = serde_json::from_slice(&out.stdout).map_err(|e| {
        RemoteError::refused(
            format!("the server's answer to the project listing is not understood: {e}"),
            "run `dockhand setup` again to install this version of dockhand there",
        )
    })?;
    Ok(diff(&local, &remote))
}

/// Syncs `root` (less what `.dockhandignore` and the defaults leave home, keeping `keep`) to
/// the server: `manifest` and `receive` are the server's commands that list and apply.
pub fn push(
    session: &crate::Session,
    root: &Path,
    keep: &[String],
    manifest: &str,
    receive: &str,
) -> Result<Synced, crate::RemoteError> {
    use crate::RemoteError;
    use std::io::Seek;
    use std::time::Duration;
    let plan = compare(session, root, keep, manifest)?;
    if plan.is_empty() {
        return Ok(Synced {
            files: 0,
            deleted: 0,
            bytes_sent: 0,
        });
    }
    let tmp_err = |e| {
        RemoteError::local(
            "cannot pack the project",
            "check $TMPDIR and the project's files",
            e,
        )
    };
    let mut file = tempfile::tempfile().map_err(tmp_err)?;
    {
        let mut writer = io::BufWriter::new(&mut file);
        pack(root, &plan, &mut writer).map_err(tmp_err)?;
        writer.flush().map_err(tmp_err)?;
    }
    file.rewind().map_err(tmp_err)?;
    let (_, sent) = session.run_streaming(
        "writing the project on the server",
        receive,
        file,
        Duration::from_secs(30 * 60),
    )?;
    Ok(Synced {
        files: plan.send.len(),
        deleted: plan.delete.len(),
        bytes_sent: sent,
    })
}

/// Applies a packed plan read from `input` to `dir` (created if needed).
pub fn receive(dir: &Path, input: impl Read) -> io::Result<Received> {
    fs::create_dir_all(dir)?;
    let dec = zstd::Decoder::new(input)?;
    let mut archive = tar::Archive::new(dec);
    let mut report = Received::default();
    let mut deletions: Option<Vec<String>> = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if deletions.is_none() {
            if name != PLAN_ENTRY {
                return Err(invalid(format!(
                    "the sync archive starts with {name}, not its plan"
                )));
            }
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            deletions = Some(serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?);
            continue;
        }
        let rel = safe_relative(&name)?;
        let target = dir.join(&rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let mode = entry.header().mode()? & 0o7777;
        let tmp = target.with_file_name(format!(
            ".dockhand-sync.{}.tmp",
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("file")
        ));
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            if let Err(e) = io::copy(&mut entry, &mut f).and_then(|_| f.sync_all()) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        fs::rename(&tmp, &target)?;
        report.written += 1;
    }
    for rel in deletions.unwrap_or_default() {
        let rel = safe_relative(&rel)?;
        match fs::remove_file(dir.join(&rel)) {
            Ok(()) => report.deleted += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

use std::os::unix::fs::OpenOptionsExt;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A relative path with no `..`, no root and no empty name.
fn safe_relative(name: &str) -> io::Result<PathBuf> {
    let p = Path::new(name);
    let ok = !name.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p.to_path_buf())
    } else {
        Err(invalid(format!(
            "refusing the path `{name}` (outside the project)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, sha: &str, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            size: 1,
            mode,
            sha256: sha.into(),
        }
    }

    #[test]
    fn diff_sends_changes_and_deletes_what_is_gone() {
        let local = [
            entry("a", "1", 0o644),
            entry("b", "2", 0o755),
            entry("c", "3", 0o600),
        ];
        let remote = [
            entry("a", "1", 0o644),
            entry("b", "2", 0o644),
            entry("d", "4", 0o644),
        ];
        let plan = diff(&local, &remote);
        let sent: Vec<&str> = plan.send.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(sent, ["b", "c"], "a mode change is a change");
        assert_eq!(plan.delete, ["d"]);
        assert!(diff(&local, &local).is_empty());
    }

    #[test]
    fn ignores_state_git_and_listed_paths_but_keeps_the_secrets_file() {
        let ig = Ignore::new(
            "node_modules\n/build/\n*.log\n# comment\n",
            &[".dockhand/secrets.env".into()],
        )
        .unwrap();
        for p in [
            ".git/config",
            ".dockhand/state.db",
            "node_modules/x.js",
            "web/node_modules/y.js",
            "build/out",
            "debug.log",
            "a/b.log",
        ] {
            assert!(ig.ignores(p), "{p}");
        }
        for p in [
            ".dockhand/secrets.env",
            "src/main.py",
            "web/build/out",
            "dockhand.toml",
            ".env",
        ] {
            assert!(!ig.ignores(p), "{p}");
        }
    }

    #[test]
    fn a_project_round_trips_and_a_second_sync_sends_nothing() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let root = src.path();
        fs::write(root.join("dockhand.toml"), "app = \"x\"\n").unwrap();
        fs::create_dir_all(root.join(".dockhand")).unwrap();
        fs::write(root.join(".dockhand/secrets.env"), "TOKEN=s3cret\n").unwrap();
        fs::set_permissions(
            root.join(".dockhand/secrets.env"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        fs::write(root.join(".dockhand/agent.db"), "state").unwrap();
        fs::create_dir_all(root.join("app")).unwrap();
        fs::write(root.join("app/run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("app/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dst.path().join("stale.txt"), "old").unwrap();

        let ignore = Ignore::for_project(root, &[".dockhand/secrets.env".into()]).unwrap();
        let local = scan(root, &ignore).unwrap();
        let paths: Vec<&str> = local.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [".dockhand/secrets.env", "app/run.sh", "dockhand.toml"]
        );
        let everything = Ignore::new("", &[]).unwrap();
        let remote = scan(
            dst.path(),
            &Ignore {
                globs: GlobSet::empty(),
                keep: vec![],
            },
        )
        .unwrap();
        let _ = everything;
        let plan = diff(&local, &remote);
        let mut packed = Vec::new();
        pack(root, &plan, &mut packed).unwrap();
        let got = receive(dst.path(), packed.as_slice()).unwrap();
        assert_eq!(
            got,
            Received {
                written: 3,
                deleted: 1
            }
        );
        let secrets = dst.path().join(".dockhand/secrets.env");
        assert_eq!(fs::read_to_string(&secrets).unwrap(), "TOKEN=s3cret\n");
        assert_eq!(
            fs::metadata(&secrets).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(dst.path().join("app/run.sh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        assert!(!dst.path().join("stale.txt").exists());

        let remote = scan(
            dst.path(),
            &Ignore {
                globs: GlobSet::empty(),
                keep: vec![],
            },
        )
        .unwrap();
        assert!(diff(&local, &remote).is_empty());
    }

    #[test]
    fn settings_and_secrets_arrive_private() {
        let mut entries = vec![
            entry("dockhand.toml", "1", 0o644),
            entry(".env", "2", 0o664),
            entry("app.py", "3", 0o644),
        ];
        restrict(
            &mut entries,
            &private_files(&[".dockhand/secrets.env".into()]),
        );
        let modes: Vec<u32> = entries.iter().map(|e| e.mode).collect();
        assert_eq!(modes, [0o600, 0o600, 0o644]);
    }

    #[test]
    fn receive_refuses_paths_outside_the_project() {
        let dst = tempfile::tempdir().unwrap();
        let mut raw = Vec::new();
        {
            let enc = zstd::Encoder::new(&mut raw, 1).unwrap();
            let mut tar = tar::Builder::new(enc);
            let mut h = tar::Header::new_gnu();
            h.set_size(2);
            h.set_cksum();
            tar.append_data(&mut h, PLAN_ENTRY, b"[]".as_slice())
                .unwrap();
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_cksum();
            // `append_data` refuses `..` itself; write the name by hand as a hostile peer would.
            let name = b"../evil";
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            tar.append(&h, b"x".as_slice()).unwrap();
            tar.into_inner().unwrap().finish().unwrap();
        }
        let err = receive(dst.path(), raw.as_slice()).unwrap_err();
        assert!(err.to_string().contains("outside the project"), "{err}");
        let deletions = {
            let mut raw = Vec::new();
            let plan = SyncPlan {
                send: vec![],
                delete: vec!["/etc/passwd".into()],
            };
            pack(dst.path(), &plan, &mut raw).unwrap();
            raw
        };
        assert!(receive(dst.path(), deletions.as_slice()).is_err());
    }
}
