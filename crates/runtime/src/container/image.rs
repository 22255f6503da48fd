//! Images: making sure the image of a service is there (pull per policy, or build from a
//! local context), removing the images Dockhand built that no release needs any more, and the
//! preflight question "does this image contain that program?".

use std::collections::HashMap;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    BuildImageOptions, ContainerArchiveInfoOptions, CreateContainerOptions, CreateImageOptions,
    InspectContainerOptions, ListImagesOptions, RemoveImageOptions,
};
use futures_util::StreamExt;

use super::context::context_tar;
use super::spec::{BuildSpec, EnsuredImage, ImageSource, PullPolicy};
use super::{
    is_conflict, is_not_found, ContainerRuntime, LABEL_AGENT, LABEL_APP, LABEL_BUILT, LABEL_KIND,
};
use crate::error::RuntimeError;

/// Lines of a failing build step kept for the error.
const STEP_OUTPUT_LINES: usize = 40;
/// The PATH of an image that sets none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ContainerRuntime {
    /// Makes sure the image is present: pulled per the policy, or built. Progress lines
    /// (pull status, build output) go to `progress`.
    pub async fn ensure_image(
        &self,
        source: &ImageSource,
        mut progress: impl FnMut(&str) + Send,
    ) -> Result<EnsuredImage, RuntimeError> {
        match source {
            ImageSource::Reference { image, pull } => {
                self.ensure_reference(image, *pull, &mut progress).await
            }
            ImageSource::Build(build) => self.build(build, &mut progress).await,
        }
    }

    /// The id of a local image; None when it is not present.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, RuntimeError> {
        match self
            .api(
                || format!("failed to inspect image `{image}`"),
                self.docker().inspect_image(image),
            )
            .await
        {
            Ok(info) => Ok(info.id),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The id of the image a container was created from; None when there is no such
    /// container. (The update watcher compares it with the id its image's tag has now.)
    pub async fn container_image_id(&self, name: &str) -> Result<Option<String>, RuntimeError> {
        match self
            .api(
                || format!("failed to inspect container `{name}`"),
                self.docker()
                    .inspect_container(name, None::<InspectContainerOptions>),
            )
            .await
        {
            Ok(info) => Ok(info.image),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn ensure_reference(
        &self,
        image: &str,
        pull: PullPolicy,
        progress: &mut (impl FnMut(&str) + Send),
    ) -> Result<EnsuredImage, RuntimeError> {
        let local = self.image_id(image).await?;
        let found = |id: String, pulled: bool, warnings: Vec<String>| EnsuredImage {
            reference: image.to_string(),
            id,
            pulled,
            built: false,
            warnings,
        };
        match (pull, local) {
            (PullPolicy::Never, Some(id)) | (PullPolicy::Missing, Some(id)) => {
                Ok(found(id, false, Vec::new()))
            }
            (PullPolicy::Never, None) => Err(RuntimeError::ImageUnavailable {
                image: image.to_string(),
                reason: "pull = \"never\": build it or load it (`docker load`) first".into(),
            }),
            (_, local) => match self.pull(image, progress).await {
                Ok(()) => {
                    let id = self.image_id(image).await?.unwrap_or_default();
                    Ok(found(id, true, Vec::new()))
                }
                Err(message) => match local {
                    Some(id) => {
                        let warning = format!(
                            "failed to pull image `{image}`, using the local copy: {message}"
                        );
                        progress(&warning);
                        Ok(found(id, false, vec![warning]))
                    }
                    None => Err(RuntimeError::ImageUnavailable {
                        image: image.to_string(),
                        reason: format!(
                            "pulling it failed: {message}; check the name, that the registry is reachable and `docker login` for a private one"
                        ),
                    }),
                },
            },
        }
    }

    /// Pulls an image; the error is the daemon's message.
    async fn pull(
        &self,
        image: &str,
        progress: &mut (impl FnMut(&str) + Send),
    ) -> Result<(), String> {
        let (from_image, tag) = split_reference(image);
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag,
            ..Default::default()
        };
        progress(&format!("pulling {image}"));
        let limit = self.inner.timeouts.pull;
        let pull = async {
            let mut stream = self.docker().create_image(Some(options), None, None);
            let mut last = String::new();
            while let Some(item) = stream.next().await {
                let info = item.map_err(|e| e.to_string())?;
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(detail);
                }
                if let Some(status) = info.status {
                    let line = match info.id {
                        Some(id) => format!("{id}: {status}"),
                        None => status,
                    };
                    // Download ticks repeat the same status with a new progress bar.
                    if line != last {
                        progress(&line);
                        last = line;
                    }
                }
            }
            Ok(())
        };
        match tokio::time::timeout(limit, pull).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no result within {} (raise the pull timeout for big images)",
                humantime::format_duration(limit)
            )),
        }
    }

    async fn build(
        &self,
        build: &BuildSpec,
        progress: &mut (impl FnMut(&str) + Send),
    ) -> Result<EnsuredImage, RuntimeError> {
        let context = build.context.clone();
        let dockerfile = build.dockerfile.clone();
        let (tar, dockerfile_name) =
            tokio::task::spawn_blocking(move || context_tar(&context, dockerfile.as_deref()))
                .await
                .map_err(|e| RuntimeError::BuildContext {
                    path: build.context.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?
                .map_err(|source| RuntimeError::BuildContext {
                    path: build.context.clone(),
                    source,
                })?;
        let labels = HashMap::from([
            (LABEL_APP.to_string(), build.app.clone()),
            (LABEL_AGENT.to_string(), self.inner.agent_id.clone()),
            (LABEL_BUILT.to_string(), "true".to_string()),
        ]);
        let options = BuildImageOptions {
            dockerfile: dockerfile_name,
            t: Some(build.tag.clone()),
            target: build.target.clone().unwrap_or_default(),
            buildargs: Some(build.args.iter().cloned().collect()),
            labels: Some(labels),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        progress(&format!("building {}", build.tag));
        let build_error = |message: String, output: &[String]| RuntimeError::Build {
            tag: build.tag.clone(),
            message,
            output: output.join("\n"),
        };
        let limit = self.inner.timeouts.build;
        let run = async {
            let mut stream =
                self.docker()
                    .build_image(options, None, Some(bollard::body_full(tar.into())));
            let mut step = String::new();
            let mut step_output: Vec<String> = Vec::new();
            let mut partial = String::new();
            while let Some(item) = stream.next().await {
                let info = match item {
                    Ok(info) => info,
                    Err(err) => {
                        let message = match err {
                            bollard::errors::Error::DockerResponseServerError {
                                message, ..
                            } => message,
                            bollard::errors::Error::DockerStreamError { error } => error,
                            other => other.to_string(),
                        };
                        return Err(build_error(with_step(&step, &message), &step_output));
                    }
                };
                if let Some(text) = info.stream {
                    partial.push_str(&text);
                    while let Some(i) = partial.find('\n') {
                        let line: String = partial.drain(..=i).collect();
                        let line = line.trim_end();
                        if line.starts_with("Step ") {
                            step = line.to_string();
                            step_output.clear();
                        } else if !line.is_empty() && !is_builder_chatter(line) {
                            step_output.push(line.to_string());
                            if step_output.len() > STEP_OUTPUT_LINES {
                                step_output.remove(0);
                            }
                        }
                        progress(line);
                    }
                }
                if let Some(message) = info.error_detail.and_then(|d| d.message) {
                    if !partial.trim().is_empty() {
                        step_output.push(partial.trim_end().to_string());
                    }
                    return Err(build_error(with_step(&step, &message), &step_output));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(limit, run).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(build_error(
                    format!(
                        "no result within {} (raise the build timeout)",
                        humantime::format_duration(limit)
                    ),
                    &[],
                ))
            }
        }
        let id = self.image_id(&build.tag).await?.ok_or_else(|| {
            build_error("the build finished but the image is not there".into(), &[])
        })?;
        Ok(EnsuredImage {
            reference: build.tag.clone(),
            id,
            pulled: false,
            built: true,
            warnings: Vec::new(),
        })
    }

    /// Removes the images Dockhand built for `app` whose tags are all outside `keep`
    /// (images still used by a container stay). Returns the ids removed.
    pub async fn prune_images(
        &self,
        app: &str,
        keep: &[&str],
    ) -> Result<Vec<String>, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_APP}={app}"), format!("{LABEL_BUILT}=true")],
        )]);
        let images = self
            .api(
                || format!("failed to list the images of {app}"),
                self.docker().list_images(Some(ListImagesOptions {
                    all: false,
                    filters: Some(filters),
                    ..Default::default()
                })),
            )
            .await?;
        let mut removed = Vec::new();
        for image in images {
            if image.repo_tags.iter().any(|t| keep.contains(&t.as_str())) {
                continue;
            }
            let result = self
                .api(
                    || format!("failed to remove image {}", image.id),
                    self.docker().remove_image(
                        &image.id,
                        Some(RemoveImageOptions {
                            force: true,
                            noprune: false,
                            ..Default::default()
                        }),
                        None,
                    ),
                )
                .await;
            match result {
                Ok(_) => removed.push(image.id),
                Err(err) if is_conflict(&err) || is_not_found(&err) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(removed)
    }

    /// Whether `name` (an absolute path, or a program looked up in the image's `PATH`)
    /// exists in the image's file system; None when the image is not present locally.
    pub async fn image_has_binary(
        &self,
        image: &str,
        name: &str,
    ) -> Result<Option<bool>, RuntimeError> {
        let info = match self
            .api(
                || format!("failed to inspect image `{image}`"),
                self.docker().inspect_image(image),
            )
            .await
        {
            Ok(info) => info,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        let config = info.config.unwrap_or_default();
        let candidates: Vec<String> = if name.starts_with('/') {
            vec![name.to_string()]
        } else if name.contains('/') {
            let dir = config.working_dir.clone().filter(|d| !d.is_empty());
            vec![format!(
                "{}/{name}",
                dir.as_deref().unwrap_or("").trim_end_matches('/')
            )]
        } else {
            let path = config
                .env
                .unwrap_or_default()
                .iter()
                .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
                .unwrap_or_else(|| DEFAULT_PATH.to_string());
            path.split(':')
                .filter(|d| d.starts_with('/'))
                .map(|d| format!("{}/{name}", d.trim_end_matches('/')))
                .collect()
        };
        // A created (never started) container exposes the image's file system to the
        // archive endpoint.
        let labels = HashMap::from([
            (LABEL_AGENT.to_string(), self.inner.agent_id.clone()),
            (LABEL_KIND.to_string(), "job".to_string()),
        ]);
        let created = self
            .api(
                || format!("failed to create a probe container of image `{image}`"),
                self.docker().create_container(
                    None::<CreateContainerOptions>,
                    ContainerCreateBody {
                        image: Some(image.to_string()),
                        entrypoint: Some(vec!["/.dockhand-probe".to_string()]),
                        cmd: Some(Vec::new()),
                        labels: Some(labels),
                        network_disabled: Some(true),
                        ..Default::default()
                    },
                ),
            )
            .await?;
        let result = self.find_in_container(&created.id, &candidates).await;
        let _ = self.remove_container_quietly(&created.id).await;
        result.map(Some)
    }

    async fn find_in_container(
        &self,
        id: &str,
        candidates: &[String],
    ) -> Result<bool, RuntimeError> {
        for path in candidates {
            let stat = self
                .api(
                    || format!("failed to look for {path} in the image"),
                    self.docker().get_container_archive_info(
                        id,
                        Some(ContainerArchiveInfoOptions { path: path.clone() }),
                    ),
                )
                .await;
            match stat {
                Ok(_) => return Ok(true),
                Err(err) if is_not_found(&err) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(false)
    }
}

/// `repo[:tag]` → (repo, tag); a digest reference stays whole.
fn split_reference(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_string(), None);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (image[..at].to_string(), Some(image[at + 1..].to_string()))
        }
        None => (image.to_string(), Some("latest".to_string())),
    }
}

/// The classic builder's own lines between a step's output.
fn is_builder_chatter(line: &str) -> bool {
    line.starts_with(" ---> ")
        || line.starts_with("Removing intermediate container ")
        || line.starts_with("Successfully built ")
        || line.starts_with("Successfully tagged ")
}

fn with_step(step: &str, message: &str) -> String {
    if step.is_empty() {
        message.trim().to_string()
    } else {
        format!("{step}: {}", message.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag_not_the_registry_port() {
        assert_eq!(
            split_reference("postgres:16"),
            ("postgres".into(), Some("16".into()))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/x/y"),
            ("127.0.0.1:5000/x/y".into(), Some("latest".into()))
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/x/y:2"),
            ("127.0.0.1:5000/x/y".into(), Some("2".into()))
        );
        assert_eq!(
            split_reference("a/b@sha256:00"),
            ("a/b@sha256:00".into(), None)
        );
    }
}
