//! The fleet: every instance the agent has started and not yet stopped, and which release
//! serves. Deploys add instances and swap the serving release; `status`, `exec` and `logs`
//! read it. The one owner of that knowledge (the state database has its durable copy).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dockhand_config::AppConfig;
use dockhand_proxy::Backend;
use dockhand_runtime::Instance;

use crate::deploy::plan::{Serving, ServingInstance};
use crate::health::{Health, ProbePlan};

/// The release that serves and its instances.
pub struct ActiveRelease {
    pub id: i64,
    pub config: Arc<AppConfig>,
    pub instances: Vec<LiveInstance>,
}

/// One running instance of a service, as the agent tracks it. Cheap to clone.
#[derive(Clone)]
pub struct LiveInstance {
    pub id: String,
    pub service: String,
    pub release: i64,
    pub port: Option<u16>,
    pub instance: Instance,
    pub backend: Option<Arc<Backend>>,
    pub health: Health,
    pub plan: Option<ProbePlan>,
    pub log_path: PathBuf,
    /// The Docker container's name, for a container instance.
    pub container: Option<String>,
}

impl LiveInstance {
    /// Where the proxy (and the prober) reach it.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.backend.as_ref().map(|b| b.addr())
    }
}

/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Fleet {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    serving: Option<ActiveRelease>,
    live: HashMap<String, LiveInstance>,
}

impl Fleet {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The id of the release that serves.
    pub fn serving_release(&self) -> Option<i64> {
        self.state().serving.as_ref().map(|r| r.id)
    }

    /// The configuration of the release that serves.
    pub fn serving_config(&self) -> Option<Arc<AppConfig>> {
        self.state().serving.as_ref().map(|r| r.config.clone())
    }

    /// Reads the serving release under the lock (keep `f` short: no I/O, no await).
    pub fn with_serving<R>(&self, f: impl FnOnce(Option<&ActiveRelease>) -> R) -> R {
        f(self.state().serving.as_ref())
    }

    /// Whether every service of the serving release with backends has a healthy one (true
    /// when nothing serves).
    pub fn backends_ready(&self) -> bool {
        self.with_serving(|serving| {
            serving.is_none_or(|r| {
                backends_by_service(&r.instances)
                    .values()
                    .all(|backends| backends.iter().any(|b| b.is_healthy()))
            })
        })
    }

    /// What the planner needs to know of the serving release.
    pub fn observe(&self) -> Option<Serving> {
        self.with_serving(|s| {
            s.map(|r| Serving {
                release: r.id,
                proxy: r.config.proxy.clone(),
                instances: r
                    .instances
                    .iter()
                    .map(|i| ServingInstance {
                        id: i.id.clone(),
                        service: i.service.clone(),
                        routed: i.backend.is_some(),
                    })
                    .collect(),
            })
        })
    }

    /// Makes `release` the serving one; returns the one it replaces.
    pub fn serve(&self, release: ActiveRelease) -> Option<ActiveRelease> {
        self.state().serving.replace(release)
    }

    /// Tracks a started instance.
    pub fn add(&self, instance: LiveInstance) {
        self.state().live.insert(instance.id.clone(), instance);
    }

    /// Forgets stopped instances.
    pub fn forget<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut state = self.state();
        for id in ids {
            state.live.remove(id);
        }
    }

    /// The tracked instances with these ids, in the given order.
    pub fn get(&self, ids: &[String]) -> Vec<LiveInstance> {
        let state = self.state();
        ids.iter()
            .filter_map(|id| state.live.get(id).cloned())
            .collect()
    }

    /// Every tracked instance (of the serving release and any other, a deploy's new one).
    pub fn all(&self) -> Vec<LiveInstance> {
        self.state().live.values().cloned().collect()
    }

    /// The ids of every tracked instance.
    pub fn live_ids(&self) -> HashSet<String> {
        self.state().live.keys().cloned().collect()
    }

    /// Every tracked instance, untracked (the agent is stopping).
    pub fn take_all(&self) -> Vec<LiveInstance> {
        let mut state = self.state();
        state.serving = None;
        state.live.drain().map(|(_, v)| v).collect()
    }
}

/// The backends of `instances`, by service.
pub fn backends_by_service(instances: &[LiveInstance]) -> BTreeMap<String, Vec<Arc<Backend>>> {
    let mut map: BTreeMap<String, Vec<Arc<Backend>>> = BTreeMap::new();
    for inst in instances {
        if let Some(b) = &inst.backend {
            map.entry(inst.service.clone()).or_default().push(b.clone());
        }
    }
    map
}
