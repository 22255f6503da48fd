use chrono::{Duration, NaiveDate};

use super::*;

fn t(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(h, 0, 0)
        .unwrap()
}

fn id(time: &NaiveDateTime) -> String {
    time.format("%Y-%m-%dT%H").to_string()
}

fn hourly_for_two_years(verified: bool) -> Vec<Candidate> {
    let (start, end) = (t(2024, 3, 1, 0), t(2026, 2, 28, 23));
    let mut out = Vec::new();
    let mut time = start;
    while time <= end {
        out.push(Candidate {
            id: id(&time),
            time,
            state: CandidateState::Complete,
            verified,
        });
        time += Duration::hours(1);
    }
    out
}

fn kept(verdicts: &[Verdict]) -> BTreeSet<String> {
    verdicts
        .iter()
        .filter(|v| v.keep)
        .map(|v| v.id.clone())
        .collect()
}

#[test]
fn two_years_of_hourly_backups_keep_exactly_the_gfs_set() {
    let backups = hourly_for_two_years(true);
    assert_eq!(backups.len(), 730 * 24);
    let keep = Keep {
        last: 0,
        hourly: 24,
        daily: 7,
        weekly: 4,
        monthly: 12,
        yearly: 3,
    };
    let verdicts = apply(&keep, &backups);
    assert_eq!(verdicts.len(), backups.len());

    // Worked out by hand from the calendar: 2026-02-28 is a Saturday.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    // hourly: the 24 hours of the last day.
    for h in 0..24 {
        expected.insert(id(&t(2026, 2, 28, h)));
    }
    // daily: the last backup (23:00) of the 7 newest days.
    for d in 22..=28 {
        expected.insert(id(&t(2026, 2, d, 23)));
    }
    // weekly (ISO weeks end on Sunday): this week's newest, then three Sundays.
    for d in [22, 15, 8] {
        expected.insert(id(&t(2026, 2, d, 23)));
    }
    // monthly: this month's newest, then the last day of the 11 months before.
    for (y, m, d) in [
        (2026, 1, 31),
        (2025, 12, 31),
        (2025, 11, 30),
        (2025, 10, 31),
        (2025, 9, 30),
        (2025, 8, 31),
        (2025, 7, 31),
        (2025, 6, 30),
        (2025, 5, 31),
        (2025, 4, 30),
        (2025, 3, 31),
    ] {
        expected.insert(id(&t(y, m, d, 23)));
    }
    // yearly: this year's newest, then the last of 2025 and of 2024.
    expected.insert(id(&t(2025, 12, 31, 23)));
    expected.insert(id(&t(2024, 12, 31, 23)));
    assert_eq!(expected.len(), 44);
    assert_eq!(kept(&verdicts), expected);

    let newest = &verdicts[0];
    assert_eq!(newest.id, id(&t(2026, 2, 28, 23)));
    assert_eq!(
        newest.reasons,
        ["hourly", "daily", "weekly", "monthly", "yearly"]
    );
    let gone = verdicts
        .iter()
        .find(|v| v.id == id(&t(2025, 6, 15, 12)))
        .unwrap();
    assert!(!gone.keep);
    assert_eq!(gone.reasons, ["beyond the keep policy"]);
}

#[test]
fn two_years_of_daily_backups_with_a_last_rule() {
    let mut backups = Vec::new();
    let mut day = t(2024, 3, 1, 2);
    while day <= t(2026, 2, 28, 2) {
        backups.push(Candidate {
            id: id(&day),
            time: day,
            state: CandidateState::Complete,
            verified: true,
        });
        day += Duration::days(1);
    }
    let keep = Keep {
        last: 3,
        daily: 0,
        weekly: 0,
        monthly: 2,
        yearly: 0,
        hourly: 0,
    };
    let expected: BTreeSet<String> = [
        t(2026, 2, 28, 2),
        t(2026, 2, 27, 2),
        t(2026, 2, 26, 2),
        t(2026, 1, 31, 2),
    ]
    .iter()
    .map(id)
    .collect();
    assert_eq!(kept(&apply(&keep, &backups)), expected);
}

#[test]
fn pruning_never_removes_the_newest_verified_backup() {
    // Two years of backups, none verified but one a year ago.
    let mut backups = hourly_for_two_years(false);
    let verified_at = t(2025, 2, 10, 5);
    for b in &mut backups {
        if b.time == verified_at {
            b.verified = true;
        }
    }
    let keep = Keep {
        last: 1,
        ..Keep::default()
    };
    let verdicts = apply(&keep, &backups);
    let kept = kept(&verdicts);
    assert!(
        kept.contains(&id(&verified_at)),
        "the newest verified backup went"
    );
    // Everything newer than it stays too: none of those has proved it restores.
    let newer = backups.iter().filter(|b| b.time >= verified_at).count();
    assert_eq!(kept.len(), newer);
    // Older unverified ones go: a newer verified backup exists.
    assert!(!kept.contains(&id(&t(2025, 2, 10, 4))));

    // No verified backup at all: nothing complete is deleted.
    let none = hourly_for_two_years(false);
    assert!(apply(&keep, &none).iter().all(|v| v.keep));
}

#[test]
fn failed_backups_go_and_running_ones_stay() {
    let c = |id: &str, h, state, verified| Candidate {
        id: id.into(),
        time: t(2026, 1, 1, h),
        state,
        verified,
    };
    let verdicts = apply(
        &Keep {
            last: 1,
            ..Keep::default()
        },
        &[
            c("a", 1, CandidateState::Complete, true),
            c("b", 2, CandidateState::Failed, false),
            c("c", 3, CandidateState::Complete, true),
            c("d", 4, CandidateState::Running, false),
        ],
    );
    let fate: Vec<(&str, bool)> = verdicts.iter().map(|v| (v.id.as_str(), v.keep)).collect();
    assert_eq!(fate, [("d", true), ("c", true), ("b", false), ("a", false)]);
}

#[test]
fn no_policy_keeps_everything_complete() {
    let backups = vec![Candidate {
        id: "x".into(),
        time: t(2020, 1, 1, 0),
        state: CandidateState::Complete,
        verified: false,
    }];
    assert!(apply(&Keep::default(), &backups)[0].keep);
}
