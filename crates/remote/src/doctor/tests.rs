//! The doctor's verdicts with plain facts.

use super::*;

fn healthy() -> Facts {
    Facts {
        hostname: "srv".into(),
        disks: vec![Disk {
            path: "/".into(),
            total_bytes: 80 * GIB,
            avail_bytes: 50 * GIB,
            inodes: 5_000_000,
            inodes_free: 4_000_000,
        }],
        mem_total_kib: 4 * 1024 * 1024,
        mem_available_kib: 3 * 1024 * 1024,
        ntp_synchronized: Some(true),
        firewall: Some(true),
        firewall_detail: "nftables table inet dockhand".into(),
        listeners: vec![
            Listener {
                address: "0.0.0.0".into(),
                port: 22,
                loopback: false,
            },
            Listener {
                address: "0.0.0.0".into(),
                port: 80,
                loopback: false,
            },
            Listener {
                address: "127.0.0.1".into(),
                port: 5432,
                loopback: true,
            },
        ],
        sshd: Some(BTreeMap::from([
            ("passwordauthentication".into(), "no".into()),
            ("permitrootlogin".into(), "no".into()),
            ("port".into(), "22".into()),
        ])),
        docker: Some(Ok("20.10.24".into())),
        unit: Some(("active".into(), "enabled".into(), 0)),
        addresses: vec!["203.0.113.10".into()],
        ..Facts::default()
    }
}

fn verdict(checks: &[Check], name: &str) -> Verdict {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} check in {checks:#?}"))
        .verdict
}

#[test]
fn a_healthy_server_passes_every_check() {
    let agent = AgentView {
        answered: Some(Ok("app shop".into())),
        certificates: vec![(vec!["shop.example.org".into()], 60)],
        route_hosts: vec![("shop.example.org".into(), Ok(vec!["203.0.113.10".into()]))],
        expected_addresses: vec![],
    };
    let checks = evaluate(&healthy(), &agent);
    let bad: Vec<&Check> = checks.iter().filter(|c| c.verdict != Verdict::Ok).collect();
    assert!(bad.is_empty(), "{bad:#?}");
    for name in [
        "disk",
        "inodes",
        "memory",
        "swap",
        "clock",
        "firewall",
        "ports",
        "ssh",
        "docker",
        "agent",
        "certificates",
        "dns",
    ] {
        verdict(&checks, name);
    }
}

#[test]
fn problems_are_found_with_what_to_do() {
    let mut f = healthy();
    f.disks[0].avail_bytes = GIB / 4;
    f.disks[0].inodes_free = 100_000;
    f.mem_total_kib = 1024 * 1024;
    f.mem_available_kib = 30 * 1024;
    f.ntp_synchronized = Some(false);
    f.firewall = Some(false);
    f.listeners.push(Listener {
        address: "0.0.0.0".into(),
        port: 6379,
        loopback: false,
    });
    f.sshd
        .as_mut()
        .unwrap()
        .insert("passwordauthentication".into(), "yes".into());
    f.docker = Some(Err("connection refused".into()));
    f.unit = Some(("failed".into(), "enabled".into(), 12));
    let agent = AgentView {
        answered: Some(Err("no socket".into())),
        certificates: vec![
            (vec!["a.example".into()], 2),
            (vec!["b.example".into()], -1),
            (vec!["c.example".into()], 10),
        ],
        route_hosts: vec![
            ("gone.example".into(), Err("no such host".into())),
            ("elsewhere.example".into(), Ok(vec!["198.51.100.1".into()])),
        ],
        expected_addresses: vec![],
    };
    let checks = evaluate(&f, &agent);
    for (name, v) in [
        ("disk", Verdict::Fail),
        ("inodes", Verdict::Fail),
        ("memory", Verdict::Fail),
        ("swap", Verdict::Warn),
        ("clock", Verdict::Warn),
        ("firewall", Verdict::Fail),
        ("ports", Verdict::Fail),
        ("ssh", Verdict::Warn),
        ("docker", Verdict::Fail),
        ("agent", Verdict::Fail),
    ] {
        assert_eq!(verdict(&checks, name), v, "{name}: {checks:#?}");
    }
    let certs: Vec<Verdict> = checks
        .iter()
        .filter(|c| c.name == "certificates")
        .map(|c| c.verdict)
        .collect();
    assert_eq!(certs, [Verdict::Fail, Verdict::Fail, Verdict::Warn]);
    let dns: Vec<Verdict> = checks
        .iter()
        .filter(|c| c.name == "dns")
        .map(|c| c.verdict)
        .collect();
    assert_eq!(dns, [Verdict::Fail, Verdict::Warn]);
    assert!(
        checks
            .iter()
            .filter(|c| c.verdict != Verdict::Ok)
            .all(|c| c.fix.is_some()),
        "{checks:#?}"
    );
    let ports = checks.iter().find(|c| c.name == "ports").unwrap();
    assert!(ports.summary.contains("unexpected: 6379"), "{ports:?}");
    let report = Report {
        host: "srv".into(),
        checks,
    };
    assert_eq!(report.worst(), Verdict::Fail);
}

#[test]
fn what_cannot_be_read_is_skipped_not_passed() {
    let mut f = healthy();
    f.sshd = None;
    f.firewall = None;
    f.docker = None;
    let checks = evaluate(&f, &AgentView::default());
    for name in ["ssh", "firewall", "docker"] {
        assert_eq!(verdict(&checks, name), Verdict::Skip, "{name}");
    }
}
