//! The image watch of `[update] images = true`: the services that run an `image` tag (no
//! `build`) are redeployed when the tag names another image than their containers run — a
//! pull of the tag (`pull = "always"`) or anything else that moved it in the Docker Engine
//! (a retag, `docker pull` by a CI job). The same path as a new commit: the maintenance
//! window and the deploy lock hold it back, a backup first, the normal health gate, and an
//! image that fails is recorded (`image:SERVICE@ID`) and not tried again until the tag moves.

use std::sync::Arc;

use dockhand_api::{CheckResult, UpdateCheck};
use dockhand_config::{AppConfig, PullPolicy, UpdateConfig};
use dockhand_runtime::ImageSource;
use dockhand_state::RevisionStatus;

use super::Updater;
use crate::deploy::DeployKind;
use crate::error::{AgentError, Result};
use crate::events::EventKind;

/// A watched tag whose image is not the one the service runs.
struct Change {
    service: String,
    image: String,
    /// The tag's image id now.
    id: String,
}

impl Updater {
    /// Checks the watched tags and deploys the serving configuration again when one moved.
    pub(super) async fn check_images(
        &self,
        config: &Arc<AppConfig>,
        update: &UpdateConfig,
        requested_by: &str,
        explicit: bool,
    ) -> Result<UpdateCheck> {
        let done = |result, head: Option<&str>, release, message: String| UpdateCheck {
            at: dockhand_state::now(),
            result,
            remote_head: head.map(str::to_string),
            release,
            message,
            duration_ms: 0,
            steps: Vec::new(),
        };
        let changes = self.changed_images(config).await?;
        let Some(change) = changes.first() else {
            return Ok(done(
                CheckResult::Unchanged,
                None,
                self.inner.deployer.fleet.serving_release(),
                "no watched image tag moved".into(),
            ));
        };
        let key = format!("image:{}@{}", change.service, change.id);
        let what = format!(
            "new image {} of `{}` ({})",
            short_id(&change.id),
            change.service,
            change.image
        );
        if let Some(seen) = self.store().revision(&key)? {
            if seen.status == RevisionStatus::Failed {
                return Ok(done(
                    CheckResult::KnownBad,
                    Some(&key),
                    None,
                    format!(
                        "{what} failed before ({}); waiting for the tag to move",
                        seen.message
                    ),
                ));
            }
        }
        if let Some((result, message)) = self.held_back(update, &what, explicit) {
            return Ok(done(result, Some(&key), None, message));
        }
        let d = &self.inner.deployer;
        let who = format!("update to {what} ({requested_by})");
        let _guard = self.inner.lock.acquire("update", &who)?;
        d.events.info(
            EventKind::Update,
            None,
            None,
            &format!("{what}; deploying it"),
        );
        let fail = |release: Option<i64>, why: String| -> Result<UpdateCheck> {
            let message = format!(
                "update to {what} failed: {why}; it will not be tried again until the tag moves"
            );
            self.store()
                .record_revision(&key, RevisionStatus::Failed, release, &why)?;
            d.events.error(EventKind::Update, release, None, &message);
            Ok(done(CheckResult::Failed, Some(&key), release, message))
        };
        if update.backup && config.backups.is_some() {
            let noop = |_: dockhand_api::Progress| {};
            match self
                .inner
                .backups
                .run(&format!("before update to {what}"), None, &noop)
                .await
            {
                Ok(b) if b.state == dockhand_api::BackupState::Complete => {}
                Ok(b) => return fail(None, format!("the backup before it failed: {}", b.message)),
                Err(e) => return fail(None, format!("the backup before it failed: {e}")),
            }
        }
        self.store()
            .record_revision(&key, RevisionStatus::Deploying, None, "")?;
        let noop = |_: dockhand_api::Progress| {};
        match d
            .deploy_new((**config).clone(), DeployKind::Deploy, &who, &noop)
            .await
        {
            Ok(o) if o.succeeded => {
                self.store().record_revision(
                    &key,
                    RevisionStatus::Deployed,
                    Some(o.release),
                    "",
                )?;
                let message = format!("updated to {what}: release {} is live", o.release);
                d.events
                    .info(EventKind::Update, Some(o.release), None, &message);
                Ok(UpdateCheck {
                    duration_ms: o.duration.as_millis() as u64,
                    steps: crate::wire::step_timings(&o.steps),
                    ..done(CheckResult::Deployed, Some(&key), Some(o.release), message)
                })
            }
            Ok(o) => fail(Some(o.release), o.message),
            Err(e) => fail(None, e.message().to_string()),
        }
    }

    /// The watched tags whose image differs from the one a serving container runs.
    async fn changed_images(&self, config: &AppConfig) -> Result<Vec<Change>> {
        let watched: Vec<(String, String, PullPolicy)> = config
            .services
            .values()
            .filter_map(|s| {
                let c = s.container.as_ref()?;
                c.build
                    .is_none()
                    .then(|| (s.name.clone(), c.image.clone(), c.pull))
            })
            .collect();
        if watched.is_empty() {
            return Ok(Vec::new());
        }
        let d = &self.inner.deployer;
        let rt = d.runtimes.containers().await?;
        let instances = d
            .fleet
            .with_serving(|a| a.map(|a| a.instances.clone()).unwrap_or_default());
        let mut out = Vec::new();
        for (service, image, pull) in watched {
            if pull == PullPolicy::Always {
                // A failed pull with the image present is a warning there: the local tag counts.
                let source = ImageSource::Reference {
                    image: image.clone(),
                    pull: dockhand_runtime::PullPolicy::Always,
                };
                if let Err(e) = rt.ensure_image(&source, |_: &str| {}).await {
                    tracing::warn!(service = %service, "pulling {image}: {e}");
                }
            }
            let Some(id) = rt.image_id(&image).await.map_err(AgentError::from)? else {
                continue;
            };
            let Some(container) = instances
                .iter()
                .find(|i| i.service == service)
                .and_then(|i| i.container.clone())
            else {
                continue;
            };
            let Some(running) = rt
                .container_image_id(&container)
                .await
                .map_err(AgentError::from)?
            else {
                continue;
            };
            if running != id {
                out.push(Change { service, image, id });
            }
        }
        Ok(out)
    }
}

/// `sha256:` and the first 12 hex digits.
fn short_id(id: &str) -> &str {
    id.get(..19).unwrap_or(id)
}
