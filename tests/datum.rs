//! Values through fmgr (SQL function arguments and results) and through SPI (statement
//! parameters and result columns), compared by PostgreSQL itself.

use bgworker_tests::{test_cluster, ECHO_TYPES};

const SAMPLES: &[(&str, &[&str])] = &[
    ("bool", &["true", "false"]),
    ("int2", &["-32768", "32767", "0"]),
    ("int4", &["-2147483648", "2147483647"]),
    ("int8", &["-9223372036854775808", "9223372036854775807"]),
    ("float4", &["1.5", "-3.4028235e38", "'NaN'", "'-Infinity'"]),
    (
        "float8",
        &["0.1", "1e308", "-2.2250738585072014e-308", "'Infinity'"],
    ),
    ("oid", &["0", "4294967295"]),
    (
        "text",
        &[
            "''",
            "'héllo wörld ☃'",
            "'with ''quotes'' and %s'",
            "repeat('long ', 100000)",
        ],
    ),
    (
        "numeric",
        &[
            "'12345678901234567890.123456789012345678901234567890'",
            "'-0.000000000000000000001'",
            "'NaN'",
            "0",
        ],
    ),
    (
        "bytea",
        &["'\\x'", "'\\x00ff10'", "decode(repeat('ab', 50000), 'hex')"],
    ),
    ("int4[]", &["'{}'", "'{1,NULL,3}'", "'{-2147483648}'"]),
    ("text[]", &["'{a,NULL,\"b c\"}'", "ARRAY['☃']"]),
    ("float8[]", &["'{1.5,-2.25}'"]),
    ("numeric[]", &["'{1.000000000000000000001,2}'"]),
    ("int8", &["NULL"]),
];

#[test]
fn every_supported_type_round_trips_through_fmgr_and_spi() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    for (sql_type, stem) in ECHO_TYPES {
        let samples = SAMPLES
            .iter()
            .find(|(t, _)| t == sql_type)
            .map(|(_, s)| *s)
            .unwrap();
        // NULL only through the nullable variant; everything else through both.
        let samples: Vec<&str> = if stem.starts_with("nullable") {
            vec!["NULL", "42"]
        } else {
            samples.iter().copied().filter(|s| *s != "NULL").collect()
        };
        for sample in samples {
            for prefix in ["echo", "spi_echo"] {
                let sql = format!(
                    "SELECT ({prefix}_{stem}(({sample})::{sql_type}) IS NOT DISTINCT FROM ({sample})::{sql_type})::text, \
                     {prefix}_{stem}(({sample})::{sql_type})::text"
                );
                let row = client
                    .query_one(&sql, &[])
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let (same, shown): (String, Option<String>) = (row.get(0), row.get(1));
                let shown = shown.map(|s| s.chars().take(60).collect::<String>());
                assert_eq!(
                    same, "true",
                    "{prefix}_{stem}({sample}) came back as {shown:?}"
                );
            }
        }
    }
}

#[test]
fn rows_read_into_structs_and_wrong_types_are_clear_errors() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let pairs: String = client
        .query_one(
            "SELECT read_pairs('SELECT * FROM (VALUES (1, ''a''), (2, NULL)) v(id, label)')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(pairs, "1=a,2=NULL");

    let err = client
        .query_one("SELECT read_as_int4('SELECT ''x''::text AS label')", &[])
        .unwrap_err();
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "42804");
    assert!(
        db.message()
            .contains("column 1 \"label\": type text cannot be read as Rust type i32"),
        "{}",
        db.message()
    );
    assert!(
        db.message().contains("i32") && db.message().contains("integer"),
        "{}",
        db.message()
    );

    let err = client
        .query_one("SELECT read_as_int4('SELECT NULL::int4 AS n')", &[])
        .unwrap_err();
    let msg = err.as_db_error().unwrap().message().to_string();
    assert!(
        msg.contains("column 1 \"n\": unexpected NULL") && msg.contains("Option"),
        "{msg}"
    );

    let err = client
        .query_one("SELECT echo_int4_array('{{1,2},{3,4}}')", &[])
        .unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("2 dimensions"),
        "{err}"
    );

    // More rows than `query_opt` takes: a typed error with PL/pgSQL's SQLSTATE.
    let err = client
        .query_one("SELECT read_as_int4('SELECT 1 UNION ALL SELECT 2')", &[])
        .unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "P0003", "{db:?}");
    assert_eq!(
        db.message(),
        "the query returned 2 rows; at most one was expected"
    );

    // The session is fine after all of that.
    let n: i32 = client
        .query_one("SELECT read_as_int4('SELECT 7')", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 7);
}

#[test]
fn conversion_errors_say_which_column_argument_or_element() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    // Matched on the error's fields inside the library (`conversion_error_at`).
    let at = |client: &mut postgres::Client, sql: &str| -> String {
        let arg = sql.replace('\'', "''");
        client
            .query_one(&format!("SELECT conversion_error_at('{arg}')"), &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    };
    assert_eq!(
        at(&mut client, "SELECT 1 AS id, 'x'::text AS xs"),
        "column 2 xs"
    );
    assert_eq!(
        at(
            &mut client,
            "SELECT NULL::int4 AS id, '{1}'::float8[] AS xs"
        ),
        "column 1 id"
    );
    assert_eq!(
        at(&mut client, "SELECT 1 AS id, '{1.5,NULL}'::float8[] AS xs"),
        "column 2 xs, element 2"
    );
    assert_eq!(
        at(&mut client, "SELECT 1 AS id, '{1.5}'::float8[] AS xs"),
        "1 rows"
    );

    // The position reaches the client in the message, for arguments too.
    let err = client
        .query_one("SELECT echo_float8_array('{1.5,NULL}')", &[])
        .unwrap_err();
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "42804");
    assert!(
        db.message()
            .starts_with("argument 1, array element 2: unexpected NULL"),
        "{}",
        db.message()
    );
    client
        .batch_execute(
            "CREATE FUNCTION read_as_int4_of_int(int4) RETURNS int4 \
             AS 'bgworker_test_workers', 'read_as_int4' LANGUAGE C STRICT",
        )
        .unwrap();
    let err = client
        .query_one("SELECT read_as_int4_of_int(1)", &[])
        .unwrap_err();
    let msg = err.as_db_error().unwrap().message().to_string();
    assert!(
        msg.starts_with("argument 1: type integer cannot be read as Rust type"),
        "{msg}"
    );
}

#[test]
fn quoting_matches_postgresqls_own() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    for input in [
        "plain",
        "Mixed Case",
        "with \"quotes\"",
        "select",
        "naïve",
        "a;DROP TABLE x",
        "",
        "x\u{2603}",
    ] {
        let row = client
            .query_one(
                "SELECT quote_ident_rs($1) = quote_ident($1), quote_literal_rs($1) = quote_literal($1), quote_ident_rs($1)",
                &[&input],
            )
            .unwrap();
        let (ident_same, literal_same, shown): (bool, bool, String) =
            (row.get(0), row.get(1), row.get(2));
        assert!(ident_same && literal_same, "{input:?} quoted as {shown}");
    }
}

#[test]
fn errors_and_panics_in_sql_functions_are_sql_errors() {
    let cluster = test_cluster(&[]);
    let mut client = cluster.connect();
    let err = client
        .batch_execute("SELECT fail_with('22012', 'custom failure 100%')")
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "22012");
    assert_eq!(db.message(), "custom failure 100%");
    assert_eq!(db.hint(), Some("raised by fail_with"));

    let err = client
        .batch_execute("SELECT panic_with('boom %n %s')")
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "XX000");
    assert_eq!(db.message(), "boom %n %s");

    // A failed statement inside a subtransaction does not abort the caller's transaction.
    client
        .batch_execute("CREATE TABLE u (k int PRIMARY KEY); INSERT INTO u VALUES (1)")
        .unwrap();
    let mut tx = client.transaction().unwrap();
    let first: String = tx
        .query_one("SELECT try_statement('INSERT INTO u VALUES (1)')", &[])
        .unwrap()
        .get(0);
    let second: String = tx
        .query_one("SELECT try_statement('INSERT INTO u VALUES (2)')", &[])
        .unwrap()
        .get(0);
    tx.commit().unwrap();
    assert_eq!(first, "failed 23505");
    assert_eq!(second, "ok 1");
    let n: i64 = client
        .query_one("SELECT count(*) FROM u", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    assert!(!cluster
        .log()
        .contains("terminating any other active server processes"));
}
