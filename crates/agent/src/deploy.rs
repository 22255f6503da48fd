//! Zero-downtime deploys and rollbacks.
//!
//! The steps, in order: commit a pending release → start its instances beside the old ones →
//! run `pre_deploy` hooks in the new release's environment → wait until every new instance
//! passes its health threshold within the service's deadline → commit the release as current
//! → swap the routing table atomically → drain the old instances (no request or WebSocket
//! holds them, or the drain timeout passed) → stop them → run `post_deploy` hooks. Any
//! failure before the commit stops and removes the new instances; the old release never
//! stops serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dockhand_api::{ApiError, DeployReport, ErrorCode, GateFailure, Progress};
use dockhand_config::AppConfig;
use dockhand_runtime::{InstanceState, OneShot};
use dockhand_state::{DeploymentOutcome, EventLevel, ReleaseStatus};

use crate::instances::{self, ActiveRelease, LiveInstance};
use crate::{config_json, internal, routes, state_error, wire, Agent, Sink};

/// Releases retained for rollback beyond the current one.
const KEEP_RELEASES: usize = 10;
/// Timeout of one deploy hook.
const HOOK_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a worker (no port) must stay up to pass its gate.
const WORKER_MIN_UPTIME: Duration = Duration::from_secs(1);

pub async fn deploy_new(
    agent: &Arc<Agent>,
    config: AppConfig,
    requested_by: &str,
    note: &str,
    sink: Sink<'_>,
) -> Result<DeployReport, ApiError> {
    let (release, deployment) = agent
        .store
        .begin_deploy(&config_json(&config), requested_by, note)
        .map_err(state_error)?;
    agent.event(
        EventLevel::Info,
        "deploy",
        Some(release),
        None,
        &format!("deploy of release {release} started by {requested_by}"),
    );
    execute(agent, config, release, deployment, "deploy", sink).await
}

pub async fn rollback(
    agent: &Arc<Agent>,
    target: Option<i64>,
    requested_by: &str,
    sink: Sink<'_>,
) -> Result<DeployReport, ApiError> {
    let release = match target {
        Some(id) => agent
            .store
            .release(id)
            .map_err(state_error)?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    format!("release {id} does not exist; `dockhand releases` lists them"),
                )
            })?,
        None => agent
            .store
            .previous_release()
            .map_err(state_error)?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NotFound,
                    "there is no earlier release to roll back to",
                )
            })?,
    };
    match release.status {
        ReleaseStatus::Current => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("release {} is already the current release", release.id),
            ))
        }
        ReleaseStatus::Pruned | ReleaseStatus::Pending => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "release {} is {} and cannot be rolled back to; `dockhand releases` lists the retained ones",
                    release.id,
                    release.status.as_str()
                ),
            ))
        }
        ReleaseStatus::Retired | ReleaseStatus::Failed => {}
    }
    let config: AppConfig = serde_json::from_str(&release.config).map_err(internal)?;
    let deployment = agent
        .store
        .begin_rollback(release.id, requested_by)
        .map_err(state_error)?;
    agent.event(
        EventLevel::Info,
        "rollback",
        Some(release.id),
        None,
        &format!(
            "rollback to release {} started by {requested_by}",
            release.id
        ),
    );
    execute(agent, config, release.id, deployment, "rollback", sink).await
}

async fn execute(
    agent: &Arc<Agent>,
    config: AppConfig,
    release: i64,
    deployment: i64,
    kind: &str,
    sink: Sink<'_>,
) -> Result<DeployReport, ApiError> {
    let started_at = Instant::now();
    let say = |step: &str, service: Option<&str>, message: String| {
        sink(Progress {
            step: step.into(),
            message: agent.redact(&message),
            service: service.map(str::to_string),
        })
    };
    let mut report = DeployReport {
        release,
        deployment,
        kind: wire::deploy_kind(kind),
        succeeded: false,
        message: String::new(),
        duration_ms: 0,
        failures: Vec::new(),
        warnings: Vec::new(),
    };
    if let Some(current) = agent.live_config() {
        if current.proxy != config.proxy {
            report.warnings.push(
                "the [proxy] settings changed; they take effect when the agent restarts".into(),
            );
        }
    }

    // 0. Databases first (never restarted here), then the release's images.
    let images =
        match crate::containers::prepare_release(agent, &config, release, kind != "rollback", sink)
            .await
        {
            Ok((images, warnings)) => {
                report.warnings.extend(warnings);
                images
            }
            Err(e) => return fail(agent, &[], report, started_at, e.message, sink).await,
        };

    // 1. Start the new instances beside the old ones.
    say(
        "start",
        None,
        match agent.current_release_id() {
            Some(current) => format!("starting release {release} beside release {current}"),
            None => format!("starting release {release}"),
        },
    );
    let new = match instances::start_release(agent, &config, release, deployment, &images).await {
        Ok(v) => v,
        Err((partial, e)) => {
            return fail(agent, &partial, report, started_at, e.message, sink).await;
        }
    };
    for inst in &new {
        say(
            "start",
            Some(&inst.service),
            format!(
                "{} started (pid {}{})",
                inst.id,
                inst.instance
                    .pid()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                inst.port.map(|p| format!(", port {p}")).unwrap_or_default()
            ),
        );
    }

    // 2. pre_deploy hooks, in the new release's environment.
    for svc in config.services.values() {
        let Some(hook) = &svc.hooks.pre_deploy else {
            continue;
        };
        say("hook", Some(&svc.name), format!("pre_deploy: {hook}"));
        if let Err(msg) = run_hook(
            agent,
            &config,
            &svc.name,
            hook,
            release,
            "pre_deploy",
            &images,
        )
        .await
        {
            report.failures.push(GateFailure {
                service: svc.name.clone(),
                instance: String::new(),
                reason: msg.clone(),
                last_probes: Vec::new(),
                last_logs: Vec::new(),
            });
            return fail(agent, &new, report, started_at, msg, sink).await;
        }
    }

    // 3. The health gate.
    say(
        "health",
        None,
        "waiting for every new instance to pass its health check".into(),
    );
    let mut gates = tokio::task::JoinSet::new();
    for inst in &new {
        let svc = &config.services[&inst.service];
        let deadline = svc
            .health
            .as_ref()
            .map(|h| h.deploy_timeout)
            .unwrap_or(Duration::from_secs(60));
        let inst = inst.clone();
        gates.spawn(async move {
            let r = gate(&inst, deadline).await;
            (inst, r)
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = gates.join_next().await {
        let (inst, result) = match joined {
            Ok(r) => r,
            // Gates aborted after the first failure.
            Err(e) if e.is_cancelled() => continue,
            Err(e) => return Err(internal(e)),
        };
        match result {
            Ok(()) => say(
                "health",
                Some(&inst.service),
                format!("{} is healthy", inst.id),
            ),
            Err(reason) => {
                say(
                    "health",
                    Some(&inst.service),
                    format!("{} failed: {reason}", inst.id),
                );
                failures.push(gate_failure(agent, &inst, reason));
                gates.abort_all();
            }
        }
    }
    if !failures.is_empty() {
        let msg = format!(
            "release {release} failed its health gate: {}",
            failures
                .iter()
                .map(|f| format!("{} ({})", f.instance, f.reason))
                .collect::<Vec<_>>()
                .join("; ")
        );
        report.failures = failures;
        return fail(agent, &new, report, started_at, msg, sink).await;
    }

    // 4. Commit, then swap the routing table atomically.
    let table = match routes::build_table(&config, &instances::backends_by_service(&new)) {
        Ok(t) => t,
        Err(e) => {
            return fail(
                agent,
                &new,
                report,
                started_at,
                format!("routing table: {e}"),
                sink,
            )
            .await
        }
    };
    if let Err(e) =
        agent
            .store
            .finish_deployment(deployment, DeploymentOutcome::Succeeded, "serving")
    {
        // Without the record a restart would not know this release: do not serve it.
        let msg = format!(
            "could not record release {release} as current in the state database ({e}); is the disk full?"
        );
        return fail(agent, &new, report, started_at, msg, sink).await;
    }
    let old_table = agent.proxy.set_routes(table);
    let previous = agent.live_lock().replace(ActiveRelease {
        id: release,
        config: config.clone(),
        instances: new.clone(),
    });
    drop(old_table);
    say(
        "swap",
        None,
        format!("release {release} now serves all traffic"),
    );

    // 5. Drain and stop the old instances.
    if let Some(old) = previous {
        let drain_timeout = config.proxy.drain_timeout;
        let backends: Vec<_> = old
            .instances
            .iter()
            .filter_map(|i| i.backend.clone())
            .collect();
        if !backends.is_empty() {
            say(
                "drain",
                None,
                format!(
                    "draining release {} (up to {})",
                    old.id,
                    crate::health::humanize(drain_timeout)
                ),
            );
            let outcome = agent.proxy.drain(&backends, drain_timeout).await;
            if !outcome.idle {
                report.warnings.push(format!(
                    "{} request(s) or connection(s) to release {} were still open after the drain timeout",
                    outcome.remaining, old.id
                ));
            }
        }
        say("stop", None, format!("stopping release {}", old.id));
        instances::retire(agent, &old.instances).await;
    }

    // 6. post_deploy hooks: the release is live, so a failure is a warning.
    for svc in config.services.values() {
        let Some(hook) = &svc.hooks.post_deploy else {
            continue;
        };
        say("hook", Some(&svc.name), format!("post_deploy: {hook}"));
        if let Err(msg) = run_hook(
            agent,
            &config,
            &svc.name,
            hook,
            release,
            "post_deploy",
            &images,
        )
        .await
        {
            report.warnings.push(msg);
        }
    }

    let _ = agent.store.prune_releases(KEEP_RELEASES);
    crate::logs::prune(agent, &config);
    prune_images(agent, &config).await;
    report.succeeded = true;
    let took = started_at.elapsed();
    report.duration_ms = took.as_millis() as u64;
    // Most deploys of a process app take tens of milliseconds: "0.0s" would say nothing.
    let took = if took < Duration::from_secs(1) {
        format!("{} ms", took.as_millis())
    } else {
        format!("{:.1} s", took.as_secs_f64())
    };
    report.message = format!("release {release} is live ({kind} in {took})");
    agent.event(EventLevel::Info, kind, Some(release), None, &report.message);
    for w in &report.warnings {
        agent.event(EventLevel::Warn, kind, Some(release), None, w);
    }
    Ok(report)
}

/// Stops the new instances, records the failure and returns it.
async fn fail(
    agent: &Arc<Agent>,
    new: &[LiveInstance],
    mut report: DeployReport,
    started_at: Instant,
    message: String,
    sink: Sink<'_>,
) -> Result<DeployReport, ApiError> {
    let message = agent.redact(&message);
    sink(Progress {
        step: "abort".into(),
        message: format!(
            "stopping release {} — the current release keeps serving",
            report.release
        ),
        service: None,
    });
    instances::retire(agent, new).await;
    if let Err(e) =
        agent
            .store
            .finish_deployment(report.deployment, DeploymentOutcome::Failed, &message)
    {
        // The next agent start marks the deployment aborted; the current release is intact.
        tracing::error!("failed to record the failed deployment: {e}");
    }
    agent.event(
        EventLevel::Error,
        report.kind.as_str(),
        Some(report.release),
        None,
        &message,
    );
    report.succeeded = false;
    report.duration_ms = started_at.elapsed().as_millis() as u64;
    report.message = message;
    Ok(report)
}

/// Waits until the instance passes its health threshold (web) or stays up (worker).
async fn gate(inst: &LiveInstance, deadline: Duration) -> Result<(), String> {
    let until = tokio::time::Instant::now() + deadline;
    if inst.plan.is_none() {
        tokio::time::sleep(WORKER_MIN_UPTIME.min(deadline)).await;
        let st = inst.instance.status();
        return match st.state {
            InstanceState::Running if st.restarts == 0 => Ok(()),
            _ => Err(exit_reason(inst)),
        };
    }
    let mut health = inst.health.subscribe();
    let mut proc = inst.instance.watch();
    loop {
        if inst.health.verdict() == Some(true) {
            return Ok(());
        }
        let st = inst.instance.status();
        if matches!(
            st.state,
            InstanceState::CrashLoop | InstanceState::Exited | InstanceState::Stopped
        ) {
            return Err(exit_reason(inst));
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {
                let last = inst.health.snapshot().recent.back().cloned();
                let mut hint = String::new();
                if let (Some(404), Some(b), Some(crate::health::ProbePlan { kind: crate::health::ProbeKind::Http { path, .. }, .. })) =
                    (last.as_ref().and_then(|r| r.status), &inst.backend, &inst.plan)
                {
                    if let Some(found) = crate::health::find_health_route(b.addr(), path).await {
                        hint = format!("; is the route `{found}`? GET {found} answers 200 — set health.path = \"{found}\"");
                    }
                }
                return Err(format!(
                    "not healthy within {}{}{hint}",
                    crate::health::humanize(deadline),
                    last.map(|r| format!(" (last probe: {})", r.detail)).unwrap_or_default()
                ));
            }
            _ = health.changed() => {}
            changed = proc.changed() => {
                if changed.is_err() {
                    // The supervisor is gone; its last state is checked above.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

fn exit_reason(inst: &LiveInstance) -> String {
    let st = inst.instance.status();
    let exit = st
        .last_exit
        .map(|e| e.describe())
        .unwrap_or_else(|| "exited".into());
    format!(
        "the process did not stay up ({exit}; {} restart(s))",
        st.restarts
    )
}

fn gate_failure(agent: &Agent, inst: &LiveInstance, reason: String) -> GateFailure {
    let last_probes = inst
        .health
        .snapshot()
        .recent
        .iter()
        .map(|r| format!("{} {}", r.at, r.detail))
        .collect();
    let last_logs = dockhand_runtime::read_log(
        &inst.log_path,
        &dockhand_runtime::LogQuery {
            tail: Some(20),
            ..Default::default()
        },
    )
    .unwrap_or_default()
    .into_iter()
    .map(|l| agent.redact(&l.text))
    .collect();
    GateFailure {
        service: inst.service.clone(),
        instance: inst.id.clone(),
        reason: agent.redact(&reason),
        last_probes,
        last_logs,
    }
}

/// Removes the images built for releases that are no longer retained. Failures are logged:
/// a leftover image costs disk, not correctness.
async fn prune_images(agent: &Arc<Agent>, config: &AppConfig) {
    if !config
        .services
        .values()
        .any(|s| s.container.as_ref().is_some_and(|c| c.build.is_some()))
    {
        return;
    }
    let Ok(releases) = agent.store.releases(usize::MAX) else {
        return;
    };
    let retained: Vec<(i64, AppConfig)> = releases
        .iter()
        .filter(|r| r.status != ReleaseStatus::Pruned)
        .filter_map(|r| Some((r.id, serde_json::from_str(&r.config).ok()?)))
        .collect();
    let keep = crate::containers::retained_tags(&retained);
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    if let Ok(rt) = agent.containers().await {
        match rt.prune_images(&config.app, &keep).await {
            Ok(removed) if !removed.is_empty() => tracing::info!(
                removed = removed.len(),
                "removed images of releases no longer retained"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("could not remove old images: {e}"),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_hook(
    agent: &Arc<Agent>,
    config: &AppConfig,
    service: &str,
    hook: &str,
    release: i64,
    which: &str,
    images: &crate::containers::Images,
) -> Result<(), String> {
    let svc = &config.services[service];
    let secrets = instances::secrets_for(agent, config).map_err(|e| e.message)?;
    let env =
        instances::service_env(config, svc, release, secrets.as_ref()).map_err(|e| e.message)?;
    let log_path = agent
        .opts
        .state_dir
        .join("logs")
        .join(service)
        .join(format!("{which}-r{release}.log"));
    let ran = match (svc.container.is_some(), images.get(service)) {
        (true, Some(image)) => {
            let rt = agent.containers().await.map_err(|e| e.message)?;
            let spec = crate::containers::job_spec(
                config,
                svc,
                release,
                &format!("r{release}-{which}-{service}"),
                image,
                env,
                hook,
                log_path,
            );
            rt.run_once(spec, HOOK_TIMEOUT).await
        }
        _ => {
            agent
                .runtime
                .run_once(OneShot {
                    command: hook.to_string(),
                    workdir: svc.workdir.clone(),
                    env,
                    timeout: HOOK_TIMEOUT,
                    log_path: Some(log_path),
                })
                .await
        }
    };
    let out = ran.map_err(|e| format!("{which} hook of {service} could not run: {e}"))?;
    let tail: String = out
        .output
        .lines()
        .rev()
        .take(10)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    match (out.timed_out, out.exit_code) {
        (true, _) => Err(agent.redact(&format!(
            "{which} hook of {service} (`{hook}`) timed out after {}s\n{tail}",
            HOOK_TIMEOUT.as_secs()
        ))),
        (false, Some(0)) => Ok(()),
        (false, code) => Err(agent.redact(&format!(
            "{which} hook of {service} (`{hook}`) failed with {}\n{tail}",
            code.map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| "a signal".into())
        ))),
    }
}
