//! Shared helpers of the integration tests: where the built libraries are, connecting as a
//! role, reading a server error.

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

/// `CREATE FUNCTION` statements for the SQL functions of the test workers library: the
/// script `make sql` generates from the library's own declarations (and `make test` checks).
pub fn test_functions() -> String {
    include_str!("workers/test_workers.sql").replace("MODULE_PATHNAME", "bgworker_test_workers")
}

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
        .batch_execute(&test_functions())
        .expect("create test functions");
    cluster
}

/// Runs `contrib/<extension>`'s install script as `CREATE EXTENSION` would.
pub fn run_extension_script(client: &mut postgres::Client, extension: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let control = root.join(format!("contrib/{extension}/{extension}.control"));
    bgworker::testing::run_extension_script(client, &control);
}

/// A kB figure of `/proc/<pid>/status` (`VmHWM`, `RssAnon`, ...), 0 when unavailable.
pub fn status_kb(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| {
                    l.strip_prefix(field)
                        .is_some_and(|rest| rest.starts_with(':'))
                })
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A connection to the `postgres` database as `role`.
pub fn connect_as(cluster: &Cluster, role: &str) -> postgres::Client {
    let conn = format!("{} user={role}", cluster.connection_string("postgres"));
    postgres::Client::connect(&conn, postgres::NoTls).unwrap()
}

/// The SQLSTATE of a server error (panics on any other error).
pub fn code(e: &postgres::Error) -> String {
    e.as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e}"))
        .code()
        .code()
        .to_string()
}

/// The message of a server error, or the error itself.
pub fn message(e: &postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |db| db.message().to_string())
}
