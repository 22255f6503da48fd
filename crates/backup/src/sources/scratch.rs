//! A scratch database container for a restore drill: started from the backed-up image, waited
//! for until `probe` says it answers (its first start initialises without TCP; the real start
//! follows), and removed afterwards. The engines differ only in the spec and the probe.

use std::time::Duration;

use dockhand_runtime::ContainerSpec;

use super::Docker;
use crate::error::{BackupError, Result};

/// How long a scratch server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// A running scratch container.
pub struct Scratch {
    pub container: String,
}

impl Scratch {
    /// Starts `spec` and polls `probe(container)` every `every` until it is true; a
    /// container that never answers is removed and the drill fails.
    pub async fn start<F, Fut>(
        d: &Docker<'_>,
        spec: ContainerSpec,
        every: Duration,
        probe: F,
    ) -> Result<Scratch>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let image = spec.image.clone();
        let scratch = Scratch {
            container: d.rt.start_helper(spec).await?,
        };
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        loop {
            if probe(scratch.container.clone()).await {
                return Ok(scratch);
            }
            if tokio::time::Instant::now() >= deadline {
                scratch.remove(d).await;
                return Err(BackupError::restore(format!(
                    "the scratch database ({image}) did not accept connections within {}s",
                    READY_WITHIN.as_secs()
                )));
            }
            tokio::time::sleep(every).await;
        }
    }

    pub async fn remove(&self, d: &Docker<'_>) {
        let _ = d.rt.remove_helper(&self.container).await;
    }
}
