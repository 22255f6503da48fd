//! The agent's side of HTTPS: loading `[proxy] certificates` from their files (with the
//! same checks as `dockhand check`) into what the proxy serves, what `status` says about
//! them (names and validity, never the key), and a scheduled check that warns before one
//! expires — a certificate from a file renews only when someone replaces the file.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dockhand_api::CertificateInfo;
use dockhand_config::{load_certificate, ProxySettings};
use dockhand_proxy::TlsCertificate;
use dockhand_state::EventLevel;

use crate::events::{EventKind, Events};
use crate::scheduler::{Job, Schedule, Scheduler};

/// A certificate this close to its end is warned about…
const WARN_BEFORE: i64 = 14 * 86_400;
/// …and this close, reported as an error.
const ERROR_BEFORE: i64 = 3 * 86_400;
/// How often the served certificates' dates are checked.
const CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);

/// What loading the certificates gave: the ones to serve (in file order), their
/// descriptions for `status`, and one message per certificate that could not be used.
#[derive(Default)]
pub(crate) struct LoadedCertificates {
    pub serve: Vec<TlsCertificate>,
    pub info: Vec<CertificateInfo>,
    pub problems: Vec<String>,
    /// Each served certificate's file and end of validity (Unix seconds).
    pub expiries: Vec<(String, i64)>,
}

/// Loads every certificate of `proxy` as of `now`. A certificate that fails (its file
/// changed since the release was checked, say) is left out and reported: the agent
/// keeps serving HTTP and the other certificates rather than refusing to start.
pub(crate) fn load(proxy: &ProxySettings, now: SystemTime) -> LoadedCertificates {
    let mut out = LoadedCertificates::default();
    for files in &proxy.certificates {
        match load_certificate(files, now) {
            Ok(cert) => {
                out.info.push(CertificateInfo {
                    cert: files.cert.display().to_string(),
                    names: cert.names.clone(),
                    not_before: rfc3339(cert.not_before),
                    not_after: rfc3339(cert.not_after),
                });
                out.expiries
                    .push((files.cert.display().to_string(), cert.not_after));
                out.serve.push(TlsCertificate::new(cert.names, cert.key));
            }
            Err(e) => out.problems.push(format!(
                "certificate {} is not served: {e}",
                files.cert.display()
            )),
        }
    }
    out
}

/// What to say about the certificate in `file`, valid until `not_after`, at `now` (Unix
/// seconds): nothing while more than two weeks remain.
pub(crate) fn expiry_notice(file: &str, not_after: i64, now: i64) -> Option<(EventLevel, String)> {
    let left = not_after - now;
    let replace = "replace the file and restart the agent";
    if left <= 0 {
        Some((
            EventLevel::Error,
            format!(
                "certificate {file} expired on {}: HTTPS clients refuse it; {replace}",
                rfc3339(not_after)
            ),
        ))
    } else if left <= WARN_BEFORE {
        let level = if left <= ERROR_BEFORE {
            EventLevel::Error
        } else {
            EventLevel::Warn
        };
        let days = left / 86_400;
        let when = if days == 0 {
            "in less than a day".to_string()
        } else {
            format!("in {days} day(s)")
        };
        Some((
            level,
            format!(
                "certificate {file} expires {when} ({}); {replace}",
                rfc3339(not_after)
            ),
        ))
    } else {
        None
    }
}

/// Checks the served certificates' dates twice a day (and at start when a check was missed),
/// recording an event for each that ends within two weeks.
pub(crate) fn watch_expiry(scheduler: &Scheduler, events: &Events, expiries: Vec<(String, i64)>) {
    if expiries.is_empty() {
        return;
    }
    let (events, expiries) = (events.clone(), Arc::new(expiries));
    scheduler.add(Job {
        name: "certificate-expiry".into(),
        schedule: Schedule::Every(CHECK_EVERY),
        catch_up: true,
        timeout: Duration::from_secs(10),
        run: Arc::new(move || {
            let (events, expiries) = (events.clone(), expiries.clone());
            Box::pin(async move {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let mut soon = 0;
                for (file, not_after) in expiries.iter() {
                    if let Some((level, message)) = expiry_notice(file, *not_after, now) {
                        events.record(level, EventKind::Proxy, None, None, &message);
                        soon += 1;
                    }
                }
                Ok(format!(
                    "{} certificate(s) checked, {soon} ending soon",
                    expiries.len()
                ))
            })
        }),
    });
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use dockhand_config::CertificateFiles;

    use super::*;

    fn write(dir: &std::path::Path, name: &str, host: &str) -> CertificateFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = CertificateFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        files
    }

    #[test]
    fn certificates_are_warned_about_two_weeks_ahead_and_an_error_three_days_ahead() {
        let day = 86_400;
        let end = 1_800_000_000;
        assert_eq!(expiry_notice("c.pem", end, end - 15 * day), None);
        let (level, msg) = expiry_notice("c.pem", end, end - 10 * day).unwrap();
        assert_eq!(level, EventLevel::Warn);
        assert!(
            msg.contains("c.pem expires in 10 day(s)") && msg.contains("replace the file"),
            "{msg}"
        );
        let (level, msg) = expiry_notice("c.pem", end, end - 3600).unwrap();
        assert_eq!(level, EventLevel::Error);
        assert!(msg.contains("expires in less than a day"), "{msg}");
        let (level, msg) = expiry_notice("c.pem", end, end + 1).unwrap();
        assert_eq!(level, EventLevel::Error);
        assert!(msg.contains("expired on 2027-01-15T08:00:00Z"), "{msg}");
    }

    #[test]
    fn a_certificate_that_no_longer_loads_is_left_out_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "good", "good.test");
        let bad = write(dir.path(), "bad", "bad.test");
        std::fs::remove_file(&bad.key).unwrap();
        let proxy = ProxySettings {
            https_listen: Some("127.0.0.1:0".parse().unwrap()),
            certificates: vec![bad.clone(), good.clone()],
            ..ProxySettings::default()
        };
        let loaded = load(&proxy, SystemTime::now());
        assert_eq!(loaded.serve.len(), 1);
        assert_eq!(loaded.serve[0].names(), ["good.test"]);
        assert_eq!(loaded.info.len(), 1);
        assert_eq!(loaded.info[0].names, ["good.test"]);
        assert_eq!(loaded.info[0].cert, good.cert.display().to_string());
        assert!(
            loaded.info[0].not_after.ends_with('Z'),
            "{:?}",
            loaded.info[0]
        );
        assert_eq!(loaded.problems.len(), 1);
        assert!(
            loaded.problems[0].contains("bad.pem is not served")
                && loaded.problems[0].contains("does not exist"),
            "{:?}",
            loaded.problems
        );
    }
}
