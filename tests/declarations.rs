//! Issue 11, part 1: the SQL declarations come from the Rust code. The test workers'
//! functions and aggregates are created from `tests/workers/test_workers.sql`, which
//! `make sql` writes from the library (and `make test` checks is current).

use bgworker_tests::test_cluster;

#[test]
fn functions_are_declared_as_their_rust_signatures_say() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let row = client
        .query_one(
            "SELECT add_step(41), add_step(40, 2), add_step(NULL) IS NULL",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, i32>(1),
            row.get::<_, bool>(2)
        ),
        (42, 42, true)
    );
    let row = client
        .query_one(
            "SELECT provolatile::text, proparallel::text, proisstrict, proargnames::text, \
                    pg_get_function_arguments(oid), prorettype::regtype::text \
             FROM pg_proc WHERE proname = 'add_step'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "i");
    assert_eq!(row.get::<_, String>(1), "s");
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, String>(3), "{x,step}");
    assert_eq!(row.get::<_, String>(4), "x integer, step integer DEFAULT 1");
    assert_eq!(row.get::<_, String>(5), "integer");

    // Arguments named like SQL keywords are quoted; an Option argument makes the function
    // not STRICT.
    let text: String = client
        .query_one(
            r#"SELECT keyword_args("user" => 'me', "limit" => 3, "type" => NULL)"#,
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(text, "me/3/none");
    let strict: bool = client
        .query_one(
            "SELECT proisstrict FROM pg_proc WHERE proname = 'keyword_args'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!strict);
    cluster.assert_no_crash();
}

#[test]
fn aggregates_compute_serially_in_groups_and_in_parallel() {
    let cluster = test_cluster(&[
        ("max_worker_processes", "16"),
        ("max_parallel_workers", "8"),
    ]);
    let mut client = cluster.connect();
    let sum: f64 = client
        .query_one(
            "SELECT rs_sum_squares(x::float8) FROM generate_series(1, 100) x",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(sum, 338_350.0);
    // No rows: NULL; NULL rows are skipped.
    let row = client
        .query_one(
            "SELECT (SELECT rs_sum_squares(x) FROM (SELECT 1.0::float8 x WHERE false) s), \
                    (SELECT rs_sum_squares(x) FROM (VALUES (NULL::float8), (3.0)) v(x)), \
                    (SELECT rs_longest(t) FROM (VALUES ('ab'), (NULL), ('héllo')) v(t))",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Option<f64>>(0), None);
    assert_eq!(row.get::<_, Option<f64>>(1), Some(9.0));
    assert_eq!(row.get::<_, i64>(2), 5);

    // Many groups, hashed with little memory: states are created, spilled and dropped per
    // group, and every group's answer is right.
    client
        .batch_execute(
            "CREATE TABLE t AS SELECT g % 5000 AS k, g::float8 AS x FROM generate_series(1, 200000) g; \
             ANALYZE t",
        )
        .unwrap();
    client
        .batch_execute("SET work_mem = '64kB'; SET enable_sort = off")
        .unwrap();
    let wrong: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT k, rs_sum_squares(x) AS got, sum(x * x) AS want \
             FROM t GROUP BY k) s WHERE got IS DISTINCT FROM want",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0);
    client
        .batch_execute("RESET work_mem; RESET enable_sort")
        .unwrap();

    // In parallel: partial states are serialized in the workers and combined in the leader.
    client
        .batch_execute(
            "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
             SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2",
        )
        .unwrap();
    let plan: String = client
        .query("EXPLAIN SELECT rs_sum_squares(x) FROM t", &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0) + "\n")
        .collect();
    assert!(plan.contains("Partial Aggregate"), "{plan}");
    let row = client
        .query_one("SELECT rs_sum_squares(x), sum(x * x) FROM t", &[])
        .unwrap();
    assert_eq!(row.get::<_, f64>(0), row.get::<_, f64>(1));
    cluster.assert_no_crash();
}

#[test]
fn support_functions_are_not_public_and_refuse_misuse() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    client.batch_execute("CREATE ROLE someone LOGIN").unwrap();
    let public: Vec<String> = client
        .query(
            "SELECT proname::text FROM pg_proc WHERE proname ~ '^rs_(sum_squares|longest)_' \
             AND has_function_privilege('someone', oid, 'EXECUTE') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(public.is_empty(), "{public:?}");
    let usable: bool = client
        .query_one(
            "SELECT has_function_privilege('someone', 'rs_sum_squares(float8)', 'EXECUTE')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(usable, "the aggregate itself stays usable");
    // Final functions take `&mut self`: PostgreSQL must not call one twice on a state.
    let modify: String = client
        .query_one(
            "SELECT aggfinalmodify::text FROM pg_aggregate WHERE aggfnoid = 'rs_sum_squares'::regproc",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(modify, "w");

    // An aggregate declared by hand that mixes two aggregates' support functions gets an
    // error, not one state read as the other.
    client
        .batch_execute(
            "CREATE AGGREGATE mixed(text) (SFUNC = rs_longest_step, STYPE = internal, \
             FINALFUNC = rs_sum_squares_final)",
        )
        .unwrap();
    let e = client
        .query_one("SELECT mixed(t) FROM (VALUES ('a')) v(t)", &[])
        .unwrap_err();
    let message = e
        .as_db_error()
        .expect("a server error")
        .message()
        .to_string();
    assert!(message.contains("aggregate state is not a"), "{message}");
    cluster.assert_no_crash();
}

#[test]
fn composite_types_are_declared_and_returned() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let row = client
        .query_one(
            "SELECT (numbered(3)).n, (numbered(3)).name, (numbered(4)).name IS NULL, \
                    pg_typeof(numbered(3))::text, numbered(5)::text",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
    assert_eq!(row.get::<_, String>(1), "three");
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, String>(3), "numbered");
    assert_eq!(row.get::<_, String>(4), "(5,)");
    cluster.assert_no_crash();
}
