//! Issue 9, item 12: a commit that fails, and a subtransaction that cannot end, leave the
//! worker with no transaction and working memory; the next transaction runs.

use std::time::Duration;

use bgworker_tests::test_cluster;

#[test]
fn commit_time_errors_and_stuck_subtransactions_recover() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute(
            "CREATE TABLE parent_t (id int PRIMARY KEY);
             CREATE TABLE child_t (parent int REFERENCES parent_t DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
    client
        .execute("SELECT launch('commit_errors')", &[])
        .unwrap();
    cluster.wait_for_log("commit errors: later", Duration::from_secs(30));
    let log = cluster.log();
    // The deferred foreign key fails at commit: an Err with its SQLSTATE, nothing committed.
    assert!(
        log.contains("commit errors: deferred: Err(SqlState(23503))"),
        "{log}"
    );
    assert!(log.contains("commit errors: next: Ok(1)"), "{log}");
    // The subtransaction's release fails: it is rolled back instead (as PL/pgSQL does), its
    // error returned, and the transaction around it goes on and commits.
    assert!(
        log.contains(
            "commit errors: subtransaction end: Err(\"subtransaction commit refused by the test"
        ),
        "{log}"
    );
    assert!(
        log.contains("commit errors: statement after: Ok(1)"),
        "{log}"
    );
    assert!(log.contains("commit errors: outer: Ok(())"), "{log}");
    // The next transaction starts from nothing and works.
    assert!(log.contains("commit errors: later: Ok(3)"), "{log}");
    let ids: Vec<i32> = client
        .query("SELECT id FROM parent_t ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1, 3, 4]);
    let children: i64 = client
        .query_one("SELECT count(*) FROM child_t", &[])
        .unwrap()
        .get(0);
    assert_eq!(children, 0);
    cluster.assert_no_crash();
}
