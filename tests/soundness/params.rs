//! Issue 9, item 3: a value that cannot be a statement parameter is refused with an error;
//! the server never reads a Datum of the wrong shape.

use bgworker_tests::test_cluster;

#[test]
fn a_unit_parameter_is_an_error_not_a_crash() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let refused: String = client.query_one("SELECT param_void()", &[]).unwrap().get(0);
    assert!(
        refused.contains("parameter $1: type void cannot be a statement parameter"),
        "{refused}"
    );
    // The same session goes on.
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    cluster.assert_no_crash();
}
