//! Issue 9, item 13: a library that registers a static worker in `_PG_init` loads in a
//! backend too (for its SQL functions), as a C library does: registration is skipped there.

use bgworker_tests::{example, test_workers, Cluster};

#[test]
fn a_library_with_a_static_worker_loads_in_a_backend() {
    // Nothing preloaded: hello_world's _PG_init runs in the backend that loads it.
    let cluster = Cluster::builder()
        .library(example("hello_world"))
        .library(test_workers())
        .start();
    let mut client = cluster.connect();
    client.batch_execute("LOAD 'hello_world'").unwrap();
    // A SQL function of a library whose _PG_init registers workers when preloaded.
    client
        .batch_execute(
            "CREATE FUNCTION quote_ident_rs(text) RETURNS text
             AS 'bgworker_test_workers' LANGUAGE C STRICT",
        )
        .unwrap();
    let quoted: String = client
        .query_one("SELECT quote_ident_rs('a b')", &[])
        .unwrap()
        .get(0);
    assert_eq!(quoted, "\"a b\"");
    // No worker was started by the load.
    let workers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'hello_world'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(workers, 0);
    cluster.assert_no_crash();
}
