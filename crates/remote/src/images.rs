//! Images without a registry: a deploy sends only the layers the server lacks. Both sides
//! speak of layers by *chain id* (a layer with everything below it, as Docker's layer store
//! keys them): the server lists the chains it has ([`inventory`]); the client saves the image
//! (`docker save`), drops from the archive the files of the bottom layers whose chains the
//! server has ([`filter_archive`]), compresses the rest with zstd and streams it over SSH to
//! `docker load` on the server ([`load`]), which finds the dropped layers in its own store.
//! The counting and filtering is pure and tested with plain archives.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

use dockhand_runtime::{ContainerRuntime, RuntimeError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{RemoteError, Session};

/// The chain id of each layer of a stack: the first is its diff id, each next one
/// `sha256(parent_chain + " " + diff_id)` (Docker's layer store's key).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

/// How many layers, from the bottom, the server has already.
pub fn present_prefix(diff_ids: &[String], present: &BTreeSet<String>) -> usize {
    chain_ids(diff_ids)
        .iter()
        .take_while(|c| present.contains(*c))
        .count()
}

/// What the server has: every layer chain, and the id of each image asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub chains: BTreeSet<String>,
    pub ids: BTreeMap<String, Option<String>>,
}

/// The server side of [`push_image`]'s question.
pub async fn inventory(
    rt: &ContainerRuntime,
    images: &[String],
) -> Result<Inventory, RuntimeError> {
    let mut inv = Inventory::default();
    for image in rt.all_image_layers().await? {
        inv.chains.extend(chain_ids(&image.diff_ids));
    }
    for reference in images {
        let id = rt.image_layers(reference).await?.map(|l| l.id);
        inv.ids.insert(reference.clone(), id);
    }
    Ok(inv)
}

/// The server side of a push: `docker load` of a zstd-compressed archive read from `input`.
pub async fn load(
    rt: &ContainerRuntime,
    input: impl Read + Send + 'static,
) -> Result<Vec<String>, RuntimeError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, io::Error>>(8);
    std::thread::spawn(move || {
        let mut dec = match zstd::Decoder::new(input) {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match dec.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(bytes::Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    rt.load_image(stream).await
}

/// What [`filter_archive`] kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Filtered {
    pub layers: usize,
    pub layers_sent: usize,
    /// Uncompressed bytes of the layer files left out.
    pub skipped_bytes: u64,
}

#[derive(Deserialize)]
struct ManifestEntry {
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Copies the `docker save` archive `saved` to `out` (zstd-compressed) without the layer
/// files of its bottom `skip` layers.
pub fn filter_archive(saved: &Path, skip: usize, out: impl Write) -> io::Result<Filtered> {
    let mut file = fs::File::open(saved)?;
    let layers = read_manifest(&mut file)?;
    let dropped: BTreeSet<&str> = layers.iter().take(skip).map(String::as_str).collect();
    file.rewind()?;
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    let enc = zstd::Encoder::new(out, 3)?;
    let mut builder = tar::Builder::new(enc);
    let mut skipped_bytes = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if dropped.contains(path.trim_start_matches("./")) {
            skipped_bytes += entry.header().size()?;
            continue;
        }
        let header = entry.header().clone();
        let mut data = Vec::new();
        if header.entry_type().is_file() {
            entry.read_to_end(&mut data)?;
        }
        builder.append(&header, data.as_slice())?;
    }
    builder.into_inner()?.finish()?.flush()?;
    Ok(Filtered {
        layers: layers.len(),
        layers_sent: layers.len().saturating_sub(skip.min(layers.len())),
        skipped_bytes,
    })
}

fn read_manifest(file: &mut fs::File) -> io::Result<Vec<String>> {
    let mut archive = tar::Archive::new(io::BufReader::new(&mut *file));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_string_lossy().trim_start_matches("./") == "manifest.json" {
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            let manifest: Vec<ManifestEntry> = serde_json::from_slice(&text).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("manifest.json: {e}"))
            })?;
            return manifest
                .into_iter()
                .next()
                .map(|m| m.layers)
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "manifest.json lists no image")
                });
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "the saved image has no manifest.json",
    ))
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pushed {
    pub image: String,
    /// The server had this very image: nothing was sent.
    pub already_there: bool,
    pub layers: usize,
    pub layers_sent: usize,
    /// Bytes that went over SSH (compressed).
    pub bytes_sent: u64,
    /// The size of `docker save` of the whole image (what a save | load would send, uncompressed).
    pub saved_bytes: u64,
}

impl Pushed {
    pub fn describe(&self) -> String {
        if self.already_there {
            format!("{}: already on the server", self.image)
        } else {
            format!(
                "{}: sent {} of {} layers, {} bytes over SSH (docker save is {} bytes)",
                self.image, self.layers_sent, self.layers, self.bytes_sent, self.saved_bytes
            )
        }
    }
}

/// Sends `image` from the local Engine `local` to the server's, only the layers it lacks.
/// `inventory_cmd` (given the image as its last argument) and `load_cmd` are the server's
/// commands. `None`: the image is not in the local Engine (the server pulls it itself).
pub fn push_image(
    session: &Session,
    rt: &tokio::runtime::Runtime,
    local: &ContainerRuntime,
    image: &str,
    inventory_cmd: &str,
    load_cmd: &str,
) -> Result<Option<Pushed>, RemoteError> {
    let docker_err = |e: RuntimeError| {
        RemoteError::refused(
            format!("local Docker Engine: {e}"),
            "the image is read from this machine's Docker Engine; check that it runs",
        )
    };
    let Some(layers) = rt.block_on(local.image_layers(image)).map_err(docker_err)? else {
        return Ok(None);
    };
    let out = session.run_ok(
        "asking the server's Docker Engine which layers it has",
        &format!("{inventory_cmd} {}", crate::ssh::shell_line(&[image])),
        None,
        Duration::from_secs(120),
        "is Docker installed and running on the server? (`dockhand setup` installs it for apps with container services)",
    )?;
    let inv: Inventory = serde_json::from_slice(&out.stdout).map_err(|e| {
        RemoteError::refused(
            format!("the server's image inventory is not understood: {e}"),
            "run `dockhand setup` again to install this version of dockhand there",
        )
    })?;
    if inv.ids.get(image).cloned().flatten().as_deref() == Some(layers.id.as_str()) {
        return Ok(Some(Pushed {
            image: image.to_string(),
            already_there: true,
            layers: layers.diff_ids.len(),
            layers_sent: 0,
            bytes_sent: 0,
            saved_bytes: 0,
        }));
    }
    let skip = present_prefix(&layers.diff_ids, &inv.chains);
    let tmp = tempfile::tempdir().map_err(|e| {
        RemoteError::local("cannot create a temporary directory", "check $TMPDIR", e)
    })?;
    let saved_path = tmp.path().join("saved.tar");
    let saved_bytes = rt
        .block_on(async {
            let mut f = tokio::fs::File::create(&saved_path).await.map_err(|e| {
                RuntimeError::InvalidSpec(format!("cannot create {}: {e}", saved_path.display()))
            })?;
            local.save_image(image, &mut f).await
        })
        .map_err(docker_err)?;
    let packed_path = tmp.path().join("send.tar.zst");
    let io_err = |e| {
        RemoteError::local(
            "cannot prepare the image archive",
            "check the free space of $TMPDIR",
            e,
        )
    };
    let packed = fs::File::create(&packed_path).map_err(io_err)?;
    filter_archive(&saved_path, skip, io::BufWriter::new(packed)).map_err(io_err)?;
    let _ = fs::remove_file(&saved_path);
    let packed = fs::File::open(&packed_path).map_err(io_err)?;
    let (_, sent) = session.run_streaming(
        &format!("loading {image} into the server's Docker Engine"),
        load_cmd,
        packed,
        Duration::from_secs(60 * 60),
    )?;
    Ok(Some(Pushed {
        image: image.to_string(),
        already_there: false,
        layers: layers.diff_ids.len(),
        layers_sent: layers.diff_ids.len() - skip,
        bytes_sent: sent,
        saved_bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    #[test]
    fn chain_ids_follow_dockers_rule() {
        let chains = chain_ids(&[d(1), d(2)]);
        assert_eq!(chains[0], d(1));
        let want = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{} {}", d(1), d(2))))
        );
        assert_eq!(chains[1], want);
        // The same layer on another parent is another chain.
        assert_ne!(chain_ids(&[d(3), d(2)])[1], chains[1]);
    }

    #[test]
    fn only_a_bottom_prefix_counts_as_present() {
        let have: BTreeSet<String> = chain_ids(&[d(1), d(2), d(9)]).into_iter().collect();
        assert_eq!(present_prefix(&[d(1), d(2), d(3)], &have), 2);
        assert_eq!(present_prefix(&[d(2), d(1)], &have), 0);
        assert_eq!(present_prefix(&[], &have), 0);
    }

    fn saved_archive(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("saved.tar");
        let mut b = tar::Builder::new(fs::File::create(&path).unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        add("aaa/layer.tar", &[1u8; 5000]);
        add("aaa/json", b"{}");
        add("bbb/layer.tar", &[2u8; 300]);
        add("cfg.json", b"{\"rootfs\":{}}");
        add("manifest.json", br#"[{"Config":"cfg.json","RepoTags":["app:v2"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}]"#);
        b.finish().unwrap();
        path
    }

    #[test]
    fn the_archive_loses_only_the_present_layers() {
        let dir = tempfile::tempdir().unwrap();
        let saved = saved_archive(dir.path());
        let mut out = Vec::new();
        let f = filter_archive(&saved, 1, &mut out).unwrap();
        assert_eq!(
            f,
            Filtered {
                layers: 2,
                layers_sent: 1,
                skipped_bytes: 5000
            }
        );
        let plain = zstd::decode_all(out.as_slice()).unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(plain.as_slice()).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            names,
            ["aaa/json", "bbb/layer.tar", "cfg.json", "manifest.json"]
        );

        let mut all = Vec::new();
        let f = filter_archive(&saved, 0, &mut all).unwrap();
        assert_eq!((f.layers_sent, f.skipped_bytes), (2, 0));
    }
}
