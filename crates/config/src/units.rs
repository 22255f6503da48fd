//! Parsers for the human-friendly quantities in `dockhand.toml`: durations such as `"10s"`,
//! `"1m30s"` or `"250ms"`, and byte sizes such as `"10MB"`, `"512MiB"` or a plain integer.
//! They are strict on purpose (no spaces, no negative values, a unit is required on
//! durations) so a typo is reported instead of silently meaning something else.

use std::time::Duration;

/// Parses a duration made of one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`
/// and `d`; the number may have a fraction (`"1.5s"`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.starts_with('-') {
        return Err("durations cannot be negative".into());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err("expected a number".into());
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| "invalid number".to_string())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" if rest.starts_with(char::is_whitespace) => {
                return Err("spaces are not allowed".into())
            }
            "" => return Err("a unit is needed".into()),
            unit => return Err(format!("unknown unit `{unit}`")),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    if !total.is_finite() || total > 10.0 * 365.0 * 86400.0 {
        return Err("it is too long".into());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Help text shown with every duration error.
pub(crate) const DURATION_HELP: &str =
    "write a number followed by a unit (ms, s, m, h, d) without spaces, e.g. \"10s\" or \"1m30s\"";

/// Parses a byte size: an integer number of bytes, or a number followed by `B`, `KB`, `MB`,
/// `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), any case.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    if text.starts_with('-') {
        return Err("sizes cannot be negative".into());
    }
    if number_len == 0 {
        return Err("expected a number".into());
    }
    let number: f64 = text[..number_len]
        .parse()
        .map_err(|_| "invalid number".to_string())?;
    let unit = text[number_len..].trim_start();
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(format!("unknown unit `{unit}`")),
    };
    let bytes = number * factor as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err("it is too large".into());
    }
    Ok(bytes.round() as u64)
}

/// Help text shown with every size error.
pub(crate) const SIZE_HELP: &str =
    "write a number of bytes, or a number with a unit: B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of 1024), e.g. \"512MB\"";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["5 sec", "-1s", "10", "", "s", "1x", "1s 2s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512mib"), Ok(512 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("10 MB"), Ok(10_000_000));
        for bad in ["10 potatoes", "-1MB", "MB", "", "1e9"] {
            assert!(parse_size(bad).is_err(), "{bad} should be rejected");
        }
    }
}
