//! Issue 9, item 7: PostgreSQL entered from another thread is a clean error (or, for a log
//! call, a panic of that thread), never a corrupted backend.

use bgworker_tests::test_cluster;

#[test]
fn calls_from_another_thread_are_refused() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let seen: String = client
        .query_one("SELECT from_thread()", &[])
        .unwrap()
        .get(0);
    let refusal = "PostgreSQL was called from a thread other than the backend's main thread";
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines.len(), 3, "{seen}");
    for line in lines {
        assert!(line.contains(refusal), "{seen}");
    }
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    assert!(!cluster.log().contains("from a thread"));
    cluster.assert_no_crash();
}
