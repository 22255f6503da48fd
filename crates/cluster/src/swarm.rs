//! [`Swarm`]: the one handle on a swarm manager's Engine API (bollard, Unix socket only, the
//! API version negotiated with the daemon at connect, every call under a timeout).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bollard::models;
use bollard::Docker;
use sha2::Digest as _;

use crate::error::ClusterError;
use crate::status::ClusterStatus;

/// One release of an app as the swarm records it: whether it went live, and each service's
/// spec (databases not among them: a rollback leaves them alone).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseRecord {
    pub app: String,
    pub release: u64,
    /// Every service converged on it.
    pub live: bool,
    /// Swarm service name → its spec at this release.
    pub services: BTreeMap<String, models::ServiceSpec>,
}

/// How an update of a service ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Every replica runs the release.
    Converged,
    /// A new task failed; Swarm put the previous spec back (its message says why).
    RolledBack { message: String },
    /// Swarm paused the update or its rollback (its message says why).
    Paused { message: String },
}

/// How long the calls may take.
#[derive(Debug, Clone, Copy)]
pub struct SwarmTimeouts {
    /// Connecting, negotiating the version, pinging.
    pub connect: Duration,
    /// Any other call.
    pub api: Duration,
}

impl Default for SwarmTimeouts {
    fn default() -> Self {
        SwarmTimeouts {
            connect: Duration::from_secs(10),
            api: Duration::from_secs(30),
        }
    }
}

/// A connection to a swarm manager.
#[derive(Debug, Clone)]
pub struct Swarm {
    docker: Docker,
    host: String,
    /// How messages name the Engine: `host`, or the manager behind a forwarded socket.
    shown: String,
    timeouts: SwarmTimeouts,
}

impl Swarm {
    /// Connects to the Docker Engine at `host` (`unix:///path` or `/path`), negotiates the API
    /// version and checks that it manages a swarm.
    pub async fn connect(host: &str, timeouts: SwarmTimeouts) -> Result<Swarm, ClusterError> {
        Swarm::connect_named(host, host, timeouts).await
    }

    /// Like [`Swarm::connect`], the Engine named `shown` in every message (a manager reached
    /// through a forwarded socket: `manager m1 (root@m1.example, over SSH)`).
    pub async fn connect_named(
        host: &str,
        shown: &str,
        timeouts: SwarmTimeouts,
    ) -> Result<Swarm, ClusterError> {
        let docker = engine(host, timeouts).await.map_err(|e| match e {
            ClusterError::Unreachable { reason, .. } => ClusterError::Unreachable {
                host: shown.to_string(),
                reason,
            },
            other => other,
        })?;
        let swarm = Swarm {
            docker,
            host: host.to_string(),
            shown: shown.to_string(),
            timeouts,
        };
        // Only a manager answers this.
        match tokio::time::timeout(timeouts.connect, swarm.docker.inspect_swarm()).await {
            Ok(Ok(_)) => Ok(swarm),
            Ok(Err(e)) => Err(ClusterError::NotManager {
                host: shown.to_string(),
                reason: e.to_string(),
            }),
            Err(_) => Err(ClusterError::Unreachable {
                host: shown.to_string(),
                reason: format!(
                    "no answer to the swarm inspection within {:?}",
                    timeouts.connect
                ),
            }),
        }
    }

    /// The Engine socket this handle talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The Engine as messages name it.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The nodes, the services' names and every task the managers remember.
    pub async fn status(&self) -> Result<ClusterStatus, ClusterError> {
        let nodes = self
            .call("list nodes", self.docker.list_nodes(None))
            .await?;
        let services = self
            .call("list services", self.docker.list_services(None))
            .await?;
        let tasks = self
            .call("list tasks", self.docker.list_tasks(None))
            .await?;
        Ok(ClusterStatus::from_api(&nodes, &services, &tasks))
    }

    /// Creates the app's overlay network unless it exists (`encrypted`: IPsec between nodes).
    pub async fn ensure_network(&self, name: &str, encrypted: bool) -> Result<(), ClusterError> {
        if self
            .docker
            .inspect_network(name, None)
            .await
            .is_ok_and(|n| n.scope.as_deref() == Some("swarm"))
        {
            return Ok(());
        }
        let mut options = HashMap::new();
        if encrypted {
            options.insert("encrypted".to_string(), String::new());
        }
        let request = models::NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("overlay".into()),
            // The ingress proxy and one-off jobs attach to it too.
            attachable: Some(true),
            options: Some(options),
            labels: Some(HashMap::from([("dockhand.network".into(), name.into())])),
            ..Default::default()
        };
        self.call("create network", self.docker.create_network(request))
            .await
            .map(|_| ())
    }

    /// The Swarm secret holding `value` for secret `name` of `app`, created unless it exists:
    /// named `<app>-<name>-<hash of the value>`, since a Swarm secret cannot change (a
    /// rotated value is a new secret, and a rollback finds the old one). Returns its id and
    /// name; the value leaves only in the request body.
    pub async fn ensure_secret(
        &self,
        app: &str,
        name: &str,
        value: &str,
    ) -> Result<(String, String), ClusterError> {
        let digest = hex::encode(&sha2::Sha256::digest(value.as_bytes())[..6]);
        let full = format!("{app}-{name}-{digest}");
        if let Ok(existing) = self.docker.inspect_secret(&full).await {
            if let Some(id) = existing.id {
                return Ok((id, full));
            }
        }
        let spec = models::SecretSpec {
            name: Some(full.clone()),
            labels: Some(HashMap::from([
                ("dockhand.app".to_string(), app.to_string()),
                ("dockhand.secret".to_string(), name.to_string()),
            ])),
            data: Some(base64::engine::general_purpose::STANDARD.encode(value)),
            ..Default::default()
        };
        let created = self
            .call("create secret", self.docker.create_secret(spec))
            .await?;
        Ok((created.id, full))
    }

    /// The Swarm secret made by [`Swarm::ensure_secret`] for secret `name` of `app`, whatever
    /// its value (the newest, when several are left): its id and name.
    pub async fn find_secret(
        &self,
        app: &str,
        name: &str,
    ) -> Result<Option<(String, String)>, ClusterError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("dockhand.app={app}"),
                format!("dockhand.secret={name}"),
            ],
        )]);
        let options = bollard::query_parameters::ListSecretsOptions {
            filters: Some(filters),
        };
        let mut found = self
            .call("list secrets", self.docker.list_secrets(Some(options)))
            .await?;
        found.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(found
            .pop()
            .and_then(|s| Some((s.id?, s.spec.and_then(|spec| spec.name)?))))
    }

    /// Creates the service of `spec`, or updates it to `spec` (Swarm then replaces its tasks
    /// by the spec's update policy).
    pub async fn apply(&self, spec: models::ServiceSpec) -> Result<(), ClusterError> {
        let name = spec.name.clone().unwrap_or_default();
        match self.docker.inspect_service(&name, None).await {
            Ok(current) => {
                let version = current.version.and_then(|v| v.index).unwrap_or(0);
                let options = bollard::query_parameters::UpdateServiceOptions {
                    version: i32::try_from(version).unwrap_or(i32::MAX),
                    ..Default::default()
                };
                self.call(
                    "update service",
                    self.docker.update_service(&name, spec, options, None),
                )
                .await
                .map(|_| ())
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => self
                .call("create service", self.docker.create_service(spec, None))
                .await
                .map(|_| ()),
            Err(e) => Err(ClusterError::Api {
                host: self.shown.clone(),
                call: "inspect service",
                reason: e.to_string(),
            }),
        }
    }

    /// Puts the service's previous spec back (Swarm keeps one).
    pub async fn rollback(&self, name: &str) -> Result<(), ClusterError> {
        let current = self
            .call("inspect service", self.docker.inspect_service(name, None))
            .await?;
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        let options = bollard::query_parameters::UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            rollback: Some("previous".into()),
            ..Default::default()
        };
        let spec = current.spec.unwrap_or_default();
        self.call(
            "roll back service",
            self.docker.update_service(name, spec, options, None),
        )
        .await
        .map(|_| ())
    }

    /// Waits until the service `name` runs `release` on every replica, or Swarm rolled the
    /// update back or paused it; an error after `limit`.
    pub async fn wait_update(
        &self,
        name: &str,
        release: &str,
        limit: Duration,
    ) -> Result<UpdateOutcome, ClusterError> {
        self.wait_converged(name, Some(release), limit).await
    }

    /// Waits until every replica of service `name` runs (with `release`, when given: a
    /// database's tasks carry none), or Swarm rolled the update back or paused it; an error
    /// after `limit`.
    pub async fn wait_converged(
        &self,
        name: &str,
        release: Option<&str>,
        limit: Duration,
    ) -> Result<UpdateOutcome, ClusterError> {
        let deadline = Instant::now() + limit;
        loop {
            let service = self
                .call("inspect service", self.docker.inspect_service(name, None))
                .await?;
            let status = service.update_status.as_ref();
            let message = status.and_then(|s| s.message.clone()).unwrap_or_default();
            // The status of an earlier update stays until the next one starts: it is about
            // this one only when the spec no longer names `release` (rolled back) or when
            // it paused.
            let spec_release = service
                .spec
                .as_ref()
                .and_then(|s| s.task_template.as_ref())
                .and_then(spec_release);
            use models::ServiceUpdateStatusStateEnum as S;
            match status.and_then(|s| s.state) {
                Some(S::ROLLBACK_COMPLETED) if release.is_some() && spec_release != release => {
                    return Ok(UpdateOutcome::RolledBack { message })
                }
                Some(S::PAUSED | S::ROLLBACK_PAUSED) => {
                    return Ok(UpdateOutcome::Paused { message })
                }
                Some(S::UPDATING | S::ROLLBACK_STARTED) => {}
                _ => {
                    let want = service
                        .spec
                        .as_ref()
                        .and_then(|s| s.mode.as_ref()?.replicated.as_ref()?.replicas)
                        .unwrap_or(1);
                    let id = service.id.clone().unwrap_or_default();
                    let options = bollard::query_parameters::ListTasksOptions {
                        filters: Some(HashMap::from([
                            ("service".to_string(), vec![id]),
                            ("desired-state".to_string(), vec!["running".to_string()]),
                        ])),
                    };
                    let tasks = self
                        .call("list tasks", self.docker.list_tasks(Some(options)))
                        .await?;
                    let running = tasks
                        .iter()
                        .filter(|t| {
                            t.status.as_ref().and_then(|s| s.state)
                                == Some(models::TaskState::RUNNING)
                                && (release.is_none() || task_release(t) == release)
                        })
                        .count();
                    if running as i64 == want && tasks.len() as i64 == want {
                        return Ok(UpdateOutcome::Converged);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Timeout {
                    host: self.shown.clone(),
                    call: "wait for the update",
                    limit,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Gives each node of the cluster its labels: the node whose `dockhand.node` label, else
    /// whose hostname, is `destination` gets `dockhand.node = destination` and `labels` (other
    /// labels it has are kept). A node of the list the swarm lacks is an error naming it.
    pub async fn label_nodes(
        &self,
        nodes: &[(String, BTreeMap<String, String>)],
    ) -> Result<(), ClusterError> {
        let listed = self
            .call("list nodes", self.docker.list_nodes(None))
            .await?;
        for (destination, labels) in nodes {
            let label_of = |n: &models::Node| {
                n.spec
                    .as_ref()
                    .and_then(|s| s.labels.as_ref())
                    .and_then(|l| l.get("dockhand.node").cloned())
            };
            let hostname = |n: &models::Node| {
                n.description
                    .as_ref()
                    .and_then(|d| d.hostname.clone())
                    .unwrap_or_default()
            };
            let node = listed
                .iter()
                .find(|n| label_of(n).as_deref() == Some(destination.as_str()))
                .or_else(|| {
                    listed
                        .iter()
                        .find(|n| label_of(n).is_none() && hostname(n) == *destination)
                });
            let Some(node) = node else {
                return Err(ClusterError::MissingNode {
                    host: self.shown.clone(),
                    node: destination.clone(),
                });
            };
            let mut spec = node.spec.clone().unwrap_or_default();
            let mut current = spec.labels.clone().unwrap_or_default();
            let before = current.clone();
            current.insert("dockhand.node".into(), destination.clone());
            for (k, v) in labels {
                current.insert(k.clone(), v.clone());
            }
            if current == before {
                continue;
            }
            spec.labels = Some(current);
            let version = node.version.as_ref().and_then(|v| v.index).unwrap_or(0);
            let id = node.id.clone().unwrap_or_default();
            let options = bollard::query_parameters::UpdateNodeOptions {
                version: i64::try_from(version).unwrap_or(i64::MAX),
            };
            self.call("label node", self.docker.update_node(&id, spec, options))
                .await?;
        }
        Ok(())
    }

    /// The `[cluster]` node this Engine is, among `destinations`: the node whose Swarm node id
    /// the Engine reports, found by its `dockhand.node` label, else its hostname (as
    /// [`Swarm::label_nodes`] finds nodes). `None` when it is none of them.
    pub async fn local_node(
        &self,
        destinations: &[String],
    ) -> Result<Option<String>, ClusterError> {
        let info = self
            .call("read the engine's info", self.docker.info())
            .await?;
        let Some(id) = info
            .swarm
            .and_then(|s| s.node_id)
            .filter(|id| !id.is_empty())
        else {
            return Ok(None);
        };
        let listed = self
            .call("list nodes", self.docker.list_nodes(None))
            .await?;
        let Some(node) = listed.iter().find(|n| n.id.as_deref() == Some(id.as_str())) else {
            return Ok(None);
        };
        let label = node
            .spec
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .and_then(|l| l.get("dockhand.node").cloned());
        let hostname = node.description.as_ref().and_then(|d| d.hostname.clone());
        Ok(label
            .filter(|l| destinations.contains(l))
            .or_else(|| hostname.filter(|h| destinations.contains(h))))
    }

    /// The services of `app` (by their `dockhand.app` label).
    pub async fn app_services(&self, app: &str) -> Result<Vec<models::Service>, ClusterError> {
        let options = bollard::query_parameters::ListServicesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("dockhand.app={app}")],
            )])),
            ..Default::default()
        };
        self.call("list services", self.docker.list_services(Some(options)))
            .await
    }

    /// The service `name`'s spec, if the service exists.
    pub async fn service_spec(
        &self,
        name: &str,
    ) -> Result<Option<models::ServiceSpec>, ClusterError> {
        match self.docker.inspect_service(name, None).await {
            Ok(service) => Ok(service.spec),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(ClusterError::Api {
                host: self.shown.clone(),
                call: "inspect service",
                reason: e.to_string(),
            }),
        }
    }

    /// Creates the service of `spec` (an error when one of its name exists).
    pub async fn create_service(&self, spec: models::ServiceSpec) -> Result<(), ClusterError> {
        self.call("create service", self.docker.create_service(spec, None))
            .await
            .map(|_| ())
    }

    /// Every task of service `name` Swarm remembers.
    pub async fn service_tasks(&self, name: &str) -> Result<Vec<models::Task>, ClusterError> {
        let options = bollard::query_parameters::ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_string(),
                vec![name.to_string()],
            )])),
        };
        self.call("list tasks", self.docker.list_tasks(Some(options)))
            .await
    }

    /// The hostname of node `id`, if the swarm lists it.
    pub async fn node_hostname(&self, id: &str) -> Result<Option<String>, ClusterError> {
        let listed = self
            .call("list nodes", self.docker.list_nodes(None))
            .await?;
        Ok(listed
            .into_iter()
            .find(|n| n.id.as_deref() == Some(id))
            .and_then(|n| n.description?.hostname))
    }

    /// The job services of `task` of `app` (by their `dockhand.app` and `dockhand.task`
    /// labels).
    pub async fn task_jobs(
        &self,
        app: &str,
        task: &str,
    ) -> Result<Vec<models::Service>, ClusterError> {
        let options = bollard::query_parameters::ListServicesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![
                    format!("dockhand.app={app}"),
                    format!("dockhand.task={task}"),
                ],
            )])),
            ..Default::default()
        };
        self.call("list services", self.docker.list_services(Some(options)))
            .await
    }

    /// What service `name`'s tasks wrote, through the service logs API (each node's Engine
    /// hands its tasks' logs to the managers): each line's stream (`out`, `err`), time and
    /// text, in the order the Engine gives them.
    pub async fn service_output(
        &self,
        name: &str,
    ) -> Result<Vec<(&'static str, Option<String>, String)>, ClusterError> {
        use futures_util::StreamExt as _;
        let options = bollard::query_parameters::LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .follow(false)
            .build();
        let read = async {
            let mut stream = std::pin::pin!(self.docker.service_logs(name, Some(options)));
            let mut lines = Vec::new();
            while let Some(item) = stream.next().await {
                let (tag, message) = match item? {
                    bollard::container::LogOutput::StdOut { message } => ("out", message),
                    bollard::container::LogOutput::StdErr { message } => ("err", message),
                    bollard::container::LogOutput::Console { message } => ("out", message),
                    bollard::container::LogOutput::StdIn { .. } => continue,
                };
                for line in String::from_utf8_lossy(&message).lines() {
                    let (at, text) = crate::jobs::split_timestamp(line);
                    lines.push((tag, at, text));
                }
            }
            Ok::<_, bollard::errors::Error>(lines)
        };
        self.call_within("read the service's logs", self.timeouts.api * 2, read)
            .await
    }

    /// Removes service `name` (its tasks stop).
    pub async fn remove_service(&self, name: &str) -> Result<(), ClusterError> {
        self.call("remove service", self.docker.delete_service(name))
            .await
    }

    /// Records release `record` of its app in the swarm itself, as a Swarm config
    /// `dockhand-<app>-r<release>` (no secret in it: specs name their secrets): the history
    /// `dockhand rollback` goes back in, readable from any manager.
    pub async fn record_release(&self, record: &ReleaseRecord) -> Result<(), ClusterError> {
        let data = serde_json::to_vec(record).map_err(|e| ClusterError::Api {
            host: self.shown.clone(),
            call: "encode the release record",
            reason: e.to_string(),
        })?;
        let spec = models::ConfigSpec {
            name: Some(format!("dockhand-{}-r{}", record.app, record.release)),
            labels: Some(HashMap::from([
                ("dockhand.app".to_string(), record.app.clone()),
                ("dockhand.release".to_string(), record.release.to_string()),
            ])),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        self.call("record the release", self.docker.create_config(spec))
            .await
            .map(|_| ())
    }

    /// The id of the Swarm config `name`, created with `data` and `labels` if it does not
    /// exist (a config is immutable: its name must say what it holds).
    pub async fn ensure_config(
        &self,
        name: &str,
        data: &[u8],
        labels: HashMap<String, String>,
    ) -> Result<String, ClusterError> {
        match tokio::time::timeout(self.timeouts.api, self.docker.inspect_config(name)).await {
            Ok(Ok(found)) => return Ok(found.id.unwrap_or_default()),
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => {}
            Ok(Err(e)) => {
                return Err(ClusterError::Api {
                    host: self.shown.clone(),
                    call: "inspect config",
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(ClusterError::Timeout {
                    host: self.shown.clone(),
                    call: "inspect config",
                    limit: self.timeouts.api,
                })
            }
        }
        let spec = models::ConfigSpec {
            name: Some(name.to_string()),
            labels: Some(labels),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        let created = self
            .call("create config", self.docker.create_config(spec))
            .await?;
        Ok(created.id)
    }

    /// The data of the Swarm config `name`, if it exists.
    pub async fn config_data(&self, name: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        match tokio::time::timeout(self.timeouts.api, self.docker.inspect_config(name)).await {
            Ok(Ok(found)) => Ok(found
                .spec
                .and_then(|s| s.data)
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())),
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => Ok(None),
            Ok(Err(e)) => Err(ClusterError::Api {
                host: self.shown.clone(),
                call: "inspect config",
                reason: e.to_string(),
            }),
            Err(_) => Err(ClusterError::Timeout {
                host: self.shown.clone(),
                call: "inspect config",
                limit: self.timeouts.api,
            }),
        }
    }

    /// Imports the root file system `rootfs` (a tar, made only when needed) as image `tag`
    /// with `entrypoint`, unless the Engine has it already.
    pub async fn ensure_imported<S>(
        &self,
        tag: &str,
        entrypoint: &str,
        rootfs: impl FnOnce() -> S,
    ) -> Result<(), ClusterError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        if self.docker.inspect_image(tag).await.is_ok() {
            return Ok(());
        }
        let (repo, version) = tag.split_once(':').unwrap_or((tag, "latest"));
        let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(version)
            .changes(vec![format!("ENTRYPOINT {entrypoint}")])
            .build();
        let stream = self.docker.create_image(
            Some(options),
            // The root file system streams into the import as it is written.
            Some(bollard::body_try_stream(rootfs())),
            None,
        );
        let import = async {
            use futures_util::StreamExt as _;
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                item?;
            }
            Ok::<(), bollard::errors::Error>(())
        };
        // An import carries the whole binary: the import's own limit, not an API call's.
        self.call_within("import the ingress image", self.timeouts.api * 10, import)
            .await
    }

    /// Takes `app`'s deploy lock: a Swarm config `dockhand-<app>-lock`, whose creation the
    /// managers' Raft log makes atomic, so two `dockhand deploy` or `rollback` runs against
    /// the same swarm (from two laptops, or CI and a person) cannot interleave. A lock older
    /// than `stale_after` is one whose holder died: it is taken over, and the call says so.
    pub async fn lock(
        &self,
        app: &str,
        holder: &str,
        stale_after: Duration,
    ) -> Result<Option<LockHolder>, ClusterError> {
        let name = lock_name(app);
        let now = unix_now();
        let spec = models::ConfigSpec {
            name: Some(name.clone()),
            labels: Some(HashMap::from([
                ("dockhand.lock".to_string(), app.to_string()),
                ("dockhand.holder".to_string(), holder.to_string()),
                ("dockhand.since".to_string(), now.to_string()),
            ])),
            data: Some(base64::engine::general_purpose::STANDARD.encode(holder)),
            ..Default::default()
        };
        let conflict =
            match tokio::time::timeout(self.timeouts.api, self.docker.create_config(spec.clone()))
                .await
            {
                Ok(Ok(_)) => return Ok(None),
                Ok(Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409,
                    ..
                })) => true,
                Ok(Err(e)) => {
                    return Err(ClusterError::Api {
                        host: self.shown.clone(),
                        call: "take the deploy lock",
                        reason: e.to_string(),
                    })
                }
                Err(_) => {
                    return Err(ClusterError::Timeout {
                        host: self.shown.clone(),
                        call: "take the deploy lock",
                        limit: self.timeouts.api,
                    })
                }
            };
        debug_assert!(conflict);
        let held = self
            .call("read the deploy lock", self.docker.inspect_config(&name))
            .await?;
        let labels = held.spec.and_then(|s| s.labels).unwrap_or_default();
        let other = LockHolder {
            holder: labels
                .get("dockhand.holder")
                .cloned()
                .unwrap_or_else(|| "an unknown holder".into()),
            since: labels
                .get("dockhand.since")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        };
        if now - other.since < stale_after.as_secs() as i64 {
            return Err(ClusterError::Locked {
                app: app.to_string(),
                holder: other.holder,
                since: other.since,
                name,
            });
        }
        // Stale: its holder died mid-deploy. Taken over (a racing taker loses at create).
        self.unlock(app).await?;
        self.call("take the deploy lock", self.docker.create_config(spec))
            .await?;
        Ok(Some(other))
    }

    /// Gives `app`'s deploy lock back.
    pub async fn unlock(&self, app: &str) -> Result<(), ClusterError> {
        match tokio::time::timeout(
            self.timeouts.api,
            self.docker.delete_config(&lock_name(app)),
        )
        .await
        {
            Ok(Ok(()))
            | Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => Ok(()),
            Ok(Err(e)) => Err(ClusterError::Api {
                host: self.shown.clone(),
                call: "give the deploy lock back",
                reason: e.to_string(),
            }),
            Err(_) => Err(ClusterError::Timeout {
                host: self.shown.clone(),
                call: "give the deploy lock back",
                limit: self.timeouts.api,
            }),
        }
    }

    /// The recorded releases of `app`, oldest first.
    pub async fn releases(&self, app: &str) -> Result<Vec<ReleaseRecord>, ClusterError> {
        let options = bollard::query_parameters::ListConfigsOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("dockhand.app={app}")],
            )])),
        };
        let configs = self
            .call(
                "list release records",
                self.docker.list_configs(Some(options)),
            )
            .await?;
        let mut out = Vec::new();
        for config in configs {
            let data = match config.spec.as_ref().and_then(|s| s.data.clone()) {
                Some(data) => data,
                // Older engines leave the data out of the list.
                None => {
                    let id = config.id.clone().unwrap_or_default();
                    let full = self
                        .call("inspect release record", self.docker.inspect_config(&id))
                        .await?;
                    match full.spec.and_then(|s| s.data) {
                        Some(data) => data,
                        None => continue,
                    }
                }
            };
            let record = base64::engine::general_purpose::STANDARD
                .decode(data)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<ReleaseRecord>(&bytes).ok());
            if let Some(record) = record {
                out.push(record);
            }
        }
        out.sort_by_key(|r| r.release);
        Ok(out)
    }

    /// The release each running task of service `name` runs (by its `dockhand.release`
    /// label), sorted.
    pub async fn running_releases(&self, name: &str) -> Result<Vec<String>, ClusterError> {
        let options = bollard::query_parameters::ListTasksOptions {
            filters: Some(HashMap::from([
                ("service".to_string(), vec![name.to_string()]),
                ("desired-state".to_string(), vec!["running".to_string()]),
            ])),
        };
        let tasks = self
            .call("list tasks", self.docker.list_tasks(Some(options)))
            .await?;
        let mut out: Vec<String> = tasks
            .iter()
            .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(models::TaskState::RUNNING))
            .filter_map(|t| task_release(t).map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Runs one API call under the API timeout, naming it in the error.
    async fn call<T>(
        &self,
        call: &'static str,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, ClusterError> {
        self.call_within(call, self.timeouts.api, fut).await
    }

    async fn call_within<T>(
        &self,
        call: &'static str,
        limit: Duration,
        fut: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, ClusterError> {
        within(&self.shown, call, limit, fut).await
    }
}

/// A connection to the Docker Engine at `host` (`unix:///path` or `/path`), the API version
/// negotiated down to the daemon's.
/// Runs one Engine API call on `host` under `limit`, naming it in the error.
pub(crate) async fn within<T>(
    host: &str,
    call: &'static str,
    limit: Duration,
    fut: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(ClusterError::Api {
            host: host.to_string(),
            call,
            reason: e.to_string(),
        }),
        Err(_) => Err(ClusterError::Timeout {
            host: host.to_string(),
            call,
            limit,
        }),
    }
}

pub(crate) async fn engine(host: &str, timeouts: SwarmTimeouts) -> Result<Docker, ClusterError> {
    let unreachable = |reason: String| ClusterError::Unreachable {
        host: host.to_string(),
        reason,
    };
    let path = match host.strip_prefix("unix://") {
        Some(path) => path,
        None if host.starts_with('/') => host,
        None => return Err(unreachable(
            "only unix:// sockets are supported (a remote manager's socket is reached through SSH)"
                .into(),
        )),
    };
    let docker = Docker::connect_with_unix(
        path,
        timeouts.api.as_secs().max(1),
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| unreachable(e.to_string()))?;
    // bollard pins a recent API version, which an older daemon refuses: negotiate down.
    match tokio::time::timeout(timeouts.connect, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer within {:?}",
            timeouts.connect
        ))),
    }
}

/// The `dockhand.release` label of a task's container spec.
fn task_release(task: &models::Task) -> Option<&str> {
    spec_release(task.spec.as_ref()?)
}

/// The `dockhand.release` label of a task spec's container.
fn spec_release(spec: &models::TaskSpec) -> Option<&str> {
    spec.container_spec
        .as_ref()?
        .labels
        .as_ref()?
        .get("dockhand.release")
        .map(String::as_str)
}

/// Who held a deploy lock, and since when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    pub holder: String,
    pub since: i64,
}

/// The Swarm config that is `app`'s deploy lock.
pub fn lock_name(app: &str) -> String {
    format!("dockhand-{app}-lock")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
