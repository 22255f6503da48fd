//! Cron expressions, as `dockhand.toml` takes them (`[tasks.NAME] schedule`, `[backups]
//! schedule` and `verify`, `[update] schedule`) and the agent's scheduler evaluates them. The
//! input is eight bytes of "now", eight of "last run", then the expression. Properties: an
//! expression the config check accepts is one the scheduler accepts (else a checked config
//! would fail at agent start); an accepted expression's next time is strictly after now (in
//! UTC and in the server's time zone: a schedule never fires twice at one instant nor in
//! the past), also when the clock is stepped back or forward by an hour; a missed run lies
//! after the last run and not after now.
#![no_main]

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use dockhand_agent::fuzzing::{missed, Schedule};
use libfuzzer_sys::fuzz_target;

/// 2000-01-01 .. 2100-01-01 in seconds: the times a server's clock can plausibly read.
const FROM: i64 = 946_684_800;
const SPAN: i64 = 3_155_760_000;

fn time(bytes: &[u8]) -> DateTime<Utc> {
    let n = u64::from_le_bytes(bytes.try_into().unwrap());
    DateTime::from_timestamp(FROM + (n % SPAN as u64) as i64, 0).unwrap()
}

/// A TOML basic string holding `s` exactly.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let now = time(&data[..8]);
    let last = time(&data[8..16]).min(now);
    let Ok(expr) = std::str::from_utf8(&data[16..]) else {
        return;
    };
    if expr.len() > 256 {
        return;
    }

    let text = format!(
        "app = \"fuzz\"\n[services.api]\ncommand = \"true\"\nport = 8000\n\
         [tasks.job]\ncommand = \"true\"\nschedule = {}\n",
        quoted(expr)
    );
    let path = Path::new("/nonexistent-dockhand-fuzz/dockhand.toml");
    let checked = dockhand_config::load_str(path, &text, &dockhand_config::LoadOptions::default());

    let utc = Schedule::cron(expr);
    let local = Schedule::cron_local(expr);
    assert_eq!(utc.is_ok(), local.is_ok());
    if checked.is_ok() {
        assert!(
            utc.is_ok(),
            "the config check accepts {expr:?}, the scheduler does not"
        );
    }
    for schedule in [utc, local].into_iter().flatten() {
        if let Some(next) = schedule.next_after(now, Some(last)) {
            assert!(next > now, "{expr:?}: next after {now} is {next}");
            // From the instant it fires, the next time is later still (it never fires twice).
            if let Some(again) = schedule.next_after(next, Some(next)) {
                assert!(
                    again > next,
                    "{expr:?}: fires at {next}, then again at {again}"
                );
            }
            // The clock stepped back by an hour right after it fired: not again before the
            // time it would have fired next anyway.
            let back = next - Duration::hours(1);
            if let Some(again) = schedule.next_after(back, Some(next)) {
                assert!(
                    again > next,
                    "{expr:?}: ran at {next}, clock set back to {back}, due again at {again}"
                );
            }
            // Stepped forward by an hour: due at once (the time passed) or later, never before.
            let forward = now + Duration::hours(1);
            if let Some(due) = schedule.next_after(forward, Some(last)) {
                assert!(
                    due > forward,
                    "{expr:?}: clock set forward to {forward}, due at {due}"
                );
            }
        }
        if let Some(due) = missed(&schedule, Some(last), now) {
            assert!(
                due > last && due <= now,
                "{expr:?}: missed {due}, last {last}, now {now}"
            );
        }
    }
    // An interval schedule anchored on the last run: due after it, never before now.
    let every = Schedule::Every(std::time::Duration::from_secs(1 + u64::from(data[0]) * 60));
    let next = every.next_after(now, Some(last)).unwrap();
    assert!(next >= now && next > last);
    assert!(next - last >= Duration::seconds(1));
});
