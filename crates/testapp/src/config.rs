//! Reads the testapp's behaviour from the environment.
//!
//! The tests start the testapp through Dockhand's process driver, so environment variables are
//! the only knob they have. Parsing is a pure function over a lookup closure so it can be
//! tested without touching the real environment.

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use hyper::StatusCode;

/// Everything the environment can change about the testapp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `PORT` (required): listen on `$HOST:$PORT`.
    pub port: u16,
    /// `HOST` (default `127.0.0.1`): the address to listen on; the container image sets
    /// `0.0.0.0` so a published port reaches it.
    pub host: String,
    /// `VERSION` (default `v0`): served by `/` and `/version`, and in `x-version`.
    pub version: String,
    /// Status of `/health`: `HEALTH_STATUS`, else 503 when `HEALTHY=false`, else 200.
    pub health_status: StatusCode,
    /// `STARTUP_DELAY_MS`: sleep this long before binding.
    pub startup_delay: Duration,
    /// `IGNORE_SIGTERM=1`: keep serving through SIGTERM.
    pub ignore_sigterm: bool,
    /// `EXIT_AFTER_MS`: exit with code 3 this long after start, to simulate a crash.
    pub exit_after: Option<Duration>,
    /// `FAIL_PERCENT` (0–100, default 0): this share of requests (all but `/health`) answer
    /// 500, spread evenly and exactly: of every 100 requests in a row, this many fail.
    pub fail_percent: u8,
    /// `REQUIRE_TABLE=<sqlite file>:<table>`: `/health` answers 503 until that table exists
    /// (a release that needs its migration, run by a `pre_deploy` hook).
    pub require_table: Option<(std::path::PathBuf, String)>,
    /// `THREADS` (1–64, default 2): the runtime's worker threads; 1 runs everything on one
    /// current-thread runtime (the benchmark pins its backend to one core, where a second
    /// worker only adds wake-ups between the two).
    pub threads: usize,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a config from any name → value lookup; errors are one-line messages.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let port = match get("PORT") {
            None => return Err("PORT is not set; set it to the port to listen on".into()),
            Some(raw) => raw
                .trim()
                .parse::<u16>()
                .map_err(|_| format!("PORT must be a port number, got {raw:?}"))?,
        };
        let host = get("HOST")
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "127.0.0.1".into());
        let version = get("VERSION")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "v0".into());
        let health_status = match get("HEALTH_STATUS") {
            Some(raw) => raw
                .trim()
                .parse::<u16>()
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .filter(|status| !status.is_informational())
                .ok_or_else(|| {
                    format!("HEALTH_STATUS must be a status code 200-999, got {raw:?}")
                })?,
            None => match get("HEALTHY").as_deref().map(str::trim) {
                Some("false" | "0") => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::OK,
            },
        };
        let fail_percent = bounded(&get, "FAIL_PERCENT", 0u8, (0, 100), "a percentage")?;
        let threads = bounded(&get, "THREADS", 2usize, (1, 64), "a number")?;
        let require_table = match get("REQUIRE_TABLE") {
            None => None,
            Some(raw) => match raw.rsplit_once(':') {
                Some((file, table)) if !file.is_empty() && !table.is_empty() => {
                    Some((file.into(), table.to_string()))
                }
                _ => {
                    return Err(format!(
                        "REQUIRE_TABLE must be <sqlite file>:<table>, got {raw:?}"
                    ))
                }
            },
        };
        Ok(Config {
            port,
            threads,
            require_table,
            host,
            fail_percent,
            version,
            health_status,
            startup_delay: millis(&get, "STARTUP_DELAY_MS")?.unwrap_or(Duration::ZERO),
            ignore_sigterm: get("IGNORE_SIGTERM").as_deref().map(str::trim) == Some("1"),
            exit_after: millis(&get, "EXIT_AFTER_MS")?,
        })
    }
}

/// A whole number in `lo..=hi` read from `name`; unset or blank gives `default`.
fn bounded<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    (lo, hi): (T, T),
    what: &str,
) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) if raw.trim().is_empty() => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<T>()
            .ok()
            .filter(|n| *n >= lo && *n <= hi)
            .ok_or_else(|| format!("{name} must be {what} {lo}-{hi}, got {raw:?}")),
    }
}

fn millis(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<Duration>, String> {
    match get(name) {
        None => Ok(None),
        Some(raw) if raw.trim().is_empty() => Ok(None),
        Some(raw) => raw
            .trim()
            .parse::<u64>()
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| format!("{name} must be a number of milliseconds, got {raw:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn port_is_required() {
        let err = config(&[]).unwrap_err();
        assert!(err.contains("PORT is not set"), "{err}");
        assert!(config(&[("PORT", "http")]).is_err());
    }

    #[test]
    fn defaults() {
        let c = config(&[("PORT", "8080")]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.version, "v0");
        assert_eq!(c.health_status, StatusCode::OK);
        assert_eq!(c.startup_delay, Duration::ZERO);
        assert!(!c.ignore_sigterm);
        assert_eq!(c.exit_after, None);
        assert_eq!(c.fail_percent, 0);
        assert_eq!(c.threads, 2);
    }

    #[test]
    fn threads_is_a_bounded_count() {
        let threads = |raw: &str| config(&[("PORT", "1"), ("THREADS", raw)]).map(|c| c.threads);
        assert_eq!(threads("1"), Ok(1));
        assert_eq!(threads(" 8 "), Ok(8));
        assert_eq!(threads(""), Ok(2));
        for bad in ["0", "65", "two", "-1"] {
            let err = threads(bad).unwrap_err();
            assert!(err.contains("THREADS must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn fail_percent_is_a_percentage() {
        assert_eq!(
            config(&[("PORT", "1"), ("FAIL_PERCENT", "10")])
                .unwrap()
                .fail_percent,
            10
        );
        assert!(config(&[("PORT", "1"), ("FAIL_PERCENT", "101")]).is_err());
        assert!(config(&[("PORT", "1"), ("FAIL_PERCENT", "some")]).is_err());
    }

    #[test]
    fn health_status_overrides_healthy() {
        let unhealthy = config(&[("PORT", "1"), ("HEALTHY", "false")]).unwrap();
        assert_eq!(unhealthy.health_status, StatusCode::SERVICE_UNAVAILABLE);
        let both = config(&[
            ("PORT", "1"),
            ("HEALTHY", "false"),
            ("HEALTH_STATUS", "204"),
        ]);
        assert_eq!(both.unwrap().health_status, StatusCode::NO_CONTENT);
        assert!(config(&[("PORT", "1"), ("HEALTH_STATUS", "100")]).is_err());
    }

    #[test]
    fn require_table_names_a_file_and_a_table() {
        let c = config(&[("PORT", "1"), ("REQUIRE_TABLE", "/tmp/app.db:orders_v2")]).unwrap();
        assert_eq!(
            c.require_table,
            Some(("/tmp/app.db".into(), "orders_v2".to_string()))
        );
        for bad in ["app.db", ":t", "app.db:"] {
            let err = config(&[("PORT", "1"), ("REQUIRE_TABLE", bad)]).unwrap_err();
            assert!(err.contains("REQUIRE_TABLE must be"), "{bad}: {err}");
        }
    }

    #[test]
    fn timings_and_flags() {
        let c = config(&[
            ("PORT", "1"),
            ("STARTUP_DELAY_MS", "250"),
            ("EXIT_AFTER_MS", "1000"),
            ("IGNORE_SIGTERM", "1"),
        ])
        .unwrap();
        assert_eq!(c.startup_delay, Duration::from_millis(250));
        assert_eq!(c.exit_after, Some(Duration::from_secs(1)));
        assert!(c.ignore_sigterm);
        assert!(config(&[("PORT", "1"), ("EXIT_AFTER_MS", "soon")]).is_err());
    }
}
