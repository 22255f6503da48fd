//! `healthcheck` → `health`: a `curl`/`wget` probe of the service's own web port becomes an
//! HTTP check by the agent (`path`), any other test a `command`; interval, timeout,
//! start period and retries carry over, the rest is reported.

use toml_edit::{Array, InlineTable};

use super::Notes;
use crate::syntax::{duration, escape, http_probe};
use crate::value::Value;
use crate::NoteKind;

/// The `health` table of service `name` from its `healthcheck` `hc`; `port` is its web port
/// (none for databases), which a probe must target to become an HTTP check.
pub(super) fn health(
    notes: &mut Notes,
    name: &str,
    hc: &Value,
    port: Option<u16>,
) -> Option<InlineTable> {
    if hc.get("disable").and_then(Value::as_bool) == Some(true) {
        notes.add(
            Some(name),
            "healthcheck",
            NoteKind::NotCarried,
            "disabled in compose; no health check written",
        );
        return None;
    }
    let test = hc.get("test");
    let mut it = InlineTable::new();
    match test {
        None => {
            notes.add(Some(name), "healthcheck", NoteKind::NotCarried, "uses the image's own HEALTHCHECK, which dockhand does not run; add `health` (a `path` for web services, or a `command`)");
            return None;
        }
        Some(Value::Seq(items)) => {
            let words: Vec<String> = items.iter().filter_map(Value::scalar).collect();
            match words.first().map(String::as_str) {
                Some("NONE") => {
                    notes.add(
                        Some(name),
                        "healthcheck.test",
                        NoteKind::NotCarried,
                        "NONE disables the image's health check; no health check written",
                    );
                    return None;
                }
                Some("CMD") => {
                    let args = &words[1..];
                    if let Some(path) = http_probe(&args.join(" "), port) {
                        http_notes(notes, name, &args.join(" "));
                        it.insert("path", path.into());
                    } else {
                        let arr: Array = args.iter().map(|a| escape(a)).collect();
                        it.insert("command", arr.into());
                    }
                }
                Some("CMD-SHELL") => {
                    let cmd = words[1..].join(" ");
                    shell_health(notes, name, &cmd, port, &mut it);
                }
                _ => {
                    notes.add(
                        Some(name),
                        "healthcheck.test",
                        NoteKind::NotCarried,
                        "a test list must start with CMD, CMD-SHELL or NONE",
                    );
                    return None;
                }
            }
        }
        Some(other) => {
            let cmd = other.scalar().unwrap_or_default();
            shell_health(notes, name, &cmd, port, &mut it);
        }
    }
    for (k, v) in hc.as_map().unwrap_or_default().to_vec() {
        match k.as_str() {
            "test" | "disable" => {}
            "interval" | "timeout" | "start_period" => {
                it.insert(&k, duration(&v.scalar().unwrap_or_default()).into());
            }
            "retries" => {
                if let Some(n) = v.scalar().and_then(|s| s.parse::<i64>().ok()) {
                    it.insert("unhealthy_threshold", n.into());
                }
            }
            other => notes.add(
                Some(name),
                &format!("healthcheck.{other}"),
                NoteKind::NotCarried,
                "not supported by dockhand's health checks",
            ),
        }
    }
    Some(it)
}

/// A shell test: an HTTP check when it probes `port`, else a shell `command`.
fn shell_health(notes: &mut Notes, name: &str, cmd: &str, port: Option<u16>, it: &mut InlineTable) {
    if let Some(path) = http_probe(cmd, port) {
        http_notes(notes, name, cmd);
        it.insert("path", path.into());
    } else {
        it.insert("command", escape(cmd).into());
    }
}

/// The note for a probe that became an HTTP check (and what changed for a lenient curl).
fn http_notes(notes: &mut Notes, name: &str, cmd: &str) {
    let lenient_curl = cmd.split_whitespace().next() == Some("curl")
        && !cmd.split_whitespace().any(|w| {
            w == "-f"
                || w == "--fail"
                || (w.starts_with('-') && !w.starts_with("--") && w.contains('f'))
        });
    let mut msg =
        format!("`{cmd}` became an HTTP check by the agent (the image needs no curl or wget)");
    if lenient_curl {
        msg.push_str("; curl without -f accepted any status, dockhand expects 200");
    }
    notes.add(Some(name), "healthcheck.test", NoteKind::Assumed, msg);
}

/// The localhost port a `curl`/`wget` healthcheck fetches, if that is all it does.
pub(super) fn probe_port(hc: &Value) -> Option<u16> {
    let cmd = match hc.get("test")? {
        Value::Seq(items) => {
            let words: Vec<String> = items.iter().filter_map(Value::scalar).collect();
            match words.first().map(String::as_str) {
                Some("CMD") | Some("CMD-SHELL") => words[1..].join(" "),
                _ => return None,
            }
        }
        other => other.scalar()?,
    };
    crate::syntax::probe_url(&cmd).map(|(port, _)| port)
}
