//! Reading a compose project: finding its files, parsing YAML, interpolating
//! every string value, and merging several files by the Compose specification's merge rules
//! (mappings merge, scalars replace, `command`/`entrypoint`/`healthcheck.test` replace, ports
//! and other lists append without duplicates, `environment`/`labels` merge by key, `volumes`
//! by target, `secrets`/`configs` by source). YAML anchors and `<<` merge keys are expanded by
//! serde-saphyr itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::interpolate::{interpolate, Vars};
use crate::value::Value;
use crate::ImportError;

/// The file names compose looks for, in its order of preference.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// A variable that was unset where a compose file used it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsetVar {
    pub file: PathBuf,
    /// Dotted path of the value, e.g. `services.web.image`.
    pub at: String,
    pub var: String,
}

/// The merged, interpolated project model.
#[derive(Debug)]
pub struct Project {
    /// The merged top-level mapping.
    pub root: Vec<(String, Value)>,
    pub unset: Vec<UnsetVar>,
    /// Variables whose (non-empty) values were substituted, by where.
    pub used: Vec<UnsetVar>,
}

/// The compose files of `dir` when none are given: the first default name that exists, and
/// its override file (`compose.override.yaml` beside `compose.yaml`, and so on).
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    for name in DEFAULT_FILES {
        let path = dir.join(name);
        if path.is_file() {
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name, "yaml"));
            let over = dir.join(format!("{stem}.override.{ext}"));
            let mut files = vec![path];
            if over.is_file() {
                files.push(over);
            }
            return Ok(files);
        }
    }
    Err(ImportError::NoComposeFile {
        dir: dir.to_path_buf(),
    })
}

/// Reads, interpolates (with `vars`) and merges `files`, in order.
pub fn load(files: &[PathBuf], vars: &BTreeMap<String, String>) -> Result<Project, ImportError> {
    let mut root: Vec<(String, Value)> = Vec::new();
    let mut unset = Vec::new();
    let mut used = Vec::new();
    for file in files {
        let doc = parse_file(file)?;
        let Value::Map(mut map) = doc else {
            if doc == Value::Null {
                continue;
            }
            return Err(ImportError::Invalid {
                file: file.clone(),
                message: format!("the top level is {}, expected a mapping", doc.kind()),
            });
        };
        let mut ctx = Interp {
            file,
            vars: Vars { map: vars },
            unset: &mut unset,
            used: &mut used,
        };
        for (key, value) in &mut map {
            ctx.walk(key, value)?;
        }
        if let Some(services) = map.iter().find(|(k, _)| k == "services") {
            validate_services(&services.1).map_err(|message| ImportError::Invalid {
                file: file.clone(),
                message,
            })?;
        }
        merge_top(&mut root, map);
    }
    Ok(Project { root, unset, used })
}

/// Parses one YAML file into a `Value`, with the file, line and column of a syntax error.
pub fn parse_file(file: &Path) -> Result<Value, ImportError> {
    let text = std::fs::read_to_string(file).map_err(|source| ImportError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    parse_str(file, &text)
}

/// Parses YAML text that came from `file`.
pub fn parse_str(file: &Path, text: &str) -> Result<Value, ImportError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = e.to_string();
        // The library prefixes "error: line L column C: "; keep only the description.
        let message = match message.find(": ") {
            Some(i) if message.starts_with("error: line ") => {
                let rest = &message[i + 2..];
                match rest.find(": ") {
                    Some(j) if rest.starts_with("line ") || rest[..j].contains("column") => {
                        rest[j + 2..].to_owned()
                    }
                    _ => rest.to_owned(),
                }
            }
            _ => message,
        };
        ImportError::Yaml {
            file: file.to_path_buf(),
            line,
            column,
            message: message.lines().next().unwrap_or_default().to_owned(),
        }
    })
}

/// The shapes compose allows for each service key the importer reads; a key of another
/// shape is an error of the file (as `docker compose` would say), never silently ignored.
fn validate_services(services: &Value) -> Result<(), String> {
    let entries = match services {
        Value::Null => return Ok(()),
        Value::Map(m) => m,
        other => {
            return Err(format!(
                "`services` is {}, expected a mapping",
                other.kind()
            ))
        }
    };
    for (name, svc) in entries {
        let keys = match svc {
            Value::Map(m) => m,
            Value::Null => continue,
            other => {
                return Err(format!(
                    "service `{name}` is {}, expected a mapping",
                    other.kind()
                ))
            }
        };
        for (key, value) in keys {
            let scalar = value.scalar().is_some();
            let ok = match key.as_str() {
                "ports" | "expose" | "volumes" | "secrets" | "configs" | "cap_add" | "cap_drop"
                | "devices" | "profiles" | "security_opt" | "networks" => {
                    matches!(value, Value::Seq(_))
                        || (key == "networks" && matches!(value, Value::Map(_)))
                }
                "environment" | "labels" | "depends_on" | "extra_hosts" | "sysctls" => {
                    matches!(value, Value::Seq(_) | Value::Map(_))
                }
                "healthcheck" | "deploy" | "ulimits" | "logging" => matches!(value, Value::Map(_)),
                "build" => scalar || matches!(value, Value::Map(_)),
                "command" | "entrypoint" | "env_file" | "dns" | "dns_search" | "tmpfs" => {
                    scalar || matches!(value, Value::Seq(_))
                }
                "image" | "restart" | "user" | "init" | "shm_size" | "stop_grace_period"
                | "mem_limit" | "cpus" | "scale" | "pull_policy" | "container_name"
                | "hostname" | "working_dir" => scalar,
                _ => true,
            };
            if !ok && *value != Value::Null {
                return Err(format!(
                    "services.{name}.{key} cannot be {}; see the Compose specification for its forms",
                    value.kind()
                ));
            }
        }
    }
    Ok(())
}

struct Interp<'a> {
    file: &'a Path,
    vars: Vars<'a>,
    unset: &'a mut Vec<UnsetVar>,
    used: &'a mut Vec<UnsetVar>,
}

impl Interp<'_> {
    fn walk(&mut self, at: &str, value: &mut Value) -> Result<(), ImportError> {
        match value {
            Value::Str(s) => {
                let out =
                    interpolate(s, &self.vars).map_err(|message| ImportError::Interpolation {
                        file: self.file.to_path_buf(),
                        at: at.to_owned(),
                        message,
                    })?;
                for var in out.used {
                    self.used.push(UnsetVar {
                        file: self.file.to_path_buf(),
                        at: at.to_owned(),
                        var,
                    });
                }
                for var in out.unset {
                    self.unset.push(UnsetVar {
                        file: self.file.to_path_buf(),
                        at: at.to_owned(),
                        var,
                    });
                }
                *s = out.value;
            }
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.walk(&format!("{at}[{i}]"), item)?;
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    self.walk(&format!("{at}.{k}"), v)?;
                }
            }
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
        }
        Ok(())
    }
}

fn merge_top(root: &mut Vec<(String, Value)>, over: Vec<(String, Value)>) {
    for (key, value) in over {
        let Some(slot) = root.iter_mut().find(|(k, _)| *k == key) else {
            let value = if key == "services" {
                normalise_services(value)
            } else {
                value
            };
            root.push((key, value));
            continue;
        };
        if key == "services" {
            let base = std::mem::replace(&mut slot.1, Value::Null);
            let mut services = match normalise_services(base) {
                Value::Map(m) => m,
                _ => Vec::new(),
            };
            if let Value::Map(over) = normalise_services(value) {
                for (name, svc) in over {
                    match services.iter_mut().find(|(n, _)| *n == name) {
                        Some(existing) => {
                            let base = std::mem::replace(&mut existing.1, Value::Null);
                            existing.1 = merge_service(base, svc);
                        }
                        None => services.push((name, svc)),
                    }
                }
            }
            slot.1 = Value::Map(services);
        } else {
            let base = std::mem::replace(&mut slot.1, Value::Null);
            slot.1 = merge_generic(base, value);
        }
    }
}

fn normalise_services(value: Value) -> Value {
    match value {
        Value::Map(m) => Value::Map(
            m.into_iter()
                .map(|(name, svc)| (name, normalise_service(svc)))
                .collect(),
        ),
        other => other,
    }
}

/// Puts the keys that have two spellings into one, so merging can work key by key:
/// `environment`, `labels`, `extra_hosts`, `sysctls` as maps; `depends_on` as a map;
/// `build` as a map; list-or-string keys as lists.
fn normalise_service(svc: Value) -> Value {
    let Value::Map(entries) = svc else {
        return svc;
    };
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| {
                let v = match k.as_str() {
                    "environment" | "labels" | "sysctls" | "annotations" => list_to_map(v, '='),
                    "extra_hosts" => list_to_map(v, ':'),
                    "depends_on" => depends_to_map(v),
                    "build" => match v {
                        Value::Str(s) => Value::Map(vec![("context".into(), Value::Str(s))]),
                        other => other,
                    },
                    "dns" | "dns_search" | "tmpfs" | "env_file" | "expose" => match v {
                        Value::Seq(_) | Value::Null => v,
                        scalar => Value::Seq(vec![scalar]),
                    },
                    _ => v,
                };
                (k, v)
            })
            .collect(),
    )
}

/// `["A=1", "B"]` as `{A: "1", B: null}`; a map stays a map.
pub fn list_to_map(v: Value, sep: char) -> Value {
    match v {
        Value::Seq(items) => {
            let mut out: Vec<(String, Value)> = Vec::new();
            for item in items {
                let text = item.scalar().unwrap_or_default();
                let (k, v) = match text.split_once(sep) {
                    Some((k, v)) => (k.to_owned(), Value::Str(v.to_owned())),
                    None => (text, Value::Null),
                };
                match out.iter_mut().find(|(e, _)| *e == k) {
                    Some(slot) => slot.1 = v,
                    None => out.push((k, v)),
                }
            }
            Value::Map(out)
        }
        other => other,
    }
}

fn depends_to_map(v: Value) -> Value {
    match v {
        Value::Seq(items) => Value::Map(
            items
                .into_iter()
                .filter_map(|i| i.scalar())
                .map(|name| {
                    (
                        name,
                        Value::Map(vec![(
                            "condition".into(),
                            Value::Str("service_started".into()),
                        )]),
                    )
                })
                .collect(),
        ),
        other => other,
    }
}

/// Merges an override service into a base service.
pub fn merge_service(base: Value, over: Value) -> Value {
    let (Value::Map(mut base), Value::Map(over)) = (base, over) else {
        return Value::Null;
    };
    for (key, value) in over {
        let Some(slot) = base.iter_mut().find(|(k, _)| *k == key) else {
            base.push((key, value));
            continue;
        };
        let old = std::mem::replace(&mut slot.1, Value::Null);
        slot.1 = match key.as_str() {
            "command" | "entrypoint" => value,
            "volumes" => merge_by(old, value, volume_target),
            "secrets" | "configs" => merge_by(old, value, secret_source),
            "healthcheck" => {
                let (Value::Map(mut b), Value::Map(o)) = (old, value.clone()) else {
                    slot.1 = value;
                    continue;
                };
                for (k, v) in o {
                    match b.iter_mut().find(|(e, _)| *e == k) {
                        Some(s) if k != "test" => {
                            let prev = std::mem::replace(&mut s.1, Value::Null);
                            s.1 = merge_generic(prev, v);
                        }
                        Some(s) => s.1 = v,
                        None => b.push((k, v)),
                    }
                }
                Value::Map(b)
            }
            _ => merge_generic(old, value),
        };
    }
    Value::Map(base)
}

/// Mappings merge key by key, sequences append (without repeating an equal item), anything
/// else is replaced by the override.
pub fn merge_generic(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Map(mut b), Value::Map(o)) => {
            for (k, v) in o {
                match b.iter_mut().find(|(e, _)| *e == k) {
                    Some(slot) => {
                        let prev = std::mem::replace(&mut slot.1, Value::Null);
                        slot.1 = merge_generic(prev, v);
                    }
                    None => b.push((k, v)),
                }
            }
            Value::Map(b)
        }
        (Value::Seq(mut b), Value::Seq(o)) => {
            for item in o {
                if !b.contains(&item) {
                    b.push(item);
                }
            }
            Value::Seq(b)
        }
        (_, over) => over,
    }
}

/// Sequences whose items are identified by a key: an override item replaces the base item
/// with the same key, others are appended.
fn merge_by(base: Value, over: Value, key: fn(&Value) -> Option<String>) -> Value {
    let (Value::Seq(mut b), Value::Seq(o)) = (base, over.clone()) else {
        return over;
    };
    for item in o {
        let id = key(&item);
        match b.iter_mut().find(|e| id.is_some() && key(e) == id) {
            Some(slot) => *slot = item,
            None => b.push(item),
        }
    }
    Value::Seq(b)
}

/// The container path of a volume entry (short or long syntax).
pub fn volume_target(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            Some(match parts.len() {
                1 => parts[0].to_owned(),
                _ => parts[1].to_owned(),
            })
        }
        Value::Map(_) => v.get("target").and_then(Value::scalar),
        _ => None,
    }
}

fn secret_source(v: &Value) -> Option<String> {
    match v {
        Value::Map(_) => v.get("source").and_then(Value::scalar),
        other => other.scalar(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Value {
        parse_str(Path::new("t.yml"), text).unwrap()
    }

    fn merged(base: &str, over: &str) -> Value {
        let mut root = Vec::new();
        for text in [base, over] {
            let Value::Map(m) = yaml(text) else { panic!() };
            merge_top(&mut root, m);
        }
        Value::Map(root)
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .clone()
    }

    #[test]
    fn override_replaces_image_and_command_and_appends_ports() {
        let web = merged(
            "services:\n  web:\n    image: a:1\n    command: [x, y]\n    ports: ['80:80']\n",
            "services:\n  web:\n    image: a:2\n    command: z\n    ports: ['80:80', '443:443']\n",
        );
        assert_eq!(web.get("image"), Some(&Value::Str("a:2".into())));
        assert_eq!(web.get("command"), Some(&Value::Str("z".into())));
        assert_eq!(
            web.get("ports"),
            Some(&Value::Seq(vec![
                Value::Str("80:80".into()),
                Value::Str("443:443".into())
            ]))
        );
    }

    #[test]
    fn environment_merges_by_key_across_list_and_map_forms() {
        let web = merged(
            "services:\n  web:\n    environment: [A=1, B=2]\n",
            "services:\n  web:\n    environment:\n      B: 3\n      C: x\n",
        );
        let env = web.get("environment").unwrap();
        assert_eq!(env.get("A"), Some(&Value::Str("1".into())));
        assert_eq!(env.get("B"), Some(&Value::Int(3)));
        assert_eq!(env.get("C"), Some(&Value::Str("x".into())));
    }

    #[test]
    fn volumes_merge_by_target_and_labels_by_key() {
        let web = merged(
            "services:\n  web:\n    volumes: ['a:/data', './c:/conf']\n    labels: [x=1]\n",
            "services:\n  web:\n    volumes: ['b:/data']\n    labels: {y: '2'}\n",
        );
        assert_eq!(
            web.get("volumes"),
            Some(&Value::Seq(vec![
                Value::Str("b:/data".into()),
                Value::Str("./c:/conf".into())
            ]))
        );
        assert_eq!(web.get("labels").unwrap().as_map().unwrap().len(), 2);
    }

    #[test]
    fn healthcheck_test_is_replaced_and_other_keys_merge() {
        let web = merged(
            "services:\n  web:\n    healthcheck:\n      test: [CMD, a, b]\n      interval: 5s\n",
            "services:\n  web:\n    healthcheck:\n      test: [CMD, c]\n      retries: 3\n",
        );
        let hc = web.get("healthcheck").unwrap();
        assert_eq!(
            hc.get("test"),
            Some(&Value::Seq(vec![
                Value::Str("CMD".into()),
                Value::Str("c".into())
            ]))
        );
        assert_eq!(hc.get("interval"), Some(&Value::Str("5s".into())));
        assert_eq!(hc.get("retries"), Some(&Value::Int(3)));
    }

    #[test]
    fn depends_on_list_and_map_merge() {
        let web = merged(
            "services:\n  web:\n    depends_on: [db]\n",
            "services:\n  web:\n    depends_on:\n      cache:\n        condition: service_healthy\n",
        );
        let deps = web.get("depends_on").unwrap().as_map().unwrap();
        assert_eq!(deps.len(), 2);
    }

    #[test]
    fn anchors_and_merge_keys_expand() {
        let v = yaml("x-base: &base\n  image: a\n  restart: always\nservices:\n  web:\n    <<: *base\n    image: b\n");
        let web = v.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image"), Some(&Value::Str("b".into())));
        assert_eq!(web.get("restart"), Some(&Value::Str("always".into())));
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let err = parse_str(Path::new("c.yml"), "a:\n  b: [1\n  c: d\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("c.yml:3:"), "{text}");
    }

    #[test]
    fn yaml_1_1_booleans_and_octals_stay_text() {
        let v = yaml("a: yes\nn: 8000:8000\nm: 010\nt: true\n");
        assert_eq!(v.get("a"), Some(&Value::Str("yes".into())));
        assert_eq!(v.get("n"), Some(&Value::Str("8000:8000".into())));
        assert_eq!(v.get("m"), Some(&Value::Str("010".into())));
        assert_eq!(v.get("t"), Some(&Value::Bool(true)));
    }

    #[test]
    fn discovery_prefers_compose_yaml_and_takes_its_override() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "docker-compose.yml",
            "compose.yaml",
            "compose.override.yaml",
        ] {
            std::fs::write(dir.path().join(f), "services: {}\n").unwrap();
        }
        let files = discover(dir.path()).unwrap();
        assert_eq!(
            files,
            vec![
                dir.path().join("compose.yaml"),
                dir.path().join("compose.override.yaml")
            ]
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(discover(empty.path()).is_err());
    }
}
