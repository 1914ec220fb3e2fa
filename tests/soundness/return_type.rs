//! Issue 9, item 4: a SQL declaration whose result type is not the Rust function's is a
//! clear ERROR, never a Datum read as another type.

use bgworker_tests::test_cluster;

#[test]
fn a_declared_result_type_that_is_not_the_rust_one_is_an_error() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let right: i64 = client
        .query_one("SELECT int8_as_int8()", &[])
        .unwrap()
        .get(0);
    assert_eq!(right, 42);
    for (declared, name) in [("text", "int8_as_text"), ("void", "int8_as_void")] {
        let e = client
            .query_one(&format!("SELECT {name}()::text"), &[])
            .unwrap_err();
        let db = e.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "42804", "{db:?}");
        assert!(
            db.message().contains(&format!(
                "the SQL declaration returns {declared}, but the Rust function returns bigint"
            )),
            "{}",
            db.message()
        );
    }
    cluster.assert_no_crash();
}
