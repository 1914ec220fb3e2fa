//! The error boundary, in real worker processes: panics and returned errors become ERRORs
//! that end one worker, caught ERRORs become values, and the cluster never restarts.

use std::time::Duration;

use bgworker_tests::{test_workers, Cluster};

const WAIT: Duration = Duration::from_secs(30);
const CRASH_RESTART: &str = "terminating any other active server processes";

fn cluster_with(workers: &str) -> Cluster {
    Cluster::builder()
        .preload(test_workers())
        .setting("test_workers.start", workers)
        .start()
}

#[test]
fn a_panic_ends_one_worker_with_an_error_and_nothing_else() {
    let cluster = cluster_with("panicker");
    cluster.wait_for_log("panicker waiting for SIGHUP", WAIT);
    let mut client = cluster.connect();
    let backend_pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    client.batch_execute("SELECT pg_reload_conf()").unwrap();

    cluster.wait_for_log("exited with exit code 1", WAIT);
    let log = cluster.log();
    // The postmaster names the worker by its type (15+) or its name.
    assert!(
        log.lines().any(|l| l.contains("exited with exit code 1")
            && (l.contains("\"test_panicker\"") || l.contains("\"test panicker\""))),
        "{log}"
    );
    // The panic text arrives verbatim: no format directive was interpreted.
    assert!(
        log.contains("ERROR:  deliberate panic: 100% of %s ☃ (40)"),
        "{log}"
    );
    assert!(
        log.contains("DETAIL:  Rust panic at tests/workers/src/failing.rs:"),
        "{log}"
    );
    assert!(
        !log.contains(CRASH_RESTART),
        "the cluster reinitialised:\n{log}"
    );
    assert!(!log.contains("was terminated by signal"), "{log}");

    // The session opened before the panic is still the same, working backend.
    let same: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_eq!(same, backend_pid);
}

#[test]
fn a_returned_error_keeps_its_sqlstate_detail_and_hint() {
    let cluster = Cluster::builder()
        .preload(test_workers())
        .setting("test_workers.start", "err_returner")
        .setting("log_error_verbosity", "verbose")
        .start();
    cluster.wait_for_log("HINT:  hint of the returned error", WAIT);
    cluster.wait_for_log("exited with exit code 1", WAIT);
    let log = cluster.log();
    assert!(
        log.contains("ERROR:  22023: returned error: 50% bad"),
        "{log}"
    );
    assert!(
        log.contains("DETAIL:  detail of the returned error"),
        "{log}"
    );
    assert!(!log.contains(CRASH_RESTART), "{log}");
}

#[test]
fn a_caught_error_is_a_value_and_the_worker_goes_on() {
    let cluster = cluster_with("guard_caller");
    cluster.wait_for_log("guard caller still running after 3 caught errors", WAIT);
    let log = cluster.log();
    for round in 1..=3 {
        assert!(
            log.contains(&format!(
                "guarded call {round} failed: SQLSTATE 22P02: invalid input syntax for type integer: \"not a number\""
            )),
            "{log}"
        );
    }
    // Still alive and listed after the errors.
    let mut client = cluster.connect();
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'test_guard_caller'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    assert!(!log.contains("exited with exit code"), "{log}");
}
