//! Issue 9, item 6: LWLock bookkeeping stays right after a caught ERROR, and a guard whose
//! lock was released under it gives no access to the data.

use std::time::Duration;

use bgworker_tests::test_cluster;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_caught_error_under_a_lock_leaves_interrupts_working() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let pid: i32 = client
        .query_one("SELECT launch('locked_catch')", &[])
        .unwrap()
        .get(0);
    cluster.wait_for_log("locked catch: holdoff", WAIT);
    let log = cluster.log();
    assert!(
        log.contains("locked catch: caught=true lock kept=false"),
        "{log}"
    );
    assert!(log.contains("locked catch: holdoff 0;"), "{log}");
    client
        .execute("SELECT pg_cancel_backend($1)", &[&pid])
        .unwrap();
    cluster.wait_for_log("locked catch: cancel", WAIT);
    let log = cluster.log();
    assert!(log.contains("locked catch: cancel seen: 57014"), "{log}");
    cluster.assert_no_crash();
}

#[test]
fn a_guard_whose_lock_was_released_refuses_access() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let e = client
        .query_one("SELECT lock_released_under_guard('release')", &[])
        .unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert!(
        db.message().contains("was released under its guard"),
        "{}",
        db.message()
    );
    // SQL and a second guard of the same lock are refused while a guard is alive.
    let sql: String = client
        .query_one("SELECT lock_released_under_guard('sql')", &[])
        .unwrap()
        .get(0);
    assert!(
        sql.contains("LWLock guard(s) of this process are alive"),
        "{sql}"
    );
    let again: String = client
        .query_one("SELECT lock_released_under_guard('again')", &[])
        .unwrap()
        .get(0);
    assert!(again.contains("already holds the LWLock"), "{again}");
    // Statement timeouts still work in this backend: no holdoff count was left behind.
    client
        .batch_execute("SET statement_timeout = '200ms'")
        .unwrap();
    let e = client.execute("SELECT pg_sleep(5)", &[]).unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("57014"), "{e}");
    cluster.assert_no_crash();
}
