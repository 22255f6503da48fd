//! Process inspection through /proc: which processes carry an environment marker (how the
//! tests prove no orphan survives).

/// A process found in /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    /// The value of the matched variable.
    pub value: String,
}

/// Every live (non-zombie) process whose environment has `name` starting with `prefix`.
pub fn processes_with_env(name: &str, prefix: &str) -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    let key = format!("{name}=");
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if is_zombie(pid) {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        for var in env.split(|b| *b == 0) {
            let var = String::from_utf8_lossy(var);
            if let Some(v) = var.strip_prefix(&key) {
                if v.starts_with(prefix) {
                    out.push(Proc {
                        pid,
                        value: v.to_string(),
                    });
                }
            }
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
