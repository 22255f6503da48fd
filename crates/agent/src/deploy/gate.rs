//! The health gate of one new instance: it passes its health threshold (or, a worker, stays
//! up) before its deadline, or the deploy stops with the reason, the last probes and the last
//! log lines.

use std::time::Duration;

use dockhand_runtime::InstanceState;

use super::plan::{GateCheck, GateKind};
use super::Failure;
use crate::fleet::LiveInstance;
use crate::health::{self, ProbeKind, ProbePlan};
use crate::secrets::Redactor;

/// How long a worker (no port) must stay up to pass its gate.
const WORKER_MIN_UPTIME: Duration = Duration::from_secs(1);

/// Waits until the instance passes its gate; `Err` says why it did not.
pub async fn wait(inst: &LiveInstance, check: &GateCheck) -> Result<(), String> {
    let deadline = check.deadline;
    let until = tokio::time::Instant::now() + deadline;
    if check.kind == GateKind::StaysUp || inst.plan.is_none() {
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
            _ = tokio::time::sleep_until(until) => return Err(timed_out(inst, deadline).await),
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

/// Why an instance is not healthy at its deadline, with a route that would answer when the
/// configured one gave 404.
async fn timed_out(inst: &LiveInstance, deadline: Duration) -> String {
    let last = inst.health.snapshot().recent.back().cloned();
    let mut hint = String::new();
    if let (
        Some(404),
        Some(addr),
        Some(ProbePlan {
            kind: ProbeKind::Http { path, .. },
            ..
        }),
    ) = (
        last.as_ref().and_then(|r| r.status),
        inst.addr(),
        &inst.plan,
    ) {
        if let Some(found) = health::find_health_route(addr, path).await {
            hint = format!(
                "; is the route `{found}`? GET {found} answers 200 — set health.path = \"{found}\""
            );
        }
    }
    format!(
        "not healthy within {}{}{hint}",
        health::humanize(deadline),
        last.map(|r| format!(" (last probe: {})", r.detail))
            .unwrap_or_default()
    )
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

/// What the user sees of a failed gate: the reason, the last probes and log lines.
pub fn failure(inst: &LiveInstance, reason: String, redactor: &Redactor) -> Failure {
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
    .map(|l| redactor.redact(&l.text))
    .collect();
    Failure {
        service: inst.service.clone(),
        instance: inst.id.clone(),
        reason: redactor.redact(&reason),
        last_probes,
        last_logs,
    }
}
