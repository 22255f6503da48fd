//! The compose service keys dockhand has no place for, and the reason the report gives for
//! each: the catalogue the key walks of `service` and `database` end with, so that no key
//! is dropped silently.

use super::names::Names;
use super::Notes;
use crate::value::Value;
use crate::NoteKind;

/// Which table a compose service became.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TableKind {
    Service,
    Database,
}

/// Reports `key` of service `name` as not carried over, with the reason, unless the
/// translation to a `kind` table handles it itself.
pub(super) fn other_key(
    notes: &mut Notes,
    names: &Names,
    name: &str,
    key: &str,
    value: &Value,
    kind: TableKind,
) {
    let handled = match kind {
        TableKind::Service => HANDLED_BY_SERVICE.as_slice(),
        TableKind::Database => HANDLED_BY_DATABASE.as_slice(),
    };
    if handled.contains(&key) {
        return;
    }
    let database = kind == TableKind::Database;
    let reason = match key {
        "expose" => {
            let ports: Vec<String> = value.as_seq().unwrap_or_default().iter().filter_map(Value::scalar).collect();
            format!("not needed: other services reach `{}` on the app network at {}", names.get(name).unwrap_or(name), ports.join(", "))
        }
        "container_name" => "dockhand names containers itself (<app>-<service>-…)".into(),
        "hostname" | "domainname" => format!("containers are reachable on the app network by their service name (`{}`)", names.get(name).unwrap_or(name)),
        "networks" | "network_mode" | "links" | "external_links" => "dockhand gives each app one network on which every service and database reaches the others by name".into(),
        "labels" => "dockhand sets its own container labels (dockhand.app, dockhand.service, …); routing labels are replaced by `route`".into(),
        "logging" => "dockhand captures stdout and stderr itself (`dockhand logs`)".into(),
        "extends" => "`extends` is not followed; copy the keys of the extended service into this one and import again".into(),
        "working_dir" => "no key for the container's working directory; set WORKDIR in the image".into(),
        "cap_add" | "cap_drop" | "privileged" | "devices" | "security_opt" | "sysctls" | "pid" | "ipc" | "userns_mode" | "cgroup" | "cgroup_parent" | "group_add" | "read_only" | "isolation" | "oom_kill_disable" | "oom_score_adj" | "device_cgroup_rules" | "runtime" | "gpus" => "not supported by dockhand's container runtime".into(),
        "stdin_open" | "tty" => "not needed: dockhand runs services detached".into(),
        "dns" | "dns_search" | "dns_opt" | "extra_hosts" | "mac_address" => "custom DNS and host entries are not supported".into(),
        "platform" => "not supported: the image's platform for this host is used".into(),
        "stop_signal" => "dockhand stops containers with SIGTERM".into(),
        "restart" | "depends_on" if database => "databases are started before every service and restarted unless stopped".into(),
        "user" | "init" | "ulimits" | "stop_grace_period" | "tmpfs" | "build" | "pull_policy" | "entrypoint" | "configs" if database => "not supported on databases".into(),
        k if k.starts_with("x-") => "extension field: ignored, as compose does".into(),
        _ => "not supported by dockhand".into(),
    };
    notes.add(Some(name), key, NoteKind::NotCarried, reason);
}

/// The keys the translation of a `[services.NAME]` table handles itself.
const HANDLED_BY_SERVICE: [&str; 25] = [
    "image",
    "build",
    "pull_policy",
    "command",
    "entrypoint",
    "ports",
    "environment",
    "env_file",
    "volumes",
    "secrets",
    "configs",
    "tmpfs",
    "scale",
    "mem_limit",
    "cpus",
    "deploy",
    "restart",
    "user",
    "init",
    "shm_size",
    "ulimits",
    "stop_grace_period",
    "depends_on",
    "healthcheck",
    "profiles",
];

/// The keys the translation of a `[databases.NAME]` table handles itself.
const HANDLED_BY_DATABASE: [&str; 13] = [
    "image",
    "command",
    "ports",
    "environment",
    "env_file",
    "volumes",
    "secrets",
    "mem_limit",
    "cpus",
    "deploy",
    "shm_size",
    "healthcheck",
    "profiles",
];
