//! Images leaving or reaching this Docker Engine without a registry: an image's layers (its
//! `RootFS` diff ids), every image's layers (what a server already has), `docker save` of an
//! image into a file, and `docker load` of an archive streamed in. The remote crate decides
//! which layers travel; this file only talks to the Engine.

use std::collections::HashMap;

use bollard::query_parameters::{ImportImageOptions, ListImagesOptions};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::{is_not_found, timed, ContainerRuntime};

fn is_not_found_source(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
use crate::error::RuntimeError;

/// An image as a stack of layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLayers {
    pub id: String,
    /// The uncompressed digests of its layers, bottom first (`RootFS.Layers`).
    pub diff_ids: Vec<String>,
}

impl ContainerRuntime {
    /// The layers of a local image; None when it is not present.
    pub async fn image_layers(&self, image: &str) -> Result<Option<ImageLayers>, RuntimeError> {
        match self
            .api(
                || format!("failed to inspect image `{image}`"),
                self.docker().inspect_image(image),
            )
            .await
        {
            Ok(info) => Ok(Some(ImageLayers {
                id: info.id.unwrap_or_default(),
                diff_ids: info.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            })),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The layers of every image of this Engine (what a server already has).
    pub async fn all_image_layers(&self) -> Result<Vec<ImageLayers>, RuntimeError> {
        let images = self
            .api(
                || "failed to list images".to_string(),
                self.docker().list_images(Some(ListImagesOptions {
                    all: true,
                    filters: Some(HashMap::new()),
                    ..Default::default()
                })),
            )
            .await?;
        let mut out = Vec::with_capacity(images.len());
        for image in images {
            if let Some(layers) = self.image_layers(&image.id).await? {
                out.push(layers);
            }
        }
        Ok(out)
    }

    /// Writes `docker save IMAGE` to `out`; returns the bytes written.
    pub async fn save_image(
        &self,
        image: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, RuntimeError> {
        let limit = self.inner.timeouts.pull;
        let what = || format!("failed to save image `{image}`");
        let copy = async {
            let mut stream = self.docker().export_image(image);
            let mut written = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| bollard::errors::Error::IOError { err: e })?;
                written += chunk.len() as u64;
            }
            out.flush()
                .await
                .map_err(|e| bollard::errors::Error::IOError { err: e })?;
            Ok(written)
        };
        timed(limit, what, copy).await
    }

    /// Gives image `image` (a reference or an id) the reference `tag` too (`docker tag`).
    pub async fn tag_image(&self, image: &str, tag: &str) -> Result<(), RuntimeError> {
        let (repo, tag_part) = match tag.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (tag, "latest"),
        };
        self.api(
            || format!("failed to tag image `{image}` as `{tag}`"),
            self.docker().tag_image(
                image,
                Some(bollard::query_parameters::TagImageOptions {
                    repo: Some(repo.to_string()),
                    tag: Some(tag_part.to_string()),
                }),
            ),
        )
        .await
        .map_err(|e| match e {
            RuntimeError::Docker { source, .. } if is_not_found_source(&source) => {
                RuntimeError::ImageUnavailable {
                    image: image.to_string(),
                    reason: "it was not sent to this server".into(),
                }
            }
            other => other,
        })
    }

    /// `docker load` of the archive `body` yields; returns the Engine's messages (`Loaded
    /// image: …`).
    pub async fn load_image(
        &self,
        body: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<Vec<String>, RuntimeError> {
        let limit = self.inner.timeouts.pull;
        let load = async {
            let mut stream = self.docker().import_image_stream(
                ImportImageOptions {
                    quiet: true,
                    ..Default::default()
                },
                body,
                None,
            );
            let mut said = Vec::new();
            while let Some(info) = stream.next().await {
                let info = info?;
                if let Some(s) = info.stream.filter(|s| !s.trim().is_empty()) {
                    said.push(s.trim().to_string());
                }
            }
            Ok(said)
        };
        timed(
            limit,
            || "failed to load the image archive".to_string(),
            load,
        )
        .await
    }
}
