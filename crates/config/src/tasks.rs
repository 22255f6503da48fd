//! `[tasks.NAME]`: commands run in a service's environment, apart from its instances — once per
//! app after the first successful deploy (`when = "once"`: seed data, the first admin user),
//! on a cron `schedule` (what root's crontab did), or only on demand (`dockhand run NAME`).
//! A task of a process service is a one-off process in the service's working directory; one of
//! a container service is a one-off container of the release's image.

use std::collections::BTreeMap;
use std::time::Duration;

use toml_edit::TableLike;

use crate::model::{Overlap, ServiceConfig, TaskConfig, TaskWhen};
use crate::parse::{key_span, name_problem, value_span, Field, Parser, NAME_HELP};

const TASK_KEYS: &[&str] = &[
    "command", "service", "when", "schedule", "timeout", "retries", "overlap",
];
const WHEN_VALUES: &[&str] = &["once", "manual"];
const OVERLAP_VALUES: &[&str] = &["skip", "allow"];

/// The longest a task may run by default.
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(3600);

impl Parser<'_> {
    /// The `[tasks]` table; `services` are already parsed (a task runs in one of them).
    pub(crate) fn tasks(
        &mut self,
        table: &dyn TableLike,
        services: &BTreeMap<String, ServiceConfig>,
    ) -> BTreeMap<String, TaskConfig> {
        let mut out = BTreeMap::new();
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            let field = Field {
                name,
                key,
                item,
                path: format!("tasks.{name}"),
            };
            if let Some(problem) = name_problem(name) {
                self.error(
                    key_span(&field),
                    Some(&field.path),
                    format!("invalid task name `{name}`: {problem}"),
                    Some(NAME_HELP.into()),
                );
                continue;
            }
            let Some(t) = self.table(&field) else {
                continue;
            };
            if let Some(task) = self.task(name, t, &field, services) {
                out.insert(name.to_string(), task);
            }
        }
        out
    }

    fn task(
        &mut self,
        name: &str,
        table: &dyn TableLike,
        at: &Field<'_>,
        services: &BTreeMap<String, ServiceConfig>,
    ) -> Option<TaskConfig> {
        let path = at.path.clone();
        let fields = self.fields(table, &path, TASK_KEYS, &format!("in task `{name}`"));
        let command = match fields.get("command") {
            Some(f) => {
                let c = self.string(f)?;
                if c.trim().is_empty() {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("the command of task `{name}` is empty"),
                        Some(
                            "write the command to run, e.g. command = \"./manage.py seed\"".into(),
                        ),
                    );
                    return None;
                }
                c
            }
            None => {
                self.error(
                    key_span(at),
                    Some(&format!("{path}.command")),
                    format!("task `{name}` has no `command`"),
                    Some("add command = \"…\": it runs through /bin/sh -c in the service's environment".into()),
                );
                return None;
            }
        };
        let service = match fields.get("service") {
            Some(f) => {
                let s = self.string(f)?;
                if !services.contains_key(&s) {
                    let known: Vec<&str> = services.keys().map(String::as_str).collect();
                    let help = match crate::parse::suggest(&s, &known) {
                        Some(better) => format!("did you mean `{better}`?"),
                        None => format!("services: {}", known.join(", ")),
                    };
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("task `{name}` runs in service `{s}`, which is not defined"),
                        Some(help),
                    );
                    return None;
                }
                s
            }
            None if services.len() == 1 => services.keys().next().cloned()?,
            None => {
                self.error(
                    key_span(at),
                    Some(&format!("{path}.service")),
                    format!("task `{name}` must say which service's environment it runs in"),
                    Some(format!(
                        "add service = \"…\", one of: {}",
                        services.keys().cloned().collect::<Vec<_>>().join(", ")
                    )),
                );
                return None;
            }
        };
        let once = match fields.get("when") {
            Some(f) => match self.string(f)?.as_str() {
                "once" => true,
                "manual" => false,
                other => {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("invalid `when` value `{other}`"),
                        Some(format!(
                            "use one of {} (a periodic task uses `schedule = \"CRON\"` instead)",
                            WHEN_VALUES.join(", ")
                        )),
                    );
                    return None;
                }
            },
            None => false,
        };
        let schedule = fields.get("schedule").and_then(|f| self.cron(f));
        let when = match (once, schedule, fields.get("when")) {
            (true, Some(_), Some(f)) => {
                self.error(
                    key_span(f),
                    Some(&f.path),
                    format!("task `{name}` has both `when = \"once\"` and a `schedule`"),
                    Some("a task runs once after the first deploy or on a schedule; make two tasks for both".into()),
                );
                return None;
            }
            (true, _, _) => TaskWhen::Once,
            (false, Some(expr), _) => TaskWhen::Schedule(expr),
            (false, None, _) => TaskWhen::Manual,
        };
        let timeout = fields
            .get("timeout")
            .and_then(|f| self.duration(f, false))
            .unwrap_or(DEFAULT_TASK_TIMEOUT);
        let retries = fields
            .get("retries")
            .and_then(|f| self.integer_in::<u32>(f, 0, 10))
            .unwrap_or(0);
        let overlap = match fields.get("overlap") {
            Some(f) => match self.string(f)?.as_str() {
                "skip" => Overlap::Skip,
                "allow" => Overlap::Allow,
                other => {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("invalid `overlap` value `{other}`"),
                        Some(format!(
                            "use {} (skip: a run due while one runs is skipped and recorded)",
                            OVERLAP_VALUES.join(" or ")
                        )),
                    );
                    return None;
                }
            },
            None => Overlap::Skip,
        };
        Some(TaskConfig {
            name: name.to_string(),
            service,
            command,
            when,
            timeout,
            retries,
            overlap,
        })
    }
}
