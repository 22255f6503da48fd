//! The capacity phase of the cluster bench (issue 24 item 7): what the platform holds on each
//! node and what each replica adds, the figures `docs/capacity.md`'s model is built on.
//!
//! - [`idle`]: each node's engine processes (`dockerd`, the `containerd` it started, the
//!   `containerd-shim`s; by command name) and containers (by service), their resident memory
//!   at the end of a window and their CPU time over it: with nothing deployed, and again with
//!   the bench app running (and the watch-only agent on the first manager's host).
//! - [`raft`]: the first manager's Raft store (`swarm/raft` in its data root: the write-ahead
//!   log's bytes written, the snapshots) and the swarm's configs (where the release history
//!   lives), sampled after each release.
//! - [`scale`]: a service scaled step by step with the docker CLI; each step's time to
//!   converge (every task running, which for a task with a health check means healthy) and a
//!   window after it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use dockhand_test_support::footprint::{self, Mem};
use dockhand_test_support::swarm::{Cluster, Node};
use serde_json::{json, Value};

/// A group of processes at one instant: how many, their memory, their CPU time so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub count: u64,
    pub mem: Mem,
    pub cpu_ms: f64,
}

/// One node at one instant: its engine's processes by command name, its containers by
/// service (the app's prefix taken off: `ingress`, `spread`, …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSample {
    pub engine: BTreeMap<String, Group>,
    pub containers: BTreeMap<String, Group>,
}

/// Every node at one instant, by hostname.
pub type Sample = BTreeMap<String, NodeSample>;

/// Every node of `cluster` now.
pub fn sample(cluster: &Cluster, app: &str) -> Sample {
    cluster
        .nodes()
        .iter()
        .map(|n| (n.hostname().to_string(), node_sample(n, app)))
        .collect()
}

/// A window of `seconds` with nothing done: [`window`] between a sample at its start and one
/// at its end; `extra` processes (the watch-only agent) are reported under `processes`.
pub fn idle(cluster: &Cluster, app: &str, seconds: u64, extra: &[(&str, i32)]) -> Value {
    let s0 = sample(cluster, app);
    let p0: Vec<Option<(Mem, f64)>> = extra.iter().map(|(_, p)| footprint::process(*p)).collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let s1 = sample(cluster, app);
    let p1: Vec<Option<(Mem, f64)>> = extra.iter().map(|(_, p)| footprint::process(*p)).collect();
    let secs = t0.elapsed().as_secs_f64();
    let mut out = window(&s0, &s1, secs);
    let mut processes = serde_json::Map::new();
    for (((name, _), a), b) in extra.iter().zip(p0).zip(p1) {
        let v = match (a, b) {
            (Some((_, c0)), Some((mem, c1))) => group_json(
                &Group {
                    count: 1,
                    mem,
                    cpu_ms: c1,
                },
                Some(c1 - c0),
            ),
            _ => Value::Null,
        };
        processes.insert(name.to_string(), v);
    }
    out["processes"] = Value::Object(processes);
    out
}

/// The window between two samples (pure): per node and group, the memory at `end` and the
/// CPU time spent between the two (`null` for a group that `start` did not have).
pub fn window(start: &Sample, end: &Sample, seconds: f64) -> Value {
    let groups = |now: &BTreeMap<String, Group>, before: Option<&BTreeMap<String, Group>>| {
        now.iter()
            .map(|(name, g)| {
                let spent = before
                    .and_then(|b| b.get(name))
                    .map(|b| g.cpu_ms - b.cpu_ms);
                (name.clone(), group_json(g, spent))
            })
            .collect::<serde_json::Map<String, Value>>()
    };
    let nodes: serde_json::Map<String, Value> = end
        .iter()
        .map(|(host, n)| {
            let before = start.get(host);
            (
                host.clone(),
                json!({
                    "engine": groups(&n.engine, before.map(|b| &b.engine)),
                    "containers": groups(&n.containers, before.map(|b| &b.containers)),
                }),
            )
        })
        .collect();
    json!({"seconds": seconds, "nodes": nodes})
}

fn group_json(g: &Group, cpu_ms: Option<f64>) -> Value {
    json!({
        "count": g.count,
        "rss_kib": g.mem.rss_kib,
        "anon_kib": g.mem.anon_kib,
        "file_kib": g.mem.file_kib,
        "pss_kib": g.mem.pss_kib,
        "cpu_ms": cpu_ms,
    })
}

fn node_sample(node: &Node, app: &str) -> NodeSample {
    let mut out = NodeSample::default();
    for pid in node.engine_pids() {
        let (Some(comm), Some((mem, cpu_ms))) = (footprint::comm(pid), footprint::process(pid))
        else {
            continue;
        };
        add(&mut out.engine, &comm, mem, cpu_ms);
    }
    let listed = node.docker(&[
        "ps",
        "--no-trunc",
        "--format",
        "{{.ID}}\t{{.Label \"com.docker.swarm.service.name\"}}",
    ]);
    let prefix = format!("{app}-");
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let Some((id, service)) = line.split_once('\t') else {
            continue;
        };
        let service = service.strip_prefix(&prefix).unwrap_or(service);
        let service = if service.is_empty() { "other" } else { service };
        if let Some((mem, cpu_ms)) = container(node, id) {
            add(&mut out.containers, service, mem, cpu_ms);
        }
    }
    out
}

fn add(groups: &mut BTreeMap<String, Group>, name: &str, mem: Mem, cpu_ms: f64) {
    let g = groups.entry(name.to_string()).or_default();
    g.count += 1;
    g.mem += mem;
    g.cpu_ms += cpu_ms;
}

/// A container's memory (every process in its memory cgroup) and CPU time (its `cpuacct`
/// cgroup's, which keeps the time of processes that exited: the health commands).
fn container(node: &Node, id: &str) -> Option<(Mem, f64)> {
    let out = node.docker(&["inspect", "--format", "{{.State.Pid}}", id]);
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut mem = Mem::default();
    let mem_dir = footprint::cgroup_dir(&cgroups, "memory")?;
    for p in footprint::cgroup_pids(&mem_dir) {
        if let Some((m, _)) = footprint::process(p) {
            mem += m;
        }
    }
    let cpu_dir = footprint::cgroup_dir(&cgroups, "cpuacct")?;
    let cpu_ms = std::fs::read_to_string(cpu_dir.join("cpuacct.usage"))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map(|ns| ns as f64 / 1e6)
        .or_else(|| {
            let stat = std::fs::read_to_string(cpu_dir.join("cpu.stat")).ok()?;
            stat.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|us| us as f64 / 1e3)
        })?;
    Some((mem, cpu_ms))
}

/// The first manager's Raft store and the swarm's configs now: `label` says after what.
pub fn raft(node: &Node, label: &str) -> Value {
    let dir = node.dir().join("data/swarm/raft");
    let (mut wal_files, mut wal_written, mut wal_allocated) = (0u64, 0u64, 0u64);
    let (mut snap_files, mut snap_bytes, mut dir_allocated) = (0u64, 0u64, 0u64);
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            dir_allocated += meta.blocks() * 512;
            let parent = d.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if parent.starts_with("wal") && path.extension().is_some_and(|x| x == "wal") {
                wal_files += 1;
                wal_allocated += meta.blocks() * 512;
                wal_written += std::fs::read(&path).map_or(0, |b| written_len(&b)) as u64;
            } else if parent.starts_with("snap") {
                snap_files += 1;
                snap_bytes += meta.len();
            }
        }
    }
    let (configs, config_bytes) = configs(node);
    let dockerd = node
        .engine_pids()
        .into_iter()
        .find(|p| footprint::comm(*p).as_deref() == Some("dockerd"))
        .and_then(footprint::process)
        .map(|(m, _)| m.rss_kib);
    json!({
        "after": label,
        "wal_files": wal_files,
        "wal_written_bytes": wal_written,
        "wal_allocated_bytes": wal_allocated,
        "snap_files": snap_files,
        "snap_bytes": snap_bytes,
        "raft_dir_allocated_bytes": dir_allocated,
        "configs": configs,
        "config_bytes": config_bytes,
        "dockerd_rss_kib": dockerd,
        "exists": Path::new(&dir).is_dir(),
    })
}

/// How far a preallocated write-ahead-log segment was written: up to its last byte that is
/// not zero (etcd's WAL, which Swarm's Raft uses, fills a new 64 MiB segment with zeros and
/// writes its records from the start).
pub fn written_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

/// The swarm's configs: how many, and their data's bytes in all.
fn configs(node: &Node) -> (u64, u64) {
    let ids = node.docker_ok(&["config", "ls", "-q"]);
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    if ids.is_empty() {
        return (0, 0);
    }
    let mut args = vec!["config", "inspect", "--format", "{{len .Spec.Data}}"];
    args.extend(&ids);
    let sizes = node.docker_ok(&args);
    let bytes = sizes
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .sum();
    (ids.len() as u64, bytes)
}

/// The app's overlay network as each node sees it: its subnet (Swarm's default pool gives a
/// /24) and the endpoints on it there (tasks, and the node's `lb-…` load-balancer endpoint,
/// each holding an address of the subnet), with the endpoints' names.
pub fn overlay(cluster: &Cluster, network: &str) -> Value {
    let mut nodes = serde_json::Map::new();
    let mut subnet = Value::Null;
    for node in cluster.nodes() {
        let out = node.docker(&[
            "network",
            "inspect",
            "--format",
            "{{json .IPAM.Config}}\t{{json .Containers}}",
            network,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let Some((ipam, containers)) = text.trim().split_once('\t') else {
            continue;
        };
        if let Ok(ipam) = serde_json::from_str::<Value>(ipam) {
            if let Some(s) = ipam.get(0).and_then(|c| c.get("Subnet")) {
                subnet = s.clone();
            }
        }
        let names: Vec<String> = serde_json::from_str::<Value>(containers)
            .ok()
            .and_then(|c| c.as_object().cloned())
            .map(|m| {
                m.values()
                    .filter_map(|v| v.get("Name").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        // The node's load-balancer endpoint: `lb-<network>` or `<network>-endpoint`.
        let lb = names
            .iter()
            .filter(|n| n.starts_with("lb-") || n.ends_with("-endpoint"))
            .count();
        nodes.insert(
            node.hostname().to_string(),
            json!({"endpoints": names.len(), "lb_endpoints": lb, "names": names}),
        );
    }
    json!({"network": network, "subnet": subnet, "nodes": nodes})
}

/// `service` (a full Swarm service name) scaled to each of `steps` in turn with the docker
/// CLI: the time until every task runs, and a window of `seconds` after `settle` once it did.
/// The service is left at the last step.
pub fn scale(
    cluster: &Cluster,
    app: &str,
    service: &str,
    steps: &[usize],
    settle: Duration,
    seconds: u64,
    log: &dyn Fn(&str),
) -> Vec<Value> {
    let mut out = Vec::new();
    for &replicas in steps {
        cluster.manager().docker_ok(&[
            "service",
            "scale",
            "--detach",
            &format!("{service}={replicas}"),
        ]);
        let converge_ms = converge(cluster.manager(), service, replicas);
        log(&format!(
            "scale: {service} at {replicas} replicas, converged after {}",
            converge_ms.map_or("(timed out)".to_string(), |m| format!("{m:.0} ms")),
        ));
        if seconds == 0 {
            out.push(json!({"replicas": replicas, "converge_ms": converge_ms}));
            continue;
        }
        std::thread::sleep(settle);
        let window = idle(cluster, app, seconds, &[]);
        out.push(json!({"replicas": replicas, "converge_ms": converge_ms, "window": window}));
    }
    out
}

/// Polls until `service` has `replicas` tasks meant to run and all of them run (at most
/// 600 s): the time it took, or `None`.
fn converge(manager: &Node, service: &str, replicas: usize) -> Option<f64> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(600);
    while Instant::now() < deadline {
        let out = manager.docker(&[
            "service",
            "ps",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.CurrentState}}",
            service,
        ]);
        let (total, running) = running_count(&String::from_utf8_lossy(&out.stdout));
        if out.status.success() && total == replicas && running == replicas {
            return Some(start.elapsed().as_secs_f64() * 1000.0);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// Of `docker service ps --format '{{.CurrentState}}'`'s lines: how many tasks, and how many
/// of them run (`Running 3 seconds ago`; `Starting` until a health check passed).
pub fn running_count(text: &str) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let running = lines
        .iter()
        .filter(|l| l.trim_start().starts_with("Running"))
        .count();
    (lines.len(), running)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(count: u64, rss: u64, cpu_ms: f64) -> Group {
        Group {
            count,
            mem: Mem {
                rss_kib: rss,
                anon_kib: rss / 2,
                file_kib: rss - rss / 2,
                pss_kib: rss / 3,
            },
            cpu_ms,
        }
    }

    #[test]
    fn a_window_keeps_the_memory_at_its_end_and_the_cpu_spent_in_it() {
        let mut start = Sample::new();
        let mut n = NodeSample::default();
        n.engine.insert("dockerd".into(), group(1, 50_000, 1_000.0));
        n.containers
            .insert("ingress".into(), group(1, 8_000, 200.0));
        start.insert("m1".into(), n);
        let mut end = Sample::new();
        let mut n = NodeSample::default();
        n.engine.insert("dockerd".into(), group(1, 52_000, 1_300.0));
        n.containers
            .insert("ingress".into(), group(1, 8_100, 260.0));
        // A task started in the window: its memory, but no CPU time for the window.
        n.containers.insert("spread".into(), group(2, 10_000, 50.0));
        end.insert("m1".into(), n);
        let w = window(&start, &end, 30.0);
        assert_eq!(w["seconds"], 30.0);
        let m1 = &w["nodes"]["m1"];
        assert_eq!(m1["engine"]["dockerd"]["rss_kib"], 52_000);
        assert_eq!(m1["engine"]["dockerd"]["anon_kib"], 26_000);
        assert_eq!(m1["engine"]["dockerd"]["pss_kib"], 17_333);
        assert_eq!(m1["engine"]["dockerd"]["cpu_ms"], 300.0);
        assert_eq!(m1["containers"]["ingress"]["cpu_ms"], 60.0);
        assert_eq!(m1["containers"]["spread"]["count"], 2);
        assert_eq!(m1["containers"]["spread"]["cpu_ms"], Value::Null);
    }

    #[test]
    fn a_wal_segment_is_written_up_to_its_last_nonzero_byte() {
        let mut seg = vec![0u8; 4096];
        assert_eq!(written_len(&seg), 0);
        seg[0] = 7;
        seg[1000] = 1;
        assert_eq!(written_len(&seg), 1001);
        seg[4095] = 9;
        assert_eq!(written_len(&seg), 4096);
    }

    #[test]
    fn tasks_count_as_running_only_once_they_run() {
        let text = "Running 3 seconds ago\nStarting 1 second ago\nRunning about a minute ago\n\nPreparing 2 seconds ago\n";
        assert_eq!(running_count(text), (4, 2));
        assert_eq!(running_count(""), (0, 0));
    }
}
