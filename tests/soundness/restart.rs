//! Issue 9, item 14: a static worker with a restart interval that is stopped by SIGTERM exits
//! with code 1, as a C worker does, so the postmaster restarts it after its interval (exit
//! code 0 means "done": depending on the major, PostgreSQL unregisters the worker or restarts
//! it at once, ignoring the interval).

use std::time::Duration;

use bgworker_tests::{test_workers, Cluster};

const WAIT: Duration = Duration::from_secs(30);

/// The pids the restarter logged, in order.
fn restarter_pids(cluster: &Cluster) -> Vec<i32> {
    cluster
        .log()
        .lines()
        .filter_map(|l| l.split("restarter running as ").nth(1))
        .filter_map(|pid| pid.trim().parse().ok())
        .collect()
}

#[test]
fn a_terminated_worker_with_a_restart_interval_is_restarted() {
    let cluster = Cluster::builder()
        .preload(test_workers())
        .setting("test_workers.start", "restarter")
        .start();
    assert!(cluster.poll(WAIT, || !restarter_pids(&cluster).is_empty()));
    let first = restarter_pids(&cluster)[0];
    // SAFETY: sending SIGTERM (15), as TerminateBackgroundWorker does, to a process we started.
    assert_eq!(unsafe { kill(first, 15) }, 0);
    let restarted = cluster.poll(WAIT, || restarter_pids(&cluster).len() >= 2);
    let log = cluster.log();
    assert!(restarted, "not restarted:\n{log}");
    assert!(
        log.lines().any(|l| l.contains("exited with exit code 1")
            && (l.contains("\"test_restarter\"") || l.contains("\"test restarter\""))),
        "{log}"
    );
    cluster.assert_no_crash();
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
