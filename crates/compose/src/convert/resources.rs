//! How a service runs: replicas (`scale`, `deploy.replicas`), the restart policy, memory
//! and CPU limits (`mem_limit`/`cpus` or `deploy.resources.limits`), and the container
//! settings services and databases share (`user`, `init`, `shm_size`, `ulimits`,
//! `stop_grace_period`).

use toml_edit::{InlineTable, Table};

use super::cluster::{Kind, Stack};
use super::Notes;
use crate::syntax::{docker_size, duration, restart_text};
use crate::value::Value;
use crate::NoteKind;

/// Writes `replicas`, `restart`, `memory` and `cpus` of service `name` (dockhand name `new`)
/// into `t`; the other `deploy` keys go to `stack` (the Swarm meaning, with `--cluster`).
pub(super) fn scaling_and_limits(
    notes: &mut Notes,
    stack: &mut Stack,
    name: &str,
    new: &str,
    svc: &Value,
    t: &mut Table,
) {
    let get = |k: &str| svc.get(k);
    let mut replicas = get("scale")
        .and_then(|v| v.scalar())
        .and_then(|s| s.parse::<i64>().ok());
    let mut memory = get("mem_limit").and_then(Value::scalar);
    let mut cpus = get("cpus").and_then(Value::scalar);
    let mut restart_policy = None;
    if let Some(deploy) = get("deploy") {
        for (k, v) in deploy.as_map().unwrap_or_default().to_vec() {
            match k.as_str() {
                "replicas" => replicas = v.scalar().and_then(|s| s.parse().ok()),
                "resources" => {
                    for (rk, rv) in v.as_map().unwrap_or_default().to_vec() {
                        if rk == "limits" {
                            for (lk, lv) in rv.as_map().unwrap_or_default().to_vec() {
                                match lk.as_str() {
                                    "memory" => memory = lv.scalar(),
                                    "cpus" => cpus = lv.scalar(),
                                    other => notes.add(
                                        Some(name),
                                        &format!("deploy.resources.limits.{other}"),
                                        NoteKind::NotCarried,
                                        "only memory and cpus limits are supported",
                                    ),
                                }
                            }
                        } else {
                            notes.add(
                                Some(name),
                                &format!("deploy.resources.{rk}"),
                                NoteKind::NotCarried,
                                "only limits (memory, cpus) are supported",
                            );
                        }
                    }
                }
                other => {
                    if let Some(r) = stack.deploy_key(notes, name, new, other, &v, Kind::Service) {
                        restart_policy = Some(r);
                    }
                }
            }
        }
    }
    if let Some(r) = replicas {
        t.insert("replicas", toml_edit::value(r));
    }
    if let Some(policy) = restart_policy {
        // A stack's restart policy: Swarm ignores `restart:` there.
        t.insert("restart", toml_edit::value(policy));
    } else if let Some(r) = get("restart").and_then(restart_text) {
        let (policy, note) = match r.as_str() {
            "no" | "false" => ("never", None),
            "always" => ("always", None),
            "unless-stopped" => ("always", Some("`unless-stopped` became `always`: dockhand restarts a service that exits until it is stopped")),
            s if s.starts_with("on-failure") => ("on-failure", s.contains(':').then_some("the retry count of on-failure is not supported: dockhand backs off and marks a crash loop")),
            _ => ("always", Some("unknown restart policy; `always` assumed")),
        };
        t.insert("restart", toml_edit::value(policy));
        if let Some(n) = note {
            notes.add(Some(name), "restart", NoteKind::Assumed, n);
        }
    }
    if let Some(m) = memory {
        match docker_size(&m) {
            Some(s) => {
                t.insert("memory", toml_edit::value(s));
            }
            None => notes.add(
                Some(name),
                "memory",
                NoteKind::NotCarried,
                format!("cannot read the size `{m}`"),
            ),
        }
    }
    if let Some(c) = cpus.and_then(|c| c.parse::<f64>().ok()) {
        t.insert("cpus", toml_edit::value(c));
    }
}

/// Keys both services and databases carry: user, init, shm_size, ulimits, stop_grace_period.
pub(super) fn common(notes: &mut Notes, name: &str, svc: &Value, t: &mut Table) {
    if let Some(u) = svc.get("user").and_then(Value::scalar) {
        t.insert("user", toml_edit::value(u));
    }
    if let Some(i) = svc.get("init").and_then(Value::as_bool) {
        t.insert("init", toml_edit::value(i));
    }
    if let Some(s) = svc.get("shm_size").and_then(Value::scalar) {
        match docker_size(&s) {
            Some(v) => {
                t.insert("shm_size", toml_edit::value(v));
            }
            None => notes.add(
                Some(name),
                "shm_size",
                NoteKind::NotCarried,
                format!("cannot read the size `{s}`"),
            ),
        }
    }
    if let Some(Value::Map(limits)) = svc.get("ulimits") {
        let mut it = InlineTable::new();
        for (k, v) in limits {
            match v {
                Value::Map(_) => {
                    let mut inner = InlineTable::new();
                    for part in ["soft", "hard"] {
                        if let Some(n) = v
                            .get(part)
                            .and_then(Value::scalar)
                            .and_then(|s| s.parse::<i64>().ok())
                        {
                            inner.insert(part, n.into());
                        }
                    }
                    it.insert(k, inner.into());
                }
                other => {
                    if let Some(n) = other.scalar().and_then(|s| s.parse::<i64>().ok()) {
                        it.insert(k, n.into());
                    }
                }
            }
        }
        t.insert("ulimits", toml_edit::value(it));
    }
    if let Some(d) = svc.get("stop_grace_period").and_then(Value::scalar) {
        t.insert("stop_timeout", toml_edit::value(duration(&d)));
    }
}
