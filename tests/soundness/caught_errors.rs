//! Issue 9, item 11: an ERROR caught inside a transaction can never be committed as success.

use bgworker_tests::test_cluster;

fn setup() -> (bgworker_tests::Cluster, postgres::Client) {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE TABLE caught_t (label text)")
        .unwrap();
    (cluster, client)
}

#[test]
fn a_function_that_ignores_a_caught_error_fails_with_it() {
    let (cluster, mut client) = setup();
    let e = client
        .query_one("SELECT insert_then_ignore_error('lost')", &[])
        .unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22P02", "{db:?}");
    assert!(
        db.where_()
            .unwrap_or_default()
            .contains("returned success without rolling back"),
        "{db:?}"
    );
    let rows: i64 = client
        .query_one("SELECT count(*) FROM caught_t", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the insert before the caught ERROR was committed");
    cluster.assert_no_crash();
}

#[test]
fn a_swallowed_spi_error_is_not_a_success_and_blocks_further_sql() {
    let (cluster, mut client) = setup();
    let e = client
        .query_one("SELECT swallow_spi_error()", &[])
        .unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "22012", "{db:?}");
    // What the function saw, logged before it returned.
    let log = cluster.log();
    assert!(
        log.contains("first: Err(SqlState(22012)); second: Err(SqlState(22012))"),
        "{log}"
    );
    cluster.assert_no_crash();
}

#[test]
fn a_rolled_back_subtransaction_clears_the_error() {
    let (cluster, mut client) = setup();
    let seen: String = client
        .query_one("SELECT error_in_subtransaction()", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, "Err(SqlState(22P02))");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM caught_t", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    cluster.assert_no_crash();
}
