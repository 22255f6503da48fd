//! One backup carried from a server's target to another machine as a tar stream (the objects
//! as stored: compressed and encrypted, then the manifest last), for `dockhand move`. The
//! receiving side checks every object against the manifest's SHA-256 before the backup
//! counts there, and writes each file beside its place before renaming it: a stream cut
//! short leaves no manifest, so nothing that looks like a backup.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{io, BackupError, Result};
use crate::manifest::{Manifest, MANIFEST};
use crate::target::Target;

/// Writes backup `app`/`id` from the first of `targets` holding its manifest to `out`;
/// `scratch` holds one object at a time (0600, removed) when the target is not a local
/// directory. Returns the manifest sent.
pub async fn export(
    targets: &[Target],
    app: &str,
    id: &str,
    scratch: &Path,
    out: impl Write,
) -> Result<Manifest> {
    let dir = format!("{app}/{id}");
    let mut found = None;
    let mut problems = Vec::new();
    for t in targets {
        match t.get_small(&format!("{dir}/{MANIFEST}")).await {
            Ok(bytes) => {
                found = Some((t, bytes));
                break;
            }
            Err(e) => problems.push(format!("{}: {e}", t.name)),
        }
    }
    let Some((target, manifest_bytes)) = found else {
        return Err(BackupError::usage(format!(
            "backup {id} of app `{app}` is on none of the targets ({})",
            problems.join("; ")
        )));
    };
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        BackupError::restore(format!("the manifest of backup {id} does not read: {e}"))
    })?;
    let mut tar = tar::Builder::new(out);
    let mut sent = std::collections::BTreeSet::new();
    for item in &manifest.items {
        if !sent.insert(item.object.clone()) {
            continue;
        }
        let rel = format!("{dir}/{}", item.object);
        let (path, temporary) = match target.local_file(&rel) {
            Some(p) => (p, false),
            None => {
                std::fs::create_dir_all(scratch)
                    .map_err(|e| io(format_args!("failed to create {}", scratch.display()), e))?;
                let p = scratch.join(format!("transfer-{}", item.object));
                target.download(&rel, &p).await?;
                (p, true)
            }
        };
        let appended = append_file(&mut tar, &path, &rel);
        if temporary {
            let _ = std::fs::remove_file(&path);
        }
        appended?;
    }
    append_bytes(&mut tar, &format!("{dir}/{MANIFEST}"), &manifest_bytes)?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| io("failed to write the backup stream", e))?;
    Ok(manifest)
}

/// What [`import`] wrote.
#[derive(Debug, Clone)]
pub struct Imported {
    pub manifest: Manifest,
    /// The backup's directory (`dir/app/id`).
    pub path: PathBuf,
}

/// Reads a stream [`export`] wrote into `dir` (a local target's layout: `app/id/object`),
/// checking each object's SHA-256 against the manifest. On any failure the backup's
/// directory is removed.
pub fn import(input: impl Read, dir: &Path) -> Result<Imported> {
    let mut place: Option<(String, String)> = None;
    let mut written: Vec<(String, String)> = Vec::new();
    let result = (|| -> Result<Imported> {
        let mut archive = tar::Archive::new(input);
        let entries = archive
            .entries()
            .map_err(|e| io("failed to read the backup stream", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| io("failed to read the backup stream", e))?;
            let path = entry
                .path()
                .map_err(|e| io("failed to read the backup stream", e))?
                .into_owned();
            let [app, id, name] = parts(&path)?;
            match &place {
                None => place = Some((app.clone(), id.clone())),
                Some((a, i)) if *a == app && *i == id => {}
                Some(_) => {
                    return Err(BackupError::usage(format!(
                        "the backup stream holds more than one backup ({})",
                        path.display()
                    )))
                }
            }
            let backup_dir = dir.join(&app).join(&id);
            std::fs::create_dir_all(&backup_dir)
                .map_err(|e| io(format_args!("failed to create {}", backup_dir.display()), e))?;
            if name == MANIFEST {
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| io("failed to read the backup stream", e))?;
                let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                    BackupError::restore(format!("the manifest of backup {id} does not read: {e}"))
                })?;
                for item in &manifest.items {
                    match written.iter().find(|(o, _)| *o == item.object) {
                        Some((_, sum)) if *sum == item.sha256 => {}
                        Some(_) => {
                            return Err(BackupError::new(
                                crate::ErrorKind::Checksum,
                                format!(
                                    "{} of backup {id} arrived with another SHA-256 than its manifest records",
                                    item.object
                                ),
                            ))
                        }
                        None => {
                            return Err(BackupError::restore(format!(
                                "{} of backup {id} is missing from the stream",
                                item.object
                            )))
                        }
                    }
                }
                write_file(&backup_dir.join(MANIFEST), &mut bytes.as_slice())?;
                return Ok(Imported {
                    manifest,
                    path: backup_dir,
                });
            }
            let sum = write_file(&backup_dir.join(&name), &mut entry)?;
            written.push((name, sum));
        }
        Err(BackupError::restore(
            "the backup stream ended before its manifest: the sender failed (see its message)",
        ))
    })();
    if result.is_err() {
        if let Some((app, id)) = place {
            let _ = std::fs::remove_dir_all(dir.join(app).join(id));
        }
    }
    result
}

/// `app/id/name` of an entry, each a plain name.
fn parts(path: &Path) -> Result<[String; 3]> {
    let names: Vec<String> = path
        .components()
        .map(|c| match c {
            Component::Normal(n) => n.to_str().map(str::to_string),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    match <[String; 3]>::try_from(names) {
        Ok(p) => Ok(p),
        Err(_) => Err(BackupError::usage(format!(
            "the backup stream holds an unexpected path {}",
            path.display()
        ))),
    }
}

/// Writes `input` to `path` through a `.partial` file (0600) renamed at the end; returns
/// its SHA-256 (hex).
fn write_file(path: &Path, input: &mut impl Read) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| io(format_args!("failed to create {}", partial.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| io("failed to read the backup stream", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| io(format_args!("failed to write {}", partial.display()), e))?;
    }
    file.sync_all()
        .map_err(|e| io(format_args!("failed to write {}", partial.display()), e))?;
    std::fs::rename(&partial, path)
        .map_err(|e| io(format_args!("failed to write {}", path.display()), e))?;
    Ok(hex::encode(hasher.finalize()))
}

fn append_file(tar: &mut tar::Builder<impl Write>, path: &Path, name: &str) -> Result<()> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| io(format_args!("failed to read {}", path.display()), e))?;
    let len = file
        .metadata()
        .map_err(|e| io(format_args!("failed to read {}", path.display()), e))?
        .len();
    let mut header = tar::Header::new_gnu();
    header.set_size(len);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(&mut header, name, &mut file)
        .map_err(|e| io("failed to write the backup stream", e))
}

fn append_bytes(tar: &mut tar::Builder<impl Write>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
        .map_err(|e| io("failed to write the backup stream", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Item, SourceKind};
    use crate::target::TargetSpec;

    fn manifest(objects: &[(&str, &[u8])]) -> Manifest {
        Manifest {
            format: 1,
            app: "shop".into(),
            id: "20260101T000000Z-abcd".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:01Z".into(),
            trigger: "manual".into(),
            encryption: "age-x25519".into(),
            items: objects
                .iter()
                .map(|(name, bytes)| Item {
                    source: name.split('.').next().unwrap().into(),
                    kind: SourceKind::Directory,
                    object: (*name).into(),
                    version: String::new(),
                    image: String::new(),
                    raw_bytes: 0,
                    stored_bytes: bytes.len() as u64,
                    user: None,
                    database: None,
                    sha256: hex::encode(Sha256::digest(bytes)),
                    source_bytes: None,
                    counts: Default::default(),
                    targets: vec!["local".into()],
                    wal_start: None,
                    started_at: String::new(),
                    finished_at: String::new(),
                })
                .collect(),
        }
    }

    fn stored(dir: &Path, m: &Manifest, objects: &[(&str, &[u8])]) {
        let d = dir.join(&m.app).join(&m.id);
        std::fs::create_dir_all(&d).unwrap();
        for (name, bytes) in objects {
            std::fs::write(d.join(name), bytes).unwrap();
        }
        std::fs::write(d.join(MANIFEST), serde_json::to_vec(m).unwrap()).unwrap();
    }

    async fn exported(objects: &[(&str, &[u8])]) -> (tempfile::TempDir, Manifest, Vec<u8>) {
        let from = tempfile::tempdir().unwrap();
        let m = manifest(objects);
        stored(from.path(), &m, objects);
        let target = Target::open(&TargetSpec::Local {
            name: "local".into(),
            dir: from.path().to_path_buf(),
        })
        .unwrap();
        let mut stream = Vec::new();
        export(
            &[target],
            "shop",
            &m.id,
            &from.path().join("scratch"),
            &mut stream,
        )
        .await
        .unwrap();
        (from, m, stream)
    }

    #[tokio::test]
    async fn a_backup_travels_whole_and_checked() {
        let objects: &[(&str, &[u8])] = &[
            ("db.pgdump.zst.age", b"dump bytes"),
            ("media.tar.zst.age", b"tar"),
        ];
        let (_from, m, stream) = exported(objects).await;
        let to = tempfile::tempdir().unwrap();
        let got = import(stream.as_slice(), to.path()).unwrap();
        assert_eq!(got.manifest, m);
        for (name, bytes) in objects {
            assert_eq!(std::fs::read(got.path.join(name)).unwrap(), *bytes);
        }
        assert!(got.path.join(MANIFEST).exists());
    }

    #[tokio::test]
    async fn a_flipped_byte_or_a_cut_stream_leaves_no_backup() {
        let objects: &[(&str, &[u8])] = &[("db.pgdump.zst.age", b"dump bytes")];
        let (_from, _m, stream) = exported(objects).await;
        let mut flipped = stream.clone();
        let at = flipped
            .windows(10)
            .position(|w| w == b"dump bytes")
            .unwrap();
        flipped[at] ^= 1;
        let to = tempfile::tempdir().unwrap();
        let e = import(flipped.as_slice(), to.path()).unwrap_err();
        assert!(e.message.contains("SHA-256"), "{e}");
        assert!(!to.path().join("shop").join(&_m.id).exists());

        let cut = &stream[..1024];
        let e = import(cut, to.path()).unwrap_err();
        assert!(e.message.contains("before its manifest"), "{e}");
        assert!(!to.path().join("shop").join(&_m.id).exists());
    }

    #[test]
    fn paths_that_are_not_a_backups_objects_are_refused() {
        let mut tar = tar::Builder::new(Vec::new());
        append_bytes(&mut tar, "shop/manifest.json", b"{}").unwrap();
        let bytes = tar.into_inner().unwrap();
        let to = tempfile::tempdir().unwrap();
        assert!(import(bytes.as_slice(), to.path()).is_err());
    }
}
