//! Docker volumes: a tar stream made by a helper container (an image with `sh` and `tar`,
//! `[backups] helper_image`) that mounts the volume read-only; restored by a helper that
//! empties the volume and unpacks the stream into it.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use dockhand_runtime::{ContainerKind, ContainerSpec, Mount};
use tokio::sync::mpsc;

use super::{exec_dump, exec_restore, exec_text, Docker, Dump, Ending, Facts};
use crate::error::Result;
use crate::manifest::SourceKind;

const MOUNT: &str = "/volume";

async fn helper(d: &Docker<'_>, volume: &str, read_only: bool, id: &str) -> Result<String> {
    let mut spec = ContainerSpec::new(
        d.app,
        "backup-helper",
        &format!("backup-{id}-{volume}"),
        ContainerKind::Job,
        d.helper_image,
    );
    spec.entrypoint = Some(vec!["sleep".into()]);
    spec.command = Some(vec!["86400".into()]);
    spec.mounts = vec![Mount::Volume {
        name: volume.to_string(),
        target: MOUNT.into(),
        read_only,
    }];
    Ok(d.rt.start_helper(spec).await?)
}

/// Starts a tar of the volume (the Docker volume `<app>_<volume>`); the helper is removed
/// when the dump ends.
pub async fn dump(d: &Docker<'_>, volume: &str, id: &str) -> Result<(Facts, Dump)> {
    let container = helper(d, volume, true, id).await?;
    let counted = exec_text(
        d.rt,
        &container,
        &[
            "sh",
            "-c",
            &format!("find {MOUNT} -type f | wc -l; du -sk {MOUNT} | cut -f1"),
        ],
        &[],
        None,
        Duration::from_secs(300),
    )
    .await;
    let counted = match counted {
        Ok(c) => c,
        Err(e) => {
            let _ = d.rt.remove_helper(&container).await;
            return Err(e);
        }
    };
    let mut lines = counted.lines();
    let files: u64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let kib: Option<u64> = lines.next().and_then(|l| l.trim().parse().ok());
    let facts = Facts {
        counts: [("files".to_string(), files)].into(),
        source_bytes: kib.map(|k| k * 1024),
        ..Facts::default()
    };
    let dump = exec_dump(
        d.rt,
        SourceKind::Volume,
        &container,
        vec![
            "tar".into(),
            "-C".into(),
            MOUNT.into(),
            "-cf".into(),
            "-".into(),
            ".".into(),
        ],
        Vec::new(),
        None,
        d.timeout,
    )
    .await;
    let mut dump = match dump {
        Ok(dump) => dump,
        Err(e) => {
            let _ = d.rt.remove_helper(&container).await;
            return Err(e);
        }
    };
    let rt = d.rt.clone();
    let inner = dump.ending;
    let ending: Ending = Box::pin(async move {
        let r = inner.await;
        let _ = rt.remove_helper(&container).await;
        r
    });
    dump.ending = ending;
    Ok((facts, dump))
}

/// Empties the volume and unpacks `tar` into it.
pub async fn restore(
    d: &Docker<'_>,
    volume: &str,
    id: &str,
    tar: mpsc::Receiver<io::Result<Bytes>>,
) -> Result<()> {
    let container = helper(d, volume, false, id).await?;
    let result = exec_restore(
        d.rt,
        &container,
        vec![
            "sh".into(),
            "-c".into(),
            format!(
                "cd {MOUNT} && find . -mindepth 1 -maxdepth 1 -exec rm -rf {{}} + && tar -xf -"
            ),
        ],
        Vec::new(),
        None,
        tar,
        d.timeout,
    )
    .await;
    let _ = d.rt.remove_helper(&container).await;
    result.map(|_| ())
}
