//! Shared helpers of the integration tests: where the built libraries are.

use std::path::PathBuf;

pub use bgworker::testing::{process_alive, Cluster};

/// The `.so` of an example, as `make test` builds it (`cargo build --release --examples`).
pub fn example(name: &str) -> PathBuf {
    built(&format!("examples/lib{name}.so"))
}

/// The test workers library (`tests/workers`).
pub fn test_workers() -> PathBuf {
    built("libbgworker_test_workers.so")
}

fn built(relative: &str) -> PathBuf {
    let path = bgworker::testing::cargo_profile_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `make test`, which builds the libraries before the tests",
        path.display()
    );
    path
}

/// `CREATE FUNCTION` statements for the SQL functions of the test workers library.
pub const TEST_FUNCTIONS: &str = r#"
CREATE FUNCTION guc_values() RETURNS text AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION launch(text, text DEFAULT NULL) RETURNS int4 AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION launch_error(text) RETURNS text AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION launch_and_stop() RETURNS text AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION registration_errors() RETURNS text[] AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION read_pairs(text) RETURNS text AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION read_as_int4(text) RETURNS int4 AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION conversion_error_at(text) RETURNS text AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION quote_ident_rs(text) RETURNS text AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION quote_literal_rs(text) RETURNS text AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION fail_with(text, text) RETURNS void AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION panic_with(text) RETURNS void AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION try_statement(text) RETURNS text AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION shmem_bump(int8) RETURNS int8[] AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION shmem_read() RETURNS int8[] AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION mq_echo(text) RETURNS text AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION param_void() RETURNS text AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION int8_as_int8() RETURNS int8 AS 'bgworker_test_workers', 'int8_result' LANGUAGE C;
CREATE FUNCTION int8_as_text() RETURNS text AS 'bgworker_test_workers', 'int8_result' LANGUAGE C;
CREATE FUNCTION int8_as_void() RETURNS void AS 'bgworker_test_workers', 'int8_result' LANGUAGE C;
CREATE FUNCTION handle_outlives_spi() RETURNS text AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION queue_outlives_spi(text) RETURNS text AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION lock_released_under_guard(text) RETURNS text AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION from_thread() RETURNS text AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION dsm_misuse() RETURNS text[] AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION own_writes() RETURNS text AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION insert_then_ignore_error(text) RETURNS text AS 'bgworker_test_workers' LANGUAGE C STRICT;
CREATE FUNCTION swallow_spi_error() RETURNS text AS 'bgworker_test_workers' LANGUAGE C;
CREATE FUNCTION error_in_subtransaction() RETURNS text AS 'bgworker_test_workers' LANGUAGE C;
"#;

/// The echo functions: (SQL type, Rust-side name stem), each as `echo_<stem>` (fmgr) and
/// `spi_echo_<stem>` (through SPI).
pub const ECHO_TYPES: &[(&str, &str)] = &[
    ("bool", "bool"),
    ("int2", "int2"),
    ("int4", "int4"),
    ("int8", "int8"),
    ("float4", "float4"),
    ("float8", "float8"),
    ("oid", "oid"),
    ("text", "text"),
    ("numeric", "numeric"),
    ("bytea", "bytea"),
    ("int4[]", "int4_array"),
    ("text[]", "text_array"),
    ("float8[]", "float8_array"),
    ("numeric[]", "numeric_array"),
    ("int8", "nullable_int8"),
];

/// A cluster with the test workers library preloaded, `settings` applied, and the test SQL
/// functions created in `postgres`.
pub fn test_cluster(settings: &[(&str, &str)]) -> Cluster {
    let mut builder = Cluster::builder().preload(test_workers());
    for (k, v) in settings {
        builder = builder.setting(k, v);
    }
    let cluster = builder.start();
    let mut client = cluster.connect();
    client
        .batch_execute(TEST_FUNCTIONS)
        .expect("create test functions");
    for (sql_type, stem) in ECHO_TYPES {
        let strict = if stem.starts_with("nullable") {
            ""
        } else {
            "STRICT"
        };
        for prefix in ["echo", "spi_echo"] {
            client
                .batch_execute(&format!(
                    "CREATE FUNCTION {prefix}_{stem}({sql_type}) RETURNS {sql_type} \
                     AS 'bgworker_test_workers' LANGUAGE C {strict}"
                ))
                .expect("create echo function");
        }
    }
    cluster
}

/// Runs an extension's install script from `contrib/` the way `CREATE EXTENSION` would,
/// with `MODULE_PATHNAME` naming the library on the cluster's `dynamic_library_path`. (The
/// tests do not install into the system's extension directory.)
pub fn run_extension_script(client: &mut postgres::Client, extension: &str, version: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let path = root.join(format!("contrib/{extension}/{extension}--{version}.sql"));
    let script =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let control =
        std::fs::read_to_string(root.join(format!("contrib/{extension}/{extension}.control")))
            .unwrap();
    let schema = control
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("schema")
                .map(|v| v.trim_start_matches([' ', '=']).trim().to_string())
        })
        .unwrap_or_else(|| "public".to_string());
    let script: String = script
        .lines()
        .filter(|l| !l.starts_with("\\echo"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("MODULE_PATHNAME", extension)
        .replace("@extschema@", &schema);
    client
        .batch_execute(&script)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
