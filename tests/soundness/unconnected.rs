//! Issue 9, item 9: a transaction in a worker that never connected to a database is an error.

use std::time::Duration;

use bgworker_tests::test_cluster;

#[test]
fn a_transaction_without_a_connection_is_refused() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    client.execute("SELECT launch('unconnected')", &[]).unwrap();
    cluster.wait_for_log("unconnected: transaction", Duration::from_secs(30));
    let log = cluster.log();
    assert!(
        log.contains(
            "unconnected: transaction refused: this process is not connected to a database"
        ),
        "{log}"
    );
    cluster.assert_no_crash();
}
