//! pg_background's own regression checks run against the background example with psql, as
//! pg_regress would, compared with the output pg_background's checks expect
//! (`tests/regress/pg_background.out`).

use bgworker_tests::{example, run_extension_script, Cluster};

#[test]
fn pg_background_regression_checks_give_the_same_results() {
    let cluster = Cluster::builder()
        .library(example("background"))
        .setting("max_worker_processes", "16")
        .start();
    let mut client = cluster.connect();
    run_extension_script(&mut client, "background");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regress");
    let out = cluster.psql_file("postgres", &dir.join("pg_background.sql"));
    let expected = std::fs::read_to_string(dir.join("pg_background.out")).unwrap_or_default();
    if out != expected {
        std::fs::write(dir.join("pg_background.out.actual"), &out).unwrap();
        panic!(
            "psql output differs from tests/regress/pg_background.out \
             (written to tests/regress/pg_background.out.actual):\n{out}"
        );
    }
    cluster.assert_no_crash();
}
