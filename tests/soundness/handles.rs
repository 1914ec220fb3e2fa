//! Issue 9, item 5: a worker handle or a queue end made while SPI was connected lives as long
//! as the Rust value, not as long as SPI's memory.

use bgworker_tests::test_cluster;

#[test]
fn a_worker_handle_outlives_the_spi_connection_it_was_made_in() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let seen: String = client
        .query_one("SELECT handle_outlives_spi()", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, "started, same pid true, then Stopped");
    cluster.assert_no_crash();
}

#[test]
fn a_queue_end_outlives_the_spi_connection_it_was_made_in() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let answer: Option<String> = client
        .query_one("SELECT queue_outlives_spi('still here')", &[])
        .unwrap()
        .get(0);
    assert_eq!(answer.as_deref(), Some("STILL HERE"));
    cluster.assert_no_crash();
}
