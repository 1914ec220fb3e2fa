//! Issue 9, item 10: queries, prepared queries and cursors see the earlier statements of
//! their transaction; read-only mode (which does not) is only used when asked for.

use bgworker_tests::test_cluster;

#[test]
fn a_transaction_sees_its_own_writes() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let seen: String = client.query_one("SELECT own_writes()", &[]).unwrap().get(0);
    // read_only=0: SPI's read-only mode reads with the statement's own snapshot, taken
    // before the function wrote anything, as PostgreSQL documents.
    assert_eq!(seen, "query=1 prepared=2 cursor=3 read_only=0");
    cluster.assert_no_crash();
}
