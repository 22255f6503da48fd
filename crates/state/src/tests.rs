use super::*;

fn store() -> Store {
    Store::open_in_memory().expect("in-memory store")
}

#[test]
fn successful_deploy_makes_release_current_and_retires_previous() {
    let s = store();
    let (r1, d1) = s.begin_deploy("{}", "test", "first").unwrap();
    assert_eq!(
        s.release(r1).unwrap().unwrap().status,
        ReleaseStatus::Pending
    );
    assert!(s.current_release().unwrap().is_none());
    s.finish_deployment(d1, DeploymentOutcome::Succeeded, "ok")
        .unwrap();
    assert_eq!(s.current_release().unwrap().unwrap().id, r1);

    let (r2, d2) = s.begin_deploy("{}", "test", "second").unwrap();
    s.finish_deployment(d2, DeploymentOutcome::Succeeded, "ok")
        .unwrap();
    assert_eq!(s.current_release().unwrap().unwrap().id, r2);
    assert_eq!(
        s.release(r1).unwrap().unwrap().status,
        ReleaseStatus::Retired
    );
    assert_eq!(s.previous_release().unwrap().unwrap().id, r1);
}

#[test]
fn failed_deploy_leaves_current_release_alone() {
    let s = store();
    let (r1, d1) = s.begin_deploy("{}", "test", "").unwrap();
    s.finish_deployment(d1, DeploymentOutcome::Succeeded, "")
        .unwrap();
    let (r2, d2) = s.begin_deploy("{}", "test", "").unwrap();
    s.finish_deployment(d2, DeploymentOutcome::Failed, "health gate")
        .unwrap();
    assert_eq!(s.current_release().unwrap().unwrap().id, r1);
    assert_eq!(
        s.release(r2).unwrap().unwrap().status,
        ReleaseStatus::Failed
    );
}

#[test]
fn rollback_reactivates_a_retired_release() {
    let s = store();
    let (r1, d1) = s.begin_deploy("{}", "t", "").unwrap();
    s.finish_deployment(d1, DeploymentOutcome::Succeeded, "")
        .unwrap();
    let (_r2, d2) = s.begin_deploy("{}", "t", "").unwrap();
    s.finish_deployment(d2, DeploymentOutcome::Succeeded, "")
        .unwrap();
    let d3 = s.begin_rollback(r1, "t").unwrap();
    s.finish_deployment(d3, DeploymentOutcome::Succeeded, "")
        .unwrap();
    assert_eq!(s.current_release().unwrap().unwrap().id, r1);
    assert!(matches!(
        s.begin_rollback(99, "t"),
        Err(StateError::NoSuchRelease(99))
    ));
}

#[test]
fn a_release_rolled_back_by_the_watch_is_not_the_previous_release_any_more() {
    let s = store();
    let deploy = |s: &Store| {
        let (r, d) = s.begin_deploy("{}", "t", "").unwrap();
        s.finish_deployment(d, DeploymentOutcome::Succeeded, "")
            .unwrap();
        r
    };
    let r1 = deploy(&s);
    let r2 = deploy(&s);
    let r3 = deploy(&s);
    // The watch puts r2 back: r3 is retired and, activated last, the "previous" release.
    let d = s.begin_rollback(r2, "the watch").unwrap();
    s.finish_deployment(d, DeploymentOutcome::Succeeded, "")
        .unwrap();
    assert_eq!(s.previous_release().unwrap().unwrap().id, r3);
    assert!(s.fail_rolled_back_release(r3).unwrap());
    assert_eq!(
        s.release(r3).unwrap().unwrap().status,
        ReleaseStatus::Failed
    );
    assert_eq!(s.previous_release().unwrap().unwrap().id, r1);
    // Only a retired release is marked: never the current one.
    assert!(!s.fail_rolled_back_release(r2).unwrap());
    assert_eq!(s.current_release().unwrap().unwrap().id, r2);
}

#[test]
fn recover_aborts_running_deployments_and_pending_releases() {
    let s = store();
    let (r1, d1) = s.begin_deploy("{}", "t", "").unwrap();
    s.finish_deployment(d1, DeploymentOutcome::Succeeded, "")
        .unwrap();
    let (r2, _d2) = s.begin_deploy("{}", "t", "").unwrap();
    s.put_instance(&InstanceRecord {
        id: "x".into(),
        release: r2,
        deployment: 2,
        service: "api".into(),
        index: 0,
        port: Some(1),
        pid: Some(2),
        started_at: now(),
    })
    .unwrap();
    let rec = s.recover().unwrap();
    assert_eq!(rec.aborted_deployments, 1);
    assert_eq!(rec.failed_releases, 1);
    assert_eq!(rec.stale_instances, 1);
    assert_eq!(s.current_release().unwrap().unwrap().id, r1);
    assert_eq!(
        s.release(r2).unwrap().unwrap().status,
        ReleaseStatus::Failed
    );
    assert_eq!(s.recover().unwrap(), Recovery::default());
}

#[test]
fn prune_keeps_newest_and_never_current() {
    let s = store();
    for _ in 0..5 {
        let (_, d) = s.begin_deploy("{\"x\":1}", "t", "").unwrap();
        s.finish_deployment(d, DeploymentOutcome::Succeeded, "")
            .unwrap();
    }
    let pruned = s.prune_releases(2).unwrap();
    assert_eq!(pruned, vec![2, 1]);
    assert_eq!(s.current_release().unwrap().unwrap().id, 5);
    assert_eq!(s.release(1).unwrap().unwrap().status, ReleaseStatus::Pruned);
    assert_eq!(
        s.release(3).unwrap().unwrap().status,
        ReleaseStatus::Retired
    );
}

#[test]
fn events_are_returned_oldest_first_and_limited() {
    let s = store();
    for i in 0..5 {
        s.record_event(EventLevel::Info, "test", None, None, &format!("e{i}"))
            .unwrap();
    }
    let ev = s.events(2).unwrap();
    assert_eq!(
        ev.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["e3", "e4"]
    );
}

#[test]
fn recorded_events_come_back_as_stored_and_pruning_keeps_the_newest() {
    let s = store();
    let first = s
        .record_event(EventLevel::Warn, "restart", Some(3), Some("web"), "e0")
        .unwrap();
    assert_eq!(s.events(1).unwrap(), vec![first.clone()]);
    for i in 1..6 {
        s.record_event(EventLevel::Info, "test", None, None, &format!("e{i}"))
            .unwrap();
    }
    assert_eq!(s.prune_events(2).unwrap(), 4);
    let left: Vec<String> = s
        .events(10)
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(left, ["e4", "e5"]);
    assert_eq!(s.prune_events(2).unwrap(), 0);
}

#[test]
fn a_job_run_is_remembered_and_replaced() {
    let s = store();
    assert_eq!(s.job_last_run("housekeeping").unwrap(), None);
    let run = JobRun {
        job: "housekeeping".into(),
        ran_at: "2026-01-01T00:00:00.000Z".into(),
        succeeded: false,
        message: "disk full".into(),
    };
    s.record_job_run(&run).unwrap();
    assert_eq!(s.job_last_run("housekeeping").unwrap(), Some(run.clone()));
    let later = JobRun {
        ran_at: "2026-01-01T01:00:00.000Z".into(),
        succeeded: true,
        message: String::new(),
        ..run
    };
    s.record_job_run(&later).unwrap();
    assert_eq!(s.job_last_run("housekeeping").unwrap(), Some(later));
}

#[test]
fn reopening_a_database_keeps_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = Store::open(&path).unwrap();
        let (_, d) = s.begin_deploy("{}", "t", "").unwrap();
        s.finish_deployment(d, DeploymentOutcome::Succeeded, "")
            .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.current_release().unwrap().unwrap().id, 1);
}
