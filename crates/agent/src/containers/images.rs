//! A release's images: built (a new release builds `<repo>:r<release>`), found (a rollback
//! or restart reuses the retained build and never rebuilds), or pulled per policy; and the
//! builds of releases no longer retained, removed.

use dockhand_api::Progress;
use dockhand_config::{AppConfig, ServiceConfig};
use dockhand_runtime::{BuildSpec, ContainerRuntime, ImageSource};
use dockhand_state::{ReleaseStatus, Store};

use crate::deploy::plan::{build_tag, ImagePlan};
use crate::error::{AgentError, Result};
use crate::secrets::Redactor;
use crate::Sink;

/// Makes the image of `svc` present as `source` says; returns its reference and warnings.
pub async fn ensure(
    rt: &ContainerRuntime,
    config: &AppConfig,
    svc: &ServiceConfig,
    source: &ImagePlan,
    release: i64,
    redactor: &Redactor,
    sink: Sink<'_>,
) -> Result<(String, Vec<String>)> {
    let runtime_source = match source {
        ImagePlan::Build { tag } => {
            let Some(b) = svc.container.as_ref().and_then(|c| c.build.as_ref()) else {
                return Err(AgentError::internal(format!(
                    "service `{}` has no build to make {tag} from",
                    svc.name
                )));
            };
            sink(Progress {
                step: "build".into(),
                message: format!("building {} from {}", tag, b.context.display()),
                service: Some(svc.name.clone()),
            });
            ImageSource::Build(BuildSpec {
                app: config.app.clone(),
                context: b.context.clone(),
                dockerfile: Some(b.dockerfile.clone()),
                target: b.target.clone(),
                args: b.args.clone().into_iter().collect(),
                tag: tag.clone(),
            })
        }
        ImagePlan::Prebuilt { image, tag } => {
            sink(Progress {
                step: "image".into(),
                message: format!("using {image}, built before the deploy, as {tag}"),
                service: Some(svc.name.clone()),
            });
            rt.tag_image(image, tag).await.map_err(|e| {
                AgentError::from(e).map_message(|m| {
                    format!(
                        "image of service `{}`: {m}; deploy again to send it",
                        svc.name
                    )
                })
            })?;
            ImageSource::Reference {
                image: tag.clone(),
                pull: dockhand_runtime::PullPolicy::Never,
            }
        }
        ImagePlan::Retained { tag } => ImageSource::Reference {
            image: tag.clone(),
            pull: dockhand_runtime::PullPolicy::Never,
        },
        ImagePlan::Reference { image, pull } => ImageSource::Reference {
            image: image.clone(),
            pull: super::pull_policy(*pull),
        },
    };
    let ensured = rt
        .ensure_image(&runtime_source, |line: &str| {
            let line = line.trim();
            if !line.is_empty() {
                sink(Progress {
                    step: "image".into(),
                    message: redactor.redact(line),
                    service: Some(svc.name.clone()),
                });
            }
        })
        .await
        .map_err(|e| {
            let hint = match source {
                ImagePlan::Retained { .. } => format!(
                    "; the build of release {release} is gone, so deploy a new release instead"
                ),
                _ => String::new(),
            };
            AgentError::from(e)
                .map_message(|m| format!("image of service `{}`: {m}{hint}", svc.name))
        })?;
    let warnings = ensured
        .warnings
        .iter()
        .map(|w| format!("{}: {w}", svc.name))
        .collect();
    Ok((ensured.reference, warnings))
}

/// Removes the images built for releases that are no longer retained. Failures are logged:
/// a leftover image costs disk, not correctness.
pub async fn prune(rt: &ContainerRuntime, store: &Store, app: &str) {
    let Ok(releases) = store.releases(usize::MAX) else {
        return;
    };
    let retained: Vec<(i64, AppConfig)> = releases
        .iter()
        .filter(|r| r.status != ReleaseStatus::Pruned)
        .filter_map(|r| Some((r.id, serde_json::from_str(&r.config).ok()?)))
        .collect();
    let keep = retained_tags(&retained);
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    match rt.prune_images(app, &keep).await {
        Ok(removed) if !removed.is_empty() => tracing::info!(
            removed = removed.len(),
            "removed images of releases no longer retained"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("could not remove old images: {e}"),
    }
}

/// The tags of builds that retained releases still need.
pub fn retained_tags(config_of: &[(i64, AppConfig)]) -> Vec<String> {
    let mut tags = Vec::new();
    for (release, config) in config_of {
        for svc in config.services.values() {
            if let Some(tag) = build_tag(svc, *release) {
                tags.push(tag);
            }
        }
    }
    tags
}
