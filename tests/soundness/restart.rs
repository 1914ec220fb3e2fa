//! Issue 9, item 14: a static worker with a restart interval that is terminated comes back,
//! as a C worker (which exits with code 1) does.

use std::time::Duration;

use bgworker_tests::{test_workers, Cluster};

fn restarter_pid(client: &mut postgres::Client) -> Option<i32> {
    client
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'test_restarter'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0))
}

#[test]
fn a_terminated_worker_with_a_restart_interval_is_restarted() {
    let cluster = Cluster::builder()
        .preload(test_workers())
        .setting("test_workers.start", "restarter")
        .start();
    let mut client = cluster.connect();
    assert!(
        cluster.poll(Duration::from_secs(30), || restarter_pid(&mut client)
            .is_some())
    );
    let first = restarter_pid(&mut client).unwrap();
    client
        .execute("SELECT pg_terminate_backend($1)", &[&first])
        .unwrap();
    let restarted = cluster.poll(Duration::from_secs(30), || {
        restarter_pid(&mut client).is_some_and(|pid| pid != first)
    });
    assert!(restarted, "not restarted:\n{}", cluster.log());
    assert!(cluster.log_count("restarter running") >= 2);
    cluster.assert_no_crash();
}
