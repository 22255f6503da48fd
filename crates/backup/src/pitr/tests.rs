use super::*;

fn t(s: &str) -> DateTime<Utc> {
    parse_time(s).unwrap()
}

fn rec(name: &str, at: &str) -> WalRecord {
    WalRecord {
        name: name.into(),
        sha256: String::new(),
        raw_bytes: 16 << 20,
        stored_bytes: 1,
        archived_at: at.into(),
    }
}

fn base(id: &str, finished: &str, start: &str) -> BaseRef {
    BaseRef {
        backup_id: id.into(),
        finished_at: t(finished),
        wal_start: start.into(),
    }
}

#[test]
fn wal_names_are_read() {
    assert_eq!(
        parse_wal_name("000000010000000000000003"),
        Some(WalFile::Segment {
            timeline: 1,
            segno: 3
        })
    );
    assert_eq!(
        parse_wal_name("0000000200000001000000FF"),
        Some(WalFile::Segment {
            timeline: 2,
            segno: 0x1FF
        })
    );
    assert_eq!(
        parse_wal_name("00000002.history"),
        Some(WalFile::History { timeline: 2 })
    );
    assert_eq!(
        parse_wal_name("000000010000000000000002.00000028.backup"),
        Some(WalFile::Other { segno: 2 })
    );
    assert_eq!(
        parse_wal_name("000000010000000000000005.partial"),
        Some(WalFile::Other { segno: 5 })
    );
    assert_eq!(parse_wal_name("archive_status"), None);
    assert_eq!(parse_wal_name(".00000001000000000000000A.tmp"), None);
    assert_eq!(parse_wal_name("00000001000000000000000G"), None);
    assert_eq!(segment_name(2, 0x1FF), "0000000200000001000000FF");
}

#[test]
fn a_restore_starts_from_the_newest_base_backup_finished_before_the_time() {
    let bases = [
        base("b1", "2026-12-06T08:00:00Z", "000000010000000000000002"),
        base("b2", "2026-12-06T10:00:00Z", "000000010000000000000005"),
    ];
    let wal: Vec<WalRecord> = (2..=8)
        .map(|n| {
            rec(
                &segment_name(1, n),
                &format!("2026-12-06T{:02}:30:00Z", 6 + n),
            )
        })
        .collect();
    let p = plan(&bases, &wal, Some(t("2026-12-06T09:00:00Z"))).unwrap();
    assert_eq!(p.base, "b1");
    assert_eq!(p.timeline, 1);
    assert_eq!(p.files.first().unwrap(), "000000010000000000000002");
    let p = plan(&bases, &wal, Some(t("2026-12-06T12:00:00Z"))).unwrap();
    assert_eq!(p.base, "b2");
    assert_eq!(
        p.files,
        vec![
            "000000010000000000000005",
            "000000010000000000000006",
            "000000010000000000000007",
            "000000010000000000000008"
        ]
    );
    // Before every base backup, after the archive's end, or over a gap: refused.
    let e = plan(&bases, &wal, Some(t("2026-12-06T07:00:00Z"))).unwrap_err();
    assert!(e.contains("oldest finished at 2026-12-06T08:00:00Z"), "{e}");
    let e = plan(&bases, &wal, Some(t("2026-12-06T16:00:00Z"))).unwrap_err();
    assert!(e.contains("reaches only to 2026-12-06T14:30:00Z"), "{e}");
    let gap: Vec<WalRecord> = wal
        .iter()
        .filter(|r| r.name != segment_name(1, 6))
        .cloned()
        .collect();
    let e = plan(&bases, &gap, Some(t("2026-12-06T13:00:00Z"))).unwrap_err();
    assert!(e.contains("000000010000000000000006 is missing"), "{e}");
    let e = plan(&[], &wal, None).unwrap_err();
    assert!(e.contains("no base backup"), "{e}");
}

#[test]
fn the_timeline_live_at_the_time_is_followed() {
    // Timeline 2 began at 11:00 (a restore promoted); segment 4 exists on both.
    let bases = [base(
        "b1",
        "2026-12-06T08:00:00Z",
        "000000010000000000000002",
    )];
    let wal = vec![
        rec("000000010000000000000002", "2026-12-06T08:10:00Z"),
        rec("000000010000000000000003", "2026-12-06T09:10:00Z"),
        rec("000000010000000000000004", "2026-12-06T10:10:00Z"),
        rec("00000002.history", "2026-12-06T11:00:00Z"),
        rec("000000020000000000000004", "2026-12-06T11:10:00Z"),
        rec("000000020000000000000005", "2026-12-06T12:10:00Z"),
    ];
    let before = plan(&bases, &wal, Some(t("2026-12-06T10:00:00Z"))).unwrap();
    assert_eq!(before.timeline, 1);
    assert!(before
        .files
        .contains(&"000000010000000000000004".to_string()));
    assert!(!before.files.iter().any(|f| f.starts_with("00000002000")));
    let after = plan(&bases, &wal, Some(t("2026-12-06T12:00:00Z"))).unwrap();
    assert_eq!(after.timeline, 2);
    assert_eq!(
        after.files,
        vec![
            "00000002.history",
            "000000010000000000000002",
            "000000010000000000000003",
            "000000020000000000000004",
            "000000020000000000000005"
        ]
    );
    // A drill replays everything, on the newest timeline.
    assert_eq!(plan(&bases, &wal, None).unwrap().timeline, 2);
}

#[test]
fn retention_keeps_the_wal_of_the_oldest_kept_base_backup() {
    let wal = vec![
        rec("000000010000000000000001", "2026-12-06T08:00:00Z"),
        rec(
            "000000010000000000000002.00000028.backup",
            "2026-12-06T08:00:00Z",
        ),
        rec("000000010000000000000003", "2026-12-06T08:00:00Z"),
        rec("00000002.history", "2026-12-06T08:00:00Z"),
        rec("000000020000000000000004", "2026-12-06T08:00:00Z"),
    ];
    let kept = [
        base("b2", "2026-12-06T10:00:00Z", "000000010000000000000003"),
        base("b3", "2026-12-06T11:00:00Z", "000000020000000000000004"),
    ];
    assert_eq!(
        prunable(&wal, &kept),
        vec![
            "000000010000000000000001",
            "000000010000000000000002.00000028.backup"
        ]
    );
    assert!(prunable(&wal, &[]).is_empty());
}

#[test]
fn recovery_settings_name_the_time_and_timeline() {
    let s = recovery_settings("dockhand_wal_restore", Some(t("2026-12-06T10:15:00Z")), 2);
    assert!(s.contains("restore_command = 'cp dockhand_wal_restore/%f %p'"));
    assert!(s.contains("recovery_target_time = '2026-12-06 10:15:00.000000+00'"));
    assert!(s.contains("recovery_target_timeline = '2'"));
    assert!(s.contains("recovery_target_action = 'promote'"));
    assert!(!recovery_settings("d", None, 1).contains("recovery_target_time ="));
}
