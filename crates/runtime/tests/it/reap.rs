//! `reap_orphans`: processes of a previous agent found by their marker.

use std::os::unix::process::ExitStatusExt;

use dockhand_runtime::{reap_orphans, INSTANCE_ENV};

use crate::*;

#[tokio::test]
async fn reap_orphans_kills_a_setsid_process_with_the_marker() {
    let agent = agent_id("reap");
    let other = agent_id("reap-other");
    let mut orphan = std::process::Command::new("setsid")
        .args(["sleep", "1000"])
        .env(INSTANCE_ENV, format!("{agent}/r1-api-0"))
        .spawn()
        .expect("setsid is required by this test (util-linux)");
    let mut bystander = std::process::Command::new("sleep")
        .arg("1000")
        .env(INSTANCE_ENV, format!("{other}/r1-api-0"))
        .spawn()
        .unwrap();

    // The marker is visible in /proc only once both have exec'd (an orphan found at agent
    // start has long since done so).
    let deadline = std::time::Instant::now() + PATIENCE;
    while !(marked_by_agent(&agent).contains(&orphan.id())
        && marked_by_agent(&other).contains(&bystander.id()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the test processes never exec'd"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let killed = reap_orphans(&agent);
    assert!(killed.contains(&orphan.id()), "{killed:?}");
    assert!(!killed.contains(&bystander.id()));
    let status = orphan.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    assert!(marked_by_agent(&agent).is_empty());

    assert_eq!(
        bystander.try_wait().unwrap(),
        None,
        "another agent's process was killed"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[tokio::test]
async fn reap_orphans_finds_nothing_for_an_unknown_agent() {
    assert!(reap_orphans(&agent_id("nobody")).is_empty());
}
