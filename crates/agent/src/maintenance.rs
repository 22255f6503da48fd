//! Maintenance mode (`dockhand maintenance on|off [SERVICE]`): the proxy answers the routes of
//! the services in maintenance (all of them without a name) with 503, `Retry-After` and a
//! page, while the app keeps running. The set is kept in `maintenance.json` under the state
//! directory, so it survives a restart of the agent, and applied to the proxy at start.

use std::collections::BTreeSet;

use dockhand_api::MaintenanceReport;
use dockhand_proxy::{Maintenance, ProxyHandle};
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::layout::StateLayout;

/// Seconds a client is told to wait.
const RETRY_AFTER: u64 = 120;

/// What is in maintenance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Every route.
    pub all: bool,
    /// These services' routes.
    pub services: BTreeSet<String>,
}

impl State {
    /// Turns maintenance on or off for `service` (every service without one). Pure.
    pub fn switch(mut self, on: bool, service: Option<&str>) -> State {
        match (on, service) {
            (true, None) => self.all = true,
            (false, None) => {
                self.all = false;
                self.services.clear();
            }
            (true, Some(s)) => {
                self.services.insert(s.to_string());
            }
            (false, Some(s)) => {
                self.services.remove(s);
            }
        }
        self
    }

    fn proxy(&self, page: Option<String>) -> Option<Maintenance> {
        if !self.all && self.services.is_empty() {
            return None;
        }
        Some(Maintenance {
            services: if self.all {
                Vec::new()
            } else {
                self.services.iter().cloned().collect()
            },
            retry_after: RETRY_AFTER,
            page,
        })
    }

    pub fn report(&self) -> MaintenanceReport {
        MaintenanceReport {
            all: self.all,
            services: self.services.iter().cloned().collect(),
            retry_after_seconds: RETRY_AFTER,
        }
    }
}

/// The state kept on disk (none: nothing in maintenance).
pub fn load(layout: &StateLayout) -> State {
    std::fs::read(layout.maintenance())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Saves `state` and applies it to the proxy, with the page from `page_file` if any.
pub fn apply(
    layout: &StateLayout,
    proxy: &ProxyHandle,
    state: &State,
    page_file: Option<&std::path::Path>,
) -> Result<()> {
    let path = layout.maintenance();
    let text = serde_json::to_vec(state).map_err(AgentError::internal)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            AgentError::environment(format!(
                "could not save the maintenance state to {}: {e}; is the disk full?",
                path.display()
            ))
        })?;
    let page = match page_file {
        Some(f) => Some(std::fs::read_to_string(f).map_err(|e| {
            AgentError::config(format!(
                "the maintenance page {} cannot be read: {e}; fix `[proxy] maintenance_page`",
                f.display()
            ))
        })?),
        None => None,
    };
    proxy.set_maintenance(state.proxy(page));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_services_and_everything() {
        let s = State::default().switch(true, Some("api"));
        assert_eq!(s.services.len(), 1);
        assert!(s.proxy(None).unwrap().services == ["api"]);
        let s = s.switch(true, None);
        assert!(s.proxy(None).unwrap().services.is_empty(), "everything");
        let s = s.switch(false, Some("api"));
        assert!(s.all && s.services.is_empty());
        let s = s.switch(false, None);
        assert_eq!(s, State::default());
        assert!(s.proxy(None).is_none());
    }
}
