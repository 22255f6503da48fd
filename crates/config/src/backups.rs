//! The `[backups]` table: what is backed up (every database, every named volume of the
//! services, SQLite files, directories and the app itself, less `exclude`), when (`schedule`,
//! drills on `verify`, both cron in the server's time zone), how it is encrypted (age
//! `recipients`, or a `passphrase` secret), where it goes (`[backups.targets.NAME]`: a local
//! `dir` or an `s3` URL) and how much is kept (`keep`).

use std::collections::BTreeMap;
use std::time::Duration;

use toml_edit::TableLike;

use crate::container::Engine;
use crate::interpolate::SecretMode;
use crate::model::{
    BackupKeep, BackupTarget, BackupTargetKind, BackupsConfig, EnvValue, ServiceConfig,
};
use crate::parse::{key_span, name_problem, value_span, Field, Parser, NAME_HELP};

const BACKUPS_KEYS: &[&str] = &[
    "schedule",
    "verify",
    "recipients",
    "passphrase",
    "identity",
    "keep",
    "include",
    "exclude",
    "sqlite",
    "directories",
    "targets",
    "helper_image",
    "timeout",
    "pitr",
    "archive_timeout",
];
const KEEP_KEYS: &[&str] = &["last", "hourly", "daily", "weekly", "monthly", "yearly"];
const TARGET_KEYS: &[&str] = &[
    "dir",
    "s3",
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "path_style",
    "retries",
    "timeout",
];
const TARGET_EXAMPLE: &str =
    "[backups.targets.local] with dir = \"/var/backups/APP\" (or s3 = \"s3://bucket/prefix\")";

impl Parser<'_> {
    pub(crate) fn backups(
        &mut self,
        table: &dyn TableLike,
        span: std::ops::Range<usize>,
        databases: &BTreeMap<String, crate::container::DatabaseConfig>,
        services: &BTreeMap<String, ServiceConfig>,
    ) -> Option<BackupsConfig> {
        let fields = self.fields(table, "backups", BACKUPS_KEYS, "in [backups]");
        let schedule = fields.get("schedule").and_then(|f| self.cron(f));
        let verify = fields.get("verify").and_then(|f| self.cron(f));
        let mut recipients = Vec::new();
        if let Some(f) = fields.get("recipients") {
            for r in self.string_array(f).unwrap_or_default() {
                if let Some(problem) = recipient_problem(&r) {
                    self.error(value_span(f), Some(&f.path), problem, Some("run `dockhand backup keygen` to make a key pair, or `age-keygen`; the public key starts with age1".into()));
                } else {
                    recipients.push(r);
                }
            }
        }
        let passphrase = fields.get("passphrase").and_then(|f| {
            let raw = self.raw_str(f)?;
            let out = self.interpolate(f, raw, SecretMode::Keep)?;
            let value = EnvValue::from_template(out.value);
            if value.secret_names().is_empty() {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    "the backup passphrase must come from the secrets file".into(),
                    Some("write passphrase = \"${secret.BACKUP_PASSPHRASE}\" and put the passphrase in the secrets file".into()),
                );
                return None;
            }
            Some(value)
        });
        match (&passphrase, recipients.is_empty(), fields.get("recipients"), fields.get("passphrase")) {
            (Some(_), false, Some(f), _) => self.error(
                key_span(f),
                Some(&f.path),
                "set either `recipients` or `passphrase`, not both (age cannot mix them)".into(),
                Some("recipients (public keys) are the better choice: the server never holds what decrypts".into()),
            ),
            (None, true, None, None) => self.error(
                span.clone(),
                Some("backups.recipients"),
                "backups are encrypted: [backups] needs `recipients` or `passphrase`".into(),
                Some("run `dockhand backup keygen`, keep the identity file safe, and add recipients = [\"age1…\"]".into()),
            ),
            _ => {}
        }
        let identity = fields.get("identity").and_then(|f| self.path(f));
        let keep = fields
            .get("keep")
            .and_then(|f| self.table(f).map(|t| (f, t)))
            .map(|(f, t)| self.keep(t, &f.path))
            .unwrap_or_default();
        let sqlite = fields
            .get("sqlite")
            .map(|f| self.named_paths(f))
            .unwrap_or_default();
        let directories = fields
            .get("directories")
            .map(|f| self.named_paths(f))
            .unwrap_or_default();
        let mut targets = Vec::new();
        match fields
            .get("targets")
            .and_then(|f| self.table(f).map(|t| (f, t)))
        {
            Some((f, t)) => {
                for (name, _) in t.iter() {
                    let Some((key, item)) = t.get_key_value(name) else {
                        continue;
                    };
                    let path = format!("backups.targets.{name}");
                    let field = Field {
                        name,
                        key,
                        item,
                        path: path.clone(),
                    };
                    self.sites.insert(path.clone(), key_span(&field));
                    if let Some(problem) = name_problem(name) {
                        self.error(
                            key_span(&field),
                            Some(&path),
                            format!("invalid target name `{name}`: {problem}"),
                            Some(NAME_HELP.into()),
                        );
                    }
                    if let Some(tt) = self.table(&field) {
                        if let Some(target) = self.target(name, tt, &field) {
                            targets.push(target);
                        }
                    }
                }
                if targets.is_empty() && t.is_empty() {
                    self.error(
                        key_span(f),
                        Some(&f.path),
                        "no backup target".into(),
                        Some(format!("add {TARGET_EXAMPLE}")),
                    );
                }
            }
            None => self.error(
                span.clone(),
                Some("backups.targets"),
                "[backups] has no target".into(),
                Some(format!("add {TARGET_EXAMPLE}")),
            ),
        }

        // The sources: every database, every named volume, the files listed, the app.
        let mut volumes: Vec<String> = services
            .values()
            .filter_map(|s| s.container.as_ref())
            .flat_map(|c| c.volumes.iter())
            .filter_map(|m| match m {
                crate::container::Mount::Volume { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        volumes.sort();
        volumes.dedup();
        let mut known: Vec<String> = databases.keys().cloned().collect();
        known.extend(volumes.iter().cloned());
        known.extend(sqlite.keys().cloned());
        known.extend(directories.keys().cloned());
        known.push("app".into());
        let mut seen = std::collections::BTreeSet::new();
        for name in &known {
            if name == "app" && seen.contains(name) {
                // Listed last: a database, volume, sqlite or directories entry took it first.
                let entry = [("sqlite", &sqlite), ("directories", &directories)]
                    .into_iter()
                    .find(|(_, named)| named.contains_key("app"))
                    .and_then(|(key, _)| fields.get(key));
                self.error(
                    entry.map_or(span.clone(), value_span),
                    Some(entry.map_or("backups", |f| f.path.as_str())),
                    "a backup source is named `app`, the name of the app's own source (its dockhand.toml, secrets and state)".into(),
                    Some("rename that `sqlite` or `directories` entry (or the database or volume)".into()),
                );
            } else if !seen.insert(name.clone()) {
                self.error(span.clone(), Some("backups"), format!("two backup sources are named `{name}` (a database, volume, sqlite or directories entry)"), Some("give each `sqlite` and `directories` entry a name no database or volume has".into()));
            }
        }
        let include = fields
            .get("include")
            .and_then(|f| self.source_list(f, &known));
        let exclude = fields
            .get("exclude")
            .and_then(|f| self.source_list(f, &known))
            .unwrap_or_default();
        let included = |name: &str| {
            include.as_ref().is_none_or(|i| i.iter().any(|n| n == name))
                && !exclude.iter().any(|n| n == name)
        };
        let helper_image = fields
            .get("helper_image")
            .and_then(|f| self.string(f))
            .unwrap_or_else(|| "busybox:1.36".to_string());
        let timeout = fields
            .get("timeout")
            .and_then(|f| self.duration(f, false))
            .unwrap_or(Duration::from_secs(6 * 3600));
        // Point-in-time recovery: PostgreSQL databases whose WAL is archived continuously.
        let mut pitr = Vec::new();
        if let Some(f) = fields.get("pitr") {
            for name in self.string_array(f).unwrap_or_default() {
                match databases.get(&name) {
                    Some(db) if db.engine == Engine::Postgres && included(&name) => {
                        pitr.push(name)
                    }
                    Some(db) if db.engine != Engine::Postgres => self.error(
                        value_span(f),
                        Some(&f.path),
                        format!(
                            "point-in-time recovery is for PostgreSQL; `{name}` is a {} database",
                            db.engine.as_str()
                        ),
                        Some("list only databases with engine = \"postgres\" in `pitr`".into()),
                    ),
                    Some(_) => self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("`{name}` is in `pitr` but left out of the backups"),
                        Some(format!(
                            "remove `{name}` from `exclude` (or add it to `include`): its base backups are taken with the others"
                        )),
                    ),
                    None => {
                        let known: Vec<&str> = databases
                            .values()
                            .filter(|d| d.engine == Engine::Postgres)
                            .map(|d| d.name.as_str())
                            .collect();
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            format!("`pitr` names `{name}`, which is no database of this app"),
                            Some(if known.is_empty() {
                                "add a [databases.NAME] with engine = \"postgres\" first".to_string()
                            } else {
                                format!("the PostgreSQL databases are: {}", known.join(", "))
                            }),
                        )
                    }
                }
            }
        }
        let archive_timeout = fields
            .get("archive_timeout")
            .and_then(|f| self.duration(f, false))
            .unwrap_or(Duration::from_secs(60));
        if archive_timeout < Duration::from_secs(1) {
            if let Some(f) = fields.get("archive_timeout") {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    "`archive_timeout` must be at least 1s (PostgreSQL counts it in seconds)"
                        .into(),
                    Some("60s is a good start: the most data a crash can lose".into()),
                );
            }
        }
        Some(BackupsConfig {
            schedule,
            verify,
            recipients,
            passphrase,
            identity,
            keep,
            databases: databases.keys().filter(|n| included(n)).cloned().collect(),
            volumes: volumes.into_iter().filter(|n| included(n)).collect(),
            sqlite: sqlite.into_iter().filter(|(n, _)| included(n)).collect(),
            directories: directories
                .into_iter()
                .filter(|(n, _)| included(n))
                .collect(),
            app: included("app"),
            targets,
            helper_image,
            timeout,
            pitr,
            archive_timeout,
        })
    }

    /// A cron expression (5 fields, or 6 with seconds) that fires at least once.
    pub(crate) fn cron(&mut self, f: &Field<'_>) -> Option<String> {
        let text = self.string(f)?;
        let parsed = crate::cron::parse_cron(&text);
        match parsed {
            Err(e) => {
                self.error(value_span(f), Some(&f.path), format!("invalid cron expression `{text}`: {e}"), Some("write five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\" (02:00 every day, server time)".into()));
                None
            }
            Ok(cron) => {
                let now = chrono::Local::now();
                if cron.find_next_occurrence(&now, false).is_err() {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("cron expression `{text}` never fires"),
                        Some(
                            "check the day of month against the month (there is no 30 February)"
                                .into(),
                        ),
                    );
                    return None;
                }
                Some(text)
            }
        }
    }

    fn keep(&mut self, t: &dyn TableLike, path: &str) -> BackupKeep {
        let fields = self.fields(t, path, KEEP_KEYS, "in `keep`");
        let mut keep = BackupKeep::default();
        for (name, slot) in [
            ("last", &mut keep.last),
            ("hourly", &mut keep.hourly),
            ("daily", &mut keep.daily),
            ("weekly", &mut keep.weekly),
            ("monthly", &mut keep.monthly),
            ("yearly", &mut keep.yearly),
        ] {
            if let Some(f) = fields.get(name) {
                if let Some(n) = self.integer_in::<u32>(f, 0, 100_000) {
                    *slot = n;
                }
            }
        }
        keep
    }

    /// `{ name = "relative/path", … }`: named paths relative to the project.
    fn named_paths(&mut self, f: &Field<'_>) -> BTreeMap<String, std::path::PathBuf> {
        let mut out = BTreeMap::new();
        let Some(t) = self.table(f) else { return out };
        for (name, _) in t.iter() {
            let Some((key, item)) = t.get_key_value(name) else {
                continue;
            };
            let field = Field {
                name,
                key,
                item,
                path: format!("{}.{name}", f.path),
            };
            if let Some(problem) = name_problem(name) {
                self.error(
                    key_span(&field),
                    Some(&field.path),
                    format!("invalid source name `{name}`: {problem}"),
                    Some(NAME_HELP.into()),
                );
                continue;
            }
            if let Some(p) = self.path(&field) {
                out.insert(name.to_string(), p);
            }
        }
        out
    }

    fn source_list(&mut self, f: &Field<'_>, known: &[String]) -> Option<Vec<String>> {
        let names = self.string_array(f)?;
        let allowed: Vec<&str> = known.iter().map(String::as_str).collect();
        for n in &names {
            if !known.contains(n) {
                let help = match crate::parse::suggest(n, &allowed) {
                    Some(better) => format!("did you mean `{better}`?"),
                    None => format!("the sources are {}", allowed.join(", ")),
                };
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("no backup source named `{n}`"),
                    Some(help),
                );
            }
        }
        Some(names)
    }

    fn target(&mut self, name: &str, t: &dyn TableLike, f: &Field<'_>) -> Option<BackupTarget> {
        let fields = self.fields(t, &f.path, TARGET_KEYS, &format!("in target `{name}`"));
        let secret = |p: &mut Self, key: &str| -> Option<EnvValue> {
            let f = fields.get(key)?;
            let raw = p.raw_str(f)?;
            let out = p.interpolate(f, raw, SecretMode::Keep)?;
            Some(EnvValue::from_template(out.value))
        };
        let kind = match (fields.get("dir"), fields.get("s3")) {
            (Some(d), None) => {
                for k in [
                    "endpoint",
                    "region",
                    "access_key_id",
                    "secret_access_key",
                    "path_style",
                    "retries",
                ] {
                    if let Some(x) = fields.get(k) {
                        self.error(
                            key_span(x),
                            Some(&x.path),
                            format!("`{k}` is for s3 targets; this one is a local `dir`"),
                            Some("remove it".into()),
                        );
                    }
                }
                BackupTargetKind::Local { dir: self.path(d)? }
            }
            (None, Some(s)) => {
                let url = self.string(s)?;
                let Some(rest) = url.strip_prefix("s3://") else {
                    self.error(
                        value_span(s),
                        Some(&s.path),
                        format!("`{url}` is not an s3:// URL"),
                        Some(
                            "write s3 = \"s3://BUCKET/PREFIX\" and the server in `endpoint`".into(),
                        ),
                    );
                    return None;
                };
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    self.error(
                        value_span(s),
                        Some(&s.path),
                        "the s3 URL has no bucket".into(),
                        Some("write s3 = \"s3://BUCKET/PREFIX\"".into()),
                    );
                    return None;
                }
                let endpoint = fields.get("endpoint").and_then(|e| self.string(e));
                if let Some(e) = &endpoint {
                    if !(e.starts_with("http://") || e.starts_with("https://")) {
                        let e_f = fields.get("endpoint")?;
                        self.error(
                            value_span(e_f),
                            Some(&e_f.path),
                            format!("endpoint `{e}` is not an http(s) URL"),
                            Some("write endpoint = \"https://s3.example.org\"".into()),
                        );
                    }
                }
                let access_key_id = secret(self, "access_key_id");
                let secret_access_key = secret(self, "secret_access_key");
                if let Some(sk) = fields.get("secret_access_key") {
                    if secret_access_key
                        .as_ref()
                        .is_some_and(|v| v.secret_names().is_empty())
                    {
                        self.error(
                            value_span(sk),
                            Some(&sk.path),
                            "the secret access key must come from the secrets file".into(),
                            Some(
                                "write secret_access_key = \"${secret.S3_SECRET_ACCESS_KEY}\""
                                    .into(),
                            ),
                        );
                    }
                }
                BackupTargetKind::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                    endpoint,
                    region: fields
                        .get("region")
                        .and_then(|r| self.string(r))
                        .unwrap_or_else(|| "us-east-1".into()),
                    access_key_id,
                    secret_access_key,
                    path_style: fields
                        .get("path_style")
                        .and_then(|p| self.boolean(p))
                        .unwrap_or(true),
                    retries: fields
                        .get("retries")
                        .and_then(|r| self.integer_in::<u32>(r, 0, 20))
                        .unwrap_or(5),
                    timeout: fields
                        .get("timeout")
                        .and_then(|t| self.duration(t, false))
                        .unwrap_or(Duration::from_secs(60)),
                }
            }
            (Some(d), Some(_)) => {
                self.error(
                    key_span(d),
                    Some(&d.path),
                    format!("target `{name}` has both `dir` and `s3`"),
                    Some("one target is one place: make two targets".into()),
                );
                return None;
            }
            (None, None) => {
                self.error(
                    key_span(f),
                    Some(&f.path),
                    format!("target `{name}` has neither `dir` nor `s3`"),
                    Some(format!("write {TARGET_EXAMPLE}")),
                );
                return None;
            }
        };
        Some(BackupTarget {
            name: name.to_string(),
            kind,
        })
    }
}

/// What is wrong with an age recipient, judged by its shape (the agent parses it fully).
fn recipient_problem(r: &str) -> Option<String> {
    if r.starts_with("AGE-SECRET-KEY-") {
        return Some("this is an age identity (a private key), not a recipient: put the public key here and keep the identity off the server".into());
    }
    let charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let ok = r.len() == 62 && r.starts_with("age1") && r[4..].chars().all(|c| charset.contains(c));
    (!ok).then(|| format!("`{r}` is not an age X25519 recipient (`age1` and 58 more characters)"))
}
