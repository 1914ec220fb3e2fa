//! Issue 9, item 8: message queues are only created where they fit and only attached where
//! one was created. (That shared memory holds only plain data is checked at compile time:
//! see the `compile_fail` examples of `bgworker::shmem`.)

use bgworker_tests::test_cluster;

#[test]
fn queues_that_do_not_fit_or_do_not_exist_are_errors() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let seen: Vec<String> = client.query_one("SELECT dsm_misuse()", &[]).unwrap().get(0);
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert!(
        seen[0].contains("a message queue needs at least"),
        "{seen:?}"
    );
    assert!(seen[1].contains("does not fit"), "{seen:?}");
    assert!(
        seen[2].contains("there is no message queue at offset 0"),
        "{seen:?}"
    );
    assert!(
        seen[3].contains("overlaps the queue at offset 0"),
        "{seen:?}"
    );
    assert!(
        seen[4].contains("there is no message queue at offset 64"),
        "{seen:?}"
    );
    assert_eq!(seen[5], "Ok(\"ok\")");
    cluster.assert_no_crash();
}
